"""Keep one connection to the puppet service alive.

The stock client gives up in several ways (fixed 60 s sleep then one retry,
exit on refusal at start, silent return when the stream ends, no heartbeat
watchdog). The supervisor owns the loop instead: a fresh Connection per
attempt, exponential backoff with jitter while the service is down, and a
watchdog that pings (`ding`) a silent stream and drops it when nothing comes
back. Outages are reported to the app, which records and announces them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("qunbot.supervisor")


class Conn(Protocol):
    last_event: float

    async def run(self) -> None: ...

    async def ding(self) -> None: ...

    async def close(self) -> None: ...


class Supervisor:
    def __init__(
        self,
        connect: Callable[[], Conn],
        *,
        reachable: Callable[[], Awaitable[bool]],
        on_up: Callable[[Conn], Awaitable[None]],
        on_down: Callable[[str], Awaitable[None]],
        watchdog_s: float = 120.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._connect = connect
        self._reachable = reachable
        self._on_up = on_up
        self._on_down = on_down
        self.watchdog_s = watchdog_s
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._drop = asyncio.Event()
        self.current: Conn | None = None
        self.attempts = 0
        self.sessions = 0

    def stop(self) -> None:
        self._stop.set()

    def drop(self) -> None:
        """End the current session (e.g. the account logged out); the loop reconnects."""
        self._drop.set()

    async def run(self) -> None:
        backoff = self.backoff_initial
        while not self._stop.is_set():
            self.attempts += 1
            reason = "service unreachable"
            try:
                if await self._reachable():
                    started = time.monotonic()
                    reason = await self._session()
                    if time.monotonic() - started > 30:
                        backoff = self.backoff_initial  # it was a real session, not a flap
                if self._stop.is_set():
                    break
                await self._on_down(reason)
            except Exception:  # noqa: BLE001 - whatever broke this attempt, keep reconnecting
                log.exception("connection attempt failed")
            delay = backoff * (0.5 + self._rng.random() / 2)
            log.warning("connection lost (%s); retrying in %.1f s", reason, delay)
            await self._wait(delay)
            backoff = min(backoff * 2, self.backoff_max)

    async def _session(self) -> str:
        conn = self._connect()
        self.current = conn
        self.sessions += 1
        self._drop.clear()
        stream = asyncio.create_task(conn.run(), name="puppet-stream")
        stopper = asyncio.create_task(self._stop.wait())
        dropper = asyncio.create_task(self._drop.wait())
        try:
            await self._on_up(conn)
            while True:
                done, _ = await asyncio.wait(
                    {stream, stopper, dropper},
                    timeout=self.watchdog_s / 4,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopper in done:
                    return "stopped"
                if dropper in done:
                    return "session dropped (logged out)"
                if stream in done:
                    exc = stream.exception()
                    return f"stream error: {exc!r}" if exc else "stream ended by the service"
                silent = time.monotonic() - conn.last_event
                if silent > self.watchdog_s:
                    return f"no event for {silent:.0f} s (watchdog)"
                if silent > self.watchdog_s / 2:
                    try:
                        await asyncio.wait_for(conn.ding(), self.watchdog_s / 4)
                    except Exception as e:  # noqa: BLE001 - a failed ding is what we watch for
                        log.info("watchdog ding failed: %r", e)
        finally:
            stopper.cancel()
            dropper.cancel()
            stream.cancel()
            await asyncio.gather(stream, stopper, dropper, return_exceptions=True)
            await conn.close()
            self.current = None

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

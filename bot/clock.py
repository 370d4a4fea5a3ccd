"""Time as a dependency, so limits, schedules and windows are tested without sleeps."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    # A long wait re-reads the time at least this often: the wall clock can jump
    # (NTP, suspend) while the loop's monotonic timers do not notice.
    recheck_s: float

    def now(self) -> float:
        """Epoch seconds."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    recheck_s = 60.0

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when a test says so.

    `sleep()` blocks until `advance()` moves time past its deadline; sleepers wake
    in deadline order and each gets a chance to run before time moves on.
    """

    recheck_s = float("inf")  # time only moves through advance(), which wakes every due sleeper

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        live = [d for d, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passes, in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self._now = max(self._now, deadline)
            fut.set_result(None)
            await settle()
        self._now = target
        await settle()

    async def run_until_idle(self, limit: float = 86_400.0) -> None:
        """Advance to each pending deadline until nobody sleeps (or `limit` seconds pass)."""
        end = self._now + limit
        while (d := self.next_deadline()) is not None and d <= end:
            await self.advance(d - self._now)


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run: a few loop turns, no wall-clock waiting."""
    for _ in range(rounds):
        await asyncio.sleep(0)

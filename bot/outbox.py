"""The send governor: every message the bot sends goes through one `Outbox`.

WeChat restricts or bans accounts that send fast (SPEC section 7), so sending is
paced, never bursted:

* at most `per_room_per_min` sends per conversation and `global_per_min` overall
  in any sliding 60 s window, and `daily_cap` per local calendar day (`tz`);
* at least `min_interval_ms` plus a random jitter in [0, `jitter_ms`] between the
  end of one send and the start of the next;
* every *attempt* counts towards these limits, failed ones too: WeChat saw them.

Excess waits in a bounded queue per conversation:

* ordering: higher priority first across all conversations; among conversations
  whose next message has the same priority, the least recently served goes
  first (round-robin), so one busy room cannot starve the others. Within one
  conversation, messages go in (priority, submission) order.
* coalescing: an `Outgoing` with a `coalesce_key` replaces a queued one with the
  same key *in the same conversation* (it keeps the old one's place in line);
  the replaced submission resolves to None with reason "coalesced".
* merging: a plain text message of priority REPLY or BULK is appended (newline
  joined, mention ids unioned) to the last queued message of the same priority
  in that conversation when that one is plain text too, has never been tried,
  carries the same `extra`, and the result fits `merge_max_chars`. Both
  submissions resolve to the merged message's id (reason "merged").
* bound: over `max_queue_per_room`, the lowest-priority message is dropped,
  the oldest of those first (a stale reply is worth least); MANAGER and
  ANNOUNCE messages therefore survive as long as anything else is queued.

Errors from `send`: a rate-limit signal (see `classify_send_error`) pauses *all*
sending for `cooldown_s`, then the same message is retried and `on_report` is
told; anything else is transient: retried with exponential backoff plus jitter
(the conversation waits, others go on) up to `max_retries`, then dropped.
Caveat: a send that failed after WeChat accepted it can thus arrive twice.

One sender task does all sends, so two sends never overlap; all waiting is via
`clock.sleep`, so tests drive it with `FakeClock`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from enum import IntEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.clock import Clock
from bot.events import Outgoing

log = logging.getLogger(__name__)

WINDOW_S = 60.0
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0

# Reasons a submission resolves to None (or, for "merged", how it was sent).
QUEUE_FULL = "queue_full"
COALESCED = "coalesced"
FAILED = "failed"
STOPPED = "stopped"
MERGED = "merged"

_RATE_LIMIT_MARKERS = (
    "频繁",
    "rate limit",
    "ratelimit",
    "rate-limit",
    "too frequent",
    "too many requests",
)


class Priority(IntEnum):
    MANAGER = 0  # replies to managers
    ANNOUNCE = 1  # announcements, scheduled posts
    REPLY = 2  # replies to members
    BULK = 3  # welcomes and other low-value messages


class SendLimits(Protocol):
    """The `send:` section of bot.yaml (config provides exactly these names)."""

    @property
    def per_room_per_min(self) -> int: ...
    @property
    def global_per_min(self) -> int: ...
    @property
    def daily_cap(self) -> int: ...
    @property
    def min_interval_ms(self) -> int: ...
    @property
    def jitter_ms(self) -> int: ...
    @property
    def cooldown_s(self) -> int: ...


class TransientSendError(Exception):
    """A send failed in a way worth retrying after a backoff."""


class RateLimitedError(Exception):
    """The service says we send too often: every send must pause."""


def classify_send_error(exc: BaseException) -> RateLimitedError | TransientSendError:
    """Map a raw send error to how the outbox treats it.

    A rate-limit signal (操作过于频繁, "rate limit", "too frequent", ... anywhere in
    the message or its causes) becomes `RateLimitedError`; anything else is
    treated as transient, since the transport's own errors (gRPC, network) are
    usually passing and retries are bounded anyway.
    """
    if isinstance(exc, RateLimitedError | TransientSendError):
        return exc
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, RateLimitedError):
            return cur
        text = str(cur).lower()
        if any(m in text for m in _RATE_LIMIT_MARKERS):
            return RateLimitedError(str(cur))
        cur = cur.__cause__ or cur.__context__
    return TransientSendError(str(exc) or type(exc).__name__)


class SendFuture(asyncio.Future[str | None]):
    """Resolves with the sent message id, or None; `reason` says why (see module doc)."""

    reason: str | None = None


@dataclass(frozen=True)
class OutboxStats:
    submitted: int
    sent: int  # successful send calls (a merged message counts once)
    attempts: int
    retried: int
    merged: int  # submissions folded into another queued message
    coalesced: int  # submissions replaced by a newer one with the same key
    rate_limited: int  # cooldown pauses
    dropped: dict[str, int]  # reason -> submissions resolved to None
    queued: dict[str, int]  # conversation -> queued messages
    in_flight: bool
    paused: bool


@dataclass(eq=False)
class _Item:
    out: Outgoing
    seq: int
    futures: list[SendFuture]
    attempts: int = 0
    not_before: float = -math.inf  # retry backoff

    @property
    def priority(self) -> int:
        return int(self.out.priority)

    @property
    def order(self) -> tuple[int, int]:
        return (self.priority, self.seq)


@dataclass
class _Counters:
    submitted: int = 0
    sent: int = 0
    attempts: int = 0
    retried: int = 0
    merged: int = 0
    coalesced: int = 0
    rate_limited: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


class Outbox:
    def __init__(
        self,
        send: Callable[[Outgoing], Awaitable[str]],
        limits: SendLimits,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        tz: str = "Asia/Shanghai",
        max_queue_per_room: int = 50,
        on_report: Callable[[str], Awaitable[None]] | None = None,
        max_retries: int = 4,
        merge_max_chars: int = 500,  # 0 disables merging
    ) -> None:
        self._send = send
        self._limits = limits
        self._clock = clock
        self._rng = rng or random.Random()
        self._tz = ZoneInfo(tz)
        self._max_queue = max(1, max_queue_per_room)
        self._on_report = on_report
        self._max_retries = max_retries
        self._merge_max = merge_max_chars

        self._queues: dict[str, list[_Item]] = {}  # each sorted by _Item.order
        self._seq = 0
        self._tick = 0
        self._served: dict[str, int] = {}  # conversation -> tick of its last send
        self._in_flight: _Item | None = None
        self._recent: deque[float] = deque()  # attempt times, global window
        self._recent_room: dict[str, deque[float]] = {}
        self._next_send_at = -math.inf
        self._day: date | None = None
        self._day_count = 0
        self._cap_reported: date | None = None
        self._paused_until: float | None = None
        self._pause_reason = ""
        self._c = _Counters()

        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._reports: set[asyncio.Task[None]] = set()

    # -- public API -------------------------------------------------------

    def submit(self, out: Outgoing) -> SendFuture:
        """Queue `out`; never blocks. The future resolves when it is sent or given up."""
        fut = SendFuture(loop=asyncio.get_running_loop())
        if self._closing:
            self._resolve([fut], None, STOPPED)
            return fut
        self._c.submitted += 1
        conv = out.conversation_id
        q = self._queues.setdefault(conv, [])
        if out.coalesce_key is not None and self._coalesce(q, out, fut):
            pass
        elif self._merge(q, out, fut):
            pass
        else:
            self._seq += 1
            self._insert(q, _Item(out, self._seq, [fut]))
            self._trim(q)
        self._update_idle()
        self._wakeup.set()
        return fut

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="outbox-sender")

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Refuse new messages, let the queue drain for up to `drain_timeout` s
        (clock time), then cancel the sender; whatever is left resolves to None
        with reason "stopped" (an interrupted in-flight send included)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            if not self._idle.is_set() and drain_timeout > 0:
                await self._race(self._idle.wait(), drain_timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for t in list(self._reports):
            t.cancel()
        leftovers = [self._in_flight] if self._in_flight else []
        self._in_flight = None
        for q in self._queues.values():
            leftovers.extend(q)
        self._queues.clear()
        for item in leftovers:
            self._drop(item, STOPPED)
        self._update_idle()

    async def wait_idle(self) -> None:
        """Return once nothing is queued or in flight."""
        await self._idle.wait()

    def stats(self) -> OutboxStats:
        c = self._c
        return OutboxStats(
            submitted=c.submitted,
            sent=c.sent,
            attempts=c.attempts,
            retried=c.retried,
            merged=c.merged,
            coalesced=c.coalesced,
            rate_limited=c.rate_limited,
            dropped=dict(c.dropped),
            queued={k: len(q) for k, q in self._queues.items() if q},
            in_flight=self._in_flight is not None,
            paused=self._paused_until is not None,
        )

    # -- queue edits ------------------------------------------------------

    @staticmethod
    def _insert(q: list[_Item], item: _Item) -> None:
        bisect.insort(q, item, key=lambda it: it.order)

    def _coalesce(self, q: list[_Item], out: Outgoing, fut: SendFuture) -> bool:
        for i, old in enumerate(q):
            if old.out.coalesce_key == out.coalesce_key:
                # The newer content takes the old one's place in line.
                del q[i]
                self._insert(q, _Item(out, old.seq, [fut], not_before=old.not_before))
                self._c.coalesced += len(old.futures)
                self._resolve(old.futures, None, COALESCED)
                return True
        return False

    def _mergeable(self, out: Outgoing) -> bool:
        return (
            int(out.priority) >= Priority.REPLY
            and bool(out.text)
            and out.coalesce_key is None
            and out.file_path is None
            and out.url is None
        )

    def _merge(self, q: list[_Item], out: Outgoing, fut: SendFuture) -> bool:
        if self._merge_max <= 0 or not self._mergeable(out):
            return False
        same = [it for it in q if it.priority == int(out.priority)]
        if not same:
            return False
        # Only the last one of this priority: merging earlier would reorder messages.
        last = same[-1]
        text = f"{last.out.text}\n{out.text}"
        if (
            last.attempts
            or not self._mergeable(last.out)
            or last.out.extra != out.extra
            or len(text) > self._merge_max
        ):
            return False
        mentions = tuple(dict.fromkeys(last.out.mention_ids + out.mention_ids))
        last.out = dataclasses.replace(last.out, text=text, mention_ids=mentions)
        last.futures.append(fut)
        fut.reason = MERGED
        self._c.merged += 1
        return True

    def _trim(self, q: list[_Item]) -> None:
        while len(q) > self._max_queue:
            # Lowest priority loses; among equals the oldest (largest -seq).
            victim = max(q, key=lambda it: (it.priority, -it.seq))
            q.remove(victim)
            self._drop(victim, QUEUE_FULL)

    def _drop(self, item: _Item, reason: str) -> None:
        n = len(item.futures)
        self._c.dropped[reason] = self._c.dropped.get(reason, 0) + n
        log.info("outbox: dropped %d message(s) to %s: %s", n, item.out.conversation_id, reason)
        self._resolve(item.futures, None, reason)

    @staticmethod
    def _resolve(futures: list[SendFuture], result: str | None, reason: str | None) -> None:
        for f in futures:
            if not f.done():  # the caller may have cancelled its wait
                if reason is not None:
                    f.reason = reason
                f.set_result(result)

    def _update_idle(self) -> None:
        if self._in_flight is None and not any(self._queues.values()):
            self._idle.set()
        else:
            self._idle.clear()

    # -- limits -----------------------------------------------------------

    @staticmethod
    def _window_free_at(window: deque[float], limit: int, now: float) -> float:
        """When one more send fits: sends count while `ts + WINDOW_S > now`."""
        while window and window[0] + WINDOW_S <= now:
            window.popleft()
        if len(window) < max(1, limit):
            return now
        return window[-max(1, limit)] + WINDOW_S

    def _local_day(self, now: float) -> date:
        return datetime.fromtimestamp(now, self._tz).date()

    def _next_midnight(self, now: float) -> float:
        tomorrow = self._local_day(now) + timedelta(days=1)
        return datetime.combine(tomorrow, dtime(0), tzinfo=self._tz).timestamp()

    def _global_ready_at(self, now: float) -> float:
        """Earliest time any send may start, by the limits shared by all rooms."""
        day = self._local_day(now)
        if day != self._day:
            self._day, self._day_count = day, 0
        ready = max(
            self._next_send_at, self._window_free_at(self._recent, self._limits.global_per_min, now)
        )
        if self._day_count >= self._limits.daily_cap:
            if self._cap_reported != day:
                self._cap_reported = day
                queued = sum(len(q) for q in self._queues.values())
                self._report(
                    f"daily send cap {self._limits.daily_cap} reached; "
                    f"{queued} queued message(s) wait until local midnight"
                )
            ready = max(ready, self._next_midnight(now))
        return ready

    def _room_ready_at(self, conv: str, head: _Item, now: float) -> float:
        window = self._recent_room.get(conv)
        free = now
        if window is not None:
            free = self._window_free_at(window, self._limits.per_room_per_min, now)
            if not window:
                del self._recent_room[conv]
        return max(free, head.not_before)

    def _pick(self, now: float) -> tuple[_Item | None, float]:
        """The next item to send now, else None and when a room becomes ready."""
        best: _Item | None = None
        best_key: tuple[int, int, int] | None = None
        earliest = math.inf
        for conv, q in self._queues.items():
            if not q:
                continue
            head = q[0]
            ready = self._room_ready_at(conv, head, now)
            if ready > now:
                earliest = min(earliest, ready)
                continue
            key = (head.priority, self._served.get(conv, -1), head.seq)
            if best_key is None or key < best_key:
                best, best_key = head, key
        return best, earliest

    # -- the sender -------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()  # anything submitted from here on wakes us again
            now = self._clock.now()
            if self._paused_until is not None:
                if now < self._paused_until:
                    await self._clock.sleep(self._paused_until - now)
                    continue
                self._resume()
            for conv in [k for k, q in self._queues.items() if not q]:
                del self._queues[conv]
            if not self._queues:
                await self._wakeup.wait()
                continue
            ready = self._global_ready_at(now)
            if ready > now:
                # A new message cannot start sooner, so no need to listen for one.
                await self._clock.sleep(ready - now)
                continue
            item, room_ready = self._pick(now)
            if item is None:
                # Every waiting room is throttled: sleep, but a new room may come.
                await self._race(self._wakeup.wait(), room_ready - now)
                continue
            await self._attempt(item)

    async def _attempt(self, item: _Item) -> None:
        conv = item.out.conversation_id
        self._queues[conv].remove(item)
        self._in_flight = item
        prev_turn = self._served.get(conv)
        self._tick += 1
        self._served[conv] = self._tick
        now = self._clock.now()
        self._recent.append(now)
        self._recent_room.setdefault(conv, deque()).append(now)
        self._day_count += 1
        self._c.attempts += 1
        try:
            msg_id = await self._send(item.out)
        except asyncio.CancelledError:
            self._drop(item, STOPPED)  # stop() gave up on it
            raise
        except Exception as exc:  # any send error: classified below
            if self._failed(item, exc):
                # Rate limited: nothing went out, so the room keeps its turn.
                if prev_turn is None:
                    del self._served[conv]
                else:
                    self._served[conv] = prev_turn
        else:
            self._c.sent += 1
            self._resolve(item.futures, msg_id, None)
        finally:
            self._in_flight = None
            # Pace from the end of the send: slow sends never make bursts.
            jitter = self._rng.uniform(0.0, self._limits.jitter_ms / 1000)
            self._next_send_at = self._clock.now() + self._limits.min_interval_ms / 1000 + jitter
            self._update_idle()

    def _failed(self, item: _Item, exc: Exception) -> bool:
        """Requeue or drop a failed item; True when it was a rate-limit signal."""
        conv = item.out.conversation_id
        err = classify_send_error(exc)
        if isinstance(err, RateLimitedError):
            self._c.rate_limited += 1
            self._paused_until = self._clock.now() + self._limits.cooldown_s
            self._pause_reason = f"the service signalled rate limiting ({err})"
            log.warning(
                "outbox: rate limited sending to %s, pausing all sends for %s s: %s",
                conv,
                self._limits.cooldown_s,
                err,
            )
            # Not counted as a retry: the message simply waits out the pause.
            self._requeue(item)
            return True
        item.attempts += 1
        if item.attempts > self._max_retries:
            log.warning(
                "outbox: giving up on a message to %s after %d attempts: %s",
                conv,
                item.attempts,
                err,
            )
            self._drop(item, FAILED)
            return False
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (item.attempts - 1))
        delay += self._rng.uniform(0.0, delay / 2)
        item.not_before = self._clock.now() + delay
        self._c.retried += 1
        log.info(
            "outbox: send to %s failed (%s), retry %d in %.1f s", conv, err, item.attempts, delay
        )
        self._requeue(item)
        return False

    def _requeue(self, item: _Item) -> None:
        q = self._queues.setdefault(item.out.conversation_id, [])
        self._insert(q, item)
        self._trim(q)

    def _resume(self) -> None:
        self._paused_until = None
        msg = (
            f"sending paused for {self._limits.cooldown_s} s because {self._pause_reason}; resumed"
        )
        log.warning("outbox: %s", msg)
        self._report(msg)

    def _report(self, text: str) -> None:
        if self._on_report is None:
            return
        # A task, so a reporter that sends through this outbox cannot deadlock it.
        task = asyncio.create_task(self._deliver_report(self._on_report, text))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    @staticmethod
    async def _deliver_report(report: Callable[[str], Awaitable[None]], text: str) -> None:
        try:
            await report(text)
        except Exception:
            log.exception("outbox: on_report failed for %r", text)

    async def _race(self, aw: Awaitable[object], seconds: float) -> None:
        """Wait for `aw` or until `seconds` clock seconds pass, whichever is first."""
        waiter = asyncio.ensure_future(aw)
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

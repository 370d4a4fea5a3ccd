"""Named jobs that fire exactly once per scheduled time, in the configured timezone.

Used by announcements, event reminders/deadlines and lottery draws. Storage is the
source of truth: callers rebuild every job at start with `once` / `cron` / `every`;
registering a name again replaces the job, so rebuilding never duplicates.

Exactly once
    Each firing has the idempotency key ``f"{name}@{scheduled.isoformat()}"``
    (`Firing.key`, scheduled time in the configured tz). The key is claimed in the
    durable `FiringLedger` *before* the callback runs; a claimed key is never fired
    again, by this process or any later one. A crash after the claim and before the
    send loses that one firing (at most once beats twice); callers that need more can
    use `Firing.key` as a dedupe key downstream (e.g. in the outbox).

Missed firings (bot down, machine suspended, callback overran)
    * a one-off whose time has passed fires late if ``late_by <= misfire_grace_s``,
      otherwise it is claimed as skipped and passed to ``on_missed`` (once, ever);
    * cron / interval jobs catch up only when the caller says since when the
      schedule has been in force (``since=``, e.g. the announcement's creation or
      last edit time; ``None`` = no catch-up, the first firing is the next one):
      the most recent missed occurrence within grace fires once, the others within
      grace are coalesced into it, and the most recent occurrence beyond grace,
      if it never fired, is reported once via ``on_missed`` (one report per job,
      not one per missed occurrence).
    Features route reports of their own jobs with ``on_missed_for(prefix, fn)``
    (longest prefix wins; the constructor's ``on_missed`` takes the rest).

Design: why not run AsyncIOScheduler itself (option b of the brief)
    APScheduler 3's AsyncIOScheduler reads wall time with ``datetime.now()`` in
    several places (add_job, _process_jobs, and the executor's misfire check uses
    ``datetime.now(utc)``) and waits with ``loop.call_later``; driving it with the
    injected `Clock` means patching private internals. Its misfire/coalesce logic
    also only knows its own in-memory ``next_run_time``: it cannot tell whether a
    firing already happened before a restart, and with a MemoryJobStore it never
    sees firings missed while the process was down (a persistent jobstore would be
    a second source of truth next to storage, with pickled callables). Getting
    exactly-once on top of it means overriding ``_process_jobs``, i.e.
    re-implementing its core anyway. So this module keeps APScheduler for what it
    is good at — all calendar arithmetic goes through its triggers (CronTrigger,
    DateTrigger, IntervalTrigger, OrTrigger) with an explicit ZoneInfo — and does
    the waiting itself with `Clock.sleep`, one asyncio task per job. The issue's
    pitfalls disappear by construction: no 1 s misfire grace, jobs live in a dict
    keyed by name (no duplicates), callbacks are awaited on the event loop (never a
    thread pool), and the host timezone is never consulted.

Cron expressions are standard 5-field crontab ("m h dom mon dow") in the configured
tz. Unlike ``CronTrigger.from_crontab`` (APScheduler 3 treats 0 as Monday), day of
week follows crontab: 0 or 7 = Sunday, 1-5 = Monday-Friday; when both day of month
and day of week are restricted, either matching fires (crontab's OR rule).

Quiet hours: `parse_quiet_hours("22:00-08:00")` validates a window (it may cross
midnight) and `defer_past_quiet(at, window)` moves a time inside the window to its
end; callers decide whether to hold or skip.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal, Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import Clock, SystemClock

log = logging.getLogger(__name__)

__all__ = [
    "FireFn",
    "Firing",
    "FiringLedger",
    "MemoryLedger",
    "QuietHours",
    "Scheduler",
    "defer_past_quiet",
    "parse_cron",
    "parse_quiet_hours",
]

_US = timedelta(microseconds=1)
_DUE_EPSILON_S = 1e-6  # float slack when comparing clock seconds with fire times
_MAX_COALESCE_CLAIMS = 1000


@dataclass(frozen=True)
class Firing:
    name: str
    scheduled: datetime  # aware, in the scheduler's timezone
    late_by: float  # seconds after `scheduled` that it is being handled

    @property
    def key(self) -> str:
        return firing_key(self.name, self.scheduled)


def firing_key(name: str, scheduled: datetime) -> str:
    return f"{name}@{scheduled.isoformat()}"


FireFn = Callable[[Firing], Awaitable[None]]
MissedFn = Callable[[Firing], Awaitable[None]]


class FiringLedger(Protocol):
    async def claim(self, key: str) -> bool:
        """True only the first time `key` is claimed; durable before returning."""
        ...


class MemoryLedger:
    """In-memory ledger for tests and previews (not durable)."""

    def __init__(self) -> None:
        self.claimed: list[str] = []
        self._seen: set[str] = set()

    async def claim(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        self.claimed.append(key)
        return True


# --------------------------------------------------------------------------- cron

_CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_CRON_LABELS = ("minute", "hour", "day of month", "month", "day of week")
_CRON_HELP = (
    'expected 5 fields "minute hour day-of-month month day-of-week", '
    'e.g. "0 8 * * *" (08:00 daily) or "30 9 * * 1-5" (09:30 Monday to Friday)'
)
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _dow_value(token: str) -> int:
    t = token.strip().lower()
    if t.isdigit() and 0 <= int(t) <= 7:
        return int(t)
    if t[:3] in _DOW_NAMES and t in (t[:3], _long_day(t[:3])):
        return _DOW_NAMES.index(t[:3])
    raise ValueError(f"{token!r} is not a weekday (0-7 with 0 and 7 = Sunday, or sun..sat)")


def _long_day(short: str) -> str:
    return {
        "sun": "sunday",
        "mon": "monday",
        "tue": "tuesday",
        "wed": "wednesday",
        "thu": "thursday",
        "fri": "friday",
        "sat": "saturday",
    }[short]


def _translate_dow(spec: str) -> str:
    """Crontab day-of-week (0/7 = Sunday) → APScheduler 3 day_of_week (names)."""
    if spec == "*":
        return "*"
    days: set[int] = set()
    for part in spec.split(","):
        rng, slash, step_s = part.partition("/")
        step = 1
        if slash:
            if not step_s.isdigit() or int(step_s) == 0:
                raise ValueError(f"bad step {step_s!r} in {part!r}")
            step = int(step_s)
        if rng == "*":
            lo, hi = 0, 6
        elif "-" in rng:
            a, b = rng.split("-", 1)
            lo, hi = _dow_value(a), _dow_value(b)
            if hi == 0 and lo > 0:
                hi = 7  # "fri-sun"
            if lo > hi:
                raise ValueError(f"range {rng!r} runs backwards")
        else:
            lo = _dow_value(rng)
            hi = 7 if slash else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_DOW_NAMES[d] for d in sorted(days))


def parse_cron(expr: str, tz: ZoneInfo) -> Any:
    """A 5-field crontab expression → an APScheduler trigger in `tz`.

    Raises ValueError naming the bad field and showing the expected form.
    """
    if not isinstance(expr, str):
        raise ValueError(f"cron expression must be text, got {type(expr).__name__}")
    values = expr.split()
    if len(values) != 5:
        raise ValueError(f"bad cron expression {expr!r}: {len(values)} fields, {_CRON_HELP}")
    for label, fname, value in zip(_CRON_LABELS, _CRON_FIELDS, values, strict=True):
        try:
            if fname == "day_of_week":
                CronTrigger(day_of_week=_translate_dow(value), timezone=tz)
            else:
                CronTrigger(**{fname: value}, timezone=tz)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"bad cron expression {expr!r}: {label} field {value!r}: {e}; {_CRON_HELP}"
            ) from None
    minute, hour, dom, month, dow = values
    common: dict[str, Any] = {"minute": minute, "hour": hour, "month": month, "timezone": tz}
    try:
        trigger: Any
        if dom.startswith("*") or dow.startswith("*"):
            trigger = CronTrigger(day=dom, day_of_week=_translate_dow(dow), **common)
        else:  # crontab rule: both restricted → either may match
            trigger = OrTrigger(
                [
                    CronTrigger(day=dom, day_of_week="*", **common),
                    CronTrigger(day="*", day_of_week=_translate_dow(dow), **common),
                ]
            )
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"bad cron expression {expr!r}: {e}; {_CRON_HELP}") from None
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=tz)) is None:
        raise ValueError(f"bad cron expression {expr!r}: it never fires (no such date)")
    return trigger


# ---------------------------------------------------------------------- scheduler

Kind = Literal["once", "cron", "every"]


@dataclass(eq=False)
class _Job:
    name: str
    kind: Kind
    trigger: Any  # an APScheduler trigger
    fn: FireFn
    since: datetime | None  # catch-up lower bound (repeating jobs)
    at: datetime | None = None  # one-offs
    next_time: datetime | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Scheduler:
    """Named-job scheduler; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        tz: str,
        ledger: FiringLedger,
        clock: Clock | None = None,
        misfire_grace_s: float = 600,
        on_missed: MissedFn | None = None,
    ) -> None:
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {tz!r} (expected e.g. 'Asia/Shanghai')") from None
        if misfire_grace_s < 0:
            raise ValueError("misfire_grace_s must be >= 0")
        self._ledger = ledger
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._grace = timedelta(seconds=misfire_grace_s)
        self._on_missed = on_missed
        self._missed_by_prefix: dict[str, MissedFn] = {}
        self._jobs: dict[str, _Job] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._running = False

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Start every registered job; missed firings are handled right away."""
        if self._running:
            return
        self._running = True
        for job in list(self._jobs.values()):
            self._spawn(job)
        await asyncio.sleep(0)  # let the jobs reach their first wait

    async def shutdown(self) -> None:
        """Stop waiting; firings already claimed are allowed to finish."""
        self._running = False
        tasks = [j.task for j in self._jobs.values() if j.task is not None]
        for job in self._jobs.values():
            job.task = None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Until no firing is being handled (claim + callback), e.g. after a clock advance."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # -- registration

    def once(self, name: str, at: datetime, fn: FireFn) -> None:
        """Fire once at `at` (naive = wall time in the configured tz)."""
        when = self._localize(at)
        trigger = DateTrigger(run_date=when, timezone=self.tz)
        self._register(_Job(name, "once", trigger, fn, since=None, at=when, next_time=when))

    def cron(self, name: str, expr: str, fn: FireFn, *, since: datetime | None = None) -> None:
        """Fire on a 5-field crontab schedule in the configured tz.

        `since`: when this schedule came into force (creation / last edit); enables
        catch-up of firings missed after that. Raises ValueError for a bad expression.
        """
        trigger = parse_cron(expr, self.tz)
        self._register_repeating(name, "cron", trigger, fn, since)

    def every(
        self,
        name: str,
        seconds: float,
        fn: FireFn,
        *,
        start: datetime | None = None,
        since: datetime | None = None,
    ) -> None:
        """Fire every `seconds`, on the grid anchored at `start`.

        Without `start` the grid starts one interval from now, which differs per
        process: pass a stored anchor for exactly-once across restarts.
        """
        if not seconds > 0:
            raise ValueError(f"interval must be > 0 seconds, got {seconds!r}")
        anchor = (
            self._localize(start) if start is not None else self._now() + timedelta(seconds=seconds)
        )
        trigger = IntervalTrigger(seconds=seconds, start_date=anchor, timezone=self.tz)
        self._register_repeating(name, "every", trigger, fn, since)

    def on_missed_for(self, prefix: str, fn: MissedFn) -> None:
        """Report skipped firings of jobs whose name starts with `prefix` to `fn`.

        Each feature registers its own (e.g. "announce:"); the longest matching prefix
        wins, and jobs no prefix matches go to the constructor's `on_missed`.
        """
        if not prefix:
            raise ValueError("prefix must be non-empty (use on_missed= for a catch-all)")
        if not _is_async_callable(fn):
            raise TypeError("on_missed handlers must be async functions")
        self._missed_by_prefix[prefix] = fn

    def remove(self, name: str) -> bool:
        job = self._jobs.pop(name, None)
        if job is None:
            return False
        self._stop(job)
        return True

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def next_fire(self, name: str) -> datetime | None:
        job = self._jobs.get(name)
        return job.next_time if job is not None else None

    # -- internals

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=self.tz)

    def _localize(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            return at.replace(tzinfo=self.tz)
        return at.astimezone(self.tz)

    def _register_repeating(
        self, name: str, kind: Kind, trigger: Any, fn: FireFn, since: datetime | None
    ) -> None:
        job = _Job(name, kind, trigger, fn, since=None if since is None else self._localize(since))
        job.next_time = _first_at_or_after(job, self._now())
        self._register(job)

    def _register(self, job: _Job) -> None:
        if not isinstance(job.name, str) or not job.name:
            raise ValueError("job name must be a non-empty string")
        if not _is_async_callable(job.fn):
            raise TypeError(
                f"job {job.name!r}: fn must be an async function (async def), "
                "plain functions would block the event loop"
            )
        old = self._jobs.get(job.name)
        if old is not None:
            self._stop(old)
        self._jobs[job.name] = job
        if self._running:
            self._spawn(job)

    def _spawn(self, job: _Job) -> None:
        if job.task is None or job.task.done():
            # the job is live from now on, even if its task first runs a bit later
            job.task = asyncio.get_running_loop().create_task(
                self._run(job, self._now()), name=f"scheduler:{job.name}"
            )

    def _stop(self, job: _Job) -> None:
        if job.task is not None:
            job.task.cancel()  # a firing in progress is shielded and finishes
            job.task = None

    async def _run(self, job: _Job, now: datetime) -> None:
        try:
            cursor: datetime | None
            if job.kind == "once":
                cursor = None
            else:
                cursor = job.since if job.since is not None else now
            while True:
                t = _first_at_or_after(job, cursor)
                job.next_time = t
                if t is None:
                    break
                await self._sleep_until(t)
                now = self._now()
                # claim + callback run shielded: cancelling the job (remove/replace/
                # shutdown) never interrupts a firing whose key may already be claimed
                handling = asyncio.ensure_future(self._handle_due(job, cursor, now))
                self._inflight.add(handling)
                handling.add_done_callback(self._inflight.discard)
                await asyncio.shield(handling)
                if job.kind == "once":
                    job.next_time = None
                    break
                cursor = now + _US
        finally:
            if self._jobs.get(job.name) is job and job.next_time is None:
                del self._jobs[job.name]  # finished one-off

    async def _sleep_until(self, t: datetime) -> None:
        target = t.timestamp()
        while (remaining := target - self._clock.now()) > _DUE_EPSILON_S:
            await self._clock.sleep(min(remaining, self._clock.recheck_s))

    async def _handle_due(self, job: _Job, lower: datetime | None, now: datetime) -> None:
        """Deal with every occurrence in [lower, now]: fire the latest within grace
        (coalescing others within grace), report the latest beyond grace."""
        latest = _latest_between(job, lower, now)
        if latest is None:
            return
        cutoff = now - self._grace  # occurrences before this are beyond grace
        if latest >= cutoff:
            if await self._ledger.claim(firing_key(job.name, latest)):
                await self._call(job, latest, now)
            # mark the older ones within grace as coalesced, so that a restart
            # soon after does not report one of them as missed
            t = _first_at_or_after(job, max(cutoff, lower) if lower is not None else cutoff)
            n = 0
            while t is not None and t < latest and n < _MAX_COALESCE_CLAIMS:
                await self._ledger.claim(firing_key(job.name, t))
                t = _first_at_or_after(job, t + _US)
                n += 1
            missed = _latest_between(job, lower, cutoff - _US)
        else:
            missed = latest
        if missed is not None and await self._ledger.claim(firing_key(job.name, missed)):
            await self._report_missed(Firing(job.name, missed, _late(missed, now)))

    async def _call(self, job: _Job, scheduled: datetime, now: datetime) -> None:
        firing = Firing(job.name, scheduled, _late(scheduled, now))
        try:
            result = job.fn(firing)
            if not inspect.isawaitable(result):
                raise TypeError("job functions must be async (return an awaitable)")
            await result
        except Exception:
            log.exception("scheduled job %s failed (key %s)", job.name, firing.key)

    def _missed_handler(self, name: str) -> MissedFn | None:
        return _longest_prefix(name, self._missed_by_prefix) or self._on_missed

    async def _report_missed(self, firing: Firing) -> None:
        log.warning(
            "scheduled job %s missed its firing at %s (late by %.0f s, grace %.0f s)",
            firing.name,
            firing.scheduled.isoformat(),
            firing.late_by,
            self._grace.total_seconds(),
        )
        handler = self._missed_handler(firing.name)
        if handler is None:
            return
        try:
            await handler(firing)
        except Exception:
            log.exception("on_missed handler failed for %s", firing.key)


def _longest_prefix(name: str, handlers: dict[str, MissedFn]) -> MissedFn | None:
    best = max((p for p in handlers if name.startswith(p)), key=len, default=None)
    return handlers[best] if best is not None else None


def _is_async_callable(fn: object) -> bool:
    """async def functions, bound methods, partials of them, objects with async __call__."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _late(scheduled: datetime, now: datetime) -> float:
    return max(0.0, (now - scheduled).total_seconds())


def _first_at_or_after(job: _Job, t: datetime | None) -> datetime | None:
    """First occurrence >= t (one-offs: their time, whatever t is)."""
    if job.kind == "once":
        return job.at
    assert t is not None
    return cast("datetime | None", job.trigger.get_next_fire_time(None, t))


def _latest_between(job: _Job, lower: datetime | None, upto: datetime) -> datetime | None:
    """Latest occurrence in [lower, upto] (lower None: unbounded, one-offs only)."""
    if job.kind == "once":
        at = job.at
        if at is None or at > upto or (lower is not None and at < lower):
            return None
        return at
    if lower is None or upto < lower:
        return None
    lo = _first_at_or_after(job, lower)
    if lo is None or lo > upto:
        return None
    # bisect: occurrences are the values of the monotone "first at or after x"
    hi = upto
    while hi - lo > timedelta(milliseconds=1):
        mid = lo + (hi - lo) / 2
        nxt = _first_at_or_after(job, mid)
        if nxt is not None and nxt <= upto:
            lo = nxt
        else:
            hi = mid
    return lo


# -------------------------------------------------------------------- quiet hours

_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, at: datetime) -> bool:
        """Whether `at`'s wall time (in its own timezone) is inside the window."""
        t = at.time().replace(tzinfo=None)
        if self.crosses_midnight:
            return t >= self.start or t < self.end
        return self.start <= t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(window: str) -> QuietHours:
    """Parse "HH:MM-HH:MM" into QuietHours; the window may cross midnight ("22:00-08:00")."""
    m = _WINDOW_RE.match(window) if isinstance(window, str) else None
    if m is None:
        raise ValueError(f'bad quiet hours {window!r}: expected "HH:MM-HH:MM", e.g. "22:00-08:00"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    for h, mi in ((h1, m1), (h2, m2)):
        if not (0 <= h <= 23 and 0 <= mi <= 59):
            raise ValueError(f"bad quiet hours {window!r}: {h:02d}:{mi:02d} is not a time of day")
    if (h1, m1) == (h2, m2):
        raise ValueError(f"bad quiet hours {window!r}: start and end are the same")
    return QuietHours(time(h1, m1), time(h2, m2))


def defer_past_quiet(at: datetime, window: str | QuietHours) -> datetime:
    """`at` if outside the quiet window, else the end of that window (same tzinfo).

    Works on `at`'s wall time: pass it in the configured timezone.
    """
    q = window if isinstance(window, QuietHours) else parse_quiet_hours(window)
    if not q.contains(at):
        return at
    end = at.replace(hour=q.end.hour, minute=q.end.minute, second=0, microsecond=0)
    if q.crosses_midnight and at.time().replace(tzinfo=None) >= q.start:
        end += timedelta(days=1)  # wall-clock day arithmetic
    return end

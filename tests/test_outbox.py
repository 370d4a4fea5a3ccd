"""The send governor, driven by FakeClock (no real sleeps)."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock, settle
from bot.events import Outgoing
from bot.outbox import (
    COALESCED,
    FAILED,
    MERGED,
    QUEUE_FULL,
    STOPPED,
    Outbox,
    Priority,
    RateLimitedError,
    SendFuture,
    TransientSendError,
    classify_send_error,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Limits:
    per_room_per_min: int = 12
    global_per_min: int = 30
    daily_cap: int = 1500
    min_interval_ms: int = 1500
    jitter_ms: int = 1500
    cooldown_s: int = 3600


class FakeSend:
    """Records every attempt; raises the queued errors first, in order."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.attempts: list[tuple[float, Outgoing]] = []
        self.sent: list[tuple[float, Outgoing, str]] = []
        self.errors: dict[str, list[Exception]] = {}  # conversation -> next errors
        self.always: Exception | None = None

    async def __call__(self, out: Outgoing) -> str:
        self.attempts.append((self.clock.now(), out))
        if self.always is not None:
            raise self.always
        if self.errors.get(out.conversation_id):
            raise self.errors[out.conversation_id].pop(0)
        msg_id = f"m{len(self.sent) + 1}"
        self.sent.append((self.clock.now(), out, msg_id))
        return msg_id

    def rooms(self) -> list[str]:
        return [o.conversation_id for _, o, _ in self.sent]


def msg(room: str, text: str, prio: Priority = Priority.REPLY, **kw: Any) -> Outgoing:
    return Outgoing(conversation_id=room, text=text, priority=int(prio), **kw)


async def drive(clock: FakeClock, until: asyncio.Future[Any], limit: float = 10 * 86_400) -> None:
    """Advance the fake clock deadline by deadline until `until` is done."""
    end = clock.now() + limit
    await settle()
    while not until.done():
        d = clock.next_deadline()
        assert d is not None, "stuck: nobody sleeps but the awaited thing is not done"
        assert d <= end, "did not finish within the simulated time limit"
        await clock.advance(d - clock.now())
    await until


async def run_idle(clock: FakeClock, box: Outbox, limit: float = 10 * 86_400) -> None:
    await drive(clock, asyncio.ensure_future(box.wait_idle()), limit)


def make(
    clock: FakeClock | None = None, limits: Limits | None = None, **kw: Any
) -> tuple[FakeClock, FakeSend, Outbox]:
    clock = clock or FakeClock()
    send = FakeSend(clock)
    box = Outbox(send, limits or Limits(), clock=clock, rng=random.Random(1), **kw)
    return clock, send, box


def max_in_window(times: list[float], width: float = 60.0) -> int:
    """Most sends inside any half-open window [t, t + width) (only starts at a send matter)."""
    return max((sum(1 for u in times if t <= u < t + width) for t in times), default=0)


# -- the big one --------------------------------------------------------------


async def test_burst_of_1000_respects_every_limit_across_local_midnight() -> None:
    start = datetime(2027, 3, 1, 23, 50, tzinfo=SHANGHAI).timestamp()
    limits = Limits(daily_cap=120)
    clock = FakeClock(start)
    reports: list[str] = []

    async def on_report(text: str) -> None:
        reports.append(text)

    clock, send, box = make(clock, limits, on_report=on_report)
    rooms = [f"room{i}@chatroom" for i in range(5)]
    futs: dict[int, SendFuture] = {}
    info: dict[int, tuple[str, int, float]] = {}  # n -> room, priority, submitted at
    await box.start()
    for n in range(1000):
        room = rooms[n % 7 % 5]  # rooms 0 and 1 get twice the traffic
        if n % 50 == 0:
            out = msg(room, f"<{n}> 管理员回复", Priority.MANAGER)
        elif n % 40 == 7:
            out = msg(room, f"<{n}> 公告", Priority.ANNOUNCE)
        elif n % 10 == 3:
            out = msg(room, f"<{n}> 欢迎新成员", Priority.BULK, coalesce_key="welcome")
        else:
            out = msg(room, f"<{n}> " + "答" * (40 + n * 37 % 260), mention_ids=(f"u{n % 13}",))
        futs[n] = box.submit(out)
        info[n] = (room, out.priority, clock.now())
        assert max(box.stats().queued.values()) <= 50
        if n % 10 == 9:
            await clock.advance(1.0)
    await run_idle(clock, box)
    await box.stop()

    assert all(f.done() for f in futs.values())
    stats = box.stats()
    assert stats.submitted == 1000 and stats.queued == {} and not stats.in_flight

    # Nothing sent twice; a future's id is the message that carried its text.
    carried: dict[int, str] = {}
    for _, out, mid in send.sent:
        for n in map(int, re.findall(r"<(\d+)>", out.text)):
            assert n not in carried, f"#{n} sent twice"
            carried[n] = mid
    delivered: dict[int, str] = {}
    for n, f in futs.items():
        if (got := f.result()) is not None:
            delivered[n] = got
    assert delivered == carried
    assert len(send.attempts) == len(send.sent) == stats.sent

    # Every submission is accounted for.
    reasons = Counter(f.reason for f in futs.values() if f.result() is None)
    assert reasons[QUEUE_FULL] == stats.dropped.get(QUEUE_FULL, 0) > 0
    assert reasons[COALESCED] == stats.coalesced > 0
    assert set(reasons) <= {QUEUE_FULL, COALESCED}
    assert stats.merged > 0
    assert len(delivered) + sum(stats.dropped.values()) + stats.coalesced == 1000

    # Manager replies and announcements all survive; only REPLY/BULK are dropped.
    for n, f in futs.items():
        if info[n][1] <= Priority.ANNOUNCE:
            assert f.result() is not None, f"priority message #{n} lost ({f.reason})"

    # Sliding-window limits, per room and overall.
    times = [t for t, _, _ in send.sent]
    assert max_in_window(times) <= limits.global_per_min
    by_room: dict[str, list[float]] = defaultdict(list)
    for t, out, _ in send.sent:
        by_room[out.conversation_id].append(t)
    for room_times in by_room.values():
        assert max_in_window(room_times) <= limits.per_room_per_min
    assert max_in_window(times) == limits.global_per_min  # the limit was actually reached

    # Min interval plus the jitter drawn after each send (one draw per send here).
    twin = random.Random(1)
    for a, b in zip(times, times[1:], strict=False):
        jitter = twin.uniform(0.0, limits.jitter_ms / 1000)
        assert b - a >= limits.min_interval_ms / 1000 + jitter - 1e-6
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len({round(g, 3) for g in gaps}) > 10  # jitter really varies

    # Daily cap per local (Asia/Shanghai) day, reached on day 1 and reset at midnight.
    per_day = Counter(datetime.fromtimestamp(t, SHANGHAI).date() for t in times)
    assert all(c <= limits.daily_cap for c in per_day.values())
    days = sorted(per_day)
    assert len(days) >= 2 and per_day[days[0]] == limits.daily_cap
    first_next_day = min(t for t in times if datetime.fromtimestamp(t, SHANGHAI).date() == days[1])
    assert first_next_day == datetime(2027, 3, 2, tzinfo=SHANGHAI).timestamp()
    assert any("daily send cap 120" in r for r in reports)

    # Within a room, a queued higher-priority message never waits behind a lower one.
    sent_at = {mid: t for t, _, mid in send.sent}
    for room in rooms:
        mine = [
            (n, info[n][1], info[n][2], sent_at[delivered[n]])
            for n in delivered
            if info[n][0] == room
        ]
        for _, p1, sub1, at1 in mine:
            for _, p2, _, at2 in mine:
                if p1 < p2 and sub1 < at2:
                    assert at1 <= at2


# -- ordering and fairness ----------------------------------------------------


async def test_quiet_room_is_not_starved_by_a_busy_one() -> None:
    clock, send, box = make(max_queue_per_room=1000, merge_max_chars=0)
    for i in range(500):
        box.submit(msg("busy", f"busy {i}"))
    quiet = box.submit(msg("quiet", "hello"))
    await box.start()
    await drive(clock, asyncio.ensure_future(quiet), limit=60)
    assert send.rooms()[:2] == ["busy", "quiet"]
    await box.stop(drain_timeout=0)


async def test_busy_rooms_alternate() -> None:
    clock, send, box = make(max_queue_per_room=1000, merge_max_chars=0)
    for i in range(100):
        box.submit(msg("a", f"a {i}"))
        box.submit(msg("b", f"b {i}"))
        box.submit(msg("c", f"c {i}", Priority.BULK))
    await box.start()
    await settle()  # let the sender take its first turn before time moves
    await clock.advance(300)
    rooms = send.rooms()
    assert len(rooms) > 20
    assert "c" not in rooms[:20]  # BULK waits while replies are sendable
    assert all(x != y for x, y in zip(rooms[:20], rooms[1:20], strict=False))
    await box.stop(drain_timeout=0)


async def test_throttled_room_does_not_hold_up_others() -> None:
    clock, send, box = make(max_queue_per_room=100, merge_max_chars=0)
    for i in range(60):
        box.submit(msg("hot", f"hot {i}"))
        box.submit(msg("cold", f"cold {i}", Priority.BULK))
    await box.start()
    await settle()
    await clock.advance(180)
    hot = [t for t, o, _ in send.sent if o.conversation_id == "hot"]
    cold = [t for t, o, _ in send.sent if o.conversation_id == "cold"]
    assert max_in_window(hot) == 12  # the per-room limit binds...
    assert len(cold) >= 30  # ...and the lower-priority room uses the slack
    assert max_in_window(hot + cold) <= 30
    await box.stop(drain_timeout=0)


async def test_higher_priority_first_across_rooms() -> None:
    clock, send, box = make(merge_max_chars=0)
    for i in range(3):
        box.submit(msg("A", f"reply {i}"))
    box.submit(msg("C", "welcome", Priority.BULK))
    box.submit(msg("B", "to manager", Priority.MANAGER))
    box.submit(msg("D", "announcement", Priority.ANNOUNCE))
    await box.start()
    await run_idle(clock, box)
    assert send.rooms() == ["B", "D", "A", "A", "A", "C"]
    await box.stop()


# -- queue bound, coalescing, merging -----------------------------------------


async def test_coalesce_key_replaces_the_queued_message() -> None:
    clock, send, box = make()
    old = box.submit(msg("r", "welcome a", Priority.BULK, coalesce_key="welcome"))
    other = box.submit(msg("s", "welcome z", Priority.BULK, coalesce_key="welcome"))
    new = box.submit(msg("r", "welcome a, b", Priority.BULK, coalesce_key="welcome"))
    await box.start()
    await run_idle(clock, box)
    assert old.result() is None and old.reason == COALESCED
    assert new.result() is not None and other.result() is not None  # key is per room
    assert sorted(o.text for _, o, _ in send.sent) == ["welcome a, b", "welcome z"]
    assert box.stats().coalesced == 1
    await box.stop()


async def test_queued_replies_merge_with_mentions_unioned() -> None:
    clock, send, box = make(merge_max_chars=30)
    f1 = box.submit(msg("r", "one", mention_ids=("u1",)))
    f2 = box.submit(msg("r", "two", mention_ids=("u1", "u2")))
    boss = box.submit(msg("r", "boss", Priority.MANAGER))
    f3 = box.submit(msg("r", "x" * 30))  # too long to join
    await box.start()
    await run_idle(clock, box)
    texts = [(o.text, o.mention_ids) for _, o, _ in send.sent]
    assert texts == [("boss", ()), ("one\ntwo", ("u1", "u2")), ("x" * 30, ())]
    assert f1.result() == f2.result() and f2.reason == MERGED
    assert boss.result() != f1.result() != f3.result()
    assert box.stats().merged == 1 and box.stats().sent == 3
    await box.stop()


async def test_full_queue_drops_lowest_priority_oldest_first() -> None:
    clock, send, box = make(max_queue_per_room=3, merge_max_chars=0)
    a = box.submit(msg("r", "reply a"))
    m = box.submit(msg("r", "manager", Priority.MANAGER))
    b = box.submit(msg("r", "welcome", Priority.BULK))
    n = box.submit(msg("r", "announce", Priority.ANNOUNCE))
    assert b.done() and b.result() is None and b.reason == QUEUE_FULL
    c = box.submit(msg("r", "reply c"))
    assert a.done() and a.reason == QUEUE_FULL
    w = box.submit(msg("r", "late welcome", Priority.BULK))  # lowest: itself dropped
    assert w.done() and w.reason == QUEUE_FULL
    assert box.stats().dropped == {QUEUE_FULL: 3} and box.stats().queued == {"r": 3}
    await box.start()
    await run_idle(clock, box)
    assert [o.text for _, o, _ in send.sent] == ["manager", "announce", "reply c"]
    assert all(f.result() for f in (m, n, c))
    await box.stop()


# -- errors -------------------------------------------------------------------


async def test_transient_error_is_retried_with_backoff_while_others_go_on() -> None:
    clock, send, box = make()
    send.errors = {"A": [ConnectionError("reset"), TransientSendError("timeout")]}
    fa = box.submit(msg("A", "hello A"))
    fb = box.submit(msg("B", "hello B"))
    await box.start()
    await run_idle(clock, box)
    a_times = [t for t, o in send.attempts if o.conversation_id == "A"]
    assert len(a_times) == 3
    assert a_times[1] - a_times[0] >= 2.0  # backoff base
    assert a_times[2] - a_times[1] >= 4.0  # doubled
    assert [o.conversation_id for _, o in send.attempts][:2] == ["A", "B"]  # B not held up
    assert fa.result() is not None and fb.result() is not None
    s = box.stats()
    assert (s.retried, s.sent, s.attempts, s.dropped) == (2, 2, 4, {})
    await box.stop()


async def test_permanent_failure_is_dropped_after_max_retries() -> None:
    clock, send, box = make(max_retries=3)
    send.always = RuntimeError("room not found")
    fut = box.submit(msg("A", "hello"))
    await box.start()
    await run_idle(clock, box)
    times = [t for t, _ in send.attempts]
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 2 and gaps[1] >= 4 and gaps[2] >= 8
    assert fut.result() is None and fut.reason == FAILED
    s = box.stats()
    assert s.dropped == {FAILED: 1} and s.retried == 3 and s.sent == 0
    await box.stop()


async def test_rate_limit_pauses_everything_and_reports_on_resume() -> None:
    clock, send, box = make()
    reports: list[tuple[float, str]] = []

    async def on_report(text: str) -> None:
        reports.append((clock.now(), text))

    box = Outbox(send, Limits(), clock=clock, rng=random.Random(1), on_report=on_report)
    send.errors = {"A": [RuntimeError("send failed: 操作过于频繁，请稍后再试")]}
    fa = box.submit(msg("A", "hello A"))
    fb = box.submit(msg("B", "hello B"))
    await box.start()
    await settle()
    t0 = clock.now()
    assert len(send.attempts) == 1 and box.stats().paused
    await clock.advance(3599)
    assert len(send.attempts) == 1 and reports == []  # nobody sends during the cooldown
    await run_idle(clock, box)
    assert [o.conversation_id for _, o in send.attempts] == ["A", "A", "B"]
    assert send.attempts[1][0] >= t0 + 3600
    assert fa.result() is not None and fb.result() is not None
    assert len(reports) == 1
    at, text = reports[0]
    assert at >= t0 + 3600
    assert "paused for 3600 s" in text and "resumed" in text and "频繁" in text
    s = box.stats()
    assert s.rate_limited == 1 and s.retried == 0 and not s.paused
    await box.stop()


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RuntimeError("操作过于频繁"), RateLimitedError),
        (RuntimeError("发送太频繁了"), RateLimitedError),
        (RuntimeError("Rate limit exceeded"), RateLimitedError),
        (RuntimeError("message too frequent"), RateLimitedError),
        (RateLimitedError("x"), RateLimitedError),
        (ConnectionError("reset by peer"), TransientSendError),
        (TimeoutError(), TransientSendError),
        (TransientSendError("x"), TransientSendError),
    ],
)
def test_classify_send_error(exc: Exception, kind: type[Exception]) -> None:
    assert type(classify_send_error(exc)) is kind


def test_classify_looks_at_the_cause() -> None:
    try:
        try:
            raise RuntimeError("code 1102: 操作过于频繁")
        except RuntimeError as inner:
            raise ConnectionError("grpc error") from inner
    except ConnectionError as outer:
        assert isinstance(classify_send_error(outer), RateLimitedError)


# -- lifecycle ----------------------------------------------------------------


async def test_stop_drains_the_queue() -> None:
    clock, send, box = make(merge_max_chars=0)
    futs = [box.submit(msg("r", f"m{i}")) for i in range(3)]
    await box.start()
    stopping = asyncio.ensure_future(box.stop(drain_timeout=30))
    await drive(clock, stopping)
    assert [f.result() for f in futs] == ["m1", "m2", "m3"]
    assert clock.sleepers == 0


async def test_stop_after_timeout_cancels_what_is_left() -> None:
    clock, send, box = make(merge_max_chars=0)
    futs = [box.submit(msg("r", f"m{i}")) for i in range(20)]
    await box.start()
    stopping = asyncio.ensure_future(box.stop(drain_timeout=5))
    await drive(clock, stopping)
    sent = [f for f in futs if f.result() is not None]
    left = [f for f in futs if f.result() is None]
    assert 1 <= len(sent) <= 4 and len(sent) + len(left) == 20
    assert all(f.reason == STOPPED for f in left)
    assert box.stats().dropped == {STOPPED: len(left)} and box.stats().queued == {}
    late = box.submit(msg("r", "too late"))
    assert late.done() and late.result() is None and late.reason == STOPPED
    assert clock.sleepers == 0
    await box.wait_idle()


async def test_stop_interrupts_a_hanging_send() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def hang(out: Outgoing) -> str:
        await never.wait()
        return "never"

    box = Outbox(hang, Limits(), clock=clock)
    fut = box.submit(msg("r", "hi"))
    await box.start()
    await settle()
    assert box.stats().in_flight
    stopping = asyncio.ensure_future(box.stop(drain_timeout=1))
    await drive(clock, stopping)
    assert fut.result() is None and fut.reason == STOPPED
    assert not box.stats().in_flight


async def test_stop_before_start_resolves_everything() -> None:
    _, _, box = make()
    fut = box.submit(msg("r", "hi"))
    await box.stop()
    assert fut.result() is None and fut.reason == STOPPED

"""Scheduler facade: local fire times, exactly once across restarts, catch-up, quiet hours.

Time is driven by FakeClock; nothing sleeps on the wall clock.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock, settle
from bot.scheduler import (
    Firing,
    MemoryLedger,
    QuietHours,
    Scheduler,
    defer_past_quiet,
    parse_cron,
    parse_quiet_hours,
)

TZ = "Asia/Shanghai"
SH = ZoneInfo(TZ)


def at(s: str) -> datetime:
    """Wall time in Asia/Shanghai, e.g. at("2026-11-24 08:00")."""
    return datetime.fromisoformat(s).replace(tzinfo=SH)


def clock_at(s: str) -> FakeClock:
    return FakeClock(at(s).timestamp())


async def advance_to(clock: FakeClock, s: str) -> None:
    await clock.advance(at(s).timestamp() - clock.now())


class Recorder:
    def __init__(self) -> None:
        self.fired: list[Firing] = []

    async def __call__(self, f: Firing) -> None:
        self.fired.append(f)

    def times(self) -> list[str]:
        return [f.scheduled.isoformat() for f in self.fired]

    def names(self) -> list[str]:
        return [f.name for f in self.fired]


def make(
    clock: FakeClock,
    ledger: MemoryLedger,
    missed: Recorder | None = None,
    grace: float = 600,
) -> Scheduler:
    return Scheduler(tz=TZ, ledger=ledger, clock=clock, misfire_grace_s=grace, on_missed=missed)


@pytest.fixture
def host_tz() -> Iterator[None]:
    """Restore the host TZ after a test changes it."""
    old = os.environ.get("TZ")
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


# ----------------------------------------------------------------- local times


async def test_one_off_fires_at_local_time() -> None:
    clock = clock_at("2026-11-24 07:59")
    rec = Recorder()
    s = make(clock, MemoryLedger())
    s.once("ann-1", at("2026-11-24 08:00"), rec)
    assert s.next_fire("ann-1") == at("2026-11-24 08:00")
    await s.start()
    await advance_to(clock, "2026-11-24 07:59:59")
    assert rec.fired == []
    await advance_to(clock, "2026-11-24 08:01")
    assert rec.times() == ["2026-11-24T08:00:00+08:00"]
    assert rec.fired[0].late_by == pytest.approx(0, abs=1e-3)
    assert rec.fired[0].key == "ann-1@2026-11-24T08:00:00+08:00"
    assert s.names() == []  # a finished one-off is gone
    await s.shutdown()


async def test_naive_datetime_means_configured_timezone() -> None:
    clock = clock_at("2026-11-24 07:59")
    rec = Recorder()
    s = make(clock, MemoryLedger())
    s.once("a", datetime(2026, 11, 24, 8, 0), rec)
    s.once("b", datetime(2026, 11, 24, 0, 0, 30, tzinfo=ZoneInfo("UTC")), rec)  # 08:00:30 local
    await s.start()
    await advance_to(clock, "2026-11-24 08:01")
    assert rec.times() == ["2026-11-24T08:00:00+08:00", "2026-11-24T08:00:30+08:00"]
    await s.shutdown()


async def test_one_off_and_cron_across_day_boundary() -> None:
    clock = clock_at("2026-11-24 23:29")
    rec = Recorder()
    s = make(clock, MemoryLedger())
    s.cron("late", "30 23 * * *", rec)
    s.cron("midnight", "0 0 * * *", rec)
    s.cron("nov25", "5 0 25 11 *", rec)
    s.once("one", at("2026-11-25 00:07"), rec)
    await s.start()
    await advance_to(clock, "2026-11-25 00:10")
    assert list(zip(rec.names(), rec.times(), strict=True)) == [
        ("late", "2026-11-24T23:30:00+08:00"),
        ("midnight", "2026-11-25T00:00:00+08:00"),
        ("nov25", "2026-11-25T00:05:00+08:00"),
        ("one", "2026-11-25T00:07:00+08:00"),
    ]
    # UTC is still on the 24th at local midnight: the date is the local one
    assert rec.fired[1].scheduled.astimezone(ZoneInfo("UTC")).day == 24
    assert s.next_fire("late") == at("2026-11-25 23:30")
    assert s.next_fire("midnight") == at("2026-11-26 00:00")
    assert s.next_fire("nov25") == at("2027-11-25 00:05")
    await s.shutdown()


def _occurrences(expr: str, start: str, n: int) -> list[str]:
    trig = parse_cron(expr, SH)
    out: list[str] = []
    t = at(start)
    for _ in range(n):
        t = trig.get_next_fire_time(None, t)
        out.append(t.strftime("%a %m-%d %H:%M"))
        t += timedelta(seconds=1)
    return out


def test_cron_weekdays_follow_crontab_not_apscheduler() -> None:
    # 2026-11-24 is a Tuesday. APScheduler 3's from_crontab would read 1-5 as Tue-Sat.
    assert _occurrences("0 8 * * 1-5", "2026-11-24 07:59", 5) == [
        "Tue 11-24 08:00",
        "Wed 11-25 08:00",
        "Thu 11-26 08:00",
        "Fri 11-27 08:00",
        "Mon 11-30 08:00",
    ]
    assert _occurrences("0 9 * * 0", "2026-11-24 00:00", 2) == [
        "Sun 11-29 09:00",
        "Sun 12-06 09:00",
    ]
    assert _occurrences("0 9 * * 7", "2026-11-24 00:00", 1) == ["Sun 11-29 09:00"]
    assert _occurrences("0 9 * * fri-sun", "2026-11-24 00:00", 3) == [
        "Fri 11-27 09:00",
        "Sat 11-28 09:00",
        "Sun 11-29 09:00",
    ]
    assert _occurrences("0 9 * * sat,sun", "2026-11-24 00:00", 2) == [
        "Sat 11-28 09:00",
        "Sun 11-29 09:00",
    ]
    assert _occurrences("0 9 * * */2", "2026-11-24 00:00", 3) == [  # Sun, Tue, Thu, Sat
        "Tue 11-24 09:00",
        "Thu 11-26 09:00",
        "Sat 11-28 09:00",
    ]
    # crontab: day of month and day of week both restricted → either matches
    assert _occurrences("0 8 1 * 1", "2026-11-24 00:00", 3) == [
        "Mon 11-30 08:00",
        "Tue 12-01 08:00",
        "Mon 12-07 08:00",
    ]


async def _scenario_fire_times() -> list[tuple[str, float]]:
    clock = clock_at("2026-11-24 07:59")
    rec = Recorder()
    s = make(clock, MemoryLedger())
    s.once("once", at("2026-11-24 08:00"), rec)
    s.cron("cron", "0 0,8 * * *", rec)
    s.every("every", 6 * 3600, rec, start=at("2026-11-24 06:00"))
    await s.start()
    await advance_to(clock, "2026-11-25 08:01")
    await s.shutdown()
    return [(f"{f.name} {f.scheduled.isoformat()}", f.scheduled.timestamp()) for f in rec.fired]


async def test_fire_times_identical_with_host_tz_utc_and_shanghai(host_tz: None) -> None:
    results = {}
    for host in ("UTC", "Asia/Shanghai", "America/New_York"):
        os.environ["TZ"] = host
        time.tzset()
        results[host] = await _scenario_fire_times()
    assert results["UTC"] == results["Asia/Shanghai"] == results["America/New_York"]
    assert sorted(results["UTC"]) == sorted(
        [
            ("once 2026-11-24T08:00:00+08:00", at("2026-11-24 08:00").timestamp()),
            ("cron 2026-11-24T08:00:00+08:00", at("2026-11-24 08:00").timestamp()),
            ("every 2026-11-24T12:00:00+08:00", at("2026-11-24 12:00").timestamp()),
            ("every 2026-11-24T18:00:00+08:00", at("2026-11-24 18:00").timestamp()),
            ("every 2026-11-25T00:00:00+08:00", at("2026-11-25 00:00").timestamp()),
            ("cron 2026-11-25T00:00:00+08:00", at("2026-11-25 00:00").timestamp()),
            ("every 2026-11-25T06:00:00+08:00", at("2026-11-25 06:00").timestamp()),
            ("cron 2026-11-25T08:00:00+08:00", at("2026-11-25 08:00").timestamp()),
        ]
    )
    # 08:00 in Shanghai is 00:00 UTC, whatever the host thinks
    assert (
        at("2026-11-24 08:00").timestamp()
        == datetime(2026, 11, 24, 0, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    )


# ------------------------------------------------------------ exactly once


async def test_restart_right_after_firing_does_not_repeat() -> None:
    clock = clock_at("2026-11-24 07:59")
    ledger = MemoryLedger()
    rec, missed = Recorder(), Recorder()

    def register(s: Scheduler) -> None:
        s.once("once", at("2026-11-24 08:00"), rec)
        s.cron("daily", "0 8 * * *", rec, since=at("2026-11-24 07:30"))
        s.every("hourly", 3600, rec, start=at("2026-11-01 00:00"), since=at("2026-11-24 07:30"))

    s1 = make(clock, ledger, missed)
    register(s1)
    await s1.start()
    await advance_to(clock, "2026-11-24 08:00:01")
    await s1.shutdown()
    assert sorted(rec.names()) == ["daily", "hourly", "once"]

    s2 = make(clock, ledger, missed)  # restart one second later, same durable ledger
    register(s2)
    await s2.start()
    await advance_to(clock, "2026-11-24 08:30")
    await s2.shutdown()
    assert sorted(rec.names()) == ["daily", "hourly", "once"]
    assert missed.fired == []


async def test_restart_after_downtime_within_grace_fires_late_once() -> None:
    clock = clock_at("2026-11-24 07:59")
    ledger = MemoryLedger()
    rec, missed = Recorder(), Recorder()

    def register(s: Scheduler) -> None:
        s.once("once", at("2026-11-24 08:00"), rec)
        s.cron("daily", "0 8 * * *", rec, since=at("2026-11-23 12:00"))

    s1 = make(clock, ledger, missed)
    register(s1)
    await s1.start()
    await advance_to(clock, "2026-11-24 07:59:30")
    await s1.shutdown()  # down from 07:59:30 to 08:05
    await advance_to(clock, "2026-11-24 08:05")
    assert rec.fired == []

    s2 = make(clock, ledger, missed)
    register(s2)
    await s2.start()
    await settle()
    assert sorted(rec.names()) == ["daily", "once"]
    assert all(f.late_by == pytest.approx(300) for f in rec.fired)
    assert all(f.scheduled == at("2026-11-24 08:00") for f in rec.fired)
    assert missed.fired == []
    await s2.shutdown()

    s3 = make(clock, ledger, missed)  # and again: nothing repeats
    register(s3)
    await s3.start()
    await advance_to(clock, "2026-11-24 09:00")
    await s3.shutdown()
    assert len(rec.fired) == 2 and missed.fired == []


async def test_restart_after_downtime_beyond_grace_skips_and_reports_once() -> None:
    clock = clock_at("2026-11-24 07:59")
    ledger = MemoryLedger()
    rec, missed = Recorder(), Recorder()

    def register(s: Scheduler) -> None:
        s.once("once", at("2026-11-24 08:00"), rec)
        s.cron("daily", "0 8 * * *", rec, since=at("2026-11-23 12:00"))

    await advance_to(clock, "2026-11-24 08:15")  # bot was down
    for _ in range(3):  # three restarts: a single report per job
        s = make(clock, ledger, missed)
        register(s)
        await s.start()
        await settle()
        await s.shutdown()
    assert rec.fired == []
    assert sorted(missed.names()) == ["daily", "once"]
    assert all(f.late_by == pytest.approx(900) for f in missed.fired)

    s = make(clock, ledger, missed)
    register(s)
    await s.start()
    await advance_to(clock, "2026-11-25 08:01")  # the cron goes on normally
    await s.shutdown()
    assert rec.times() == ["2026-11-25T08:00:00+08:00"]
    assert len(missed.fired) == 2


async def test_missed_reports_route_by_name_prefix() -> None:
    clock = clock_at("2026-11-24 08:30")  # everything below is beyond grace
    ledger = MemoryLedger()
    catch_all, announce, hold = Recorder(), Recorder(), Recorder()
    s = make(clock, ledger, catch_all)
    s.on_missed_for("announce:", announce)
    s.on_missed_for("announce:hold:", hold)  # longest prefix wins
    for name in ("announce:1", "announce:hold:1", "lottery-draw:1"):
        s.once(name, at("2026-11-24 08:00"), Recorder())
    await s.start()
    await settle()
    await s.shutdown()
    assert announce.names() == ["announce:1"]
    assert hold.names() == ["announce:hold:1"]
    assert catch_all.names() == ["lottery-draw:1"]
    with pytest.raises(ValueError):
        s.on_missed_for("", announce)
    with pytest.raises(TypeError):
        s.on_missed_for("x:", lambda f: None)  # type: ignore[arg-type,return-value]


async def test_long_downtime_cron_fires_latest_and_reports_older_once() -> None:
    clock = clock_at("2026-11-24 08:05")
    ledger = MemoryLedger()
    rec, missed = Recorder(), Recorder()
    for _ in range(2):
        s = make(clock, ledger, missed)
        s.cron("daily", "0 8 * * *", rec, since=at("2026-11-20 12:00"))  # down for days
        await s.start()
        await settle()
        await s.shutdown()
    assert rec.times() == ["2026-11-24T08:00:00+08:00"]
    assert [f.scheduled for f in missed.fired] == [at("2026-11-23 08:00")]  # one report


async def test_dense_cron_coalesces_within_grace_without_later_spam() -> None:
    clock = clock_at("2026-11-24 07:40:30")
    ledger = MemoryLedger()
    rec, missed = Recorder(), Recorder()

    def start_one() -> Scheduler:
        s = make(clock, ledger, missed)
        s.cron("minutely", "* * * * *", rec, since=at("2026-11-24 07:00"))
        return s

    s = start_one()  # down since 07:00
    await s.start()
    await settle()
    assert rec.times() == ["2026-11-24T07:40:00+08:00"]  # 07:31..07:40 coalesced
    assert [f.scheduled for f in missed.fired] == [at("2026-11-24 07:30")]
    await advance_to(clock, "2026-11-24 07:41:10")
    await s.shutdown()
    assert len(rec.fired) == 2

    s = start_one()  # restart: 07:31 is now beyond grace but was coalesced, not missed
    await s.start()
    await settle()
    await s.shutdown()
    assert len(rec.fired) == 2 and len(missed.fired) == 1


async def test_cron_without_since_does_not_catch_up() -> None:
    clock = clock_at("2026-11-24 08:05")
    rec, missed = Recorder(), Recorder()
    s = make(clock, MemoryLedger(), missed)
    s.cron("daily", "0 8 * * *", rec)  # a new announcement created after today's time
    await s.start()
    await settle()
    assert rec.fired == [] and missed.fired == []
    assert s.next_fire("daily") == at("2026-11-25 08:00")
    await s.shutdown()


async def test_every_fires_on_its_anchored_grid() -> None:
    clock = clock_at("2026-11-24 07:59")
    rec = Recorder()
    s = make(clock, MemoryLedger())
    s.every("tick", 90, rec, start=at("2026-11-24 07:00"))
    await s.start()
    await advance_to(clock, "2026-11-24 08:03")
    assert rec.times() == [  # 07:00 + n * 90 s
        "2026-11-24T08:00:00+08:00",
        "2026-11-24T08:01:30+08:00",
        "2026-11-24T08:03:00+08:00",
    ]
    with pytest.raises(ValueError, match="interval"):
        s.every("bad", 0, rec)
    await s.shutdown()


# ---------------------------------------------------------- remove / replace


async def test_remove_and_replace() -> None:
    clock = clock_at("2026-11-24 07:59")
    rec_old, rec_new = Recorder(), Recorder()
    s = make(clock, MemoryLedger())
    await s.start()
    s.once("a", at("2026-11-24 08:00"), rec_old)
    s.once("a", at("2026-11-24 08:02"), rec_new)  # replaces
    s.cron("c", "* * * * *", rec_old)
    s.cron("c", "*/2 * * * *", rec_new)  # replaces
    s.once("gone", at("2026-11-24 08:00"), rec_old)
    assert s.remove("gone") is True
    assert s.remove("gone") is False
    assert s.names() == ["a", "c"]
    await settle()
    assert clock.sleepers == 2  # cancelled jobs no longer wait
    await advance_to(clock, "2026-11-24 08:03")
    assert rec_old.fired == []
    assert list(zip(rec_new.names(), rec_new.times(), strict=True)) == [
        ("c", "2026-11-24T08:00:00+08:00"),
        ("a", "2026-11-24T08:02:00+08:00"),
        ("c", "2026-11-24T08:02:00+08:00"),
    ]
    await s.shutdown()


async def test_callback_removing_its_own_job_still_completes() -> None:
    clock = clock_at("2026-11-24 07:59")
    done: list[str] = []
    s = make(clock, MemoryLedger())

    async def fire(f: Firing) -> None:
        s.remove(f.name)
        await asyncio.sleep(0)
        done.append(f.name)

    s.cron("self", "0 8 * * *", fire)
    await s.start()
    await advance_to(clock, "2026-11-24 08:01")
    assert done == ["self"] and s.names() == []
    await s.shutdown()


async def test_failing_callback_does_not_stop_the_job() -> None:
    clock = clock_at("2026-11-24 07:59:30")
    calls: list[str] = []
    s = make(clock, MemoryLedger())

    async def flaky(f: Firing) -> None:
        calls.append(f.scheduled.strftime("%H:%M"))
        if len(calls) == 1:
            raise RuntimeError("send failed")

    s.cron("m", "* * * * *", flaky)
    await s.start()
    await advance_to(clock, "2026-11-24 08:01:30")
    assert calls == ["08:00", "08:01"]
    await s.shutdown()


def test_plain_def_job_is_rejected() -> None:
    def sync_job(f: Firing) -> None:
        pass

    s = make(FakeClock(), MemoryLedger())
    with pytest.raises(TypeError, match="async"):
        s.once("sync", at("2026-11-24 08:00"), sync_job)  # type: ignore[arg-type]
    s.once("partial", at("2026-11-24 08:00"), functools.partial(Recorder()))
    assert s.names() == ["partial"]


async def test_job_count_stable_after_10_restarts() -> None:
    clock = clock_at("2026-11-24 07:58")
    ledger = MemoryLedger()
    rec = Recorder()
    for i in range(10):
        s = make(clock, ledger)
        for _ in range(2):  # storage rebuild, plus a duplicate reload
            s.once("once", at("2026-11-24 12:00"), rec)
            s.cron("cron", "* * * * *", rec, since=at("2026-11-24 07:58"))
            s.every("every", 30, rec, start=at("2026-11-24 07:00"), since=at("2026-11-24 07:58"))
        await s.start()
        s.cron("cron", "* * * * *", rec, since=at("2026-11-24 07:58"))  # re-register live
        assert s.names() == ["cron", "every", "once"], i
        await settle()
        assert clock.sleepers == 3, i
        await clock.advance(45)
        await s.shutdown()
        assert clock.sleepers == 0
    keys = [f.key for f in rec.fired]
    assert len(keys) == len(set(keys))
    # 07:58 → 08:05:30: every minute and every 30 s fired each time exactly once
    assert Counter(rec.names()) == {"cron": 8, "every": 16}


async def test_200_one_offs_in_the_same_minute_each_fire_once() -> None:
    clock = clock_at("2026-11-24 07:59")
    ledger = MemoryLedger()
    rec, missed = Recorder(), Recorder()
    base = at("2026-11-24 08:00")

    def register(s: Scheduler) -> None:
        for i in range(200):
            s.once(f"ann-{i}", base + timedelta(seconds=(i % 4) * 15), rec)

    s = make(clock, ledger, missed)
    register(s)
    await s.start()
    await advance_to(clock, "2026-11-24 08:01")
    await settle()
    await s.shutdown()
    assert len(rec.fired) == 200
    assert len({f.name for f in rec.fired}) == 200
    assert len(ledger.claimed) == 200

    s = make(clock, ledger, missed)  # restart within grace: none repeats
    register(s)
    await s.start()
    await settle()
    await s.shutdown()
    assert len(rec.fired) == 200 and missed.fired == []


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("61 * * * *", "minute field '61'"),
        ("0 25 * * *", "hour field '25'"),
        ("0 8 32 * *", "day of month field '32'"),
        ("0 8 * 13 *", "month field '13'"),
        ("0 8 * * funday", "day of week field 'funday'"),
        ("0 8 * * 8", "day of week field '8'"),
        ("0 8 * *", "4 fields"),
        ("", "0 fields"),
        ("0 8 * * * *", "6 fields"),
        ("0 0 30 2 *", "never fires"),
        ("x y z w v", "minute field 'x'"),
    ],
)
async def test_bad_cron_expression_is_a_readable_value_error(expr: str, hint: str) -> None:
    s = make(FakeClock(), MemoryLedger())
    with pytest.raises(ValueError, match="bad cron expression") as err:
        s.cron("bad", expr, Recorder())
    assert hint in str(err.value)
    assert s.names() == []


def test_bad_timezone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        Scheduler(tz="Mars/Olympus", ledger=MemoryLedger())


# ----------------------------------------------------------------- quiet hours


def test_parse_quiet_hours() -> None:
    assert parse_quiet_hours("22:00-08:00") == QuietHours(
        datetime(2000, 1, 1, 22, 0).time(), datetime(2000, 1, 1, 8, 0).time()
    )
    assert parse_quiet_hours(" 9:30 - 12:00 ").crosses_midnight is False
    assert str(parse_quiet_hours("22:00-08:00")) == "22:00-08:00"
    for bad in ("22:00", "24:00-08:00", "22:60-08:00", "22:00-22:00", "ten-eight", ""):
        with pytest.raises(ValueError, match="bad quiet hours"):
            parse_quiet_hours(bad)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-11-24 21:59", "2026-11-24 21:59"),
        ("2026-11-24 22:00", "2026-11-25 08:00"),
        ("2026-11-24 23:30", "2026-11-25 08:00"),
        ("2026-11-30 23:30", "2026-12-01 08:00"),  # month boundary
        ("2026-12-31 23:59", "2027-01-01 08:00"),  # year boundary
        ("2026-11-25 00:00", "2026-11-25 08:00"),
        ("2026-11-25 07:59", "2026-11-25 08:00"),
        ("2026-11-25 08:00", "2026-11-25 08:00"),
        ("2026-11-25 12:00", "2026-11-25 12:00"),
    ],
)
def test_defer_past_quiet_crossing_midnight(when: str, expected: str) -> None:
    assert defer_past_quiet(at(when), "22:00-08:00") == at(expected)


def test_defer_past_quiet_same_day_window() -> None:
    w = parse_quiet_hours("12:00-14:00")
    assert defer_past_quiet(at("2026-11-24 13:15"), w) == at("2026-11-24 14:00")
    assert defer_past_quiet(at("2026-11-24 11:59"), w) == at("2026-11-24 11:59")
    assert defer_past_quiet(at("2026-11-24 14:00"), w) == at("2026-11-24 14:00")
    assert defer_past_quiet(at("2026-11-24 13:15"), w).tzinfo is SH

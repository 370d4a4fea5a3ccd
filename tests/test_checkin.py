"""Check-ins over the sandbox gateway: once a day, ranks, midnight in Asia/Shanghai, streaks,
leaderboard, and the member's own record (`我的`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.gateway import SandboxGateway, World
from tests.conftest import AQIANG, MANAGER, ROOM, XIAOHONG, XIAOMING, BotHarness, make_settings
from tests.test_signup import restart, settle_notices

TZ = ZoneInfo("Asia/Shanghai")
DAY = 86_400


def at(y: int, mo: int, d: int, h: int, mi: int) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp()


@pytest.fixture
async def night(world: World, tmp_path: Path) -> AsyncIterator[tuple[BotHarness, FakeClock]]:
    """A bot on a FakeClock at 23:58 Shanghai time (15:58 UTC: the same UTC day as 00:02)."""
    clock = FakeClock(start=at(2027, 1, 15, 23, 58))
    gw = SandboxGateway(world, heartbeat_s=0, clock=clock)
    await gw.start()
    h = BotHarness(gw, make_settings(tmp_path / "data"))
    try:
        await h.start(clock=clock)
        await settle_notices(h)
        yield h, clock
    finally:
        if h.app is not None:
            await h.ctx.outbox.wait_idle()  # never stop with a send in flight on a fake clock
        await h.stop()
        await gw.stop()
    if h.errors:
        raise AssertionError(f"handler errors: {h.errors!r}") from h.errors[0]


async def test_check_in_twice_the_same_day(night: tuple[BotHarness, FakeClock]) -> None:
    h, clock = night
    first = (await h.ask("签到")).text
    assert "签到成功！今天第 1 位，已连续签到 1 天，累计 1 天。" in first
    assert first.startswith("@小明")
    again = (await h.ask("/checkin")).text
    assert "你今天已经签到过了（今天第 1 位，连续 1 天）" in again
    assert "今天第 2 位" in (await h.ask("签到", by=XIAOHONG)).text
    await clock.advance(60)  # 23:59, still the same day
    assert "已经签到过了" in (await h.ask("签到")).text
    day = datetime(2027, 1, 15).toordinal()
    assert h.store.checkins.days(ROOM, XIAOMING) == (day,)
    await restart(h, clock)  # acknowledged check-ins are on disk
    assert h.store.checkins.days(ROOM, XIAOMING) == (day,)
    assert "已经签到过了" in (await h.ask("签到")).text
    assert day in h.store.activity.active_days(ROOM)[XIAOMING]


async def test_across_midnight_in_shanghai(night: tuple[BotHarness, FakeClock]) -> None:
    h, clock = night
    assert "第 1 位" in (await h.ask("签到")).text  # 23:58 on the 15th (15:58 UTC)
    await clock.advance(4 * 60)  # 00:02 on the 16th (16:02 UTC, still the 15th in UTC)
    reply = (await h.ask("签到")).text
    assert "今天第 1 位，已连续签到 2 天，累计 2 天" in reply
    assert h.store.checkins.days(ROOM, XIAOMING) == (datetime(2027, 1, 15).toordinal(),
                                                     datetime(2027, 1, 16).toordinal())


async def test_streak_breaks_after_a_missed_day(night: tuple[BotHarness, FakeClock]) -> None:
    h, clock = night
    await clock.advance(10 * 60)  # 00:08 on the 16th
    await h.say("签到")
    await clock.advance(DAY)  # the 17th
    assert "已连续签到 2 天" in (await h.ask("签到")).text
    await clock.advance(2 * DAY)  # the 19th: the 18th was missed
    reply = (await h.ask("签到")).text
    assert "已连续签到 1 天（最长 2 天），累计 3 天" in reply
    me = (await h.ask("我的")).text
    assert "签到：累计 3 天，当前连续 1 天，最长连续 2 天" in me
    await clock.advance(2 * DAY)  # the 21st, no check-in yesterday: the streak is over
    assert "当前连续 0 天，最长连续 2 天" in (await h.ask("/me")).text


async def test_leaderboard(night: tuple[BotHarness, FakeClock]) -> None:
    h, clock = night
    assert "还没有人签到" in (await h.ask("/checkin top")).text
    await h.say("签到", by=XIAOHONG)
    await clock.advance(DAY)
    for m in (XIAOHONG, AQIANG, XIAOMING):
        await h.say("签到", by=m)
    board = (await h.ask("/checkin top")).text
    assert "签到排行榜" in board
    lines = board.split("\n")[1:]
    assert lines[0] == "1. 小红 2 天（连续 2 天）"
    assert lines[1:] == ["2. 阿强 1 天（连续 1 天）", "3. 小明 1 天（连续 1 天）"]
    assert "用法：/checkin" in (await h.ask("/checkin now")).text


async def test_me_shows_streak_signups_and_works_privately(
        night: tuple[BotHarness, FakeClock]) -> None:
    h, _ = night
    await h.ask("/event new 周六徒步 cap=1 waitlist=1", by=MANAGER)
    await h.ask("/event new 读书会", by=MANAGER)
    await h.say("报名 1", by=XIAOHONG)
    await h.say("报名 1")
    await h.say("报名 2")
    await h.say("签到")
    me = (await h.ask("我的")).text
    assert "小明 在「健身打卡群」的记录：" in me
    assert "签到：累计 1 天，当前连续 1 天，最长连续 1 天" in me
    assert "报名：2 个活动（正式 1，候补 1）" in me
    from handlers.checkin import lottery_summary

    has_lotteries = lottery_summary(h.ctx, ROOM, XIAOMING) is not None
    assert ("抽奖：参加" in me) == has_lotteries
    private = await h.ask("/me", room=None)
    assert private.conversation_id == XIAOMING
    assert "健身打卡群" in private.text and "瑜伽群" in private.text  # both rooms he is in
    assert private.text.count("签到：累计") == 2

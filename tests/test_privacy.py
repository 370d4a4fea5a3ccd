"""Privacy notice, /privacy, /forget with confirmation, opt-in mode, retention purge."""

from __future__ import annotations

from pathlib import Path

from bot.clock import FakeClock
from bot.gateway import SandboxGateway
from handlers.privacy import purge_old
from tests.conftest import ROOM, ROOM2, XIAOHONG, XIAOMING, BotHarness, make_settings


async def test_notice_posted_once_per_room_when_serving_starts(bot: BotHarness) -> None:
    await bot.ctx.outbox.wait_idle()
    for room in (ROOM, ROOM2):
        notices = [t for t in bot.room_messages(room) if "隐私说明" in t]
        assert len(notices) == 1
        assert "/forget" in notices[0] and "365" in notices[0]
    await bot.restart()
    await bot.ctx.outbox.wait_idle()
    assert len([t for t in bot.room_messages(ROOM) if "隐私说明" in t]) == 1


async def test_privacy_command_shows_the_notice(bot: BotHarness) -> None:
    reply = await bot.ask("隐私")
    assert "隐私说明" in reply.text and "/forget" in reply.text


async def test_forget_needs_confirmation_then_removes_personal_data(bot: BotHarness) -> None:
    await bot.say("大家好")
    await bot.say("/admin list")  # refused, and audited under the member's id
    assert any(e.actor_id == XIAOMING for e in bot.store.audit.last(50))
    await bot.store.flush()
    assert bot.store.members.get(ROOM, XIAOMING).name == "小明"
    assert (await bot.ask("/forget confirm")).text.endswith("再在 10 分钟内发送 /forget confirm。")
    assert "/forget confirm" in (await bot.ask("删除我的数据")).text
    assert bot.store.members.get(ROOM, XIAOMING) is not None  # nothing deleted before confirming
    assert "已删除" in (await bot.ask("/forget confirm")).text
    await bot.store.flush()
    assert bot.store.members.get(ROOM, XIAOMING) is None
    assert XIAOMING not in bot.store.activity.active_days(ROOM)
    assert not any(e.actor_id == XIAOMING for e in bot.store.audit.last(50))
    # the room's history keeps the count under a pseudonym
    assert sum(len(d) for d in bot.store.activity.active_days(ROOM).values()) >= 1
    # after a restart the data is still gone (it was on disk before the reply); a member who
    # stays in the room is simply seen again from now on, with no history
    await bot.restart()
    assert XIAOMING not in bot.store.activity.active_days(ROOM)
    assert bot.store.checkins.days(ROOM, XIAOMING) == ()


async def test_opt_in_mode_records_only_after_consent(
    gateway: SandboxGateway, tmp_path: Path
) -> None:
    h = BotHarness(gateway, make_settings(tmp_path / "d", privacy={"mode": "opt-in"}))
    await h.start()
    try:
        await h.say("hello", by=XIAOHONG)
        await h.store.flush()
        assert XIAOHONG not in h.store.activity.active_days(ROOM)
        assert "已同意" in (await h.ask("同意", by=XIAOHONG)).text
        await h.say("hello again", by=XIAOHONG)
        await h.store.flush()
        assert XIAOHONG in h.store.activity.active_days(ROOM)
    finally:
        await h.stop()
    assert not h.errors


async def test_retention_purge_removes_old_activity(
    gateway: SandboxGateway, tmp_path: Path
) -> None:
    clock = FakeClock(start=gateway.clock.now())
    h = BotHarness(gateway, make_settings(tmp_path / "d", privacy={"retention_days": 30}))
    await h.start(clock=clock)
    try:
        old = clock.now() - 40 * 86400
        await h.say("很久以前", timestamp=old)
        await h.say("现在")
        await h.store.flush()
        assert len(h.store.activity.active_days(ROOM)[XIAOMING]) == 2
        await purge_old(h.ctx)
        assert len(h.store.activity.active_days(ROOM)[XIAOMING]) == 1
    finally:
        await h.stop()
    assert not h.errors

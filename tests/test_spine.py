"""The spine over the sandbox gateway: the same gRPC path and stock wechaty client as production."""

from __future__ import annotations

import asyncio

import pytest

from bot.gateway import SandboxGateway
from bot.router import Request, Router, UsageError
from tests.conftest import (
    BOT_ID,
    MANAGER,
    OUTSIDE_ROOM,
    ROOM,
    ROOM2,
    XIAOHONG,
    XIAOMING,
    BotHarness,
)


def pongs(bot: BotHarness) -> int:
    return sum(1 for t in bot.room_messages() if t.endswith("pong"))


async def test_ping_round_trip_mentions_the_sender(bot: BotHarness) -> None:
    reply = await bot.ask("/ping")
    assert reply.text.endswith("pong")
    assert reply.mention_ids == (XIAOMING,)
    assert reply.text.startswith("@小明")


async def test_full_width_slash_and_mention_of_the_bot(bot: BotHarness) -> None:
    assert (await bot.ask("／ping")).text.endswith("pong")
    assert (await bot.ask("/ping", mention_self=True, mention_ids=[BOT_ID])).text.endswith("pong")


async def test_private_chat_is_answered_without_mention(bot: BotHarness) -> None:
    reply = await bot.ask("/ping", room=None)
    assert reply.conversation_id == XIAOMING and reply.text == "pong"


async def test_help_differs_for_member_and_manager(bot: BotHarness) -> None:
    member = (await bot.ask("帮助", by=XIAOMING)).text
    manager = (await bot.ask("/help", by=MANAGER)).text
    assert "/help" in member and "/ping" in member
    assert "管理员命令" not in member
    assert "管理员命令" in manager or "/help" in manager
    assert len(manager) >= len(member)


async def test_rooms_not_served_are_ignored(bot: BotHarness) -> None:
    await bot.silent("/ping", room=OUTSIDE_ROOM)
    assert bot.store.activity.active_days(OUTSIDE_ROOM) == {}


async def test_duplicate_delivery_gets_one_reply(bot: BotHarness) -> None:
    from wechaty.utils.async_helper import SingleIdContainer

    msg_id = await bot.say("/ping")
    assert pongs(bot) == 1
    # wechaty drops repeats it saw in this process; a new process (or a reconnect after its
    # 100k-id container rolled over) would not, so clear it to exercise qunbot's own durable check.
    SingleIdContainer._instance = None
    await bot.gw.redeliver(msg_id)
    assert bot.app is not None
    await bot.ctx.outbox.wait_idle()
    await bot.app.wait_until(lambda: bot.app is not None and bot.app.handled.get(msg_id, 0) >= 2)
    await bot.ctx.outbox.wait_idle()
    assert pongs(bot) == 1


async def test_duplicate_after_restart_is_ignored(bot: BotHarness) -> None:
    from wechaty.utils.async_helper import SingleIdContainer

    msg_id = await bot.say("/ping")
    await bot.restart()
    SingleIdContainer._instance = None  # a new process starts with an empty container
    await bot.gw.redeliver(msg_id)
    assert bot.app is not None
    await bot.app.wait_handled(msg_id)
    await bot.ctx.outbox.wait_idle()
    assert pongs(bot) == 1


async def test_old_message_is_not_answered_but_counted_once(bot: BotHarness) -> None:
    old = bot.ctx.clock.now() - 600
    await bot.silent("/ping", timestamp=old)
    await bot.store.flush()
    days = bot.store.activity.active_days(ROOM)
    assert XIAOMING in days and len(days[XIAOMING]) == 1


async def test_own_echoed_messages_are_ignored(bot: BotHarness) -> None:
    await bot.ask("/ping")
    echoes = [m for m in bot.gw.transcript if m.from_bot]
    assert echoes, "the gateway echoes the bot's sends"
    assert bot.app is not None
    await bot.ctx.outbox.wait_idle()
    for echo in echoes:
        await bot.app.wait_handled(echo.msg_id)
    assert pongs(bot) == 1  # nothing answered the echo
    assert BOT_ID not in bot.store.activity.active_days(ROOM)


async def test_gateway_restart_reconnects_and_runs_login_work_again(bot: BotHarness) -> None:
    app = bot.app
    assert app is not None
    assert app.logins == 1
    jobs_before = sorted(bot.ctx.scheduler.names())
    await bot.gw.stop()
    await app.wait_until(lambda: not app.ready.is_set())
    await bot.gw.restart()
    await app.wait_ready()
    assert app.logins == 2
    assert (await bot.ask("/ping")).text.endswith("pong")
    assert sorted(bot.ctx.scheduler.names()) == jobs_before
    outages = bot.store.outages.list()
    assert len(outages) == 1 and outages[0].end_ts is not None
    # managers hear that the bot is back
    assert any("恢复" in m.text for m in bot.gw.bot_messages(MANAGER))


async def test_stream_ended_by_service_reconnects(bot: BotHarness) -> None:
    app = bot.app
    assert app is not None
    await bot.gw.end_stream()
    await app.wait_until(lambda: app.logins >= 2 and app.ready.is_set())
    assert (await bot.ask("/ping")).text.endswith("pong")


async def test_service_down_at_start_then_up(gateway: SandboxGateway, harness: BotHarness) -> None:
    await gateway.stop()
    start = asyncio.create_task(harness.start())
    await asyncio.sleep(0)  # let the bot begin its first, failing attempt
    await gateway.restart()
    await asyncio.wait_for(start, 20)
    assert (await harness.ask("/ping")).text.endswith("pong")


async def test_watchdog_drops_a_silent_stream(world: object, tmp_path: object) -> None:
    from pathlib import Path

    from tests.conftest import make_settings

    gw = SandboxGateway(world, heartbeat_s=0)  # type: ignore[arg-type]
    await gw.start()
    h = BotHarness(gw, make_settings(Path(str(tmp_path)) / "d", puppet={"watchdog_s": 0.4}))
    try:
        app = await h.start()
        gw.mute = True  # a half-open connection: the stream stays, nothing comes (not even dong)
        await app.wait_until(lambda: app.supervisor is not None and app.supervisor.sessions >= 2)
        gw.mute = False
        await app.wait_ready()
    finally:
        await h.stop()
        await gw.stop()
    assert not h.errors


# --- router mechanics with a throwaway feature --------------------------------------------

demo = Router("demo")


@demo.command("echo", usage="/echo N", zh="回显数字", en="echo a number", where="any")
async def echo(req: Request) -> None:
    if not req.args:
        raise UsageError()
    await req.reply(str(req.int_arg(req.args)))


@demo.command("boom", usage="/boom", zh="出错", en="fail", where="any")
async def boom(req: Request) -> None:
    raise RuntimeError("kaboom")


@pytest.fixture
async def demo_bot(harness: BotHarness) -> BotHarness:
    from bot.app import feature_routers

    await harness.start(routers=[*feature_routers(), demo])
    return harness


async def test_usage_errors_show_the_right_form(demo_bot: BotHarness) -> None:
    assert "用法：/echo N" in (await demo_bot.ask("/echo")).text
    text = (await demo_bot.ask("/echo abc")).text
    assert "N 应为数字" in text and "用法：/echo N" in text
    assert (await demo_bot.ask("/echo 42")).text.endswith("42")


async def test_unexpected_exception_is_answered_and_fails_the_test(demo_bot: BotHarness) -> None:
    reply = await demo_bot.ask("/boom")
    assert "出错" in reply.text
    assert len(demo_bot.errors) == 1 and "kaboom" in str(demo_bot.errors[0])
    demo_bot.errors.clear()  # this test expects it; anywhere else it fails the test


@pytest.mark.parametrize(
    "text",
    [
        "/" + "x" * 50_000,
        "/echo " + "9" * 5000,
        "／／／",
        "/\u0000\u202e",
        "报名" + "了" * 3000,
        "@群助手\u2005",
        "/echo #-1",
    ],
)
async def test_strange_input_never_crashes(demo_bot: BotHarness, text: str) -> None:
    await demo_bot.say(text)
    assert (await demo_bot.ask("/ping")).text.endswith("pong")


async def test_second_room_served_independently(bot: BotHarness) -> None:
    assert (await bot.ask("/ping", room=ROOM2)).conversation_id == ROOM2
    await bot.silent("今天天气不错", by=XIAOHONG)


async def test_a_crash_is_flagged_from_the_last_alive_mark(bot: BotHarness) -> None:
    app = bot.app
    assert app is not None
    alive = bot.store.kv.get("alive_ts")
    assert isinstance(alive, float)
    # A crash: the process ends without App.stop(), so no outage is written at the end.
    app.supervisor.stop()  # type: ignore[union-attr]
    await app._run_task  # type: ignore[misc]
    for t in list(app._tasks):
        t.cancel()
    await bot.ctx.outbox.stop(drain_timeout=0)
    await bot.ctx.scheduler.shutdown()
    await bot.store.close()
    assert not any(o.end_ts is None for o in bot.store.outages.list())
    bot.app = None
    await bot.start()
    outages = bot.store.outages.list()
    assert [o.start_ts for o in outages] == [alive]
    assert outages[0].end_ts is not None  # closed at the new login


async def test_logout_records_an_outage_and_logs_in_again(bot: BotHarness) -> None:
    app = bot.app
    assert app is not None
    await bot.gw.logout()
    await app.wait_until(lambda: app.logins >= 2 and app.ready.is_set())
    assert (await bot.ask("/ping")).text.endswith("pong")
    outages = bot.store.outages.list()
    assert len(outages) == 1 and outages[0].end_ts is not None


async def test_room_named_by_topic_is_resolved_with_its_settings(
    gateway: SandboxGateway, tmp_path: object
) -> None:
    from pathlib import Path

    from tests.conftest import make_settings

    settings = make_settings(
        Path(str(tmp_path)) / "d", rooms=[{"topic": "瑜伽群", "welcome": "欢迎 {name}！"}]
    )
    h = BotHarness(gateway, settings)
    try:
        app = await h.start()
        assert app.ctx is not None and app.ctx.serves(ROOM2)
        assert app.ctx.settings.room(ROOM2) is not None
        assert (await h.ask("/ping", room=ROOM2)).text.endswith("pong")
    finally:
        await h.stop()
    assert not h.errors

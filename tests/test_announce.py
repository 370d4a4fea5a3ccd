"""Announcements over the sandbox gateway, driven by a FakeClock: local fire times, exactly
once across restarts and downtime, pause, quiet hours, config ones, the governor at scale."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.app import App
from bot.clock import FakeClock
from bot.config import Settings
from bot.gateway import SandboxGateway, SentMessage, World
from tests.conftest import (
    MANAGER,
    ROOM,
    ROOM2,
    WORLD_SPEC,
    XIAOMING,
    BotHarness,
    make_settings,
)

SH = ZoneInfo("Asia/Shanghai")
START = "2026-11-24 07:00"  # a Tuesday


def at(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=SH)


def ts(s: str) -> int:
    return int(at(s).timestamp())


class Bot(BotHarness):
    """The harness with a FakeClock shared by the bot and the gateway."""

    def __init__(self, gateway: SandboxGateway, settings: Settings, clock: FakeClock) -> None:
        super().__init__(gateway, settings)
        self.clock = clock

    async def boot(self, *, wait: bool = True) -> Bot:
        if wait:
            await self.start(clock=self.clock)
            await self.idle()
            return self
        # With real send limits the queue drains only as the clock moves: do not wait for it.
        self.app = App(
            self.settings,
            endpoint=self.gw.endpoint,
            on_error=self.errors.append,
            backoff_initial=0.05,
            clock=self.clock,
        )
        self.app.gateway = self.gw
        await self.app.start()
        await self.app.wait_ready()
        return self

    async def reboot(self, *, wait: bool = True) -> None:
        """A new bot process on the same data directory and clock."""
        await self.stop()
        await self.boot(wait=wait)

    async def idle(self) -> None:
        await self.ctx.scheduler.wait_idle()
        await self.ctx.outbox.wait_idle()

    async def step_to(self, s: str) -> None:
        """Advance the clock to local time `s`, then let firings and sends finish."""
        await self.clock.advance(ts(s) - self.clock.now())
        await self.idle()

    def texts(self, room: str = ROOM) -> list[str]:
        return self.room_messages(room)

    def sent(self, room: str = ROOM) -> list[SentMessage]:
        return self.gw.bot_messages(room)

    def announcements(self, room: str = ROOM) -> list[SentMessage]:
        """What the room saw that was no reply (replies @mention) and no privacy notice."""
        notice = self.settings.privacy_notice(room)
        return [m for m in self.gw.bot_messages(room) if not m.mention_ids and m.text != notice]

    def texts_of_announcements(self, room: str = ROOM) -> list[str]:
        return [m.text for m in self.announcements(room)]

    def job_names(self) -> list[str]:
        return [n for n in self.ctx.scheduler.names() if n.startswith("announce:")]


MakeBot = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def make_bot(tmp_path: Path) -> AsyncIterator[MakeBot]:
    """make_bot(world_spec=..., **settings overrides) → a started Bot at START."""
    made: list[tuple[Bot, SandboxGateway]] = []

    async def make(
        world_spec: dict[str, Any] | None = None,
        start: str = START,
        wait: bool = True,
        **overrides: Any,
    ) -> Bot:
        clock = FakeClock(ts(start))
        gw = SandboxGateway(World.from_spec(world_spec or WORLD_SPEC), heartbeat_s=0, clock=clock)
        await gw.start()
        bot = Bot(gw, make_settings(tmp_path / "data", **overrides), clock)
        made.append((bot, gw))
        return await bot.boot(wait=wait)

    yield make
    for bot, gw in made:
        await bot.stop()
        await gw.stop()
        if bot.errors:
            raise AssertionError(f"handler errors: {bot.errors!r}") from bot.errors[0]


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    return await make_bot()


async def manage(bot: Bot, text: str, room: str | None = ROOM) -> str:
    return (await bot.ask(text, by=MANAGER, room=room)).text


# ------------------------------------------------------------------- fire times


async def test_one_off_and_cron_fire_at_local_times_across_day_boundary(bot: Bot) -> None:
    r1 = await manage(bot, "/announce at 2026-11-25 00:30 | 今天是 {date} {weekday}")
    assert "#1" in r1 and "2026-11-25 00:30 周三" in r1
    r2 = await manage(bot, '/announce cron "0 8 * * *" | 早安，{room}！')
    assert "#2" in r2 and "2026-11-24 08:00" in r2

    await bot.step_to("2026-11-24 07:59")
    assert bot.announcements() == []
    await bot.step_to("2026-11-24 08:00")
    assert [(m.text, m.timestamp) for m in bot.announcements()] == [
        ("早安，健身打卡群！", ts("2026-11-24 08:00"))
    ]
    await bot.step_to("2026-11-25 00:29")
    assert len(bot.announcements()) == 1
    await bot.step_to("2026-11-25 00:30")
    await bot.step_to("2026-11-25 08:00")
    assert [(m.text, m.timestamp) for m in bot.announcements()] == [
        ("早安，健身打卡群！", ts("2026-11-24 08:00")),
        ("今天是 2026-11-25 周三", ts("2026-11-25 00:30")),
        ("早安，健身打卡群！", ts("2026-11-25 08:00")),
    ]
    listing = await manage(bot, "/announce list")
    assert "#1" in listing and "已发送" in listing
    assert "#2" in listing and "下次 2026-11-26 08:00 周四" in listing


async def test_every_interval_keeps_its_grid(bot: Bot) -> None:
    await manage(bot, "/announce every 2h | 喝水提醒")
    await bot.step_to("2026-11-24 09:00")
    await bot.step_to("2026-11-24 11:00")
    assert [m.timestamp for m in bot.announcements()] == [
        ts("2026-11-24 09:00"),
        ts("2026-11-24 11:00"),
    ]
    await bot.reboot()  # the grid is stored: a restart does not move it
    await bot.step_to("2026-11-24 13:00")
    assert [m.timestamp for m in bot.announcements()][-1] == ts("2026-11-24 13:00")
    assert len(bot.announcements()) == 3


@pytest.fixture
def host_tz() -> Iterator[None]:
    old = os.environ.get("TZ")
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("tz", ["UTC", "Asia/Shanghai"])
async def test_fire_times_identical_whatever_the_host_tz(
    tz: str, host_tz: None, make_bot: MakeBot
) -> None:
    os.environ["TZ"] = tz
    time.tzset()
    bot = await make_bot()
    await manage(bot, "/announce at 2026-11-24 09:30 | A")
    await manage(bot, '/announce cron "15 0 * * *" | B')
    await bot.step_to("2026-11-24 09:30")
    await bot.step_to("2026-11-25 00:15")
    # The same absolute instants for both host zones: Shanghai wall time, never the host's.
    assert [(m.text, m.timestamp) for m in bot.announcements()] == [
        ("A", 1795483800),
        ("B", 1795536900),
    ]
    assert ts("2026-11-24 09:30") == 1795483800  # 01:30 UTC


# ------------------------------------------------------------------- exactly once


async def test_restart_right_after_a_firing_does_not_repeat_it(bot: Bot) -> None:
    await manage(bot, "/announce at 2026-11-24 08:00 | 一次")
    await manage(bot, '/announce cron "0 8 * * *" | 每天')
    await bot.step_to("2026-11-24 08:00")
    assert sorted(bot.texts_of_announcements()) == ["一次", "每天"]
    await bot.reboot()
    await bot.reboot()
    await bot.step_to("2026-11-24 08:09")
    assert sorted(bot.texts_of_announcements()) == ["一次", "每天"]
    assert bot.job_names() == ["announce:10001@chatroom#2"]  # the one-off is done


async def test_downtime_within_grace_sends_late_once(bot: Bot) -> None:
    await manage(bot, "/announce at 2026-11-24 08:00 | 一次")
    await manage(bot, '/announce cron "0 8 * * *" | 每天')
    await bot.step_to("2026-11-24 07:59")
    await bot.stop()
    await bot.clock.advance(ts("2026-11-24 08:07") - bot.clock.now())  # down over 08:00
    await bot.boot()
    assert sorted(bot.texts_of_announcements()) == ["一次", "每天"]
    assert all(m.timestamp == ts("2026-11-24 08:07") for m in bot.announcements())
    await bot.reboot()
    assert len(bot.announcements()) == 2
    assert bot.gw.bot_messages(MANAGER) == []  # nothing to report


async def test_downtime_beyond_grace_skips_and_reports_once(bot: Bot) -> None:
    await manage(bot, "/announce at 2026-11-24 08:00 | 一次")
    await manage(bot, '/announce cron "0 8 * * *" | 每天')
    await bot.step_to("2026-11-24 07:59")
    await bot.stop()
    await bot.clock.advance(ts("2026-11-24 08:30") - bot.clock.now())  # grace is 600 s
    await bot.boot()
    await bot.reboot()
    assert bot.announcements() == []
    reports = [m.text for m in bot.gw.bot_messages(MANAGER)]
    assert len(reports) == 2, reports
    assert any("#1" in r and "跳过" in r and "2026-11-24 08:00" in r for r in reports)
    assert any("#2" in r and "跳过" in r for r in reports)
    assert "已错过" in await manage(bot, "/announce list")
    await bot.step_to("2026-11-25 08:00")  # the cron goes on as usual
    assert [(m.text, m.timestamp) for m in bot.announcements()] == [
        ("每天", ts("2026-11-25 08:00"))
    ]
    assert len(bot.gw.bot_messages(MANAGER)) == 2


# ------------------------------------------------------------------- pause, quiet hours


async def test_pause_holds_across_restart_and_resume_does_not_catch_up(bot: Bot) -> None:
    await manage(bot, '/announce cron "0 8 * * *" | 每天')
    assert "已暂停" in await manage(bot, "/announce pause 1")
    assert "已经是暂停" in await manage(bot, "/announce pause 1")
    await bot.reboot()
    assert bot.job_names() == []
    await bot.step_to("2026-11-24 08:30")
    assert bot.announcements() == []
    assert "已暂停" in await manage(bot, "/announce list")
    reply = await manage(bot, "/announce resume 1")
    assert "已恢复" in reply and "2026-11-25 08:00" in reply
    await bot.reboot()
    assert bot.announcements() == []  # 08:00 today fell in the pause: no catch-up
    await bot.step_to("2026-11-25 08:00")
    assert [m.timestamp for m in bot.announcements()] == [ts("2026-11-25 08:00")]
    assert bot.gw.bot_messages(MANAGER) == []


async def test_quiet_hours_hold_until_the_window_ends_even_across_restart(
    make_bot: MakeBot,
) -> None:
    bot = await make_bot(rooms=[{"id": ROOM, "quiet_hours": "22:00-08:00"}, ROOM2])
    reply = await manage(bot, "/announce at 2026-11-24 23:00 | 晚安 {date}")
    assert "静默时段" in reply and "08:00" in reply
    await manage(bot, "/announce at 2026-11-24 23:00 | 晚安 {date}", room=ROOM2)
    await bot.step_to("2026-11-24 23:00")
    assert bot.announcements() == []
    assert [m.text for m in bot.announcements(ROOM2)] == ["晚安 2026-11-24"]  # no quiet hours
    assert "静默时段后发送 2026-11-25 08:00" in await manage(bot, "/announce list")
    await bot.step_to("2026-11-25 02:00")
    await bot.reboot()  # the hold is stored, not only in memory
    await bot.step_to("2026-11-25 07:59")
    assert bot.announcements() == []
    await bot.step_to("2026-11-25 08:00")
    assert [(m.text, m.timestamp) for m in bot.announcements()] == [
        ("晚安 2026-11-25", ts("2026-11-25 08:00"))
    ]
    await bot.reboot()
    await bot.step_to("2026-11-25 09:00")
    assert len(bot.announcements()) == 1
    assert bot.job_names() == []


# ------------------------------------------------------------------- config, restarts


async def test_config_announcements_are_registered_once_and_follow_the_file(
    make_bot: MakeBot,
) -> None:
    static = [
        {"room": ROOM, "cron": "0 9 * * *", "text": "配置公告"},
        {"room": ROOM, "at": "2026-11-24 10:00", "text": "配置一次"},
    ]
    bot = await make_bot(announcements=static)
    for _ in range(3):
        await bot.reboot()
    assert len(bot.job_names()) == 2
    listing = await manage(bot, "/announce list")
    assert "#1" in listing and "#2" in listing and "#3" not in listing and "bot.yaml" in listing
    assert "bot.yaml" in await manage(bot, "/announce del 1")  # refused: edit the file
    await bot.step_to("2026-11-24 09:00")
    await bot.step_to("2026-11-24 10:00")
    await bot.reboot()
    assert bot.texts_of_announcements() == ["配置公告", "配置一次"]
    # removed from bot.yaml → removed from storage and the scheduler
    bot.settings = make_settings(bot.settings.data_dir, announcements=static[1:])
    await bot.reboot()
    assert bot.job_names() == []
    assert "#1" not in await manage(bot, "/announce list")


async def test_job_count_is_the_same_after_10_restarts(make_bot: MakeBot) -> None:
    bot = await make_bot(announcements=[{"room": ROOM2, "cron": "0 9 * * 1-5", "text": "周报"}])
    await manage(bot, "/announce at 2026-12-01 08:00 | 一次")
    await manage(bot, '/announce cron "30 20 * * 5" | 周五')
    await manage(bot, "/announce every 1d | 每日")
    names = bot.job_names()
    assert len(names) == 4
    stored = len(bot.store.table("announcements"))
    for _ in range(10):
        await bot.reboot()
        assert bot.job_names() == names
    assert len(bot.store.table("announcements")) == stored


# ------------------------------------------------------------------- commands


async def test_delete_shows_how_to_recreate(bot: Bot) -> None:
    await manage(bot, '/announce cron "0 8 * * 1-5" | 上班打卡')
    reply = await manage(bot, "/announce del 1")
    assert "已删除" in reply and '/announce cron "0 8 * * 1-5" | 上班打卡' in reply
    assert bot.job_names() == []
    assert "没有公告 #1" in await manage(bot, "/announce del 1")
    assert "#2" in await manage(bot, "/announce at 2026-11-30 08:00 | x")  # numbers not reused
    await bot.reboot()
    await bot.step_to("2026-11-24 08:00")
    assert bot.announcements() == []


BAD_ARGUMENTS = [
    ("/announce at 2026-02-30 08:00 | x", "YYYY-MM-DD HH:MM"),
    ("/announce at tomorrow | x", "YYYY-MM-DD HH:MM"),
    ("/announce at 2026-11-23 08:00 | x", "已经过去"),
    ("/announce at 2026-11-25 08:00", "| 内容"),
    ("/announce at 2026-11-25 08:00 |   ", "不能为空"),
    ("/announce at 2026-11-25 08:00 | hi {name}", "{name}"),
    ('/announce cron "61 8 * * *" | x', "cron"),
    ('/announce cron "0 8 * *" | x', "cron"),
    ("/announce cron 0 8 * * * * | x", "cron"),
    ('/announce cron "0 8 * * * | x', "cron"),
    ('/announce cron "*/5 * * * *" | x', "太频繁"),
    ("/announce every 5m | x", "太频繁"),
    ("/announce every often | x", "30m"),
    ("/announce pause x", "数字"),
]


async def test_bad_arguments_get_the_usage_reply(bot: Bot) -> None:
    for command, why in BAD_ARGUMENTS:
        reply = await manage(bot, command)
        assert why in reply and "用法：/announce" in reply, (command, reply)
    assert len(bot.store.table("announcements")) == 0
    assert "没有子命令“foo”" in await manage(bot, "/announce foo")


async def test_cron_forms_quoted_curly_and_bare(bot: Bot) -> None:
    assert "#1" in await manage(bot, "/announce cron 0 8 * * * | a")
    assert "#2" in await manage(bot, "/announce cron “30 9 * * 1-5” ｜ b")
    listing = await manage(bot, "/announce list")
    assert 'cron "0 8 * * *"' in listing and 'cron "30 9 * * 1-5"' in listing
    help_text = await manage(bot, "/announce")
    assert "/announce every 2h" in help_text and "/announce test N" in help_text


async def test_preview_goes_privately_to_the_manager(bot: Bot) -> None:
    await manage(bot, "/announce at 2026-11-30 08:00 | {room} 今天{weekday}")
    assert "私信" in await manage(bot, "/announce test 1")
    assert [m.text for m in bot.gw.bot_messages(MANAGER)] == ["健身打卡群 今天周二"]
    assert bot.announcements() == []  # nothing posted to the room
    # privately, after /use, the reply itself is the preview
    await bot.ctx.store.kv.set(f"use:{MANAGER}", ROOM)
    assert await manage(bot, "/announce test 1", room=None) == "健身打卡群 今天周二"


async def test_members_cannot_manage_announcements(bot: Bot) -> None:
    reply = await bot.ask("/announce at 2026-11-30 08:00 | x", by=XIAOMING)
    assert "管理员" in reply.text
    assert len(bot.store.table("announcements")) == 0


# ------------------------------------------------------------------- scale and governor

ROOMS_50 = [f"{20000 + i}@chatroom" for i in range(50)]


async def test_200_due_in_the_same_minute_across_50_rooms_each_go_out_once_through_the_governor(
    make_bot: MakeBot,
) -> None:
    # (rooms without members: the login reads every room over gRPC, which costs real time)
    spec = {**WORLD_SPEC, "rooms": {r: {"topic": f"群{i}"} for i, r in enumerate(ROOMS_50)}}
    static = [
        {"room": r, "at": "2026-11-24 08:00", "text": f"公告 {r} {k}"}
        for r in ROOMS_50
        for k in range(4)
    ]
    limits = {
        "per_room_per_min": 12,
        "global_per_min": 30,
        "daily_cap": 1500,
        "min_interval_ms": 1500,
        "jitter_ms": 1500,
        "cooldown_s": 3600,
    }
    bot = await make_bot(
        world_spec=spec,
        rooms=ROOMS_50,
        announcements=static,
        send=limits,
        start="2026-11-24 07:55",
        wait=False,
    )
    outbox = bot.ctx.outbox

    def sent() -> list[SentMessage]:
        return [m for m in bot.gw.bot_messages() if m.text.startswith("公告 ")]

    for _ in range(5000):  # to each next deadline (at most 1 s), until everything went out
        await bot.ctx.scheduler.wait_idle()
        # the send in flight reaches the gateway before time moves on (nothing signals the
        # end of one send while others are queued, so this polls, bounded)
        async with asyncio.timeout(10):
            while outbox.stats().in_flight:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.001)
        now = bot.clock.now()
        if now > ts("2026-11-24 08:00") and not outbox.stats().queued:
            break
        deadline = bot.clock.next_deadline()
        await bot.clock.advance(min(1.0, max(0.0, (deadline or now + 1) - now)))
    await bot.idle()
    msgs = sent()
    assert Counter(m.text for m in msgs) == Counter(a["text"] for a in static)  # each once
    assert all(m.conversation_id == m.text.split()[1] for m in msgs)
    assert min(m.timestamp for m in msgs) == ts("2026-11-24 08:00")
    stamps = sorted(m.timestamp for m in bot.gw.bot_messages())
    # never a burst: 1.5 s minimum gap, at most 30 in any minute (whole-second stamps)
    assert all(b - a >= 1 for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(stamps[i + 30] - stamps[i] >= 59 for i in range(len(stamps) - 30))
    duration = stamps[-1] - ts("2026-11-24 08:00")
    assert 390 <= duration <= 600, duration  # 1.5 s + jitter up to 1.5 s a send: ~450 s
    assert outbox.stats().dropped == {}
    await bot.reboot(wait=False)
    assert len(sent()) == 200 and bot.job_names() == []

"""Sign-ups over the sandbox gateway: capacity, waitlist, promotion, deadline, reminders,
concurrency, export, bad arguments and permissions."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.gateway import SandboxGateway, SentMessage, World
from storage.events import EventRepo
from tests.conftest import (
    AQIANG,
    LILY,
    MANAGER,
    ROOM,
    ROOM2,
    XIAOHONG,
    XIAOMING,
    BotHarness,
    make_settings,
)

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2027, 1, 15, 10, 0, tzinfo=TZ).timestamp()  # a Friday, 10:00 in Shanghai
EXTRA = [("wxid_test_05", "小五"), ("wxid_test_06", "小六")]
SIX = [XIAOMING, XIAOHONG, AQIANG, LILY, EXTRA[0][0], EXTRA[1][0]]


async def settle_notices(h: BotHarness) -> None:
    """The privacy notice each room gets at first login is not a reply to anything."""
    for room in (ROOM, ROOM2):
        await h.gw.wait_for_bot_message(lambda m, r=room: m.text == h.settings.privacy_notice(r),
                                        conversation_id=room)
    await h.ctx.outbox.wait_idle()


@pytest.fixture
async def sbot(bot: BotHarness) -> BotHarness:
    await settle_notices(bot)
    await bot.gw.join(ROOM, EXTRA, inviter_id=MANAGER)
    return bot


@pytest.fixture
async def clocked(world: World, tmp_path: Path) -> AsyncIterator[tuple[BotHarness, FakeClock]]:
    """A bot whose clock, scheduler and message timestamps all run on one FakeClock."""
    clock = FakeClock(start=T0)
    gw = SandboxGateway(world, heartbeat_s=0, clock=clock)  # heartbeats would tick fake time
    await gw.start()
    settings = make_settings(tmp_path / "data",
                             rooms=[{"id": ROOM, "quiet_hours": "22:00-08:00"}, ROOM2])
    h = BotHarness(gw, settings)
    try:
        await h.start(clock=clock)
        await settle_notices(h)
        yield h, clock
    finally:
        if h.app is not None:  # see restart(): never stop with a send in flight
            await h.ctx.outbox.wait_idle()
        await h.stop()
        await gw.stop()
    if h.errors:
        raise AssertionError(f"handler errors: {h.errors!r}") from h.errors[0]


async def restart(h: BotHarness, clock: FakeClock) -> None:
    # BotHarness.restart() starts the new process without the FakeClock: keep it. A send
    # still in flight when the connection drops would be retried on the (frozen) fake clock.
    await h.ctx.outbox.wait_idle()
    await h.stop()
    await h.start(clock=clock)


def fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, TZ).strftime("%Y-%m-%d %H:%M")


async def new_event(h: BotHarness, args: str) -> SentMessage:
    post = await h.ask(f"/event new {args}", by=MANAGER)
    assert post.text.startswith("📣 新活动 #"), post.text
    assert post.mention_ids == ()  # an announcement, not a reply
    return post


# --- capacity, waitlist, promotion ------------------------------------------------------------
async def test_capacity_three_waitlist_two_six_signups(sbot: BotHarness) -> None:
    post = await new_event(sbot, "周六徒步 cap=3 waitlist=2")
    assert "#1" in post.text and "名额：3 人，候补 2 人" in post.text and "报名 1" in post.text
    texts = [(await sbot.ask("报名", by=m)).text for m in SIX]
    assert "你是第 1 位（共 3 个名额）" in texts[0]
    assert "你是第 2 位" in texts[1] and "你是第 3 位" in texts[2]
    assert "候补第 1 位" in texts[3] and "候补第 2 位" in texts[4]
    assert "名额和候补都已满" in texts[5]
    again = (await sbot.ask("/join 1", by=XIAOHONG)).text
    assert again.endswith("你已经报名了 #1 周六徒步，是第 2 位。")
    listing = (await sbot.ask("报名名单")).text
    assert "报名名单（3/3）" in listing and "1. 小明\n2. 小红\n3. 阿强" in listing
    assert "候补（2/2）：\n1. Lily\n2. 小五" in listing and "小六" not in listing
    # on disk: a new process sees the same lists
    await sbot.restart()
    ev = EventRepo(sbot.store).get(ROOM, 1)
    assert ev is not None
    assert [s.member_id for s in ev.confirmed] == SIX[:3]
    assert [s.member_id for s in ev.waitlisted] == SIX[3:5]


async def test_cancellations_promote_in_order_and_mention_the_promoted(sbot: BotHarness) -> None:
    await new_event(sbot, "周六徒步 cap=3 waitlist=2")
    for m in SIX[:5]:
        await sbot.say("报名", by=m)
    out = await sbot.replies_to("取消报名", by=XIAOMING)
    assert len(out) == 2
    assert out[0].text.endswith("已取消你在 #1 周六徒步 的报名。")
    assert out[0].mention_ids == (XIAOMING,)
    assert out[1].mention_ids == (LILY,) and "从候补转为正式报名，第 3 位" in out[1].text
    out = await sbot.replies_to("/leave 1", by=XIAOHONG)
    assert [m.mention_ids for m in out] == [(XIAOHONG,), (EXTRA[0][0],)]
    # a waitlist is now empty: cancelling frees a place and promotes nobody
    out = await sbot.replies_to("取消报名 1", by=AQIANG)
    assert len(out) == 1
    assert "你没有报名" in (await sbot.ask("取消报名", by=XIAOMING)).text
    ev = EventRepo(sbot.store).get(ROOM, 1)
    assert ev is not None and [s.member_id for s in ev.confirmed] == [LILY, EXTRA[0][0]]
    assert "你是第 3 位" in (await sbot.ask("报名", by=XIAOMING)).text


async def test_full_without_waitlist_and_several_open_events(sbot: BotHarness) -> None:
    await new_event(sbot, "读书会 cap=1")
    assert "第 1 位" in (await sbot.ask("报名", by=XIAOMING)).text
    assert "名额已满（1/1），没有候补名额" in (await sbot.ask("报名", by=XIAOHONG)).text
    await new_event(sbot, "夜跑")
    reply = (await sbot.ask("报名", by=XIAOHONG)).text
    assert "多个活动" in reply and "#1 读书会" in reply and "#2 夜跑" in reply
    assert "名额：不限" not in reply
    assert "报名成功 #2 夜跑" in (await sbot.ask("报名 2", by=XIAOHONG)).text
    assert "没有 #9 活动" in (await sbot.ask("报名 9", by=XIAOHONG)).text
    # leave without N: the one event the member is in
    assert "#2 夜跑" in (await sbot.ask("取消报名", by=XIAOHONG)).text
    assert "报名已结束" in (await sbot.ask("/event close 1", by=MANAGER)).text
    assert "报名已结束" in (await sbot.ask("报名 1", by=AQIANG)).text
    listing = (await sbot.ask("/event list", by=MANAGER)).text
    assert "#2 夜跑 ｜ 报名中" in listing and "#1 读书会 ｜ 已结束" in listing


# --- concurrency --------------------------------------------------------------------------------
async def test_fifty_simultaneous_signups_for_the_last_place(sbot: BotHarness) -> None:
    await new_event(sbot, "抢位 cap=3")
    await sbot.say("报名", by=XIAOMING)
    await sbot.say("报名", by=XIAOHONG)
    crowd = [(f"wxid_crowd_{i:02d}", f"群友{i}") for i in range(50)]
    await sbot.gw.join(ROOM, crowd, qrcode=True)
    before = len(sbot.gw.bot_messages(ROOM))
    ids = await asyncio.gather(*(sbot.gw.say(m, "报名", room_id=ROOM) for m, _ in crowd))
    assert sbot.app is not None
    await asyncio.gather(*(sbot.app.wait_handled(i, timeout=60) for i in ids))
    await sbot.ctx.outbox.wait_idle()
    ev = EventRepo(sbot.store).get(ROOM, 1)
    assert ev is not None and len(ev.confirmed) == 3 and ev.waitlisted == ()
    winner = ev.confirmed[2].member_id
    assert winner in dict(crowd)
    said = "\n".join(m.text for m in sbot.gw.bot_messages(ROOM)[before:])
    assert said.count("报名成功") == 1 and said.count("你是第 3 位") == 1
    assert said.count("名额已满（3/3）") == 49
    await sbot.restart()  # the one confirmation was on disk
    ev = EventRepo(sbot.store).get(ROOM, 1)
    assert ev is not None and [s.member_id for s in ev.confirmed][2] == winner


async def test_concurrent_joins_in_storage_never_overfill(sbot: BotHarness) -> None:
    """The gateway delivers the crowd's messages to the handler one after another; here 50
    sign-ups run truly interleaved (each awaiting its own fsync) against one store."""
    repo = EventRepo(sbot.store)
    ev = await repo.create(ROOM, title="抢位", cap=3, waitlist=2, deadline_ts=None, start_ts=None,
                           remind_s=None, remind_at_ts=None, created_by=MANAGER, now=T0)
    results = await asyncio.gather(*(repo.join(ROOM, ev.n, f"wxid_c{i}", T0) for i in range(50)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count("confirmed") == 3 and outcomes.count("waitlisted") == 2
    assert outcomes.count("waitlist_full") == 45
    got = repo.get(ROOM, ev.n)
    assert got is not None and len(got.confirmed) == 3 and len(got.waitlisted) == 2
    left = await asyncio.gather(*(repo.leave(ROOM, ev.n, s.member_id, T0) for s in got.confirmed))
    assert [r.promoted for r in left] == [s.member_id for s in got.waitlisted] + [None]


# --- deadline and reminders (fake clock) ----------------------------------------------------------
async def test_deadline_closes_the_event(clocked: tuple[BotHarness, FakeClock]) -> None:
    h, clock = clocked
    deadline = T0 + 3600
    post = await new_event(h, f"周末聚餐 cap=10 deadline={fmt(deadline)}")
    assert f"报名截止：{fmt(deadline)}" in post.text
    assert "第 1 位" in (await h.ask("报名")).text
    assert "event-deadline:10001@chatroom:1" in h.ctx.scheduler.names()
    await clock.advance(3600 - 1)
    assert EventRepo(h.store).get(ROOM, 1).is_open  # type: ignore[union-attr]
    await clock.advance(1)
    closed = await h.gw.wait_for_bot_message(lambda m: "报名已截止" in m.text, conversation_id=ROOM)
    assert "正式 1 人，候补 0 人" in closed.text
    ev = EventRepo(h.store).get(ROOM, 1)
    assert ev is not None and not ev.is_open and ev.closed_reason == "deadline"
    assert f"报名已截止（{fmt(deadline)}）" in (await h.ask("报名 1", by=XIAOHONG)).text
    # a restart does not close (or announce) it again
    await restart(h, clock)
    await h.ask("/ping")
    assert sum("报名已截止：" in t for t in h.room_messages()) == 1


async def test_deadline_passed_while_down_closes_at_start(
        clocked: tuple[BotHarness, FakeClock]) -> None:
    h, clock = clocked
    await new_event(h, f"周末聚餐 deadline={fmt(T0 + 600)}")
    await h.stop()
    await clock.advance(7200)  # far beyond the misfire grace
    await h.start(clock=clock)
    await h.gw.wait_for_bot_message(lambda m: "报名已截止" in m.text, conversation_id=ROOM)
    assert not EventRepo(h.store).get(ROOM, 1).is_open  # type: ignore[union-attr]


async def test_reminder_fires_once_at_the_right_time_across_restarts(
        clocked: tuple[BotHarness, FakeClock]) -> None:
    h, clock = clocked
    start = T0 + 3 * 3600
    post = await new_event(h, f"周六徒步 cap=2 waitlist=1 start={fmt(start)} remind=2h")
    assert "开始前 2小时 提醒" in post.text
    for m in (XIAOMING, XIAOHONG, AQIANG):
        await h.say("报名", by=m)
    job = "event-remind:10001@chatroom:1"
    await restart(h, clock)  # rebuilt from storage
    assert job in h.ctx.scheduler.names()
    assert h.ctx.scheduler.next_fire(job).timestamp() == start - 2 * 3600
    await clock.advance(3600 - 1)
    await h.ask("/ping")
    assert not [t for t in h.room_messages() if "活动提醒" in t]
    await clock.advance(1)
    reminder = await h.gw.wait_for_bot_message(lambda m: "活动提醒" in m.text, conversation_id=ROOM)
    assert reminder.mention_ids == (XIAOMING, XIAOHONG)  # confirmed only, not the waitlist
    assert "#1 周六徒步" in reminder.text and fmt(start) in reminder.text
    assert "还有 2小时" in reminder.text
    assert reminder.timestamp == int(start - 2 * 3600)
    await restart(h, clock)
    assert job not in h.ctx.scheduler.names()
    await clock.advance(1800)
    await restart(h, clock)
    await h.ask("/ping")
    assert len([t for t in h.room_messages() if "活动提醒" in t]) == 1


async def test_reminder_waits_for_the_end_of_quiet_hours(
        clocked: tuple[BotHarness, FakeClock]) -> None:
    h, clock = clocked
    start = datetime(2027, 1, 16, 9, 0, tzinfo=TZ)  # 2h before is 07:00, inside 22:00-08:00
    await new_event(h, f"晨跑 start={start:%Y-%m-%d %H:%M} remind=2h")
    await h.say("报名")
    fire = h.ctx.scheduler.next_fire("event-remind:10001@chatroom:1")
    assert fire == datetime(2027, 1, 16, 8, 0, tzinfo=TZ)
    await clock.advance(fire.timestamp() - clock.now())
    reminder = await h.gw.wait_for_bot_message(lambda m: "活动提醒" in m.text, conversation_id=ROOM)
    assert reminder.mention_ids == (XIAOMING,) and "还有 1小时" in reminder.text
    # 2h before 07:30 is 05:30; after the quiet hours would be after the start, so the
    # reminder goes out the evening before, just before the quiet hours begin.
    await new_event(h, "早课 start=2027-01-17 07:30 remind=2h")
    fire = h.ctx.scheduler.next_fire("event-remind:10001@chatroom:2")
    assert fire == datetime(2027, 1, 16, 21, 59, tzinfo=TZ)


async def test_long_reminder_is_split(clocked: tuple[BotHarness, FakeClock]) -> None:
    h, clock = clocked
    crowd = [(f"wxid_crowd_{i:02d}", f"群友{i}") for i in range(25)]
    await h.gw.join(ROOM, crowd)
    await new_event(h, f"大合唱 start={fmt(T0 + 7200)} remind=1h")
    for m, _ in crowd:
        await h.say("报名", by=m)
    await clock.advance(3600)
    first = await h.gw.wait_for_bot_message(lambda m: "活动提醒" in m.text, conversation_id=ROOM)
    second = await h.gw.wait_for_bot_message(lambda m: "活动提醒" in m.text, conversation_id=ROOM)
    assert first.text.endswith("(1/2)") and second.text.endswith("(2/2)")
    assert first.mention_ids + second.mention_ids == tuple(m for m, _ in crowd)


# --- export, bad input, permissions --------------------------------------------------------------
async def test_export_csv_is_sent_privately(sbot: BotHarness) -> None:
    await new_event(sbot, "周六徒步 cap=2 waitlist=2")
    for m in (XIAOMING, XIAOHONG, AQIANG):
        await sbot.say("报名", by=m)
    reply = await sbot.ask("/event export 1", by=MANAGER)
    assert "正式 2 人，候补 1 人" in reply.text and "私信" in reply.text
    files = [m for m in sbot.gw.bot_messages(MANAGER) if m.kind == "file"]
    assert len(files) == 1 and files[0].text.endswith(".csv")
    assert not [m for m in sbot.gw.bot_messages(ROOM) if m.kind == "file"]
    path = Path(sbot.settings.data_dir) / "exports" / files[0].text
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["状态", "序号", "成员ID", "昵称", "报名时间"]
    assert [r[:4] for r in rows[1:]] == [["正式", "1", XIAOMING, "小明"],
                                         ["正式", "2", XIAOHONG, "小红"],
                                         ["候补", "1", AQIANG, "阿强"]]
    assert all(len(r[4]) == 16 for r in rows[1:])  # YYYY-MM-DD HH:MM


@pytest.mark.parametrize(("args", "why"), [
    ("", "缺少活动标题"),
    ("cap=3", "缺少活动标题"),
    ("徒步 cap=abc", "cap 应为 1 到 10000 之间的整数"),
    ("徒步 cap=0", "cap 应为"),
    ("徒步 waitlist=2", "需要同时设置名额"),
    ("徒步 deadline=明天", "deadline 的时间格式应为 YYYY-MM-DD HH:MM"),
    ("徒步 deadline=2027-02-30 10:00", "deadline 的时间格式"),
    ("徒步 start=2020-01-01 10:00", "已经过去了"),
    ("徒步 remind=2h", "需要同时设置开始时间"),
    ("徒步 start=2099-01-01 10:00 remind=soon", "remind 应为时长"),
    ("徒步 deadline=2099-01-02 10:00 start=2099-01-01 10:00", "截止时间不能晚于"),
    ("徒步 cap=3 cap=4", "重复"),
    ("徒步 color=red", "未知选项 color"),
    ("x" * 200, "标题太长"),
])
async def test_bad_arguments_get_the_usage_reply(sbot: BotHarness, args: str, why: str) -> None:
    reply = (await sbot.ask(f"/event new {args}", by=MANAGER)).text
    assert why in reply and "用法：/event new 标题" in reply
    assert EventRepo(sbot.store).list(ROOM) == []


async def test_other_bad_input(sbot: BotHarness) -> None:
    assert "用法：/join [N]" in (await sbot.ask("/join abc")).text
    assert "没有开放报名的活动" in (await sbot.ask("报名")).text
    assert "用法：/event close N" in (await sbot.ask("/event close", by=MANAGER)).text
    assert "没有 #7 活动" in (await sbot.ask("/event close 7", by=MANAGER)).text
    assert "子命令" in (await sbot.ask("/event", by=MANAGER)).text
    assert "还没有活动" in (await sbot.ask("/event list", by=MANAGER)).text
    await sbot.silent("报名了吗")  # chatter with the keyword is no command


async def test_member_cannot_create_an_event(sbot: BotHarness) -> None:
    reply = await sbot.ask("/event new 我的活动 cap=3", by=XIAOMING)
    assert "管理员命令" in reply.text
    assert EventRepo(sbot.store).list(ROOM) == []
    assert sbot.store.audit.last(1)[0].result == "refused"


async def test_manager_creates_privately_after_use(sbot: BotHarness) -> None:
    await sbot.store.kv.set(f"use:{MANAGER}", ROOM)  # what /use does
    reply = await sbot.ask("/event new 私聊建的 cap=5", by=MANAGER, room=None)
    assert "已创建活动 #1" in reply.text
    post = await sbot.gw.wait_for_bot_message(lambda m: "私聊建的" in m.text, conversation_id=ROOM)
    assert post.text.startswith("📣 新活动 #1")


async def test_signup_counts_as_activity(sbot: BotHarness) -> None:
    await new_event(sbot, "活动")
    await sbot.say("报名", by=LILY)
    await sbot.store.flush()
    today = datetime.fromtimestamp(sbot.ctx.clock.now(), TZ).date().toordinal()
    assert today in sbot.store.activity.active_days(ROOM)[LILY]


async def test_forget_drops_open_signups_and_pseudonymises_closed_ones(sbot: BotHarness) -> None:
    await new_event(sbot, "旧活动")
    await sbot.say("报名 1")
    await sbot.say("/event close 1", by=MANAGER)
    await new_event(sbot, "徒步 cap=1 waitlist=1")
    await sbot.say("报名 2")
    await sbot.say("报名 2", by=XIAOHONG)
    await sbot.say("/forget")
    out = await sbot.replies_to("/forget confirm")
    promoted = [m for m in out if m.mention_ids == (XIAOHONG,)]
    assert len(promoted) == 1 and "第 1 位" in promoted[0].text
    repo = EventRepo(sbot.store)
    new, old = repo.get(ROOM, 2), repo.get(ROOM, 1)
    assert new is not None and [s.member_id for s in new.confirmed] == [XIAOHONG]
    assert old is not None and len(old.confirmed) == 1
    assert old.confirmed[0].member_id.startswith("anon-")  # the count stays, the id goes


async def test_member_recorded_as_left_cannot_sign_up(sbot: BotHarness) -> None:
    await new_event(sbot, "活动")
    # Our records say Lily left (the service may deliver her rejoin later).
    await sbot.store.members.record_leave(ROOM, LILY, sbot.ctx.clock.now())
    assert "只有本群成员可以报名" in (await sbot.ask("报名", by=LILY)).text
    assert EventRepo(sbot.store).get(ROOM, 1).confirmed == ()  # type: ignore[union-attr]


def test_reminder_offsets_parse() -> None:
    from handlers.signup import fmt_duration, parse_duration

    assert parse_duration("2h") == 7200 and parse_duration("90m") == 5400
    assert parse_duration("1d 2h") == 93600 and parse_duration("30分钟") == 1800
    assert parse_duration("2 小时") == 7200
    for bad in ("", "2", "h", "2x", "0h", "99d", "2h later"):
        assert parse_duration(bad) is None, bad
    assert fmt_duration(93600, "zh") == "1天2小时" and fmt_duration(5400, "en") == "1 h 30 min"
    assert timedelta(seconds=parse_duration("1d") or 0).days == 1

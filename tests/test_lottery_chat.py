"""Lotteries over the sandbox gateway (SPEC section 5): what members see, what is on disk.

The winners are recomputed here from SPEC.md alone (hashlib/hmac), never with
bot.lottery_math, so a mistake there cannot hide itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FakeClock
from bot.events import MemberForgotten
from bot.gateway import SandboxGateway, SentMessage, World
from bot.lottery_math import verify_cli
from handlers import lottery as lottery_handlers
from handlers.lottery import parse_require, settle
from storage.lotteries import Conditions, LotteryRepo, member_summary
from tests.conftest import (
    AQIANG,
    LILY,
    MANAGER,
    ROOM,
    WORLD_SPEC,
    XIAOHONG,
    XIAOMING,
    BotHarness,
    make_settings,
)

MEMBERS = [XIAOMING, XIAOHONG, AQIANG, LILY]
DAY = 86_400.0


# --- the contract, from SPEC.md section 5 only ---------------------------------------------


def spec_commitment(seed_hex: str) -> str:
    return hashlib.sha256(seed_hex.encode("ascii")).hexdigest()


def spec_winners(seed_hex: str, entrant_ids: list[str], n: int) -> list[str]:
    key = bytes.fromhex(seed_hex)
    k = {x: hmac.new(key, x.encode("utf-8"), hashlib.sha256).hexdigest() for x in entrant_ids}
    return sorted(entrant_ids, key=lambda x: k[x])[:n]


def spec_digest(entrant_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(entrant_ids)).encode("utf-8")).hexdigest()


def value(text: str, name: str) -> str:
    m = re.search(rf"^{name} = ([0-9a-f]{{64}})$", text, re.M)
    assert m, f"no {name} in {text!r}"
    return m.group(1)


def is_result(m: SentMessage) -> bool:
    return "开奖" in m.text and "S = " in m.text


# --- helpers ---------------------------------------------------------------------------------


def watch_events(bot: BotHarness) -> Callable[[Callable[[], bool]], Awaitable[None]]:
    """A waiter for effects of events that get no reply (joins, leaves): re-checks after each
    event the bot has finished handling, instead of polling."""
    app = bot.app
    assert app is not None
    handled = asyncio.Event()
    original = app.handle

    async def handle(event: Any) -> None:
        try:
            await original(event)
        finally:
            handled.set()

    app.handle = handle  # type: ignore[method-assign]

    async def until(check: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not check():
                handled.clear()
                await handled.wait()

    return until


async def quiet(bot: BotHarness) -> None:
    """Background draws, send confirmations and the outbox are all done."""
    await settle(bot.ctx)
    await bot.ctx.outbox.wait_idle()
    await settle(bot.ctx)


async def join(bot: BotHarness, member_id: str, name: str, ts: float) -> None:
    until = watch_events(bot)
    await bot.gw.join(ROOM, [(member_id, name)], timestamp=ts)
    await until(lambda: bot.store.members.get(ROOM, member_id) is not None)


def results(bot: BotHarness) -> list[SentMessage]:
    return [m for m in bot.gw.bot_messages(ROOM) if is_result(m)]


# --- the whole round ------------------------------------------------------------------------


async def test_commitment_winners_digest_and_verify_match_the_spec(bot: BotHarness) -> None:
    post = await bot.ask("/lottery new 周末福利 winners=2", by=MANAGER)
    assert "#1" in post.text and "周末福利" in post.text and "参加抽奖 1" in post.text
    commitment = value(post.text, "C")
    repo = LotteryRepo(bot.store)
    assert repo.get(ROOM, 1) is not None and repo.get(ROOM, 1).seed_hex not in post.text  # type: ignore[union-attr]

    for m in MEMBERS:
        assert "已参加抽奖 #1" in (await bot.ask("参加抽奖", by=m)).text
    assert "已经参加" in (await bot.ask("/enter 1", by=XIAOMING)).text
    assert "管理员" in (await bot.ask("参加抽奖 1", by=MANAGER)).text
    assert [e.member_id for e in repo.entrants(ROOM, 1)] == MEMBERS  # on disk before the reply

    announcement = await bot.ask("/lottery draw 1", by=MANAGER)
    seed = value(announcement.text, "S")
    assert spec_commitment(seed) == commitment
    assert value(announcement.text, "C") == commitment
    assert value(announcement.text, "D") == spec_digest(MEMBERS)
    assert "参与人数：4" in announcement.text
    winners = spec_winners(seed, MEMBERS, 2)
    assert announcement.mention_ids == tuple(winners)
    names = {XIAOMING: "小明", XIAOHONG: "小红", AQIANG: "阿强", LILY: "Lily"}
    assert f"1. {names[winners[0]]}" in announcement.text
    assert f"2. {names[winners[1]]}" in announcement.text

    await quiet(bot)
    lot = repo.get(ROOM, 1)
    assert lot is not None
    assert (lot.status, lot.announce, lot.winners) == ("drawn", "sent", tuple(winners))
    assert lot.seed_hex == seed and set(lot.eligible) == set(MEMBERS)

    loser = next(m for m in MEMBERS if m not in winners)
    assert "已开奖" in (await bot.ask("参加抽奖 1", by=loser)).text
    assert "已经开过奖" in (await bot.ask("/lottery draw 1", by=MANAGER)).text
    assert member_summary(bot.store, ROOM, winners[0]) == (1, 1)
    assert member_summary(bot.store, ROOM, loser) == (1, 0)
    assert member_summary(bot.store, ROOM, MANAGER) == (0, 0)

    text_reply, file_reply = await bot.replies_to("/lottery verify 1", by=loser)
    verify = text_reply.text
    assert value(verify, "C") == commitment and value(verify, "S") == seed
    assert value(verify, "D") == spec_digest(MEMBERS)
    assert "参与人数（ID 数）：4" in verify
    assert ", ".join(winners) in verify
    assert "结果：正确" in verify and "FAIL" not in verify
    # the entrant ids come as a file that the offline verifier accepts as it is
    assert file_reply.kind == "file" and file_reply.text == "lottery-10001-1.json"
    export = bot.settings.data_dir / "exports" / file_reply.text
    assert json.loads(export.read_text("utf-8"))["entrants"] == sorted(MEMBERS)
    assert verify_cli(["--entrants", str(export)]) == 0

    listing = (await bot.ask("/lottery list", by=loser)).text
    assert "#1 周末福利" in listing and "已开奖" in listing


async def test_verify_before_the_draw_keeps_the_seed_secret(bot: BotHarness) -> None:
    post = await bot.ask("/lottery new 秘密 winners=1", by=MANAGER)
    await bot.ask("参加抽奖", by=XIAOHONG)
    text = (await bot.ask("/lottery verify 1", by=XIAOMING)).text
    seed = LotteryRepo(bot.store).get(ROOM, 1).seed_hex  # type: ignore[union-attr]
    assert seed not in text and seed not in post.text
    assert value(text, "C") == value(post.text, "C") and "1 人参加" in text


async def test_draw_with_no_entrants_announces_no_winner(bot: BotHarness) -> None:
    await bot.ask("/lottery new 冷清 winners=3", by=MANAGER)
    text = (await bot.ask("/lottery draw 1", by=MANAGER)).text
    assert "无人中奖" in text and "参与人数：0" in text
    assert value(text, "D") == spec_digest([])
    assert "结果：正确" in (await bot.replies_to("/lottery verify 1", by=MANAGER))[0].text


# --- conditions ---------------------------------------------------------------------------


async def test_conditions_exclude_exactly_the_right_members(bot: BotHarness) -> None:
    now = bot.ctx.clock.now()
    newbie, leaver, late_admin, pass2 = (
        "wxid_test_newbie",
        "wxid_test_leaver",
        "wxid_test_lateadmin",
        "wxid_test_pass2",
    )
    for mid, name in ((leaver, "测试乙"), (late_admin, "测试丙"), (pass2, "测试丁")):
        await join(bot, mid, name, now - 3600)

    # Lottery #1: Lily wins it alone, so not_won:1 excludes her from #2.
    await bot.ask("/lottery new 上一期 winners=1", by=MANAGER)
    await bot.ask("参加抽奖 1", by=LILY)
    assert (await bot.ask("/lottery draw 1", by=MANAGER)).mention_ids == (LILY,)

    # Check-ins (the store, as the check-in feature records them) and active days (chat with
    # the messages' own past timestamps: counted, not answered).
    two_days = [XIAOMING, AQIANG, LILY, leaver, late_admin, pass2]
    for mid in two_days:
        for k in (1, 2):
            await bot.store.checkins.checkin(ROOM, mid, now - k * DAY)
    await bot.store.checkins.checkin(ROOM, XIAOHONG, now - DAY)  # only one
    for mid in [*two_days, XIAOHONG]:
        await bot.silent("早", by=mid, timestamp=now - 5 * DAY)
        if mid != AQIANG:  # AQIANG: one past active day only (+ today's entry message = 2)
            await bot.silent("早", by=mid, timestamp=now - 6 * DAY)

    post = await bot.ask(
        "/lottery new 老朋友专享 winners=5 "
        "require=member,joined_before,checkins:2/30,active:3/30,not_won:1",
        by=MANAGER,
    )
    assert "开奖时仍在群内" in post.text and "最近 30 天签到至少 2 次" in post.text
    await join(bot, newbie, "测试甲", now + 60)  # joined after the lottery opened
    for k in (1, 2):
        await bot.store.checkins.checkin(ROOM, newbie, now - k * DAY)
        await bot.silent("早", by=newbie, timestamp=now - (4 + k) * DAY)

    for mid in (XIAOMING, leaver, late_admin, pass2):
        assert "已参加抽奖 #2" in (await bot.ask("参加抽奖 2", by=mid)).text
    assert "签到至少 2 次（你有 1 次）" in (await bot.ask("参加抽奖 2", by=XIAOHONG)).text
    assert "至少 3 天发言（你有 2 天）" in (await bot.ask("参加抽奖 2", by=AQIANG)).text
    assert "中奖者不能参加" in (await bot.ask("参加抽奖 2", by=LILY)).text
    assert "前入群" in (await bot.ask("参加抽奖 2", by=newbie)).text
    assert "管理员" in (await bot.ask("参加抽奖 2", by=MANAGER)).text

    # After entering: one leaves the room, one becomes a room admin. Both are out at the draw.
    until = watch_events(bot)
    await bot.gw.leave(ROOM, [leaver])
    await until(lambda: not bot.store.members.get(ROOM, leaver).present)
    await bot.store.admins.add(ROOM, late_admin, by=MANAGER)

    text = (await bot.ask("/lottery draw 2", by=MANAGER)).text
    eligible = [XIAOMING, pass2]
    assert "参与人数：2" in text and value(text, "D") == spec_digest(eligible)
    lot = LotteryRepo(bot.store).get(ROOM, 2)
    assert lot is not None and sorted(lot.eligible) == sorted(eligible)
    assert list(lot.winners) == spec_winners(value(text, "S"), eligible, 5)
    assert len(LotteryRepo(bot.store).entrants(ROOM, 2)) == 4  # entries are kept as they were


def test_require_syntax() -> None:
    assert parse_require("member,joined_before,checkins:3/30,active:5,not_won:2") == Conditions(
        member=True, joined_before=True, checkins=(3, 30), active=(5, 30), not_won=2
    )
    assert parse_require("成员，签到：3/7、未中奖") == Conditions(
        member=True, checkins=(3, 7), not_won=1
    )
    assert parse_require("member").spec() == "member"
    for bad in (
        "",
        "vip",
        "member,member",
        "checkins",
        "checkins:5/3",
        "active:0/30",
        "not_won:x",
        "member:1",
        "checkins:3/400",
    ):
        with pytest.raises(ValueError):
            parse_require(bad)


# --- crash and restart ----------------------------------------------------------------------


async def test_restart_in_the_middle_of_a_draw_completes_it_once(bot: BotHarness) -> None:
    post = await bot.ask("/lottery new 断电测试 winners=2", by=MANAGER)
    for m in MEMBERS:
        await bot.ask("参加抽奖", by=m)
    # The crash: the draw began (status "drawing", entrants fixed, durable), nothing announced.
    repo = LotteryRepo(bot.store)
    assert await repo.begin_draw(ROOM, 1, lambda m: True, bot.ctx.clock.now()) is not None
    assert "开奖中" in (await bot.ask("/lottery list", by=XIAOMING)).text
    assert "已开奖" in (await bot.ask("参加抽奖 1", by=XIAOMING)).text
    assert results(bot) == []

    await bot.restart()
    announced = await bot.gw.wait_for_bot_message(is_result, conversation_id=ROOM)
    await quiet(bot)
    seed = value(announced.text, "S")
    assert spec_commitment(seed) == value(post.text, "C")
    assert announced.mention_ids == tuple(spec_winners(seed, MEMBERS, 2))

    await bot.restart()  # nothing left to do: no second announcement
    await quiet(bot)
    assert len(results(bot)) == 1
    lot = LotteryRepo(bot.store).get(ROOM, 1)
    assert lot is not None and (lot.status, lot.announce) == ("drawn", "sent")
    assert lot.winners == announced.mention_ids


async def test_drawn_but_never_posted_is_posted_after_restart(bot: BotHarness) -> None:
    await bot.ask("/lottery new 已存未发 winners=1", by=MANAGER)
    for m in MEMBERS:
        await bot.ask("参加抽奖", by=m)
    repo = LotteryRepo(bot.store)
    lot = await repo.begin_draw(ROOM, 1, lambda m: True, bot.ctx.clock.now())
    assert lot is not None
    winners = spec_winners(lot.seed_hex, MEMBERS, 1)
    await repo.finish_draw(ROOM, 1, winners, spec_digest(MEMBERS), bot.ctx.clock.now())
    await bot.restart()
    announced = await bot.gw.wait_for_bot_message(is_result, conversation_id=ROOM)
    await quiet(bot)
    assert announced.mention_ids == tuple(winners) and len(results(bot)) == 1


async def test_pending_announcement_is_not_reposted_but_managers_are_told(bot: BotHarness) -> None:
    await bot.ask("/lottery new 发送中断 winners=1", by=MANAGER)
    await bot.ask("参加抽奖", by=XIAOHONG)
    repo = LotteryRepo(bot.store)
    await repo.begin_draw(ROOM, 1, lambda m: True, bot.ctx.clock.now())
    await repo.finish_draw(ROOM, 1, [XIAOHONG], spec_digest([XIAOHONG]), bot.ctx.clock.now())
    assert await repo.set_announce(ROOM, 1, ("",), "pending")  # flag written, then the crash

    await bot.restart()
    told = await bot.gw.wait_for_bot_message(
        lambda m: "/lottery announce 1" in m.text, conversation_id=MANAGER
    )
    assert "可能没有发出" in told.text
    await quiet(bot)
    assert results(bot) == []  # it may have gone out before the crash: never twice
    assert LotteryRepo(bot.store).get(ROOM, 1).announce == "unconfirmed"  # type: ignore[union-attr]
    assert "公告未确认" in (await bot.ask("/lottery list", by=MANAGER)).text

    reposted = await bot.ask("/lottery announce 1", by=MANAGER)  # a manager decides
    assert is_result(reposted) and reposted.mention_ids == (XIAOHONG,)
    await quiet(bot)
    assert LotteryRepo(bot.store).get(ROOM, 1).announce == "sent"  # type: ignore[union-attr]


# --- time-driven draws ---------------------------------------------------------------------

START = 1_800_000_000.0  # 2027-01-15 16:00 Asia/Shanghai


@pytest.fixture
async def timed(tmp_path: Path) -> AsyncIterator[tuple[BotHarness, FakeClock]]:
    clock = FakeClock(START)
    gw = SandboxGateway(World.from_spec(WORLD_SPEC), heartbeat_s=0, clock=clock)
    await gw.start()
    h = BotHarness(gw, make_settings(tmp_path / "data"))
    try:
        yield h, clock
    finally:
        await h.stop()
        await gw.stop()
    if h.errors:
        raise AssertionError(f"handler errors: {h.errors!r}") from h.errors[0]


async def test_automatic_draw_at_draw_time(timed: tuple[BotHarness, FakeClock]) -> None:
    bot, clock = timed
    await bot.start(clock=clock)
    post = await bot.ask("/lottery new 晚八点 winners=2 draw=2027-01-15 20:00", by=MANAGER)
    assert "2027-01-15 20:00 自动开奖" in post.text
    for m in MEMBERS:
        await bot.ask("参加抽奖", by=m)
    assert "lottery-draw:10001@chatroom:1" in bot.ctx.scheduler.names()

    await clock.advance(4 * 3600 - 60)
    assert results(bot) == []
    await clock.advance(60)
    announced = await bot.gw.wait_for_bot_message(is_result, conversation_id=ROOM)
    await quiet(bot)
    seed = value(announced.text, "S")
    assert spec_commitment(seed) == value(post.text, "C")
    assert announced.mention_ids == tuple(spec_winners(seed, MEMBERS, 2))
    lot = LotteryRepo(bot.store).get(ROOM, 1)
    assert lot is not None and lot.drawn_ts == START + 4 * 3600
    assert len(results(bot)) == 1


async def test_draw_missed_while_down_happens_on_start(timed: tuple[BotHarness, FakeClock]) -> None:
    bot, clock = timed
    await bot.start(clock=clock)
    post = await bot.ask("/lottery new 停机期间 winners=1 draw=2027-01-15 17:00", by=MANAGER)
    for m in MEMBERS:
        await bot.ask("参加抽奖", by=m)
    await bot.stop()
    await clock.advance(3 * 3600)  # 19:00: the draw time passed while the bot was down
    await bot.start(clock=clock)
    announced = await bot.gw.wait_for_bot_message(is_result, conversation_id=ROOM)
    await quiet(bot)
    seed = value(announced.text, "S")
    assert spec_commitment(seed) == value(post.text, "C")
    assert announced.mention_ids == tuple(spec_winners(seed, MEMBERS, 1))
    assert len(results(bot)) == 1
    assert "lottery-draw:10001@chatroom:1" not in bot.ctx.scheduler.names()


# --- reroll -------------------------------------------------------------------------------


async def test_reroll_takes_the_next_in_the_published_order(bot: BotHarness) -> None:
    await bot.ask("/lottery new 补抽 winners=1", by=MANAGER)
    for m in MEMBERS:
        await bot.ask("参加抽奖", by=m)
    seed = value((await bot.ask("/lottery draw 1", by=MANAGER)).text, "S")
    order = spec_winners(seed, MEMBERS, len(MEMBERS))
    names = {XIAOMING: "小明", XIAOHONG: "小红", AQIANG: "阿强", LILY: "Lily"}

    first = await bot.ask(
        f"/lottery reroll 1 @{names[order[0]]}", by=MANAGER, mention_ids=[order[0]]
    )
    assert first.mention_ids == (order[1],) and "递补" in first.text
    second = await bot.ask(f"/lottery reroll 1 {names[order[1]]}", by=MANAGER)  # by name
    assert second.mention_ids == (order[2],)
    assert (
        "不是抽奖 #1 目前的中奖者"
        in (await bot.ask(f"/lottery reroll 1 {order[0]}", by=MANAGER)).text
    )  # never an earlier one
    lot = LotteryRepo(bot.store).get(ROOM, 1)
    assert lot is not None and lot.winners == (order[2],) and lot.initial_winners == (order[0],)
    assert member_summary(bot.store, ROOM, order[2]) == (1, 1)
    assert member_summary(bot.store, ROOM, order[0]) == (1, 0)

    verify = (await bot.replies_to("/lottery verify 1", by=MANAGER))[0].text
    assert "[PASS] rerolls" in verify and "结果：正确" in verify
    assert "管理员命令" in (await bot.ask(f"/lottery reroll 1 {order[2]}", by=XIAOMING)).text


async def test_reroll_with_an_ambiguous_name_says_so(bot: BotHarness) -> None:
    now = bot.ctx.clock.now()
    await join(bot, "wxid_test_wang1", "小王", now - 60)
    await join(bot, "wxid_test_wang2", "小王", now - 60)
    await bot.ask("/lottery new 同名 winners=2", by=MANAGER)
    await bot.ask("参加抽奖", by="wxid_test_wang1")
    await bot.ask("参加抽奖", by="wxid_test_wang2")
    await bot.ask("/lottery draw 1", by=MANAGER)
    text = (await bot.ask("/lottery reroll 1 @小王", by=MANAGER)).text
    assert "2 位成员叫「小王」" in text and "wxid_test_wang1" in text
    assert "没有可递补" in (await bot.ask("/lottery reroll 1 wxid_test_wang1", by=MANAGER)).text
    assert "没有叫「小李」" in (await bot.ask("/lottery reroll 1 小李", by=MANAGER)).text


# --- entries ------------------------------------------------------------------------------


async def test_entry_needs_a_number_when_several_are_open(bot: BotHarness) -> None:
    assert "没有进行中的抽奖" in (await bot.ask("参加抽奖", by=XIAOMING)).text
    await bot.ask("/lottery new 甲", by=MANAGER)
    await bot.ask("/lottery new 乙", by=MANAGER)
    text = (await bot.ask("参加抽奖", by=XIAOMING)).text
    assert "请写编号" in text and "参加抽奖 2" in text
    assert "已参加抽奖 #2" in (await bot.ask("参加抽奖2", by=XIAOMING)).text
    assert "没有抽奖 #7" in (await bot.ask("/enter 7", by=XIAOMING)).text


async def test_forget_removes_entries_in_open_lotteries_only(bot: BotHarness) -> None:
    await bot.ask("/lottery new 已开", by=MANAGER)
    await bot.ask("参加抽奖 1", by=XIAOMING)
    await bot.ask("/lottery draw 1", by=MANAGER)
    await bot.ask("/lottery new 未开", by=MANAGER)
    await bot.ask("参加抽奖 2", by=XIAOMING)
    await lottery_handlers.forget(MemberForgotten(XIAOMING, "anon-test"), bot.ctx)
    repo = LotteryRepo(bot.store)
    assert repo.entrants(ROOM, 2) == []
    # the entry row of the drawn lottery moves to the pseudonym; the published draw is intact
    assert [e.member_id for e in repo.entrants(ROOM, 1)] == ["anon-test"]
    lot = repo.get(ROOM, 1)
    assert lot is not None and lot.winners == (XIAOMING,) and lot.eligible == (XIAOMING,)


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/lottery new", "用法：/lottery new"),
        ("/lottery new 福利 winners=abc", "winners= 应为"),
        ("/lottery new 福利 winners=0", "winners= 应为"),
        ("/lottery new 福利 draw=明天", "draw= 应写成"),
        ("/lottery new 福利 draw=2020-01-01 10:00", "已经过去"),
        ("/lottery new 福利 require=vip", "未知条件"),
        ("/lottery new 福利 require=checkins:9/3", "1 ≤ K ≤ D"),
        ("/lottery new 福利 color=red", "未知选项 color="),
        ("/lottery new 福利 winners=1 winners=2", "重复"),
        ("/lottery new " + "长" * 200, "标题最长"),
        ("/lottery draw", "用法：/lottery draw N"),
        ("/lottery draw x", "N 应为数字"),
        ("/lottery draw 9", "没有抽奖 #9"),
        ("/lottery verify", "用法：/lottery verify N"),
        ("/lottery reroll 1", "用法：/lottery reroll"),
        ("/lottery announce 1", "没有抽奖 #1"),
        ("/lottery foo", "未知的抽奖命令"),
    ],
)
async def test_bad_arguments_get_usage(bot: BotHarness, text: str, expected: str) -> None:
    assert expected in (await bot.ask(text, by=MANAGER)).text
    assert LotteryRepo(bot.store).list(ROOM) == []


async def test_members_cannot_run_manager_commands(bot: BotHarness) -> None:
    assert "管理员命令" in (await bot.ask("/lottery new 偷偷", by=XIAOMING)).text
    assert "管理员命令" in (await bot.ask("/lottery draw 1", by=XIAOMING)).text
    help_text = (await bot.ask("/lottery", by=XIAOMING)).text
    assert "/lottery verify N" in help_text and "/lottery new" not in help_text
    assert "require=" in (await bot.ask("/lottery", by=MANAGER)).text


async def test_manager_in_private_chat_acts_on_the_chosen_room(bot: BotHarness) -> None:
    await bot.store.kv.set(f"use:{MANAGER}", ROOM)  # what /use records
    note = await bot.ask("/lottery new 私聊发布 winners=1", by=MANAGER, room=None)
    assert "#1 已发布到群里" in note.text
    post = bot.gw.bot_messages(ROOM)[-1]
    assert "私聊发布" in post.text and post.mention_ids == ()
    await bot.ask("参加抽奖", by=AQIANG)
    assert "结果已发到群里" in (await bot.ask("/lottery draw 1", by=MANAGER, room=None)).text
    announced = await bot.gw.wait_for_bot_message(is_result, conversation_id=ROOM)
    assert announced.mention_ids == (AQIANG,)
    assert spec_commitment(value(announced.text, "S")) == value(post.text, "C")

"""Daily check-ins with streaks (`签到`, `/checkin top`) and the member's own record (`我的`).

A check-in counts once per member per calendar day in the configured timezone, by the
message's own timestamp (a 23:59:59 check-in processed after midnight still counts for the
day it was sent). Storage is `store.checkins` (one commit per check-in, before the reply).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from bot.context import Context
from bot.router import Request, Router, UsageError
from storage.events import EventRepo

router = Router("checkin")
log = logging.getLogger("qunbot.checkin")

TOP_N = 10


@router.command("checkin", usage="/checkin", zh="每日签到（显示今日排名和连续天数）",
                en="daily check-in (today's rank and your streak)", aliases=("签到",))
async def checkin(req: Request) -> None:
    if req.args.strip():
        raise UsageError(req.t("签到不需要参数；排行榜用 /checkin top。",
                               "No arguments; the leaderboard is /checkin top."))
    ctx, t = req.ctx, req.t
    room, member = req.room_id, req.msg.sender_id
    assert room is not None
    ts = min(req.msg.timestamp, ctx.clock.now())  # the day it was sent, never a future one
    res = await ctx.store.checkins.checkin(room, member, ts)
    count_activity(ctx, room, member, ts)
    longest = t(f"（最长 {res.longest} 天）", f" (longest {res.longest})") \
        if res.longest > res.streak else ""
    if res.already_checked_in:
        rank = t(f"今天第 {res.rank} 位，", f"rank {res.rank} today, ") if res.rank else ""
        await req.reply(t(f"你今天已经签到过了（{rank}连续 {res.streak} 天{longest}）。",
                          f"You already checked in today ({rank}streak {res.streak}{longest})."))
        return
    await req.reply(t(
        f"签到成功！今天第 {res.rank} 位，已连续签到 {res.streak} 天{longest}，"
        f"累计 {res.total} 天。",
        f"Checked in! Rank {res.rank} today, streak {res.streak} day(s){longest}, "
        f"{res.total} in total."))


def count_activity(ctx: Context, room: str, member: str, ts: float) -> None:
    """A check-in or sign-up makes the member active that day (SPEC section 6), with the
    same exclusions as messages: other bots, and members who have not opted in."""
    if member in ctx.settings.bots:
        return
    if ctx.settings.privacy.mode == "opt-in" and not ctx.store.kv.get(f"optin:{member}"):
        return
    ctx.store.activity.touch(room, member, ts, messages=0)


@router.command("checkin top", usage="/checkin top", zh="签到排行榜", en="check-in leaderboard")
async def checkin_top(req: Request) -> None:
    ctx, t = req.ctx, req.t
    room = req.room_id
    assert room is not None
    top = ctx.store.checkins.top(room, TOP_N, now=ctx.clock.now())
    if not top:
        await req.reply(t("还没有人签到，发「签到」来当第一个吧！",
                          "No check-ins yet: be the first!"))
        return
    lines = [t("签到排行榜（累计天数）：", "Check-in leaderboard (days):")]
    for i, s in enumerate(top, 1):
        name = ctx.member_name(room, s.member_id)
        lines.append(t(f"{i}. {name} {s.total} 天（连续 {s.streak} 天）",
                       f"{i}. {name} {s.total} (streak {s.streak})"))
    await req.reply("\n".join(lines))


@router.command("me", usage="/me", zh="我的签到、报名和抽奖记录",
                en="my check-ins, sign-ups and lotteries", aliases=("我的",), where="any")
async def me(req: Request) -> None:
    ctx, member = req.ctx, req.msg.sender_id
    if req.msg.room_id is not None:
        rooms = [req.msg.room_id]
    else:  # privately: every served room the member is in
        rooms = [r for r in sorted(ctx.served_rooms())
                 if (rec := ctx.store.members.get(r, member)) is not None and rec.present]
    if not rooms:
        await req.reply(req.t("还没有你的记录。", "There is no record of you yet."))
        return
    sections = [record(req, room) for room in rooms]
    await req.reply("\n\n".join(sections))


def record(req: Request, room: str) -> str:
    ctx, t, member = req.ctx, req.t, req.msg.sender_id
    st = ctx.store.checkins.stats(room, member, now=ctx.clock.now())
    confirmed, waitlisted = EventRepo(ctx.store).member_summary(room, member)
    head = t(f"{ctx.member_name(room, member)} 在「{ctx.room_name(room)}」的记录：",
             f"{ctx.member_name(room, member)} in {ctx.room_name(room)}:")
    lines = [
        head,
        t(f"签到：累计 {st.total} 天，当前连续 {st.streak} 天，最长连续 {st.longest} 天",
          f"Check-ins: {st.total} in total, streak {st.streak}, longest {st.longest}"),
        t(f"报名：{confirmed + waitlisted} 个活动（正式 {confirmed}，候补 {waitlisted}）",
          f"Sign-ups: {confirmed + waitlisted} event(s) ({confirmed} confirmed, "
          f"{waitlisted} waitlisted)"),
    ]
    lottery = lottery_summary(ctx, room, member)
    if lottery is not None:
        entered, won = lottery
        lines.append(t(f"抽奖：参加 {entered} 次，中奖 {won} 次",
                       f"Lotteries: entered {entered}, won {won}"))
    return "\n".join(lines)


def lottery_summary(ctx: Context, room: str, member: str) -> tuple[int, int] | None:
    """(entered, won) from storage.lotteries when that module offers member_summary."""
    try:
        mod = importlib.import_module("storage.lotteries")
    except ImportError:
        return None
    fn: Callable[..., Any] | None = getattr(mod, "member_summary", None)
    if fn is None:
        return None
    try:
        entered, won = fn(ctx.store, room, member)
        return int(entered), int(won)
    except Exception:  # noqa: BLE001 - a lottery bug must not break the member's own record
        log.exception("lottery member_summary failed")
        return None

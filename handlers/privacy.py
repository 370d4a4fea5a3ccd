"""Privacy: the notice, /privacy, /optin, /forget, and the retention purge (SPEC section 7)."""

from __future__ import annotations

import logging

from bot.context import Context
from bot.events import LoggedIn, MemberForgotten
from bot.outbox import Priority
from bot.router import Dispatcher, Request, Router
from bot.scheduler import Firing

router = Router("privacy")
log = logging.getLogger("qunbot.privacy")

CONFIRM_WINDOW_S = 600  # a /forget confirmation must follow the request within 10 minutes


@router.command(
    "privacy",
    usage="/privacy",
    zh="本群的隐私说明",
    en="this room's privacy notice",
    aliases=("隐私",),
    where="any",
)
async def privacy(req: Request) -> None:
    await req.reply(req.ctx.settings.privacy_notice(req.room_id))


@router.command(
    "optin",
    usage="/optin",
    zh="同意记录我的活动数据",
    en="agree to activity recording",
    aliases=("同意",),
    where="any",
)
async def optin(req: Request) -> None:
    store = req.ctx.store
    await store.kv.set(f"optin:{req.msg.sender_id}", req.ctx.clock.now())
    if req.ctx.settings.privacy.mode == "opt-in":
        await req.reply(
            req.t(
                "已同意，之后的活动会被记录。可随时发送 /forget 删除。",
                "Thanks: your activity will be recorded from now on. /forget deletes it.",
            )
        )
    else:
        await req.reply(
            req.t(
                "本群无需单独同意；隐私说明见 /privacy。", "No opt-in is needed here; see /privacy."
            )
        )


@router.command(
    "forget",
    usage="/forget [confirm]",
    zh="删除我的数据（需确认）",
    en="delete my personal data (asks to confirm)",
    aliases=("删除我的数据",),
    where="any",
)
async def forget(req: Request) -> None:
    ctx, member = req.ctx, req.msg.sender_id
    key = f"forget-request:{member}"
    if req.args.strip().lower() not in ("confirm", "确认"):
        await ctx.store.kv.set(key, ctx.clock.now())
        await req.reply(
            req.t(
                "将删除你的昵称、签到、未结束活动的报名和未开奖抽奖的参与记录，历史统计改用不可还原的匿名编号。"
                "确认请在 10 分钟内发送：/forget confirm",
                "This deletes your name, check-ins, sign-ups in open events and entries in open lotteries; "
                "history keeps only an irreversible pseudonym. To confirm within 10 minutes: /forget confirm",
            )
        )
        return
    asked = ctx.store.kv.get(key)
    if not isinstance(asked, int | float) or ctx.clock.now() - asked > CONFIRM_WINDOW_S:
        await req.reply(
            req.t(
                "请先发送 /forget，再在 10 分钟内发送 /forget confirm。",
                "Send /forget first, then /forget confirm within 10 minutes.",
            )
        )
        return
    await forget_member(ctx, member)
    await ctx.store.kv.delete(key)
    await req.reply(req.t("你的个人数据已删除。", "Your personal data has been deleted."))


async def forget_member(ctx: Context, member_id: str) -> str:
    """Storage first (one commit), then every feature removes its own personal data."""
    pseudonym = await ctx.store.forget_member(member_id)
    dispatcher = ctx.services["dispatcher"]
    assert isinstance(dispatcher, Dispatcher)
    event = MemberForgotten(member_id, pseudonym)
    for listener in dispatcher.listeners(event):
        await listener(event, ctx)
    await ctx.store.kv.delete(f"optin:{member_id}")
    log.info("forgot a member (pseudonym %s)", pseudonym)
    return pseudonym


@router.on(LoggedIn)
async def post_notice_to_new_rooms(event: LoggedIn, ctx: Context) -> None:
    """When the bot starts serving a room it posts the privacy notice, once per room."""
    for room_id in sorted(ctx.served_rooms()):
        flag = f"notice-posted:{room_id}"
        if ctx.store.kv.get(flag):
            continue
        await ctx.store.kv.set(flag, ctx.clock.now())
        ctx.say(room_id, ctx.settings.privacy_notice(room_id), priority=Priority.ANNOUNCE)


@router.startup
async def schedule_purge(ctx: Context) -> None:
    async def purge(firing: Firing) -> None:
        await purge_old(ctx)

    ctx.scheduler.cron("privacy-purge", "30 3 * * *", purge)


async def purge_old(ctx: Context) -> int:
    """Per-member activity older than privacy.retention_days is removed; returns how many
    members have no activity left."""
    cutoff = ctx.local_day().toordinal() - ctx.settings.privacy.retention_days
    emptied = await ctx.store.activity.purge_before(cutoff)
    log.info(
        "privacy purge: activity before day %d removed (%d members left with none)", cutoff, emptied
    )
    return emptied

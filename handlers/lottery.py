"""Lotteries anyone can verify (SPEC section 5): /lottery new|draw|list|verify|reroll|announce,
参加抽奖 / /enter.

The arithmetic (seed, commitment, order, reroll, verification) is bot/lottery_math.py;
this module adds entry conditions, storage, scheduling and the chat.

Draw, step by step (each step one durable commit, so a crash anywhere resumes correctly):

1. ``open → drawing``: the eligible entrants are fixed (entries are refused from now on).
   With the seed, that list determines the result: a restart after this point recomputes
   exactly the same winners (startup hook).
2. ``drawing → drawn``: winners and D stored in one commit together with the status.
3. announcement flag ``"" → "pending"`` (durable), THEN the announcement is handed to the
   outbox; when WeChat accepts it the flag becomes ``"sent"``.

Why the flag is written *before* posting (at most once): a lottery result posted twice
looks like a second draw to the members and invites disputes, while a missing post is
harmless if someone knows about it.  So a restart posts only what was never handed to the
outbox (``""``); a post that was pending when the bot stopped (it may or may not have
reached WeChat; we cannot ask) is NOT re-posted by the bot: it becomes ``"unconfirmed"``,
the managers are told privately, ``/lottery list`` shows it, and ``/lottery announce N``
re-posts it on a manager's decision.  The window for that is the time the message waits in
the outbox, normally seconds.

Conditions (``require=``) are checked at entry, so the reply says which one is unmet, and
the ones that can change afterwards (still in the room, became an admin, won another
lottery meanwhile, joined before) again when the entrants are fixed.  Check-in and activity
windows are judged at entry, with the window ending on the entry day: a member who
qualified when entering keeps the entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path

from bot import lottery_math
from bot.context import Context
from bot.events import MemberForgotten, Outgoing
from bot.outbox import Priority, SendFuture
from bot.router import Request, Router, UsageError, UserError, width_fold
from bot.scheduler import Firing
from storage.errors import StoreError
from storage.lotteries import Conditions, Lottery, LotteryRepo

router = Router("lottery")
log = logging.getLogger("qunbot.lottery")

MAX_WINNERS = 1000
MAX_TITLE = 100
DEFAULT_WINDOW_DAYS = 30

REQUIRE_HELP = ("member,joined_before,checkins:K/D,active:K/D,not_won:L")
USAGE_NEW = ("/lottery new 标题 [winners=N] [draw=YYYY-MM-DD HH:MM] "
             f"[require={REQUIRE_HELP}]")
USAGE_NEW_EN = ("/lottery new TITLE [winners=N] [draw=YYYY-MM-DD HH:MM] "
                f"[require={REQUIRE_HELP}]")
REQUIRE_DOC_ZH = ("条件：member=开奖时仍在群内；joined_before=抽奖开始前已入群；"
                  "checkins:K/D=最近D天签到至少K次；active:K/D=最近D天至少K天发言；"
                  "not_won:L=最近L次抽奖未中奖。例：require=member,checkins:3/30,not_won:2")
REQUIRE_DOC_EN = ("conditions: member = in the room at the draw; joined_before = joined before the "
                  "lottery opened; checkins:K/D = at least K check-ins in the last D days; "
                  "active:K/D = active on at least K of the last D days; not_won:L = not a winner "
                  "of the last L lotteries. E.g. require=member,checkins:3/30,not_won:2")


def job_name(room_id: str, n: int) -> str:
    return f"lottery-draw:{room_id}:{n}"


def _t(ctx: Context, zh: str, en: str) -> str:
    return zh if ctx.settings.language == "zh" else en


def _fmt_time(ctx: Context, ts: float) -> str:
    return datetime.fromtimestamp(ts, ctx.settings.tz).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- background work


class _Background:
    """Draws and send confirmations that outlive the message (or startup) that began them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, ctx: Context, work: Awaitable[object], what: str) -> None:
        task = asyncio.ensure_future(self._guard(ctx, work, what))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _guard(ctx: Context, work: Awaitable[object], what: str) -> None:
        try:
            await work
        except Exception as exc:  # noqa: BLE001 - logged and reported, never lost silently
            log.exception("lottery: %s failed", what)
            ctx.report_error(exc)

    async def idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def background(ctx: Context) -> _Background:
    bg = ctx.services.get("lottery")
    if not isinstance(bg, _Background):
        bg = ctx.services["lottery"] = _Background()
    return bg


async def settle(ctx: Context) -> None:
    """Wait until background draws and send confirmations are done (tests, shutdown)."""
    await background(ctx).idle()


# --------------------------------------------------------------------------- require=


_REQ_ALIASES = {
    "member": "member", "成员": "member", "群成员": "member",
    "joined_before": "joined_before", "先入群": "joined_before", "入群": "joined_before",
    "checkins": "checkins", "checkin": "checkins", "签到": "checkins",
    "active": "active", "活跃": "active",
    "not_won": "not_won", "未中奖": "not_won",
}


def parse_require(text: str) -> Conditions:
    """``member,joined_before,checkins:3/30,active:5/30,not_won:2`` → Conditions.

    Separators: comma (also ，、; and spaces). ``K/D``: D defaults to 30 days. Raises
    ValueError with a bilingual reason.
    """
    folded = width_fold(text).strip()
    if not folded:
        raise ValueError("require= 为空 / require= is empty")
    seen: set[str] = set()
    flags: set[str] = set()
    windows: dict[str, tuple[int, int]] = {}
    not_won: int | None = None
    for item in (i for i in re.split(r"[,、;\s]+", folded) if i):
        name, _, arg = item.partition(":")
        key = _REQ_ALIASES.get(name.strip().lower())
        if key is None:
            raise ValueError(f"未知条件 {item!r} / unknown condition {item!r}")
        if key in seen:
            raise ValueError(f"条件 {key} 重复 / {key} given twice")
        seen.add(key)
        arg = arg.strip()
        if key in ("member", "joined_before"):
            if arg:
                raise ValueError(f"{key} 不带参数 / {key} takes no value")
            flags.add(key)
        elif key in ("checkins", "active"):
            m = re.fullmatch(r"(\d{1,4})(?:/(\d{1,4}))?", arg)
            if m is None:
                raise ValueError(f"{key} 应写成 {key}:K/D，如 {key}:3/30 / "
                                 f"write {key}:K/D, e.g. {key}:3/30")
            k, d = int(m.group(1)), int(m.group(2) or DEFAULT_WINDOW_DAYS)
            if not (1 <= d <= 366 and 1 <= k <= d):
                raise ValueError(f"{key}:{k}/{d} 需 1 ≤ K ≤ D ≤ 366 / needs 1 ≤ K ≤ D ≤ 366")
            windows[key] = (k, d)
        else:
            if arg and not re.fullmatch(r"\d{1,3}", arg):
                raise ValueError("not_won 应写成 not_won:L，如 not_won:2 / "
                                 "write not_won:L, e.g. not_won:2")
            not_won = int(arg) if arg else 1
            if not 1 <= not_won <= 100:
                raise ValueError("not_won:L 需 1 ≤ L ≤ 100 / needs 1 ≤ L ≤ 100")
    return Conditions(member="member" in flags, joined_before="joined_before" in flags,
                      checkins=windows.get("checkins"), active=windows.get("active"),
                      not_won=not_won)


def describe_conditions(ctx: Context, c: Conditions) -> list[str]:
    out = []
    if c.member:
        out.append(_t(ctx, "开奖时仍在群内", "still in the room at the draw"))
    if c.joined_before:
        out.append(_t(ctx, "抽奖开始前已入群", "joined before the lottery opened"))
    if c.checkins:
        k, d = c.checkins
        out.append(_t(ctx, f"最近 {d} 天签到至少 {k} 次",
                      f"at least {k} check-ins in the last {d} days"))
    if c.active:
        k, d = c.active
        out.append(_t(ctx, f"最近 {d} 天至少 {k} 天发言",
                      f"active on at least {k} of the last {d} days"))
    if c.not_won:
        out.append(_t(ctx, f"最近 {c.not_won} 次抽奖未中奖",
                      f"not a winner of the last {c.not_won} lotteries here"))
    return out


# --------------------------------------------------------------------------- eligibility


async def never_entrants(ctx: Context, room_id: str) -> set[str]:
    """Managers of the room, the bot itself and other bots: never entrants (SPEC 5)."""
    ids = set(ctx.settings.admins) | set(ctx.store.admins.list(room_id)) | set(ctx.settings.bots)
    if ctx.self_id:
        ids.add(ctx.self_id)
    if ctx.settings.room_owner_is_admin and ctx.directory is not None:
        try:
            owner = await ctx.directory.room_owner(room_id)
        except Exception as e:  # noqa: BLE001 - not reachable now: entry-time checks covered it
            log.warning("cannot read the owner of %s: %r", room_id, e)
        else:
            if owner:
                ids.add(owner)
    return ids


def unmet_conditions(ctx: Context, repo: LotteryRepo, lot: Lottery, member_id: str, *,
                     now: float, at_draw: bool, recent: set[str] | None = None) -> list[str]:
    """Texts of the conditions `member_id` does not meet (empty: eligible). `recent`: the
    winners of the last L lotteries, when the caller has computed them once for many."""
    c, room = lot.conditions, lot.room_id
    out: list[str] = []
    rec = ctx.store.members.get(room, member_id)
    if c.member and (rec is None or not rec.present):
        out.append(_t(ctx, "需要是本群成员", "you must be a member of this room"))
    if c.joined_before and (rec is None or rec.join_ts >= lot.created_ts):
        out.append(_t(ctx, f"需要在抽奖开始（{_fmt_time(ctx, lot.created_ts)}）前入群",
                      f"you must have joined before the lottery opened "
                      f"({_fmt_time(ctx, lot.created_ts)})"))
    if not at_draw:
        today = ctx.local_day(now).toordinal()
        if c.checkins:
            k, d = c.checkins
            have = sum(1 for x in ctx.store.checkins.days(room, member_id)
                       if today - d < x <= today)
            if have < k:
                out.append(_t(ctx, f"需要最近 {d} 天签到至少 {k} 次（你有 {have} 次）",
                              f"needs at least {k} check-ins in the last {d} days "
                              f"(you have {have})"))
        if c.active:
            k, d = c.active
            have = sum(1 for x in ctx.store.activity.member_days(room, member_id)
                       if today - d < x <= today)
            if have < k:
                out.append(_t(ctx, f"需要最近 {d} 天至少 {k} 天发言（你有 {have} 天）",
                              f"needs activity on at least {k} of the last {d} days "
                              f"(you have {have})"))
    if recent is None and c.not_won:
        recent = repo.recent_winners(room, c.not_won, exclude_n=lot.n)
    if c.not_won and recent is not None and member_id in recent:
        out.append(_t(ctx, f"最近 {c.not_won} 次抽奖的中奖者不能参加",
                      f"winners of the last {c.not_won} lotteries cannot enter"))
    return out


# --------------------------------------------------------------------------- the draw


async def draw_lottery(ctx: Context, room_id: str, n: int) -> Lottery | None:
    """Draw (if still open), store, then announce. Safe to call concurrently and again."""
    repo = LotteryRepo(ctx.store)
    lot = repo.get(room_id, n)
    if lot is None:
        return None
    if lot.status == "open":
        excluded = await never_entrants(ctx, room_id)
        now = ctx.clock.now()
        last = lot.conditions.not_won
        recent = repo.recent_winners(room_id, last, exclude_n=n) if last else set()

        def keep(member_id: str) -> bool:  # runs inside the commit, on the entrants it reads
            return member_id not in excluded and not unmet_conditions(
                ctx, repo, lot, member_id, now=now, at_draw=True, recent=recent)

        await repo.begin_draw(room_id, n, keep, now)
        ctx.scheduler.remove(job_name(room_id, n))
    return await complete_draw(ctx, room_id, n)


async def complete_draw(ctx: Context, room_id: str, n: int) -> Lottery | None:
    """drawing → drawn (same result however often it is called), then post once."""
    repo = LotteryRepo(ctx.store)
    lot = repo.get(room_id, n)
    if lot is not None and lot.status == "drawing":
        result = lottery_math.draw(bytes.fromhex(lot.seed_hex), lot.eligible, lot.winner_count)
        await repo.finish_draw(room_id, n, result.winners, result.entrants_digest, ctx.clock.now())
        lot = repo.get(room_id, n)
    if lot is not None and lot.status == "drawn" and lot.announce == "":
        await announce(ctx, lot, expect=("",))
    return repo.get(room_id, n)


async def announce(ctx: Context, lot: Lottery, *, expect: tuple[str, ...]) -> bool:
    """Post the result: flag first (durable), then the outbox. False if the flag was not in
    `expect` (someone else posted it)."""
    repo = LotteryRepo(ctx.store)
    if not await repo.set_announce(lot.room_id, lot.n, expect, "pending"):
        return False
    fut = ctx.outbox.submit(Outgoing(lot.room_id, result_text(ctx, lot),
                                     mention_ids=tuple(lot.winners), priority=Priority.ANNOUNCE))
    background(ctx).spawn(ctx, _confirm(ctx, lot, fut), f"confirm #{lot.n}")
    return True


async def _confirm(ctx: Context, lot: Lottery, fut: SendFuture) -> None:
    msg_id = await fut
    repo = LotteryRepo(ctx.store)
    try:
        if msg_id:
            await repo.set_announce(lot.room_id, lot.n, ("pending",), "sent")
            return
        await repo.set_announce(lot.room_id, lot.n, ("pending",), "unconfirmed")
    except StoreError as e:  # the bot is stopping: the flag stays "pending", handled at start
        log.warning("lottery #%d: cannot record the announcement state: %s", lot.n, e)
        return
    log.warning("lottery #%d in %s: announcement not sent (%s)", lot.n, lot.room_id, fut.reason)
    await _tell_unconfirmed(ctx, lot)


async def _tell_unconfirmed(ctx: Context, lot: Lottery) -> None:
    room = ctx.room_name(lot.room_id)
    await ctx.tell_managers(_t(
        ctx,
        f"抽奖 #{lot.n}「{lot.title}」（{room}）已开奖并保存，但开奖公告可能没有发出"
        "（发送失败或机器人在发送时停止）。请查看群消息；如未发出，"
        f"在群里发送 /lottery announce {lot.n} 补发。",
        f"Lottery #{lot.n} \"{lot.title}\" ({room}) is drawn and stored, but its announcement may "
        f"not have gone out (send failed, or the bot stopped while sending). Check the room; if "
        f"it is missing, send /lottery announce {lot.n} there to post it."), lot.room_id)


def result_text(ctx: Context, lot: Lottery) -> str:
    names = [f"{i}. {ctx.member_name(lot.room_id, w)}"
             for i, w in enumerate(lot.initial_winners, 1)]
    lines = [_t(ctx, f"🎉 抽奖 #{lot.n}「{lot.title}」开奖",
                f"🎉 Lottery #{lot.n} \"{lot.title}\" drawn")]
    if names:
        lines.append(_t(ctx, "中奖（按顺序）：", "Winners, in order:"))
        lines += names
    else:
        lines.append(_t(ctx, "没有符合条件的参与者，本次无人中奖。",
                        "No eligible entrants: no winners."))
    for r in lot.rerolls:
        lines.append(_t(ctx, f"补抽：{ctx.member_name(lot.room_id, r.out_id)} → "
                             f"{ctx.member_name(lot.room_id, r.in_id)}",
                        f"Reroll: {ctx.member_name(lot.room_id, r.out_id)} → "
                        f"{ctx.member_name(lot.room_id, r.in_id)}"))
    lines += [
        _t(ctx, f"参与人数：{len(lot.eligible)}", f"Entrants: {len(lot.eligible)}"),
        f"D = {lot.digest}",
        f"S = {lot.seed_hex}",
        f"C = {lot.commitment}",
        _t(ctx,
           "核验：sha256(S 的十六进制) 应等于开奖前公布的 C；"
           "D = sha256(按字典序排列、换行连接的参与者 ID)；"
           "对每个参与者 ID 计算 HMAC-SHA256(密钥 S, ID)，从小到大排序，前 "
           f"{lot.winner_count} 位即中奖者。发送 /lottery verify {lot.n} 查看核验，"
           "或离线运行 qunbot lottery verify。",
           "Verify: sha256(hex of S) must equal C published at the opening; D = sha256 of the "
           "sorted entrant ids joined by newlines; sort entrants by HMAC-SHA256(key S, id) "
           f"ascending, the first {lot.winner_count} win. Send /lottery verify {lot.n}, or run "
           "qunbot lottery verify offline."),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- scheduling


def schedule(ctx: Context, lot: Lottery) -> None:
    if lot.draw_at is None:
        return
    room_id, n = lot.room_id, lot.n

    async def fire(firing: Firing) -> None:
        try:
            await draw_lottery(ctx, room_id, n)
        except Exception as exc:  # the scheduler only logs; report so it is not silent
            ctx.report_error(exc)
            raise

    ctx.scheduler.once(job_name(room_id, n), datetime.fromtimestamp(lot.draw_at, ctx.settings.tz),
                       fire)


@router.startup
async def resume(ctx: Context) -> None:
    """Rebuild draw jobs; finish what a stop or crash interrupted; draw what was missed."""
    repo = LotteryRepo(ctx.store)
    now = ctx.clock.now()
    bg = background(ctx)
    for lot in repo.all():
        what = f"resume #{lot.n} in {lot.room_id}"
        if lot.status == "open" and lot.draw_at is not None:
            if lot.draw_at <= now:
                log.info("lottery #%d in %s: draw time passed while stopped, drawing now",
                         lot.n, lot.room_id)
                bg.spawn(ctx, draw_lottery(ctx, lot.room_id, lot.n), what)
            else:
                schedule(ctx, lot)
        elif lot.status == "drawing" or (lot.status == "drawn" and lot.announce == ""):
            log.info("lottery #%d in %s: completing an interrupted draw", lot.n, lot.room_id)
            bg.spawn(ctx, complete_draw(ctx, lot.room_id, lot.n), what)
        elif lot.status == "drawn" and lot.announce == "pending":
            bg.spawn(ctx, _pending_at_start(ctx, lot), what)


async def _pending_at_start(ctx: Context, lot: Lottery) -> None:
    if await LotteryRepo(ctx.store).set_announce(lot.room_id, lot.n, ("pending",), "unconfirmed"):
        log.warning("lottery #%d in %s: the bot stopped while the announcement was pending; "
                    "not re-posting (it may have been sent), managers told", lot.n, lot.room_id)
        await _tell_unconfirmed(ctx, lot)


@router.on(MemberForgotten)
async def forget(event: MemberForgotten, ctx: Context) -> None:
    await LotteryRepo(ctx.store).forget(event.member_id, event.pseudonym)


# --------------------------------------------------------------------------- commands: manager

_OPT_SPLIT = re.compile(r"(?<!\S)([A-Za-z_]+)\s*[=＝]")
_OPTIONS = ("winners", "draw", "require")


def _parse_new(req: Request) -> tuple[str, int, float | None, Conditions]:
    args = req.args.strip()
    if "|" in args:  # "/lottery new winners=2 | 标题" also works: the title is free text
        opts_text, _, title = args.partition("|")
    else:
        m = _OPT_SPLIT.search(args)
        title, opts_text = (args, "") if m is None else (args[:m.start()], args[m.start():])
    title = " ".join(title.split())
    if not title:
        raise UsageError(req.t("请写抽奖标题", "a title is needed"))
    if len(title) > MAX_TITLE:
        raise UsageError(req.t(f"标题最长 {MAX_TITLE} 字",
                               f"the title is at most {MAX_TITLE} characters"))
    parts = _OPT_SPLIT.split(opts_text)
    if parts[0].strip():
        raise UsageError(req.t(f"看不懂 {parts[0].strip()!r}", f"cannot read {parts[0].strip()!r}"))
    opts: dict[str, str] = {}
    for key, value in zip(parts[1::2], parts[2::2], strict=True):
        key = key.lower()
        if key not in _OPTIONS:
            raise UsageError(req.t(f"未知选项 {key}=", f"unknown option {key}="))
        if key in opts:
            raise UsageError(req.t(f"{key}= 重复", f"{key}= given twice"))
        opts[key] = width_fold(value).strip()
    winners = 1
    if "winners" in opts:
        w = opts["winners"]
        if not w.isdigit() or not 1 <= int(w) <= MAX_WINNERS:
            raise UsageError(req.t(f"winners= 应为 1 到 {MAX_WINNERS} 的数字",
                                   f"winners= must be a number from 1 to {MAX_WINNERS}"))
        winners = int(w)
    draw_at: float | None = None
    if "draw" in opts:
        try:
            local = datetime.strptime(opts["draw"], "%Y-%m-%d %H:%M")
        except ValueError:
            raise UsageError(req.t(
                "draw= 应写成 YYYY-MM-DD HH:MM，如 draw=2026-01-31 20:00",
                "draw= must be YYYY-MM-DD HH:MM, e.g. draw=2026-01-31 20:00")) from None
        draw_at = local.replace(tzinfo=req.ctx.settings.tz).timestamp()
        if draw_at <= req.ctx.clock.now():
            raise UsageError(req.t("开奖时间已经过去", "the draw time is in the past"))
    conditions = Conditions()
    if "require" in opts:
        try:
            conditions = parse_require(opts["require"])
        except ValueError as e:
            zh, _, en = str(e).partition(" / ")
            raise UsageError(req.t(f"{zh}。{REQUIRE_DOC_ZH}",
                                   f"{en or zh}. {REQUIRE_DOC_EN}")) from None
    return title, winners, draw_at, conditions


def _room(req: Request) -> str:
    if req.room_id is None:
        raise UserError(req.t("这个命令请在群里使用。", "Please use this command in the group."))
    return req.room_id


def _get(req: Request, repo: LotteryRepo, room_id: str, arg: str) -> Lottery:
    n = req.int_arg(arg)
    lot = repo.get(room_id, n)
    if lot is None:
        raise UserError(req.t(f"没有抽奖 #{n}。发送 /lottery list 查看。",
                              f"There is no lottery #{n}. See /lottery list."))
    return lot


async def _answer_or_post(req: Request, room_id: str, text: str, *,
                          mention_ids: tuple[str, ...] = (), private_note: str = "") -> None:
    """In the room: the post is the answer. From a private chat (/use): post to the room and
    tell the manager."""
    if req.msg.room_id == room_id:
        req.ctx.send(Outgoing(room_id, text, mention_ids=mention_ids, priority=Priority.ANNOUNCE))
        req.replies.append(text)
    else:
        req.ctx.send(Outgoing(room_id, text, mention_ids=mention_ids, priority=Priority.ANNOUNCE))
        await req.reply(private_note or req.t("已发到群里。", "Posted to the room."))


@router.command("lottery new", usage=USAGE_NEW, admin=True,
                zh="开抽奖并公布承诺（require= 条件说明见 /lottery）",
                en="open a lottery and publish its commitment (require= conditions: see /lottery)")
async def lottery_new(req: Request) -> None:
    ctx = req.ctx
    room_id = _room(req)
    title, winners, draw_at, conditions = _parse_new(req)
    seed = lottery_math.new_seed()
    lot = await LotteryRepo(ctx.store).create(
        room_id, title=title, winner_count=winners, draw_at=draw_at, conditions=conditions,
        seed_hex=seed.hex(), commitment=lottery_math.commitment(seed),
        created_by=req.msg.sender_id, now=ctx.clock.now())
    schedule(ctx, lot)
    await _answer_or_post(req, room_id, opening_text(ctx, lot),
                          private_note=req.t(f"抽奖 #{lot.n} 已发布到群里。",
                                             f"Lottery #{lot.n} is posted in the room."))


def opening_text(ctx: Context, lot: Lottery) -> str:
    if lot.draw_at is not None:
        at = _fmt_time(ctx, lot.draw_at)
        when = _t(ctx, f"{at} 自动开奖", f"automatically at {at}")
    else:
        when = _t(ctx, "由管理员开奖", "when a manager draws it")
    conds = describe_conditions(ctx, lot.conditions)
    return "\n".join([
        _t(ctx, f"🎁 抽奖 #{lot.n}「{lot.title}」", f"🎁 Lottery #{lot.n} \"{lot.title}\""),
        _t(ctx, f"名额：{lot.winner_count} 名", f"Winners: {lot.winner_count}"),
        _t(ctx, f"开奖：{when}", f"Draw: {when}"),
        _t(ctx, "条件：" + ("；".join(conds) if conds else "无") + "（管理员不参加）",
           "Conditions: " + ("; ".join(conds) if conds else "none")
           + " (managers do not take part)"),
        _t(ctx, f"参加：发送「参加抽奖 {lot.n}」或 /enter {lot.n}",
           f"To enter: send /enter {lot.n} (参加抽奖 {lot.n})"),
        f"C = {lot.commitment}",
        _t(ctx, "C = sha256(种子 S 的十六进制)。S 在开奖时公布，任何人都可核对结果没有被更改。",
           "C = sha256(hex of the seed S). S is revealed at the draw, so anyone can check the "
           "result was not changed."),
    ])


@router.command("lottery draw", usage="/lottery draw N", admin=True, zh="现在开奖", en="draw now")
async def lottery_draw(req: Request) -> None:
    if not req.args.strip():
        raise UsageError()
    ctx = req.ctx
    room_id = _room(req)
    repo = LotteryRepo(ctx.store)
    lot = _get(req, repo, room_id, req.args)
    if lot.status == "drawn":
        raise UserError(req.t(f"抽奖 #{lot.n} 已经开过奖了。核验：/lottery verify {lot.n}",
                              f"Lottery #{lot.n} is already drawn. "
                              f"Verify: /lottery verify {lot.n}"))
    if lot.status == "drawing":
        raise UserError(req.t(f"抽奖 #{lot.n} 正在开奖。", f"Lottery #{lot.n} is being drawn."))
    done = await draw_lottery(ctx, room_id, lot.n)
    if req.msg.room_id != room_id and done is not None:
        await req.reply(req.t(f"抽奖 #{lot.n} 已开奖，结果已发到群里。",
                              f"Lottery #{lot.n} is drawn; the result is posted in the room."))


@router.command("lottery announce", usage="/lottery announce N", admin=True,
                zh="再次发布开奖公告（公告未确认发出时）", en="post a draw's announcement again")
async def lottery_announce(req: Request) -> None:
    if not req.args.strip():
        raise UsageError()
    ctx = req.ctx
    room_id = _room(req)
    lot = _get(req, LotteryRepo(ctx.store), room_id, req.args)
    if lot.status != "drawn":
        raise UserError(req.t(f"抽奖 #{lot.n} 还没有开奖。", f"Lottery #{lot.n} is not drawn yet."))
    await announce(ctx, lot, expect=("", "pending", "sent", "unconfirmed"))
    if req.msg.room_id != room_id:
        await req.reply(req.t("公告已发到群里。", "The announcement is posted in the room."))


def _resolve_member(req: Request, lot: Lottery, who: str) -> str:
    """@mention (its id), a raw id, or a name in the room; ambiguity is reported, not guessed."""
    ctx = req.ctx
    mentioned = [m for m in req.msg.mention_ids if m != ctx.self_id]
    if len(mentioned) > 1:
        raise UsageError(req.t("一次只能补抽一位", "one member at a time"))
    if mentioned:
        return mentioned[0]
    name = who.strip().lstrip("@").strip()
    if not name:
        raise UsageError(req.t("请 @ 要替换的中奖者", "@mention the winner to replace"))
    if name in lot.winners or ctx.store.members.get(lot.room_id, name) is not None:
        return name
    named = [r.member_id for r in ctx.store.members.list(lot.room_id) if r.name == name]
    winners = [m for m in named if m in lot.winners]
    candidates = winners or named
    if not candidates:
        raise UserError(req.t(f"群里没有叫「{name}」的成员。",
                              f"No member called \"{name}\" in the room."))
    if len(candidates) > 1:
        raise UserError(req.t(
            f"群里有 {len(candidates)} 位成员叫「{name}」，无法确定是谁：请在群里 @ 对方，或写 ID："
            + "、".join(candidates),
            f"{len(candidates)} members are called \"{name}\": @mention them in the room, "
            "or give the id: " + ", ".join(candidates)))
    return candidates[0]


@router.command("lottery reroll", usage="/lottery reroll N @中奖者", admin=True,
                zh="中奖者无法领奖时，按公布的顺序由下一位递补",
                en="replace an unreachable winner by the next entrant in the published order")
async def lottery_reroll(req: Request) -> None:
    ctx = req.ctx
    room_id = _room(req)
    parts = req.args.split(maxsplit=1)
    n_text, who = (parts + ["", ""])[:2]
    if not n_text or (not who.strip() and not req.msg.mention_ids):
        raise UsageError()
    repo = LotteryRepo(ctx.store)
    lot = _get(req, repo, room_id, n_text)
    if lot.status != "drawn":
        raise UserError(req.t(f"抽奖 #{lot.n} 还没有开奖。", f"Lottery #{lot.n} is not drawn yet."))
    out_id = _resolve_member(req, lot, who)
    out_name = ctx.member_name(room_id, out_id)
    if out_id not in lot.winners:
        raise UserError(req.t(f"{out_name} 不是抽奖 #{lot.n} 目前的中奖者。",
                              f"{out_name} is not a current winner of lottery #{lot.n}."))
    in_id = lottery_math.reroll(bytes.fromhex(lot.seed_hex), lot.eligible, lot.picks, out_id)
    if in_id is None:
        raise UserError(req.t(f"抽奖 #{lot.n} 已没有可递补的参与者。",
                              f"No entrants left to draw for lottery #{lot.n}."))
    done = await repo.reroll(room_id, lot.n, out_id, in_id, req.msg.sender_id, ctx.clock.now())
    if done is None:
        raise UserError(req.t("刚刚有人补抽过了，请用 /lottery verify 查看。",
                              "Someone rerolled just now; see /lottery verify."))
    place = len(done.picks)
    in_name = ctx.member_name(room_id, in_id)
    text = req.t(
        f"🎉 抽奖 #{lot.n}「{lot.title}」补抽：{out_name} 无法领奖，由 {in_name} 递补"
        f"（公布顺序中的第 {place} 位，可用已公布的 S 核验：/lottery verify {lot.n}）",
        f"🎉 Lottery #{lot.n} \"{lot.title}\" reroll: {out_name} cannot be reached; {in_name} "
        f"takes the place (number {place} in the published order; verify with S: "
        f"/lottery verify {lot.n})")
    await _answer_or_post(req, room_id, text, mention_ids=(in_id,))


# --------------------------------------------------------------------------- commands: anyone


@router.command("lottery list", usage="/lottery list", zh="本群的抽奖", en="this room's lotteries",
                where="any")
async def lottery_list(req: Request) -> None:
    ctx = req.ctx
    room_id = _room(req)
    repo = LotteryRepo(ctx.store)
    lots = repo.list(room_id)
    if not lots:
        await req.reply(req.t("本群还没有抽奖。", "No lotteries in this room yet."))
        return
    lines = [req.t("抽奖：", "Lotteries:")]
    for lot in lots[-20:]:
        head = f"#{lot.n} {lot.title} · "
        if lot.status == "open":
            when = (_fmt_time(ctx, lot.draw_at) if lot.draw_at is not None
                    else req.t("管理员开奖", "drawn by a manager"))
            entered = repo.entry_count(room_id, lot.n)
            lines.append(head + req.t(
                f"进行中 · {lot.winner_count} 名 · {entered} 人参加 · 开奖 {when}",
                f"open · {lot.winner_count} winner(s) · {entered} entered · draw {when}"))
        elif lot.status == "drawing":
            lines.append(head + req.t("开奖中", "being drawn"))
        else:
            names = ("、".join(ctx.member_name(room_id, w) for w in lot.winners)
                     or req.t("无", "none"))
            line = head + req.t(f"已开奖 · 中奖：{names}", f"drawn · winners: {names}")
            if lot.announce in ("pending", "unconfirmed") and req.is_manager:
                line += req.t(f"（公告未确认发出：/lottery announce {lot.n}）",
                              f" (announcement unconfirmed: /lottery announce {lot.n})")
            lines.append(line)
    await req.reply("\n".join(lines))


@router.command("lottery verify", usage="/lottery verify N", zh="核验抽奖 N 的开奖数据",
                en="the data to verify lottery N", where="any")
async def lottery_verify(req: Request) -> None:
    if not req.args.strip():
        raise UsageError()
    ctx = req.ctx
    room_id = _room(req)
    repo = LotteryRepo(ctx.store)
    lot = _get(req, repo, room_id, req.args)
    head = req.t(f"抽奖 #{lot.n}「{lot.title}」核验数据",
                 f"Lottery #{lot.n} \"{lot.title}\": verification")
    if lot.status != "drawn":
        await req.reply("\n".join([
            head, f"C = {lot.commitment}",
            req.t(f"尚未开奖，目前 {repo.entry_count(room_id, lot.n)} 人参加；种子 S 开奖时公布。",
                  f"Not drawn yet, {repo.entry_count(room_id, lot.n)} entered; the seed S is "
                  "revealed at the draw."),
        ]))
        return
    check = lottery_math.verify(
        commitment=lot.commitment, seed_hex=lot.seed_hex, entrant_ids=list(lot.eligible),
        winners=list(lot.initial_winners), winner_count=lot.winner_count,
        entrants_digest=lot.digest)
    lines = [
        head,
        f"C = {lot.commitment}",
        f"S = {lot.seed_hex}",
        f"D = {lot.digest}",
        req.t(f"参与人数（ID 数）：{len(lot.eligible)}", f"Entrants (ids): {len(lot.eligible)}"),
        req.t("中奖 ID（按顺序）：", "Winner ids, in order: ")
        + (", ".join(lot.initial_winners) or "-"),
    ]
    ok = check.ok
    if lot.rerolls:
        order = lottery_math.draw_order(bytes.fromhex(lot.seed_hex), lot.eligible)
        picks = lot.picks
        fine = picks == order[:len(picks)]
        ok = ok and fine
        first = len(lot.initial_winners) + 1
        lines.append(req.t("补抽：", "Rerolls: ")
                     + ", ".join(f"{r.out_id} → {r.in_id}" for r in lot.rerolls))
        lines.append(f"[{'PASS' if fine else 'FAIL'}] rerolls: "
                     + req.t(f"递补者依次为公布顺序中的第 {first}–{len(picks)} 位",
                             f"replacements are places {first}-{len(picks)} "
                             "of the published order"))
    lines += check.lines()[:-1]
    lines.append(req.t("结果：正确 ✅" if ok else "结果：不一致 ❌", "Result: correct ✅" if ok
                       else "Result: MISMATCH ❌"))
    await req.reply("\n".join(lines))
    # The entrant ids as a file, so anyone can recompute offline: qunbot lottery verify --entrants F
    path = _export_draw(ctx, room_id, lot)
    ctx.send(Outgoing(req.msg.conversation_id, path.name, file_path=str(path),
                      priority=Priority.MANAGER if req.is_manager else Priority.REPLY))


def _export_draw(ctx: Context, room_id: str, lot: Lottery) -> Path:
    data = lottery_math.draw(bytes.fromhex(lot.seed_hex), lot.eligible, lot.winner_count).export()
    folder = ctx.settings.data_dir / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lottery-{room_id.split('@')[0]}-{lot.n}.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


@router.command("lottery", usage="/lottery new|draw|list|verify|reroll|announce",
                zh="抽奖命令一览", en="lottery commands", where="any")
async def lottery_help(req: Request) -> None:
    lines = [req.t("抽奖命令：", "Lottery commands:"), "/lottery list", "/lottery verify N",
             req.t("参加抽奖 [N] 或 /enter [N]", "/enter [N] (参加抽奖 [N])")]
    if req.is_manager:
        lines = [lines[0], req.t(USAGE_NEW, USAGE_NEW_EN), "/lottery draw N",
                 "/lottery reroll N @name", "/lottery announce N", *lines[1:],
                 req.t(REQUIRE_DOC_ZH, REQUIRE_DOC_EN)]
    text = "\n".join(lines)
    if req.args.strip():
        raise UsageError(req.t(f"未知的抽奖命令：{req.args.strip()[:30]}\n{text}",
                               f"unknown lottery command: {req.args.strip()[:30]}\n{text}"))
    await req.reply(text)


@router.command("enter", usage="/enter [N]", zh="参加抽奖（只有一个进行中的抽奖时可省略 N）",
                en="enter lottery N (N may be left out when one is open)", aliases=("参加抽奖",))
async def enter(req: Request) -> None:
    ctx, member = req.ctx, req.msg.sender_id
    room_id = _room(req)
    repo = LotteryRepo(ctx.store)
    if req.args.strip():
        lot = _get(req, repo, room_id, req.args)
    else:
        open_now = repo.open_lotteries(room_id)
        if not open_now:
            raise UserError(req.t("现在没有进行中的抽奖。", "No lottery is open right now."))
        if len(open_now) > 1:
            raise UserError(req.t(
                "有多个进行中的抽奖，请写编号："
                + "；".join(f"参加抽奖 {x.n}（{x.title}）" for x in open_now),
                "Several lotteries are open; give the number: "
                + "; ".join(f"/enter {x.n} ({x.title})" for x in open_now)))
        lot = open_now[0]
    now = ctx.clock.now()
    if lot.status != "open":
        raise UserError(req.t(f"抽奖 #{lot.n} 已开奖，不能再参加了。",
                              f"Lottery #{lot.n} has been drawn; entries are closed."))
    if lot.draw_at is not None and lot.draw_at <= now:
        # Past its time but not drawn (the scheduler missed it, e.g. a suspended machine).
        background(ctx).spawn(ctx, draw_lottery(ctx, room_id, lot.n), f"late draw #{lot.n}")
        raise UserError(req.t(f"抽奖 #{lot.n} 已到开奖时间，不能再参加了。",
                              f"Lottery #{lot.n} is past its draw time; entries are closed."))
    if req.is_manager or member in await never_entrants(ctx, room_id):
        raise UserError(req.t("管理员和机器人不参加抽奖。",
                              "Managers and bots do not take part in lotteries."))
    unmet = unmet_conditions(ctx, repo, lot, member, now=now, at_draw=False)
    if unmet:
        raise UserError(req.t(f"还不能参加抽奖 #{lot.n}：" + "；".join(unmet),
                              f"You cannot enter lottery #{lot.n} yet: " + "; ".join(unmet)))
    outcome = await repo.enter(room_id, lot.n, member, now)
    if outcome == "already":
        await req.reply(req.t(f"你已经参加了抽奖 #{lot.n}，请等待开奖。",
                              f"You have already entered lottery #{lot.n}."))
    elif outcome == "entered":
        count = repo.entry_count(room_id, lot.n)
        await req.reply(req.t(f"已参加抽奖 #{lot.n}「{lot.title}」，目前 {count} 人参加。",
                              f"You are in lottery #{lot.n} \"{lot.title}\"; "
                              f"{count} entered so far."))
    else:
        raise UserError(req.t(f"抽奖 #{lot.n} 已开奖，不能再参加了。",
                              f"Lottery #{lot.n} has been drawn; entries are closed."))

"""Sign-ups (SPEC section 3): events with capacity, waitlist, deadline and reminder.

Managers: `/event new|close|list|export`. Members: `报名`, `取消报名`, `报名名单`.
Every sign-up and cancellation is one atomic commit (storage/events.py) before the reply.
Deadlines and reminders are scheduler jobs `event-deadline:<room>:<n>` and
`event-remind:<room>:<n>`, rebuilt from storage at startup; the event's `reminded` flag is
set (durably) before the reminder is sent, so a reminder goes out at most once even if a
restart reschedules it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bot.context import Context
from bot.events import MemberForgotten, Outgoing
from bot.outbox import Priority
from bot.router import Request, Router, UsageError, UserError, width_fold
from bot.scheduler import Firing, QuietHours, defer_past_quiet, parse_quiet_hours
from handlers.checkin import count_activity
from storage.events import Event, EventRepo, JoinResult

router = Router("signup")

NEW_USAGE = ("/event new 标题 [cap=人数] [waitlist=候补数] [deadline=YYYY-MM-DD HH:MM] "
             "[start=YYYY-MM-DD HH:MM] [remind=2h]")
MAX_TITLE = 60
MAX_CAP = 10_000
MAX_REMIND_S = 30 * 86_400
MENTIONS_PER_MESSAGE = 20  # a reminder to many members is split into several messages
LIST_MAX_EVENTS = 20

_OPTION = re.compile(r"(?:^|\s)([A-Za-z]+)\s*[=＝]")
_TIME = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:\s+|T)(\d{1,2}):(\d{2})")
_DURATION_PART = re.compile(r"(\d{1,6})\s*(天|小时|分钟|分|d|h|min|m)", re.IGNORECASE)
_UNIT_S = {"天": 86_400, "d": 86_400, "小时": 3600, "h": 3600,
           "分钟": 60, "分": 60, "min": 60, "m": 60}
KNOWN_OPTIONS = ("cap", "waitlist", "deadline", "start", "remind")


def repo(ctx: Context) -> EventRepo:
    return EventRepo(ctx.store)


# --- parsing /event new ---------------------------------------------------------------------
@dataclass(frozen=True)
class NewEvent:
    title: str
    cap: int | None
    waitlist: int
    deadline: datetime | None
    start: datetime | None
    remind_s: int | None


def parse_new(args: str, req: Request) -> NewEvent:
    """Title, then key=value options; every problem is a UsageError saying what is wrong."""
    t, tz = req.t, req.ctx.settings.tz
    now = req.ctx.now_local()
    matches = list(_OPTION.finditer(args))
    title = (args[: matches[0].start()] if matches else args).strip().strip("\"'“”「」")
    if not title:
        raise UsageError(t("缺少活动标题。", "The event needs a title."))
    if len(title) > MAX_TITLE:
        raise UsageError(t(f"标题太长（最多 {MAX_TITLE} 个字）。",
                           f"Title too long (at most {MAX_TITLE} characters)."))
    opts: dict[str, str] = {}
    for i, m in enumerate(matches):
        key = m.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(args)
        if key not in KNOWN_OPTIONS:
            raise UsageError(t(f"未知选项 {key}（可用：{', '.join(KNOWN_OPTIONS)}）。",
                               f"Unknown option {key} (allowed: {', '.join(KNOWN_OPTIONS)})."))
        if key in opts:
            raise UsageError(t(f"选项 {key} 重复了。", f"Option {key} given twice."))
        opts[key] = width_fold(args[m.end():end]).strip()

    def number(key: str, lo: int) -> int | None:
        if key not in opts:
            return None
        v = opts[key]
        if not v.isdigit() or len(v) > 6 or not lo <= int(v) <= MAX_CAP:
            raise UsageError(t(f"{key} 应为 {lo} 到 {MAX_CAP} 之间的整数，收到「{v}」。",
                               f"{key} must be a whole number from {lo} to {MAX_CAP}, got {v!r}."))
        return int(v)

    def when(key: str) -> datetime | None:
        if key not in opts:
            return None
        v = opts[key]
        m = _TIME.fullmatch(v)
        try:
            if m is None:
                raise ValueError
            y, mo, d, h, mi = (int(g) for g in m.groups())
            at = datetime(y, mo, d, h, mi, tzinfo=tz)
        except ValueError:
            raise UsageError(t(f"{key} 的时间格式应为 YYYY-MM-DD HH:MM，收到「{v}」。",
                               f"{key} must be YYYY-MM-DD HH:MM, got {v!r}.")) from None
        if at <= now:
            raise UsageError(t(f"{key} 时间 {v} 已经过去了。", f"{key} time {v} is in the past."))
        return at

    cap = number("cap", 1)
    waitlist = number("waitlist", 0) or 0
    if waitlist and cap is None:
        raise UsageError(t("设置候补（waitlist）需要同时设置名额（cap）。",
                           "A waitlist needs a capacity (cap=N)."))
    deadline, start = when("deadline"), when("start")
    if deadline and start and deadline > start:
        raise UsageError(t("报名截止时间不能晚于活动开始时间。",
                           "The deadline cannot be after the start."))
    remind_s = None
    if "remind" in opts:
        remind_s = parse_duration(opts["remind"])
        if remind_s is None:
            got = opts["remind"]
            raise UsageError(t(f"remind 应为时长，如 30m、2h、1d，收到「{got}」。",
                               f"remind must be a duration like 30m, 2h, 1d; got {got!r}."))
        if start is None:
            raise UsageError(t("设置提醒（remind）需要同时设置开始时间（start）。",
                               "A reminder needs a start time (start=...)."))
        if start - timedelta(seconds=remind_s) <= now:
            raise UsageError(t(f"提醒时间（开始前 {fmt_duration(remind_s, 'zh')}）已经过去了。",
                               f"The reminder ({fmt_duration(remind_s, 'en')} before the start) "
                               "would be in the past."))
    return NewEvent(title, cap, waitlist, deadline, start, remind_s)


def parse_duration(text: str) -> int | None:
    """"2h", "90m", "1d 2h", "30分钟" → seconds; None if not a duration (or out of range)."""
    s = text.strip()
    pos, total = 0, 0
    for m in _DURATION_PART.finditer(s):
        if s[pos:m.start()].strip():
            return None
        total += int(m.group(1)) * _UNIT_S[m.group(2).lower()]
        pos = m.end()
    if pos == 0 or s[pos:].strip() or not 0 < total <= MAX_REMIND_S:
        return None
    return total


def fmt_duration(seconds: int, lang: str) -> str:
    d, rest = divmod(seconds, 86_400)
    h, rest = divmod(rest, 3600)
    m = rest // 60
    units = (("天", " d"), ("小时", " h"), ("分钟", " min"))
    parts = [f"{v}{u[0] if lang == 'zh' else u[1]}" for v, u in zip((d, h, m), units, strict=True)
             if v]
    return ("" if lang == "zh" else " ").join(parts) or ("0分钟" if lang == "zh" else "0 min")


def fmt_time(ctx: Context, ts: float) -> str:
    return datetime.fromtimestamp(ts, ctx.settings.tz).strftime("%Y-%m-%d %H:%M")


def reminder_time(ctx: Context, room_id: str, start: datetime, remind_s: int) -> datetime:
    """Start minus the offset, moved out of the room's quiet hours: later if that is still
    before the start, else just before the quiet hours begin (a reminder after the start
    is useless); if both are impossible, the plain time."""
    at = start - timedelta(seconds=remind_s)
    quiet = _quiet(ctx, room_id)
    if quiet is None or not quiet.contains(at):
        return at
    later = defer_past_quiet(at, quiet)
    if later < start:
        return later
    begin = at.replace(hour=quiet.start.hour, minute=quiet.start.minute, second=0, microsecond=0)
    if begin > at:
        begin -= timedelta(days=1)
    earlier = begin - timedelta(minutes=1)
    return earlier if earlier > ctx.now_local() else at


def _quiet(ctx: Context, room_id: str) -> QuietHours | None:
    room = ctx.settings.room(room_id)
    return parse_quiet_hours(room.quiet_hours) if room and room.quiet_hours else None


# --- manager commands -------------------------------------------------------------------------
@router.command("event", usage="/event new|close|list|export", zh="活动报名管理",
                en="manage sign-up events", admin=True)
async def event_help(req: Request) -> None:
    raise UsageError(req.t(f"子命令：new、close N、list、export N。新建：{NEW_USAGE}",
                           f"Subcommands: new, close N, list, export N. New: {NEW_USAGE}"))


@router.command("event new", usage=NEW_USAGE, zh="新建报名活动并发到群里",
                en="open a sign-up and post it to the room", admin=True)
async def event_new(req: Request) -> None:
    ctx, room = req.ctx, req.room_id
    assert room is not None
    spec = parse_new(req.args, req)
    remind_at = None
    if spec.start is not None and spec.remind_s is not None:
        remind_at = reminder_time(ctx, room, spec.start, spec.remind_s).timestamp()
    ev = await repo(ctx).create(
        room, title=spec.title, cap=spec.cap, waitlist=spec.waitlist,
        deadline_ts=spec.deadline.timestamp() if spec.deadline else None,
        start_ts=spec.start.timestamp() if spec.start else None,
        remind_s=spec.remind_s, remind_at_ts=remind_at, created_by=req.msg.sender_id,
        now=ctx.clock.now())
    schedule(ctx, ev)
    ctx.say(room, announcement(req, ev), priority=Priority.ANNOUNCE)
    if req.msg.room_id != room:  # from a private chat: confirm there too
        await req.reply(req.t(f"已创建活动 #{ev.n} 并发到群里。",
                              f"Event #{ev.n} created and posted to the room."))


def announcement(req: Request, ev: Event) -> str:
    ctx, t = req.ctx, req.t
    cap = (t(f"名额：{ev.cap} 人", f"Places: {ev.cap}") if ev.cap is not None
           else t("名额：不限", "Places: unlimited"))
    if ev.waitlist:
        cap += t(f"，候补 {ev.waitlist} 人", f", waitlist {ev.waitlist}")
    lines = [t(f"📣 新活动 #{ev.n}：{ev.title}", f"📣 New event #{ev.n}: {ev.title}"), cap]
    if ev.deadline_ts is not None:
        lines.append(t(f"报名截止：{fmt_time(ctx, ev.deadline_ts)}",
                       f"Sign-up deadline: {fmt_time(ctx, ev.deadline_ts)}"))
    if ev.start_ts is not None:
        when = fmt_time(ctx, ev.start_ts)
        start = t(f"活动开始：{when}", f"Starts: {when}")
        if ev.remind_s:
            zh, en = fmt_duration(ev.remind_s, "zh"), fmt_duration(ev.remind_s, "en")
            start += t(f"（开始前 {zh} 提醒已报名的成员）",
                       f" (confirmed members are reminded {en} before)")
        lines.append(start)
    lines.append(t(f"报名请发「报名 {ev.n}」，取消发「取消报名 {ev.n}」，名单发「报名名单 {ev.n}」",
                   f"Sign up: /join {ev.n}  cancel: /leave {ev.n}  list: /list {ev.n}"))
    return "\n".join(lines)


def _event_arg(req: Request) -> Event:
    if not req.args.strip():
        raise UsageError(req.t("缺少活动编号 N。", "Which event? Give its number N."))
    n = req.int_arg(req.args)
    assert req.room_id is not None
    ev = repo(req.ctx).get(req.room_id, n)
    if ev is None:
        raise UserError(req.t(f"没有 #{n} 活动。发送 /event list 查看。",
                              f"No event #{n}. See /event list."))
    return ev


@router.command("event close", usage="/event close N", zh="结束报名", en="close a sign-up",
                admin=True)
async def event_close(req: Request) -> None:
    ctx = req.ctx
    ev = _event_arg(req)
    closed, changed = await repo(ctx).close(ev.room_id, ev.n, ctx.clock.now(), "manual")
    assert closed is not None
    if not changed:
        raise UserError(req.t(f"#{ev.n} 已经结束报名了。", f"#{ev.n} is already closed."))
    ctx.scheduler.remove(deadline_job(ev))
    text = req.t(f"#{ev.n} {ev.title} 报名已结束：正式 {len(closed.confirmed)} 人，"
                 f"候补 {len(closed.waitlisted)} 人。",
                 f"#{ev.n} {ev.title} is closed: {len(closed.confirmed)} confirmed, "
                 f"{len(closed.waitlisted)} waitlisted.")
    await req.reply(text)
    if req.msg.room_id != ev.room_id:
        ctx.say(ev.room_id, text, priority=Priority.ANNOUNCE)


@router.command("event list", usage="/event list", zh="活动列表", en="list events", admin=True)
async def event_list(req: Request) -> None:
    ctx, t = req.ctx, req.t
    assert req.room_id is not None
    events = repo(ctx).list(req.room_id)
    if not events:
        await req.reply(t("还没有活动。新建：" + NEW_USAGE, "No events yet. New: " + NEW_USAGE))
        return
    # Open ones first, then the most recent closed ones.
    shown = [e for e in events if e.is_open] + [e for e in reversed(events) if not e.is_open]
    lines = [t("活动列表：", "Events:")]
    for e in shown[:LIST_MAX_EVENTS]:
        status = t("报名中", "open") if e.is_open else t("已结束", "closed")
        cap = "∞" if e.cap is None else str(e.cap)
        line = t(f"#{e.n} {e.title} ｜ {status} ｜ 正式 {len(e.confirmed)}/{cap}",
                 f"#{e.n} {e.title} | {status} | {len(e.confirmed)}/{cap} confirmed")
        if e.waitlist:
            line += t(f" ｜ 候补 {len(e.waitlisted)}/{e.waitlist}",
                      f" | waitlist {len(e.waitlisted)}/{e.waitlist}")
        if e.deadline_ts is not None and e.is_open:
            line += t(f" ｜ 截止 {fmt_time(ctx, e.deadline_ts)}",
                      f" | deadline {fmt_time(ctx, e.deadline_ts)}")
        lines.append(line)
    if len(shown) > LIST_MAX_EVENTS:
        lines.append(t(f"……另有 {len(shown) - LIST_MAX_EVENTS} 个较早的活动",
                       f"... and {len(shown) - LIST_MAX_EVENTS} older events"))
    await req.reply("\n".join(lines))


@router.command("event export", usage="/event export N", zh="导出报名名单（CSV，私信发送）",
                en="export the sign-up list (CSV, sent privately)", admin=True)
async def event_export(req: Request) -> None:
    ctx = req.ctx
    ev = _event_arg(req)
    path = export_path(ctx, ev)
    content = export_csv(ctx, ev, req.lang)
    await asyncio.to_thread(_write, path, content)
    # The file holds names and ids: it goes to the manager privately, never to the group.
    ctx.send(Outgoing(conversation_id=req.msg.sender_id, text=path.name, file_path=str(path),
                      priority=Priority.MANAGER))
    await req.reply(req.t(
        f"#{ev.n} {ev.title}：正式 {len(ev.confirmed)} 人，候补 {len(ev.waitlisted)} 人。"
        f"CSV 已私信发给你（{path.name}）。",
        f"#{ev.n} {ev.title}: {len(ev.confirmed)} confirmed, {len(ev.waitlisted)} waitlisted. "
        f"The CSV was sent to you privately ({path.name})."))


def export_path(ctx: Context, ev: Event) -> Path:
    stamp = ctx.now_local().strftime("%Y%m%d-%H%M%S")
    room = re.sub(r"[^A-Za-z0-9_-]", "_", ev.room_id)
    return Path(ctx.settings.data_dir) / "exports" / f"event-{room}-{ev.n}-{stamp}.csv"


def export_csv(ctx: Context, ev: Event, lang: str) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["状态", "序号", "成员ID", "昵称", "报名时间"] if lang == "zh"
               else ["status", "position", "member_id", "name", "signed_up_at"])
    for kind, lst in (("confirmed", ev.confirmed), ("waitlisted", ev.waitlisted)):
        label = {"confirmed": "正式", "waitlisted": "候补"}[kind] if lang == "zh" else kind
        for i, s in enumerate(lst, 1):
            name = ctx.member_name(ev.room_id, s.member_id)
            w.writerow([label, i, s.member_id, _cell(name), fmt_time(ctx, s.ts)])
    return out.getvalue()


def _cell(value: str) -> str:
    # A name like "=cmd()" must stay text in a spreadsheet (CSV formula injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content, encoding="utf-8-sig")  # the BOM makes Excel read Chinese right
    tmp.replace(path)


# --- member commands ------------------------------------------------------------------------
def _pick(req: Request, *, signed_up_first: bool = False, latest_if_none: bool = False) -> Event:
    """Event N from the arguments; without N the one open event (or the one the member is in)."""
    t, room = req.t, req.room_id
    assert room is not None
    r = repo(req.ctx)
    if req.args.strip():
        n = req.int_arg(req.args)
        ev = r.get(room, n)
        if ev is None:
            raise UserError(t(f"没有 #{n} 活动。", f"There is no event #{n}."))
        return ev
    events = r.list(room)
    if signed_up_first:
        mine = [e for e in events if e.is_open and e.place_of(req.msg.sender_id)]
        if len(mine) == 1:
            return mine[0]
    opened = [e for e in events if e.is_open]
    if len(opened) == 1:
        return opened[0]
    if not opened:
        if latest_if_none and events:
            return events[-1]
        raise UserError(t("现在没有开放报名的活动。", "No event is open for sign-up now."))
    listing = "、".join(f"#{e.n} {e.title}" for e in opened[:10])
    cmd = req.command.aliases[0] if req.command and req.command.aliases else "报名"
    raise UserError(t(f"现在有多个活动：{listing}。请带上编号，例如「{cmd} {opened[0].n}」。",
                      f"Several events are open: {listing}. Add the number, e.g. "
                      f"/{req.command.name if req.command else 'join'} {opened[0].n}."))


@router.command("join", usage="/join [N]", zh="报名活动 N（只有一个活动时可省略 N）",
                en="sign up for event N (N optional when one is open)", aliases=("报名",))
async def join(req: Request) -> None:
    ctx, t = req.ctx, req.t
    room, member = req.room_id, req.msg.sender_id
    assert room is not None
    # The message came from the room, which the service vouches for; our records may still
    # say the member left (or the sender is another bot): then no sign-up.
    rec = ctx.store.members.get(room, member)
    if (rec is not None and not rec.present) or member in ctx.settings.bots:
        raise UserError(t("只有本群成员可以报名。", "Only members of this room can sign up."))
    ev = _pick(req)
    res = await repo(ctx).join(room, ev.n, member, ctx.clock.now())
    if res.outcome in ("confirmed", "waitlisted"):
        count_activity(ctx, room, member, min(req.msg.timestamp, ctx.clock.now()))
    await req.reply(join_text(req, ev, res))


def join_text(req: Request, ev: Event, res: JoinResult) -> str:
    t, ctx = req.t, req.ctx
    e = res.event or ev
    name = f"#{e.n} {e.title}"
    cap = "" if e.cap is None else t(f"（共 {e.cap} 个名额）", f" of {e.cap}")
    match res.outcome:
        case "confirmed":
            return t(f"报名成功 {name}：你是第 {res.position} 位{cap}。",
                     f"Signed up for {name}: you have place {res.position}{cap}.")
        case "waitlisted":
            return t(f"{name} 名额已满，你在候补第 {res.position} 位；"
                     "有人取消时会自动递补并通知你。",
                     f"{name} is full; you are number {res.position} on the waitlist and will be "
                     "told if a place frees up.")
        case "already_confirmed":
            return t(f"你已经报名了 {name}，是第 {res.position} 位。",
                     f"You are already signed up for {name} (place {res.position}).")
        case "already_waitlisted":
            return t(f"你已在 {name} 的候补名单中，第 {res.position} 位。",
                     f"You are already on the waitlist of {name} (number {res.position}).")
        case "full":
            return t(f"{name} 名额已满（{len(e.confirmed)}/{e.cap}），没有候补名额。",
                     f"{name} is full ({len(e.confirmed)}/{e.cap}) and has no waitlist.")
        case "waitlist_full":
            return t(f"{name} 名额和候补都已满。", f"{name} is full and so is its waitlist.")
        case "closed":
            return t(f"{name} 报名已结束。", f"Sign-up for {name} is closed.")
        case "past_deadline":
            when = fmt_time(ctx, e.deadline_ts) if e.deadline_ts is not None else ""
            return t(f"{name} 报名已截止（{when}）。",
                     f"The sign-up deadline of {name} has passed ({when}).")
        case "started":
            return t(f"{name} 已经开始了，不能再报名。", f"{name} has already started.")
        case _:
            return t(f"没有 #{ev.n} 活动。", f"There is no event #{ev.n}.")


@router.command("leave", usage="/leave [N]", zh="取消报名（候补第一位自动递补）",
                en="cancel your sign-up (the first waitlisted member moves up)",
                aliases=("取消报名",))
async def leave(req: Request) -> None:
    ctx, t = req.ctx, req.t
    room, member = req.room_id, req.msg.sender_id
    assert room is not None
    ev = _pick(req, signed_up_first=True)
    res = await repo(ctx).leave(room, ev.n, member, ctx.clock.now())
    name = f"#{ev.n} {ev.title}"
    if res.outcome == "not_signed_up":
        raise UserError(t(f"你没有报名 {name}。", f"You are not signed up for {name}."))
    if res.outcome == "started":
        raise UserError(t(f"{name} 已经开始，不能取消了。",
                          f"{name} has started; too late to cancel."))
    if res.outcome == "no_such_event":
        raise UserError(t(f"没有 #{ev.n} 活动。", f"There is no event #{ev.n}."))
    what = t("候补", "waitlist place") if res.was == "waitlisted" else t("报名", "sign-up")
    await req.reply(t(f"已取消你在 {name} 的{what}。", f"Your {what} for {name} is cancelled."))
    if res.promoted:
        announce_promotion(ctx, room, ev, res.promoted, res.promoted_place)


def announce_promotion(ctx: Context, room: str, ev: Event, member: str, place: int) -> None:
    zh = ctx.settings.language == "zh"
    text = (f"有人取消了 #{ev.n} {ev.title}，你已从候补转为正式报名，第 {place} 位。" if zh else
            f"A place in #{ev.n} {ev.title} freed up: you moved from the waitlist "
            f"to place {place}.")
    # Its own `extra` keeps it from being merged into the canceller's reply.
    ctx.send(Outgoing(room, text, (member,), Priority.REPLY, extra={"kind": "promotion"}))


@router.command("list", usage="/list [N]", zh="查看报名名单", en="who signed up",
                aliases=("报名名单",))
async def show_list(req: Request) -> None:
    ctx, t = req.ctx, req.t
    ev = _pick(req, latest_if_none=True)
    cap = "∞" if ev.cap is None else str(ev.cap)
    lines = [t(f"#{ev.n} {ev.title} 报名名单（{len(ev.confirmed)}/{cap}）：",
               f"#{ev.n} {ev.title} sign-ups ({len(ev.confirmed)}/{cap}):")]
    if not ev.confirmed:
        lines.append(t("（还没有人报名）", "(nobody yet)"))
    lines += [f"{i}. {ctx.member_name(ev.room_id, s.member_id)}"
              for i, s in enumerate(ev.confirmed, 1)]
    if ev.waitlisted:
        lines.append(t(f"候补（{len(ev.waitlisted)}/{ev.waitlist}）：",
                       f"Waitlist ({len(ev.waitlisted)}/{ev.waitlist}):"))
        lines += [f"{i}. {ctx.member_name(ev.room_id, s.member_id)}"
                  for i, s in enumerate(ev.waitlisted, 1)]
    if not ev.is_open:
        lines.append(t("（报名已结束）", "(sign-up closed)"))
    await req.reply("\n".join(lines))


# --- deadlines and reminders ------------------------------------------------------------------
def deadline_job(ev: Event) -> str:
    return f"event-deadline:{ev.room_id}:{ev.n}"


def remind_job(ev: Event) -> str:
    return f"event-remind:{ev.room_id}:{ev.n}"


def schedule(ctx: Context, ev: Event) -> None:
    """(Re)register the event's jobs; registering a name again replaces the job."""
    tz, now = ctx.settings.tz, ctx.clock.now()
    room, n = ev.room_id, ev.n
    if ev.is_open and ev.deadline_ts is not None:
        async def deadline(_: Firing) -> None:
            await close_at_deadline(ctx, room, n)

        ctx.scheduler.once(deadline_job(ev), datetime.fromtimestamp(ev.deadline_ts, tz), deadline)
    if ev.remind_at_ts is not None and not ev.reminded and ev.start_ts is not None \
            and ev.start_ts > now:
        at = datetime.fromtimestamp(ev.remind_at_ts, tz)
        if ev.remind_at_ts <= now:
            # Due while the bot was down: still worth sending before the start. The
            # `reminded` flag (set before sending) keeps this from repeating one that went out.
            at = ctx.now_local()
            quiet = _quiet(ctx, room)
            if quiet is not None:
                at = defer_past_quiet(at, quiet)
            if at.timestamp() >= ev.start_ts:
                return

        async def remind(_: Firing) -> None:
            await send_reminder(ctx, room, n)

        ctx.scheduler.once(remind_job(ev), at, remind)


async def close_at_deadline(ctx: Context, room: str, n: int) -> None:
    ev, changed = await repo(ctx).close(room, n, ctx.clock.now(), "deadline")
    if ev is None or not changed or not ctx.serves(room):
        return
    zh = ctx.settings.language == "zh"
    ctx.say(room, f"#{ev.n} {ev.title} 报名已截止：正式 {len(ev.confirmed)} 人，"
                  f"候补 {len(ev.waitlisted)} 人。发「报名名单 {ev.n}」查看名单。" if zh else
                  f"Sign-up for #{ev.n} {ev.title} has closed: {len(ev.confirmed)} confirmed, "
                  f"{len(ev.waitlisted)} waitlisted. /list {ev.n} shows who.",
            priority=Priority.ANNOUNCE)


async def send_reminder(ctx: Context, room: str, n: int) -> None:
    r = repo(ctx)
    ev = r.get(room, n)
    if ev is None or ev.start_ts is None or not ctx.serves(room):
        return
    if not await r.mark_reminded(room, n):
        return  # already sent (e.g. by a late rescheduling after a restart)
    ids = [s.member_id for s in ev.confirmed]
    if not ids:
        return
    zh = ctx.settings.language == "zh"
    start = fmt_time(ctx, ev.start_ts)
    left = fmt_duration(max(60, int(ev.start_ts - ctx.clock.now())) // 60 * 60,
                        ctx.settings.language)
    text = (f"⏰ 活动提醒 #{ev.n} {ev.title} 将于 {start} 开始（还有 {left}），请准时参加！"
            f"来不了请发「取消报名 {ev.n}」，把名额让给候补。" if zh else
            f"⏰ Reminder: #{ev.n} {ev.title} starts at {start} (in {left}). "
            f"Can't come? /leave {ev.n} gives your place to the waitlist.")
    chunks = [ids[i:i + MENTIONS_PER_MESSAGE] for i in range(0, len(ids), MENTIONS_PER_MESSAGE)]
    for i, chunk in enumerate(chunks, 1):
        part = f" ({i}/{len(chunks)})" if len(chunks) > 1 else ""
        ctx.send(Outgoing(room, text + part, tuple(chunk), Priority.ANNOUNCE))


@router.startup
async def rebuild_jobs(ctx: Context) -> None:
    """Jobs come from storage: rebuilt on every start, never duplicated (names replace)."""
    now = ctx.clock.now()
    for ev in repo(ctx).all():
        if ev.is_open and ev.deadline_ts is not None and ev.deadline_ts <= now:
            await close_at_deadline(ctx, ev.room_id, ev.n)  # passed while the bot was down
            closed = repo(ctx).get(ev.room_id, ev.n)
            if closed is not None:
                ev = closed
        schedule(ctx, ev)


# --- /forget --------------------------------------------------------------------------------
@router.on(MemberForgotten)
async def forget_signups(event: MemberForgotten, ctx: Context) -> None:
    r = repo(ctx)
    promotions = await ctx.store.atomic(
        lambda tx: r.forget_tx(tx, event.member_id, event.pseudonym))
    for room, n, member in promotions:
        ev = r.get(room, n)
        if ev is not None and ev.place_of(member) is not None and ctx.serves(room):
            _, place = ev.place_of(member) or ("", 0)
            announce_promotion(ctx, room, ev, member, place)

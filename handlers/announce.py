"""Scheduled announcements that go out exactly once (SPEC section 3, `/announce ...`).

Storage (storage/announcements.py) is the source of truth: at startup every job is
rebuilt from it, and bot.yaml `announcements:` are registered there too under stable
ids (a hash of room, schedule and text), so restarts and reloads never duplicate them;
an entry removed from bot.yaml is removed from storage. Job names are
``announce:<uid>``; the scheduler's ledger claims each firing before it is sent.

Quiet hours (`rooms[].quiet_hours`, e.g. "22:00-08:00"): an announcement that falls due
inside the room's window is not sent then; it is held (durably, in ``announce_holds``)
and sent when the window ends. The hold is a one-off job ``announce:hold:<firing>``,
so it is exactly-once and survives restarts like any other firing. A hold whose end
passed while the bot was down longer than the grace is reported, like any missed firing.
Reminders of other features are delayed the same way with `bot.scheduler.defer_past_quiet`.

Missed firings (bot down longer than `misfire_grace_s`) are skipped and reported to the
managers once (the scheduler's `on_missed_for("announce:")`).

Templates: {date} (YYYY-MM-DD), {weekday} (周一..周日 / Monday..), {room} (the topic),
rendered when the message is sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
from datetime import datetime, timedelta
from typing import Any

from bot.context import Context
from bot.outbox import Priority
from bot.router import Request, Router, UsageError, UserError, width_fold
from bot.scheduler import (
    Firing,
    QuietHours,
    defer_past_quiet,
    firing_key,
    parse_cron,
    parse_quiet_hours,
)
from storage.announcements import Announcement, AnnouncementRepo, Hold, Kind, Status

log = logging.getLogger("qunbot.announce")

router = Router("announce")

SERVICE = "announcements"
JOB_PREFIX = "announce:"
HOLD_PREFIX = "announce:hold:"
MIN_INTERVAL_S = 600  # more often than every 10 minutes is spam (and risks the account)
MAX_TEXT = 1500
LIST_MAX = 30

U_AT = "/announce at YYYY-MM-DD HH:MM | TEXT"
U_CRON = '/announce cron "m h dom mon dow" | TEXT'
U_EVERY = "/announce every 2h | TEXT"
U_N = "/announce {} N"
USAGE_ALL = "\n".join(
    [
        U_AT,
        U_CRON,
        U_EVERY,
        "/announce list",
        *(U_N.format(s) for s in ("del", "pause", "resume", "test")),
    ]
)

WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PLACEHOLDERS = ("date", "weekday", "room")
_PLACEHOLDER_RE = re.compile(r"\{(\w*)\}")
_AT_RE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\s+(\d{1,2})[:：](\d{2})$")
_QUOTES = {'"': '"', "'": "'", "“": "”", "”": "”", "‘": "’", "「": "」"}
_DURATION_RE = re.compile(
    r"(\d+)\s*(days?|d|天|hours?|hrs?|h|小时|时|minutes?|mins?|m|分钟|分)", re.IGNORECASE
)
_UNIT_S = {"d": 86400, "天": 86400, "h": 3600, "小": 3600, "时": 3600, "m": 60, "分": 60}


def repo(ctx: Context) -> AnnouncementRepo:
    r = ctx.services.get(SERVICE)
    if r is None:  # startup creates it; this covers contexts built without it (tools, tests)
        r = ctx.services[SERVICE] = AnnouncementRepo(ctx.store)
    assert isinstance(r, AnnouncementRepo)
    return r


# --------------------------------------------------------------------------- rendering


def weekday_name(day: datetime, lang: str) -> str:
    return (WEEKDAYS_ZH if lang == "zh" else WEEKDAYS_EN)[day.weekday()]


def room_title(ctx: Context, room: str) -> str:
    name = ctx.room_name(room)
    if name != room:
        return name
    configured = ctx.settings.room(room)
    sandbox = ctx.settings.sandbox.rooms.get(room)
    return (configured.topic if configured else "") or (sandbox.topic if sandbox else "") or room


def render(ctx: Context, text: str, room: str, when: datetime) -> str:
    """Fill {date}, {weekday}, {room}; any other text (braces included) is left as is."""
    values = {
        "date": when.strftime("%Y-%m-%d"),
        "weekday": weekday_name(when, ctx.settings.language),
        "room": room_title(ctx, room),
    }
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def quiet_hours(ctx: Context, room: str) -> QuietHours | None:
    rs = ctx.settings.room(room)
    return parse_quiet_hours(rs.quiet_hours) if rs is not None and rs.quiet_hours else None


# --------------------------------------------------------------------------- scheduling


def job_name(uid: str) -> str:
    return JOB_PREFIX + uid


def parse_at(value: str, ctx: Context) -> datetime:
    """ "YYYY-MM-DD HH:MM" (wall time in the configured tz) → aware datetime; ValueError if bad."""
    m = _AT_RE.match(width_fold(value).strip())
    if m is None:
        raise ValueError(f"{value!r} is not YYYY-MM-DD HH:MM")
    y, mo, d, h, mi = (int(g) for g in m.groups())
    return datetime(y, mo, d, h, mi, tzinfo=ctx.settings.tz)  # ValueError for 2026-02-30


def _dt(ctx: Context, ts: float) -> datetime:
    return datetime.fromtimestamp(ts, ctx.settings.tz)


def schedule(ctx: Context, a: Announcement) -> None:
    """(Re)register the job of `a`, or remove it when it should not run."""
    sched, name = ctx.scheduler, job_name(a.uid)
    if a.paused or (a.kind == "once" and a.status != "pending"):
        sched.remove(name)
        return
    fire = functools.partial(_fire, ctx, a.uid)
    if a.kind == "once":
        assert a.at is not None
        sched.once(name, parse_at(a.at, ctx), fire)
    elif a.kind == "cron":
        assert a.expr is not None
        sched.cron(name, a.expr, fire, since=_dt(ctx, a.since))
    else:
        assert a.seconds is not None and a.start is not None
        sched.every(name, a.seconds, fire, start=_dt(ctx, a.start), since=_dt(ctx, a.since))


def schedule_hold(ctx: Context, h: Hold) -> None:
    release = functools.partial(_release, ctx, h.key)
    ctx.scheduler.once(HOLD_PREFIX + h.key, _dt(ctx, h.due), release)


async def _fire(ctx: Context, uid: str, firing: Firing) -> None:
    r = repo(ctx)
    a = r.by_uid(uid)
    if a is None or a.paused:
        return  # deleted or paused after the job was armed
    if a.kind == "once":
        a = await r.set_status(a, "sent")
    for room in a.rooms:
        await _deliver(ctx, a, room, firing.key)


async def _deliver(ctx: Context, a: Announcement, room: str, key: str) -> None:
    if not ctx.serves(room):
        log.warning("announcement %s: room %s is not served; not sent there", a.uid, room)
        return
    now = ctx.now_local()
    q = quiet_hours(ctx, room)
    if q is not None and q.contains(now):
        hold = await repo(ctx).add_hold(
            key=f"{key}>{room}", uid=a.uid, room=room, due=defer_past_quiet(now, q).timestamp()
        )
        log.info("announcement %s held for %s until the quiet hours end", a.uid, room)
        schedule_hold(ctx, hold)
        return
    _send(ctx, a, room, now, key)


def _send(ctx: Context, a: Announcement, room: str, now: datetime, key: str) -> None:
    ctx.say(
        room,
        render(ctx, a.text, room, now),
        priority=Priority.ANNOUNCE,
        coalesce_key=f"{key}>{room}",
    )  # a duplicate submission of one firing collapses


async def _release(ctx: Context, key: str, firing: Firing) -> None:
    r = repo(ctx)
    h = r.hold(key)
    if h is None:
        return
    await r.remove_hold(key)
    a = r.by_uid(h.uid)
    if a is None or a.paused:
        return
    _send(ctx, a, h.room, ctx.now_local(), key)


async def _missed(ctx: Context, firing: Firing) -> None:
    """A firing skipped because the bot was down beyond the grace: tell the managers once."""
    r = repo(ctx)
    if firing.name.startswith(HOLD_PREFIX):
        key = firing.name[len(HOLD_PREFIX) :]
        h = r.hold(key)
        if h is None:
            return
        await r.remove_hold(key)
        a = r.by_uid(h.uid)
    else:
        a = r.by_uid(firing.name[len(JOB_PREFIX) :])
        if a is not None and a.kind == "once":
            a = await r.set_status(a, "missed")
    if a is None:
        return
    zh = ctx.settings.language == "zh"
    when = firing.scheduled.strftime("%Y-%m-%d %H:%M")
    minutes = round(firing.late_by / 60)
    room = room_title(ctx, a.room)
    text = (
        f"公告 #{a.n}（{room}）原定 {when} 发送，机器人当时离线（晚了约 {minutes} 分钟，"
        f"超过补发时限），这次已跳过。内容：{_short(a.text)}"
        if zh
        else f"Announcement #{a.n} ({room}) was due at {when} while the bot was offline "
        f"(about {minutes} min late, beyond the grace); it was skipped. Text: {_short(a.text)}"
    )
    await ctx.tell_managers(text, room_id=a.room)


# --------------------------------------------------------------------------- startup


def config_uid(room: str, at: str, cron: str, text: str) -> str:
    raw = json.dumps([room, at, cron, text], ensure_ascii=False)
    return "cfg:" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _config_room(ctx: Context, name: str) -> str | None:
    if name in ctx.settings.room_ids:
        return name
    by_topic = [r.id for r in ctx.settings.rooms if r.id and r.topic == name]
    return by_topic[0] if by_topic else None


async def sync_config(ctx: Context) -> None:
    """Make the stored bot.yaml announcements match the file (stable ids: no duplicates)."""
    r = repo(ctx)
    wanted: dict[str, dict[str, Any]] = {}
    for i, s in enumerate(ctx.settings.announcements):
        where = f"announcements[{i}]"
        room = _config_room(ctx, s.room)
        if room is None:
            log.error("%s: room %r is not a served room id; skipped", where, s.room)
            continue
        try:
            if s.at:
                parse_at(s.at, ctx)
            else:
                parse_cron(s.cron, ctx.settings.tz)
            check_template(s.text)
        except (ValueError, UsageError) as e:
            log.error("%s: %s; skipped", where, e)
            continue
        fields: dict[str, Any] = {"room": room, "text": s.text}
        if s.at:
            fields.update(kind="once", at=_canonical_at(parse_at(s.at, ctx)))
        else:
            fields.update(kind="cron", expr=" ".join(s.cron.split()))
        uid = config_uid(room, fields.get("at", ""), fields.get("expr", ""), s.text)
        wanted.setdefault(uid, fields)
    for a in r.all():
        if a.source == "config" and a.uid not in wanted:
            ctx.scheduler.remove(job_name(a.uid))
            await r.delete(a)
            log.info("announcement %s #%d removed: no longer in bot.yaml", a.room, a.n)
    now = ctx.clock.now()
    grace = ctx.settings.misfire_grace_s
    for uid, f in wanted.items():
        if r.by_uid(uid) is not None:
            continue
        status: Status = "pending"
        if f["kind"] == "once" and parse_at(f["at"], ctx).timestamp() < now - grace:
            status = "expired"  # declared after its time: nothing was missed
            log.warning("bot.yaml announcement at %s is in the past; not sent", f["at"])
        await r.create(created_by="bot.yaml", now=now, source="config", uid=uid, status=status, **f)


@router.startup
async def startup(ctx: Context) -> None:
    r = repo(ctx)
    ctx.scheduler.on_missed_for(JOB_PREFIX, functools.partial(_missed, ctx))
    await sync_config(ctx)
    for a in r.all():
        if a.kind == "once" and a.status == "pending" and a.at is not None:
            key = firing_key(job_name(a.uid), parse_at(a.at, ctx))
            if ctx.store.firings.claimed(key):  # handled before a crash: never again
                a = await r.set_status(a, "sent")
        schedule(ctx, a)
    for h in r.holds():
        if ctx.store.firings.claimed(firing_key(HOLD_PREFIX + h.key, _dt(ctx, h.due))):
            await r.remove_hold(h.key)
        else:
            schedule_hold(ctx, h)


# --------------------------------------------------------------------------- parsing


def _canonical_at(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def split_text(req: Request) -> tuple[str, str]:
    """'SCHEDULE | TEXT' → (schedule, text); the text is kept as typed."""
    m = re.search(r"[|｜]", req.args)
    if m is None:
        raise UsageError(req.t("缺少“| 内容”。", 'Missing "| TEXT".'))
    head, text = req.args[: m.start()].strip(), req.args[m.end() :].strip()
    if not text:
        raise UsageError(req.t("公告内容不能为空。", "The text is empty."))
    if len(text) > MAX_TEXT:
        raise UsageError(
            req.t(
                f"内容太长（最多 {MAX_TEXT} 字）。",
                f"The text is too long (at most {MAX_TEXT} characters).",
            )
        )
    check_template(text, req)
    return head, text


def check_template(text: str, req: Request | None = None) -> None:
    unknown = sorted({p for p in _PLACEHOLDER_RE.findall(text) if p not in PLACEHOLDERS})
    if unknown:
        names = ", ".join("{" + p + "}" for p in unknown)
        msg = (
            f"不认识的占位符 {names}；可用 {{date}} {{weekday}} {{room}}。",
            f"Unknown placeholder {names}; use {{date}} {{weekday}} {{room}}.",
        )
        raise UsageError(req.t(*msg) if req else msg[1])


def parse_cron_arg(head: str) -> str:
    """The cron part, quoted ("0 8 * * *", “0 8 * * *”) or bare if exactly 5 fields."""
    head = head.strip()
    if head and head[0] in _QUOTES:
        close = _QUOTES[head[0]]
        end = head.find(close, 1)
        if end < 0 or head[end + 1 :].strip():
            raise ValueError("unbalanced quotes")
        head = head[1:end]
    return " ".join(width_fold(head).split())


def parse_duration(text: str) -> int:
    """'2h', '90m', '1d', '1h30m', '2小时', '30分钟' → seconds; ValueError if not that."""
    s = width_fold(text).strip().lower().replace(" ", "")
    total, pos = 0, 0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_S[m.group(2)[0]]
        pos = m.end()
    if not s or pos != len(s) or total <= 0:
        raise ValueError(f"{text!r} is not a duration like 2h, 90m or 1d")
    return total


def format_duration(seconds: float) -> str:
    s, out = int(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out or f"{int(seconds)}s"


def _min_gap_s(trigger: Any, start: datetime, samples: int = 60) -> float:
    """Smallest gap between the next `samples` firings of a trigger."""
    times: list[datetime] = []
    t: datetime | None = start
    while t is not None and len(times) < samples:
        t = trigger.get_next_fire_time(None, t)
        if t is not None:
            times.append(t)
            t = t + timedelta(seconds=1)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    return min(gaps, default=float("inf"))


def _short(text: str, n: int = 30) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _fmt(ctx: Context, when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} {weekday_name(when, ctx.settings.language)}"


def recreate_command(a: Announcement) -> str:
    if a.kind == "once":
        return f"/announce at {a.at} | {a.text}"
    if a.kind == "cron":
        return f'/announce cron "{a.expr}" | {a.text}'
    return f"/announce every {format_duration(a.seconds or 0)} | {a.text}"


def describe(req: Request, a: Announcement) -> str:
    if a.kind == "once":
        return req.t(f"一次 {a.at}", f"once {a.at}")
    if a.kind == "cron":
        return f'cron "{a.expr}"'
    every = format_duration(a.seconds or 0)
    return req.t(f"每 {every}", f"every {every}")


def _room(req: Request) -> str:
    assert req.room_id is not None  # admin commands always act on a room
    return req.room_id


def _find(req: Request, arg: str) -> Announcement:
    n = req.int_arg(arg.split()[0] if arg.split() else "")
    a = repo(req.ctx).get(_room(req), n)
    if a is None:
        raise UserError(
            req.t(
                f"没有公告 #{n}，发送 /announce list 查看。",
                f"No announcement #{n}; see /announce list.",
            )
        )
    return a


def _quiet_note(req: Request, room: str, when: datetime) -> str:
    q = quiet_hours(req.ctx, room)
    if q is None or not q.contains(when):
        return ""
    end = defer_past_quiet(when, q)
    return req.t(
        f"（在本群静默时段 {q} 内，将顺延到 {end:%H:%M} 发送）",
        f" (inside this room's quiet hours {q}: held until {end:%H:%M})",
    )


async def _created(req: Request, a: Announcement) -> None:
    schedule(req.ctx, a)
    nxt = req.ctx.scheduler.next_fire(job_name(a.uid))
    when = (_fmt(req.ctx, nxt) + _quiet_note(req, a.room, nxt)) if nxt else "-"
    await req.reply(
        req.t(
            f"已创建公告 #{a.n}，下次发送：{when}。预览：/announce test {a.n}",
            f"Announcement #{a.n} created; next: {when}. Preview: /announce test {a.n}",
        )
    )


# --------------------------------------------------------------------------- commands


@router.command(
    "announce",
    usage="/announce",
    admin=True,
    zh="定时公告的全部用法",
    en="all forms of the announcement commands",
)
async def announce_help(req: Request) -> None:
    # Only reached for "/announce" alone or an unknown sub-command.
    what = req.args.split()[0] if req.args.split() else ""
    head = req.t(f"没有子命令“{what}”。", f"No sub-command {what!r}.") + "\n" if what else ""
    raise UserError(head + req.t("公告命令：", "Announcement commands:") + "\n" + USAGE_ALL)


@router.command(
    "announce at",
    usage=U_AT,
    admin=True,
    zh="在指定时间发一次公告",
    en="post once at a local date and time",
)
async def announce_at(req: Request) -> None:
    head, text = split_text(req)
    try:
        at = parse_at(head, req.ctx)
    except ValueError:
        raise UsageError(
            req.t(
                f"时间“{head}”不对，应为 YYYY-MM-DD HH:MM，例如 2026-01-31 08:00。",
                f"Bad time {head!r}: use YYYY-MM-DD HH:MM, e.g. 2026-01-31 08:00.",
            )
        ) from None
    if at <= req.ctx.now_local():
        raise UsageError(
            req.t(f"时间 {_canonical_at(at)} 已经过去了。", f"{_canonical_at(at)} is in the past.")
        )
    if at - req.ctx.now_local() > timedelta(days=3660):
        raise UsageError(
            req.t("时间太远了（最多十年内）。", "That is too far ahead (10 years at most).")
        )
    room = _room(req)
    a = await repo(req.ctx).create(
        room=room,
        kind="once",
        at=_canonical_at(at),
        text=text,
        created_by=req.msg.sender_id,
        now=req.ctx.clock.now(),
    )
    await _created(req, a)


@router.command(
    "announce cron",
    usage=U_CRON,
    admin=True,
    zh="按 cron 表达式定期发公告（配置的时区）",
    en="recurring post on a cron schedule",
)
async def announce_cron(req: Request) -> None:
    head, text = split_text(req)
    try:
        expr = parse_cron_arg(head)
        trigger = parse_cron(expr, req.ctx.settings.tz)
    except ValueError as e:
        raise UsageError(req.t(f"cron 表达式不对：{e}", f"Bad cron expression: {e}")) from None
    await _repeating(req, "cron", text, expr=expr, gap=_min_gap_s(trigger, req.ctx.now_local()))


@router.command(
    "announce every",
    usage=U_EVERY,
    admin=True,
    zh="每隔一段时间发公告（如 2h、90m、1d）",
    en="recurring post every interval (2h, 90m, 1d)",
)
async def announce_every(req: Request) -> None:
    head, text = split_text(req)
    try:
        seconds = parse_duration(head)
    except ValueError:
        raise UsageError(
            req.t(
                f"间隔“{head}”不对，例如 30m、2h、1d。", f"Bad interval {head!r}: e.g. 30m, 2h, 1d."
            )
        ) from None
    if seconds > 366 * 86400:
        raise UsageError(
            req.t("间隔太长（最多一年）。", "The interval is too long (a year at most).")
        )
    now = req.ctx.clock.now()
    # The grid starts one interval from now, on a whole minute, and is stored: restarts keep it.
    start = math.ceil((now + seconds) / 60) * 60
    await _repeating(req, "every", text, seconds=float(seconds), start=float(start), gap=seconds)


async def _repeating(
    req: Request,
    kind: Kind,
    text: str,
    *,
    gap: float,
    expr: str | None = None,
    seconds: float | None = None,
    start: float | None = None,
) -> None:
    if gap < MIN_INTERVAL_S:
        raise UsageError(
            req.t(
                f"太频繁了：两次公告至少间隔 {MIN_INTERVAL_S // 60} 分钟。",
                f"Too frequent: at least {MIN_INTERVAL_S // 60} minutes apart.",
            )
        )
    a = await repo(req.ctx).create(
        room=_room(req),
        kind=kind,
        expr=expr,
        seconds=seconds,
        start=start,
        text=text,
        created_by=req.msg.sender_id,
        now=req.ctx.clock.now(),
    )
    await _created(req, a)


@router.command(
    "announce list",
    usage="/announce list",
    admin=True,
    zh="本群的公告和下次发送时间",
    en="this room's announcements and next times",
)
async def announce_list(req: Request) -> None:
    ctx, room = req.ctx, _room(req)
    anns = repo(ctx).list(room)
    if not anns:
        await req.reply(req.t("本群还没有公告。用法：", "No announcements yet. Usage: ") + U_AT)
        return
    title = room_title(ctx, room)
    lines = [req.t(f"公告（{title}）：", f"Announcements ({title}):")]
    for a in anns[:LIST_MAX]:
        lines.append(f"#{a.n} {describe(req, a)} → {_state(req, a)} ｜ {_short(a.text)}")
    if len(anns) > LIST_MAX:
        lines.append(req.t(f"……还有 {len(anns) - LIST_MAX} 条", f"... {len(anns) - LIST_MAX} more"))
    await req.reply("\n".join(lines))


def _state(req: Request, a: Announcement) -> str:
    ctx = req.ctx
    tags = req.t("［bot.yaml］", " [bot.yaml]") if a.source == "config" else ""
    holds = repo(ctx).holds(a.uid)
    if holds:
        return (
            req.t(
                f"静默时段后发送 {_fmt(ctx, _dt(ctx, holds[0].due))}",
                f"held until {_fmt(ctx, _dt(ctx, holds[0].due))}",
            )
            + tags
        )
    if a.paused:
        return req.t("已暂停", "paused") + tags
    if a.kind == "once" and a.status != "pending":
        done = {
            "sent": ("已发送", "sent"),
            "missed": ("已错过", "missed"),
            "expired": ("已过期", "expired"),
        }[a.status]
        return req.t(*done) + tags
    nxt = ctx.scheduler.next_fire(job_name(a.uid))
    if nxt is None:
        return req.t("无下次", "no next time") + tags
    return req.t("下次 ", "next ") + _fmt(ctx, nxt) + _quiet_note(req, a.room, nxt) + tags


@router.command(
    "announce del", usage=U_N.format("del"), admin=True, zh="删除公告", en="delete an announcement"
)
async def announce_del(req: Request) -> None:
    a = _find(req, req.args)
    if a.source == "config":
        raise UserError(
            req.t(
                f"公告 #{a.n} 来自 bot.yaml，请在配置文件中删除；也可以 /announce pause {a.n}。",
                f"#{a.n} comes from bot.yaml: remove it there, or /announce pause {a.n}.",
            )
        )
    req.ctx.scheduler.remove(job_name(a.uid))
    for h in repo(req.ctx).holds(a.uid):
        req.ctx.scheduler.remove(HOLD_PREFIX + h.key)
    await repo(req.ctx).delete(a)
    hint = await req.remember_undo(recreate_command(a), f"/announce del {a.n}")
    await req.reply(req.t(f"已删除公告 #{a.n}。", f"Deleted announcement #{a.n}. ") + hint)


@router.command(
    "announce pause",
    usage=U_N.format("pause"),
    admin=True,
    zh="暂停公告",
    en="pause an announcement",
)
async def announce_pause(req: Request) -> None:
    a = _find(req, req.args)
    if a.paused:
        await req.reply(req.t(f"公告 #{a.n} 已经是暂停状态。", f"#{a.n} is already paused."))
        return
    a = await repo(req.ctx).set_paused(a, True, req.ctx.clock.now())
    schedule(req.ctx, a)
    await req.reply(
        req.t(
            f"已暂停公告 #{a.n}；恢复：/announce resume {a.n}",
            f"Paused #{a.n}; resume with /announce resume {a.n}",
        )
    )


@router.command(
    "announce resume",
    usage=U_N.format("resume"),
    admin=True,
    zh="恢复已暂停的公告",
    en="resume a paused announcement",
)
async def announce_resume(req: Request) -> None:
    a = _find(req, req.args)
    if not a.paused:
        await req.reply(req.t(f"公告 #{a.n} 没有暂停。", f"#{a.n} is not paused."))
        return
    if a.kind == "once" and a.at is not None and parse_at(a.at, req.ctx) <= req.ctx.now_local():
        again = recreate_command(a)
        raise UserError(
            req.t(
                f"公告 #{a.n} 的时间 {a.at} 已过，请重新创建：\n{again}",
                f"#{a.n} was due at {a.at}, which has passed; create it again:\n{again}",
            )
        )
    # Firings that fell due while paused are not caught up: the schedule restarts now.
    a = await repo(req.ctx).set_paused(a, False, req.ctx.clock.now())
    schedule(req.ctx, a)
    await req.reply(
        req.t(f"已恢复公告 #{a.n}，{_state(req, a)}。", f"Resumed #{a.n}; {_state(req, a)}.")
    )


@router.command(
    "announce test",
    usage=U_N.format("test"),
    admin=True,
    zh="把公告预览私信发给你",
    en="send yourself a private preview",
)
async def announce_test(req: Request) -> None:
    a = _find(req, req.args)
    ctx = req.ctx
    preview = render(ctx, a.text, a.room, ctx.now_local())
    if req.msg.room_id is None:
        await req.reply(preview)
        return
    ctx.say(req.msg.sender_id, preview, priority=Priority.MANAGER)
    await req.reply(
        req.t(f"公告 #{a.n} 的预览已私信发给你。", f"Preview of #{a.n} sent to you privately.")
    )

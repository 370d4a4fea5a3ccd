"""The console's pages and JSON API (aiohttp). Access rules live in auth.py.

Pages are plain server-rendered HTML. Reads go through panels.py; every change is a manager
command run through commands.py, so the console can do nothing chat cannot, and does it the
same way. Forms post, then redirect back with the bot's reply as a one-time notice.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from aiohttp import web

from bot import report
from bot.analytics import RetentionReport, StatsReport, to_csv
from bot.faq_matcher import group_misses
from bot.web import panels
from bot.web.auth import (
    AUTH_KEY,
    COOKIE,
    auth_middleware,
    csrf_token,
    headers_middleware,
    is_bearer,
    set_session_cookie,
)
from bot.web.commands import CommandRefused, CommandResult, run_command
from bot.web.html import (
    Html,
    esc,
    join,
    link,
    pct,
    post_button,
    render,
    table,
    tag,
    url,
    when,
)
from bot.web.html import day as fmt_day

if TYPE_CHECKING:
    from bot.app import App
    from bot.context import Context
    from bot.web import Console

log = logging.getLogger("qunbot.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Flash = tuple[Literal["ok", "error"], str]
KIND: dict[str, report.Kind] = {k: k for k in report.KINDS}  # URL text -> report kind


# --- shared helpers -------------------------------------------------------------------------
def console_of(request: web.Request) -> Console:
    from bot.web import CONSOLE_KEY

    return request.app[CONSOLE_KEY]


def tr(request: web.Request) -> Callable[[str, str], str]:
    lang = console_of(request).lang

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    return t


def chosen_room(request: web.Request) -> str | None:
    """The room named by ?room= / the form, if served; else the first served room."""
    app = console_of(request).app
    rooms = panels.rooms(app)
    want = request.query.get("room", "")
    if want in rooms:
        return want
    return rooms[0] if rooms else None


def _int(value: str | None, default: int, lo: int, hi: int) -> int:
    try:
        n = int(value or "")
    except ValueError:
        return default
    return max(lo, min(hi, n))


NAV: tuple[tuple[str, str, str], ...] = (
    ("/", "概览", "Dashboard"),
    ("/retention", "留存", "Retention"),
    ("/members", "成员", "Members"),
    ("/faq", "问答", "FAQ"),
    ("/events", "活动", "Events"),
    ("/lotteries", "抽奖", "Lotteries"),
    ("/announcements", "公告", "Announcements"),
    ("/audit", "操作记录", "Audit log"),
)


def page(request: web.Request, title: str, body: Html) -> web.Response:
    console = console_of(request)
    t = tr(request)
    room = request.query.get("room", "")
    items = list(NAV)
    if console.gateway is not None:
        items.append(("/chat", "模拟聊天", "Chat simulator"))
    nav = join(link(url(path, room=room), t(zh, en),
                    class_="active" if request.path == path else None) for path, zh, en in items)
    notices = console.pop_flash(request)
    flash = join(tag("div", text, class_=f"flash {kind}", role="status") for kind, text in notices)
    text = render("layout.html", lang=console.lang, csrf=csrf_token(request), title=title,
                  nav=nav, flash=flash, body=body, logout=t("退出", "Log out"))
    return web.Response(text=text, content_type="text/html")


def room_picker(request: web.Request, room: str | None, extra: dict[str, str] | None = None
                ) -> Html:
    app = console_of(request).app
    t = tr(request)
    opts = join(tag("option", f"{panels.room_label(app, r)} ({r})", value=r, selected=r == room)
                for r in panels.rooms(app))
    keep = join(Html(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">')
                for k, v in (extra or {}).items())
    return Html(f'<form method="get" class="roompick"><label>{esc(t("群", "Room"))} '
                f'<select name="room" data-autosubmit>{opts}</select></label>{keep}'
                f'<noscript><button type="submit">OK</button></noscript></form>')


def no_rooms(request: web.Request, title: str) -> web.Response:
    t = tr(request)
    return page(request, title, tag("p", t("还没有服务的群：在 bot.yaml 的 rooms 里添加群 ID。",
                                           "No served rooms yet: add room ids to bot.yaml rooms.")))


class RoomPage(NamedTuple):
    t: Callable[[str, str], str]
    app: App
    ctx: Context
    room: str
    title: str


def room_page(request: web.Request, zh: str, en: str) -> RoomPage | web.Response:
    """What every per-room page starts from, or the "no rooms yet" page to return instead."""
    t = tr(request)
    title = t(zh, en)
    room = chosen_room(request)
    if room is None:
        return no_rooms(request, title)
    app = console_of(request).app
    return RoomPage(t, app, panels.ctx_of(app), room, title)


def form(action: str, csrf: str, room: str, fields: str, submit: str, *, id_: str = "") -> Html:
    """A POST form; `fields` is markup made of field() pieces (Html joined with +)."""
    return Html(f'<form method="post" action="{esc(action)}" class="stack"'
                f'{f" id={chr(34)}{esc(id_)}{chr(34)}" if id_ else ""}>'
                f'<input type="hidden" name="_csrf" value="{esc(csrf)}">'
                f'<input type="hidden" name="room" value="{esc(room)}">{fields}'
                f'<button type="submit">{esc(submit)}</button></form>')


def field(label: str, name: str, *, kind: str = "text", value: str = "", placeholder: str = "",
          required: bool = False, area: bool = False) -> Html:
    if area:
        ctl = tag("textarea", value, name=name, placeholder=placeholder or None,
                  required=required, rows="3")
    else:
        ctl = Html(f'<input type="{esc(kind)}" name="{esc(name)}" value="{esc(value)}"'
                   f'{f" placeholder={chr(34)}{esc(placeholder)}{chr(34)}" if placeholder else ""}'
                   f'{" required" if required else ""}>')
    return Html(f"<label>{esc(label)} {ctl}</label>")


def csv_response(rows: Iterable[Sequence[Any]], filename: str) -> web.Response:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return csv_text(buf.getvalue(), filename)


def csv_text(text: str, filename: str) -> web.Response:
    # BOM: Excel then reads the file as UTF-8 (Chinese names stay readable).
    return web.Response(body=("\ufeff" + text).encode("utf-8"), content_type="text/csv",
                        charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60]


# --- running commands -----------------------------------------------------------------------
async def command_from_form(request: web.Request, build: Callable[[Any], str],
                            back: str) -> web.StreamResponse:
    """Build a manager command from the posted form, run it as the console, show the reply."""
    console = console_of(request)
    data = await request.post()
    room = str(data.get("room", ""))
    try:
        text = build(data)
        result = await run_command(console.app, room, text)
    except (CommandRefused, ValueError) as e:
        return _answer(request, None, str(e), url(back, room=room))
    return _answer(request, result, "", url(back, room=room))


def _answer(request: web.Request, result: CommandResult | None, error: str,
            back: str) -> web.StreamResponse:
    if is_bearer(request):
        if result is None:
            return web.json_response({"ok": False, "error": error}, status=400)
        return web.json_response({"ok": True, "command": result.command, "reply": result.text})
    console = console_of(request)
    if result is None:
        console.flash(request, "error", error)
    else:
        console.flash(request, "ok", result.text or tr(request)("已执行。", "Done."))
    raise web.HTTPSeeOther(back)


def _need(data: Any, name: str, what: str) -> str:
    value = str(data.get(name, "")).strip()
    if not value:
        raise ValueError(what)
    return value


def _one_line(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(what)
    return value


def _options(data: Any, names: Sequence[str]) -> str:
    parts = []
    for n in names:
        v = " ".join(str(data.get(n, "")).split())
        if v:
            parts.append(f"{n}={v}")
    return " ".join(parts)


# --- dashboard ------------------------------------------------------------------------------
async def dashboard(request: web.Request) -> web.Response:
    t = tr(request)
    console = console_of(request)
    app = console.app
    title = t("概览", "Dashboard")
    room = chosen_room(request)
    if room is None:
        return no_rooms(request, title)
    rows = [(link(url("/", room=s.room), s.name), s.room, s.present, s.left)
            for s in panels.room_summaries(app)]
    rooms_tbl = table([t("群", "Room"), "ID", t("在群成员", "Members"), t("已退出", "Left")], rows,
                      id_="rooms")
    days = _int(request.query.get("days"), 30, 1, report.MAX_DAYS)
    stats = await panels.build_report(app, "stats", room, days)
    funnel = await panels.build_report(app, "funnel", room, days)
    invites = await panels.build_report(app, "invites", room, days)
    assert isinstance(stats, StatsReport)
    flag = tag("p", t("⚠ 期间有掉线，部分日子的数据不完整：", "⚠ Incomplete days (bot offline): ")
               + ", ".join(fmt_day(d) for d in stats.incomplete_days), class_="warn") \
        if stats.incomplete else Html("")
    figures = [
        (t("成员", "Members"), stats.members), (t("新增", "New"), stats.new),
        (t("退出", "Left"), stats.left), (t("净增", "Net"), stats.net),
        (t("消息", "Messages"), stats.messages),
        (t("日活(平均)", "DAU (avg)"), f"{stats.dau_avg:.1f}"),
        (t("周活", "WAU"), stats.wau), (t("月活", "MAU"), stats.mau),
        (t("粘性 DAU/MAU", "Stickiness DAU/MAU"), pct(stats.stickiness)),
        *((f"D{r.n} {t('留存', 'retention')}", pct(r.rate)) for r in stats.retention),
    ]
    fig_tbl = table([t("指标", "Figure"), t("数值", "Value")], figures, id_="figures")
    funnel_d = funnel.to_dict()
    f_rows = [(r["label"], r["traffic"], pct(r["conversion"]), pct(r["retention"]),
               "—" if r["growth"] is None else f"{r['growth']:.1f}")
              for r in [*funnel_d["rows"], funnel_d["total"]]]
    funnel_tbl = table([t("渠道", "Channel"), t("加入", "Joins"), t("转化", "Conversion"),
                        t("7日留存", "D7 retention"), t("增长", "Growth")], f_rows, id_="funnel")
    inv_rows = [(i, r["name"], r["counted"], r["pending"], r["left_early"], r["invited"])
                for i, r in enumerate(invites.to_dict()["rows"], 1)]
    inv_tbl = table(["#", t("邀请人", "Inviter"), t("计入(留满7天)", "Counted (stayed 7d)"),
                     t("未满7天", "Pending"), t("7天内退出", "Left early"),
                     t("邀请总数", "Invited")],
                    inv_rows, id_="invites")
    cmd_hint = t("和私聊机器人发命令一样（已选中本群），例如 /admin list",
                 "Same as a manager in a private chat with the bot (this room chosen), "
                 "e.g. /admin list")
    csvs = join((link(url(f"/export/{k}.csv", room=room, days=days), f"{k}.csv")
                 for k in ("stats", "funnel", "invites", "retention", "members")), " · ")
    body = Html(
        f"{room_picker(request, room)}"
        f"<section><h2>{esc(t('群', 'Rooms'))}</h2>{rooms_tbl}</section>"
        f"<section><h2>{esc(panels.room_label(app, room))} · "
        f"{esc(t(f'最近 {days} 天', f'last {days} days'))}</h2>{flag}"
        f'<div class="cols"><div>{fig_tbl}</div>'
        f'<div><img id="activity-chart" alt="activity" '
        f'src="{esc(url("/chart/stats.png", room=room, n=days))}"></div></div></section>'
        f"<section><h2>{esc(t('渠道漏斗', 'Funnel by channel'))}</h2>{funnel_tbl}</section>"
        f"<section><h2>{esc(t('邀请榜', 'Invite leaderboard'))}</h2>{inv_tbl}</section>"
        f"<section><h2>{esc(t('导出 CSV', 'CSV downloads'))}</h2><p>{csvs}</p></section>"
        f"<section><h2>{esc(t('管理命令', 'Manager command'))}</h2>"
        f'<p class="hint">{esc(cmd_hint)}</p>'
        + form("/command", csrf_token(request), room,
               field(t("命令", "Command"), "text", placeholder="/stats 30d", required=True),
               t("执行", "Run"), id_="command-form")
        + "</section>")
    return page(request, title, body)


async def command(request: web.Request) -> web.StreamResponse:
    """Any manager command on the chosen room; form (redirect) or JSON {"room", "text"}."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except json.JSONDecodeError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='expected {"room": ..., "text": ...}')
        try:
            result = await run_command(console_of(request).app, str(data.get("room", "")),
                                       str(data.get("text", "")))
        except CommandRefused as e:
            return web.json_response({"ok": False, "error": str(e)}, status=400)
        return web.json_response({"ok": True, "command": result.command, "reply": result.text})
    return await command_from_form(request, lambda d: _need(d, "text", "empty command"), "/")


# --- retention ------------------------------------------------------------------------------
async def retention(request: web.Request) -> web.Response:
    rp = room_page(request, "留存", "Retention")
    if isinstance(rp, web.Response):
        return rp
    t, app, ctx, room, title = rp
    weeks = _int(request.query.get("weeks"), 8, 1, report.MAX_WEEKS)
    rep = await panels.build_report(app, "retention", room, weeks)
    assert isinstance(rep, RetentionReport)
    head = [t("入群周", "Cohort week"), t("人数", "Size")] + [
        t(f"第{i}周", f"W{i}") for i in range(weeks)]
    rows = []
    for row in rep.weekly:
        cells: list[Any] = [f"{fmt_day(row.start_day)} – {fmt_day(row.last_day)}"
                            + (" ⚠" if row.incomplete else ""), row.size]
        for i in range(weeks):
            c = row.cell(i)
            if c is None or c.rate is None:
                cells.append("")
            else:
                cells.append(Html(f'<span title="{c.retained}/{c.size}">{esc(pct(c.rate))}'
                                  f"{' ⚠' if c.incomplete else ''}</span>"))
        rows.append(cells)
    avg = [t("平均", "Average"), ""] + [pct(c.rate) for c in rep.weekly_average[:weeks]]
    daily = table([t("第n天", "Day n"), t("群组人数", "Cohort size"), t("留存", "Retained"),
                   t("留存率", "Rate"), t("含之后", "Unbounded")],
                  [(f"D{c.offset}", c.size, c.retained, pct(c.rate), pct(c.unbounded_rate))
                   for c in rep.daily_average], id_="daily-retention")
    hint = t("留存率 = 第n天仍活跃的人数 / 当天新增人数；⚠ 表示当天掉线、数据不完整。",
             "Dn = cohort members active on day n / cohort size; ⚠ marks days the bot was "
             "offline.")
    picker = room_picker(request, room, {"weeks": str(weeks)})
    body = Html(
        f"{picker}"
        f'<section><img id="retention-chart" alt="retention chart" '
        f'src="{esc(url("/chart/retention.png", room=room, n=weeks))}"></section>'
        f"<section><h2>{esc(t('按周留存', 'Weekly cohorts'))}</h2>"
        f"{table(head, [*rows, avg], id_='cohorts')}</section>"
        f"<section><h2>{esc(t('按天留存（平均）', 'Daily retention (pooled)'))}</h2>{daily}"
        f'<p class="hint">{esc(hint)}</p></section>'
        f"<p>{link(url('/export/retention.csv', room=room, weeks=weeks), 'retention.csv')}</p>")
    return page(request, title, body)


async def chart(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in ("stats", "retention", "funnel"):
        raise web.HTTPNotFound()
    room = chosen_room(request)
    if room is None:
        raise web.HTTPNotFound()
    limit = report.MAX_WEEKS if kind == "retention" else report.MAX_DAYS
    n = _int(request.query.get("n"), report.DEFAULTS[KIND[kind]], 1, limit)
    png = await panels.chart_png(console_of(request).app, KIND[kind], room, n)
    return web.Response(body=png, content_type="image/png")


async def export(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    console = console_of(request)
    app = console.app
    room = chosen_room(request)
    if room is None:
        raise web.HTTPNotFound()
    fname = f"{name}-{safe_name(room)}.csv"
    if name in ("stats", "funnel", "invites", "retention"):
        if name == "retention":
            n = _int(request.query.get("weeks"), 8, 1, report.MAX_WEEKS)
        else:
            n = _int(request.query.get("days"), report.DEFAULTS[KIND[name]], 1, report.MAX_DAYS)
        rep = await panels.build_report(app, KIND[name], room, n)
        return csv_text(to_csv(rep), fname)
    if name == "members":
        rows, _ = panels.members(app, room, limit=None)
        return csv_response(
            [["member_id", "name", "join_day", "channel", "inviter_id", "present", "left_day",
              "checkins", "active_days"]]
            + [[r.rec.member_id, r.rec.name, fmt_day(r.rec.join_day), r.rec.channel,
                r.rec.inviter_id or "", int(r.rec.present), fmt_day(r.rec.left_day), r.checkins,
                r.active_days] for r in rows], fname)
    if name == "audit":
        tz = panels.ctx_of(app).settings.timezone
        entries = panels.ctx_of(app).store.audit.last(10_000, room)
        return csv_response([["time", "actor", "room", "command", "result"]]
                            + [[when(e.ts, tz), e.actor_id, e.room_id or "", e.command, e.result]
                               for e in entries], fname)
    if name == "faq":
        from handlers import faq

        faqs = faq.service(panels.ctx_of(app)).repo.entries(room)
        return csv_response([["num", "questions", "answer", "hits"]]
                            + [[e.num, "; ".join(e.questions), e.answer, e.hits]
                               for e in faqs], fname)
    raise web.HTTPNotFound()


# --- members --------------------------------------------------------------------------------
async def members(request: web.Request) -> web.Response:
    rp = room_page(request, "成员", "Members")
    if isinstance(rp, web.Response):
        return rp
    t, app, ctx, room, title = rp
    q = request.query.get("q", "")[:100]
    rows, total = panels.members(app, room, q)
    channel = {"qrcode": t("扫码", "QR code"), "unknown": t("未知", "unknown")}
    shown = [(r.rec.name, r.rec.member_id, fmt_day(r.rec.join_day)
              + (t("（已在群）", " (present before)") if r.rec.first_seen else ""),
              channel.get(r.rec.channel, panels.ctx_of(app).member_name(room, r.rec.channel)),
              t("在群", "in room") if r.rec.present
              else t("已退出 ", "left ") + fmt_day(r.rec.left_day),
              r.checkins, r.streak, r.active_days) for r in rows]
    search = Html(f'<form method="get" class="search"><input type="hidden" name="room" '
                  f'value="{esc(room)}"><input type="search" name="q" value="{esc(q)}" '
                  f'placeholder="{esc(t("昵称或ID", "name or id"))}">'
                  f'<button type="submit">{esc(t("搜索", "Search"))}</button></form>')
    note = t(f"共 {total} 人", f"{total} found") + (
        t(f"，显示前 {len(rows)} 人", f", first {len(rows)} shown") if total > len(rows) else "")
    tbl = table([t("昵称", "Name"), "ID", t("入群日", "Joined"), t("渠道", "Channel"),
                 t("状态", "Status"), t("签到", "Check-ins"), t("连续", "Streak"),
                 t("活跃天数", "Active days")], shown, id_="members")
    body = Html(f"{room_picker(request, room)}{search}<p>{esc(note)}</p>{tbl}"
                f"<p>{link(url('/export/members.csv', room=room), 'members.csv')}</p>")
    return page(request, title, body)


# --- FAQ ------------------------------------------------------------------------------------
async def faq_page(request: web.Request) -> web.Response:
    from handlers import faq
    from storage.faq import GLOBAL

    rp = room_page(request, "问答", "FAQ")
    if isinstance(rp, web.Response):
        return rp
    t, app, ctx, room, title = rp
    csrf = csrf_token(request)
    repo = faq.service(ctx).repo
    counters = repo.counters(room)
    entries = repo.entries(room)
    rows = []
    for e in entries:
        edit = Html(
            f'<form method="post" action="/faq/edit" class="inline">'
            f'<input type="hidden" name="_csrf" value="{esc(csrf)}">'
            f'<input type="hidden" name="room" value="{esc(room)}">'
            f'<input type="hidden" name="num" value="{e.num}">'
            f'<input type="text" name="answer" value="{esc(e.answer)}" aria-label="answer">'
            f'<button type="submit">{esc(t("改答案", "Save"))}</button></form>')
        delete = post_button("/faq/del", t("删除", "Delete"), csrf, {"room": room, "num": e.num},
                             confirm=t(f"删除 #{e.num}？", f"Delete #{e.num}?"), cls="danger")
        rows.append((f"#{e.num}", "；".join(e.questions), edit, e.hits, delete))
    tbl = table(["#", t("问法", "Questions"), t("答案", "Answer"), t("命中", "Hits"), ""], rows,
                id_="faq-entries", empty=t("还没有问答", "No entries yet"))
    global_rows = [(f"G{e.num}", "；".join(e.questions), e.answer, e.hits)
                   for e in repo.entries(GLOBAL)]
    global_tbl = table(["#", t("问法", "Questions"), t("答案", "Answer"), t("命中", "Hits")],
                       global_rows)
    days = _int(request.query.get("days"), 30, 1, 365)
    misses = repo.misses(room, ctx.clock.now() - days * 86400)
    groups = group_misses([m.text for m in misses]) if misses else []
    miss_tbl = table([t("问题", "Question"), t("次数", "Times"), t("类似", "Similar")],
                     [(g.representative, g.count, " / ".join(g.examples[1:])) for g in groups],
                     id_="faq-misses", empty=t("没有未答的问题", "No unanswered questions"))
    add = form("/faq/add", csrf, room,
               field(t("问法（多个用 ; 分开）", "Questions (separate with ;)"), "questions",
                     required=True)
               + field(t("答案", "Answer"), "answer", required=True, area=True),
               t("添加", "Add"), id_="faq-add")
    answered, missed = counters["answers"], counters["misses"]
    counts = t(f"累计回答 {answered} 次，未答 {missed} 次",
               f"{answered} answered, {missed} missed (all time)")
    body = Html(
        f"{room_picker(request, room)}"
        f'<p id="faq-counters">{esc(counts)}</p>'
        f"<section><h2>{esc(t('添加问答', 'Add an entry'))}</h2>{add}</section>"
        f"<section><h2>{esc(t('本群问答', 'Entries of this room'))}</h2>{tbl}"
        f"<p>{link(url('/export/faq.csv', room=room), 'faq.csv')}</p></section>"
        f"<section><h2>{esc(t(f'最近 {days} 天未答的问题', f'Unanswered, last {days} days'))}</h2>"
        f"{miss_tbl}</section>"
        f"<section><h2>{esc(t('全局问答（只读）', 'Global entries (read-only)'))}</h2>"
        f"{global_tbl}"
        f"</section>")
    return page(request, title, body)


def _faq_add(d: Any) -> str:
    qs = _need(d, "questions", "questions are empty").replace("\r", "")
    qs = "; ".join(q.strip() for q in qs.replace("\n", ";").split(";") if q.strip())
    if "|" in qs or "｜" in qs:
        raise ValueError("a question cannot contain |")
    return f"/faq add {qs} | {_need(d, 'answer', 'the answer is empty')}"


async def faq_add(request: web.Request) -> web.StreamResponse:
    return await command_from_form(request, _faq_add, "/faq")


async def faq_edit(request: web.Request) -> web.StreamResponse:
    return await command_from_form(
        request, lambda d: f"/faq edit {_need(d, 'num', 'N?')} | {_need(d, 'answer', 'empty')}",
        "/faq")


async def faq_del(request: web.Request) -> web.StreamResponse:
    return await command_from_form(request, lambda d: f"/faq del {_need(d, 'num', 'N?')}", "/faq")


# --- events ---------------------------------------------------------------------------------
async def events_page(request: web.Request) -> web.Response:
    from storage.events import EventRepo

    rp = room_page(request, "活动报名", "Events")
    if isinstance(rp, web.Response):
        return rp
    t, app, ctx, room, title = rp
    tz = ctx.settings.timezone
    csrf = csrf_token(request)
    sections = []
    for ev in reversed(EventRepo(ctx.store).list(room)):
        cap = "∞" if ev.cap is None else str(ev.cap)
        status = t("报名中", "open") if ev.is_open else t("已结束", "closed")
        facts = [f"{status}", t(f"正式 {len(ev.confirmed)}/{cap}", f"{len(ev.confirmed)}/{cap}"
                                f" confirmed")]
        if ev.waitlist:
            facts.append(t(f"候补 {len(ev.waitlisted)}/{ev.waitlist}",
                           f"waitlist {len(ev.waitlisted)}/{ev.waitlist}"))
        if ev.deadline_ts:
            facts.append(t("截止 ", "deadline ") + when(ev.deadline_ts, tz))
        if ev.start_ts:
            facts.append(t("开始 ", "starts ") + when(ev.start_ts, tz))
        people = [(t("正式", "confirmed"), i, ctx.member_name(room, s.member_id), s.member_id,
                   when(s.ts, tz)) for i, s in enumerate(ev.confirmed, 1)]
        people += [(t("候补", "waitlisted"), i, ctx.member_name(room, s.member_id), s.member_id,
                    when(s.ts, tz)) for i, s in enumerate(ev.waitlisted, 1)]
        actions = post_button("/events/export", t("导出 CSV", "Export CSV"), csrf,
                              {"room": room, "n": ev.n})
        if ev.is_open:
            actions = Html(actions + post_button(
                "/events/close", t("结束报名", "Close"), csrf, {"room": room, "n": ev.n},
                confirm=t(f"结束 #{ev.n} 的报名？", f"Close #{ev.n}?"), cls="danger"))
        sections.append(Html(
            f'<section class="event"><h2>#{ev.n} {esc(ev.title)}</h2>'
            f"<p>{esc(' · '.join(facts))}</p>{actions}"
            + table([t("名单", "List"), "#", t("昵称", "Name"), "ID", t("报名时间", "Signed up")],
                    people, empty=t("还没有人报名", "Nobody yet")) + "</section>"))
    new = form("/events/new", csrf, room,
               field(t("标题", "Title"), "title", required=True)
               + field(t("名额", "Places (cap)"), "cap", kind="number")
               + field(t("候补数", "Waitlist"), "waitlist", kind="number")
               + field(t("报名截止", "Deadline"), "deadline", placeholder="YYYY-MM-DD HH:MM")
               + field(t("开始时间", "Start"), "start", placeholder="YYYY-MM-DD HH:MM")
               + field(t("提前提醒", "Remind before start"), "remind", placeholder="2h"),
               t("新建并发到群里", "Create and post to the room"), id_="event-new")
    body = Html(f"{room_picker(request, room)}<section><h2>{esc(t('新建活动', 'New event'))}</h2>"
                f"{new}</section>{join(sections)}")
    return page(request, title, body)


def _event_new(d: Any) -> str:
    title = _one_line(_need(d, "title", "the title is empty"), "the title is one line")
    return f"/event new {title} {_options(d, ('cap', 'waitlist', 'deadline', 'start', 'remind'))}"


async def events_new(request: web.Request) -> web.StreamResponse:
    return await command_from_form(request, _event_new, "/events")


async def events_close(request: web.Request) -> web.StreamResponse:
    return await command_from_form(request, lambda d: f"/event close {_need(d, 'n', 'N?')}",
                                   "/events")


async def events_export(request: web.Request) -> web.StreamResponse:
    """`/event export N` as the console: the CSV it writes is the download."""
    console = console_of(request)
    data = await request.post()
    room = str(data.get("room", ""))
    try:
        result = await run_command(console.app, room, f"/event export {_need(data, 'n', 'N?')}")
    except (CommandRefused, ValueError) as e:
        return _answer(request, None, str(e), url("/events", room=room))
    exports = Path(panels.ctx_of(console.app).settings.data_dir) / "exports"
    for f in result.files:
        found = await asyncio.to_thread(_read_export, exports, Path(f))
        if found is not None:
            return csv_text(found, Path(f).name)
    return _answer(request, None, result.text or "no export", url("/events", room=room))


def _read_export(exports: Path, path: Path) -> str | None:
    """The text of an export file the command wrote, only from data_dir/exports."""
    path = path.resolve()
    if path.parent != exports.resolve() or not path.is_file():
        return None
    return path.read_text(encoding="utf-8")


# --- lotteries ------------------------------------------------------------------------------
async def lotteries_page(request: web.Request) -> web.Response:
    from storage.lotteries import LotteryRepo

    rp = room_page(request, "抽奖", "Lotteries")
    if isinstance(rp, web.Response):
        return rp
    t, app, ctx, room, title = rp
    tz = ctx.settings.timezone
    csrf = csrf_token(request)
    repo = LotteryRepo(ctx.store)
    sections = []
    for lot in reversed(repo.list(room)):
        status = {"open": t("进行中", "open"), "drawing": t("开奖中", "drawing"),
                  "drawn": t("已开奖", "drawn")}[lot.status]
        entered = repo.entry_count(room, lot.n)
        facts = [status, t(f"{lot.winner_count} 名", f"{lot.winner_count} winner(s)"),
                 t(f"{entered} 人参加", f"{entered} entered")]
        if lot.draw_at:
            facts.append(t("开奖时间 ", "draw at ") + when(lot.draw_at, tz))
        if lot.conditions.any:
            facts.append("require=" + lot.conditions.spec())
        data: list[tuple[str, Any]] = [("C = sha256(hex(S))", tag("code", lot.commitment))]
        check = Html("")
        if lot.status == "drawn":  # the seed is secret until the draw
            data += [("S", tag("code", lot.seed_hex)), ("D", tag("code", lot.digest)),
                     (t("参与人数", "Entrants"), len(lot.eligible)),
                     (t("中奖（顺序）", "Winners (in order)"),
                      ", ".join(f"{ctx.member_name(room, w)} ({w})" for w in lot.initial_winners)
                      or "-")]
            if lot.rerolls:
                data.append((t("补抽", "Rerolls"),
                             ", ".join(f"{r.out_id} → {r.in_id}" for r in lot.rerolls)))
            lines = panels.lottery_check(lot.seed_hex, lot.commitment, lot.eligible,
                                         lot.initial_winners, lot.winner_count, lot.digest)
            check = tag("pre", "\n".join(lines), class_="verify")
        actions = Html("")
        if lot.status == "open":
            actions = post_button("/lotteries/draw", t("现在开奖", "Draw now"), csrf,
                                  {"room": room, "n": lot.n},
                                  confirm=t(f"现在为 #{lot.n} 开奖？", f"Draw #{lot.n} now?"))
        sections.append(Html(
            f'<section class="lottery"><h2>#{lot.n} {esc(lot.title)}</h2>'
            f"<p>{esc(' · '.join(facts))}</p>"
            f"{table([t('核验数据', 'Verification data'), ''], data)}{check}{actions}</section>"))
    new = form("/lotteries/new", csrf, room,
               field(t("标题", "Title"), "title", required=True)
               + field(t("中奖人数", "Winners"), "winners", kind="number")
               + field(t("开奖时间", "Draw at"), "draw", placeholder="YYYY-MM-DD HH:MM")
               + field(t("条件", "Conditions (require=)"), "require",
                       placeholder="member,joined_before,checkins:3/7"),
               t("发布抽奖", "Open and post"), id_="lottery-new")
    hint = t("开奖后，任何人都可用 qunbot lottery verify 根据公布的 C、S、D 和名单复核结果。",
             "After a draw anyone can re-check it from the published C, S, D and ids with "
             "qunbot lottery verify.")
    body = Html(f"{room_picker(request, room)}<section><h2>{esc(t('新抽奖', 'New lottery'))}</h2>"
                f"{new}</section><p class=\"hint\">{esc(hint)}</p>{join(sections)}")
    return page(request, title, body)


def _lottery_new(d: Any) -> str:
    title = _one_line(_need(d, "title", "the title is empty"), "the title is one line")
    if "|" in title or "=" in title:
        raise ValueError("the title cannot contain | or =")
    opts = _options(d, ("winners", "draw", "require"))
    return f"/lottery new {title} {opts}".strip()


async def lotteries_new(request: web.Request) -> web.StreamResponse:
    return await command_from_form(request, _lottery_new, "/lotteries")


async def lotteries_draw(request: web.Request) -> web.StreamResponse:
    return await command_from_form(request, lambda d: f"/lottery draw {_need(d, 'n', 'N?')}",
                                   "/lotteries")


# --- announcements --------------------------------------------------------------------------
async def announcements_page(request: web.Request) -> web.Response:
    from handlers import announce

    rp = room_page(request, "定时公告", "Announcements")
    if isinstance(rp, web.Response):
        return rp
    t, app, ctx, room, title = rp
    csrf = csrf_token(request)
    rows = []
    for a in announce.repo(ctx).list(room):
        if a.kind == "once":
            sched = t(f"一次 {a.at}", f"once {a.at}")
        elif a.kind == "cron":
            sched = f'cron "{a.expr}"'
        else:
            sched = t(f"每 {announce.format_duration(a.seconds or 0)}",
                      f"every {announce.format_duration(a.seconds or 0)}")
        nxt = ctx.scheduler.next_fire(announce.job_name(a.uid))
        if a.paused:
            state = t("已暂停", "paused")
        elif a.kind == "once" and a.status != "pending":
            state = a.status
        else:
            state = (t("下次 ", "next ") + nxt.strftime("%Y-%m-%d %H:%M")) if nxt else "-"
        fields = {"room": room, "n": a.n}
        toggle = ("resume", t("恢复", "Resume")) if a.paused else ("pause", t("暂停", "Pause"))
        actions = join([
            post_button(f"/announcements/{toggle[0]}", toggle[1], csrf, fields),
            post_button("/announcements/test", t("预览", "Preview"), csrf, fields),
            post_button("/announcements/del", t("删除", "Delete"), csrf, fields,
                        confirm=t(f"删除公告 #{a.n}？", f"Delete #{a.n}?"), cls="danger"),
        ])
        source = " [bot.yaml]" if a.source == "config" else ""
        rows.append((f"#{a.n}", sched + source, state, a.text, actions))
    tbl = table(["#", t("时间", "Schedule"), t("状态", "State"), t("内容", "Text"), ""], rows,
                id_="announcements", empty=t("还没有公告", "No announcements yet"))
    kinds = join(tag("option", label, value=v) for v, label in (
        ("at", t("一次：YYYY-MM-DD HH:MM", "once: YYYY-MM-DD HH:MM")),
        ("cron", t("cron：m h dom mon dow", "cron: m h dom mon dow")),
        ("every", t("间隔：2h、1d", "every: 2h, 1d"))))
    new = form("/announcements/new", csrf, room,
               Html(f'<label>{esc(t("方式", "Kind"))} <select name="kind">{kinds}</select></label>')
               + field(t("时间", "When"), "when", required=True, placeholder="2026-01-31 08:00")
               + field(t("内容（可用 {date} {weekday} {room}）",
                         "Text ({date} {weekday} {room} allowed)"), "text", required=True,
                       area=True)
               + Html(f'<button type="button" id="preview-btn">{esc(t("预览", "Preview"))}'
                      f'</button><pre id="preview" class="preview"></pre>'),
               t("创建", "Create"), id_="announce-new")
    body = Html(f"{room_picker(request, room)}"
                f"<section><h2>{esc(t('新建公告', 'New announcement'))}</h2>{new}</section>"
                f"<section><h2>{esc(t('本群公告', 'This room'))}</h2>{tbl}</section>")
    return page(request, title, body)


def _announce_new(d: Any) -> str:
    kind = str(d.get("kind", ""))
    spec = _one_line(_need(d, "when", "when?"), "the time is one line")
    text = _need(d, "text", "the text is empty")
    if kind == "at":
        return f"/announce at {spec} | {text}"
    if kind == "cron":
        return f'/announce cron "{spec.strip(chr(34))}" | {text}'
    if kind == "every":
        return f"/announce every {spec} | {text}"
    raise ValueError("kind: at, cron or every")


async def announcements_new(request: web.Request) -> web.StreamResponse:
    return await command_from_form(request, _announce_new, "/announcements")


async def announcements_action(request: web.Request) -> web.StreamResponse:
    action = request.match_info["action"]
    if action not in ("pause", "resume", "del", "test"):
        raise web.HTTPNotFound()
    return await command_from_form(
        request, lambda d: f"/announce {action} {_need(d, 'n', 'N?')}", "/announcements")


async def announcements_preview(request: web.Request) -> web.Response:
    """A draft rendered as it would be sent now ({date}, {weekday}, {room}); changes nothing."""
    from handlers import announce

    data = await request.post()
    room = str(data.get("room", ""))
    if room not in panels.rooms(console_of(request).app):
        raise web.HTTPBadRequest(text="unknown room")
    ctx = panels.ctx_of(console_of(request).app)
    text = announce.render(ctx, str(data.get("text", ""))[:2000], room, ctx.now_local())
    return web.json_response({"preview": text})


# --- audit ----------------------------------------------------------------------------------
async def audit_page(request: web.Request) -> web.Response:
    t = tr(request)
    app = console_of(request).app
    ctx = panels.ctx_of(app)
    title = t("操作记录", "Audit log")
    room = chosen_room(request)
    if room is None:
        return no_rooms(request, title)
    n = _int(request.query.get("n"), 100, 1, 2000)
    entries = ctx.store.audit.last(n, room)
    rows = [(when(e.ts, ctx.settings.timezone),
             e.actor_id if e.actor_id == "console" else
             f"{ctx.member_name(room, e.actor_id)} ({e.actor_id})",
             e.command, e.result) for e in entries]
    tbl = table([t("时间", "Time"), t("操作人", "Actor"), t("命令", "Command"),
                 t("结果", "Result")], rows, id_="audit", empty=t("没有记录", "Nothing yet"))
    body = Html(f"{room_picker(request, room)}{tbl}"
                f"<p>{link(url('/export/audit.csv', room=room), 'audit.csv')}</p>")
    return page(request, title, body)


# --- JSON API -------------------------------------------------------------------------------
async def api_rooms(request: web.Request) -> web.Response:
    app = console_of(request).app
    return web.json_response({"rooms": [
        {"id": s.room, "name": s.name, "members": s.present, "left": s.left}
        for s in panels.room_summaries(app)]})


async def api_report(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in report.KINDS:
        raise web.HTTPNotFound()
    room = request.query.get("room", "")
    if room not in panels.rooms(console_of(request).app):
        raise web.HTTPBadRequest(text="unknown room")
    limit = report.MAX_WEEKS if kind == "retention" else report.MAX_DAYS
    n = _int(request.query.get("n"), report.DEFAULTS[KIND[kind]], 1, limit)
    rep = await panels.build_report(console_of(request).app, KIND[kind], room, n)
    return web.json_response(rep.to_dict())


# --- login ----------------------------------------------------------------------------------
def _login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    t = tr(request)
    text = render("login.html", lang=console_of(request).lang, title=t("登录", "Log in"),
                  hint=t("输入控制台令牌（bot.yaml 的 web.token，或首次启动时打印的令牌）。",
                         "Enter the console token (web.token in bot.yaml, or the one printed "
                         "on first start)."),
                  label=t("令牌", "Token"), error=error)
    return web.Response(text=text, content_type="text/html", status=status)


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH_KEY]
    data = await request.post()
    token = data.get("token")
    if not isinstance(token, str) or not auth.check_token(token):
        log.warning("console: failed login from %s", request.remote)
        return _login_page(request, tr(request)("令牌不对。", "Wrong token."), status=401)
    sid, _ = auth.login()
    resp = web.HTTPSeeOther("/")
    set_session_cookie(resp, sid)
    raise resp


async def logout(request: web.Request) -> web.Response:
    request.app[AUTH_KEY].logout(request.cookies.get(COOKIE))
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(COOKIE, path="/")
    raise resp


def _static(name: str, content_type: str) -> Handler:
    body = resources.files("bot.web").joinpath("static", name).read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    return serve


def build_app(console: Console) -> web.Application:
    from bot.web import CONSOLE_KEY
    from bot.web.sim import add_sim_routes

    web_app = web.Application(middlewares=[headers_middleware, auth_middleware],
                              client_max_size=256 * 1024)
    web_app[CONSOLE_KEY] = console
    web_app[AUTH_KEY] = console.auth
    r = web_app.router
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_get("/login.css", _static("style.css", "text/css"))
    r.add_post("/logout", logout)
    r.add_get("/static/style.css", _static("style.css", "text/css"))
    r.add_get("/static/app.js", _static("app.js", "text/javascript"))
    r.add_get("/", dashboard)
    r.add_post("/command", command)
    r.add_get("/retention", retention)
    r.add_get("/chart/{kind}.png", chart)
    r.add_get("/export/{name}.csv", export)
    r.add_get("/members", members)
    r.add_get("/faq", faq_page)
    r.add_post("/faq/add", faq_add)
    r.add_post("/faq/edit", faq_edit)
    r.add_post("/faq/del", faq_del)
    r.add_get("/events", events_page)
    r.add_post("/events/new", events_new)
    r.add_post("/events/close", events_close)
    r.add_post("/events/export", events_export)
    r.add_get("/lotteries", lotteries_page)
    r.add_post("/lotteries/new", lotteries_new)
    r.add_post("/lotteries/draw", lotteries_draw)
    r.add_get("/announcements", announcements_page)
    r.add_post("/announcements/new", announcements_new)
    r.add_post("/announcements/preview", announcements_preview)
    r.add_post("/announcements/{action}", announcements_action)
    r.add_get("/audit", audit_page)
    r.add_get("/api/rooms", api_rooms)
    r.add_get("/api/report/{kind}", api_report)
    r.add_post("/api/command", command)
    if console.gateway is not None:
        add_sim_routes(r)
    return web_app

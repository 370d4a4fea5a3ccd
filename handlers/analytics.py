"""Growth reports for managers: /stats, /retention (+ PNG), /funnel, /invites; `qunbot report`.

Figures come from bot/analytics.py over the store's aggregates (bot/report.py assembles
them); this module only parses arguments, renders and sends. Days touched by an outage
are flagged ⚠ by the renderer, so an outage is not mistaken for a quiet day.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from datetime import date
from pathlib import Path

from bot import report
from bot.analytics import Report, render_text, to_csv
from bot.clock import SystemClock
from bot.events import Outgoing
from bot.outbox import Priority
from bot.router import Request, Router, UsageError, width_fold
from storage.errors import StoreError

log = logging.getLogger("qunbot.analytics")

router = Router("analytics")

CHAT_RETENTION_WEEKS = 4  # a short table for a phone screen; `qunbot report` defaults to 8
CHARTS_KEEP = 20  # chart files kept under data_dir/charts (the newest)


# --- argument parsing -----------------------------------------------------------------------
def _parse_count(req: Request, units: str, lo: int, hi: int, default: int) -> int:
    """`""` → default; "30", "30d", "30天" (days) or "4", "4w", "4周" (weeks) within [lo, hi]."""
    text = width_fold(req.args).strip().lower()
    if not text:
        return default
    m = re.fullmatch(rf"(\d{{1,4}})\s*(?:{units})?", text)
    if m is None or not lo <= int(m.group(1)) <= hi:
        raise UsageError(req.t(f"请给出 {lo}-{hi} 之间的数字", f"give a number from {lo} to {hi}"))
    return int(m.group(1))


def _stats_days(req: Request) -> int:
    days = _parse_count(req, "d|天", 1, 9999, 7)
    if days not in (7, 30, 90):
        raise UsageError(req.t("周期只能是 7d、30d 或 90d", "the period is 7d, 30d or 90d"))
    return days


# --- building -------------------------------------------------------------------------------
async def _report(req: Request, kind: report.Kind, n: int) -> Report:
    ctx = req.ctx
    assert req.room_id is not None  # admin commands always act on a room (router checks)
    name = ctx.room_name(req.room_id)
    data = report.room_data(ctx.store, ctx.settings, req.room_id, self_id=ctx.self_id,
                            room_name="" if name == req.room_id else name)
    end = report.today(ctx.clock, ctx.settings)
    # Pure CPU work on copied data: off the event loop, so a big room never stalls chat.
    return await asyncio.to_thread(report.build, kind, data, end, n)


async def _reply_report(req: Request, kind: report.Kind, n: int) -> Report:
    rep = await _report(req, kind, n)
    await req.reply(render_text(rep, req.lang))
    return rep


def _chart_path(charts_dir: Path, kind: str, room_id: str, stamp: float) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", room_id)
    return charts_dir / f"{kind}-{safe}-{int(stamp * 1000)}.png"


def _prune(charts_dir: Path, keep: int = CHARTS_KEEP) -> None:
    # Older charts were sent long ago (the outbox has them or gave up): keep the folder small.
    files = sorted(charts_dir.glob("*.png"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)


async def _send_chart(req: Request, rep: Report) -> None:
    ctx = req.ctx
    charts_dir = Path(ctx.settings.data_dir) / "charts"
    charts_dir.mkdir(parents=True, exist_ok=True)
    assert req.room_id is not None
    path = _chart_path(charts_dir, "retention", req.room_id, ctx.clock.now())
    await asyncio.to_thread(report.chart, rep, path)
    _prune(charts_dir)
    ctx.send(Outgoing(conversation_id=req.msg.conversation_id, text=path.name,
                      priority=Priority.MANAGER, file_path=str(path)))


# --- chat commands --------------------------------------------------------------------------
@router.command("stats", usage="/stats [7d|30d|90d]", admin=True,
                zh="成员、新增、退出、消息、日活/周活/月活、留存",
                en="members, joins, leaves, messages, DAU/WAU/MAU, retention")
async def stats(req: Request) -> None:
    await _reply_report(req, "stats", _stats_days(req))


@router.command("retention", usage="/retention [周数 1-26]", admin=True,
                zh="按周的留存表和图", en="weekly cohort retention table and chart")
async def retention(req: Request) -> None:
    weeks = _parse_count(req, "w|周", 1, 26, CHAT_RETENTION_WEEKS)
    rep = await _reply_report(req, "retention", weeks)
    await _send_chart(req, rep)


@router.command("funnel", usage="/funnel [天数 1-365]", admin=True,
                zh="各渠道增长：加入、转化、留存、增长", en="growth by channel")
async def funnel(req: Request) -> None:
    await _reply_report(req, "funnel", _parse_count(req, "d|天", 1, 365, 30))


@router.command("invites", usage="/invites [天数 1-365]", admin=True,
                zh="邀请榜（留满7天才计入）", en="invite leaderboard (invitees who stayed 7 days)")
async def invites(req: Request) -> None:
    await _reply_report(req, "invites", _parse_count(req, "d|天", 1, 365, 30))


# --- command line ---------------------------------------------------------------------------
def _cli_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qunbot report",
        description="Growth reports for one room; works whether or not the bot is running.")
    p.add_argument("kind", choices=report.KINDS)
    p.add_argument("--room", required=True, help="room id, e.g. 12345@chatroom")
    p.add_argument("--days", type=int, help="period in days (retention: rounded up to weeks)")
    p.add_argument("--weeks", type=int, help="retention: number of cohort weeks (default 8)")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument("--end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                   help="last day of the period (default: today in the configured timezone)")
    p.add_argument("--png", help="also write the chart to this file (not for invites)")
    p.add_argument("--config", default="bot.yaml", help="path to bot.yaml (default: ./bot.yaml)")
    return p


def _size(args: argparse.Namespace) -> int | None:
    if args.kind == "retention":
        if args.weeks is not None:
            return int(args.weeks)
        return None if args.days is None else -(-int(args.days) // 7)
    return None if args.days is None else int(args.days)


def report_cli(argv: list[str]) -> int:
    """`qunbot report stats|retention|funnel|invites --room ID ...` (argv: what follows `report`).

    Reads a consistent snapshot of the data directory (see `report.snapshot_store`), so it
    works while the bot runs. Prints the report to stdout; errors to stderr. Exit codes:
    0 ok, 1 no data / unknown room, 2 bad arguments or configuration.
    """
    from bot import config as config_mod

    parser = _cli_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the reason
        return int(e.code or 0)
    size = _size(args)
    limit = report.MAX_WEEKS if args.kind == "retention" else report.MAX_DAYS
    if size is not None and not 1 <= size <= limit:
        print(f"qunbot report: the period must be 1-{limit} "
              f"{'weeks' if args.kind == 'retention' else 'days'}", file=sys.stderr)
        return 2
    if args.png and args.kind == "invites":
        print("qunbot report: the invite leaderboard has no chart (--png)", file=sys.stderr)
        return 2
    try:
        settings = config_mod.load(args.config)
    except config_mod.ConfigError as e:
        print(f"qunbot report: invalid configuration in {e.source}:", file=sys.stderr)
        for line in e.errors:
            print(f"  - {line}", file=sys.stderr)
        return 2

    async def load() -> Report:
        async with report.snapshot_store(settings) as store:
            known = set(store.members.rooms()) | set(store.activity.rooms()) | settings.room_ids
            if args.room not in known:
                raise LookupError(f"unknown room {args.room!r}; rooms with data: "
                                  f"{', '.join(sorted(known)) or '(none)'}")
            data = report.room_data(store, settings, args.room,
                                    self_id=settings.sandbox.self_id
                                    if settings.puppet.mode == "sandbox" else "",
                                    room_name=report.room_label(settings, args.room))
        end = args.end.toordinal() if args.end else report.today(SystemClock(), settings)
        return report.build(args.kind, data, end, size)

    try:
        rep = asyncio.run(load())
    except (LookupError, OSError, StoreError) as e:
        print(f"qunbot report: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(rep.to_dict(), ensure_ascii=False, indent=2))
    elif args.format == "csv":
        sys.stdout.write(to_csv(rep))
    else:
        print(render_text(rep, settings.language))
    if args.png:
        try:
            report.chart(rep, args.png)
        except OSError as e:
            print(f"qunbot report: cannot write the chart: {e}", file=sys.stderr)
            return 1
        print(f"chart written: {args.png}", file=sys.stderr)
    return 0

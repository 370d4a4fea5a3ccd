"""Read-only views for the console pages: thin adapters over the features' public pieces.

Figures come from bot/report.py (which runs bot/analytics.py); FAQ, events, lotteries and
announcements are read through their storage repositories (which read the store's shared
in-memory tables, so a repository built here sees exactly what the feature wrote); nothing
here computes a feature's result itself. Changes never happen here: see commands.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import lottery_math, report
from bot.analytics import Report
from storage.records import MemberRecord

if TYPE_CHECKING:
    from bot.app import App
    from bot.context import Context

MEMBER_LIMIT = 200


def ctx_of(app: App) -> Context:
    if app.ctx is None:
        raise RuntimeError("the bot is not running")
    return app.ctx


def rooms(app: App) -> list[str]:
    return sorted(ctx_of(app).served_rooms())


def room_label(app: App, room: str) -> str:
    ctx = ctx_of(app)
    name = ctx.room_name(room)
    if name == room:
        name = report.room_label(ctx.settings, room)
    return name or room


async def build_report(app: App, kind: report.Kind, room: str, n: int | None = None) -> Report:
    """The same report /stats, /retention, /funnel and /invites send (off the event loop)."""
    ctx = ctx_of(app)
    name = room_label(app, room)
    data = report.room_data(ctx.store, ctx.settings, room, self_id=ctx.self_id,
                            room_name="" if name == room else name)
    end = report.today(ctx.clock, ctx.settings)
    return await asyncio.to_thread(report.build, kind, data, end, n)


async def chart_png(app: App, kind: report.Kind, room: str, n: int | None = None) -> bytes:
    rep = await build_report(app, kind, room, n)
    return await asyncio.to_thread(report.chart, rep)


@dataclass(frozen=True)
class RoomSummary:
    room: str
    name: str
    present: int
    left: int


def room_summaries(app: App) -> list[RoomSummary]:
    store = ctx_of(app).store
    out = []
    for r in rooms(app):
        members = store.members.list(r)
        present = sum(1 for m in members if m.present)
        out.append(RoomSummary(r, room_label(app, r), present, len(members) - present))
    return out


@dataclass(frozen=True)
class MemberRow:
    rec: MemberRecord
    checkins: int
    streak: int
    active_days: int


def members(app: App, room: str, query: str = "", *, limit: int | None = MEMBER_LIMIT
            ) -> tuple[list[MemberRow], int]:
    """Members of `room` whose name or id contains `query` (case-insensitive); (shown, total)."""
    ctx = ctx_of(app)
    q = query.strip().casefold()
    found = [m for m in ctx.store.members.list(room)
             if not q or q in m.member_id.casefold() or q in m.name.casefold()]
    active = ctx.store.activity.active_days(room)
    rows = []
    for m in found[:limit]:
        ck = ctx.store.checkins.stats(room, m.member_id)
        rows.append(MemberRow(m, ck.total, ck.streak, len(active.get(m.member_id, ()))))
    return rows, len(found)


def lottery_check(seed_hex: str, commitment: str, eligible: tuple[str, ...],
                  winners: tuple[str, ...], winner_count: int, digest: str) -> list[str]:
    """What `qunbot lottery verify` checks, for a drawn lottery (the seed is public then)."""
    v = lottery_math.verify(commitment=commitment, seed_hex=seed_hex, entrant_ids=list(eligible),
                            winners=list(winners), winner_count=winner_count,
                            entrants_digest=digest or None)
    return v.lines()

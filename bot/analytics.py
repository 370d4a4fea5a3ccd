"""Activity, retention and growth reports (SPEC section 6), computed from aggregates.

Pure: a `RoomData` (member records, per-member sorted active-day ordinals, per-day
message counts, outages) goes in, frozen report dataclasses come out. No storage,
no clock, no I/O. Days are `date.toordinal()` of the local day in `RoomData.tz`.

Definitions (where SPEC section 6 is silent, the choice is written here and in
the README; period = the `days` local days ending with `end_day`, inclusive):

- *members*: records present at the end of `end_day` (join_day <= end_day and
  not left on or before it). One record per member id: if several are passed,
  the one with the latest join_ts wins. Excluded ids (the bot, configured bots)
  are dropped everywhere: members, activity, cohorts, channels' joiners, inviters.
- *new*: joins in the period, excluding `first_seen` records (members who were
  already there when the bot arrived did not join); those are counted apart as
  `first_seen`. *left*: left_day in the period. *net* = new - left.
- *DAU* per day = ids active that day; `dau_avg` = mean over the period.
  *WAU* / *MAU* = distinct ids active in the 7 / 30 days ending `end_day`.
  *stickiness* = dau_avg / MAU.
- *Dn retention* of cohort d (members whose join day is d; members who left
  stay in it): classic = active on d+n; unbounded = active on some day in
  [d+n, end_day]. A cohort whose day d+n is after `end_day` is not observable
  and is left out of that Dn figure (never counted as 0). In `/stats` the Dn
  figure pools the cohorts whose day d+n falls inside the period (joined in
  [start-n, end-n]), so D7/D30 have data even for a 7-day period. Tables in
  `/retention` list the cohorts that joined in the window, unobservable cells
  are None.
- *weekly cohorts*: calendar weeks starting Monday. Cell (W, k) classic = share
  of cohort W active (on or after their own join day) during week W+k;
  unbounded = active in week W+k or later (up to `end_day`). A cell is
  observable only once week W+k has ended by `end_day`.
- *incomplete day*: any local day an outage touches (an outage ending exactly
  at local midnight does not touch the next day; an outage without end runs
  through every later day). Every figure carries `incomplete=True` when a day
  it depends on is incomplete: per-day points (that day), WAU/MAU (their
  window), period totals (any period day), classic cell (d or d+n), unbounded
  cell (d or any of d+n..end_day), weekly cells (their cohort week and week
  W+k, or W+k..end for unbounded), funnel rows (any period day).
- *channel funnel* over the period: traffic = joins (not first_seen) whose
  join day is in the period, by `channel`. Of those whose 7 days are over
  (join_day + 7 <= end_day, "matured"): conversion = share active on some day
  in [join_day, join_day + 7] (the join day and the 7 days after it, so that
  every D7-retained member has also converted); retention = D7 classic
  retention (active on join_day + 7). growth = traffic * conversion * retention.
  Joiners whose 7 days are not over count in traffic only.
- *invite leaderboard*: per inviter (records with an inviter_id; excluded ids
  never count as inviter or invitee), invitees who joined (not first_seen) in
  the period. `counted` = matured (join_day + 7 <= end_day) and still in the
  room on day join_day + 7 (left_day is None or >= join_day + 7); `pending` =
  joined less than 7 days before end_day and still present; `left_early` =
  left before day join_day + 7. Ranked by counted, then invited, then id.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from storage.records import MemberRecord, Outage

__all__ = [
    "RoomData",
    "DayPoint",
    "Rate",
    "StatsReport",
    "Cell",
    "CohortRow",
    "RetentionReport",
    "ChannelRow",
    "FunnelReport",
    "InviteRow",
    "InviteReport",
    "Report",
    "local_day",
    "incomplete_days",
    "period_bounds",
    "stats_report",
    "retention_report",
    "funnel_report",
    "invite_report",
    "render_text",
    "render_stats",
    "render_retention",
    "render_funnel",
    "render_invites",
    "to_csv",
    "DEFAULT_STATS_NS",
    "DEFAULT_DAILY_NS",
]

DEFAULT_STATS_NS: tuple[int, ...] = (1, 7, 30)
DEFAULT_DAILY_NS: tuple[int, ...] = (1, 3, 7, 14, 30)
_FOREVER = 10**9  # end day of an outage without end


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class RoomData:
    """Everything a report needs about one room; built by the caller from the store."""

    room_id: str
    members: Sequence[MemberRecord]
    active_days: Mapping[str, Sequence[int]]  # member id -> sorted day ordinals
    room_messages: Mapping[int, int]  # day ordinal -> messages that day
    outages: Sequence[Outage] = ()
    excluded_ids: frozenset[str] | set[str] = frozenset()
    tz: str = "Asia/Shanghai"
    room_name: str = ""


def local_day(ts: float, tz: str) -> int:
    """Ordinal of the local calendar day (in `tz`) containing epoch second `ts`."""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).date().toordinal()


def _outage_day_span(outage: Outage, tz: str) -> tuple[int, int]:
    zone = ZoneInfo(tz)
    start = datetime.fromtimestamp(outage.start_ts, zone)
    first = start.date().toordinal()
    if outage.end_ts is None:
        return first, _FOREVER
    end = datetime.fromtimestamp(outage.end_ts, zone)
    last = end.date().toordinal()
    midnight = end.hour == 0 and end.minute == 0 and end.second == 0 and end.microsecond == 0
    if midnight and outage.end_ts > outage.start_ts and last > first:
        last -= 1  # ends exactly at local midnight: the new day is untouched
    return first, max(first, last)


class _Incomplete:
    """Merged day intervals touched by outages; `any(lo, hi)` in O(log n)."""

    def __init__(self, outages: Iterable[Outage], tz: str) -> None:
        spans = sorted(_outage_day_span(o, tz) for o in outages)
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        self._starts = [lo for lo, _ in merged]
        self._spans = merged

    def any(self, lo: int, hi: int) -> bool:
        """True if some day in [lo, hi] is incomplete."""
        if hi < lo:
            return False
        i = bisect_right(self._starts, hi) - 1
        return i >= 0 and self._spans[i][1] >= lo

    def days(self, lo: int, hi: int) -> list[int]:
        out: list[int] = []
        for a, b in self._spans:
            out.extend(range(max(a, lo), min(b, hi) + 1))
        return out


def incomplete_days(outages: Iterable[Outage], tz: str, lo: int, hi: int) -> list[int]:
    """Sorted local day ordinals in [lo, hi] touched by any outage."""
    return _Incomplete(outages, tz).days(lo, hi)


def period_bounds(end_day: int, days: int) -> tuple[int, int]:
    if days < 1:
        raise ValueError("days must be >= 1")
    return end_day - days + 1, end_day


class _Prepared:
    """Input with excluded ids dropped and one record per member."""

    def __init__(self, data: RoomData) -> None:
        excluded = set(data.excluded_ids)
        latest: dict[str, MemberRecord] = {}
        for rec in data.members:
            if rec.member_id in excluded:
                continue
            old = latest.get(rec.member_id)
            if old is None or rec.join_ts >= old.join_ts:
                latest[rec.member_id] = rec
        self.members: list[MemberRecord] = list(latest.values())
        self.names: dict[str, str] = {r.member_id: r.name for r in data.members}
        self.active: dict[str, Sequence[int]] = {
            k: v for k, v in data.active_days.items() if k not in excluded and len(v) > 0
        }
        self.excluded = excluded
        self.incomplete = _Incomplete(data.outages, data.tz)
        self.data = data

    def days_of(self, member_id: str) -> Sequence[int]:
        return self.active.get(member_id, ())


def _has_in(days: Sequence[int], lo: int, hi: int) -> bool:
    """Some day in sorted `days` lies in [lo, hi]."""
    if hi < lo:
        return False
    i = bisect_left(days, lo)
    return i < len(days) and days[i] <= hi


def _has(days: Sequence[int], day: int) -> bool:
    i = bisect_left(days, day)
    return i < len(days) and days[i] == day


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _iso(day: int) -> str:
    return date.fromordinal(day).isoformat()


# -------------------------------------------------------------------------- /stats


@dataclass(frozen=True)
class DayPoint:
    day: int
    dau: int
    messages: int
    new: int
    left: int
    incomplete: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": _iso(self.day),
            "dau": self.dau,
            "messages": self.messages,
            "new": self.new,
            "left": self.left,
            "incomplete": self.incomplete,
        }


@dataclass(frozen=True)
class Rate:
    """Pooled Dn retention: `retained` of `size` cohort members (observable cohorts only)."""

    n: int
    size: int
    retained: int
    unbounded_retained: int
    incomplete: bool
    unbounded_incomplete: bool

    @property
    def rate(self) -> float | None:
        return _ratio(self.retained, self.size)

    @property
    def unbounded_rate(self) -> float | None:
        return _ratio(self.unbounded_retained, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "cohort_size": self.size,
            "retained": self.retained,
            "rate": self.rate,
            "unbounded_retained": self.unbounded_retained,
            "unbounded_rate": self.unbounded_rate,
            "incomplete": self.incomplete,
            "unbounded_incomplete": self.unbounded_incomplete,
        }


@dataclass(frozen=True)
class StatsReport:
    room_id: str
    room_name: str
    start_day: int
    end_day: int
    members: int  # present at the end of end_day
    members_at_start: int  # present at the end of start_day - 1
    new: int
    left: int
    first_seen: int
    messages: int
    dau_avg: float
    wau: int
    mau: int
    wau_incomplete: bool
    mau_incomplete: bool
    retention: tuple[Rate, ...]
    series: tuple[DayPoint, ...]
    incomplete_days: tuple[int, ...]  # within the period

    @property
    def days(self) -> int:
        return self.end_day - self.start_day + 1

    @property
    def net(self) -> int:
        return self.new - self.left

    @property
    def stickiness(self) -> float | None:
        return self.dau_avg / self.mau if self.mau else None

    @property
    def incomplete(self) -> bool:
        return bool(self.incomplete_days)

    def rate(self, n: int) -> Rate | None:
        return next((r for r in self.retention if r.n == n), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": "stats",
            "room_id": self.room_id,
            "room_name": self.room_name,
            "start": _iso(self.start_day),
            "end": _iso(self.end_day),
            "days": self.days,
            "members": self.members,
            "members_at_start": self.members_at_start,
            "new": self.new,
            "left": self.left,
            "net": self.net,
            "first_seen": self.first_seen,
            "messages": self.messages,
            "dau_avg": self.dau_avg,
            "wau": self.wau,
            "mau": self.mau,
            "wau_incomplete": self.wau_incomplete,
            "mau_incomplete": self.mau_incomplete,
            "stickiness": self.stickiness,
            "retention": [r.to_dict() for r in self.retention],
            "series": [p.to_dict() for p in self.series],
            "incomplete": self.incomplete,
            "incomplete_days": [_iso(d) for d in self.incomplete_days],
        }

    def csv_rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = [["date", "dau", "messages", "new", "left", "incomplete"]]
        for p in self.series:
            rows.append([_iso(p.day), p.dau, p.messages, p.new, p.left, int(p.incomplete)])
        return rows


def _present_at(rec: MemberRecord, day: int) -> bool:
    return rec.join_day <= day and (rec.left_day is None or rec.left_day > day)


def stats_report(
    data: RoomData, end_day: int, days: int = 7, ns: Sequence[int] = DEFAULT_STATS_NS
) -> StatsReport:
    """`/stats`: members, growth, messages, DAU/WAU/MAU, stickiness, pooled Dn retention."""
    start, end = period_bounds(end_day, days)
    p = _Prepared(data)
    inc = p.incomplete

    members = sum(1 for r in p.members if _present_at(r, end))
    members_at_start = sum(1 for r in p.members if _present_at(r, start - 1))
    new_by_day: Counter[int] = Counter()
    left_by_day: Counter[int] = Counter()
    first_seen = 0
    for r in p.members:
        if start <= r.join_day <= end:
            if r.first_seen:
                first_seen += 1
            else:
                new_by_day[r.join_day] += 1
        if r.left_day is not None and start <= r.left_day <= end:
            left_by_day[r.left_day] += 1

    dau = [0] * days
    wau = mau = 0
    w_lo, m_lo = end - 6, end - 29
    for ds in p.active.values():
        i = bisect_left(ds, min(start, m_lo))
        j = bisect_right(ds, end)
        if i == j:
            continue
        seg = ds[i:j]
        if seg[-1] >= m_lo:
            mau += 1
            if seg[-1] >= w_lo:
                wau += 1
        for d in seg[bisect_left(seg, start) :]:
            dau[d - start] += 1

    msgs = data.room_messages
    series = tuple(
        DayPoint(
            day=start + k,
            dau=dau[k],
            messages=int(msgs.get(start + k, 0)),
            new=new_by_day[start + k],
            left=left_by_day[start + k],
            incomplete=inc.any(start + k, start + k),
        )
        for k in range(days)
    )

    rates: list[Rate] = []
    for n in ns:
        size = kept = kept_u = 0
        flag = flag_u = False
        for r in p.members:
            d = r.join_day
            if not (start <= d + n <= end):
                continue
            size += 1
            ds = p.days_of(r.member_id)
            if _has(ds, d + n):
                kept += 1
            if _has_in(ds, d + n, end):
                kept_u += 1
            day_inc = inc.any(d, d)
            flag = flag or day_inc or inc.any(d + n, d + n)
            flag_u = flag_u or day_inc or inc.any(d + n, end)
        rates.append(Rate(n, size, kept, kept_u, flag, flag_u))

    return StatsReport(
        room_id=data.room_id,
        room_name=data.room_name,
        start_day=start,
        end_day=end,
        members=members,
        members_at_start=members_at_start,
        new=sum(new_by_day.values()),
        left=sum(left_by_day.values()),
        first_seen=first_seen,
        messages=sum(pt.messages for pt in series),
        dau_avg=sum(dau) / days,
        wau=wau,
        mau=mau,
        wau_incomplete=inc.any(w_lo, end),
        mau_incomplete=inc.any(m_lo, end),
        retention=tuple(rates),
        series=series,
        incomplete_days=tuple(inc.days(start, end)),
    )


# ---------------------------------------------------------------------- /retention


@dataclass(frozen=True)
class Cell:
    """One cohort x offset cell; counts are None when the cell is not yet observable."""

    offset: int
    retained: int | None
    unbounded_retained: int | None
    size: int
    incomplete: bool = False
    unbounded_incomplete: bool = False

    @property
    def observable(self) -> bool:
        return self.retained is not None

    @property
    def rate(self) -> float | None:
        return None if self.retained is None else _ratio(self.retained, self.size)

    @property
    def unbounded_rate(self) -> float | None:
        if self.unbounded_retained is None:
            return None
        return _ratio(self.unbounded_retained, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "retained": self.retained,
            "rate": self.rate,
            "unbounded_retained": self.unbounded_retained,
            "unbounded_rate": self.unbounded_rate,
            "incomplete": self.incomplete,
            "unbounded_incomplete": self.unbounded_incomplete,
        }


@dataclass(frozen=True)
class CohortRow:
    """A daily cohort (start_day == last_day) or a weekly cohort (Monday..Sunday)."""

    start_day: int
    last_day: int
    size: int
    cells: tuple[Cell, ...]
    incomplete: bool  # a day of the cohort itself is incomplete (joins may be missing)

    def cell(self, offset: int) -> Cell | None:
        return next((c for c in self.cells if c.offset == offset), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start_day),
            "end": _iso(self.last_day),
            "size": self.size,
            "incomplete": self.incomplete,
            "cells": [c.to_dict() for c in self.cells],
        }


@dataclass(frozen=True)
class RetentionReport:
    room_id: str
    room_name: str
    start_day: int  # Monday of the first cohort week
    end_day: int
    weeks: int
    daily_ns: tuple[int, ...]
    daily: tuple[CohortRow, ...]  # cohorts joined in [start_day, end_day], size > 0
    weekly: tuple[CohortRow, ...]  # one row per week, offsets 0..weeks-1
    daily_average: tuple[Cell, ...]  # pooled over observable daily cohorts, per n
    weekly_average: tuple[Cell, ...]  # pooled over observable weekly cohorts, per offset
    incomplete_days: tuple[int, ...]

    @property
    def incomplete(self) -> bool:
        return bool(self.incomplete_days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": "retention",
            "room_id": self.room_id,
            "room_name": self.room_name,
            "start": _iso(self.start_day),
            "end": _iso(self.end_day),
            "weeks": self.weeks,
            "daily_ns": list(self.daily_ns),
            "daily": [r.to_dict() for r in self.daily],
            "weekly": [r.to_dict() for r in self.weekly],
            "daily_average": [c.to_dict() for c in self.daily_average],
            "weekly_average": [c.to_dict() for c in self.weekly_average],
            "incomplete": self.incomplete,
            "incomplete_days": [_iso(d) for d in self.incomplete_days],
        }

    def csv_rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = [
            [
                "kind",
                "cohort_start",
                "cohort_end",
                "size",
                "offset",
                "retained",
                "rate",
                "unbounded_retained",
                "unbounded_rate",
                "incomplete",
                "unbounded_incomplete",
            ]
        ]
        for kind, table in (("week", self.weekly), ("day", self.daily)):
            for row in table:
                for c in row.cells:
                    rows.append(
                        [
                            kind,
                            _iso(row.start_day),
                            _iso(row.last_day),
                            row.size,
                            c.offset,
                            _blank(c.retained),
                            _blank(c.rate),
                            _blank(c.unbounded_retained),
                            _blank(c.unbounded_rate),
                            int(c.incomplete),
                            int(c.unbounded_incomplete),
                        ]
                    )
        return rows


def _blank(v: float | int | None) -> float | int | str:
    if v is None:
        return ""
    return round(v, 6) if isinstance(v, float) else v


def _week_start(day: int) -> int:
    """Monday on or before `day` (ordinal 1, 0001-01-01, is a Monday)."""
    return day - (day - 1) % 7


def _pool(offset: int, cells: Iterable[Cell]) -> Cell:
    size = kept = kept_u = 0
    flag = flag_u = False
    for c in cells:
        if c.retained is None or c.unbounded_retained is None:
            continue
        size += c.size
        kept += c.retained
        kept_u += c.unbounded_retained
        flag = flag or c.incomplete
        flag_u = flag_u or c.unbounded_incomplete
    if size == 0:
        return Cell(offset, None, None, 0)
    return Cell(offset, kept, kept_u, size, flag, flag_u)


def retention_report(
    data: RoomData,
    end_day: int,
    weeks: int = 8,
    daily_ns: Sequence[int] = DEFAULT_DAILY_NS,
) -> RetentionReport:
    """`/retention [weeks]`: weekly cohort table (the last `weeks` calendar weeks up to
    the week of `end_day`) and daily cohorts of the same window."""
    if weeks < 1:
        raise ValueError("weeks must be >= 1")
    ns = tuple(daily_ns)
    p = _Prepared(data)
    inc = p.incomplete
    first_week = _week_start(end_day) - 7 * (weeks - 1)
    start = first_week

    cohort_members: dict[int, list[MemberRecord]] = defaultdict(list)
    for r in p.members:
        if start <= r.join_day <= end_day:
            cohort_members[r.join_day].append(r)

    # Daily cohorts.
    daily: list[CohortRow] = []
    for d in sorted(cohort_members):
        recs = cohort_members[d]
        d_inc = inc.any(d, d)
        cells: list[Cell] = []
        for n in ns:
            if d + n > end_day:
                cells.append(Cell(n, None, None, len(recs)))
                continue
            kept = kept_u = 0
            for r in recs:
                ds = p.days_of(r.member_id)
                if _has(ds, d + n):
                    kept += 1
                if _has_in(ds, d + n, end_day):
                    kept_u += 1
            cells.append(
                Cell(
                    n,
                    kept,
                    kept_u,
                    len(recs),
                    d_inc or inc.any(d + n, d + n),
                    d_inc or inc.any(d + n, end_day),
                )
            )
        daily.append(CohortRow(d, d, len(recs), tuple(cells), d_inc))

    # Weekly cohorts: per member, which later weeks (relative) they were active in.
    weekly: list[CohortRow] = []
    for w in range(weeks):
        ws = first_week + 7 * w
        we = ws + 6
        recs = [r for d in range(ws, we + 1) for r in cohort_members.get(d, ())]
        w_inc = inc.any(ws, we)
        # active[k] = members active in week w+k (on/after own join day)
        counts = [0] * weeks
        last_week_active: list[int] = []
        for r in recs:
            ds = p.days_of(r.member_id)
            i = bisect_left(ds, r.join_day)
            j = bisect_right(ds, end_day)
            seen_k = -1
            last_k = -1
            for idx in range(i, j):
                k = (ds[idx] - ws) // 7
                if k != seen_k and k < weeks:
                    counts[k] += 1
                    seen_k = k
                last_k = k
            last_week_active.append(last_k)
        cells = []
        for k in range(weeks):
            ks, ke = ws + 7 * k, ws + 7 * k + 6
            if ke > end_day:
                cells.append(Cell(k, None, None, len(recs)))
                continue
            kept_u = sum(1 for lk in last_week_active if lk >= k)
            cells.append(
                Cell(
                    k,
                    counts[k],
                    kept_u,
                    len(recs),
                    w_inc or inc.any(ks, ke),
                    w_inc or inc.any(ks, end_day),
                )
            )
        weekly.append(CohortRow(ws, we, len(recs), tuple(cells), w_inc))

    daily_avg = tuple(
        _pool(n, (c for row in daily for c in row.cells if c.offset == n)) for n in ns
    )
    weekly_avg = tuple(_pool(k, (row.cells[k] for row in weekly if row.size)) for k in range(weeks))
    return RetentionReport(
        room_id=data.room_id,
        room_name=data.room_name,
        start_day=start,
        end_day=end_day,
        weeks=weeks,
        daily_ns=ns,
        daily=tuple(daily),
        weekly=tuple(weekly),
        daily_average=daily_avg,
        weekly_average=weekly_avg,
        incomplete_days=tuple(inc.days(start, end_day)),
    )


# ------------------------------------------------------------------------- /funnel


@dataclass(frozen=True)
class ChannelRow:
    channel: str  # inviter id, "qrcode" or "unknown"
    label: str  # inviter's name when known, else the channel
    traffic: int  # joins in the period
    matured: int  # joins whose 7 days are over by end_day
    converted: int  # matured and active within [join, join + 7]
    retained: int  # matured and active on join + 7
    incomplete: bool

    @property
    def conversion(self) -> float | None:
        return _ratio(self.converted, self.matured)

    @property
    def retention(self) -> float | None:
        return _ratio(self.retained, self.matured)

    @property
    def growth(self) -> float | None:
        if self.conversion is None or self.retention is None:
            return None
        return self.traffic * self.conversion * self.retention

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "label": self.label,
            "traffic": self.traffic,
            "matured": self.matured,
            "converted": self.converted,
            "retained": self.retained,
            "conversion": self.conversion,
            "retention": self.retention,
            "growth": self.growth,
            "incomplete": self.incomplete,
        }


@dataclass(frozen=True)
class FunnelReport:
    room_id: str
    room_name: str
    start_day: int
    end_day: int
    rows: tuple[ChannelRow, ...]  # traffic desc, then channel
    total: ChannelRow
    incomplete_days: tuple[int, ...]

    @property
    def incomplete(self) -> bool:
        return bool(self.incomplete_days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": "funnel",
            "room_id": self.room_id,
            "room_name": self.room_name,
            "start": _iso(self.start_day),
            "end": _iso(self.end_day),
            "rows": [r.to_dict() for r in self.rows],
            "total": self.total.to_dict(),
            "incomplete": self.incomplete,
            "incomplete_days": [_iso(d) for d in self.incomplete_days],
        }

    def csv_rows(self) -> list[list[Any]]:
        head = ["channel", "label", "traffic", "matured", "converted", "retained"]
        rows: list[list[Any]] = [[*head, "conversion", "retention", "growth", "incomplete"]]
        for r in (*self.rows, self.total):
            rows.append(
                [
                    r.channel,
                    r.label,
                    r.traffic,
                    r.matured,
                    r.converted,
                    r.retained,
                    _blank(r.conversion),
                    _blank(r.retention),
                    _blank(r.growth),
                    int(r.incomplete),
                ]
            )
        return rows


CONVERSION_WINDOW = 7
INVITE_STAY_DAYS = 7


def funnel_report(data: RoomData, end_day: int, days: int = 30) -> FunnelReport:
    """`/funnel [days]`: traffic x conversion x retention = growth, per channel."""
    start, end = period_bounds(end_day, days)
    p = _Prepared(data)
    flag = p.incomplete.any(start, end)
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in p.members:
        if r.first_seen or not (start <= r.join_day <= end):
            continue
        a = acc[r.channel]
        a[0] += 1
        d = r.join_day
        if d + CONVERSION_WINDOW > end:
            continue
        a[1] += 1
        ds = p.days_of(r.member_id)
        if _has_in(ds, d, d + CONVERSION_WINDOW):
            a[2] += 1
        if _has(ds, d + 7):
            a[3] += 1

    def label(ch: str) -> str:
        return p.names.get(ch, ch)

    rows = tuple(
        ChannelRow(ch, label(ch), a[0], a[1], a[2], a[3], flag)
        for ch, a in sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    )
    tot = [sum(a[i] for a in acc.values()) for i in range(4)]
    total = ChannelRow("*", "*", tot[0], tot[1], tot[2], tot[3], flag)
    return FunnelReport(
        data.room_id,
        data.room_name,
        start,
        end,
        rows,
        total,
        tuple(p.incomplete.days(start, end)),
    )


# ------------------------------------------------------------------------ /invites


@dataclass(frozen=True)
class InviteRow:
    inviter_id: str
    name: str
    counted: int  # still in the room on day join + 7
    pending: int  # joined < 7 days before end_day, still present
    left_early: int  # left before day join + 7
    invited: int  # all invitees who joined in the period

    def to_dict(self) -> dict[str, Any]:
        return {
            "inviter_id": self.inviter_id,
            "name": self.name,
            "counted": self.counted,
            "pending": self.pending,
            "left_early": self.left_early,
            "invited": self.invited,
        }


@dataclass(frozen=True)
class InviteReport:
    room_id: str
    room_name: str
    start_day: int
    end_day: int
    rows: tuple[InviteRow, ...]
    incomplete_days: tuple[int, ...]

    @property
    def incomplete(self) -> bool:
        return bool(self.incomplete_days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": "invites",
            "room_id": self.room_id,
            "room_name": self.room_name,
            "start": _iso(self.start_day),
            "end": _iso(self.end_day),
            "rows": [r.to_dict() for r in self.rows],
            "incomplete": self.incomplete,
            "incomplete_days": [_iso(d) for d in self.incomplete_days],
        }

    def csv_rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = [
            ["rank", "inviter_id", "name", "counted", "pending", "left_early", "invited"]
        ]
        for i, r in enumerate(self.rows, 1):
            rows.append([i, r.inviter_id, r.name, r.counted, r.pending, r.left_early, r.invited])
        return rows


def invite_report(data: RoomData, end_day: int, days: int = 30) -> InviteReport:
    """`/invites [days]`: invitees who stayed 7 days, per inviter."""
    start, end = period_bounds(end_day, days)
    p = _Prepared(data)
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in p.members:
        inviter = r.inviter_id
        if not inviter or inviter in p.excluded or r.first_seen:
            continue
        if not (start <= r.join_day <= end):
            continue
        a = acc[inviter]
        a[3] += 1
        due = r.join_day + INVITE_STAY_DAYS
        if r.left_day is not None and r.left_day < due:
            a[2] += 1
        elif due <= end:
            a[0] += 1
        else:
            a[1] += 1
    rows = tuple(
        InviteRow(inv, p.names.get(inv, inv), a[0], a[1], a[2], a[3])
        for inv, a in sorted(acc.items(), key=lambda kv: (-kv[1][0], -kv[1][3], kv[0]))
    )
    return InviteReport(
        data.room_id, data.room_name, start, end, rows, tuple(p.incomplete.days(start, end))
    )


# ----------------------------------------------------------------------- rendering

Report = StatsReport | RetentionReport | FunnelReport | InviteReport

WARN = "⚠"


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(report.csv_rows())
    return buf.getvalue()


def _md(day: int) -> str:
    d = date.fromordinal(day)
    return f"{d.month:02d}-{d.day:02d}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def _w(flag: bool) -> str:
    return WARN if flag else ""


def _day_list(days: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(_md(d) for d in days[:limit])
    return shown + (" …" if len(days) > limit else "")


def _incomplete_line(days: Sequence[int], lang: str) -> list[str]:
    if not days:
        return []
    if lang == "en":
        return [f"{WARN} incomplete (bot offline): {_day_list(days)}"]
    return [f"{WARN} 数据不完整（机器人离线）：{_day_list(days)}"]


def _signed(v: int) -> str:
    return f"+{v}" if v >= 0 else str(v)


def render_stats(r: StatsReport, lang: str = "zh") -> str:
    en = lang == "en"
    rng = f"{_md(r.start_day)}~{_md(r.end_day)}"
    inc = _w(r.incomplete)
    if en:
        lines = [
            f"📊 Last {r.days} days ({rng})",
            f"Members {r.members} (+{r.new} / -{r.left}, net {_signed(r.net)}){inc}",
            f"Messages {r.messages}{inc}",
            f"DAU {r.dau_avg:.1f}{inc} · WAU {r.wau}{_w(r.wau_incomplete)}"
            f" · MAU {r.mau}{_w(r.mau_incomplete)}",
            f"Stickiness {_pct(r.stickiness)}",
        ]
    else:
        lines = [
            f"📊 近{r.days}天（{rng}）",
            f"成员 {r.members}（+{r.new} / -{r.left}，净增 {_signed(r.net)}）{inc}",
            f"消息 {r.messages}{inc}",
            f"日活 {r.dau_avg:.1f}{inc} · 周活 {r.wau}{_w(r.wau_incomplete)}"
            f" · 月活 {r.mau}{_w(r.mau_incomplete)}",
            f"粘性 {_pct(r.stickiness)}",
        ]
    if r.first_seen:
        lines.append(
            f"First seen (already here) {r.first_seen}"
            if en
            else f"首次记录的老成员 {r.first_seen}"
        )
    parts = []
    for rt in r.retention:
        name = f"D{rt.n}" if en else ("次日" if rt.n == 1 else f"{rt.n}日")
        val = _pct(rt.rate)
        if rt.size:
            val += f"({rt.size})" if en else f"（{rt.size}人）"
        parts.append(f"{name} {val}{_w(rt.incomplete)}")
    if parts:
        lines.append(("Retention " if en else "留存 ") + " · ".join(parts))
    lines += _incomplete_line(r.incomplete_days, lang)
    return "\n".join(lines)


def render_retention(r: RetentionReport, lang: str = "zh", max_offsets: int = 6) -> str:
    en = lang == "en"
    lines = [
        f"📈 Weekly cohort retention ({r.weeks} weeks)" if en else f"📈 周留存（近{r.weeks}周）"
    ]
    k_max = min(r.weeks, max_offsets)
    head = ("Week   n   " if en else "周     人数 ") + " ".join(f"W{k:<3}" for k in range(k_max))
    lines.append(head)
    for row in r.weekly:
        if row.size == 0:
            lines.append(f"{_md(row.start_day)} {0:>4} " + ("no joins" if en else "无新成员"))
            continue
        cells = []
        for c in row.cells[:k_max]:
            cells.append(f"{'·' if c.rate is None else _pct(c.rate)}{_w(c.incomplete)}".ljust(4))
        lines.append(f"{_md(row.start_day)} {row.size:>4} " + " ".join(cells).rstrip())
    avg = [f"D{c.offset} {_pct(c.rate)}{_w(c.incomplete)}" for c in r.daily_average]
    if avg:
        lines.append(("Daily avg " if en else "日均留存 ") + " · ".join(avg))
    lines.append("· = not yet observable" if en else "· = 尚未到期")
    lines += _incomplete_line(r.incomplete_days, lang)
    return "\n".join(lines)


def _channel_label(ch: ChannelRow, lang: str) -> str:
    if ch.channel == "qrcode":
        return "QR code" if lang == "en" else "扫码"
    if ch.channel == "unknown":
        return "unknown" if lang == "en" else "未知"
    if ch.channel == "*":
        return "Total" if lang == "en" else "合计"
    return ch.label


def render_funnel(r: FunnelReport, lang: str = "zh", limit: int = 10) -> str:
    en = lang == "en"
    days = r.end_day - r.start_day + 1
    lines = [f"🔀 Growth by channel, {days} days" if en else f"🔀 渠道增长（近{days}天）"]
    if not r.rows:
        lines.append("No joins in this period." if en else "本期没有新成员加入。")
    for ch in (*r.rows[:limit], r.total) if r.rows else ():
        g = "—" if ch.growth is None else f"{ch.growth:.1f}"
        if en:
            lines.append(
                f"{_channel_label(ch, lang)}: joins {ch.traffic} · conv {_pct(ch.conversion)}"
                f" · D7 {_pct(ch.retention)} · growth {g}{_w(ch.incomplete)}"
            )
        else:
            lines.append(
                f"{_channel_label(ch, lang)}：加入 {ch.traffic} · 转化 {_pct(ch.conversion)}"
                f" · 7日留存 {_pct(ch.retention)} · 增长 {g}{_w(ch.incomplete)}"
            )
    if len(r.rows) > limit:
        lines.append(
            f"… {len(r.rows) - limit} more" if en else f"… 另有 {len(r.rows) - limit} 个渠道"
        )
    lines += _incomplete_line(r.incomplete_days, lang)
    return "\n".join(lines)


def render_invites(r: InviteReport, lang: str = "zh", limit: int = 10) -> str:
    en = lang == "en"
    days = r.end_day - r.start_day + 1
    lines = [
        f"🏆 Invites, {days} days (stayed 7 days)"
        if en
        else f"🏆 邀请榜（近{days}天，留满7天计入）"
    ]
    if not r.rows:
        lines.append("No invites in this period." if en else "本期没有邀请记录。")
    for i, row in enumerate(r.rows[:limit], 1):
        extra = []
        if row.pending:
            extra.append(f"{row.pending} pending" if en else f"待定 {row.pending}")
        if row.left_early:
            extra.append(f"{row.left_early} left" if en else f"已退 {row.left_early}")
        tail = (
            f" ({', '.join(extra)})"
            if en and extra
            else (f"（{'，'.join(extra)}）" if extra else "")
        )
        lines.append(f"{i}. {row.name} {row.counted}{'' if en else '人'}{tail}")
    lines += _incomplete_line(r.incomplete_days, lang)
    return "\n".join(lines)


_RENDERERS: dict[type, Callable[..., str]] = {
    StatsReport: render_stats,
    RetentionReport: render_retention,
    FunnelReport: render_funnel,
    InviteReport: render_invites,
}


def render_text(report: Report, lang: str = "zh") -> str:
    """Chat text for any report, in `zh` (default) or `en`."""
    return _RENDERERS[type(report)](report, lang)


def day_range(start_day: int, end_day: int) -> list[date]:
    return [date.fromordinal(start_day) + timedelta(days=k) for k in range(end_day - start_day + 1)]

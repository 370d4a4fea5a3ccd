"""Analytics: a hand-computed 10-day room, and a property test against a brute force.

Every expected number in the hand-computed tests was worked out on paper from
the room below; the reasoning is in the comments next to each assertion.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.analytics import (
    RoomData,
    funnel_report,
    incomplete_days,
    invite_report,
    local_day,
    render_text,
    retention_report,
    stats_report,
    to_csv,
)
from storage.records import MemberRecord, Outage

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
B = date(2024, 3, 4).toordinal()  # a Monday; the room's 10 days are B .. B+9


def midnight(day: int) -> float:
    """Epoch seconds of local 00:00 of `day`."""
    return datetime.combine(date.fromordinal(day), datetime.min.time(), ZONE).timestamp()


def at(day: int, hour: float) -> float:
    return midnight(day) + hour * 3600


def member(
    mid: str,
    join: int,
    *,
    channel: str = "unknown",
    inviter: str | None = None,
    first_seen: bool = False,
    left: int | None = None,
    name: str | None = None,
) -> MemberRecord:
    return MemberRecord(
        room_id="r1",
        member_id=mid,
        name=name or mid,
        join_ts=at(join, 10),
        join_day=join,
        channel=channel,
        inviter_id=inviter,
        first_seen=first_seen,
        left_ts=None if left is None else at(left, 12),
        left_day=left,
    )


# The room, days B (Mon 2024-03-04) .. B+9 (Wed 2024-03-13), Asia/Shanghai:
#   bot    the bot itself, first seen B, active every day      -> excluded everywhere
#   u_a    阿强, first seen B (already in the room), active B, B+1, B+2, B+5, B+9
#   u_b    小白, first seen B, active B+1
#   u_c    joined B+1 invited by u_a, active B+1, B+2, B+8
#   u_d    joined B+1 by QR code, active B+2, left B+4
#   u_e    joined B+2 invited by u_a, never active, left B+3
#   u_f    joined B+3 by QR code, active B+3, B+4
#   u_g    joined B+5 invited by u_a, active B+6
#   u_i    joined B+4 invited by the bot, never active
#   u_h    joined B+8 invited by u_b, active B+8, B+9
#   ghost  not in the member list (e.g. data forgotten), active B+4: counts in DAU only
# Outages: B+2 20:00 -> B+3 00:00 (ends exactly at midnight: only B+2 touched),
#          B+6 22:00 -> B+7 01:00 (touches B+6 and B+7).
MEMBERS = [
    member("bot", B, first_seen=True, name="群助手"),
    member("u_a", B, first_seen=True, name="阿强"),
    member("u_b", B, first_seen=True, name="小白"),
    member("u_c", B + 1, channel="u_a", inviter="u_a"),
    member("u_d", B + 1, channel="qrcode", left=B + 4),
    member("u_e", B + 2, channel="u_a", inviter="u_a", left=B + 3),
    member("u_f", B + 3, channel="qrcode"),
    member("u_g", B + 5, channel="u_a", inviter="u_a"),
    member("u_i", B + 4, channel="bot", inviter="bot"),
    member("u_h", B + 8, channel="u_b", inviter="u_b"),
]
ACTIVE = {
    "bot": tuple(range(B, B + 10)),
    "u_a": (B, B + 1, B + 2, B + 5, B + 9),
    "u_b": (B + 1,),
    "u_c": (B + 1, B + 2, B + 8),
    "u_d": (B + 2,),
    "u_f": (B + 3, B + 4),
    "u_g": (B + 6,),
    "u_h": (B + 8, B + 9),
    "ghost": (B + 4,),
}
MESSAGES = dict(zip(range(B, B + 10), [5, 8, 6, 0, 3, 4, 2, 0, 7, 9], strict=True))
OUTAGES = [Outage(at(B + 2, 20), midnight(B + 3)), Outage(at(B + 6, 22), at(B + 7, 1))]
ROOM = RoomData(
    room_id="r1",
    members=MEMBERS,
    active_days=ACTIVE,
    room_messages=MESSAGES,
    outages=OUTAGES,
    excluded_ids={"bot"},
    tz=TZ,
    room_name="读书群",
)
END = B + 9


def test_outage_days_in_local_time() -> None:
    # 20:00 -> 24:00 on B+2 touches B+2 only; 22:00 B+6 -> 01:00 B+7 touches both.
    assert incomplete_days(OUTAGES, TZ, B, END) == [B + 2, B + 6, B + 7]
    # An outage without an end runs through every later day.
    assert incomplete_days([Outage(at(B + 8, 23), None)], TZ, B, END) == [B + 8, B + 9]
    # Local day, not UTC: 2024-03-05 01:00 in Shanghai is still 03-04 in UTC.
    assert local_day(at(B + 1, 1), TZ) == B + 1
    assert local_day(at(B + 1, 1), "UTC") == B


def test_stats_ten_days_by_hand() -> None:
    r = stats_report(ROOM, END, days=10)
    assert (r.start_day, r.end_day, r.days) == (B, END, 10)
    # Present at the end of B+9: u_a u_b u_c u_f u_g u_i u_h (u_d, u_e left; bot excluded).
    assert r.members == 7
    assert r.members_at_start == 0  # nobody's join day is before B
    # Joins in the period, first-seen excluded: u_c u_d u_e u_f u_g u_i u_h.
    assert r.new == 7
    assert r.first_seen == 2  # u_a, u_b
    assert r.left == 2  # u_e (B+3), u_d (B+4)
    assert r.net == 5
    # 0 at start + 7 new + 2 first seen - 2 left = 7 present.
    assert r.members == r.members_at_start + r.new + r.first_seen - r.left
    assert r.messages == 44  # 5+8+6+0+3+4+2+0+7+9
    # DAU per day (bot excluded, ghost included):
    # B: a | B+1: a b c | B+2: a c d | B+3: f | B+4: f ghost | B+5: a | B+6: g | B+7: - |
    # B+8: c h | B+9: a h
    assert [p.dau for p in r.series] == [1, 3, 3, 1, 2, 1, 1, 0, 2, 2]
    assert r.dau_avg == pytest.approx(1.6)  # 16 / 10
    assert [p.messages for p in r.series] == [5, 8, 6, 0, 3, 4, 2, 0, 7, 9]
    assert [p.new for p in r.series] == [0, 2, 1, 1, 1, 1, 0, 0, 1, 0]  # c d | e | f | i | g | h
    assert [p.left for p in r.series] == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]  # e | d
    assert [p.incomplete for p in r.series] == [
        False, False, True, False, False, False, True, True, False, False
    ]  # fmt: skip
    assert r.incomplete_days == (B + 2, B + 6, B + 7)
    # WAU, days B+3..B+9: f ghost a g c h = 6; MAU, 30 days to B+9: a b c d f ghost g h = 8.
    assert (r.wau, r.mau) == (6, 8)
    assert r.wau_incomplete and r.mau_incomplete  # B+6, B+7 are in both windows
    assert r.stickiness == pytest.approx(0.2)  # 1.6 / 8

    # D1 pools cohorts whose day d+1 is in [B, B+9]: every cohort (d <= B+8).
    # B {a b}: both active B+1 | B+1 {c d}: both active B+2 | B+2 {e}: no |
    # B+3 {f}: B+4 yes | B+4 {i}: no | B+5 {g}: B+6 yes | B+8 {h}: B+9 yes -> 7 of 9.
    d1 = r.rate(1)
    assert d1 is not None
    assert (d1.size, d1.retained, d1.unbounded_retained) == (9, 7, 7)
    assert d1.incomplete  # cohort B+1 is read on B+2, an incomplete day
    # D7 pools cohorts with d+7 <= B+9: B {a b}, B+1 {c d}, B+2 {e}: size 5.
    # classic: a not on B+7, b no, c on B+8 yes, d no, e no -> 1.
    # unbounded (any day in d+7..B+9): a (B+9), c (B+8) -> 2.
    d7 = r.rate(7)
    assert d7 is not None
    assert (d7.size, d7.retained, d7.unbounded_retained) == (5, 1, 2)
    assert d7.rate == pytest.approx(0.2) and d7.unbounded_rate == pytest.approx(0.4)
    assert d7.incomplete  # cohort B is read on B+7
    # D30: no cohort has its day 30 inside the period: not observable, not 0.
    d30 = r.rate(30)
    assert d30 is not None
    assert d30.size == 0 and d30.rate is None and not d30.incomplete


def test_stats_short_period_by_hand() -> None:
    r = stats_report(ROOM, END, days=3)  # B+7 .. B+9
    # Present at the end of B+6: a b c f g i (d left B+4, e left B+3, h joins B+8).
    assert r.members_at_start == 6
    assert r.members == 7 and r.new == 1 and r.left == 0  # h joined B+8
    assert r.messages == 16  # 0 + 7 + 9
    assert r.dau_avg == pytest.approx(4 / 3)  # 0, 2, 2
    # D1 here: cohorts whose day 1 is in B+7..B+9, i.e. joined B+6..B+8: only h, active B+9.
    d1 = r.rate(1)
    assert d1 is not None and (d1.size, d1.retained) == (1, 1)
    assert not d1.incomplete  # h joined B+8 and is read on B+9, both complete


def test_retention_tables_by_hand() -> None:
    r = retention_report(ROOM, END, weeks=2, daily_ns=(1, 7))
    # Week of B+9 starts Mon B+7; two weeks back: B .. B+13, cohorts joined B..B+9.
    assert r.start_day == B
    daily = {row.start_day: row for row in r.daily}
    assert {d: row.size for d, row in daily.items()} == {
        B: 2, B + 1: 2, B + 2: 1, B + 3: 1, B + 4: 1, B + 5: 1, B + 8: 1
    }  # fmt: skip

    def cell(day: int, n: int) -> tuple[int | None, int | None, bool, bool]:
        c = daily[day].cell(n)
        assert c is not None
        return c.retained, c.unbounded_retained, c.incomplete, c.unbounded_incomplete

    # Cohort B {a b}: D1 (B+1) both; unbounded over B+1..B+9 includes B+2 (incomplete).
    assert cell(B, 1) == (2, 2, False, True)
    # D7 (B+7, incomplete): nobody; unbounded: a (B+9).
    assert cell(B, 7) == (0, 1, True, True)
    # Cohort B+1 {c d}: D1 on B+2 (incomplete): both. D7 on B+8: c; unbounded B+8..B+9: c.
    assert cell(B + 1, 1) == (2, 2, True, True)
    assert cell(B + 1, 7) == (1, 1, False, False)
    # Cohort B+2 {e}: its own join day is incomplete, so every cell is flagged.
    assert cell(B + 2, 1) == (0, 0, True, True)
    assert cell(B + 2, 7) == (0, 0, True, True)
    # Cohort B+3 {f}: D1 on B+4 yes; unbounded range B+4..B+9 holds B+6. D7 = B+10: not yet.
    assert cell(B + 3, 1) == (1, 1, False, True)
    assert cell(B + 3, 7) == (None, None, False, False)
    assert cell(B + 4, 1) == (0, 0, False, True)  # i never active
    assert cell(B + 5, 1) == (1, 1, True, True)  # g on B+6, an incomplete day
    assert cell(B + 8, 1) == (1, 1, False, False)  # h on B+9
    # Pooled D1 = the /stats D1 of the full period: 7 of 9; pooled D7: 1 (2 unbounded) of 5.
    avg1, avg7 = r.daily_average
    assert (avg1.size, avg1.retained, avg1.unbounded_retained) == (9, 7, 7)
    assert (avg7.size, avg7.retained, avg7.unbounded_retained) == (5, 1, 2)

    # Weekly: week 0 = B..B+6 (a b c d e f g i = 8), week 1 = B+7..B+13 (h).
    w0, w1 = r.weekly
    assert (w0.start_day, w0.last_day, w0.size, w0.incomplete) == (B, B + 6, 8, True)
    # Offset 0, week B..B+6 is over: active on/after own join: a b c d f g (not e, i) = 6.
    c00 = w0.cells[0]
    assert (c00.retained, c00.unbounded_retained, c00.incomplete) == (6, 6, True)
    assert c00.rate == pytest.approx(0.75)
    # Offset 1 is week B+7..B+13, not over on B+9: not observable.
    assert not w0.cells[1].observable
    assert w1.size == 1 and not any(c.observable for c in w1.cells)
    assert r.weekly_average[0].retained == 6 and r.weekly_average[0].size == 8
    assert r.weekly_average[1].rate is None


def test_funnel_by_hand() -> None:
    r = funnel_report(ROOM, END, days=10)
    rows = {row.channel: row for row in r.rows}
    # Order: traffic desc, then channel id.
    assert [row.channel for row in r.rows] == ["u_a", "qrcode", "bot", "u_b"]
    # u_a brought c (B+1), e (B+2), g (B+5). Matured (join+7 <= B+9): c, e.
    # converted (active in join..join+7): c yes, e never -> 1; retained (join+7): c on B+8 -> 1.
    a = rows["u_a"]
    assert (a.traffic, a.matured, a.converted, a.retained) == (3, 2, 1, 1)
    assert a.label == "阿强"
    assert (a.conversion, a.retention) == (0.5, 0.5)
    assert a.growth == pytest.approx(0.75)  # 3 x 0.5 x 0.5
    # QR: d (B+1, matured; active B+2 -> converted; not on B+8), f (B+3, not matured).
    q = rows["qrcode"]
    assert (q.traffic, q.matured, q.converted, q.retained) == (2, 1, 1, 0)
    assert q.growth == 0.0
    # i (bot's invitee, B+4) and h (B+8): not matured: traffic only, rates unknown.
    assert rows["bot"].traffic == 1 and rows["bot"].conversion is None
    assert rows["u_b"].growth is None
    t = r.total
    assert (t.traffic, t.matured, t.converted, t.retained) == (7, 3, 2, 1)
    assert r.incomplete and all(row.incomplete for row in r.rows)


def test_invites_by_hand() -> None:
    r = invite_report(ROOM, END, days=10)
    # u_a: c stayed past B+8 (counted), e left B+3 < B+9 (left early), g joined B+5, its
    # day 7 is B+12 > B+9 (pending). u_b: h pending. The bot's invitee i never counts.
    assert [
        (x.inviter_id, x.name, x.counted, x.pending, x.left_early, x.invited) for x in r.rows
    ] == [
        ("u_a", "阿强", 1, 1, 1, 3),
        ("u_b", "小白", 0, 1, 0, 1),
    ]
    # Shorter period B+5..B+9: only g (u_a, pending) and h (u_b, pending) joined in it.
    r5 = invite_report(ROOM, END, days=5)
    assert [(x.inviter_id, x.counted, x.pending) for x in r5.rows] == [
        ("u_a", 0, 1),
        ("u_b", 0, 1),
    ]


def test_left_member_stays_in_cohort_and_member_may_leave_on_day_seven() -> None:
    # x joins B, active B+7, leaves B+7: D7 retained, and still "present on day 7"
    # for the invite leaderboard (left_day >= join + 7).
    x = member("x", B, channel="y", inviter="y", left=B + 7)
    room = RoomData("r", [x], {"x": (B + 7,)}, {}, tz=TZ)
    assert retention_report(room, B + 9, weeks=2, daily_ns=(7,)).daily[0].cells[0].retained == 1
    assert invite_report(room, B + 9, days=10).rows[0].counted == 1
    # Leaving on B+6 is too early.
    x6 = member("x", B, channel="y", inviter="y", left=B + 6)
    room6 = RoomData("r", [x6], {}, {}, tz=TZ)
    assert invite_report(room6, B + 9, days=10).rows[0].left_early == 1


def test_latest_record_wins_for_rejoiners() -> None:
    old = member("x", B, left=B + 2)
    new = member("x", B + 5)
    room = RoomData("r", [new, old], {}, {}, tz=TZ)
    s = stats_report(room, B + 9, days=10)
    assert (s.members, s.new, s.left) == (1, 1, 0)
    assert sum(row.size for row in retention_report(room, B + 9, weeks=2).daily) == 1


def test_text_json_csv() -> None:
    s = stats_report(ROOM, END, days=10)
    zh = render_text(s, "zh")
    assert zh.splitlines()[:5] == [
        "📊 近10天（03-04~03-13）",
        "成员 7（+7 / -2，净增 +5）⚠",
        "消息 44⚠",
        "日活 1.6⚠ · 周活 6⚠ · 月活 8⚠",
        "粘性 20%",
    ]
    assert "留存 次日 78%（9人）⚠ · 7日 20%（5人）⚠ · 30日 —" in zh
    assert zh.splitlines()[-1] == "⚠ 数据不完整（机器人离线）：03-06, 03-10, 03-11"
    en = render_text(s, "en")
    assert "Members 7 (+7 / -2, net +5)⚠" in en
    assert all(len(line) <= 60 for line in zh.splitlines() + en.splitlines())

    for rep in (
        s,
        retention_report(ROOM, END, weeks=2),
        funnel_report(ROOM, END, days=10),
        invite_report(ROOM, END, days=10),
    ):
        blob = json.loads(json.dumps(rep.to_dict(), ensure_ascii=False))
        assert blob["room_id"] == "r1" and blob["incomplete"] is True
        rows = list(csv.reader(io.StringIO(to_csv(rep))))
        assert len(rows) >= 2 and all(len(row) == len(rows[0]) for row in rows)
        assert render_text(rep, "zh") and render_text(rep, "en")
    rows = list(csv.reader(io.StringIO(to_csv(s))))
    assert rows[0] == ["date", "dau", "messages", "new", "left", "incomplete"]
    assert rows[3] == ["2024-03-06", "3", "6", "1", "0", "1"]
    f = render_text(funnel_report(ROOM, END, days=10), "zh")
    assert "阿强：加入 3 · 转化 50% · 7日留存 50% · 增长 0.8⚠" in f
    assert "扫码：加入 2 · 转化 100% · 7日留存 0% · 增长 0.0⚠" in f
    w = render_text(retention_report(ROOM, END + 14, weeks=4), "zh").splitlines()
    # Week of 03-04: 8 joined; W0 6/8, W1 (03-11..03-17: a, c) 2/8 -> 25%, W2 nobody.
    assert w[2] == "03-04    8 75%⚠ 25%⚠ 0%⚠  ·"
    assert w[4] == "03-18    0 无新成员"
    i = render_text(invite_report(ROOM, END, days=10), "zh")
    assert "1. 阿强 1人（待定 1，已退 1）" in i


def test_empty_room() -> None:
    room = RoomData("r", [], {}, {}, tz=TZ)
    s = stats_report(room, END, days=7)
    assert (s.members, s.dau_avg, s.mau, s.stickiness) == (0, 0.0, 0, None)
    assert funnel_report(room, END).rows == ()
    assert "本期没有新成员加入" in render_text(funnel_report(room, END))
    assert render_text(retention_report(room, END, weeks=4), "en")
    with pytest.raises(ValueError):
        stats_report(room, END, days=0)


# ------------------------------------------------------------------ property test
#
# An independent brute force: plain sets and a day-by-day walk, with outage days
# found by overlapping [outage start, end) with each local day's [00:00, 24:00).

H = 40  # days of history in a generated room
BASE = date(2024, 1, 1).toordinal()  # a Monday
IDS = [f"m{i}" for i in range(10)]


def ref_incomplete(outages: list[Outage], lo: int, hi: int) -> set[int]:
    out = set()
    for d in range(lo, hi + 1):
        ds, de = midnight(d), midnight(d + 1)
        for o in outages:
            end = float("inf") if o.end_ts is None else o.end_ts
            if o.start_ts == end and ds <= o.start_ts < de:
                out.add(d)
            elif o.start_ts < de and end > ds:
                out.add(d)
    return out


def ref_reports(
    members: list[MemberRecord],
    active: dict[str, set[int]],
    messages: dict[int, int],
    outages: list[Outage],
    excluded: set[str],
    end: int,
    days: int,
    ns: tuple[int, ...],
    weeks: int,
) -> dict[str, object]:
    start = end - days + 1
    mem = [m for m in members if m.member_id not in excluded]  # one record per id here
    act = {k: v for k, v in active.items() if k not in excluded}
    bad = ref_incomplete(outages, min(start, end - 400), end)

    def present(m: MemberRecord, d: int) -> bool:
        return m.join_day <= d and not (m.left_day is not None and m.left_day <= d)

    out: dict[str, object] = {}
    out["members"] = len([m for m in mem if present(m, end)])
    out["new"] = len([m for m in mem if start <= m.join_day <= end and not m.first_seen])
    out["left"] = len([m for m in mem if m.left_day is not None and start <= m.left_day <= end])
    out["messages"] = sum(messages.get(d, 0) for d in range(start, end + 1))
    dau = [len([k for k, v in act.items() if d in v]) for d in range(start, end + 1)]
    out["dau"] = dau
    out["day_flags"] = [d in bad for d in range(start, end + 1)]
    out["wau"] = len([k for k, v in act.items() if any(end - 6 <= d <= end for d in v)])
    out["mau"] = len([k for k, v in act.items() if any(end - 29 <= d <= end for d in v)])
    pooled = []
    for n in ns:
        coh = [m for m in mem if start <= m.join_day + n <= end]
        kept = [m for m in coh if m.join_day + n in act.get(m.member_id, set())]
        ub = [
            m for m in coh if any(m.join_day + n <= d <= end for d in act.get(m.member_id, set()))
        ]
        pooled.append((len(coh), len(kept), len(ub)))
    out["pooled"] = pooled

    # Daily and weekly cohort tables.
    first_week = end - (date.fromordinal(end).weekday()) - 7 * (weeks - 1)
    daily: dict[int, tuple[int, list[tuple[int | None, int | None, bool, bool]]]] = {}
    for d in range(first_week, end + 1):
        coh = [m for m in mem if m.join_day == d]
        if not coh:
            continue
        dcells: list[tuple[int | None, int | None, bool, bool]] = []
        for n in ns:
            if d + n > end:
                dcells.append((None, None, False, False))
                continue
            c_kept = sum(1 for m in coh if d + n in act.get(m.member_id, set()))
            c_ub = sum(
                1 for m in coh if any(d + n <= x <= end for x in act.get(m.member_id, set()))
            )
            f1 = d in bad or (d + n) in bad
            f2 = d in bad or any(x in bad for x in range(d + n, end + 1))
            dcells.append((c_kept, c_ub, f1, f2))
        daily[d] = (len(coh), dcells)
    out["daily"] = daily
    weekly: list[tuple[int, list[tuple[int | None, int | None]]]] = []
    for w in range(weeks):
        ws = first_week + 7 * w
        coh = [m for m in mem if ws <= m.join_day <= min(ws + 6, end)]
        wcells: list[tuple[int | None, int | None]] = []
        for k in range(weeks):
            ks = ws + 7 * k
            if ks + 6 > end:
                wcells.append((None, None))
                continue

            def days_of(m: MemberRecord) -> set[int]:
                return {x for x in act.get(m.member_id, set()) if m.join_day <= x <= end}

            w_kept = sum(1 for m in coh if any(ks <= x <= ks + 6 for x in days_of(m)))
            w_ub = sum(1 for m in coh if any(x >= ks for x in days_of(m)))
            wcells.append((w_kept, w_ub))
        weekly.append((len(coh), wcells))
    out["weekly"] = weekly

    # Funnel and invites.
    funnel: dict[str, list[int]] = {}
    invites: dict[str, list[int]] = {}
    for m in mem:
        if m.first_seen or not start <= m.join_day <= end:
            continue
        f = funnel.setdefault(m.channel, [0, 0, 0, 0])
        f[0] += 1
        a = act.get(m.member_id, set())
        if m.join_day + 7 <= end:
            f[1] += 1
            f[2] += any(m.join_day <= x <= m.join_day + 7 for x in a)
            f[3] += (m.join_day + 7) in a
        if m.inviter_id and m.inviter_id not in excluded:
            v = invites.setdefault(m.inviter_id, [0, 0, 0, 0])
            v[3] += 1
            if m.left_day is not None and m.left_day < m.join_day + 7:
                v[2] += 1
            elif m.join_day + 7 <= end:
                v[0] += 1
            else:
                v[1] += 1
    out["funnel"] = funnel
    out["invites"] = invites
    return out


@st.composite
def rooms(draw: st.DrawFn) -> tuple[RoomData, dict[str, set[int]], int, int]:
    members = []
    active: dict[str, set[int]] = {}
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(IDS)))
    for mid in ids:
        join = BASE + draw(st.integers(0, H - 1))
        left = draw(st.none() | st.integers(join, BASE + H + 5))
        channel = draw(st.sampled_from(["qrcode", "unknown", "m0", "m1", "bot"]))
        first_seen = draw(st.booleans())
        members.append(
            MemberRecord(
                room_id="r",
                member_id=mid,
                name=mid.upper(),
                join_ts=at(join, 9),
                join_day=join,
                channel=channel,
                inviter_id=channel if channel.startswith(("m", "b")) else None,
                first_seen=first_seen,
                left_ts=None if left is None else at(left, 18),
                left_day=left,
            )
        )
    for mid in [*ids, "bot", "stranger"]:
        days = draw(st.sets(st.integers(0, H + 3), max_size=25))
        if days:
            active[mid] = {BASE + d for d in days}
    messages = {
        BASE + d: c for d, c in draw(st.dictionaries(st.integers(0, H), st.integers(0, 50))).items()
    }
    outages = []
    for _ in range(draw(st.integers(0, 3))):
        s = midnight(BASE) + draw(st.integers(0, (H + 2) * 86400))
        dur = draw(
            st.none() | st.sampled_from([0, 1, 3600, 86400, 3 * 86400]) | st.integers(0, 2 * 86400)
        )
        e: float | None
        if dur is not None and draw(st.booleans()):
            # end exactly at a local midnight
            e = midnight(local_day(s, TZ) + 1 + dur // 86400)
        else:
            e = None if dur is None else s + dur
        outages.append(Outage(float(s), None if e is None else float(e)))
    room = RoomData(
        room_id="r",
        members=members,
        active_days={k: tuple(sorted(v)) for k, v in active.items()},
        room_messages=messages,
        outages=outages,
        excluded_ids={"bot"},
        tz=TZ,
    )
    end = BASE + draw(st.integers(0, H + 3))
    period = draw(st.integers(1, 45))
    return room, active, end, period


NS = (0, 1, 2, 3, 5, 7, 10, 14, 30)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(rooms(), st.integers(1, 8))
def test_reports_match_brute_force(
    case: tuple[RoomData, dict[str, set[int]], int, int], weeks: int
) -> None:
    room, active, end, days = case
    ref = ref_reports(
        list(room.members),
        active,
        dict(room.room_messages),
        list(room.outages),
        set(room.excluded_ids),
        end,
        days,
        NS,
        weeks,
    )
    s = stats_report(room, end, days=days, ns=NS)
    assert s.members == ref["members"]
    assert s.new == ref["new"]
    assert s.left == ref["left"]
    assert s.messages == ref["messages"]
    assert [p.dau for p in s.series] == ref["dau"]
    assert [p.incomplete for p in s.series] == ref["day_flags"]
    assert (s.wau, s.mau) == (ref["wau"], ref["mau"])
    assert [(r.size, r.retained, r.unbounded_retained) for r in s.retention] == ref["pooled"]

    r = retention_report(room, end, weeks=weeks, daily_ns=NS)
    got_daily = {
        row.start_day: (
            row.size,
            [
                (c.retained, c.unbounded_retained, c.incomplete, c.unbounded_incomplete)
                for c in row.cells
            ],
        )
        for row in r.daily
    }
    assert got_daily == ref["daily"]
    got_weekly = [
        (row.size, [(c.retained, c.unbounded_retained) for c in row.cells]) for row in r.weekly
    ]
    assert got_weekly == ref["weekly"]

    f = funnel_report(room, end, days=days)
    assert {
        row.channel: [row.traffic, row.matured, row.converted, row.retained] for row in f.rows
    } == ref["funnel"]
    i = invite_report(room, end, days=days)
    assert {x.inviter_id: [x.counted, x.pending, x.left_early, x.invited] for x in i.rows} == ref[
        "invites"
    ]

    # Invariants.
    for row in r.daily:
        obs = [c for c in row.cells if c.observable]
        for c in obs:
            assert c.retained is not None and c.unbounded_retained is not None
            assert c.retained <= c.unbounded_retained <= row.size  # classic <= unbounded
        ub = [c.unbounded_retained or 0 for c in obs]
        assert ub == sorted(ub, reverse=True)  # unbounded never rises with n
    for row in r.weekly:
        wub = [c.unbounded_retained or 0 for c in row.cells if c.observable]
        assert wub == sorted(wub, reverse=True)
    # Each member in exactly one join cohort: daily and weekly cohorts partition the
    # (non-excluded) members who joined in the window.
    in_window = {m.member_id for m in room.members if r.start_day <= m.join_day <= end} - {"bot"}
    assert sum(row.size for row in r.daily) == len(in_window)
    assert sum(row.size for row in r.weekly) == len(in_window)
    # Every outage's first day inside the period is flagged.
    for o in room.outages:
        d = local_day(o.start_ts, TZ)
        if s.start_day <= d <= end:
            assert d in s.incomplete_days
            assert s.series[d - s.start_day].incomplete
    for rep in (s, r, f, i):
        json.dumps(rep.to_dict())
        to_csv(rep)
        render_text(rep, "zh")


def test_dst_timezone_days() -> None:
    # A DST zone: an outage over the spring-forward night still maps to local days.
    tz = "America/New_York"
    d = date(2024, 3, 10).toordinal()  # DST starts 02:00 local
    z = ZoneInfo(tz)
    s = datetime(2024, 3, 9, 23, 0, tzinfo=z).timestamp()
    e = datetime(2024, 3, 10, 3, 30, tzinfo=z).timestamp()
    assert incomplete_days([Outage(s, e)], tz, d - 2, d + 2) == [d - 1, d]
    e2 = datetime(2024, 3, 11, 0, 0, tzinfo=z).timestamp()
    assert incomplete_days([Outage(s, e2)], tz, d - 2, d + 2) == [d - 1, d]
    assert (datetime.fromtimestamp(e2, z) - timedelta(hours=1)).date().toordinal() == d

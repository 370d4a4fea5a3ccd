"""Benchmark: /stats and /retention from aggregates vs a naive raw-log recomputation.

Synthetic data: 50 rooms x 500 members over one year (25,000 members), with
first-seen members, joins spread over the year by channel, leaves, decaying
activity and a few outages. The aggregates (what storage keeps: per-member
sorted active days, per-day message counts) feed `bot.analytics`.

The naive baseline recomputes the same figures from a raw per-message log
(member id, epoch seconds), converting every timestamp to a local day, as a bot
without aggregates would. By default the full raw log of all rooms is
generated (~2.3 million messages, ~8 s in all); `--naive-rooms N` keeps a raw
log for N rooms only and extrapolates the naive all-room time linearly (printed
as such). Both paths' figures are compared and must be equal.

    python bench/analytics.py [--rooms 50] [--members 500] [--naive-rooms N] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.analytics import (  # noqa: E402
    RoomData,
    retention_report,
    stats_report,
)
from storage.records import MemberRecord, Outage  # noqa: E402

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
DAYS = 365
END = date(2025, 6, 30).toordinal()
START = END - DAYS + 1
STATS_DAYS = 30
WEEKS = 8
NS = (1, 7, 30)


def midnight(day: int) -> float:
    return datetime.combine(date.fromordinal(day), datetime.min.time(), ZONE).timestamp()


def make_room(
    rng: random.Random, idx: int, n_members: int, raw: bool
) -> tuple[RoomData, list[tuple[str, float]]]:
    """One room's aggregates, and (if `raw`) its raw per-message log."""
    room_id = f"room{idx}@chatroom"
    members: list[MemberRecord] = []
    active: dict[str, tuple[int, ...]] = {}
    messages: dict[int, int] = defaultdict(int)
    log: list[tuple[str, float]] = []
    inviters = [f"{room_id}:m{j}" for j in range(10)]
    for j in range(n_members):
        mid = f"{room_id}:m{j}"
        first_seen = j < n_members * 0.3
        join = START if first_seen else START + rng.randrange(DAYS)
        left = None
        if rng.random() < 0.2:
            left = min(END, join + int(rng.expovariate(1 / 40)))
        r = rng.random()
        channel = "qrcode" if r < 0.4 else ("unknown" if r < 0.5 else rng.choice(inviters))
        members.append(
            MemberRecord(
                room_id=room_id,
                member_id=mid,
                name=f"成员{j}",
                join_ts=midnight(join) + 3600,
                join_day=join,
                channel=channel,
                inviter_id=channel if channel.startswith(room_id) else None,
                first_seen=first_seen,
                left_ts=None if left is None else midnight(left) + 7200,
                left_day=left,
            )
        )
        p0 = rng.uniform(0.05, 0.8)
        half_life = rng.uniform(10, 200)
        last = END if left is None else left
        days = []
        for d in range(join, last + 1):
            if rng.random() < p0 * 0.5 ** ((d - join) / half_life):
                days.append(d)
                k = 1 + int(rng.expovariate(1 / 2))
                messages[d] += k
                if raw:
                    base = midnight(d)
                    log.extend((mid, base + rng.random() * 86399) for _ in range(k))
        if days:
            active[mid] = tuple(days)
    outages = [
        Outage(midnight(START + 100 + idx) + 80_000, midnight(START + 101 + idx) + 3_000),
        Outage(midnight(END - 10) + 3_600, midnight(END - 10) + 7_200),
    ]
    data = RoomData(
        room_id=room_id,
        members=members,
        active_days=active,
        room_messages=dict(messages),
        outages=outages,
        excluded_ids={"bot"},
        tz=TZ,
    )
    return data, log


def naive(data: RoomData, log: list[tuple[str, float]]) -> dict[str, object]:
    """The same figures from the raw log, no aggregates: every message re-dated."""
    start = END - STATS_DAYS + 1
    by_member: dict[str, set[int]] = defaultdict(set)
    per_day: dict[int, int] = defaultdict(int)
    for mid, ts in log:
        d = datetime.fromtimestamp(ts, ZONE).date().toordinal()
        by_member[mid].add(d)
        per_day[d] += 1
    dau = [sum(1 for s in by_member.values() if d in s) for d in range(start, END + 1)]
    mau = sum(1 for s in by_member.values() if any(END - 29 <= d <= END for d in s))
    pooled = []
    for n in NS:
        coh = [m for m in data.members if start <= m.join_day + n <= END]
        kept = sum(1 for m in coh if m.join_day + n in by_member.get(m.member_id, ()))
        pooled.append((len(coh), kept))
    first_week = END - date.fromordinal(END).weekday() - 7 * (WEEKS - 1)
    weekly = []
    for w in range(WEEKS):
        ws = first_week + 7 * w
        coh = [m for m in data.members if ws <= m.join_day <= min(ws + 6, END)]
        row = []
        for k in range(WEEKS - w):
            ks = ws + 7 * k
            if ks + 6 > END:
                break
            row.append(
                sum(
                    1
                    for m in coh
                    if any(
                        max(ks, m.join_day) <= d <= ks + 6 for d in by_member.get(m.member_id, ())
                    )
                )
            )
        weekly.append(row)
    msgs = sum(per_day.get(d, 0) for d in range(start, END + 1))
    return {"dau": dau, "mau": mau, "pooled": pooled, "weekly": weekly, "messages": msgs}


def fast(data: RoomData) -> dict[str, object]:
    s = stats_report(data, END, days=STATS_DAYS, ns=NS)
    r = retention_report(data, END, weeks=WEEKS, daily_ns=NS)
    return {
        "dau": [p.dau for p in s.series],
        "mau": s.mau,
        "pooled": [(x.size, x.retained) for x in s.retention],
        "weekly": [[c.retained for c in row.cells if c.retained is not None] for row in r.weekly],
        "messages": s.messages,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rooms", type=int, default=50)
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--naive-rooms", type=int, default=0, help="0 = all rooms")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    if a.naive_rooms <= 0 or a.naive_rooms > a.rooms:
        a.naive_rooms = a.rooms

    t0 = time.perf_counter()
    rooms: list[RoomData] = []
    logs: list[list[tuple[str, float]]] = []
    for i in range(a.rooms):
        data, log = make_room(rng, i, a.members, raw=i < a.naive_rooms)
        rooms.append(data)
        if log:
            logs.append(log)
    n_days = sum(len(v) for d in rooms for v in d.active_days.values())
    n_msgs = sum(sum(d.room_messages.values()) for d in rooms)
    print(
        f"synthetic: {a.rooms} rooms x {a.members} members = {a.rooms * a.members} members, "
        f"{DAYS} days, {n_days} member-active-days, {n_msgs} messages "
        f"(generated in {time.perf_counter() - t0:.1f}s)"
    )
    raw_n = sum(len(x) for x in logs)
    print(f"raw per-message log kept for {len(logs)} room(s): {raw_n} messages")
    print(f"reports: /stats {STATS_DAYS}d (D1/D7/D30) + /retention {WEEKS} weeks")

    # One room.
    t = time.perf_counter()
    fast_one = fast(rooms[0])
    t_fast_one = time.perf_counter() - t
    t = time.perf_counter()
    naive_one = naive(rooms[0], logs[0])
    t_naive_one = time.perf_counter() - t
    assert fast_one == naive_one, "fast and naive figures differ"

    # All rooms.
    t = time.perf_counter()
    for data in rooms:
        fast(data)
    t_fast_all = time.perf_counter() - t
    t = time.perf_counter()
    for data, log in zip(rooms, logs, strict=False):
        assert fast(data) == naive(data, log), data.room_id
    t_naive_part = time.perf_counter() - t
    # subtract the fast() calls made inside the check loop
    t_naive_part -= t_fast_all * len(logs) / len(rooms)
    t_naive_all = t_naive_part * len(rooms) / len(logs)
    extrap = (
        ""
        if len(logs) == len(rooms)
        else f" (measured on {len(logs)} rooms, x{len(rooms) / len(logs):g})"
    )

    print(f"{'':28}{'aggregates':>12}{'naive raw log':>16}{'naive/agg':>11}  target")
    print(
        f"{'one room (500 members)':28}{t_fast_one:>11.3f}s{t_naive_one:>15.3f}s"
        f"{t_naive_one / t_fast_one:>10.0f}x  <= 1 s: {'OK' if t_fast_one <= 1 else 'MISSED'}"
    )
    print(
        f"{f'all {a.rooms} rooms':28}{t_fast_all:>11.3f}s{t_naive_all:>15.3f}s"
        f"{t_naive_all / t_fast_all:>10.0f}x  <= 5 s: {'OK' if t_fast_all <= 5 else 'MISSED'}"
    )
    if extrap:
        print(f"naive all-rooms time extrapolated{extrap}")
    print("figures: fast == naive for every room with a raw log")


if __name__ == "__main__":
    main()

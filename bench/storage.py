"""Storage benchmark (issue 3): activity throughput vs naive TinyDB, fsynced actions/s,
event-loop blocking at design size, and open time / peak memory of a year-sized store.

Each measurement runs in its own subprocess so peak RSS is clean.
Usage: python bench/storage.py [--quick]
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import Store, Tx  # noqa: E402
from storage.days import ds_encode  # noqa: E402

ROOMS, MEMBERS, MSGS_PER_DAY = 50, 500, 200_000
T0 = 1_767_225_600.0  # 2026-01-01 08:00 Asia/Shanghai


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _msg(rng: random.Random, i: int) -> tuple[str, str, float]:
    # 200k messages a day spread over 50 rooms x 500 members
    return (
        f"r{rng.randrange(ROOMS)}@chatroom",
        f"wxid_{rng.randrange(MEMBERS)}",
        T0 + i * 86400 / MSGS_PER_DAY,
    )


async def case_activity(n: int, d: Path) -> dict[str, Any]:
    rng = random.Random(1)
    s = await Store.open(d, backup_keep=0)
    t = time.perf_counter()
    for i in range(n):
        room, member, ts = _msg(rng, i)
        s.activity.touch(room, member, ts)
        if i % 2000 == 1999:
            await asyncio.sleep(0)  # the bot's loop yields between messages
    await s.flush()
    dt = time.perf_counter() - t
    await s.close()
    return {"updates_per_s": n / dt, "secs": dt, "files_mb": dir_mb(d), "peak_mb": peak_mb()}


async def case_open(d: Path) -> dict[str, Any]:
    t = time.perf_counter()
    s = await Store.open(d, backup_keep=0)
    dt = time.perf_counter() - t
    out = {
        "open_s": dt,
        "peak_mb": peak_mb(),
        "members": sum(s.members.count(r) for r in s.members.rooms()),
        "seen": len(s.seen),
    }
    await s.close()
    return out


def case_naive(n: int, d: Path, budget: float) -> dict[str, Any]:
    from tinydb import TinyDB

    rng = random.Random(1)
    path = d / "naive.json"
    t = time.perf_counter()
    done = 0
    with TinyDB(path) as db:
        for i in range(n):
            room, member, ts = _msg(rng, i)
            db.insert({"room": room, "member": member, "ts": ts})
            done += 1
            if time.perf_counter() - t > budget:
                break
    dt = time.perf_counter() - t
    t2 = time.perf_counter()
    with TinyDB(path) as db:
        count = len(db)
    return {
        "updates_per_s": done / dt,
        "done": done,
        "finished": done == n,
        "secs": dt,
        "files_mb": dir_mb(d),
        "open_s": time.perf_counter() - t2,
        "count": count,
        "peak_mb": peak_mb(),
    }


async def case_fsync(d: Path) -> dict[str, Any]:
    s = await Store.open(d, backup_keep=0)
    t = s.table("signups")
    n = 3000
    t0 = time.perf_counter()
    for i in range(n):
        await t.insert({"event": 1, "member": f"m{i}"})
    seq = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    await asyncio.gather(*(t.insert({"event": 2, "member": f"m{i}"}) for i in range(n)))
    conc = n / (time.perf_counter() - t0)
    f0 = s.fsyncs
    t0 = time.perf_counter()
    await asyncio.gather(*(s.seen.check_and_mark(f"msg{i}") for i in range(n)))
    seen = n / (time.perf_counter() - t0)
    per_fsync = n / max(1, s.fsyncs - f0)
    await s.close()
    return {
        "sequential_per_s": seq,
        "concurrent_per_s": conc,
        "seen_per_s": seen,
        "seen_ids_per_fsync": per_fsync,
    }


async def case_build_year(d: Path) -> dict[str, Any]:
    """25k members, a year of activity, 25k check-in histories, a day of seen ids."""
    rng = random.Random(2)
    t = time.perf_counter()
    s = await Store.open(d, backup_keep=0, compact_bytes=64 << 20)
    members = [(f"r{r}@chatroom", f"wxid_{r}_{m}") for r in range(ROOMS) for m in range(MEMBERS)]
    day0 = s.days.day(T0)
    for start in range(0, len(members), 1000):

        def body(tx: Tx, part: list[tuple[str, str]] = members[start : start + 1000]) -> None:
            for room, mid in part:
                jd = day0 + rng.randrange(365)
                tx.insert(
                    s.members.table,
                    {
                        "room": room,
                        "member": mid,
                        "name": f"用户{mid}",
                        "join_ts": T0,
                        "join_day": jd,
                        "channel": rng.choice(["qrcode", "unknown", "wxid_1_1"]),
                        "inviter": None,
                        "first_seen": False,
                        "left_ts": None,
                        "left_day": None,
                    },
                )
                bits = rng.getrandbits(365) | 1
                tx.insert(
                    s.checkins.table,
                    {
                        "room": room,
                        "member": mid,
                        "days": ds_encode((day0, bits)),
                        "rank_day": day0,
                        "rank": 1,
                    },
                )

        await s.atomic(body)
    for day in range(365):
        ts = T0 + day * 86400
        for room, mid in members:
            if rng.random() < 0.4:
                s.activity.touch(room, mid, ts, messages=rng.randrange(1, 20))
        await s.flush()
    for start in range(0, MSGS_PER_DAY, 2000):
        await asyncio.gather(*(s.seen.check_and_mark(f"m{i}") for i in range(start, start + 2000)))
    await s.close()
    return {"build_s": time.perf_counter() - t, "files_mb": dir_mb(d)}


async def case_blocking(d: Path) -> dict[str, Any]:
    """Max event-loop stall while mixed storage calls run on the year-sized store."""
    s = await Store.open(d, backup_keep=0)
    lags: list[float] = []
    calls: dict[str, float] = {}
    stop = False

    async def monitor() -> None:
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    def timed(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        r = fn()
        calls[name] = max(calls.get(name, 0.0), time.perf_counter() - t)
        return r

    async def atimed(name: str, coro_fn: Any) -> Any:
        # synchronous part of an async call: time until its first suspension
        t = time.perf_counter()
        task = asyncio.ensure_future(coro_fn())
        await asyncio.sleep(0)
        calls[name] = max(calls.get(name, 0.0), time.perf_counter() - t)
        return await task

    mon = asyncio.ensure_future(monitor())
    rng = random.Random(3)
    ts = T0 + 366 * 86400

    async def step(i: int, room: str, mid: str) -> None:
        x = f"{i}"
        timed("activity.touch", lambda: s.activity.touch(room, mid, ts + 1))
        await atimed("seen.check_and_mark", lambda: s.seen.check_and_mark("new" + x))
        if i % 10 == 0:
            timed("members.get", lambda: s.members.get(room, mid))
            await atimed(
                "members.record_join",
                lambda: s.members.record_join(room, "x" + x, "n", ts, "qrcode", None),
            )
            await atimed("checkins.checkin", lambda: s.checkins.checkin(room, mid, ts + 1))
            await atimed("audit.append", lambda: s.audit.append("a", room, "/x", "ok", ts))
        if i % 100 == 0:
            timed("members.list(room)", lambda: s.members.list(room))
            timed("activity.active_days(room)", lambda: s.activity.active_days(room))
            timed("checkins.top(room)", lambda: s.checkins.top(room, 10))
        if i % 1000 == 500:
            for name in ("members", "checkins", "activity", "seen"):  # worst case: all dirty
                s._ver[name] = s._ver.get(name, 0) + 1
            await atimed("compact (whole year store)", lambda: s.compact())
            await atimed("backup_now", lambda: s.backup_now(dest_dir=d.parent / "bk"))

    for i in range(3000):
        room = f"r{rng.randrange(ROOMS)}@chatroom"
        mid = f"wxid_{room[1 : room.index('@')]}_{rng.randrange(MEMBERS)}"
        await step(i, room, mid)
    stop = True
    await mon
    await s.close()
    return {
        "max_loop_stall_ms": max(lags) * 1000,
        "p99_loop_stall_ms": sorted(lags)[int(len(lags) * 0.99)] * 1000,
        "max_sync_call_ms": {k: round(v * 1000, 2) for k, v in calls.items()},
    }


def run_case(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--case", *args], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def child(args: list[str]) -> None:
    name, rest = args[0], args[1:]
    d = Path(rest[-1])
    if name == "activity":
        r = asyncio.run(case_activity(int(rest[0]), d))
    elif name == "naive":
        r = case_naive(int(rest[0]), d, float(rest[1]))
    elif name == "open":
        r = asyncio.run(case_open(d))
    elif name == "fsync":
        r = asyncio.run(case_fsync(d))
    elif name == "year":
        r = asyncio.run(case_build_year(d))
    elif name == "blocking":
        r = asyncio.run(case_blocking(d))
    else:
        raise SystemExit(f"unknown case {name}")
    print(json.dumps(r))


def main() -> None:
    quick = "--quick" in sys.argv
    root = Path(tempfile.mkdtemp(prefix="qunbot-bench-"))
    try:
        print(
            f"{'updates':>9} | {'qunbot upd/s':>12} {'files MB':>8} {'peak MB':>7} {'open s':>6}"
            f" | {'naive TinyDB upd/s':>18} {'files MB':>8} {'open s':>6} note"
        )
        for n in [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]:
            d = root / f"act{n}"
            a = run_case(["activity", str(n), str(d)])
            o = run_case(["open", str(d)])
            naive = "-"
            if n <= 100_000:
                nd = root / f"naive{n}"
                nd.mkdir()
                r = run_case(["naive", str(n), "20" if quick else "60", str(nd)])
                note = (
                    "" if r["finished"] else f"gave up after {r['done']} inserts ({r['secs']:.0f}s)"
                )
                naive = (
                    f"{r['updates_per_s']:>18,.0f} {r['files_mb']:>8.2f} {r['open_s']:>6.3f} {note}"
                )
            else:
                naive = f"{'(not run: hours)':>18}"
            print(
                f"{n:>9,} | {a['updates_per_s']:>12,.0f} {a['files_mb']:>8.2f} {a['peak_mb']:>7.0f}"
                f" {o['open_s']:>6.3f} | {naive}"
            )
        f = run_case(["fsync", str(root / "fsync")])
        print(
            f"acknowledged (fsynced) inserts/s: sequential {f['sequential_per_s']:,.0f}, "
            f"100s concurrent {f['concurrent_per_s']:,.0f}; seen ids/s {f['seen_per_s']:,.0f} "
            f"({f['seen_ids_per_fsync']:.0f} ids per fsync)"
        )
        yd = root / "year"
        y = run_case(["year", str(yd)])
        o = run_case(["open", str(yd)])
        print(
            f"year-sized store (25k members, 365 days ~40% active, 25k check-in histories, "
            f"200k seen ids): {y['files_mb']:.1f} MB on disk (built in {y['build_s']:.0f}s); "
            f"open {o['open_s']:.2f}s, peak RSS {o['peak_mb']:.0f} MB (members {o['members']})"
        )
        b = run_case(["blocking", str(yd)])
        print(
            f"event loop at design size: max stall {b['max_loop_stall_ms']:.1f} ms, "
            f"p99 {b['p99_loop_stall_ms']:.2f} ms"
        )
        for k, v in b["max_sync_call_ms"].items():
            print(f"  max synchronous time of {k}: {v} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        child(sys.argv[2:])
    else:
        main()

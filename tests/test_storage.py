"""Contract tests for the store and its repositories, damaged files, lock, backups."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tinydb import Query

from bot.clock import FakeClock
from storage import (
    Store,
    StoreDamaged,
    StoreLocked,
    Tx,
    backup,
    layout,
    list_backups,
    restore,
)
from storage.records import MemberRecord, Outage

ROOT = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=TZ).timestamp()
DAY0 = date(2026, 3, 1).toordinal()

Reopen = Callable[[Store], Awaitable[Store]]


async def _open(path: Path, clock: FakeClock | None = None, **kw: object) -> Store:
    return await Store.open(path, clock=clock or FakeClock(T0), backup_keep=0, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await _open(tmp_path / "data")
    yield s
    await s.close()


# Every contract runs three ways: on the live store, after a reopen that replays the journal
# (no compaction: the process "crashed" after the writes), and after a clean close.
@pytest.fixture(params=["live", "replayed", "compacted"])
def reopen(request: pytest.FixtureRequest) -> Reopen:
    mode = request.param

    async def again(s: Store) -> Store:
        if mode == "live":
            return s
        if mode == "compacted":
            await s.close()
        else:
            await s.flush()
            s._writer.stop()  # simulate a crash: no compaction, lock released by the OS
            s._task.cancel()
            s._closed = True
            assert s._lock is not None
            layout.release_lock(s._lock)
            s._lock = None
        return await _open(s.data_dir, FakeClock(s.clock.now()))

    return again


# -- generic durable tables ---------------------------------------------------------------------
async def test_table_crud_survives_reopen(store: Store, reopen: Reopen) -> None:
    faq = store.table("faq")
    a = await faq.insert({"q": ["价格", "多少钱"], "a": "99元", "room": "r1"})
    b = await faq.insert({"q": ["时间"], "a": "9点", "room": "r1"})
    c = await faq.insert({"q": ["地点"], "a": "A馆", "room": "r2"})
    assert await faq.update({"a": "199元"}, [a]) == [a]
    assert await faq.remove([b, 12345]) == [b]
    assert await faq.upsert({"room": "r2", "a": "B馆"}, Query().room == "r2") == [c]
    d = (await faq.upsert({"room": "r3", "a": "新"}, Query().room == "r3"))[0]
    s = await reopen(store)
    faq = s.table("faq")
    assert len(faq) == 3
    assert faq.get(doc_id=a) == {"q": ["价格", "多少钱"], "a": "199元", "room": "r1"}
    assert faq.get(doc_id=b) is None
    assert faq.get(Query().room == "r2") == {"q": ["地点"], "a": "B馆", "room": "r2"}
    assert [x.doc_id for x in faq.search(Query().room.one_of(["r1", "r3"]))] == [a, d]
    assert await faq.insert({"q": [], "a": "x"}) not in (a, c, d)  # ids are never reused live
    if s is not store:
        await s.close()


async def test_atomic_commits_all_or_nothing(store: Store, reopen: Reopen) -> None:
    events, signups = store.table("events"), store.table("signups")

    def create(tx: Tx) -> int:
        ev = tx.insert(events, {"title": "跑步", "cap": 1})
        tx.insert(signups, {"event": ev, "member": "m1"})
        store.audit.append_tx(tx, "admin", "r1", "/event new", "ok", T0)
        return ev

    ev = await store.atomic(create)

    def broken(tx: Tx) -> None:
        tx.update(events, {"cap": 99}, [ev])
        tx.insert(signups, {"event": ev, "member": "m2"})
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError):
        await store.atomic(broken)
    assert events.get(doc_id=ev) == {"title": "跑步", "cap": 1}  # undone in memory too
    s = await reopen(store)
    assert s.table("events").get(doc_id=ev) == {"title": "跑步", "cap": 1}
    assert [d["member"] for d in s.table("signups").all()] == ["m1"]
    assert [e.command for e in s.audit.last(5)] == ["/event new"]
    if s is not store:
        await s.close()


async def test_table_names_are_checked(store: Store) -> None:
    with pytest.raises(ValueError):
        store.table("members")  # owned by store.members
    with pytest.raises(ValueError):
        store.table("../etc")
    with pytest.raises(TypeError):
        await store.table("faq").insert({"x": object()})
    assert len(store.table("faq")) == 0


# -- members --------------------------------------------------------------------------------------
async def test_members_join_seen_leave_rejoin_forget(store: Store, reopen: Reopen) -> None:
    m = store.members
    await m.record_join("r1", "a", "Ann", T0, "inv", "inv")
    assert await m.record_seen("r1", "old", "Old", T0 + 10)
    assert not await m.record_seen("r1", "a", "Ann", T0 + 20)  # known: no change
    await m.record_join("r1", "old", "Old", T0 + 86400, "qrcode", None)  # real join beats guess
    await m.record_join("r1", "b", "Bob", T0 + 5, "a", "a")
    await m.record_leave("r1", "b", T0 + 2 * 86400)
    await m.record_join("r1", "b", "Bobby", T0 + 3 * 86400, "qrcode", None)  # rejoin
    await m.record_join("r2", "a", "Ann", T0, "unknown", None)
    assert await m.rename("r2", "a", "Annie")
    s = await reopen(store)
    a = s.members.get("r1", "a")
    assert a == MemberRecord("r1", "a", "Ann", T0, DAY0, "inv", "inv", False)
    old = s.members.get("r1", "old")
    assert old is not None and not old.first_seen and old.join_day == DAY0 + 1
    b = s.members.get("r1", "b")
    assert b is not None and b.present and b.join_day == DAY0 and b.name == "Bobby"
    assert [r.member_id for r in s.members.list("r1")] == ["a", "b", "old"]
    assert s.members.rooms() == ["r1", "r2"]
    pseudo = await s.forget_member("a")
    assert s.members.get("r1", "a") is None
    anon = s.members.get("r1", pseudo)
    assert anon is not None and anon.name == "" and anon.join_day == DAY0
    b2 = s.members.get("r1", "b")
    assert b2 is not None and b2.channel == pseudo and b2.inviter_id == pseudo
    if s is not store:
        await s.close()


# -- activity -------------------------------------------------------------------------------------
async def test_activity_aggregates(store: Store, reopen: Reopen) -> None:
    act = store.activity
    midnight = datetime(2026, 3, 2, 0, 0, tzinfo=TZ).timestamp()
    act.touch("r1", "a", midnight - 1)  # 23:59:59 local: still day 0
    act.touch("r1", "a", midnight)
    act.touch("r1", "a", midnight + 60, messages=3)
    act.touch("r1", "b", T0 - 30 * 86400)  # late history fills its own day
    act.touch("r2", "a", T0)
    assert act.member_days("r1", "a") == (DAY0, DAY0 + 1)  # visible before the flush
    s = await reopen(store)
    assert s.activity.active_days("r1") == {"a": (DAY0, DAY0 + 1), "b": (DAY0 - 30,)}
    assert s.activity.room_messages("r1") == {DAY0 - 30: 1, DAY0: 1, DAY0 + 1: 4}
    pseudo = await s.forget_member("a")
    days = s.activity.active_days("r1")
    assert "a" not in days and sorted(days.values()) == [(DAY0 - 30,), (DAY0, DAY0 + 1)]
    assert await s.activity.purge_before(DAY0) == 1  # b's only day is gone
    assert len(s.activity.active_days("r1")) == 1
    assert sum(s.activity.room_messages("r1").values()) == 6  # room counts name nobody: kept
    s2 = await reopen(s)
    assert len(s2.activity.active_days("r1")) == 1 and s2.activity.rooms() == ["r1", "r2"]
    assert s2.activity.active_days("r1", since=DAY0 + 1) == {pseudo: (DAY0 + 1,)}
    for x in {store, s, s2}:
        if not x._closed:
            await x.close()


# -- seen ids -------------------------------------------------------------------------------------
async def test_seen_ids_durable_and_bounded(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    s = await _open(tmp_path / "d", clock)
    assert await s.seen.check_and_mark("m1")
    assert not await s.seen.check_and_mark("m1")
    await s.close()
    s = await _open(tmp_path / "d", clock)
    assert not await s.seen.check_and_mark("m1")  # across restarts
    await clock.advance(86400)
    assert await s.seen.check_and_mark("m2")  # rotates: m1 is now in the previous generation
    assert s.seen.seen("m1")
    await clock.advance(86400)
    assert await s.seen.check_and_mark("m3")  # second rotation drops m1 (horizon 24-48 h)
    assert not s.seen.seen("m1") and s.seen.seen("m2")
    await s.close()


async def test_seen_group_commit(store: Store) -> None:
    before = store.fsyncs
    results = await asyncio.gather(*(store.seen.check_and_mark(f"id{i % 50}") for i in range(100)))
    assert sum(results) == 50
    assert store.fsyncs - before < 50  # many ids per fsync


# -- small repositories ---------------------------------------------------------------------------
async def test_admins_audit_kv_firings_outages(store: Store, reopen: Reopen) -> None:
    assert await store.admins.add("r1", "m1", "boss")
    assert not await store.admins.add("r1", "m1", "boss")
    await store.admins.add("r1", "m2", "boss")
    assert await store.admins.remove("r1", "m2")
    for i in range(5):
        await store.audit.append("m1", "r1" if i % 2 else "r2", f"/cmd{i}", "ok", T0 + i)
    await store.kv.set("web_token", "abc")
    await store.kv.set("use:m1", {"room": "r1"})
    await store.kv.set("web_token", "def")
    assert await store.kv.delete("use:m1")
    assert await store.firings.claim("announce:1:2026-03-01T09:00")
    assert not await store.firings.claim("announce:1:2026-03-01T09:00")
    assert await store.outages.open(T0)
    assert not await store.outages.open(T0 + 5)
    assert await store.outages.close(T0 + 60)
    await store.outages.open(T0 + 100)
    s = await reopen(store)
    assert s.admins.is_admin("r1", "m1") and not s.admins.is_admin("r1", "m2")
    assert s.admins.list("r1") == ["m1"]
    assert [e.command for e in s.audit.last(2)] == ["/cmd4", "/cmd3"]
    assert [e.command for e in s.audit.last(10, room_id="r1")] == ["/cmd3", "/cmd1"]
    assert s.kv.get("web_token") == "def" and s.kv.get("use:m1") is None
    assert s.firings.claimed("announce:1:2026-03-01T09:00")
    assert not await s.firings.claim("announce:1:2026-03-01T09:00")
    assert s.outages.list() == [Outage(T0, T0 + 60), Outage(T0 + 100, None)]
    if s is not store:
        await s.close()


async def test_checkins(store: Store, reopen: Reopen) -> None:
    c = store.checkins
    r = await c.checkin("r1", "a", T0)
    assert (r.rank, r.streak, r.longest, r.already_checked_in) == (1, 1, 1, False)
    assert (await c.checkin("r1", "b", T0 + 5)).rank == 2
    again = await c.checkin("r1", "a", T0 + 3600)
    assert again.already_checked_in and again.rank == 1
    await c.checkin("r1", "a", T0 + 86400)
    r3 = await c.checkin("r1", "a", T0 + 2 * 86400)
    assert (r3.streak, r3.longest, r3.total, r3.rank) == (3, 3, 3, 1)
    await c.checkin("r1", "a", T0 + 5 * 86400)
    s = await reopen(store)
    st = s.checkins.stats("r1", "a", now=T0 + 5 * 86400)
    assert (st.total, st.streak, st.longest) == (4, 1, 3)
    assert s.checkins.stats("r1", "a", now=T0 + 9 * 86400).streak == 0
    assert [x.member_id for x in s.checkins.top("r1", 5, now=T0)] == ["a", "b"]
    assert (await s.checkins.checkin("r1", "b", T0 + 5 * 86400 + 9)).rank == 2
    await s.forget_member("a")
    assert s.checkins.stats("r1", "a").total == 0
    if s is not store:
        await s.close()


# -- damaged files ---------------------------------------------------------------------------------
async def _damaged_store(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    s = await _open(data)
    await s.table("faq").insert({"q": "x", "a": "y"})
    await s.members.record_join("r", "m", "n", T0, "qrcode", None)
    await s.close()
    good = backup(data)
    return data, good


def _domain_file(data: Path, name: str) -> Path:
    name_on_disk: str = json.loads((data / "store.json").read_text())["files"][name]
    return data / name_on_disk


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty", "invalid_json", "schema_too_new", "wrong_structure", "manifest_empty"],
)
async def test_damaged_file_refuses_to_start(tmp_path: Path, damage: str) -> None:
    data, good = await _damaged_store(tmp_path)
    path = _domain_file(data, "faq")
    text = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(text[: len(text) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "invalid_json":
        path.write_bytes(text.replace(b":", b";", 1))
    elif damage == "schema_too_new":
        obj = json.loads(text)
        obj["_meta"]["1"]["schema"] = layout.SCHEMA_VERSION + 1
        path.write_text(json.dumps(obj))
    elif damage == "wrong_structure":
        meta = {"1": {"schema": 1, "lsn": 1, "name": "faq"}}
        path.write_text(json.dumps({"_meta": meta, "faq": [1]}))
    else:
        path = data / "store.json"
        path.write_bytes(b"")
    with pytest.raises(StoreDamaged) as info:
        await _open(data)
    msg = str(info.value)
    assert str(path) in msg and str(good) in msg, msg
    assert info.value.backup == good
    # Nothing was overwritten, and the lock was released.
    assert path.exists() and not list(data.glob("*.tmp"))
    restore(data, good)
    s = await _open(data)
    assert len(s.table("faq")) == 1 and s.members.get("r", "m") is not None
    await s.close()


async def test_missing_manifest_with_data_is_damage(tmp_path: Path) -> None:
    data, _ = await _damaged_store(tmp_path)
    (data / "store.json").unlink()
    with pytest.raises(StoreDamaged, match="manifest is missing"):
        await _open(data)


async def test_journal_torn_tail_recovers_but_corruption_refuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = await _open(data)
    for i in range(3):
        await s.kv.set(f"k{i}", i)
    journal = data / s._manifest.journal
    s._writer.stop()  # crash: keep the journal as is
    s._task.cancel()
    s._closed = True
    assert s._lock is not None
    layout.release_lock(s._lock)
    torn = b'0badc0de {"l":99,"o":[["p","kv",9,{"k":'  # a torn last record
    journal.write_bytes(journal.read_bytes() + torn)
    s = await _open(data)
    assert [s.kv.get(f"k{i}") for i in range(3)] == [0, 1, 2]
    await s.kv.set("k3", 3)
    s._writer.stop()
    s._task.cancel()
    s._closed = True
    assert s._lock is not None
    layout.release_lock(s._lock)
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1][:-3] + b"}}}"  # flip a byte in the middle: checksum fails
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreDamaged, match="followed by valid records"):
        await _open(data)


# -- lock ------------------------------------------------------------------------------------------
async def test_second_opener_is_refused_with_pid(store: Store) -> None:
    with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
        await _open(store.data_dir)
    code = (
        "import asyncio, sys; sys.path.insert(0, '.');"
        "from storage import Store, StoreLocked\n"
        "async def m():\n"
        "    try: await Store.open(sys.argv[1])\n"
        "    except StoreLocked as e: print(e); return\n"
        "    print('opened')\n"
        "asyncio.run(m())"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        str(store.data_dir),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    out = (await proc.communicate())[0].decode()
    assert f"in use by another qunbot process (pid {os.getpid()})" in out


# -- backups and migrations ------------------------------------------------------------------------
async def test_backup_while_running_and_restore(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = await _open(data, compact_bytes=2000)
    ids = [await s.table("faq").insert({"n": i}) for i in range(100)]  # several compactions
    s.activity.touch("r1", "a", T0)
    archive = await s.backup_now()  # consistent copy while the bot runs
    await s.table("faq").remove(ids[:50])
    with pytest.raises(StoreLocked):
        restore(data, archive)  # refuses while the bot holds the lock
    await s.close()
    aside = restore(data, archive)
    assert "store.json" in os.listdir(aside)  # the replaced files are kept, not deleted
    s = await _open(data)
    assert len(s.table("faq")) == 100 and s.activity.member_days("r1", "a") == (DAY0,)
    await s.close()


async def test_daily_backup_keeps_n(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    s = await Store.open(tmp_path / "d", clock=clock, backup_keep=2)
    await s.kv.set("x", 1)
    for day in range(4):
        clock._now = T0 + day * 86400
        await s.daily_backup()  # (day 0's may already be taken by the background task)
        assert await s.daily_backup() is None  # once a day
    names = [p.name for p in list_backups(s.data_dir, "daily")]
    assert len(names) == 2 and names[0].startswith("qunbot-20260304")
    await s.close()


async def test_migration_runs_forward_once_after_a_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    s = await _open(data)
    await s.table("faq").insert({"q": "a"})
    await s.kv.set("k", 1)
    await s.close()
    calls: list[str] = []

    def add_lang(name: str, obj: dict[str, dict[str, dict[str, object]]]) -> dict[str, object]:
        calls.append(name)
        if name == "faq":
            for doc in obj["faq"].values():
                doc["lang"] = "zh"
        return obj  # type: ignore[return-value]

    monkeypatch.setattr(layout, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(layout.MIGRATIONS, 1, add_lang)
    s = await _open(data)
    assert s.table("faq").all() == [{"q": "a", "lang": "zh"}] and s.kv.get("k") == 1
    assert [p.name for p in list_backups(data, "pre-migration-v1")]
    await s.close()
    assert json.loads((data / "store.json").read_text())["schema"] == 2
    calls.clear()
    s = await _open(data)
    assert calls == [] and s.table("faq").all() == [{"q": "a", "lang": "zh"}]
    await s.close()

"""Typed repositories over durable tables, each with in-memory indexes built at open.

Indexes turn the hot lookups (a member by room and id, a kv key, a firing key) into dict
hits instead of TinyDB table scans, which at 25,000 members would cost tens of milliseconds.
Every mutating method is async and returns once the change is fsynced.
"""

from __future__ import annotations

import builtins
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.days import (
    DayCalc,
    DaySet,
    ds_add,
    ds_days,
    ds_decode,
    ds_encode,
    ds_has,
    ds_runs,
)
from storage.records import MemberRecord, Outage
from storage.tables import Doc, DurableTable, Tx

if TYPE_CHECKING:
    from storage.store import Store


def _docs(t: DurableTable) -> Iterable[tuple[int, Doc]]:
    return ((int(k), v) for k, v in t._raw.items())


# -- members -------------------------------------------------------------------------------------
def _member(doc: Doc) -> MemberRecord:
    return MemberRecord(
        room_id=doc["room"],
        member_id=doc["member"],
        name=doc["name"],
        join_ts=doc["join_ts"],
        join_day=doc["join_day"],
        channel=doc["channel"],
        inviter_id=doc["inviter"],
        first_seen=doc["first_seen"],
        left_ts=doc["left_ts"],
        left_day=doc["left_day"],
    )


class MemberRepo:
    """Members per room with join day and channel (SPEC section 6).  A rejoin keeps the
    original join (the member stays in their cohort) and clears the leave."""

    def __init__(self, store: Store, table: DurableTable, days: DayCalc) -> None:
        self._store = store
        self.table = table
        self._days = days
        self._idx: dict[str, dict[str, int]] = {}
        self._reindex()

    def _reindex(self) -> None:
        self._idx.clear()
        for doc_id, doc in _docs(self.table):
            self._idx.setdefault(doc["room"], {})[doc["member"]] = doc_id

    def _id(self, room_id: str, member_id: str) -> int | None:
        return self._idx.get(room_id, {}).get(member_id)

    def get(self, room_id: str, member_id: str) -> MemberRecord | None:
        doc_id = self._id(room_id, member_id)
        return None if doc_id is None else _member(self.table._raw[str(doc_id)])

    def list(self, room_id: str) -> builtins.list[MemberRecord]:
        raw = self.table._raw
        recs = [_member(raw[str(i)]) for i in self._idx.get(room_id, {}).values()]
        return sorted(recs, key=lambda r: (r.join_ts, r.member_id))

    def rooms(self) -> builtins.list[str]:
        return sorted(r for r, m in self._idx.items() if m)

    def count(self, room_id: str) -> int:
        return len(self._idx.get(room_id, {}))

    async def _write(self, room_id: str, member_id: str, fields: Doc) -> MemberRecord:
        doc_id = self._id(room_id, member_id)

        def body(tx: Tx) -> int:
            if doc_id is not None:
                tx.update(self.table, fields, [doc_id])
                return doc_id
            tx.on_undo(self._reindex)  # registered first: undos run last-in first-out
            new_id = tx.insert(self.table, {"room": room_id, "member": member_id, **fields})
            self._idx.setdefault(room_id, {})[member_id] = new_id
            return new_id

        written = await self._store.atomic(body)
        return _member(self.table._raw[str(written)])

    async def record_join(
        self,
        room_id: str,
        member_id: str,
        name: str,
        ts: float,
        channel: str,
        inviter_id: str | None,
    ) -> MemberRecord:
        old = self.get(room_id, member_id)
        join = {
            "name": name,
            "join_ts": ts,
            "join_day": self._days.day(ts),
            "channel": channel,
            "inviter": inviter_id,
            "first_seen": False,
            "left_ts": None,
            "left_day": None,
        }
        if old is None or old.first_seen:
            return await self._write(room_id, member_id, join)  # a real join beats a guess
        if old.left_ts is not None and ts > old.left_ts:
            return await self._write(
                room_id, member_id, {"name": name, "left_ts": None, "left_day": None}
            )
        return old  # duplicate join event

    async def record_seen(self, room_id: str, member_id: str, name: str, ts: float) -> bool:
        """Remember a member present before the bot arrived; True if they were unknown."""
        if self._id(room_id, member_id) is not None:
            return False
        await self._write(
            room_id,
            member_id,
            {
                "name": name,
                "join_ts": ts,
                "join_day": self._days.day(ts),
                "channel": "unknown",
                "inviter": None,
                "first_seen": True,
                "left_ts": None,
                "left_day": None,
            },
        )
        return True

    async def record_leave(self, room_id: str, member_id: str, ts: float) -> MemberRecord | None:
        old = self.get(room_id, member_id)
        if old is None or old.left_ts is not None:
            return old
        return await self._write(
            room_id, member_id, {"left_ts": ts, "left_day": self._days.day(ts)}
        )

    async def rename(self, room_id: str, member_id: str, name: str) -> bool:
        old = self.get(room_id, member_id)
        if old is None or old.name == name:
            return False
        await self._write(room_id, member_id, {"name": name})
        return True

    def forget_tx(self, tx: Tx, member_id: str, pseudonym: str) -> int:
        """Inside a commit: replace `member_id` by `pseudonym`, drop the name, and rewrite
        channels/inviters that point at them (invite counts stay right).  Returns records."""
        tx.on_undo(self._reindex)
        mine = [i for r in self._idx.values() if (i := r.get(member_id)) is not None]
        tx.update(self.table, {"member": pseudonym, "name": ""}, mine)
        invited = [i for i, d in _docs(self.table) if d["inviter"] == member_id]
        tx.update(self.table, {"inviter": pseudonym, "channel": pseudonym}, invited)
        for room in self._idx.values():
            if member_id in room:
                room[pseudonym] = room.pop(member_id)
        return len(mine)


# -- admins --------------------------------------------------------------------------------------
class AdminRepo:
    def __init__(self, store: Store, table: DurableTable) -> None:
        self._store = store
        self.table = table
        self._idx: dict[tuple[str, str], int] = {}
        self._reindex()

    def _reindex(self) -> None:
        self._idx = {(d["room"], d["member"]): i for i, d in _docs(self.table)}

    def is_admin(self, room_id: str, member_id: str) -> bool:
        return (room_id, member_id) in self._idx

    def list(self, room_id: str) -> list[str]:
        return sorted(m for r, m in self._idx if r == room_id)

    async def add(self, room_id: str, member_id: str, by: str, ts: float | None = None) -> bool:
        """False when already an admin."""
        if self.is_admin(room_id, member_id):
            return False
        when = self._store.clock.now() if ts is None else ts

        def body(tx: Tx) -> None:
            tx.on_undo(self._reindex)
            doc = {"room": room_id, "member": member_id, "by": by, "ts": when}
            self._idx[(room_id, member_id)] = tx.insert(self.table, doc)

        await self._store.atomic(body)
        return True

    async def remove(self, room_id: str, member_id: str) -> bool:
        doc_id = self._idx.get((room_id, member_id))
        if doc_id is None:
            return False

        def body(tx: Tx) -> None:
            tx.on_undo(self._reindex)
            tx.remove(self.table, [doc_id])
            del self._idx[(room_id, member_id)]

        await self._store.atomic(body)
        return True


# -- audit ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: float
    actor_id: str
    room_id: str | None
    command: str
    result: str


class AuditRepo:
    def __init__(self, store: Store, table: DurableTable) -> None:
        self._store = store
        self.table = table
        self._ids: list[int] = sorted(i for i, _ in _docs(table))

    def append_tx(
        self, tx: Tx, actor_id: str, room_id: str | None, command: str, result: str, ts: float
    ) -> int:
        doc = {"actor": actor_id, "room": room_id, "command": command, "result": result, "ts": ts}
        doc_id = tx.insert(self.table, doc)
        self._ids.append(doc_id)
        tx.on_undo(lambda: self._ids.remove(doc_id))
        return doc_id

    def forget_tx(self, tx: Tx, member_id: str, pseudonym: str) -> int:
        """The member's own audit rows keep what happened, under the pseudonym."""
        ids = [int(k) for k, d in self.table._raw.items() if d.get("actor") == member_id]
        if ids:
            tx.update(self.table, {"actor": pseudonym}, doc_ids=ids)
        return len(ids)

    async def append(
        self, actor_id: str, room_id: str | None, command: str, result: str, ts: float
    ) -> int:
        return await self._store.atomic(
            lambda tx: self.append_tx(tx, actor_id, room_id, command, result, ts)
        )

    def last(self, n: int, room_id: str | None = None) -> list[AuditEntry]:
        """The newest `n` entries (of one room if given), newest first."""
        out: list[AuditEntry] = []
        raw = self.table._raw
        for doc_id in reversed(self._ids):
            d = raw.get(str(doc_id))
            if d is None or (room_id is not None and d["room"] != room_id):
                continue
            out.append(
                AuditEntry(doc_id, d["ts"], d["actor"], d["room"], d["command"], d["result"])
            )
            if len(out) >= n:
                break
        return out


# -- key/value -----------------------------------------------------------------------------------
class KVRepo:
    def __init__(self, store: Store, table: DurableTable) -> None:
        self._store = store
        self.table = table
        self._idx = {d["k"]: i for i, d in _docs(table)}

    def get(self, key: str, default: Any = None) -> Any:
        doc_id = self._idx.get(key)
        return default if doc_id is None else self.table._raw[str(doc_id)]["v"]

    def keys(self) -> list[str]:
        return sorted(self._idx)

    async def set(self, key: str, value: Any) -> None:
        doc_id = self._idx.get(key)

        def body(tx: Tx) -> None:
            if doc_id is not None:
                tx.update(self.table, {"v": value}, [doc_id])
            else:
                self._idx[key] = tx.insert(self.table, {"k": key, "v": value})
                tx.on_undo(lambda: self._idx.__delitem__(key))

        await self._store.atomic(body)

    async def delete(self, key: str) -> bool:
        doc_id = self._idx.get(key)
        if doc_id is None:
            return False

        def body(tx: Tx) -> None:
            tx.remove(self.table, [doc_id])
            del self._idx[key]
            tx.on_undo(lambda: self._idx.__setitem__(key, doc_id))

        await self._store.atomic(body)
        return True


# -- scheduled firings ---------------------------------------------------------------------------
class FiringLedger:
    """Exactly-once ledger: ``claim(key)`` is True for the first caller only, ever (durably),
    so a firing interrupted by a crash is not repeated after restart."""

    def __init__(self, store: Store, table: DurableTable) -> None:
        self._store = store
        self.table = table
        self._idx = {d["key"]: i for i, d in _docs(table)}

    def claimed(self, key: str) -> bool:
        return key in self._idx

    async def claim(self, key: str) -> bool:
        if key in self._idx:
            return False
        now = self._store.clock.now()

        def body(tx: Tx) -> None:
            self._idx[key] = tx.insert(self.table, {"key": key, "ts": now})
            tx.on_undo(lambda: self._idx.__delitem__(key))

        await self._store.atomic(body)
        return True

    async def prune_before(self, ts: float) -> int:
        """Forget claims older than `ts` (only for keys that can never fire again)."""
        old = [(k, i) for k, i in self._idx.items() if self.table._raw[str(i)]["ts"] < ts]

        def body(tx: Tx) -> None:
            tx.remove(self.table, [i for _, i in old])
            for k, _ in old:
                del self._idx[k]
            tx.on_undo(lambda: self._idx.update(old))

        if old:
            await self._store.atomic(body)
        return len(old)


# -- outages ------------------------------------------------------------------------------------
class OutageRepo:
    def __init__(self, store: Store, table: DurableTable) -> None:
        self._store = store
        self.table = table

    def list(self) -> list[Outage]:
        docs = sorted(_docs(self.table), key=lambda x: (x[1]["start"], x[0]))
        return [Outage(d["start"], d["end"]) for _, d in docs]

    def _open_id(self) -> int | None:
        ids = [i for i, d in _docs(self.table) if d["end"] is None]
        return max(ids) if ids else None

    async def open(self, ts: float) -> bool:
        """Start an outage at `ts`; False (no change) when one is already open."""
        if self._open_id() is not None:
            return False
        await self.table.insert({"start": ts, "end": None})
        return True

    async def close(self, ts: float) -> bool:
        doc_id = self._open_id()
        if doc_id is None:
            return False
        await self.table.update({"end": ts}, [doc_id])
        return True


# -- check-ins -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckinResult:
    day: int
    already_checked_in: bool
    rank: int  # 1 = first of the room that day (0 if unknown for an old repeated check-in)
    streak: int  # consecutive days ending on `day`
    longest: int
    total: int


@dataclass(frozen=True)
class CheckinStats:
    member_id: str
    total: int
    streak: int  # current streak: 0 unless the last check-in was today or yesterday
    longest: int
    last_day: int | None


def _run_ending(ds: DaySet, day: int) -> int:
    base, bits = ds
    s = format(bits, "b")[::-1]  # s[i] is day base + i
    i, n = day - base, 0
    while 0 <= i < len(s) and s[i] == "1":
        n += 1
        i -= 1
    return n


class CheckinRepo:
    """Daily check-ins: one document per (room, member) holding a compact day set."""

    def __init__(self, store: Store, table: DurableTable, days: DayCalc) -> None:
        self._store = store
        self.table = table
        self._days = days
        self._idx: dict[str, dict[str, int]] = {}
        self._day_counts: dict[tuple[str, int], int] = {}  # lazily filled (room, day) -> count
        self._reindex()

    def _reindex(self) -> None:
        self._idx.clear()
        self._day_counts.clear()
        for doc_id, doc in _docs(self.table):
            self._idx.setdefault(doc["room"], {})[doc["member"]] = doc_id

    def _ds(self, room_id: str, member_id: str) -> tuple[int | None, DaySet | None, Doc | None]:
        doc_id = self._idx.get(room_id, {}).get(member_id)
        if doc_id is None:
            return None, None, None
        doc = self.table._raw[str(doc_id)]
        return doc_id, ds_decode(doc["days"]), doc

    def count_on(self, room_id: str, day: int) -> int:
        key = (room_id, day)
        if key not in self._day_counts:
            raw = self.table._raw
            self._day_counts[key] = sum(
                ds_has(ds_decode(raw[str(i)]["days"]), day)
                for i in self._idx.get(room_id, {}).values()
            )
        return self._day_counts[key]

    async def checkin(self, room_id: str, member_id: str, ts: float) -> CheckinResult:
        day = self._days.day(ts)
        doc_id, ds, doc = self._ds(room_id, member_id)
        if ds is not None and doc is not None and ds_has(ds, day):
            longest, _, _ = ds_runs(ds)
            rank = doc["rank"] if doc.get("rank_day") == day else 0
            return CheckinResult(day, True, rank, _run_ending(ds, day), longest, ds[1].bit_count())
        new = ds_add(ds, day)
        assert new is not None
        rank = self.count_on(room_id, day) + 1
        longest, _, _ = ds_runs(new)
        fields = {"days": ds_encode(new), "rank_day": day, "rank": rank}

        def body(tx: Tx) -> None:
            tx.on_undo(self._reindex)
            if doc_id is not None:
                tx.update(self.table, fields, [doc_id])
            else:
                new_id = tx.insert(self.table, {"room": room_id, "member": member_id, **fields})
                self._idx.setdefault(room_id, {})[member_id] = new_id
            self._day_counts[(room_id, day)] = rank

        await self._store.atomic(body)
        return CheckinResult(day, False, rank, _run_ending(new, day), longest, new[1].bit_count())

    def days(self, room_id: str, member_id: str) -> tuple[int, ...]:
        return ds_days(self._ds(room_id, member_id)[1])

    def stats(self, room_id: str, member_id: str, now: float | None = None) -> CheckinStats:
        _, ds, _ = self._ds(room_id, member_id)
        return self._stats(
            member_id, ds, self._days.day(self._store.clock.now() if now is None else now)
        )

    @staticmethod
    def _stats(member_id: str, ds: DaySet | None, today: int) -> CheckinStats:
        if ds is None:
            return CheckinStats(member_id, 0, 0, 0, None)
        longest, current, last = ds_runs(ds)
        return CheckinStats(
            member_id, ds[1].bit_count(), current if last >= today - 1 else 0, longest, last
        )

    def top(self, room_id: str, n: int, now: float | None = None) -> list[CheckinStats]:
        """Most check-ins first (ties: longer current streak, then member id)."""
        today = self._days.day(self._store.clock.now() if now is None else now)
        raw = self.table._raw
        stats = [
            self._stats(m, ds_decode(raw[str(i)]["days"]), today)
            for m, i in self._idx.get(room_id, {}).items()
        ]
        return heapq.nsmallest(n, stats, key=lambda s: (-s.total, -s.streak, s.member_id))

    def forget_tx(self, tx: Tx, member_id: str) -> int:
        tx.on_undo(self._reindex)
        ids = [i for r in self._idx.values() if (i := r.get(member_id)) is not None]
        tx.remove(self.table, ids)
        self._reindex()
        return len(ids)

    async def forget(self, member_id: str) -> int:
        return await self._store.atomic(lambda tx: self.forget_tx(tx, member_id))

"""Activity aggregates: per room, each member's active days and each day's message count.

Never a document per message.  In memory: ``rooms[room][member] = DaySet`` and
``msgs[room][day] = count``; the data grows with members x active days, not with messages.
``touch`` is synchronous and O(1); the changes it makes are collected in a pending batch that
the store journals every ``flush_s`` (a hard crash loses at most that much counting, as
SPEC section 7 allows).  Compaction writes ``activity.json`` with one TinyDB document per room.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from storage.days import (
    DayCalc,
    DaySet,
    ds_add,
    ds_days,
    ds_decode,
    ds_drop_before,
    ds_encode,
    ds_or,
)
from storage.fileio import encode_line

if TYPE_CHECKING:
    from storage.store import Store
    from storage.tables import Tx

DOMAIN = "activity"
_CHUNK = 2000  # entries per journal line, so encoding never holds the GIL for long


class ActivityState:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, DaySet]] = {}
        self.msgs: dict[str, dict[int, int]] = {}

    # -- journal replay ------------------------------------------------------------------------
    def apply(self, op: list[Any]) -> None:
        kind = op[0]
        if kind == "a":
            for room, member, day in op[1]:
                rm = self.rooms.setdefault(room, {})
                new = ds_add(rm.get(member), day)
                if new is not None:
                    rm[member] = new
            for room, day, n in op[2]:
                m = self.msgs.setdefault(room, {})
                m[day] = m.get(day, 0) + n
        elif kind == "af":
            self.forget(op[1], op[2])
        elif kind == "ap":
            self.purge_before(op[1])
        else:
            raise ValueError(f"unknown activity op {kind!r}")

    def forget(self, member: str, pseudonym: str) -> None:
        for rm in self.rooms.values():
            ds = rm.pop(member, None)
            if ds is not None:
                merged = ds_or(rm.get(pseudonym), ds)
                assert merged is not None
                rm[pseudonym] = merged

    def purge_before(self, day: int) -> int:
        dropped = 0
        for rm in self.rooms.values():
            for member, ds in list(rm.items()):
                kept = ds_drop_before(ds, day)
                if kept is None:
                    del rm[member]
                    dropped += 1
                elif kept is not ds:
                    rm[member] = kept
        return dropped

    # -- snapshot --------------------------------------------------------------------------------
    @classmethod
    def from_table(cls, table: dict[str, Any]) -> ActivityState:
        st = cls()
        for doc in table.values():
            room = doc["room"]
            st.rooms[room] = {m: ds_decode(v) for m, v in doc["days"].items()}
            st.msgs[room] = {int(d): int(n) for d, n in doc["msgs"].items()}
        return st

    def capture(self) -> Callable[[str], list[bytes]]:
        """Copy the state (cheap: values are immutable) and return a writer-side encoder."""
        rooms = {r: dict(m) for r, m in self.rooms.items()}
        msgs = {r: dict(m) for r, m in self.msgs.items()}

        def encode(meta: str) -> list[bytes]:
            out = [f'{{"_meta":{{"1":{meta}}},"{DOMAIN}":{{'.encode()]
            names = sorted(set(rooms) | set(msgs))
            for i, room in enumerate(names):
                doc = {
                    "room": room,
                    "days": {m: ds_encode(ds) for m, ds in rooms.get(room, {}).items()},
                    "msgs": {str(d): n for d, n in msgs.get(room, {}).items()},
                }
                sep = "," if i else ""
                out.append(f'{sep}"{i + 1}":{json.dumps(doc, ensure_ascii=False)}'.encode())
            out.append(b"}}")
            return out

        return encode


class ActivityRepo:
    def __init__(self, store: Store, state: ActivityState, days: DayCalc) -> None:
        self._store = store
        self._st = state
        self._days = days
        self._pend_days: set[tuple[str, str, int]] = set()
        self._pend_msgs: dict[tuple[str, int], int] = {}

    # -- hot path ----------------------------------------------------------------------------
    def touch(self, room_id: str, member_id: str, ts: float, messages: int = 1) -> None:
        """Count `messages` from `member_id` in `room_id` at `ts` (the message's own time).

        Batched: durable at the next flush.  Not idempotent: de-duplicate before calling.
        """
        day = self._days.day(ts)
        rm = self._st.rooms.get(room_id)
        if rm is None:
            rm = self._st.rooms[room_id] = {}
            self._st.msgs[room_id] = {}
        new = ds_add(rm.get(member_id), day)
        if new is not None:
            rm[member_id] = new
            self._pend_days.add((room_id, member_id, day))
        if messages:
            counts = self._st.msgs[room_id]
            counts[day] = counts.get(day, 0) + messages
            key = (room_id, day)
            self._pend_msgs[key] = self._pend_msgs.get(key, 0) + messages

    # -- reads ---------------------------------------------------------------------------------
    def rooms(self) -> list[str]:
        return sorted(self._st.rooms)

    def active_days(self, room_id: str, since: int | None = None) -> dict[str, tuple[int, ...]]:
        """member id -> sorted day ordinals on which they were active in `room_id`
        (only days >= `since` when given: a 30-day window decodes ~10x less)."""
        rm = self._st.rooms.get(room_id, {})
        if since is None:
            return {m: ds_days(ds) for m, ds in rm.items()}
        out: dict[str, tuple[int, ...]] = {}
        for m, ds in rm.items():
            if ds[0] + ds[1].bit_length() > since:  # some day on or after `since`
                recent = ds_drop_before(ds, since)
                if recent is not None:
                    out[m] = ds_days(recent)
        return out

    def day_sets(self, room_id: str) -> dict[str, DaySet]:
        """The room's compact day sets, copied (cheap: immutable pairs). Decoding a full year
        of a big room takes tens of ms, so readers decode them off the event loop
        (`ds_days` per member, e.g. in a worker thread)."""
        return dict(self._st.rooms.get(room_id, {}))

    def member_days(self, room_id: str, member_id: str) -> tuple[int, ...]:
        return ds_days(self._st.rooms.get(room_id, {}).get(member_id))

    def room_messages(self, room_id: str) -> dict[int, int]:
        """day ordinal -> messages counted in `room_id`."""
        return dict(sorted(self._st.msgs.get(room_id, {}).items()))

    @property
    def pending(self) -> int:
        return len(self._pend_days) + len(self._pend_msgs)

    # -- durable operations ---------------------------------------------------------------------
    def _take_pending(self) -> Callable[[int], bytes] | None:
        """Swap out the pending batch; the returned encoder runs in the writer thread."""
        if not self._pend_days and not self._pend_msgs:
            return None
        days, self._pend_days = self._pend_days, set()
        msgs, self._pend_msgs = self._pend_msgs, {}

        def encode(lsn: int) -> bytes:
            dl = list(days)
            ml = [[r, d, n] for (r, d), n in msgs.items()]
            lines = []
            for i in range(0, max(len(dl), len(ml)), _CHUNK):
                op = json.dumps(["a", dl[i : i + _CHUNK], ml[i : i + _CHUNK]], ensure_ascii=False)
                lines.append(encode_line(f'{{"l":{lsn},"o":[{op}]}}'))
            return b"".join(lines)

        return encode

    async def flush(self) -> None:
        await self._store._flush_activity()

    def forget_tx(self, tx: Tx, member_id: str, pseudonym: str) -> None:
        """Move `member_id`'s days to `pseudonym` inside an atomic commit (flush first)."""
        saved = {r: (rm.get(member_id), rm.get(pseudonym)) for r, rm in self._st.rooms.items()}

        def undo() -> None:
            for r, (a, b) in saved.items():
                rm = self._st.rooms[r]
                for key, val in ((member_id, a), (pseudonym, b)):
                    if val is None:
                        rm.pop(key, None)
                    else:
                        rm[key] = val

        self._st.forget(member_id, pseudonym)
        tx.add(DOMAIN, json.dumps(["af", member_id, pseudonym], ensure_ascii=False), undo)

    async def forget(self, member_id: str, pseudonym: str) -> None:
        """Replace `member_id` by `pseudonym` in every room's day sets (counts stay right)."""
        await self._store._flush_activity()
        await self._store.atomic(lambda tx: self.forget_tx(tx, member_id, pseudonym))

    async def purge_before(self, day: int) -> int:
        """Drop per-member active days before `day` (privacy.retention_days); room message
        counts are kept (they name nobody).  Returns how many member entries became empty."""
        await self._store._flush_activity()
        snapshot = {r: dict(rm) for r, rm in self._st.rooms.items()}

        def undo() -> None:
            self._st.rooms.clear()
            self._st.rooms.update(snapshot)

        def body(tx: Tx) -> int:
            dropped = self._st.purge_before(day)
            tx.add(DOMAIN, json.dumps(["ap", day]), undo)
            return dropped

        return await self._store.atomic(body)

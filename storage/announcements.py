"""Scheduled announcements: the source of truth the scheduler's jobs are rebuilt from.

Tables:
* ``announcements``: one document per announcement, numbered per room (#N). Numbers are
  never reused (a per-room counter in ``announce_seq``), so a job name built from the number
  never collides with an old firing in the exactly-once ledger.
* ``announce_holds``: firings held back by a room's quiet hours, until the window ends;
  kept durably so that a restart during the night still sends them in the morning.

Times: ``at`` is wall time "YYYY-MM-DD HH:MM" in the configured timezone; ``start``,
``created_at``, ``edited_at`` and a hold's ``due`` are epoch seconds.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from storage.tables import Doc, DurableTable, Tx

if TYPE_CHECKING:
    from storage.store import Store

Kind = Literal["once", "cron", "every"]
Source = Literal["chat", "config"]
# one-offs: pending until fired; "sent" (fired: sent or held), "missed" (beyond grace),
# "expired" (declared in bot.yaml after its time had passed). Repeating ones stay "pending".
Status = Literal["pending", "sent", "missed", "expired"]

TABLE, SEQ_TABLE, HOLD_TABLE = "announcements", "announce_seq", "announce_holds"


@dataclass(frozen=True)
class Announcement:
    doc_id: int
    uid: str  # stable id: "<room>#<n>" for chat ones, "cfg:<hash>" for bot.yaml ones
    room: str  # the room it is numbered in (and managed from)
    n: int
    kind: Kind
    at: str | None  # once: "YYYY-MM-DD HH:MM" wall time
    expr: str | None  # cron: "m h dom mon dow"
    seconds: float | None  # every: the interval
    start: float | None  # every: the grid anchor (epoch), fixed so restarts keep the grid
    rooms: tuple[str, ...]  # target rooms
    text: str  # template: {date} {weekday} {room}
    paused: bool
    created_by: str
    created_at: float
    edited_at: float | None  # last pause/resume: the schedule is in force since then
    source: Source
    status: Status

    @property
    def since(self) -> float:
        """Since when the schedule has been in force (cron/interval catch-up lower bound)."""
        return self.edited_at if self.edited_at is not None else self.created_at


@dataclass(frozen=True)
class Hold:
    doc_id: int
    key: str  # firing key + ">" + room: one hold per firing and room
    uid: str
    room: str
    due: float  # epoch: the end of the quiet window


def _ann(doc_id: int, d: Doc) -> Announcement:
    return Announcement(
        doc_id=doc_id,
        uid=d["uid"],
        room=d["room"],
        n=d["n"],
        kind=d["kind"],
        at=d.get("at"),
        expr=d.get("expr"),
        seconds=d.get("seconds"),
        start=d.get("start"),
        rooms=tuple(d["rooms"]),
        text=d["text"],
        paused=bool(d.get("paused", False)),
        created_by=d.get("created_by", ""),
        created_at=d["created_at"],
        edited_at=d.get("edited_at"),
        source=d.get("source", "chat"),
        status=d.get("status", "pending"),
    )


def _hold(doc_id: int, d: Doc) -> Hold:
    return Hold(doc_id=doc_id, key=d["key"], uid=d["uid"], room=d["room"], due=d["due"])


def _docs(t: DurableTable) -> Iterable[tuple[int, Doc]]:
    return ((int(k), v) for k, v in t._raw.items())


class AnnouncementRepo:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.table = store.table(TABLE)
        self.seq = store.table(SEQ_TABLE)
        self.holds_table = store.table(HOLD_TABLE)

    # -- reads ------------------------------------------------------------------------------
    def all(self) -> builtins.list[Announcement]:
        return sorted((_ann(i, d) for i, d in _docs(self.table)), key=lambda a: (a.room, a.n))

    def list(self, room: str) -> builtins.list[Announcement]:
        return [a for a in self.all() if a.room == room]

    def get(self, room: str, n: int) -> Announcement | None:
        return next((a for a in self.list(room) if a.n == n), None)

    def by_uid(self, uid: str) -> Announcement | None:
        return next((_ann(i, d) for i, d in _docs(self.table) if d["uid"] == uid), None)

    def holds(self, uid: str | None = None) -> builtins.list[Hold]:
        out = [_hold(i, d) for i, d in _docs(self.holds_table)]
        return sorted((h for h in out if uid is None or h.uid == uid), key=lambda h: h.due)

    def hold(self, key: str) -> Hold | None:
        return next((h for h in self.holds() if h.key == key), None)

    def _next_n(self, room: str) -> tuple[int, int | None]:
        for i, d in _docs(self.seq):
            if d["room"] == room:
                return int(d["next"]), i
        return 1, None

    # -- writes -----------------------------------------------------------------------------
    async def create(
        self,
        *,
        room: str,
        kind: Kind,
        text: str,
        created_by: str,
        now: float,
        at: str | None = None,
        expr: str | None = None,
        seconds: float | None = None,
        start: float | None = None,
        rooms: Sequence[str] | None = None,
        source: Source = "chat",
        uid: str | None = None,
        status: Status = "pending",
    ) -> Announcement:
        """Number the announcement in `room` and store it (durable before returning)."""

        def body(tx: Tx) -> Announcement:
            n, seq_id = self._next_n(room)
            doc: dict[str, Any] = {
                "uid": uid or f"{room}#{n}",
                "room": room,
                "n": n,
                "kind": kind,
                "at": at,
                "expr": expr,
                "seconds": seconds,
                "start": start,
                "rooms": list(rooms or [room]),
                "text": text,
                "paused": False,
                "created_by": created_by,
                "created_at": now,
                "edited_at": None,
                "source": source,
                "status": status,
            }
            doc_id = tx.insert(self.table, doc)
            if seq_id is None:
                tx.insert(self.seq, {"room": room, "next": n + 1})
            else:
                tx.update(self.seq, {"next": n + 1}, [seq_id])
            return _ann(doc_id, self.table._raw[str(doc_id)])

        return await self._store.atomic(body)

    async def _update(self, a: Announcement, fields: dict[str, Any]) -> Announcement:
        def body(tx: Tx) -> Announcement:
            tx.update(self.table, fields, [a.doc_id])
            return _ann(a.doc_id, self.table._raw[str(a.doc_id)])

        return await self._store.atomic(body)

    async def set_paused(self, a: Announcement, paused: bool, now: float) -> Announcement:
        return await self._update(a, {"paused": paused, "edited_at": now})

    async def set_status(self, a: Announcement, status: Status) -> Announcement:
        return await self._update(a, {"status": status})

    async def delete(self, a: Announcement) -> None:
        """Remove the announcement and any of its held firings, in one commit."""
        hold_ids = [h.doc_id for h in self.holds(a.uid)]

        def body(tx: Tx) -> None:
            tx.remove(self.table, [a.doc_id])
            if hold_ids:
                tx.remove(self.holds_table, hold_ids)

        await self._store.atomic(body)

    async def add_hold(self, *, key: str, uid: str, room: str, due: float) -> Hold:
        """Record a held firing; the same key twice keeps the first."""
        existing = self.hold(key)
        if existing is not None:
            return existing
        doc = {"key": key, "uid": uid, "room": room, "due": due}
        doc_id = await self.holds_table.insert(doc)
        return _hold(doc_id, self.holds_table._raw[str(doc_id)])

    async def remove_hold(self, key: str) -> bool:
        h = self.hold(key)
        if h is None:
            return False
        await self.holds_table.remove([h.doc_id])
        return True

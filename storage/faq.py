"""FAQ entries, misses and counters (SPEC sections 4 and 7).

Tables (one snapshot file each):
* ``faq``: one document per entry: room (a room id, or ``GLOBAL`` for the set every room and
  private chat sees), per-room number, question forms, answer, optional image path / link,
  hit count.
* ``faq_misses``: questions nobody could answer: the rooms they concern, whether they were
  asked privately, the time and the text.  No sender is stored.  Misses older than
  ``privacy.miss_text_days`` are dropped by ``purge_misses``; the counters below keep them.
* ``faq_stats``: per room (``GLOBAL`` for private chats): the last number handed out
  (numbers are never reused, so "#3" always means one entry), answers and misses counted.

Every mutating method returns once the change is fsynced.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage.tables import Doc, DurableTable, Tx

if TYPE_CHECKING:
    from storage.store import Store

GLOBAL = "*"


@dataclass(frozen=True)
class FaqEntry:
    room: str
    num: int
    questions: tuple[str, ...]
    answer: str
    image: str | None = None  # a file path sent as an image after the text
    link: str | None = None  # a URL appended to the text
    hits: int = 0
    updated_ts: float = 0.0

    @property
    def key(self) -> str:
        """The matcher's key: unique over all rooms."""
        return entry_key(self.room, self.num)


def entry_key(room: str, num: int) -> str:
    return f"{room}#{num}"


@dataclass(frozen=True)
class Miss:
    rooms: tuple[str, ...]
    private: bool
    ts: float
    text: str


@dataclass(frozen=True)
class FaqRow:
    """One entry to import; ``num`` None: give it the next number."""

    room: str
    questions: tuple[str, ...]
    answer: str
    num: int | None = None
    image: str | None = None
    link: str | None = None
    hits: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def _entry(d: Doc) -> FaqEntry:
    return FaqEntry(
        d["room"],
        d["num"],
        tuple(d["questions"]),
        d["answer"],
        d.get("image"),
        d.get("link"),
        d.get("hits", 0),
        d.get("updated_ts", 0.0),
    )


class FaqRepo:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.entries_t: DurableTable = store.table("faq")
        self.misses_t: DurableTable = store.table("faq_misses")
        self.stats_t: DurableTable = store.table("faq_stats")
        self._idx: dict[tuple[str, int], int] = {}
        self._stats: dict[str, int] = {}
        self._reindex()

    def _reindex(self) -> None:
        self._idx = {(d["room"], d["num"]): int(k) for k, d in self.entries_t._raw.items()}
        self._stats = {d["room"]: int(k) for k, d in self.stats_t._raw.items()}

    # -- reads ---------------------------------------------------------------------------------
    def get(self, room: str, num: int) -> FaqEntry | None:
        doc_id = self._idx.get((room, num))
        return None if doc_id is None else _entry(self.entries_t._raw[str(doc_id)])

    def entries(self, room: str | None = None) -> builtins.list[FaqEntry]:
        """Entries of one room (or of all rooms), by room then number."""
        raw = self.entries_t._raw
        out = [_entry(raw[str(i)]) for (r, _), i in self._idx.items() if room is None or r == room]
        return sorted(out, key=lambda e: (e.room, e.num))

    def rooms(self) -> builtins.list[str]:
        return sorted({r for r, _ in self._idx})

    def counters(self, room: str) -> dict[str, int]:
        """{"answers": n, "misses": n} for a room (GLOBAL: private chats)."""
        d = self._stat_doc(room)
        return {"answers": d.get("answers", 0), "misses": d.get("misses", 0)}

    def misses(self, room: str | None, since_ts: float = 0.0) -> builtins.list[Miss]:
        """Misses concerning `room` (None: all), oldest first."""
        out = []
        for d in self.misses_t._raw.values():
            if d["ts"] < since_ts or (room is not None and room not in d["rooms"]):
                continue
            out.append(Miss(tuple(d["rooms"]), d["private"], d["ts"], d["text"]))
        return sorted(out, key=lambda m: m.ts)

    def _stat_doc(self, room: str) -> Doc:
        doc_id = self._stats.get(room)
        return {} if doc_id is None else self.stats_t._raw[str(doc_id)]

    # -- writes (inside a commit) --------------------------------------------------------------
    def _bump_tx(self, tx: Tx, room: str, **inc: int) -> None:
        """Add to the counters of `room` ("next" is raised to at least the given value)."""
        cur = self._stat_doc(room)
        new: Doc = {}
        for k, v in inc.items():
            new[k] = max(cur.get(k, 0), v) if k == "next" else cur.get(k, 0) + v
        doc_id = self._stats.get(room)
        if doc_id is None:
            tx.on_undo(self._reindex)
            self._stats[room] = tx.insert(
                self.stats_t, {"room": room, "next": 0, "answers": 0, "misses": 0, **new}
            )
        else:
            tx.update(self.stats_t, new, [doc_id])

    def _add_tx(self, tx: Tx, row: FaqRow, ts: float) -> FaqEntry:
        num = row.num if row.num is not None else self._stat_doc(row.room).get("next", 0) + 1
        doc = {
            "room": row.room,
            "num": num,
            "questions": list(row.questions),
            "answer": row.answer,
            "image": row.image,
            "link": row.link,
            "hits": row.hits,
            "created_ts": ts,
            "updated_ts": ts,
        }
        old = self._idx.get((row.room, num))
        tx.on_undo(self._reindex)
        if old is not None:
            doc["hits"] = max(row.hits, self.entries_t._raw[str(old)].get("hits", 0))
            tx.update(self.entries_t, doc, [old])
        else:
            self._idx[(row.room, num)] = tx.insert(self.entries_t, doc)
        self._bump_tx(tx, row.room, next=num)
        return _entry(doc)

    # -- writes --------------------------------------------------------------------------------
    async def add(
        self,
        room: str,
        questions: Sequence[str],
        answer: str,
        *,
        image: str | None = None,
        link: str | None = None,
        ts: float | None = None,
    ) -> FaqEntry:
        """A new entry with the room's next number."""
        row = FaqRow(room, tuple(questions), answer, image=image, link=link)
        when = self._store.clock.now() if ts is None else ts
        return await self._store.atomic(lambda tx: self._add_tx(tx, row, when))

    async def import_rows(
        self, rows: Iterable[FaqRow], ts: float | None = None
    ) -> tuple[builtins.list[FaqEntry], int]:
        """All rows in one commit: a row with a number replaces that entry (so re-importing
        an export changes nothing), one without gets the next number.  Returns the entries
        and how many replaced an existing one."""
        when = self._store.clock.now() if ts is None else ts
        rows = list(rows)

        def body(tx: Tx) -> tuple[builtins.list[FaqEntry], int]:
            replaced = sum(1 for r in rows if r.num is not None and (r.room, r.num) in self._idx)
            return [self._add_tx(tx, r, when) for r in rows], replaced

        return await self._store.atomic(body)

    async def update(
        self, room: str, num: int, *, ts: float | None = None, **fields: Any
    ) -> FaqEntry | None:
        """Change answer/questions/image/link of an entry; None if there is no such entry."""
        doc_id = self._idx.get((room, num))
        if doc_id is None:
            return None
        allowed = {"answer", "questions", "image", "link"}
        if set(fields) - allowed:
            raise ValueError(f"unknown fields {sorted(set(fields) - allowed)}")
        new = {k: list(v) if k == "questions" else v for k, v in fields.items()}
        new["updated_ts"] = self._store.clock.now() if ts is None else ts
        await self._store.atomic(lambda tx: tx.update(self.entries_t, new, [doc_id]))
        return self.get(room, num)

    async def delete(self, room: str, num: int) -> FaqEntry | None:
        """Remove an entry; returns what it was (to show how to restore it)."""
        doc_id = self._idx.get((room, num))
        if doc_id is None:
            return None
        entry = self.get(room, num)

        def body(tx: Tx) -> None:
            tx.on_undo(self._reindex)
            tx.remove(self.entries_t, [doc_id])
            del self._idx[(room, num)]

        await self._store.atomic(body)
        return entry

    async def record_answer(self, entry: FaqEntry, where: str) -> None:
        """Count an answer: the entry's hits and the answers of `where` (a room, or GLOBAL)."""
        doc_id = self._idx.get((entry.room, entry.num))

        def body(tx: Tx) -> None:
            if doc_id is not None:
                hits = self.entries_t._raw[str(doc_id)].get("hits", 0) + 1
                tx.update(self.entries_t, {"hits": hits}, [doc_id])
            self._bump_tx(tx, where, answers=1)

        await self._store.atomic(body)

    async def record_miss(
        self, text: str, rooms: Sequence[str], *, private: bool, ts: float, keep_text: bool = True
    ) -> None:
        """Log an unanswered question for `rooms` (a group's room, or the asker's rooms).
        With `keep_text` False (``miss_text_days: 0``) only the counter moves."""
        doc = {"rooms": list(rooms), "private": private, "ts": ts, "text": text[:500]}

        def body(tx: Tx) -> None:
            if keep_text:
                tx.insert(self.misses_t, doc)
            self._bump_tx(tx, GLOBAL if private or not rooms else rooms[0], misses=1)

        await self._store.atomic(body)

    async def purge_misses(self, before_ts: float) -> int:
        """Drop miss texts older than `before_ts` (SPEC section 7: kept at most
        ``privacy.miss_text_days``); the counters in ``faq_stats`` keep counting them."""
        old = [int(k) for k, d in self.misses_t._raw.items() if d["ts"] < before_ts]
        if old:
            await self._store.atomic(lambda tx: tx.remove(self.misses_t, old))
        return len(old)

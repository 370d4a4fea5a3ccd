"""Verifiable lotteries (SPEC section 5), numbered #N per room.

Two tables:

* ``lotteries``: one document per lottery: title, winner count, draw time, entry
  conditions, the secret seed (hex; never shown before the draw), its commitment, the
  status ``open`` → ``drawing`` → ``drawn``, the eligible entrants fixed at the draw, the
  winners (initial and current), rerolls, and the announcement state.
* ``lottery_entries``: one small document per entry (room, n, member, ts), so an entry is a
  tiny journal record instead of a rewrite of an ever-growing entrant list.

Every state change is ONE ``store.atomic`` commit whose function checks the current state
first (compare-and-set).  The store runs that function synchronously, so an entry racing a
draw, or a manual draw racing the scheduled one, is decided by whichever commits first and
the other sees the new state.  Nothing is cached: any module (console, /me, /forget) may
build a ``LotteryRepo`` over the same store and see the same state.

Announcement state (``announce``), see handlers/lottery.py for why it is at-most-once:
``""`` not posted yet → ``"pending"`` handed to the outbox → ``"sent"`` (WeChat accepted
it) or ``"unconfirmed"`` (the send was given up, or the bot stopped while it was pending).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from storage.tables import Doc, DurableTable, Tx

if TYPE_CHECKING:
    from storage.store import Store

LOTTERIES = "lotteries"
ENTRIES = "lottery_entries"

Status = Literal["open", "drawing", "drawn"]
Announce = Literal["", "pending", "sent", "unconfirmed"]
EnterOutcome = Literal["entered", "already", "closed", "no_such_lottery"]


@dataclass(frozen=True)
class Conditions:
    """Entry conditions (``require=``). Windows are (K, D): at least K in the last D days."""

    member: bool = False  # in the room at draw time
    joined_before: bool = False  # joined the room before the lottery opened
    checkins: tuple[int, int] | None = None
    active: tuple[int, int] | None = None
    not_won: int | None = None  # not a winner of the last L drawn lotteries in this room

    def to_doc(self) -> Doc:
        return {
            "member": self.member,
            "joined_before": self.joined_before,
            "checkins": list(self.checkins) if self.checkins else None,
            "active": list(self.active) if self.active else None,
            "not_won": self.not_won,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> Conditions:
        ck, ac = doc.get("checkins"), doc.get("active")
        return cls(
            member=bool(doc.get("member")),
            joined_before=bool(doc.get("joined_before")),
            checkins=(int(ck[0]), int(ck[1])) if ck else None,
            active=(int(ac[0]), int(ac[1])) if ac else None,
            not_won=doc.get("not_won"),
        )

    @property
    def any(self) -> bool:
        return self != Conditions()

    def spec(self) -> str:
        """The canonical ``require=`` text (empty when there are no conditions)."""
        parts = []
        if self.member:
            parts.append("member")
        if self.joined_before:
            parts.append("joined_before")
        if self.checkins:
            parts.append(f"checkins:{self.checkins[0]}/{self.checkins[1]}")
        if self.active:
            parts.append(f"active:{self.active[0]}/{self.active[1]}")
        if self.not_won:
            parts.append(f"not_won:{self.not_won}")
        return ",".join(parts)


@dataclass(frozen=True)
class Entry:
    member_id: str
    ts: float


@dataclass(frozen=True)
class Reroll:
    out_id: str  # the winner who could not be reached
    in_id: str  # the next entrant in the published order
    by: str
    ts: float


@dataclass(frozen=True)
class Lottery:
    room_id: str
    n: int
    title: str
    winner_count: int
    draw_at: float | None  # automatic draw time (epoch s), None: drawn by a manager
    conditions: Conditions
    seed_hex: str  # SECRET until status is "drawn"
    commitment: str
    status: Status
    created_by: str
    created_ts: float
    eligible: tuple[str, ...]  # fixed when the draw begins (entry order)
    initial_winners: tuple[str, ...]  # the draw's result, in order
    winners: tuple[str, ...]  # current winners (rerolls applied in place)
    rerolls: tuple[Reroll, ...]
    digest: str  # D = sha256 of the sorted eligible ids
    drawing_ts: float | None
    drawn_ts: float | None
    announce: Announce

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    @property
    def picks(self) -> list[str]:
        """Everyone picked so far, in pick order (initial winners, then reroll replacements)."""
        return list(dict.fromkeys([*self.initial_winners, *(r.in_id for r in self.rerolls)]))


def _lottery(doc: Doc) -> Lottery:
    return Lottery(
        room_id=doc["room"],
        n=doc["n"],
        title=doc["title"],
        winner_count=doc["winners"],
        draw_at=doc["draw_at"],
        conditions=Conditions.from_doc(doc["require"]),
        seed_hex=doc["seed"],
        commitment=doc["commitment"],
        status=doc["status"],
        created_by=doc["created_by"],
        created_ts=doc["created_ts"],
        eligible=tuple(doc.get("eligible") or ()),
        initial_winners=tuple(doc.get("initial") or ()),
        winners=tuple(doc.get("winner_ids") or ()),
        rerolls=tuple(Reroll(r["out"], r["in"], r["by"], r["ts"]) for r in doc.get("rerolls", [])),
        digest=doc.get("digest") or "",
        drawing_ts=doc.get("drawing_ts"),
        drawn_ts=doc.get("drawn_ts"),
        announce=doc.get("announce", ""),
    )


class LotteryRepo:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.table: DurableTable = store.table(LOTTERIES)
        self.entries: DurableTable = store.table(ENTRIES)

    # -- reads ----------------------------------------------------------------------------------
    def _find(self, room_id: str, n: int) -> tuple[int, Doc] | None:
        for k, d in self.table._raw.items():
            if d["room"] == room_id and d["n"] == n:
                return int(k), d
        return None

    def get(self, room_id: str, n: int) -> Lottery | None:
        found = self._find(room_id, n)
        return None if found is None else _lottery(found[1])

    def list(self, room_id: str) -> list[Lottery]:
        docs = [d for d in self.table._raw.values() if d["room"] == room_id]
        return [_lottery(d) for d in sorted(docs, key=lambda d: d["n"])]

    def all(self) -> builtins.list[Lottery]:
        docs = sorted(self.table._raw.values(), key=lambda d: (d["room"], d["n"]))
        return [_lottery(d) for d in docs]

    def open_lotteries(self, room_id: str) -> builtins.list[Lottery]:
        return [lot for lot in self.list(room_id) if lot.is_open]

    def _entry_docs(self, room_id: str, n: int) -> builtins.list[tuple[int, Doc]]:
        return [
            (int(k), d)
            for k, d in self.entries._raw.items()
            if d["room"] == room_id and d["n"] == n
        ]

    def entrants(self, room_id: str, n: int) -> builtins.list[Entry]:
        """Everyone who entered, in entry order."""
        docs = sorted(self._entry_docs(room_id, n), key=lambda p: (p[1]["ts"], p[0]))
        return [Entry(d["member"], d["ts"]) for _, d in docs]

    def has_entered(self, room_id: str, n: int, member_id: str) -> bool:
        return any(d["member"] == member_id for _, d in self._entry_docs(room_id, n))

    def entry_count(self, room_id: str, n: int) -> int:
        return len(self._entry_docs(room_id, n))

    def recent_winners(self, room_id: str, last: int, exclude_n: int | None = None) -> set[str]:
        """Current winners of the last `last` drawn lotteries of the room (by draw time)."""
        drawn = [lot for lot in self.list(room_id) if lot.status == "drawn" and lot.n != exclude_n]
        drawn.sort(key=lambda lot: (lot.drawn_ts or 0.0, lot.n), reverse=True)
        return {w for lot in drawn[:last] for w in lot.winners}

    # -- writes (each one commit) ---------------------------------------------------------------
    async def create(
        self,
        room_id: str,
        *,
        title: str,
        winner_count: int,
        draw_at: float | None,
        conditions: Conditions,
        seed_hex: str,
        commitment: str,
        created_by: str,
        now: float,
    ) -> Lottery:
        def body(tx: Tx) -> Lottery:
            # Lotteries are never deleted, so the next number is simply max + 1.
            n = 1 + max(
                (d["n"] for d in self.table._raw.values() if d["room"] == room_id), default=0
            )
            doc: Doc = {
                "room": room_id,
                "n": n,
                "title": title,
                "winners": winner_count,
                "draw_at": draw_at,
                "require": conditions.to_doc(),
                "seed": seed_hex,
                "commitment": commitment,
                "status": "open",
                "created_by": created_by,
                "created_ts": now,
                "eligible": None,
                "initial": [],
                "winner_ids": [],
                "rerolls": [],
                "digest": "",
                "drawing_ts": None,
                "drawn_ts": None,
                "announce": "",
            }
            tx.insert(self.table, doc)
            return _lottery(doc)

        return await self._store.atomic(body)

    async def enter(self, room_id: str, n: int, member_id: str, now: float) -> EnterOutcome:
        def body(tx: Tx) -> EnterOutcome:
            found = self._find(room_id, n)
            if found is None:
                return "no_such_lottery"
            if found[1]["status"] != "open":
                return "closed"
            if self.has_entered(room_id, n, member_id):
                return "already"
            tx.insert(self.entries, {"room": room_id, "n": n, "member": member_id, "ts": now})
            return "entered"

        return await self._store.atomic(body)

    async def _cas(
        self, room_id: str, n: int, check: Callable[[Doc], bool], fields: Callable[[Doc], Doc]
    ) -> Lottery | None:
        """Write `fields(doc)` if `check(doc)` holds, in one commit; the new state or None."""

        def body(tx: Tx) -> Lottery | None:
            found = self._find(room_id, n)
            if found is None or not check(found[1]):
                return None
            tx.update(self.table, fields(found[1]), [found[0]])
            return _lottery(self.table._raw[str(found[0])])

        return await self._store.atomic(body)

    async def begin_draw(
        self, room_id: str, n: int, keep: Callable[[str], bool], now: float
    ) -> Lottery | None:
        """open → drawing: fix the eligible entrants (those `keep` accepts, entry order).

        From here on entries are refused and the result is determined (seed + this list),
        so a crash before ``finish_draw`` completes with the same result.  None if the
        lottery is not open (drawn, or another draw got there first).
        """

        def fields(doc: Doc) -> Doc:
            eligible = [e.member_id for e in self.entrants(room_id, n) if keep(e.member_id)]
            return {"status": "drawing", "eligible": eligible, "drawing_ts": now}

        return await self._cas(room_id, n, lambda d: d["status"] == "open", fields)

    async def finish_draw(
        self, room_id: str, n: int, winners: Iterable[str], digest: str, now: float
    ) -> Lottery | None:
        """drawing → drawn, with the result, in one commit (announcement not posted yet)."""
        ws = list(winners)
        return await self._cas(
            room_id,
            n,
            lambda d: d["status"] == "drawing",
            lambda d: {
                "status": "drawn",
                "initial": ws,
                "winner_ids": ws,
                "digest": digest,
                "drawn_ts": now,
                "announce": "",
            },
        )

    async def set_announce(
        self, room_id: str, n: int, expect: Iterable[str], new: Announce
    ) -> bool:
        allowed = set(expect)
        done = await self._cas(
            room_id,
            n,
            lambda d: d["status"] == "drawn" and d.get("announce", "") in allowed,
            lambda d: {"announce": new},
        )
        return done is not None

    async def reroll(
        self, room_id: str, n: int, out_id: str, in_id: str, by: str, now: float
    ) -> Lottery | None:
        """Replace current winner `out_id` by `in_id` (same place); None if `out_id` is no
        longer a current winner (a concurrent reroll got there first)."""

        def fields(doc: Doc) -> Doc:
            ws = [in_id if w == out_id else w for w in doc["winner_ids"]]
            rr: builtins.list[Any] = [
                *doc.get("rerolls", []),
                {"out": out_id, "in": in_id, "by": by, "ts": now},
            ]
            return {"winner_ids": ws, "rerolls": rr}

        return await self._cas(
            room_id,
            n,
            lambda d: (
                d["status"] == "drawn"
                and out_id in d["winner_ids"]
                and in_id not in d["winner_ids"]
            ),
            fields,
        )

    # -- privacy --------------------------------------------------------------------------------
    def forget_tx(self, tx: Tx, member_id: str, pseudonym: str) -> int:
        """Inside a commit: remove the member's entries in lotteries still open (SPEC 7); in
        the others the entry rows move to the pseudonym. Drawn lotteries keep their published
        entrant list and winners as they are: that is what verification recomputes."""
        open_keys = {(d["room"], d["n"]) for d in self.table._raw.values() if d["status"] == "open"}
        mine = [(int(k), d) for k, d in self.entries._raw.items() if d["member"] == member_id]
        tx.remove(self.entries, [k for k, d in mine if (d["room"], d["n"]) in open_keys])
        closed = [k for k, d in mine if (d["room"], d["n"]) not in open_keys]
        if closed:
            tx.update(self.entries, {"member": pseudonym}, doc_ids=closed)
        return len(mine) - len(closed)

    async def forget(self, member_id: str, pseudonym: str) -> int:
        return await self._store.atomic(lambda tx: self.forget_tx(tx, member_id, pseudonym))


def member_summary(store: Store, room_id: str, member_id: str) -> tuple[int, int]:
    """(lotteries entered, lotteries won) by a member in a room, for /me.  "Won" counts the
    current winners (a winner replaced by a reroll no longer counts; the replacement does)."""
    repo = LotteryRepo(store)
    entered = {
        d["n"]
        for d in repo.entries._raw.values()
        if d["room"] == room_id and d["member"] == member_id
    }
    won = sum(1 for lot in repo.list(room_id) if member_id in lot.winners)
    return len(entered), won

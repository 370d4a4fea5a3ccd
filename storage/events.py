"""Events with capacity, waitlist, deadline and reminder, numbered #N per room.

One document per event in the ``events`` table holds the confirmed list and the waitlist
(member ids with their sign-up time, in order).  Sign-up, cancellation and closing are each
ONE ``store.atomic`` commit whose function reads the event, checks capacity and state and
writes the new lists: the store runs that function synchronously, so concurrent sign-ups
are serialised and the last place can never be given twice.  Per-room numbers come from a
counter in ``event_seq`` (bumped in the same commit as the insert), so a number is never
reused.

Reads scan the (small) table; nothing is cached, so any module may build an ``EventRepo``
over the same store (e.g. the console or /forget) and see the same state.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from storage.tables import Doc, DurableTable, Tx

if TYPE_CHECKING:
    from storage.store import Store

EVENTS = "events"
SEQ = "event_seq"

JoinOutcome = Literal[
    "confirmed",  # got a place (position = place number)
    "waitlisted",  # on the waitlist (position = waitlist position)
    "already_confirmed",
    "already_waitlisted",
    "full",  # no place and no waitlist
    "waitlist_full",  # no place, waitlist full too
    "closed",  # closed by a manager
    "past_deadline",
    "started",
    "no_such_event",
]
LeaveOutcome = Literal["cancelled", "not_signed_up", "started", "no_such_event"]


@dataclass(frozen=True)
class Signup:
    member_id: str
    ts: float


@dataclass(frozen=True)
class Event:
    room_id: str
    n: int
    title: str
    cap: int | None  # None: no limit
    waitlist: int  # waitlist size (0: none)
    deadline_ts: float | None
    start_ts: float | None
    remind_s: int | None  # reminder offset before start, as given
    remind_at_ts: float | None  # when the reminder is due (quiet hours already applied)
    reminded: bool
    status: Literal["open", "closed"]
    closed_reason: str | None  # "manual" | "deadline"
    closed_ts: float | None
    confirmed: tuple[Signup, ...]
    waitlisted: tuple[Signup, ...]
    created_by: str
    created_ts: float

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    @property
    def full(self) -> bool:
        return self.cap is not None and len(self.confirmed) >= self.cap

    def place_of(self, member_id: str) -> tuple[str, int] | None:
        """("confirmed", place) or ("waitlisted", position), 1-based; None if not signed up."""
        for kind, lst in (("confirmed", self.confirmed), ("waitlisted", self.waitlisted)):
            for i, s in enumerate(lst):
                if s.member_id == member_id:
                    return kind, i + 1
        return None


@dataclass(frozen=True)
class JoinResult:
    outcome: JoinOutcome
    position: int  # place or waitlist position; for already_*: the current one
    event: Event | None


@dataclass(frozen=True)
class LeaveResult:
    outcome: LeaveOutcome
    was: str | None  # "confirmed" | "waitlisted"
    promoted: str | None  # member id moved from the waitlist to a place
    promoted_place: int
    event: Event | None


def _signups(raw: Any) -> tuple[Signup, ...]:
    return tuple(Signup(str(m), float(ts)) for m, ts in raw)


def _enc(signups: tuple[Signup, ...] | list[Signup]) -> list[list[Any]]:
    return [[s.member_id, s.ts] for s in signups]


def _event(doc: Doc) -> Event:
    return Event(
        room_id=doc["room"],
        n=doc["n"],
        title=doc["title"],
        cap=doc["cap"],
        waitlist=doc["waitlist"],
        deadline_ts=doc["deadline"],
        start_ts=doc["start"],
        remind_s=doc["remind_s"],
        remind_at_ts=doc["remind_at"],
        reminded=bool(doc.get("reminded", False)),
        status=doc["status"],
        closed_reason=doc.get("closed_reason"),
        closed_ts=doc.get("closed_ts"),
        confirmed=_signups(doc["confirmed"]),
        waitlisted=_signups(doc["waitlisted"]),
        created_by=doc["created_by"],
        created_ts=doc["created_ts"],
    )


class EventRepo:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.table: DurableTable = store.table(EVENTS)
        self._seq: DurableTable = store.table(SEQ)

    # -- reads ----------------------------------------------------------------------------------
    def _find(self, room_id: str, n: int) -> tuple[int, Doc] | None:
        for k, d in self.table._raw.items():
            if d["room"] == room_id and d["n"] == n:
                return int(k), d
        return None

    def get(self, room_id: str, n: int) -> Event | None:
        found = self._find(room_id, n)
        return None if found is None else _event(found[1])

    def list(self, room_id: str) -> list[Event]:
        docs = [d for d in self.table._raw.values() if d["room"] == room_id]
        return [_event(d) for d in sorted(docs, key=lambda d: d["n"])]

    def all(self) -> builtins.list[Event]:
        docs = sorted(self.table._raw.values(), key=lambda d: (d["room"], d["n"]))
        return [_event(d) for d in docs]

    def open_events(self, room_id: str) -> builtins.list[Event]:
        return [e for e in self.list(room_id) if e.is_open]

    def member_summary(self, room_id: str, member_id: str) -> tuple[int, int]:
        """(events with a place, events on the waitlist) for a member in a room."""
        confirmed = waitlisted = 0
        for e in self.list(room_id):
            place = e.place_of(member_id)
            if place is not None:
                if place[0] == "confirmed":
                    confirmed += 1
                else:
                    waitlisted += 1
        return confirmed, waitlisted

    # -- writes (each one commit) ---------------------------------------------------------------
    async def create(
        self,
        room_id: str,
        *,
        title: str,
        cap: int | None,
        waitlist: int,
        deadline_ts: float | None,
        start_ts: float | None,
        remind_s: int | None,
        remind_at_ts: float | None,
        created_by: str,
        now: float,
    ) -> Event:
        def body(tx: Tx) -> Event:
            seq = next(((int(k), d) for k, d in self._seq._raw.items() if d["room"] == room_id),
                       None)
            used = max((d["n"] for d in self.table._raw.values() if d["room"] == room_id),
                       default=0)
            n = max(used, seq[1]["last"] if seq else 0) + 1
            if seq is None:
                tx.insert(self._seq, {"room": room_id, "last": n})
            else:
                tx.update(self._seq, {"last": n}, [seq[0]])
            doc: Doc = {
                "room": room_id, "n": n, "title": title, "cap": cap, "waitlist": waitlist,
                "deadline": deadline_ts, "start": start_ts, "remind_s": remind_s,
                "remind_at": remind_at_ts, "reminded": False, "status": "open",
                "closed_reason": None, "closed_ts": None, "confirmed": [], "waitlisted": [],
                "created_by": created_by, "created_ts": now,
            }
            doc_id = tx.insert(self.table, doc)
            return _event(self.table._raw[str(doc_id)])

        return await self._store.atomic(body)

    async def join(self, room_id: str, n: int, member_id: str, now: float) -> JoinResult:
        """Sign up: a place if one is free, else the waitlist if it has room, else a refusal."""

        def body(tx: Tx) -> JoinResult:
            found = self._find(room_id, n)
            if found is None:
                return JoinResult("no_such_event", 0, None)
            doc_id, doc = found
            ev = _event(doc)
            place = ev.place_of(member_id)
            if place is not None:
                kind, pos = place
                return JoinResult(
                    "already_confirmed" if kind == "confirmed" else "already_waitlisted", pos, ev
                )
            if ev.closed_reason == "deadline" or (
                ev.deadline_ts is not None and now >= ev.deadline_ts
            ):
                return JoinResult("past_deadline", 0, ev)
            if not ev.is_open:
                return JoinResult("closed", 0, ev)
            if ev.start_ts is not None and now >= ev.start_ts:
                return JoinResult("started", 0, ev)
            me = Signup(member_id, now)
            if not ev.full:
                confirmed = [*ev.confirmed, me]
                tx.update(self.table, {"confirmed": _enc(confirmed)}, [doc_id])
                outcome: JoinOutcome = "confirmed"
                pos = len(confirmed)
            elif len(ev.waitlisted) < ev.waitlist:
                waitlisted = [*ev.waitlisted, me]
                tx.update(self.table, {"waitlisted": _enc(waitlisted)}, [doc_id])
                outcome, pos = "waitlisted", len(waitlisted)
            else:
                return JoinResult("waitlist_full" if ev.waitlist else "full", 0, ev)
            return JoinResult(outcome, pos, _event(self.table._raw[str(doc_id)]))

        return await self._store.atomic(body)

    async def leave(self, room_id: str, n: int, member_id: str, now: float) -> LeaveResult:
        """Cancel; a freed place goes to the first on the waitlist (even after closing:
        closing stops new sign-ups, the event itself still takes place)."""

        def body(tx: Tx) -> LeaveResult:
            found = self._find(room_id, n)
            if found is None:
                return LeaveResult("no_such_event", None, None, 0, None)
            doc_id, doc = found
            ev = _event(doc)
            place = ev.place_of(member_id)
            if place is None:
                return LeaveResult("not_signed_up", None, None, 0, ev)
            if ev.start_ts is not None and now >= ev.start_ts:
                return LeaveResult("started", place[0], None, 0, ev)
            promoted, promoted_place = self._remove_tx(tx, doc_id, ev, member_id)
            return LeaveResult("cancelled", place[0], promoted, promoted_place,
                               _event(self.table._raw[str(doc_id)]))

        return await self._store.atomic(body)

    def _remove_tx(self, tx: Tx, doc_id: int, ev: Event, member_id: str) -> tuple[str | None, int]:
        confirmed = [s for s in ev.confirmed if s.member_id != member_id]
        waitlisted = [s for s in ev.waitlisted if s.member_id != member_id]
        promoted: str | None = None
        while waitlisted and (ev.cap is None or len(confirmed) < ev.cap):
            first = waitlisted.pop(0)
            confirmed.append(first)  # keeps the original sign-up time
            promoted = first.member_id
        tx.update(self.table, {"confirmed": _enc(confirmed), "waitlisted": _enc(waitlisted)},
                  [doc_id])
        return promoted, (len(confirmed) if promoted else 0)

    async def close(
        self, room_id: str, n: int, now: float, reason: str
    ) -> tuple[Event | None, bool]:
        """(event, True if this call closed it); idempotent, so a repeated firing is harmless."""

        def body(tx: Tx) -> tuple[Event | None, bool]:
            found = self._find(room_id, n)
            if found is None:
                return None, False
            doc_id, doc = found
            if doc["status"] == "closed":
                return _event(doc), False
            tx.update(self.table, {"status": "closed", "closed_reason": reason, "closed_ts": now},
                      [doc_id])
            return _event(self.table._raw[str(doc_id)]), True

        return await self._store.atomic(body)

    async def mark_reminded(self, room_id: str, n: int) -> bool:
        """True if this call marked it (the reminder is then sent exactly by this caller)."""

        def body(tx: Tx) -> bool:
            found = self._find(room_id, n)
            if found is None or found[1].get("reminded"):
                return False
            tx.update(self.table, {"reminded": True}, [found[0]])
            return True

        return await self._store.atomic(body)

    def forget_tx(
        self, tx: Tx, member_id: str, pseudonym: str
    ) -> builtins.list[tuple[str, int, str]]:
        """/forget: drop the member's sign-ups in open events (promoting from the waitlist)
        and replace their id with `pseudonym` in closed ones (counts stay right).
        Returns (room, n, promoted member) for each promotion, to announce."""
        promotions: builtins.list[tuple[str, int, str]] = []
        for k, doc in list(self.table._raw.items()):
            ev = _event(doc)
            if ev.place_of(member_id) is None:
                continue
            if ev.is_open:
                promoted, _ = self._remove_tx(tx, int(k), ev, member_id)
                if promoted:
                    promotions.append((ev.room_id, ev.n, promoted))
            else:
                def swap(lst: tuple[Signup, ...]) -> list[list[Any]]:
                    return [[pseudonym if s.member_id == member_id else s.member_id, s.ts]
                            for s in lst]
                tx.update(self.table, {"confirmed": swap(ev.confirmed),
                                       "waitlisted": swap(ev.waitlisted)}, [int(k)])
        return promotions

"""What every handler receives: storage, outbox, scheduler, settings, clock.

No module globals: one Context per running bot, so several bots (or tests)
can live in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from bot.clock import Clock
from bot.config import Settings
from bot.events import Member, Outgoing

if TYPE_CHECKING:
    from bot.outbox import Outbox
    from bot.scheduler import Scheduler
    from storage.store import Store

log = logging.getLogger("qunbot")

UNDO_WINDOW_S = 600.0  # /undo reaches back this far
OWNER_CACHE_S = 60.0  # a room owner rarely changes; asking the service on every command is waste


@dataclass(frozen=True)
class UndoRecord:
    command: str  # the command text that reverses the action, e.g. "/admin add wxid_x"
    description: str  # what was done, for the /undo reply, e.g. "移除管理员 小明"
    ts: float


def _undo_key(room_id: str, actor_id: str) -> str:
    return f"undo:{room_id}:{actor_id}"


class RoomDirectory(Protocol):
    """Live room facts from WeChat (the adapter, through the service)."""

    async def room_members(self, room_id: str) -> list[Member]: ...

    async def room_topic(self, room_id: str) -> str: ...

    async def room_owner(self, room_id: str) -> str | None: ...


@dataclass
class Context:
    settings: Settings
    store: Store
    outbox: Outbox
    scheduler: Scheduler
    clock: Clock
    directory: RoomDirectory | None = None
    self_id: str = ""
    self_name: str = ""
    on_error: Callable[[BaseException], None] | None = None
    services: dict[str, Any] = field(default_factory=dict)  # feature singletons, e.g. the FAQ index
    _room_topics: dict[str, str] = field(default_factory=dict)
    # room -> (owner, when asked)
    _owners: dict[str, tuple[str | None, float]] = field(default_factory=dict)

    # --- sending -------------------------------------------------------------
    def send(self, out: Outgoing) -> None:
        self.outbox.submit(out)

    def say(self, conversation_id: str, text: str, *, mention_ids: tuple[str, ...] = (),
            priority: int = 2, coalesce_key: str | None = None) -> None:
        self.send(Outgoing(conversation_id, text, mention_ids, priority, coalesce_key))

    async def tell_managers(self, text: str, room_id: str | None = None) -> None:
        """Private message to the global managers (and the room's admins, if a room is given)."""
        ids = list(self.settings.admins)
        if room_id:
            ids += [a for a in self.store.admins.list(room_id) if a not in ids]
        for manager in ids:
            self.say(manager, text, priority=0)

    # --- who and where ------------------------------------------------------
    def serves(self, room_id: str | None) -> bool:
        return room_id is not None and room_id in self.served_rooms()

    def served_rooms(self) -> frozenset[str]:
        resolved = self.services.get("resolved_rooms")
        return frozenset(resolved) if resolved is not None else self.settings.room_ids

    def room_name(self, room_id: str) -> str:
        return self._room_topics.get(room_id, room_id)

    def remember_topic(self, room_id: str, topic: str) -> None:
        self._room_topics[room_id] = topic

    def member_name(self, room_id: str | None, member_id: str) -> str:
        if room_id:
            rec = self.store.members.get(room_id, member_id)
            if rec and rec.name:
                return rec.name
        return member_id

    def is_global_manager(self, sender_id: str) -> bool:
        return sender_id in self.settings.admins

    async def is_manager(self, sender_id: str, room_id: str | None) -> bool:
        """Global manager anywhere; admin of room_id (stored, or its WeChat owner if configured)."""
        if self.is_global_manager(sender_id):
            return True
        if room_id is None:
            return False
        if self.store.admins.is_admin(room_id, sender_id):
            return True
        if self.settings.room_owner_is_admin:
            return await self.room_owner(room_id) == sender_id
        return False

    async def room_owner(self, room_id: str) -> str | None:
        """The room's WeChat owner from the service (cached briefly: every command asks)."""
        now = self.clock.now()
        hit = self._owners.get(room_id)
        if hit is not None and now - hit[1] < OWNER_CACHE_S:
            return hit[0]
        if self.directory is None:
            return None
        try:
            owner = await self.directory.room_owner(room_id)
        except Exception as e:  # noqa: BLE001 - disconnected: nobody is owner-admin until it answers
            log.warning("cannot read the owner of %s: %r", room_id, e)
            return None
        self._owners[room_id] = (owner, now)
        return owner

    async def managed_rooms(self, sender_id: str) -> list[str]:
        """The served rooms this sender may manage (all of them for a global manager)."""
        return [r for r in sorted(self.served_rooms()) if await self.is_manager(sender_id, r)]

    async def chosen_room(self, manager_id: str) -> str | None:
        """The room a manager chose with /use (private chat); None if none or no longer served."""
        room = self.store.kv.get(f"use:{manager_id}")
        return room if isinstance(room, str) and self.serves(room) else None

    async def choose_room(self, manager_id: str, room_id: str | None) -> None:
        if room_id is None:
            await self.store.kv.delete(f"use:{manager_id}")
        else:
            await self.store.kv.set(f"use:{manager_id}", room_id)

    def find_rooms(self, query: str) -> list[str]:
        """Served rooms named by `query`: exact id, else exact topic, else topics containing it."""
        q = query.strip()
        rooms = sorted(self.served_rooms())
        if q in rooms:
            return [q]
        topics = {r: self.room_name(r) for r in rooms}
        exact = [r for r in rooms if topics[r] == q]
        if exact:
            return exact
        low = q.casefold()
        return [r for r in rooms if low and low in topics[r].casefold()]

    async def audit(self, actor_id: str, room_id: str | None, command: str, result: str) -> None:
        await self.store.audit.append(actor_id, room_id, command[:500], result[:500],
                                      self.clock.now())

    # --- undo ---------------------------------------------------------------
    # A destructive command records the command that reverses it, as text, in the kv repo
    # (durable across restarts): `await req.remember_undo("/admin add wxid_x", "移除管理员 小明")`.
    # `/undo` (handlers/admin.py) takes the record of this manager in this room, if younger
    # than UNDO_WINDOW_S, and dispatches the text again as the same manager, so permission
    # checks and the audit log apply to the undo like to any command. One record per
    # (room, manager): a newer destructive command replaces the older record.
    async def remember_undo(self, actor_id: str, room_id: str, command: str,
                            description: str) -> None:
        rec = {"command": command, "description": description, "ts": self.clock.now()}
        await self.store.kv.set(_undo_key(room_id, actor_id), rec)

    def pending_undo(self, actor_id: str, room_id: str) -> UndoRecord | None:
        """The undo record of this manager in this room, if still within the window."""
        rec = self.store.kv.get(_undo_key(room_id, actor_id))
        if not isinstance(rec, dict) or self.clock.now() - float(rec.get("ts", 0)) > UNDO_WINDOW_S:
            return None
        return UndoRecord(str(rec["command"]), str(rec["description"]), float(rec["ts"]))

    async def take_undo(self, actor_id: str, room_id: str) -> UndoRecord | None:
        """Remove and return the pending record (durably first, so an undo runs at most once)."""
        rec = self.pending_undo(actor_id, room_id)
        await self.store.kv.delete(_undo_key(room_id, actor_id))
        return rec

    def report_error(self, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(exc)

    # --- time ---------------------------------------------------------------
    def now_local(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), self.settings.tz)

    def local_day(self, ts: float | None = None) -> date:
        when = self.clock.now() if ts is None else ts
        return datetime.fromtimestamp(when, self.settings.tz).date()


AsyncFn = Callable[[], Awaitable[None]]

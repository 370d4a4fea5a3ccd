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

    async def is_manager(self, sender_id: str, room_id: str | None) -> bool:
        if sender_id in self.settings.admins:
            return True
        if room_id is None:
            return False
        if self.store.admins.is_admin(room_id, sender_id):
            return True
        if self.settings.room_owner_is_admin and self.directory is not None:
            return await self.directory.room_owner(room_id) == sender_id
        return False

    async def chosen_room(self, manager_id: str) -> str | None:
        room = self.store.kv.get(f"use:{manager_id}")
        return room if isinstance(room, str) and self.serves(room) else None

    async def audit(self, actor_id: str, room_id: str | None, command: str, result: str) -> None:
        await self.store.audit.append(actor_id, room_id, command[:500], result[:500], self.clock.now())

    def report_error(self, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(exc)

    # --- time ---------------------------------------------------------------
    def now_local(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), self.settings.tz)

    def local_day(self, ts: float | None = None) -> date:
        return datetime.fromtimestamp(self.clock.now() if ts is None else ts, self.settings.tz).date()


AsyncFn = Callable[[], Awaitable[None]]

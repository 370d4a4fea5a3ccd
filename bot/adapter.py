"""The only place that touches wechaty: events in, sends out.

A `Connection` is one session with a puppet service through the stock
`wechaty.Wechaty` client. It turns wechaty callbacks into the frozen events of
bot/events.py and hands them to a sink; it sends through wechaty's `say()`.
It is used once and thrown away: the stock client cannot reconnect reliably
(see ../shared/notes/wechaty.md), so bot/supervisor.py makes a fresh
Connection for every attempt. That also makes login work run once per
connection, because wechaty guards its login event per instance.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.events import (
    Event,
    FriendRequest,
    Incoming,
    LoggedIn,
    LoggedOut,
    Member,
    MemberJoined,
    MemberLeft,
    Outgoing,
    RoomTopicChanged,
)
from bot.wechaty_shim import import_wechaty

log = logging.getLogger("qunbot.adapter")

EventSink = Callable[[Event], Awaitable[None]]
ErrorSink = Callable[[BaseException, str], None]

QRCODE_INVITER = "qrcode"  # how the sandbox marks a join by QR code (see bot/gateway.py)
_TEXT_KINDS = {"MESSAGE_TYPE_TEXT": "text", "MESSAGE_TYPE_IMAGE": "image"}

wechaty = import_wechaty()
from wechaty_puppet import FileBox, PuppetOptions  # noqa: E402
from wechaty_puppet.exceptions import WechatyPuppetError  # noqa: E402

# The stock client caches Contact/Room objects in class-level pools shared by every
# Wechaty in the process and never refreshes them; a new connection starts clean.
_POOLS: list[dict[str, Any]] = [wechaty.Contact._pool, wechaty.Room._pool]


def free_port() -> int:
    """A loopback port nothing listens on (wechaty probes its plugin port; 5000 may be taken)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def epoch(ts: float | int | None) -> float:
    """Services send seconds or milliseconds; 0/None means now."""
    if not ts:
        return time.time()
    return ts / 1000 if ts > 2_145_888_000 else float(ts)


def room_like(conversation_id: str) -> bool:
    return conversation_id.endswith("@chatroom")


class _Bot(wechaty.Wechaty):  # type: ignore[misc,name-defined]
    """Stock Wechaty whose callbacks feed the adapter instead of user code."""

    def __init__(self, conn: Connection, options: Any) -> None:
        super().__init__(options)
        self._conn = conn

    async def on_message(self, msg: Any) -> None:
        await self._conn._deliver(self._conn._incoming, msg)

    async def on_room_join(self, room: Any, invitees: list[Any], inviter: Any, date: Any) -> None:
        await self._conn._deliver(self._conn._joined, room, invitees, inviter, date)

    async def on_room_leave(self, room: Any, leavers: list[Any], remover: Any, date: Any) -> None:
        await self._conn._deliver(self._conn._left, room, leavers, remover, date)

    async def on_room_topic(self, room: Any, new: str, old: str, changer: Any, date: Any) -> None:
        await self._conn._deliver(self._conn._topic, room, new, old, changer, date)

    async def on_login(self, contact: Any) -> None:
        await self._conn._deliver(self._conn._login, contact)

    async def on_logout(self, contact: Any) -> None:
        await self._conn._deliver(self._conn._logout, contact)

    async def on_friendship(self, friendship: Any) -> None:
        await self._conn._deliver(self._conn._friendship, friendship)


class Connection:
    """One session with a puppet service. `run()` returns or raises when it ends."""

    def __init__(self, endpoint: str, token: str, sink: EventSink, on_error: ErrorSink) -> None:
        self.endpoint = endpoint
        self._token = token
        self._sink = sink
        self._on_error = on_error
        self.self_id = ""
        self.self_name = ""
        self.last_event = time.monotonic()
        for pool in _POOLS:
            pool.clear()
        options = wechaty.WechatyOptions(
            puppet="wechaty-puppet-service",
            # The client sends the token as the :authority header and crashes on None;
            # a sandbox gateway without a token accepts any.
            puppet_options=PuppetOptions(end_point=endpoint, token=token or "qunbot"),
            port=free_port(),
        )
        self._bot = _Bot(self, options)

    # --- lifecycle ----------------------------------------------------------
    async def run(self) -> None:
        """Connect and stream events until the service ends the stream (returns) or fails (raises)."""
        bot = self._bot
        await bot.init_puppet()
        await bot.init_puppet_event_bridge(bot.puppet)
        # The service's heartbeat is emitted as "heartbeat", which Wechaty never listens to.
        bot.puppet.on("heartbeat", lambda *_: self._touch())
        bot.puppet.on("dong", lambda *_: self._touch())
        await bot.puppet.start()  # returns when the event stream ends

    async def ding(self) -> None:
        await self._bot.puppet.ding("qunbot-watchdog")

    async def close(self) -> None:
        bot = self._bot
        try:
            if bot._puppet is not None:
                await bot.puppet.stop()
        except Exception as e:  # noqa: BLE001 - the service may already be gone
            log.debug("close: %s", e)
        scheduler = getattr(bot._plugin_manager, "scheduler", None)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)

    def _touch(self) -> None:
        self.last_event = time.monotonic()

    async def _deliver(self, convert: Callable[..., Awaitable[Event | None]], *args: Any) -> None:
        # wechaty only logs exceptions from callbacks; route them to our error sink instead.
        self._touch()
        try:
            event = await convert(*args)
            if event is not None:
                await self._sink(event)
        except Exception as exc:  # noqa: BLE001
            self._on_error(exc, f"{convert.__name__} event")

    # --- wechaty → events ---------------------------------------------------
    async def _incoming(self, msg: Any) -> Incoming | None:
        p = msg.payload
        kind = _TEXT_KINDS.get(getattr(p.type, "name", ""), "other")
        talker = msg.talker()
        room_id = p.room_id or None
        mention_ids = tuple(p.mention_ids or ())
        return Incoming(
            msg_id=p.id,
            room_id=room_id,
            sender_id=p.from_id,
            sender_name=talker.name if talker is not None else p.from_id,
            text=p.text or "",
            timestamp=epoch(p.timestamp),
            mentions_self=bool(self.self_id)
            and (
                self.self_id in mention_ids
                or (bool(self.self_name) and f"@{self.self_name}" in (p.text or ""))
            ),
            mention_ids=mention_ids,
            is_self=bool(self.self_id) and p.from_id == self.self_id,
            kind=kind,
        )

    async def _joined(
        self, room: Any, invitees: list[Any], inviter: Any, date: Any
    ) -> MemberJoined:
        inviter_id = getattr(inviter, "contact_id", "") or None
        return MemberJoined(
            room_id=room.room_id,
            members=tuple(Member(c.contact_id, c.name or c.contact_id) for c in invitees),
            inviter_id=None if inviter_id == QRCODE_INVITER else inviter_id,
            via_qrcode=inviter_id == QRCODE_INVITER,
            timestamp=date.timestamp() if date else time.time(),
        )

    async def _left(self, room: Any, leavers: list[Any], remover: Any, date: Any) -> MemberLeft:
        return MemberLeft(
            room_id=room.room_id,
            member_ids=tuple(c.contact_id for c in leavers),
            remover_id=getattr(remover, "contact_id", "") or None,
            timestamp=date.timestamp() if date else time.time(),
        )

    async def _topic(
        self, room: Any, new: str, old: str, changer: Any, date: Any
    ) -> RoomTopicChanged:
        return RoomTopicChanged(
            room.room_id,
            new or "",
            old or "",
            getattr(changer, "contact_id", None),
            date.timestamp() if date else time.time(),
        )

    async def _login(self, contact: Any) -> LoggedIn:
        self.self_id = contact.contact_id
        self.self_name = contact.name or ""
        return LoggedIn(self.self_id, self.self_name)

    async def _logout(self, contact: Any) -> LoggedOut:
        return LoggedOut(contact.contact_id)

    async def _friendship(self, friendship: Any) -> FriendRequest:
        contact = friendship.contact()
        return FriendRequest(contact.contact_id if contact else "", friendship.hello() or "")

    # --- sending and room facts --------------------------------------------
    async def send(self, out: Outgoing) -> str:
        """Send through wechaty's say(); returns the service's message id."""
        bot = self._bot
        target = (
            bot.Room.load(out.conversation_id)
            if room_like(out.conversation_id)
            else bot.Contact.load(out.conversation_id)
        )
        if out.file_path:
            what: Any = FileBox.from_file(out.file_path, name=Path(out.file_path).name)
            sent = await target.say(what)
        elif room_like(out.conversation_id):
            sent = await target.say(out.text, mention_ids=list(out.mention_ids) or None)
        else:
            sent = await target.say(out.text)
        if sent is None:
            raise WechatyPuppetError(f"send to {out.conversation_id} returned nothing")
        return str(sent.message_id)

    async def room_members(self, room_id: str) -> list[Member]:
        puppet = self._bot.puppet
        ids = await puppet.room_members(room_id)
        members = []
        for member_id in ids:
            payload = await puppet.contact_payload(member_id)
            members.append(Member(member_id, payload.name or member_id))
        return members

    async def room_topic(self, room_id: str) -> str:
        return str((await self._bot.puppet.room_payload(room_id)).topic or "")

    async def room_owner(self, room_id: str) -> str | None:
        return (await self._bot.puppet.room_payload(room_id)).owner_id or None

    async def room_ids(self) -> list[str]:
        return list(await self._bot.puppet.room_list())


async def reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Non-blocking pre-check; wechaty's own check blocks the loop for up to 3 s."""
    host, _, port = endpoint.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), timeout
        )
    except (TimeoutError, OSError, ValueError):
        return False
    writer.close()
    return True

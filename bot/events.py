"""The bot's view of WeChat: small frozen events, free of wechaty types.

Only bot/adapter.py turns wechaty objects into these; everything else
(router, handlers, storage, tests) works with them alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Member:
    id: str
    name: str


@dataclass(frozen=True)
class Incoming:
    """A chat message the bot received."""

    msg_id: str
    room_id: str | None  # None: a private chat with the bot
    sender_id: str
    sender_name: str
    text: str
    timestamp: float  # epoch seconds, the message's own time (not processing time)
    mentions_self: bool = False
    mention_ids: tuple[str, ...] = ()
    is_self: bool = False  # the bot's own message echoed back by the service
    kind: str = "text"  # text | image | other

    @property
    def is_private(self) -> bool:
        return self.room_id is None

    @property
    def conversation_id(self) -> str:
        return self.room_id or self.sender_id


@dataclass(frozen=True)
class MemberJoined:
    room_id: str
    members: tuple[Member, ...]
    inviter_id: str | None  # None when unknown
    via_qrcode: bool
    timestamp: float

    @property
    def channel(self) -> str:
        """Channel of the join (SPEC section 6): inviter id, 'qrcode' or 'unknown'."""
        if self.via_qrcode:
            return "qrcode"
        return self.inviter_id or "unknown"


@dataclass(frozen=True)
class MemberLeft:
    room_id: str
    member_ids: tuple[str, ...]
    remover_id: str | None
    timestamp: float


@dataclass(frozen=True)
class RoomTopicChanged:
    room_id: str
    new_topic: str
    old_topic: str
    changer_id: str | None
    timestamp: float


@dataclass(frozen=True)
class LoggedIn:
    self_id: str
    name: str


@dataclass(frozen=True)
class LoggedOut:
    self_id: str


@dataclass(frozen=True)
class FriendRequest:
    contact_id: str
    hello: str


@dataclass(frozen=True)
class Outgoing:
    """A message the bot wants to send, as the outbox sees it."""

    conversation_id: str  # room id or contact id
    text: str
    mention_ids: tuple[str, ...] = ()
    priority: int = 2  # 0 highest: see bot.outbox.Priority
    coalesce_key: str | None = None  # same key queued twice: only the newest is sent
    file_path: str | None = None  # an image/file to send instead of text
    url: str | None = None  # a link card
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


Event = (
    Incoming | MemberJoined | MemberLeft | RoomTopicChanged | LoggedIn | LoggedOut | FriendRequest
)


@dataclass(frozen=True)
class MemberForgotten:
    """Raised inside the bot after /forget: features delete or anonymise their own data.

    Personal data to remove: name, check-ins, sign-ups in open events, entries in open
    lotteries. Historical aggregates keep their counts under `pseudonym`.
    """

    member_id: str
    pseudonym: str

"""The sandbox gateway's simulated WeChat world: accounts, rooms, what was said.

Pure data, no gRPC: bot/gateway.py serves it over the puppet-service protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MessageKind = Literal[
    "text", "image", "file", "url", "contact", "mini_program", "audio", "video", "emoticon"
]

# MessagePayloadResponse.type on the wire uses the TypeScript wechaty-puppet
# numbering (the python client re-maps it), not the proto enum: text is 7 here.
WIRE_MESSAGE_TYPE: dict[str, int] = {
    "file": 1,  # attachment
    "audio": 2,
    "contact": 3,
    "emoticon": 5,
    "image": 6,
    "text": 7,
    "mini_program": 9,
    "url": 14,
    "video": 15,
}

# WeChat separates an @mention from the following text with U+2005.
AT_SEPARATOR = "\u2005"

# A QR-code join has no inviter. The stock client turns the inviterId of a
# room-join into a Contact and loads it, so the gateway sends this pseudo
# contact id instead of nothing (the adapter maps it to via_qrcode=True).
QRCODE_INVITER = "qrcode"


@dataclass
class RoomState:
    topic: str
    owner_id: str = ""
    member_ids: list[str] = field(default_factory=list)
    announce: str = ""
    inviter_ids: dict[str, str] = field(default_factory=dict)  # member id -> inviter id


@dataclass
class World:
    """The simulated WeChat world: the bot's account, contacts (id -> name), rooms."""

    self_id: str = "wxid_qunbot"
    self_name: str = "群助手"
    contacts: dict[str, str] = field(default_factory=dict)
    rooms: dict[str, RoomState] = field(default_factory=dict)

    def name_of(self, contact_id: str) -> str:
        if contact_id == self.self_id:
            return self.self_name
        return self.contacts.get(contact_id, "")

    def knows(self, contact_id: str) -> bool:
        return contact_id == self.self_id or contact_id in self.contacts

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> World:
        """Build a world from a plain dict (bot.yaml `sandbox` section or a scenario).

        ```yaml
        self_id: wxid_qunbot                      # optional
        self_name: 群助手                          # optional
        contacts: {wxid_carol: Carol}             # optional; or a list of {id, name}
        rooms:                                    # a mapping by id, or a list with `id`
          "12345@chatroom":
            topic: 健身打卡群
            owner: wxid_alice                     # optional
            members: {wxid_alice: Alice, wxid_bob: Bob}
        ```
        `members` may also be a list of ids (each must be a contact) or of
        {id, name}. Named members become contacts. The bot is made a member of
        every room, since it could not see a room it is not in.
        Raises ValueError naming the offending key.
        """
        world = cls()
        world.self_id = _text(spec.get("self_id", world.self_id), "self_id")
        world.self_name = _text(spec.get("self_name", world.self_name), "self_name")
        for cid, name in _named_ids(spec.get("contacts") or {}, "contacts", world):
            world.contacts[cid] = name

        rooms = spec.get("rooms") or {}
        items: list[tuple[str, dict[str, Any]]]
        if isinstance(rooms, Mapping):
            items = [
                (f"rooms.{rid}", {"id": rid, **_mapping(r, f"rooms.{rid}")})
                for rid, r in rooms.items()
            ]
        elif isinstance(rooms, Sequence) and not isinstance(rooms, str):
            items = [(f"rooms[{i}]", _mapping(r, f"rooms[{i}]")) for i, r in enumerate(rooms)]
        else:
            raise ValueError("rooms: expected a mapping by room id or a list of rooms")
        for path, room in items:
            rid = _text(room.get("id"), f"{path}.id")
            members: list[str] = []
            for mid, name in _named_ids(room.get("members") or {}, f"{path}.members", world):
                if mid != world.self_id:
                    world.contacts[mid] = name
                if mid not in members:
                    members.append(mid)
            if world.self_id not in members:
                members.append(world.self_id)
            owner = _text(room.get("owner") or "", f"{path}.owner")
            if owner and owner not in members:
                raise ValueError(f"{path}.owner: {owner!r} is not a member")
            world.rooms[rid] = RoomState(
                topic=_text(room.get("topic") or rid, f"{path}.topic"),
                owner_id=owner,
                member_ids=members,
                announce=_text(room.get("announce") or "", f"{path}.announce"),
            )
        return world


@dataclass(frozen=True)
class SentMessage:
    """One message said in the world, by a member or by the bot."""

    msg_id: str
    conversation_id: str  # room id, or the member's contact id in a private chat
    sender_id: str
    text: str  # for files and images: the file name; for url cards: the url
    timestamp: int  # epoch seconds
    from_bot: bool
    room_id: str | None = None
    mention_ids: tuple[str, ...] = ()
    kind: str = "text"
    data: str = ""  # the JSON the client sent for files, url cards, mini programs


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{path}: expected text, got {value!r}")
    return str(value)


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{path}: expected a mapping, got {value!r}")
    return dict(value)


def _named_ids(value: Any, path: str, world: World) -> list[tuple[str, str]]:
    """(id, name) pairs from {id: name}, [{id, name}] or [id] (ids already known)."""
    if isinstance(value, Mapping):
        return [(_text(k, path), _text(v, f"{path}.{k}")) for k, v in value.items()]
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"{path}: expected a mapping id -> name or a list")
    pairs: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping):
            if "id" not in item:
                raise ValueError(f"{path}[{i}]: missing id")
            cid = _text(item["id"], f"{path}[{i}].id")
            pairs.append((cid, _text(item.get("name", cid), f"{path}[{i}].name")))
        else:
            cid = _text(item, f"{path}[{i}]")
            if not world.knows(cid):
                raise ValueError(
                    f"{path}[{i}]: unknown contact {cid!r}; list it in contacts or give a name"
                )
            pairs.append((cid, world.name_of(cid)))
    return pairs

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
        self: {id: wxid_qunbot, name: 群助手}      # optional
        contacts: {wxid_alice: Alice}             # or a list of {id, name}
        rooms:                                    # a mapping by id, or a list with `id`
          "12345@chatroom":
            topic: 健身打卡群
            owner: wxid_alice                     # optional
            members: [wxid_alice, {id: wxid_bob, name: Bob}]
        ```
        A member given by id alone must be a contact (its name comes from
        `contacts`); `{id, name}` also adds the contact. The bot is made a member
        of every room, since it could not see a room it is not in.
        Raises ValueError naming the offending key.
        """
        world = cls()
        me = spec.get("self") or {}
        if not isinstance(me, Mapping):
            raise ValueError("self: expected a mapping with id and name")
        world.self_id = _text(me.get("id", world.self_id), "self.id")
        world.self_name = _text(me.get("name", world.self_name), "self.name")

        contacts = spec.get("contacts") or {}
        if isinstance(contacts, Mapping):
            for cid, name in contacts.items():
                world.contacts[_text(cid, "contacts")] = _text(name, f"contacts.{cid}")
        elif isinstance(contacts, Sequence) and not isinstance(contacts, str):
            for i, item in enumerate(contacts):
                cid, name = _id_name(item, f"contacts[{i}]")
                world.contacts[cid] = name
        else:
            raise ValueError("contacts: expected a mapping id -> name or a list of {id, name}")

        rooms = spec.get("rooms") or {}
        items: list[tuple[str, Any]]
        if isinstance(rooms, Mapping):
            items = [(f"rooms.{rid}", {"id": rid, **_mapping(r, f"rooms.{rid}")})
                     for rid, r in rooms.items()]
        elif isinstance(rooms, Sequence) and not isinstance(rooms, str):
            items = [(f"rooms[{i}]", _mapping(r, f"rooms[{i}]")) for i, r in enumerate(rooms)]
        else:
            raise ValueError("rooms: expected a mapping by room id or a list of rooms")
        for path, room in items:
            rid = _text(room.get("id"), f"{path}.id")
            members: list[str] = []
            for j, m in enumerate(room.get("members") or []):
                if isinstance(m, Mapping):
                    mid, name = _id_name(m, f"{path}.members[{j}]")
                    world.contacts[mid] = name
                else:
                    mid = _text(m, f"{path}.members[{j}]")
                    if not world.knows(mid):
                        raise ValueError(
                            f"{path}.members[{j}]: unknown contact {mid!r}; "
                            "add it to contacts or give {id, name}"
                        )
                if mid not in members:
                    members.append(mid)
            if world.self_id not in members:
                members.append(world.self_id)
            owner = _text(room.get("owner", ""), f"{path}.owner")
            if owner and owner not in members:
                raise ValueError(f"{path}.owner: {owner!r} is not a member")
            world.rooms[rid] = RoomState(
                topic=_text(room.get("topic", rid), f"{path}.topic"),
                owner_id=owner,
                member_ids=members,
                announce=_text(room.get("announce", ""), f"{path}.announce"),
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


def _id_name(value: Any, path: str) -> tuple[str, str]:
    item = _mapping(value, path)
    if "id" not in item:
        raise ValueError(f"{path}: missing id")
    cid = _text(item["id"], f"{path}.id")
    return cid, _text(item.get("name", cid), f"{path}.name")

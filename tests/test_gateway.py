"""The sandbox gateway, driven by the stock wechaty client over real gRPC.

Every wait is bounded and event-driven (the gateway's and the recorder's
change notifications); nothing sleeps to let things happen.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bot.clock import FakeClock
from bot.gateway import (
    QRCODE_INVITER,
    NoClientError,
    RoomState,
    SandboxGateway,
    SentMessage,
    World,
)
from bot.wechaty_shim import import_wechaty

wechaty = import_wechaty()

import wechaty_grpc.wechaty as grpc_module  # noqa: E402  (after the import shim)
from wechaty import Wechaty, WechatyOptions  # noqa: E402
from wechaty.user.contact import Contact  # noqa: E402
from wechaty.user.room import Room  # noqa: E402
from wechaty.user.tag import Tag  # noqa: E402
from wechaty.utils.async_helper import SingleIdContainer  # noqa: E402
from wechaty_grpc.wechaty import PuppetStub  # noqa: E402
from wechaty_grpc.wechaty.puppet import EventType  # noqa: E402
from wechaty_puppet import FileBox, MessageType, PuppetOptions  # noqa: E402

TOKEN = "sandbox-test-token"
ROOM = "10001@chatroom"
OTHER_ROOM = "10002@chatroom"
BOT_ID = "wxid_qunbot"
WAIT_S = 10.0  # upper bound of every wait: a missing event fails instead of hanging

# The shape of bot.yaml's `sandbox` section (bot/config.py SandboxSettings).
SPEC: dict[str, Any] = {
    "self_id": BOT_ID,
    "self_name": "群助手",
    "rooms": {
        ROOM: {"topic": "健身打卡群", "owner": "wxid_mgr",
               "members": {"wxid_alice": "Alice", "wxid_bob": "Bob", "wxid_mgr": "店长"}},
        OTHER_ROOM: {"topic": "其他群", "members": {"wxid_alice": "Alice"}},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Changes:
    """A list of records with event-driven waiting; each record is taken once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Event()

    def add(self, kind: str, **data: Any) -> None:
        self.items.append((kind, data))
        self._changed.set()
        self._changed = asyncio.Event()

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.items if k == kind]

    async def next(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            while True:
                for i, (k, d) in enumerate(self.items):
                    if i not in self._taken and k == kind and where(d):
                        self._taken.add(i)
                        return d
                await self._changed.wait()


class _LogTap(logging.Handler):
    """Wechaty logs handler exceptions as 'internal error' and goes on: keep them."""

    def __init__(self, changes: Changes) -> None:
        super().__init__(logging.WARNING)
        self.changes = changes

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.changes.add("log-error", text=record.getMessage())


class RecordingBot(Wechaty):
    """A stock Wechaty that records what it sees as plain data."""

    def __init__(self, options: WechatyOptions, changes: Changes) -> None:
        super().__init__(options)
        self.changes = changes
        self.errors: list[BaseException] = []

    async def _guard(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except BaseException as exc:  # wechaty would swallow it
            self.errors.append(exc)
            raise

    async def on_login(self, contact: Any) -> None:
        async def work() -> None:
            self.changes.add("login", id=contact.contact_id, name=contact.name)

        await self._guard(work)

    async def on_logout(self, contact: Any) -> None:
        async def work() -> None:
            self.changes.add("logout", id=contact.contact_id)

        await self._guard(work)

    async def on_message(self, msg: Any) -> None:
        async def work() -> None:
            room = msg.room()
            to = msg.to()
            self.changes.add(
                "message",
                id=msg.message_id,
                text=msg.text(),
                type=msg.type(),
                talker=msg.talker().contact_id,
                talker_name=msg.talker().name,
                room=room.room_id if room else None,
                topic=await room.topic() if room else None,
                to=to.contact_id if to else None,
                is_self=msg.is_self(),
                mentions=[c.contact_id for c in await msg.mention_list()],
                mention_self=await msg.mention_self(),
                date=msg.date(),
                msg=msg,
            )

        await self._guard(work)

    async def on_room_join(self, room: Any, invitees: Any, inviter: Any, date: Any) -> None:
        async def work() -> None:
            self.changes.add(
                "join",
                room=room.room_id,
                invitees=[(c.contact_id, c.name) for c in invitees],
                inviter=inviter.contact_id,
                date=date,
            )

        await self._guard(work)

    async def on_room_leave(self, room: Any, leavers: Any, remover: Any, date: Any) -> None:
        async def work() -> None:
            self.changes.add(
                "leave",
                room=room.room_id,
                leavers=[c.contact_id for c in leavers],
                remover=remover.contact_id,
                date=date,
            )

        await self._guard(work)

    async def on_room_topic(
        self, room: Any, new_topic: str, old_topic: str, changer: Any, date: Any
    ) -> None:
        async def work() -> None:
            self.changes.add(
                "topic", room=room.room_id, new=new_topic, old=old_topic,
                changer=changer.contact_id, date=date,
            )

        await self._guard(work)

    async def on_friendship(self, friendship: Any) -> None:
        async def work() -> None:
            self.changes.add(
                "friendship", id=friendship.friendship_id,
                contact=friendship.contact().contact_id, hello=friendship.hello(),
            )

        await self._guard(work)


class Harness:
    """One stock client connected to a gateway, run the way the notes advise."""

    def __init__(self, gw: SandboxGateway, token: str = TOKEN) -> None:
        self.gw = gw
        self.changes = Changes()
        options = WechatyOptions(
            puppet="wechaty-puppet-service",
            puppet_options=PuppetOptions(end_point=gw.endpoint, token=token),
            port=free_port(),  # the plugin manager refuses a port in use
        )
        self.bot = RecordingBot(options, self.changes)
        self.task: asyncio.Task[None] | None = None
        self.expected_log_errors: list[str] = []

    def start(self) -> asyncio.Task[None]:
        # Wechaty.start() only returns when the event stream ends: run it aside.
        self.task = asyncio.create_task(self.bot.start())
        return self.task

    async def connect(self) -> dict[str, Any]:
        self.start()
        return await self.changes.next("login")

    async def reconnect(self) -> None:
        """What a supervisor does after the service went away: start again."""
        if self.task is not None and not self.task.done():
            self.task.cancel()  # it sits in wechaty's fixed 60 s sleep
            await asyncio.gather(self.task, return_exceptions=True)
        self.start()
        await self.gw.wait_connected()

    async def message(self, text: str) -> dict[str, Any]:
        return await self.changes.next("message", lambda m: m["text"] == text)

    async def close(self) -> None:
        if self.task is not None:
            if self.gw.connected:
                await self.gw.end_stream()
            if not self.task.done():
                self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        puppet = self.bot._puppet
        if puppet is not None and puppet.channel is not None:
            puppet.channel.close()
        scheduler = self.bot._plugin_manager.scheduler
        if scheduler.running:
            scheduler.shutdown(wait=False)


@pytest.fixture(autouse=True)
def fresh_wechaty_caches() -> None:
    # Class-level pools and the process-wide message-id filter outlive a bot.
    Contact._pool.clear()
    Room._pool.clear()
    Tag._pool.clear()
    SingleIdContainer._instance = None


@pytest.fixture
def world() -> World:
    return World.from_spec(SPEC)


@pytest.fixture
async def gw(world: World) -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(world, token=TOKEN, heartbeat_s=0) as gateway:
        yield gateway


@pytest.fixture
async def client(gw: SandboxGateway) -> AsyncIterator[Harness]:
    harness = Harness(gw)
    tap = _LogTap(harness.changes)
    wechaty_log = logging.getLogger("Wechaty")
    wechaty_log.addHandler(tap)
    try:
        yield harness
    finally:
        await harness.close()
        wechaty_log.removeHandler(tap)
    assert harness.bot.errors == []
    unexpected = [
        e["text"] for e in harness.changes.all("log-error")
        if not any(allowed in e["text"] for allowed in harness.expected_log_errors)
    ]
    assert unexpected == []


@pytest.fixture
async def bot(client: Harness) -> Harness:
    await client.connect()
    await client.gw.wait_connected()
    return client


# --------------------------------------------------------------------- world


def test_world_from_spec_mapping_and_list_forms() -> None:
    world = World.from_spec(SPEC)
    assert world.self_id == BOT_ID and world.self_name == "群助手"
    assert world.contacts == {"wxid_alice": "Alice", "wxid_bob": "Bob", "wxid_mgr": "店长"}
    assert world.rooms[ROOM] == RoomState(
        topic="健身打卡群", owner_id="wxid_mgr",
        member_ids=["wxid_alice", "wxid_bob", "wxid_mgr", BOT_ID],
    )
    listed = World.from_spec({
        "contacts": [{"id": "wxid_a", "name": "A"}],
        "rooms": [{"id": "r@chatroom", "members": ["wxid_a", {"id": "wxid_b", "name": "B"}]}],
    })
    assert listed.contacts == {"wxid_a": "A", "wxid_b": "B"}
    assert listed.rooms["r@chatroom"].member_ids == ["wxid_a", "wxid_b", "wxid_qunbot"]
    assert listed.rooms["r@chatroom"].topic == "r@chatroom"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"rooms": {"r@chatroom": {"members": ["wxid_nobody"]}}}, "rooms.r@chatroom.members[0]"),
        ({"rooms": [{"topic": "t"}]}, "rooms[0].id"),
        ({"contacts": "alice"}, "contacts"),
        ({"rooms": {"r@chatroom": {"members": [{"name": "x"}]}}}, "rooms.r@chatroom.members[0]"),
        ({"rooms": {"r@chatroom": {"owner": "wxid_x"}}}, "rooms.r@chatroom.owner"),
    ],
)
def test_world_from_spec_errors_name_the_key(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(ValueError, match=re.escape(path)):
        World.from_spec(spec)


# ------------------------------------------------------------- raw protocol


@asynccontextmanager
async def raw_client(
    gw: SandboxGateway, token: str = TOKEN
) -> AsyncIterator[tuple[PuppetStub, asyncio.Queue[Any]]]:
    """The generated stub on a grpclib channel, as PuppetService builds it."""
    channel = Channel("127.0.0.1", gw.port)
    channel._authority = token  # how the client sends its token
    stub = PuppetStub(channel)
    events: asyncio.Queue[Any] = asyncio.Queue()
    pump: asyncio.Task[None] | None = None

    async def read_events() -> None:
        async for event in stub.event():
            events.put_nowait((event.type, json.loads(event.payload)))

    try:
        await stub.start()
        pump = asyncio.create_task(read_events())
        yield stub, events
    finally:
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        channel.close()


async def next_event(events: asyncio.Queue[Any]) -> tuple[int, Any]:
    async with asyncio.timeout(WAIT_S):
        item: tuple[int, Any] = await events.get()
        return item


async def test_wrong_token_is_refused(gw: SandboxGateway) -> None:
    channel = Channel("127.0.0.1", gw.port)
    channel._authority = "not-the-token"
    try:
        with pytest.raises(GRPCError) as refused:
            await PuppetStub(channel).start()
        assert refused.value.status == Status.UNAUTHENTICATED
    finally:
        channel.close()


async def test_empty_gateway_token_accepts_any_token(world: World) -> None:
    async with (
        SandboxGateway(world, heartbeat_s=0) as open_gw,
        raw_client(open_gw, token="whatever") as (_, events),
    ):
        assert await next_event(events) == (EventType.EVENT_TYPE_LOGIN, {"contactId": BOT_ID})


async def test_login_ready_heartbeat_and_dong_on_the_wire(world: World) -> None:
    clock = FakeClock()
    async with (
        SandboxGateway(world, token=TOKEN, heartbeat_s=15, clock=clock) as gw,
        raw_client(gw) as (stub, events),
    ):
        assert await next_event(events) == (EventType.EVENT_TYPE_LOGIN, {"contactId": BOT_ID})
        assert await next_event(events) == (EventType.EVENT_TYPE_READY, {"data": "ready"})
        await clock.advance(15)
        kind, payload = await next_event(events)
        assert kind == EventType.EVENT_TYPE_HEARTBEAT and set(payload) == {"data"}
        await stub.ding(data="probe-1")
        assert await next_event(events) == (EventType.EVENT_TYPE_DONG, {"data": "probe-1"})
        assert (await stub.version()).version
        assert gw.connections == 1


async def test_mute_silences_open_streams_only(gw: SandboxGateway) -> None:
    async with raw_client(gw) as (stub, old):
        await next_event(old)  # login
        await next_event(old)  # ready
        gw.mute = True  # the open connection goes half-open
        assert gw.mute
        await stub.ding(data="lost")
        async with raw_client(gw) as (_, new):  # a reconnect is live
            assert (await next_event(new))[0] == EventType.EVENT_TYPE_LOGIN
            await next_event(new)  # ready
            await stub.ding(data="while-muted")
            assert await next_event(new) == (EventType.EVENT_TYPE_DONG, {"data": "while-muted"})
            gw.mute = False
            await stub.ding(data="back")
            assert await next_event(old) == (EventType.EVENT_TYPE_DONG, {"data": "back"})


async def test_message_payload_uses_typescript_numbering(gw: SandboxGateway) -> None:
    async with raw_client(gw) as (stub, events):
        await next_event(events)  # login
        await next_event(events)  # ready
        msg_id = await gw.say("wxid_alice", "打卡", room_id=ROOM, mention_self=True,
                              timestamp=1_800_000_123.9)
        assert await next_event(events) == (EventType.EVENT_TYPE_MESSAGE, {"messageId": msg_id})
        payload = await stub.message_payload(id=msg_id)
        assert payload.type == 7  # TypeScript Text, not the proto enum's 6
        assert (payload.from_id, payload.room_id, payload.to_id) == ("wxid_alice", ROOM, "")
        assert payload.text == "@群助手\u2005打卡"
        assert payload.mention_ids == [BOT_ID]
        assert payload.timestamp == 1_800_000_123


def test_every_rpc_the_client_can_call_is_served(gw: SandboxGateway) -> None:
    stub_paths = set(re.findall(r'"(/wechaty\.Puppet/\w+)"', inspect.getsource(grpc_module)))
    missing = {p.rsplit("/", 1)[1] for p in stub_paths - set(gw.__mapping__())}
    # Streams the python client never uses, and invitations the sandbox never sends.
    assert missing == {
        "MessageFileStream", "MessageImageStream", "MessageSendFileStream",
        "RoomInvitationPayload", "RoomInvitationAccept",
    }


# --------------------------------------------------------------- stock client


async def test_stock_client_needs_a_non_empty_token(
    gw: SandboxGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no token the client sends :authority None and fails before any RPC:
    # callers must pass some token even when the gateway accepts any.
    for var in ("WECHATY_PUPPET_SERVICE_TOKEN", "TOKEN", "token"):
        monkeypatch.delenv(var, raising=False)
    options = WechatyOptions(
        puppet="wechaty-puppet-service",
        puppet_options=PuppetOptions(end_point=gw.endpoint, token=None),
        port=free_port(),
    )
    puppet = Wechaty(options).puppet
    try:
        with pytest.raises(AttributeError, match="encode"):
            await puppet.start()
    finally:
        if puppet.channel is not None:
            puppet.channel.close()
    assert gw.connections == 0


async def test_login_event_carries_the_bot_id(client: Harness) -> None:
    login = await client.connect()
    assert login == {"id": BOT_ID, "name": "群助手"}
    assert client.bot.puppet.self_id() == BOT_ID


async def test_room_text_arrives_with_room_talker_type_and_mentions(bot: Harness) -> None:
    msg_id = await bot.gw.say("wxid_alice", "ping", room_id=ROOM, mention_self=True,
                              timestamp=1_800_000_000)
    got = await bot.changes.next("message", lambda m: m["id"] == msg_id)
    assert got["text"] == "@群助手\u2005ping"
    assert got["type"] == MessageType.MESSAGE_TYPE_TEXT
    assert (got["talker"], got["talker_name"], got["room"]) == ("wxid_alice", "Alice", ROOM)
    assert got["topic"] == "健身打卡群"
    assert got["mentions"] == [BOT_ID] and got["mention_self"] is True
    assert got["is_self"] is False
    assert got["date"] == datetime.fromtimestamp(1_800_000_000)


async def test_say_is_stored_in_transcript_and_echoed_as_own_message(bot: Harness) -> None:
    await bot.gw.say("wxid_bob", "ping", room_id=ROOM)
    ping = await bot.message("ping")
    reply = await ping["msg"].say("pong")  # reads the sent message back by id

    assert reply.text() == "pong" and reply.room().room_id == ROOM
    sent = await bot.gw.wait_for_bot_message(conversation_id=ROOM)
    assert (sent.msg_id, sent.text, sent.from_bot, sent.sender_id) == (
        reply.message_id, "pong", True, BOT_ID)
    assert [m.text for m in bot.gw.transcript] == ["ping", "pong"]

    echo = await bot.message("pong")
    assert echo["id"] == reply.message_id
    assert echo["is_self"] is True and echo["talker"] == BOT_ID


async def test_mentions_sent_by_the_bot_reach_the_payload(bot: Harness) -> None:
    room = bot.bot.Room.load(ROOM)
    await room.ready()
    await room.say("请签到", mention_ids=["wxid_alice"])
    sent = await bot.gw.wait_for_bot_message(conversation_id=ROOM)
    assert sent.mention_ids == ("wxid_alice",)
    assert sent.text.startswith("@Alice") and sent.text.endswith("请签到")


async def test_private_chat_both_ways(bot: Harness) -> None:
    await bot.gw.say("wxid_alice", "/help")
    got = await bot.message("/help")
    assert got["room"] is None and got["talker"] == "wxid_alice" and got["to"] == BOT_ID
    assert got["mentions"] == []

    await got["msg"].say("帮助")
    sent = await bot.gw.wait_for_bot_message(conversation_id="wxid_alice")
    assert sent.room_id is None and sent.text == "帮助"
    echo = await bot.message("帮助")
    assert echo["is_self"] and echo["room"] is None and echo["to"] == "wxid_alice"
    assert bot.gw.bot_messages("wxid_alice") == [sent]
    assert bot.gw.bot_messages(ROOM) == []


async def test_files_and_url_cards_are_stored_with_their_kind(bot: Harness) -> None:
    room = bot.bot.Room.load(ROOM)
    await room.ready()
    image = await room.say(FileBox.from_base64(b"iVBORw0KGgo=", name="chart.png"))
    assert image.type() == MessageType.MESSAGE_TYPE_IMAGE
    sent = await bot.gw.wait_for_bot_message(conversation_id=ROOM)
    assert (sent.kind, sent.text) == ("image", "chart.png")
    assert json.loads(sent.data)["name"] == "chart.png"

    card = json.dumps({"url": "https://example.com/e/1", "title": "报名"})
    await bot.bot.puppet.message_send_url(conversation_id=ROOM, url=card)
    sent = await bot.gw.wait_for_bot_message(lambda m: m.kind == "url")
    assert sent.text == "https://example.com/e/1"


async def test_sending_where_the_bot_cannot_fails(bot: Harness) -> None:
    with pytest.raises(GRPCError) as unknown:
        await bot.bot.puppet.message_send_text(conversation_id="nope@chatroom", message="x")
    assert unknown.value.status == Status.NOT_FOUND
    await bot.gw.leave(OTHER_ROOM, [BOT_ID], remover_id="wxid_alice")
    await bot.changes.next("leave")
    with pytest.raises(GRPCError) as kicked:
        await bot.bot.puppet.message_send_text(conversation_id=OTHER_ROOM, message="x")
    assert kicked.value.status == Status.FAILED_PRECONDITION


async def test_room_join_with_inviter_qrcode_and_unknown(bot: Harness) -> None:
    await bot.gw.join(ROOM, [("wxid_new1", "小王")], inviter_id="wxid_alice",
                      timestamp=1_800_000_500)
    join = await bot.changes.next("join")
    assert join == {"room": ROOM, "invitees": [("wxid_new1", "小王")],
                    "inviter": "wxid_alice", "date": datetime.fromtimestamp(1_800_000_500)}

    await bot.gw.join(ROOM, [("wxid_new2", "小李"), ("wxid_new3", "小张")], qrcode=True)
    join = await bot.changes.next("join")
    assert join["inviter"] == QRCODE_INVITER
    assert [cid for cid, _ in join["invitees"]] == ["wxid_new2", "wxid_new3"]

    await bot.gw.join(ROOM, [("wxid_new4", "小赵")])
    assert (await bot.changes.next("join"))["inviter"] == ""

    room = bot.gw.world.rooms[ROOM]
    assert {"wxid_new1", "wxid_new2", "wxid_new3", "wxid_new4"} <= set(room.member_ids)
    # A new member can talk right away, with their name.
    await bot.gw.say("wxid_new2", "大家好", room_id=ROOM)
    assert (await bot.message("大家好"))["talker_name"] == "小李"


async def test_room_leave_and_topic_change(bot: Harness) -> None:
    await bot.gw.leave(ROOM, ["wxid_bob"], remover_id="wxid_mgr", timestamp=1_800_000_600)
    leave = await bot.changes.next("leave")
    assert leave == {"room": ROOM, "leavers": ["wxid_bob"], "remover": "wxid_mgr",
                     "date": datetime.fromtimestamp(1_800_000_600)}
    await bot.gw.leave(ROOM, ["wxid_alice"])
    assert (await bot.changes.next("leave"))["remover"] == ""
    assert "wxid_bob" not in bot.gw.world.rooms[ROOM].member_ids
    with pytest.raises(ValueError, match="not a member"):
        await bot.gw.say("wxid_bob", "还在吗", room_id=ROOM)

    await bot.gw.change_topic(ROOM, "新群名", changer_id="wxid_mgr")
    topic = await bot.changes.next("topic")
    assert (topic["room"], topic["new"], topic["old"], topic["changer"]) == (
        ROOM, "新群名", "健身打卡群", "wxid_mgr")


async def test_friend_request_and_logout(bot: Harness) -> None:
    fid = await bot.gw.friend_request("wxid_stranger", "路人", hello="想入群")
    got = await bot.changes.next("friendship")
    assert got == {"id": fid, "contact": "wxid_stranger", "hello": "想入群"}
    await bot.gw.logout()
    assert (await bot.changes.next("logout"))["id"] == BOT_ID


async def test_subscribe_sees_every_message_until_unsubscribed(bot: Harness) -> None:
    seen: list[SentMessage] = []
    unsubscribe = bot.gw.subscribe(seen.append)
    await bot.gw.say("wxid_alice", "hi", room_id=ROOM)
    await bot.message("hi")
    await bot.bot.puppet.message_send_text(conversation_id=ROOM, message="hello")
    assert [(m.text, m.from_bot) for m in seen] == [("hi", False), ("hello", True)]
    unsubscribe()
    await bot.gw.say("wxid_alice", "bye", room_id=ROOM)
    assert len(seen) == 2


async def test_wait_for_bot_message_takes_each_reply_once(bot: Harness) -> None:
    for text in ("one", "two"):
        await bot.bot.puppet.message_send_text(conversation_id=ROOM, message=text)
    assert (await bot.gw.wait_for_bot_message()).text == "one"
    assert (await bot.gw.wait_for_bot_message()).text == "two"
    with pytest.raises(TimeoutError):
        await bot.gw.wait_for_bot_message(timeout=0.05)


async def test_injecting_without_a_client_raises(gw: SandboxGateway) -> None:
    with pytest.raises(NoClientError):
        await gw.say("wxid_alice", "anyone?", room_id=ROOM)
    assert gw.transcript == []


async def test_end_stream_makes_start_return(bot: Harness) -> None:
    assert bot.task is not None
    await bot.gw.end_stream()
    async with asyncio.timeout(10):
        await bot.task  # the stock client does not reconnect by itself
    assert not bot.gw.connected


async def test_stop_and_restart_on_the_same_port(bot: Harness) -> None:
    gw = bot.gw
    port = gw.port
    bot.expected_log_errors += ["restart after 60 seconds", "Scheduler is already running"]
    first = await gw.say("wxid_alice", "before", room_id=ROOM)
    await bot.message("before")

    await gw.stop()
    assert not gw.connected
    # The client notices the service went away (and would sleep 60 s).
    await bot.changes.next("log-error", lambda e: "restart after 60 seconds" in e["text"])
    with pytest.raises(NoClientError):
        await gw.say("wxid_alice", "lost", room_id=ROOM)

    await gw.start(port=port)
    assert gw.port == port
    await bot.reconnect()
    assert gw.connections == 2
    second = await gw.say("wxid_alice", "after", room_id=ROOM)
    got = await bot.message("after")
    assert got["id"] == second != first

    await gw.restart()
    assert gw.port == port
    await bot.reconnect()
    third = await gw.say("wxid_alice", "again", room_id=ROOM)
    assert (await bot.message("again"))["id"] == third
    assert gw.connections == 3


async def test_message_ids_unique_across_gateways_and_restarts(world: World) -> None:
    ids: list[str] = []
    for _ in range(2):
        async with SandboxGateway(world, heartbeat_s=0) as gw:
            for round_ in range(2):
                async with raw_client(gw) as (stub, events):
                    await gw.wait_connected()
                    ids.append(await gw.say("wxid_alice", "x", room_id=ROOM))
                    sent = await stub.message_send_text(conversation_id=ROOM, text="y")
                    ids.append(sent.id)
                if round_ == 0:
                    await gw.restart()
    assert len(ids) == 8 and len(set(ids)) == 8


async def test_redeliver_sends_the_same_id_which_the_stock_client_drops(
    bot: Harness,
) -> None:
    msg_id = await bot.gw.say("wxid_alice", "dup", room_id=ROOM)
    await bot.message("dup")
    await bot.gw.redeliver(msg_id)
    # A later message is handled, the redelivered one was filtered by wechaty.
    await bot.gw.say("wxid_alice", "later", room_id=ROOM)
    await bot.message("later")
    assert [m["id"] for m in bot.changes.all("message") if m["text"] == "dup"] == [msg_id]

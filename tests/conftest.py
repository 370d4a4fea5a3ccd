"""The integration harness: the real bot, connected through the stock wechaty client
to the sandbox gateway on an ephemeral port. Tests read like conversations:

    reply = await bot.ask("报名", by=XIAOMING)
    assert "第 1 位" in reply.text

Every handler exception is collected and fails the test at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import config
from bot.app import App
from bot.config import Settings
from bot.gateway import SandboxGateway, SentMessage, World

ROOM = "10001@chatroom"
ROOM2 = "10002@chatroom"
OUTSIDE_ROOM = "99999@chatroom"  # exists in WeChat, not served by the bot
BOT_ID = "wxid_qunbot"
MANAGER = "wxid_manager"
XIAOMING, XIAOHONG, AQIANG, LILY = "wxid_xiaoming", "wxid_xiaohong", "wxid_aqiang", "wxid_lily"
NAMES = {MANAGER: "群主", XIAOMING: "小明", XIAOHONG: "小红", AQIANG: "阿强", LILY: "Lily"}

WORLD_SPEC: dict[str, Any] = {
    "self_id": BOT_ID,
    "self_name": "群助手",
    "contacts": dict(NAMES),
    "rooms": {
        ROOM: {"topic": "健身打卡群", "owner": MANAGER, "members": list(NAMES)},
        ROOM2: {"topic": "瑜伽群", "owner": MANAGER, "members": [MANAGER, XIAOMING, LILY]},
        OUTSIDE_ROOM: {"topic": "别的群", "members": [XIAOMING, AQIANG]},
    },
}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Test settings: the spec's defaults except a fast governor (limits are tested on their own)."""
    raw: dict[str, Any] = {
        "rooms": [ROOM, ROOM2],
        "admins": [MANAGER],
        "data_dir": str(data_dir),
        "send": {
            "per_room_per_min": 10_000,
            "global_per_min": 10_000,
            "daily_cap": 100_000,
            "min_interval_ms": 0,
            "jitter_ms": 0,
            "cooldown_s": 3600,
        },
        "web": {"enabled": False},
        "puppet": {"watchdog_s": 30},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return config.parse(raw, env={})


class BotHarness:
    def __init__(self, gateway: SandboxGateway, settings: Settings) -> None:
        self.gw = gateway
        self.settings = settings
        self.errors: list[BaseException] = []
        self.app: App | None = None
        self._app_kwargs: dict[str, Any] = {}

    async def start(self, **app_kwargs: Any) -> App:
        self._app_kwargs = app_kwargs
        self.app = App(
            self.settings,
            endpoint=self.gw.endpoint,
            on_error=self.errors.append,
            backoff_initial=0.05,
            **app_kwargs,
        )
        self.app.gateway = self.gw
        await self.app.start()
        await self.app.wait_ready()
        await self.app.ctx.outbox.wait_idle()  # type: ignore[union-attr]  # login work's messages
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def restart(self) -> App:
        """Stop the bot process and start a new one on the same data directory."""
        await self.stop()
        return await self.start(**self._app_kwargs)

    @property
    def ctx(self) -> Any:
        assert self.app is not None and self.app.ctx is not None
        return self.app.ctx

    @property
    def store(self) -> Any:
        return self.ctx.store

    # --- talking ------------------------------------------------------------
    async def say(
        self, text: str, *, by: str = XIAOMING, room: str | None = ROOM, **kw: Any
    ) -> str:
        """Send a message and wait until the bot has fully handled it and sent what it had to say."""
        assert self.app is not None
        msg_id = await self.gw.say(by, text, room_id=room, **kw)
        await self.app.wait_handled(msg_id)
        await self.app.ctx.outbox.wait_idle()  # type: ignore[union-attr]
        return msg_id

    async def ask(
        self, text: str, *, by: str = XIAOMING, room: str | None = ROOM, **kw: Any
    ) -> SentMessage:
        """Send a message and return the bot's one reply to it (fails if there is none or several)."""
        replies = await self.replies_to(text, by=by, room=room, **kw)
        assert len(replies) == 1, f"expected one reply to {text!r}, got {[r.text for r in replies]}"
        return replies[0]

    async def replies_to(
        self, text: str, *, by: str = XIAOMING, room: str | None = ROOM, **kw: Any
    ) -> list[SentMessage]:
        conversation = room or by
        before = len(self.gw.bot_messages(conversation))
        await self.say(text, by=by, room=room, **kw)
        return self.gw.bot_messages(conversation)[before:]

    async def silent(
        self, text: str, *, by: str = XIAOMING, room: str | None = ROOM, **kw: Any
    ) -> None:
        replies = await self.replies_to(text, by=by, room=room, **kw)
        assert replies == [], f"expected silence after {text!r}, got {[r.text for r in replies]}"

    def room_messages(self, room: str = ROOM) -> list[str]:
        return [m.text for m in self.gw.bot_messages(room)]


@pytest.fixture
def world() -> World:
    return World.from_spec(WORLD_SPEC)


@pytest.fixture
async def gateway(world: World) -> AsyncIterator[SandboxGateway]:
    gw = SandboxGateway(world, heartbeat_s=5)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def harness(gateway: SandboxGateway, settings: Settings) -> AsyncIterator[BotHarness]:
    h = BotHarness(gateway, settings)
    try:
        yield h
    finally:
        await h.stop()
    if h.errors:
        raise AssertionError(f"handler errors: {h.errors!r}") from h.errors[0]


@pytest.fixture
async def bot(harness: BotHarness) -> BotHarness:
    """A running bot in the default world (rooms ROOM and ROOM2 served)."""
    await harness.start()
    return harness

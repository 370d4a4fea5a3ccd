"""Welcome messages: template fields, batching of join waves, the governor, no self-welcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FakeClock, settle
from bot.gateway import SandboxGateway, World
from handlers.welcome import BATCH_S, render
from tests.conftest import BOT_ID, ROOM, ROOM2, WORLD_SPEC, XIAOMING, BotHarness, make_settings
from tests.test_analytics_chat import until

TEMPLATE = "欢迎 {name} 加入 {room}！邀请人：{inviter} {unknown}"
START = 1_741_000_000.0  # 2025-03-03 19:06 +08:00


class Room:
    def __init__(self, h: BotHarness, clock: FakeClock) -> None:
        self.h, self.clock, self.gw = h, clock, h.gw

    def welcomes(self, room: str = ROOM) -> list[str]:
        return [m.text for m in self.gw.bot_messages(room) if m.text.startswith("欢迎")]

    def pending(self, room: str = ROOM) -> set[str]:
        state = self.h.ctx.services.get("welcome", {}).get(room)
        return set(state.members) if state else set()

    async def join(self, ids: list[str], **kw: Any) -> None:
        await self.gw.join(ROOM, [(i, f"新人{i[-2:]}") for i in ids], **kw)

    async def window_passes(self) -> None:
        await self.clock.advance(BATCH_S)
        await settle()
        await self.h.ctx.outbox.wait_idle()


async def _start(tmp_path: Path, **overrides: Any) -> tuple[BotHarness, FakeClock]:
    clock = FakeClock(START)
    gw = SandboxGateway(World.from_spec(WORLD_SPEC), heartbeat_s=0, clock=clock)
    await gw.start()
    settings = make_settings(tmp_path / "data", rooms=[{"id": ROOM, "welcome": TEMPLATE}, ROOM2],
                             **overrides)
    h = BotHarness(gw, settings)
    await h.start(clock=clock)
    await h.ctx.outbox.wait_idle()  # the privacy notice
    return h, clock


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    h, clock = await _start(tmp_path)
    try:
        yield Room(h, clock)
    finally:
        await h.stop()
        await h.gw.stop()
    assert not h.errors, h.errors


async def test_single_join_with_template_fields(room: Room) -> None:
    await room.join(["wxid_new01"], inviter_id=XIAOMING)
    await until(room.h, lambda: room.pending() == {"wxid_new01"})
    assert room.welcomes() == []  # batched: nothing before the window closes
    await room.window_passes()
    # {name}, {room} (the topic), {inviter} (a name, not an id); unknown fields stay as written
    assert room.welcomes() == ["欢迎 新人01 加入 健身打卡群！邀请人：小明 {unknown}"]
    sent = [m for m in room.gw.bot_messages(ROOM) if m.text.startswith("欢迎")]
    assert sent[0].mention_ids == ()
    assert room.pending() == set()


async def test_qr_code_join_names_the_channel(room: Room) -> None:
    await room.join(["wxid_new02"], qrcode=True)
    await until(room.h, lambda: room.pending())
    await room.window_passes()
    assert room.welcomes() == ["欢迎 新人02 加入 健身打卡群！邀请人：扫码 {unknown}"]


async def test_ten_joins_at_once_get_one_welcome_naming_all(room: Room) -> None:
    ids = [f"wxid_wave{k:02d}" for k in range(10)]
    for member_id in ids:  # ten separate join events in the same moment
        await room.join([member_id], inviter_id=XIAOMING)
    await until(room.h, lambda: room.pending() == set(ids))
    await room.window_passes()
    texts = room.welcomes()
    assert len(texts) == 1
    for member_id in ids:
        assert f"新人{member_id[-2:]}" in texts[0]
    assert texts[0].count("、") == 9
    # the next join opens a new window: a new welcome for the newcomer only
    await room.join(["wxid_late01"])
    await until(room.h, lambda: room.pending())
    await room.window_passes()
    assert room.welcomes()[1] == "欢迎 新人01 加入 健身打卡群！邀请人： {unknown}"


async def test_no_welcome_for_the_bot_or_without_template(room: Room) -> None:
    await room.gw.join(ROOM, [(BOT_ID, "群助手")], inviter_id=XIAOMING)
    await room.gw.join(ROOM2, [("wxid_new03", "新人03")], inviter_id=XIAOMING)
    await until(room.h, lambda: room.h.store.members.get(ROOM2, "wxid_new03") is not None)
    await room.window_passes()
    assert room.pending() == set() and room.pending(ROOM2) == set()
    assert room.welcomes() == [] and room.welcomes(ROOM2) == []


async def test_old_replayed_join_is_not_welcomed(room: Room) -> None:
    await room.join(["wxid_old01"], timestamp=START - 3600)
    await until(room.h, lambda: room.h.store.members.get(ROOM, "wxid_old01") is not None)
    await room.window_passes()
    assert room.welcomes() == []


async def test_welcome_waiting_in_the_governor_absorbs_the_next_wave(tmp_path: Path) -> None:
    # one send per room per minute: the privacy notice went out at login, so the welcome waits
    h, clock = await _start(tmp_path, send={"per_room_per_min": 1})
    r = Room(h, clock)
    try:
        await r.join(["wxid_a01", "wxid_a02"], inviter_id=XIAOMING)
        await until(r.h, lambda: r.pending() == {"wxid_a01", "wxid_a02"})
        await clock.advance(BATCH_S)
        await settle()
        assert h.ctx.outbox.stats().queued.get(ROOM) == 1  # the first welcome waits its turn
        await r.join(["wxid_b03"], qrcode=True)
        await until(r.h, lambda: len(r.pending()) == 3)
        await clock.advance(BATCH_S)
        await settle()
        assert h.ctx.outbox.stats().queued.get(ROOM) == 1  # replaced, not added
        await clock.advance(60)
        await h.ctx.outbox.wait_idle()
        names, inviters = "新人01、新人02、新人03", "小明、扫码"
        assert r.welcomes() == [f"欢迎 {names} 加入 健身打卡群！邀请人：{inviters} {{unknown}}"]
        assert h.ctx.outbox.stats().coalesced == 1
        assert r.pending() == set()
    finally:
        await h.stop()
        await h.gw.stop()
    assert not h.errors, h.errors


def test_render_caps_long_lists_and_is_safe_with_braces() -> None:
    names = [f"n{k}" for k in range(35)]
    text = render("{name} {{x}} {0} {room}", names, "R", [], "zh")
    assert text.startswith("n0、n1") and "n29 等35人" in text and "n30" not in text
    assert text.endswith("{{x}} {0} R")
    assert render("Hi {name} ({inviter})", ["a", "b"], "R", ["x", "x", ""], "en") == "Hi a, b (x)"

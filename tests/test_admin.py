"""Managers over the sandbox gateway: /admin add|del|list with mentions, /use from a private chat,
/audit, /undo, the room owner as admin, and what survives a restart."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FakeClock
from bot.gateway import SandboxGateway, World
from bot.mentions import MentionError, resolve
from storage.records import MemberRecord
from tests.conftest import (
    AQIANG,
    LILY,
    MANAGER,
    ROOM,
    ROOM2,
    WORLD_SPEC,
    XIAOHONG,
    XIAOMING,
    BotHarness,
    make_settings,
)

SEP = "\u2005"  # what WeChat puts after an @mention
REFUSAL = "你没有权限"


@pytest.fixture
async def bot(harness: BotHarness) -> BotHarness:
    await harness.start()
    await harness.ctx.outbox.wait_idle()  # the login's privacy notices are out of the way
    return harness


async def join(bot: BotHarness, room: str, member_id: str, name: str) -> None:
    """A member joins through WeChat; wait until the bot has recorded them."""
    await bot.gw.join(room, [(member_id, name)], inviter_id=MANAGER)
    assert bot.app is not None
    await bot.app.wait_until(lambda: bot.store.members.get(room, member_id) is not None, 10)


def audit_rows(bot: BotHarness, n: int = 100) -> list[tuple[str, str | None, str, str]]:
    return [(e.actor_id, e.room_id, e.command, e.result) for e in bot.store.audit.last(n)]


# --- /admin add | del | list ------------------------------------------------------------------
async def test_admin_add_with_a_wechat_mention_then_the_admin_may_manage(bot: BotHarness) -> None:
    assert REFUSAL in (await bot.ask("/admin list", by=XIAOHONG)).text
    reply = await bot.ask(f"/admin add @小红{SEP}", by=MANAGER, mention_ids=[XIAOHONG])
    assert "已将 小红 设为「健身打卡群」的管理员" in reply.text
    assert bot.store.admins.list(ROOM) == [XIAOHONG]
    listing = (await bot.ask("/admin list", by=XIAOHONG)).text
    assert "群主（wxid_manager）全局管理员" in listing and "小红（wxid_xiaohong）由 群主" in listing
    # a room admin of this room is nobody in the other room
    assert REFUSAL in (await bot.ask(f"/use {ROOM2}", by=XIAOHONG, room=None)).text
    await bot.ctx.choose_room(XIAOHONG, ROOM2)  # even if the choice were forced
    assert REFUSAL in (await bot.ask("/admin list", by=XIAOHONG, room=None)).text
    # adding twice is harmless and says so
    assert "已经是管理员" in (await bot.ask("/admin add @小红", by=MANAGER)).text


async def test_typed_mentions_with_plain_spaces_and_names_with_spaces(bot: BotHarness) -> None:
    await join(bot, ROOM, "wxid_fake_lilychen", "Lily Chen")
    reply = await bot.ask("/admin add @Lily Chen @小红", by=MANAGER)
    assert "Lily Chen、小红" in reply.text
    assert bot.store.admins.list(ROOM) == ["wxid_fake_lilychen", XIAOHONG]
    await bot.ask("/admin add @Lily", by=MANAGER)  # the longest name that fits wins, not "Lily"+"…"
    assert LILY in bot.store.admins.list(ROOM)


async def test_ambiguous_name_asks_for_the_id(bot: BotHarness) -> None:
    await join(bot, ROOM, "wxid_fake_xm2", "小明")
    reply = (await bot.ask("/admin add @小明", by=MANAGER)).text
    assert "2 位成员叫「小明」" in reply
    assert "/admin add wxid_xiaoming" in reply and "/admin add wxid_fake_xm2" in reply
    assert bot.store.admins.list(ROOM) == []
    await bot.ask("/admin add wxid_fake_xm2", by=MANAGER)
    assert bot.store.admins.list(ROOM) == ["wxid_fake_xm2"]
    # when WeChat says whom the @ meant, that settles it
    await bot.ask(f"/admin add @小明{SEP}", by=MANAGER, mention_ids=[XIAOMING])
    assert bot.store.admins.list(ROOM) == ["wxid_fake_xm2", XIAOMING]


async def test_unknown_names_and_ids_get_a_clear_reply(bot: BotHarness) -> None:
    assert "找不到成员 @小黑" in (await bot.ask("/admin add @小黑", by=MANAGER)).text
    assert "不是本群成员" in (await bot.ask("/admin add wxid_nobody", by=MANAGER)).text
    assert "用法：/admin add @昵称" in (await bot.ask("/admin add", by=MANAGER)).text
    assert "不是本群管理员" in (await bot.ask("/admin del @阿强", by=MANAGER)).text
    assert "全局管理员" in (await bot.ask("/admin del @群主", by=MANAGER)).text
    assert bot.store.admins.list(ROOM) == []
    assert audit_rows(bot, 1)[0][3].startswith("error")


async def test_admin_group_alone_shows_its_forms_and_refuses_members(bot: BotHarness) -> None:
    forms = (await bot.ask("/admin", by=MANAGER)).text
    assert "/admin add @昵称" in forms and "/admin list" in forms
    assert REFUSAL in (await bot.ask("/admin foo", by=XIAOMING)).text
    assert audit_rows(bot, 1)[0] == (XIAOMING, ROOM, "/admin foo", "refused")


# --- restarts -----------------------------------------------------------------------------------
async def test_admins_and_room_choice_survive_a_restart(bot: BotHarness) -> None:
    await bot.ask("/admin add @小红", by=MANAGER)
    await bot.ask(f"/use {ROOM}", by=XIAOHONG, room=None)
    await bot.restart()
    assert bot.store.admins.list(ROOM) == [XIAOHONG]
    reply = await bot.ask("/admin list", by=XIAOHONG, room=None)
    assert reply.conversation_id == XIAOHONG and "「健身打卡群」的管理员" in reply.text


# --- /use ----------------------------------------------------------------------------------------
async def test_use_flow_for_a_room_admin(bot: BotHarness) -> None:
    await bot.ask("/admin add @小红", by=MANAGER)
    shown = (await bot.ask("/use", by=XIAOHONG, room=None)).text
    assert "还没有选择群" in shown and f"健身打卡群（{ROOM}）" in shown and ROOM2 not in shown
    assert "请先用 /use" in (await bot.ask("/admin list", by=XIAOHONG, room=None)).text
    # a room she does not manage: refused, by id or by topic, and audited
    assert REFUSAL in (await bot.ask("/use 瑜伽群", by=XIAOHONG, room=None)).text
    assert audit_rows(bot, 1)[0] == (XIAOHONG, ROOM2, "/use 瑜伽群", "refused")
    assert "找不到群" in (await bot.ask("/use 不存在的群", by=XIAOHONG, room=None)).text
    # by topic
    assert "已选择「健身打卡群" in (await bot.ask("/use 健身打卡群", by=XIAOHONG, room=None)).text
    assert bot.store.kv.get(f"use:{XIAOHONG}") == ROOM
    assert "当前管理：健身打卡群" in (await bot.ask("/use", by=XIAOHONG, room=None)).text
    # admin commands now act on the room and reply privately; the room sees nothing
    room_before = len(bot.room_messages(ROOM))
    reply = await bot.ask("/admin add @阿强", by=XIAOHONG, room=None)
    assert reply.conversation_id == XIAOHONG and "阿强" in reply.text
    assert AQIANG in bot.store.admins.list(ROOM)
    assert len(bot.room_messages(ROOM)) == room_before
    assert audit_rows(bot, 1)[0] == (XIAOHONG, ROOM, "/admin add @阿强", "ok")
    # losing the role takes effect at once, even with the room still chosen
    await bot.ask("/admin del @小红", by=MANAGER)
    assert REFUSAL in (await bot.ask("/admin list", by=XIAOHONG, room=None)).text
    # /use off
    await bot.ask("/use off", by=MANAGER, room=None)
    assert bot.store.kv.get(f"use:{MANAGER}") is None


async def test_use_is_private_and_ambiguous_topics_ask_for_the_id(bot: BotHarness) -> None:
    assert "请私聊我" in (await bot.ask(f"/use {ROOM}", by=MANAGER)).text
    reply = (await bot.ask("/use 群", by=MANAGER, room=None)).text  # both topics contain 群
    assert f"/use {ROOM}" in reply and f"/use {ROOM2}" in reply
    assert REFUSAL in (await bot.ask(f"/use {ROOM}", by=XIAOMING, room=None)).text


async def test_help_in_a_private_chat_follows_use(bot: BotHarness) -> None:
    await bot.ask("/admin add @小红", by=MANAGER)
    member = (await bot.ask("/help", by=XIAOMING, room=None)).text
    assert "管理员命令" not in member and "/use" not in member
    before = (await bot.ask("/help", by=XIAOHONG, room=None)).text
    assert "管理员命令" in before and "/use [群ID或群名|off]" in before and "需先用 /use" in before
    await bot.ask(f"/use {ROOM}", by=XIAOHONG, room=None)
    after = (await bot.ask("/help", by=XIAOHONG, room=None)).text
    assert "/admin add @昵称" in after and f"当前管理的群：健身打卡群（{ROOM}）" in after
    in_room = (await bot.ask("/help", by=XIAOHONG)).text
    assert "/admin add @昵称" in in_room and "/use [" not in in_room


# --- /audit -----------------------------------------------------------------------------------
async def test_audit_shows_the_rooms_last_actions(bot: BotHarness) -> None:
    await bot.ask("/admin add @小红", by=MANAGER)
    await bot.ask("/admin list", by=XIAOMING)  # refused, still logged
    await bot.ask("/admin list", by=MANAGER, room=ROOM2)  # another room
    await bot.ask("/admin del @阿强", by=XIAOHONG)  # an error, logged as such
    text = (await bot.ask("/audit 3", by=XIAOHONG)).text
    lines = text.split("\n")
    assert "最近 3 条管理操作" in lines[0] and len(lines) == 4
    assert "小红 /admin del @阿强 → error: 阿强 不是本群管理员。" in lines[1]
    assert "小明 /admin list → refused" in lines[2]
    assert "群主 /admin add @小红 → ok" in lines[3]
    assert "瑜伽群" not in text
    # every room: global managers only
    assert REFUSAL in (await bot.ask("/audit all", by=XIAOHONG)).text
    everything = (await bot.ask("/audit 20 all", by=MANAGER)).text
    assert "[瑜伽群] /admin list → ok" in everything and "[健身打卡群]" in everything
    assert "所有群" in (await bot.ask("/audit", by=MANAGER, room=None)).text
    assert "应为数字" in (await bot.ask("/audit x", by=MANAGER)).text


# --- /undo ------------------------------------------------------------------------------------
@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[BotHarness, FakeClock]]:
    clock = FakeClock()
    gw = SandboxGateway(World.from_spec(WORLD_SPEC), heartbeat_s=0, clock=clock)
    await gw.start()
    h = BotHarness(gw, make_settings(tmp_path / "data"))
    try:
        await h.start(clock=clock)
        await h.ctx.outbox.wait_idle()
        yield h, clock
    finally:
        await h.stop()
        await gw.stop()
    assert not h.errors, h.errors


async def test_admin_del_says_how_to_undo_and_undo_restores(bot: BotHarness) -> None:
    await bot.ask("/admin add @小红", by=MANAGER)
    reply = (await bot.ask("/admin del @小红", by=MANAGER)).text
    assert "已移除 小红" in reply and "/undo" in reply and "/admin add wxid_xiaohong" in reply
    assert bot.store.admins.list(ROOM) == []
    undone = (await bot.ask("/undo", by=MANAGER)).text
    assert "已撤销：移除管理员 小红" in undone and "已将 小红 设为" in undone
    assert bot.store.admins.list(ROOM) == [XIAOHONG]
    # the undo went through the router: checked and audited like any command
    assert audit_rows(bot, 2) == [(MANAGER, ROOM, "/undo", "ok"),
                                  (MANAGER, ROOM, "/admin add wxid_xiaohong", "ok")]
    assert "没有 10 分钟内可撤销的操作" in (await bot.ask("/undo", by=MANAGER)).text


async def test_undo_is_per_manager_and_per_room(bot: BotHarness) -> None:
    await bot.ask("/admin add @小红 @阿强", by=MANAGER)
    await bot.ask("/admin del @阿强", by=MANAGER)
    assert "没有" in (await bot.ask("/undo", by=XIAOHONG)).text  # not hers to undo
    assert "没有" in (await bot.ask("/undo", by=MANAGER, room=ROOM2)).text  # not this room's
    await bot.ask(f"/use {ROOM}", by=MANAGER, room=None)
    await bot.ask("/undo", by=MANAGER, room=None)  # the same room, from a private chat
    assert AQIANG in bot.store.admins.list(ROOM)


async def test_undo_survives_a_restart(bot: BotHarness) -> None:
    await bot.ask("/admin add @小红", by=MANAGER)
    await bot.ask("/admin del @小红", by=MANAGER)
    await bot.restart()
    await bot.ask("/undo", by=MANAGER)
    assert bot.store.admins.list(ROOM) == [XIAOHONG]


async def test_undo_expires_after_ten_minutes(clocked: tuple[BotHarness, FakeClock]) -> None:
    bot, clock = clocked
    await bot.ask("/admin add @小红 @阿强", by=MANAGER)
    await bot.ask("/admin del @小红", by=MANAGER)
    await clock.advance(9 * 60)
    assert "已撤销" in (await bot.ask("/undo", by=MANAGER)).text
    await bot.ask("/admin del @阿强", by=MANAGER)
    await clock.advance(10 * 60 + 1)
    assert "没有 10 分钟内可撤销的操作" in (await bot.ask("/undo", by=MANAGER)).text
    assert bot.store.admins.list(ROOM) == [XIAOHONG]


# --- the WeChat room owner ------------------------------------------------------------------------
@pytest.mark.parametrize("owner_is_admin", [True, False])
async def test_room_owner_is_admin_when_configured(tmp_path: Path, owner_is_admin: bool) -> None:
    spec: dict[str, Any] = copy.deepcopy(WORLD_SPEC)
    spec["rooms"][ROOM]["owner"] = XIAOHONG  # ROOM2 stays owned by MANAGER
    gw = SandboxGateway(World.from_spec(spec), heartbeat_s=0)
    await gw.start()
    h = BotHarness(gw, make_settings(tmp_path / "data", room_owner_is_admin=owner_is_admin))
    try:
        await h.start()
        await h.ctx.outbox.wait_idle()
        listing = (await h.ask("/admin list", by=XIAOHONG)).text
        if owner_is_admin:
            assert "小红（wxid_xiaohong）群主" in listing
            assert "阿强" in (await h.ask("/admin add @阿强", by=XIAOHONG)).text
            assert "群主，按配置" in (await h.ask("/admin del @小红", by=MANAGER)).text
        else:
            assert REFUSAL in listing
        assert REFUSAL in (await h.ask(f"/use {ROOM2}", by=XIAOHONG, room=None)).text
        assert REFUSAL in (await h.ask("/admin list", by=LILY)).text
    finally:
        await h.stop()
        await gw.stop()
    assert not h.errors, h.errors


# --- mention resolution (pure) ------------------------------------------------------------------
def member(member_id: str, name: str, left: bool = False) -> MemberRecord:
    return MemberRecord(room_id=ROOM, member_id=member_id, name=name, join_ts=0.0, join_day=0,
                        channel="unknown", inviter_id=None, first_seen=True,
                        left_ts=1.0 if left else None, left_day=1 if left else None)


MEMBERS = [member("wxid_a", "小明"), member("wxid_b", "Lily Chen"), member("wxid_c", "Lily"),
           member("wxid_d", "小红"), member("wxid_gone", "老王", left=True)]


def ids(text: str, **kw: Any) -> list[str]:
    return [t.id for t in resolve(text, MEMBERS, **kw)]


@pytest.mark.parametrize("text, expected", [
    (f"@小明{SEP}", ["wxid_a"]),
    (f"@小明{SEP}@小红{SEP}", ["wxid_a", "wxid_d"]),
    ("@小明 @小红", ["wxid_a", "wxid_d"]),
    ("@小明，@小红", ["wxid_a", "wxid_d"]),
    ("@Lily Chen", ["wxid_b"]),
    (f"@Lily{SEP}@Lily Chen", ["wxid_c", "wxid_b"]),
    ("@lily chen", ["wxid_b"]),  # case differences are tolerated when nothing matches exactly
    ("wxid_a wxid_d", ["wxid_a", "wxid_d"]),
    ("@小明 @小明 wxid_a", ["wxid_a"]),  # no repeats
    ("＠小红", ["wxid_d"]),  # full-width @
])
def test_resolve_mentions(text: str, expected: list[str]) -> None:
    assert ids(text) == expected


def test_resolve_ambiguity_and_what_settles_it() -> None:
    twins = [*MEMBERS, member("wxid_a2", "小明")]
    with pytest.raises(MentionError) as err:
        resolve("@小明", twins, example="/admin add")
    assert "2 位成员叫「小明」" in str(err.value) and "/admin add wxid_a2" in str(err.value)
    assert [t.id for t in resolve("@小明", twins, mention_ids=["wxid_a2"])] == ["wxid_a2"]
    assert [t.id for t in resolve("wxid_a2", twins)] == ["wxid_a2"]
    with pytest.raises(MentionError, match="members are called"):
        resolve("@小明", twins, lang="en")


def test_resolve_unknown_names_left_members_and_service_ids() -> None:
    with pytest.raises(MentionError, match="找不到成员 @老王"):
        resolve("@老王", MEMBERS)  # left the room: not found by name ...
    assert ids("wxid_gone") == ["wxid_gone"]  # ... but still by id
    with pytest.raises(MentionError, match="不是本群成员"):
        resolve("wxid_zzz", MEMBERS)
    assert ids("wxid_zzz", known_ids={"wxid_zzz"}) == ["wxid_zzz"]
    # a name the bot has not recorded yet: the service's mention list says who it is
    found = ids(f"@新人{SEP}@小明{SEP}", mention_ids=["wxid_a", "wxid_new"])
    assert found == ["wxid_new", "wxid_a"]
    with pytest.raises(MentionError):
        resolve(f"@新人{SEP}@又一个{SEP}", MEMBERS, mention_ids=["wxid_new"])

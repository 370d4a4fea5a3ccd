"""The permission matrix: every manager command of every feature (read from the dispatcher, so a
command added later is covered without touching this file) × who sends it × where.

who:   a member; an admin of the other room; an admin of this room; a global manager.
where: in the room; in a private chat without /use; in a private chat with /use of the room
       (set directly in storage, so members and other-room admins get the same chance).

Only the allowed cells act (their reply is not the refusal), and every cell leaves an audit row
for the command with the matching result.
"""

from __future__ import annotations

import pytest

from bot.app import feature_routers
from bot.router import Command, Dispatcher
from tests.conftest import LILY, MANAGER, ROOM, ROOM2, XIAOHONG, XIAOMING, BotHarness

MEMBER, OTHER_ADMIN, ROOM_ADMIN, GLOBAL = XIAOMING, LILY, XIAOHONG, MANAGER
ACTORS = {"member": MEMBER, "admin-of-other-room": OTHER_ADMIN, "room-admin": ROOM_ADMIN,
          "global": GLOBAL}
PLACES = ("room", "private", "private+use")
REFUSAL = "你没有权限"  # the router's refusal, and handlers' Refused texts

# Plausible arguments per command (SPEC section 3); commands not listed are sent bare.
ARGS = {
    "faq add": "几点开门; 营业时间 | 每天 9 点到 21 点",
    "faq del": "1",
    "faq edit": "1 | 每天 10 点",
    "faq addq": "1 | 几点关门",
    "faq misses": "7",
    "event new": "周末徒步 cap=10",
    "event close": "1",
    "event export": "1",
    "lottery new": "周年抽奖 winners=1",
    "lottery draw": "1",
    "lottery verify": "1",
    "announce at": "2099-01-01 09:00 | 新年快乐",
    "announce cron": '"0 9 * * 1" | 周一早安',
    "announce every": "2h | 记得喝水",
    "announce del": "1",
    "announce pause": "1",
    "announce resume": "1",
    "announce test": "1",
    "stats": "7d",
    "retention": "4",
    "funnel": "30",
    "invites": "30",
    "admin add": "@阿强",
    "admin del": "@阿强",
    "use": ROOM,
    "audit": "5",
}

MANAGER_COMMANDS = [c for c in Dispatcher(feature_routers()).commands if c.admin]


def expected(cmd: Command, actor: str, place: str) -> str:
    """What the cell should do: acted | refused | no room | wrong place."""
    manages_room = actor in (ROOM_ADMIN, GLOBAL)
    manages_some_room = actor != MEMBER
    if place == "room":
        if not manages_room:
            return "refused"
        return "wrong place" if cmd.where == "private" else "acted"
    if cmd.where == "private":  # /use: acts on the room named in its argument (ROOM)
        return "acted" if manages_room else "refused"
    if place == "private+use":
        return "acted" if manages_room else "refused"
    if actor == GLOBAL and cmd.where == "any":
        return "acted"  # e.g. /audit over every room
    return "no room" if manages_some_room else "refused"


def audit_result_matches(category: str, result: str) -> bool:
    if category == "acted":
        return result == "ok" or result.startswith("error")
    if category == "wrong place":
        return result.startswith("error")
    return result == category


@pytest.mark.parametrize("cmd", MANAGER_COMMANDS, ids=[c.name for c in MANAGER_COMMANDS])
async def test_manager_command_matrix(bot: BotHarness, cmd: Command) -> None:
    await bot.ctx.outbox.wait_idle()  # the login's room notices are out of the way
    await bot.store.admins.add(ROOM, ROOM_ADMIN, GLOBAL)
    await bot.store.admins.add(ROOM2, OTHER_ADMIN, GLOBAL)
    args = ARGS.get(cmd.name, "")
    text = f"/{cmd.name} {args}".strip()
    failures = []
    for who, actor in ACTORS.items():
        for place in PLACES:
            await bot.ctx.choose_room(actor, ROOM if place == "private+use" else None)
            last_id = max((e.id for e in bot.store.audit.last(1)), default=-1)
            replies = await bot.replies_to(text, by=actor, room=ROOM if place == "room" else None)
            said = "\n".join(r.text for r in replies)
            rows = [e for e in reversed(bot.store.audit.last(1000)) if e.id > last_id
                    and e.actor_id == actor and e.command == text]
            want = expected(cmd, actor, place)
            cell = f"{who} / {place}: expected {want}"
            if not rows:
                failures.append(f"{cell}, but nothing audited (replies: {said!r})")
                continue
            if not audit_result_matches(want, rows[0].result):
                failures.append(f"{cell}, audit says {rows[0].result!r} (replies: {said!r})")
            refused = REFUSAL in said
            if (want == "refused") != refused:
                failures.append(f"{cell}, replies: {said!r}")
            if want == "no room" and "/use" not in said:
                failures.append(f"{cell}, but no /use hint: {said!r}")
            if want == "acted" and "/use <群ID或群名> 选择要管理的群" in said:
                failures.append(f"{cell}, but was asked to choose a room: {said!r}")
            if place != "room" and rows[0].room_id not in (None, ROOM):
                failures.append(f"{cell}, audited against {rows[0].room_id}")
    assert not failures, "\n".join(failures)


def test_matrix_covers_the_manager_commands_of_this_feature() -> None:
    names = {c.name for c in MANAGER_COMMANDS}
    assert {"admin add", "admin del", "admin list", "use", "audit", "undo"} <= names

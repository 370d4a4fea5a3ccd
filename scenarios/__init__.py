"""Community playbooks: a room, its people, a setup typed by the manager, and a scripted
conversation with expected outcomes (SPEC.md section 10).

A playbook sets the bot up the way a manager would: by sending the same chat
commands (`/faq add`, `/event new`, `/lottery new`, `/announce cron`), so a
playbook exercises the real features and never a private back door. The test
suite replays every conversation through the sandbox gateway.

Placeholders in commands and texts: `{today}`, `{tomorrow}`, `{in_days:N}` (dates as
YYYY-MM-DD in the configured timezone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import resources
from typing import Any

import yaml

from bot.config import Settings


@dataclass(frozen=True)
class Step:
    by: str
    say: str
    private: bool = False
    expect: tuple[str, ...] = ()  # every fragment must appear in the bot's replies
    replies: int = 1  # how many messages the bot sends in answer (e.g. a promotion notice too)
    expect_silence: bool = False
    note: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    room_id: str
    topic: str
    welcome: str
    quiet_hours: str
    manager: str
    members: dict[str, str]
    setup: tuple[str, ...]
    conversation: tuple[Step, ...]
    announcements: tuple[dict[str, str], ...] = field(default_factory=tuple)


def names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".yaml")
    )


def load(name: str) -> Scenario:
    if name not in names():
        raise ValueError(f"unknown scenario {name!r}; available: {', '.join(names())}")
    raw: dict[str, Any] = yaml.safe_load(
        resources.files(__package__).joinpath(f"{name}.yaml").read_text("utf-8")
    )
    room = raw["room"]
    steps = tuple(
        Step(
            by=s["by"],
            say=str(s["say"]),
            private=bool(s.get("private", False)),
            expect=tuple(str(e) for e in s.get("expect", ())),
            replies=int(s.get("replies", 1)),
            expect_silence=bool(s.get("expect_silence", False)),
            note=s.get("note", ""),
        )
        for s in raw["conversation"]
    )
    return Scenario(
        name=name,
        title=raw["title"],
        room_id=room["id"],
        topic=room["topic"],
        welcome=room.get("welcome", ""),
        quiet_hours=room.get("quiet_hours", ""),
        manager=raw["manager"],
        members=dict(raw["members"]),
        setup=tuple(raw.get("setup", ())),
        conversation=steps,
        announcements=tuple(raw.get("announcements", ())),
    )


def render(text: str, today: date) -> str:
    def in_days(m: re.Match[str]) -> str:
        return (today + timedelta(days=int(m.group(1)))).isoformat()

    text = re.sub(r"\{in_days:(\d+)\}", in_days, text)
    return text.replace("{today}", today.isoformat()).replace(
        "{tomorrow}", (today + timedelta(days=1)).isoformat()
    )


def apply_scenario(settings: Settings, name: str) -> Settings:
    """Settings with the playbook's room, people and manager added to the sandbox world."""
    sc = load(name)
    rooms = [r for r in settings.rooms if r.id != sc.room_id]
    room = {"id": sc.room_id, "welcome": sc.welcome, "quiet_hours": sc.quiet_hours}
    sandbox = settings.sandbox.model_dump()
    sandbox["rooms"] = {
        **sandbox["rooms"],
        sc.room_id: {
            "topic": sc.topic,
            "owner": sc.manager,
            "members": {sc.manager: "管理员", **sc.members},
        },
    }
    data = settings.model_dump()
    data.update(
        rooms=[r.model_dump() for r in rooms] + [room],
        admins=sorted({*settings.admins, sc.manager}),
        sandbox=sandbox,
        puppet={**data["puppet"], "token": settings.puppet.token.get_secret_value()},
        web={**data["web"], "token": settings.web.token.get_secret_value()},
    )
    return Settings.model_validate(data)


async def run_setup(app: Any, gateway: Any, sc: Scenario) -> list[str]:
    """Type the playbook's setup commands as its manager, once per data directory."""
    ctx = app.ctx
    flag = f"scenario-setup:{sc.name}"
    if ctx.store.kv.get(flag):
        return []
    today = ctx.local_day()
    replies = []
    for command in sc.setup:
        before = len(gateway.bot_messages(sc.room_id))
        msg_id = await gateway.say(sc.manager, render(command, today), room_id=sc.room_id)
        await app.wait_handled(msg_id)
        await ctx.outbox.wait_idle()
        replies += [m.text for m in gateway.bot_messages(sc.room_id)[before:]]
    await ctx.store.kv.set(flag, ctx.clock.now())
    return replies

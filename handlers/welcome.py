"""Welcome new members with the room's template (`rooms[].welcome` in bot.yaml).

Fields: `{name}` (the new members' names), `{room}` (the room's topic), `{inviter}`
(who invited them; 扫码/QR code for a QR-code join). Other braces are left as written.

Joins are batched so that a wave of joins gets one message, not one each: the first
join in a room opens a window of `BATCH_S` seconds (on ctx.clock); everyone joining
within it is named in one welcome. The welcome goes out at Priority.BULK with a
per-room coalesce key: if the governor still holds an earlier welcome when the next
batch is ready, the new message replaces it and names everyone in both, so nobody is
left out and the room never gets a burst. No welcome for the bot itself, configured
bots, rooms without a template, or join events older than `reply_window` (replays).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field

from bot.context import Context
from bot.events import Member, MemberJoined, Outgoing
from bot.outbox import COALESCED, Priority, SendFuture
from bot.router import Router

log = logging.getLogger("qunbot.welcome")

router = Router("welcome")

BATCH_S = 5.0  # joins within this window share one welcome
MAX_NAMES = 30  # beyond this the welcome says "and N more" (a wall of names helps nobody)
_FIELD = re.compile(r"\{(name|room|inviter)\}")


@dataclass
class _Pending:
    """One room's members waiting for their welcome (in the window or in the outbox)."""

    members: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (name, inviter)
    timer: asyncio.Task[None] | None = None


def _state(ctx: Context) -> dict[str, _Pending]:
    return ctx.services.setdefault("welcome", {})  # type: ignore[no-any-return]


def render(template: str, names: list[str], room: str, inviters: list[str], lang: str) -> str:
    sep = "、" if lang == "zh" else ", "
    shown = names[:MAX_NAMES]
    who = sep.join(shown)
    if len(names) > MAX_NAMES:
        more = len(names) - MAX_NAMES
        who += f" 等{len(names)}人" if lang == "zh" else f" and {more} more"
    by = sep.join(dict.fromkeys(i for i in inviters if i))
    values = {"name": who, "room": room, "inviter": by}
    # Only our three fields are replaced: a stray "{" in an operator's text must not crash.
    return _FIELD.sub(lambda m: values[m.group(1)], template)


def _inviter_label(event: MemberJoined, ctx: Context) -> str:
    if event.via_qrcode:
        return "扫码" if ctx.settings.language == "zh" else "QR code"
    if event.inviter_id:
        return ctx.member_name(event.room_id, event.inviter_id)
    return ""


@router.on(MemberJoined)
async def on_join(event: MemberJoined, ctx: Context) -> None:
    room = ctx.settings.room(event.room_id)
    if room is None or not room.welcome.strip():
        return
    if ctx.clock.now() - event.timestamp > ctx.settings.reply_window:
        return  # a replayed, old join: welcoming now would confuse the room
    skip = {ctx.self_id, *ctx.settings.bots}
    new: list[Member] = [m for m in event.members if m.id not in skip]
    if not new:
        return
    pending = _state(ctx).setdefault(event.room_id, _Pending())
    inviter = _inviter_label(event, ctx)
    for m in new:
        pending.members.setdefault(m.id, (m.name or m.id, inviter))
    if pending.timer is None or pending.timer.done():
        pending.timer = asyncio.ensure_future(_after_window(event.room_id, ctx))
        app = ctx.services.get("app")
        if app is not None:
            app.spawn(pending.timer)  # so the bot's stop() cancels it


async def _after_window(room_id: str, ctx: Context) -> None:
    await ctx.clock.sleep(BATCH_S)
    pending = _state(ctx).get(room_id)
    room = ctx.settings.room(room_id)
    if pending is None or not pending.members or room is None:
        return
    pending.timer = None
    batch = dict(pending.members)
    text = render(room.welcome, [n for n, _ in batch.values()], _room_title(ctx, room_id),
                  [i for _, i in batch.values()], ctx.settings.language)
    fut = ctx.outbox.submit(Outgoing(conversation_id=room_id, text=text, priority=Priority.BULK,
                                     coalesce_key=f"welcome:{room_id}"))
    fut.add_done_callback(lambda f: _settled(f, pending, batch))


def _settled(fut: SendFuture, pending: _Pending, batch: dict[str, tuple[str, str]]) -> None:
    # Sent, or given up (dropped, stopped): these members are done. Coalesced: the newer
    # welcome that replaced this one names them too, so they stay pending until it settles.
    if getattr(fut, "reason", None) == COALESCED:
        return
    for member_id in batch:
        if pending.members.get(member_id) == batch[member_id]:
            del pending.members[member_id]


def _room_title(ctx: Context, room_id: str) -> str:
    name = ctx.room_name(room_id)
    if name != room_id:
        return name
    room = ctx.settings.room(room_id)
    return room.topic if room is not None and room.topic else room_id

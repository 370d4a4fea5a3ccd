"""The console acts through the chat commands, never beside them.

A console action (add an FAQ, open an event, create or pause an announcement ...) is the
manager command a person would type, dispatched through the bot's own Dispatcher as if the
console were a manager in a private chat with the bot who had chosen the room with /use.
So validation, #N numbering, durability before the acknowledgement, feature side effects
(the FAQ index, scheduler jobs, posts to the room) and the audit log (actor `console`) are
exactly those of chat. The replies meant for the console come back to the page instead of
going to WeChat; everything else the command sends (posts to the room) goes out as usual.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.context import Context
from bot.events import Incoming, Outgoing
from bot.router import normalise_command_text

if TYPE_CHECKING:
    from bot.app import App

CONSOLE_ID = "console"  # the console's actor id (audit log, created_by)
CONSOLE_NAME = "控制台"


class CommandRefused(ValueError):
    """Not a manager command, or no such served room: nothing was dispatched."""


class ConsoleContext(Context):
    """The bot's Context for one console action: the console is a manager of every served
    room, has chosen `room` with /use, and its private replies are captured, not sent."""

    room: str
    captured: list[Outgoing]

    @classmethod
    def of(cls, ctx: Context, room: str) -> ConsoleContext:
        # Same store, outbox, scheduler, services and caches: only sending to the console differs.
        c = cls(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx) if f.init})
        c.room, c.captured = room, []
        return c

    def send(self, out: Outgoing) -> None:
        if out.conversation_id == CONSOLE_ID:
            self.captured.append(out)
        else:
            super().send(out)

    def is_global_manager(self, sender_id: str) -> bool:
        return sender_id == CONSOLE_ID or super().is_global_manager(sender_id)

    async def is_manager(self, sender_id: str, room_id: str | None) -> bool:
        return sender_id == CONSOLE_ID or await super().is_manager(sender_id, room_id)

    async def chosen_room(self, manager_id: str) -> str | None:
        if manager_id == CONSOLE_ID:
            return self.room
        return await super().chosen_room(manager_id)


@dataclass(frozen=True)
class CommandResult:
    command: str
    replies: tuple[Outgoing, ...]

    @property
    def text(self) -> str:
        return "\n".join(o.text for o in self.replies if o.file_path is None)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(o.file_path for o in self.replies if o.file_path is not None)


async def run_command(app: App, room: str, text: str) -> CommandResult:
    """Run manager command `text` (e.g. "/faq add 几点开门 | 九点") on `room` as the console."""
    ctx = app.ctx
    if ctx is None:
        raise CommandRefused("the bot is not running")
    text = normalise_command_text(text)
    if not text.startswith("/"):
        text = "/" + text
    parsed = app.dispatcher.parse(text)
    if parsed is None or not parsed[0].admin:
        raise CommandRefused(f"not a manager command: {text[:60]}")
    if room not in ctx.served_rooms():
        raise CommandRefused(f"not a served room: {room}")
    cctx = ConsoleContext.of(ctx, room)
    msg = Incoming(msg_id=f"console-{uuid.uuid4().hex}", room_id=None, sender_id=CONSOLE_ID,
                   sender_name=CONSOLE_NAME, text=text, timestamp=ctx.clock.now())
    await app.dispatcher.dispatch(msg, cctx)
    return CommandResult(text, tuple(cctx.captured))

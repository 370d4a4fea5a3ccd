"""Commands: declared next to their handler, dispatched in one place.

Each feature module owns a `Router` and declares its commands with usage, help
text and who may run them. `Dispatcher` (built by bot/app.py from the feature
routers, in one visible list) parses a message, checks permission once, writes
the audit log for manager commands, and turns errors into replies:
`UsageError` → the right form; `UserError` → its message; anything else is
logged with context, answered with a short apology, and reported to the error
hook (which tests turn into failures).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bot.events import Incoming, Outgoing
from bot.outbox import Priority

if TYPE_CHECKING:
    from bot.context import Context

log = logging.getLogger("qunbot.router")

Where = Literal["room", "private", "any"]
Handler = Callable[["Request"], Awaitable[None]]
Fallback = Callable[["Request"], Awaitable[bool]]  # returns True when it handled the message

AT_SEPARATOR = "\u2005"  # WeChat ends an @mention with U+2005
MAX_INPUT = 2000  # longer input is cut before parsing; WeChat's own limit is far above any command


class UsageError(Exception):
    """Wrong arguments: the reply shows the command's usage (and the reason, if given)."""


class UserError(Exception):
    """A refusal or problem to tell the sender as is (e.g. "no such event")."""


@dataclass(frozen=True)
class Command:
    name: str  # "join", "faq add": typed after the slash
    handler: Handler
    usage: str
    help_zh: str
    help_en: str
    aliases: tuple[str, ...] = ()  # keywords that work without a slash, e.g. "报名"
    admin: bool = False
    where: Where = "room"  # member commands need a served room; admin ones may use /use

    def help_line(self, lang: str) -> str:
        return f"{self.usage}  {self.help_zh if lang == 'zh' else self.help_en}"


@dataclass
class Request:
    """One message being handled, with everything a handler needs."""

    msg: Incoming
    ctx: Context
    text: str  # cleaned text: mention stripped, width-normalised slash
    args: str = ""
    command: Command | None = None
    room_id: str | None = None  # room acted on: the message's room, or the /use choice
    is_manager: bool = False
    replies: list[str] = field(default_factory=list)

    @property
    def lang(self) -> str:
        return self.ctx.settings.language

    def t(self, zh: str, en: str) -> str:
        return zh if self.lang == "zh" else en

    async def reply(self, text: str, *, mention: bool | None = None, priority: Priority | None = None,
                    coalesce_key: str | None = None) -> None:
        """Answer in the conversation the message came from; in a group @mention the sender."""
        msg = self.msg
        if mention is None:
            mention = msg.room_id is not None
        if priority is None:
            priority = Priority.MANAGER if self.is_manager else Priority.REPLY
        self.replies.append(text)
        self.ctx.send(Outgoing(
            conversation_id=msg.conversation_id,
            text=text,
            mention_ids=(msg.sender_id,) if mention and msg.room_id else (),
            priority=priority,
            coalesce_key=coalesce_key,
        ))

    def int_arg(self, value: str, what: str = "N") -> int:
        v = value.strip().lstrip("#")
        if not v.isdigit() or len(v) > 9:
            raise UsageError(self.t(f"{what} 应为数字", f"{what} must be a number"))
        return int(v)


Listener = Callable[[Any, "Context"], Awaitable[None]]
Startup = Callable[["Context"], Awaitable[None]]


class Router:
    """A feature's commands and event hooks, declared next to their code.

    `@router.command(...)` declares a command; `@router.fallback` handles text
    that is no command; `@router.on(MemberJoined)` reacts to an event (LoggedIn
    runs once per connection); `@router.startup` runs once after storage opens.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.commands: list[Command] = []
        self.fallbacks: list[Fallback] = []
        self.listeners: list[tuple[type, Listener]] = []
        self.startups: list[Startup] = []

    def on(self, event_type: type) -> Callable[[Listener], Listener]:
        def register(fn: Listener) -> Listener:
            self.listeners.append((event_type, fn))
            return fn
        return register

    def startup(self, fn: Startup) -> Startup:
        self.startups.append(fn)
        return fn

    def command(self, name: str, *, usage: str, zh: str, en: str, aliases: Sequence[str] = (),
                admin: bool = False, where: Where = "room") -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.commands.append(Command(name, fn, usage, zh, en, tuple(aliases), admin, where))
            return fn
        return register

    def fallback(self, fn: Fallback) -> Fallback:
        """Called for text that is no command (e.g. the FAQ), in router order, until one handles it."""
        self.fallbacks.append(fn)
        return fn


def normalise_command_text(text: str) -> str:
    text = text[:MAX_INPUT]
    text = text.replace("\u3000", " ").strip()
    if text.startswith("／"):
        text = "/" + text[1:]
    return text


def strip_mention(text: str, self_name: str, mentions_self: bool) -> tuple[str, bool]:
    """Remove a leading @mention of the bot; returns the rest and whether one was found."""
    if not text.startswith("@"):
        return text, False
    for sep in (AT_SEPARATOR, " ", "\u00a0"):
        prefix = f"@{self_name}{sep}"
        if self_name and text.startswith(prefix):
            return text[len(prefix):].lstrip(), True
    if mentions_self:
        # The service says we were mentioned but the name differs (alias in group): cut the first token.
        m = re.match(r"@[^\u2005\s]+[\u2005\s]+", text)
        if m:
            return text[m.end():].lstrip(), True
    return text, False


class Dispatcher:
    def __init__(self, routers: Sequence[Router]) -> None:
        self.routers = list(routers)
        self.commands = [c for r in self.routers for c in r.commands]
        names = [c.name for c in self.commands]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"commands declared twice: {sorted(dup)}")
        # Longest first, so "faq add" wins over "faq" and "取消报名" over "报名".
        self._by_name = sorted(self.commands, key=lambda c: -len(c.name))
        self._aliases = sorted(((a, c) for c in self.commands for a in c.aliases), key=lambda p: -len(p[0]))

    def listeners(self, event: object) -> list[Listener]:
        return [fn for r in self.routers for t, fn in r.listeners if isinstance(event, t)]

    def startups(self) -> list[Startup]:
        return [fn for r in self.routers for fn in r.startups]

    def parse(self, text: str) -> tuple[Command, str] | None:
        if text.startswith("/"):
            body = text[1:]
            low = body.lower()
            for cmd in self._by_name:
                if low == cmd.name or low.startswith(cmd.name + " "):
                    return cmd, body[len(cmd.name):].strip()
            return None
        for alias, cmd in self._aliases:
            if text == alias:
                return cmd, ""
            # "报名 2", "报名2", "报名#2" are commands; "报名了吗" is chatter.
            rest = text[len(alias):]
            if text.startswith(alias) and re.fullmatch(r"\s*#?\d{1,6}\s*", rest):
                return cmd, rest.strip()
        return None

    def visible(self, *, is_manager: bool, private: bool) -> list[Command]:
        out = []
        for c in self.commands:
            if c.admin and not is_manager:
                continue
            if not c.admin and private and c.where == "room":
                continue
            out.append(c)
        return out

    async def dispatch(self, msg: Incoming, ctx: Context) -> None:
        text, mentioned = strip_mention(msg.text, ctx.self_name, msg.mentions_self)
        text = normalise_command_text(text)
        req = Request(msg=msg, ctx=ctx, text=text, room_id=msg.room_id)
        parsed = self.parse(text)
        if parsed is None:
            await self._fallback(req, mentioned or msg.mentions_self)
            return
        cmd, args = parsed
        req.command, req.args = cmd, args
        if msg.room_id is None and (cmd.admin or cmd.where != "private"):
            req.room_id = await ctx.chosen_room(msg.sender_id)
        req.is_manager = await ctx.is_manager(msg.sender_id, req.room_id)
        try:
            await self._run(req, cmd)
        except Exception as exc:  # noqa: BLE001 - one place turns failures into replies
            await self._failed(req, exc)

    async def _run(self, req: Request, cmd: Command) -> None:
        ctx, msg = req.ctx, req.msg
        if cmd.admin:
            if not req.is_manager:
                await ctx.audit(msg.sender_id, req.room_id, req.text, "refused")
                raise UserError(req.t("这是管理员命令，你没有权限。", "That is a manager command."))
            if req.room_id is None and cmd.where != "private":
                await ctx.audit(msg.sender_id, None, req.text, "no room")
                raise UserError(req.t("请先用 /use <群ID或群名> 选择要管理的群。",
                                      "Choose a room first: /use <room id or topic>."))
        elif cmd.where == "room" and msg.room_id is None:
            raise UserError(req.t("这个命令请在群里使用。", "Please use this command in the group."))
        try:
            await cmd.handler(req)
        except (UsageError, UserError) as e:
            if cmd.admin:
                await ctx.audit(msg.sender_id, req.room_id, req.text, f"error: {e}")
            raise
        if cmd.admin:
            await ctx.audit(msg.sender_id, req.room_id, req.text, "ok")

    async def _failed(self, req: Request, exc: Exception) -> None:
        cmd = req.command
        if isinstance(exc, UsageError):
            reason = f"{exc}\n" if str(exc) else ""
            usage = cmd.usage if cmd else ""
            await req.reply(req.t(f"{reason}用法：{usage}", f"{reason}Usage: {usage}"))
        elif isinstance(exc, UserError):
            await req.reply(str(exc))
        else:
            log.exception("handler failed: command=%s room=%s sender=%s msg=%s",
                          cmd.name if cmd else None, req.msg.room_id, req.msg.sender_id, req.msg.msg_id)
            await req.reply(req.t("抱歉，处理出错了，已记录，请稍后再试。",
                                  "Sorry, something went wrong; it has been logged."))
            req.ctx.report_error(exc)

    async def _fallback(self, req: Request, addressed: bool) -> None:
        req.args = req.text
        try:
            for router in self.routers:
                for fb in router.fallbacks:
                    if await fb(req):
                        return
        except Exception as exc:  # noqa: BLE001
            await self._failed(req, exc)


def help_text(dispatcher: Dispatcher, req: Request) -> str:
    private = req.msg.room_id is None
    cmds = dispatcher.visible(is_manager=req.is_manager, private=private)
    member = [c for c in cmds if not c.admin]
    admin = [c for c in cmds if c.admin]
    lines = [req.t("可用命令：", "Commands:")]
    lines += [_with_alias(c, req.lang) for c in member]
    if admin:
        lines.append(req.t("管理员命令：", "Manager commands:"))
        lines += [c.help_line(req.lang) for c in admin]
    return "\n".join(lines)


def _with_alias(c: Command, lang: str) -> str:
    alias = f"（{'/'.join(c.aliases)}）" if c.aliases and lang == "zh" else ""
    return c.help_line(lang) + alias


def width_fold(text: str) -> str:
    """Full-width ASCII to half-width (ＡＢＣ１２３ → ABC123), for argument parsing."""
    return unicodedata.normalize("NFKC", text)

"""Commands: declared next to their handler, dispatched in one place.

Each feature module owns a `Router` and declares its commands with usage, help
text and who may run them. `Dispatcher` (built by bot/app.py from the feature
routers, in one visible list) parses a message, checks permission once, writes
the audit log for manager commands, and turns errors into replies:
`UsageError` → the right form; `UserError` → its message; `Refused` → a
refusal (audited as such); anything else is logged with context, answered with
a short apology, and reported to the error hook (which tests turn into failures).

Permissions (checked here, once, for every command):
* member commands (`admin=False`): anyone; `where="room"` ones only in a served room.
* manager commands (`admin=True`) act on `req.room_id`: the message's room, or in a
  private chat the room chosen with `/use`. Allowed for a global manager (bot.yaml
  `admins`) or an admin of that room (`/admin add`, or its WeChat owner with
  `room_owner_is_admin`). `where="room"` (the default) needs that room;
  `where="any"` also runs without one (`req.room_id is None`: only global managers
  get there, e.g. `/audit` over all rooms); `where="private"` commands (`/use`) run
  in a private chat for anyone who manages at least one room (`req.manages`).
  A handler that finds a finer reason to refuse raises `Refused`.
* Every manager command is audited: "refused", "no room", "ok" or "error: ...".

Undo: a destructive manager command calls `hint = await req.remember_undo(inverse,
description)` after its change is stored and ends its reply with `hint`; `/undo`
(handlers/admin.py) dispatches `inverse` again as the same manager within 10
minutes. See Context.remember_undo.
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


class Refused(UserError):
    """The sender may not do this (e.g. /use of a room they do not manage): audited as "refused"."""


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
    is_manager: bool = False  # may manage req.room_id (or, for where="private" commands, some room)
    manages: tuple[str, ...] = ()  # private chat: the served rooms the sender manages
    replies: list[str] = field(default_factory=list)
    capture: bool = False  # collect replies without sending them (an undo run inside /undo)

    @property
    def lang(self) -> str:
        return self.ctx.settings.language

    def t(self, zh: str, en: str) -> str:
        return zh if self.lang == "zh" else en

    async def reply(
        self,
        text: str,
        *,
        mention: bool | None = None,
        priority: Priority | None = None,
        coalesce_key: str | None = None,
    ) -> None:
        """Answer in the conversation the message came from; in a group @mention the sender."""
        msg = self.msg
        if mention is None:
            mention = msg.room_id is not None
        if priority is None:
            priority = Priority.MANAGER if self.is_manager else Priority.REPLY
        self.replies.append(text)
        if self.capture:
            return
        self.ctx.send(
            Outgoing(
                conversation_id=msg.conversation_id,
                text=text,
                mention_ids=(msg.sender_id,) if mention and msg.room_id else (),
                priority=priority,
                coalesce_key=coalesce_key,
            )
        )

    async def remember_undo(self, inverse: str, description: str) -> str:
        """Record `inverse` (command text that reverses what was just done) for /undo by this
        manager in this room; returns the hint to end the reply with."""
        if self.room_id is None:
            return ""
        await self.ctx.remember_undo(self.msg.sender_id, self.room_id, inverse, description)
        return self.t(
            f"撤销：10 分钟内发 /undo，或发送 {inverse}",
            f"To undo: /undo within 10 minutes, or send {inverse}",
        )

    def int_arg(self, value: str, what: str = "N") -> int:
        v = width_fold(value).strip().lstrip("#")
        # isdecimal, not isdigit: "²" or "①" are digits that int() refuses.
        if not v.isdecimal() or len(v) > 9:
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

    def command(
        self,
        name: str,
        *,
        usage: str,
        zh: str,
        en: str,
        aliases: Sequence[str] = (),
        admin: bool = False,
        where: Where = "room",
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.commands.append(Command(name, fn, usage, zh, en, tuple(aliases), admin, where))
            return fn

        return register

    def fallback(self, fn: Fallback) -> Fallback:
        """Called for text that is no command (e.g. the FAQ), in router order, until one
        handles it."""
        self.fallbacks.append(fn)
        return fn


def _fold_ascii(text: str) -> str:
    """Full-width letters and digits to ASCII, one character for one (offsets stay valid)."""
    out = []
    for ch in text:
        folded = unicodedata.normalize("NFKC", ch) if "\uff01" <= ch <= "\uff5e" else ch
        out.append(folded if len(folded) == 1 else ch)
    return "".join(out)


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
            return text[len(prefix) :].lstrip(), True
    if mentions_self:
        # The service says we were mentioned but the name differs (alias in group): cut the
        # first token.
        m = re.match(r"@[^\u2005\s]+[\u2005\s]+", text)
        if m:
            return text[m.end() :].lstrip(), True
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
        by_name = sorted(self.commands, key=lambda c: -len(c.name))
        # "faq add" also matches "faq  add" and "FAQ add"; a name ends at whitespace or the end.
        self._patterns = [
            (
                re.compile(
                    r"\s+".join(map(re.escape, c.name.split())) + r"(?=\s|$)", re.IGNORECASE
                ),
                c,
            )
            for c in by_name
        ]
        self._aliases = sorted(
            ((a, c) for c in self.commands for a in c.aliases), key=lambda p: -len(p[0])
        )
        self._groups = {c.name.split()[0] for c in self.commands if " " in c.name}

    def listeners(self, event: object) -> list[Listener]:
        return [fn for r in self.routers for t, fn in r.listeners if isinstance(event, t)]

    def startups(self) -> list[Startup]:
        return [fn for r in self.routers for fn in r.startups]

    def parse(self, text: str) -> tuple[Command, str] | None:
        if text.startswith("/"):
            body = text[1:]
            head = _fold_ascii(body[:80])
            for pattern, cmd in self._patterns:
                m = pattern.match(head)
                if m:
                    return cmd, body[m.end() :].strip()
            return None
        for alias, cmd in self._aliases:
            if text == alias:
                return cmd, ""
            # "报名 2", "报名2", "报名#2" are commands; "报名了吗" is chatter.
            rest = text[len(alias) :]
            if text.startswith(alias) and re.fullmatch(r"\s*#?\d{1,6}\s*", rest):
                return cmd, rest.strip()
        return None

    def group_of(self, text: str) -> list[Command]:
        """For "/faq" or "/admin foo" (a group without a known subcommand): its commands."""
        if not text.startswith("/"):
            return []
        word = _fold_ascii(text[1:41]).split(maxsplit=1)
        if not word or word[0].lower() not in self._groups:
            return []
        return [c for c in self.commands if c.name.split()[0] == word[0].lower()]

    def visible(self, *, is_manager: bool, private: bool) -> list[Command]:
        out = []
        for c in self.commands:
            if c.admin and not is_manager:
                continue
            if c.admin and not private and c.where == "private":
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
            group = self.group_of(text)
            if group:
                await self._group_usage(req, group)
            else:
                await self._fallback(req, mentioned or msg.mentions_self)
            return
        cmd, args = parsed
        req.command, req.args = cmd, args
        await self._prepare(req, cmd)
        try:
            await self._run(req, cmd)
        except Exception as exc:  # noqa: BLE001 - one place turns failures into replies
            await self._failed(req, exc)

    async def _prepare(self, req: Request, cmd: Command) -> None:
        """Which room the command acts on, and whether the sender manages it."""
        ctx, msg = req.ctx, req.msg
        if msg.room_id is None:
            if cmd.where != "private":
                req.room_id = await ctx.chosen_room(msg.sender_id)
            req.manages = tuple(await ctx.managed_rooms(msg.sender_id))
        req.is_manager = await ctx.is_manager(msg.sender_id, req.room_id)

    async def run_as(self, req: Request, text: str) -> list[str]:
        """Run `text` as a command of the same sender in the same room (what /undo does), with the
        usual permission check and audit; returns its replies instead of sending them."""
        parsed = self.parse(normalise_command_text(text))
        if parsed is None:
            raise UserError(req.t(f"无法执行：{text}", f"Cannot run: {text}"))
        cmd, args = parsed
        sub = Request(
            msg=req.msg,
            ctx=req.ctx,
            text=text,
            args=args,
            command=cmd,
            room_id=req.room_id,
            capture=True,
        )
        if req.msg.room_id is None:
            sub.manages = tuple(await req.ctx.managed_rooms(req.msg.sender_id))
        sub.is_manager = await req.ctx.is_manager(req.msg.sender_id, sub.room_id)
        await self._run(sub, cmd)
        return sub.replies

    async def _check(self, req: Request, cmd: Command) -> None:
        """Raise unless the sender may run `cmd` here; refusals of manager commands are audited."""
        ctx, msg = req.ctx, req.msg
        if not cmd.admin:
            if cmd.where == "room" and msg.room_id is None:
                raise UserError(
                    req.t("这个命令请在群里使用。", "Please use this command in the group.")
                )
            return
        if cmd.where == "private" and msg.room_id is None and req.manages:
            req.is_manager = True  # e.g. /use: a manager of any room may choose among their rooms
        if not req.is_manager:
            if msg.room_id is None and req.room_id is None and req.manages:
                await ctx.audit(msg.sender_id, None, req.text, "no room")
                raise UserError(self._choose_room_text(req))
            await ctx.audit(msg.sender_id, req.room_id, req.text, "refused")
            raise Refused(refusal(req))
        if cmd.where == "private" and msg.room_id is not None:
            await ctx.audit(msg.sender_id, req.room_id, req.text, "error: private chat only")
            raise UserError(
                req.t("请私聊我使用这个命令。", "Please send this command to me privately.")
            )
        if req.room_id is None and cmd.where == "room":
            await ctx.audit(msg.sender_id, None, req.text, "no room")
            raise UserError(self._choose_room_text(req))

    def _choose_room_text(self, req: Request) -> str:
        rooms = "\n".join(f"  {req.ctx.room_name(r)}  {r}" for r in req.manages)
        return req.t(
            f"请先用 /use <群ID或群名> 选择要管理的群：\n{rooms}",
            f"Choose a room first: /use <room id or topic>:\n{rooms}",
        ).rstrip()

    async def _run(self, req: Request, cmd: Command) -> None:
        ctx, msg = req.ctx, req.msg
        await self._check(req, cmd)
        try:
            await cmd.handler(req)
        except Refused:
            if cmd.admin:
                await ctx.audit(msg.sender_id, req.room_id, req.text, "refused")
            raise
        except (UsageError, UserError) as e:
            if cmd.admin:
                result = f"error: {e or type(e).__name__}"
                await ctx.audit(msg.sender_id, req.room_id, req.text, result)
            raise
        except Exception as e:
            if cmd.admin:
                result = f"error: internal {type(e).__name__}"
                await ctx.audit(msg.sender_id, req.room_id, req.text, result)
            raise
        if cmd.admin:
            await ctx.audit(msg.sender_id, req.room_id, req.text, "ok")

    async def _group_usage(self, req: Request, group: list[Command]) -> None:
        """ "/admin" alone: the forms this sender may use (members trying manager ones: refused)."""
        ctx, msg = req.ctx, req.msg
        if msg.room_id is None:
            req.room_id = await ctx.chosen_room(msg.sender_id)
            req.manages = tuple(await ctx.managed_rooms(msg.sender_id))
        req.is_manager = await ctx.is_manager(msg.sender_id, req.room_id) or bool(req.manages)
        usable = [c for c in group if req.is_manager or not c.admin]
        try:
            if not usable:
                await ctx.audit(msg.sender_id, req.room_id, req.text, "refused")
                raise Refused(refusal(req))
            lines = [c.help_line(req.lang) for c in usable]
            await req.reply(req.t("用法：\n", "Usage:\n") + "\n".join(lines))
        except Exception as exc:  # noqa: BLE001
            await self._failed(req, exc)

    async def _failed(self, req: Request, exc: Exception) -> None:
        cmd = req.command
        if isinstance(exc, UsageError):
            reason = f"{exc}\n" if str(exc) else ""
            usage = cmd.usage if cmd else ""
            await req.reply(req.t(f"{reason}用法：{usage}", f"{reason}Usage: {usage}"))
        elif isinstance(exc, UserError):
            await req.reply(str(exc))
        else:
            log.exception(
                "handler failed: command=%s room=%s sender=%s msg=%s",
                cmd.name if cmd else None,
                req.msg.room_id,
                req.msg.sender_id,
                req.msg.msg_id,
            )
            await req.reply(
                req.t(
                    "抱歉，处理出错了，已记录，请稍后再试。",
                    "Sorry, something went wrong; it has been logged.",
                )
            )
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


def refusal(req: Request) -> str:
    return req.t("这是管理员命令，你没有权限。", "That is a manager command; not allowed.")


def help_text(dispatcher: Dispatcher, req: Request) -> str:
    private = req.msg.room_id is None
    manager = req.is_manager or bool(req.manages)
    cmds = dispatcher.visible(is_manager=manager, private=private)
    member = [c for c in cmds if not c.admin]
    admin = [c for c in cmds if c.admin]
    lines = [req.t("可用命令：", "Commands:")]
    lines += [_with_alias(c, req.lang) for c in member]
    if admin:
        lines.append(req.t("管理员命令：", "Manager commands:"))
        lines += [c.help_line(req.lang) for c in admin]
        if private and req.room_id is not None and req.is_manager:
            name = req.ctx.room_name(req.room_id)
            lines.append(
                req.t(
                    f"当前管理的群：{name}（{req.room_id}），/use 可切换",
                    f"Managing: {name} ({req.room_id}); /use to switch",
                )
            )
        elif private:
            lines.append(
                req.t(
                    "管理命令需先用 /use <群ID或群名> 选择群",
                    "Choose a room with /use <room id or topic> first",
                )
            )
    return "\n".join(lines)


def _with_alias(c: Command, lang: str) -> str:
    alias = f"（{'/'.join(c.aliases)}）" if c.aliases and lang == "zh" else ""
    return c.help_line(lang) + alias


def width_fold(text: str) -> str:
    """Full-width ASCII to half-width (ＡＢＣ１２３ → ABC123), for argument parsing."""
    return unicodedata.normalize("NFKC", text)

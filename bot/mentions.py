"""`@name` mentions in command arguments → member ids, through room membership.

WeChat writes a mention as "@name" followed by U+2005; people typing by hand use a plain
space, and names themselves may contain spaces ("@Lily Chen"), so at each "@" the longest
member name that fits wins. When the service lists the mentioned ids (`msg.mention_ids`), they
settle duplicates and names the bot has not seen. A bare member id also names a member (that is
how an ambiguous name is disambiguated, and how /undo re-runs a command). Anything that cannot
be resolved to exactly one member raises UserError with a reply that says what to send instead.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bot.router import AT_SEPARATOR, Request, UserError
from storage.records import MemberRecord

_SEPARATORS = frozenset(" \t\n\u00a0\u3000,，、;；" + AT_SEPARATOR)


@dataclass(frozen=True)
class Target:
    id: str
    name: str


@dataclass(frozen=True)
class _Token:
    text: str  # the name after "@", or a bare word
    at: bool  # written as a mention


class MentionError(UserError):
    """A mention that names nobody, or several members."""


def _tokens(text: str, names: Sequence[str]) -> list[_Token]:
    """Split `text` into mentions and bare words; `names` longest first."""
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SEPARATORS:
            i += 1
            continue
        if ch in "@＠":
            rest = text[i + 1:]
            name = next((rest[:len(nm)] for nm in names if _fits(rest, nm)), None)
            if name is None:  # unknown name: up to the WeChat separator, else the next space
                end = rest.find(AT_SEPARATOR)
                if end < 0:
                    end = next((k for k, c in enumerate(rest) if c in _SEPARATORS), len(rest))
                name = rest[:end]
            out.append(_Token(name, True))
            i += 1 + len(name)
            continue
        j = i
        while j < n and text[j] not in _SEPARATORS:
            j += 1
        out.append(_Token(text[i:j], False))
        i = j
    return out


def _fits(rest: str, name: str) -> bool:
    """`rest` starts with `name` (ignoring case) followed by a separator or the end."""
    head = rest[:len(name)]
    return ((head == name or head.casefold() == name.casefold())
            and (len(rest) == len(name) or rest[len(name)] in _SEPARATORS))


def resolve(
    text: str,
    members: Sequence[MemberRecord],
    *,
    mention_ids: Sequence[str] = (),
    known_ids: Collection[str] = (),
    lang: str = "zh",
    example: str = "",
) -> list[Target]:
    """Targets named in `text`, in order, without repeats.

    `members`: the room's members (store.members.list). `mention_ids`: ids the service says the
    message mentions (the bot's own id excluded by the caller). `known_ids`: ids accepted even
    when not members (e.g. current admins who left, for removal). `example`: the command to show
    in the disambiguation hint, e.g. "/admin add".
    """

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    present = [m for m in members if m.left_ts is None]
    by_id = {m.member_id: m for m in members}
    names = sorted({m.name for m in present if m.name}, key=len, reverse=True)
    tokens = _tokens(text, names)
    mentioned = [i for i in mention_ids if i]
    found: list[Target | None] = []
    unresolved: list[int] = []
    for k, tok in enumerate(tokens):
        if not tok.at and (tok.text in by_id or tok.text in known_ids or tok.text in mentioned):
            rec = by_id.get(tok.text)
            found.append(Target(tok.text, rec.name if rec and rec.name else tok.text))
            continue
        if not tok.at:
            raise MentionError(t(
                f"「{tok.text}」不是本群成员。请用 @昵称 或成员 ID 指定。",
                f"{tok.text!r} is not a member here. Use @name or the member id."))
        same = [m for m in present if m.name == tok.text]
        if not same:  # tolerate case and width differences when nothing matches exactly
            key = tok.text.casefold()
            same = [m for m in present if m.name.casefold() == key]
        if len(same) > 1 and mentioned:
            narrowed = [m for m in same if m.member_id in mentioned]
            same = narrowed or same
        if len(same) == 1:
            found.append(Target(same[0].member_id, same[0].name))
        elif not same:
            found.append(None)
            unresolved.append(k)
        else:
            lines = "\n".join(f"  {example} {m.member_id}".strip() + f"  （{m.name}）"
                              for m in same)
            raise MentionError(t(
                f"本群有 {len(same)} 位成员叫「{tok.text}」，请改用成员 ID：\n{lines}",
                f"{len(same)} members are called {tok.text!r}; use the member id instead:\n"
                f"{lines}"))
    if unresolved:
        # Names the bot has not seen (yet): the service's mention list says who they are.
        claimed = {f.id for f in found if f is not None}
        spare = [i for i in mentioned if i not in claimed]
        if len(spare) != len(unresolved):
            who = "、".join(f"@{tokens[k].text}" for k in unresolved)
            raise MentionError(t(f"本群找不到成员 {who}。请检查昵称，或改用成员 ID。",
                                 f"No member {who} here. Check the name, or use the member id."))
        for k, member_id in zip(unresolved, spare, strict=True):
            rec = by_id.get(member_id)
            found[k] = Target(member_id, rec.name if rec and rec.name else tokens[k].text)
    out: list[Target] = []
    for f in found:
        if f is not None and f.id not in {o.id for o in out}:
            out.append(f)
    return out


def resolve_members(req: Request, text: str | None = None, *, room_id: str | None = None,
                    known_ids: Collection[str] = ()) -> list[Target]:
    """Targets named in `text` (default: the command's arguments) among the members of
    `room_id` (default: the room the command acts on)."""
    room = room_id or req.room_id
    if room is None:
        raise UserError(req.t("请先用 /use 选择群。", "Choose a room with /use first."))
    ctx = req.ctx
    mentioned = [i for i in req.msg.mention_ids if i != ctx.self_id]
    if req.msg.room_id != room:
        mentioned = []  # mentions made in another conversation say nothing about this room
    example = f"/{req.command.name}" if req.command else ""
    return resolve(req.args if text is None else text, ctx.store.members.list(room),
                   mention_ids=mentioned, known_ids=known_ids, lang=req.lang, example=example)

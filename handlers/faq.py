"""FAQ: answers to members' questions, `/faq` commands, `qunbot faq import|export`.

When the bot speaks (SPEC section 4):
* group: unprompted only for a *confident* match; when @mentioned or asked with a question
  mark, a *fair* match is enough.  Anything else stays silent: a wrong answer in a group is
  worse than none.  A question nobody could answer is logged as a miss.
* private chat: the best fair match from the global set and the sets of the member's rooms,
  else "I don't know" with how to reach a manager (and a miss).  Every message gets a reply.
* the same entry is not repeated in a room within ``faq.cooldown_s``: later askers get an
  @mention pointing up instead.

The matcher index (bot/faq_matcher.py) lives in ``ctx.services["faq"]``, built from storage
at startup and updated by every edit, so edits take effect at once.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import hashlib
import io
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bot.context import Context
from bot.events import Outgoing
from bot.faq_matcher import (
    DEFAULT_CONFIDENT,
    DEFAULT_FAIR,
    FaqDoc,
    FaqIndex,
    Match,
    group_misses,
    is_question,
    normalize,
)
from bot.outbox import Priority
from bot.router import Request, Router, UsageError, UserError, strip_mention
from bot.scheduler import Firing
from storage.faq import GLOBAL, FaqEntry, FaqRepo, FaqRow

log = logging.getLogger("qunbot.faq")

router = Router("faq")

MAX_QUESTION = 200
MAX_ANSWER = 2000
MAX_FORMS = 30
LIST_LIMIT = 40  # entries shown by /faq list; the rest via export
MISS_GROUPS = 10
_SPLIT_Q = re.compile(r"[;；\n]")
_BAR = re.compile(r"[|｜]")
_IMG = re.compile(r"\[(?:img|image|图片)[:：]\s*([^\]]+)\]", re.IGNORECASE)
_MENTION = re.compile(r"@[^@\u2005\n]{1,40}\u2005")
_LINK = re.compile(r"^https?://\S+$")


# ---------------------------------------------------------------------------------------------
# the service: storage + index + cool-down, shared by chat, console and tests
# ---------------------------------------------------------------------------------------------


class _AnyOf:
    """`key in keys` over several per-room key sets, without building their union."""

    def __init__(self, sets: Sequence[set[str]]) -> None:
        self._sets = sets

    def __contains__(self, key: object) -> bool:
        return any(key in s for s in self._sets)


def _doc(entry: FaqEntry) -> FaqDoc:
    return FaqDoc(entry.key, entry.questions, entry.answer)


@dataclass
class FaqService:
    repo: FaqRepo
    index: FaqIndex
    cooldown_s: float
    room_keys: dict[str, set[str]] = field(default_factory=dict)
    last_answer: dict[tuple[str, str], float] = field(default_factory=dict)  # (room, key) -> ts

    @classmethod
    def build(
        cls, repo: FaqRepo, *, confident: float, fair: float, cooldown_s: float
    ) -> FaqService:
        entries = repo.entries()
        svc = cls(
            repo, FaqIndex((_doc(e) for e in entries), confident=confident, fair=fair), cooldown_s
        )
        for e in entries:
            svc.room_keys.setdefault(e.room, set()).add(e.key)
        return svc

    def by_key(self, key: str) -> FaqEntry | None:
        room, _, num = key.rpartition("#")
        return self.repo.get(room, int(num)) if num.isdigit() else None

    def best(self, text: str, rooms: Iterable[str]) -> Match | None:
        """The best entry of these rooms' sets (and the global set), whatever its score."""
        keys = _AnyOf([self.room_keys.get(r, set()) for r in (*rooms, GLOBAL)])
        top = self.index.top(text, 1, keys)
        return top[0] if top else None

    # edits: storage first (durable), then the index, so a failed write changes nothing
    async def add(
        self,
        room: str,
        questions: Sequence[str],
        answer: str,
        *,
        image: str | None = None,
        link: str | None = None,
    ) -> FaqEntry:
        entry = await self.repo.add(room, questions, answer, image=image, link=link)
        self._indexed(entry)
        return entry

    async def update(self, room: str, num: int, **fields: Any) -> FaqEntry | None:
        entry = await self.repo.update(room, num, **fields)
        if entry is not None:
            self._indexed(entry)
        return entry

    async def delete(self, room: str, num: int) -> FaqEntry | None:
        entry = await self.repo.delete(room, num)
        if entry is not None:
            self.index.remove(entry.key)
            self.room_keys.get(room, set()).discard(entry.key)
        return entry

    def _indexed(self, entry: FaqEntry) -> None:
        self.index.add(_doc(entry))
        self.room_keys.setdefault(entry.room, set()).add(entry.key)


def service(ctx: Context) -> FaqService:
    svc = ctx.services.get("faq")
    if not isinstance(svc, FaqService):
        raise RuntimeError("FAQ service not started")
    return svc


def thresholds(ctx: Context) -> tuple[float, float]:
    s = ctx.settings.faq
    confident = s.confident if s.confident is not None else DEFAULT_CONFIDENT
    fair = s.fair if s.fair is not None else DEFAULT_FAIR
    if fair > confident:
        log.warning(
            "faq.fair %.2f > faq.confident %.2f: using %.2f for both", fair, confident, confident
        )
        fair = confident
    return confident, fair


@router.startup
async def _start(ctx: Context) -> None:
    repo = FaqRepo(ctx.store)
    confident, fair = thresholds(ctx)
    # Building the index loads jieba (~1 s): keep it off the event loop.
    svc = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: FaqService.build(
            repo, confident=confident, fair=fair, cooldown_s=ctx.settings.faq.cooldown_s
        ),
    )
    ctx.services["faq"] = svc
    await _purge(ctx)

    async def purge_job(_: Firing) -> None:
        await _purge(ctx)

    ctx.scheduler.cron("faq:purge-misses", "17 4 * * *", purge_job)


async def _purge(ctx: Context) -> None:
    days = ctx.settings.privacy.miss_text_days
    n = await service(ctx).repo.purge_misses(ctx.clock.now() - days * 86400)
    if n:
        log.info("purged %d FAQ miss texts older than %d days", n, days)


# ---------------------------------------------------------------------------------------------
# answering
# ---------------------------------------------------------------------------------------------


def _addressed(req: Request) -> bool:
    # The router knows this (`_fallback(req, addressed)`) but does not put it on the Request.
    msg, ctx = req.msg, req.ctx
    if msg.mentions_self or (ctx.self_id and ctx.self_id in msg.mention_ids):
        return True
    return strip_mention(msg.text, ctx.self_name, msg.mentions_self)[1]


def _label(req: Request, entry: FaqEntry) -> str:
    return (
        f"#{entry.num}"
        if entry.room != GLOBAL
        else req.t(f"全局#{entry.num}", f"global #{entry.num}")
    )


def _member_rooms(ctx: Context, member_id: str) -> list[str]:
    out = []
    for room in sorted(ctx.served_rooms()):
        rec = ctx.store.members.get(room, member_id)
        if rec is not None and rec.present:
            out.append(room)
    return out


@router.fallback
async def answer(req: Request) -> bool:
    if "faq" not in req.ctx.services:
        return False
    if req.msg.room_id is None:
        await _private(req)
        return True
    return await _group(req, req.msg.room_id)


async def _group(req: Request, room: str) -> bool:
    text = req.text
    if req.msg.kind != "text" or not text or text.startswith("/"):
        return False
    svc = service(req.ctx)
    addressed = _addressed(req)
    asked = addressed or "?" in text or "？" in text
    m = svc.best(text, [room])
    if m is not None and (m.confident or (asked and m.fair)):
        entry = svc.by_key(m.key)
        if entry is not None:
            await _deliver(req, svc, entry, room)
            return True
    if not normalize(text):
        return False
    if addressed or is_question(text):
        await _miss(req, text, [room], private=False)
    if addressed and (asked or is_question(text)):
        await req.reply(_dont_know(req, [room]))
        return True
    return False


async def _private(req: Request) -> None:
    text, msg = req.text, req.msg
    if msg.kind != "text":
        await req.reply(
            req.t(
                "我只能看懂文字消息，请用文字提问。",
                "I can only read text; please type your question.",
            )
        )
        return
    if text.startswith("/"):
        await req.reply(
            req.t(
                "没有这个命令。发送 /help 查看可用命令。",
                "No such command. Send /help to see what you can use.",
            )
        )
        return
    if not normalize(text):
        await req.reply(
            req.t(
                "你好！有问题直接发给我，或发送 /help 查看命令。",
                "Hello! Ask me a question, or send /help for the commands.",
            )
        )
        return
    svc = service(req.ctx)
    rooms = _member_rooms(req.ctx, msg.sender_id)
    m = svc.best(text, rooms)
    entry = svc.by_key(m.key) if m is not None and m.fair else None
    if entry is not None:
        await _deliver(req, svc, entry, None)
        return
    await _miss(req, text, rooms, private=True)
    await req.reply(_dont_know(req, rooms))


async def _deliver(req: Request, svc: FaqService, entry: FaqEntry, room: str | None) -> None:
    ctx = req.ctx
    now = ctx.clock.now()
    recent = svc.last_answer.get((room, entry.key)) if room else None
    if room and (recent is None or now - recent >= svc.cooldown_s):
        # Claimed before the first await: concurrent askers see it and get the pointer.
        svc.last_answer[(room, entry.key)] = now
    await svc.repo.record_answer(entry, room or GLOBAL)
    if recent is not None and now - recent < svc.cooldown_s:
        what = f"{_label(req, entry)} {entry.questions[0]}"
        await req.reply(
            req.t(
                f"这个问题刚刚回答过，请看上面的消息（{what}）。",
                f"This was just answered, see above ({what}).",
            )
        )
        return
    text = entry.answer + (f"\n{entry.link}" if entry.link else "")
    await req.reply(text)
    if entry.image:
        image = safe_image(ctx, entry.image)
        if image is not None:
            ctx.send(
                Outgoing(
                    req.msg.conversation_id,
                    image.name,
                    priority=Priority.REPLY,
                    file_path=str(image),
                )
            )
        else:
            log.warning("FAQ %s: image %s is missing; sent the text only", entry.key, entry.image)


async def _miss(req: Request, text: str, rooms: Sequence[str], *, private: bool) -> None:
    ctx = req.ctx
    keep = ctx.settings.privacy.miss_text_days > 0
    text = _MENTION.sub(" ", text).strip()  # nobody's name in the log
    await service(ctx).repo.record_miss(
        text, rooms, private=private, ts=ctx.clock.now(), keep_text=keep
    )


def _dont_know(req: Request, rooms: Sequence[str]) -> str:
    ctx = req.ctx
    ids = list(ctx.settings.admins)
    for r in rooms:
        ids += [a for a in ctx.store.admins.list(r) if a not in ids]
    names = [
        ctx.member_name(r, i) for i in ids for r in rooms if ctx.store.members.get(r, i) is not None
    ]
    names = list(dict.fromkeys(n for n in names if n))[:3]
    who = "、".join(f"@{n}" for n in names) if names else req.t("群主或管理员", "a group manager")
    return req.t(
        f"这个问题我还不会回答，已记下来请管理员补充。着急的话请在群里联系 {who}。",
        f"I don't know the answer yet; I've noted it for the managers. If it is urgent, "
        f"ask {who} in the group.",
    )


# ---------------------------------------------------------------------------------------------
# /faq commands (managers)
# ---------------------------------------------------------------------------------------------

FAQ_USAGES = (
    "/faq add 问题1; 问题2 | 答案",
    "/faq list",
    "/faq del N",
    "/faq edit N | 新答案",
    "/faq addq N | 新问法",
    "/faq misses [天数]",
)


def _split_bar(req: Request) -> tuple[str, str]:
    parts = _BAR.split(req.args, maxsplit=1)
    if len(parts) != 2:
        raise UsageError(req.t("缺少 |", "missing |"))
    return parts[0].strip(), parts[1].strip()


def _questions(req: Request, raw: str) -> list[str]:
    qs = list(dict.fromkeys(q.strip() for q in _SPLIT_Q.split(raw) if q.strip()))
    if not qs:
        raise UsageError(req.t("至少要有一个问题", "give at least one question"))
    if len(qs) > MAX_FORMS or any(len(q) > MAX_QUESTION for q in qs):
        raise UserError(
            req.t(
                f"问题最多 {MAX_FORMS} 种问法，每个不超过 {MAX_QUESTION} 字。",
                f"At most {MAX_FORMS} questions of {MAX_QUESTION} characters each.",
            )
        )
    if not any(normalize(q) for q in qs):
        raise UserError(req.t("问题里没有文字。", "The questions contain no words."))
    return qs


def image_dir(ctx: Context) -> Path:
    """FAQ images must live here: a chat command may never make the bot send any other file
    of the host (config with the service token, member data) into a room."""
    return ctx.settings.data_dir / "faq_images"


def safe_image(ctx: Context, given: str) -> Path | None:
    """The image file `given` (a name inside image_dir, or a path to one), or None."""
    folder = image_dir(ctx).resolve()
    path = (folder / given).resolve()
    return path if path.is_relative_to(folder) and path.is_file() else None


def _answer_parts(req: Request, raw: str) -> tuple[str, str | None]:
    """Answer text (links stay in it) and an image given as `[img:NAME]` / `[图片:NAME]`,
    a file in data_dir/faq_images."""
    image = None
    m = _IMG.search(raw)
    if m:
        found = safe_image(req.ctx, m.group(1).strip())
        if found is None:
            folder = image_dir(req.ctx)
            raise UserError(
                req.t(
                    f"找不到图片：请先把图片放进 {folder}，再写 [img:文件名]",
                    f"No such image: put it in {folder} and write [img:FILE]",
                )
            )
        image = str(found)
        raw = (raw[: m.start()] + raw[m.end() :]).strip()
    if not raw:
        raise UsageError(req.t("答案不能为空", "the answer is empty"))
    if len(raw) > MAX_ANSWER:
        raise UserError(
            req.t(
                f"答案不能超过 {MAX_ANSWER} 字。",
                f"Answers are limited to {MAX_ANSWER} characters.",
            )
        )
    return raw, image


def _target(req: Request, token: str) -> tuple[str, int]:
    """`N` → (this room, N); `G3`/`*3` → the global set, for global managers only."""
    t = token.strip().lstrip("#")
    room = req.room_id or ""
    if t[:1] in ("g", "G", "*"):
        _need_global(req)
        room, t = GLOBAL, t[1:]
    return room, req.int_arg(t)


def _need_global(req: Request) -> None:
    if req.msg.sender_id not in req.ctx.settings.admins:
        raise UserError(
            req.t(
                "只有全局管理员能修改全局问答。", "Only global managers can change the global set."
            )
        )


def _entry_or_fail(req: Request, room: str, num: int) -> FaqEntry:
    entry = service(req.ctx).repo.get(room, num)
    if entry is None:
        raise UserError(
            req.t(
                f"没有编号为 #{num} 的问答，发 /faq list 查看。",
                f"There is no FAQ #{num}; see /faq list.",
            )
        )
    return entry


def _add_command(entry: FaqEntry) -> str:
    img = f" [img:{entry.image}]" if entry.image else ""
    link = f" {entry.link}" if entry.link and entry.link not in entry.answer else ""
    glob = "* " if entry.room == GLOBAL else ""
    return f"/faq add {glob}{'; '.join(entry.questions)} | {entry.answer}{link}{img}"


@router.command(
    "faq", usage="/faq", zh="FAQ 管理命令一览", en="the FAQ manager commands", admin=True
)
async def faq_help(req: Request) -> None:
    await req.reply("\n".join(FAQ_USAGES))


@router.command(
    "faq add",
    usage="/faq add 问题1; 问题2 | 答案",
    zh="添加问答（多种问法用 ; 分隔）",
    en="add an FAQ entry (questions separated by ;)",
    admin=True,
)
async def faq_add(req: Request) -> None:
    left, right = _split_bar(req)
    room = req.room_id or ""
    if left.startswith("* "):  # the global set
        _need_global(req)
        room, left = GLOBAL, left[2:]
    questions = _questions(req, left)
    text, image = _answer_parts(req, right)
    svc = service(req.ctx)
    entry = await svc.add(room, questions, text, image=image)
    note = _similar_note(req, svc, entry)
    await req.reply(
        req.t(
            f"已添加 {_label(req, entry)}（{len(questions)} 种问法）。",
            f"Added {_label(req, entry)} ({len(questions)} question forms).",
        )
        + note
    )


def _similar_note(req: Request, svc: FaqService, entry: FaqEntry) -> str:
    """Warn when a new question form is confidently matched by another entry: they compete."""
    others: set[str] = set()
    keys = _AnyOf([svc.room_keys.get(entry.room, set()), svc.room_keys.get(GLOBAL, set())])
    for q in entry.questions:
        for m in svc.index.top(q, 2, keys):
            if m.key != entry.key and m.confident:
                other = svc.by_key(m.key)
                if other is not None:
                    others.add(_label(req, other))
    if not others:
        return ""
    return req.t(
        f"\n注意：与 {'、'.join(sorted(others))} 的问法很像，可能会答错，请检查。",
        f"\nNote: close to {', '.join(sorted(others))}; check they do not compete.",
    )


@router.command(
    "faq list", usage="/faq list", zh="列出本群问答", en="list this room's FAQ entries", admin=True
)
async def faq_list(req: Request) -> None:
    repo = service(req.ctx).repo
    room = req.room_id or ""
    entries = repo.entries(room)
    glob = repo.entries(GLOBAL)
    if not entries and not glob:
        await req.reply(
            req.t(
                "还没有问答。添加：/faq add 问题1; 问题2 | 答案",
                "No FAQ entries yet. Add one: /faq add Q1; Q2 | answer",
            )
        )
        return
    lines = [req.t(f"本群问答 {len(entries)} 条：", f"{len(entries)} entries in this room:")]
    for e in entries[:LIST_LIMIT]:
        lines.append(_list_line(req, e))
    if len(entries) > LIST_LIMIT:
        lines.append(
            req.t(
                f"……还有 {len(entries) - LIST_LIMIT} 条，完整列表：qunbot faq export",
                f"... {len(entries) - LIST_LIMIT} more; full list: qunbot faq export",
            )
        )
    if glob:
        lines.append(
            req.t(f"全局问答 {len(glob)} 条（所有群通用）：", f"{len(glob)} global entries:")
        )
        lines += [_list_line(req, e) for e in glob[:10]]
        if len(glob) > 10:
            lines.append("……")
    await req.reply("\n".join(lines))


def _list_line(req: Request, e: FaqEntry) -> str:
    qs = " / ".join(e.questions[:3]) + (" …" if len(e.questions) > 3 else "")
    ans = e.answer.replace("\n", " ")
    ans = ans[:24] + "…" if len(ans) > 24 else ans
    extra = req.t("［图］", "[img]") if e.image else ""
    return f"{_label(req, e)} {qs} → {ans}{extra}（{req.t('命中', 'hits')} {e.hits}）"


@router.command("faq del", usage="/faq del N", zh="删除问答", en="delete an FAQ entry", admin=True)
async def faq_del(req: Request) -> None:
    room, num = _target(req, req.args)
    _entry_or_fail(req, room, num)
    entry = await service(req.ctx).delete(room, num)
    if entry is None:  # another manager deleted it a moment ago
        raise UserError(req.t(f"#{num} 已经不存在了。", f"#{num} no longer exists."))
    hint = await req.remember_undo(_add_command(entry), f"/faq del {num}")
    await req.reply(
        req.t(f"已删除 {_label(req, entry)}。", f"Deleted {_label(req, entry)}. ") + hint
    )


@router.command(
    "faq edit",
    usage="/faq edit N | 新答案",
    zh="修改问答的答案",
    en="change an entry's answer",
    admin=True,
)
async def faq_edit(req: Request) -> None:
    left, right = _split_bar(req)
    room, num = _target(req, left)
    old = _entry_or_fail(req, room, num)
    text, image = _answer_parts(req, right)
    fields: dict[str, Any] = {"answer": text}
    if image:
        fields["image"] = image
    entry = await service(req.ctx).update(room, num, **fields)
    assert entry is not None
    await req.reply(
        req.t(
            f"已修改 {_label(req, entry)} 的答案。原答案：{old.answer[:200]}",
            f"Changed the answer of {_label(req, entry)}. It was: {old.answer[:200]}",
        )
    )


@router.command(
    "faq addq",
    usage="/faq addq N | 新问法",
    zh="给问答增加问法（如 /faq misses 里的问题）",
    en="add question forms to an entry (e.g. from /faq misses)",
    admin=True,
)
async def faq_addq(req: Request) -> None:
    left, right = _split_bar(req)
    room, num = _target(req, left)
    old = _entry_or_fail(req, room, num)
    new = [q for q in _questions(req, right) if q not in old.questions]
    if not new:
        raise UserError(req.t("这些问法已经有了。", "Those questions are already there."))
    questions = [*old.questions, *new]
    if len(questions) > MAX_FORMS:
        raise UserError(req.t(f"最多 {MAX_FORMS} 种问法。", f"At most {MAX_FORMS} question forms."))
    entry = await service(req.ctx).update(room, num, questions=questions)
    assert entry is not None
    await req.reply(
        req.t(
            f"已为 {_label(req, entry)} 添加 {len(new)} 种问法（共 {len(questions)} 种）。",
            f"Added {len(new)} question form(s) to {_label(req, entry)} ({len(questions)} in all).",
        )
    )


@router.command(
    "faq misses",
    usage="/faq misses [天数]",
    zh="没答上的问题（按相似归组，多的在前）",
    en="questions the bot could not answer, grouped, most frequent first",
    admin=True,
)
async def faq_misses(req: Request) -> None:
    ctx = req.ctx
    keep = ctx.settings.privacy.miss_text_days
    days = req.int_arg(req.args, req.t("天数", "days")) if req.args.strip() else min(7, keep or 7)
    if days <= 0:
        raise UsageError(req.t("天数应大于 0", "days must be more than 0"))
    days = min(days, keep) if keep else days
    await _purge(ctx)
    svc = service(ctx)
    room = req.room_id or ""
    misses = svc.repo.misses(room, since_ts=ctx.clock.now() - days * 86400)
    stats = svc.repo.counters(room)
    total = req.t(
        f"（累计：回答 {stats['answers']} 次，未答 {stats['misses']} 次）",
        f"(all time: {stats['answers']} answered, {stats['misses']} missed)",
    )
    if not misses:
        note = "" if keep else req.t("（设置为不保存问题原文）", " (texts are not kept)")
        await req.reply(
            req.t(
                f"最近 {days} 天没有未答的问题{note}。",
                f"No unanswered questions in the last {days} days{note}.",
            )
            + total
        )
        return
    groups = group_misses([m.text for m in misses])
    lines = [
        req.t(
            f"最近 {days} 天未答的问题 {len(misses)} 条，{len(groups)} 类：",
            f"{len(misses)} unanswered questions in the last {days} days, {len(groups)} groups:",
        )
    ]
    for i, g in enumerate(groups[:MISS_GROUPS], 1):
        others = g.examples[1:]
        more = (
            req.t(f"；类似：{' / '.join(others)}", f"; similar: {' / '.join(others)}")
            if others
            else ""
        )
        lines.append(
            req.t(
                f"{i}. {g.representative}（{g.count} 次）{more}",
                f"{i}. {g.representative} ({g.count}x){more}",
            )
        )
    if len(groups) > MISS_GROUPS:
        lines.append(
            req.t(
                f"……还有 {len(groups) - MISS_GROUPS} 类",
                f"... {len(groups) - MISS_GROUPS} more groups",
            )
        )
    lines.append(
        req.t(
            "补进已有问答：/faq addq N | 问题；新建：/faq add 问题 | 答案",
            "Add to an entry: /faq addq N | question; new: /faq add question | answer",
        )
    )
    lines.append(total)
    await req.reply("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# import / export (qunbot faq import|export FILE [--room ID] [--config bot.yaml])
# ---------------------------------------------------------------------------------------------

FIELDS = ("room", "num", "questions", "answer", "image", "link", "hits")
_ALIASES = {
    "question": "questions",
    "问题": "questions",
    "问法": "questions",
    "答案": "answer",
    "群": "room",
    "编号": "num",
    "id": "num",
    "图片": "image",
    "链接": "link",
    "命中": "hits",
    "key": None,
}  # key: eval-set files carry one; ignored
PROGRESS_MIN = 200  # rows: longer files print progress


@dataclass
class BadRow:
    line: int
    reason: str


def _room_of(value: Any) -> str:
    v = str(value or "").strip()
    return GLOBAL if v in ("", "*", "global", "全局") else v


def parse_row(raw: Any, *, base: Path, room: str | None) -> FaqRow:
    """One row of an import file → FaqRow; raises ValueError with the reason."""
    if not isinstance(raw, dict):
        raise ValueError("expected a mapping with questions and answer")
    row: dict[str, Any] = {}
    for k, v in raw.items():
        low = str(k).strip().lower()
        name = _ALIASES.get(low, low)
        if name is None:
            continue
        if name not in FIELDS:
            raise ValueError(f"unknown field {k!r} (allowed: {', '.join(FIELDS)})")
        row[name] = v
    qs_raw = row.get("questions")
    if isinstance(qs_raw, str):
        qs = [q.strip() for q in _SPLIT_Q.split(qs_raw) if q.strip()]
    elif isinstance(qs_raw, list) and all(isinstance(q, str | int | float) for q in qs_raw):
        qs = [str(q).strip() for q in qs_raw if str(q).strip()]
    else:
        raise ValueError("questions: give a list, or one text with ; between questions")
    if not qs or not any(normalize(q) for q in qs):
        raise ValueError("questions: no question text")
    if len(qs) > MAX_FORMS or any(len(q) > MAX_QUESTION for q in qs):
        raise ValueError(f"questions: at most {MAX_FORMS}, each up to {MAX_QUESTION} characters")
    answer = row.get("answer")
    if not isinstance(answer, str | int | float) or not str(answer).strip():
        raise ValueError("answer: missing or empty")
    answer = str(answer).strip()
    if len(answer) > MAX_ANSWER:
        raise ValueError(f"answer: longer than {MAX_ANSWER} characters")
    num = _opt_int(row.get("num"), "num", minimum=1)
    hits = _opt_int(row.get("hits"), "hits", minimum=0) or 0
    image = str(row.get("image") or "").strip() or None
    if image is not None:
        path = Path(image) if Path(image).is_absolute() else base / image
        if not path.is_file():
            raise ValueError(f"image: no such file {path}")
        image = str(path.resolve())
    link = str(row.get("link") or "").strip() or None
    if link is not None and not _LINK.match(link):
        raise ValueError("link: must start with http:// or https://")
    row_room = _room_of(row.get("room"))
    if room is not None and room != row_room:
        num = None  # copied into another room: new numbers, never overwrite its entries
        row_room = room
    return FaqRow(row_room, tuple(dict.fromkeys(qs)), answer, num, image, link, hits)


def _opt_int(v: Any, name: str, *, minimum: int) -> int | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        raise ValueError(f"{name}: must be a whole number")
    try:
        n = int(str(v).strip().lstrip("#"))
    except ValueError:
        raise ValueError(f"{name}: must be a whole number, got {v!r}") from None
    if n < minimum:
        raise ValueError(f"{name}: must be at least {minimum}")
    return n


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, raw row) of a YAML or CSV file, by extension."""
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        for rec in reader:
            extra = rec.pop(None, None)
            if extra:
                yield reader.line_num, "too many columns"
                continue
            if not any((v or "").strip() for v in rec.values()):
                continue  # blank line
            yield reader.line_num, {k: v for k, v in rec.items() if k is not None}
        return
    if suffix not in (".yaml", ".yml"):
        raise ValueError(f"{path}: use a .yaml, .yml or .csv file")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if node is None:
        return
    items_node = node
    if isinstance(node, yaml.MappingNode):
        found = [v for k, v in node.value if getattr(k, "value", None) == "entries"]
        if not found or not isinstance(data, dict):
            raise ValueError(f"{path}: expected a list of entries, or `entries:` with a list")
        items_node, data = found[0], data["entries"]
    if not isinstance(items_node, yaml.SequenceNode) or not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of entries")
    for n, raw in zip(items_node.value, data, strict=True):
        yield n.start_mark.line + 1, raw


def load_file(
    path: Path, *, room: str | None, progress: Any = None
) -> tuple[list[FaqRow], list[BadRow]]:
    """Read and validate every row; bad rows are collected with their line numbers."""
    rows: list[FaqRow] = []
    bad: list[BadRow] = []
    seen: dict[tuple[str, int], int] = {}
    raw_rows = list(read_rows(path))
    total = len(raw_rows)
    for i, (line, raw) in enumerate(raw_rows, 1):
        try:
            if isinstance(raw, str):
                raise ValueError(raw)
            row = parse_row(raw, base=path.parent, room=room)
            if row.num is not None:
                first = seen.setdefault((row.room, row.num), line)
                if first != line:
                    raise ValueError(f"num {row.num}: also used on line {first}")
            rows.append(row)
        except ValueError as e:
            bad.append(BadRow(line, str(e)))
        if (
            progress is not None
            and total >= PROGRESS_MIN
            and (i % max(1, total // 10) == 0 or i == total)
        ):
            progress(f"checked {i}/{total} rows")
    return rows, bad


def export_rows(entries: Sequence[FaqEntry]) -> list[dict[str, Any]]:
    return [
        {
            "room": e.room,
            "num": e.num,
            "questions": list(e.questions),
            "answer": e.answer,
            "image": e.image,
            "link": e.link,
            "hits": e.hits,
        }
        for e in entries
    ]


def write_file(path: Path, entries: Sequence[FaqEntry]) -> None:
    rows = export_rows(entries)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(FIELDS))
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    **r,
                    "questions": "; ".join(r["questions"]),
                    "image": r["image"] or "",
                    "link": r["link"] or "",
                }
            )
        tmp.write_text(buf.getvalue(), encoding="utf-8-sig")  # BOM: Excel reads it as UTF-8
    elif path.suffix.lower() in (".yaml", ".yml"):
        body = yaml.safe_dump(
            {"entries": [{k: v for k, v in r.items() if v is not None} for r in rows]},
            allow_unicode=True,
            sort_keys=False,
            width=1000,
        )
        tmp.write_text(body, encoding="utf-8")
    else:
        raise ValueError(f"{path}: use a .yaml, .yml or .csv file")
    tmp.replace(path)


def faq_cli(argv: list[str]) -> int:
    """`qunbot faq import|export FILE [--room ID] [--config bot.yaml]`; returns the exit code."""
    p = argparse.ArgumentParser(
        prog="qunbot faq", description="import or export FAQ entries (YAML or CSV)"
    )
    p.add_argument("action", choices=("import", "export"))
    p.add_argument("file", type=Path)
    p.add_argument(
        "--room",
        default=None,
        help="room id (or * for the global set); default: the rooms named in the file "
        "(import) or every room (export)",
    )
    p.add_argument("--config", default="bot.yaml")
    args = p.parse_args(argv)
    from bot.cli import load_settings

    settings = load_settings(args.config)
    room = _room_of(args.room) if args.room is not None else None
    if room not in (None, GLOBAL) and room not in settings.room_ids:
        print(f"warning: room {room} is not listed in {args.config} rooms", file=sys.stderr)
    try:
        if args.action == "export":
            return asyncio.run(_export(settings, args.file, room))
        return asyncio.run(_import(settings, args.file, room))
    except (OSError, ValueError) as e:
        print(f"qunbot faq {args.action}: {e}", file=sys.stderr)
        return 1


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _open_store(settings: Any) -> Any:
    from storage.errors import StoreError
    from storage.store import Store

    try:
        return await Store.open(
            settings.data_dir, tz=settings.timezone, backup_keep=settings.backup_keep
        )
    except StoreError as e:
        raise ValueError(str(e)) from None


async def _import(settings: Any, path: Path, room: str | None) -> int:
    rows, bad = load_file(path, room=room, progress=_progress)
    if bad:
        print(f"{path}: {len(bad)} bad row(s); nothing was imported:", file=sys.stderr)
        for b in bad:
            print(f"  line {b.line}: {b.reason}", file=sys.stderr)
        return 1
    if not rows:
        print(f"{path}: no entries", file=sys.stderr)
        return 1
    rows = [_with_image_in_folder(settings.data_dir / "faq_images", r) for r in rows]
    store = await _open_store(settings)
    try:
        if len(rows) >= PROGRESS_MIN:
            _progress(f"writing {len(rows)} entries ...")
        entries, replaced = await FaqRepo(store).import_rows(rows)  # one commit: all or nothing
    finally:
        await store.close()
    rooms = sorted({e.room for e in entries})
    print(f"imported {len(entries)} entries ({replaced} replaced) into {', '.join(rooms)}")
    return 0


def _with_image_in_folder(folder: Path, row: FaqRow) -> FaqRow:
    """Imported images are copied into data_dir/faq_images: only files there are ever sent."""
    if row.image is None:
        return row
    src = Path(row.image)
    if src.resolve().is_relative_to(folder.resolve()):
        return row
    folder.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dest = folder / src.name
    if dest.exists() and dest.read_bytes() != data:
        dest = folder / f"{hashlib.sha256(data).hexdigest()[:8]}-{src.name}"
    dest.write_bytes(data)
    return dataclasses.replace(row, image=str(dest.resolve()))


async def _export(settings: Any, path: Path, room: str | None) -> int:
    store = await _open_store(settings)
    try:
        entries = FaqRepo(store).entries(room)
    finally:
        await store.close()
    if len(entries) >= PROGRESS_MIN:
        _progress(f"writing {len(entries)} entries ...")
    write_file(path, entries)
    print(
        f"exported {len(entries)} entries to {path} at "
        f"{datetime.now(settings.tz).strftime('%Y-%m-%d %H:%M')}"
    )
    return 0

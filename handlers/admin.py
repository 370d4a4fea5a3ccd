"""Managers: room admins, /use from a private chat, the audit log, /undo.

Who may run what is decided by the router (bot/router.py), once per command; these handlers
only act. Roles: global managers are bot.yaml `admins`; room admins are stored per room
(store.admins); with `room_owner_is_admin` the room's WeChat owner is one too.
"""

from __future__ import annotations

from datetime import datetime

from tinydb import Query

from bot.context import UNDO_WINDOW_S, Context
from bot.mentions import Target, resolve_members
from bot.router import Dispatcher, Refused, Request, Router, UsageError, UserError

router = Router("admin")

AUDIT_DEFAULT, AUDIT_MAX = 10, 50
_OFF = {"off", "none", "clear", "退出", "取消"}


def _name(ctx: Context, room_id: str | None, member_id: str) -> str:
    """The member's name in that room, else in any served room (private-chat rows), else the id."""
    for room in [room_id, *sorted(ctx.served_rooms())]:
        name = ctx.member_name(room, member_id)
        if name != member_id:
            return name
    return member_id


def _who(req: Request, targets: list[Target]) -> str:
    return "、".join(t.name for t in targets) if req.lang == "zh" else ", ".join(
        t.name for t in targets)


def _room_label(ctx: Context, room_id: str) -> str:
    name = ctx.room_name(room_id)
    return f"{name}（{room_id}）" if name != room_id else room_id


# --- room admins ------------------------------------------------------------------------------
@router.command("admin add", usage="/admin add @昵称", zh="设为本群管理员", en="make a room admin",
                admin=True)
async def admin_add(req: Request) -> None:
    ctx, room = req.ctx, req.room_id
    assert room is not None
    if not req.args:
        raise UsageError()
    targets = resolve_members(req)
    if not targets:
        raise UsageError()
    added, already = [], []
    for t in targets:
        if t.id == ctx.self_id:
            raise UserError(req.t("机器人自己不能做管理员。", "The bot cannot be an admin."))
        global_ = ctx.is_global_manager(t.id)
        if not global_ and await ctx.store.admins.add(room, t.id, req.msg.sender_id):
            added.append(t)
        else:
            already.append(t)
    parts = []
    if added:
        parts.append(req.t(f"已将 {_who(req, added)} 设为「{ctx.room_name(room)}」的管理员。",
                           f"{_who(req, added)} now admin of {ctx.room_name(room)}."))
    if already:
        parts.append(req.t(f"{_who(req, already)} 已经是管理员。",
                           f"{_who(req, already)} already a manager."))
    await req.reply("\n".join(parts))


@router.command("admin del", usage="/admin del @昵称", zh="取消本群管理员",
                en="remove a room admin", admin=True)
async def admin_del(req: Request) -> None:
    ctx, room = req.ctx, req.room_id
    assert room is not None
    if not req.args:
        raise UsageError()
    current = ctx.store.admins.list(room)
    targets = resolve_members(req, known_ids=current)  # an admin who left can still be removed
    if not targets:
        raise UsageError()
    removed: list[Target] = []
    notes: list[str] = []
    for t in targets:
        if await ctx.store.admins.remove(room, t.id):
            removed.append(t)
        elif ctx.is_global_manager(t.id):
            notes.append(req.t(f"{t.name} 是全局管理员（bot.yaml 的 admins），不能在群里移除。",
                               f"{t.name} is a global manager (bot.yaml admins)."))
        elif ctx.settings.room_owner_is_admin and await ctx.room_owner(room) == t.id:
            notes.append(req.t(f"{t.name} 是群主，按配置 room_owner_is_admin 是管理员。",
                               f"{t.name} owns the room (room_owner_is_admin)."))
        else:
            notes.append(req.t(f"{t.name} 不是本群管理员。", f"{t.name} is not an admin here."))
    if removed:
        ids = " ".join(t.id for t in removed)
        hint = await req.remember_undo(f"/admin add {ids}",
                                       req.t(f"移除管理员 {_who(req, removed)}",
                                             f"removing admin {_who(req, removed)}"))
        who, topic = _who(req, removed), ctx.room_name(room)
        notes.insert(0, req.t(f"已移除 {who} 在「{topic}」的管理员身份。",
                              f"{who} is no longer admin of {topic}.") + "\n" + hint)
    if not removed:
        raise UserError("\n".join(notes))
    await req.reply("\n".join(notes))


@router.command("admin list", usage="/admin list", zh="本群管理员", en="the room's managers",
                admin=True)
async def admin_list(req: Request) -> None:
    ctx, room = req.ctx, req.room_id
    assert room is not None
    lines = [req.t(f"「{ctx.room_name(room)}」的管理员：", f"Managers of {ctx.room_name(room)}:")]
    for m in ctx.settings.admins:
        lines.append(req.t(f"  {_name(ctx, room, m)}（{m}）全局管理员",
                           f"  {_name(ctx, room, m)} ({m}) global manager"))
    if ctx.settings.room_owner_is_admin:
        owner = await ctx.room_owner(room)
        if owner and not ctx.is_global_manager(owner):
            lines.append(req.t(f"  {_name(ctx, room, owner)}（{owner}）群主",
                               f"  {_name(ctx, room, owner)} ({owner}) room owner"))
    records = _admin_records(ctx, room)
    if not records:
        lines.append(req.t("  （还没有群管理员；用 /admin add @昵称 添加）",
                           "  (no room admins yet; add one with /admin add @name)"))
    for by, ts, member in records:
        when = datetime.fromtimestamp(ts, ctx.settings.tz).strftime("%Y-%m-%d")
        name, by_name = _name(ctx, room, member), _name(ctx, room, by)
        lines.append(req.t(f"  {name}（{member}）由 {by_name} 于 {when} 添加",
                           f"  {name} ({member}) added by {by_name} on {when}"))
    await req.reply("\n".join(lines))


def _admin_records(ctx: Context, room: str) -> list[tuple[str, float, str]]:
    """(added by, when, member) of the room's stored admins, oldest first."""
    docs = ctx.store.admins.table.search(Query().room == room)
    rows = [(str(d["by"]), float(d["ts"]), str(d["member"])) for d in docs]
    return sorted(rows, key=lambda r: (r[1], r[2]))


# --- /use: act on a room from a private chat -----------------------------------------------------
@router.command("use", usage="/use [群ID或群名|off]", zh="私聊时选择要管理的群",
                en="in a private chat: choose the room to manage", admin=True, where="private")
async def use(req: Request) -> None:
    ctx, me = req.ctx, req.msg.sender_id
    mine = list(req.manages)
    arg = req.args.strip()
    listing = "\n".join(f"  {_room_label(ctx, r)}" for r in mine)
    if not arg:
        current = await ctx.chosen_room(me)
        if current is not None and current in mine:
            label = _room_label(ctx, current)
            now = req.t(f"当前管理：{label}", f"Managing: {label}")
        else:
            now = req.t("还没有选择群。", "No room chosen.")
        await req.reply(req.t(f"{now}\n你可以管理的群：\n{listing}\n用 /use <群ID或群名> 选择。",
                              f"{now}\nRooms you manage:\n{listing}\n"
                              "Choose: /use <room id or topic>"))
        return
    if arg.lower() in _OFF:
        await ctx.choose_room(me, None)
        await req.reply(req.t("已取消选择；管理命令需要先 /use。", "Room choice cleared."))
        return
    found = ctx.find_rooms(arg)
    allowed = [r for r in found if r in mine]
    if len(allowed) > 1:
        rooms = "\n".join(f"  /use {r}  （{ctx.room_name(r)}）" for r in allowed)
        raise UserError(req.t(f"有 {len(allowed)} 个群符合「{arg}」，请用群ID：\n{rooms}",
                              f"{len(allowed)} rooms match {arg!r}; use the id:\n{rooms}"))
    if not allowed:
        req.room_id = found[0] if len(found) == 1 else None  # audited against the room asked for
        if found:
            topic = ctx.room_name(found[0])
            raise Refused(req.t(f"你没有权限：你不是「{topic}」的管理员。你的群：\n{listing}",
                                f"Not allowed: you do not manage {topic}. Your rooms:\n{listing}"))
        raise UserError(req.t(f"找不到群「{arg}」。你可以管理的群：\n{listing}",
                              f"No room {arg!r}. Rooms you manage:\n{listing}"))
    room = allowed[0]
    await ctx.choose_room(me, room)
    req.room_id = room  # the audit row names the room chosen
    label = _room_label(ctx, room)
    await req.reply(req.t(f"已选择「{label}」。之后在这里发的管理命令都作用于该群，回复在私聊。",
                          f"Now managing {label}: manager commands sent here act on it."))


# --- /audit -----------------------------------------------------------------------------------
@router.command("audit", usage="/audit [N] [all]", zh="最近 N 条管理操作记录",
                en="the last N manager actions", admin=True, where="any")
async def audit(req: Request) -> None:
    ctx = req.ctx
    words = req.args.lower().split()
    everywhere = "all" in words or "全部" in words or req.room_id is None
    numbers = [w for w in words if w not in ("all", "全部")]
    if len(numbers) > 1:
        raise UsageError()
    n = req.int_arg(numbers[0]) if numbers else AUDIT_DEFAULT
    n = max(1, min(n, AUDIT_MAX))
    if everywhere and not ctx.is_global_manager(req.msg.sender_id):
        raise Refused(req.t("你没有权限：只有全局管理员可以查看所有群的记录。",
                            "Not allowed: only global managers may see every room's log."))
    entries = ctx.store.audit.last(n, None if everywhere else req.room_id)
    where = req.t("所有群", "all rooms") if everywhere else ctx.room_name(req.room_id or "")
    if not entries:
        await req.reply(req.t(f"{where}还没有管理操作记录。",
                              f"No manager actions in {where} yet."))
        return
    lines = [req.t(f"{where}最近 {len(entries)} 条管理操作（新的在前）：",
                   f"Last {len(entries)} manager actions in {where} (newest first):")]
    for e in entries:
        when = datetime.fromtimestamp(e.ts, ctx.settings.tz).strftime("%m-%d %H:%M")
        room = f" [{ctx.room_name(e.room_id) if e.room_id else '-'}]" if everywhere else ""
        command = e.command if len(e.command) <= 60 else e.command[:57] + "..."
        lines.append(f"{when} {_name(ctx, e.room_id, e.actor_id)}{room} {command} → {e.result}")
    await req.reply("\n".join(lines))


# --- /undo ------------------------------------------------------------------------------------
@router.command("undo", usage="/undo", zh="撤销你在本群 10 分钟内的上一个删除类操作",
                en="undo your last destructive action here (within 10 minutes)", admin=True)
async def undo(req: Request) -> None:
    ctx, room = req.ctx, req.room_id
    assert room is not None
    rec = await ctx.take_undo(req.msg.sender_id, room)
    if rec is None:
        minutes = int(UNDO_WINDOW_S // 60)
        raise UserError(req.t(f"没有 {minutes} 分钟内可撤销的操作。",
                              f"Nothing to undo from the last {minutes} minutes."))
    dispatcher = ctx.services["dispatcher"]
    assert isinstance(dispatcher, Dispatcher)
    try:
        replies = await dispatcher.run_as(req, rec.command)
    except (UsageError, UserError) as e:
        raise UserError(req.t(f"撤销「{rec.description}」失败：{e}",
                              f"Could not undo {rec.description}: {e}")) from e
    done = "\n".join(replies)
    await req.reply(req.t(f"已撤销：{rec.description}\n{done}",
                          f"Undone: {rec.description}\n{done}").rstrip())

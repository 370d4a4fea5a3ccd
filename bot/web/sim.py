"""Sandbox chat simulator: talk as any member, add members, simulate joins and leaves, and
watch a conversation live (WebSocket), the bot's replies included.

Everything goes through the sandbox gateway, i.e. over the same gRPC path a real puppet
service uses: the bot cannot tell the simulator from WeChat. Only registered when the
process runs a sandbox gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from bot.web.html import Html, esc

if TYPE_CHECKING:
    from bot.gateway import SandboxGateway, SentMessage

log = logging.getLogger("qunbot.web")

HISTORY = 200  # messages replayed when a conversation is opened
MAX_TEXT = 2000
_ID = re.compile(r"^[A-Za-z0-9_\-@.]{1,64}$")


def _gateway(request: web.Request) -> SandboxGateway:
    from bot.web.server import console_of

    gw = console_of(request).gateway
    if gw is None:
        raise web.HTTPNotFound()
    return gw  # type: ignore[no-any-return]


def message_json(gw: SandboxGateway, m: SentMessage) -> dict[str, Any]:
    return {"type": "message", "id": m.msg_id, "conversation": m.conversation_id,
            "sender": m.sender_id, "name": gw.world.name_of(m.sender_id) or m.sender_id,
            "text": m.text, "ts": m.timestamp, "from_bot": m.from_bot, "kind": m.kind,
            "mentions": [gw.world.name_of(i) or i for i in m.mention_ids]}


def world_json(gw: SandboxGateway, served: frozenset[str]) -> dict[str, Any]:
    w = gw.world
    rooms = [{"id": rid, "topic": r.topic, "served": rid in served,
              "members": [{"id": m, "name": w.name_of(m)} for m in r.member_ids
                          if m != w.self_id]}
             for rid, r in sorted(w.rooms.items(), key=lambda kv: (kv[0] not in served, kv[0]))]
    return {"self": {"id": w.self_id, "name": w.self_name}, "rooms": rooms,
            "contacts": [{"id": c, "name": n} for c, n in sorted(w.contacts.items())],
            "connected": gw.connected}


async def sim_page(request: web.Request) -> web.Response:
    from bot.web.server import page, tr

    _gateway(request)
    t = tr(request)
    body = Html(
        '<div id="sim" class="sim">'
        '<div class="sim-controls">'
        f'<label>{esc(t("群", "Room"))} <select id="sim-room"></select></label>'
        f'<label>{esc(t("成员", "Member"))} <select id="sim-member"></select></label>'
        f'<fieldset><legend>{esc(t("加入群", "Join"))}</legend>'
        f'<input id="join-id" placeholder="{esc(t("ID，如 wxid_new", "id, e.g. wxid_new"))}">'
        f'<input id="join-name" placeholder="{esc(t("昵称", "name"))}">'
        f'<label>{esc(t("邀请人", "Invited by"))} <select id="join-inviter"></select></label>'
        f'<button type="button" id="join-btn">{esc(t("加入", "Join"))}</button></fieldset>'
        f'<button type="button" id="leave-btn" class="danger">'
        f'{esc(t("让所选成员退群", "Selected member leaves"))}</button>'
        f'<p id="sim-status" class="hint"></p>'
        "</div>"
        '<div class="sim-chat">'
        '<ol id="sim-log" aria-live="polite"></ol>'
        '<form id="sim-form" autocomplete="off">'
        f'<input id="sim-text" maxlength="{MAX_TEXT}" '
        f'placeholder="{esc(t("以所选成员身份发言，如 签到", "Type as the member, e.g. /ping"))}">'
        f'<label class="inline"><input type="checkbox" id="sim-mention"> @{esc(t("机器人", "bot"))}'
        "</label>"
        f'<button type="submit" id="sim-send">{esc(t("发送", "Send"))}</button>'
        "</form></div></div>"
        '<script src="/static/sim.js" defer></script>')
    return page(request, t("模拟聊天", "Chat simulator"), body)


async def api_world(request: web.Request) -> web.Response:
    from bot.web.server import console_of

    gw = _gateway(request)
    ctx = console_of(request).app.ctx
    served = ctx.served_rooms() if ctx is not None else frozenset()
    return web.json_response(world_json(gw, served))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


def _str(data: dict[str, Any], key: str) -> str:
    v = data.get(key, "")
    return v.strip() if isinstance(v, str) else ""


async def _inject(coro: Any) -> web.Response:
    from bot.gateway import NoClientError

    try:
        result = await coro
    except NoClientError:
        return web.json_response({"ok": False, "error": "the bot is not connected"}, status=503)
    except ValueError as e:
        return web.json_response({"ok": False, "error": str(e)}, status=400)
    return web.json_response({"ok": True, "id": result})


async def api_say(request: web.Request) -> web.Response:
    """{"room": id or "" (private chat), "member": id, "text": ..., "mention": bool}"""
    gw = _gateway(request)
    data = await _body(request)
    text = data.get("text", "")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        return web.json_response({"ok": False, "error": "text: 1-2000 characters"}, status=400)
    room = _str(data, "room") or None
    return await _inject(gw.say(_str(data, "member"), text, room_id=room,
                                mention_self=bool(data.get("mention"))))


async def api_join(request: web.Request) -> web.Response:
    """{"room", "id", "name", "inviter": id | "" | "qrcode"}"""
    from bot.web.server import console_of

    gw = _gateway(request)
    data = await _body(request)
    room, mid, name, inviter = (_str(data, k) for k in ("room", "id", "name", "inviter"))
    if not _ID.match(mid):
        return web.json_response({"ok": False, "error": "id: letters, digits, _-@. (1-64)"},
                                 status=400)
    if not name or len(name) > 40:
        return web.json_response({"ok": False, "error": "name: 1-40 characters"}, status=400)
    qrcode = inviter == "qrcode"
    resp = await _inject(gw.join(room, [(mid, name)], inviter_id=None if qrcode else inviter
                                 or None, qrcode=qrcode))
    if resp.status == 200:
        by = gw.world.name_of(inviter) if inviter and not qrcode else ("扫码" if qrcode else "")
        note = f"{name} 加入了群聊" + (f"（{by}）" if by else "")
        await broadcast(console_of(request).sim_sockets, room, note)
    return resp


async def api_leave(request: web.Request) -> web.Response:
    """{"room", "member"}"""
    from bot.web.server import console_of

    gw = _gateway(request)
    data = await _body(request)
    room, member = _str(data, "room"), _str(data, "member")
    name = gw.world.name_of(member) or member
    resp = await _inject(gw.leave(room, [member]))
    if resp.status == 200:
        await broadcast(console_of(request).sim_sockets, room, f"{name} 退出了群聊")
    return resp


async def broadcast(sockets: dict[web.WebSocketResponse, str], conversation: str,
                    text: str) -> None:
    """A system line ("X joined") to the simulators watching `conversation`."""
    for ws, watching in list(sockets.items()):
        if ws.closed or watching != conversation:
            continue
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json({"type": "system", "conversation": conversation, "text": text})


async def ws_sim(request: web.Request) -> web.WebSocketResponse:
    """Live messages of one conversation (?conversation=room id, or a member id for a private
    chat): the recent history first, then every new message as it is said."""
    from bot.web.server import console_of

    gw = _gateway(request)
    conversation = request.query.get("conversation", "")
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    sockets = console_of(request).sim_sockets
    queue: asyncio.Queue[SentMessage] = asyncio.Queue()

    def on_message(m: SentMessage) -> None:
        if m.conversation_id == conversation:
            queue.put_nowait(m)

    unsubscribe = gw.subscribe(on_message)
    sockets[ws] = conversation

    async def pump() -> None:
        history = [m for m in gw.transcript if m.conversation_id == conversation][-HISTORY:]
        await ws.send_json({"type": "history",
                            "messages": [message_json(gw, m) for m in history]})
        while True:
            m = await queue.get()
            await ws.send_json(message_json(gw, m))

    sender = asyncio.create_task(pump())
    try:
        async for msg in ws:  # the client only listens; reading detects the close
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        unsubscribe()
        sockets.pop(ws, None)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await sender
    return ws


def add_sim_routes(r: web.UrlDispatcher) -> None:
    from bot.web.server import _static

    r.add_get("/chat", sim_page)
    r.add_get("/static/sim.js", _static("sim.js", "text/javascript"))
    r.add_get("/api/sim/world", api_world)
    r.add_post("/api/sim/say", api_say)
    r.add_post("/api/sim/join", api_join)
    r.add_post("/api/sim/leave", api_leave)
    r.add_get("/ws/sim", ws_sim)


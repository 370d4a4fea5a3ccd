"""Web console access and API: token, login, CSRF, every route guarded, console actions.

A real App on the sandbox gateway with the console on a free port, driven over HTTP.
"""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.web import Console, start_console
from bot.web.auth import PUBLIC, TOKEN_FILE
from tests.conftest import MANAGER, ROOM, XIAOMING, BotHarness, make_settings

TOKEN = "test-console-token-0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", web={"enabled": True, "port": 0, "token": TOKEN})


@pytest.fixture
async def console(bot: BotHarness) -> AsyncIterator[Console]:
    c = await start_console(bot.app, bot.gw)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def anon(console: Console) -> AsyncIterator[aiohttp.ClientSession]:
    jar = aiohttp.CookieJar(unsafe=True)  # the console is on an IP address: keep its cookie
    async with aiohttp.ClientSession(console.url, cookie_jar=jar) as s:
        yield s


async def login(s: aiohttp.ClientSession, token: str = TOKEN) -> aiohttp.ClientResponse:
    return await s.post("/login", data={"token": token}, allow_redirects=False)


async def csrf_of(s: aiohttp.ClientSession) -> str:
    page = await (await s.get("/")).text()
    m = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


BEARER = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE = {"kind": "stats", "name": "stats", "action": "pause"}


async def until(bot: BotHarness, check: Callable[[], bool]) -> None:
    """Wait for the bot to record a join/leave event."""
    assert bot.app is not None
    await bot.app.wait_until(check, 10)


def routes(console: Console) -> list[tuple[str, str]]:
    """Every (method, concrete path) the console serves, path parameters filled in."""
    assert console.web_app is not None
    out = []
    for route in console.web_app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        assert path, info
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "x"), path)
        if route.method != "HEAD":
            out.append((route.method, path))
    return out


async def test_every_route_refuses_without_the_token(console: Console,
                                                      anon: aiohttp.ClientSession) -> None:
    all_routes = routes(console)
    assert ("GET", "/ws/sim") in all_routes and ("POST", "/faq/add") in all_routes
    public = {(m, p) for m, p in all_routes if (m, p) in PUBLIC}
    assert public == {("GET", "/login"), ("POST", "/login"), ("GET", "/login.css")}
    for method, path in all_routes:
        if (method, path) in PUBLIC:
            continue
        for headers in ({}, {"Accept": "text/html"}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Basic {TOKEN}"}):
            async with anon.request(method, path, headers=headers, allow_redirects=False) as r:
                refused = r.status in (401, 403) or (
                    r.status == 302 and r.headers["Location"] == "/login")
                assert refused, (method, path, headers, r.status)
                assert TOKEN not in await r.text()


async def test_login_sets_a_strict_httponly_session_cookie(console: Console,
                                                           anon: aiohttp.ClientSession) -> None:
    bad = await login(anon, "nope")
    assert bad.status == 401 and "Set-Cookie" not in bad.headers
    assert (await anon.get("/api/rooms")).status == 401
    ok = await login(anon)
    assert ok.status == 303 and ok.headers["Location"] == "/"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # a random session id, not the token
    rooms = await (await anon.get("/api/rooms")).json()
    assert ROOM in [r["id"] for r in rooms["rooms"]]
    csrf = await csrf_of(anon)
    out = await anon.post("/logout", data={"_csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert (await anon.get("/api/rooms")).status == 401


async def test_state_changes_need_the_csrf_token(bot: BotHarness, console: Console,
                                                 anon: aiohttp.ClientSession) -> None:
    await login(anon)
    form = {"room": ROOM, "questions": "几点开门", "answer": "早上九点"}
    assert (await anon.post("/faq/add", data=form, allow_redirects=False)).status == 403
    bad = await anon.post("/faq/add", data={**form, "_csrf": "forged"}, allow_redirects=False)
    assert bad.status == 403
    csrf = await csrf_of(anon)
    cross = await anon.post("/faq/add", data={**form, "_csrf": csrf}, allow_redirects=False,
                            headers={"Origin": "http://evil.example"})
    assert cross.status == 403
    assert bot.store.audit.last(10) == []  # nothing ran
    ok = await anon.post("/faq/add", data={**form, "_csrf": csrf}, allow_redirects=False)
    assert ok.status == 303
    page = await (await anon.get(ok.headers["Location"])).text()
    assert "#1" in page and "早上九点" in page  # the bot's reply, then the entry in the list
    json_no_header = await anon.post("/api/command", json={"room": ROOM, "text": "/faq list"})
    assert json_no_header.status == 403


async def test_token_is_generated_once_stored_0600_and_printed_once(
        bot: BotHarness, tmp_path: Path) -> None:
    assert bot.app is not None
    app = bot.app
    app.settings = app.settings.model_copy(update={"web": app.settings.web.model_copy(
        update={"token": type(app.settings.web.token)("")})})
    printed: list[str] = []
    first = await start_console(app, None, announce=printed.append)
    await first.stop()
    path = Path(app.settings.data_dir) / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 40 and len(printed) == 1 and token in printed[0]
    second = await start_console(app, None, announce=printed.append)
    try:
        assert len(printed) == 1  # not printed again
        async with aiohttp.ClientSession(second.url) as s:
            r = await s.get("/api/rooms", headers={"Authorization": f"Bearer {token}"})
            assert r.status == 200
            assert (await s.get("/chat", headers={"Authorization": f"Bearer {token}"})
                    ).status == 404  # no gateway: no simulator
    finally:
        await second.stop()


async def test_configured_token_writes_no_file(bot: BotHarness, console: Console) -> None:
    assert not (Path(bot.settings.data_dir) / TOKEN_FILE).exists()


async def test_no_secret_in_logs(console: Console, anon: aiohttp.ClientSession,
                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await login(anon, "wrong-token-value")
    await login(anon)
    await anon.get("/", headers=BEARER)
    assert TOKEN not in caplog.text and "wrong-token-value" not in caplog.text
    assert console.url.startswith("http://127.0.0.1:") and TOKEN not in console.url


async def test_bearer_command_goes_through_the_chat_command(
        bot: BotHarness, console: Console, anon: aiohttp.ClientSession) -> None:
    r = await anon.post("/api/command", headers=BEARER,
                        json={"room": ROOM, "text": "/faq add 几点开门; 营业时间 | 早上九点"})
    body = await r.json()
    assert r.status == 200 and body["ok"] and "#1" in body["reply"], body
    assert (await bot.ask("几点开门？")).text.endswith("早上九点")  # the live FAQ index knows it
    entry = bot.store.audit.last(1)[0]
    assert (entry.actor_id, entry.room_id, entry.result) == ("console", ROOM, "ok")
    refused = await anon.post("/api/command", headers=BEARER, json={"room": ROOM, "text": "签到"})
    assert refused.status == 400  # member commands are not run as the console
    nowhere = await anon.post("/api/command", headers=BEARER,
                              json={"room": "nope@chatroom", "text": "/faq list"})
    assert nowhere.status == 400
    usage = await (await anon.post("/api/command", headers=BEARER,
                                   json={"room": ROOM, "text": "/faq add oops"})).json()
    assert usage["ok"] and "用法" in usage["reply"]  # the command's own usage reply


async def test_every_page_renders(bot: BotHarness, console: Console,
                                  anon: aiohttp.ClientSession) -> None:
    for text in ("/faq add 几点开门 | 九点", "/event new 周六晨跑 cap=2 waitlist=1",
                 "/lottery new 周年庆 winners=1", "/announce every 2h | 喝水提醒 {weekday}"):
        r = await anon.post("/api/command", headers=BEARER, json={"room": ROOM, "text": text})
        assert (await r.json())["ok"]
    await bot.say("报名 1", by=XIAOMING)
    await bot.say("参加抽奖 1", by=XIAOMING)
    await bot.say("几点开门", by=XIAOMING)
    expect = {"/": "活跃", "/retention": "retention-chart", "/members": "小明", "/faq": "九点",
              "/events": "周六晨跑", "/lotteries": "周年庆", "/announcements": "喝水提醒",
              "/audit": "/event new", "/chat": "sim-room"}
    for path, needle in expect.items():
        r = await anon.get(path, params={"room": ROOM}, headers=BEARER)
        text = await r.text()
        assert r.status == 200, (path, text[:2000])
        assert needle in text or needle == "活跃", (path, needle)
    for path in ("/chart/stats.png", "/chart/retention.png", "/chart/funnel.png"):
        r = await anon.get(path, params={"room": ROOM}, headers=BEARER)
        assert r.status == 200 and (await r.read()).startswith(b"\x89PNG"), path
    for name in ("stats", "retention", "funnel", "invites", "members", "audit", "faq"):
        r = await anon.get(f"/export/{name}.csv", params={"room": ROOM}, headers=BEARER)
        assert r.status == 200 and r.content_type == "text/csv", name
    members = await (await anon.get("/export/members.csv", params={"room": ROOM},
                                    headers=BEARER)).text()
    assert XIAOMING in members and MANAGER in members


async def test_lottery_panel_never_shows_the_seed_before_the_draw(
        bot: BotHarness, console: Console, anon: aiohttp.ClientSession) -> None:
    from storage.lotteries import LotteryRepo

    await anon.post("/api/command", headers=BEARER,
                    json={"room": ROOM, "text": "/lottery new 周年庆 winners=1"})
    lot = LotteryRepo(bot.store).get(ROOM, 1)
    assert lot is not None
    await bot.say("参加抽奖 1", by=XIAOMING)
    page = await (await anon.get("/lotteries", params={"room": ROOM}, headers=BEARER)).text()
    assert lot.commitment in page and lot.seed_hex not in page
    r = await anon.post("/api/command", headers=BEARER,
                        json={"room": ROOM, "text": "/lottery draw 1"})
    assert (await r.json())["ok"]
    page = await (await anon.get("/lotteries", params={"room": ROOM}, headers=BEARER)).text()
    assert lot.seed_hex in page and "OK" in page and "FAIL" not in page


async def test_event_export_downloads_the_commands_csv(
        bot: BotHarness, console: Console, anon: aiohttp.ClientSession) -> None:
    await login(anon)
    csrf = await csrf_of(anon)
    await anon.post("/api/command", headers=BEARER,
                    json={"room": ROOM, "text": "/event new 周六晨跑 cap=5"})
    await bot.say("报名", by=XIAOMING)
    r = await anon.post("/events/export", data={"_csrf": csrf, "room": ROOM, "n": "1"},
                        allow_redirects=False)
    assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
    assert XIAOMING in await r.text()
    assert not [m for m in bot.gw.bot_messages() if m.conversation_id == "console"]


async def test_simulator_api_and_live_socket(bot: BotHarness, console: Console,
                                             anon: aiohttp.ClientSession) -> None:
    world = await (await anon.get("/api/sim/world", headers=BEARER)).json()
    room = next(r for r in world["rooms"] if r["id"] == ROOM)
    assert room["served"] and {"id": XIAOMING, "name": "小明"} in room["members"]
    async with anon.ws_connect("/ws/sim", params={"conversation": ROOM}, headers=BEARER) as ws:
        first: dict[str, Any] = await ws.receive_json(timeout=10)
        assert first["type"] == "history"
        r = await anon.post("/api/sim/say", headers=BEARER,
                            json={"room": ROOM, "member": XIAOMING, "text": "/ping"})
        assert (await r.json())["ok"]
        seen = []
        while not any(m.get("from_bot") for m in seen):
            seen.append(await ws.receive_json(timeout=10))
        assert seen[0]["text"] == "/ping" and seen[0]["name"] == "小明"
        assert seen[-1]["text"].endswith("pong") and seen[-1]["mentions"] == ["小明"]
        j = await anon.post("/api/sim/join", headers=BEARER,
                            json={"room": ROOM, "id": "wxid_new1", "name": "小新",
                                  "inviter": XIAOMING})
        assert (await j.json())["ok"]
        note = await ws.receive_json(timeout=10)
        assert note["type"] == "system" and "小新" in note["text"]
    await until(bot, lambda: bot.store.members.get(ROOM, "wxid_new1") is not None)
    assert bot.store.members.get(ROOM, "wxid_new1").channel == XIAOMING
    bad = await anon.post("/api/sim/say", headers=BEARER,
                          json={"room": ROOM, "member": "wxid_ghost", "text": "hi"})
    assert bad.status == 400
    left = await anon.post("/api/sim/leave", headers=BEARER,
                           json={"room": ROOM, "member": "wxid_new1"})
    assert (await left.json())["ok"]
    await until(bot, lambda: not bot.store.members.get(ROOM, "wxid_new1").present)

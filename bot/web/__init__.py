"""The web console (SPEC section 9): dashboard for managers, chat simulator for the sandbox.

`qunbot run` calls `start_console(app, gateway)` when `web.enabled`; it serves on
`web.host`:`web.port` (loopback by default; port 0 picks a free port) until `stop()`.
See auth.py for access, commands.py for how the console changes things, sim.py for the
simulator.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.web.auth import COOKIE, Announce, Auth, load_or_create_token

if TYPE_CHECKING:
    from bot.app import App
    from bot.web.server import Flash

__all__ = ["Console", "start_console"]

log = logging.getLogger("qunbot.web")

MAX_FLASH_SESSIONS = 64


class Console:
    def __init__(self, app: App, gateway: Any, token: str) -> None:
        self.app = app
        self.gateway = gateway  # the sandbox gateway, or None (no simulator)
        self.auth = Auth(token)
        self.lang = app.settings.language
        self.url = ""
        self.sim_sockets: dict[web.WebSocketResponse, str] = {}  # socket -> conversation
        self._flashes: OrderedDict[str, list[Flash]] = OrderedDict()
        self._runner: web.AppRunner | None = None
        self.web_app: web.Application | None = None  # the routes (tests enumerate them)

    async def start(self, host: str, port: int) -> None:
        from bot.web.server import build_app

        self.web_app = build_app(self)
        self._runner = web.AppRunner(self.web_app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        server = site._server  # aiohttp keeps the bound sockets here; needed for port 0
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}/"
        log.info("web console listening on %s", self.url)

    async def stop(self) -> None:
        for ws in list(self.sim_sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # One-time notices shown on the next page (the bot's reply to a form's command).
    def flash(self, request: web.Request, kind: Any, text: str) -> None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return
        self._flashes.setdefault(sid, []).append((kind, text))
        self._flashes.move_to_end(sid)
        while len(self._flashes) > MAX_FLASH_SESSIONS:
            self._flashes.popitem(last=False)

    def pop_flash(self, request: web.Request) -> list[Flash]:
        sid = request.cookies.get(COOKIE)
        return self._flashes.pop(sid, []) if sid else []


CONSOLE_KEY = web.AppKey("console", Console)


async def start_console(app: App, gateway: Any, *, announce: Announce | None = None) -> Console:
    """Start the console for a running App; raises OSError when the port is taken."""
    s = app.settings.web
    kwargs = {"announce": announce} if announce is not None else {}
    token = load_or_create_token(s.token.get_secret_value(), app.settings.data_dir, **kwargs)
    if s.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("web console listens on %s: reachable from other machines; keep the token "
                    "secret and prefer a reverse proxy with TLS", s.host)
    console = Console(app, gateway, token)
    await console.start(s.host, s.port)
    return console

"""Console access: one token, browser sessions, CSRF.

* The token is `web.token` from bot.yaml, or generated on first start and kept in
  `<data_dir>/web_token` (mode 0600, outside the store so backups do not carry it). A
  generated token is printed once, to standard output (never to the log).
* A browser posts the token to /login and gets a random session id in an HttpOnly,
  SameSite=Strict cookie; the token itself never travels again. API clients send
  `Authorization: Bearer <token>` on every request instead.
* State-changing requests with a session cookie need the session's CSRF token (form field
  `_csrf` or header `X-CSRF-Token`) and, when the browser sends one, a same-origin
  `Origin`. WebSocket upgrades need a same-origin `Origin`. Bearer requests need neither:
  a page on another site cannot set that header without our (absent) CORS consent.
* Nothing secret goes into URLs; the access log is off.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

TOKEN_FILE = "web_token"
COOKIE = "qunbot_session"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 7 * 86400
MAX_SESSIONS = 64
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without a token: the login form and its stylesheet. Everything else refuses.
PUBLIC = frozenset({("GET", "/login"), ("HEAD", "/login"), ("POST", "/login"),
                    ("GET", "/login.css"), ("HEAD", "/login.css")})

Announce = Callable[[str], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _print(text: str) -> None:
    print(text, flush=True)


def load_or_create_token(configured: str, data_dir: Path, announce: Announce = _print) -> str:
    """The console token: configured, else stored, else new (stored 0600 and announced once)."""
    if configured:
        return configured
    path = Path(data_dir) / TOKEN_FILE
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # someone loosened it: the token is a password
        return stored
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TOKEN_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    announce(f"web console token (shown only this once; kept in {path}): {token}")
    return token


@dataclass
class Session:
    csrf: str
    expires: float


class Auth:
    def __init__(self, token: str, *, now: Callable[[], float] = time.time) -> None:
        if not token:
            raise ValueError("empty console token")
        self._token = token.encode()
        self._now = now
        self._sessions: dict[str, Session] = {}

    def check_token(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.strip().encode(), self._token)

    def login(self) -> tuple[str, Session]:
        now = self._now()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))  # the oldest
        sid = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(24), now + SESSION_TTL_S)
        self._sessions[sid] = session
        return sid, session

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None or s.expires <= self._now():
            self._sessions.pop(sid, None)
            return None
        return s

    def logout(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)


def set_session_cookie(resp: web.StreamResponse, sid: str) -> None:
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                    max_age=SESSION_TTL_S)


def same_origin(request: web.Request) -> bool:
    """False only when the browser names another origin (absent Origin: not a browser form)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


AUTH_KEY = web.AppKey("auth", Auth)


# For handlers, after the middleware let the request in:
def is_bearer(request: web.Request) -> bool:
    """An API client (token header) rather than a browser session."""
    return "Authorization" in request.headers


def csrf_token(request: web.Request) -> str:
    """The session's CSRF token, for the page's forms ("" for API clients)."""
    session = request.app[AUTH_KEY].session(request.cookies.get(COOKIE))
    return session.csrf if session is not None else ""


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method, request.path) in PUBLIC:
        if request.method == "POST" and not same_origin(request):
            raise web.HTTPForbidden(text="cross-origin login refused")
        return await handler(request)
    auth = request.app[AUTH_KEY]
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not auth.check_token(value):
            raise web.HTTPUnauthorized(text="bad token",
                                       headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)
    session = auth.session(request.cookies.get(COOKIE))
    if session is None:
        if _wants_html(request):
            raise web.HTTPFound("/login")
        raise web.HTTPUnauthorized(text="log in first (or send Authorization: Bearer <token>)",
                                   headers={"WWW-Authenticate": "Bearer"})
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    if request.method not in SAFE_METHODS:
        sent: str | None = request.headers.get(CSRF_HEADER)
        if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                     "multipart/form-data"):
            form = await request.post()  # cached: the handler reads it again for free
            posted = form.get(CSRF_FIELD)
            sent = posted if isinstance(posted, str) else None
        if sent is None or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page")
    return await handler(request)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        resp = e
        _harden(resp)
        raise
    _harden(resp)
    return resp


def _harden(resp: web.StreamResponse) -> None:
    if resp.prepared:
        return  # a WebSocket or a streamed download: headers are gone already
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    # Not no-referrer: with it Chromium sends `Origin: null` on our own form posts.
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'")

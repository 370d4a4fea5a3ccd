"""Tiny server-side HTML: escaping, tables, the page layout. No template engine, no build step.

Every dynamic value goes through `esc()`; `Html` marks text that is already safe markup,
so helpers can nest without double escaping.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo


class Html(str):
    """A string of trusted markup."""

    __slots__ = ()


def esc(value: Any) -> Html:
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def tag(name: str, body: Any = "", /, **attrs: Any) -> Html:
    """`tag("a", "x", href="/y", class_="z")`; attributes with None/False are left out."""
    out = []
    for k, v in attrs.items():
        if v is None or v is False:
            continue
        key = k.rstrip("_").replace("_", "-")
        out.append(f" {key}" if v is True else f' {key}="{esc(v)}"')
    return Html(f"<{name}{''.join(out)}>{esc(body)}</{name}>")


def link(href: str, text: Any, **attrs: Any) -> Html:
    return tag("a", text, href=href, **attrs)


def url(path: str, **params: Any) -> str:
    q = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(q)}" if q else path


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, id_: str | None = None,
          empty: str = "—") -> Html:
    head = join(tag("th", h) for h in headers)
    body = [Html("<tr>" + join(tag("td", c) for c in row) + "</tr>") for row in rows]
    if not body:
        body = [Html(f'<tr><td colspan="{len(headers)}" class="empty">{esc(empty)}</td></tr>')]
    return Html(f'<table{f" id={chr(34)}{esc(id_)}{chr(34)}" if id_ else ""}>'
                f"<thead><tr>{head}</tr></thead><tbody>{join(body)}</tbody></table>")


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def day(ordinal: int | None) -> str:
    return "" if ordinal is None else date.fromordinal(ordinal).isoformat()


def when(ts: float | None, tz: str) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def hidden(fields: Mapping[str, Any]) -> Html:
    return join(Html(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">')
                for k, v in fields.items())


def post_button(action: str, label: str, csrf: str, fields: Mapping[str, Any] | None = None,
                *, confirm: str | None = None, cls: str = "") -> Html:
    """A one-button POST form (state changes never ride on GET)."""
    data = f' data-confirm="{esc(confirm)}"' if confirm else ""
    return Html(f'<form method="post" action="{esc(action)}" class="inline"{data}>'
                f"{hidden({'_csrf': csrf, **(fields or {})})}"
                f'<button type="submit" class="{esc(cls)}">{esc(label)}</button></form>')


@cache
def _template(name: str) -> string.Template:
    text = resources.files("bot.web").joinpath("templates", name).read_text(encoding="utf-8")
    return string.Template(text)


def render(name: str, **values: Any) -> str:
    """Fill templates/<name> ($placeholders); plain values are escaped, Html is kept."""
    return _template(name).substitute({k: esc(v) for k, v in values.items()})

"""Parsing, unit level: slash commands and longest match, Chinese keywords versus chatter,
full-width input, the bot's own @mention, what /help lists where."""

from __future__ import annotations

import pytest

from bot.router import (
    Dispatcher,
    Request,
    Router,
    normalise_command_text,
    strip_mention,
)

r = Router("t")


async def _noop(req: Request) -> None:
    return None


for name, aliases, admin, where in [
    ("join", ("报名",), False, "room"),
    ("leave", ("取消报名",), False, "room"),
    ("list", ("报名名单",), False, "room"),
    ("help", ("帮助",), False, "any"),
    ("faq", (), True, "room"),
    ("faq add", (), True, "room"),
    ("faq del", (), True, "room"),
    ("admin add", (), True, "room"),
    ("admin list", (), True, "room"),
    ("use", (), True, "private"),
    ("audit", (), True, "any"),
]:
    r.command(name, usage=f"/{name}", zh=name, en=name, aliases=aliases, admin=admin,
              where=where)(_noop)  # type: ignore[arg-type]

D = Dispatcher([r])


def parsed(text: str) -> tuple[str, str] | None:
    got = D.parse(normalise_command_text(text))
    return None if got is None else (got[0].name, got[1])


@pytest.mark.parametrize("text, expected", [
    ("报名", ("join", "")),
    ("报名 2", ("join", "2")),
    ("报名2", ("join", "2")),
    ("报名#2", ("join", "#2")),
    ("报名 #2 ", ("join", "#2")),
    ("取消报名", ("leave", "")),  # the longer keyword wins over 报名
    ("取消报名 3", ("leave", "3")),
    ("报名名单", ("list", "")),
    ("帮助", ("help", "")),
    # chatter that starts with a keyword is not a command
    ("报名了吗", None),
    ("报名的人多吗？", None),
    ("我要报名", None),
    ("报名 明天", None),
    ("报名 1234567", None),
    ("取消报名了", None),
])
def test_keywords_versus_chatter(text: str, expected: tuple[str, str] | None) -> None:
    assert parsed(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("/faq add Q | A", ("faq add", "Q | A")),  # longest name wins
    ("/faq", ("faq", "")),
    ("/faq list", ("faq", "list")),  # unknown subcommand: the shorter command gets it as args
    ("/faqs", None),  # a name ends at a space or the end
    ("/FAQ  Add  Q|A", ("faq add", "Q|A")),  # case and repeated spaces
    ("/faq\u2005add Q", ("faq add", "Q")),
    ("／faq del 3", ("faq del", "3")),  # full-width slash
    ("／ＦＡＱ　ｄｅｌ　３", ("faq del", "３")),  # full-width letters and space; args kept as typed
    ("\u3000/join 2\u3000", ("join", "2")),
    ("/join", ("join", "")),
    ("/ join", None),
    ("//join", None),
    ("/admin add @小明\u2005", ("admin add", "@小明")),
    ("/admin", None),  # a group, not a command: see test_group_of
    ("/nosuch", None),
    ("join", None),  # English names need the slash
])
def test_slash_commands(text: str, expected: tuple[str, str] | None) -> None:
    assert parsed(text) == expected


def test_group_of_names_the_forms_of_a_command_group() -> None:
    for text in ("/admin", "/admin foo", normalise_command_text("／ＡＤＭＩＮ")):
        assert [c.name for c in D.group_of(text)] == ["admin add", "admin list"]
    assert D.group_of("/nosuch") == [] and D.group_of("admin") == []


@pytest.mark.parametrize("text, mentions_self, expected", [
    ("@群助手\u2005/ping", False, ("/ping", True)),
    ("@群助手 报名", False, ("报名", True)),
    ("@群助手\u00a0/ping", False, ("/ping", True)),
    ("@助手小号\u2005/ping", True, ("/ping", True)),  # alias differs; the service says us
    ("@助手小号\u2005/ping", False, ("@助手小号\u2005/ping", False)),  # someone else
    ("@小明 你好", False, ("@小明 你好", False)),
    ("/ping @群助手", False, ("/ping @群助手", False)),  # only a leading mention is stripped
    ("@群助手", False, ("@群助手", False)),
])
def test_strip_mention(text: str, mentions_self: bool, expected: tuple[str, bool]) -> None:
    assert strip_mention(text, "群助手", mentions_self) == expected


def test_normalise_cuts_overlong_input() -> None:
    assert len(normalise_command_text("/" + "x" * 50_000)) == 2000


def test_duplicate_command_names_are_refused() -> None:
    other = Router("other")
    other.command("join", usage="/join", zh="", en="")(_noop)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="declared twice"):
        Dispatcher([r, other])


def test_visible_commands_depend_on_role_and_place() -> None:
    def names(**kw: bool) -> set[str]:
        return {c.name for c in D.visible(**kw)}

    assert names(is_manager=False, private=False) == {"join", "leave", "list", "help"}
    assert names(is_manager=False, private=True) == {"help"}  # room-only commands hidden
    in_room = names(is_manager=True, private=False)
    assert "faq add" in in_room and "audit" in in_room and "use" not in in_room
    assert "use" in names(is_manager=True, private=True)

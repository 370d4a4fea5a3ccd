"""The README's command table is the one generated from the declarations."""

from __future__ import annotations

from pathlib import Path

from bot.docs import BEGIN, END, command_table


def test_readme_command_table_is_current() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    start, stop = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:stop] == command_table(), (
        "run `python -m bot.docs` and paste it into README.md"
    )

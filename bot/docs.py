"""The README's command table, generated from the command declarations.

`python -m bot.docs` prints it; tests/test_docs.py fails when the README's copy is stale.
"""

from __future__ import annotations

from bot.app import feature_routers
from bot.router import Dispatcher

BEGIN, END = "<!-- commands:begin -->", "<!-- commands:end -->"


def command_table() -> str:
    dispatcher = Dispatcher(feature_routers())
    rows = ["| command | keywords | who | what |", "|---|---|---|---|"]
    for c in sorted(dispatcher.commands, key=lambda c: (c.admin, c.name)):
        who = "manager" if c.admin else "member"
        usage = c.usage.replace("|", "\\|")
        rows.append(f"| `{usage}` | {' '.join(c.aliases)} | {who} | {c.help_en} / {c.help_zh} |")
    return "\n".join([BEGIN, *rows, END])


if __name__ == "__main__":
    print(command_table())

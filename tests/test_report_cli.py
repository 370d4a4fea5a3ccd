"""`qunbot report ...` (handlers.analytics.report_cli) with the bot running and stopped.

The data is the 10-day story of tests/test_analytics_chat.py (hand-computed figures there).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from handlers.analytics import report_cli
from tests.conftest import MANAGER, ROOM
from tests.test_analytics_chat import BOTX, PNG_MAGIC, _play, _start

END = ["--end", "2025-03-12"]  # D10 of the story; the CLI's default is today


def write_config(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump({
        "rooms": [ROOM], "admins": [MANAGER], "bots": [BOTX], "data_dir": str(data_dir),
        "web": {"enabled": False},
    }, allow_unicode=True), encoding="utf-8")
    return path


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    # In a thread, as from a separate shell: report_cli runs its own event loop.
    code = await asyncio.to_thread(report_cli, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def without_flags(value: Any) -> Any:
    """The figures of a report, without its incomplete-day flags."""
    if isinstance(value, dict):
        return {k: without_flags(v) for k, v in value.items() if "incomplete" not in k}
    if isinstance(value, list):
        return [without_flags(v) for v in value]
    return value


async def test_report_cli_while_running_and_after_stop(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h, clock = await _start(tmp_path)
    try:
        await _play(h, clock)
        cfg = write_config(tmp_path, h.settings.data_dir)
        base = ["--room", ROOM, "--config", str(cfg), *END]
        running: dict[str, Any] = {}
        # --- the bot holds the store's lock: the CLI reads a consistent snapshot -----------
        assert h.app is not None and h.app.ready.is_set()
        code, out, err = await run(capsys, "stats", *base)
        assert code == 0, err
        assert "成员 7（+2 / -2，净增 +0）⚠" in out and "消息 10⚠" in out
        assert "03-08, 03-09" in out
        for kind in ("stats", "retention", "funnel", "invites"):
            code, out, err = await run(capsys, kind, *base, "--format", "json")
            assert code == 0, err
            running[kind] = json.loads(out)
        png = tmp_path / "retention.png"
        code, out, err = await run(capsys, "retention", *base, "--png", str(png))
        assert code == 0, err and "📈" in out
        assert png.read_bytes().startswith(PNG_MAGIC)
    finally:
        await h.stop()
        await h.gw.stop()
    assert not h.errors, h.errors

    stats = running["stats"]
    assert (stats["members"], stats["new"], stats["left"], stats["messages"]) == (7, 2, 2, 10)
    assert (stats["wau"], stats["mau"]) == (6, 7)
    assert stats["incomplete_days"] == ["2025-03-08", "2025-03-09"]
    d7 = next(r for r in stats["retention"] if r["n"] == 7)
    assert (d7["cohort_size"], d7["retained"]) == (7, 3)
    funnel = {r["channel"]: r for r in running["funnel"]["rows"]}
    assert funnel["qrcode"]["traffic"] == 2 and funnel["qrcode"]["growth"] == 2.0
    assert running["funnel"]["total"]["growth"] == pytest.approx(2.8)
    invites = running["invites"]["rows"]
    assert [(r["name"], r["counted"], r["left_early"]) for r in invites] == [
        ("老王", 1, 2), ("小甲", 1, 0)]
    week = next(r for r in running["retention"]["weekly"] if r["start"] == "2025-03-03")
    assert week["size"] == 9 and week["cells"][0]["retained"] == 7

    # --- the bot is stopped: same figures (the day it stopped is now flagged), csv too ----
    for kind in ("stats", "retention", "funnel", "invites"):
        code, out, err = await run(capsys, kind, *base, "--format", "json")
        assert code == 0, err
        stopped = json.loads(out)
        assert without_flags(stopped) == without_flags(running[kind]), kind
        if kind == "stats":
            assert stopped["incomplete_days"] == ["2025-03-08", "2025-03-09", "2025-03-12"]
    code, out, err = await run(capsys, "stats", *base, "--format", "csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["date", "dau", "messages", "new", "left", "incomplete"]
    assert rows[1:] == [
        ["2025-03-06", "2", "2", "1", "1", "0"], ["2025-03-07", "2", "2", "1", "0", "0"],
        ["2025-03-08", "1", "1", "0", "0", "1"], ["2025-03-09", "0", "0", "0", "0", "1"],
        ["2025-03-10", "3", "3", "0", "0", "0"], ["2025-03-11", "1", "1", "0", "1", "0"],
        ["2025-03-12", "1", "1", "0", "0", "1"]]
    code, out, err = await run(capsys, "funnel", *base, "--days", "30", "--format", "csv")
    assert code == 0 and out.splitlines()[-1].startswith("*,*,7,5,5,2,1.0,0.4,2.8,1")
    png = tmp_path / "funnel.png"
    code, out, err = await run(capsys, "funnel", *base, "--png", str(png))
    assert code == 0 and png.read_bytes().startswith(PNG_MAGIC)


async def test_report_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, tmp_path / "nodata")
    code, _, err = await run(capsys, "stats", "--room", ROOM, "--config", str(cfg))
    assert code == 1 and "no qunbot data" in err
    code, _, err = await run(capsys, "stats", "--room", ROOM, "--config", str(tmp_path / "x.yaml"))
    assert code == 2 and "file not found" in err
    code, _, err = await run(capsys, "weekly", "--room", ROOM, "--config", str(cfg))
    assert code == 2 and "invalid choice" in err
    code, _, err = await run(capsys, "stats", "--room", ROOM, "--format", "xml")
    assert code == 2
    code, _, err = await run(capsys, "invites", "--room", ROOM, "--png", "x.png")
    assert code == 2 and "no chart" in err
    code, _, err = await run(capsys, "stats", "--room", ROOM, "--days", "0")
    assert code == 2 and "1-366" in err


async def test_report_cli_unknown_room(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h, _ = await _start(tmp_path)
    await h.stop()
    await h.gw.stop()
    cfg = write_config(tmp_path, h.settings.data_dir)
    code, _, err = await run(capsys, "stats", "--room", "1@chatroom", "--config", str(cfg))
    assert code == 1 and "unknown room" in err and ROOM in err

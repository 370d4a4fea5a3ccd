"""`qunbot backup` / `qunbot restore` / `qunbot run` from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from storage.store import Store


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "bot.yaml"
    cfg.write_text(
        'rooms: ["1@chatroom"]\ndata_dir: ./data\nweb: {enabled: false}\n', encoding="utf-8"
    )
    return cfg


async def test_backup_then_restore_brings_data_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path)
    store = await Store.open(tmp_path / "data")
    await store.kv.set("greeting", "before")
    await store.close()
    assert main(["backup", "--config", str(cfg)]) == 0
    archive = Path(capsys.readouterr().out.strip().split(": ", 1)[1])
    assert archive.exists()  # noqa: ASYNC240 - a test step; nothing else runs on this loop

    store = await Store.open(tmp_path / "data")
    await store.kv.set("greeting", "after")
    assert main(["restore", "--config", str(cfg), str(archive)]) == 1  # refused: the store is open
    assert "in use by another qunbot process" in capsys.readouterr().err
    await store.close()

    assert main(["restore", "--config", str(cfg), str(archive)]) == 0
    store = await Store.open(tmp_path / "data")
    assert store.kv.get("greeting") == "before"
    await store.close()


def test_run_starts_sandbox_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # blocks until the bot prints; ends if it dies
        lines.append(line)
        if "qunbot running" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    text = "".join(lines)
    assert "sandbox gateway listening on 127.0.0.1:" in text
    assert "bot stopped" in err
    assert not (tmp_path / ".wechaty").exists()  # wechaty's cache stays out of the working dir

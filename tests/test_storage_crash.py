"""Crash test: SIGKILL a child doing acknowledged actions, >= 200 times, and check that
every file opens, its schema is valid and every acknowledged action is present."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tinydb import TinyDB

from storage import Store
from storage.layout import MANIFEST, SCHEMA_VERSION

CHILD = Path(__file__).with_name("storage_crash_child.py")
KILLS = 220


class Model:
    """What the acknowledgements printed so far promise."""

    def __init__(self) -> None:
        self.events: dict[int, tuple[str, int]] = {}
        self.kv: dict[str, str] = {}
        self.seen: set[str] = set()
        self.fired: set[str] = set()
        self.joined: set[str] = set()

    def apply(self, act: list[str]) -> None:
        kind = act[0]
        if kind == "ins":
            self.events[int(act[2])] = (act[1], 0)
        elif kind == "upd":
            k, _ = self.events[int(act[1])]
            self.events[int(act[1])] = (k, int(act[2]))
        elif kind == "del":
            self.events.pop(int(act[1]))
        elif kind == "delm":
            for i in act[1].split(","):
                self.events.pop(int(i))
        elif kind == "kv":
            self.kv[act[1]] = act[2]
        elif kind == "seen":
            self.seen.add(act[1])
        elif kind == "fire":
            self.fired.add(act[1])
        elif kind == "join":
            self.joined.add(act[1])


def _check_files(data_dir: Path) -> None:
    manifest = json.loads((data_dir / MANIFEST).read_text())
    assert manifest["schema"] == SCHEMA_VERSION
    for name, fname in manifest["files"].items():
        obj = json.loads((data_dir / fname).read_text())
        assert obj["_meta"]["1"]["schema"] == SCHEMA_VERSION
        with TinyDB(data_dir / fname, access_mode="r") as db:  # plain TinyDB opens it too
            assert name in db.tables()


async def _verify(data_dir: Path, model: Model, pending: list[str] | None) -> None:
    _check_files(data_dir)
    store = await Store.open(data_dir, backup_keep=0, compact_bytes=6000)
    try:
        events = store.table("events")
        actual = {d.doc_id: (d["k"], d["v"]) for d in events.all()}
        touched: set[int] = set()
        if pending is not None:
            p = pending
            if p[0] in ("upd", "del"):
                touched = {int(p[1])}
            elif p[0] == "delm":
                touched = {int(i) for i in p[1].split(",")}
        for doc_id, want in model.events.items():
            if doc_id in touched:
                continue
            assert actual.get(doc_id) == want, (doc_id, want, actual.get(doc_id))
        extra = set(actual) - set(model.events)
        assert not extra or (pending is not None and pending[0] == "ins" and len(extra) == 1)
        for k, v in model.kv.items():
            got = store.kv.get(k)
            assert got == v or (pending is not None and pending[:2] == ["kv", k]), (k, v, got)
        assert all(store.seen.seen(s) for s in model.seen)
        assert all(store.firings.claimed(f) for f in model.fired)
        assert all(store.members.get("room", m) is not None for m in model.joined)
        # The next run starts from what is on disk (including a persisted unacked action).
        model.events = actual
        model.kv = {k: store.kv.get(k) for k in store.kv.keys()}
    finally:
        await store.close()


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_action(tmp_path: Path) -> None:
    rng = random.Random(20240603)
    data_dir = tmp_path / "data"
    model = Model()
    acks = 0
    for run in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), f"r{run}", str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None and child.stderr is not None
        consumed: list[bytes] = []
        if rng.random() < 0.1:
            time.sleep(rng.uniform(0, 0.15))  # the kill moment itself is random: during open
        else:
            ready = child.stdout.readline()
            assert ready == b"ready\n", child.stderr.read().decode()
            target = rng.randrange(0, 120)
            seen_acks = 0
            while seen_acks < target:
                raw = child.stdout.readline()
                if not raw:
                    break
                consumed.append(raw)
                seen_acks += raw.startswith(b"A ")
            time.sleep(rng.uniform(0, 0.004))  # land anywhere inside the next action
        os.kill(child.pid, signal.SIGKILL)
        # Read through the same buffered reader as readline() (communicate() would skip
        # whatever it already buffered).
        out = child.stdout.read()
        err = child.stderr.read()
        child.wait()
        child.stdout.close()
        child.stderr.close()
        assert child.returncode == -signal.SIGKILL, err.decode()
        pending: list[str] | None = None
        lines = (b"".join(consumed) + out).decode().splitlines()
        for line in lines:
            if line.startswith("I "):
                pending = line[2:].split()
            elif line.startswith("A "):
                act = line[2:].split()
                model.apply(act)
                acks += 1
                pending = None
        asyncio.run(_verify(data_dir, model, pending))
    assert acks > 5 * KILLS

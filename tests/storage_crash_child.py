"""Child of the crash test: performs acknowledged store actions until it is SIGKILLed.

Prints ``I <action>`` before each action and ``A <action>`` after it returned (acknowledged),
flushing stdout each time.  Usage: storage_crash_child.py DATA_DIR RUN_ID SEED
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import Store  # noqa: E402


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(data_dir: Path, run_id: str, seed: int) -> None:
    rng = random.Random(seed)
    store = await Store.open(data_dir, backup_keep=0, flush_s=3600, compact_bytes=6000)
    events = store.table("events")
    say("ready")
    i = 0
    while True:
        i += 1
        uid = f"{run_id}-{i}"
        ids = events.ids()
        r = rng.random()
        if r < 0.30 or not ids:
            act = f"ins {uid}"
            say("I " + act)
            doc_id = await events.insert({"k": uid, "v": 0, "pad": "x" * rng.randrange(200)})
            say(f"A ins {uid} {doc_id}")
            continue
        if r < 0.45:
            doc_id = rng.choice(ids)
            doc = events.get(doc_id=doc_id)
            assert doc is not None
            v = doc["v"] + 1
            act = f"upd {doc_id} {v}"
            say("I " + act)
            await events.update({"v": v}, [doc_id])
        elif r < 0.55:
            doc_id = rng.choice(ids)
            act = f"del {doc_id}"
            say("I " + act)
            await events.remove([doc_id])
        elif r < 0.60:
            # A cancellation of many at once: the table (and its next snapshot) shrinks.
            gone = rng.sample(ids, min(len(ids), rng.randrange(5, 40)))
            act = "delm " + ",".join(map(str, gone))
            say("I " + act)
            await events.remove(gone)
        elif r < 0.70:
            act = f"kv k{rng.randrange(10)} {uid}"
            say("I " + act)
            await store.kv.set(act.split()[1], uid)
        elif r < 0.85:
            act = f"seen {uid}"
            say("I " + act)
            assert await store.seen.check_and_mark(uid)
        elif r < 0.93:
            act = f"fire {uid}"
            say("I " + act)
            assert await store.firings.claim(uid)
        else:
            act = f"join {uid}"
            say("I " + act)
            await store.members.record_join("room", uid, "n", 1.8e9, "qrcode", None)
        say("A " + act)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))

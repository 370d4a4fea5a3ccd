"""Seen message ids: ``check_and_mark`` answers "is this message new?" durably.

Horizon (documented contract): ids are kept in two generations.  The current generation
rotates into the previous one when it is older than ``HORIZON_S`` (24 h) or holds
``GEN_MAX`` (250,000) ids, and the previous generation is then dropped.  So an id is
remembered for at least 24 h unless more than 250,000 newer ids arrived in between (above
the design load of 200,000 messages a day), and for at most two generations.  Ids are
stored as 64-bit BLAKE2b hashes (collision odds ~1e-8 at 500k ids): small, and no message
ids leak into files.  Each new id is journalled before ``check_and_mark`` returns True;
concurrent calls share one fsync (the writer's group commit).
"""

from __future__ import annotations

import base64
import hashlib
import json
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.store import Store
    from storage.tables import Tx

DOMAIN = "seen"
HORIZON_S = 86_400.0
GEN_MAX = 250_000


def id_hash(msg_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(msg_id.encode(), digest_size=8).digest(), "big")


def _pack(values: list[int] | set[int]) -> str:
    items = list(values)
    arr = array("Q")
    for i in range(0, len(items), 20_000):  # in pieces: C loops here hold the GIL
        arr.extend(items[i : i + 20_000])
    return base64.b64encode(arr.tobytes()).decode()


def _unpack(text: str) -> set[int]:
    arr = array("Q")
    arr.frombytes(base64.b64decode(text, validate=True))
    return set(arr)


class SeenState:
    def __init__(self) -> None:
        self.cur: set[int] = set()
        self.prev: set[int] = set()  # never mutated once rotated, so snapshots can share it
        self.cur_start: float | None = None

    def apply(self, op: list[Any]) -> None:
        if op[0] == "s":
            self.cur.update(op[1])
        elif op[0] == "sr":
            self.rotate(op[1])
        else:
            raise ValueError(f"unknown seen op {op[0]!r}")

    def rotate(self, ts: float) -> None:
        self.prev = self.cur
        self.cur = set()
        self.cur_start = ts

    def __contains__(self, h: int) -> bool:
        return h in self.cur or h in self.prev

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> SeenState:
        st = cls()
        for doc in table.values():
            st.cur = _unpack(doc["cur"])
            st.prev = _unpack(doc["prev"])
            st.cur_start = doc["cur_start"]
        return st

    def capture(self) -> Callable[[str], list[bytes]]:
        cur, prev, start = list(self.cur), self.prev, self.cur_start

        def encode(meta: str) -> list[bytes]:
            doc = {"cur_start": start, "cur": _pack(cur), "prev": _pack(prev)}
            return [f'{{"_meta":{{"1":{meta}}},"{DOMAIN}":{{"1":{json.dumps(doc)}}}}}'.encode()]

        return encode


class SeenRepo:
    def __init__(self, store: Store, state: SeenState) -> None:
        self._store = store
        self._st = state

    def __len__(self) -> int:
        return len(self._st.cur) + len(self._st.prev)

    def seen(self, msg_id: str) -> bool:
        return id_hash(msg_id) in self._st

    async def check_and_mark(self, msg_id: str) -> bool:
        """True when `msg_id` is new (and it is now durably marked); False when seen before."""
        h = id_hash(msg_id)
        if h in self._st:
            return False
        now = self._store.clock.now()
        st = self._st

        def body(tx: Tx) -> None:
            if st.cur_start is None or now - st.cur_start >= HORIZON_S or len(st.cur) >= GEN_MAX:
                cur, prev, start = st.cur, st.prev, st.cur_start

                def undo_rotate() -> None:
                    st.cur, st.prev, st.cur_start = cur, prev, start

                st.rotate(now)
                tx.add(DOMAIN, f'["sr",{now!r}]', undo_rotate)
            st.cur.add(h)
            tx.add(DOMAIN, f'["s",[{h}]]', lambda: st.cur.discard(h))

        await self._store.atomic(body)
        return True

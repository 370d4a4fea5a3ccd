"""TinyDB tables kept in memory and made durable by the store's journal.

TinyDB does what it is good at here: documents, doc ids, ``Query`` conditions and the JSON
file format (every snapshot file opens with plain ``TinyDB(path)``).  Its write path does not
fit a bot (``JSONStorage`` rewrites the whole file in place per write; ``_update_table``
copies the whole table twice per write), so:

* ``MemStorage`` is a ``tinydb.Storage`` over a dict that the store loaded from a snapshot
  plus the journal; TinyDB never touches a file.
* ``FastTable`` overrides ``Table._update_table`` to mutate that dict in place (O(changed
  docs) per write instead of O(table)).  tinydb is pinned to 4.9.0 for this.
* Writes go through ``Tx``: the change is applied in memory, journalled as whole-document
  puts/deletes (idempotent on replay), and the caller's ``await`` returns after fsync.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from tinydb import TinyDB
from tinydb.queries import QueryLike
from tinydb.storages import Storage
from tinydb.table import Document, Table

if TYPE_CHECKING:
    from storage.store import Store

Doc = dict[str, Any]
RawTable = dict[str, Doc]


class MemStorage(Storage):
    """TinyDB storage over the store's in-memory dict (persistence is the journal's job)."""

    def __init__(self, data: dict[str, RawTable]) -> None:
        self._data = data

    def read(self) -> dict[str, RawTable]:
        return self._data

    def write(self, data: dict[str, RawTable]) -> None:
        self._data = data


class _IntKeys(MutableMapping[int, Doc]):
    """An int-keyed view of a raw (str-keyed) table, as TinyDB's updaters expect."""

    def __init__(self, raw: RawTable) -> None:
        self._raw = raw

    def __getitem__(self, key: int) -> Doc:
        return self._raw[str(key)]

    def __setitem__(self, key: int, value: Doc) -> None:
        self._raw[str(key)] = value

    def __delitem__(self, key: int) -> None:
        del self._raw[str(key)]

    def __iter__(self) -> Iterator[int]:
        return (int(k) for k in list(self._raw))

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._raw


class FastTable(Table):
    def _update_table(self, updater: Callable[[dict[int, Mapping[str, Any]]], None]) -> None:
        tables = self._storage.read()
        assert tables is not None
        raw = tables.setdefault(self.name, {})
        updater(_IntKeys(raw))  # type: ignore[arg-type]
        self.clear_cache()


class _DB(TinyDB):
    table_class = FastTable


def _clean(value: Mapping[str, Any]) -> tuple[Doc, str]:
    """(JSON round-tripped copy, its encoding): memory holds exactly what a replay rebuilds."""
    enc = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.loads(enc), enc


class DurableTable:
    """A durable TinyDB table.  Reads are synchronous from memory; writes are async and
    return after the change is fsynced.  Several writes commit atomically with
    ``await store.atomic(lambda tx: ...)`` (see ``Tx``).  Returned documents share nested
    values with memory: treat them as read-only and write through the table.
    """

    def __init__(self, store: Store, name: str, raw: RawTable) -> None:
        self.name = name
        self._store = store
        self._raw = raw
        self._db = _DB({name: raw}, storage=MemStorage)
        self._t: Table = self._db.table(name, cache_size=30)
        self._name_json = json.dumps(name)
        # The encoded form of every document, so compaction snapshots are a join of strings
        # captured in O(docs) pointer copies instead of re-encoding under the GIL.
        self.enc: dict[int, str] = {
            int(k): json.dumps(v, ensure_ascii=False, separators=(",", ":")) for k, v in raw.items()
        }

    # -- reads -------------------------------------------------------------------------------
    def get(self, cond: QueryLike | None = None, doc_id: int | None = None) -> Document | None:
        if doc_id is not None:
            raw = self._raw.get(str(doc_id))
            return None if raw is None else Document(raw, doc_id)
        if cond is None:
            raise ValueError("get needs cond or doc_id")
        found = self._t.get(cond)
        assert not isinstance(found, list)
        return found

    def search(self, cond: QueryLike) -> list[Document]:
        return self._t.search(cond)

    def all(self) -> list[Document]:
        return self._t.all()

    def count(self, cond: QueryLike) -> int:
        return self._t.count(cond)

    def contains(self, cond: QueryLike | None = None, doc_id: int | None = None) -> bool:
        if doc_id is not None:
            return str(doc_id) in self._raw
        return self._t.contains(cond)

    def ids(self) -> list[int]:
        return [int(k) for k in self._raw]

    def __len__(self) -> int:
        return len(self._raw)

    def __iter__(self) -> Iterator[Document]:
        return iter(self._t)

    # -- durable writes (each is one atomic commit) ------------------------------------------
    async def insert(self, doc: Mapping[str, Any]) -> int:
        return await self._store.atomic(lambda tx: tx.insert(self, doc))

    async def update(
        self,
        fields: Mapping[str, Any],
        doc_ids: Iterable[int] | None = None,
        cond: QueryLike | None = None,
    ) -> list[int]:
        return await self._store.atomic(lambda tx: tx.update(self, fields, doc_ids, cond))

    async def remove(
        self, doc_ids: Iterable[int] | None = None, cond: QueryLike | None = None
    ) -> list[int]:
        return await self._store.atomic(lambda tx: tx.remove(self, doc_ids, cond))

    async def upsert(self, doc: Mapping[str, Any], cond: QueryLike) -> list[int]:
        return await self._store.atomic(lambda tx: tx.upsert(self, doc, cond))

    # -- used by Tx ----------------------------------------------------------------------------
    def _put_op(self, doc_id: int, enc: str) -> str:
        return f'["p",{self._name_json},{doc_id},{enc}]'

    def _del_op(self, doc_ids: list[int]) -> str:
        return f'["d",{self._name_json},[{",".join(map(str, doc_ids))}]]'

    def _restore(self, doc_id: int, doc: Doc | None, enc: str | None) -> None:
        key = str(doc_id)
        if doc is None:
            self._raw.pop(key, None)
            self.enc.pop(doc_id, None)
        else:
            self._raw[key] = doc
            assert enc is not None
            self.enc[doc_id] = enc
        self._t.clear_cache()


class Tx:
    """The writes of one atomic commit.

    ``await store.atomic(fn)`` calls ``fn(tx)`` synchronously (no other task can interleave),
    applies each write to memory as it is made, then journals all of them as one record and
    returns ``fn``'s result once that record is fsynced.  If ``fn`` raises, every write it
    made is undone in memory and nothing is journalled.
    """

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.domains: set[str] = set()
        self._undo: list[Callable[[], None]] = []

    def add(self, domain: str, op: str, undo: Callable[[], None]) -> None:
        """Journal a domain-specific operation (used by activity and seen ids)."""
        self.ops.append(op)
        self.domains.add(domain)
        self._undo.append(undo)

    def on_undo(self, undo: Callable[[], None]) -> None:
        """Register an in-memory undo (e.g. a repository index) without journalling anything."""
        self._undo.append(undo)

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self.ops.clear()

    def _saved(self, t: DurableTable, doc_id: int) -> None:
        prev = t._raw.get(str(doc_id))
        prev_copy = None if prev is None else dict(prev)  # TinyDB updates docs in place
        prev_enc = t.enc.get(doc_id)
        self._undo.append(lambda: t._restore(doc_id, prev_copy, prev_enc))

    def _journal_put(self, t: DurableTable, doc_id: int) -> None:
        enc = json.dumps(t._raw[str(doc_id)], ensure_ascii=False, separators=(",", ":"))
        t.enc[doc_id] = enc
        self.ops.append(t._put_op(doc_id, enc))
        self.domains.add(t.name)

    def insert(self, t: DurableTable, doc: Mapping[str, Any]) -> int:
        clean, enc = _clean(doc)
        doc_id: int = t._t.insert(clean)
        self._undo.append(lambda: t._restore(doc_id, None, None))
        t.enc[doc_id] = enc
        self.ops.append(t._put_op(doc_id, enc))
        self.domains.add(t.name)
        return doc_id

    def update(
        self,
        t: DurableTable,
        fields: Mapping[str, Any],
        doc_ids: Iterable[int] | None = None,
        cond: QueryLike | None = None,
    ) -> list[int]:
        """Merge `fields` into the given documents (missing ids are skipped)."""
        clean, _ = _clean(fields)
        if doc_ids is not None:
            ids = [i for i in doc_ids if str(i) in t._raw]
        elif cond is not None:
            ids = [d.doc_id for d in t._t.search(cond)]
        else:
            raise ValueError("update needs doc_ids or cond")
        for i in ids:
            self._saved(t, i)
        if ids:
            t._t.update(clean, doc_ids=ids)
        for i in ids:
            self._journal_put(t, i)
        return ids

    def remove(
        self, t: DurableTable, doc_ids: Iterable[int] | None = None, cond: QueryLike | None = None
    ) -> list[int]:
        if doc_ids is not None:
            ids = [i for i in dict.fromkeys(doc_ids) if str(i) in t._raw]
        elif cond is not None:
            ids = [d.doc_id for d in t._t.search(cond)]
        else:
            raise ValueError("remove needs doc_ids or cond")
        if not ids:
            return []
        for i in ids:
            self._saved(t, i)
        t._t.remove(doc_ids=ids)
        for i in ids:
            t.enc.pop(i, None)
        self.ops.append(t._del_op(ids))
        self.domains.add(t.name)
        return ids

    def upsert(self, t: DurableTable, doc: Mapping[str, Any], cond: QueryLike) -> list[int]:
        ids = self.update(t, doc, cond=cond)
        return ids if ids else [self.insert(t, doc)]

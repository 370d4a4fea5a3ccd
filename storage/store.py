"""The durable store: one journal, one writer thread, TinyDB-format snapshots per domain.

Durability design
-----------------
* Every acknowledged write is a *commit*: ``await store.atomic(fn)`` applies ``fn``'s changes
  in memory (synchronously, so nothing interleaves), appends them as ONE checksummed line to
  the journal and returns only after ``fdatasync``.  A line is all-or-nothing: a torn last
  line (kill -9 inside ``write``) fails its CRC and is dropped at open; it was never acked.
* One writer thread owns the journal and serialises all writes in commit order; concurrent
  commits share one fsync (group commit).  The event loop never does blocking file I/O.
* Compaction (journal > ``compact_bytes``, and at close) writes the changed domains as new
  TinyDB-format snapshot files plus a fresh journal, fsyncs them, then atomically replaces
  ``store.json`` (tmp + fsync + rename + dir fsync): that rename is the single commit point,
  so a crash at any moment leaves either the old generation or the new one, never a mix.
  Files are never rewritten in place, so deletes that shrink data cannot leave stale bytes.
* Open validates the manifest, every snapshot (empty / truncated / invalid JSON / wrong
  structure / schema version) and the journal; anything wrong raises ``StoreDamaged`` naming
  the file and the newest good backup.  It never starts empty over existing data.
* Reads are synchronous from memory and may see a commit whose fsync is still in flight
  (its caller has not been acknowledged yet); acknowledged state is always on disk.  If a
  journal write fails, the store refuses further writes (``StoreFailed``).
* Activity counters are batched and journalled every ``flush_s`` and at close.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bot.clock import Clock, SystemClock
from storage import layout
from storage.activity import ActivityRepo, ActivityState
from storage.backup import backup as _backup
from storage.backup import list_backups, newest_good_backup
from storage.days import DayCalc
from storage.errors import StoreDamaged, StoreError
from storage.fileio import encode_line
from storage.repos import (
    AdminRepo,
    AuditRepo,
    CheckinRepo,
    FiringLedger,
    KVRepo,
    MemberRepo,
    OutageRepo,
)
from storage.seen import SeenRepo, SeenState
from storage.tables import DurableTable, RawTable, Tx
from storage.writer import Writer

log = logging.getLogger(__name__)
T = TypeVar("T")

REPO_TABLES = ("members", "admins", "audit", "kv", "firings", "outages", "checkins")
RESERVED = {"activity", "seen", "store", "journal", *REPO_TABLES}
DEFAULT_COMPACT_BYTES = 4 << 20


def _valid_name(name: str) -> bool:
    return bool(layout.STORE_FILE.match(f"{name}.000000.json")) and len(name) <= 40


class Store:
    members: MemberRepo
    activity: ActivityRepo
    seen: SeenRepo
    admins: AdminRepo
    audit: AuditRepo
    kv: KVRepo
    firings: FiringLedger
    outages: OutageRepo
    checkins: CheckinRepo
    _writer: Writer
    _task: asyncio.Future[None]

    def __init__(self) -> None:  # use Store.open
        raise TypeError("use `await Store.open(data_dir)`")

    # -- lifecycle --------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        data_dir: Path,
        *,
        tz: str = "Asia/Shanghai",
        backup_keep: int = 7,
        flush_s: float = 2.0,
        clock: Clock | None = None,
        compact_bytes: int = DEFAULT_COMPACT_BYTES,
    ) -> Store:
        """Lock `data_dir`, validate and load it, start the writer.

        Raises StoreLocked (another process holds it) or StoreDamaged (names the file and
        the newest good backup).  A lower schema version is migrated forward after a backup.
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = layout.acquire_lock(data_dir)
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(None, layout.load, data_dir)
            if loaded.torn_bytes:
                log.warning(
                    "dropped a torn journal tail (%d bytes, never acknowledged)", loaded.torn_bytes
                )
            self = object.__new__(cls)
            self._init(
                data_dir,
                lock,
                loaded,
                tz,
                backup_keep,
                flush_s,
                clock or SystemClock(),
                compact_bytes,
            )
            if loaded.manifest.schema < layout.SCHEMA_VERSION:
                await loop.run_in_executor(None, self._migrate)
        except layout.Damage as e:
            layout.release_lock(lock)
            raise StoreDamaged(e.path, e.reason, newest_good_backup(data_dir)) from None
        except BaseException:
            layout.release_lock(lock)
            raise
        self._writer = Writer(data_dir / self._manifest.journal, loop)
        # The loaded data lives as long as the process: keep it out of the cyclic GC's full
        # collections, which at design size would otherwise stall the loop for ~50 ms.
        gc.freeze()
        self._task = asyncio.ensure_future(self._background())
        return self

    def _init(
        self,
        data_dir: Path,
        lock: int,
        loaded: layout.Loaded,
        tz: str,
        backup_keep: int,
        flush_s: float,
        clock: Clock,
        compact_bytes: int,
    ) -> None:
        self.data_dir = data_dir
        self.tz = tz
        self.clock = clock
        self.days = DayCalc(tz)
        self._lock: int | None = lock
        self._manifest = loaded.manifest
        self._lsn = loaded.lsn
        self._backup_keep = backup_keep
        self._flush_s = flush_s
        self._compact_bytes = compact_bytes
        self._raw: dict[str, RawTable] = loaded.tables
        self._tables: dict[str, DurableTable] = {
            name: DurableTable(self, name, raw) for name, raw in loaded.tables.items()
        }
        self._activity_state = loaded.activity
        self._seen_state = loaded.seen
        # Domains changed since their snapshot; those only in the journal count too, or the
        # next compaction (which starts an empty journal) would drop their changes.
        self._ver: dict[str, int] = dict.fromkeys(loaded.replayed, 1)
        self._snap_ver: dict[str, int] = {}
        self._compacting: asyncio.Future[bool] | None = None
        self._backing_up: asyncio.Future[Path | None] | None = None
        self._closed = False
        self._backup_lock = asyncio.Lock()
        self.members = MemberRepo(self, self._table("members"), self.days)
        self.activity = ActivityRepo(self, loaded.activity, self.days)
        self.seen = SeenRepo(self, loaded.seen)
        self.admins = AdminRepo(self, self._table("admins"))
        self.audit = AuditRepo(self, self._table("audit"))
        self.kv = KVRepo(self, self._table("kv"))
        self.firings = FiringLedger(self, self._table("firings"))
        self.outages = OutageRepo(self, self._table("outages"))
        self.checkins = CheckinRepo(self, self._table("checkins"), self.days)
        daily = list_backups(data_dir, "daily")
        # Backup names start with qunbot-YYYYmmdd: the day of the newest daily backup.
        self._last_daily: str | None = daily[0].name[7:15] if daily else None

    async def close(self) -> None:
        """Flush activity, compact, stop the writer and release the lock."""
        if self._closed:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        try:
            if self._backing_up is not None:
                await asyncio.wait([self._backing_up])
            if self._writer.failed is None:
                await self._flush_activity()
                if self._compacting is not None:
                    await asyncio.wait([self._compacting])
                await self.compact()  # a clean shutdown leaves an empty journal: fast open
        finally:
            self._closed = True
            self._writer.stop()
            if self._lock is not None:
                layout.release_lock(self._lock)
                self._lock = None

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- tables and commits ---------------------------------------------------------------------
    def _table(self, name: str) -> DurableTable:
        t = self._tables.get(name)
        if t is None:
            raw = self._raw.setdefault(name, {})
            t = self._tables[name] = DurableTable(self, name, raw)
        return t

    def table(self, name: str) -> DurableTable:
        """The durable TinyDB table `name` (one snapshot file per table), created on demand."""
        if not _valid_name(name):
            raise ValueError(f"table name {name!r}: use lowercase letters, digits and _")
        if name in RESERVED:
            raise ValueError(f"table {name!r} is reserved (use store.{name} for repositories)")
        return self._table(name)

    def tables(self) -> list[str]:
        return sorted(self._tables)

    def _check_writable(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    async def atomic(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` and commit all its writes as one durable, atomic record.

        `fn` is synchronous: it reads and writes tables through `tx` (``tx.insert(t, doc)``,
        ``tx.update(t, fields, ids)``, ``tx.remove(t, ids)``, ``tx.upsert(t, doc, cond)``)
        and repositories' ``*_tx`` helpers.  Returns `fn`'s result after fsync.  If `fn`
        raises, its writes are undone and nothing is written.
        """
        self._check_writable()
        tx = Tx()
        try:
            result = fn(tx)
            fut = self._journal(tx.domains, tx.ops) if tx.ops else None
        except BaseException:
            tx.rollback()
            raise
        if fut is not None:
            await fut
        return result

    def _journal(
        self, domains: set[str], ops: list[str] | Callable[[int], bytes]
    ) -> asyncio.Future[None]:
        """Queue one commit (loop thread); the future resolves once it is durable."""
        if self._writer.failed is not None:
            self._writer.append(b"")  # raises StoreFailed
        self._lsn += 1
        lsn = self._lsn
        if callable(ops):
            fn = ops
            fut = self._writer.append(lambda: fn(lsn))
        else:
            fut = self._writer.append(encode_line(f'{{"l":{lsn},"o":[{",".join(ops)}]}}'))
        for d in domains:
            self._ver[d] = self._ver.get(d, 0) + 1
        self._maybe_compact()
        return fut

    async def _flush_activity(self) -> None:
        encode = self.activity._take_pending()
        if encode is not None:
            await self._journal({"activity"}, encode)

    async def flush(self) -> None:
        """Make batched activity counts durable now."""
        self._check_writable()
        await self._flush_activity()

    # -- compaction ------------------------------------------------------------------------------
    def _dirty(self) -> list[str]:
        names = set(self._ver) | set(self._tables)
        return sorted(
            n
            for n in names
            if self._ver.get(n, 0) != self._snap_ver.get(n, 0)
            or (n not in self._manifest.files and n in self._ver)
        )

    def _maybe_compact(self) -> None:
        if self._compacting is None and self._writer.journal_size > self._compact_bytes:
            self._compacting = asyncio.ensure_future(self.compact())
            self._compacting.add_done_callback(_log_failure)

    async def compact(self) -> bool:
        """Snapshot changed domains and start a fresh journal (False if a backup was running)."""
        flush = self.activity._take_pending()
        pending = self._journal({"activity"}, flush) if flush is not None else None
        # Capture synchronously right after queueing the flush: memory == journal at self._lsn.
        dirty = self._dirty()
        captures: dict[str, layout.Encoder] = {}
        for name in dirty:
            if name == "activity":
                captures[name] = self._activity_state.capture()
            elif name == "seen":
                captures[name] = self._seen_state.capture()
            else:
                t = self._tables[name]
                captures[name] = layout.table_encoder(list(t.enc.items()), name)
        versions = {n: self._ver.get(n, 0) for n in dirty}
        lsn, manifest = self._lsn, self._manifest
        writer = self._writer

        def run() -> layout.Manifest | None:
            try:
                new = layout.compact(self.data_dir, manifest, lsn, captures, manifest.schema)
                if new is not None:
                    writer.reopen(self.data_dir / new.journal)
            except BaseException as e:
                # Unknown whether the manifest committed: appending could go to a dead
                # journal, so stop writing (the files on disk are consistent either way).
                writer.failed = e
                log.critical("compaction failed, storage is now read-only: %s", e)
                raise
            return new

        try:
            new = await writer.call(run)
            if pending is not None:
                await pending
        finally:
            self._compacting = None
        if new is None:
            return False
        self._manifest = new
        self._snap_ver.update(versions)
        return True

    def _migrate(self) -> None:
        """Forward migrations (executor thread, before the writer starts): backup, migrate
        the replayed state, rewrite every domain at the new schema under one manifest."""
        old = self._manifest.schema
        path = _backup(
            self.data_dir, label=f"pre-migration-v{old}", now=self.clock.now(), tz=self.tz
        )
        log.warning(
            "migrating store schema %d -> %d (backup: %s)", old, layout.SCHEMA_VERSION, path
        )

        meta = layout.snapshot_meta(old, self._lsn, "x")
        objs: dict[str, dict[str, Any]] = {
            n: {n: t._raw} for n, t in self._tables.items() if t._raw or n in self._manifest.files
        }
        objs["activity"] = json.loads(b"".join(self._activity_state.capture()(meta)))
        objs["seen"] = json.loads(b"".join(self._seen_state.capture()(meta)))
        for v in range(old, layout.SCHEMA_VERSION):
            step = layout.MIGRATIONS[v]
            objs = {
                n: step(n, {k: o for k, o in obj.items() if k != "_meta"})
                for n, obj in objs.items()
            }
        act = ActivityState.from_table(objs.pop("activity")["activity"])
        self._activity_state.rooms, self._activity_state.msgs = act.rooms, act.msgs
        seen = SeenState.from_table(objs.pop("seen")["seen"])
        st = self._seen_state
        st.cur, st.prev, st.cur_start = seen.cur, seen.prev, seen.cur_start
        for n, obj in objs.items():
            migrated = dict(obj[n])  # may be the very dict we are about to refill
            raw = self._raw.setdefault(n, {})
            raw.clear()
            raw.update(migrated)
            self._tables[n] = DurableTable(self, n, raw)
        self._init_repos_after_migration()
        captures: dict[str, layout.Encoder] = {
            "activity": self._activity_state.capture(),
            "seen": self._seen_state.capture(),
        }
        for n, t in self._tables.items():
            captures[n] = layout.table_encoder(list(t.enc.items()), n)
        new = layout.compact(
            self.data_dir, self._manifest, self._lsn, captures, layout.SCHEMA_VERSION
        )
        if new is None:
            raise StoreError("a backup is running; cannot migrate now, retry")
        self._manifest = new

    def _init_repos_after_migration(self) -> None:
        self.members = MemberRepo(self, self._table("members"), self.days)
        self.admins = AdminRepo(self, self._table("admins"))
        self.audit = AuditRepo(self, self._table("audit"))
        self.kv = KVRepo(self, self._table("kv"))
        self.firings = FiringLedger(self, self._table("firings"))
        self.outages = OutageRepo(self, self._table("outages"))
        self.checkins = CheckinRepo(self, self._table("checkins"), self.days)

    # -- privacy ---------------------------------------------------------------------------
    async def forget_member(self, member_id: str) -> str:
        """Storage side of /forget, in one commit: member records get an irreversible random
        pseudonym and lose their name, activity day sets move to the pseudonym, check-ins are
        deleted.  Returns the pseudonym (feature handlers clean their own tables)."""
        pseudonym = "anon-" + secrets.token_hex(8)
        await self._flush_activity()

        def body(tx: Tx) -> None:
            self.members.forget_tx(tx, member_id, pseudonym)
            self.activity.forget_tx(tx, member_id, pseudonym)
            self.checkins.forget_tx(tx, member_id)
            self.audit.forget_tx(tx, member_id, pseudonym)

        await self.atomic(body)
        return pseudonym

    # -- backups ---------------------------------------------------------------------------
    async def backup_now(self, label: str = "manual", dest_dir: Path | None = None) -> Path:
        """A consistent backup while running (flushes activity first; runs off the loop)."""
        await self.flush()
        loop = asyncio.get_running_loop()
        now = self.clock.now()
        return await loop.run_in_executor(
            None, lambda: _backup(self.data_dir, dest_dir, label=label, now=now, tz=self.tz)
        )

    def _today_stamp(self) -> str:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        return datetime.fromtimestamp(self.clock.now(), ZoneInfo(self.tz)).strftime("%Y%m%d")

    async def daily_backup(self) -> Path | None:
        """Take today's automatic backup if not taken yet; keep the newest `backup_keep`."""
        async with self._backup_lock:  # the background task and a caller may race
            if self._backup_keep <= 0 or self._last_daily == self._today_stamp():
                return None
            path = await self.backup_now("daily")
            self._last_daily = self._today_stamp()
            for old in list_backups(self.data_dir, "daily")[self._backup_keep :]:
                old.unlink(missing_ok=True)
            return path

    async def _background(self) -> None:
        """Periodic work: activity flush, compaction check, daily backup."""
        while True:
            try:
                if self._backing_up is None or self._backing_up.done():
                    self._backing_up = None
                    if self._backup_keep > 0 and self._last_daily != self._today_stamp():
                        self._backing_up = asyncio.ensure_future(self.daily_backup())
                await self.clock.sleep(self._flush_s)
                await self._flush_activity()
                self._maybe_compact()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("storage background work failed; retrying")
                await self.clock.sleep(self._flush_s)

    # -- introspection --------------------------------------------------------------------------
    @property
    def journal_size(self) -> int:
        return int(self._writer.journal_size)

    @property
    def fsyncs(self) -> int:
        return int(self._writer.fsyncs)

    def files(self) -> list[Path]:
        m = self._manifest
        return [self.data_dir / layout.MANIFEST, self.data_dir / m.journal] + [
            self.data_dir / f for f in m.files.values()
        ]


def _log_failure(fut: asyncio.Future[bool]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("background compaction failed: %s", fut.exception())


def pid_file(data_dir: Path) -> int | None:
    """The pid recorded in the lock file (may be stale when nobody holds the lock)."""
    try:
        return int((Path(data_dir) / layout.LOCK).read_text().strip())
    except (OSError, ValueError):
        return None

"""The data directory's files and the operations on them (no asyncio here).

Layout of ``data_dir``::

    store.json               manifest: schema, generation, lsn, the journal and one file per
                             domain; replacing it (atomically) is the single commit point
    journal.<gen>.log        append-only journal since generation <gen>'s snapshots
    <domain>.<gen>.json      TinyDB-format snapshot of one domain (opens with plain TinyDB):
                             {"_meta": {"1": {schema, lsn, name}}, "<domain>": {doc_id: doc}}
    .lock                    flock held by the running Store (pid inside)
    .snapshot.lock           flock held while snapshots change (compaction) or are copied
                             (backup), so a backup sees one generation
    backups/                 qunbot-<YYYYmmdd-HHMMSS>-<label>.tar.gz
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.activity import ActivityState
from storage.errors import StoreLocked
from storage.fileio import atomic_write, decode_line, encode_line, fsync_dir, write_all
from storage.seen import SeenState

SCHEMA_VERSION = 1
FORMAT = "qunbot-store"
MANIFEST = "store.json"
LOCK = ".lock"
SNAPSHOT_LOCK = ".snapshot.lock"
BACKUP_DIR = "backups"
STORE_FILE = re.compile(r"^(journal\.\d{6}\.log|[a-z][a-z0-9_]*\.\d{6}\.json)(\.tmp)?$")

# Forward migrations: MIGRATIONS[v] turns a domain's data at schema v into schema v + 1.
# It gets (domain name, {table name: {doc id: doc}}) and returns the same shape.  Migrations
# run on the fully replayed state, after a backup, then everything is rewritten at the new
# schema under one manifest commit (so they run once; a crash midway leaves the old files).
# A schema change that alters journal op formats must keep a reader for the old ops.
Migration = Callable[[str, dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}


class Damage(Exception):
    """Internal: a file failed validation (converted to StoreDamaged with a backup hint)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class Manifest:
    schema: int
    gen: int
    lsn: int
    journal: str
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "schema": self.schema,
                "gen": self.gen,
                "lsn": self.lsn,
                "journal": self.journal,
                "files": self.files,
            },
            indent=1,
            sort_keys=True,
        ).encode()


@dataclass
class Loaded:
    manifest: Manifest
    tables: dict[str, dict[str, dict[str, Any]]]
    activity: ActivityState
    seen: SeenState
    lsn: int
    torn_bytes: int  # bytes of a torn journal tail that were dropped
    replayed: set[str]  # domains changed by journal records (not yet in their snapshot)


# -- locks ---------------------------------------------------------------------------------------
def acquire_lock(data_dir: Path) -> int:
    fd = os.open(data_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid: int | None = int(os.pread(fd, 32, 0).decode().strip() or "x")
        except ValueError:
            pid = None
        os.close(fd)
        raise StoreLocked(data_dir, pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def snapshot_lock(data_dir: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the snapshot lock; yields False (without holding it) when busy and not waiting."""
    fd = os.open(data_dir / SNAPSHOT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the flock


# -- reading -------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Damage(path, "file is missing") from None
    if not data.strip():
        raise Damage(path, "file is empty (0 bytes)" if not data else "file is blank")
    try:
        return json.loads(data)
    except ValueError as e:
        raise Damage(path, f"invalid JSON, the file is truncated or corrupted ({e})") from None


def read_manifest(data_dir: Path) -> Manifest | None:
    path = data_dir / MANIFEST
    if not path.exists():
        return None
    obj = _read_json(path)
    try:
        if obj["format"] != FORMAT:
            raise Damage(path, f"not a qunbot store manifest (format {obj['format']!r})")
        m = Manifest(
            schema=int(obj["schema"]),
            gen=int(obj["gen"]),
            lsn=int(obj["lsn"]),
            journal=str(obj["journal"]),
            files={str(k): str(v) for k, v in dict(obj["files"]).items()},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise Damage(path, f"wrong manifest structure ({e!r})") from None
    _check_schema(path, m.schema)
    for name in [m.journal, *m.files.values()]:
        if not STORE_FILE.match(name):
            raise Damage(path, f"manifest names an invalid file {name!r}")
    return m


def _check_schema(path: Path, schema: int) -> None:
    if schema > SCHEMA_VERSION:
        raise Damage(
            path,
            f"schema version {schema} was written by a newer qunbot "
            f"(this version reads up to {SCHEMA_VERSION})",
        )
    if schema < 1:
        raise Damage(path, f"invalid schema version {schema}")


def load_domain(path: Path, name: str, schema: int) -> tuple[int, dict[str, Any]]:
    """(lsn, table) of a snapshot file, validated."""
    obj = _read_json(path)
    try:
        meta = obj["_meta"]["1"]
        file_schema = int(meta["schema"])
        lsn = int(meta["lsn"])
        if meta["name"] != name:
            raise Damage(path, f"holds domain {meta['name']!r}, expected {name!r}")
        table = obj[name]
    except (KeyError, TypeError, ValueError) as e:
        raise Damage(path, f"wrong structure, not a qunbot snapshot ({e!r})") from None
    _check_schema(path, file_schema)
    if file_schema != schema:
        raise Damage(path, f"schema version {file_schema} differs from the manifest's {schema}")
    if not isinstance(table, dict) or not all(
        isinstance(v, dict) and k.isdigit() for k, v in table.items()
    ):
        raise Damage(path, "wrong structure: documents must be a {doc id: object} mapping")
    return lsn, table


def read_journal(path: Path) -> tuple[dict[str, Any], list[tuple[int, list[Any]]], int, int]:
    """(header, [(lsn, ops)], length of the valid prefix, total length)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Damage(path, "journal is missing") from None
    if not data:
        raise Damage(path, "journal is empty (0 bytes), its header is gone")
    lines = data.split(b"\n")
    # lines[-1] is what follows the last newline: b"" normally, else a partial record.
    header = decode_line(lines[0]) if len(lines) > 1 else None
    if not isinstance(header, dict) or header.get("journal") != 1:
        raise Damage(path, "journal header is missing or corrupted")
    records: list[tuple[int, list[Any]]] = []
    good = len(lines[0]) + 1
    last = int(header.get("base", 0))
    for i in range(1, len(lines)):
        line = lines[i]
        rec = decode_line(line) if i < len(lines) - 1 else None
        ok = (
            isinstance(rec, dict)
            and isinstance(rec.get("l"), int)
            and rec["l"] >= last
            and isinstance(rec.get("o"), list)
        )
        if not ok:
            if i == len(lines) - 1 and not line:
                break  # clean end
            # A bad record is a torn tail only if nothing valid follows it.
            if any(decode_line(rest) is not None for rest in lines[i + 1 : -1]):
                raise Damage(path, f"corrupted record at byte {good} followed by valid records")
            break
        assert isinstance(rec, dict)
        last = rec["l"]
        records.append((last, rec["o"]))
        good += len(line) + 1
    return header, records, good, len(data)


def domain_of(op: list[Any]) -> str:
    kind = op[0]
    if kind in ("p", "d"):
        return str(op[1])
    if kind in ("a", "af", "ap"):
        return "activity"
    if kind in ("s", "sr"):
        return "seen"
    raise ValueError(f"unknown op {kind!r}")


def apply_table_op(table: dict[str, dict[str, Any]], op: list[Any]) -> None:
    if op[0] == "p":
        if not isinstance(op[3], dict):
            raise ValueError("document is not an object")
        table[str(int(op[2]))] = op[3]
    else:
        for doc_id in op[2]:
            table.pop(str(int(doc_id)), None)


def is_store_file(name: str) -> bool:
    return name == MANIFEST or bool(STORE_FILE.match(name))


def load(data_dir: Path, *, repair: bool = True) -> Loaded:
    """Validate and load everything; `repair` truncates a torn journal tail (else ignored)."""
    m = read_manifest(data_dir)
    if m is None:
        strays = sorted(n for n in os.listdir(data_dir) if STORE_FILE.match(n))
        if strays:
            raise Damage(
                data_dir / MANIFEST, f"manifest is missing but data files exist ({strays[0]}, ...)"
            )
        if not repair:
            raise Damage(data_dir / MANIFEST, "no store here")
        m = init_store(data_dir)
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    activity, seen = ActivityState(), SeenState()
    lsns: dict[str, int] = {}
    for name, fname in m.files.items():
        path = data_dir / fname
        lsn, table = load_domain(path, name, m.schema)
        lsns[name] = lsn
        try:
            if name == "activity":
                activity = ActivityState.from_table(table)
            elif name == "seen":
                seen = SeenState.from_table(table)
            else:
                tables[name] = table
        except (KeyError, TypeError, ValueError) as e:
            raise Damage(path, f"wrong structure ({e!r})") from None
    jpath = data_dir / m.journal
    header, records, good, total = read_journal(jpath)
    if header.get("schema") != m.schema:
        raise Damage(jpath, f"journal schema {header.get('schema')} differs from the manifest's")
    lsn = max(m.lsn, max(lsns.values(), default=0))
    replayed: set[str] = set()
    for rec_lsn, ops in records:
        try:
            for op in ops:
                dom = domain_of(op)
                if rec_lsn <= lsns.get(dom, 0):
                    continue  # already in that domain's snapshot
                replayed.add(dom)
                if dom == "activity":
                    activity.apply(op)
                elif dom == "seen":
                    seen.apply(op)
                else:
                    apply_table_op(tables.setdefault(dom, {}), op)
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise Damage(jpath, f"unreadable record lsn {rec_lsn} ({e!r})") from None
        lsn = max(lsn, rec_lsn)
    if good < total and repair:
        # The process died inside a write; that record was never acknowledged.
        fd = os.open(jpath, os.O_WRONLY)
        try:
            os.ftruncate(fd, good)
            os.fsync(fd)
        finally:
            os.close(fd)
    return Loaded(m, tables, activity, seen, lsn, total - good, replayed)


# -- writing -------------------------------------------------------------------------------------
def journal_header(schema: int, base: int) -> bytes:
    return encode_line(json.dumps({"journal": 1, "schema": schema, "base": base}))


def init_store(data_dir: Path) -> Manifest:
    m = Manifest(SCHEMA_VERSION, 0, 0, "journal.000000.log")
    atomic_write(data_dir / m.journal, journal_header(m.schema, 0))
    atomic_write(data_dir / MANIFEST, m.to_json())
    return m


def snapshot_meta(schema: int, lsn: int, name: str) -> str:
    return json.dumps({"schema": schema, "lsn": lsn, "name": name})


Encoder = Callable[[str], list[bytes]]


def compact(
    data_dir: Path, m: Manifest, lsn: int, captures: dict[str, Encoder], schema: int
) -> Manifest | None:
    """Write the captured domains and a fresh journal as generation m.gen + 1 and commit them
    by replacing the manifest.  None when a backup holds the snapshot lock (try later)."""
    with snapshot_lock(data_dir, wait=False) as locked:
        if not locked:
            return None
        gen = m.gen + 1
        files = dict(m.files)
        for name, encode in captures.items():
            fname = f"{name}.{gen:06d}.json"
            fd = os.open(data_dir / fname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for chunk in encode(snapshot_meta(schema, lsn, name)):
                    write_all(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            files[name] = fname
        journal = f"journal.{gen:06d}.log"
        fd = os.open(data_dir / journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, journal_header(schema, lsn))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(data_dir)
        new = Manifest(schema, gen, lsn, journal, files)
        atomic_write(data_dir / MANIFEST, new.to_json())  # the commit point
        keep = {MANIFEST, journal, *files.values()}
        for name in os.listdir(data_dir):
            if STORE_FILE.match(name) and name not in keep:
                try:
                    os.unlink(data_dir / name)
                except OSError:  # a leftover is harmless: the manifest does not name it
                    pass
        return new


def table_encoder(items: list[tuple[int, str]], name: str) -> Encoder:
    name_json = json.dumps(name)

    def encode(meta: str) -> list[bytes]:
        out = [f'{{"_meta":{{"1":{meta}}},{name_json}:{{'.encode()]
        for start in range(0, len(items), 2000):  # small pieces: the loop thread gets the GIL
            part = items[start : start + 2000]
            sep = "," if start else ""
            out.append((sep + ",".join(f'"{i}":{enc}' for i, enc in part)).encode())
        out.append(b"}}")
        return out

    return encode

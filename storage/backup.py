"""Backups: a consistent copy of a data directory, even while a Store is running.

Protocol with a running Store: ``backup`` holds ``.snapshot.lock`` while it copies.  Snapshot
files are only created or deleted by compaction, which takes the same lock (and skips a
round when a backup holds it), so the manifest and every file it names stay put.  The journal
keeps growing meanwhile; the archive gets a prefix of it, whose possibly torn last record is
dropped on open like after a crash.  The copy is therefore the store as of one instant (minus
activity counts not yet flushed, at most ``flush_s`` old).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tarfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from storage import layout
from storage.errors import StoreDamaged, StoreError
from storage.fileio import fsync_dir

PREFIX = "qunbot-"
SUFFIX = ".tar.gz"


def _stamp(now: float | None, tz: str | None) -> str:
    ts = time.time() if now is None else now
    zone = ZoneInfo(tz) if tz else None
    return datetime.fromtimestamp(ts, zone).strftime("%Y%m%d-%H%M%S")


def backup(
    data_dir: Path,
    dest_dir: Path | None = None,
    *,
    label: str = "manual",
    now: float | None = None,
    tz: str | None = None,
) -> Path:
    """Archive the store in `data_dir` as ``qunbot-<YYYYmmdd-HHMMSS>-<label>.tar.gz``."""
    data_dir = Path(data_dir)
    dest = Path(dest_dir) if dest_dir is not None else data_dir / layout.BACKUP_DIR
    dest.mkdir(parents=True, exist_ok=True)
    base = f"{PREFIX}{_stamp(now, tz)}-{label}"
    final = dest / f"{base}{SUFFIX}"
    n = 1
    while final.exists():
        n += 1
        final = dest / f"{base}-{n}{SUFFIX}"
    tmp = dest / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    with layout.snapshot_lock(data_dir, wait=True):
        try:
            m = layout.read_manifest(data_dir)
        except layout.Damage as e:
            raise StoreDamaged(e.path, e.reason, newest_good_backup(data_dir)) from None
        if m is None:
            raise StoreError(f"{data_dir} holds no qunbot store (no {layout.MANIFEST})")
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for name in [layout.MANIFEST, *m.files.values(), m.journal]:
                tar.add(data_dir / name, arcname=name, recursive=False)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(dest)
    return final


def list_backups(data_dir: Path, label: str | None = None) -> list[Path]:
    """Backups in ``data_dir/backups``, newest first."""
    d = Path(data_dir) / layout.BACKUP_DIR
    if not d.is_dir():
        return []
    found = [
        p
        for p in d.iterdir()
        if p.name.startswith(PREFIX)
        and p.name.endswith(SUFFIX)
        and (label is None or f"-{label}" in p.name[len(PREFIX) + 15 :])
    ]
    return sorted(found, key=lambda p: p.name, reverse=True)


def check_archive(archive: Path) -> None:
    """Raise StoreError unless `archive` is a readable store backup (every byte checked)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            names = set()
            for member in tar:
                if (
                    not member.isfile()
                    or "/" in member.name
                    or not layout.is_store_file(member.name)
                ):
                    raise StoreError(f"{archive}: unexpected entry {member.name!r}")
                f = tar.extractfile(member)
                assert f is not None
                while f.read(1 << 20):
                    pass
                names.add(member.name)
    except (OSError, tarfile.TarError, EOFError) as e:
        raise StoreError(f"{archive}: unreadable archive ({e})") from None
    if layout.MANIFEST not in names:
        raise StoreError(f"{archive}: no {layout.MANIFEST} inside")


def newest_good_backup(data_dir: Path) -> Path | None:
    for p in list_backups(data_dir):
        try:
            check_archive(p)
        except StoreError:
            continue
        return p
    return None


def restore(data_dir: Path, archive: Path) -> Path:
    """Replace the store in `data_dir` with `archive`; refuses while a bot holds the lock.

    The archive is extracted and fully validated first; the current files are moved (not
    deleted) to ``data_dir/replaced-<stamp>/``, whose path is returned.  The manifest is
    moved in last: it is what makes the restored files a store.
    """
    data_dir = Path(data_dir)
    archive = Path(archive).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = layout.acquire_lock(data_dir)  # raises StoreLocked while a bot runs
    try:
        check_archive(archive)
        stamp = _stamp(None, None)
        staging = data_dir / f".restore-{stamp}-{os.getpid()}"
        staging.mkdir()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
            try:
                layout.load(staging, repair=True)
            except layout.Damage as e:
                raise StoreDamaged(e.path, e.reason, None) from None
            aside = data_dir / f"replaced-{stamp}"
            current = sorted(n for n in os.listdir(data_dir) if layout.is_store_file(n))
            if current:
                aside.mkdir(exist_ok=True)
                # Manifest first: an interrupted restore leaves "manifest missing", which the
                # store refuses to open (it never starts empty); re-running restore fixes it.
                for name in sorted(current, key=lambda n: n != layout.MANIFEST):
                    os.replace(data_dir / name, aside / name)
            restored = sorted(os.listdir(staging), key=lambda n: n == layout.MANIFEST)
            for name in restored:
                os.replace(staging / name, data_dir / name)
            fsync_dir(data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return aside
    finally:
        layout.release_lock(lock)

"""Low-level durable file primitives: atomic replace, directory fsync, journal line codec.

Journal line format: ``<crc32 of payload, 8 hex digits> <payload JSON>\\n``.  A line whose
checksum or JSON does not verify is either a torn tail (the process died inside a write:
dropped, it was never acknowledged) or damage (a bad line followed by good ones: refused).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename or create in `path` durable (the entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write(path: Path, chunks: list[bytes] | bytes) -> None:
    """Replace `path` with `chunks`: write a temp file, fsync, rename, fsync the directory.

    Readers (and a crash at any instant) see either the old file or the new one, never a mix.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
            write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def encode_line(payload: str) -> bytes:
    raw = payload.encode()
    return b"%08x " % zlib.crc32(raw) + raw + b"\n"


def decode_line(line: bytes) -> Any | None:
    """The payload of one journal line (without its newline), or None when it does not verify."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    raw = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(raw):
            return None
        return json.loads(raw)
    except ValueError:
        return None

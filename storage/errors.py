"""Errors raised by the store; each message is meant to be shown to an operator as is."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base class for storage errors."""


class StoreLocked(StoreError):
    """Another process (or another Store in this process) holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "an unknown pid"
        super().__init__(
            f"data directory {data_dir} is in use by another qunbot process ({who}); "
            "stop that process first (only one bot may use a data directory)"
        )


class StoreDamaged(StoreError):
    """A data file is unreadable; the store refuses to start rather than start empty."""

    def __init__(self, path: Path, reason: str, backup: Path | None) -> None:
        self.path = path
        self.reason = reason
        self.backup = backup
        hint = (
            f"newest good backup: {backup} (restore with `qunbot restore {backup}`)"
            if backup is not None
            else "no good backup was found"
        )
        super().__init__(f"damaged data file {path}: {reason}; nothing was overwritten; {hint}")


class StoreFailed(StoreError):
    """A journal write failed; memory may be ahead of disk, so further writes are refused."""

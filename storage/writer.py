"""The single writer: one thread that owns the journal file descriptor.

Every durable change of the process is a job on one FIFO queue, so the journal order is the
commit order.  Consecutive record jobs are written with one ``write`` and made durable with
one ``fdatasync`` (group commit), then all their futures are resolved in one loop callback.
Other jobs (compaction) run in queue order between record groups.  Blocking I/O therefore
never runs on the event loop; the loop only waits on futures.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.errors import StoreFailed
from storage.fileio import write_all

log = logging.getLogger(__name__)

# A record is bytes, or a function producing bytes run in the writer thread (large activity
# batches are encoded there so the loop never holds the GIL for long).
Record = bytes | Callable[[], bytes]


@dataclass
class _Job:
    record: Record | None = None
    call: Callable[[], Any] | None = None
    future: asyncio.Future[Any] | None = None
    extra: list[asyncio.Future[Any]] = field(default_factory=list)


_STOP = _Job()


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in results:
        if fut.done():  # the awaiting task was cancelled; the write happened anyway
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


class Writer:
    def __init__(self, journal: Path, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._path = journal
        self._fd = os.open(journal, os.O_WRONLY | os.O_APPEND)
        self.journal_size = os.fstat(self._fd).st_size
        self.failed: BaseException | None = None
        self.fsyncs = 0
        self._q: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="qunbot-storage-writer", daemon=True)
        self._thread.start()

    # -- loop side ---------------------------------------------------------------------------
    def append(self, record: Record) -> asyncio.Future[None]:
        """Queue `record`; the future completes once it is on disk (fdatasync returned)."""
        if self.failed is not None:
            raise StoreFailed(f"storage writes are disabled after an I/O error: {self.failed}")
        fut: asyncio.Future[None] = self._loop.create_future()
        self._q.put(_Job(record=record, future=fut))
        return fut

    def call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run `fn` in the writer thread after every job queued before it."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._q.put(_Job(call=fn, future=fut))
        return fut

    def stop(self) -> None:
        self._q.put(_STOP)
        self._thread.join()
        os.close(self._fd)

    # -- writer thread -------------------------------------------------------------------------
    def reopen(self, path: Path) -> None:
        """Switch to the journal of a newly committed generation (called from a writer job)."""
        new = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.close(self._fd)
        self._fd = new
        self._path = path
        self.journal_size = os.fstat(new).st_size

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs = [self._q.get()]
            while True:  # drain: everything queued now shares one fsync
                try:
                    jobs.append(self._q.get_nowait())
                except queue.Empty:
                    break
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            group: list[_Job] = []
            for job in jobs:
                if job is _STOP:
                    stop = True
                    break
                if job.record is not None:
                    group.append(job)
                    continue
                self._write_group(group, results)
                group = []
                try:
                    assert job.call is not None
                    value = job.call()
                    exc: BaseException | None = None
                except BaseException as e:  # reported to the awaiting task
                    value, exc = None, e
                if job.future is not None:
                    results.append((job.future, value, exc))
            self._write_group(group, results)
            if results:
                try:
                    self._loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # loop already closed (interpreter shutdown)
                    pass

    def _write_group(
        self,
        group: list[_Job],
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        if not group:
            return
        exc: BaseException | None = None
        if self.failed is not None:
            exc = StoreFailed(f"storage writes are disabled after an I/O error: {self.failed}")
        else:
            try:
                data = b"".join(
                    j.record if isinstance(j.record, bytes) else j.record()  # type: ignore[misc]
                    for j in group
                )
                write_all(self._fd, data)
                os.fdatasync(self._fd)
                self.fsyncs += 1
                self.journal_size += len(data)
            except BaseException as e:
                log.critical("journal write failed, storage is now read-only: %s", e)
                self.failed = e
                exc = StoreFailed(f"journal write failed: {e}")
        for j in group:
            if j.future is not None:
                results.append((j.future, None, exc))

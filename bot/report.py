"""Report assembly shared by chat (/stats ...), the command line and the web console.

`room_data` turns what the store keeps (member records, per-member active days,
per-day message counts, outages) into a `bot.analytics.RoomData`; `build` runs
one of the pure reports on it; `chart` renders the matching PNG. Nothing here
computes figures itself: the definitions live in bot/analytics.py.

Excluded from every figure: the bot's own id and `settings.bots` (other bots).
Managers are members like anyone else and are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from bot import analytics
from bot.analytics import Report, RoomData
from bot.clock import Clock
from bot.config import Settings
from storage import layout
from storage.days import DaySet, ds_days
from storage.store import Store

Kind = Literal["stats", "retention", "funnel", "invites"]
KINDS: tuple[Kind, ...] = ("stats", "retention", "funnel", "invites")

# Default period per report: days (stats, funnel, invites) or weeks (retention).
DEFAULTS: dict[Kind, int] = {"stats": 7, "retention": 8, "funnel": 30, "invites": 30}
MAX_DAYS = 366
MAX_WEEKS = 53


def excluded_ids(settings: Settings, self_id: str = "") -> frozenset[str]:
    ids = set(settings.bots)
    if self_id:
        ids.add(self_id)
    return frozenset(ids)


def room_data(
    store: Store, settings: Settings, room_id: str, *, self_id: str = "", room_name: str = ""
) -> RoomData:
    """Everything the reports need about `room_id`, copied out of the store's memory.

    The copies make the result safe to hand to a worker thread while the bot keeps writing.
    """
    return RoomData(
        room_id=room_id,
        members=store.members.list(room_id),
        active_days=LazyDays(store.activity.day_sets(room_id)),
        room_messages=store.activity.room_messages(room_id),
        outages=store.outages.list(),
        excluded_ids=excluded_ids(settings, self_id),
        tz=settings.timezone,
        room_name=room_name,
    )


class LazyDays(Mapping[str, Sequence[int]]):
    """member id -> active day ordinals, decoded from the store's compact sets on first use.

    `room_data` runs on the event loop and only copies the sets; the decoding happens
    where the report is built (a worker thread), so a big room never stalls chat."""

    def __init__(self, sets: Mapping[str, DaySet]) -> None:
        self._sets = sets
        self._decoded: dict[str, tuple[int, ...]] = {}

    def __getitem__(self, member_id: str) -> tuple[int, ...]:
        days = self._decoded.get(member_id)
        if days is None:
            days = self._decoded[member_id] = ds_days(self._sets[member_id])
        return days

    def __iter__(self) -> Iterator[str]:
        return iter(self._sets)

    def __len__(self) -> int:
        return len(self._sets)


def today(clock: Clock, settings: Settings) -> int:
    """Ordinal of the current local day in the configured timezone (reports end today)."""
    return analytics.local_day(clock.now(), settings.timezone)


def build(kind: Kind, data: RoomData, end_day: int, n: int | None = None) -> Report:
    """Report `kind` ending on `end_day`; `n` is days (weeks for retention), None = default."""
    size = DEFAULTS[kind] if n is None else n
    if kind == "stats":
        return analytics.stats_report(data, end_day, days=size)
    if kind == "retention":
        return analytics.retention_report(data, end_day, weeks=size)
    if kind == "funnel":
        return analytics.funnel_report(data, end_day, days=size)
    if kind == "invites":
        return analytics.invite_report(data, end_day, days=size)
    raise ValueError(f"unknown report {kind!r}; expected one of {', '.join(KINDS)}")


def has_chart(report: Report) -> bool:
    return not isinstance(report, analytics.InviteReport)


def chart(report: Report, path: str | Path | None = None) -> bytes:
    """PNG of a report (activity for stats, cohorts for retention, channels for funnel)."""
    from bot import charts  # matplotlib is slow to import: only when a chart is wanted

    if isinstance(report, analytics.StatsReport):
        return charts.activity_chart(report, path)
    if isinstance(report, analytics.RetentionReport):
        return charts.retention_chart(report, path)
    if isinstance(report, analytics.FunnelReport):
        return charts.funnel_chart(report, path)
    raise ValueError("the invite leaderboard has no chart")


def room_label(settings: Settings, room_id: str) -> str:
    """A room's name without a live connection: its configured topic, else the sandbox's."""
    room = settings.room(room_id)
    if room is not None and room.topic:
        return room.topic
    sandbox = settings.sandbox.rooms.get(room_id)
    return sandbox.topic if sandbox is not None else ""


@contextlib.asynccontextmanager
async def snapshot_store(settings: Settings) -> AsyncIterator[Store]:
    """A private, consistent copy of the store in `settings.data_dir`, open for reading.

    The Store takes an exclusive lock, so a running bot's data cannot be opened directly,
    and storage has no read-only open. The backup protocol (storage/backup.py) is safe
    while the bot runs: archive into a temporary directory, restore it there (which
    validates it), open that copy. The copy lacks at most `activity_flush_s` of counts.
    """
    from storage.backup import backup, restore

    data_dir = Path(settings.data_dir)
    if not (data_dir / layout.MANIFEST).exists():
        raise FileNotFoundError(f"no qunbot data in {data_dir} (has the bot run yet?)")
    with tempfile.TemporaryDirectory(prefix="qunbot-report-") as tmp:
        archive = await asyncio.to_thread(backup, data_dir, Path(tmp), label="report")
        copy = Path(tmp) / "store"
        await asyncio.to_thread(restore, copy, archive)
        store = await Store.open(copy, tz=settings.timezone, flush_s=3600)
        try:
            yield store
        finally:
            await store.close()

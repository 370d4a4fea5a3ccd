"""Record types shared by storage and its readers (analytics, handlers, console).

Days are `datetime.date.toordinal()` of the local calendar day in the configured
timezone; timestamps are epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemberRecord:
    room_id: str
    member_id: str
    name: str
    join_ts: float  # join event time, or when the bot first saw a member already present
    join_day: int  # ordinal of the local join day
    channel: str  # inviter id, "qrcode" or "unknown" (SPEC section 6)
    inviter_id: str | None
    first_seen: bool  # True: present before the bot arrived (join_day = first-seen day)
    left_ts: float | None = None  # None while the member is in the room
    left_day: int | None = None

    @property
    def present(self) -> bool:
        return self.left_ts is None


@dataclass(frozen=True)
class Outage:
    """A period the bot was disconnected; days it touches are incomplete in reports."""

    start_ts: float
    end_ts: float | None  # None: still offline (or the bot stopped without saying)

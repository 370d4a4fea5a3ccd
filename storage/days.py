"""Local calendar days and compact day sets.

A day set is ``(base, bits)``: bit i of the Python int ``bits`` set means day ``base + i``
(a ``date.toordinal()``) is in the set.  A member active on 200 days of a year costs about
60 bytes instead of 200 list entries, and adding a day is one shift and one OR.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

DaySet = tuple[int, int]


class DayCalc:
    """Epoch seconds -> local day ordinal, caching the current day's bounds (the hot path)."""

    def __init__(self, tz: str) -> None:
        self.tz = ZoneInfo(tz)
        self._lo = 1.0
        self._hi = 0.0
        self._day = 0

    def day(self, ts: float) -> int:
        if self._lo <= ts < self._hi:
            return self._day
        d = datetime.fromtimestamp(ts, self.tz).date()
        nd = d + timedelta(days=1)
        lo = datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()
        hi = datetime(nd.year, nd.month, nd.day, tzinfo=self.tz).timestamp()
        if lo <= ts < hi:  # only cache bounds that are consistent (DST gaps at midnight)
            self._lo, self._hi, self._day = lo, hi, d.toordinal()
        return d.toordinal()


def ds_add(ds: DaySet | None, day: int) -> DaySet | None:
    """`ds` with `day` added, or None when `day` was already in it."""
    if ds is None:
        return (day, 1)
    base, bits = ds
    if day >= base:
        bit = 1 << (day - base)
        return None if bits & bit else (base, bits | bit)
    return (day, (bits << (base - day)) | 1)


def ds_has(ds: DaySet | None, day: int) -> bool:
    if ds is None or day < ds[0]:
        return False
    return bool((ds[1] >> (day - ds[0])) & 1)


def ds_or(a: DaySet | None, b: DaySet | None) -> DaySet | None:
    if a is None or b is None:
        return a if b is None else b
    base = min(a[0], b[0])
    return (base, (a[1] << (a[0] - base)) | (b[1] << (b[0] - base)))


def ds_drop_before(ds: DaySet, day: int) -> DaySet | None:
    """`ds` without the days before `day` (None when nothing is left)."""
    base, bits = ds
    if base >= day:
        return ds
    bits >>= day - base
    if not bits:
        return None
    # Re-anchor at the first remaining day so the int stays small.
    low = (bits & -bits).bit_length() - 1
    return (day + low, bits >> low)


# Set-bit offsets of every byte value: decoding walks bytes, not bits (~20 us per year).
_BYTE_BITS = [tuple(i for i in range(8) if (v >> i) & 1) for v in range(256)]


def ds_days(ds: DaySet | None) -> tuple[int, ...]:
    """The sorted day ordinals of `ds`."""
    if ds is None:
        return ()
    base, bits = ds
    out: list[int] = []
    add = out.append
    for j, v in enumerate(bits.to_bytes((bits.bit_length() + 7) // 8, "little")):
        if v:
            o = base + 8 * j
            for k in _BYTE_BITS[v]:
                add(o + k)
    return tuple(out)


def ds_count(ds: DaySet | None) -> int:
    return 0 if ds is None else ds[1].bit_count()


def ds_encode(ds: DaySet) -> list[int | str]:
    return [ds[0], format(ds[1], "x")]


def ds_decode(value: object) -> DaySet:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or not isinstance(value[1], str)
    ):
        raise ValueError(f"bad day set {value!r}")
    bits = int(value[1], 16)
    if bits <= 0:
        raise ValueError(f"empty day set {value!r}")
    return (value[0], bits)


def ds_runs(ds: DaySet | None) -> tuple[int, int, int]:
    """(longest run, run ending at the last day, last day) of consecutive days."""
    if ds is None:
        return (0, 0, 0)
    base, bits = ds
    n = bits.bit_length()
    # Bit n-1 (the last day) is set; the highest zero below it ends the current run.
    current = n - (~bits & ((1 << n) - 1)).bit_length()
    longest, x = 0, bits
    while x:  # each step shortens every run by one: as many steps as the longest run
        x &= x >> 1
        longest += 1
    return (longest, current, base + n - 1)

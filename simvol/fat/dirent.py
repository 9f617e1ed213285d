"""32-byte directory entries and FAT timestamps (docs/fat32-notes.md §7, §8)."""

from __future__ import annotations

import functools
import struct
import time
from dataclasses import dataclass

ENTRY_SIZE = 32
DELETED = 0xE5
_ENTRY = struct.Struct("<11sBBBHHHHHHHI")

_MIN_TS = 315532800  # 1980-01-01 00:00:00 UTC
_NS = 1_000_000_000


# Both conversions are pure for a given time zone and run for every create and stat, so they are memoized
# (localtime/mktime cost a few microseconds each). The zone is read once per value: set TZ before use.
@functools.lru_cache(maxsize=4096)
def _local(seconds: int) -> time.struct_time:
    return time.localtime(seconds)


@functools.lru_cache(maxsize=65536)
def _decode_secs(date: int, tim: int) -> int:
    day, month, year = date & 0x1F, (date >> 5) & 0x0F, (date >> 9) + 1980
    sec2, minute, hour = tim & 0x1F, (tim >> 5) & 0x3F, tim >> 11
    if not (1 <= day <= 31 and 1 <= month <= 12) or sec2 > 29 or minute > 59 or hour > 23:
        year, month, day, hour, minute, sec2 = 1980, 1, 1, 0, 0, 0
    try:
        return int(time.mktime((year, month, day, hour, minute, sec2 * 2, 0, 0, -1)))
    except (OverflowError, ValueError):
        return _MIN_TS


def encode_time(ns: int) -> tuple[int, int, int]:
    """(date, time, tenths) for a POSIX time in ns: local time, 2 s mtime resolution, 10 ms tenths."""
    secs, rem = divmod(ns, _NS)
    try:
        t = _local(secs)
    except (OverflowError, OSError, ValueError):
        t = None
    if t is None or t.tm_year < 1980:
        return (1 << 5) | 1, 0, 0
    if t.tm_year > 2107:
        return (127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29, 0
    date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    tim = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    tenths = (t.tm_sec % 2) * 100 + rem // 10_000_000
    return date, tim, min(tenths, 199)


def decode_time(date: int, tim: int = 0, tenths: int = 0) -> int:
    """POSIX ns for a FAT date/time; invalid fields map to 1980-01-01 (never raise)."""
    return _decode_secs(date, tim) * _NS + min(tenths, 199) * 10_000_000


@dataclass(slots=True)
class RawEntry:
    name: bytes
    attr: int
    ntres: int
    ctime_tenth: int
    ctime: int
    cdate: int
    adate: int
    cluster: int
    wtime: int
    wdate: int
    size: int

    @classmethod
    def parse(cls, buf: bytes | memoryview, off: int = 0) -> RawEntry:
        (name, attr, ntres, ctenth, ctime, cdate, adate, hi, wtime, wdate, lo, size) = _ENTRY.unpack_from(buf, off)
        return cls(bytes(name), attr, ntres, ctenth, ctime, cdate, adate, (hi << 16) | lo, wtime, wdate, size)

    def pack(self) -> bytes:
        return pack_entry(
            self.name, self.attr, self.ntres, self.ctime_tenth, self.ctime, self.cdate, self.adate, self.cluster,
            self.wtime, self.wdate, self.size,
        )


def pack_entry(
    name: bytes, attr: int, ntres: int, ctime_tenth: int, ctime: int, cdate: int, adate: int, cluster: int,
    wtime: int, wdate: int, size: int,
) -> bytes:
    """The 32 bytes of a short entry, the cluster split into its high and low words (docs/fat32-notes.md §7).

    A function as well as ``RawEntry.pack``: the engine packs an entry at every create and flush, and building a
    RawEntry first cost a tenth of that."""
    return _ENTRY.pack(
        name, attr, ntres, ctime_tenth, ctime, cdate, adate, (cluster >> 16) & 0xFFFF, wtime, wdate, cluster & 0xFFFF,
        size,
    )

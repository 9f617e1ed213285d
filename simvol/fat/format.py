"""Formatting: write a fresh FAT32 file system, touching only what must be non-zero (docs/fat32-notes.md §13).

The reserved area and both FATs are first made zero (punched where the host can, so an old image keeps no
stale entries and a new one stays sparse); then the boot sector, FSInfo, their backups, the FAT heads and the
root cluster are written.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable

from .dirent import RawEntry, encode_time
from .layout import (
    ATTR_ARCHIVE,
    ATTR_VOLUME_ID,
    FAT1_CLEAN,
    FAT1_NO_HARD_ERROR,
    FAT_EOC,
    MEDIA,
    Geometry,
    build_boot_sector,
    build_fsinfo,
    normalize_label,
    plan_format,
)
from .sparse import punch_hole, zero_range
from .table import _pwrite_all


def volume_serial(now: float | None = None) -> int:
    """A serial number derived from the date and time, as DOS and Windows do."""
    t = time.localtime(now)
    hundredths = int(((now if now is not None else time.time()) % 1) * 100)
    lo = ((t.tm_mon << 8) | t.tm_mday) + ((t.tm_sec << 8) | hundredths)
    hi = ((t.tm_hour << 8) | t.tm_min) + t.tm_year
    return ((hi & 0xFFFF) << 16) | (lo & 0xFFFF)


def format_volume(
    fd: int,
    region_size: int,
    *,
    cluster_size: int = 0,
    label: str | None = None,
    serial: int | None = None,
    windows_limits: bool = False,
    quick: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Geometry:
    """Format ``[0, region_size)`` of ``fd`` as FAT32 and return the geometry.

    Raises :class:`~simvol.errors.FormatError` (with ``.reason``) before writing anything if the size,
    cluster size or label cannot be used. ``quick=False`` also returns the whole data region to the host.
    """
    geo = plan_format(region_size, cluster_size, windows_limits=windows_limits)
    raw_label = normalize_label(label)
    if serial is None:
        serial = volume_serial()
    bps = geo.bytes_per_sector
    meta_end = geo.data_offset
    steps = 3 if quick else 4
    if progress:
        progress(0, steps)
    # 1. Old metadata goes: reserved sectors, both FATs and the root cluster read as zeros afterwards.
    zero_range(fd, 0, meta_end)
    root_off = geo.cluster_offset(geo.root_cluster)
    zero_range(fd, root_off, geo.cluster_size)
    if progress:
        progress(1, steps)
    if not quick:
        start = root_off + geo.cluster_size
        end = geo.cluster_offset(geo.max_cluster + 1)
        a, b = -(-start // 4096) * 4096, end // 4096 * 4096
        if b > a and not punch_hole(fd, a, b - a):
            zero_range(fd, start, end - start)
        if progress:
            progress(2, steps)
    # 2. FAT heads in every copy: media entry, clean + no-error flags, root directory end of chain.
    head = struct.pack("<III", 0x0FFFFF00 | MEDIA, FAT_EOC & ~0x0C000000 | FAT1_CLEAN | FAT1_NO_HARD_ERROR, FAT_EOC)
    for copy in range(geo.num_fats):
        _pwrite_all(fd, head, geo.fat_offset(copy))
    # 3. Root directory: the label entry, if any.
    if raw_label is not None:
        date, tim, _ = encode_time(time.time_ns())
        entry = RawEntry(raw_label, ATTR_VOLUME_ID | ATTR_ARCHIVE, 0, 0, 0, 0, 0, 0, tim, date, 0).pack()
        _pwrite_all(fd, entry, root_off)
    # 4. Boot sector, FSInfo and their backups last: until they exist the region is not a file system.
    boot = build_boot_sector(geo, serial, raw_label)
    fsinfo = build_fsinfo(geo.cluster_count - 1, 3)
    for base in (0, geo.backup_boot_sector):
        _pwrite_all(fd, boot, base * bps)
        _pwrite_all(fd, fsinfo, (base + geo.fsinfo_sector) * bps)
    os.fsync(fd)
    if progress:
        progress(steps, steps)
    return geo

"""The file system inside an image, as the service needs it: format rules, format, check, label, dirty marker.

The service layer never touches a file-system engine; it asks the image's file-system driver, found by name with
:func:`driver` or by what an image holds with :func:`of_image`. FAT32 is simvol's own engine (``simvol.fat``);
NTFS is ntfs-3g's tools (``ntfs.py``). Both drivers answer the same methods (:class:`FileSystem`).

Every function takes an image path and opens it through :class:`Image` (locked), except where it says that it
reads an image a live mount holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import FormatError, SimvolError
from ..fat import MAX_FILE_SIZE, FatFileSystem, check, format_volume, is_dirty
from ..fat.layout import allowed_cluster_sizes, default_cluster_size, normalize_label, plan_format
from ..fat.names import name_key, name_problem
from .container import Image
from .ntfs import NTFS, Ntfs, is_ntfs

Progress = Callable[[int, int], None]

# Problems a mounted FAT volume carries by design: the dirty markers, and an FSInfo and backup boot sector that are
# rewritten only at a clean dismount.
_LIVE_EXPECTED = frozenset({"dirty", "fsinfo", "backup_boot"})


class Fat32:
    """FAT32 through simvol's own engine."""

    name = "FAT32"
    max_file_size = MAX_FILE_SIZE

    # Why Windows would refuse a name (or None); names with equal keys are one name (case-insensitive).
    name_problem = staticmethod(name_problem)
    name_key = staticmethod(name_key)

    def plan(self, size: int, unit: int = 0, label: str | None = None, *, windows_limits: bool) -> None:
        """Refuse what cannot be formatted, in one order: the label, the size, then the allocation unit.

        Raises :class:`FormatError` whose ``reason`` is bad_label, invalid, too_small, too_big,
        cluster_too_small or cluster_too_big. ``windows_limits``: Windows Format's range (≤ 32 GiB, its
        cluster-count limits); without it anything FAT32 can describe (as ``mkfs.fat`` does).
        """
        normalize_label(label)
        plan_format(size, unit, windows_limits=windows_limits)

    def format_support(self, size: int) -> tuple[int, tuple[int, ...]]:
        """(default unit, allowed units) Windows offers for ``size`` bytes; (0, ()) when it would not format it."""
        try:
            plan_format(size, 0, windows_limits=True)
            return default_cluster_size(size), tuple(allowed_cluster_sizes(size))
        except FormatError:
            return 0, ()

    def windows_formattable(self, size: int) -> bool:
        try:
            plan_format(size, 0, windows_limits=True)
        except FormatError:
            return False
        return True

    def format(
        self, image: str, *, unit: int = 0, label: str | None = None, windows_limits: bool, quick: bool = True
    ) -> None:
        """Write a new, empty file system; raises ImageError, OSError or FormatError."""
        with Image.open(image) as im:
            format_volume(im.fd, im.fs_size, cluster_size=unit, label=label, windows_limits=windows_limits, quick=quick)

    def check(self, image: str, *, repair: bool = False, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Problems found (and fixed with ``repair``) on an image nothing has mounted; raises ImageError."""
        with Image.open(image, writable=repair) as im:
            return [p.as_dict() for p in check(im.fd, im.fs_size, repair=repair, progress=progress)]

    def check_plain(self, image: str) -> list[dict[str, Any]]:
        """Problems of a plain file-system image (no simvol trailer: the whole file is the region), read-only.
        Raises UnsupportedFileSystemError when the file holds no FAT32 file system."""
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            return [p.as_dict() for p in check(fd, os.fstat(fd).st_size)]
        finally:
            os.close(fd)

    def check_live(self, image: str, fs_size: int, *, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Problems on an image a mount holds (flushed first by the caller), without what a live volume carries."""
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
        try:
            problems = check(fd, fs_size, progress=progress)
        finally:
            os.close(fd)
        return [p.as_dict() for p in problems if p.kind not in _LIVE_EXPECTED]

    def label(self, image: str) -> str:
        """The label of an image nothing has mounted; "" when it cannot be read."""
        try:
            with Image.open(image, writable=False) as im:
                return FatFileSystem(im.fd, im.fs_size, writable=False).label
        except (SimvolError, OSError):
            return ""

    def dirty(self, image: str, fs_size: int) -> bool:
        """The file system's dirty marker is set (read without the lock: it is a single read of two sectors)."""
        try:
            fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            return is_dirty(fd, fs_size)
        except (SimvolError, OSError):
            return False
        finally:
            os.close(fd)


class FileSystem(Protocol):
    """What a file-system driver answers (Fat32 and Ntfs)."""

    name: str
    max_file_size: int

    def name_problem(self, name: str) -> str | None: ...
    def name_key(self, name: str) -> str: ...
    def plan(self, size: int, unit: int = 0, label: str | None = None, *, windows_limits: bool) -> None: ...
    def format_support(self, size: int) -> tuple[int, tuple[int, ...]]: ...
    def windows_formattable(self, size: int) -> bool: ...
    def format(self, image: str, *, unit: int = 0, label: str | None = None, windows_limits: bool,
               quick: bool = True) -> None: ...
    def check(self, image: str, *, repair: bool = False, progress: Progress | None = None) -> list[dict[str, Any]]: ...
    def check_plain(self, image: str) -> list[dict[str, Any]]: ...
    def check_live(self, image: str, fs_size: int, *, progress: Progress | None = None) -> list[dict[str, Any]]: ...
    def label(self, image: str) -> str: ...
    def dirty(self, image: str, fs_size: int) -> bool: ...


FAT32 = Fat32()
_DRIVERS: dict[str, FileSystem] = {FAT32.name: FAT32, NTFS.name: NTFS}


def driver(name: str) -> FileSystem | None:
    """The driver that formats and checks ``name`` (case-insensitive), or None if simvol has none."""
    return _DRIVERS.get(name.upper())


def detect(boot: bytes) -> FileSystem:
    """The driver for a region whose first sector is ``boot``: NTFS by its boot sector, else FAT32 (whose own
    checks say what is wrong with anything else)."""
    return NTFS if is_ntfs(boot) else FAT32


def of_image(image: str) -> FileSystem:
    """The driver for the file system an image holds (read without the lock: one sector). FAT32 when it cannot
    be read: the FAT32 checks then report what is wrong."""
    try:
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return FAT32
    try:
        return detect(os.pread(fd, 512, 0))
    except OSError:
        return FAT32
    finally:
        os.close(fd)


def formattable() -> tuple[str, ...]:
    return tuple(_DRIVERS)


__all__ = ["FAT32", "NTFS", "Fat32", "FileSystem", "Ntfs", "detect", "driver", "formattable", "of_image"]

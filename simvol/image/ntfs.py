"""NTFS inside a simvol image, through ntfs-3g's own tools: format rules, format, check, label (issue #13).

simvol does not write NTFS itself: ``mkntfs`` formats, ``ntfsfix`` checks, ``ntfslabel`` reads the label, and
``lowntfs-3g`` will serve the volume. The file system fills the image's region ``[0, fs_size)`` and simvol's
trailer follows it, as for FAT32. ``mkntfs`` is told the region's sector count, so it never touches the trailer.
``ntfsfix`` looks for NTFS's alternate boot sector at the end of the *file*, where the trailer is, so it is given a
view of the region alone (a sparse copy truncated to the volume: only allocated blocks are copied).

Not registered as a driver yet: the daemon cannot serve NTFS until the mechanism of docs/architecture.md ("NTFS
volumes: the mechanism") is built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

from ..errors import FormatError, ImageError, UnsupportedFileSystemError
from .container import Image

__all__ = ["NTFS", "Ntfs", "ntfs_tool"]

#: The smallest volume mkntfs makes (measured: 1 MiB is refused, 2 MiB works).
MIN_SIZE = 2 << 20
#: The largest NTFS volume Windows formats with 64 KiB clusters (2^32 clusters).
MAX_SIZE = 256 << 40
UNITS = tuple(512 << i for i in range(8))  # 512 B … 64 KiB
MAX_LABEL = 32  # characters (Windows: NTFS labels hold up to 32)
_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def ntfs_tool(name: str) -> str:
    """The path of an ntfs-3g tool; UnsupportedFileSystemError when Debian's ntfs-3g package is not installed."""
    path = shutil.which(name, path=_SBIN)
    if path is None:
        raise UnsupportedFileSystemError(f"{name} is missing: NTFS volumes need ntfs-3g (apt-get install ntfs-3g)")
    return path


def default_cluster_size(size: int) -> int:
    """Windows' default NTFS allocation unit for a volume of ``size`` bytes (KB140365)."""
    for limit, unit in ((16 << 40, 4096), (32 << 40, 8192), (64 << 40, 16384), (128 << 40, 32768)):
        if size <= limit:
            return unit
    return 65536


def _allowed(size: int) -> tuple[int, ...]:
    """Units that keep the cluster count within NTFS's 2^32 − 1 (and a unit no larger than the volume)."""
    return tuple(u for u in UNITS if size // u < 2**32 and u <= size)


class Ntfs:
    """NTFS through ntfs-3g's tools."""

    name = "NTFS"
    max_file_size = (16 << 40) - (64 << 10)  # ntfs-3g's limit

    def plan(self, size: int, unit: int = 0, label: str | None = None, *, windows_limits: bool) -> None:
        """Refuse what cannot be formatted, in FAT32's order: the label, the size, then the allocation unit."""
        if label is not None and (len(label) > MAX_LABEL or any(ord(c) < 32 for c in label)):
            raise FormatError(f"an NTFS label holds at most {MAX_LABEL} characters and no control characters",
                              "bad_label")
        if size < MIN_SIZE:
            raise FormatError(f"{size} bytes is too small for NTFS (at least {MIN_SIZE})", "too_small")
        if windows_limits and size > MAX_SIZE:
            raise FormatError(f"{size} bytes is too large for NTFS (at most {MAX_SIZE})", "too_big")
        if unit:
            allowed = _allowed(size)
            if unit not in allowed:
                big = allowed and unit > allowed[-1]
                raise FormatError(f"allocation unit {unit} is not allowed for {size} bytes (allowed: "
                                  f"{', '.join(map(str, allowed))})", "cluster_too_big" if big else "cluster_too_small")

    def format_support(self, size: int) -> tuple[int, tuple[int, ...]]:
        """(default unit, allowed units) Windows offers for ``size`` bytes; (0, ()) when it would not format it."""
        if not self.windows_formattable(size):
            return 0, ()
        return default_cluster_size(size), _allowed(size)

    def windows_formattable(self, size: int) -> bool:
        return MIN_SIZE <= size <= MAX_SIZE

    def format(self, image: str, *, unit: int = 0, label: str | None = None, windows_limits: bool = True,
               quick: bool = True) -> None:
        """Write a new, empty NTFS over the image's region (mkntfs); raises FormatError, ImageError or OSError."""
        with Image.open(image) as im:  # locked: nothing else has the image open for writing meanwhile
            size = im.fs_size
            self.plan(size, unit, label, windows_limits=windows_limits)
            argv = [ntfs_tool("mkntfs"), "-F", "-q", "-s", "512", "-c", str(unit or default_cluster_size(size))]
            if quick:
                argv.append("-Q")
            if label:
                argv += ["-L", label]
            argv += [image, str(size // 512)]
            done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
            if done.returncode != 0:
                raise FormatError(f"mkntfs failed: {(done.stderr or done.stdout).strip()[-300:]}", "invalid")
            im.fsync()

    def check(self, image: str, *, repair: bool = False,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Problems ``ntfsfix -n`` reports on the image's region; raises ImageError. (Repair is not offered yet.)"""
        if repair:
            raise ImageError("repairing NTFS is not offered yet: check only", image)
        with Image.open(image, writable=False) as im, tempfile.TemporaryDirectory(prefix="simvol-ntfs-") as tmp:
            region = os.path.join(tmp, "region.img")
            subprocess.run(["cp", "--sparse=always", image, region], check=True, timeout=600)
            os.truncate(region, im.fs_size)
            done = subprocess.run([ntfs_tool("ntfsfix"), "-n", region], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=600)
        text = (done.stdout + done.stderr).strip()
        if done.returncode == 0 and "processed successfully" in text:
            return []
        bad = [ln.strip() for ln in text.splitlines() if "BAD" in ln or "rror" in ln or "dirty" in ln.lower()]
        return [{"kind": "ntfsfix", "path": "/", "detail": line, "repaired": False} for line in bad or [text[-300:]]]

    def label(self, image: str) -> str:
        """The volume label ("" when it cannot be read)."""
        try:
            done = subprocess.run([ntfs_tool("ntfslabel"), "--no-action", image], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=60)
        except (OSError, UnsupportedFileSystemError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""


NTFS = Ntfs()

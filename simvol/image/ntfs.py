"""NTFS inside a simvol image, through ntfs-3g's own tools: format rules, format, check, label.

simvol does not write NTFS itself: ``mkntfs`` formats, ``ntfsfix`` checks and repairs, and ``ntfs-3g`` serves the
volume (``simvol/mount/ntfs3g.py``); the label is read from $Volume directly (:func:`read_label`). The file system
fills the image's region ``[0, fs_size)`` and simvol's trailer follows it, as for FAT32. ``mkntfs`` is told the
region's sector count, so it never touches the trailer. ``ntfsfix`` looks for NTFS's alternate boot sector at the
end of the *file*, where the trailer is, so it is given a view of the region alone (a sparse copy truncated to the
volume: only allocated blocks are copied).

ntfs-3g never marks a volume it has mounted as in use, so a crashed server leaves nothing on the image that says
so. simvol keeps its own marker in the trailer (the ``ntfs_in_use`` key, images/README.md): set while a daemon has
the volume open, cleared when it closed it cleanly. An image found with the marker set is repaired before the next
mount (``ntfsfix`` on the region, then only the changed blocks written back) — the NTFS counterpart of FAT32's
dirty bits.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import FormatError, ImageError, UnsupportedFileSystemError
from ..fat.names import name_key, name_problem  # the Win32 name rules: FAT32's long names and NTFS share them
from .container import Image
from .metadata import ImageMetadata

__all__ = ["NTFS", "Ntfs", "in_use", "is_ntfs", "native", "ntfs_tool", "read_label", "repair_region", "set_in_use",
           "set_native", "is_native"]

#: The trailer key of simvol's in-use marker (see the module's docstring).
IN_USE_KEY = "ntfs_in_use"
#: The trailer key that asks for ntfs-3g's own (Linux) semantics instead of Windows' (images/README.md).
SEMANTICS_KEY = "ntfs_semantics"
NATIVE = "native"
_OEM_ID = b"NTFS    "  # bytes 3..11 of an NTFS boot sector
_CHUNK = 1 << 20


def is_ntfs(boot: bytes) -> bool:
    """``boot`` (the region's first sector) is an NTFS boot sector."""
    return boot[3:11] == _OEM_ID


def read_label(fd: int) -> str:
    """The volume label, read from $Volume's $VOLUME_NAME (MFT record 3) of the region on ``fd``; "" if there is
    none or the structures do not parse. A few reads, no process: cheap enough for every mount."""
    try:
        boot = os.pread(fd, 512, 0)
        if not is_ntfs(boot):
            return ""
        sector = int.from_bytes(boot[0x0B:0x0D], "little")
        spc = boot[0x0D]
        cluster = sector * (spc if spc <= 0x80 else 1 << (256 - spc))
        per_record = int.from_bytes(boot[0x40:0x41], "little", signed=True)
        rec_size = per_record * cluster if per_record > 0 else 1 << -per_record
        mft = int.from_bytes(boot[0x30:0x38], "little") * cluster
        rec = bytearray(os.pread(fd, rec_size, mft + 3 * rec_size))
        if rec[:4] != b"FILE":
            return ""
        usa_ofs = int.from_bytes(rec[4:6], "little")
        usa_count = int.from_bytes(rec[6:8], "little")
        for i in range(1, usa_count):  # the update sequence array: the real last two bytes of each 512-byte stride
            end = i * 512
            if end > len(rec):
                break
            rec[end - 2:end] = rec[usa_ofs + 2 * i:usa_ofs + 2 * i + 2]
        off = int.from_bytes(rec[0x14:0x16], "little")
        while off + 8 <= len(rec):
            kind = int.from_bytes(rec[off:off + 4], "little")
            length = int.from_bytes(rec[off + 4:off + 8], "little")
            if kind == 0xFFFFFFFF or length == 0:
                return ""
            if kind == 0x60 and rec[off + 8] == 0:  # $VOLUME_NAME, resident
                size = int.from_bytes(rec[off + 0x10:off + 0x14], "little")
                start = off + int.from_bytes(rec[off + 0x14:off + 0x16], "little")
                return bytes(rec[start:start + size]).decode("utf-16-le", "replace")
            off += length
    except (OSError, ValueError, IndexError):
        return ""
    return ""


def native(im: Image) -> bool:
    """The volume is served with ntfs-3g's own semantics at its own speed (``create --ntfs-native``)."""
    return is_native(im.metadata)


def is_native(meta: ImageMetadata) -> bool:
    """``meta`` (an image's trailer) asks for ntfs-3g's own semantics."""
    return meta.extra.get(SEMANTICS_KEY) == NATIVE


def set_native(image: str, value: bool) -> None:
    """Choose ntfs-3g's own semantics (``value``) or Windows' for the volume in ``image`` (not mounted)."""
    with Image.open(image) as im:
        meta = im.metadata
        extra = {k: v for k, v in meta.extra.items() if k != SEMANTICS_KEY}
        if value:
            extra[SEMANTICS_KEY] = NATIVE
        if extra != meta.extra:
            im.write_metadata(dataclasses.replace(meta, extra=extra))


def in_use(im: Image) -> bool:
    """The trailer says a daemon had the volume open and never closed it cleanly."""
    return bool(im.metadata.extra.get(IN_USE_KEY))


def set_in_use(im: Image, value: bool) -> None:
    """Set or clear the in-use marker (one durable trailer write, only when it changes)."""
    meta = im.metadata
    if bool(meta.extra.get(IN_USE_KEY)) == value:
        return
    extra = {k: v for k, v in meta.extra.items() if k != IN_USE_KEY}
    if value:
        extra[IN_USE_KEY] = True
    im.write_metadata(dataclasses.replace(meta, extra=extra))


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the allocated parts of a sparse file."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return  # ENXIO: only a hole is left
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end


def _region_copy(image: str, fs_size: int, directory: str) -> str:
    """A sparse copy of the file-system region alone, the first ``fs_size`` bytes of ``image`` (ntfsfix looks for
    the alternate boot sector at the end of the file it is given)."""
    region = os.path.join(directory, "region.img")
    subprocess.run(["cp", "--sparse=always", image, region], check=True, timeout=600,
                   stdin=subprocess.DEVNULL, capture_output=True)
    os.truncate(region, fs_size)
    return region


def _ntfsfix(region: str, *, no_action: bool) -> tuple[bool, str]:
    done = subprocess.run([ntfs_tool("ntfsfix"), *(["-n"] if no_action else []), region], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)
    text = (done.stdout + done.stderr).strip()
    return done.returncode == 0 and "processed successfully" in text, text


def _problems(text: str) -> list[dict[str, Any]]:
    bad = [ln.strip() for ln in text.splitlines() if "BAD" in ln or "rror" in ln or "dirty" in ln.lower()]
    return [{"kind": "ntfsfix", "path": "/", "detail": line, "repaired": False} for line in bad or [text[-300:]]]


def repair_region(im: Image) -> list[dict[str, Any]]:
    """Repair the NTFS of an image open for writing (locked by the caller) with ``ntfsfix``, and clear the in-use
    marker. ``ntfsfix`` works on a sparse copy of the region; only the blocks it changed are written back, so
    the trailer is never touched and an interruption leaves either the old blocks or the new ones, each whole
    block an NTFS tool wrote. Returns what was found (``repaired`` tells whether it was fixed)."""
    left = [{"kind": "in_use", "path": "/", "detail": "the volume was not closed cleanly (a crash)",
             "repaired": True}] if in_use(im) else []
    with tempfile.TemporaryDirectory(prefix="simvol-ntfs-") as tmp:
        region = _region_copy(im.path, im.fs_size, tmp)
        clean, text = _ntfsfix(region, no_action=True)
        if clean:
            set_in_use(im, False)
            return left
        found = _problems(text)
        fixed, after = _ntfsfix(region, no_action=False)
        rfd = os.open(region, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for start, length in _data_extents(rfd, im.fs_size):
                for off in range(start, start + length, _CHUNK):
                    n = min(_CHUNK, start + length - off)
                    new = os.pread(rfd, n, off)
                    if os.pread(im.fd, n, off) != new:
                        os.pwrite(im.fd, new, off)
        finally:
            os.close(rfd)
        im.fsync()
    if fixed:
        set_in_use(im, False)
    return left + ([{**p, "repaired": fixed} for p in found] or ([] if fixed else _problems(after)))

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

    @staticmethod
    def can_compress(unit: int) -> bool:
        """NTFS compresses only with clusters of at most 4 KiB (Windows and ntfs-3g alike)."""
        return 0 < unit <= 4096

    def format(self, image: str, *, unit: int = 0, label: str | None = None, windows_limits: bool = True,
               quick: bool = True, compress: bool = False) -> None:
        """Write a new, empty NTFS over the image's region (mkntfs); raises FormatError, ImageError or OSError."""
        with Image.open(image) as im:  # locked: nothing else has the image open for writing meanwhile
            size = im.fs_size
            self.plan(size, unit, label, windows_limits=windows_limits)
            argv = [ntfs_tool("mkntfs"), "-F", "-q", "-s", "512", "-c", str(unit or default_cluster_size(size))]
            if quick:
                argv.append("-Q")
            if label:
                argv += ["-L", label]
            if compress:
                argv.append("-C")  # the root directory compressed: new files and folders inherit it
            argv += [image, str(size // 512)]
            done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
            if done.returncode != 0:
                raise FormatError(f"mkntfs failed: {(done.stderr or done.stdout).strip()[-300:]}", "invalid")
            im.fsync()

    def check(self, image: str, *, repair: bool = False,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Problems ``ntfsfix -n`` reports on the image's region (and, with ``repair``, fixed by ``ntfsfix``, which
        corrects what it can: the MFT mirror, the journal, the boot sectors; a volume it cannot fix stays as it
        was). A volume left in use by a crash is reported too. Raises ImageError."""
        with Image.open(image, writable=repair) as im:
            if repair:
                return repair_region(im)
            found = [{"kind": "in_use", "path": "/", "detail": "the volume was not closed cleanly (a crash)",
                      "repaired": False}] if in_use(im) else []
            with tempfile.TemporaryDirectory(prefix="simvol-ntfs-") as tmp:
                clean, text = _ntfsfix(_region_copy(im.path, im.fs_size, tmp), no_action=True)
        return found if clean else found + _problems(text)

    def check_live(self, image: str, fs_size: int, *,
                   progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Problems on an image a mount holds: ``ntfsfix -n`` on a copy of the region taken now (ntfs-3g writes
        every change through to the image at once, so the copy is what a crash now would leave)."""
        with tempfile.TemporaryDirectory(prefix="simvol-ntfs-") as tmp:
            clean, text = _ntfsfix(_region_copy(image, fs_size, tmp), no_action=True)
        return [] if clean else _problems(text)

    def check_plain(self, image: str) -> list[dict[str, Any]]:
        """Problems of a plain NTFS image (no trailer: the whole file is the volume), read-only. Raises
        UnsupportedFileSystemError when the file holds no NTFS."""
        with open(image, "rb") as f:
            if not is_ntfs(f.read(512)):
                raise UnsupportedFileSystemError(f"{image} holds no NTFS file system")
        clean, text = _ntfsfix(image, no_action=True)
        return [] if clean else _problems(text)

    def dirty(self, image: str, fs_size: int) -> bool:
        """The volume was left in use by a crash (simvol's marker; read without the lock)."""
        try:
            with Image.open(image, writable=False, lock=False) as im:
                return in_use(im)
        except (ImageError, OSError):
            return False

    # The Win32 namespace's rules and case folding, as FAT32's long names (simvol's session applies them).
    name_problem = staticmethod(name_problem)
    name_key = staticmethod(name_key)

    def label(self, image: str) -> str:
        """The volume label ("" when it cannot be read)."""
        try:
            fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return ""
        try:
            return read_label(fd)
        finally:
            os.close(fd)


NTFS = Ntfs()

"""The kernel's mount table and the FUSE unmount tools (docs/fuse-notes.md §4, §5).

Never test a possibly stale FUSE mount with ``os.path.ismount``/``stat``: on a dead daemon they fail or lie,
on a hung one they block. Everything here reads ``/proc/self/mountinfo`` instead.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

FSTYPE = "fuse.simvol"
FSNAME_PREFIX = "simvol:"
ARMED_SUFFIX = ":armed"  # the fsname of a session mounted armed: simvol:GUID:armed
# ntfs-3g serving an NTFS volume at its mount point: the kernel lists it as plain "fuse" with the image as source
# (ntfs-3g refuses fsname=), so simvol knows its own by the mount point, ROOT/volumes/{GUID}.
_NTFS_FSTYPES = frozenset({"fuse", "fuseblk"})
_VOLUME_DIR = re.compile(r"/volumes/\{([0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12})\}$")


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_id: int
    major: int
    minor: int
    mountpoint: str
    fstype: str
    source: str
    options: str

    @property
    def is_simvol(self) -> bool:
        """simvol's own session, or ntfs-3g serving a simvol NTFS volume at its mount point."""
        return self.fstype == FSTYPE or self.is_ntfs3g

    @property
    def is_ntfs3g(self) -> bool:
        return self.fstype in _NTFS_FSTYPES and _VOLUME_DIR.search(self.mountpoint) is not None

    @property
    def volume_guid(self) -> str | None:
        if self.is_ntfs3g:
            m = _VOLUME_DIR.search(self.mountpoint)
            return m.group(1).lower() if m else None
        if not self.source.startswith(FSNAME_PREFIX):
            return None
        return self.source[len(FSNAME_PREFIX) :].removesuffix(ARMED_SUFFIX)

    @property
    def mounted_armed(self) -> bool:
        """The session was mounted armed (a temporarily dismounted volume); it may have activated since."""
        return self.source.endswith(ARMED_SUFFIX)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 0 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    entries = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            parts = line.split()
            try:
                sep = parts.index("-")
            except ValueError:
                continue
            major, minor = parts[2].split(":")
            entries.append(
                MountEntry(
                    mount_id=int(parts[0]),
                    major=int(major),
                    minor=int(minor),
                    mountpoint=_unescape(parts[4]),
                    fstype=parts[sep + 1],
                    source=_unescape(parts[sep + 2]) if len(parts) > sep + 2 else "",
                    options=parts[5],
                )
            )
    return entries


def find_mount(mountpoint: str) -> MountEntry | None:
    mp = os.path.abspath(mountpoint)
    found = None
    for e in read_mounts():
        if e.mountpoint == mp:
            found = e  # the last one is the top of a stack
    return found


def simvol_mounts(under: str | None = None) -> list[MountEntry]:
    """simvol's FUSE mounts, optionally only those below ``under`` (a root's volumes/ directory)."""
    prefix = os.path.abspath(under) + os.sep if under else None
    return [e for e in read_mounts() if e.is_simvol and (prefix is None or e.mountpoint.startswith(prefix))]


def wait_for_mount(mountpoint: str, timeout: float, *, present: bool = True) -> bool:
    """Poll mountinfo until the mount point is (or is no longer) a simvol mount."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        e = find_mount(mountpoint)
        if (e is not None and e.is_simvol) == present:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 1.5, 0.005)  # mountinfo is cheap to read; a long nap would add to mount latency


def fusermount() -> str:
    path = shutil.which("fusermount3")
    if path is None:
        raise FileNotFoundError("fusermount3 not found: install the fuse3 package")
    return path


def unmount(mountpoint: str, *, lazy: bool = False, timeout: float = 10.0) -> tuple[bool, str]:
    """Run ``fusermount3 -u [-z]``. Returns (ok, message); a busy mount gives (False, "...busy...")."""
    args = [fusermount(), "-u"] + (["-z"] if lazy else []) + ["--", mountpoint]
    try:
        r = subprocess.run(args, cwd="/", capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, "fusermount3 timed out"
    msg = (r.stderr or r.stdout).strip()
    return r.returncode == 0, msg


def abort_connection(entry: MountEntry) -> bool:
    """End a FUSE connection through fusectl (every request then fails with ENOTCONN). False if unavailable."""
    path = f"/sys/fs/fuse/connections/{entry.minor}/abort"
    try:
        with open(path, "w") as f:
            f.write("1")
        return True
    except OSError:
        return False

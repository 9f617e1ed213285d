"""Who holds a mounted volume: open files and directories, working and root directories, memory maps.

FUSE never sees a cwd, an ``O_PATH`` descriptor or a mapping whose fd was closed (docs/fuse-notes.md §6), so besides the
daemon's handle table a raw ``/proc`` scan is needed. It reads links and ``maps`` only and never calls
``stat`` on a path inside the mount: from the FUSE thread that deadlocks, and on a stale mount it fails.
psutil supplies process identity (name and creation time).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Holder:
    """One process holding a volume: ``kind`` is file, dir, cwd, root or mmap."""

    pid: int
    process: str
    path: str
    kind: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _inside(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def process_name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return "?"


def _proc_fd_kind(pid: int, fd: str, target: str) -> str:
    # O_PATH fds and directories look like any other link; fdinfo's flags tell them apart without stat.
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    flags = int(line.split()[1], 8)
                    if flags & 0o200000:  # O_DIRECTORY
                        return "dir"
                    break
    except OSError:
        pass
    return "file"


def _fd_links(pid: int) -> tuple[list[tuple[str, str]], bool]:
    """(fd, target) of every descriptor of ``pid`` (" (deleted)" cut off), and whether they could be read."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except PermissionError:
        return [], False
    except OSError:
        return [], True
    links = []
    for fd in fds:
        try:
            target = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        links.append((fd, target.removesuffix(" (deleted)")))
    return links, True


def descriptors(paths: Iterable[str], *, exclude_pids: Iterable[int] = ()) -> list[tuple[int, int]]:
    """(pid, fd) of every descriptor a process holds on something below ``paths`` (what :func:`scan` reports as
    ``file``/``dir`` holders, by number)."""
    prefixes = tuple(os.path.normpath(p) for p in paths if p)
    skip = set(exclude_pids)
    return [
        (int(entry.name), int(fd))
        for entry in os.scandir("/proc")
        if entry.name.isdigit() and int(entry.name) not in skip
        for fd, target in _fd_links(int(entry.name))[0]
        if _inside(target, prefixes)
    ]


def scan(paths: Iterable[str], *, exclude_pids: Iterable[int] = ()) -> tuple[list[Holder], bool]:
    """Scan /proc for processes using anything below ``paths``.

    Returns (holders, complete). ``complete`` is False when some processes could not be inspected
    (other users' processes without root): the list may then be incomplete.
    """
    prefixes = tuple(os.path.normpath(p) for p in paths if p)
    skip = set(exclude_pids)
    found: dict[tuple[int, str, str], Holder] = {}
    complete = True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in skip:
            continue
        base = f"/proc/{pid}"
        hits: list[tuple[str, str]] = []
        for link, kind in (("cwd", "cwd"), ("root", "root")):
            try:
                target = os.readlink(f"{base}/{link}")
            except PermissionError:
                complete = False
                continue
            except OSError:
                continue
            if _inside(target, prefixes):
                hits.append((target, kind))
        links, readable = _fd_links(pid)
        complete = complete and readable
        for fd, target in links:
            if _inside(target, prefixes):
                hits.append((target, _proc_fd_kind(pid, fd, target)))
        try:
            with open(f"{base}/maps", encoding="utf-8", errors="surrogateescape") as f:
                for line in f:
                    parts = line.split(None, 5)
                    if len(parts) == 6:
                        target = parts[5].rstrip("\n")
                        if target.endswith(" (deleted)"):
                            target = target[: -len(" (deleted)")]
                        if _inside(target, prefixes):
                            hits.append((target, "mmap"))
        except PermissionError:
            complete = False
        except OSError:
            pass
        if hits:
            name = process_name(pid)
            for target, kind in hits:
                found.setdefault((pid, target, kind), Holder(pid, name, target, kind))
    return sorted(found.values(), key=lambda h: (h.pid, h.kind, h.path)), complete


def merge(*lists: Iterable[Holder]) -> list[Holder]:
    out: dict[tuple[int, str, str], Holder] = {}
    for lst in lists:
        for h in lst:
            out.setdefault((h.pid, h.path, h.kind), h)
    return sorted(out.values(), key=lambda h: (h.pid, h.kind, h.path))


def settled(holder: dict[str, object]) -> bool:
    """A holder that really holds: alive, and for an entry of the daemon's handle table, still has the file open.

    A handle whose process has exited, or whose process closed the file, is a RELEASE still on its way: the
    kernel sends it after ``close()`` has returned.
    """
    pid = holder.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return False
    if holder.get("kind") not in ("file", "dir"):
        return True  # cwd, root, mmap: found by the /proc scan itself
    path = os.path.normpath(str(holder.get("path")))
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return True  # cannot look (another user's process): assume it holds
    for fd in fds:
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == path:
                return True
        except OSError:
            continue
    return False


def pid_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False

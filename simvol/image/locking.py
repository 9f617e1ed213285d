"""The image lock: one writer (or several readers) per image, across all processes.

Why ``flock``: it belongs to the open file description, so it is released by the kernel the moment
the holder's descriptor is closed — including when the holder is killed with SIGKILL — and a stale
lock can never outlive a dead daemon. It also conflicts between two descriptors of the *same*
process, so a second mount of an image is refused even from within one process. (POSIX ``fcntl``
locks have neither property.)

``flock`` cannot tell who holds a lock, so the holder's pid comes from ``/proc/locks``, matched on the
image's device and inode. That is advisory information for the error message: ``None`` when it cannot
be found (no /proc, another pid namespace, a file system whose ``st_dev`` differs from the kernel's).
"""

from __future__ import annotations

import fcntl
import logging
import os

log = logging.getLogger(__name__)

PROC_LOCKS = "/proc/locks"


def try_lock(fd: int, exclusive: bool) -> bool:
    """Take the image lock without blocking; False when another open file description holds it.

    Other failures (ENOLCK on a file system without lock support, …) propagate as OSError.
    """
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def parse_proc_locks(text: str, dev: int, ino: int) -> int | None:
    """Find the pid holding a ``flock`` on (dev, ino) in the text of ``/proc/locks``.

    Lines look like ``3: FLOCK  ADVISORY  WRITE 4242 fd:01:1835010 0 EOF``; waiters are marked
    ``->`` and skipped. Major and minor are hex, the inode decimal. An exact device match wins;
    otherwise an inode-only match is used when it names a single pid (overlayfs and btrfs report a
    different ``st_dev`` from the one the kernel prints).
    """
    want_dev = (os.major(dev), os.minor(dev))
    exact: list[int] = []
    by_inode: set[int] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[1] != "FLOCK":
            continue
        try:
            pid = int(fields[4])
            major_s, minor_s, ino_s = fields[5].split(":")
            major, minor, lock_ino = int(major_s, 16), int(minor_s, 16), int(ino_s)
        except ValueError:
            continue
        if lock_ino != ino or pid <= 0:
            continue
        if (major, minor) == want_dev:
            exact.append(pid)
        by_inode.add(pid)
    if exact:
        return exact[0]
    if len(by_inode) == 1:
        return next(iter(by_inode))
    return None


def lock_holder(fd: int) -> int | None:
    """The pid of a process holding a ``flock`` on the file open at ``fd``, if it can be found."""
    try:
        st = os.fstat(fd)
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        log.debug("cannot read %s: %s", PROC_LOCKS, exc)
        return None
    return parse_proc_locks(text, st.st_dev, st.st_ino)


__all__ = ["try_lock", "lock_holder", "parse_proc_locks"]

"""The volume lock (FSCTL_LOCK_VOLUME): while it is held, only its holder may use the volume.

Backup and imaging tools lock a volume, dismount it, read it raw and unlock it. On Windows the lock is refused while
any handle is open, and while it is held every other process's open fails with ERROR_ACCESS_DENIED. The daemon
grants a lock to a process (the holder: it and its descendants may use the volume) over a control connection that
stays open for as long as the lock lasts, so the lock ends when the holder lets go or dies, SIGKILL included. While
it is held, the session's operations are a :class:`LockedOps` around the real ones (or around the armed trigger of a
dismounted volume, which then never remounts for anyone else); unlocking puts the real ones back, so an unlocked
volume's requests pay nothing for this.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from ._fuselib import caller_pid, mfusepy
from .ops import CALLBACKS, forwarder

# Answered for everyone: the mount point's own attributes and access check (``ls -l``, ``cd`` into it), the
# session's start and end, and what only an existing handle can ask (the holder's: a lock needs none open).
_ANYONE = frozenset({"init_with_config", "destroy", "release", "releasedir", "flush", "fsync", "fsyncdir"})


def parent_pid(pid: int) -> int:
    """The parent of ``pid`` (0 when it cannot be read: the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class Holder:
    """The process holding a lock and its descendants, looked up once per process for the lock's life."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._known: dict[int, bool] = {pid: True, 0: True}  # 0: a request the kernel sends without a pid

    def __call__(self, pid: int) -> bool:
        known = self._known.get(pid)
        if known is not None:
            return known
        p, chain = pid, []
        while p > 1 and p not in self._known:
            chain.append(p)
            p = parent_pid(p)
        result = self._known.get(p, False)
        for q in chain:
            self._known[q] = result
        return result


class LockedOps(mfusepy.Operations):  # type: ignore[misc]  # mfusepy ships no type information
    use_ns = True

    def __init__(self, inner: Any, allowed: Callable[[int], bool]) -> None:
        self.inner = inner
        self._allowed = allowed

    def _check(self) -> None:
        if not self._allowed(caller_pid()):
            raise mfusepy.FuseOSError(errno.EACCES)

    def stat_fields(self, path: str | None, fh: int | None) -> tuple[int, ...] | int:
        if (path == "/" and not fh) or self._allowed(caller_pid()):
            result: tuple[int, ...] | int = self.inner.stat_fields(path, fh)
            return result
        return -errno.EACCES

    def access(self, path: str, amode: int) -> int:
        if path != "/":
            self._check()
        return int(self.inner.access(path, amode))

    def uncached_reads(self, path: str) -> bool:
        """As the operations it guards say (a read fault armed under the lock still reaches the holder's reads)."""
        inner = getattr(self.inner, "uncached_reads", None)
        return bool(inner is not None and inner(path))


def _holder_only(self: LockedOps, args: tuple[Any, ...]) -> None:
    self._check()


for _name in sorted(set(CALLBACKS) - {"access"}):
    setattr(LockedOps, _name, forwarder(_name, None if _name in _ANYONE else _holder_only))
LockedOps.init_with_config = forwarder("init_with_config")
del _name

__all__ = ["Holder", "LockedOps", "parent_pid"]

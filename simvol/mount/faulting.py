"""The operations of a session while file-system faults are armed: the real ones behind a :class:`FaultSet`.

The daemon puts a :class:`FaultingOps` in front of the volume's operations only while at least one fault is
armed, and takes it away when the last one goes, so a volume without faults pays nothing for them (the same
arrangement as the volume lock's :class:`~simvol.mount.locked.LockedOps`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._fuselib import caller_pid, mfusepy
from .faults import FaultSet
from .ops import CALLBACKS, forwarder

# FUSE callback → the fault operation it is (callbacks not listed are never faulted: getattr, access, release…).
_FAULTED = {
    "open": "open", "create": "create", "read": "read", "write": "write", "truncate": "truncate",
    "unlink": "unlink", "rename": "rename", "mkdir": "mkdir", "rmdir": "rmdir", "readdir": "readdir",
    "opendir": "readdir", "fsync": "fsync", "fsyncdir": "fsync", "statfs": "statfs",
}


class FaultingOps(mfusepy.Operations):  # type: ignore[misc]  # mfusepy ships no type information
    use_ns = True

    def __init__(self, inner: Any, faults: FaultSet) -> None:
        self.inner = inner
        self._faults = faults

    def _check(self, op: str, path: str | None, size: int = 0) -> int | None:
        try:
            return self._faults.check(op, path or "/", caller_pid(), size)
        except OSError as e:
            raise mfusepy.FuseOSError(e.errno) from None

    def uncached_reads(self, path: str) -> bool:
        """Open ``path`` without the page cache: a read fault may match it (FastFUSE asks at every open)."""
        return self._faults.reads_faulted(path)

    def stat_fields(self, path: str | None, fh: int | None) -> tuple[int, ...] | int:
        result: tuple[int, ...] | int = self.inner.stat_fields(path, fh)
        return result

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        self._check("read", path or self.inner.handle_path(fh))
        data: bytes = self.inner.read(path, size, offset, fh)
        return data

    def write(self, path: str | None, data: Any, offset: int, fh: int, from_cache: bool = False) -> int:
        allowed = self._check("write", path or self.inner.handle_path(fh), len(data))
        if allowed is not None:
            data = data[:allowed]  # the volume fills up inside this write: a short write
        return int(self.inner.write(path, data, offset, fh, from_cache))

    def rename(self, old: str, new: str) -> int:
        self._check("rename", old)
        if new != old:
            self._check("rename", new)
        return int(self.inner.rename(old, new))

    def statfs(self, path: str) -> dict[str, int]:
        self._check("statfs", path)
        st: dict[str, int] = self.inner.statfs(path)
        room = self._faults.room()
        if room is not None and st.get("f_frsize"):
            free = min(st["f_bfree"], room // st["f_frsize"])  # df agrees with a volume that fills up
            st = {**st, "f_bfree": free, "f_bavail": free}
        return st


def _faults_of(op: str) -> Callable[[FaultingOps, tuple[Any, ...]], None]:
    def guard(self: FaultingOps, args: tuple[Any, ...]) -> None:
        self._check(op, args[0])  # the path, the first argument of every faulted callback

    return guard


for _name in sorted(set(CALLBACKS)):
    if _name in ("read", "write", "rename", "statfs"):
        continue
    setattr(FaultingOps, _name, forwarder(_name, _faults_of(_FAULTED[_name]) if _name in _FAULTED else None))
FaultingOps.init_with_config = forwarder("init_with_config")
del _name

__all__ = ["FaultingOps"]

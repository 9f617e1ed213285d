"""File-system faults a volume's daemon injects into the real calls of every process (issue: fault injection).

A fault names an operation (``write``, ``read``, … or ``any``), optionally a path pattern, and what happens to a
matching call: an errno, a delay, or both. ``after`` lets the first N matching calls through, ``count`` limits the
hits, ``after_bytes`` (writes only) lets N more bytes through and then fails — with a short write at the boundary,
as a disk that fills up does — and ``probability`` with ``seed`` makes hits random but repeatable. Faults are
plain data (:meth:`FsFault.to_dict` / :meth:`FsFault.from_dict`): the service keeps them in the root's registry
and hands them to the daemon, which keeps the counters and logs every hit.

A call is one request the kernel sends: one ``pread`` is one read, one ``write`` of up to 1 MiB one write. While a
read fault is armed, matching files are opened uncached (``direct_io``), so every read reaches the daemon, and the
kernel's cached pages of matching files already open are dropped when the fault is armed.

Patterns match the path inside the volume case-insensitively, as Windows compares names. A pattern without ``/``
matches the last component anywhere (``*.log``); one with ``/`` matches the whole path from the volume's root
(``db/**``, ``/logs/*.txt``). ``*`` and ``?`` stay within one component; ``**`` crosses them.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .holders import process_name

__all__ = ["FS_OPS", "FaultLog", "FaultSet", "FsFault", "compile_glob", "errno_value"]

#: Operations a file-system fault can name; ``any`` is every one of them.
FS_OPS = ("open", "create", "read", "write", "truncate", "unlink", "rename", "mkdir", "rmdir", "readdir", "fsync",
          "statfs", "any")


def errno_value(name: str | int) -> int:
    """The errno for ``EIO``, ``eio`` or ``5``; ValueError for anything else."""
    if isinstance(name, int) and not isinstance(name, bool):
        if name in errno_mod.errorcode:
            return name
        raise ValueError(f"{name} is not an errno number")
    if isinstance(name, str):
        if name.isdigit() and int(name) in errno_mod.errorcode:
            return int(name)
        value = getattr(errno_mod, name.upper(), None)
        if isinstance(value, int):
            return value
    raise ValueError(f"{name!r} is not an errno name (EIO, ENOSPC, EACCES, EROFS, ENOTCONN, …)")


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A matcher of volume paths (``/dir/name``) for ``pattern``; see the module docstring."""
    pat = pattern.replace("\\", "/")
    anchored = "/" in pat
    out = []
    i = 0
    body = pat.lstrip("/")
    while i < len(body):
        c = body[i]
        if body.startswith("**", i):
            out.append(".*")
            i += 2
            if body.startswith("/", i):  # "a/**/b" also matches "a/b"
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    rx = re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)
    if anchored:
        return lambda path: rx.match(path.lstrip("/")) is not None
    return lambda path: rx.match(path.rsplit("/", 1)[-1]) is not None


@dataclass
class FsFault:
    """One file-system fault and its counters (``seen``: matching calls so far; ``hits``: calls it hit)."""

    id: int
    op: str
    errno: int = 0  # 0: delay only
    path: str | None = None
    after: int = 0
    count: int | None = None
    delay_ms: int = 0
    after_bytes: int | None = None
    probability: float | None = None
    seed: int | None = None
    persist: bool = False
    hits: int = 0
    seen: int = 0
    written: int = 0  # bytes let through, for after_bytes
    _match: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)
    _rng: random.Random | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in FS_OPS:
            raise ValueError(f"unknown operation {self.op!r}; one of: {', '.join(FS_OPS)}")
        if self.after_bytes is not None and self.op != "write":
            raise ValueError("after_bytes is a volume that fills up: it needs op 'write'")
        if not self.errno and not self.delay_ms:
            raise ValueError("a fault needs an errno, a delay, or both")
        for name in ("after", "delay_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1 (omit it for no limit)")
        if self.after_bytes is not None and self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        if self.probability is not None and not 0 < self.probability <= 1:
            raise ValueError("probability must be in (0, 1]")
        self._match = compile_glob(self.path) if self.path else None
        if self.probability is not None:
            self._rng = random.Random(self.seed)

    def matches(self, op: str, path: str) -> bool:
        return (self.op == "any" or self.op == op) and (self._match is None or self._match(path))

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["errno"] = errno_mod.errorcode.get(self.errno) if self.errno else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FsFault:
        known = {k: d[k] for k in cls.__dataclass_fields__ if not k.startswith("_") and k in d}
        known["errno"] = errno_value(d["errno"]) if d.get("errno") else 0
        return cls(**known)


class FaultLog:
    """Every hit, appended as one JSON line to a file in the root's run directory (it outlives the daemon);
    without a path, kept in memory (the in-process mounter)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._memory: list[dict[str, Any]] = []

    def record(self, entry: dict[str, Any]) -> None:
        if not self.path:
            self._memory.append(entry)
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # the log is a courtesy: a fault must hit even where its record cannot be written
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def clear(self) -> None:
        self._memory.clear()
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def read(self) -> list[dict[str, Any]]:
        if not self.path:
            return list(self._memory)
        try:
            with open(self.path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError):
            return []


class FaultSet:
    """The faults armed on one volume, consulted by every faultable request while any is armed."""

    def __init__(self, faults: Iterable[FsFault] = (), log: FaultLog | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.faults = list(faults)
        self.log = log or FaultLog(None)
        self._sleep = sleep
        self._lock = threading.Lock()  # the control thread reads counters while the FUSE thread bumps them

    def __bool__(self) -> bool:
        return bool(self.faults)

    def reads_faulted(self, path: str) -> bool:
        """A read of ``path`` may hit a fault: open it uncached, so that every read reaches the daemon."""
        return any(f.matches("read", path) for f in self.faults)

    def check(self, op: str, path: str, pid: int, size: int = 0) -> int | None:
        """Apply the faults to one call. Raises OSError(errno) for a hit with an errno; returns how many bytes of a
        write may go through (a short write at an ``after_bytes`` boundary), or None for "all of it"."""
        allowed: int | None = None
        for f in self.faults:
            if not f.matches(op, path):
                continue
            with self._lock:
                f.seen += 1
                if f.seen <= f.after:
                    continue
                if f.count is not None and f.hits >= f.count:
                    continue
                if f.after_bytes is not None and op == "write":
                    room = f.after_bytes - f.written
                    if room >= size:
                        f.written += size
                        continue
                    if room > 0:  # the disk fills up inside this write: a short write, then ENOSPC
                        f.written += room
                        allowed = room if allowed is None else min(allowed, room)
                        continue
                if f._rng is not None and f.probability is not None and f._rng.random() >= f.probability:
                    continue
                f.hits += 1
            self._record(f, op, path, pid)
            if f.delay_ms:
                self._sleep(f.delay_ms / 1000)
            if f.errno:
                raise OSError(f.errno, os.strerror(f.errno), path)
        return allowed

    def room(self) -> int | None:
        """Bytes the volume may still take under an ``after_bytes`` fault (statfs shows no more), or None."""
        left = [f.after_bytes - f.written for f in self.faults if f.after_bytes is not None
                and (f.count is None or f.hits < f.count)]
        return max(0, min(left)) if left else None

    def _record(self, f: FsFault, op: str, path: str, pid: int) -> None:
        self.log.record({
            "time": time.time(), "pid": pid, "process": process_name(pid) if pid else "", "op": op, "path": path,
            "errno": errno_mod.errorcode.get(f.errno) if f.errno else None, "delay_ms": f.delay_ms, "fault": f.id,
        })

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self.faults]

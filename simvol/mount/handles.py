"""The daemon's handle table: every file and directory a program has open through the mount.

It is what makes in-use detection possible (a volume with open handles is in use; a file with an open handle
cannot be deleted or renamed, as on Windows), and what a forced dismount cuts off (every handle turns stale and
fails from then on). The FUSE callbacks (``ops.VolumeOps``) add and drop handles; the control thread reads the
table and turns it stale — both under the operations' lock, which the caller holds. Pure bookkeeping, no FUSE:
unit-tested on its own.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..fat import Node


@dataclass(slots=True)
class Handle:
    fh: int
    pid: int
    path: str  # path inside the volume at open time
    node: Node
    is_dir: bool
    writable: bool
    opened: float = field(default_factory=time.time)
    stale: bool = False
    nodeid: int = 0  # the kernel inode (FUSE node id) it was opened through; 0 until a request shows it
    append: bool = False  # O_APPEND: every write goes to the end of the file as the daemon knows it
    alias: bool = False  # opened under other spellings than the stored ones


class HandleTable:
    """Open handles by number, with a count per node (so "is this file open?" costs one look-up)."""

    __slots__ = ("_handles", "_numbers", "_per_node", "all_stale", "refuse_opens")

    def __init__(self) -> None:
        self._handles: dict[int, Handle] = {}
        # id(node) → open handles. Keyed by the node, not the path: every spelling of a name is one node, and a
        # handle follows its node across renames (rmdir and unlink of the open node are refused on any path).
        self._per_node: dict[int, int] = {}
        self._numbers = itertools.count(1)
        self.refuse_opens = False  # a dismount is under way: new opens fail with EBUSY
        self.all_stale = False  # a forced dismount happened: nothing reaches the image any more

    def add(self, pid: int, path: str, node: Node, is_dir: bool, writable: bool, *, nodeid: int = 0,
            append: bool = False, alias: bool = False) -> Handle:
        h = Handle(next(self._numbers), pid, path, node, is_dir, writable, nodeid=nodeid, append=append, alias=alias)
        self._handles[h.fh] = h
        self._per_node[id(node)] = self._per_node.get(id(node), 0) + 1
        return h

    def get(self, fh: int) -> Handle | None:
        return self._handles.get(fh)

    def drop(self, fh: int) -> Handle | None:
        """Forget handle ``fh``; the handle, or None if there was none."""
        h = self._handles.pop(fh, None)
        if h is not None:
            k = id(h.node)
            n = self._per_node.get(k, 0) - 1
            if n > 0:
                self._per_node[k] = n
            else:
                self._per_node.pop(k, None)
        return h

    def node_is_open(self, node: object) -> bool:
        return id(node) in self._per_node

    def of_node(self, node: Node) -> Iterator[Handle]:
        return (h for h in self._handles.values() if h.node is node)

    def __len__(self) -> int:
        return len(self._handles)

    def snapshot(self) -> list[Handle]:
        return list(self._handles.values())

    def make_all_stale(self) -> int:
        """Forced dismount: every handle fails from now on, and no new one is opened. Returns how many."""
        self.all_stale = True
        self.refuse_opens = True
        for h in self._handles.values():
            h.stale = True
        return len(self._handles)

    def file_paths(self) -> list[str]:
        """The paths of the open files (not directories), each once."""
        return sorted({h.path for h in self._handles.values() if not h.is_dir})


class HandleOwner:
    """What the daemon's control thread reads of a session's operations (``ops.VolumeOps``,
    ``passthrough.PassthroughOps``): their handle table, under the lock every callback holds."""

    _engine_lock: threading.RLock
    _table: HandleTable
    _fuse_ptr: int | None

    @property
    def engine_lock(self) -> threading.RLock:
        """Held by every callback; the control thread takes it before touching the engine or the handles."""
        return self._engine_lock

    @property
    def fuse_ptr(self) -> int | None:
        """The running loop's ``struct fuse *`` (None before init)."""
        return self._fuse_ptr

    def handles(self) -> list[Handle]:
        with self._engine_lock:
            return self._table.snapshot()

    def handle_path(self, fh: int) -> str:
        """The path an open handle was opened by ("/" for an unknown one)."""
        h = self._table.get(fh)
        return h.path if h is not None else "/"

    def open_file_paths(self) -> list[str]:
        """The paths of the files open now (their cached pages can be dropped from the control thread)."""
        with self._engine_lock:
            return self._table.file_paths()

    def handle_count(self) -> int:
        with self._engine_lock:
            return len(self._table)

    def set_refuse_opens(self, value: bool) -> None:
        """While a dismount is under way new opens fail with EBUSY."""
        with self._engine_lock:
            self._table.refuse_opens = value

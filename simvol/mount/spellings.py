"""One file, several kernel inodes: keeping the kernel's caches of every spelling of a name coherent.

libfuse's high-level API names its nodes by path, so the kernel keeps one inode per spelling it has looked up
(``a.txt`` and ``A.TXT`` are two kernel inodes of one file), each with its own attributes and page cache. That
is also what lets ``rename("a.txt", "A.TXT")`` reach the daemon at all: with one inode for both names the kernel
treats the call as a rename of a file onto itself and returns success without doing anything.

The price is coherence: a write through one spelling left the other spelling's cached pages and size as they
were, so a reader saw old data, and the dirty pages of a mapping could later overwrite newer data. This table
records, per file, the kernel inodes (FUSE node ids) through which the file was opened, read or written, and
after every change through one of them tells the kernel to forget what it caches for the others:

- a kernel inode with no open handle can have no request in flight (reads, writes and the write-back of a
  mapping all hold the handle), so its pages and attributes are dropped at once, before the change is
  answered — the next open through that spelling reads what the daemon has;
- a kernel inode that is open elsewhere gets its attributes dropped only (dropping its pages could wait for a
  read that this single-threaded daemon has not served yet: a deadlock); its next ``read(2)`` then asks for
  the attributes, sees the new modification time (the daemon reports it to the nanosecond) and drops its pages
  itself. What is left is docs/behaviour.md's "Two spellings open at once".

Pure bookkeeping: the notification itself is a callable given by the FUSE shell, so this runs in unit tests.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

# fuse_lowlevel_notify_inval_inode(se, nodeid, offset, length): offset -1 drops the attributes only; offset 0
# with length 0 drops the attributes and every cached page.
Notify = Callable[[int, int, int], int]
ATTRIBUTES_ONLY = -1


def _no_notify(nodeid: int, offset: int, length: int) -> int:
    return 0


class KernelInodes:
    """File identity (the engine's inode number) → the kernel inodes (FUSE node ids) that cache it."""

    __slots__ = ("_by_file", "_open", "notify")

    def __init__(self, notify: Notify = _no_notify) -> None:
        self._by_file: dict[int, set[int]] = {}
        self._open: dict[int, int] = {}  # node id → open handles through it
        self.notify = notify

    def seen(self, ino: int, nodeid: int) -> None:
        """The kernel caches (or may cache) file ``ino`` under ``nodeid``."""
        ids = self._by_file.get(ino)
        if ids is None:
            self._by_file[ino] = {nodeid}
        else:
            ids.add(nodeid)

    def opened(self, ino: int, nodeid: int) -> None:
        ids = self._by_file.get(ino)
        if ids and nodeid not in ids:
            # A spelling opened for the first time may hold attributes from its lookup, taken before changes
            # made through the other spellings: a read would trust that old size. (Only attributes: this inode
            # has no pages yet, and dropping attributes never waits for anything.)
            self.notify(nodeid, ATTRIBUTES_ONLY, 0)
        self.seen(ino, nodeid)
        self._open[nodeid] = self._open.get(nodeid, 0) + 1

    def closed(self, nodeid: int) -> None:
        n = self._open.get(nodeid, 0) - 1
        if n > 0:
            self._open[nodeid] = n
        else:
            self._open.pop(nodeid, None)

    def changed(self, ino: int, by: int) -> None:
        """File ``ino`` changed (data, size or attributes) through kernel inode ``by`` (0: not known)."""
        ids = self._by_file.get(ino)
        if ids is None or (len(ids) == 1 and by in ids):
            return
        for nodeid in list(ids):
            if nodeid == by:
                continue
            if nodeid in self._open:
                self.notify(nodeid, ATTRIBUTES_ONLY, 0)
            elif self.notify(nodeid, 0, 0) == -errno.ENOENT:
                ids.discard(nodeid)  # the kernel has forgotten that inode

    def gone(self, ino: int) -> None:
        """File ``ino`` was deleted or renamed: whatever the kernel caches under any of its spellings is stale
        (a file created later under such a spelling must not show these pages)."""
        ids = self._by_file.pop(ino, None)
        for nodeid in ids or ():
            self.notify(nodeid, ATTRIBUTES_ONLY if nodeid in self._open else 0, 0)

    def kernel_inodes(self, ino: int) -> frozenset[int]:
        return frozenset(self._by_file.get(ino, ()))

"""Load mfusepy on libfuse 3, and the few libfuse calls mfusepy does not wrap.

mfusepy picks the library when imported and prefers libfuse 2 when both are installed (docs/fuse-notes.md §1), so the
choice is made here, before the import, and checked after it.
"""

from __future__ import annotations

import ctypes
import operator
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

import mfusepy

if mfusepy.fuse_version_major != 3:  # pragma: no cover - depends on the host
    raise ImportError(
        f"simvol needs libfuse 3, but mfusepy loaded {mfusepy.fuse_version_major}.{mfusepy.fuse_version_minor}; "
        "install fuse3/libfuse3-3 (never the 'fuse' package)"
    )

from ._loop import (
    FUSE_CREATE,
    FUSE_GETATTR,
    FUSE_LOOKUP,
    FUSE_MKDIR,
    after_request,
    make_fuse_main,
    request_header,
    request_nodeid,
    spin_ns_from_env,
)

_lib = mfusepy._libfuse
_lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_lib.fuse_invalidate_path.restype = ctypes.c_int
_lib.fuse_get_session.argtypes = [ctypes.c_void_p]
_lib.fuse_get_session.restype = ctypes.c_void_p
_lib.fuse_lowlevel_notify_inval_inode.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64]
_lib.fuse_lowlevel_notify_inval_inode.restype = ctypes.c_int
_lib.fuse_lowlevel_notify_inval_entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
_lib.fuse_lowlevel_notify_inval_entry.restype = ctypes.c_int


def current_fuse() -> int | None:
    """The ``struct fuse *`` of the running loop; valid only inside a callback (e.g. init)."""
    ctx = _lib.fuse_get_context()
    return ctx.contents.fuse if ctx else None


def caller_pid() -> int:
    """pid of the process whose request is being served (0 in release: the kernel sends none; docs/fuse-notes.md §3
    #4)."""
    ctx = _lib.fuse_get_context()
    return ctx.contents.pid if ctx else 0


def invalidate_path(fuse_ptr: int, path: str) -> int:
    """Drop the kernel's cached pages and attributes of ``path`` (any thread may call it)."""
    return int(_lib.fuse_invalidate_path(ctypes.c_void_p(fuse_ptr), os.fsencode(path)))


def inode_notifier(fuse_ptr: int) -> Callable[[int, int, int], int]:
    """``notify(nodeid, offset, length)``: drop what the kernel caches for one of its inodes of this mount
    (offset -1: the attributes only; 0 with length 0: attributes and every page). Returns 0 or -errno."""
    se = ctypes.c_void_p(_lib.fuse_get_session(ctypes.c_void_p(fuse_ptr)))
    inval = _lib.fuse_lowlevel_notify_inval_inode
    return lambda nodeid, offset, length: inval(se, nodeid, offset, length)


class KernelNotifier:
    """Tells the kernel to forget cached entries and inodes, from a thread of its own.

    ``fuse_lowlevel_notify_inval_entry`` takes the directory's lock, which the task whose request is being
    served holds (an unlink holds it until it has its answer), and dropping the pages of an open inode waits
    for reads still queued behind the current request: sent from the FUSE thread, either would wait for
    itself. The loop calls :meth:`settle` after each answer, which waits until the notifications are done — so
    the caller's next call sees their effect — but never longer than ``wait`` seconds: another task may hold
    that lock while its own request waits behind this one, and then the notification lands a moment later.
    A notifier puts its ``settle`` on the loop's ``after_request`` hooks when made and takes it off at ``close``,
    which must run before libfuse destroys the session.
    """

    def __init__(self, fuse_ptr: int, encoding: str = "utf-8", errors: str = "surrogateescape",
                 wait: float = 0.05) -> None:
        self._fuse = ctypes.c_void_p(fuse_ptr)
        self._se = ctypes.c_void_p(_lib.fuse_get_session(self._fuse))
        self._encoding, self._errors, self._wait = encoding, errors, wait
        self._queue: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()
        self._pending = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="simvol-notify", daemon=True)
        self._thread.start()
        after_request.append(self.settle)

    def drop_entry(self, parent: int, name: str) -> None:
        """Forget directory ``parent``'s entry ``name``."""
        self._put(parent, name)

    def drop_path(self, path: str) -> None:
        """Forget the attributes and pages of the inode libfuse holds for ``path``."""
        self._put(0, path)

    def _put(self, parent: int, name: str) -> None:
        with self._cond:
            self._pending += 1
        self._queue.put((parent, name.encode(self._encoding, self._errors)))

    def settle(self) -> None:
        if self._pending:
            with self._cond:
                self._cond.wait_for(lambda: not self._pending, self._wait)

    def _run(self) -> None:
        inval_entry, inval_path = _lib.fuse_lowlevel_notify_inval_entry, _lib.fuse_invalidate_path
        while (item := self._queue.get()) is not None:
            parent, name = item
            if parent:
                inval_entry(self._se, parent, name, len(name))  # -ENOENT: the kernel had no such entry
            else:
                inval_path(self._fuse, name)
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        if self.settle in after_request:
            after_request.remove(self.settle)
        self._queue.put(None)
        self._thread.join(timeout)


def _stat_packer() -> tuple[Callable[..., bytes], int]:
    """``pack(*fields)`` → the bytes of a whole ``struct stat`` as mfusepy's c_stat lays it out (offsets read
    from c_stat, gaps zero), fields in ``stat_fields`` order. One memmove of that fills the caller's struct:
    a third of a getattr's cost went into setting thirteen ctypes fields one by one."""
    c, ts = mfusepy.c_stat, mfusepy.c_timespec
    fields: list[tuple[int, int, bool]] = [  # (offset, size, signed) in stat_fields order
        (c.st_ino.offset, c.st_ino.size, False),
        (c.st_mode.offset, c.st_mode.size, False),
        (c.st_nlink.offset, c.st_nlink.size, False),
        (c.st_size.offset, c.st_size.size, True),
        (c.st_uid.offset, c.st_uid.size, False),
        (c.st_gid.offset, c.st_gid.size, False),
        (c.st_blocks.offset, c.st_blocks.size, True),
        (c.st_blksize.offset, c.st_blksize.size, True),
    ]
    for name in ("st_atimespec", "st_mtimespec", "st_ctimespec"):
        base = getattr(c, name).offset
        fields += [(base + ts.tv_sec.offset, ts.tv_sec.size, True), (base + ts.tv_nsec.offset, ts.tv_nsec.size, True)]
    by_offset = sorted(range(len(fields)), key=lambda i: fields[i][0])
    fmt, pos = "=", 0
    for i in by_offset:
        off, size, signed = fields[i]
        fmt += "x" * (off - pos) + ({4: "i", 8: "q"}[size] if signed else {4: "I", 8: "Q"}[size])
        pos = off + size
    fmt += "x" * (ctypes.sizeof(c) - pos)
    packer = struct.Struct(fmt)
    if by_offset == sorted(by_offset):
        return packer.pack, packer.size
    reorder = operator.itemgetter(*by_offset)
    pack = packer.pack
    return (lambda *v: pack(*reorder(v))), packer.size


_pack_stat, _STAT_SIZE = _stat_packer()

# utimensat(2)'s markers in tv_nsec (<sys/stat.h>), which libfuse passes on unchanged.
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2


class FastFUSE(mfusepy.FUSE):  # type: ignore[misc]  # mfusepy ships no type information
    """mfusepy's FUSE with the hottest adapters done directly, and write-only opens in direct I/O.

    ``getattr`` runs twice per create (libfuse looks the new entry up) and once per lookup; mfusepy fills the
    ``struct stat`` from a dict with a ``getattr`` probe per key. Here the operations object hands over a
    tuple (or ``-errno``, without an exception) and one ``memmove`` of a packed struct fills it. ``create``
    skips mfusepy's per-call ``inspect.signature``; ``write`` passes a view of libfuse's buffer, not a copy.
    The operations object must provide ``stat_fields(path, fh)``.

    The loop is :mod:`._loop`'s (libfuse's, plus a short spin while requests come in bursts); it always runs
    single-threaded. ``spin_us`` overrides ``$SIMVOL_FUSE_SPIN_US`` (default 50; 0 never spins).
    """

    def __init__(
        self,
        operations: Any,
        mountpoint: str,
        *,
        spin_us: int | None = None,
        on_start: Callable[[FastFUSE], None] | None = None,
        **kwargs: Any,
    ) -> None:
        spin_ns = spin_ns_from_env() if spin_us is None else max(0, spin_us) * 1000
        if on_start is not None:
            # The caller gets the session's FUSE object before its loop starts: assigning its ``operations``
            # sends every later request elsewhere (an armed mount point activating, a volume lock).
            on_start(self)
        saved = mfusepy.fuse_main_real
        # mfusepy calls its module-level fuse_main_real from __init__; the loop must be ours for this call only.
        mfusepy.fuse_main_real = make_fuse_main(_lib, spin_ns)
        try:
            super().__init__(operations, mountpoint, **kwargs)
        finally:
            mfusepy.fuse_main_real = saved

    def fgetattr(self, path: bytes | None, buf: Any, fip: Any) -> int:  # noqa: D102 - mfusepy's adapter, same contract
        fields = self.operations.stat_fields(
            None if path is None else path.decode(self.encoding, self.errors), fip.contents.fh if fip else None
        )
        if fields.__class__ is int:  # not isinstance: the hottest path there is
            return int(fields)  # -errno
        ctypes.memmove(buf, _pack_stat(*fields), _STAT_SIZE)  # the whole struct: fields and zeroed rest
        return 0

    def write(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:  # noqa: D102
        # A view of libfuse's buffer instead of mfusepy's string_at copy: one memcpy less per MiB written.
        # The view is used only inside this callback, while the buffer is valid.
        data = memoryview((ctypes.c_char * size).from_address(ctypes.cast(buf, ctypes.c_void_p).value or 0)).cast("B")
        fi = fip.contents
        return int(self.operations.write(
            None if path is None else path.decode(self.encoding, self.errors), data, offset, fi.fh, bool(fi.writepage)
        ))

    def release(self, path: bytes | None, fip: Any) -> int:  # noqa: D102 - mfusepy's adapter minus its raw_fi branch
        return int(
            self.operations.release(None if path is None else path.decode(self.encoding, self.errors), fip.contents.fh)
        )

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:  # noqa: D102
        # mfusepy's adapter drops the file info: an ftruncate(2) on a descriptor opened for writing then reached
        # the operations as a path-only truncate, whose read-only check refused it (EACCES).
        fh = fip.contents.fh if fip else None
        return int(
            self.operations.truncate(None if path is None else path.decode(self.encoding, self.errors), length, fh)
        )

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:  # noqa: D102
        # libfuse passes utimensat's markers through: tv_nsec UTIME_NOW means "now", UTIME_OMIT "leave as is".
        # mfusepy's adapter read them as literal times, so touch wrote 1980-01-01.
        times = None
        if buf:
            now = time.time_ns()
            times = tuple(
                None
                if ts.tv_nsec == _UTIME_OMIT
                else now
                if ts.tv_nsec == _UTIME_NOW
                else ts.tv_sec * 1_000_000_000 + ts.tv_nsec
                for ts in (buf.contents.actime, buf.contents.modtime)
            )
        return int(self.operations.utimens(None if path is None else path.decode(self.encoding, self.errors), times))

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:  # noqa: D102
        # The operations give (name, mode, ino): with use_ino, libfuse hands st_ino to the kernel as d_ino,
        # so ls -i and find -inum agree with stat. mfusepy's adapter would set the mode only.
        st = mfusepy.c_stat()
        encoding, errors = self.encoding, self.errors
        for name, mode, ino in self.operations.readdir(
            None if path is None else path.decode(encoding, errors), fip.contents.fh
        ):
            st.st_mode = mode
            st.st_ino = ino
            if filler(buf, name.encode(encoding, errors), st, 0, 0) != 0:
                break
        return 0

    def open(self, path: bytes, fip: Any) -> int:  # noqa: D102
        fi = fip.contents
        name = path.decode(self.encoding, self.errors)
        ops = self.operations
        fi.fh = ops.open(name, fi.flags)
        _direct_if_write_only(fi)
        _direct_if_read_faulted(ops, name, fi)
        return 0

    def create(self, path: bytes, mode: int, fip: Any) -> int:  # noqa: D102
        fi = fip.contents
        name = path.decode(self.encoding, self.errors)
        ops = self.operations
        fi.fh = ops.create(name, mode, fi.flags)
        _direct_if_write_only(fi)
        _direct_if_read_faulted(ops, name, fi)
        return 0


def _direct_if_read_faulted(ops: Any, path: str, fi: Any) -> None:
    # While a read fault is armed (FaultingOps), a matching file is opened uncached: every read(2) then reaches
    # the daemon, where the fault can hit it, instead of being served from the page cache.
    uncached = getattr(ops, "uncached_reads", None)
    if uncached is not None and uncached(path):
        fi.direct_io = 1


def _direct_if_write_only(fi: Any) -> None:
    # A write-only handle bypasses the kernel's page cache (FOPEN_DIRECT_IO): its writes reach the daemon
    # straight from the writer's pages instead of being copied into 4 KiB cache pages first, which made
    # sequential writes 1.3-1.5x faster (docs/performance.md). It changes nothing a program can observe: a
    # write-only descriptor can neither read nor be mmapped, and the kernel drops the cached pages of the
    # written range for every other descriptor and mapping of the file (tests/integration/test_mount_cache.py).
    # Readable handles keep the page cache (docs/fuse-notes.md §2.2: direct_io on those would defeat it and break mmap).
    if (fi.flags & os.O_ACCMODE) == os.O_WRONLY:
        fi.direct_io = 1


__all__ = [
    "FUSE_CREATE",
    "FUSE_GETATTR",
    "FUSE_LOOKUP",
    "FUSE_MKDIR",
    "KernelNotifier",
    "after_request",
    "FastFUSE",
    "caller_pid",
    "current_fuse",
    "inode_notifier",
    "invalidate_path",
    "mfusepy",
    "request_header",
    "request_nodeid",
]

"""libfuse's single-threaded main loop, rebuilt so that it can spin briefly between requests.

``fuse_main_real`` (what mfusepy calls) parses the command line, creates the ``struct fuse``, mounts, installs
the signal handlers and runs ``fuse_loop``, which blocks in ``read(/dev/fuse)`` whenever the queue is empty.
Waking a blocked daemon costs more than the work of a small request on a VM: each create is three requests
(LOOKUP, CREATE, RELEASE), and on the 2-vCPU bench machine the daemon spent about 40% of its CPU entering and
leaving sleep (``finish_task_switch``, ``_raw_spin_unlock_irqrestore`` in perf).

:func:`fuse_main` does what ``fuse_main_real`` does for a foreground, single-threaded mount, with the same
public libfuse calls and the same return codes (1–6 for set-up failures, 8 when the loop ended with an error
such as a signal, 0 after an unmount), but its loop polls the device for a short window (``SIMVOL_FUSE_SPIN_US``,
default 50 µs) before blocking — only while requests arrive in a burst (:class:`SpinPolicy`), so an idle
daemon never spins. Measured effect: docs/performance.md, "Changes in the third round" and "Interpretation
(current)".
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SPIN_ENV = "SIMVOL_FUSE_SPIN_US"
DEFAULT_SPIN_US = 50

_V = ctypes.c_void_p


class _FuseArgs(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


class _FuseBuf(ctypes.Structure):  # struct fuse_buf (fuse_common.h)
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("flags", ctypes.c_int),
        ("mem", ctypes.c_void_p),
        ("fd", ctypes.c_int),
        ("pos", ctypes.c_int64),
    ]


# struct fuse_cmdline_opts starts with four ints, then ``char *mountpoint`` (every libfuse 3 release); the
# rest of it is not read here, and the buffer is larger than any version's struct.
_CMDLINE_OPTS_SIZE = 256
_MOUNTPOINT_OFFSET = 16


# struct fuse_in_header: len u32, opcode u32, unique u64, nodeid u64, … (linux/fuse.h)
FUSE_LOOKUP = 1  # opcodes (linux/fuse.h)
FUSE_GETATTR = 3
FUSE_MKDIR = 9
FUSE_CREATE = 35
_FUSE_BUF_IS_FD = 1 << 1
_serving: list[_FuseBuf] = []  # the buffer of the request being served (FUSE thread only)
after_request: list[Callable[[], None]] = []  # called on the FUSE thread after each request is answered


_HEADER = struct.Struct("=4xI8xQ")  # opcode, nodeid (native byte order, as the kernel writes it)
_header_view: list[Any] = [0, None]  # (address of libfuse's buffer, a view of its header): allocated once


def request_header() -> tuple[int, int]:
    """(opcode, node id) of the request being served — for LOOKUP, CREATE and MKDIR the node id is the
    directory's; (0, 0) outside a request. FUSE thread only."""
    if not _serving:
        return 0, 0
    buf = _serving[0]
    mem = buf.mem
    if not mem or buf.flags & _FUSE_BUF_IS_FD:
        return 0, 0
    if _header_view[0] != mem:
        _header_view[0] = mem
        _header_view[1] = (ctypes.c_char * _HEADER.size).from_address(mem)
    return _HEADER.unpack_from(_header_view[1])


def request_nodeid() -> int:
    """The FUSE node id (the kernel inode) of the request being served; 0 outside a request. FUSE thread
    only."""
    return request_header()[1]


def spin_ns_from_env() -> int:
    raw = os.environ.get(SPIN_ENV)
    if raw is None or raw == "":
        return DEFAULT_SPIN_US * 1000
    try:
        us = int(raw)
    except ValueError:
        log.warning("%s=%r is not a whole number of microseconds; using %d", SPIN_ENV, raw, DEFAULT_SPIN_US)
        return DEFAULT_SPIN_US * 1000
    return max(0, min(us, 10_000)) * 1000


def _bind(lib: ctypes.CDLL) -> None:
    lib.fuse_parse_cmdline.argtypes = [ctypes.POINTER(_FuseArgs), _V]
    lib.fuse_parse_cmdline.restype = ctypes.c_int
    lib.fuse_new.argtypes = [ctypes.POINTER(_FuseArgs), _V, ctypes.c_size_t, _V]
    lib.fuse_new.restype = _V
    lib.fuse_mount.argtypes = [_V, ctypes.c_char_p]
    lib.fuse_mount.restype = ctypes.c_int
    lib.fuse_get_session.argtypes = [_V]
    lib.fuse_get_session.restype = _V
    for name in ("fuse_set_signal_handlers", "fuse_session_exited", "fuse_session_fd"):
        getattr(lib, name).argtypes = [_V]
        getattr(lib, name).restype = ctypes.c_int
    for name in ("fuse_remove_signal_handlers", "fuse_session_reset", "fuse_unmount", "fuse_destroy"):
        getattr(lib, name).argtypes = [_V]
        getattr(lib, name).restype = None
    lib.fuse_session_receive_buf.argtypes = [_V, ctypes.POINTER(_FuseBuf)]
    lib.fuse_session_receive_buf.restype = ctypes.c_int
    lib.fuse_session_process_buf.argtypes = [_V, ctypes.POINTER(_FuseBuf)]
    lib.fuse_session_process_buf.restype = None
    lib.fuse_opt_free_args.argtypes = [ctypes.POINTER(_FuseArgs)]
    lib.fuse_opt_free_args.restype = None


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [_V]
_libc.free.restype = None


def make_fuse_main(lib: ctypes.CDLL, spin_ns: int) -> Callable[..., int]:
    """A drop-in for mfusepy's ``fuse_main_real(argc, argv, ops, ops_size, user_data)``."""
    _bind(lib)

    def fuse_main(argc: int, argv: Any, ops: Any, ops_size: int, user_data: Any) -> int:
        args = _FuseArgs(argc, ctypes.cast(argv, ctypes.POINTER(ctypes.c_char_p)), 0)
        opts = ctypes.create_string_buffer(_CMDLINE_OPTS_SIZE)
        mountpoint_p = ctypes.c_void_p.from_buffer(opts, _MOUNTPOINT_OFFSET)
        try:
            if lib.fuse_parse_cmdline(ctypes.byref(args), opts) != 0:
                return 1
            mountpoint = ctypes.cast(mountpoint_p.value, ctypes.c_char_p).value if mountpoint_p.value else None
            if not mountpoint:
                log.error("no mount point on the FUSE command line")
                return 2
            fuse = lib.fuse_new(ctypes.byref(args), ops, ops_size, user_data)
            if not fuse:
                return 3
            try:
                if lib.fuse_mount(fuse, mountpoint) != 0:
                    return 4
                se = lib.fuse_get_session(fuse)
                if lib.fuse_set_signal_handlers(se) != 0:
                    lib.fuse_unmount(fuse)
                    return 6
                try:
                    res = _run(lib, se, spin_ns)
                finally:
                    lib.fuse_remove_signal_handlers(se)
                    lib.fuse_unmount(fuse)
                return 8 if res else 0
            finally:
                lib.fuse_destroy(fuse)
        finally:
            if mountpoint_p.value:
                _libc.free(mountpoint_p.value)
            lib.fuse_opt_free_args(ctypes.byref(args))

    return fuse_main


class SpinPolicy:
    """When the loop spins before blocking (pure logic, unit-tested).

    Spin only after a request that came within the window of the daemon starting to wait (a burst). A spin
    that ends without a request means the burst is over — or that the client shares this CPU and cannot run
    while we spin; either way the next spin chances are skipped, twice as many after each fruitless spin (up
    to ``max_backoff``), and a spin that finds a request resets that. A client on another CPU thus gets a
    daemon that never sleeps mid-burst; one on the same CPU loses at most one window per ``max_backoff``
    requests; an idle daemon never spins.
    """

    __slots__ = ("backoff", "burst", "max_backoff", "skip", "window_ns")

    def __init__(self, window_ns: int, max_backoff: int = 64) -> None:
        self.window_ns = window_ns
        self.max_backoff = max_backoff
        self.burst = False
        self.backoff = 0
        self.skip = 0

    def should_spin(self) -> bool:
        """Asked before waiting for the next request."""
        if not self.burst:
            return False
        self.burst = False
        if self.skip:
            self.skip -= 1
            return False
        return True

    def spun(self, found: bool) -> None:
        if found:
            self.backoff = 0
            self.burst = True
        else:
            self.backoff = min(2 * self.backoff + 1, self.max_backoff)
            self.skip = self.backoff

    def received(self, waited_ns: int) -> None:
        """A request arrived after blocking for ``waited_ns`` (0 when a spin had already found it)."""
        if self.window_ns and (self.burst or waited_ns < self.window_ns):
            self.burst = True


def _run(lib: ctypes.CDLL, se: int, spin_ns: int) -> int:
    """fuse_session_loop (libfuse 3.14 lib/fuse_loop.c) with the spin of :class:`SpinPolicy`; its result."""
    buf = _FuseBuf()
    bufp = ctypes.byref(buf)
    receive, process, exited = lib.fuse_session_receive_buf, lib.fuse_session_process_buf, lib.fuse_session_exited
    poller = select.poll()
    poller.register(lib.fuse_session_fd(se), select.POLLIN)
    poll, now = poller.poll, time.monotonic_ns
    policy = SpinPolicy(spin_ns)
    res = 0
    _serving[:] = [buf]
    try:
        while not exited(se):
            if policy.should_spin():
                # Stay on the CPU for a moment: the next request of a burst is usually there within
                # microseconds, and finding it by polling is far cheaper than being woken for it.
                end = now() + spin_ns
                found = True
                while not poll(0):
                    if now() >= end:
                        found = False
                        break
                policy.spun(found)
                if exited(se):  # a signal's handler ran while we spun
                    break
            started = now()
            res = receive(se, bufp)
            if res == -errno.EINTR:
                continue
            if res <= 0:
                break
            policy.received(now() - started)
            process(se, bufp)
            if after_request:
                for hook in after_request:
                    hook()
    finally:
        _serving.clear()
        _libc.free(buf.mem)
    if res > 0:
        res = 0
    lib.fuse_session_reset(se)
    return res

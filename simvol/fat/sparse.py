"""Sparse-file helpers: punching holes and finding data (docs/fat32-notes.md §13).

CPython's ``os.posix_fallocate`` only allocates, so punching goes through libc with ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_fallocate = getattr(_libc, "fallocate64", _libc.fallocate)  # 64-bit offsets on every ABI
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02  # <linux/falloc.h>


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a range (it reads back as zeros). False where the host cannot punch; raises on real errors."""
    if length <= 0:
        return True
    if _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(err, os.strerror(err))


def zero_range(fd: int, offset: int, length: int) -> None:
    """Make [offset, offset+length) read as zeros: punch whole 4 KiB blocks, write zeros for the edges."""
    end = offset + length
    a = -(-offset // 4096) * 4096
    b = end // 4096 * 4096
    if b - a >= 65536 and punch_hole(fd, a, b - a):
        _write_zeros(fd, offset, a - offset)
        _write_zeros(fd, b, end - b)
    else:
        _write_zeros(fd, offset, length)


_ZEROS = bytes(1 << 20)


def _write_zeros(fd: int, offset: int, length: int) -> None:
    while length > 0:
        n = os.pwrite(fd, memoryview(_ZEROS)[: min(length, len(_ZEROS))], offset)
        offset += n
        length -= n


def allocated_bytes(path_or_fd: str | int) -> int:
    st = os.fstat(path_or_fd) if isinstance(path_or_fd, int) else os.stat(path_or_fd)
    return st.st_blocks * 512

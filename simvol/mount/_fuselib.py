"""Load mfusepy on libfuse 3, and the few libfuse calls mfusepy does not wrap.

mfusepy picks the library when imported and prefers libfuse 2 when both are installed (fuse.md §1), so the
choice is made here, before the import, and checked after it.
"""

from __future__ import annotations

import ctypes
import os

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

import mfusepy  # noqa: E402

if mfusepy.fuse_version_major != 3:  # pragma: no cover - depends on the host
    raise ImportError(
        f"simvol needs libfuse 3, but mfusepy loaded {mfusepy.fuse_version_major}.{mfusepy.fuse_version_minor}; "
        "install fuse3/libfuse3-3 (never the 'fuse' package)"
    )

_lib = mfusepy._libfuse
_lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_lib.fuse_invalidate_path.restype = ctypes.c_int


def current_fuse() -> int | None:
    """The ``struct fuse *`` of the running loop; valid only inside a callback (e.g. init)."""
    ctx = _lib.fuse_get_context()
    return ctx.contents.fuse if ctx else None


def invalidate_path(fuse_ptr: int, path: str) -> int:
    """Drop the kernel's cached pages and attributes of ``path`` (any thread may call it)."""
    return _lib.fuse_invalidate_path(ctypes.c_void_p(fuse_ptr), os.fsencode(path))


__all__ = ["mfusepy", "current_fuse", "invalidate_path"]

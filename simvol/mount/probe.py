"""Whether FUSE mounts can work here, and if not, why: the probe the pytest plugin skips by and ``simvol info``
reports. It loads nothing (no libfuse, no mfusepy), so asking is cheap and safe anywhere."""

from __future__ import annotations

import ctypes.util
import functools
import os
import shutil


@functools.cache
def fuse_unavailable_reason() -> str | None:
    """Why FUSE mounts cannot work here, or None when they can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (containers need --device /dev/fuse --cap-add SYS_ADMIN)"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/fuse cannot be opened read-write: {e.strerror or e}"
    os.close(fd)
    fusermount = shutil.which("fusermount3")
    if fusermount is None:
        return "fusermount3 is not on PATH (install the Debian package fuse3, never 'fuse')"
    if os.geteuid() != 0 and not os.stat(fusermount).st_mode & 0o4000:
        return f"{fusermount} is not setuid root, so unprivileged mounts fail with EPERM"
    if ctypes.util.find_library("fuse3") is None:
        return "libfuse 3 not found by ctypes.util.find_library('fuse3') (install libfuse3-3)"
    return None

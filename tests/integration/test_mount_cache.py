"""The kernel's caches over the mount stay coherent with what the daemon holds.

Write-only handles are opened in direct I/O (their writes skip the page cache); every other handle is cached
(``kernel_cache``). These tests show, from other processes, that a reader never sees stale bytes: not through a
descriptor that had the old data cached, not through a shared mapping, not after a truncate.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.fuse

COHERENCE = r"""
import mmap, os
p = os.environ["MP"] + "/coherent.bin"
MiB = 1 << 20
with open(p, "wb") as f:                       # a cached (read-write capable) handle writes the old data
    f.write(b"A" * MiB)
r = os.open(p, os.O_RDONLY)
assert os.pread(r, MiB, 0) == b"A" * MiB       # ... and a reader caches it
m = mmap.mmap(r, MiB, prot=mmap.PROT_READ)
assert m[:4] == b"AAAA"

w = os.open(p, os.O_WRONLY)                    # a write-only (direct I/O) handle overwrites it
os.pwrite(w, b"B" * MiB, 0)
assert os.pread(r, MiB, 0) == b"B" * MiB, "a cached reader saw the old bytes while the writer is open"
assert m[: MiB] == b"B" * MiB, "a shared mapping saw the old bytes"
os.pwrite(w, b"x" * 100, 5000)                 # a small write in the middle of a cached page
os.close(w)
expect = b"B" * 5000 + b"x" * 100 + b"B" * (MiB - 5100)
assert os.pread(r, MiB, 0) == expect
assert m[: MiB] == expect

w = os.open(p, os.O_WRONLY | os.O_APPEND)      # appends extend the size every descriptor sees
os.write(w, b"C" * 4096)
os.close(w)
assert os.fstat(r).st_size == MiB + 4096
assert os.pread(r, 8, MiB) == b"CCCCCCCC"

w = os.open(p, os.O_WRONLY)
os.ftruncate(w, 3000)
os.close(w)
assert os.fstat(r).st_size == 3000
assert os.pread(r, MiB, 0) == expect[:3000]
m.close()
os.close(r)
print("ok")
"""

RESIDENT = r"""
import ctypes, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]

def resident(path, size):
    fd = os.open(path, os.O_RDONLY)
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    vec = ctypes.create_string_buffer(size // 4096)
    assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
    os.close(fd)
    return sum(b & 1 for b in vec.raw)

size = 4 << 20
for name, flags in (("wo.bin", os.O_WRONLY), ("rw.bin", os.O_RDWR)):
    fd = os.open(os.environ["MP"] + "/" + name, flags | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, os.urandom(size))
    os.close(fd)
    print(name, resident(os.environ["MP"] + "/" + name, size))
"""


def test_readers_see_writes_of_write_only_handles(mounted_volume):
    vol = mounted_volume
    assert vol.py(COHERENCE).stdout.strip() == "ok"
    vol.dismount()
    vol.assert_fsck_clean()
    data = vol.mcopy("coherent.bin")
    assert data == b"B" * 3000


def test_write_only_handles_bypass_the_page_cache(mounted_volume):
    """The mechanism behind the write speed: a write-only handle's data never lands in FUSE's page cache,
    a read-write handle's does (write-through)."""
    out = dict(line.split() for line in mounted_volume.py(RESIDENT).stdout.split("\n") if line)
    assert int(out["wo.bin"]) == 0, out
    assert int(out["rw.bin"]) > 0, out

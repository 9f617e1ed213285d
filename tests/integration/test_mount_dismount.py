"""Safe dismount refuses while anything holds the volume and names the holders; forced dismount does not.

Every test runs on a FAT32 and an NTFS volume (``any_volume``): the same promises, two mechanisms (simvol's engine
behind its FUSE session; ntfs-3g at the mount point, supervised)."""

from __future__ import annotations

import errno
import os

import pytest

from simvol.fat import FatFileSystem
from simvol.image import Image
from simvol.mount import find_mount, wait_gone

pytestmark = pytest.mark.fuse

OPEN_HOLDER = r"""
import os, sys
fd = os.open(os.environ["MP"] + "/held.txt", os.O_RDONLY)
print("ready", flush=True)
sys.stdin.readline()
"""

MMAP_HOLDER = r"""
import mmap, os, sys
fd = os.open(os.environ["MP"] + "/held.txt", os.O_RDONLY)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
os.close(fd)
assert m[:4] == b"held"
print("ready", flush=True)
sys.stdin.readline()
"""

OPATH_HOLDER = r"""
import os, sys
fd = os.open(os.environ["MP"] + "/held.txt", os.O_PATH)
print("ready", flush=True)
sys.stdin.readline()
"""


def _holders_of(result: dict, pid: int) -> list[dict]:
    return [h for h in result.get("holders", []) if h["pid"] == pid]


def _assert_refused_then_released(vol, holder, kind: str, path: str) -> None:
    r = vol.dismount(force=False)
    assert r.get("ok") is False and r.get("in_use") is True, r
    mine = _holders_of(r, holder.pid)
    assert mine, f"holder {holder.pid} not named: {r['holders']}"
    assert any(h["kind"] == kind and h["path"] == path for h in mine), mine
    assert all(h["process"] for h in mine)
    # A refused dismount leaves the volume fully usable.
    assert find_mount(vol.mountpoint) is not None
    assert vol.sh("echo still > after.txt && cat after.txt").stdout == "still\n"
    holder.kill()
    holder.wait(10)
    assert vol.dismount(force=False) == {"ok": True, "forced": False}
    assert find_mount(vol.mountpoint) is None
    assert not os.path.exists(vol.mountpoint)
    vol.assert_fsck_clean()


def test_open_file_blocks_safe_dismount(any_volume):
    vol = any_volume
    vol.sh("echo held > held.txt")
    holder = vol.spawn_py(OPEN_HOLDER)
    _assert_refused_then_released(vol, holder, "file", vol.mountpoint + "/held.txt")


def test_cwd_holder_blocks_safe_dismount(any_volume):
    vol = any_volume
    vol.sh("mkdir work")
    holder = vol.spawn(["sleep", "30"], cwd=vol.mountpoint + "/work", ready=None)
    assert vol.wait_until(lambda: os.readlink(f"/proc/{holder.pid}/cwd").endswith("/work"))
    _assert_refused_then_released(vol, holder, "cwd", vol.mountpoint + "/work")


def test_mmap_holder_blocks_safe_dismount(any_volume):
    vol = any_volume
    vol.sh("echo held > held.txt")
    holder = vol.spawn_py(MMAP_HOLDER)
    _assert_refused_then_released(vol, holder, "mmap", vol.mountpoint + "/held.txt")


def test_o_path_holder_blocks_safe_dismount(any_volume):
    vol = any_volume
    vol.sh("echo held > held.txt")
    holder = vol.spawn_py(OPATH_HOLDER)
    # O_PATH never reaches FUSE: the daemon's table is empty, only the /proc scan finds it.
    assert vol.client.status()["handles"] == []
    _assert_refused_then_released(vol, holder, "file", vol.mountpoint + "/held.txt")


def test_holders_request_lists_without_dismounting(any_volume):
    vol = any_volume
    vol.sh("echo held > held.txt && mkdir work")
    h1 = vol.spawn_py(OPEN_HOLDER)
    h2 = vol.spawn(["sleep", "30"], cwd=vol.mountpoint + "/work", ready=None)
    assert vol.wait_until(lambda: os.readlink(f"/proc/{h2.pid}/cwd").endswith("/work"))
    found = {(h["pid"], h["kind"]) for h in vol.client.holders()}
    assert {(h1.pid, "file"), (h2.pid, "cwd")} <= found
    assert vol.client.status()["ok"]


FORCED_HOLDER = r"""
import os, sys
mp = os.environ["MP"]
fd = os.open(mp + "/data.bin", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"A" * 10000)
os.fsync(fd)
other = os.open(mp + "/other.txt", os.O_RDONLY)
print("ready", flush=True)
sys.stdin.readline()
for what in ("read", "write", "read-other", "fsync"):
    try:
        if what == "read":
            os.pread(fd, 5, 0)
        elif what == "write":
            os.pwrite(fd, b"B" * 100, 0)
        elif what == "read-other":
            os.pread(other, 5, 0)
        else:
            os.fsync(fd)
        print(what, "OK", flush=True)
    except OSError as e:
        print(what, "ERR", e.errno, flush=True)
"""


def test_forced_dismount_makes_handles_stale(any_volume):
    vol = any_volume
    vol.sh("echo other > other.txt")
    holder = vol.spawn_py(FORCED_HOLDER)
    r = vol.dismount(force=False)
    assert r["in_use"] and {h["kind"] for h in _holders_of(r, holder.pid)} == {"file"}
    info = vol.info
    r = vol.client.dismount(force=True)
    assert r == {"ok": True, "forced": True}
    # The call returned only once the mount was gone and the image closed.
    assert find_mount(vol.mountpoint) is None
    assert not os.path.exists(vol.mountpoint)
    assert wait_gone(info.pid, info.create_time, 10)
    with Image.open(vol.image):  # the daemon's lock is gone: an exclusive open succeeds
        pass

    holder.stdin.write("\n")
    holder.stdin.flush()
    out, err = holder.communicate(timeout=30)
    results = dict(line.split(" ", 1) for line in out.splitlines())
    for what in ("read", "write", "read-other", "fsync"):
        assert results[what].split()[0] == "ERR", (what, out, err)
        assert int(results[what].split()[1]) in (errno.EIO, errno.ENOTCONN), (what, out)

    vol.assert_fsck_clean()
    if vol.fs == "FAT32":  # the engine's view too
        with Image.open(vol.image, writable=False) as im:
            fs = FatFileSystem(im.fd, im.fs_size, writable=False)
            assert fs.stat("/data.bin").size == 10000
            assert fs.read("/data.bin", 20000, 0) == b"A" * 10000  # fsynced data is there, the stale write is not
            assert fs.read("/other.txt", 100, 0) == b"other\n"
    assert vol.mcopy("/data.bin") == b"A" * 10000  # fsynced data is there, the stale write is not
    assert vol.mcopy("/other.txt") == b"other\n"


def test_forced_dismount_with_cwd_and_mmap_holders(any_volume):
    vol = any_volume
    vol.sh("echo held > held.txt && mkdir work")
    h1 = vol.spawn_py(MMAP_HOLDER)
    h2 = vol.spawn(["sleep", "30"], cwd=vol.mountpoint + "/work", ready=None)
    assert vol.wait_until(lambda: os.readlink(f"/proc/{h2.pid}/cwd").endswith("/work"))
    assert vol.dismount(force=True) == {"ok": True, "forced": True}
    assert find_mount(vol.mountpoint) is None
    # The holders survive; their cwd/mapping now point at a detached, dead connection.
    assert h1.poll() is None and h2.poll() is None
    vol.assert_fsck_clean()
    assert vol.mcopy("/held.txt") == b"held\n"


def test_remount_after_forced_dismount(any_volume):
    """After a forced dismount the same image mounts again and serves the old data."""
    vol = any_volume
    vol.sh("echo keep > keep.txt")
    holder = vol.spawn_py(OPEN_HOLDER.replace("held.txt", "keep.txt"))
    assert vol.dismount(force=True)["ok"]
    holder.kill()
    holder.wait(10)
    vol.mount()
    st = vol.client.status()
    assert st["repaired"] == [], st["repaired"]  # a forced dismount still leaves a clean file system
    assert vol.sh("cat keep.txt").stdout == "keep\n"
    assert vol.dismount() == {"ok": True, "forced": False}


@pytest.mark.parametrize("force", [False, True])
def test_dismount_of_idle_volume(any_volume, force):
    vol = any_volume
    vol.py("import os; open(os.environ['MP'] + '/x', 'w').write('x')")
    assert vol.dismount(force=force) == {"ok": True, "forced": force}
    assert find_mount(vol.mountpoint) is None and not os.path.exists(vol.mountpoint)
    assert not os.path.exists(vol.info.socket)
    vol.assert_fsck_clean()

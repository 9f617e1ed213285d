"""The daemon itself: libfuse 3, the handle table, the control socket's permissions, the image lock."""

from __future__ import annotations

import os
import stat

import pytest

from simvol.mount import MountError, find_mount, start_daemon

pytestmark = pytest.mark.fuse

HOLD_TWO = r"""
import os, sys
mp = os.environ["MP"]
a = os.open(mp + "/a.txt", os.O_RDONLY)
b = os.open(mp + "/b.txt", os.O_RDONLY)
print("ready", flush=True)
sys.stdin.readline()
print(os.pread(a, 100, 0).decode(), os.pread(b, 100, 0).decode(), flush=True)
os.close(a)
print("closed a", flush=True)
sys.stdin.readline()
print(os.pread(b, 100, 0).decode(), flush=True)
"""


def test_libfuse3_loaded(mounted_volume):
    from simvol.mount._fuselib import mfusepy

    assert mfusepy.fuse_version_major == 3
    # The daemon process itself mapped libfuse3, not libfuse 2.
    with open(f"/proc/{mounted_volume.info.pid}/maps") as f:
        libs = {line.split()[-1].rsplit("/", 1)[-1] for line in f if ".so" in line}
    assert any(lib.startswith("libfuse3.so") for lib in libs), sorted(libs)
    assert not any(lib.startswith("libfuse.so") for lib in libs), sorted(libs)
    entry = find_mount(mounted_volume.mountpoint)
    assert entry is not None and entry.fstype == "fuse.simvol"
    assert entry.source == f"simvol:{mounted_volume.volume_id}"


def test_file_handle_round_trip(mounted_volume):
    """open returns fh N, read and release receive N (docs/fuse-notes.md §1: mfusepy issue #39).

    The daemon serves a read only through a handle it knows (no fallback to the path), so a correct read
    proves the fh came back; release of the wrong fh would leave the wrong entry in the handle table.
    """
    vol = mounted_volume
    vol.sh('printf AAAA > a.txt; printf BBBB > b.txt')
    # RELEASE reaches the daemon after close() returns (docs/fuse-notes.md §6): wait for the shell's handles to go.
    assert vol.wait_until(lambda: vol.client.status()["handles"] == []), vol.client.status()["handles"]
    holder = vol.spawn_py(HOLD_TWO)

    # open/create returned a handle the daemon keeps, under the opener's pid.
    handles = vol.client.status()["handles"]
    mine = sorted(h["path"] for h in handles if h["pid"] == holder.pid and not h["dir"])
    assert mine == ["/a.txt", "/b.txt"], handles
    assert not any(h["stale"] or h["writable"] for h in handles)

    # read through each handle gets that file's data; release of a's fh drops a's entry, not b's.
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().split() == ["AAAA", "BBBB"]
    assert holder.stdout.readline().strip() == "closed a"
    assert vol.wait_until(lambda: [h["path"] for h in vol.client.status()["handles"] if not h["dir"]] == ["/b.txt"])
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "BBBB"
    assert holder.wait(10) == 0
    assert vol.wait_until(lambda: vol.client.status()["handles"] == []), vol.client.status()["handles"]
    assert vol.dismount() == {"ok": True, "forced": False}


def test_control_socket_and_run_dir_are_private(mounted_volume):
    vol = mounted_volume
    run = os.stat(vol.run_dir)
    assert stat.S_ISDIR(run.st_mode) and stat.S_IMODE(run.st_mode) == 0o700
    sock = os.lstat(vol.info.socket)
    assert stat.S_ISSOCK(sock.st_mode)
    assert stat.S_IMODE(sock.st_mode) == 0o600
    assert os.path.dirname(vol.info.socket) == vol.run_dir
    assert stat.S_IMODE(os.lstat(vol.info.log).st_mode) == 0o600


def test_second_mount_of_same_image_is_refused(mounted_volume, tmp_path):
    vol = mounted_volume
    vol.sh("echo first > keep.txt")
    other_mp = str(tmp_path / "volumes" / "second")
    other_run = os.path.join(os.path.dirname(vol.run_dir), "run2")
    with pytest.raises(MountError) as ei:
        start_daemon(vol.image, other_mp, other_run, vol.volume_id + "-2", timeout=10)
    msg = str(ei.value).lower()
    assert vol.image in str(ei.value)
    assert "in use" in msg, str(ei.value)
    assert find_mount(other_mp) is None
    assert not os.path.exists(other_mp)
    # The first mount is untouched and still serves.
    assert vol.sh("cat keep.txt").stdout == "first\n"
    assert vol.client.status()["ok"]
    # Same mount point: refused before any daemon starts.
    with pytest.raises(MountError):
        start_daemon(vol.image, vol.mountpoint, other_run, vol.volume_id + "-3", timeout=10)
    assert vol.sh("cat keep.txt").stdout == "first\n"

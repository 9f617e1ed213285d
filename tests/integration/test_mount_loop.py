"""The daemon's own FUSE loop (simvol/mount/_loop.py): same behaviour with and without spinning, and the
ways a loop ends — unmount, and a signal to the daemon."""

from __future__ import annotations

import os
import signal

import pytest

from simvol.mount import find_mount, wait_gone

pytestmark = pytest.mark.fuse

WORKLOAD = r"""
import os
mp = os.environ["MP"]
os.mkdir(mp + "/d")
for i in range(300):
    with open(mp + "/d/file-%03d.txt" % i, "w") as f:
        f.write("x" * i)
with open(mp + "/big.bin", "wb") as f:
    f.write(os.urandom(3 << 20))
    f.flush()
    os.fsync(f.fileno())
assert sorted(os.listdir(mp + "/d")) == ["file-%03d.txt" % i for i in range(300)]
assert all(os.path.getsize(mp + "/d/file-%03d.txt" % i) == i for i in range(300))
print("ok")
"""


@pytest.mark.parametrize("spin_us", ["0", "50"])
def test_workload_with_and_without_spin(volume_factory, monkeypatch, spin_us):
    monkeypatch.setenv("SIMVOL_FUSE_SPIN_US", spin_us)  # the daemon inherits the environment
    vol = volume_factory()
    with open(f"/proc/{vol.info.pid}/environ", "rb") as f:
        assert f"SIMVOL_FUSE_SPIN_US={spin_us}".encode() in f.read().split(b"\0")
    assert vol.py(WORKLOAD).stdout.strip() == "ok"
    res = vol.dismount()
    assert res["ok"], res
    vol.assert_fsck_clean()
    assert vol.mcopy("d/file-299.txt") == b"x" * 299


def test_sigterm_ends_the_loop_and_leaves_a_clean_image(volume_factory):
    """libfuse's signal handlers stay installed around our loop: SIGTERM ends it, the daemon unmounts, marks
    the image clean and exits 0 (what fuse_main_real's loop did)."""
    vol = volume_factory()
    vol.sh("echo data > kept.txt")
    os.kill(vol.info.pid, signal.SIGTERM)
    assert wait_gone(vol.info.pid, vol.info.create_time, 10), "the daemon ignored SIGTERM"
    assert find_mount(vol.mountpoint) is None
    with open(vol.info.log) as f:
        assert "exit 0" in f.read().splitlines()[-1]
    vol.assert_fsck_clean()
    assert vol.mcopy("kept.txt") == b"data\n"

"""scripts/check-fuse (run by scripts/setup): says whether the calling user can use FUSE, and the exact fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-fuse"


def run(device: str, *, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(SCRIPT)]
    if as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, SIMVOL_FUSE_DEVICE=device))


def test_a_missing_device_names_both_fixes(tmp_path: Path) -> None:
    r = run(str(tmp_path / "fuse"))
    assert r.returncode == 1
    assert "does not exist" in r.stderr
    assert "sudo modprobe fuse" in r.stderr and "--device /dev/fuse --cap-add SYS_ADMIN" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a device-like file another user cannot open")
def test_a_device_the_user_cannot_open_gets_the_group_and_chmod_fixes() -> None:
    top = Path(tempfile.mkdtemp(prefix="svf-", dir="/tmp"))  # pytest's tmp_path is private to root
    os.chmod(top, 0o755)
    dev = top / "fuse"
    dev.touch()
    os.chown(dev, 0, 6)  # group "disk" on Debian (gid 6)
    os.chmod(dev, 0o660)
    r = run(str(dev), as_nobody=True)
    assert r.returncode == 1, r.stderr
    assert "cannot be opened read-write by nobody (mode 660" in r.stderr
    assert "sudo usermod -aG" in r.stderr and f"sudo chmod 0666 {dev}" in r.stderr
    os.chmod(dev, 0o666)
    r = run(str(dev), as_nobody=True)
    assert "cannot be opened" not in r.stderr
    shutil.rmtree(top)


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is absent here")
def test_the_real_device_as_this_user() -> None:
    r = run("/dev/fuse")
    if os.geteuid() == 0:
        assert r.returncode == 0 and "is usable by" in r.stderr, r.stderr

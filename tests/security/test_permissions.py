"""Modes of everything simvol creates in a root (docs/architecture.md, The root: state directories 0700), and the
roots it refuses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from simvol import VolumeService
from simvol.errors import VdsError


def mode(p: str | Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_state_directories_are_private(tmp_path: Path):
    svc = VolumeService(tmp_path / "root")
    r = svc.root
    for d in (r.path, r.images, r.volumes, r.drives, r.run, r.locks):
        assert mode(d) == 0o700, f"{d} is {mode(d):04o}, not 0700"
    # The simulated system drive stands for C:\ and is world-readable by design; it is reachable only through the
    # private root, so nobody else can use it.
    assert mode(r.system_drive) == 0o755
    assert mode(r.database) == 0o600
    with r.lock("probe"):
        assert mode(os.path.join(r.locks, "probe.lock")) == 0o600
    svc.close()


def test_loose_modes_are_tightened(tmp_path: Path):
    root = tmp_path / "root"
    VolumeService(root).close()
    for sub in ("", "images", "volumes", "drives", "run", "run/locks"):
        os.chmod(root / sub, 0o755)
    r = VolumeService(root)
    for d in (r.root.path, r.root.images, r.root.volumes, r.root.drives, r.root.run, r.root.locks):
        assert mode(d) == 0o700
    r.close()


@pytest.mark.fuse
def test_daemon_files_are_private(service: VolumeService):
    vol = service.create_volume(40 << 20)
    info = service.mounter.daemon(str(vol.id))
    assert info is not None
    assert stat.S_ISSOCK(os.lstat(info.socket).st_mode)
    assert mode(info.socket) == 0o600
    assert mode(info.log) == 0o600
    assert mode(os.path.join(service.root.run, str(vol.id) + ".pid")) == 0o600
    assert mode(vol.image) == 0o600
    assert os.lstat(vol.mount_path).st_uid == os.geteuid()


def test_shared_directory_is_never_a_root(tmp_path: Path):
    """Found here: `--root /tmp` (or any sticky/world-writable directory) was chmodded to 0700."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(VdsError) as ei:
        VolumeService(shared)
    assert ei.value.code == "E_ACCESSDENIED"
    assert "shared directory" in ei.value.message
    assert mode(shared) == 0o1777
    assert os.listdir(shared) == []
    os.chmod(shared, 0o777)  # world-writable without the sticky bit: the same
    with pytest.raises(VdsError):
        VolumeService(shared)
    assert mode(shared) == 0o777


def test_empty_root_is_not_the_current_directory(tmp_path: Path, monkeypatch):
    """Found here: `--root ''` made the current directory the root and chmodded it 0700."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.chmod(cwd, 0o755)
    monkeypatch.chdir(cwd)
    for bad in ("", "a\0b"):
        with pytest.raises(VdsError) as ei:
            VolumeService(bad)
        assert ei.value.code == "E_INVALIDARG"
    assert mode(cwd) == 0o755 and os.listdir(cwd) == []


def test_root_owned_by_another_user_is_refused(tmp_path: Path, test_user):
    root = tmp_path / "theirs"
    root.mkdir()
    os.chown(root, test_user.uid, test_user.gid)
    with pytest.raises(VdsError) as ei:
        VolumeService(root)
    assert ei.value.code == "E_ACCESSDENIED"
    assert os.listdir(root) == [] and os.lstat(root).st_uid == test_user.uid


def test_cli_empty_root(tmp_path: Path):
    """`simvol --root '' list` fails with E_INVALIDARG and leaves the current directory alone."""
    import json
    import subprocess
    import sys

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.chmod(cwd, 0o755)
    simvol = str(Path(sys.executable).with_name("simvol"))
    env = {k: v for k, v in os.environ.items() if k != "SIMVOL_ROOT"}
    r = subprocess.run([simvol, "--root", "", "--json", "list"], capture_output=True, text=True, cwd=cwd, env=env,
                       timeout=60)
    obj = json.loads(r.stdout)
    assert r.returncode == 1 and obj["code"] == "E_INVALIDARG", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert mode(cwd) == 0o755 and os.listdir(cwd) == []

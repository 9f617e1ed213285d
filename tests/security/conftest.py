"""Fixtures for the security tests: a service on a private root, the unprivileged test user, snapshots of the
places planted symlinks point at, and a full teardown (every volume force-detached, no mount left)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import userkit

from simvol import VolumeService
from simvol.mount import cleanup_stale, simvol_mounts


@pytest.fixture
def service(tmp_path: Path) -> Iterator[VolumeService]:
    svc = VolumeService(tmp_path / "root")
    yield svc
    for v in svc.registry.volumes():
        try:
            svc.volume(v.id).detach(force=True)
        except Exception:  # noqa: BLE001 - go on and clean the mounts
            pass
    svc.close()
    for e in simvol_mounts(str(tmp_path)):
        try:
            cleanup_stale(e.mountpoint)
        except Exception:  # noqa: BLE001
            subprocess.run(["fusermount3", "-uz", "--", e.mountpoint], capture_output=True, timeout=10)
    assert not simvol_mounts(str(tmp_path)), "simvol mounts left behind"


@pytest.fixture(scope="session")
def test_user() -> userkit.TestUser:
    u = userkit.ensure_user()
    if isinstance(u, str):
        pytest.skip(u)
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root")
    return u


class Outside:
    """A directory outside the root that planted symlinks point at; ``unchanged()`` compares it with its start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        (path / "file").write_text("keep me\n")
        (path / "dir").mkdir()
        os.chmod(path / "file", 0o640)
        os.chmod(path / "dir", 0o750)
        self._before = self.snapshot()

    def snapshot(self) -> dict[str, tuple]:
        out = {}
        for p in [self.path, *sorted(self.path.rglob("*"))]:
            st = os.lstat(p)
            body = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p)] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, body)
        return out

    def unchanged(self) -> bool:
        now = self.snapshot()
        if now != self._before:
            raise AssertionError(f"outside the root changed: before {self._before}\nafter {now}")
        return True


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    return Outside(tmp_path / "outside")

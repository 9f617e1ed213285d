"""Fixtures of the reliability suites."""

from __future__ import annotations

import pytest

from simvol.service import VolumeService


@pytest.fixture
def root(tmp_path):
    """A private root for campaign trials; every volume left on it is deleted (forced) afterwards."""
    path = tmp_path / "root"
    yield str(path)
    svc = VolumeService(path)
    for v in svc.registry.volumes():
        try:
            svc.volume(v.id).delete(force=True)
        except Exception:  # teardown must not hide the test's own failure
            pass
    svc.close()

"""pytest plugin for simvol (registered through the ``pytest11`` entry point as ``simvol``).

Fixtures:

* ``simvol_service`` — a :class:`~simvol.VolumeService` on a private root under ``tmp_path``. Every volume
  is force-detached and every mount torn down at the end, even when the test failed.
* ``simvol_volume`` — a mounted FAT32 volume on that service. Options come from the ``simvol_volume``
  marker (``@pytest.mark.simvol_volume(size="64M", label="DATA", letter="E", roles=["hidden"])``) or from
  indirect parametrization (``@pytest.mark.parametrize("simvol_volume", [{"letter": "F"}], indirect=True)``).

Markers:

* ``simvol_volume(**options)`` — options for the ``simvol_volume`` fixture.
* ``simvol_fuse`` — skip the test, with the reason, where FUSE cannot mount here (no ``/dev/fuse``,
  no ``fusermount3``, no libfuse 3). The fixtures apply the same check themselves.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

DEFAULT_SIZE = 64 * 2**20


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


def _parse_size(value: Any) -> int:
    if isinstance(value, int):
        return value
    from .cli.sizes import parse_size

    return parse_size(str(value))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "simvol_volume(size='64M', label=None, letter=None, roles=()): options for simvol_volume"
    )
    config.addinivalue_line("markers", "simvol_fuse: skip where FUSE mounts are unavailable, with the reason")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("simvol_fuse") is not None:
        reason = fuse_unavailable_reason()
        if reason:
            pytest.skip(f"simvol: FUSE unavailable: {reason}")


@pytest.fixture
def simvol_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A VolumeService on a private root; torn down completely afterwards."""
    reason = fuse_unavailable_reason()
    if reason:
        pytest.skip(f"simvol: FUSE unavailable: {reason}")
    from .mount import cleanup_stale, simvol_mounts
    from .service import VolumeService

    root = tmp_path_factory.mktemp("simvol-root")
    svc = VolumeService(root)
    try:
        yield svc
    finally:
        try:
            for row in svc.registry.volumes():
                try:
                    svc.volume(row.id).detach(force=True)
                except Exception:  # noqa: BLE001 - teardown must go on
                    pass
        finally:
            for entry in simvol_mounts(str(root)):
                try:
                    cleanup_stale(entry.mountpoint)
                except Exception:  # noqa: BLE001
                    pass
            svc.close()


@pytest.fixture
def simvol_volume(request: pytest.FixtureRequest, simvol_service: Any) -> Any:
    """A mounted FAT32 volume; see the module docstring for options."""
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("simvol_volume")
    if marker is not None:
        options.update(marker.kwargs)
    if hasattr(request, "param"):
        options.update(request.param or {})
    size = _parse_size(options.pop("size", DEFAULT_SIZE))
    roles = options.pop("roles", ())
    if isinstance(roles, str):
        roles = [roles]
    return simvol_service.create_volume(
        size,
        options.pop("filesystem", "FAT32"),
        label=options.pop("label", None),
        letter=options.pop("letter", None),
        roles=roles,
        **options,
    )

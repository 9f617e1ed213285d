"""pytest plugin for simvol (registered through the ``pytest11`` entry point as ``simvol``).

Fixtures:

* ``simvol_service`` — a :class:`~simvol.VolumeService` on a private root under ``tmp_path``. Every volume
  is force-detached and every mount torn down at the end, even when the test failed.
* ``simvol_faults`` — the faults of ``simvol_volume`` (see :class:`simvol.service.faults.Faults`); every fault is
  cleared when the test ends.
* ``simvol_volume`` — a mounted volume on that service, FAT32 unless ``filesystem="NTFS"`` (``ntfs_native=True``
  for ntfs-3g's own semantics). Options come from the ``simvol_volume``
  marker (``@pytest.mark.simvol_volume(size="64M", label="DATA", letter="E", roles=["hidden"])``) or from
  indirect parametrization (``@pytest.mark.parametrize("simvol_volume", [{"letter": "F"}], indirect=True)``).
  ``files`` fills the new volume: a host directory, or a mapping of paths inside the volume (``/``-separated)
  to their contents (``str`` is written as UTF-8, ``bytes`` as is): ``files={"logs/app.log": "x", "b.bin": b""}``.

Markers:

* ``simvol_volume(**options)`` — options for the ``simvol_volume`` fixture.
* ``simvol_fault(**options)`` — a fault armed on ``simvol_volume`` for the test, repeatable:
  ``simvol_fault(op="write", errno="EIO", path="*.log")`` (the keywords of ``Faults.add``) or
  ``simvol_fault(method="Dismount", hresult="VDS_E_DEVICE_IN_USE")`` (those of ``Faults.add_method``).
* ``simvol_fuse`` — skip the test, with the reason, where FUSE cannot mount here (no ``/dev/fuse``,
  no ``fusermount3``, no libfuse 3). The fixtures apply the same check themselves.

The CI guard: with ``CI`` set (to anything but ``0``/``false``/``no``), with ``SIMVOL_REQUIRE_FUSE=1`` or with
``--simvol-require-fuse``, a session that selected FUSE tests (marked ``simvol_fuse``, or using
``simvol_service`` / ``simvol_volume``) and ran none of them fails: a CI job on a runner without a usable
``/dev/fuse`` would otherwise pass while testing nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .mount.probe import fuse_unavailable_reason

DEFAULT_SIZE = 64 * 2**20


def _write_tree(files: Mapping[str, str | bytes], top: Path) -> Path:
    """The ``files`` mapping as a host tree under ``top``, for create_volume(files=...)."""
    for rel, content in files.items():
        parts = [p for p in str(rel).replace("\\", "/").split("/") if p]
        if not parts or any(p == ".." for p in parts):
            raise ValueError(f"simvol_volume(files=...): {rel!r} is not a path inside the volume")
        target = top.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content, encoding="utf-8")
        else:
            target.write_bytes(content)
    return top


def _parse_size(value: Any) -> int:
    if isinstance(value, int):
        return value
    from .cli.sizes import parse_size

    return parse_size(str(value))


_FIXTURES = frozenset({"simvol_service", "simvol_volume", "simvol_faults"})
_SELECTED = pytest.StashKey[set[str]]()  # node ids of the FUSE tests selected to run
_RAN = pytest.StashKey[set[str]]()  # node ids of those that ran (not skipped)
_GUARD_MESSAGE = pytest.StashKey[str]()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _fuse_required(config: pytest.Config) -> str | None:
    """Why this session must run its FUSE tests (CI, SIMVOL_REQUIRE_FUSE, the option), or None."""
    if config.getoption("simvol_require_fuse", False):
        return "--simvol-require-fuse"
    if os.environ.get("SIMVOL_REQUIRE_FUSE", "") == "1":
        return "SIMVOL_REQUIRE_FUSE=1"
    if _env_flag("CI"):
        return "CI is set"
    return None


def _is_fuse(item: pytest.Item) -> bool:
    return item.get_closest_marker("simvol_fuse") is not None or bool(
        _FIXTURES & set(getattr(item, "fixturenames", ()))
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("simvol").addoption(
        "--simvol-require-fuse",
        action="store_true",
        default=False,
        help="fail the session if FUSE tests were selected and none ran (also with CI or SIMVOL_REQUIRE_FUSE=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SELECTED] = set()
    config.stash[_RAN] = set()
    config.addinivalue_line(
        "markers", "simvol_volume(size='64M', label=None, letter=None, roles=()): options for simvol_volume"
    )
    config.addinivalue_line("markers", "simvol_fuse: skip where FUSE mounts are unavailable, with the reason")
    config.addinivalue_line(
        "markers",
        "simvol_fault(op=None, errno=None, method=None, hresult=None, **options): a fault armed on simvol_volume "
        "for the test (repeatable)",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    # After deselection (-k, -m): only what will actually run counts.
    session.config.stash[_SELECTED] = {item.nodeid for item in session.items if _is_fuse(item)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    # A test ran if its call phase was not a skip (an xfail counts as run), or its setup failed.
    if (report.when == "call" and (not report.skipped or hasattr(report, "wasxfail"))) or (
        report.when == "setup" and report.failed
    ):
        item.config.stash[_RAN].add(item.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    why = _fuse_required(config)
    if config.option.collectonly or why is None or session.shouldstop or session.shouldfail:
        return  # stopped early (-x, --maxfail): unreached tests say nothing, and the run failed already
    selected: set[str] = config.stash.get(_SELECTED, set())
    ran: set[str] = config.stash.get(_RAN, set())
    if not selected or selected & ran:
        return
    reason = fuse_unavailable_reason()
    message = (
        f"simvol: FUSE tests were collected but none ran: {len(selected)} test(s) need FUSE, all skipped ({why}). "
        + (f"Probe: {reason}." if reason else "The probe found FUSE usable; the tests skipped themselves.")
    )
    config.stash[_GUARD_MESSAGE] = message
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        print(f"ERROR: {message}", file=sys.stderr)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    message = config.stash.get(_GUARD_MESSAGE, None)
    if message:
        terminalreporter.write_sep("=", "simvol CI guard", red=True, bold=True)
        terminalreporter.write_line(f"ERROR: {message}", red=True)


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
def simvol_volume(request: pytest.FixtureRequest, simvol_service: Any) -> Iterator[Any]:
    """A mounted volume (FAT32, or ``filesystem="NTFS"``); see the module docstring for options."""
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
    files = options.pop("files", None)
    if isinstance(files, Mapping):
        files = _write_tree(files, request.getfixturevalue("tmp_path_factory").mktemp("simvol-files"))
    if files is not None:
        options["files"] = files
    volume = simvol_service.create_volume(
        size,
        options.pop("filesystem", "FAT32"),
        label=options.pop("label", None),
        letter=options.pop("letter", None),
        roles=roles,
        **options,
    )
    # Faults from @pytest.mark.simvol_fault(...), outermost first; all cleared when the test ends.
    for mark in reversed(list(request.node.iter_markers("simvol_fault"))):
        spec = dict(mark.kwargs)
        if "method" in spec:
            volume.faults.add_method(spec.pop("method"), spec.pop("hresult"), **spec)
        else:
            volume.faults.add(spec.pop("op"), spec.pop("errno", None), **spec)
    yield volume
    with contextlib.suppress(Exception):  # the service's teardown removes the volume anyway
        volume.faults.clear()


@pytest.fixture
def simvol_faults(simvol_volume: Any) -> Iterator[Any]:
    """The faults of ``simvol_volume`` (``.add(op, errno, path=..., ...)``, ``.add_method(...)``, ``.log()``,
    ``.surprise_removal()``); every fault is cleared when the test ends."""
    yield simvol_volume.faults
    with contextlib.suppress(Exception):
        simvol_volume.faults.clear()

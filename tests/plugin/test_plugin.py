"""The ``simvol`` pytest plugin, tested with pytester: fixtures, markers, teardown after failures, FUSE skip.

The inner sessions run in a subprocess (``runpytest_subprocess``) so that their mounts, daemons and the
monkeypatched FUSE probe never leak into this session. Their ``--basetemp`` is a short directory under
/tmp: a volume's control socket lives at ``ROOT/run/{GUID}.sock`` and AF_UNIX paths are limited to 107
bytes, which pytester's nested default base directories exceed.

``pytest_plugins`` is declared here and not in ``tests/plugin/conftest.py``: pytest refuses ``pytest_plugins``
in a conftest below the top level when the whole suite is collected from ``tests``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from simvol.mount import cleanup_stale, find_mount, simvol_mounts

pytest_plugins = ["pytester"]

INNER_TESTS = r'''
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simvol import VolumeFlag, VolumeService

MiB = 1 << 20
LOG = Path(__file__).with_name("mounts.txt")


def record(vol):
    with LOG.open("a") as f:
        f.write(vol.mount_path + "\n")


def py(code, *args, check=True):
    """Run python code in another process: the test process itself never touches a mount."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          check=check)


WRITE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
READ = "import sys; print(open(sys.argv[1]).read(), end='')"


@pytest.mark.simvol_fuse
def test_service(simvol_service, tmp_path):
    assert isinstance(simvol_service, VolumeService)
    assert simvol_service.volumes() == []
    v = simvol_service.create_volume(40 * MiB, label="SVC")
    record(v)
    assert v.state == "M"
    assert os.path.ismount(v.mount_path)
    assert v.mount_path.startswith(simvol_service.root.path + os.sep)


@pytest.mark.simvol_fuse
@pytest.mark.simvol_volume(size="48M", label="DATA", letter="E")
def test_marker_and_write(simvol_volume, simvol_service):
    v = simvol_volume
    record(v)
    assert v.get_properties().size == 48 * MiB
    assert v.label == "DATA"
    assert v.query_access_paths() == ["E:\\"]
    py(WRITE, os.path.join(simvol_service.resolve("E:\\"), "Hello.txt"), "hello from a subprocess")
    assert py(READ, simvol_service.resolve("E:\\HELLO.TXT")).stdout == "hello from a subprocess"


@pytest.mark.simvol_volume(roles=["hidden", "no-permanent-dismount"], label="HID")
def test_roles(simvol_volume):
    record(simvol_volume)
    flags = simvol_volume.get_properties().flags
    assert flags & VolumeFlag.HIDDEN
    assert not flags & VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED
    assert simvol_volume.query_access_paths() == []


@pytest.mark.simvol_volume(roles="readonly")
def test_single_role_as_string(simvol_volume):
    record(simvol_volume)
    assert simvol_volume.get_properties().flags & VolumeFlag.READONLY
    r = py(WRITE, os.path.join(simvol_volume.mount_path, "x.txt"), "x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr


@pytest.mark.simvol_volume(size="40M", label="MARKER")
@pytest.mark.parametrize(
    "simvol_volume",
    [{"letter": "F", "label": "ONE"}, {"size": 50 * MiB, "letter": "G:"}],
    indirect=True,
    ids=["one", "two"],
)
def test_indirect(simvol_volume, simvol_service):
    record(simvol_volume)
    paths = simvol_volume.query_access_paths()
    if paths == ["F:\\"]:
        assert simvol_volume.label == "ONE"  # the parameter overrides the marker
        assert simvol_volume.get_properties().size == 40 * MiB  # the marker fills in the rest
    else:
        assert paths == ["G:\\"]
        assert simvol_volume.label == "MARKER"
        assert simvol_volume.get_properties().size == 50 * MiB
    assert [v.id for v in simvol_service.volumes()] == [simvol_volume.id]


@pytest.mark.simvol_volume(files={"logs/app.log": "started\n", "data.bin": b"\x00\x01", "Top.txt": "t"})
def test_files_mapping(simvol_volume):
    record(simvol_volume)
    root = simvol_volume.mount_path
    assert subprocess.run(["cat", os.path.join(root, "logs", "app.log")], capture_output=True,
                          text=True).stdout == "started\n"
    assert Path(root, "data.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(root)) == ["Top.txt", "data.bin", "logs"]


def test_files_directory(simvol_service, tmp_path):
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "deep.txt").write_text("deep")
    vol = simvol_service.create_volume(40 * MiB, files=src)
    record(vol)
    assert Path(vol.mount_path, "a", "b", "deep.txt").read_text() == "deep"


HOLD = "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); print('ready', flush=True); sys.stdin.read()"


@pytest.mark.simvol_volume(label="FAIL", letter="Z")
def test_fails_while_a_file_is_held(simvol_volume):
    record(simvol_volume)
    path = os.path.join(simvol_volume.mount_path, "held.txt")
    py(WRITE, path, "held")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "ready"
    LOG.with_name("holder.pid").write_text(str(holder.pid))
    assert simvol_volume.holders(), "the holder is seen"
    assert False, "deliberate failure while the volume is mounted and in use"
'''

FAKE_NO_FUSE_CONFTEST = '''
import simvol.pytest_plugin

simvol.pytest_plugin.fuse_unavailable_reason = lambda: "simulated: /dev/fuse is missing"
'''

FAKE_NO_FUSE_TESTS = '''
import pytest


@pytest.mark.simvol_fuse
def test_marked():
    raise AssertionError("must not run without FUSE")


def test_service_fixture(simvol_service):
    raise AssertionError("must not run without FUSE")


@pytest.mark.simvol_volume(size="40M")
def test_volume_fixture(simvol_volume):
    raise AssertionError("must not run without FUSE")


def test_plain():
    pass
'''


@pytest.fixture
def short_basetemp() -> Iterator[Path]:
    """A short --basetemp for the inner session; every mount below it is checked and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="svp-", dir="/tmp"))
    yield base
    for entry in simvol_mounts(str(base)):
        try:
            cleanup_stale(entry.mountpoint)
        except Exception:  # noqa: BLE001 - best effort, the test has already failed
            pass
    shutil.rmtree(base, ignore_errors=True)


def _daemons_under(base: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "simvol.mount.daemon" in cmd and str(base) in cmd:
            found.append(p)
    return found


@pytest.mark.fuse
def test_fixtures_markers_and_teardown_after_failure(pytester: pytest.Pytester, short_basetemp: Path) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider", "-rfs",
                                           f"--basetemp={short_basetemp}", timeout=240)
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(["E * deliberate failure while the volume is mounted and in use",
                                 "FAILED test_inner.py::test_fails_while_a_file_is_held*"])

    mounts = (pytester.path / "mounts.txt").read_text().split()
    assert len(mounts) == 9, mounts
    assert all(m.startswith(str(short_basetemp)) for m in mounts), "roots live under the session's basetemp"
    assert len({str(Path(m).parent) for m in mounts}) == 9, "every test gets its own private root"
    for mp in mounts:
        entry = find_mount(mp)
        assert entry is None, f"{mp} is still mounted after the inner session"
    assert simvol_mounts(str(short_basetemp)) == []
    deadline = time.monotonic() + 10
    while _daemons_under(short_basetemp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _daemons_under(short_basetemp) == [], "a mount daemon outlived the inner session"
    holder_pid = int((pytester.path / "holder.pid").read_text())  # exits on EOF once its parent is gone
    deadline = time.monotonic() + 10
    while _alive(holder_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(holder_pid)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_fuse_unavailable_skips_with_reason(pytester: pytest.Pytester, short_basetemp: Path) -> None:
    pytester.makeconftest(FAKE_NO_FUSE_CONFTEST)
    pytester.makepyfile(test_nofuse=FAKE_NO_FUSE_TESTS)
    result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider", "-rs",
                                           f"--basetemp={short_basetemp}")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["SKIPPED*simvol: FUSE unavailable: simulated: /dev/fuse is missing*"])
    assert result.stdout.str().count("simulated: /dev/fuse is missing") >= 1


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "@pytest.mark.simvol_volume(*): options for simvol_volume",
        "@pytest.mark.simvol_fuse: skip where FUSE mounts are unavailable*",
        "@pytest.mark.simvol_fault(*): a fault armed on simvol_volume for the test (repeatable)",
    ])
    # and an unknown marker is still refused under --strict-markers (the check is live)
    pytester.makepyfile(test_typo="import pytest\n\n@pytest.mark.simvol_volumes\ndef test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*'simvol_volumes' not found in `markers` configuration option*"])


FAULT_TESTS = r'''
import os
import subprocess

import pytest

from simvol import VolumeInUseError


@pytest.mark.simvol_fault(op="write", errno="EIO", path="*.log")
@pytest.mark.simvol_fault(method="Dismount", hresult="VDS_E_DEVICE_IN_USE")
def test_marker_arms_faults_for_the_test(simvol_volume):
    root = simvol_volume.mount_path
    assert subprocess.run(["sh", "-c", f"echo x > {root}/a.log"]).returncode != 0
    assert subprocess.run(["sh", "-c", f"echo x > {root}/a.txt"]).returncode == 0
    with pytest.raises(VolumeInUseError):
        simvol_volume.dismount()
    assert sorted(f.get("op") or f.get("method") for f in simvol_volume.faults.list()) == ["Dismount", "write"]
    with open(os.environ["FAULTS_SEEN"], "w") as f:
        f.write(simvol_volume.mount_path)


def test_fixture_arms_and_logs(simvol_faults, simvol_volume):
    with simvol_faults.armed("create", "EACCES", path="nope.txt"):
        r = subprocess.run(["touch", f"{simvol_volume.mount_path}/nope.txt"])
        assert r.returncode != 0
    assert subprocess.run(["touch", f"{simvol_volume.mount_path}/nope.txt"]).returncode == 0  # cleared
    assert [e["op"] for e in simvol_faults.log()] == ["create"]
    simvol_faults.add("mkdir", "EIO")  # left armed: the fixture clears it


def test_next_test_starts_clean(simvol_volume):
    assert simvol_volume.faults.list() == []
'''


@pytest.mark.fuse
def test_fault_marker_and_fixture(pytester: pytest.Pytester, short_basetemp: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_faults_inner=FAULT_TESTS)
    seen = pytester.path / "seen.txt"
    monkeypatch.setenv("FAULTS_SEEN", str(seen))
    result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider", "-rfs",
                                           f"--basetemp={short_basetemp}", timeout=240)
    result.assert_outcomes(passed=3)
    assert seen.read_text().startswith(str(short_basetemp))  # the marked test ran on a real mount
    assert simvol_mounts(str(short_basetemp)) == []

"""The volume lock (issue #10 item 2; docs/behaviour.md, "Volume lock"): refused while the volume is in use; while
held only its holder (and its children) may use the volume, every other process gets EACCES and a dismounted volume
does not remount for them; it ends with its holder, SIGKILL included.

The lock is taken by ``simvol lock`` in its own process, so this test process is an *other* process.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from simvol.errors import VdsError
from simvol.mount import DaemonClient, read_pidfile
from simvol.service import Volume, VolumeService

Kit = Any  # the kit fixture (tests/service/conftest.py)

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def simvol_cmd(svc: VolumeService, *args: str) -> list[str]:
    return [sys.executable, "-m", "simvol", "--root", svc.root.path, *args]


def _locked_by(svc: VolumeService, v: Volume) -> int | None:
    info = read_pidfile(svc.root.run, str(v.id))
    assert info is not None
    return DaemonClient(info.socket).status().get("locked_by")


def _wait_locked(svc: VolumeService, v: Volume, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _locked_by(svc, v) is None:
        assert proc.poll() is None, f"simvol lock ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the lock was not taken"
        time.sleep(0.05)


def _wait_unlocked(svc: VolumeService, v: Volume, why: str = "the lock outlived its holder") -> None:
    """The daemon unlocks when it sees the holder's connection end: a moment after the holder does."""
    deadline = time.monotonic() + 10
    while _locked_by(svc, v) is not None:
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def _errno_here(path: str) -> int:
    try:
        with open(path, "rb") as f:
            f.read()
    except OSError as e:
        return e.errno or -1
    return 0


def test_only_the_holder_may_use_a_locked_volume(svc: VolumeService, kit: Kit, tmp_path: Path) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    base = os.path.join(svc.root.drives, "E")
    kit.write_file(os.path.join(base, "f.txt"), b"data")
    out = tmp_path / "seen"
    # COMMAND reads the file (allowed: it is the holder's child), then waits until the test says stop.
    code = f"import sys, time\nopen({str(out)!r}, 'wb').write(open(sys.argv[1], 'rb').read())\ntime.sleep(60)"
    proc = subprocess.Popen(simvol_cmd(svc, "lock", "E:", "--", sys.executable, "-c", code,
                                       os.path.join(base, "f.txt")), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_locked(svc, v, proc)
        assert _errno_here(os.path.join(base, "f.txt")) == errno.EACCES  # this process is not the holder
        os.stat(v.mount_path)  # the mount point itself still answers (ls -l ROOT/volumes)
        deadline = time.monotonic() + 30
        while not out.exists() or out.read_bytes() != b"data":
            assert time.monotonic() < deadline, "the holder's child could not read the volume"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)  # simvol lock ends COMMAND, then the lock
        proc.communicate(timeout=30)
    _wait_unlocked(svc, v)
    assert kit.read_file(os.path.join(base, "f.txt")) == b"data"  # unlocked: everyone again


def test_the_lock_is_refused_while_the_volume_is_in_use(svc: VolumeService, kit: Kit, tmp_path: Path) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    h = kit.holder("open", os.path.join(svc.root.drives, "E", "held.txt"))
    marker = tmp_path / "ran"
    r = subprocess.run(simvol_cmd(svc, "--json", "lock", "E:", "--", "touch", str(marker)), capture_output=True,
                       text=True, timeout=60)
    obj = json.loads(r.stdout)
    assert r.returncode == 1 and obj["code"] == "VDS_E_DEVICE_IN_USE"
    assert any(x["pid"] == h.pid for x in obj["holders"])
    assert not marker.exists(), "COMMAND must not run when the lock is refused"
    with pytest.raises(VdsError) as e, v.lock():
        pass
    assert e.value.code == "VDS_E_DEVICE_IN_USE" and any(x["pid"] == h.pid for x in e.value.holders)


def test_exit_status_and_json(svc: VolumeService, kit: Kit) -> None:
    svc.create_volume(40 * MiB, letter="E")
    r = subprocess.run(simvol_cmd(svc, "--json", "lock", "E:", "--", "sh", "-c", "echo from-command; exit 3"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    obj = json.loads(r.stdout)  # one object on stdout; the command's output went to stderr
    assert obj["code"] == "S_OK" and obj["exit_status"] == 3 and obj["volume"]["access_paths"] == ["E:\\"]
    assert "from-command" in r.stderr


def test_lock_dismount_frees_the_image_for_raw_reads(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    kit.write_file(os.path.join(svc.root.drives, "E", "f.txt"), b"kept")
    r = subprocess.run(simvol_cmd(svc, "lock", "E:", "--dismount", "--", "fsck.fat", "-n", v.image),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr  # fsck read the raw image inside the lock: closed and clean
    kit.expect(v, "T", ["E:\\"])  # stays dismounted after the lock
    assert kit.read_file(os.path.join(svc.root.drives, "E", "f.txt")) == b"kept"  # and remounts on access
    assert v.state == "M"
    kit.expect(v, "M", ["E:\\"])


def test_a_locked_dismounted_volume_does_not_remount_for_others(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    kit.write_file(os.path.join(svc.root.drives, "E", "f.txt"))
    proc = subprocess.Popen(simvol_cmd(svc, "lock", "E:", "--dismount", "--", "sleep", "60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_locked(svc, v, proc)
        deadline = time.monotonic() + 30
        while v.state != "T":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _errno_here(os.path.join(svc.root.drives, "E", "f.txt")) == errno.EACCES
        assert v.state == "T"
    finally:
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()  # SIGKILL of the holder frees the lock
        proc.wait(30)
    _wait_unlocked(svc, v, "a SIGKILLed holder left the lock behind")
    for c in children:  # COMMAND outlives a SIGKILLed simvol lock (unlocked); it holds our pipes
        c.kill()
    proc.communicate(timeout=30)
    assert kit.read_file(os.path.join(svc.root.drives, "E", "f.txt")) == b"hello"
    assert v.state == "M"
    kit.expect(v, "M", ["E:\\"])


def test_a_second_lock_is_refused_and_the_python_lock_ends_with_its_block(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    with v.lock():
        assert _locked_by(svc, v) == os.getpid()
        r = subprocess.run(simvol_cmd(svc, "--json", "lock", "E:", "--", "true"), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and json.loads(r.stdout)["code"] == "E_ACCESSDENIED"
    _wait_unlocked(svc, v)


def test_a_permanently_dismounted_volume_cannot_be_locked(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB)
    v.dismount(permanent=True)
    with pytest.raises(VdsError) as e, v.lock():
        pass
    assert e.value.code == "VDS_E_VOLUME_NOT_ONLINE"


def test_the_timeout_ends_the_lock_and_the_command(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    r = subprocess.run(simvol_cmd(svc, "--json", "lock", "E:", "--timeout", "1", "--", "sleep", "600"),
                       capture_output=True, text=True, timeout=120)
    obj = json.loads(r.stdout)
    assert r.returncode == 128 + signal.SIGTERM and obj["exit_status"] == 128 + signal.SIGTERM
    assert _locked_by(svc, v) is None
    kit.write_file(os.path.join(svc.root.drives, "E", "after.txt"))  # everyone may use it again

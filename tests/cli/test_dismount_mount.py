"""Dismount (docs/windows-semantics.md §5.10, every row), Mount (§5.8) and OfflineVolume (§5.9) through the CLI."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from .conftest import Cli, sh

pytestmark = pytest.mark.fuse

STALE = (errno.EIO, errno.ENOTCONN)


def _same(a: dict, b: dict) -> None:
    """The state-bearing fields of two VOLUME objects agree (a failure changed nothing)."""
    keys = ("status", "flags", "access_paths", "mounted", "mount_path", "dismount_state")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_dismount_in_use_then_forced(cli: Cli, holder) -> None:
    cli.create("--letter", "E", "--label", "BUSY")
    base = cli.resolve("E:\\")
    sh(f"echo data > '{base}/held.txt'")
    before = cli.show("E:")
    h = holder(f"{base}/held.txt")
    for extra in ([], ["--permanent"]):  # row 1 comes before rows 3-8
        out = cli.fail("VDS_E_DEVICE_IN_USE", "dismount", "E:", *extra)
        assert out["hresult"] == 0x80042413
        assert h.pid in [x["pid"] for x in out["holders"]], out["holders"]
        mine = next(x for x in out["holders"] if x["pid"] == h.pid)
        assert mine["path"].endswith("held.txt")
        _same(out["volume"], before)
        assert str(h.pid) in out["message"]
    assert h.read() == 0, "a refused dismount leaves the holder's handle working"
    # human output: code name, hex value, meaning and the holder table
    r = cli.raw("dismount", "E:")
    assert r.returncode == 1
    assert "VDS_E_DEVICE_IN_USE" in r.stderr and "0x80042413" in r.stderr
    assert "PID" in r.stderr and str(h.pid) in r.stderr
    # forced: S_OK → T, the handle goes stale
    v = cli.run("dismount", "E:", "--force")["volume"]
    assert v["dismount_state"] == "temporary" and not v["mounted"] and v["access_paths"] == ["E:\\"]
    assert h.read() in STALE
    # T: already dismounted, whatever bPermanent
    for extra in ([], ["--force", "--permanent"]):
        out = cli.fail("VDS_E_VOLUME_TEMPORARILY_DISMOUNTED", "dismount", "E:", *extra)
        assert out["hresult"] == 0x8004245C
        assert out["volume"]["dismount_state"] == "temporary"
    # Mount from T
    v = cli.run("mount", "E:")["volume"]
    assert v["dismount_state"] == "none" and v["mounted"] and v["access_paths"] == ["E:\\"]
    assert h.read() in STALE, "a stale handle stays stale after a remount"


def test_permanent_dismount_rows(cli: Cli) -> None:
    v = cli.create("--letter", "F", "--label", "PERM")
    gid = v["id"]
    out = cli.fail("VDS_E_VOLUME_HAS_PATH", "dismount", "F:", "--permanent")
    assert out["hresult"] == 0x8004245E
    _same(out["volume"], v)
    cli.run("remove-path", gid, "F:")
    # M, bPermanent, idle, bForce=FALSE → P
    p = cli.run("dismount", gid, "--permanent")["volume"]
    assert p["status"] == "OFFLINE" and p["dismount_state"] == "permanent" and not p["mounted"]
    assert "VDS_VF_PERMANENTLY_DISMOUNTED" in p["flag_names"] and p["access_paths"] == []
    # P, !bPermanent → PERMANENTLY_DISMOUNTED
    out = cli.fail("VDS_E_VOLUME_PERMANENTLY_DISMOUNTED", "dismount", gid, "--force")
    assert out["hresult"] == 0x8004245D
    _same(out["volume"], p)
    # P, bPermanent → S_OK, nothing changes
    _same(cli.run("dismount", gid, "--permanent")["volume"], p)
    # Mount from P: online, flag cleared, no access paths (GUID path only)
    m = cli.run("mount", gid)["volume"]
    assert m["status"] == "ONLINE" and m["mounted"] and m["access_paths"] == []
    assert "VDS_VF_PERMANENTLY_DISMOUNTED" not in m["flag_names"]
    assert cli.resolve(m["guid_path"]) == m["mount_path"]
    # Mount in M: S_OK, nothing changes
    _same(cli.run("mount", gid)["volume"], m)
    # M, bForce, bPermanent, 0 paths → P
    assert cli.run("dismount", gid, "--permanent", "--force")["volume"]["dismount_state"] == "permanent"
    cli.run("mount", gid)


def test_role_and_unsupported(cli: Cli) -> None:
    sysvol = cli.create("--role", "system", "--letter", "S")
    for extra in ([], ["--force", "--permanent"]):  # idle or forced, temporary or permanent
        out = cli.fail("VDS_E_NOT_SUPPORTED", "dismount", "S:", *extra)
        assert out["hresult"] == 0x80042400
        _same(out["volume"], sysvol)
    _same(cli.fail("VDS_E_NOT_SUPPORTED", "offline", "S:")["volume"], sysvol)
    pagefile = cli.create("--role", "pagefile")
    assert "VDS_VF_PAGEFILE" in pagefile["flag_names"]
    cli.fail("VDS_E_NOT_SUPPORTED", "dismount", pagefile["id"], "--force")
    nope = cli.create("--role", "no-permanent-dismount")
    assert "VDS_VF_PERMANENT_DISMOUNT_SUPPORTED" not in nope["flag_names"]
    out = cli.fail("VDS_E_NOT_SUPPORTED", "dismount", nope["id"], "--permanent")
    _same(out["volume"], nope)
    _same(cli.fail("VDS_E_NOT_SUPPORTED", "offline", nope["id"])["volume"], nope)
    # a temporary dismount is fine
    assert cli.run("dismount", nope["id"])["volume"]["dismount_state"] == "temporary"
    cli.run("mount", nope["id"])


LOCKER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("ready", flush=True)
sys.stdin.read()
"""


def _lock_image(image: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", LOCKER, image], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def _unlock(p: subprocess.Popen) -> None:
    p.communicate(timeout=10)


def test_mount_object_status_failed(cli: Cli) -> None:
    v = cli.create("--label", "LOCKED")
    t = cli.run("dismount", v["id"])["volume"]
    locker = _lock_image(v["image"])  # another process holds the image: it cannot be mounted
    try:
        out = cli.fail("VDS_E_OBJECT_STATUS_FAILED", "mount", v["id"])
        assert out["hresult"] == 0x80042431
        _same(out["volume"], t)
    finally:
        _unlock(locker)
    p = cli.run("dismount", v["id"], "--permanent", expect="VDS_E_VOLUME_TEMPORARILY_DISMOUNTED")
    cli.run("mount", v["id"])
    p = cli.run("dismount", v["id"], "--permanent")["volume"]
    locker = _lock_image(v["image"])
    try:
        _same(cli.fail("VDS_E_OBJECT_STATUS_FAILED", "mount", v["id"])["volume"], p)
    finally:
        _unlock(locker)
    assert cli.run("mount", v["id"])["volume"]["mounted"]


def test_add_path_from_p_object_status_failed_adds_nothing(cli: Cli) -> None:
    """docs/windows-semantics.md §5.4 row 14: a P volume that cannot be brought online gets OBJECT_STATUS_FAILED and
    nothing added."""
    v = cli.create("--label", "LOCKED2")
    p = cli.run("dismount", v["id"], "--permanent")["volume"]
    locker = _lock_image(v["image"])
    try:
        out = cli.fail("VDS_E_OBJECT_STATUS_FAILED", "add-path", v["id"], "L:")
    finally:
        _unlock(locker)
    try:
        _same(out["volume"], p)
    finally:
        cli.run("remove-path", v["id"], "L:", expect=None)


def test_offline(cli: Cli, holder) -> None:
    v = cli.create("--letter", "O", "--label", "OFF")
    out = cli.fail("VDS_E_VOLUME_HAS_PATH", "offline", "O:")
    _same(out["volume"], v)
    cli.run("remove-path", v["id"], "O:")
    cli.run("dismount", v["id"])
    out = cli.run("offline", v["id"])  # from T too (docs/behaviour.md, OfflineVolume)
    assert out["volume"]["dismount_state"] == "permanent" and out["volume"]["status"] == "OFFLINE"
    m = cli.run("mount", v["id"])["volume"]
    sh(f"echo x > '{m['mount_path']}/f.txt'")
    h = holder(f"{m['mount_path']}/f.txt")
    # OfflineVolume = Dismount(bForce=TRUE, bPermanent=TRUE): even in use → P, handles stale
    p = cli.run("offline", v["id"])["volume"]
    assert p["status"] == "OFFLINE" and p["dismount_state"] == "permanent" and not p["mounted"]
    assert h.read() in STALE
    _same(cli.run("offline", v["id"])["volume"], p)  # P → S_OK
    # resolve of a P volume's GUID path: ERROR_NOT_READY
    out = cli.fail("HRESULT_FROM_WIN32(ERROR_NOT_READY)", "resolve", p["guid_path"] + "f.txt")
    assert out["hresult"] == 0x80070015
    # a P volume is still listed, as OFFLINE
    listed = {x["id"]: x for x in cli.run("list")["volumes"]}
    _same(listed[v["id"]], p)


def test_up_fails_when_a_volume_cannot_come_up(fresh_cli: Cli) -> None:
    """Never exit 0 when the operation did not fully happen: `up` with a volume that cannot be mounted."""
    v = fresh_cli.create("--label", "UP")
    other = fresh_cli.create("--label", "OTHER")
    assert not any(x["mounted"] for x in fresh_cli.run("down")["volumes"])
    locker = _lock_image(v["image"])
    try:
        out = fresh_cli.fail("VDS_E_OBJECT_STATUS_FAILED", "up")
        by_id = {x["id"]: x for x in out["volumes"]}
        assert not by_id[v["id"]]["mounted"] and by_id[other["id"]]["mounted"]
        assert v["id"] in out["message"]
        r = fresh_cli.raw("up")
        assert r.returncode == 1 and "VDS_E_OBJECT_STATUS_FAILED" in r.stderr and "0x80042431" in r.stderr
    finally:
        _unlock(locker)
    assert all(x["mounted"] for x in fresh_cli.run("up")["volumes"])

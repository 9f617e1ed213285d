"""Recovery after the mount daemons die (docs/architecture.md, Processes): SIGKILL every daemon, open a new service
on the same root.

Reconcile must bring mounted volumes back mounted (fresh daemons; the dirty image is checked and repaired
first), keep a temporarily dismounted volume in T (same boot) until ``up()`` (a reboot's effect), keep a
permanently dismounted one in P, and leave no stale mount: every simvol mount in /proc/self/mountinfo has a
live daemon. Data fsync'd before the kill is intact.
"""

from __future__ import annotations

import errno
import os
import signal

import pytest

from simvol.errors import S_OK
from simvol.image import read_metadata
from simvol.mount import DaemonClient, daemon_alive, find_mount, read_pidfile, simvol_mounts, wait_gone
from simvol.service import VolumeService
from simvol.types import VolumeFlag

pytestmark = pytest.mark.fuse

SIZE = 40 << 20
STALE = (errno.EIO, errno.ENOTCONN, errno.ECONNABORTED)  # ECONNABORTED: a request in flight at the abort


def _daemon_pids(svc: VolumeService) -> dict[str, int]:
    out = {}
    for row in svc.registry.volumes():
        info = read_pidfile(svc.root.run, row.id)
        if info is not None and daemon_alive(info):
            out[row.id] = info.pid
    return out


def _kill_all(svc: VolumeService, daemons_of) -> dict[str, int]:
    pids = _daemon_pids(svc)
    by_cmdline = {p.pid for p in daemons_of(svc.root.path)}
    assert set(pids.values()) == by_cmdline, "pid records and the running daemons agree"
    infos = [read_pidfile(svc.root.run, vid) for vid in pids]
    for info in infos:
        os.kill(info.pid, signal.SIGKILL)
    for info in infos:
        assert wait_gone(info.pid, info.create_time, 10)
    return pids


def _no_stale_mounts(root: str, daemons_of) -> None:
    live = {p.info["cmdline"][p.info["cmdline"].index("--mountpoint") + 1] for p in daemons_of(root)}
    for e in simvol_mounts(os.path.join(root, "volumes")):
        assert e.mountpoint in live, f"stale mount without a daemon: {e.mountpoint}"


def test_sigkill_every_daemon_then_reconcile(svc, svc_factory, kit, daemons_of) -> None:
    root = svc.root.path
    m1 = svc.create_volume(SIZE, letter="E", label="one")
    os.makedirs(os.path.join(svc.root.system_drive, "mnt", "two"))
    m2 = svc.create_volume(SIZE)
    assert m2.add_access_path("C:\\mnt\\two") == S_OK
    t = svc.create_volume(SIZE, letter="G")
    p = svc.create_volume(SIZE)
    kit.write_file(os.path.join(root, "drives", "E", "synced.txt"), b"fsynced before the kill" * 100)
    kit.write_file(os.path.join(root, "drives", "C", "mnt", "two", "dir.txt"), b"two")
    kit.py("import os\nos.makedirs(os.environ['P'])", P=os.path.join(m1.mount_path, "a", "b"))
    kit.write_file(os.path.join(t.mount_path, "t.txt"), b"t")
    assert t.dismount() == S_OK
    assert p.dismount(permanent=True) == S_OK
    holder = kit.holder("open", os.path.join(m1.mount_path, "held.txt"))

    before = _kill_all(svc, daemons_of)
    # M volumes' daemons, and the T volume's: it keeps its mount point armed (remount on access)
    assert set(before) == {str(m1.id), str(m2.id), str(t.id)}
    for v in (m1, m2, t):
        e = find_mount(v.mount_path)
        assert e is not None and e.is_simvol, "a killed daemon leaves its mount behind"
    assert holder.errno_of("write after the kill") in STALE

    s2 = svc_factory("root")  # a new service on the same root
    s2.reconcile()
    after = _daemon_pids(s2)
    assert set(after) == {str(m1.id), str(m2.id), str(t.id)}
    assert not set(after.values()) & set(before.values()), "fresh daemons"
    _no_stale_mounts(root, daemons_of)
    v1, v2, vt, vp = (s2.volume(str(v.id)) for v in (m1, m2, t, p))
    kit.expect(v1, "M", ["E:\\"])
    kit.expect(v2, "M", ["C:\\mnt\\two\\"])
    kit.expect(vt, "T", ["G:\\"])
    kit.expect(vp, "P", [])
    for v in (v1, v2):
        info = read_pidfile(s2.root.run, str(v.id))
        st = DaemonClient(info.socket).status()
        assert st["repaired"], "the dirty image was checked and repaired before the remount"
        assert not v.get_properties().flags & VolumeFlag.DIRTY
    assert kit.read_file(os.path.join(root, "drives", "E", "synced.txt")) == b"fsynced before the kill" * 100
    assert kit.read_file(os.path.join(root, "drives", "C", "mnt", "two", "dir.txt")) == b"two"
    assert kit.py("import os\nprint(os.path.isdir(os.environ['P']))",
                  P=os.path.join(v1.mount_path, "a", "b")).stdout.strip() == "True"
    assert holder.errno_of("write again") in STALE, "a handle from before the crash stays stale after the remount"

    # same boot: T stays T; `up` (what a reboot does) mounts it; P stays P
    s3 = svc_factory("root")
    s3.reconcile()
    kit.expect(s3.volume(str(t.id)), "T", ["G:\\"])
    s3.up()
    kit.expect(s3.volume(str(t.id)), "M", ["G:\\"])
    kit.expect(s3.volume(str(p.id)), "P", [])
    assert read_metadata(p.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED
    assert kit.read_file(os.path.join(root, "drives", "G", "t.txt")) == b"t"
    _no_stale_mounts(root, daemons_of)

    holder.stop()
    for v in (s3.volume(str(m1.id)), s3.volume(str(m2.id)), s3.volume(str(t.id))):
        assert v.dismount() == S_OK
        kit.assert_fsck_clean(v.image)


def test_any_entry_point_reconciles_a_dead_daemon(svc, kit, daemons_of) -> None:
    v = svc.create_volume(SIZE, letter="E")
    kit.write_file(os.path.join(v.mount_path, "f.txt"), b"kept")
    info = read_pidfile(svc.root.run, str(v.id))
    os.kill(info.pid, signal.SIGKILL)
    assert wait_gone(info.pid, info.create_time, 10)
    assert find_mount(v.mount_path) is not None
    # a plain query on the same service object reconciles first
    assert v.query_access_paths() == ["E:\\"]
    new = read_pidfile(svc.root.run, str(v.id))
    assert new is not None and new.pid != info.pid and daemon_alive(new)
    kit.expect(v, "M", ["E:\\"])
    assert kit.read_file(os.path.join(svc.root.path, "drives", "E", "f.txt")) == b"kept"
    _no_stale_mounts(svc.root.path, daemons_of)


def test_host_path_resolve_remounts_after_kill(svc, kit) -> None:
    v = svc.create_volume(SIZE, letter="E")
    kit.write_file(os.path.join(v.mount_path, "x.txt"), b"x")
    info = read_pidfile(svc.root.run, str(v.id))
    os.kill(info.pid, signal.SIGKILL)
    assert wait_gone(info.pid, info.create_time, 10)
    host = VolumeService(svc.root.path).resolve("E:\\x.txt")
    assert kit.read_file(host) == b"x"
    kit.expect(v, "M", ["E:\\"])

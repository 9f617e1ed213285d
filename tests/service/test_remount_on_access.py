"""Remount on access (issue #10; docs/behaviour.md, "Remount on access"): after a temporary dismount, the next access
by any process mounts the volume again and succeeds; queries, scans and stat of the mount point do not; P never
remounts.

Every access is made by another process (``kit.py``), through a drive letter, a mount folder or the volume's own
path; the state is checked everywhere it shows (``kit.expect``: registry, image trailer, mount table, daemon,
GetProperties) and the image by ``fsck.fat -n`` while it is dismounted.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from simvol.mount import find_mount, read_pidfile, wait_gone
from simvol.service import Volume, VolumeService

STALE_ERRNOS = (errno.EIO, errno.ENOTCONN)  # as tests/service/conftest.py
Kit = Any  # the kit fixture (tests/service/conftest.py)

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def _path_to(svc: VolumeService, v: Volume, how: str) -> str:
    """A host path into ``v``: through its letter E:, a mount folder C:\\mnt\\f, or ROOT/volumes/{GUID}."""
    if how == "letter":
        v.add_access_path("E:")
        return os.path.join(svc.root.drives, "E")
    if how == "folder":
        folder = os.path.join(svc.root.system_drive, "mnt", "f")
        os.makedirs(folder)
        v.add_access_path("C:\\mnt\\f")
        return folder
    return v.mount_path


def _remounted(kit: Kit, v: Volume, paths: list[str] | None = None) -> None:
    """M everywhere, once a simvol call has looked (every call reconciles first: the registry then says M)."""
    assert v.state == "M"
    kit.expect(v, "M", paths)


def _dismounted(kit: Kit, v: Volume, paths: list[str] | None = None) -> None:
    assert v.dismount() == 0
    kit.expect(v, "T", paths)
    kit.assert_fsck_clean(v.image)  # really dismounted: clean, closed, unlocked (expect checked the lock)


@pytest.mark.parametrize("how", ["letter", "folder", "guid"])
def test_an_access_by_any_process_remounts(svc: VolumeService, kit: Kit, how: str) -> None:
    v = svc.create_volume(40 * MiB)
    base = _path_to(svc, v, how)
    kit.write_file(os.path.join(base, "data.txt"), b"before")
    pid = svc.mounter.daemon(str(v.id)).pid  # type: ignore[attr-defined]
    _dismounted(kit, v)
    assert kit.read_file(os.path.join(base, "data.txt")) == b"before"  # the first access: mounted again
    _remounted(kit, v)
    assert svc.mounter.daemon(str(v.id)).pid == pid  # type: ignore[attr-defined]  # the same daemon served it
    kit.write_file(os.path.join(base, "after.txt"), b"after")
    v.dismount()
    kit.assert_fsck_clean(v.image)


ACCESSES = {
    "open": "open(os.path.join(B, 'f.txt')).read()",
    "create": "open(os.path.join(B, 'new.txt'), 'w').write('x')",
    "stat inside": "os.stat(os.path.join(B, 'f.txt'))",
    "stat missing": "os.path.exists(os.path.join(B, 'nope')) or print('absent')",
    "listdir": "assert 'f.txt' in os.listdir(B)",
    "chdir then use": "os.chdir(B); assert 'f.txt' in os.listdir('.')",
    "statfs": "os.statvfs(B)",
    "mkdir": "os.mkdir(os.path.join(B, 'd'))",
}


@pytest.mark.parametrize("op", list(ACCESSES))
def test_each_kind_of_access_remounts(svc: VolumeService, kit: Kit, op: str) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    base = os.path.join(svc.root.drives, "E")
    kit.write_file(os.path.join(base, "f.txt"))
    _dismounted(kit, v, ["E:\\"])
    kit.py("import os\nB = os.environ['B']\n" + ACCESSES[op], B=base)
    _remounted(kit, v, ["E:\\"])


def test_queries_scans_and_the_mount_point_itself_do_not_remount(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    _dismounted(kit, v, ["E:\\"])
    mp = v.mount_path
    letter = os.path.join(svc.root.drives, "E")
    kit.py(
        "import os\n"
        "os.stat(os.environ['MP']); os.lstat(os.environ['MP']); os.lstat(os.environ['L'])\n"
        "os.listdir(os.environ['V'])\n"
        "assert os.access(os.environ['MP'], os.X_OK)\n",
        MP=mp, L=letter, V=svc.root.volumes,
    )
    subprocess.run(["ls", "-l", svc.root.volumes, svc.root.drives], check=True, capture_output=True, timeout=30)
    v.get_properties()
    v.query_access_paths()
    v.query_volume_guid_pathnames()
    v.query_file_system_format_support()
    v.get_file_system_type_name()
    assert v.holders() == []
    svc.volumes()
    svc.reconcile()
    v.to_dict()
    kit.expect(v, "T", ["E:\\"])


def test_eight_concurrent_first_accesses_share_one_mount(svc: VolumeService, kit: Kit, daemons_of) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    base = os.path.join(svc.root.drives, "E")
    kit.write_file(os.path.join(base, "f.txt"), b"shared")
    _dismounted(kit, v, ["E:\\"])
    code = "import sys\nsys.stdout.write(open(sys.argv[1], 'rb').read().decode())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, os.path.join(base, "f.txt")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd="/")
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outs
    assert [o for o, _ in outs] == ["shared"] * 8
    assert len(daemons_of(svc.root.path)) == 1
    _remounted(kit, v, ["E:\\"])


def test_handles_from_a_forced_dismount_stay_stale_after_the_remount(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    base = os.path.join(svc.root.drives, "E")
    h = kit.holder("open", os.path.join(base, "held.txt"))
    assert h.cmd("write kept") == "ok 4"
    assert v.dismount(force=True) == 0
    kit.expect(v, "T", ["E:\\"])
    assert kit.read_file(os.path.join(base, "held.txt")) == b"kept"  # remounted by another process
    _remounted(kit, v, ["E:\\"])
    assert h.errno_of("read") in STALE_ERRNOS
    assert h.errno_of("write again") in STALE_ERRNOS
    assert kit.read_file(os.path.join(base, "held.txt")) == b"kept"


def test_a_permanently_dismounted_volume_never_remounts(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB)
    kit.write_file(os.path.join(v.mount_path, "f.txt"))
    assert v.dismount(permanent=True) == 0
    kit.expect(v, "P", [])
    assert kit.errno_of("open(os.environ['P']).read()", P=os.path.join(v.mount_path, "f.txt")) != 0
    kit.expect(v, "P", [])


def _armed_with_a_file(svc: VolumeService, kit: Kit) -> tuple[Any, str, Any]:
    """A volume at E: holding f.txt, temporarily dismounted: (volume, E:'s host path, its armed daemon)."""
    v = svc.create_volume(40 * MiB, letter="E")
    base = os.path.join(svc.root.drives, "E")
    kit.write_file(os.path.join(base, "f.txt"), b"survives")
    _dismounted(kit, v, ["E:\\"])
    info = read_pidfile(svc.root.run, str(v.id))
    assert info is not None
    return v, base, info


def test_a_killed_armed_daemon_is_recovered_by_the_next_call(svc: VolumeService, kit: Kit) -> None:
    v, base, info = _armed_with_a_file(svc, kit)
    os.kill(info.pid, signal.SIGKILL)
    assert wait_gone(info.pid, info.create_time, 10)
    assert v.state == "T"  # the next simvol call cleans up and arms the mount point again
    kit.expect(v, "T", ["E:\\"])
    assert kit.read_file(os.path.join(base, "f.txt")) == b"survives"
    _remounted(kit, v, ["E:\\"])


def test_a_daemon_killed_while_it_mounts_on_access(svc: VolumeService, kit: Kit) -> None:
    v, base, info = _armed_with_a_file(svc, kit)
    # The volume's lock held by this process makes the first access wait inside the daemon; kill it there.
    with svc.root.lock(str(v.id)):
        reader = subprocess.Popen([sys.executable, "-c", "import sys; open(sys.argv[1]).read()",
                                   os.path.join(base, "f.txt")], stderr=subprocess.PIPE, text=True, cwd="/")
        time.sleep(0.3)
        os.kill(info.pid, signal.SIGKILL)
        assert wait_gone(info.pid, info.create_time, 10)
    reader.communicate(timeout=60)
    assert reader.returncode != 0  # its daemon died under it
    assert v.state in ("T", "M")  # recovered by the next call
    assert kit.read_file(os.path.join(base, "f.txt")) == b"survives"
    _remounted(kit, v, ["E:\\"])
    v.dismount()
    kit.assert_fsck_clean(v.image)


def test_an_access_waits_for_a_service_operation_on_the_volume(svc: VolumeService, kit: Kit) -> None:
    """A first access racing a Format is serialized with it: it sees the formatted volume, never a half."""
    v = svc.create_volume(40 * MiB, letter="E", label="OLD")
    base = os.path.join(svc.root.drives, "E")
    kit.write_file(os.path.join(base, "old.txt"))
    _dismounted(kit, v, ["E:\\"])
    with svc.root.lock(str(v.id)):
        lister = subprocess.Popen([sys.executable, "-c", "import os, sys; print(sorted(os.listdir(sys.argv[1])))",
                                   base], stdout=subprocess.PIPE, text=True, cwd="/")
        time.sleep(0.3)
        assert lister.poll() is None  # waiting for the lock this process holds
        assert v.format(label="NEW") == 0  # re-entrant: this thread holds the lock already
    out, _ = lister.communicate(timeout=60)
    assert lister.returncode == 0 and out.strip() == "[]"
    assert v.label == "NEW"
    _remounted(kit, v, ["E:\\"])


def test_down_and_up_keep_their_meaning(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    base = os.path.join(svc.root.drives, "E")
    kit.write_file(os.path.join(base, "f.txt"))
    _dismounted(kit, v, ["E:\\"])
    svc.down()
    assert find_mount(v.mount_path) is None  # a host that is down answers nothing, not even a trigger
    assert kit.errno_of("open(os.environ['P'])", P=os.path.join(base, "f.txt")) != 0
    svc.up()  # as at boot: every volume not offline is mounted
    _remounted(kit, v, ["E:\\"])


def test_offline_from_t_is_allowed(svc: VolumeService, kit: Kit) -> None:
    v = svc.create_volume(40 * MiB)
    _dismounted(kit, v, [])
    assert v.offline() == 0
    kit.expect(v, "P", [])
    assert find_mount(v.mount_path) is None

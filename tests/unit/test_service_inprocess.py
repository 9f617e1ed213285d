"""The service's state machine without FUSE: VolumeService over the in-process mounter.

The same service code runs as in production; only the mounter differs (the image is opened in this process
instead of by a daemon). The oracles are the image itself (its trailer flags, ``fsck.fat -n``) and the registry
read directly, never the service's own view.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from simvol import VolumeState
from simvol.errors import VdsError
from simvol.image import read_metadata
from simvol.mount import Presence
from simvol.mount.inprocess import InProcessMounter
from simvol.service import VolumeService
from simvol.service.registry import Registry
from simvol.types import VolumeFlag, VolumeStatus

MiB = 1 << 20
M, T, P = VolumeState.MOUNTED, VolumeState.TEMPORARILY_DISMOUNTED, VolumeState.PERMANENTLY_DISMOUNTED


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[InProcessMounter]:
    m = InProcessMounter(str(tmp_path / "root" / "volumes"))
    yield m
    m.close()


@pytest.fixture
def svc(tmp_path: Path, mounter: InProcessMounter) -> Iterator[VolumeService]:
    s = VolumeService(tmp_path / "root", mounter=mounter)
    yield s
    s.close()


def code(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(VdsError) as e:
        call()
    return e.value.code


def fsck_clean(image: str) -> bool:
    """``fsck.fat -n`` on the file-system region (the trailer after it is not FAT's business)."""
    meta = read_metadata(image)
    with open(image, "rb") as src, open(image + ".fs", "wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.truncate(meta.fs_size)
    try:
        r = subprocess.run(["fsck.fat", "-n", image + ".fs"], capture_output=True, text=True)
        return r.returncode == 0
    finally:
        os.unlink(image + ".fs")


def registry_word(svc: VolumeService, vid: str) -> str:
    reg = Registry(svc.root.database)
    try:
        row = reg.volume(vid)
        assert row is not None
        return row.dismount
    finally:
        reg.close()


def test_create_arrives_mounted(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB, label="DATA")
    vid = str(v.id)
    assert v.state is M and v.state == "M"
    assert mounter.presence(vid) is Presence.LIVE
    fs = v.get_file_system_properties()
    assert fs.label == "DATA" and fs.allocation_unit_size > 0
    assert v.get_properties().status is VolumeStatus.ONLINE
    assert v.to_dict()["dismount_state"] == "none" and v.to_dict()["mounted"]


def test_temporary_dismount_closes_the_image_clean(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB)
    vid = str(v.id)
    assert v.dismount() == 0
    assert v.state is T and not mounter.running(vid)
    assert registry_word(svc, vid) == T.dismount == "temporary"
    assert fsck_clean(v.image)
    assert not read_metadata(v.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED
    assert code(v.dismount) == "VDS_E_VOLUME_TEMPORARILY_DISMOUNTED"
    assert v.get_properties().status is VolumeStatus.ONLINE  # still online: it remounts on access
    v.get_file_system_properties()  # in T it remounts first (docs/cli.md's state table)
    assert v.state is M and mounter.running(vid)
    assert registry_word(svc, vid) == "none"


def test_in_use_names_the_holder_and_force_cuts_it_off(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB)
    vid = str(v.id)
    mounter.hold(vid, 4242, "backup-agent")
    with pytest.raises(VdsError) as e:
        v.dismount()
    assert e.value.code == "VDS_E_DEVICE_IN_USE"
    assert e.value.holders[0]["pid"] == 4242 and "backup-agent (pid 4242" in e.value.message
    assert v.state is M and mounter.running(vid)
    assert v.dismount(force=True) == 0 and v.state is T


def test_permanent_dismount_lives_in_the_image(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB)
    assert v.dismount(permanent=True) == 0
    assert read_metadata(v.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED
    assert v.state is P and v.to_dict()["dismount_state"] == "permanent"
    assert v.get_properties().status is VolumeStatus.OFFLINE
    assert code(v.dismount) == "VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"
    assert code(v.get_file_system_properties) == "VDS_E_VOLUME_NOT_ONLINE"
    assert v.dismount(permanent=True) == 0  # P and permanent: S_OK, nothing changes
    # A new service on the same root (a restart) sees P: it is the image's own flag.
    with VolumeService(svc.root.path, mounter=mounter) as again:
        assert again.volume(str(v.id)).state is P
    assert v.mount() == 0 and v.state is M
    assert not read_metadata(v.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED


def test_permanent_refused_with_an_access_path(svc: VolumeService) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    assert code(lambda: v.dismount(permanent=True)) == "VDS_E_VOLUME_HAS_PATH"
    assert v.state is M
    # In use comes first (Dismount's check order, docs/cli.md): a holder and a path → DEVICE_IN_USE.
    svc.mounter.hold(str(v.id), 7, "x")  # type: ignore[attr-defined]
    assert code(lambda: v.dismount(permanent=True)) == "VDS_E_DEVICE_IN_USE"


def test_role_volumes_refuse_dismount_before_state_checks(svc: VolumeService) -> None:
    v = svc.create_volume(40 * MiB, roles=["pagefile"])
    assert code(v.dismount) == "VDS_E_NOT_SUPPORTED"
    assert code(lambda: v.dismount(force=True, permanent=True)) == "VDS_E_NOT_SUPPORTED"
    assert v.state is M


def test_no_permanent_dismount_role(svc: VolumeService) -> None:
    v = svc.create_volume(40 * MiB, roles=["no-permanent-dismount"])
    assert code(lambda: v.dismount(permanent=True)) == "VDS_E_NOT_SUPPORTED"
    assert v.dismount() == 0 and v.state is T


def test_a_crashed_mount_is_repaired_and_remounted(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB)
    vid = str(v.id)
    mounter.crash(vid)  # the image stays dirty, a "stale mount" stays behind
    assert mounter.presence(vid) is Presence.BROKEN
    assert v.state is M  # any entry point reconciles
    assert mounter.presence(vid) is Presence.LIVE
    assert any(p["kind"] == "dirty" for p in mounter.repaired[vid])
    v.dismount()
    assert fsck_clean(v.image)


def test_format_checks_then_formats(svc: VolumeService) -> None:
    v = svc.create_volume(40 * MiB, label="OLD")
    assert code(lambda: v.format("EXFAT")) == "VDS_E_INCOMPATIBLE_FILE_SYSTEM"
    assert code(lambda: v.format("ZFS")) == "VDS_E_INVALID_FS_TYPE"
    assert code(lambda: v.format(label="A*B")) == "VDS_E_BAD_LABEL"
    assert code(lambda: v.format(label=5)) == "E_INVALIDARG"  # type: ignore[arg-type]
    assert code(lambda: v.format(unit=1 << 20)) == "VDS_E_CLUSTER_SIZE_TOO_BIG"
    assert code(lambda: v.format(unit=1000)) == "VDS_E_CLUSTER_SIZE_TOO_BIG"  # above the largest allowed (512)
    assert code(lambda: v.format(unit=256)) == "VDS_E_CLUSTER_SIZE_TOO_SMALL"
    assert v.label == "OLD"
    assert code(lambda: v.format(label="NEW", compress=True)) == "VDS_E_COMPRESSION_NOT_SUPPORTED"
    assert v.label == "OLD"  # refused before anything changed
    assert v.format(label="NEW") == 0
    assert v.state is M and v.label == "NEW"
    v.dismount(permanent=True)
    assert code(lambda: v.format(label="A*B")) == "VDS_E_VOLUME_NOT_ONLINE"  # the state before the arguments


def test_create_uses_the_same_validator(svc: VolumeService) -> None:
    assert code(lambda: svc.create_volume(40 * MiB, filesystem="exFAT")) == "VDS_E_INCOMPATIBLE_FILE_SYSTEM"
    assert code(lambda: svc.create_volume(40 * MiB, filesystem="ZFS")) == "VDS_E_INVALID_FS_TYPE"
    assert code(lambda: svc.create_volume(40 * MiB, label="A*B")) == "VDS_E_BAD_LABEL"
    assert code(lambda: svc.create_volume(1 * MiB)) == "VDS_E_VOLUME_TOO_SMALL"
    assert code(lambda: svc.create_volume(40 * MiB, cluster_size=1 << 20)) == "VDS_E_CLUSTER_SIZE_TOO_BIG"
    assert os.listdir(svc.root.images) == []  # refused before any image exists


def test_check_on_mounted_and_dismounted(svc: VolumeService) -> None:
    v = svc.create_volume(40 * MiB)
    assert v.check() == []
    assert code(lambda: v.check(repair=True)) == "VDS_E_DEVICE_IN_USE"
    v.dismount()
    assert v.check(repair=True) == []


def test_down_and_up(svc: VolumeService, mounter: InProcessMounter) -> None:
    a = svc.create_volume(40 * MiB)
    b = svc.create_volume(40 * MiB)
    b.dismount(permanent=True)
    mounter.hold(str(a.id), 9, "editor")
    assert code(svc.down) == "VDS_E_DEVICE_IN_USE"
    assert mounter.running(str(a.id)) and a.state is M  # all or nothing
    svc.down(force=True)
    assert not mounter.running(str(a.id)) and a.state is M  # the state stays; nothing is mounted while down
    assert not mounter.running(str(a.id))
    svc.up()
    assert mounter.running(str(a.id)) and b.state is P


def test_access_paths_without_fuse(svc: VolumeService) -> None:
    v = svc.create_volume(40 * MiB, letter="E")
    assert v.query_access_paths() == ["E:\\"]
    link = os.path.join(svc.root.drives, "E")
    assert os.readlink(link) == os.path.join("..", "volumes", "{" + str(v.id).upper() + "}")
    assert code(lambda: v.add_access_path("E:")) == "VDS_E_OBJECT_EXISTS"
    assert v.delete_access_path("E:") == 0 and not os.path.lexists(link)
    v.dismount(permanent=True)
    assert v.add_access_path("F:") == 0  # adding a path to a P volume mounts it
    assert v.state is M


def test_detach_and_attach_keep_the_image(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB, label="KEEP")
    image, vid = v.image, str(v.id)
    v.detach()
    assert not mounter.running(vid) and os.path.exists(image)
    w = svc.attach(image)
    assert str(w.id) == vid and w.state is M and w.label == "KEEP"


def test_a_first_access_after_a_temporary_dismount_remounts(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB, label="BACK")
    vid = str(v.id)
    v.dismount()
    assert mounter.presence(vid) is Presence.ARMED and not mounter.running(vid)
    assert v.state is T and fsck_clean(v.image)  # armed: the image is closed, clean and unlocked
    assert v.get_properties().status is VolumeStatus.ONLINE and v.state is T  # queries do not remount
    mounter.access(vid)  # a process opens a file through the mount point
    assert v.state is M and registry_word(svc, vid) == "none"
    assert v.label == "BACK"
    v.dismount(permanent=True)
    assert mounter.presence(vid) is Presence.ABSENT  # P: nothing answers at the mount point


def test_offline_from_t_goes_to_p(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB)
    v.dismount()
    assert v.offline() == 0
    assert v.state is P and mounter.presence(str(v.id)) is Presence.ABSENT
    w = svc.create_volume(40 * MiB, letter="E")
    w.dismount()
    assert code(w.offline) == "VDS_E_VOLUME_HAS_PATH" and w.state is T


def test_the_volume_lock_without_fuse(svc: VolumeService, mounter: InProcessMounter) -> None:
    v = svc.create_volume(40 * MiB)
    vid = str(v.id)
    mounter.hold(vid, 4242, "editor")
    with pytest.raises(VdsError) as e, v.lock():
        pass
    assert e.value.code == "VDS_E_DEVICE_IN_USE" and e.value.holders[0]["pid"] == 4242
    mounter.release(vid)
    with v.lock(dismount=True):
        assert mounter.locked_by(vid) == os.getpid()
        assert v.state is T and fsck_clean(v.image)  # dismounted inside the lock: the image is free
        with pytest.raises(PermissionError):
            mounter.access(vid, pid=1)  # another process: EACCES, no remount
        with pytest.raises(VdsError) as e2, v.lock():
            pass
        assert e2.value.code == "E_ACCESSDENIED"
    assert mounter.locked_by(vid) is None and v.state is T  # stays dismounted after the lock
    mounter.access(vid, pid=1)
    assert v.state is M
    v.dismount(permanent=True)
    with pytest.raises(VdsError) as e3, v.lock():
        pass
    assert e3.value.code == "VDS_E_VOLUME_NOT_ONLINE"


# ----------------------------------------------------------------- faults (the service's part, without FUSE)


def test_a_method_fault_fires_once_and_changes_nothing(svc: VolumeService) -> None:
    vol = svc.create_volume(40 * MiB, letter="E")
    vol.dismount()
    vol.faults.add_method("Mount", "VDS_E_OBJECT_STATUS_FAILED")  # after: a dismount would end it
    assert code(vol.mount) == "VDS_E_OBJECT_STATUS_FAILED"
    assert vol.state is T  # nothing changed
    assert vol.mount() == 0 and vol.state is M
    assert [(e["op"], e["code"]) for e in vol.faults.log()] == [("Mount", "VDS_E_OBJECT_STATUS_FAILED")]


def test_offline_is_not_a_call_of_dismount(svc: VolumeService) -> None:
    vol = svc.create_volume(40 * MiB)
    vol.faults.add_method("Dismount", "VDS_E_DEVICE_IN_USE", persist=True)
    assert vol.offline() == 0 and vol.state is P  # OfflineVolume's own Dismount is not faulted
    vol.faults.add_method("OfflineVolume", 0x80042413)
    vol.mount()
    assert code(vol.offline) == "VDS_E_DEVICE_IN_USE" and vol.state is M


def test_a_dismount_ends_what_does_not_persist(svc: VolumeService, mounter: InProcessMounter) -> None:
    vol = svc.create_volume(40 * MiB)
    gone = vol.faults.add("write", "EIO")
    kept = vol.faults.add("read", "EIO", persist=True)
    assert [f["id"] for f in mounter.faults(str(vol.id)) or []] == [gone.id, kept.id]  # handed to the mount
    vol.dismount()
    assert [f.id for f in vol.faults.list()] == [kept.id]
    vol.mount()
    assert [f["id"] for f in mounter.faults(str(vol.id)) or []] == [kept.id]  # armed again at the remount


def test_surprise_removal_leaves_the_volume_failed_until_mount(svc: VolumeService, mounter: InProcessMounter) -> None:
    vol = svc.create_volume(40 * MiB, letter="E")
    vol.faults.surprise_removal()
    assert vol.state is VolumeState.FAILED
    prop = vol.get_properties()
    assert prop.status is VolumeStatus.FAILED and prop.health.name == "FAILED"
    svc.up()  # a reboot does not bring a pulled disk back
    assert vol.state is VolumeState.FAILED and mounter.presence(str(vol.id)) is Presence.ABSENT
    assert code(vol.faults.surprise_removal) == "VDS_E_VOLUME_NOT_ONLINE"
    assert vol.mount() == 0 and vol.state is M  # repaired (it was left dirty) and mounted
    assert vol.query_access_paths() == ["E:\\"]
    vol.dismount()
    assert fsck_clean(vol.image)

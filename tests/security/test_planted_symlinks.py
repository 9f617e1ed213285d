"""No symlink planted inside a root makes simvol create, remove, truncate or chmod anything outside it.

Each test plants a link to a directory or file outside the root (``outside``: a file, a directory, known modes and
mtimes) where simvol will open, create or remove something, runs the operation, and checks that the operation
either succeeded by replacing only the link or failed with a VdsError, and that ``outside`` is byte-for-byte and
mode-for-mode unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simvol import VolumeService
from simvol.errors import VdsError
from simvol.mount import launcher

pytestmark = pytest.mark.fuse


def plant(link: str | Path, target: Path) -> None:
    link = str(link)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)


def run_files(svc: VolumeService, vol) -> dict[str, str]:
    sock, log, pid = launcher.run_files(svc.root.run, str(vol.id))  # a deep root's socket lives in /tmp/simvol-UID
    return {"log": log, "pid": pid, "sock": sock, "lock": os.path.join(svc.root.locks, f"{vol.id}.lock")}


@pytest.mark.parametrize("kind", ["lock", "log", "pid", "sock"])
@pytest.mark.parametrize("target", ["file", "dir"])
def test_run_files(service: VolumeService, outside, kind, target):
    """Found here: a link at the lock file broke every operation with a raw OSError (ELOOP), and one at the log
    made the volume unmountable; now the link is replaced, never followed."""
    vol = service.create_volume(40 << 20)
    vol.dismount(permanent=True)  # no daemon at all (a temporary dismount keeps its daemon, armed)
    link = run_files(service, vol)[kind]
    plant(link, outside.path / target)
    assert vol.mount() == 0  # a new daemon makes its run files
    assert vol.state == "M" and os.path.ismount(vol.mount_path)
    assert not os.path.islink(link)
    vol.dismount(permanent=True)
    plant(link, outside.path / target)
    vol.delete(force=True)  # works with the link still there
    outside.unchanged()


def test_lock_link_while_mounted(service: VolumeService, outside):
    vol = service.create_volume(40 << 20)
    for name in (str(vol.id), "paths", "host"):
        plant(os.path.join(service.root.locks, name + ".lock"), outside.path / "file")
    assert vol.add_access_path("E:") == 0
    assert vol.query_access_paths() == ["E:\\"]
    vol.delete_access_path("E:")
    vol.delete(force=True)
    outside.unchanged()


def test_mount_point_link(service: VolumeService, outside):
    """ROOT/volumes/{GUID} planted as a link: the mount goes on a fresh directory, never over the link's target."""
    vol = service.create_volume(40 << 20)
    vol.dismount(permanent=True)  # nothing at the mount point (a temporary dismount leaves it armed)
    plant(vol.mount_path, outside.path / "dir")
    assert vol.mount() == 0
    assert not os.path.islink(vol.mount_path) and os.path.ismount(vol.mount_path)
    vol.dismount(force=True, permanent=True)
    assert not os.path.lexists(vol.mount_path)
    outside.unchanged()


def test_drive_letter_link(service: VolumeService, outside):
    """ROOT/drives/E planted as a link no volume claims: AddAccessPath replaces the link only."""
    vol = service.create_volume(40 << 20)
    plant(service.root.letter_path("E"), outside.path / "dir")
    assert vol.add_access_path("E:") == 0
    assert os.readlink(service.root.letter_path("E")).endswith("{" + str(vol.id).upper() + "}")
    vol.delete_access_path("E:")
    assert not os.path.lexists(service.root.letter_path("E"))
    outside.unchanged()


def test_drive_letter_real_directory_is_not_free(service: VolumeService, outside):
    vol = service.create_volume(40 << 20)
    os.mkdir(service.root.letter_path("E"))
    with pytest.raises(VdsError) as ei:
        vol.add_access_path("E:")
    assert ei.value.code == "VDS_E_DRIVE_LETTER_NOT_FREE"
    assert os.path.isdir(service.root.letter_path("E"))


def test_mount_folder_link_to_outside(service: VolumeService, outside):
    """C:\\mnt planted as a link to an outside directory: refused (not a directory), the target untouched."""
    vol = service.create_volume(40 << 20)
    plant(Path(service.root.system_drive) / "mnt", outside.path / "dir")
    with pytest.raises(VdsError) as ei:
        vol.add_access_path("C:\\mnt")
    assert ei.value.code == "HRESULT_FROM_WIN32(ERROR_DIRECTORY)"
    assert vol.query_access_paths() == []
    outside.unchanged()


def test_mount_folder_parent_link_to_outside(service: VolumeService, outside):
    """Found here: C:\\link\\dir with C:\\link -> an outside directory replaced the outside empty directory
    with a symlink to the volume. Now refused: the folder is not on C:."""
    vol = service.create_volume(40 << 20)
    plant(Path(service.root.system_drive) / "link", outside.path)
    with pytest.raises(VdsError) as ei:
        vol.add_access_path("C:\\link\\dir")
    assert ei.value.code == "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"
    assert os.path.isdir(outside.path / "dir") and not os.path.islink(outside.path / "dir")
    outside.unchanged()
    # A link that stays on C: is followed like a junction would be.
    inner = Path(service.root.system_drive) / "real"
    (inner / "dir").mkdir(parents=True)
    plant(Path(service.root.system_drive) / "alias", inner)
    assert vol.add_access_path("C:\\alias\\dir") == 0
    vol.delete_access_path("C:\\alias\\dir")
    assert (inner / "dir").is_dir()


def test_image_link(service: VolumeService, outside, tmp_path: Path):
    """Images are never opened, created or deleted through a link."""
    vol = service.create_volume(40 << 20)
    image = vol.image
    vol.detach()
    moved = tmp_path / "moved.img"
    os.rename(image, moved)
    plant(image, moved)
    with pytest.raises(VdsError) as ei:
        service.attach(image)
    assert ei.value.code == "VDS_E_OBJECT_STATUS_FAILED" and "symbolic link" in ei.value.message
    # create --image at a link (dangling or not) is refused; nothing is written through it
    plant(image, outside.path / "file")
    with pytest.raises(VdsError) as ei:
        service.create_volume(40 << 20, image=image)
    assert ei.value.code == "HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)"
    plant(image, outside.path / "new.img")
    with pytest.raises(VdsError):
        service.create_volume(40 << 20, image=image)
    assert not (outside.path / "new.img").exists()
    # An attached image swapped for a link: mount fails cleanly, delete removes the registry entry but not the target
    vol = service.attach(str(moved))
    vol.dismount()
    os.rename(moved, tmp_path / "real.img")
    plant(moved, outside.path / "file")
    with pytest.raises(VdsError) as ei:
        vol.mount()
    assert ei.value.code == "VDS_E_OBJECT_STATUS_FAILED"
    vol.delete(force=True)
    assert os.path.islink(moved)
    outside.unchanged()


def test_root_subdirectory_links_are_refused(tmp_path: Path, outside):
    """A link in place of images/, volumes/, drives/, drives/C or run/: the root is refused, nothing is chmodded."""
    for sub in ("images", "volumes", "drives", "drives/C", "run", "run/locks"):
        root = tmp_path / f"root-{sub.replace('/', '-')}"
        VolumeService(root).close()
        d = root / sub
        for child in sorted(d.rglob("*"), reverse=True):
            child.unlink() if not child.is_dir() or child.is_symlink() else child.rmdir()
        d.rmdir()
        d.symlink_to(outside.path / "dir")
        with pytest.raises(VdsError) as ei:
            VolumeService(root)
        assert ei.value.code == "E_ACCESSDENIED"
    outside.unchanged()

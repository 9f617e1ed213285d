"""The permanent-dismount flag lives in the image (docs/architecture.md, The root; docs/windows-semantics.md §7 "From
P": image copied to another root).

Copy a permanently dismounted image to a fresh root and attach it: it arrives in P there too (not mounted);
AddAccessPath brings it online (M) and clears the flag in the image. The original is untouched.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from simvol.errors import HRESULTS, S_OK
from simvol.image import read_metadata
from simvol.service.paths import guid_path
from simvol.types import VolumeFlag, VolumeStatus
from simvol.vds import VdsVolume

pytestmark = pytest.mark.fuse

PD = VolumeFlag.PERMANENTLY_DISMOUNTED
SIZE = 40 << 20


def _copy(src: str, dst: str) -> None:
    subprocess.run(["cp", "--sparse=always", "--", src, dst], check=True, timeout=60)


def test_permanent_flag_travels_with_the_image(svc_factory, kit, short_tmp) -> None:
    a = svc_factory("hostA")
    v = a.create_volume(SIZE, letter="E", label="travel")
    kit.write_file(os.path.join(a.root.path, "drives", "E", "data.txt"), b"portable")
    assert v.delete_access_path("E:") == S_OK
    assert VdsVolume(v).Dismount(False, True) == S_OK
    kit.expect(v, "P", [])
    assert read_metadata(v.image).flags & PD

    copy = str(short_tmp / "copy.img")
    _copy(v.image, copy)
    assert os.stat(copy).st_blocks * 512 < os.stat(copy).st_size, "the copy stays sparse"
    kit.assert_fsck_clean(copy)

    b = svc_factory("hostB")
    w = b.attach(copy)
    assert w.id == v.id
    kit.expect(w, "P", [])
    prop = w.get_properties()
    assert prop.status == VolumeStatus.OFFLINE and prop.flags & PD
    # still P after `simvol up` and a fresh service on host B
    b.up()
    kit.expect(w, "P", [])
    com = VdsVolume(w)
    assert com.GetFileSystemProperties()[0] == HRESULTS["VDS_E_VOLUME_NOT_ONLINE"]

    assert com.AddAccessPath("F:") == S_OK
    kit.expect(w, "M", ["F:\\"])
    assert not read_metadata(copy).flags & PD, "AddAccessPath clears the flag in the image"
    assert kit.read_file(os.path.join(b.root.path, "drives", "F", "data.txt")) == b"portable"
    assert com.GetFileSystemProperties()[1].label == "TRAVEL"
    assert b.resolve(guid_path(w.id)) == w.mount_path

    # host A is unaffected: its image is still offline there
    assert read_metadata(v.image).flags & PD
    kit.expect(v, "P", [])


def test_mount_on_the_new_root_also_clears_the_flag(svc_factory, kit, short_tmp) -> None:
    a = svc_factory("hostA")
    v = a.create_volume(SIZE)
    assert VdsVolume(v).OfflineVolume() == S_OK
    copy = str(short_tmp / "copy.img")
    _copy(v.image, copy)
    b = svc_factory("hostB")
    w = b.attach(copy)
    kit.expect(w, "P", [])
    assert VdsVolume(w).Mount() == S_OK
    kit.expect(w, "M", [])
    assert not read_metadata(copy).flags & PD


def test_copy_of_a_temporarily_dismounted_image_arrives_mounted(svc_factory, kit, short_tmp) -> None:
    """T is host state (registry only): a copied image of a T volume is not offline elsewhere."""
    a = svc_factory("hostA")
    v = a.create_volume(SIZE, letter="E")
    assert v.dismount() == S_OK
    kit.expect(v, "T", ["E:\\"])
    copy = str(short_tmp / "copy.img")
    _copy(v.image, copy)
    b = svc_factory("hostB")
    w = b.attach(copy)
    kit.expect(w, "M", [])

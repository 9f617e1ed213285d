"""Teardown that cannot destroy data (issue #11 item 5): ``VolumeService.destroy`` / ``simvol destroy`` dismount
everything before they delete the root, never descending into a mount, and ``VolumeService.temporary()`` cleans up
after itself. The oracles: the kernel's mount table, the processes, and the images read by mtools and fsck.fat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simvol.errors import VdsError
from simvol.mount import simvol_mounts
from simvol.service import VolumeService
from tests.support.fatoracle import mcopy_read
from tests.support.processes import daemons_of

pytestmark = pytest.mark.fuse

MiB = 1 << 20
Kit = Any  # the kit fixture (tests/service/conftest.py)


def test_destroy_dismounts_first_and_keeps_outside_images(short_tmp: Path, kit: Kit) -> None:
    root = str(short_tmp / "root")
    svc = VolumeService(root)
    outside = str(short_tmp / "outside.img")
    kept = svc.create_volume(40 * MiB, image=outside, letter="E")
    kit.write_file(os.path.join(kept.mount_path, "precious.txt"), b"do not lose me")
    inside = svc.create_volume(40 * MiB)
    kit.write_file(os.path.join(inside.mount_path, "f.txt"))
    armed = svc.create_volume(40 * MiB)
    armed.dismount()  # T: an armed mount point
    offline = svc.create_volume(40 * MiB)
    offline.dismount(permanent=True)
    os.makedirs(os.path.join(svc.root.system_drive, "mnt", "d"))
    inside.add_access_path("C:\\mnt\\d")
    h = kit.holder("open", os.path.join(kept.mount_path, "held.txt"))
    with pytest.raises(VdsError) as e:
        svc.destroy()
    assert e.value.code == "VDS_E_DEVICE_IN_USE" and any(x["pid"] == h.pid for x in e.value.holders)
    assert os.path.isdir(root) and kept.state == "M"  # refused: nothing changed
    svc.destroy(force=True)
    assert not os.path.exists(root)
    assert not simvol_mounts(str(short_tmp)) and not daemons_of(root)
    assert os.path.exists(outside)
    assert kit.fsck(outside).returncode == 0
    assert mcopy_read(outside, "/precious.txt") == b"do not lose me"


def test_simvol_destroy_verb(short_tmp: Path) -> None:
    root = str(short_tmp / "cli-root")
    svc = VolumeService(root)
    svc.create_volume(40 * MiB, letter="E")
    svc.close()
    r = subprocess.run([sys.executable, "-m", "simvol", "--root", root, "--json", "destroy"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["code"] == "S_OK" and obj["destroyed"] is True and obj["root"] == root
    assert not os.path.exists(root) and not simvol_mounts(str(short_tmp))


def test_temporary_cleans_up_even_after_an_error(kit: Kit) -> None:
    with VolumeService.temporary() as svc:
        v = svc.create_volume(40 * MiB, letter="E")
        kit.write_file(os.path.join(svc.root.drives, "E", "f.txt"))
        root = svc.root.path
        assert os.path.isdir(root)
    assert not os.path.exists(root) and not simvol_mounts(root)
    with pytest.raises(RuntimeError), VolumeService.temporary() as svc:
        v = svc.create_volume(40 * MiB)
        root = svc.root.path
        kit.holder("open", os.path.join(v.mount_path, "held.txt"))  # in use: destroyed by force all the same
        raise RuntimeError("the test failed")
    assert not os.path.exists(root) and not simvol_mounts(root) and not daemons_of(root)

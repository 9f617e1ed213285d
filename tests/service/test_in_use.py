"""In use from other processes (docs/windows-semantics.md §4 "in use", §5.10 row 1).

Holders: a process with an open file, one with its cwd inside the volume, one that opened a file through the
drive-letter path (ROOT/drives/E/…), one with a memory map whose fd is closed. Dismount without force fails
with VDS_E_DEVICE_IN_USE naming every pid; with force it succeeds, every holder's next I/O fails with EIO or
ENOTCONN, nothing written through a stale handle reaches the image, and ``fsck.fat -n`` finds the image clean.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from simvol.errors import HRESULTS, S_OK, VdsError, VolumeInUseError
from simvol.vds import VdsVolume

pytestmark = pytest.mark.fuse

SIZE = 40 << 20
STALE = (errno.EIO, errno.ENOTCONN)
IN_USE = HRESULTS["VDS_E_DEVICE_IN_USE"]

MMAP_HOLDER = r"""
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"m" * 4096)
mm = mmap.mmap(fd, 4096)
os.close(fd)
print("ready", flush=True)
sys.stdin.read()
"""


def _mmap_holder(kit, path: str):
    p = subprocess.Popen([sys.executable, "-c", MMAP_HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, cwd="/")
    kit.holders.append(type("H", (), {"pid": p.pid, "proc": p, "stop": lambda self: (p.kill(), p.wait(10))})())
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.fixture
def busy(svc, kit):
    """A volume with E:, a directory and four holders of different kinds."""
    v = svc.create_volume(SIZE, letter="E")
    kit.py("import os\nos.makedirs(os.environ['P'])", P=os.path.join(v.mount_path, "work"))
    kit.write_file(os.path.join(v.mount_path, "kept.txt"), b"before")
    h_open = kit.holder("open", os.path.join(v.mount_path, "kept.txt"))
    h_cwd = kit.holder("cwd", os.path.join(v.mount_path, "work"))
    h_letter = kit.holder("open", os.path.join(svc.root.path, "drives", "E", "via-letter.txt"))
    h_mmap = _mmap_holder(kit, os.path.join(v.mount_path, "mapped.bin"))
    return v, {"open": h_open, "cwd": h_cwd, "letter": h_letter, "mmap": h_mmap}


def test_dismount_in_use_names_every_holder(busy, kit) -> None:
    v, hs = busy
    com = VdsVolume(v)
    for force_perm in ((False, False), (False, True)):
        assert com.Dismount(*force_perm) == IN_USE
        err = com.last_error
        assert isinstance(err, VolumeInUseError) and err.code == "VDS_E_DEVICE_IN_USE"
        by_pid: dict[int, set[str]] = {}
        for h in err.holders:
            by_pid.setdefault(h["pid"], set()).add(h["kind"])
            assert h["process"] and h["path"]
        for name, h in hs.items():
            assert h.pid in by_pid, f"the {name} holder (pid {h.pid}) is not named: {err.holders}"
        assert "cwd" in by_pid[hs["cwd"].pid]
        assert by_pid[hs["letter"].pid] & {"file"}
        assert str(hs["open"].pid) in str(err) or "in use" in str(err)
    kit.expect(v, "M", ["E:\\"])
    assert {h["pid"] for h in v.holders()} >= {h.pid for h in hs.values()}
    # the refused dismounts changed nothing: the holders still work
    assert hs["open"].errno_of("read") == 0
    assert hs["cwd"].errno_of("listcwd") == 0
    assert hs["letter"].errno_of("write ok") == 0


@pytest.mark.parametrize("kind", ["open", "cwd", "letter", "mmap"])
def test_each_holder_alone_is_in_use(svc, kit, kind) -> None:
    v = svc.create_volume(SIZE, letter="E")
    if kind == "open":
        h = kit.holder("open", os.path.join(v.mount_path, "f.txt"))
    elif kind == "cwd":
        h = kit.holder("cwd", v.mount_path)
    elif kind == "letter":
        h = kit.holder("open", os.path.join(svc.root.path, "drives", "E", "f.txt"))
    else:
        h = _mmap_holder(kit, os.path.join(v.mount_path, "m.bin"))
    with pytest.raises(VdsError) as ei:
        v.dismount()
    assert ei.value.hresult == IN_USE and h.pid in {x["pid"] for x in ei.value.holders}
    with pytest.raises(VolumeInUseError):
        v.delete_access_path("E:")
    with pytest.raises(VolumeInUseError):
        v.format(label="x")
    kit.expect(v, "M", ["E:\\"])
    # once the holder is gone the volume is idle again (late releases are waited for)
    if hasattr(h, "proc"):
        h.proc.kill()
        h.proc.wait(10)
    else:
        h.kill()
        h.wait(10)
    assert v.dismount() == S_OK
    kit.expect(v, "T", ["E:\\"])
    kit.assert_fsck_clean(v.image)


def test_forced_dismount_makes_every_handle_stale(busy, kit) -> None:
    v, hs = busy
    assert hs["open"].errno_of("write AFTER") == 0  # overwrite the start of kept.txt…
    assert hs["open"].errno_of("fsync") == 0  # …and make it durable
    assert VdsVolume(v).Dismount(True, False) == S_OK
    kit.expect(v, "T", ["E:\\"])
    assert hs["open"].errno_of("read") in STALE
    assert hs["open"].errno_of("write LOST!") in STALE
    assert hs["cwd"].errno_of("listcwd") in STALE
    assert hs["cwd"].errno_of("write x") in STALE
    assert hs["letter"].errno_of("write y") in STALE
    assert hs["letter"].errno_of("read") in STALE
    r = kit.fsck(v.image)
    assert r.returncode == 0, f"fsck.fat -n after a forced dismount:\n{r.stdout}\n{r.stderr}"
    # remount: data written before the force is there, nothing written through a stale handle reached the image
    assert v.mount() == S_OK
    assert kit.read_file(os.path.join(v.mount_path, "kept.txt")) == b"AFTERe"
    assert hs["open"].errno_of("read") in STALE, "stale forever, even after a remount"
    assert hs["open"].errno_of("write LOST2") in STALE
    assert kit.read_file(os.path.join(v.mount_path, "kept.txt")) == b"AFTERe"
    hs["mmap"].kill()
    hs["mmap"].wait(10)
    for h in ("open", "cwd", "letter"):
        hs[h].stop()
    assert v.dismount() == S_OK
    kit.assert_fsck_clean(v.image)


def test_forced_permanent_dismount_and_offline(busy, kit) -> None:
    v, hs = busy
    assert v.delete_access_path("E:", force=True) == S_OK
    # DeleteAccessPath with force keeps open fds working (docs/windows-semantics.md §5.7 row 6)
    assert hs["letter"].errno_of("write still") == 0
    assert VdsVolume(v).OfflineVolume() == S_OK
    kit.expect(v, "P", [])
    for name in ("open", "letter"):
        assert hs[name].errno_of("write z") in STALE
    assert hs["cwd"].errno_of("listcwd") in STALE
    kit.assert_fsck_clean(v.image)


def test_forced_format_makes_handles_stale(busy, kit) -> None:
    v, hs = busy
    assert VdsVolume(v).Format(3, "fresh", 0, True, True, False) == S_OK
    kit.expect(v, "M", ["E:\\"])
    assert hs["open"].errno_of("write q") in STALE
    assert hs["cwd"].errno_of("listcwd") in STALE
    assert kit.errno_of("os.stat(os.environ['P'])", P=os.path.join(v.mount_path, "kept.txt")) == errno.ENOENT
    assert v.get_file_system_properties().label == "FRESH"

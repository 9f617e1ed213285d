"""A SIGKILLed daemon leaves a stale mount and a dirty image; cleanup and the next mount recover both.

The fixtures (``volume_factory``, ``mounted_volume``) are the integration suite's, loaded from
``tests/integration/conftest.py``: every I/O on the mount is done by other processes, and teardown always
ends the daemons and checks that no simvol mount is left under the test's tmp root.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from simvol.mount import ControlError, cleanup_stale, daemon_alive, find_mount, wait_gone

_spec = importlib.util.spec_from_file_location(
    "simvol_tests_mountkit", Path(__file__).resolve().parent.parent / "integration" / "conftest.py"
)
_kit = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = _kit  # dataclasses look their module up there
    _spec.loader.exec_module(_kit)
volume_factory = _kit.volume_factory
mounted_volume = _kit.mounted_volume

# What the next mount reports after a crash: FAT32's dirty bits; NTFS's in-use marker in the trailer (ntfs-3g
# never marks a volume it mounts, simvol does).
CRASH_KIND = {"FAT32": "dirty", "NTFS": "in_use"}


@pytest.fixture(params=["FAT32", "NTFS"])
def fs_volume(volume_factory, request):
    """A mounted FAT32 volume and an NTFS one (simvol's session in front of ntfs-3g: its SIGKILL leaves the same
    stale mount)."""
    return volume_factory(fs=request.param)

pytestmark = pytest.mark.fuse

STAT = r"""
import os
try:
    os.stat(os.environ["MP"])
    print(0)
except OSError as e:
    print(e.errno)
"""


def _kill(vol) -> None:
    info = vol.info
    os.kill(info.pid, signal.SIGKILL)
    assert wait_gone(info.pid, info.create_time, 10)
    assert not daemon_alive(info)


def _assert_stale(vol) -> None:
    entry = find_mount(vol.mountpoint)
    assert entry is not None and entry.is_simvol, "a SIGKILLed daemon's mount stays in the mount table"
    assert entry.volume_guid == vol.volume_id
    assert vol.py(STAT).stdout.strip() == str(errno.ENOTCONN)
    with pytest.raises(ControlError):
        vol.client.status(timeout=2)


def test_sigkill_leaves_stale_mount_then_recovers(fs_volume):
    vol = fs_volume
    vol.sh(
        """
        mkdir -p docs/deep
        echo synced > s.txt && sync s.txt
        dd if=/dev/urandom of=docs/deep/blob bs=64k count=40 conv=fsync status=none
        sha256sum docs/deep/blob > "$ROOT/blob.sha"
        echo unsynced > u.txt
        """,
        ROOT=str(vol.root),
    )
    blob_sha = (vol.root / "blob.sha").read_text().split()[0]
    _kill(vol)
    _assert_stale(vol)

    assert cleanup_stale(vol.mountpoint) is True
    assert find_mount(vol.mountpoint) is None
    assert not os.path.exists(vol.mountpoint)
    assert cleanup_stale(vol.mountpoint) is False  # idempotent

    vol.mount()
    repaired = vol.client.status()["repaired"]
    assert CRASH_KIND[vol.fs] in {p["kind"] for p in repaired}, repaired
    assert all(p.get("repaired", True) for p in repaired), repaired
    assert vol.sh("cat s.txt").stdout == "synced\n"
    assert vol.sh("sha256sum docs/deep/blob").stdout.split()[0] == blob_sha
    vol.sh("echo after > after.txt")  # the repaired volume takes writes
    assert vol.dismount() == {"ok": True, "forced": False}
    vol.assert_fsck_clean()
    assert vol.mcopy("/s.txt") == b"synced\n"
    assert vol.mcopy("/after.txt") == b"after\n"

    # The clean dismount left a clean image: the next mount repairs nothing.
    vol.mount()
    assert vol.client.status()["repaired"] == []


HOLDER = r"""
import os, sys
mp = os.environ["MP"]
fd = os.open(mp + "/held.txt", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"held")
os.fsync(fd)
print("ready", flush=True)
sys.stdin.readline()
for what, op in (("read", lambda: os.pread(fd, 4, 0)), ("write", lambda: os.pwrite(fd, b"X", 0))):
    try:
        op()
        print(what, 0, flush=True)
    except OSError as e:
        print(what, e.errno, flush=True)
sys.stdin.readline()
"""


def test_sigkill_with_holder_cleans_up_lazily(mounted_volume):
    vol = mounted_volume
    holder = vol.spawn_py(HOLDER)
    _kill(vol)
    _assert_stale(vol)
    holder.stdin.write("\n")
    holder.stdin.flush()
    got = dict(vol_line.split() for vol_line in (holder.stdout.readline(), holder.stdout.readline()))
    assert got == {"read": str(errno.ENOTCONN), "write": str(errno.ENOTCONN)}, got
    # The holder's fd keeps the dead mount busy: cleanup falls back to a lazy unmount and still succeeds.
    assert cleanup_stale(vol.mountpoint) is True
    assert find_mount(vol.mountpoint) is None
    vol.mount()
    assert "dirty" in {p["kind"] for p in vol.client.status()["repaired"]}
    assert vol.sh("cat held.txt").stdout == "held"
    holder.kill()
    holder.wait(10)
    assert vol.dismount() == {"ok": True, "forced": False}
    vol.assert_fsck_clean()


WRITER = r"""
import os, sys
mp = os.environ["MP"]
os.makedirs(mp + "/w", exist_ok=True)
i = 0
while True:
    name = f"w/f{i:05d}.bin"
    data = (name.encode() * 4000)[: 1000 + 997 * (i % 200)]
    with open(os.path.join(mp, name), "wb") as f:
        f.write(data)
        if i % 3 == 0:
            f.flush()
            os.fsync(f.fileno())
            print(name, len(data), flush=True)
    if i % 7 == 0 and i:
        os.unlink(os.path.join(mp, f"w/f{i - 1:05d}.bin"))
    i += 1
"""


def test_sigkill_mid_workload(fs_volume):
    """Kill the daemon while another process writes; the repaired image is clean and fsynced files survive."""
    vol = fs_volume
    writer = vol.spawn_py(WRITER, ready=None)
    deadline = time.monotonic() + 10
    synced: list[tuple[str, int]] = []
    while len(synced) < 30 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line:
            break
        name, size = line.split()
        synced.append((name, int(size)))
    assert len(synced) >= 30, f"the writer stalled: {writer.stderr.read() if writer.poll() is not None else ''}"
    _kill(vol)
    writer.wait(10)  # its next call fails with ENOTCONN
    assert writer.returncode != 0
    assert cleanup_stale(vol.mountpoint) is True
    vol.mount()
    assert CRASH_KIND[vol.fs] in {p["kind"] for p in vol.client.status()["repaired"]}
    # Every file the writer reported as fsynced is intact, except those it may have deleted since (it unlinks
    # f{i-1} whenever i % 7 == 0, i.e. the files whose index % 7 == 6).
    script = "import os, sys\nmp = os.environ['MP']\n" + "".join(
        f"d = open(mp + '/{name}', 'rb').read(); assert d == (b'{name}' * 4000)[:{size}], '{name}'\n"
        for name, size in synced
        if int(name[3:8]) % 7 != 6
    ) + "print('ok')\n"
    assert vol.py(script).stdout.strip() == "ok"
    assert vol.dismount() == {"ok": True, "forced": False}
    vol.assert_fsck_clean()

"""Crash consistency through the mount: SIGKILL the daemon under a workload; nothing fsynced may be lost.

Each trial (``tools.campaign.crash.run_trial``) creates a volume through the service, runs a workload in
another process against the mount point — write-once files that are recorded (path + SHA-256, in a fsynced
side file on the host) only once their ``fsync``/``fdatasync`` (or rename + fsync of the file or of its
directory) returned, among churning files and directories that are created, written, left open, truncated,
renamed over each other and deleted — and SIGKILLs the daemon after a random delay. The service then
reconciles (a new ``VolumeService`` on the root, or ``Volume.mount()``), the new daemon repairs the dirty image
before it mounts — in one trial of four it is SIGKILLed too, while it repairs, and the next recovery starts from
what it left — and every recorded file must be intact through the mount (exact name, content). The tree
must read, ``Volume.check()`` must be clean, the safe dismount must succeed, ``fsck.fat -n`` must pass and no
daemon log may hold a traceback. The same trials run on NTFS volumes (Windows semantics over ntfs-3g: the recovery
repairs simvol's in-use marker with ``ntfsfix``, and ``ntfsfix -n`` on the region is the checker).

``SIMVOL_CRASH_MOUNT_TRIALS`` (default 3 per file system) sets the number of trials, ``SIMVOL_CRASH_MOUNT_SEED``
the first seed; every failure names its seed. The full campaigns are ``scripts/campaign crash --trials 200 [--fs
NTFS]`` (docs/reliability.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from simvol.mount import DaemonClient, read_pidfile, wait_gone
from simvol.service import VolumeService
from tools.campaign.crash import CRASH_REPAIR, DEFAULT_SEED, replay_command, run_trial

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(shutil.which("fsck.fat") is None, reason="fsck.fat (dosfstools) is not installed"),
]

TRIALS = int(os.environ.get("SIMVOL_CRASH_MOUNT_TRIALS", "3"))
# The default seeds include trials that also kill the recovering daemon while it repairs (one trial in four).
SEED = int(os.environ.get("SIMVOL_CRASH_MOUNT_SEED", str(DEFAULT_SEED + 3)))


@pytest.mark.parametrize(("filesystem", "kill"), [("FAT32", "daemon"), ("NTFS", "daemon"), ("NTFS", "server")])
@pytest.mark.parametrize("index", range(TRIALS))
def test_sigkill_under_workload_loses_no_synced_file(root, index, filesystem, kill):
    """``kill="server"``: the NTFS volume's ntfs-3g is SIGKILLed instead of its daemon."""
    if filesystem == "NTFS" and not shutil.which("ntfs-3g"):
        pytest.skip("ntfs-3g is not installed")
    seed = SEED + index
    r = run_trial(root, index, seed, max_delay=1.0, filesystem=filesystem, kill=kill)
    detail = "\n".join([*(f"loss: {p}: {why}" for p, why in r.losses), *r.violations])
    assert r.ok, f"seed {seed} (replay: {replay_command(seed, filesystem, kill)}):\n{detail}"
    assert r.records > 0, f"seed {seed}: the workload synced nothing before the kill ({r.ops} ops)"
    # The remount repairs the crashed image — unless this trial killed the repairing daemon too, after it had
    # cleared the marker (the harness's own rule, checked in r.ok as well).
    assert CRASH_REPAIR[filesystem] in r.repaired or r.repair_interrupted, f"seed {seed}: repaired {r.repaired}"


DIR_FSYNC = r"""
import os, sys
mp = sys.argv[1]
fd = os.open(mp + "/pending.bin", os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"p" * 5000)  # no close, no fsync of the file: only the directory fsync below
dfd = os.open(mp, os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)
print("synced", flush=True)
sys.stdin.readline()
"""


def test_directory_fsync_makes_pending_changes_durable(root):
    """Regression: fsync(2) on a directory was answered ENOSYS by libfuse (no ``fsyncdir`` callback), which the
    kernel reports as success — while the written file's size and FAT chain were still only in the daemon's
    memory. After a SIGKILL the file came back empty. Now ``VolumeOps.fsyncdir`` syncs the volume."""
    svc = VolumeService(root)
    vol = svc.create_volume(64 << 20)
    holder = subprocess.Popen(
        [sys.executable, "-c", DIR_FSYNC, vol.mount_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "synced"
        info = read_pidfile(svc.root.run, str(vol.id))
        os.kill(info.pid, signal.SIGKILL)
        assert wait_gone(info.pid, info.create_time, 10)
    finally:
        holder.kill()
        holder.wait(10)
    vol.mount()
    status = DaemonClient(read_pidfile(svc.root.run, str(vol.id)).socket).status()
    assert "dirty" in {p["kind"] for p in status["repaired"]}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; print(len(open(sys.argv[1], 'rb').read()))",
            vol.mount_path + "/pending.bin",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout.strip() == "5000", out
    vol.dismount()
    svc.close()

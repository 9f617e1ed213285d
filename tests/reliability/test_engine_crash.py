"""Crash consistency of the FAT32 engine: a child process is cut off mid-workload, the parent recovers.

The child opens the image with ``FatFileSystem`` and runs a random workload. Write-once files are created,
written, ``sync()``ed and then recorded (path, content seed, length) in a side file that is fsynced; they are
never touched again. Around them other files churn: created, written, truncated, renamed (also across
directories and over each other), deleted, and directories come and go, in the same directories as the
write-once files. The child dies either

- ``exit``: by ``os._exit`` just before its N-th ``os.pwrite`` (N random), i.e. also in the middle of an
  operation, between the data, FAT and directory writes; or
- ``kill``: by SIGKILL from the parent after a random delay.

Then the parent runs ``check(repair=True)``; afterwards ``check()`` finds nothing, ``fsck.fat -n`` is clean, the
whole tree reads, and every recorded file is intact, with its exact name.

Trials: ``SIMVOL_CRASH_TRIALS`` per mode (default 10); seeds derive from ``SIMVOL_CRASH_SEED`` (default fixed)
and are printed in every failure message.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simvol.fat import FatFileSystem, check
from tests.support import fatoracle as O

REPO = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("SIMVOL_CRASH_TRIALS", "10"))
BASE_SEED = int(os.environ.get("SIMVOL_CRASH_SEED", "20240917"))
MiB = 1 << 20

CHILD = r"""
import json, os, random, sys, time
img, side, mode = sys.argv[1], sys.argv[2], sys.argv[4]
seed, crash_at, max_ops = int(sys.argv[3]), int(sys.argv[5]), int(sys.argv[6])
if mode == "exit":
    _real_pwrite = os.pwrite
    _count = [0]
    def _pwrite(fd, data, offset):
        _count[0] += 1
        if _count[0] >= crash_at:
            os._exit(77)
        return _real_pwrite(fd, data, offset)
    os.pwrite = _pwrite
from simvol.fat import FatFileSystem

rnd = random.Random(seed)
side_fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
fs = FatFileSystem.open_path(img)
dirs = ["", "/keep", "/Mixed Dir", "/Mixed Dir/Sub Dir 2", "/ünï"]
for d in dirs[1:]:
    fs.mkdir(d)
fs.sync()
os.write(1, b"ready\n")
cs = fs.cs

def content(cseed, n):
    return random.Random(cseed).randbytes(n)

keep_n = 0
churn = {}          # path -> size
churn_dirs = []     # empty-at-birth directories that may be removed
serial = 0
for op in range(max_ops):
    r = rnd.random()
    if r < 0.22:                                         # a write-once file, synced and recorded
        keep_n += 1
        d = rnd.choice(dirs)
        pattern = rnd.choice(["k{n}.bin", "Keep File {n} with a Long Name.dat", "KEEP{n}.TXT", "kéép {n}"])
        name = pattern.format(n=keep_n)
        path = f"{d}/{name}"
        n = rnd.choice([0, 1, cs - 1, cs, cs + 1, rnd.randrange(1, 20000)])
        cseed = rnd.randrange(1 << 30)
        data = content(cseed, n)
        fs.create(path)
        pos = 0
        while pos < n:                                    # in pieces, like a real writer
            step = min(n - pos, rnd.choice([1, 100, cs, 3000, 70000]))
            fs.write(path, data[pos:pos + step], pos)
            pos += step
        fs.sync()
        os.write(side_fd, (json.dumps({"path": path, "seed": cseed, "len": n}) + "\n").encode())
        os.fsync(side_fd)
    elif r < 0.45 or not churn:                           # churn: create and write
        serial += 1
        prefix, suffix = rnd.choice(['c', 'Churn File ', 'CH']), rnd.choice(['', '.tmp', '.Log'])
        path = f"{rnd.choice(dirs + churn_dirs)}/{prefix}{serial}{suffix}"
        fs.create(path)
        n = rnd.randrange(0, 30000)
        if n:
            fs.write(path, os.urandom(n), rnd.choice([0, 0, rnd.randrange(0, 5000)]))
        churn[path] = fs.stat(path).size
    elif r < 0.55:                                        # churn: overwrite / extend
        path = rnd.choice(sorted(churn))
        fs.write(path, os.urandom(rnd.randrange(1, 9000)), rnd.randrange(0, churn[path] + 4000))
        churn[path] = fs.stat(path).size
    elif r < 0.63:                                        # churn: truncate
        path = rnd.choice(sorted(churn))
        n = rnd.randrange(0, churn[path] + 10000)
        fs.truncate(path, n)
        churn[path] = n
    elif r < 0.75:                                        # churn: rename, within or across directories
        path = rnd.choice(sorted(churn))
        if rnd.random() < 0.3 and len(churn) > 1:
            dest = rnd.choice(sorted(p for p in churn if p != path))   # replaces another churn file
        else:
            serial += 1
            dest = f"{rnd.choice(dirs + churn_dirs)}/renamed {serial}.{rnd.choice(['a', 'bin', 'Long Extension'])}"
        fs.rename(path, dest)
        churn[dest] = churn.pop(path)
    elif r < 0.87:                                        # churn: delete
        path = rnd.choice(sorted(churn))
        fs.unlink(path)
        del churn[path]
    elif r < 0.93:                                        # churn: directories come and go
        empty = [d for d in churn_dirs if not any(p.startswith(d + "/") for p in churn)]
        if empty and rnd.random() < 0.5:
            d = rnd.choice(empty)
            fs.rmdir(d)
            churn_dirs.remove(d)
        else:
            serial += 1
            d = f"{rnd.choice(dirs)}/churn dir {serial}"
            fs.mkdir(d)
            churn_dirs.append(d)
    elif r < 0.98:
        fs.sync()
    else:                                                 # a clean close and a reopen (crash inside either)
        fs.close()
        fs = FatFileSystem.open_path(img)
    if mode == "kill" and rnd.random() < 0.05:
        time.sleep(0.001)
# Ran out of operations without being cut off: close (a crash may still hit it), then die.
fs.close()
os._exit(78)
"""


def _make_image(path: Path, cluster: int) -> int:
    size = 40 * MiB if cluster == 512 else 300 * MiB
    O.make_volume(path, size, cluster_size=cluster)
    return size


def _records(side: Path) -> list[dict]:
    out = []
    if not side.exists():
        return out
    for line in side.read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # an incomplete last line: its sync returned, but the record did not make it
    return out


def _run_child(img: Path, side: Path, seed: int, mode: str, rnd: random.Random) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    crash_at = rnd.randrange(1, 2500) if mode == "exit" else 0
    max_ops = 600 if mode == "exit" else 3000
    args = [sys.executable, "-c", CHILD, str(img), str(side), str(seed), mode, str(crash_at), str(max_ops)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    how = f"crash_at pwrite #{crash_at}" if mode == "exit" else ""
    try:
        if mode == "kill":
            # Wait until the workload runs (the child has imported and opened the image), then kill it.
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            delay = rnd.uniform(0.0, 0.4)
            if ready:
                time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            how = f"SIGKILL {delay:.3f}s after ready" + ("" if ready else " (never became ready)")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rc = proc.returncode
    if mode == "exit":
        assert rc in (77, 78), f"child failed on its own (rc {rc}):\n{err.decode(errors='replace')}"
    else:
        assert rc in (-signal.SIGKILL, 78), f"child failed on its own (rc {rc}):\n{err.decode(errors='replace')}"
    return f"{how}, child rc {rc}"


CASES = [
    pytest.param(mode, i, id=f"{mode}-{i}-seed{BASE_SEED + i * 2 + (mode == 'kill')}")
    for i in range(TRIALS)
    for mode in ("exit", "kill")
]


@pytest.mark.parametrize("mode,trial", CASES)
def test_crash_then_repair_keeps_synced_files(tmp_path: Path, mode: str, trial: int) -> None:
    reason = O.skip_reason(["fsck.fat", "mcopy"])
    if reason:
        pytest.skip(reason)
    seed = BASE_SEED + trial * 2 + (mode == "kill")
    rnd = random.Random(seed)
    cluster = 512 if trial % 3 != 2 else 4096
    img = tmp_path / "vol.img"
    side = tmp_path / "synced.jsonl"
    size = _make_image(img, cluster)
    how = _run_child(img, side, seed, mode, rnd)
    ctx = f"mode={mode} seed={seed} cluster={cluster} {how} (rerun: SIMVOL_CRASH_SEED={BASE_SEED})"

    fd = os.open(img, os.O_RDWR)
    try:
        problems = check(fd, size, repair=True)
        unrepaired = [p for p in problems if not p.repaired]
        assert not unrepaired, f"{ctx}: check(repair=True) left {unrepaired}"
        again = check(fd, size)
        assert not again, f"{ctx}: problems remain after repair: {again} (first pass: {problems})"
    finally:
        os.close(fd)
    O.fsck_clean(img, context=ctx)

    records = _records(side)
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        O.engine_tree(fs)  # every directory lists and every file reads to its size
        for rec in records:
            path = rec["path"]
            want = random.Random(rec["seed"]).randbytes(rec["len"])
            parent, name = path.rsplit("/", 1)
            assert name in fs.listdir(parent or "/"), f"{ctx}: synced file {path!r} lost (problems: {problems})"
            got = fs.read(path, rec["len"] + 1, 0)
            assert got == want, (
                f"{ctx}: synced file {path!r}: {len(got)} bytes, want {rec['len']} (problems: {problems})"
            )
    # The repaired image is still writable and closes clean.
    with FatFileSystem.open_path(str(img)) as fs:
        fs.create("/after repair.txt")
        fs.write("/after repair.txt", b"ok", 0)
    O.fsck_clean(img, context=f"{ctx}, after writing to the repaired image")
    if records:  # mtools agrees on a synced file
        rec = records[len(records) // 2]
        assert O.mcopy_read(img, rec["path"]) == random.Random(rec["seed"]).randbytes(rec["len"]), ctx

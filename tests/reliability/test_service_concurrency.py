"""Several processes drive one root at once (docs/architecture.md, Processes: registry transactions + per-volume locks).

N worker processes, each with its own ``VolumeService``, run K random operations on 3 shared volumes: Mount,
Dismount (temporary, permanent, forced), OfflineVolume, Add/DeleteAccessPath of letters D–H and two mount
folders, Format (rarely), GetProperties, GetFileSystemProperties, resolve + a short file write. Every operation
must either succeed or raise a ``VdsError`` (a file write may also fail with an errno a racing dismount
explains); anything else fails the test. Afterwards the invariants hold: at most one letter per volume, no
letter or folder on two volumes, the symlinks on disk match the registry, M ⇔ a live simvol mount with a live
daemon, P ⇔ the flag in the image, no image mounted twice; after a final safe dismount every image passes
``fsck.fat -n``.

Defaults are small for CI (4 processes × 25 operations); ``SIMVOL_CONC_PROCS=8 SIMVOL_CONC_OPS=200`` is the full
campaign, ``SIMVOL_CONC_SEED`` replays one. ``SIMVOL_CONC_SECONDS=N`` turns it into a soak: every process runs
operations until N seconds have passed (``scripts/campaign soak``).
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from simvol.errors import S_OK
from simvol.image import read_metadata
from simvol.mount import daemon_alive, find_mount, read_pidfile, simvol_mounts
from simvol.service import VolumeService
from simvol.types import VolumeFlag
from tests.support.processes import daemons_of

pytestmark = pytest.mark.fuse

PROCS = int(os.environ.get("SIMVOL_CONC_PROCS", "4"))
OPS = int(os.environ.get("SIMVOL_CONC_OPS", "25"))
SECONDS = float(os.environ.get("SIMVOL_CONC_SECONDS", "0"))
SIZE = 40 << 20
LETTERS = "DEFGH"
FOLDERS = ("f1", "f2")
PD = int(VolumeFlag.PERMANENTLY_DISMOUNTED)

WORKER = r"""
import errno, json, os, random, sys, traceback
from simvol.errors import VdsError
from simvol.service import VolumeService

import time
root, seed, n_ops, ids = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
seconds = float(sys.argv[5])
stop_at = time.monotonic() + seconds
rnd = random.Random(seed)
svc = VolumeService(root)
LETTERS = "DEFGH"
FOLDERS = ("f1", "f2")
# A racing forced dismount: EIO/ENOTCONN (stale), ECONNABORTED (a request in flight when fusectl aborted the
# connection), ENOENT (the mount point went away between resolve and open), EBUSY (opens refused during a
# safe dismount).
IO_ERRNOS = {errno.EIO, errno.ENOTCONN, errno.ECONNABORTED, errno.ENOENT, errno.EBUSY, errno.ESTALE, errno.ENOTDIR}
OPS = [
    ("mount", 8), ("dismount", 8), ("dismount_perm", 5), ("dismount_force", 5), ("offline", 3),
    ("add_letter", 12), ("delete_letter", 8), ("add_folder", 8), ("delete_folder", 6), ("format", 2),
    ("get_properties", 8), ("get_fs_properties", 6), ("query_paths", 4), ("io", 8),
]
names, weights = zip(*OPS)

def run(op, v):
    if op == "mount":
        return v.mount()
    if op == "dismount":
        return v.dismount()
    if op == "dismount_perm":
        return v.dismount(permanent=True)
    if op == "dismount_force":
        return v.dismount(force=True, permanent=rnd.random() < 0.3)
    if op == "offline":
        return v.offline()
    if op == "add_letter":
        return v.add_access_path(rnd.choice(LETTERS) + rnd.choice([":", ":\\"]))
    if op == "delete_letter":
        return v.delete_access_path(rnd.choice(LETTERS) + ":", force=rnd.random() < 0.5)
    if op == "add_folder":
        return v.add_access_path("C:\\mnt\\" + rnd.choice(FOLDERS))
    if op == "delete_folder":
        return v.delete_access_path("c:\\MNT\\" + rnd.choice(FOLDERS) + "\\")
    if op == "format":
        return v.format(label="W%d" % seed, force=rnd.random() < 0.5)
    if op == "get_properties":
        return int(v.get_properties().status)
    if op == "get_fs_properties":
        return v.get_file_system_properties().total_allocation_units
    if op == "query_paths":
        return v.query_access_paths()
    if op == "io":
        host = os.path.join(svc.resolve("\\\\?\\Volume{%s}\\" % v.id), "w%d.txt" % os.getpid())
        try:
            with open(host, "wb") as f:
                f.write(b"x" * rnd.randint(1, 70000))
        except OSError as e:
            if e.errno in IO_ERRNOS:
                return "io-errno-%s" % errno.errorcode.get(e.errno, e.errno)
            raise
        return "io-ok"
    raise AssertionError(op)

i = -1
while True:
    i += 1
    if (seconds and time.monotonic() >= stop_at) or (not seconds and i >= n_ops):
        break
    op = rnd.choices(names, weights)[0]
    vid = rnd.choice(ids)
    rec = {"i": i, "op": op, "vol": vid[:8]}
    try:
        v = svc.volume(vid)
        res = run(op, v)
        rec["ok"] = res if isinstance(res, (int, str, list)) else str(res)
    except VdsError as e:
        rec["hr"] = "0x%08X" % e.hresult
        rec["code"] = e.code
    except BaseException as e:
        rec["unexpected"] = "".join(traceback.format_exception(e))
    print(json.dumps(rec), flush=True)
svc.close()
"""


def _arg(p: psutil.Process, name: str) -> str:
    cmd = p.info["cmdline"]
    return cmd[cmd.index(name) + 1]


def _check_invariants(svc: VolumeService, ids: list[str], *, raw: bool) -> dict[str, str]:
    """Returns the state of each volume. ``raw``: read reality without reconciling first."""
    root = svc.root.path
    reg = svc.registry
    paths = reg.paths()
    # no letter/folder on two volumes; at most one letter per volume
    keys = [p.key for p in paths]
    assert len(keys) == len(set(keys)), f"an access path on two volumes: {paths}"
    hosts = [p.host_path for p in paths]
    assert len(hosts) == len(set(hosts))
    per_vol = collections.Counter(p.volume_id for p in paths if p.kind == "letter")
    assert all(n <= 1 for n in per_vol.values()), f"more than one letter on a volume: {per_vol}"
    # the drive symlinks on disk are exactly the registered letters, each pointing at its volume
    registered = {p.host_path: p for p in paths}
    for name in os.listdir(svc.root.drives):
        host = os.path.join(svc.root.drives, name)
        if name == "C":
            continue
        assert host in registered, f"an orphan drive link {host} -> {os.readlink(host)}"
    for p in paths:
        assert os.path.islink(p.host_path), f"registered path {p.host_path} is not a link"
        assert os.path.basename(os.readlink(p.host_path)) == "{" + p.volume_id.upper() + "}", p
    for name in FOLDERS:
        host = os.path.join(svc.root.system_drive, "mnt", name)
        if host not in registered:
            assert os.path.isdir(host) and not os.path.islink(host) and os.listdir(host) == [], host
    # mounts, daemons, images
    mounts = simvol_mounts(svc.root.volumes)
    guids = collections.Counter(e.volume_guid for e in mounts)
    assert all(n == 1 for n in guids.values()), f"a volume mounted twice: {mounts}"
    daemons = daemons_of(root)
    images = collections.Counter(_arg(p, "--image") for p in daemons)
    assert all(n == 1 for n in images.values()), f"an image served by two daemons: {images}"
    live_mps = {_arg(p, "--mountpoint") for p in daemons}
    for e in mounts:
        assert e.mountpoint in live_mps, f"a stale mount without a daemon: {e.mountpoint}"
    states = {}
    for vid in ids:
        row = reg.volume(vid)
        v = svc.volume(vid)
        flags = read_metadata(row.image).flags
        info = read_pidfile(svc.root.run, vid)
        live = info is not None and daemon_alive(info)
        e = find_mount(v.mount_path)
        mounted = e is not None and e.is_simvol
        state = "P" if flags & PD else ("T" if row.dismount == "temporary" else "M")
        if raw:  # M: mounted; T: its mount point armed (remount on access), by its daemon; P: nothing
            assert mounted == live == (state in ("M", "T")), f"{vid}: state {state}, mounted {mounted}, daemon {live}"
        if state == "P":
            assert not reg.paths(vid), f"{vid} is P but has paths"
        states[vid] = state
        assert v.state == state
    return states


@pytest.fixture
def conc_root():
    d = tempfile.mkdtemp(prefix="svc-", dir="/tmp")  # short: daemon sockets live in ROOT/run
    yield d
    try:
        s = VolumeService(os.path.join(d, "root"))
        for row in s.registry.volumes():
            try:
                s.volume(row.id).delete(force=True)
            except Exception:  # noqa: BLE001
                pass
        s.close()
    finally:
        left = simvol_mounts(os.path.join(d, "root", "volumes"))
        for e in left:
            subprocess.run(["fusermount3", "-uz", "--", e.mountpoint], capture_output=True, timeout=10)
        for p in daemons_of(os.path.join(d, "root")):
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(d, ignore_errors=True)
    assert not left, f"mounts left: {left}"


def test_concurrent_processes_keep_the_invariants(conc_root) -> None:
    seed = int(os.environ.get("SIMVOL_CONC_SEED", str(random.randrange(1 << 30))))
    root = os.path.join(conc_root, "root")
    svc = VolumeService(root)
    os.makedirs(os.path.join(svc.root.system_drive, "mnt"))
    for name in FOLDERS:
        os.mkdir(os.path.join(svc.root.system_drive, "mnt", name))
    vols = [svc.create_volume(SIZE, label=f"V{i}") for i in range(3)]
    ids = [str(v.id) for v in vols]

    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, root, str(seed + k), str(OPS), ",".join(ids), str(SECONDS)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        for k in range(PROCS)
    ]
    deadline = time.monotonic() + (SECONDS + 120 if SECONDS else max(120, OPS * PROCS * 2))
    records, problems = [], []
    for k, p in enumerate(procs):
        try:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"worker {k} (seed {seed + k}) hung; seed {seed}")
        if p.returncode != 0:
            problems.append(f"worker {k} exited {p.returncode}: {err[-3000:]}")
        for line in out.splitlines():
            rec = json.loads(line)
            rec["worker"] = k
            records.append(rec)
            if "unexpected" in rec:
                problems.append(f"worker {k} op {rec['i']} {rec['op']}: {rec['unexpected']}")
    assert not problems, f"seed {seed}:\n" + "\n".join(problems[:5])
    if not SECONDS:
        assert len(records) == PROCS * OPS
    codes = collections.Counter(r.get("code", "S_OK") for r in records)
    io = collections.Counter(r["ok"] for r in records if r["op"] == "io" and "ok" in r)
    print(f"seed {seed}: {PROCS} processes, {len(records)} ops, results {dict(codes)}, file writes {dict(io)}")
    assert codes["S_OK"] > 0

    states = _check_invariants(svc, ids, raw=True)
    svc.reconcile()
    assert _check_invariants(svc, ids, raw=True) == states

    # final safe dismount, then a host shutdown (no armed mount point either); every image is a clean FAT32
    for vid in ids:
        v = svc.volume(vid)
        if states[vid] == "M":
            assert v.dismount() == S_OK, f"seed {seed}"
    svc.down()
    for vid in ids:
        v = svc.volume(vid)
        r = subprocess.run(["fsck.fat", "-n", v.image], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"seed {seed}: fsck.fat -n {v.image}:\n{r.stdout}\n{r.stderr}"
    assert not simvol_mounts(svc.root.volumes)
    assert not daemons_of(root), "a daemon outlived its dismount"
    svc.close()

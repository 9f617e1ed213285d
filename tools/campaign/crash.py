"""Crash consistency through the mount: SIGKILL the daemon under a workload, reconcile, verify every synced file.

One trial (seed *s*):

1. A fresh volume is created on the campaign's root (it arrives mounted).
2. A workload runs in another process (:data:`WORKLOAD`) against the mount point: write-once *keep* files are
   created, written (in chunks, sometimes out of order, sometimes across several fsyncs), made durable —
   ``fsync``/``fdatasync`` of the file, or write + close + ``rename`` + ``fsync`` of the file or of its
   directory — and only then recorded (path + SHA-256) in a side file on the host file system, which is
   flushed and fsynced. A keep file is never touched again. Around them *churn* files are created,
   written, left open, truncated, renamed (also across directories and over each other) and deleted, and
   churn directories come and go, in the same directories.
3. After a random delay the daemon is SIGKILLed. The workload's next call fails (ENOTCONN) and it exits.
4. The service reconciles — either a new ``VolumeService`` on the root lists its volumes, or
   ``Volume.mount()`` on the old one (chosen by the seed); in one trial of three the volume is then dismounted
   temporarily, another process's first access mounts it again (remount on access) and the daemon is SIGKILLed
   0–40 ms into that, and ``Volume.mount()`` recovers once more. The new daemon checks and repairs the dirty image
   before it mounts. In one trial of four that daemon is SIGKILLed as well, 0–40 ms after it starts repairing
   (:class:`_RepairKiller`), and ``Volume.mount()`` recovers from whatever it left.
5. Every recorded file must be intact through the mount: its exact name in its directory listing and its
   content hash. The whole tree must read without an error, ``Volume.check()`` must find nothing, a safe
   dismount must succeed and ``fsck.fat -n`` must be clean. No daemon log may hold a Python traceback.

With ``filesystem="NTFS"`` the volume is an NTFS one with Windows' semantics (simvol's session in front of
ntfs-3g): the SIGKILLed daemon's ntfs-3g follows it (parent-death signal) and closes the volume, the recovering
daemon finds simvol's in-use marker and repairs with ``ntfsfix`` (kind ``in_use``), and the checker after the safe
dismount is ``ntfsfix -n`` on the image's region. ``kill="server"`` SIGKILLs the volume's ntfs-3g instead of its
daemon (ntfs-3g dies mid-request, without closing the volume); the daemon then goes down as a crashed one and the
recovery is the same.

A trial that breaks any of this is a violation; a recorded file that is missing or differs is a loss.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from simvol.errors import VdsError
from simvol.mount import daemon_alive, read_pidfile, wait_gone
from simvol.service import Volume, VolumeService

from .common import LogWatch, check_image, delete_volume, describe_failure, kill_group, ntfs3g_servers, run_py

MiB = 1 << 20
VOLUME_SIZE = 128 * MiB
DEFAULT_SEED = 20250101
DEAD = ("ENOTCONN", "ECONNABORTED")

WORKLOAD = r"""
import errno, hashlib, json, os, random, sys, time
mp, side, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
side_fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
DEAD = (errno.ENOTCONN, errno.ECONNABORTED)
EXPECTED = {errno.ENOSPC, errno.EBUSY}  # EBUSY: a RELEASE still on its way (Windows sharing rules)
STABLE = ["", "Keep", "Mixed Dir", "Mixed Dir/Sub Two", "\u00fcn\u00ef dir"]
stats = {"ops": 0, "kept": 0, "errors": [], "end": "limit"}
churn_dirs = []
churn = {}          # rel path -> size (files that may be touched)
open_fds = {}       # rel path -> fd (churn files left open)
serial = [0]

def P(rel):
    return os.path.join(mp, rel) if rel else mp

def J(d, n):
    return f"{d}/{n}" if d else n

def finish(end):
    stats["end"] = end
    for fd in list(open_fds.values()):
        try:
            os.close(fd)
        except OSError:
            pass
    print(json.dumps(stats), flush=True)
    os._exit(0)

def record(rel, data, how):
    line = json.dumps({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                       "how": how, "op": stats["ops"]}) + "\n"
    os.write(side_fd, line.encode())
    os.fsync(side_fd)
    stats["kept"] += 1

def size_pick():
    r = rnd.random()
    if r < 0.05: return 0
    if r < 0.35: return rnd.randint(1, 511)
    if r < 0.65: return rnd.randint(512, 4096)
    if r < 0.95: return rnd.randint(4097, 70000)
    return rnd.randint(70001, 400000)

def write_all(fd, data, order):
    if order == "seq":
        pos = 0
        while pos < len(data):
            n = rnd.randint(1, 65536)
            os.write(fd, data[pos:pos + n]); pos += n
    else:  # out of order: the tail first, then the head (a hole that is filled in)
        cut = rnd.randint(0, len(data))
        os.pwrite(fd, data[cut:], cut)
        os.pwrite(fd, data[:cut], 0)

def new_serial():
    serial[0] += 1
    return serial[0]

def keep_name(n):
    return rnd.choice(["keep{n}.bin", "Keep File {n} with a Long Name.dat", "KEEP{n}.TXT", "k\u00e9\u00e9p {n}",
                       "Keep.{n}.tar.gz", "keep {n}"]).format(n=n)

def churn_name(n):
    pattern = rnd.choice(["churn{n}.tmp", "Churn File {n}.log", "CH{n}.DAT", "ch\u00fcrn {n}", "churn.{n}.part"])
    return pattern.format(n=n)

def op_keep_direct():
    n = new_serial()
    rel = J(rnd.choice(STABLE), keep_name(n))
    data = rnd.randbytes(size_pick())
    fd = os.open(P(rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if rnd.random() < 0.25 and len(data) > 1:  # several syncs; only the last one makes it a keep file
            half = rnd.randint(1, len(data) - 1)
            os.write(fd, data[:half]); os.fsync(fd)
            os.write(fd, data[half:])
            how = "multi-fsync"
        else:
            write_all(fd, data, rnd.choice(["seq", "seq", "ooo"]))
            how = "fsync"
        if rnd.random() < 0.3:
            os.fdatasync(fd); how = how.replace("fsync", "fdatasync")
        else:
            os.fsync(fd)
        record(rel, data, how)
    finally:
        os.close(fd)

def op_keep_rename():
    n = new_serial()
    tmp_dir = rnd.choice(STABLE + churn_dirs)
    tmp = J(tmp_dir, f"tmp{n}.part")
    final_dir = rnd.choice(STABLE)
    final = J(final_dir, keep_name(n))
    data = rnd.randbytes(size_pick())
    fd = os.open(P(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    churn[tmp] = 0
    try:
        write_all(fd, data, "seq")
        if rnd.random() < 0.5:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(P(tmp), P(final))
    churn.pop(tmp, None)
    if rnd.random() < 0.5:
        dfd = os.open(P(final_dir), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd); how = "rename+fsyncdir"
        finally:
            os.close(dfd)
    else:
        fd = os.open(P(final), os.O_RDONLY)
        try:
            os.fsync(fd); how = "rename+fsync"
        finally:
            os.close(fd)
    record(final, data, how)

def op_churn_create():
    n = new_serial()
    rel = J(rnd.choice(STABLE + churn_dirs), churn_name(n))
    fd = os.open(P(rel), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    churn[rel] = 0
    data = rnd.randbytes(size_pick())
    os.write(fd, data)
    churn[rel] = len(data)
    if len(open_fds) < 4 and rnd.random() < 0.4:
        open_fds[rel] = fd
    else:
        os.close(fd)

def op_churn_write():
    if not churn: return
    rel = rnd.choice(sorted(churn))
    fd = open_fds.get(rel)
    own = fd is None
    if own:
        fd = os.open(P(rel), os.O_RDWR)
    try:
        r = rnd.random()
        if r < 0.4:
            os.pwrite(fd, rnd.randbytes(rnd.randint(1, 20000)), rnd.randint(0, churn[rel] + 100))
        elif r < 0.7:
            os.ftruncate(fd, rnd.randint(0, churn[rel] + 5000))
        else:
            os.pwrite(fd, rnd.randbytes(rnd.randint(1, 150000)), churn[rel])
        churn[rel] = os.fstat(fd).st_size
        if rnd.random() < 0.1:
            os.fsync(fd)
    finally:
        if own:
            os.close(fd)

def op_churn_close():
    if open_fds:
        rel = rnd.choice(sorted(open_fds))
        os.close(open_fds.pop(rel))

def op_churn_rename():
    movable = [r for r in churn if r not in open_fds]
    if not movable: return
    src = rnd.choice(sorted(movable))
    targets = [r for r in movable if r != src]
    if targets and rnd.random() < 0.3:
        dst = rnd.choice(sorted(targets))          # over another churn file
    else:
        dst = J(rnd.choice(STABLE + churn_dirs), churn_name(new_serial()))
    os.rename(P(src), P(dst))
    churn[dst] = churn.pop(src)

def op_churn_delete():
    movable = [r for r in churn if r not in open_fds]
    if not movable: return
    rel = rnd.choice(sorted(movable))
    os.unlink(P(rel))
    del churn[rel]

def op_dir():
    if churn_dirs and rnd.random() < 0.4:
        d = rnd.choice(churn_dirs)
        inside = [r for r in churn if r.startswith(d + "/")]
        if any(r in open_fds for r in inside):
            return
        for r in inside:
            os.unlink(P(r)); del churn[r]
        os.rmdir(P(d))
        churn_dirs.remove(d)
    else:
        d = J(rnd.choice(STABLE), f"Churn Dir {new_serial()}")
        os.mkdir(P(d))
        churn_dirs.append(d)

def free_space():
    for rel in sorted(churn):
        if rel not in open_fds:
            try:
                os.unlink(P(rel)); del churn[rel]
            except OSError:
                pass

OPS = [(op_keep_direct, 20), (op_keep_rename, 8), (op_churn_create, 20), (op_churn_write, 18),
       (op_churn_close, 5), (op_churn_rename, 10), (op_churn_delete, 10), (op_dir, 6)]
FUNCS = [f for f, w in OPS]
WEIGHTS = [w for f, w in OPS]

try:
    for d in STABLE[1:]:
        os.mkdir(P(d))
except OSError as e:
    print(json.dumps({"ops": 0, "kept": 0, "errors": [["setup", e.errno]], "end": "setup"}), flush=True)
    sys.exit(3)
print("ready", flush=True)
while stats["ops"] < 100000:
    stats["ops"] += 1
    fn = rnd.choices(FUNCS, WEIGHTS)[0]
    try:
        fn()
    except OSError as e:
        if e.errno in DEAD:
            finish(errno.errorcode.get(e.errno, str(e.errno)))
        if e.errno == errno.ENOSPC:
            free_space()
        elif e.errno not in EXPECTED:
            stats["errors"].append([fn.__name__, errno.errorcode.get(e.errno, str(e.errno)), str(e)])
            if len(stats["errors"]) > 20:
                finish("errors")
finish("limit")
"""

VERIFY = r'''
import errno, hashlib, json, os, sys
mp, side = sys.argv[1], sys.argv[2]
records = []
with open(side, "rb") as f:
    for line in f.read().decode("utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))
losses, listings = [], {}
for r in records:
    parent, name = os.path.split(r["path"])
    d = os.path.join(mp, parent) if parent else mp
    if d not in listings:
        try:
            listings[d] = set(os.listdir(d))
        except OSError as e:
            listings[d] = e
    names = listings[d]
    if isinstance(names, OSError):
        losses.append([r["path"], f"cannot list its directory: {names}"]); continue
    if name not in names:
        near = [n for n in names if n.lower() == name.lower()]
        losses.append([r["path"], f"missing from the listing (same name, other case: {near})" if near else "missing"])
        continue
    try:
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
    except OSError as e:
        losses.append([r["path"], f"cannot read: {e}"]); continue
    if len(data) != r["size"] or hashlib.sha256(data).hexdigest() != r["sha256"]:
        losses.append([r["path"], f"content differs: {len(data)} bytes, {r['size']} recorded"])
walk_errors, files = [], 0
def onerror(e):
    walk_errors.append(f"listdir {e.filename}: {e}")
for dirpath, dirnames, filenames in os.walk(mp, onerror=onerror):
    for n in filenames:
        p = os.path.join(dirpath, n)
        try:
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass
            files += 1
        except OSError as e:
            walk_errors.append(f"read {p}: {e}")
print(json.dumps({"records": len(records), "losses": losses, "walk_errors": walk_errors, "files": files}))
'''


@dataclass
class TrialResult:
    index: int
    seed: int
    recovery: str = ""
    delay: float = 0.0
    ops: int = 0
    records: int = 0
    losses: list = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    # The recovering daemon itself was killed while it repaired: the next recovery may find the dirty marker
    # already cleared (the repair had got that far), so "dirty" need not be among what it repaired.
    repair_interrupted: bool = False
    workload_end: str = ""
    seconds: float = 0.0
    timeouts: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.losses and not self.violations


class _RepairKiller(threading.Thread):
    """Watches a volume's daemon log; when a daemon starts repairing a dirty image, SIGKILLs it ``delay`` later."""

    def __init__(self, log_path: str, delay: float) -> None:
        super().__init__(name="repair-killer", daemon=True)
        self.log_path = log_path
        self.delay = delay
        self.killed = False
        self._halt = threading.Event()
        try:
            self._offset = os.path.getsize(log_path)
        except OSError:
            self._offset = 0
        self.start()

    def run(self) -> None:
        buf = b""
        while not self._halt.is_set():
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self._offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            self._offset += len(chunk)
            buf += chunk
            for line in buf.decode("utf-8", "replace").splitlines():
                if "checking and repairing" in line:
                    pid = int(line.split()[2])  # "%(asctime)s %(process)d …": date, time, pid
                    time.sleep(self.delay)
                    try:
                        os.kill(pid, signal.SIGKILL)
                        self.killed = True
                    except OSError:
                        pass
                    wait_gone(pid, 0.0, 10)  # SIGKILL lands late on a process inside a mount or fsync call
                    return
            time.sleep(0.001)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return ""
    return proc.stdout.readline()


def _kill_during_auto_remount(svc: VolumeService, vol: Volume, rnd: random.Random, res: TrialResult) -> None:
    """A temporary dismount, another process's first access through the armed mount point, and the daemon SIGKILLed
    0–40 ms into it — while it opens, checks or mounts the image for that access. ``Volume.mount()`` recovers."""
    vid = str(vol.id)
    vol.dismount(force=True)  # → T: the image closed and clean, the mount point armed
    armed = read_pidfile(svc.root.run, vid)
    if armed is None or not daemon_alive(armed):
        res.violations.append("no armed daemon after a temporary dismount")
        return
    access = subprocess.Popen([sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", vol.mount_path],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    time.sleep(rnd.uniform(0.0, 0.04))
    os.kill(armed.pid, signal.SIGKILL)
    if not wait_gone(armed.pid, armed.create_time, 10):
        res.violations.append("the SIGKILLed armed daemon did not go away")
    try:
        access.wait(30)
    except subprocess.TimeoutExpired:
        res.timeouts += 1
        res.violations.append("a first access hung after its daemon was killed")
        access.kill()
        access.wait(10)
    res.recovery += "+killed in auto-remount"
    vol.mount()
    again = read_pidfile(svc.root.run, vid)
    if again is None or not daemon_alive(again) or again.pid == armed.pid:
        res.violations.append(f"no new daemon after the killed auto-remount ({again})")


def replay_command(seed: int, filesystem: str = "FAT32", kill: str = "daemon") -> str:
    """The command that runs trial ``seed`` again."""
    fs = "" if filesystem == "FAT32" else f" --fs {filesystem}"
    return f"scripts/campaign crash --seed {seed} --trials 1{fs}" + ("" if kill == "daemon" else f" --kill {kill}")


#: What the recovering daemon reports it repaired after a crash, per file system.
CRASH_REPAIR = {"FAT32": "dirty", "NTFS": "in_use"}


def run_trial(root: str, index: int, seed: int, *, max_delay: float = 1.5, keep_failed: str | None = None,
              filesystem: str = "FAT32", kill: str = "daemon", log=print) -> TrialResult:
    """One trial on ``root`` (a campaign root shared by all trials). Never raises for a finding."""
    t0 = time.monotonic()
    rnd = random.Random(seed)
    res = TrialResult(index, seed)
    res.recovery = rnd.choice(["service", "mount", "access"])
    res.delay = round(rnd.uniform(0.02, max_delay), 3)
    # One trial in four crashes again: the recovering daemon is SIGKILLed while it checks and repairs the image
    # (or just after), and the next recovery must still find every synced file.
    second = round(rnd.uniform(0.0, 0.04), 3) if rnd.random() < 0.25 else None
    svc = VolumeService(root)
    watch = LogWatch(svc.root.run)
    watch.new_text()  # older trials' logs are not this trial's concern
    side = os.path.join(root, f"synced-{seed}.jsonl")
    vol = None
    image = ""
    daemon_log = ""
    try:
        vol = svc.create_volume(VOLUME_SIZE, filesystem, label="CRASH")
        vid, image = str(vol.id), vol.image
        info = read_pidfile(svc.root.run, vid)
        assert info is not None, "no pid record after create"
        daemon_log = info.log  # every daemon of the volume writes here: the killed one and the next
        mp = vol.mount_path
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        wl = subprocess.Popen(
            [sys.executable, "-c", WORKLOAD, mp, side, str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, cwd="/", env=env,
        )
        try:
            line = _read_line(wl, 30)
            if line.strip() != "ready":
                res.violations.append(
                    f"workload did not start: {line!r} {wl.stderr.read() if wl.poll() is not None else ''}"
                )
                return res
            time.sleep(res.delay)
            if kill == "server":
                servers = ntfs3g_servers(info.pid)
                if len(servers) != 1:
                    res.violations.append(f"expected one ntfs-3g under the daemon, found {len(servers)}")
                    return res
                servers[0].kill()
            else:
                os.kill(info.pid, signal.SIGKILL)
            if not wait_gone(info.pid, info.create_time, 10):
                res.violations.append("the SIGKILLed daemon did not go away")
                return res
            try:
                out, err = wl.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                res.timeouts += 1
                res.violations.append("the workload hung after the daemon was killed")
                kill_group(wl)
                out, err = wl.communicate(timeout=10)
        finally:
            if wl.poll() is None:
                kill_group(wl)
                wl.wait(10)
        try:
            stats = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res.violations.append(f"workload ended without stats: rc={wl.returncode} stderr={err[-2000:]!r}")
            stats = {}
        res.ops = stats.get("ops", 0)
        res.workload_end = stats.get("end", "?")
        for e in stats.get("errors", []):
            res.violations.append(f"workload error before the kill: {e}")
        if res.workload_end not in DEAD and res.workload_end != "limit":
            res.violations.append(f"workload ended by {res.workload_end!r}, not by the dead mount")

        # Reconcile: the service finds the stale mount, cleans it up and remounts (check + repair first).
        killer = _RepairKiller(info.log, second) if second is not None else None
        try:
            if res.recovery == "service":  # "access" recovers by Volume.mount() too, then crashes again below
                svc.close()
                svc = VolumeService(root)
                svc.volumes()
                vol = svc.volume(vid)
            else:
                vol.mount()
        except VdsError as e:
            if killer is None:
                raise
            res.notes.append(f"the interrupted recovery failed: {e.code}")
        finally:
            if killer is not None:
                killer.stop()
        if killer is not None:
            res.recovery += "+killed in repair" if killer.killed else "+kill missed"
            res.repair_interrupted = killer.killed
            vol = svc.volume(vid)
            vol.mount()  # the next recovery: whatever the interrupted one left (stale mount, half-repaired image)
        new = read_pidfile(svc.root.run, vid)
        if new is None or not daemon_alive(new) or new.pid == info.pid:
            res.violations.append(f"no new daemon after recovery ({new})")
            return res
        from simvol.mount import DaemonClient

        res.repaired = sorted({p["kind"] for p in DaemonClient(new.socket).status()["repaired"]})
        if CRASH_REPAIR[filesystem] not in res.repaired and not res.repair_interrupted:
            res.violations.append(f"the remount did not see a crashed image: repaired {res.repaired}")
        if res.recovery == "access":
            _kill_during_auto_remount(svc, vol, rnd, res)
            if res.violations:
                return res

        run = run_py(VERIFY, [vol.mount_path, side], timeout=120)
        if run.timed_out:
            res.timeouts += 1
            res.violations.append("verification through the mount timed out")
        elif run.returncode != 0:
            res.violations.append(f"verification failed: {run.stderr[-2000:]}")
        else:
            v = json.loads(run.stdout)
            res.records = v["records"]
            res.losses = v["losses"]
            res.violations += v["walk_errors"]
        problems = vol.check()
        if problems:
            res.violations.append(f"Volume.check() after recovery: {problems}")
        vol.dismount()
        clean, text, checker = check_image(image, filesystem)
        if not clean:
            res.violations.append(f"{checker} after the safe dismount:\n{text[-3000:]}")
        res.violations += [f"traceback in a daemon log: {t}" for t in watch.new_tracebacks()]
    except Exception as e:  # a VDS failure, or a harness or service bug: reported with the trial
        res.violations.append(describe_failure(e))
    finally:
        res.seconds = round(time.monotonic() - t0, 2)
        if not res.ok and keep_failed and image and os.path.exists(image):
            os.makedirs(keep_failed, exist_ok=True)
            try:
                if vol is not None:
                    vol.dismount(force=True)
            except VdsError:
                pass
            shutil.copy(image, os.path.join(keep_failed, f"crash-{seed}.img"))
            if os.path.exists(side):
                shutil.copy(side, os.path.join(keep_failed, f"crash-{seed}.jsonl"))
            if daemon_log and os.path.exists(daemon_log):
                shutil.copy(daemon_log, os.path.join(keep_failed, f"crash-{seed}.log"))
        delete_volume(vol, res.violations)
        try:
            os.unlink(side)
        except FileNotFoundError:
            pass
        svc.close()
    return res


@dataclass
class CrashSummary:
    results: list[TrialResult]
    seconds: float
    filesystem: str = "FAT32"
    kill: str = "daemon"

    @property
    def losses(self) -> int:
        return sum(len(r.losses) for r in self.results)

    @property
    def violations(self) -> int:
        return sum(len(r.violations) for r in self.results)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def lines(self) -> list[str]:
        rs = self.results
        recov = Counter(r.recovery for r in rs)
        repaired = Counter(k for r in rs for k in r.repaired)
        slow = max(rs, key=lambda r: r.seconds) if rs else None
        out = [
            f"trials            {len(rs)}",
            f"synced files      {sum(r.records for r in rs)} verified after recovery "
            f"({sum(r.ops for r in rs)} workload operations)",
            f"losses            {self.losses}",
            f"violations        {self.violations} (in {sum(1 for r in rs if r.violations)} trials)",
            f"timeouts          {sum(r.timeouts for r in rs)}",
            "recovery path     " + ", ".join(f"{k} {v}" for k, v in sorted(recov.items())),
            "repairs seen      " + (", ".join(f"{k} {v}" for k, v in sorted(repaired.items())) or "none"),
            f"kill delay        {min((r.delay for r in rs), default=0):.2f}–"
            f"{max((r.delay for r in rs), default=0):.2f} s",
        ]
        if slow:
            out.append(f"slowest trial     #{slow.index} seed {slow.seed}: {slow.seconds:.1f} s")
        out.append(f"wall time         {self.seconds:.0f} s")
        for r in rs:
            if not r.ok:
                out.append(
                    f"FAILED trial #{r.index} seed {r.seed} "
                    f"(replay: {replay_command(r.seed, self.filesystem, self.kill)}):"
                )
                out += [f"  note: {n}" for n in r.notes]
                out += [f"  loss: {p}: {why}" for p, why in r.losses[:20]]
                out += [f"  {v}" for v in r.violations[:20]]
        return out


def run_campaign(root: str, trials: int, seed: int, *, max_delay: float = 1.5, keep_failed: str | None = None,
                 filesystem: str = "FAT32", kill: str = "daemon", log=print) -> CrashSummary:
    """``trials`` trials with seeds ``seed``, ``seed + 1``, …; ``log`` gets one line per trial."""
    t0 = time.monotonic()
    results = []
    for i in range(trials):
        r = run_trial(root, i, seed + i, max_delay=max_delay, keep_failed=keep_failed, filesystem=filesystem,
                      kill=kill)
        results.append(r)
        log(
            f"trial {i + 1}/{trials} seed {r.seed}: {'ok' if r.ok else 'FAILED'} — {r.records} synced files, "
            f"{len(r.losses)} lost, {r.ops} ops, kill after {r.delay:.2f} s, recovery by {r.recovery}, "
            f"repaired {','.join(r.repaired) or '-'}, {r.seconds:.1f} s"
        )
        if not r.ok:
            for line in [*(f"  loss: {p}: {w}" for p, w in r.losses[:10]), *(f"  {v}" for v in r.violations[:10])]:
                log(line)
    return CrashSummary(results, time.monotonic() - t0, filesystem, kill)

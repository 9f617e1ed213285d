"""The mount suite: simvol's FUSE daemon against a host directory and ntfs-3g, measured in the same run.

The bench process only sets up and tears down mounts; all file I/O through a mount is done by a separate
Python worker process (``_WORKER``), so the bench itself never serves or blocks on FUSE (docs/fuse-notes.md §3 #9).

- sequential write of ``seq_bytes`` in ``seq_call`` writes, then fsync and close, into a new file on a fresh
  volume of ``seq_image`` bytes: simvol (FAT32 image served by its daemon), a host directory next to it, and
  an NTFS image of the same size mounted with ntfs-3g. The sides interleave every 16 calls within a round
  (who goes first rotating); the fsyncs are timed one after the other, order rotating per round.
- sequential read of the same files in ``seq_call`` reads, reopened: a first pass (timed, shown in the note)
  warms the page cache; the **second** pass is the figure (both interleaved every 16 calls).
- before those rounds, a child process touches and frees about 1.2 × the rounds' page-cache footprint of memory
  (``_prefault``), so that on a VM no side pays for never-touched guest memory (simvol pays twice: FUSE pages
  and image pages).
- empty-file creates in one directory (``open(O_CREAT | O_EXCL)`` + ``close``), sides switching every 100
  files; overall rate and last window ÷ first window.
- mount and safe-dismount latency on a 256 MiB volume from the caller's side: ``start_daemon`` until it
  returns (mount live) and ``DaemonClient.dismount`` until it returns (unmounted, image closed); the service
  layer's ``Volume.mount()`` / ``dismount()`` and ntfs-3g (command returns; ``fusermount3 -u`` + process
  exit) alternate with it, cycle by cycle.
- the daemon's VmRSS / VmHWM (``/proc/PID/status``) for a mounted 32 GiB sparse volume, after the mount and
  after a small workload (1,000 creates + a 64 MiB file); the same for ntfs-3g on a 32 GiB NTFS image.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import Context, GiB, Metric, MiB, Suite, median, ratio

SUITE_NAME = "mount"

# Targets (from the mount performance issue).
SEQ_MIN_RATIO = 0.50  # of the host directory's throughput
CREATE_MIN_RATIO = 1.0  # of ntfs-3g's create rate in the same run
MOUNT_MAX_S = 0.300
DISMOUNT_MAX_S = 0.200
FIRST_ACCESS_EXTRA_MAX_S = 0.150  # issue #10: a first access after a dismount costs at most this much more
RSS_MAX = 60 * 10**6  # 60 MB

IO_BLOCK = 16
CREATE_BLOCK = 100
SETTLE_S = 0.25
LATENCY_IMAGE = 256 * MiB
RSS_IMAGE = 32 * GiB
WORKER_TIMEOUT = 3600.0

SIMVOL, HOST, NTFS = "simvol", "host", "ntfs-3g"


def _sbin_path() -> str:
    return os.environ.get("PATH", os.defpath) + os.pathsep + "/usr/sbin:/sbin"


def human_size(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


def p90(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(0.9 * (len(s) - 1))))]


# =========================================================================== the I/O worker

_WORKER = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
job = spec["job"]
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
pc = time.perf_counter

def settle():
    os.sync()
    time.sleep(spec.get("settle", 0.25))

def order(n, k):
    return [(k + i) % n for i in range(n)]

def write_full(fd, buf):
    n = os.write(fd, buf)
    if n != len(buf):
        view = memoryview(buf)[n:]
        while view:
            view = view[os.write(fd, view):]

out = {}
if job == "seq":
    paths, total, call, block, r = spec["paths"], spec["total"], spec["call"], spec["block"], spec["round"]
    n, calls = len(paths), spec["total"] // spec["call"]
    buf = os.urandom(call)
    fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | CLOEXEC, 0o644) for p in paths]
    settle()
    loop = [0.0] * n
    for b, lo in enumerate(range(0, calls, block)):
        hi = min(lo + block, calls)
        for s in order(n, b + r):
            fd = fds[s]
            t0 = pc()
            for _ in range(lo, hi):
                write_full(fd, buf)
            loop[s] += pc() - t0
    sync = [0.0] * n
    for s in order(n, r):
        t0 = pc()
        os.fsync(fds[s])
        os.close(fds[s])
        sync[s] = pc() - t0
    out["write_loop_s"], out["fsync_close_s"] = loop, sync

    def read_pass(k):
        fds = [os.open(p, os.O_RDONLY | CLOEXEC) for p in paths]
        spent, short = [0.0] * n, [0] * n
        try:
            for b, lo in enumerate(range(0, calls, block)):
                hi = min(lo + block, calls)
                for s in order(n, b + k):
                    fd = fds[s]
                    t0 = pc()
                    for i in range(lo, hi):
                        short[s] += call - len(os.pread(fd, call, i * call))
                    spent[s] += pc() - t0
            ok = [os.pread(fd, call, 0) == buf and os.pread(fd, call, total - call) == buf for fd in fds]
        finally:
            for fd in fds:
                os.close(fd)
        return spent, short, ok

    settle()
    first, short1, ok1 = read_pass(r + 1)
    settle()
    second, short2, ok2 = read_pass(r)
    out["read1_s"], out["read2_s"] = first, second
    # A third pass from cold caches (root only): the storage path itself, where the warm pass above mostly
    # measures how the kernel's page cache copies out (4 KiB folios for FUSE, large folios for ext4).
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        settle()
        cold, short3, ok3 = read_pass(r + 2)
        out["read_cold_s"] = cold
        short2 = [a + b for a, b in zip(short2, short3)]
        ok2 = [a and b for a, b in zip(ok2, ok3)]
    except OSError:
        out["read_cold_s"] = None
    out["short"] = [a + b for a, b in zip(short1, short2)]
    out["ok"] = [a and b for a, b in zip(ok1, ok2)]
elif job == "creates":
    dirs, count, window, block, r = spec["dirs"], spec["count"], spec["window"], spec["block"], spec["round"]
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    n = len(dirs)
    for d in dirs:
        os.mkdir(d)
    names = ["file-%05d.txt" % i for i in range(count)]
    paths = [[os.path.join(d, name) for name in names] for d in dirs]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | CLOEXEC
    opn, cls = os.open, os.close
    spent, first, last = [0.0] * n, [0.0] * n, [0.0] * n
    settle()
    for b, lo in enumerate(range(0, count, block)):
        hi = min(lo + block, count)
        for s in order(n, b + r):
            ps = paths[s]
            t0 = pc()
            for p in ps[lo:hi]:
                cls(opn(p, flags, 0o644))
            secs = pc() - t0
            spent[s] += secs
            if lo < window:
                first[s] += secs
            if lo >= count - window:
                last[s] += secs
    out["spent_s"], out["first_s"], out["last_s"] = spent, first, last
    out["listed"] = [len(os.listdir(d)) for d in dirs]
elif job == "load":
    d, files, total, call = spec["dir"], spec["files"], spec["total"], spec["call"]
    t0 = pc()
    os.mkdir(os.path.join(d, "files"))
    for i in range(files):
        name = os.path.join(d, "files", f"file-{i:05d}.txt")
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | CLOEXEC, 0o644))
    t1 = pc()
    buf = os.urandom(call)
    fd = os.open(os.path.join(d, "big.bin"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | CLOEXEC, 0o644)
    for _ in range(total // call):
        write_full(fd, buf)
    os.fsync(fd)
    os.close(fd)
    t2 = pc()
    out = {"creates_s": t1 - t0, "write_s": t2 - t1, "listed": len(os.listdir(os.path.join(d, "files")))}
print(json.dumps(out))
"""


def run_worker(ctx: Context, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one I/O job in a fresh interpreter (cwd "/": nothing of ours sits inside a mount)."""
    spec = {"settle": SETTLE_S, **spec}
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", env=env, stdin=subprocess.DEVNULL,
    )
    try:
        out, err = proc.communicate(timeout=WORKER_TIMEOUT)
    except BaseException:
        proc.kill()  # our own child, by its handle
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"I/O worker ({spec['job']}) failed with status {proc.returncode}: {err.strip()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


# =========================================================================== volumes: simvol, ntfs-3g, host


def _status_kib(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / VmSize of ``pid`` in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize"):
                out[key] = int(rest.split()[0])
    return out


def unmount_any(mountpoint: str) -> None:
    """Last-resort removal of whatever is mounted at ``mountpoint`` (FUSE or not), lazily if need be."""
    from simvol.mount import find_mount

    for _ in range(4):
        entry = find_mount(mountpoint)
        if entry is None:
            return
        fm = shutil.which("fusermount3") or shutil.which("fusermount")
        attempts = ([[fm, "-u", "--", mountpoint], [fm, "-uz", "--", mountpoint]] if fm else []) + [
            ["umount", mountpoint], ["umount", "-l", mountpoint]]
        for argv in attempts:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                r = subprocess.run(
                    argv, cwd="/", capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL
                )
                if r.returncode == 0:
                    break
    if find_mount(mountpoint) is not None:
        print(f"bench: WARNING: could not unmount {mountpoint}", file=sys.stderr)


@dataclass
class SimvolVolume:
    image: Path
    mountpoint: Path
    run_dir: Path
    volume_id: str
    info: Any = None  # simvol.mount.DaemonInfo while mounted

    @classmethod
    def create(cls, ctx: Context, name: str, size: int, fs: str = "FAT32", native: bool = False) -> SimvolVolume:
        """A simvol image of ``size`` bytes: FAT32 by simvol's engine, or NTFS by mkntfs (``native``: served by
        ntfs-3g at the mount point with its own semantics, else through simvol's session with Windows')."""
        from simvol.fat import format_volume
        from simvol.image import Image, create_image
        from simvol.image.ntfs import NTFS as NTFS_DRIVER
        from simvol.image.ntfs import set_native

        image = ctx.scratch / f"{name}.img"
        meta = create_image(image, size)
        try:
            if fs == "NTFS":
                NTFS_DRIVER.format(str(image), label="BENCH")
                if native:
                    set_native(str(image), True)
            else:
                with Image.open(image) as im:
                    format_volume(im.fd, im.fs_size, label="BENCH")
        except BaseException:
            _rm(image)
            raise
        return cls(image, ctx.scratch / f"{name}.mnt", ctx.scratch / "run", str(meta.volume_id))

    def mount(self) -> float:
        """Seconds ``start_daemon`` took (it returns once the mount is live)."""
        from simvol.mount import start_daemon

        t0 = time.perf_counter()
        self.info = start_daemon(str(self.image), str(self.mountpoint), str(self.run_dir), self.volume_id)
        return time.perf_counter() - t0

    def dismount(self) -> float:
        """Seconds a safe ``DaemonClient.dismount`` took (it returns once unmounted and the image is closed)."""
        from simvol.mount import DaemonClient

        assert self.info is not None
        t0 = time.perf_counter()
        res = DaemonClient(self.info.socket).dismount(force=False)
        secs = time.perf_counter() - t0
        if not res.get("ok"):
            raise RuntimeError(f"safe dismount of {self.mountpoint} refused: {res}")
        self.info = None
        return secs

    @property
    def pid(self) -> int:
        assert self.info is not None
        return int(self.info.pid)

    def close(self) -> None:
        """Dismount (safe, then forced, then by hand) and delete the image; never raises."""
        from simvol.mount import DaemonClient, cleanup_stale, wait_gone

        if self.info is not None:
            info, self.info = self.info, None
            try:
                res = DaemonClient(info.socket).dismount(force=False, timeout=60)
                if not res.get("ok"):
                    DaemonClient(info.socket).dismount(force=True, timeout=60)
            except Exception as e:  # noqa: BLE001 — fall through to the manual cleanup
                print(f"bench: dismount of {self.mountpoint} failed: {e}", file=sys.stderr)
            with contextlib.suppress(Exception):
                wait_gone(info.pid, info.create_time, 10)
        with contextlib.suppress(Exception):
            cleanup_stale(str(self.mountpoint))
        unmount_any(str(self.mountpoint))
        with contextlib.suppress(OSError):
            os.rmdir(self.mountpoint)
        _rm(self.image)


@dataclass(frozen=True)
class NtfsTools:
    mkntfs: str
    ntfs3g: str


def ntfs_tools() -> NtfsTools | None:
    path = _sbin_path()
    mk = shutil.which("mkntfs", path=path) or shutil.which("mkfs.ntfs", path=path)
    n3g = shutil.which("ntfs-3g", path=path)
    if mk and n3g and os.path.exists("/dev/fuse"):
        return NtfsTools(mk, n3g)
    return None


@dataclass
class NtfsVolume:
    tools: NtfsTools
    image: Path
    mountpoint: Path
    options: list[str]
    pid: int | None = None
    mounted: bool = False

    @classmethod
    def create(cls, ctx: Context, tools: NtfsTools, name: str, size: int) -> NtfsVolume:
        image = ctx.scratch / f"{name}.ntfs.img"
        fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        argv = [tools.mkntfs, "-F", "-Q", "-q", "-L", "BENCH", str(image)]
        r = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=300, check=False)
        if r.returncode != 0:
            _rm(image)
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}")
        return cls(tools, image, ctx.scratch / f"{name}.ntfs.mnt", ["-o", "big_writes"])

    def mount(self) -> float:
        """Seconds ``ntfs-3g IMG MNT`` took (it returns once mounted; the daemon forks into the background)."""
        from simvol.mount import find_mount

        self.mountpoint.mkdir(exist_ok=True)
        while True:
            argv = [self.tools.ntfs3g, str(self.image), str(self.mountpoint), *self.options]
            t0 = time.perf_counter()
            r = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=60, check=False,
                               stdin=subprocess.DEVNULL)
            secs = time.perf_counter() - t0
            if r.returncode == 0:
                break
            if self.options:  # -o big_writes not accepted by this build: mount without it
                self.options = []
                continue
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}")
        self.mounted = True
        if find_mount(str(self.mountpoint)) is None:
            raise RuntimeError(f"ntfs-3g returned but {self.mountpoint} is not mounted")
        self.pid = self._find_pid()
        return secs

    def _find_pid(self) -> int | None:
        import psutil

        img, mnt = str(self.image), str(self.mountpoint)
        for p in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmd = p.info.get("cmdline") or []
                if p.info.get("name") in ("ntfs-3g", "mount.ntfs-3g", "mount.ntfs") and img in cmd and mnt in cmd:
                    if p.status() != psutil.STATUS_ZOMBIE:
                        return p.pid
        return None

    def dismount(self) -> float:
        """Seconds ``fusermount3 -u`` (or ``umount``) plus the exit of the ntfs-3g process (image closed)."""
        import psutil

        fm = shutil.which("fusermount3") or shutil.which("fusermount")
        argv = [fm, "-u", "--", str(self.mountpoint)] if fm else ["umount", str(self.mountpoint)]
        t0 = time.perf_counter()
        r = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=60, check=False,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0 and fm:
            r = subprocess.run(["umount", str(self.mountpoint)], cwd="/", capture_output=True, text=True,
                               timeout=60, check=False, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"unmounting ntfs-3g at {self.mountpoint} failed: {(r.stderr or r.stdout).strip()}")
        self.mounted = False
        if self.pid is not None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                        break
                except psutil.Error:
                    break
                time.sleep(0.001)
        secs = time.perf_counter() - t0
        self.pid = None
        return secs

    def close(self) -> None:
        if self.mounted:
            with contextlib.suppress(Exception):
                self.dismount()
        unmount_any(str(self.mountpoint))
        with contextlib.suppress(OSError):
            os.rmdir(self.mountpoint)
        _rm(self.image)


def _rm(path: Path | str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def _volumes(
    ctx: Context, name: str, size: int, tools: NtfsTools | None, pids: dict[str, int] | None = None,
) -> Iterator[tuple[dict[str, Path], str]]:
    """A mounted simvol volume, a host directory and (with ntfs-3g) a mounted NTFS image.

    Yields (side -> root directory, the ntfs-3g options used); fills ``pids`` (side -> daemon pid) if given."""
    sv = nt = None
    host = ctx.scratch / f"{name}.host"
    try:
        sv = SimvolVolume.create(ctx, name, size)
        sv.mount()
        host.mkdir()
        roots = {SIMVOL: sv.mountpoint, HOST: host}
        if tools is not None:
            nt = NtfsVolume.create(ctx, tools, name, size)
            nt.mount()
            roots[NTFS] = nt.mountpoint
        if pids is not None:
            pids[SIMVOL] = sv.pid
            if nt is not None and nt.pid is not None:
                pids[NTFS] = nt.pid
        yield roots, " ".join(nt.options) if nt is not None else ""
    finally:
        if sv is not None:
            sv.close()
        if nt is not None:
            nt.close()
        shutil.rmtree(host, ignore_errors=True)


# =========================================================================== sequential and creates

_PREFAULT = r"""
import ctypes, mmap, sys
n = int(sys.argv[1])
m = mmap.mmap(-1, n)
ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(m)), 1, n)
"""


def _mem_available() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _prefault(ctx: Context, size: int) -> float:
    """Touch ``size`` bytes of anonymous memory in a child process, then free them; seconds it took.

    On a VM, memory the guest has never touched costs a fault in the hypervisor the first time (on the bench
    VM, touching 8 GiB took 15.8 s the first time and 6.9 s the second). Page cache for the sides' files comes from
    free memory, and a
    write through the mount needs two copies of it (the FUSE file's pages and the image's), so the first
    rounds of a fresh VM would charge simvol twice for an artefact of the VM. Freed pages are reused first."""
    size = min(size, _mem_available() // 2)
    if size < 64 * MiB:
        return 0.0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _PREFAULT, str(size)], cwd="/", check=False, timeout=600,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return time.perf_counter() - t0



def _throughput_rows(ctx: Context, tools: NtfsTools | None) -> list[Metric]:
    sz = ctx.sizes
    total, call = sz.seq_bytes, sz.seq_call
    need = 3 * total + 512 * MiB
    free = shutil.disk_usage(ctx.scratch).free
    if free < need:
        raise OSError(errno.ENOSPC, f"the mount suite needs {need // MiB} MiB free in {ctx.scratch}, has {free // MiB}")
    sides = [SIMVOL, HOST] + ([NTFS] if tools else [])
    write_s: dict[str, list[float]] = {s: [] for s in sides}
    write_loop_s: dict[str, list[float]] = {s: [] for s in sides}
    read1_s: dict[str, list[float]] = {s: [] for s in sides}
    read2_s: dict[str, list[float]] = {s: [] for s in sides}
    cold_s: dict[str, list[float]] = {s: [] for s in sides}
    c_spent: dict[str, list[float]] = {s: [] for s in sides}
    c_first: dict[str, list[float]] = {s: [] for s in sides}
    c_last: dict[str, list[float]] = {s: [] for s in sides}
    n, w = sz.creates, sz.create_window
    block = min(CREATE_BLOCK, w)
    label = human_size(total)
    ntfs_opts = ""
    warm = (2 * total + (2 * total if tools is not None else 0) + total) * 6 // 5
    warm_s = _prefault(ctx, warm)
    ctx.log(f"mount: touched {warm / GiB:.1f} GiB of memory first "
            f"({warm_s:.1f} s) so that no side's page cache comes from never-used VM memory")

    for r in range(ctx.repeats):
        with _volumes(ctx, f"tp-{r}", sz.seq_image, tools) as (roots, opts):
            ntfs_opts = opts
            res = run_worker(ctx, {
                "job": "seq", "paths": [str(roots[s] / "seq.bin") for s in sides],
                "total": total, "call": call, "block": IO_BLOCK, "round": r,
            })
            if any(res["short"]) or not all(res["ok"]):
                bad = [s for s, sh, ok in zip(sides, res["short"], res["ok"], strict=False) if sh or not ok]
                raise AssertionError(f"read back different data than written on: {', '.join(bad)}")
            for i, s in enumerate(sides):
                write_s[s].append(res["write_loop_s"][i] + res["fsync_close_s"][i])
                write_loop_s[s].append(res["write_loop_s"][i])
                read1_s[s].append(res["read1_s"][i])
                read2_s[s].append(res["read2_s"][i])
                if res.get("read_cold_s"):
                    cold_s[s].append(res["read_cold_s"][i])
            ctx.log(f"mount: seq {label}, round {r + 1}: write " + ", ".join(
                f"{s} {total / MiB / write_s[s][-1]:,.0f}" for s in sides) + " MiB/s; 2nd read " + ", ".join(
                f"{s} {total / MiB / read2_s[s][-1]:,.0f}" for s in sides) + " MiB/s")

            dirs = [str(roots[s] / "creates") for s in sides]  # the worker makes them
            res = run_worker(ctx, {"job": "creates", "dirs": dirs, "count": n, "window": w, "block": block,
                                    "round": r})
            if any(x != n for x in res["listed"]):
                raise AssertionError(f"after {n} creates the directories list {res['listed']} ({', '.join(sides)})")
            for i, s in enumerate(sides):
                c_spent[s].append(res["spent_s"][i])
                c_first[s].append(res["first_s"][i])
                c_last[s].append(res["last_s"][i])
            ctx.log(f"mount: {n:,} creates, round {r + 1}: " + ", ".join(
                f"{s} {n / c_spent[s][-1]:,.0f} files/s (last/first {c_first[s][-1] / c_last[s][-1]:.0%})"
                for s in sides))

    def mibs(secs: list[float]) -> float:
        return total / MiB / median(secs)

    def round_ratio(sv: list[float], peer: list[float]) -> tuple[float, list[float]]:
        rs = [p / s for s, p in zip(sv, peer, strict=False)]  # times: peer ÷ simvol = simvol's throughput ÷ peer's
        return median(rs), rs

    def per_round(xs: list[float]) -> str:
        return "ratio = median of the rounds' ratios (" + ", ".join(f"{x:.0%}" for x in xs) + ")"

    calls_txt = f"{total // call:,} × {human_size(call)}"
    target = f"≥ {SEQ_MIN_RATIO:.0%} of host"
    out: list[Metric] = []
    # ---- sequential write
    wr, wrs = round_ratio(write_s[SIMVOL], write_s[HOST])
    out.append(Metric(
        SUITE_NAME, "mnt_seq_write", f"mount: seq write {label}, {human_size(call)} calls + fsync", "MiB/s",
        mibs(write_s[SIMVOL]), mibs(write_s[HOST]), "host dir", wr, target, wr >= SEQ_MIN_RATIO,
        note=(f"{calls_txt} write() into a new file on a fresh {human_size(sz.seq_image)} volume, then fsync + close, "
              f"from a separate process; sides interleaved every {IO_BLOCK} calls; before the fsync: "
              + ", ".join(f"{s} {mibs(write_loop_s[s]):,.0f} MiB/s" for s in sides) + f"; {per_round(wrs)}"),
        samples={f"{s}_s": write_s[s] for s in sides} | {f"{s}_loop_s": write_loop_s[s] for s in sides},
    ))
    if tools is not None:
        wn, wns = round_ratio(write_s[SIMVOL], write_s[NTFS])
        out.append(Metric(
            SUITE_NAME, "mnt_seq_write_ntfs", f"mount: seq write {label} vs ntfs-3g", "MiB/s",
            mibs(write_s[SIMVOL]), mibs(write_s[NTFS]), "ntfs-3g", wn, "", None,
            note=(f"same rounds as the row above; NTFS image of the same size (mkntfs -F -Q), mounted with "
                  f"ntfs-3g {ntfs_opts or '(no options: -o big_writes was refused)'}; {per_round(wns)}"),
        ))
    # ---- sequential read (second pass)
    rr, rrs = round_ratio(read2_s[SIMVOL], read2_s[HOST])
    out.append(Metric(
        SUITE_NAME, "mnt_seq_read", f"mount: seq read {label}, {human_size(call)} calls (2nd read, cached)", "MiB/s",
        mibs(read2_s[SIMVOL]), mibs(read2_s[HOST]), "host dir", rr, target, rr >= SEQ_MIN_RATIO,
        note=("pread() of the file just written, reopened; the timed pass is the second read (page cache warm); "
              "the first read ran at " + ", ".join(f"{s} {mibs(read1_s[s]):,.0f} MiB/s" for s in sides)
              + f"; sides interleaved every {IO_BLOCK} calls; {per_round(rrs)}"),
        samples={f"{s}_s": read2_s[s] for s in sides} | {f"{s}_first_read_s": read1_s[s] for s in sides},
    ))
    if cold_s[SIMVOL]:
        cr, crs = round_ratio(cold_s[SIMVOL], cold_s[HOST])
        out.append(Metric(
            SUITE_NAME, "mnt_seq_read_cold", f"mount: seq read {label}, {human_size(call)} calls (cold cache)",
            "MiB/s", mibs(cold_s[SIMVOL]), mibs(cold_s[HOST]), "host dir", cr, target, cr >= SEQ_MIN_RATIO,
            note=("the same file read again after sync + drop_caches (every side starts from storage); "
                  f"{per_round(crs)}"),
            samples={f"{s}_s": cold_s[s] for s in sides},
        ))
    if tools is not None:
        rn, rns = round_ratio(read2_s[SIMVOL], read2_s[NTFS])
        out.append(Metric(
            SUITE_NAME, "mnt_seq_read_ntfs", f"mount: seq read {label} vs ntfs-3g", "MiB/s",
            mibs(read2_s[SIMVOL]), mibs(read2_s[NTFS]), "ntfs-3g", rn, "", None,
            note=f"same rounds as the row above; {per_round(rns)}",
        ))

    # ---- creates
    def rate(s: str) -> float:
        return median([n / x for x in c_spent[s]])

    def cratio(peer: str) -> float:
        return median([p / s for s, p in zip(c_spent[SIMVOL], c_spent[peer], strict=False)])

    def tail(s: str) -> float:
        return median([f / la for f, la in zip(c_first[s], c_last[s], strict=False)])  # (w/last) / (w/first)

    how = (f"names file-00000.txt … (long names); os.open(O_CREAT|O_EXCL) + close from a separate process, "
           f"sides interleaved every {block} files")
    if tools is not None:
        cn = cratio(NTFS)
        out.append(Metric(
            SUITE_NAME, "mnt_creates", f"mount: {n:,} empty-file creates, one dir", "files/s",
            rate(SIMVOL), rate(NTFS), "ntfs-3g", cn, "≥ ntfs-3g", cn >= CREATE_MIN_RATIO,
            note=how + "; ratio = median of the rounds' ratios",
            samples={f"{s}_s": c_spent[s] for s in sides},
        ))
    out.append(Metric(
        SUITE_NAME, "mnt_creates_host", f"mount: {n:,} empty-file creates vs host dir", "files/s",
        rate(SIMVOL), rate(HOST), "host dir", cratio(HOST),
        "" if tools is not None else "≥ ntfs-3g", None,
        note=how if tools is not None else how + "; ntfs-3g/mkntfs not installed: the target could not be judged",
        samples={} if tools is not None else {f"{s}_s": c_spent[s] for s in sides},
    ))
    peer_tail = NTFS if tools is not None else HOST
    out.append(Metric(
        SUITE_NAME, "mnt_creates_tail", f"mount: create rate last {w:,} / first {w:,}", "ratio",
        tail(SIMVOL), tail(peer_tail), "ntfs-3g" if tools is not None else "host dir", None, "", None,
        note=", ".join(f"{s} first {w:,}: {median([w / x for x in c_first[s]]):,.0f} files/s, last {w:,}: "
                       f"{median([w / x for x in c_last[s]]):,.0f}" for s in sides),
        samples={f"{s}_first_s": c_first[s] for s in sides} | {f"{s}_last_s": c_last[s] for s in sides},
    ))
    return out


# =========================================================================== creates by CPU placement

PLACEMENTS = (("one CPU", 0, 0), ("two CPUs", 1, 0))  # (label, daemon CPU, worker CPU)


def _pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (sched_setaffinity acts per thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {cpu})


def _placement_rows(ctx: Context, tools: NtfsTools | None) -> list[Metric]:
    """simvol vs ntfs-3g creates with the daemon and the creating process pinned: both on one CPU, then on two.

    A create is three request/reply round trips, so where the scheduler puts the two processes decides much of
    the rate: on one CPU every hand-off is a cheap local switch, on two CPUs each one wakes a sleeping CPU (an
    IPI, a VM exit on a VM). Unpinned runs land in either case (see docs/performance.md); these rows fix it."""
    if tools is None or not {0, 1} <= os.sched_getaffinity(0):
        ctx.log("mount: creates by placement skipped (needs ntfs-3g and CPUs 0 and 1)")
        return []
    n = ctx.sizes.creates // 2
    out: list[Metric] = []
    for label, dcpu, wcpu in PLACEMENTS:
        spent: dict[str, list[float]] = {SIMVOL: [], NTFS: []}
        for r in range(ctx.repeats):
            pids: dict[str, int] = {}
            with _volumes(ctx, f"pl-{dcpu}{wcpu}-{r}", 256 * MiB, tools, pids) as (roots, _):
                if NTFS not in pids:
                    raise RuntimeError("the ntfs-3g process of the placement volume was not found")
                for side in (SIMVOL, NTFS):
                    _pin(pids[side], dcpu)
                res = run_worker(ctx, {"job": "creates", "dirs": [str(roots[SIMVOL] / "c"), str(roots[NTFS] / "c")],
                                        "count": n, "window": min(ctx.sizes.create_window, n),
                                        "block": CREATE_BLOCK, "round": r, "cpu": wcpu})
                if any(x != n for x in res["listed"]):
                    raise AssertionError(f"after {n} creates the directories list {res['listed']}")
                spent[SIMVOL].append(res["spent_s"][0])
                spent[NTFS].append(res["spent_s"][1])
        rs = [p / s for s, p in zip(spent[SIMVOL], spent[NTFS], strict=False)]
        ctx.log(f"mount: {n:,} creates, daemons on CPU {dcpu}, worker on CPU {wcpu}: simvol "
                f"{n / median(spent[SIMVOL]):,.0f}, ntfs-3g {n / median(spent[NTFS]):,.0f} files/s")
        out.append(Metric(
            SUITE_NAME, f"mnt_creates_{label.replace(' ', '_')}",
            f"mount: {n:,} creates, daemon and worker pinned to {label}", "files/s",
            n / median(spent[SIMVOL]), n / median(spent[NTFS]), "ntfs-3g", median(rs), "", None,
            note=(f"daemon (all threads) on CPU {dcpu}, creating process on CPU {wcpu}; fresh 256 MiB volumes per "
                  "round, sides interleaved every 100 files; ratio = median of the rounds' ratios ("
                  + ", ".join(f"{x:.0%}" for x in rs) + ")"),
            samples={f"{s}_s": spent[s] for s in spent},
        ))
    return out


# =========================================================================== mount / dismount latency


def _latency_rows(ctx: Context, tools: NtfsTools | None) -> list[Metric]:
    from simvol.service import VolumeService

    cycles = 5 if ctx.quick else 20
    size = LATENCY_IMAGE
    mount_s: list[float] = []
    dismount_s: list[float] = []
    svc_mount_s: list[float] = []
    svc_dismount_s: list[float] = []
    nt_mount_s: list[float] = []
    nt_dismount_s: list[float] = []
    first_s: list[float] = []  # stat of a file inside, right after a temporary dismount (the access remounts)
    normal_s: list[float] = []  # the same stat on the mounted volume, its caches dropped by a remount
    sv = nt = None
    svc = vol = None
    try:
        sv = SimvolVolume.create(ctx, "lat", size)
        if tools is not None:
            nt = NtfsVolume.create(ctx, tools, "lat", size)
        svc = VolumeService(ctx.scratch / "svc-root")
        vol = svc.create_volume(size)  # arrives mounted
        vol.dismount()

        def low(_: int) -> None:
            assert sv is not None
            mount_s.append(sv.mount())
            dismount_s.append(sv.dismount())

        def service(_: int) -> None:
            assert vol is not None
            t0 = time.perf_counter()
            vol.mount()
            t1 = time.perf_counter()
            vol.dismount()
            t2 = time.perf_counter()
            svc_mount_s.append(t1 - t0)
            svc_dismount_s.append(t2 - t1)

        def ntfs(_: int) -> None:
            assert nt is not None
            nt_mount_s.append(nt.mount())
            nt_dismount_s.append(nt.dismount())

        def first_access(_: int) -> None:
            # A fresh path each time (no dentry cached): the stat's cost on a mounted volume, then right after a
            # temporary dismount, where the stat mounts the volume again (remount on access, docs/architecture.md).
            assert vol is not None
            vol.mount()
            inside = os.path.join(vol.mount_path, "probe.txt")
            if not os.path.exists(inside):
                with open(inside, "w") as f:
                    f.write("x")
            vol.dismount()
            vol.mount()  # a fresh mount: no entry cached, as after the dismount below
            t0 = time.perf_counter()
            os.stat(inside)
            normal_s.append(time.perf_counter() - t0)
            vol.dismount()
            t0 = time.perf_counter()
            os.stat(inside)
            first_s.append(time.perf_counter() - t0)
            vol.dismount()

        steps = [low, service, first_access] + ([ntfs] if nt is not None else [])
        for i in range(cycles):
            k = i % len(steps)
            for fn in steps[k:] + steps[:k]:
                fn(i)
        ctx.log(f"mount: latency, {cycles} cycles on {human_size(size)}: start_daemon median "
                f"{median(mount_s) * 1000:.0f} ms, dismount {median(dismount_s) * 1000:.0f} ms; Volume.mount "
                f"{median(svc_mount_s) * 1000:.0f} ms, dismount {median(svc_dismount_s) * 1000:.0f} ms"
                + (f"; ntfs-3g {median(nt_mount_s) * 1000:.0f} / {median(nt_dismount_s) * 1000:.0f} ms"
                   if nt_mount_s else ""))
    finally:
        if vol is not None:
            with contextlib.suppress(Exception):
                vol.delete(force=True)
        if svc is not None:
            with contextlib.suppress(Exception):
                svc.close()
        if sv is not None:
            sv.close()
        if nt is not None:
            nt.close()

    def ms(xs: list[float]) -> str:
        return f"median {median(xs) * 1000:.1f} ms, p90 {p90(xs) * 1000:.1f} ms, min {min(xs) * 1000:.1f} ms"

    extra = median(first_s) - median(normal_s)
    nt_m = median(nt_mount_s) if nt_mount_s else None
    nt_d = median(nt_dismount_s) if nt_dismount_s else None
    peer = "ntfs-3g" if nt_mount_s else ""
    order = "low-level, service, first access" + (", ntfs-3g" if nt_mount_s else "")
    return [
        Metric(
            SUITE_NAME, "mnt_mount", f"mount latency, {human_size(size)} (start_daemon → live)", "s",
            median(mount_s), nt_m, peer, ratio(median(mount_s), nt_m), f"≤ {MOUNT_MAX_S * 1000:.0f} ms median",
            median(mount_s) <= MOUNT_MAX_S,
            note=(f"{cycles} cycles, {ms(mount_s)}; cycles rotate {order}; peer: the ntfs-3g command returning "
                  f"({ms(nt_mount_s) if nt_mount_s else 'n/a'})"),
            samples={"simvol_s": mount_s, "ntfs3g_s": nt_mount_s},
        ),
        Metric(
            SUITE_NAME, "mnt_dismount", f"safe dismount latency, {human_size(size)} (DaemonClient.dismount)", "s",
            median(dismount_s), nt_d, peer, ratio(median(dismount_s), nt_d),
            f"≤ {DISMOUNT_MAX_S * 1000:.0f} ms median", median(dismount_s) <= DISMOUNT_MAX_S,
            note=(f"{ms(dismount_s)}; until unmounted and the image closed; peer: fusermount3 -u until the ntfs-3g "
                  f"process exited ({ms(nt_dismount_s) if nt_dismount_s else 'n/a'})"),
            samples={"simvol_s": dismount_s, "ntfs3g_s": nt_dismount_s},
        ),
        Metric(
            SUITE_NAME, "first_access", f"first access after a temporary dismount, {human_size(size)} (os.stat)", "s",
            median(first_s), median(normal_s), "the same stat, mounted", ratio(median(first_s), median(normal_s)),
            f"≤ mounted + {FIRST_ACCESS_EXTRA_MAX_S * 1000:.0f} ms (median)", extra <= FIRST_ACCESS_EXTRA_MAX_S,
            note=(f"{cycles} cycles: first access {ms(first_s)}; mounted {ms(normal_s)}; extra "
                  f"{extra * 1000:.1f} ms — the stat opens the image (repairing it if dirty) and activates the "
                  "armed mount point"),
            samples={"simvol_s": first_s, "peer_s": normal_s},
        ),
        Metric(
            SUITE_NAME, "svc_mount", f"Volume.mount(), {human_size(size)} (service layer)", "s",
            median(svc_mount_s), None, "", None, "", None, note=ms(svc_mount_s), samples={"simvol_s": svc_mount_s},
        ),
        Metric(
            SUITE_NAME, "svc_dismount", f"Volume.dismount(), {human_size(size)} (service layer)", "s",
            median(svc_dismount_s), None, "", None, "", None,
            note=ms(svc_dismount_s) + "; includes the in-use check (holder scan) before the daemon's own",
            samples={"simvol_s": svc_dismount_s},
        ),
    ]


# =========================================================================== daemon RSS


def _rss_rows(ctx: Context, tools: NtfsTools | None) -> list[Metric]:
    size = RSS_IMAGE
    files = 100 if ctx.quick else 1_000
    load = 8 * MiB if ctx.quick else 64 * MiB
    label = human_size(size)
    sv = nt = None
    res: dict[str, dict[str, dict[str, int]]] = {}
    loads: dict[str, dict[str, Any]] = {}
    try:
        t0 = time.perf_counter()
        sv = SimvolVolume.create(ctx, "rss", size)
        fmt_s = time.perf_counter() - t0
        sv.mount()
        res[SIMVOL] = {"mounted": _status_kib(sv.pid)}
        if tools is not None:
            nt = NtfsVolume.create(ctx, tools, "rss", size)
            nt.mount()
            if nt.pid is not None:
                res[NTFS] = {"mounted": _status_kib(nt.pid)}
        loads[SIMVOL] = run_worker(ctx, {"job": "load", "dir": str(sv.mountpoint), "files": files, "total": load,
                                          "call": MiB})
        res[SIMVOL]["loaded"] = _status_kib(sv.pid)
        if nt is not None and nt.pid is not None:
            loads[NTFS] = run_worker(ctx, {"job": "load", "dir": str(nt.mountpoint), "files": files, "total": load,
                                            "call": MiB})
            res[NTFS]["loaded"] = _status_kib(nt.pid)
        for side, lo in loads.items():
            if lo["listed"] != files:
                raise AssertionError(f"{side}: {lo['listed']} files listed after {files} creates")
    finally:
        if sv is not None:
            sv.close()
        if nt is not None:
            nt.close()
    s_m, s_l = res[SIMVOL]["mounted"], res[SIMVOL]["loaded"]
    n_m = res.get(NTFS, {}).get("mounted")
    n_l = res.get(NTFS, {}).get("loaded")
    ctx.log(f"mount: daemon RSS on {label}: after mount {s_m['VmRSS'] / 1024:.1f} MiB (HWM {s_m['VmHWM'] / 1024:.1f}), "
            f"after the workload {s_l['VmRSS'] / 1024:.1f} MiB (HWM {s_l['VmHWM'] / 1024:.1f})")
    wl = f"{files:,} creates + a {human_size(load)} file"
    target = f"≤ {RSS_MAX // 10**6} MB"
    return [
        Metric(
            SUITE_NAME,
            "mnt_rss_mounted",
            f"daemon RSS, {label} volume, just mounted",
            "KiB",
            s_m["VmRSS"],
            n_m["VmRSS"] if n_m else None,
            "ntfs-3g" if n_m else "",
            ratio(s_m["VmRSS"], n_m["VmRSS"] if n_m else None),
            target,
            s_m["VmRSS"] * 1024 <= RSS_MAX,
            note=(
                f"VmRSS of the daemon process; VmHWM {s_m['VmHWM'] / 1024:.1f} MiB, "
                f"VmSize {s_m['VmSize'] / 1024:.1f} MiB; "
                f"create_image + format_volume of the sparse {label} image took {fmt_s * 1000:.0f} ms"
            ),
            samples={
                "simvol_kib": [s_m["VmRSS"], s_m["VmHWM"]],
                "ntfs3g_kib": [n_m["VmRSS"], n_m["VmHWM"]] if n_m else [],
            },
        ),
        Metric(
            SUITE_NAME,
            "mnt_rss_loaded",
            f"daemon peak RSS after {wl}",
            "KiB",
            s_l["VmHWM"],
            n_l["VmHWM"] if n_l else None,
            "ntfs-3g" if n_l else "",
            ratio(s_l["VmHWM"], n_l["VmHWM"] if n_l else None),
            target,
            s_l["VmHWM"] * 1024 <= RSS_MAX,
            note=(
                f"VmHWM (peak) after the workload, done by a separate process; VmRSS then {s_l['VmRSS'] / 1024:.1f} MiB"
                + (f" (ntfs-3g: {n_l['VmRSS'] / 1024:.1f} MiB)" if n_l else "")
                + f"; workload took {float(loads[SIMVOL]['creates_s']) * 1000:.0f} ms for the creates, "
                f"{float(loads[SIMVOL]['write_s']) * 1000:.0f} ms for the file"
            ),
            samples={
                "simvol_kib": [s_l["VmRSS"], s_l["VmHWM"]],
                "ntfs3g_kib": [n_l["VmRSS"], n_l["VmHWM"]] if n_l else [],
            },
        ),
    ]


# =========================================================================== NTFS volumes vs bare ntfs-3g

NTFS_WIN, NTFS_NATIVE = "simvol NTFS", "simvol NTFS native"
NTFS_MIN_RATIO = 0.9  # of bare ntfs-3g (creates, sequential write and read), issue #13


def _ntfs_rows(ctx: Context, tools: NtfsTools | None) -> list[Metric]:
    """simvol's NTFS volumes — Windows semantics (its session in front of a private ntfs-3g) and native (ntfs-3g at
    the mount point) — against bare ntfs-3g on an image of the same size, in the same rounds: sequential write and
    read, creates, and the NTFS volumes' mount and safe-dismount latency."""
    if tools is None:
        ctx.log("mount: NTFS volumes skipped (ntfs-3g or mkntfs not found)")
        return []
    sz = ctx.sizes
    total, call, n = sz.seq_bytes, sz.seq_call, sz.creates
    if ctx.quick:
        total = min(total, 16 * MiB)  # ntfs-3g writes at ~50 MiB/s here: a smoke run needs no more
    sides = [NTFS_WIN, NTFS_NATIVE, NTFS]
    wr: dict[str, list[float]] = {s: [] for s in sides}
    rd: dict[str, list[float]] = {s: [] for s in sides}
    cr: dict[str, list[float]] = {s: [] for s in sides}
    for r in range(ctx.repeats):
        vols: list[Any] = []
        try:
            win = SimvolVolume.create(ctx, f"nw-{r}", sz.seq_image, "NTFS")
            vols.append(win)
            win.mount()
            nat = SimvolVolume.create(ctx, f"nn-{r}", sz.seq_image, "NTFS", native=True)
            vols.append(nat)
            nat.mount()
            bare = NtfsVolume.create(ctx, tools, f"nb-{r}", sz.seq_image)
            vols.append(bare)
            bare.mount()
            roots = {NTFS_WIN: win.mountpoint, NTFS_NATIVE: nat.mountpoint, NTFS: bare.mountpoint}
            res = run_worker(ctx, {"job": "seq", "paths": [str(roots[s] / "seq.bin") for s in sides],
                                    "total": total, "call": call, "block": IO_BLOCK, "round": r})
            if any(res["short"]) or not all(res["ok"]):
                raise AssertionError("read back different data than written on an NTFS side")
            for i, s in enumerate(sides):
                wr[s].append(res["write_loop_s"][i] + res["fsync_close_s"][i])
                rd[s].append(res["read2_s"][i])
            res = run_worker(ctx, {"job": "creates", "dirs": [str(roots[s] / "creates") for s in sides],
                                    "count": n, "window": min(sz.create_window, n), "block": CREATE_BLOCK,
                                    "round": r})
            if any(x != n for x in res["listed"]):
                raise AssertionError(f"after {n} creates the NTFS directories list {res['listed']}")
            for i, s in enumerate(sides):
                cr[s].append(res["spent_s"][i])
            ctx.log(f"mount: NTFS round {r + 1}: write " + ", ".join(
                f"{s} {total / MiB / wr[s][-1]:,.0f}" for s in sides) + " MiB/s; creates " + ", ".join(
                f"{s} {n / cr[s][-1]:,.0f}" for s in sides) + " files/s")
        finally:
            for v in reversed(vols):
                v.close()

    cycles = 5 if ctx.quick else 20
    lat: dict[str, tuple[list[float], list[float]]] = {NTFS_WIN: ([], []), NTFS_NATIVE: ([], [])}
    vols = []
    try:
        for side, native in ((NTFS_WIN, False), (NTFS_NATIVE, True)):
            v = SimvolVolume.create(ctx, f"nl-{int(native)}", LATENCY_IMAGE, "NTFS", native=native)
            vols.append((side, v))
        for _ in range(cycles):
            for side, v in vols:
                lat[side][0].append(v.mount())
                lat[side][1].append(v.dismount())
    finally:
        for _, v in vols:
            v.close()

    def mibs(secs: list[float]) -> float:
        return total / MiB / median(secs)

    def rr(side: str, xs: dict[str, list[float]]) -> tuple[float, list[float]]:
        rs = [p / x for x, p in zip(xs[side], xs[NTFS], strict=False)]
        return median(rs), rs

    label = human_size(total)
    out: list[Metric] = []
    for key, side in (("ntfs", NTFS_WIN), ("ntfs_native", NTFS_NATIVE)):
        what = "Windows semantics" if side == NTFS_WIN else "native"
        for metric, xs, text in (("seq_write", wr, f"seq write {label} + fsync"), ("seq_read", rd,
                                 f"seq read {label} (2nd read)")):
            ratio_, rs = rr(side, xs)
            out.append(Metric(
                SUITE_NAME, f"{key}_{metric}", f"NTFS volume ({what}): {text}", "MiB/s", mibs(xs[side]),
                mibs(xs[NTFS]), "ntfs-3g", ratio_, f"≥ {NTFS_MIN_RATIO:.0%} of ntfs-3g", ratio_ >= NTFS_MIN_RATIO,
                note=(f"{human_size(call)} calls from a separate process, sides interleaved every {IO_BLOCK} calls; "
                      "bare ntfs-3g: an NTFS image of the same size mounted with ntfs-3g -o big_writes; rounds: "
                      + ", ".join(f"{x:.0%}" for x in rs)),
                samples={f"{s}_s": xs[s] for s in sides},
            ))
        ratio_, rs = rr(side, cr)
        out.append(Metric(
            SUITE_NAME, f"{key}_creates", f"NTFS volume ({what}): {n:,} empty-file creates, one dir", "files/s",
            n / median(cr[side]), n / median(cr[NTFS]), "ntfs-3g", ratio_, f"≥ {NTFS_MIN_RATIO:.0%} of ntfs-3g",
            ratio_ >= NTFS_MIN_RATIO,
            note=(f"os.open(O_CREAT|O_EXCL) + close from a separate process, sides interleaved every {CREATE_BLOCK} "
                  "files; rounds: " + ", ".join(f"{x:.0%}" for x in rs)),
            samples={f"{s}_s": cr[s] for s in sides},
        ))
        m, d = lat[side]
        out.append(Metric(
            SUITE_NAME, f"{key}_mount", f"NTFS volume ({what}): mount latency, 256 MiB", "s", median(m),
            None, "", None, f"≤ {MOUNT_MAX_S * 1000:.0f} ms median", median(m) <= MOUNT_MAX_S,
            note=f"start_daemon until it returns (mount live), {cycles} cycles; p90 {p90(m) * 1000:.1f} ms",
            samples={"s": m},
        ))
        out.append(Metric(
            SUITE_NAME, f"{key}_dismount", f"NTFS volume ({what}): safe dismount latency", "s", median(d),
            None, "", None, f"≤ {DISMOUNT_MAX_S * 1000:.0f} ms median", median(d) <= DISMOUNT_MAX_S,
            note=f"DaemonClient.dismount(force=False) until it returns (unmounted, image closed); p90 "
                 f"{p90(d) * 1000:.1f} ms",
            samples={"s": d},
        ))
    return out


# =========================================================================== the suite


def _sweep(ctx: Context) -> None:
    """Unmount anything still mounted under the scratch directory (a failure half-way through a group)."""
    from simvol.mount import read_mounts

    prefix = str(ctx.scratch.resolve()) + os.sep
    with contextlib.suppress(Exception):
        for e in reversed(read_mounts()):
            if e.mountpoint.startswith(prefix):
                ctx.log(f"mount: cleaning up a leftover mount at {e.mountpoint}")
                unmount_any(e.mountpoint)


def run(ctx: Context) -> list[Metric]:
    out: list[Metric] = []
    tools = ntfs_tools()
    if tools is None:
        ctx.log("mount: ntfs-3g or mkntfs not found: no ntfs-3g peer")
    groups = (("throughput", _throughput_rows), ("creates by placement", _placement_rows),
              ("latency", _latency_rows), ("daemon RSS", _rss_rows), ("NTFS volumes", _ntfs_rows))
    try:
        for name, fn in groups:
            ctx.log(f"mount: {name} …")
            try:
                out.extend(fn(ctx, tools))
            except Exception as e:  # noqa: BLE001 — a broken measurement is reported; the other groups still run
                traceback.print_exc(file=sys.stderr)
                out.append(Metric(SUITE_NAME, f"mnt_{name.replace(' ', '_')}_error", f"mount {name}: could not measure",
                                  "", None, error=f"{type(e).__name__}: {e}"))
            finally:
                _sweep(ctx)
    finally:
        _sweep(ctx)
    return out


SUITE = Suite(SUITE_NAME, "FUSE mount: I/O through the daemon vs a host directory and ntfs-3g; mount latency; RSS", run)

"""Helpers shared by the campaigns: bounded subprocesses, fsck.fat, scratch space, daemon logs."""

from __future__ import annotations

import hashlib
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from simvol.errors import VdsError
from simvol.mount import find_mount, simvol_mounts
from simvol.mount.mountinfo import unmount


@dataclass
class Run:
    """The outcome of a bounded subprocess: ``timed_out`` is set when it had to be killed."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


def run_py(code: str, args: list[str] | tuple[str, ...] = (), *, timeout: float, env: dict[str, str] | None = None,
           stdin: str | None = None) -> Run:
    """Run ``python -c code args…`` in a new session; on timeout kill the whole group and report it."""
    return run_cmd([sys.executable, "-c", code, *args], timeout=timeout, env=env, stdin=stdin)


def run_cmd(argv: list[str], *, timeout: float, env: dict[str, str] | None = None, stdin: str | None = None,
            cwd: str = "/") -> Run:
    t0 = time.monotonic()
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True, env=full_env, cwd=cwd,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
        return Run(proc.returncode, out, err, False, time.monotonic() - t0)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # stuck in an uninterruptible FUSE request: give up on its output
            out, err = "", ""
        return Run(proc.returncode, out or "", err or "", True, time.monotonic() - t0)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


def fsck(image: str, region_size: int | None = None) -> tuple[bool, str]:
    """``fsck.fat -n`` on the file-system region of an image (a sparse copy without the trailer).

    fsck.fat reads the region as it is; the trailer after it does not disturb it, so the image is checked in
    place. Clean means exit 0 and no boot-sector/backup difference (docs/fat32-notes.md §14).
    """
    r = subprocess.run(["fsck.fat", "-n", image], capture_output=True, text=True, errors="replace", timeout=120)
    out = r.stdout + r.stderr
    clean = r.returncode == 0 and "differences between boot sector and its backup" not in out
    return clean, out


@contextmanager
def ntfs_region(image: str) -> Iterator[str]:
    """A sparse copy of an NTFS image's file-system region (the whole file for a plain mkntfs image, which has no
    trailer): ntfs-3g's tools look for the alternate boot sector at the end of the file, where simvol's trailer is."""
    from simvol.image import read_metadata

    try:
        size = read_metadata(image).fs_size
    except Exception:  # noqa: BLE001 - a plain mkntfs image: the whole file is the volume
        size = os.path.getsize(image)
    with tempfile.TemporaryDirectory(prefix="simvol-ntfs-region-") as tmp:
        copy = os.path.join(tmp, "region.img")
        subprocess.run(["cp", "--sparse=always", image, copy], check=True, timeout=120)
        os.truncate(copy, size)
        yield copy


def ntfsfix_clean(image: str) -> tuple[bool, str]:
    """``ntfsfix -n`` on the image's region (:func:`ntfs_region`): clean means exit 0 and "processed successfully";
    the output (stdout, then stderr) either way."""
    with ntfs_region(image) as region:
        r = subprocess.run(["ntfsfix", "-n", region], capture_output=True, text=True, errors="replace", timeout=120)
    return r.returncode == 0 and "processed successfully" in r.stdout, r.stdout + r.stderr


def check_image(image: str, filesystem: str) -> tuple[bool, str, str]:
    """(clean, output, the checker's name): the file system's own checker on a dismounted image."""
    if filesystem == "NTFS":
        return (*ntfsfix_clean(image), "ntfsfix -n")
    return (*fsck(image), "fsck.fat -n")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def mtools_sha256(image: str, path: str) -> tuple[str | None, str]:
    """(SHA-256 of file ``path`` as mtools reads it straight from ``image``, "") or (None, mcopy's error): a
    reader of FAT that shares none of simvol's code."""
    with tempfile.TemporaryDirectory(prefix="simvol-mcopy-") as tmp:
        out = os.path.join(tmp, "f")
        r = run_cmd(["mcopy", "-n", "-i", image, "::/" + path.lstrip("/"), out], timeout=120,
                    env={"MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"})
        if r.returncode != 0:
            return None, f"mcopy ::/{path.lstrip('/')} exited {r.returncode}: {r.stderr.strip()}"
        return sha256_file(out), ""


def describe_failure(e: BaseException) -> str:
    """An exception that ended a trial, as one violation: a VdsError by its code, anything else (a harness or
    service bug) with its traceback — the campaign reports it with the trial and goes on."""
    if isinstance(e, VdsError):
        return f"VdsError {e.code}: {e}"
    return f"{type(e).__name__}: {e}\n{traceback.format_exc()}"


def delete_volume(vol: Any, violations: list[str]) -> None:
    """Delete a trial's volume (forced); a refusal is a violation of its own."""
    if vol is None:
        return
    try:
        vol.delete(force=True)
    except VdsError as e:
        violations.append(f"cleanup: delete failed: {e.code}: {e}")


def have_fsck() -> bool:
    return shutil.which("fsck.fat") is not None


def scratch_base() -> str:
    """/var/tmp unless it is tmpfs (a RAM disk hides fsync costs), else the system temp directory."""
    for cand in ("/var/tmp", tempfile.gettempdir()):
        if os.path.isdir(cand) and os.access(cand, os.W_OK | os.X_OK):
            return cand
    return tempfile.gettempdir()


def machine() -> str:
    cpus = os.cpu_count() or 0
    mem = psutil.virtual_memory().total / 2**30
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()} — {model or platform.processor()} × {cpus} CPUs, {mem:.1f} GiB RAM, " \
           f"Linux {platform.release()}, Python {platform.python_version()}"


class LogWatch:
    """Remembers how far each daemon log under ``run_dir`` was read; ``new_tracebacks`` scans only new text."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.offsets: dict[str, int] = {}

    def new_text(self) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            names = [n for n in os.listdir(self.run_dir) if n.endswith(".log")]
        except FileNotFoundError:
            return out
        for n in names:
            path = os.path.join(self.run_dir, n)
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    data = f.read()
                    self.offsets[path] = f.tell()
            except OSError:
                continue
            if data:
                out[path] = data.decode("utf-8", "replace")
        return out

    def new_tracebacks(self) -> list[str]:
        bad = []
        for path, text in self.new_text().items():
            if "Traceback" in text:
                i = text.index("Traceback")
                bad.append(f"{path}: {text[max(0, i - 300): i + 3000]}")
        return bad


def leftover_mounts(volumes_dir: str, keep: set[str] = frozenset()) -> list[str]:
    return [e.mountpoint for e in simvol_mounts(volumes_dir) if e.mountpoint not in keep]


def force_cleanup_mount(mountpoint: str) -> None:
    """Last-resort cleanup after a hang: abort/lazily unmount whatever is at ``mountpoint``."""
    if find_mount(mountpoint) is not None:
        unmount(mountpoint, lazy=True)


def daemons_of(root: str) -> list[psutil.Process]:
    """Live mount daemons whose command line names an image, mount point or socket under ``root`` (zombies,
    which no longer serve anything, are left out). ``p.info["cmdline"]`` holds the command line."""
    found = []
    prefix = os.path.abspath(root) + os.sep
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info.get("cmdline") or []
        if p.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if "simvol.mount.daemon" in cmd and any(a.startswith(prefix) for a in cmd):
            found.append(p)
    return found


def ntfs3g_servers(daemon_pid: int) -> list[psutil.Process]:
    """The ntfs-3g processes a mount daemon runs (one while an NTFS volume is served)."""
    return [p for p in psutil.Process(daemon_pid).children(recursive=True) if p.name() == "ntfs-3g"]


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line of ``proc``'s stdout, or "" if none came within ``timeout`` seconds."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
    finally:
        sel.close()
    return proc.stdout.readline()


def rmtree_quiet(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

"""Which mechanism should serve NTFS volumes? A measurement (issue #13), not part of the installed package.

Two candidates (docs/architecture.md, "NTFS volumes: the mechanism"):

* **direct** — ``lowntfs-3g`` itself is the FUSE server at the volume's mount point;
* **proxy** — simvol's own FUSE loop (FastFUSE, single-threaded, kernel cache on) at the mount point, passing every
  request through to a private ``lowntfs-3g`` mount: a second hop, but simvol keeps its handle table (in-use
  detection, stale handles after a forced dismount), the armed remount on access, the volume lock and faults.

This runs both on the same sparse NTFS image, interleaved, and prints creates/s, sequential write and 2nd-read MiB/s
for each and the proxy/direct ratios.

    python -m tools.ntfs_mechanism [--size 1G] [--creates 4000] [--mib 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])


# --------------------------------------------------------------------------- the proxy's operations


def _serve_proxy(backing: str, mountpoint: str) -> None:
    """Run a passthrough FUSE server at ``mountpoint`` over ``backing`` (in its own process)."""
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    from simvol.mount._fuselib import FastFUSE, mfusepy

    def err(e: OSError) -> mfusepy.FuseOSError:
        return mfusepy.FuseOSError(e.errno or errno.EIO)

    class Proxy(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self, root: str) -> None:
            self._root = root

        def init_with_config(self, conn: Any, config: Any) -> None:
            config.kernel_cache = 1
            config.attr_timeout = 1.0
            config.entry_timeout = 1.0
            config.negative_timeout = 0.0
            config.use_ino = 1

        def stat_fields(self, path: str | None, fh: int | None) -> tuple[int, ...] | int:
            try:
                st = os.fstat(fh) if fh else os.lstat(self._root + (path or "/"))
            except OSError as e:
                return -(e.errno or errno.EIO)
            return (st.st_ino, st.st_mode, st.st_nlink, st.st_size, st.st_uid, st.st_gid, st.st_blocks,
                    st.st_blksize, st.st_atime_ns // 10**9, st.st_atime_ns % 10**9, st.st_mtime_ns // 10**9,
                    st.st_mtime_ns % 10**9, st.st_ctime_ns // 10**9, st.st_ctime_ns % 10**9)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            try:
                st = os.lstat(self._root + path)
            except OSError as e:
                raise err(e) from None
            return {k: getattr(st, k) for k in ("st_ino", "st_mode", "st_nlink", "st_size", "st_uid", "st_gid",
                                                 "st_atime_ns", "st_mtime_ns", "st_ctime_ns")}

        def readdir(self, path: str, fh: int) -> list[tuple[str, int, int]]:
            out = [(".", 0o40755, 0), ("..", 0o40755, 0)]
            with os.scandir(self._root + path) as it:
                for e in it:
                    out.append((e.name, e.stat(follow_symlinks=False).st_mode, e.inode()))
            return out

        def open(self, path: str, flags: int) -> int:
            try:
                return os.open(self._root + path, flags & ~os.O_CREAT)
            except OSError as e:
                raise err(e) from None

        def create(self, path: str, mode: int, flags: int = 0) -> int:
            try:
                return os.open(self._root + path, flags | os.O_CREAT, mode)
            except OSError as e:
                raise err(e) from None

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: Any, offset: int, fh: int, from_cache: bool = False) -> int:
            try:
                return os.pwrite(fh, data, offset)
            except OSError as e:
                raise err(e) from None

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            os.ftruncate(fh, length) if fh else os.truncate(self._root + path, length)
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            os.fsync(fh)
            return 0

        def unlink(self, path: str) -> int:
            try:
                os.unlink(self._root + path)
            except OSError as e:
                raise err(e) from None
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            os.mkdir(self._root + path, mode)
            return 0

        def rmdir(self, path: str) -> int:
            os.rmdir(self._root + path)
            return 0

        def rename(self, old: str, new: str) -> int:
            os.rename(self._root + old, self._root + new)
            return 0

        def utimens(self, path: str, times: Any = None) -> int:
            os.utime(self._root + path, ns=times if times and None not in times else None)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            s = os.statvfs(self._root)
            return {k: getattr(s, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                                                "f_ffree", "f_namemax")}

    FastFUSE(Proxy(backing), mountpoint, foreground=True, nothreads=True, fsname="proxy", subtype="proxy")


# --------------------------------------------------------------------------- measuring


WORK = r"""
import os, sys, time, json
root, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "creates":
    d = os.path.join(root, "c%d" % time.monotonic_ns()); os.mkdir(d)
    t = time.perf_counter()
    for i in range(n):
        os.close(os.open(os.path.join(d, "f%05d.txt" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    print(json.dumps(n / (time.perf_counter() - t)))
elif kind == "write":
    p = os.path.join(root, "big.bin"); buf = b"\xa5" * (1 << 20)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    t = time.perf_counter()
    for _ in range(n):
        os.write(fd, buf)
    os.fsync(fd); os.close(fd)
    print(json.dumps(n / (time.perf_counter() - t)))
else:
    p = os.path.join(root, "big.bin")
    for rnd in range(2):
        fd = os.open(p, os.O_RDONLY); t = time.perf_counter(); got = 0
        while (b := os.read(fd, 1 << 20)):
            got += len(b)
        os.close(fd); el = time.perf_counter() - t
    print(json.dumps(got / (1 << 20) / el))
"""


def _wait_mounted(path: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4] == path for line in f):
                return
        time.sleep(0.02)
    raise RuntimeError(f"{path} did not get mounted")


def _run(root: str, kind: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", WORK, root, kind, str(n)], capture_output=True, text=True,
                         check=True, timeout=900)
    return float(json.loads(out.stdout))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--creates", type=int, default=4000)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    mkntfs = shutil.which("mkntfs", path=SBIN)
    low = shutil.which("lowntfs-3g", path=SBIN)
    if not mkntfs or not low:
        print("needs mkntfs and lowntfs-3g (Debian's ntfs-3g)", file=sys.stderr)
        return 2
    size = {"G": 1 << 30, "M": 1 << 20}[a.size[-1]] * int(a.size[:-1])
    work = Path(tempfile.mkdtemp(prefix="ntfsmech-"))
    results: dict[str, dict[str, list[float]]] = {"direct": {}, "proxy": {}}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        img = work / "vol.img"
        with open(img, "wb") as f:
            f.truncate(size)
        subprocess.run([mkntfs, "-F", "-Q", "-q", "-L", "MECH", str(img)], check=True)
        direct, proxy = work / "direct", work / "proxy"
        direct.mkdir()
        proxy.mkdir()
        procs.append(subprocess.Popen([low, "-o", "no_detach,windows_names,ignore_case,big_writes", str(img),
                                       str(direct)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_mounted(str(direct))
        (direct / "p").mkdir()
        procs.append(subprocess.Popen([sys.executable, "-c", "import sys; from tools.ntfs_mechanism import "
                                       "_serve_proxy; _serve_proxy(sys.argv[1], sys.argv[2])",
                                       str(direct / "p"), str(proxy)], cwd=str(Path(__file__).parents[1])))
        _wait_mounted(str(proxy))
        (direct / "d").mkdir()
        sides = {"direct": str(direct / "d"), "proxy": str(proxy)}
        for rnd in range(a.rounds):
            for side in (("direct", "proxy") if rnd % 2 == 0 else ("proxy", "direct")):
                r = results[side]
                r.setdefault("creates/s", []).append(_run(sides[side], "creates", a.creates))
                r.setdefault("write MiB/s", []).append(_run(sides[side], "write", a.mib))
                r.setdefault("2nd read MiB/s", []).append(_run(sides[side], "read", a.mib))
                print(f"round {rnd + 1} {side}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in r.items()),
                      flush=True)
        print(f"\n{'metric':<16}{'direct':>12}{'proxy':>12}{'proxy/direct':>14}")
        for metric in results["direct"]:
            d = sorted(results["direct"][metric])[len(results["direct"][metric]) // 2]
            p = sorted(results["proxy"][metric])[len(results["proxy"][metric]) // 2]
            print(f"{metric:<16}{d:>12,.0f}{p:>12,.0f}{p / d:>14.2f}")
    finally:
        for mp in (work / "proxy", work / "direct"):
            subprocess.run(["fusermount3", "-u", str(mp)], capture_output=True)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

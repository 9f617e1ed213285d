"""A/B helpers for a change on a hot path: run once per side, alternating, with PYTHONPATH naming the side's tree.

    (cd OLD && PYTHONPATH=OLD python -m tools.ab service)   # through a mount: latencies, daemon CPU, rates
    (cd NEW && PYTHONPATH=NEW python -m tools.ab service)
    python -m tools.ab engine                                  # the daemon's per-request code, without FUSE

Prints one JSON object. ``service``: Volume.dismount()/mount() × 10 on 1 GiB, then 3 × 256 MiB written in 1 MiB
calls and 3 × 3,000 creates by another process, the daemon's CPU read from /proc/PID/stat. ``engine``: the engine
and VolumeOps in this process: 5 × 3,000 of lookup-miss + create + getattr + release, and 3 × 256 writes of 1 MiB.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

WRITER = (
    "import os,sys\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o644)\nb=b'x'*(1<<20)\n"
    "for _ in range(int(sys.argv[2])): os.write(fd,b)\nos.fsync(fd); os.close(fd)"
)
CREATOR = (
    "import os,sys\nd=sys.argv[1]; os.mkdir(d)\n"
    "for i in range(int(sys.argv[2])): os.close(os.open(f'{d}/f{i:05d}.txt', os.O_WRONLY|os.O_CREAT|os.O_EXCL, 0o644))"
)


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service() -> dict[str, float]:
    from simvol.service import VolumeService

    root = tempfile.mkdtemp(prefix="ab-", dir="/var/tmp")
    try:
        svc = VolumeService(root)
        v = svc.create_volume(1 << 30)
        mount, dismount = [], []
        for _ in range(10):
            t0 = time.perf_counter()
            v.dismount()
            t1 = time.perf_counter()
            v.mount()
            dismount.append(t1 - t0)
            mount.append(time.perf_counter() - t1)
        pid = svc.mounter.daemon(str(v.id)).pid  # type: ignore[attr-defined]
        mp = v.mount_path
        wr, cr, wrate, crate = [], [], [], []
        for r in range(3):
            c0, t0 = _cpu(pid), time.perf_counter()
            subprocess.run([sys.executable, "-c", WRITER, f"{mp}/w{r}.bin", "256"], check=True)
            t1 = time.perf_counter()
            wr.append((_cpu(pid) - c0) / 256 * 1e6)
            wrate.append(256 / (t1 - t0))
            c0, t0 = _cpu(pid), time.perf_counter()
            subprocess.run([sys.executable, "-c", CREATOR, f"{mp}/d{r}", "3000"], check=True)
            t1 = time.perf_counter()
            cr.append((_cpu(pid) - c0) / 3000 * 1e6)
            crate.append(3000 / (t1 - t0))
            os.unlink(f"{mp}/w{r}.bin")
        v.delete(force=True)
        svc.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    return {
        "mount_ms": med(mount) * 1e3, "dismount_ms": med(dismount) * 1e3, "write_us_per_MiB": med(wr),
        "write_MiBps": med(wrate), "create_us": med(cr), "creates_per_s": med(crate),
    }


def engine() -> dict[str, float]:
    from simvol.fat import FatFileSystem, format_volume
    from simvol.image import Image, create_image
    from simvol.mount.ops import VolumeOps

    d = tempfile.mkdtemp(dir="/var/tmp")
    try:
        path = os.path.join(d, "x.img")
        create_image(path, 1 << 30, volume_id=uuid.uuid4(), flags=0)
        with Image.open(path) as im:
            format_volume(im.fd, im.fs_size)
            fs = FatFileSystem(im.fd, im.fs_size)
            ops = VolumeOps(fs, "/nonexistent")
            creates = []
            for r in range(5):
                ops.mkdir(f"/d{r}", 0o755)
                t0 = time.perf_counter()
                for i in range(3000):
                    p = f"/d{r}/f{i:05d}.txt"
                    ops.stat_fields(p, None)
                    fh = ops.create(p, 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                    ops.stat_fields(p, fh)
                    ops.release(p, fh)
                creates.append((time.perf_counter() - t0) / 3000 * 1e6)
            buf = b"x" * (1 << 20)
            fh = ops.create("/w.bin", 0o644, os.O_WRONLY | os.O_CREAT)
            writes = []
            for r in range(3):
                t0 = time.perf_counter()
                for i in range(256):
                    ops.write("/w.bin", buf, (r * 256 + i) << 20, fh)
                writes.append((time.perf_counter() - t0) / 256 * 1e6)
            ops.release("/w.bin", fh)
            fs.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"create_us": statistics.median(creates), "write_us_per_MiB": statistics.median(writes)}


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "service"
    if mode not in ("service", "engine"):
        sys.exit("usage: python -m tools.ab service|engine")
    print(json.dumps(service() if mode == "service" else engine()))

"""Verified I/O by fio through a real mount: data written by one program, checked by it, by mtools and fsck.fat.

fio (a Debian package nobody here wrote) runs four jobs at once, each a process of its own on its own file:

- ``seq``: sequential 64 KiB writes (psync);
- ``rand``: random writes of 512 B – 64 KiB blocks (psync), so partial clusters and holes are written;
- ``mmap``: random 4 KiB writes through a shared memory map (the kernel writes the pages back);
- ``direct``: random 4 KiB writes with ``O_DIRECT`` through libaio at queue depth 8.

Every block carries a crc32c header (``--verify=crc32c``) and is read back and checked by fio at the end of the
job. Then the volume is safely dismounted (``fsck.fat -n`` must call the image clean), mounted again, and fio
checks every block once more (``--verify_only``): the bytes survived the dismount, not only the page cache.
Finally, after the last dismount, mtools reads each file straight from the image and its SHA-256 must equal
what was read through the mount: a second reader that does not share simvol's FAT code.

``scripts/campaign fio --rounds N --size-mb M`` runs N rounds with different random seeds (``randseed``);
the reliability suite runs one small round.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from simvol.service import VolumeService

from .common import LogWatch, delete_volume, describe_failure, fsck, mtools_sha256, run_cmd, sha256_file

DEFAULT_SEED = 1_470_000
MiB = 1 << 20

# name → fio options; each job writes its own file of --size-mb.
JOBS: dict[str, dict[str, str]] = {
    "seq": {"rw": "write", "bs": "64k", "ioengine": "psync"},
    "rand": {"rw": "randwrite", "bsrange": "512-64k", "ioengine": "psync"},
    "mmap": {"rw": "randwrite", "bs": "4k", "ioengine": "mmap"},
    "direct": {"rw": "randwrite", "bs": "4k", "ioengine": "libaio", "iodepth": "8", "direct": "1"},
}


def have_fio() -> bool:
    return shutil.which("fio") is not None


def job_file(directory: str, size_mb: int, seed: int) -> str:
    """The fio job file: global options, then one section per job in :data:`JOBS`."""
    lines = [
        "[global]",
        f"directory={directory}",
        f"size={size_mb}m",
        "verify=crc32c",
        "do_verify=1",
        "verify_fatal=1",
        "verify_dump=0",
        "randrepeat=1",  # the verify-only pass must recompute the same offsets
        f"randseed={seed}",
        "fallocate=none",  # FAT has no preallocation; fio would fall back to writing zeros first
        "group_reporting=0",
    ]
    for name, opts in JOBS.items():
        lines += ["", f"[{name}]", f"filename={name}.dat", *(f"{k}={v}" for k, v in opts.items())]
    return "\n".join(lines) + "\n"


@dataclass
class RoundResult:
    index: int
    seed: int
    written: int = 0  # bytes fio wrote (and verified) in the write pass
    verified_again: int = 0  # bytes fio verified after the remount
    mtools_files: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _fio(job: str, *extra: str, timeout: float) -> tuple[dict | None, str]:
    """Run fio on ``job``; (parsed JSON or None, error text)."""
    r = run_cmd(["fio", "--output-format=json", *extra, job], timeout=timeout)
    if r.timed_out:
        return None, f"fio {' '.join(extra)} timed out after {timeout:.0f} s"
    try:
        # fio may print notes before the JSON object.
        report = json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        report = None
    if r.returncode != 0 or report is None:
        return None, f"fio {' '.join(extra)} exited {r.returncode}:\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}"
    bad = [f"job {j['jobname']}: error {j.get('error')}" for j in report.get("jobs", []) if j.get("error")]
    if bad:
        return None, "; ".join(bad)
    return report, ""


def run_round(root: str, index: int, seed: int, *, size_mb: int = 8, timeout: float = 600.0) -> RoundResult:
    """One round on ``root``: create a volume, fio write+verify, dismount, fsck, remount, verify again, mtools."""
    t0 = time.monotonic()
    res = RoundResult(index, seed)
    svc = VolumeService(root)
    watch = LogWatch(svc.root.run)
    watch.new_text()
    vol = None
    job_dir = tempfile.mkdtemp(prefix="simvol-fio-job-")
    try:
        # Room for every job's file, FAT32's minimum size and some slack.
        size = max(64 * MiB, 2 * len(JOBS) * size_mb * MiB)
        vol = svc.create_volume(size, label="FIO")
        job = os.path.join(job_dir, "verify.fio")
        with open(job, "w", encoding="ascii") as f:
            f.write(job_file(vol.mount_path, size_mb, seed))

        report, err = _fio(job, timeout=timeout)
        if report is None:
            res.violations.append(f"write + verify pass: {err}")
            return res
        res.written = sum(j["write"]["io_bytes"] for j in report["jobs"])
        expected = len(JOBS) * size_mb * MiB
        if res.written < expected:
            res.violations.append(f"fio wrote {res.written} bytes, expected {expected}")

        vol.dismount()
        clean, text = fsck(vol.image)
        if not clean:
            res.violations.append(f"fsck.fat -n after the first dismount:\n{text[-3000:]}")
        vol.mount()
        report, err = _fio(job, "--verify_only", timeout=timeout)
        if report is None:
            res.violations.append(f"verify-only pass after the remount: {err}")
        else:
            res.verified_again = sum(j["read"]["io_bytes"] for j in report["jobs"])

        digests = {name: sha256_file(os.path.join(vol.mount_path, f"{name}.dat")) for name in JOBS}
        vol.dismount()
        clean, text = fsck(vol.image)
        if not clean:
            res.violations.append(f"fsck.fat -n after the final dismount:\n{text[-3000:]}")
        for name, want in digests.items():
            got, err = mtools_sha256(vol.image, f"{name}.dat")
            if got is None:
                res.violations.append(err)
            elif got != want:
                res.violations.append(f"mtools reads {name}.dat differently from the mount")
            else:
                res.mtools_files += 1
        res.violations += [f"traceback in a daemon log: {t}" for t in watch.new_tracebacks()]
    except Exception as e:  # a VDS failure, or a harness or service bug: reported with the trial
        res.violations.append(describe_failure(e))
    finally:
        res.seconds = round(time.monotonic() - t0, 2)
        shutil.rmtree(job_dir, ignore_errors=True)
        delete_volume(vol, res.violations)
        svc.close()
    return res


@dataclass
class FioSummary:
    results: list[RoundResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def lines(self) -> list[str]:
        rs = self.results
        out = [
            f"rounds            {len(rs)} × jobs {', '.join(JOBS)}",
            f"written, verified {sum(r.written for r in rs) / MiB:.0f} MiB (crc32c, by fio)",
            f"verified again    {sum(r.verified_again for r in rs) / MiB:.0f} MiB after dismount + remount",
            f"mtools matches    {sum(r.mtools_files for r in rs)} of {len(rs) * len(JOBS)} files",
            f"violations        {sum(len(r.violations) for r in rs)} (in {sum(1 for r in rs if r.violations)} rounds)",
            f"wall time         {self.seconds:.0f} s",
        ]
        for r in rs:
            if not r.ok:
                out.append(
                    f"FAILED round #{r.index} seed {r.seed} (replay: scripts/campaign fio --seed {r.seed} --rounds 1):"
                )
                out += [f"  {v}" for v in r.violations[:20]]
        return out


def run_campaign(root: str, rounds: int, seed: int, *, size_mb: int = 8,
                 log: Callable[[str], None] = print) -> FioSummary:
    t0 = time.monotonic()
    results = []
    for i in range(rounds):
        r = run_round(root, i, seed + i, size_mb=size_mb)
        results.append(r)
        log(f"round {i + 1}/{rounds} seed {r.seed}: {'ok' if r.ok else 'FAILED'} — {r.written / MiB:.0f} MiB written "
            f"and verified, {r.verified_again / MiB:.0f} MiB verified after remount, {r.mtools_files} files "
            f"matched by mtools, {r.seconds:.1f} s")
        for v in r.violations[:10]:
            log(f"  {v}")
    return FioSummary(results, time.monotonic() - t0)

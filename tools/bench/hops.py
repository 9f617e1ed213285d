"""``python -m tools.bench.hops [--creates N] [--rounds R]``: what a second FUSE hop in front of ntfs-3g costs creates.

An NTFS volume with Windows' semantics is simvol's FUSE session (Python) in front of a private ntfs-3g, because
ntfs-3g alone offers no case-insensitive, case-preserving mount (docs/architecture.md, "NTFS volumes: the
mechanism"). This measures, in the same rounds and by the same worker as ``scripts/bench`` (10,000 empty files in
one directory by default, sides interleaved every 100 files), the time per create through:

- bare ntfs-3g (the peer of the ``≥ 0.9×`` target);
- simvol's NTFS volume with Windows' semantics (the default);
- simvol's FAT32 volume: the same Python session with the FAT engine in memory and no second hop — the cost of the
  session alone;
- when installed, two maintained passthroughs written in C in front of another bare ntfs-3g: ``bindfs`` (libfuse 2,
  multi-threaded, default caching) and ``fuse-overlayfs`` (libfuse 3 low-level, the ntfs-3g mount as upper layer).
  Neither is a dependency of simvol; ``apt-get install bindfs fuse-overlayfs`` (both work with fuse3) adds them.

It prints one line per round and a summary; the figures and what they show are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from . import Context, GiB, MiB, Sizes, TiB
from .__main__ import default_scratch_base
from .mount import CREATE_BLOCK, NtfsVolume, SimvolVolume, ntfs_tools, run_worker, unmount_any


def _passthrough(kind: str, below: Path, at: Path) -> None:
    """Mount C passthrough ``kind`` at ``at`` over the ntfs-3g mount ``below``."""
    at.mkdir()
    if kind == "bindfs":
        argv = ["bindfs", "--no-allow-other", str(below), str(at)]
    else:
        for d in ("lower", "upper", "work"):
            (below / d).mkdir()
        argv = ["fuse-overlayfs", "-o", f"lowerdir={below}/lower,upperdir={below}/upper,workdir={below}/work",
                str(at)]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while not os.path.ismount(at) and time.monotonic() < deadline:
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.hops", description=__doc__.split("\n\n")[0])
    p.add_argument("--creates", type=int, default=10_000, help="files per side and round (default 10,000)")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    tools = ntfs_tools()
    if tools is None:
        print("hops: ntfs-3g or mkntfs is not installed", file=sys.stderr)
        return 1
    extra = [k for k in ("bindfs", "fuse-overlayfs") if shutil.which(k)]
    n = a.creates
    sides = ["ntfs-3g", "simvol NTFS (Windows)", "simvol FAT32", *(f"{k} over ntfs-3g" for k in extra)]
    spent: dict[str, list[float]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory(prefix="simvol-hops-", dir=default_scratch_base()) as scratch:
        ctx = Context(Path(scratch), Sizes(seq_bytes=16 * MiB, seq_call=MiB, seq_image=GiB, creates=n,
                                           big_image=TiB), a.rounds, False, verbose=False)
        for r in range(a.rounds):
            vols: list[Any] = []
            mounted: list[Path] = []
            try:
                bare = NtfsVolume.create(ctx, tools, f"bare-{r}", GiB)
                vols.append(bare)
                bare.mount()
                win = SimvolVolume.create(ctx, f"win-{r}", GiB, "NTFS")
                vols.append(win)
                win.mount()
                fat = SimvolVolume.create(ctx, f"fat-{r}", GiB, "FAT32")
                vols.append(fat)
                fat.mount()
                dirs = [bare.mountpoint / "c", win.mountpoint / "c", fat.mountpoint / "c"]
                for k in extra:
                    below = NtfsVolume.create(ctx, tools, f"{k}-{r}", GiB)
                    vols.append(below)
                    below.mount()
                    at = Path(scratch) / f"{k}-{r}.pass"
                    _passthrough(k, below.mountpoint, at)
                    mounted.append(at)
                    dirs.append(at / "c")
                res = run_worker(ctx, {"job": "creates", "dirs": [str(d) for d in dirs], "count": n,
                                        "window": max(1, n // 10), "block": CREATE_BLOCK, "round": r})
                for s, secs in zip(sides, res["spent_s"], strict=True):
                    spent[s].append(secs / n * 1e6)
                print(f"round {r + 1}: " + ", ".join(f"{s} {spent[s][-1]:.0f} µs" for s in sides), flush=True)
            finally:
                for at in reversed(mounted):
                    unmount_any(str(at))
                for v in reversed(vols):
                    v.close()
    base = median(spent["ntfs-3g"])
    print(f"\nmedian µs per create ({n:,} files, {a.rounds} rounds) and rate as a fraction of bare ntfs-3g's:")
    for s in sides:
        us = median(spent[s])
        print(f"  {s:<28} {us:7.0f} µs   {base / us:5.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""scripts/bench runs end to end (quick sizes) and reports every metric with a value.

This checks the measuring machinery, never the figures: no verdict is asserted (timing assertions do not belong
in tests; the figures live in docs/performance.md). A bench that crashes or silently drops a row fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuse

ROOT = Path(__file__).resolve().parents[2]

ENGINE = {"seq_write", "seq_read", "creates", "creates_tail", "big_format", "big_alloc", "big_open", "big_rss",
          "big_fat_hole"}
MOUNT = {"mnt_seq_write", "mnt_seq_read", "mnt_creates_host", "mnt_creates_tail", "mnt_mount", "mnt_dismount",
         "svc_mount", "svc_dismount", "mnt_rss_mounted", "mnt_rss_loaded"}
WITH_NTFS = {"mnt_seq_write_ntfs", "mnt_seq_read_ntfs", "mnt_creates", "mnt_creates_one_CPU", "mnt_creates_two_CPUs",
             *(f"{kind}_{m}" for kind in ("ntfs", "ntfs_native")
               for m in ("seq_write", "seq_read", "creates", "mount", "dismount"))}


def test_quick_bench_reports_every_metric(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "-q", "--format", "text", "--json", str(out),
         "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    data = json.loads(out.read_text())
    rows = {m["key"]: m for m in data["results"]}
    errors = {k: m["error"] for k, m in rows.items() if m.get("error")}
    assert not errors, errors
    expected = ENGINE | MOUNT
    if shutil.which("ntfs-3g") and shutil.which("mkntfs"):
        expected |= WITH_NTFS
        if not {0, 1} <= os.sched_getaffinity(0):  # the placement rows pin to CPUs 0 and 1
            expected -= {"mnt_creates_one_CPU", "mnt_creates_two_CPUs"}
    assert expected <= rows.keys(), sorted(expected - rows.keys())
    for key in expected:
        assert rows[key]["simvol"] is not None, key
    # Nothing of the bench is left behind: no mounts under its scratch directory, no scratch directory.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("simvol-bench-")]
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


def test_hops_measures_every_side_and_leaves_nothing(tmp_path):
    """``python -m tools.bench.hops`` (the second-hop measurement of docs/performance.md) runs and reports every side
    it can: bare ntfs-3g, simvol's NTFS and FAT32 sessions, and the C passthroughs that are installed."""
    if not (shutil.which("ntfs-3g") and shutil.which("mkntfs")):
        pytest.skip("ntfs-3g or mkntfs is not installed")
    r = subprocess.run([sys.executable, "-m", "tools.bench.hops", "--creates", "200", "--rounds", "1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                       env={**os.environ, "TMPDIR": str(tmp_path)})
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    sides = ["ntfs-3g", "simvol NTFS (Windows)", "simvol FAT32",
             *(f"{k} over ntfs-3g" for k in ("bindfs", "fuse-overlayfs") if shutil.which(k))]
    summary = r.stdout.split("median µs per create", 1)[1].splitlines()[1:]
    assert [line.strip().rsplit(None, 3)[0] for line in summary if line.strip()] == sides, r.stdout
    assert all(line.rstrip().endswith("×") for line in summary if line.strip())
    with open("/proc/self/mountinfo") as f:
        assert "simvol-hops-" not in f.read()

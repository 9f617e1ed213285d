"""The narrated demo (``scripts/demo`` → ``python -m tools.demo``) run end to end, as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simvol.mount import cleanup_stale, simvol_mounts

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.fuse
def test_demo_end_to_end(tmp_path_factory: pytest.TempPathFactory) -> None:
    # a short root: the volumes' control sockets live at ROOT/run/{GUID}.sock (AF_UNIX paths ≤ 107 bytes)
    root = tmp_path_factory.mktemp("demo") / "root"
    try:
        r = subprocess.run([sys.executable, "-m", "tools.demo", "--root", str(root)], capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=REPO)  # as scripts/demo runs it
        assert r.returncode == 0, f"demo failed (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
        lines = r.stdout.strip().splitlines()
        assert lines[-1].startswith("All ") and lines[-1].endswith("steps behaved as Windows does."), lines[-1]
        assert "✗" not in r.stdout
        assert r.stdout.count("✓") >= 30
        # the demo shuts its host down at the end unless --keep
        assert simvol_mounts(str(root)) == []
        assert len(list((root / "images").glob("*.img"))) == 2
    finally:
        left = simvol_mounts(str(root))
        for entry in left:
            cleanup_stale(entry.mountpoint)
        subprocess.run([sys.executable, "-m", "simvol", "--root", str(root), "down", "--force"],
                       capture_output=True, timeout=120)
        assert not left, f"the demo left mounts behind: {[e.mountpoint for e in left]}"

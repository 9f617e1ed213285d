"""What the wheel holds: the library, the CLI and the pytest plugin — no benchmarks, campaigns, demos or tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_library_only(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(REPO)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = tmp_path.glob("simvol-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"simvol", next(t for t in tops if t.endswith(".dist-info"))}, tops
    modules = {n for n in names if n.startswith("simvol/")}
    # What a user gets: the library, the CLI, the plugin, the type marker.
    for needed in ("simvol/__init__.py", "simvol/cli/__init__.py", "simvol/pytest_plugin.py", "simvol/py.typed",
                   "simvol/mount/daemon.py", "simvol/service/service.py", "simvol/fat/filesystem.py"):
        assert needed in modules, needed
    tooling = [n for n in modules if any(w in n for w in ("bench", "campaign", "demo"))]
    assert tooling == [], tooling

"""The suite guard in tests/conftest.py: under CI, FUSE tests that were collected must not all be skipped.

Each case runs a small inner pytest session (a subprocess) with a copy of tests/conftest.py whose probe is
overridden, so the outcome does not depend on whether this host has FUSE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INI = """\
[pytest]
markers =
    fuse: needs a working FUSE
"""

TESTS = {
    "passes": "import pytest\n\n@pytest.mark.fuse\ndef test_mount():\n    pass\n\ndef test_plain():\n    pass\n",
    "skips_itself": "import pytest\n\n@pytest.mark.fuse\ndef test_mount():\n    pytest.skip('no luck')\n",
    "no_fuse": "def test_plain():\n    pass\n",
}


def run_inner(tmp_path: Path, tests: str, probe: str | None, env: dict[str, str], *args: str):
    override = f"\n\ndef fuse_unavailable_reason():\n    return {probe!r}\n"
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text() + override)
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_inner.py").write_text(TESTS[tests])
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "SIMVOL_REQUIRE_FUSE", "HYPOTHESIS_PROFILE", "PYTEST_ADDOPTS")
    }
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:simvol", "-p", "no:cacheprovider", "-rs", *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


GUARD = "FUSE tests were collected but none ran"


def test_fuse_test_runs_in_ci(tmp_path):
    rc, out = run_inner(tmp_path, "passes", None, {"CI": "true"})
    assert rc == 0, out
    assert GUARD not in out


def test_probe_failure_skips_with_reason_outside_ci(tmp_path):
    rc, out = run_inner(tmp_path, "passes", "no /dev/fuse here", {})
    assert rc == 0, out
    assert "FUSE unavailable: no /dev/fuse here" in out
    assert GUARD not in out


def test_probe_failure_in_ci_fails_session(tmp_path):
    rc, out = run_inner(tmp_path, "passes", "no /dev/fuse here", {"CI": "1"})
    assert rc == 1, out
    assert GUARD in out
    assert "no /dev/fuse here" in out


def test_require_fuse_fails_when_tests_skip_themselves(tmp_path):
    rc, out = run_inner(tmp_path, "skips_itself", None, {"SIMVOL_REQUIRE_FUSE": "1"})
    assert rc == 1, out
    assert GUARD in out


@pytest.mark.parametrize(
    ("tests", "args"),
    [("no_fuse", ()), ("passes", ("-m", "not fuse")), ("passes", ("--collect-only",))],
    ids=["none-collected", "deselected", "collect-only"],
)
def test_guard_inactive_without_selected_fuse_tests(tmp_path, tests, args):
    rc, out = run_inner(tmp_path, tests, "no /dev/fuse here", {"CI": "1"}, *args)
    assert rc == 0, out
    assert GUARD not in out

"""The plugin's CI guard (simvol/pytest_plugin.py), in a project that is not simvol's: under CI, with
SIMVOL_REQUIRE_FUSE=1 or with --simvol-require-fuse, FUSE tests that were selected must not all be skipped.

Each case runs a small inner pytest session (a subprocess, the plugin loaded through its entry point as a user's
project has it) whose conftest overrides the plugin's FUSE probe, so the outcome does not depend on this host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = {
    "marker": "import pytest\n\n@pytest.mark.simvol_fuse\ndef test_mount():\n    pass\n\ndef test_plain():\n    pass\n",
    "fixtures": (
        "def test_volume(simvol_volume):\n    assert simvol_volume.state == 'M'\n\n"
        "def test_service(simvol_service):\n    pass\n\ndef test_plain():\n    pass\n"
    ),
    "skips_itself": "import pytest\n\n@pytest.mark.simvol_fuse\ndef test_mount():\n    pytest.skip('no luck')\n",
    "no_fuse": "def test_plain():\n    pass\n",
}


def run_inner(tmp_path: Path, tests: str, probe: str | None, env: dict[str, str], *args: str):
    (tmp_path / "conftest.py").write_text(
        "import simvol.pytest_plugin as plugin\n\n"
        f"plugin.fuse_unavailable_reason = lambda: {probe!r}  # this host's FUSE does not decide the case\n"
    )
    (tmp_path / "test_inner.py").write_text(TESTS[tests])
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "SIMVOL_REQUIRE_FUSE", "HYPOTHESIS_PROFILE", "PYTEST_ADDOPTS", "PYTHONPATH")
    }
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


GUARD = "FUSE tests were collected but none ran"


@pytest.mark.parametrize("tests", ["marker", "fixtures"])
def test_a_user_project_fails_in_ci_when_its_fuse_tests_all_skip(tmp_path, tests):
    rc, out = run_inner(tmp_path, tests, "no /dev/fuse here", {"CI": "1"})
    assert rc == 1, out
    assert GUARD in out and "CI is set" in out
    assert "no /dev/fuse here" in out


def test_probe_failure_skips_with_reason_outside_ci(tmp_path):
    rc, out = run_inner(tmp_path, "fixtures", "no /dev/fuse here", {})
    assert rc == 0, out
    assert "FUSE unavailable: no /dev/fuse here" in out
    assert GUARD not in out


def test_the_option_and_the_variable_require_fuse(tmp_path):
    rc, out = run_inner(tmp_path, "marker", "no /dev/fuse here", {}, "--simvol-require-fuse")
    assert rc == 1 and "--simvol-require-fuse" in out, out
    rc, out = run_inner(tmp_path, "skips_itself", None, {"SIMVOL_REQUIRE_FUSE": "1"})
    assert rc == 1, out
    assert GUARD in out and "the tests skipped themselves" in out


def test_ci_false_is_not_ci(tmp_path):
    rc, out = run_inner(tmp_path, "marker", "no /dev/fuse here", {"CI": "false"})
    assert rc == 0 and GUARD not in out, out


def test_a_fuse_test_that_runs_satisfies_the_guard(tmp_path):
    rc, out = run_inner(tmp_path, "marker", None, {"CI": "true"})
    assert rc == 0, out
    assert GUARD not in out


@pytest.mark.parametrize(
    ("tests", "args"),
    [("no_fuse", ()), ("marker", ("-m", "not simvol_fuse")), ("marker", ("--collect-only",))],
    ids=["none-collected", "deselected", "collect-only"],
)
def test_guard_inactive_without_selected_fuse_tests(tmp_path, tests, args):
    rc, out = run_inner(tmp_path, tests, "no /dev/fuse here", {"CI": "1"}, *args)
    assert rc == 0, out
    assert GUARD not in out

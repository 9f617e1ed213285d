"""Suite-wide settings: hypothesis profiles, the FUSE availability probe, and the CI suite guard.

- Hypothesis: profile "ci" when the environment variable CI is set, else "dev"; HYPOTHESIS_PROFILE overrides.
- Tests marked ``@pytest.mark.fuse`` are skipped, with the reason, when FUSE is unusable here.
- Suite guard: under CI (or SIMVOL_REQUIRE_FUSE=1), collecting FUSE tests and running none of them fails the
  session. A CI job that silently skips every real mount would otherwise pass while testing nothing.

The markers ``fuse`` and ``slow`` are declared in pyproject.toml.
"""

from __future__ import annotations

import os
import sys

import pytest

# --- hypothesis profiles ------------------------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _in_ci() -> bool:
    return _env_flag("CI")


def _fuse_required() -> bool:
    return _in_ci() or os.environ.get("SIMVOL_REQUIRE_FUSE", "") == "1"


try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the conftest must work without hypothesis installed
    pass
else:
    # Explicit parent: hypothesis itself loads its built-in "ci" profile when CI is in the environment, and a
    # profile registered without a parent would inherit whatever is loaded at that moment.
    _base = settings.get_profile("default")
    settings.register_profile(
        "ci", _base, deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile("dev", _base, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _in_ci() else "dev"))


# --- FUSE probe ---------------------------------------------------------------------------------------------


# The probe is the plugin's, so the suite and simvol's users skip for the same reasons.
from simvol.pytest_plugin import fuse_unavailable_reason  # noqa: E402

# --- skipping and the suite guard ---------------------------------------------------------------------------

_FUSE_ITEMS = pytest.StashKey[set]()  # node ids of selected fuse tests
_GUARD_MESSAGE = pytest.StashKey[str]()
# Node ids of tests that ran (see pytest_runtest_logreport). pytest_runtest_logreport gets no config, so this is
# module-level; it is intersected with the selected fuse tests at session end.
_RAN_NODEIDS: set[str] = set()


def _is_fuse(item: pytest.Item) -> bool:
    return item.get_closest_marker("fuse") is not None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FUSE_ITEMS] = set()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fuse_items = [item for item in items if _is_fuse(item)]
    if not fuse_items:
        return
    reason = fuse_unavailable_reason()
    if reason is not None:
        marker = pytest.mark.skip(reason=f"FUSE unavailable: {reason}")
        for item in fuse_items:
            item.add_marker(marker)


def pytest_collection_finish(session: pytest.Session) -> None:
    # After deselection (-k, -m): only what will actually be run counts.
    session.config.stash[_FUSE_ITEMS] = {item.nodeid for item in session.items if _is_fuse(item)}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # A test ran if its call phase was not a skip (xfail counts as run), or its setup errored.
    if (report.when == "call" and (not report.skipped or hasattr(report, "wasxfail"))) or (
        report.when == "setup" and report.failed
    ):
        _RAN_NODEIDS.add(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if config.option.collectonly or not _fuse_required():
        return
    if session.shouldstop or session.shouldfail:
        return  # stopped early (-x, --maxfail): unreached FUSE tests say nothing, and the run already failed
    selected = config.stash.get(_FUSE_ITEMS, set())
    if not selected:
        return  # no FUSE tests selected: nothing to guard
    ran = selected & _RAN_NODEIDS
    if ran:
        return
    why = "CI is set" if _in_ci() else "SIMVOL_REQUIRE_FUSE=1"
    reason = fuse_unavailable_reason()
    message = (
        f"FUSE tests were collected but none ran: {len(selected)} test(s) marked 'fuse', all skipped ({why}). "
        + (f"Probe: {reason}." if reason else "The probe found FUSE usable; the tests skipped themselves.")
    )
    config.stash[_GUARD_MESSAGE] = message
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        print(f"ERROR: {message}", file=sys.stderr)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    message = config.stash.get(_GUARD_MESSAGE, None)
    if message:
        terminalreporter.write_sep("=", "simvol suite guard", red=True, bold=True)
        terminalreporter.write_line(f"ERROR: {message}", red=True)

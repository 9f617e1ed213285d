"""Suite-wide settings: hypothesis profiles, and the suite's fuse marker as the plugin's simvol_fuse.

- Hypothesis: profile "ci" when the environment variable CI is set, else "dev"; HYPOTHESIS_PROFILE overrides.
- Tests marked ``@pytest.mark.fuse`` are the plugin's ``simvol_fuse`` tests: skipped, with the reason, when FUSE is
  unusable here, and guarded: under CI (or SIMVOL_REQUIRE_FUSE=1), collecting FUSE tests and running none of them
  fails the session (the plugin's guard, simvol/pytest_plugin.py).

The markers ``fuse`` and ``slow`` are declared in pyproject.toml.
"""

from __future__ import annotations

import os

import pytest

# --- hypothesis profiles ------------------------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _in_ci() -> bool:
    return _env_flag("CI")


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


# --- FUSE tests and the CI guard -------------------------------------------------------------------------------
# The suite's ``fuse`` marker means what the plugin's ``simvol_fuse`` means: skipped, with the reason, where FUSE
# cannot mount, and counted by the plugin's CI guard (simvol/pytest_plugin.py), the same guard users get.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("fuse") is not None:
            item.add_marker(pytest.mark.simvol_fuse)

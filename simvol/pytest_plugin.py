"""pytest plugin for simvol (registered through the ``pytest11`` entry point).

It registers simvol's markers so projects using simvol can mark tests without warnings. The fixtures that
give tests a private volume service and ready volumes arrive with the VDS service layer.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "simvol_volume(size=..., label=..., letter=..., roles=...): volume options")

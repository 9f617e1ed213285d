"""Oracle tests: skip (with the reason) when dosfstools or mtools are missing; give each test its helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import fatoracle


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = fatoracle.skip_reason()
    if reason is None:
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))

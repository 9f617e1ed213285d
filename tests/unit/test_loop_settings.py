"""The spin setting of the mount daemon's FUSE loop (simvol/mount/_loop.py)."""

from __future__ import annotations

import logging

import pytest

from simvol.mount._loop import DEFAULT_SPIN_US, SPIN_ENV, spin_ns_from_env


@pytest.mark.parametrize(
    ("raw", "ns"),
    [
        (None, DEFAULT_SPIN_US * 1000),
        ("", DEFAULT_SPIN_US * 1000),
        ("0", 0),
        ("120", 120_000),
        ("-5", 0),  # negative: no spin
        ("99999999", 10_000_000),  # capped at 10 ms: a typo must not pin a CPU for seconds per request
    ],
)
def test_spin_setting(monkeypatch, raw, ns):
    if raw is None:
        monkeypatch.delenv(SPIN_ENV, raising=False)
    else:
        monkeypatch.setenv(SPIN_ENV, raw)
    assert spin_ns_from_env() == ns


def test_bad_spin_setting_is_reported_and_defaulted(monkeypatch, caplog):
    monkeypatch.setenv(SPIN_ENV, "fast")
    with caplog.at_level(logging.WARNING, logger="simvol.mount._loop"):
        assert spin_ns_from_env() == DEFAULT_SPIN_US * 1000
    assert SPIN_ENV in caplog.text and "fast" in caplog.text

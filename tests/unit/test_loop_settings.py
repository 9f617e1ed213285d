"""The mount daemon's FUSE loop (simvol/mount/_loop.py): the spin setting and when it spins."""

from __future__ import annotations

import logging

import pytest

from simvol.mount._loop import DEFAULT_SPIN_US, SPIN_ENV, SpinPolicy, spin_ns_from_env


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


# ---------------------------------------------------------------------------------------------- SpinPolicy

W = 50_000  # the window, ns


def test_idle_daemon_never_spins():
    p = SpinPolicy(W)
    for _ in range(10):
        assert not p.should_spin()
        p.received(10 * W)  # requests far apart
    assert not p.should_spin()


def test_a_burst_starts_spinning_and_successful_spins_keep_it():
    p = SpinPolicy(W)
    assert not p.should_spin()
    p.received(W // 5)  # came quickly after we started waiting
    for _ in range(100):
        assert p.should_spin()
        p.spun(True)
        p.received(0)
    assert p.backoff == 0


def test_fruitless_spins_back_off_exponentially_up_to_the_cap():
    """A client on the daemon's own CPU cannot send while we spin: every spin times out, then the request
    comes right after we block. Spins must become rare (at most one per 64 requests)."""
    p = SpinPolicy(W, max_backoff=64)
    p.received(0)
    spins = 0
    for _ in range(2000):
        if p.should_spin():
            spins += 1
            p.spun(False)
        p.received(W // 10)
    assert spins <= 8 + 2000 // 64 + 1, spins  # 1, 3, 7, …, 63 then every 65th request
    assert p.backoff == 64


def test_a_successful_spin_resets_the_backoff():
    p = SpinPolicy(W)
    p.received(0)
    assert p.should_spin()
    p.spun(False)
    p.received(W // 10)
    assert p.skip == 1 and not p.should_spin()  # skipped once
    p.received(W // 10)
    assert p.should_spin()
    p.spun(True)
    assert p.backoff == 0 and p.skip == 0
    p.received(0)
    assert p.should_spin()


def test_window_zero_disables_spinning():
    p = SpinPolicy(0)
    for _ in range(5):
        p.received(0)
        assert not p.should_spin()

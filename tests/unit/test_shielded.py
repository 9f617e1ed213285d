"""simvol.interrupts: a shielded block runs to its end; the signal is delivered after it, to the program's handler."""

from __future__ import annotations

import signal
import threading

import pytest

from simvol.interrupts import shielded, unshielded


def test_a_signal_inside_a_shield_is_delivered_when_it_ends():
    steps = []
    with pytest.raises(KeyboardInterrupt), shielded():
        signal.raise_signal(signal.SIGINT)
        steps.append("after the signal")  # still running: the signal waits
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the program's handler is back


def test_shields_nest_and_only_the_outermost_delivers():
    with pytest.raises(KeyboardInterrupt), shielded():
        with shielded():
            signal.raise_signal(signal.SIGINT)
        inner_done = True  # the inner shield did not deliver
    assert inner_done


def test_the_caller_may_take_the_held_signals_itself():
    with shielded(deliver_after=False) as held:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert held == [signal.SIGTERM, signal.SIGINT]


def test_unshielded_opens_the_window_and_delivers_what_was_held():
    with shielded(deliver_after=False) as held:
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt), unshielded():  # the held SIGINT is delivered on entry
            raise AssertionError("not reached")
        with pytest.raises(KeyboardInterrupt), unshielded():
            signal.raise_signal(signal.SIGINT)  # raised here, as without any shield
        signal.raise_signal(signal.SIGINT)  # held again after the window
    assert held == [signal.SIGINT]


def test_a_user_handler_is_honoured_and_ignored_signals_stay_ignored():
    got = []
    old_term, old_hup = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    signal.signal(signal.SIGTERM, lambda n, f: got.append(n))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with shielded():
            signal.raise_signal(signal.SIGTERM)
            assert got == []
        assert got == [signal.SIGTERM]
        with shielded():
            signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)


def test_outside_the_main_thread_a_shield_changes_nothing():
    seen = []

    def work():
        with shielded() as held:
            seen.append((signal.getsignal(signal.SIGINT) is signal.default_int_handler, held))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [(True, [])]

"""Interrupts that cannot leave an operation half done.

A signal that ends a program — SIGINT (Ctrl-C), SIGTERM (``kill``), SIGHUP (a closed terminal) — can arrive
between any two bytecodes. An operation that changes persistent state (the registry, an image, a mount daemon)
runs inside :func:`shielded`: such a signal is held until the block ends and only then delivered, to whatever
handler the program had. So the operation either ran to its end or, when the signal came before it began, never
started; nothing is left half made.

:func:`unshielded` reopens the window for a long phase that undoes its own work when interrupted (filling a new
volume from a host tree, waiting for the command of ``simvol lock``).

Python runs signal handlers in the main thread only; in any other thread both are no-ops (a signal cannot
interrupt that thread's Python code anyway). Shields nest: the outermost one delivers.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType

TYPE_CHECKING = False  # not typing's: the CLI loads this module before its signal handlers are in place
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, TypeAlias

__all__ = ["SIGNALS", "deliver", "shielded", "unshielded"]

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_Handler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | signal.Handlers | None"

_depth = 0
_pending: list[int] = []
_saved: dict[signal.Signals, _Handler] = {}


def _defer(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def deliver(signum: int) -> None:
    """Hand ``signum`` to the handler installed now, as if it had just arrived."""
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)
    elif handler != signal.SIG_IGN:
        signal.raise_signal(signum)  # SIG_DFL (or a handler outside Python): the signal's own action


def _take_pending() -> list[int]:
    got = list(_pending)
    _pending.clear()
    return got


@contextmanager
def shielded(*, deliver_after: bool = True) -> Iterator[list[int]]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends.

    Yields a list that holds, once the outermost shield has ended, the signals it held. Then the
    first held signal is delivered to the program's handler — unless ``deliver_after`` is false, for a caller
    that reads the list and decides itself (the CLI reports which operation completed first).
    """
    global _depth
    if not _in_main_thread():
        yield []
        return
    if _depth == 0:
        for s in SIGNALS:
            _saved[s] = signal.signal(s, _defer)
    _depth += 1
    outermost = _depth == 1
    held: list[int] = []
    try:
        yield held
    finally:
        _depth -= 1
        if outermost:
            for s, h in _saved.items():
                signal.signal(s, h)
            _saved.clear()
            held.extend(_take_pending())
            if held and deliver_after:
                deliver(held[0])


@contextmanager
def unshielded() -> Iterator[None]:
    """Inside a shield, let the program's handlers run again for the block (a held signal is delivered first).

    For a phase that may take long and cleans up after itself when interrupted."""
    if not _in_main_thread() or _depth == 0:
        yield
        return
    for s, h in _saved.items():
        signal.signal(s, h)
    try:
        got = _take_pending()
        if got:
            deliver(got[0])
        yield
    finally:
        for s in SIGNALS:
            signal.signal(s, _defer)

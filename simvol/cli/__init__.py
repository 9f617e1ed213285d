"""The ``simvol`` command-line interface (click).

:func:`main` takes the signals that end a program before anything else is loaded, so an interrupt at any instant
ends the command with one line saying what happened, never a traceback (see :mod:`simvol.cli.signals`).
"""

from __future__ import annotations

import signal

from .signals import Interrupted, end_by, ignore_signals, take_signals, unreported

TYPE_CHECKING = False  # not typing's: importing typing would delay take_signals
if TYPE_CHECKING:
    from typing import Any

    from .app import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
    """The process's entry point (``simvol`` and ``python -m simvol``): it takes the process's signals."""
    take_signals()
    try:
        from .app import main as run

        status = run(argv)
    except Interrupted as e:  # before a verb began (a verb reports its own interrupts)
        end_by(e.signum, f"interrupted by {e.signame} before anything was changed")
    ignore_signals()  # done: what is left is the exit itself
    late = unreported()
    if late is not None:  # it came while Python could not raise it: the command went on to its end
        end_by(late, f"{signal.Signals(late).name} arrived while simvol started; the command completed first")
    return status


def __getattr__(name: str) -> Any:
    if name == "cli":
        from .app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

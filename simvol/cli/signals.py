"""How the command ends when it is interrupted (SIGINT, SIGTERM, SIGHUP: Ctrl-C, ``kill``, a closed terminal).

Every verb runs shielded (:mod:`simvol.interrupts`): a signal that arrives while it changes something is held
until the verb completes, so an interrupt leaves either the completed operation or no trace. The command then
says which in one line on stderr and ends as the signal would have ended it — killed by that signal, so a shell
sees 128+n and a script stops as it does for any interrupted program. Long phases that undo their own work
(``create --from``, the COMMAND of ``simvol lock``) are open to interrupts; so is everything before the verb.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

from ..interrupts import SIGNALS

TYPE_CHECKING = False  # not typing's: this module loads before the handlers are in place
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["Interrupted", "end_by", "ignore_signals", "reported", "take_signals", "unreported"]


class Interrupted(KeyboardInterrupt):
    """A signal that ends a program arrived; carries its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name


# Signals raised as Interrupted and not yet reported. Python drops an exception raised where it cannot propagate
# (a weakref callback of the import machinery: "Exception ignored in ..."); such a signal stays listed here.
_unreported: list[int] = []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _unreported.append(signum)
    raise Interrupted(signum)


def _unraisable(hook: sys.UnraisableHookArgs) -> None:
    if not isinstance(hook.exc_value, Interrupted):
        sys.__unraisablehook__(hook)  # the interrupt itself is reported by main, in one line


def take_signals() -> None:
    """From now on the ending signals raise :class:`Interrupted` (SIGHUP included: a closed terminal)."""
    sys.unraisablehook = _unraisable
    for s in SIGNALS:
        if signal.getsignal(s) != signal.SIG_IGN:  # ignored by whoever started us (nohup): stays ignored
            signal.signal(s, _interrupt)


def reported() -> None:
    """The Interrupted just caught is reported by its catcher: :func:`unreported` must not report it again."""
    _unreported.clear()


def unreported() -> int | None:
    """A signal whose Interrupted Python dropped (the command then went on and completed), if any."""
    return _unreported[0] if _unreported else None


def ignore_signals() -> None:
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def end_by(signum: int, line: str | None) -> NoReturn:
    """Say ``line`` on stderr if it still can, then end killed by ``signum``."""
    ignore_signals()  # a second Ctrl-C must not cut the last line in half
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if line:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"simvol: {line}\n")
            sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    os._exit(128 + signum)  # a signal whose default is not to end the process (none of SIGNALS): still end

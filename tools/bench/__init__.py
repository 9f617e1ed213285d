"""Benchmarks behind ``scripts/bench``: simvol measured against a peer on the same machine, in the same run.

Private to the project (not part of the public API). A *suite* is a module in this package that exposes
``SUITE``, a :class:`Suite`; :data:`SUITE_NAMES` lists them in the order a full run takes them. A suite's
``run`` gets a :class:`Context` (scratch directory, sizes, repeat count, a logger) and returns
:class:`Metric` rows; ``report`` prints them next to each other with ratios, targets and verdicts.

To add a suite (the FUSE mount suite, for example): write ``tools/bench/NAME.py`` with
``SUITE = Suite("NAME", "what it measures", run)``, and append ``"NAME"`` to :data:`SUITE_NAMES`.
"""

from __future__ import annotations

import importlib
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Suites in the order a full run (no ``--only``) takes them.
SUITE_NAMES: tuple[str, ...] = ("engine", "mount")

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; ``--quick`` picks the small set for a smoke run."""

    seq_bytes: int  # sequential write/read volume
    seq_call: int  # bytes per write/read call
    seq_image: int  # apparent size of the image the sequential test writes into
    creates: int  # empty files created in one directory
    big_image: int  # the "1 TiB" format/open test

    @property
    def create_window(self) -> int:
        """Files in the first/last window whose rates are compared (1,000 of 10,000)."""
        return max(1, self.creates // 10)


FULL = Sizes(seq_bytes=1 * GiB, seq_call=1 * MiB, seq_image=2 * GiB, creates=10_000, big_image=1 * TiB)
QUICK = Sizes(seq_bytes=64 * MiB, seq_call=1 * MiB, seq_image=2 * GiB, creates=1_000, big_image=64 * GiB)


@dataclass
class Context:
    """What a suite needs: where to put files, how big and how often, and where to say what it is doing."""

    scratch: Path  # private directory, removed after the run
    sizes: Sizes
    repeats: int
    quick: bool
    verbose: bool = True

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"bench: {msg}", file=sys.stderr, flush=True)


@dataclass
class Metric:
    """One row of the report.

    ``ratio`` is simvol ÷ peer (for throughput, higher is better; for times and sizes, lower is better —
    the target text says which). ``passed`` is None for rows without a target.
    """

    suite: str
    key: str  # stable identifier, e.g. "seq_write"
    label: str  # human label, e.g. "sequential write 1 GiB (1 MiB calls + fsync)"
    unit: str  # "MiB/s", "files/s", "s", "bytes", "KiB", "ratio", "bool"
    simvol: float | bool | None
    peer: float | bool | None = None
    peer_name: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    error: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    run: Callable[[Context], list[Metric]]


def load_suite(name: str) -> Suite:
    if name not in SUITE_NAMES:
        raise KeyError(name)
    module = importlib.import_module(f"{__name__}.{name}")
    suite = module.SUITE
    assert isinstance(suite, Suite) and suite.name == name
    return suite


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b

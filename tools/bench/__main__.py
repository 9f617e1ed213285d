"""``python -m tools.bench`` (what ``scripts/bench`` runs): measure simvol against its peers and print a table.

Exit status: 0 when everything was measured (even if a target is missed — it is a measurement; FAILs are
printed clearly), 1 when a measurement could not run or, with ``--strict``, when a target is missed,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from . import FULL, QUICK, SUITE_NAMES, Context, Metric, load_suite
from .report import is_tmpfs, machine_info, print_report, write_json


def default_scratch_base() -> Path:
    """/var/tmp unless it is tmpfs (RAM would flatter every number), else the checkout's images/, else TMPDIR."""
    candidates = [Path("/var/tmp")]
    import simvol

    repo_images = Path(simvol.__file__).resolve().parent.parent / "images"
    candidates.append(repo_images)
    for c in candidates:
        if c.is_dir() and os.access(c, os.W_OK | os.X_OK) and not is_tmpfs(c):
            return c
    return Path(tempfile.gettempdir())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure simvol against a peer on this machine in one run (median of several rounds) "
        "and print metric, simvol, peer, ratio, target and verdict.",
    )
    p.add_argument(
        "--only", action="append", choices=SUITE_NAMES, metavar="SUITE",
        help=f"run only this suite (repeatable; available: {', '.join(SUITE_NAMES)}); default: all",
    )
    p.add_argument("--json", metavar="FILE", help="also save machine, config and results as JSON to FILE")
    p.add_argument(
        "--dir", metavar="DIR", type=Path,
        help="where scratch files go (a private subdirectory is made and removed); default /var/tmp, or the "
        "checkout's images/ if /var/tmp is tmpfs",
    )
    p.add_argument(
        "--quick", action="store_true",
        help="smoke-run sizes: 64 MiB sequential, 1,000 creates, a 64 GiB image instead of 1 TiB (a few ms per "
        "sequential round: those verdicts are indicative only); mount suite: 5 mount/dismount cycles instead of 20 "
        "and 100 creates + 8 MiB for the RSS workload",
    )
    p.add_argument("--repeats", type=int, default=3, metavar="N", help="rounds per measurement; median reported (3)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--format", dest="style", choices=("auto", "rich", "text", "markdown"), default="auto",
        help="table style (auto: rich if installed, else aligned text)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.dir is not None and not args.dir.is_dir():
        p.error(f"--dir {args.dir}: not a directory")
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: scratch files are removed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    base = args.dir if args.dir is not None else default_scratch_base()
    names = [n for n in SUITE_NAMES if not args.only or n in args.only]
    sizes = QUICK if args.quick else FULL
    scratch = Path(tempfile.mkdtemp(prefix="simvol-bench-", dir=base))
    metrics: list[Metric] = []
    try:
        ctx = Context(scratch=scratch, sizes=sizes, repeats=args.repeats, quick=args.quick, verbose=not args.quiet)
        machine = machine_info(scratch)
        ctx.log(f"scratch {scratch} ({machine['scratch_fs']}); suites: {', '.join(names)}; "
                f"{'quick' if args.quick else 'full'} sizes; {args.repeats} rounds each")
        for name in names:
            suite = load_suite(name)
            ctx.log(f"suite {name}: {suite.description}")
            metrics.extend(suite.run(ctx))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_report(metrics, machine, style=args.style)
    if args.json:
        config = {"suites": names, "quick": args.quick, "repeats": args.repeats, "sizes": asdict(sizes)}
        write_json(args.json, metrics, machine, config)
        print(f"results saved to {args.json}", file=sys.stderr)
    if any(m.error for m in metrics):
        return 1
    if args.strict and any(m.passed is False for m in metrics):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m tools.campaign`` (what ``scripts/campaign`` runs).

    scripts/campaign crash  [--trials N] [--seed S] [--max-delay SEC] [--fs FAT32|NTFS] [--kill daemon|server]
                            [--dir DIR] [--keep-failed DIR]
    scripts/campaign damage [--mutations N] [--seed S] [--workers N] [--timeout SEC] [--dir DIR] [--keep-failed DIR]
    scripts/campaign fio    [--rounds N] [--size-mb M] [--seed S]
    scripts/campaign fsx    [--trials N] [--ops M] [--phases K] [--aliases] [--seed S]

Prints one line per trial/mutation and a summary; exit 1 on any loss or violation, 2 on a usage error.
Seeds are printed with every failure; ``--seed S --trials 1`` (``--mutations 1``) replays one case.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile

from .common import have_fsck, machine, rmtree_quiet, scratch_base


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/campaign",
        description="Reliability campaigns on real FUSE mounts (docs/reliability.md). Prints a summary; exit 1 on "
        "any loss or violation.",
    )
    sub = p.add_subparsers(dest="campaign", required=True)
    c = sub.add_parser("crash", help="SIGKILL the daemon under a workload; every fsynced file must survive")
    c.add_argument("--trials", type=int, default=5, help="number of trials (default 5; the full campaign is 200)")
    c.add_argument("--seed", type=int, default=None, help="seed of the first trial (trial i uses seed + i)")
    c.add_argument("--max-delay", type=float, default=1.5, help="longest delay before the kill, seconds (1.5)")
    c.add_argument("--fs", choices=("FAT32", "NTFS"), default="FAT32",
                   help="the volumes' file system (NTFS: Windows semantics over ntfs-3g, checked by ntfsfix -n)")
    c.add_argument("--kill", choices=("daemon", "server"), default="daemon",
                   help="what is SIGKILLed: the daemon (default), or an NTFS volume's ntfs-3g (needs --fs NTFS)")
    d = sub.add_parser("damage", help="mutate valid images; each must work or fail with a clear VdsError")
    d.add_argument("--mutations", type=int, default=20, help="number of mutations (default 20; full: 2000)")
    d.add_argument("--seed", type=int, default=None, help="seed of the first mutation (mutation i uses seed + i)")
    d.add_argument("--workers", type=int, default=2, help="parallel workers, each on its own root (default 2)")
    d.add_argument("--timeout", type=float, default=90.0, help="time limit of one mutation, seconds (90)")
    d.add_argument("--cli-every", type=int, default=4, help="attach through the CLI every N-th mutation (4)")
    f = sub.add_parser("fio", help="fio writes with crc32c headers through the mount; verified again after a remount")
    f.add_argument("--rounds", type=int, default=1, help="number of rounds, each on a new volume (default 1)")
    f.add_argument("--size-mb", type=int, default=8, help="MiB each of the four jobs writes (default 8)")
    f.add_argument("--seed", type=int, default=None, help="fio's randseed of the first round (round i: seed + i)")
    x = sub.add_parser("fsx", help="random system calls through the mount, checked against a model")
    x.add_argument("--trials", type=int, default=2, help="number of trials, each on a new volume (default 2)")
    x.add_argument("--ops", type=int, default=2000, help="operations per trial (default 2000)")
    x.add_argument("--phases", type=int, default=3, help="phases per trial; a dismount + fsck + mount between (3)")
    x.add_argument("--aliases", action="store_true",
                   help="spell names (and directories) differently from call to call (docs/behaviour.md)")
    x.add_argument("--seed", type=int, default=None, help="seed of the first trial (trial i uses seed + i)")
    for sp in (c, d, f, x):
        sp.add_argument("--dir", default=None, help="where the scratch root goes (default /var/tmp)")
        sp.add_argument("--keep-failed", default=None, metavar="DIR", help="copy failing images (and records) here")
        sp.add_argument("--keep-root", action="store_true", help="do not delete the scratch root afterwards")
        sp.add_argument("--quiet", action="store_true", help="print only failures and the summary")
        sp.add_argument("--json", default=None, metavar="FILE", help="also write every case's result to FILE")
    args = p.parse_args(argv)
    if getattr(args, "kill", "daemon") == "server" and args.fs != "NTFS":
        p.error("--kill server needs --fs NTFS (a FAT32 volume's server is its daemon)")
    counts = ("trials", "mutations", "workers", "rounds", "size_mb", "ops", "phases")
    if any(getattr(args, name, 1) < 1 for name in counts):
        p.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not have_fsck():
        print("campaign: ERROR: fsck.fat is not installed (dosfstools)", file=sys.stderr)
        return 1
    if getattr(args, "fs", "FAT32") == "NTFS" and not (shutil.which("ntfs-3g") and shutil.which("ntfsfix")):
        print("campaign: ERROR: NTFS volumes need ntfs-3g (apt-get install ntfs-3g)", file=sys.stderr)
        return 1
    base = args.dir or scratch_base()
    root = tempfile.mkdtemp(prefix=f"simvol-{args.campaign}-", dir=base)
    started = datetime.datetime.now().astimezone()
    print(f"campaign {args.campaign} — {started:%Y-%m-%d %H:%M %Z} — {machine()}")
    print(f"command: scripts/campaign {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"scratch root: {root}")

    def log(line: str) -> None:
        if not args.quiet or "FAIL" in line or line.startswith("  "):
            print(line, flush=True)

    try:
        if args.campaign == "crash":
            from .crash import DEFAULT_SEED, run_campaign

            seed = args.seed if args.seed is not None else DEFAULT_SEED
            print(f"trials {args.trials}, {args.fs} volumes, SIGKILL of the {args.kill}, seeds {seed}…"
                  f"{seed + args.trials - 1}", flush=True)
            summary = run_campaign(root, args.trials, seed, max_delay=args.max_delay, keep_failed=args.keep_failed,
                                   filesystem=args.fs, kill=args.kill, log=log)
        elif args.campaign == "fio":
            from .fio import DEFAULT_SEED, have_fio, run_campaign

            if not have_fio():
                print("campaign: ERROR: fio is not installed", file=sys.stderr)
                return 1
            seed = args.seed if args.seed is not None else DEFAULT_SEED
            print(
                f"rounds {args.rounds}, {args.size_mb} MiB per job, seeds {seed}…{seed + args.rounds - 1}", flush=True
            )
            summary = run_campaign(root, args.rounds, seed, size_mb=args.size_mb, log=log)
        elif args.campaign == "fsx":
            from .fsx import DEFAULT_SEED, run_campaign

            seed = args.seed if args.seed is not None else DEFAULT_SEED
            print(f"trials {args.trials} × {args.ops} operations in {args.phases} phases, "
                  f"{'aliased' if args.aliases else 'stored'} spellings, seeds {seed}…{seed + args.trials - 1}",
                  flush=True)
            summary = run_campaign(root, args.trials, seed, ops=args.ops, phases=args.phases, aliases=args.aliases,
                                   log=log)
        else:
            from .damage import DEFAULT_SEED, run_campaign

            seed = args.seed if args.seed is not None else DEFAULT_SEED
            print(f"mutations {args.mutations}, seeds {seed}…{seed + args.mutations - 1}, workers {args.workers}",
                  flush=True)
            summary = run_campaign(root, args.mutations, seed, workers=args.workers, timeout=args.timeout,
                                   cli_every=args.cli_every, keep_failed=args.keep_failed, log=log)
    except KeyboardInterrupt:
        print("campaign: interrupted", file=sys.stderr)
        return 130
    finally:
        if not args.keep_root:
            rmtree_quiet(root)
    print()
    print("summary")
    for line in summary.lines():
        print(line)
    if args.json:
        import dataclasses
        import json

        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "started": started.isoformat(), "machine": machine(),
                       "seconds": summary.seconds, "ok": summary.ok,
                       "results": [dataclasses.asdict(r) for r in summary.results]}, f, indent=1, default=str)
    verdict = "PASS" if summary.ok else "FAIL"
    print(f"verdict           {verdict}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Machine description and the results table (rich when available, else aligned text; or Markdown)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import GiB, Metric, MiB


def _run(argv: Sequence[str], cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, cwd=cwd, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def fs_type(path: str | os.PathLike[str]) -> str:
    """The host file-system type of ``path``: ``stat -f -c %T`` and, if it differs, the mount table's name.

    ``stat -f`` names ext4 "ext2/ext3" (one magic number for the family), so the mountinfo type is added.
    """
    p = os.path.realpath(path)
    st = _run(["stat", "-f", "-c", "%T", p]) or "unknown"
    mnt = _mount_fstype(p)
    if mnt and mnt != st:
        return f"{st} (mount: {mnt})"
    return st


def is_tmpfs(path: str | os.PathLike[str]) -> bool:
    p = os.path.realpath(path)
    return "tmpfs" in ((_run(["stat", "-f", "-c", "%T", p]) or "") + " " + (_mount_fstype(p) or ""))


def _mount_fstype(path: str) -> str | None:
    best, best_len = None, -1
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mnt = fields[4].replace("\\040", " ")
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/") or mnt == "/"
                if inside and len(mnt) > best_len:
                    best, best_len = right.split()[0], len(mnt)
    except OSError:
        return None
    return best


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _git_describe(repo: Path) -> str | None:
    if not (repo / ".git").exists():
        return None
    rev = _run(["git", "rev-parse", "--short", "HEAD"], cwd=str(repo))
    if rev is None:
        return None
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=str(repo))
    return rev + ("+dirty" if dirty else "")


def machine_info(scratch: Path) -> dict[str, Any]:
    import simvol

    repo = Path(simvol.__file__).resolve().parent.parent
    mem = _mem_total()
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory": f"{mem / GiB:.1f} GiB" if mem else "unknown",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown",
        "scratch_dir": str(scratch),
        "scratch_fs": fs_type(scratch),
        "simvol_commit": _git_describe(repo),
        "argv": sys.argv[1:],
    }


# --------------------------------------------------------------------------- formatting


def fmt_value(value: float | bool | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "bool" or isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    if unit == "MiB/s":
        return f"{v:,.0f} MiB/s"
    if unit == "files/s":
        return f"{v:,.0f} files/s"
    if unit == "s":
        return f"{v * 1000:,.1f} ms" if v < 1 else f"{v:,.2f} s"
    if unit == "bytes":
        if v < MiB:
            return f"{v / 1024:,.0f} KiB"
        return f"{v / MiB:,.1f} MiB"
    if unit == "KiB":
        return f"{v / 1024:,.1f} MiB"
    if unit == "ratio":
        return f"{v:.0%}"
    return f"{v:g} {unit}".strip()


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    pct = r * 100
    if pct >= 10:
        return f"{pct:,.0f}%"
    return f"{pct:.2g}%"


def verdict(m: Metric) -> str:
    if m.error:
        return "ERROR"
    if m.passed is None:
        return ""
    return "PASS" if m.passed else "FAIL"


HEADERS = ("metric", "simvol", "peer", "ratio", "target", "verdict")


def rows(metrics: Sequence[Metric]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for m in metrics:
        peer = fmt_value(m.peer, m.unit)
        if m.peer is not None and m.peer_name:
            peer = f"{peer} ({m.peer_name})"
        out.append((m.label, fmt_value(m.simvol, m.unit), peer, fmt_ratio(m.ratio), m.target, verdict(m)))
    return out


def notes(metrics: Sequence[Metric]) -> list[str]:
    out = []
    for m in metrics:
        if m.error:
            out.append(f"{m.label}: ERROR: {m.error}")
        elif m.note:
            out.append(f"{m.label}: {m.note}")
    return out


def render_text(metrics: Sequence[Metric]) -> str:
    table = [HEADERS, *rows(metrics)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = []
    for n, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(metrics: Sequence[Metric]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] * len(HEADERS)) + "|"]
    for r in rows(metrics):
        cells = [esc(c) for c in r]
        if cells[5] in ("FAIL", "ERROR"):
            cells[5] = f"**{cells[5]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_report(metrics: Sequence[Metric], machine: dict[str, Any], *, style: str = "auto") -> None:
    """Print the machine, the table and the notes to stdout. ``style``: auto, rich, text or markdown."""
    if style == "auto":
        try:
            import rich  # noqa: F401

            style = "rich"
        except ImportError:
            style = "text"
    header = [
        f"date        {machine['date']}",
        f"machine     {machine['cpus']} CPU ({machine['cpu_model']}), {machine['memory']} RAM",
        f"kernel      {machine['kernel']}; load average at start {machine.get('load_avg', '?')}",
        f"python      {machine['python']}",
        f"scratch     {machine['scratch_dir']} — {machine['scratch_fs']}",
    ]
    if machine.get("simvol_commit"):
        header.append(f"simvol      {machine['simvol_commit']}")
    fails = [m for m in metrics if m.passed is False or m.error]
    summary = (
        f"{len(fails)} of {sum(1 for m in metrics if m.passed is not None or m.error)} targets FAILED: "
        + ", ".join(m.label for m in fails)
        if fails
        else "all targets met"
    )
    if style == "markdown":
        print("```")
        print("\n".join(header))
        print("```\n")
        print(render_markdown(metrics))
        print()
        for n in notes(metrics):
            print(f"- {n}")
        print(f"\n**{summary}**" if fails else f"\n{summary}")
        return
    if style == "rich":
        from rich.console import Console
        from rich.table import Table

        console = Console(highlight=False)
        if not console.is_terminal:  # a pipe or file: no 80-column squeeze
            console = Console(highlight=False, width=max(console.width, 132))
        console.print("\n".join(header))
        table = Table(show_lines=False)
        for h in HEADERS:
            table.add_column(h, justify="right" if h in ("simvol", "peer", "ratio") else "left", overflow="fold")
        for r in rows(metrics):
            v = r[5]
            style_v = {"PASS": "[green]PASS[/]", "FAIL": "[bold red]FAIL[/]", "ERROR": "[bold red]ERROR[/]"}.get(v, v)
            table.add_row(*(_esc_rich(c) for c in r[:5]), style_v)
        console.print(table)
        for n in notes(metrics):
            console.print(f"  • {_esc_rich(n)}")
        console.print(f"[bold red]{_esc_rich(summary)}[/]" if fails else f"[green]{summary}[/]")
        return
    print("\n".join(header))
    print()
    print(render_text(metrics))
    print()
    for n in notes(metrics):
        print(f"  * {n}")
    print(("*** " + summary + " ***") if fails else summary)


def _esc_rich(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def write_json(path: str, metrics: Sequence[Metric], machine: dict[str, Any], config: dict[str, Any]) -> None:
    doc = {
        "machine": machine,
        "config": config,
        "results": [m.to_json() for m in metrics],
        "all_passed": all(m.passed is not False and not m.error for m in metrics),
    }
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)

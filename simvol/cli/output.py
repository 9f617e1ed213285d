"""Rendering results: one JSON object with ``--json``, aligned tables (rich) for people."""

from __future__ import annotations

import datetime
import json
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from ..errors import S_OK, code_message, code_name

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


# rich loads only when something is printed for people: a --json run (scripts, tests) never pays for it.
@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    # Off a terminal rich would squeeze tables into 80 columns; pipes and logs get full lines instead.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if stream.isatty() else 250)


def _table(**options: Any) -> Table:
    from rich.table import Table

    return Table(**options)


def emit_json(hresult: int, data: dict[str, Any] | None = None, message: str | None = None) -> None:
    obj: dict[str, Any] = {"hresult": hresult & 0xFFFFFFFF, "code": code_name(hresult)}
    if message is not None:
        obj["message"] = message
    if data:
        obj.update(data)
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(text: str) -> None:
    _console(False).print(text)


def success(hresult: int = S_OK, text: str | None = None) -> None:
    if text:
        _console(False).print(text)
    if hresult != S_OK:
        _console(False).print(f"[yellow]{code_name(hresult)}[/] (0x{hresult:08X}): {code_message(hresult)}")


def failure(hresult: int, message: str, holders: list[dict[str, Any]] | None = None) -> None:
    _console(True).print(f"[bold red]{code_name(hresult)}[/] (0x{hresult & 0xFFFFFFFF:08X}): {code_message(hresult)}")
    if message and message != code_message(hresult):
        _console(True).print(f"  {message}")
    if holders:
        _console(True).print(holders_table(holders))


def holders_table(holders: list[dict[str, Any]]) -> Table:
    t = _table(title="holders", title_justify="left", box=None, pad_edge=False)
    for col in ("PID", "PROCESS", "KIND", "PATH"):
        t.add_column(col)
    for h in holders:
        t.add_row(str(h.get("pid")), str(h.get("process")), str(h.get("kind")), str(h.get("path")))
    return t


def volumes_table(volumes: list[dict[str, Any]]) -> Table:
    t = _table(box=None, pad_edge=False)
    for col in ("ID", "STATUS", "STATE", "SIZE", "LABEL", "PATHS", "MOUNT"):
        t.add_column(col, no_wrap=col in ("ID", "SIZE"))
    for v in volumes:
        t.add_row(
            v["id"],
            v["status"],
            v["dismount_state"],
            human_size(v["size"]),
            v.get("label") or "",
            " ".join(v["access_paths"]),
            v["mount_path"] or "-",
        )
    return t


def volume_details(v: dict[str, Any]) -> Table:
    t = _table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("id", v["id"]),
        ("guid path", v["guid_path"]),
        ("image", v["image"]),
        ("status", v["status"]),
        ("dismount state", v["dismount_state"]),
        ("size", f"{human_size(v['size'])} ({v['size']} bytes)"),
        ("file system", v["filesystem"]),
        ("label", v.get("label") or ""),
        ("flags", f"0x{v['flags']:08X} " + " ".join(n.replace("VDS_VF_", "") for n in v["flag_names"])),
        ("access paths", "\n".join(v["access_paths"]) or "-"),  # one per line: a folder path may hold spaces
        ("mounted at", v["mount_path"] or "-"),
    ]
    for k, val in rows:
        t.add_row(k, str(val))
    return t


def print_table(table: Table) -> None:
    _console(False).print(table)


def human_size(n: int) -> str:
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def is_terminal() -> bool:
    return sys.stdout.isatty()


def faults_table(faults: list[dict[str, Any]]) -> Table:
    t = _table(box=None, pad_edge=False)
    for col in ("ID", "WHAT", "PATH", "AFTER", "COUNT", "DELAY", "PERSIST", "HITS"):
        t.add_column(col)
    for f in faults:
        if f.get("method"):
            what = f"{f['method']} → {f.get('code')}"
        else:
            what = f"{f['op']} → {f.get('errno') or 'delay'}"
            if f.get("after_bytes") is not None:
                what += f" after {f['after_bytes']} bytes"
        t.add_row(str(f["id"]), what, str(f.get("path") or "*"), str(f.get("after") or 0),
                  str(f.get("count") or "-"), f"{f.get('delay_ms') or 0} ms", "yes" if f.get("persist") else "no",
                  str(f.get("hits", 0)))
    return t


def fault_log_table(entries: list[dict[str, Any]]) -> Table:
    t = _table(box=None, pad_edge=False)
    for col in ("TIME", "PID", "PROCESS", "OP", "PATH", "RESULT"):
        t.add_column(col)
    for e in entries:
        when = datetime.datetime.fromtimestamp(e.get("time") or 0).strftime("%H:%M:%S.%f")[:-3]
        t.add_row(when, str(e.get("pid") or "-"), str(e.get("process") or "-"), str(e.get("op")),
                  str(e.get("path") or "-"), str(e.get("errno") or e.get("code") or "delay"))
    return t

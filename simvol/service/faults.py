"""Faults a test arms on one volume: ``Volume.faults`` (and ``simvol fault``).

Two kinds. **File-system faults** hit the real system calls of every process through the mount — an errno, a delay,
a volume that fills up — and are injected by the volume's daemon (``simvol/mount/faults.py`` says exactly how they
match and count). **Method faults** make the next call(s) of a VDS method (``Dismount``, ``Mount``, ``Format``, …)
return a given HRESULT and change nothing; the service injects them. Both live in the root's registry (with their
counters) and in the daemon, never in the image, and end at the volume's next dismount unless ``persist``. Every
hit is logged: :meth:`Faults.log`.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import HRESULTS, InvalidArgumentError, code_name, vds_error
from ..mount import FS_OPS, FsFault, errno_value, process_name
from ..types import VolumeState
from .host import Host

__all__ = ["METHODS", "Fault", "Faults", "parse_hresult"]

#: The VDS methods of the COM facade a method fault can name (case-insensitive).
METHODS = (
    "GetProperties", "GetFileSystemProperties", "Format", "FormatEx", "FormatEx2", "AddAccessPath",
    "QueryAccessPaths", "QueryReparsePoints", "DeleteAccessPath", "Mount", "Dismount", "SetFileSystemFlags",
    "ClearFileSystemFlags", "GetFileSystemTypeName", "QueryFileSystemFormatSupport", "QueryVolumeGuidPathnames",
    "OfflineVolume",
)
_METHOD_BY_KEY = {m.lower(): m for m in METHODS}


def parse_hresult(code: str | int) -> int:
    """``VDS_E_DEVICE_IN_USE``, ``0x80042413`` or ``2147755027`` → the HRESULT (a failure code)."""
    value: int | None = None
    if isinstance(code, int) and not isinstance(code, bool):
        value = code & 0xFFFFFFFF
    elif isinstance(code, str):
        text = code.strip()
        if text.upper() in {k.upper() for k in HRESULTS}:
            value = next(v for k, v in HRESULTS.items() if k.upper() == text.upper())
        else:
            try:
                value = int(text, 0) & 0xFFFFFFFF
            except ValueError:
                value = None
    if value is None:
        raise InvalidArgumentError(message=f"{code!r} is not an HRESULT (a name like VDS_E_DEVICE_IN_USE, or a number)")
    if not value & 0x80000000:
        raise InvalidArgumentError(message=f"{code_name(value)} (0x{value:08X}) is a success code; inject failures")
    return value


class Fault(dict[str, Any]):
    """One armed fault, as JSON shows it (``id``, ``op`` or ``method``, …, ``hits``). As a context manager it is
    cleared when the block ends."""

    def __init__(self, faults: Faults, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._faults = faults

    @property
    def id(self) -> int:
        return int(self["id"])

    def clear(self) -> None:
        self._faults.clear(self.id)

    def __enter__(self) -> Fault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


class Faults:
    """The faults of one volume (``volume.faults``)."""

    def __init__(self, host: Host, volume_id: str) -> None:
        self._host = host
        self._vid = volume_id

    def add(
        self,
        op: str,
        errno: str | int | None = None,
        *,
        path: str | None = None,
        after: int = 0,
        count: int | None = None,
        delay_ms: int = 0,
        after_bytes: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
        persist: bool = False,
    ) -> Fault:
        """Arm a file-system fault: matching calls of ``op`` (``write``, ``read``, … or ``any``) on ``path`` (a
        glob, case-insensitive) fail with ``errno`` and/or wait ``delay_ms``; ``after`` calls pass first; ``count``
        hits at most. ``after_bytes`` (op ``write``): the volume fills up after that many more bytes (ENOSPC by
        default; ``statfs``/``df`` agree). ``probability`` and ``seed``: hit at random, repeatably."""
        if after_bytes is not None and errno is None:
            errno = "ENOSPC"
        try:
            spec = FsFault(0, op.lower() if isinstance(op, str) else op, errno_value(errno) if errno else 0, path,
                           after, count, delay_ms, after_bytes, probability, seed, persist)
        except (ValueError, TypeError) as e:
            raise InvalidArgumentError(message=f"bad fault: {e} (operations: {', '.join(FS_OPS)})") from None
        self._host.row(self._vid)  # ObjectNotFoundError for a volume that went
        with self._host.lock(self._vid):
            fid = self._host.registry.add_fault(self._vid, "fs", spec.to_dict(), persist)
            try:
                self._host.push_faults(self._vid)
            except BaseException:
                self._host.registry.remove_faults(self._vid, fid)  # refused: nothing stays armed
                raise
        return Fault(self, self._shown(fid))

    def add_method(self, method: str, hresult: str | int, *, count: int = 1, holder: int | None = None,
                   persist: bool = False) -> Fault:
        """Make the next ``count`` calls of VDS method ``method`` return ``hresult`` and change nothing. A
        VDS_E_DEVICE_IN_USE may name ``holder`` (a pid) so the holder list is plausible."""
        name = _METHOD_BY_KEY.get(str(method).lower())
        if name is None:
            raise InvalidArgumentError(message=f"unknown VDS method {method!r}; one of: {', '.join(METHODS)}")
        code = parse_hresult(hresult)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidArgumentError(message=f"count must be >= 1, got {count!r}")
        if holder is not None and (not isinstance(holder, int) or isinstance(holder, bool) or holder <= 0):
            raise InvalidArgumentError(message=f"holder must be a process id, got {holder!r}")
        self._host.row(self._vid)
        spec = {"method": name, "hresult": code, "code": code_name(code), "count": count, "holder": holder,
                "persist": persist, "hits": 0}
        with self._host.lock(self._vid):
            fid = self._host.registry.add_fault(self._vid, "method", spec, persist)
        return Fault(self, self._shown(fid))

    def list(self) -> list[Fault]:
        """Every armed fault with its hits so far."""
        live = {d.get("id"): d for d in self._host.mounter.faults(self._vid) or []}
        out = []
        for row in self._host.registry.faults(self._vid):
            spec = dict(row.spec)
            if row.kind == "fs" and row.id in live:
                spec.update({k: live[row.id][k] for k in ("hits", "seen", "written") if k in live[row.id]})
            out.append(Fault(self, _public(spec, row.kind)))
        return out

    def _shown(self, fid: int) -> dict[str, Any]:
        return next(f for f in self.list() if f.id == fid)

    def clear(self, fault_id: int | None = None) -> int:
        """Remove one fault (``fault_id``) or all of them; how many went. Clearing all also empties the log."""
        with self._host.lock(self._vid):
            if fault_id is not None and not any(r.id == fault_id for r in self._host.registry.faults(self._vid)):
                raise vds_error(HRESULTS["VDS_E_OBJECT_NOT_FOUND"], f"no fault {fault_id} on this volume")
            n = self._host.registry.remove_faults(self._vid, fault_id)
            self._host.push_faults(self._vid)  # nothing serves the volume: nothing to disarm
            if fault_id is None:
                self._host.mounter.fault_log(self._vid).clear()
        return n

    def surprise_removal(self) -> None:
        """The disk is pulled: the volume's daemon dies at once (no flush, no clean marker), every open handle fails
        (ENOTCONN), and the volume is FAILED (status and health) until :meth:`Volume.mount`, which repairs the image
        as after a crash and mounts it. Its faults that do not persist go with it."""
        with self._host.lock(self._vid):
            state = self._host.reconcile(self._vid)
            if state not in (VolumeState.MOUNTED, VolumeState.TEMPORARILY_DISMOUNTED):
                raise vds_error(HRESULTS["VDS_E_VOLUME_NOT_ONLINE"], f"nothing to pull: the volume is {state.name}")
            self._host.registry.set_removed(self._vid, True)  # first: no reconcile may bring it back meanwhile
            self._host.registry.remove_faults(self._vid, transient_only=True)
            self._host.mounter.pull(self._vid)
            self._host.mounter.fault_log(self._vid).record({
                "time": time.time(), "pid": None, "process": "", "op": "surprise-removal", "path": None,
                "errno": None, "fault": None,
            })

    def log(self) -> builtins.list[dict[str, Any]]:
        """Every hit so far: time, pid, process, op (or method), path, errno (or code), fault id."""
        return self._host.mounter.fault_log(self._vid).read()

    @contextmanager
    def armed(self, op: str, errno: str | int | None = None, **options: Any) -> Iterator[Fault]:
        """``with vol.faults.armed("write", "EIO", path="*.log") as f: ...`` — cleared when the block ends."""
        with self.add(op, errno, **options) as fault:
            yield fault

    def check_method(self, method: str) -> None:
        """Called first by every VDS method: an armed method fault for it fires (raises) and is counted."""
        rows = [r for r in self._host.registry.faults(self._vid, "method") if r.spec.get("method") == method
                and int(r.spec.get("hits", 0)) < int(r.spec.get("count", 1))]
        if not rows:
            return
        row = rows[0]
        spec = {**row.spec, "hits": int(row.spec.get("hits", 0)) + 1}
        self._host.registry.update_fault(row.id, spec)
        holder = spec.get("holder")
        holders = [{"pid": holder, "process": process_name(holder), "path": self._host.mounter.mountpoint(self._vid),
                    "kind": "file"}] if holder else []
        self._host.mounter.fault_log(self._vid).record({
            "time": time.time(), "pid": None, "process": "", "op": method, "path": None, "errno": None,
            "code": spec["code"], "fault": row.id,
        })
        raise vds_error(int(spec["hresult"]), f"injected fault {row.id}: {method} returns {spec['code']}",
                        holders=holders)


def _public(spec: dict[str, Any], kind: str) -> dict[str, Any]:
    """The fault as JSON shows it."""
    if kind == "method":
        return {k: spec.get(k) for k in ("id", "method", "code", "hresult", "count", "holder", "persist", "hits")}
    keys = ("id", "op", "errno", "path", "after", "count", "delay_ms", "after_bytes", "probability", "seed",
            "persist", "hits")
    return {k: spec.get(k) for k in keys}

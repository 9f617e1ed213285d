"""Processes in tests: waiting for a condition, stopping a helper process, reading a line with a time limit,
finding the mount daemons of a root and their ntfs-3g. ``read_line``, ``daemons_of`` and ``ntfs3g_servers`` are the
campaigns' own (``tools/campaign/common.py``), shared rather than copied."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from tools.campaign.common import daemons_of, ntfs3g_servers, read_line

__all__ = ["daemons_of", "ntfs3g_servers", "read_line", "stop_process", "wait_until"]


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if it still runs and reap it (its pipes closed); never raises."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``pred()`` until it is truthy or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)

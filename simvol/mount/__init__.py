"""The mount layer: one FUSE daemon per mounted volume, its handle table, control socket and dismounts.

The service layer uses ``start_daemon`` / ``DaemonClient`` / ``cleanup_stale``; the daemon itself is
``python -m simvol.mount.daemon``. Importing this package does not load libfuse; ``simvol.mount.ops`` does.
"""

from .control import ControlError
from .holders import Holder, scan
from .launcher import (
    DaemonClient,
    DaemonInfo,
    MountError,
    cleanup_stale,
    daemon_alive,
    read_pidfile,
    remove_pidfile,
    run_files,
    start_daemon,
    wait_gone,
)
from .mountinfo import MountEntry, find_mount, read_mounts, simvol_mounts

__all__ = [
    "ControlError",
    "DaemonClient",
    "DaemonInfo",
    "Holder",
    "MountEntry",
    "MountError",
    "cleanup_stale",
    "daemon_alive",
    "find_mount",
    "read_mounts",
    "read_pidfile",
    "remove_pidfile",
    "run_files",
    "scan",
    "simvol_mounts",
    "start_daemon",
    "wait_gone",
]

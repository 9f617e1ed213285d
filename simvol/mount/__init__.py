"""The mount layer: one FUSE daemon per mounted volume, its handle table, control socket and dismounts.

The service layer talks to one :class:`Mounter` (``DaemonMounter``, or ``InProcessMounter`` in unit tests) and
to nothing else here. The lower-level pieces (``start_daemon``, ``DaemonClient``, the mount table) are exported
for tools and tests that watch daemons directly. The daemon itself is ``python -m simvol.mount.daemon``.
Importing this package does not load libfuse; ``simvol.mount.ops`` does.
"""

from .. import _log  # noqa: F401  (the library's NullHandler)
from .control import ControlError
from .faults import FS_OPS, FaultLog, FsFault, errno_value
from .holders import Holder, process_name, scan
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
from .mounter import Access, DaemonMounter, FsStatus, Mounter, Presence
from .mountinfo import MountEntry, find_mount, read_mounts, simvol_mounts

__all__ = [
    "FS_OPS",
    "Access",
    "ControlError",
    "DaemonClient",
    "DaemonInfo",
    "DaemonMounter",
    "FaultLog",
    "FsFault",
    "FsStatus",
    "Holder",
    "MountEntry",
    "MountError",
    "Mounter",
    "Presence",
    "cleanup_stale",
    "daemon_alive",
    "errno_value",
    "find_mount",
    "read_mounts",
    "process_name",
    "read_pidfile",
    "remove_pidfile",
    "run_files",
    "scan",
    "simvol_mounts",
    "start_daemon",
    "wait_gone",
]

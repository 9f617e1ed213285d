"""What answers at a temporarily dismounted volume's mount point: no file system, no image lock, a trigger.

Windows mounts a temporarily dismounted volume again "as soon as an attempt is made to access it"
(FSCTL_DISMOUNT_VOLUME). After a temporary dismount the daemon closes the image (flushed, clean, unlocked), ends
its FUSE session — so every old handle is stale for good and the kernel's pages are gone — and mounts a new
session at the same mount point whose operations are an :class:`ArmedOps`. It answers ``stat`` of the mount
point itself and ``access`` on it (so ``ls -l ROOT/volumes``, holder scans and a ``cd`` cost nothing and mount
nothing); the first request for anything else — a name inside, a directory listing, ``statfs`` — calls
``activate``, which opens the image, repairs it if a crash left it dirty, and returns the real
:class:`VolumeOps`. From then on the session's requests go straight to those (FastFUSE looks its operations up on
every call; the daemon replaces the object), so the mounted volume's hot paths pay nothing for this.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable
from typing import Any

from ._fuselib import current_fuse, mfusepy
from .ops import CALLBACKS, configure

log = logging.getLogger(__name__)

_NS = 1_000_000_000
# Every callback VolumeOps implements must exist here too: libfuse registers a session's callbacks once, at its
# start, from the operations object it is given.
_ANSWERED_HERE = frozenset({"stat_fields", "access", "init_with_config", "destroy"})


class ArmedOps(mfusepy.Operations):  # type: ignore[misc]  # mfusepy ships no type information
    use_ns = True

    def __init__(self, activate: Callable[[ArmedOps], Any], *, uid: int, gid: int) -> None:
        self._activate = activate
        now = time.time_ns()
        s, ns = divmod(now, _NS)
        # The root as a dismounted volume shows it: an empty directory of the owner, inode 1 as when mounted.
        self._root = (1, stat.S_IFDIR | 0o755, 2, 0, uid, gid, 0, 4096, s, ns, s, ns, s, ns)
        self._fuse_ptr: int | None = None
        self._config: Any = None

    # ----------------------------------------------------------------- for the daemon

    @property
    def session(self) -> tuple[int | None, Any]:
        """(``struct fuse *``, ``struct fuse_config *``) of the armed session, for :meth:`VolumeOps.bind`."""
        return self._fuse_ptr, self._config

    # ----------------------------------------------------------------- callbacks answered without the volume

    def init_with_config(self, conn: Any, config: Any) -> None:
        configure(conn, config)
        self._fuse_ptr = current_fuse()
        self._config = config

    def stat_fields(self, path: str | None, fh: int | None) -> tuple[int, ...] | int:
        if path == "/" and not fh:
            return self._root
        fields: tuple[int, ...] | int = self._activate(self).stat_fields(path, fh)
        return fields

    def access(self, path: str, amode: int) -> int:
        if path == "/":
            return 0  # cd into the mount point is not yet a use of the volume; what comes next is
        return int(self._activate(self).access(path, amode))

    def destroy(self, path: str) -> None:
        log.debug("destroy (armed)")


def _forwarder(name: str) -> Callable[..., Any]:
    def forward(self: ArmedOps, *args: Any) -> Any:
        return getattr(self._activate(self), name)(*args)

    forward.__name__ = name
    forward.__doc__ = f"Activate the volume, then answer ``{name}`` as VolumeOps does."
    return forward


for _name in sorted(set(CALLBACKS) - _ANSWERED_HERE):
    setattr(ArmedOps, _name, _forwarder(_name))
del _name

__all__ = ["ArmedOps"]


"""A :class:`Mounter` without FUSE or processes, for unit tests of everything above the mount layer.

A "mounted" volume is its image opened (and locked) in this process with the file system on it, exactly as a
daemon holds it: dirty markers set while mounted, checked and repaired first if it was left dirty, flushed and
marked clean by a dismount. Nothing appears at the mount point. Tests stand in for the rest: :meth:`hold` makes a
process "hold" the volume, :meth:`crash` makes its daemon "die" and leave the image dirty, and :meth:`access` is a
process's first access through an armed mount point (a temporarily dismounted volume).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import AccessDeniedError, SimvolError, UnsupportedFileSystemError, VolumeInUseError
from ..fat import FatFileSystem, check, is_dirty
from ..image import Image
from ..image.ntfs import is_ntfs
from .faults import FaultLog
from .launcher import MountError
from .mounter import Access, FsStatus, Mounter, Presence, VolumeLock

log = logging.getLogger(__name__)


@dataclass
class _Mounted:
    image: Image
    fs: FatFileSystem
    holders: list[dict[str, Any]] = field(default_factory=list)


class InProcessMounter(Mounter):
    """Volumes "mounted" inside this process; see the module docstring."""

    def __init__(self, volumes_dir: str) -> None:
        self.volumes_dir = volumes_dir
        self._mounted: dict[str, _Mounted] = {}
        self._broken: set[str] = set()
        self._armed: dict[str, tuple[str, bool]] = {}  # volume id → (image, readonly)
        self._locked: dict[str, int] = {}  # volume id → the pid holding its lock
        self.repaired: dict[str, list[dict[str, Any]]] = {}  # what the last start of each volume repaired
        self._faults: dict[str, list[dict[str, Any]]] = {}  # armed fault specs (nothing here injects them)
        self._logs: dict[str, FaultLog] = {}

    def __repr__(self) -> str:
        return f"InProcessMounter({self.volumes_dir!r})"

    def mountpoint(self, volume_id: str) -> str:
        return os.path.join(self.volumes_dir, "{" + volume_id.upper() + "}")

    # ----------------------------------------------------------------- the interface

    def presence(self, volume_id: str) -> Presence:
        if volume_id in self._broken:
            return Presence.BROKEN
        if volume_id in self._armed:
            return Presence.ARMED
        return Presence.LIVE if volume_id in self._mounted else Presence.ABSENT

    def running(self, volume_id: str) -> bool:
        return volume_id in self._mounted

    def arm(self, volume_id: str, image: str, *, readonly: bool, access: Access | None = None) -> None:
        if volume_id in self._mounted or volume_id in self._broken or volume_id in self._armed:
            raise MountError(f"{self.mountpoint(volume_id)} is already mounted", image)
        self._armed[volume_id] = (image, readonly)

    def start(self, volume_id: str, image: str, *, readonly: bool, access: Access | None = None) -> None:
        self._armed.pop(volume_id, None)  # an armed mount point activates
        if volume_id in self._mounted or volume_id in self._broken:
            raise MountError(f"{self.mountpoint(volume_id)} is already mounted", image)
        try:
            im = Image.open(image, writable=not readonly)
        except SimvolError as e:
            raise MountError(f"cannot mount {image}: {e}", image) from e
        if is_ntfs(os.pread(im.fd, 512, 0)):
            im.close()
            raise MountError(f"cannot mount {image} in process: NTFS volumes are served by ntfs-3g (the daemon)",
                             image)
        try:
            if not readonly and is_dirty(im.fd, im.fs_size):
                self.repaired[volume_id] = [p.as_dict() for p in check(im.fd, im.fs_size, repair=True)]
            else:
                self.repaired[volume_id] = []
            fs = FatFileSystem(im.fd, im.fs_size, writable=not readonly)
        except (SimvolError, OSError) as e:
            im.close()
            raise MountError(f"cannot mount {image}: {e}", image) from e
        self._mounted[volume_id] = _Mounted(im, fs)

    def stop(self, volume_id: str, *, force: bool, paths: Iterable[str] = (), rearm: bool = False) -> None:
        m = self._mounted.get(volume_id)
        if m is None:
            self._broken.discard(volume_id)
            if not rearm:
                self._armed.pop(volume_id, None)
            return
        if m.holders and not force:
            raise VolumeInUseError.of(list(m.holders))
        image, readonly = m.image.path, not m.image.writable
        self._close(volume_id, clean=True)
        if rearm:
            self._armed[volume_id] = (image, readonly)

    def clear(self, volume_id: str) -> None:
        self._broken.discard(volume_id)
        self._armed.pop(volume_id, None)
        if volume_id in self._mounted:
            self._close(volume_id, clean=True)  # as a forced dismount: flushed and marked clean

    def fs_status(self, volume_id: str) -> FsStatus | None:
        m = self._mounted.get(volume_id)
        if m is None:
            return None
        st = m.fs.statfs()
        return FsStatus(st.total_clusters, st.free_clusters, st.cluster_size, m.fs.label)

    def set_compression(self, volume_id: str, value: bool) -> None:
        raise UnsupportedFileSystemError("FAT32 cannot be compressed")  # only FAT32 runs in process

    def flush(self, volume_id: str) -> None:
        m = self._mounted.get(volume_id)
        if m is not None:
            m.fs.sync()

    def holders(self, volume_id: str, paths: Iterable[str] = ()) -> list[dict[str, Any]]:
        m = self._mounted.get(volume_id)
        return list(m.holders) if m is not None else []

    def lock(self, volume_id: str, pid: int, paths: Iterable[str] = ()) -> VolumeLock:
        if volume_id in self._locked:
            raise AccessDeniedError(message=f"the volume is locked by pid {self._locked[volume_id]}")
        m = self._mounted.get(volume_id)
        if m is not None and m.holders:  # the caller's own open files too, as FSCTL_LOCK_VOLUME
            raise VolumeInUseError.of(list(m.holders))
        self._locked[volume_id] = pid

        def unlock() -> None:
            self._locked.pop(volume_id, None)

        return VolumeLock(release=unlock)

    def locked_by(self, volume_id: str) -> int | None:
        return self._locked.get(volume_id)

    def set_faults(self, volume_id: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        if self.presence(volume_id) not in (Presence.LIVE, Presence.ARMED):
            return None
        self._faults[volume_id] = [dict(s) for s in specs]
        return self._faults[volume_id]

    def faults(self, volume_id: str) -> list[dict[str, Any]] | None:
        if self.presence(volume_id) not in (Presence.LIVE, Presence.ARMED):
            return None
        return self._faults.get(volume_id, [])

    def fault_log(self, volume_id: str) -> FaultLog:
        return self._logs.setdefault(volume_id, FaultLog(None))

    def pull(self, volume_id: str) -> None:
        if volume_id in self._mounted:
            self.crash(volume_id)
        elif volume_id in self._armed:
            self._armed.pop(volume_id)
            self._broken.add(volume_id)

    def sweep(self, keep: Iterable[str]) -> list[str]:
        kept = set(keep)
        gone = [v for v in [*self._mounted, *self._broken, *self._armed] if v not in kept]
        for v in gone:
            self.clear(v)
        return [self.mountpoint(v) for v in gone]

    # ----------------------------------------------------------------- what tests stand in for

    def hold(self, volume_id: str, pid: int, process: str = "holder", path: str = "", kind: str = "file") -> None:
        """Make a process "hold" the mounted volume until :meth:`release`."""
        m = self._mounted[volume_id]
        m.holders.append({"pid": pid, "process": process, "path": path or self.mountpoint(volume_id), "kind": kind})

    def access(self, volume_id: str, pid: int = 0) -> None:
        """Process ``pid``'s first access through the armed mount point: the volume is mounted again — unless
        another process holds the volume's lock (PermissionError, as EACCES)."""
        holder = self._locked.get(volume_id)
        if holder is not None and holder != pid:
            raise PermissionError(13, "the volume is locked", self.mountpoint(volume_id))
        image, readonly = self._armed[volume_id]
        self.start(volume_id, image, readonly=readonly)

    def release(self, volume_id: str) -> None:
        m = self._mounted.get(volume_id)
        if m is not None:
            m.holders.clear()

    def crash(self, volume_id: str) -> None:
        """The daemon "dies": the image is closed as it stands (dirty), and a stale mount stays behind."""
        m = self._mounted.pop(volume_id)
        m.image.close()
        self._broken.add(volume_id)

    def close(self) -> None:
        """Dismount everything (end of a test)."""
        for v in list(self._mounted):
            self._close(v, clean=True)
        self._broken.clear()
        self._armed.clear()

    def _close(self, volume_id: str, *, clean: bool) -> None:
        m = self._mounted.pop(volume_id)
        try:
            m.fs.close(clean=clean)
        finally:
            m.image.close()

"""The mount boundary: the one object through which the service starts, queries and stops volume mounts.

:class:`Mounter` is the interface; :class:`DaemonMounter` is the real one (one FUSE daemon process per mounted
volume, found again through its pid record in ``run/``), and :class:`simvol.mount.inprocess.InProcessMounter` a
stand-in without FUSE or processes that lets the service's state machine run in unit tests. The service knows
nothing of pid files, sockets, ``/proc`` or stale FUSE mounts; that is all here.
"""

from __future__ import annotations

import abc
import enum
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import AccessDeniedError, InternalError, SimvolError, UnsupportedFileSystemError, VolumeInUseError
from . import holders as holders_mod
from .control import ControlError
from .faults import FaultLog
from .launcher import (
    DaemonClient,
    DaemonInfo,
    MountError,
    cleanup_stale,
    daemon_alive,
    fault_log_path,
    read_pidfile,
    remove_pidfile,
    start_daemon,
    wait_gone,
)
from .mountinfo import find_mount, simvol_mounts

log = logging.getLogger(__name__)

# How long a holder query waits for RELEASEs still on their way (the daemon's own safe dismount waits as long).
LATE_RELEASE_WAIT = 0.5


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use a mount: ``allow_other`` lets every user in (the kernel then checks mode bits against the
    owner; needs root or ``user_allow_other`` in /etc/fuse.conf); ``owner`` (uid, gid) is who the files belong to —
    a harness running as root can serve a volume to an agent running as a service user."""

    allow_other: bool = False
    owner: tuple[int, int] | None = None


class Presence(enum.Enum):
    """What is there for a volume, whatever the service believes."""

    LIVE = "live"  # a running daemon serving its mount
    ARMED = "armed"  # a mount point that mounts the volume on its first access (a temporary dismount)
    ABSENT = "absent"  # no daemon, no mount
    BROKEN = "broken"  # one without the other: a dead daemon's stale mount, or a daemon whose mount went away


@dataclass(frozen=True, slots=True)
class FsStatus:
    """The mounted file system's figures, as ``GetFileSystemProperties`` reports them."""

    total_clusters: int
    free_clusters: int
    cluster_size: int
    label: str
    compressed: bool = False  # NTFS: the root directory is compressed (VDS_FPF_COMPRESSED)


class Mounter(abc.ABC):
    """Everything about mounts the service needs, keyed by volume id (a lower-case GUID string).

    The caller serializes calls for one volume (the service holds the volume's lock).
    """

    @abc.abstractmethod
    def mountpoint(self, volume_id: str) -> str:
        """Where the volume's files appear while it is mounted (``ROOT/volumes/{GUID}``)."""

    @abc.abstractmethod
    def presence(self, volume_id: str) -> Presence:
        """What is there now: checked against the processes and the kernel's mount table, not remembered."""

    @abc.abstractmethod
    def start(self, volume_id: str, image: str, *, readonly: bool, access: Access | None = None) -> None:
        """Mount ``image`` (activate it, when armed); returns once its files are reachable. Raises MountError.

        ``access``: who may enter the mount and whose files they are (default: the mounter's)."""

    @abc.abstractmethod
    def arm(self, volume_id: str, image: str, *, readonly: bool, access: Access | None = None) -> None:
        """Make the mount point answer without the volume: the first access by any process mounts it."""

    @abc.abstractmethod
    def stop(self, volume_id: str, *, force: bool, paths: Iterable[str] = (), rearm: bool = False) -> None:
        """Dismount: flush, mark clean, close the image; returns once it is closed.

        Without ``force`` raises :class:`VolumeInUseError` naming the holders (also those holding ``paths``,
        the volume's access paths); with it, every open handle becomes stale. With ``rearm`` the mount point is
        armed afterwards (a temporary dismount); without, nothing answers there. Absent: only clears leftovers.
        """

    @abc.abstractmethod
    def clear(self, volume_id: str) -> None:
        """Whatever is there goes, without asking anyone: the daemon (forced, then killed), a stale mount."""

    @abc.abstractmethod
    def running(self, volume_id: str) -> bool:
        """Something serves the volume's files (not merely armed; its mount may be broken: :meth:`presence`)."""

    @abc.abstractmethod
    def fs_status(self, volume_id: str) -> FsStatus | None:
        """The mounted file system's figures; None when nothing serves the volume."""

    @abc.abstractmethod
    def set_compression(self, volume_id: str, value: bool) -> None:
        """NTFS: compress the root directory (new files and folders inherit it) or stop; raises
        UnsupportedFileSystemError when the mounted file system cannot."""

    @abc.abstractmethod
    def flush(self, volume_id: str) -> None:
        """Write everything the mounted file system holds back to the image (no-op when nothing serves it)."""

    @abc.abstractmethod
    def holders(self, volume_id: str, paths: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Who holds the mounted volume (pid, process, path, kind); [] when nothing serves it."""

    @abc.abstractmethod
    def lock(self, volume_id: str, pid: int, paths: Iterable[str] = ()) -> VolumeLock:
        """The volume lock for ``pid`` and its descendants: every other process's access fails with EACCES, and a
        dismounted volume does not remount for them. Raises VolumeInUseError when another process holds the
        volume, AccessDeniedError when it is locked already. It lasts until released or until this process ends."""

    @abc.abstractmethod
    def set_faults(self, volume_id: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Arm exactly these file-system faults on the volume's mount (faults.py); None when nothing serves it."""

    @abc.abstractmethod
    def faults(self, volume_id: str) -> list[dict[str, Any]] | None:
        """The faults armed on the volume's mount, with their counters; None when nothing serves it."""

    @abc.abstractmethod
    def fault_log(self, volume_id: str) -> FaultLog:
        """The volume's log of fault hits."""

    @abc.abstractmethod
    def pull(self, volume_id: str) -> None:
        """A surprise removal: whatever serves the volume dies at once, as if the disk was pulled; its open handles
        fail from now on and its mount stays behind, stale, until cleared."""

    @abc.abstractmethod
    def sweep(self, keep: Iterable[str]) -> list[str]:
        """Remove mounts of volumes not in ``keep`` (ids); returns the mount points removed."""


class VolumeLock:
    """A held volume lock; :meth:`release` (or the end of the process) ends it."""

    def __init__(self, conn: socket.socket | None = None, release: Callable[[], None] | None = None) -> None:
        self._conn = conn
        self._release = release

    @property
    def held(self) -> bool:
        return self._conn is not None or self._release is not None

    def release(self) -> None:
        conn, self._conn = self._conn, None
        release, self._release = self._release, None
        if conn is not None:
            conn.close()  # the daemon sees the end of the connection and unlocks
        if release is not None:
            release()

    def __enter__(self) -> VolumeLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class DaemonMounter(Mounter):
    """One FUSE daemon process per mounted volume, mounted at ``volumes_dir/{GUID}``, run files in ``run_dir``."""

    def __init__(
        self,
        volumes_dir: str,
        run_dir: str,
        *,
        allow_other: bool = False,
        lock_path: Callable[[str], str] | None = None,
    ) -> None:
        self.volumes_dir = volumes_dir
        self.run_dir = run_dir
        self.allow_other = allow_other
        # The file of the lock the caller holds for every operation on a volume: a first access through an armed
        # mount point takes it too, so it never races a Dismount, Mount or Format.
        self.lock_path = lock_path

    def __repr__(self) -> str:
        return f"DaemonMounter({self.volumes_dir!r}, {self.run_dir!r})"

    def mountpoint(self, volume_id: str) -> str:
        return os.path.join(self.volumes_dir, "{" + volume_id.upper() + "}")

    def daemon(self, volume_id: str) -> DaemonInfo | None:
        """The live daemon serving the volume, if any (for tools and tests that must watch the process)."""
        info = read_pidfile(self.run_dir, volume_id)
        if info is not None and daemon_alive(info):
            return info
        return None

    def _client(self, volume_id: str) -> DaemonClient | None:
        info = self.daemon(volume_id)
        return DaemonClient(info.socket) if info else None

    def presence(self, volume_id: str) -> Presence:
        return self._probe(volume_id)[0]

    def _probe(self, volume_id: str) -> tuple[Presence, DaemonInfo | None]:
        """What is there, and the live daemon if any: one look at the pid record and the mount table."""
        info = self.daemon(volume_id)
        entry = find_mount(self.mountpoint(volume_id))
        if info is not None and entry is not None and entry.is_simvol:
            return (Presence.ARMED if entry.mounted_armed and self._armed(info) else Presence.LIVE), info
        if info is None and entry is None:
            return Presence.ABSENT, None
        return Presence.BROKEN, info

    @staticmethod
    def _armed(info: DaemonInfo) -> bool:
        """Still armed (not yet activated by an access): only the daemon knows."""
        try:
            return bool(DaemonClient(info.socket).status().get("armed"))
        except ControlError:
            return False

    def running(self, volume_id: str) -> bool:
        presence, info = self._probe(volume_id)
        return info is not None and presence is not Presence.ARMED

    def start(self, volume_id: str, image: str, *, readonly: bool, access: Access | None = None) -> None:
        presence, info = self._probe(volume_id)
        if presence is Presence.ARMED and info is not None:
            try:
                DaemonClient(info.socket).activate()
                return
            except ControlError as e:
                raise MountError(f"cannot mount {image}: {e}", image) from e
        self._start(volume_id, image, readonly=readonly, armed=False, access=access)

    def arm(self, volume_id: str, image: str, *, readonly: bool, access: Access | None = None) -> None:
        self._start(volume_id, image, readonly=readonly, armed=True, access=access)

    def _start(self, volume_id: str, image: str, *, readonly: bool, armed: bool, access: Access | None) -> None:
        access = access or Access(allow_other=self.allow_other)
        start_daemon(
            image,
            self.mountpoint(volume_id),
            self.run_dir,
            volume_id,
            readonly=readonly,
            allow_other=access.allow_other,
            owner=access.owner,
            armed=armed,
            lock_file=self.lock_path(volume_id) if self.lock_path is not None else None,
            fault_log=fault_log_path(self.run_dir, volume_id),
        )

    def stop(self, volume_id: str, *, force: bool, paths: Iterable[str] = (), rearm: bool = False) -> None:
        info = self.daemon(volume_id)
        if info is None:
            self._remove_leftovers(volume_id)
            return
        try:
            answer = DaemonClient(info.socket).dismount(force=force, paths=list(paths), rearm=rearm)
        except ControlError as e:
            if daemon_alive(info):
                raise InternalError(message=f"the volume daemon does not answer: {e}") from e
            answer = {"ok": True}
        if not answer.get("ok"):
            if answer.get("in_use"):
                raise VolumeInUseError.of(answer["holders"])
            raise InternalError(message=f"dismount failed: {answer.get('error')}")
        if answer.get("armed"):
            return  # the daemon stays: its mount point now mounts the volume on the next access
        if rearm:  # the daemon died meanwhile: clear what it left; the next reconcile arms the mount point
            self.clear(volume_id)
            return
        if not wait_gone(info.pid, info.create_time, 10):
            log.warning("daemon %d did not exit after the dismount", info.pid)
        self._remove_leftovers(volume_id)

    def set_faults(self, volume_id: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        client = self._client(volume_id)
        if client is None:
            return None
        try:
            answer = client.request({"op": "faults", "set": specs})
        except ControlError as e:
            raise InternalError(message=f"cannot arm the faults: {e}") from e
        if not answer.get("ok"):
            if answer.get("in_use"):  # a native NTFS volume switches to simvol's session only while idle
                raise VolumeInUseError.of(answer["holders"])
            raise InternalError(message=f"cannot arm the faults: {answer.get('error')}")
        armed: list[dict[str, Any]] = answer["faults"]
        return armed

    def faults(self, volume_id: str) -> list[dict[str, Any]] | None:
        client = self._client(volume_id)
        if client is None:
            return None
        try:
            return client.faults()
        except ControlError:
            return None

    def fault_log(self, volume_id: str) -> FaultLog:
        return FaultLog(fault_log_path(self.run_dir, volume_id))

    def pull(self, volume_id: str) -> None:
        info = self.daemon(volume_id)
        if info is None:
            return
        try:
            os.kill(info.pid, 9)
        except OSError:
            pass
        wait_gone(info.pid, info.create_time, 5)
        # As when a disk is pulled, its drive goes too: the dead connection's mount is taken down here (lazily:
        # handles opened before keep failing with ENOTCONN) rather than found "stale" by the next reconcile.
        cleanup_stale(self.mountpoint(volume_id))
        remove_pidfile(self.run_dir, volume_id)
        _rmdir_quietly(self.mountpoint(volume_id))

    def clear(self, volume_id: str) -> None:
        info = self.daemon(volume_id)
        if info is not None:  # a daemon without its mount: stop it before anyone else takes the image
            try:
                DaemonClient(info.socket).dismount(force=True, timeout=20)
            except ControlError:
                pass
            if not wait_gone(info.pid, info.create_time, 5):
                try:
                    os.kill(info.pid, 9)
                except OSError:
                    pass
                wait_gone(info.pid, info.create_time, 5)
        self._remove_leftovers(volume_id)

    def _remove_leftovers(self, volume_id: str) -> None:
        """With no daemon left: a stale mount, the pid record and the empty mount point go."""
        mp = self.mountpoint(volume_id)
        if find_mount(mp) is not None:
            log.warning("cleaning up the stale mount of %s", mp)
            cleanup_stale(mp)
        remove_pidfile(self.run_dir, volume_id)
        _rmdir_quietly(mp)

    def fs_status(self, volume_id: str) -> FsStatus | None:
        client = self._client(volume_id)
        if client is None:
            return None
        st = client.status()
        if st.get("armed"):
            return None
        return FsStatus(
            int(st["total_clusters"]), int(st["free_clusters"]), int(st["cluster_size"]), st.get("label", ""),
            bool(st.get("compressed", False)),
        )

    def set_compression(self, volume_id: str, value: bool) -> None:
        client = self._client(volume_id)
        if client is None:
            raise InternalError(message="the volume is not mounted")
        try:
            answer = client.request({"op": "compression", "set": value})
        except ControlError as e:
            raise InternalError(message=f"the volume daemon does not answer: {e}") from e
        if not answer.get("ok"):
            raise UnsupportedFileSystemError(str(answer.get("error")))

    def flush(self, volume_id: str) -> None:
        client = self._client(volume_id)
        if client is not None:
            client.flush()

    def holders(self, volume_id: str, paths: Iterable[str] = ()) -> list[dict[str, Any]]:
        # Without waiting for late RELEASEs, a process that closed a file and dismounted at once was told it held
        # the volume itself (about one time in three).
        client = self._client(volume_id)
        if client is None:
            return []
        extra = list(paths)
        deadline = time.monotonic() + LATE_RELEASE_WAIT
        while True:
            try:
                found = client.holders(extra)
            except SimvolError as e:
                log.warning("holder query failed: %s", e)
                return []
            if time.monotonic() >= deadline or not found or any(holders_mod.settled(h) for h in found):
                return found
            time.sleep(0.01)

    def lock(self, volume_id: str, pid: int, paths: Iterable[str] = ()) -> VolumeLock:
        info = self.daemon(volume_id)
        if info is None:
            return VolumeLock(release=lambda: None)  # nothing serves the volume: nobody else can reach it
        try:
            answer, conn = DaemonClient(info.socket).lock(pid, list(paths))
        except ControlError as e:
            raise InternalError(message=f"the volume daemon does not answer: {e}") from e
        if conn is None:
            if answer.get("in_use"):
                raise VolumeInUseError.of(answer["holders"])
            if answer.get("locked"):
                raise AccessDeniedError(message=str(answer.get("error")))
            raise InternalError(message=f"lock failed: {answer.get('error')}")
        return VolumeLock(conn)

    def sweep(self, keep: Iterable[str]) -> list[str]:
        known = {self.mountpoint(v) for v in keep}
        removed = []
        for entry in simvol_mounts(self.volumes_dir):
            if entry.mountpoint not in known:
                log.warning("removing a simvol mount no volume claims: %s", entry.mountpoint)
                try:
                    cleanup_stale(entry.mountpoint)
                    removed.append(entry.mountpoint)
                except SimvolError as e:
                    log.warning("%s", e)
        return removed


def _rmdir_quietly(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass

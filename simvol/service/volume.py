"""``Volume``: the ``IVdsVolume``/``IVdsVolumeMF(2,3)`` methods with docs/windows-semantics.md's checks, in its order.

Each method takes the volume's lock (shared by every process on the root), reconciles, runs the checks top to
bottom (the first that fires decides and changes nothing), then acts. Failures raise :class:`VdsError`.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..errors import (
    HRESULTS,
    S_OK,
    ImageError,
    SimvolError,
    UnsupportedFileSystemError,
    VdsError,
    VolumeInUseError,
    vds_error,
)
from ..image import Image, ImageMetadata
from ..image.filesystems import FAT32, NTFS, FileSystem, of_image
from ..image.ntfs import is_native
from ..interrupts import shielded
from ..types import (
    CRITICAL_ROLES,
    FileSystemFormatSupportFlag,
    FileSystemFormatSupportProp,
    FileSystemProp,
    FileSystemPropFlag,
    FileSystemType,
    ReparsePointProp,
    TransitionState,
    VolumeFlag,
    VolumeProp,
    VolumeState,
    VolumeType,
)
from .faults import Faults
from .formats import check_fits, format_driver, requested_driver
from .host import Host
from .paths import AccessPath, Shape, guid_path, inside, parse_access_path, shown
from .registry import PathRow

log = logging.getLogger(__name__)

_E = HRESULTS
_ALWAYS = VolumeFlag.FAT_NOT_SUPPORTED | VolumeFlag.REFS_NOT_SUPPORTED  # simvol formats FAT32 and NTFS only
M = VolumeState.MOUNTED
T = VolumeState.TEMPORARILY_DISMOUNTED
P = VolumeState.PERMANENTLY_DISMOUNTED
FAILED = VolumeState.FAILED


def _fail(code: str, message: str | None = None, **kw: Any) -> VdsError:
    return vds_error(_E[code], message, **kw)



_P = ParamSpec("_P")
_R = TypeVar("_R")


def _vds(method: str) -> Callable[[Callable[Concatenate[Volume, _P], _R]], Callable[Concatenate[Volume, _P], _R]]:
    """Mark a method as the VDS method ``method``: an armed method fault for it fires first and changes nothing
    (service/faults.py). Calls one VDS method makes to another (OfflineVolume's Dismount), and a new volume's first
    letter (``_initial``), are not calls of the caller's."""

    def deco(fn: Callable[Concatenate[Volume, _P], _R]) -> Callable[Concatenate[Volume, _P], _R]:
        @functools.wraps(fn)
        def wrapper(self: Volume, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            if self._vds_depth == 0 and not kwargs.get("_initial"):
                self.faults.check_method(method)
            self._vds_depth += 1
            try:
                return fn(self, *args, **kwargs)
            finally:
                self._vds_depth -= 1

        return wrapper

    return deco

class Volume:
    """One attached volume. Cheap to create; every call reads the current state."""

    def __init__(self, host: Host, volume_id: str) -> None:
        self._host = host
        self.id = uuid.UUID(volume_id)
        self._vid = str(self.id)
        self._vds_depth = 0  # inside a VDS method (see _vds)

    @property
    def faults(self) -> Faults:
        """The faults armed on this volume: file-system faults its mount injects into every process's calls,
        method faults its VDS methods return, surprise removal (docs/faults.md)."""
        return Faults(self._host, self._vid)

    def __repr__(self) -> str:
        return f"<Volume {{{self._vid.upper()}}}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Volume) and other.id == self.id and other._host is self._host

    def __hash__(self) -> int:
        return hash(self.id)

    # ================================================================= helpers

    def _lock(self) -> AbstractContextManager[None]:
        return self._host.lock(self._vid)

    def _enter(self) -> VolumeState:
        """Reconcile and return the state; the caller holds the lock."""
        return self._host.reconcile(self._vid)

    def _meta(self) -> ImageMetadata:
        meta = self._host.metadata(self._host.row(self._vid))
        if meta is None:
            raise _fail("VDS_E_OBJECT_STATUS_FAILED", f"cannot read the image {self.image}")
        return meta

    @property
    def image(self) -> str:
        return self._host.row(self._vid).image

    @property
    def mount_path(self) -> str:
        """The mount point, ``ROOT/volumes/{GUID}`` (present only while mounted)."""
        return self._host.mounter.mountpoint(self._vid)

    def _paths(self) -> list[PathRow]:
        return self._host.registry.paths(self._vid)

    def _host_paths(self) -> list[str]:
        return [p.host_path for p in self._paths()]

    def _refuse_if_in_use(self) -> None:
        """VDS_E_DEVICE_IN_USE, naming the holders, when anything holds the mounted volume."""
        holders = self._host.mounter.holders(self._vid, self._host_paths())
        if holders:
            raise VolumeInUseError.of(holders)

    def _set_image_flags(self, *, set: int = 0, clear: int = 0) -> None:
        try:
            with Image.open(self.image) as im:
                im.update_flags(set=set, clear=clear)
        except ImageError as e:
            raise _fail("VDS_E_OBJECT_STATUS_FAILED", f"cannot update {self.image}: {e}") from e

    def _mount_now(self) -> None:
        self._host.mount(self._vid)

    def _reinsert(self) -> None:
        """Mount a volume a surprise removal took away; its daemon checks and repairs the dirty image first."""
        reg = self._host.registry
        self._host.mounter.clear(self._vid)  # the stale mount the dead daemon left
        reg.set_removed(self._vid, False)
        try:
            self._host.mount(self._vid)
        except BaseException:
            reg.set_removed(self._vid, True)
            raise

    # ================================================================= queries

    @property
    def state(self) -> VolumeState:
        """Mounted (``"M"``), temporarily (``"T"``) or permanently (``"P"``) dismounted, or ``"FAILED"``."""
        with self._lock():
            return self._enter()

    def _flags(self, state: VolumeState, meta: ImageMetadata | None) -> VolumeFlag:
        flags = VolumeFlag(meta.flags) | _ALWAYS if meta is not None else _ALWAYS
        if meta is not None:
            size = meta.fs_size
            if not FAT32.windows_formattable(size):
                flags |= VolumeFlag.FAT32_NOT_SUPPORTED
            if not NTFS.windows_formattable(size):
                flags |= VolumeFlag.NTFS_NOT_SUPPORTED
            if state.dismounted and self._fs().dirty(self.image, size):
                flags |= VolumeFlag.DIRTY
        return flags

    @_vds("GetProperties")
    def get_properties(self) -> VolumeProp:
        """``IVdsVolume::GetProperties``: S_OK in every state; never remounts."""
        with self._lock():
            return self._properties(self._enter())

    def _properties(self, state: VolumeState) -> VolumeProp:
        row = self._host.row(self._vid)
        meta = self._host.metadata(row)
        return VolumeProp(
            id=self.id,
            type=VolumeType.SIMPLE,
            status=state.status,
            health=state.health,
            transition_state=TransitionState.STABLE,
            size=meta.fs_size if meta else 0,
            flags=self._flags(state, meta),
            recommended_file_system_type=FileSystemType[self._fs().name],
            name=f"\\\\?\\GLOBALROOT\\Device\\HarddiskVolume{row.number}",
        )

    @_vds("QueryAccessPaths")
    def query_access_paths(self) -> list[str]:
        """Drive letter first (``E:\\``), then folders in the order added; S_OK in every state."""
        with self._lock():
            self._enter()
            return [p.display for p in self._paths()]

    @_vds("QueryReparsePoints")
    def query_reparse_points(self) -> list[ReparsePointProp]:
        """The mount folders on this volume (an NTFS volume can hold them; FAT32's list is always empty): the
        volume mounted there and the folder's path from this volume's root, ``\\mnt\\data`` (§5.6)."""
        with self._lock():
            self._enter()
            mp = self._host.mounter.mountpoint(self._vid)
            return [
                ReparsePointProp(uuid.UUID(p.volume_id), p.host_path[len(mp):].replace("/", "\\"))
                for p in self._host.registry.paths()
                if p.kind == "folder" and p.host_path.startswith(mp + "/")
            ]

    @_vds("QueryVolumeGuidPathnames")
    def query_volume_guid_pathnames(self) -> list[str]:
        with self._lock():
            self._enter()
            return [] if self._meta().flags & VolumeFlag.HIDDEN else [guid_path(self.id)]

    @_vds("GetFileSystemTypeName")
    def get_file_system_type_name(self) -> str:
        with self._lock():
            if self._enter() is P:
                raise _fail("VDS_E_VOLUME_NOT_ONLINE")
            return self._fs().name

    def _fs(self) -> FileSystem:
        """The driver of the file system the image holds (FAT32 when it cannot be read)."""
        return of_image(self.image)

    @_vds("QueryFileSystemFormatSupport")
    def query_file_system_format_support(self) -> list[FileSystemFormatSupportProp]:
        with self._lock():
            self._enter()
            size, current = self._meta().fs_size, self._fs()
            # Every file system simvol formats that fits the size; the volume's own is the default and recommended
            # one (docs/windows-semantics.md §5.9).
            out = []
            ordered: list[FileSystem] = [current, *(f for f in (FAT32, NTFS) if f is not current)]
            for fs in ordered:
                default, allowed = fs.format_support(size)
                if not allowed and fs is not current:
                    continue  # another file system is listed only where it fits; the volume's own always is
                flags = FileSystemFormatSupportFlag(0)
                if fs is current:
                    flags = FileSystemFormatSupportFlag.DEFAULT | FileSystemFormatSupportFlag.RECOMMENDED
                out.append(FileSystemFormatSupportProp(flags, 0, default, allowed, fs.name))
            return out

    @_vds("GetFileSystemProperties")
    def get_file_system_properties(self) -> FileSystemProp:
        """P → VDS_E_VOLUME_NOT_ONLINE; T → remount first (docs/windows-semantics.md §5.2)."""
        with self._lock():
            state = self._enter()
            if state is P:
                raise _fail("VDS_E_VOLUME_NOT_ONLINE")
            if state is T:
                self._mount_now()
            return self._fs_prop()

    def _fs_prop(self) -> FileSystemProp:
        st = self._host.mounter.fs_status(self._vid)
        if st is None:
            raise _fail("VDS_E_OBJECT_STATUS_FAILED", "the volume is not mounted")
        return FileSystemProp(
            type=FileSystemType[self._fs().name],
            volume_id=self.id,
            flags=FileSystemPropFlag.COMPRESSED if st.compressed else FileSystemPropFlag(0),
            total_allocation_units=st.total_clusters,
            available_allocation_units=st.free_clusters,
            allocation_unit_size=st.cluster_size,
            label=st.label,
        )

    @property
    def label(self) -> str:
        """The volume label, read from the mounted file system or the image."""
        try:
            st = self._host.mounter.fs_status(self._vid)
        except SimvolError:
            st = None
        return st.label if st is not None else self._fs().label(self.image)

    def holders(self) -> list[dict[str, Any]]:
        """Processes holding the mounted volume: pid, process, path, kind (file, dir, cwd, root, mmap)."""
        with self._lock():
            if self._enter() is not M:
                return []
            return self._host.mounter.holders(self._vid, self._host_paths())

    # ================================================================= Mount / Dismount / Offline

    @_vds("Mount")
    def mount(self) -> int:
        """``IVdsVolumeMF::Mount`` (docs/windows-semantics.md §5.8)."""
        with self._lock():
            state = self._enter()
            if state is M:
                if not self._host.mounter.running(self._vid):
                    self._host.start(self._host.row(self._vid))
                return S_OK
            if state is FAILED:
                row = self._host.row(self._vid)
                if row.removed and self._host.metadata(row) is not None:
                    self._reinsert()  # after a surprise removal: repaired as after a crash, mounted
                    return S_OK
                raise _fail("VDS_E_OBJECT_STATUS_FAILED", f"cannot read the image {self.image}")
            if state is P:
                self._set_image_flags(clear=VolumeFlag.PERMANENTLY_DISMOUNTED)
                try:
                    self._mount_now()
                except VdsError:
                    self._set_image_flags(set=VolumeFlag.PERMANENTLY_DISMOUNTED)
                    raise
                return S_OK
            self._mount_now()
            return S_OK

    @_vds("Dismount")
    def dismount(self, force: bool = False, permanent: bool = False) -> int:
        """``IVdsVolumeMF::Dismount(bForce, bPermanent)`` with the checks of docs/windows-semantics.md §5.10, in
        order."""
        with self._lock():
            state = self._enter()
            meta = self._meta()
            flags = meta.flags
            if state is M and not force:
                self._refuse_if_in_use()
            if flags & CRITICAL_ROLES:
                raise _fail("VDS_E_NOT_SUPPORTED", "a system, boot or pagefile volume cannot be dismounted")
            if state is T:
                raise _fail("VDS_E_VOLUME_TEMPORARILY_DISMOUNTED")
            if permanent and not flags & VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED:
                raise _fail("VDS_E_NOT_SUPPORTED", "this volume does not support permanent dismount")
            if permanent and self._paths():
                raise _fail("VDS_E_VOLUME_HAS_PATH")
            if not permanent and state is P:
                raise _fail("VDS_E_VOLUME_PERMANENTLY_DISMOUNTED")
            if permanent and state is P:
                return S_OK
            if state is FAILED:
                raise _fail("VDS_E_OBJECT_STATUS_FAILED")
            # A temporary dismount leaves the mount point armed: the next access by any process mounts it again.
            self._host.stop(self._vid, force=force, paths=self._host_paths(), rearm=not permanent)
            self._host.registry.set_temporarily_dismounted(self._vid, True)
            if permanent:
                self._set_image_flags(set=VolumeFlag.PERMANENTLY_DISMOUNTED)
            return S_OK

    @_vds("OfflineVolume")
    def offline(self) -> int:
        """``IVdsVolumeMF3::OfflineVolume``: P → S_OK; from T, Dismount(TRUE, TRUE)'s checks without its
        "temporarily dismounted" one (MS-VDS: the server must offline the volume); otherwise Dismount(TRUE, TRUE)."""
        with self._lock():
            state = self._enter()
            if state is P:
                return S_OK
            if state is not T:
                return self.dismount(force=True, permanent=True)
            flags = self._meta().flags
            if flags & CRITICAL_ROLES:
                raise _fail("VDS_E_NOT_SUPPORTED", "a system, boot or pagefile volume cannot be dismounted")
            if not flags & VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED:
                raise _fail("VDS_E_NOT_SUPPORTED", "this volume does not support permanent dismount")
            if self._paths():
                raise _fail("VDS_E_VOLUME_HAS_PATH")
            self._host.stop(self._vid, force=True)  # the armed mount point goes: P never remounts on access
            self._set_image_flags(set=VolumeFlag.PERMANENTLY_DISMOUNTED)
            return S_OK

    @contextmanager
    def lock(self, dismount: bool = False, timeout: float = 0) -> Iterator[Volume]:
        """The volume lock (FSCTL_LOCK_VOLUME), as a context manager: while it is held only this process and its
        children may use the volume; every other process's access fails with EACCES (ERROR_ACCESS_DENIED), and a
        dismounted volume does not remount for them.

        Refused with VDS_E_DEVICE_IN_USE (naming the holders) while another process holds the volume, with
        E_ACCESSDENIED while another lock is held, with VDS_E_VOLUME_NOT_ONLINE for a permanently dismounted
        volume. ``dismount``: dismount the volume inside the lock (temporarily: the image is closed, clean and free
        for raw reads; it stays dismounted after the lock and remounts on the next access). ``timeout`` (seconds,
        0 = none): the lock ends then even if the block has not. It always ends with the block or with this process.
        """
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
            raise _fail("E_INVALIDARG", f"the timeout must be a number of seconds >= 0, got {timeout!r}")
        with self._lock():
            state = self._enter()
            if state is P:
                raise _fail("VDS_E_VOLUME_NOT_ONLINE")
            if state is FAILED:
                raise _fail("VDS_E_OBJECT_STATUS_FAILED", f"cannot read the image {self.image}")
            held = self._host.mounter.lock(self._vid, os.getpid(), self._host_paths())
            try:
                if dismount and state is M:
                    self._host.stop(self._vid, force=False, paths=self._host_paths(), rearm=True)
                    self._host.registry.set_temporarily_dismounted(self._vid, True)
            except BaseException:
                held.release()
                raise
        timer = threading.Timer(timeout, held.release) if timeout else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            yield self
        finally:
            if timer is not None:
                timer.cancel()
            held.release()

    # ================================================================= access paths

    def _check_path_shape(self, ap: AccessPath) -> None:
        if ap.shape is Shape.INVALID:
            raise _fail("E_INVALIDARG", "the path is empty or longer than 259 characters")
        if ap.shape is Shape.GUID:
            raise _fail("VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED")

    def _folder_host(self, ap: AccessPath) -> str:
        """Host location of a folder path; raises per rows 9 and 10. A folder on another simvol volume is allowed
        where that volume is NTFS (mount folders are NTFS reparse points on Windows; FAT32 cannot hold them)."""
        root = self._host.root
        if ap.shape is Shape.HOST:
            host = ap.display
        elif ap.letter == "C":
            host = os.path.join(root.system_drive, *ap.parts)
        else:
            prow = self._host.registry.path_by_key(f"{ap.letter}:")
            if prow is None:
                raise _fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", f"no drive {ap.letter}:")
            self._check_folder_volume(prow.volume_id)
            return os.path.join(self._host.mounter.mountpoint(prow.volume_id), *ap.parts)
        real_parent = os.path.realpath(os.path.dirname(host))
        on = _volume_of(real_parent, root.volumes)
        if on is None and inside(os.path.realpath(host), root.volumes) and not os.path.islink(host):
            on = _volume_of(os.path.realpath(host), root.volumes) or ""
        if on is not None:
            self._check_folder_volume(on)
            return host
        if ap.shape is Shape.FOLDER and not inside(real_parent, os.path.realpath(root.system_drive)):
            # A symlink on the simulated C: leads out of it: the folder is not on C:, and nothing outside the
            # root may be replaced through it (row 10).
            raise _fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", f"{ap.raw} leaves drive C: through a symlink")
        return host

    def _check_folder_volume(self, volume_id: str) -> None:
        """A mount folder may live on volume ``volume_id`` (an NTFS volume other than this one), else row 9."""
        row = self._host.registry.volume(volume_id.lower()) if volume_id else None
        if row is None or of_image(row.image) is not NTFS:
            raise _fail("VDS_E_NOT_SUPPORTED", "FAT32 volumes cannot hold mount folders (NTFS volumes can)")
        if volume_id.lower() == self._vid:
            raise _fail("VDS_E_NOT_SUPPORTED", "a volume cannot be mounted on a folder of itself")

    @_vds("AddAccessPath")
    def add_access_path(self, path: str, *, _initial: bool = False) -> int:
        """``IVdsVolumeMF::AddAccessPath`` (docs/windows-semantics.md §5.4): a drive letter or an empty-directory
        mount folder.

        ``_initial`` (``create_volume`` only): the letter a role volume is created with, as Windows setup gives
        the system volume C: — row 6 guards later changes, not the first assignment.
        """
        ap = parse_access_path(path)
        self._check_path_shape(ap)
        with self._lock(), self._host.lock("paths"):
            state = self._enter()
            meta = self._meta()
            if meta.flags & VolumeFlag.HIDDEN:
                raise _fail("VDS_E_VOLUME_HIDDEN")
            if ap.shape is Shape.BAD_LETTER:
                raise _fail("VDS_E_INVALID_DRIVE_LETTER", f"{shown(path)} is not a valid drive letter")
            if ap.shape is Shape.BAD_SHAPE:
                raise _fail("E_INVALIDARG", f"{shown(path)} is not an absolute path")
            reg = self._host.registry
            root = self._host.root
            if ap.shape is Shape.LETTER:
                if meta.flags & CRITICAL_ROLES and not _initial:
                    raise _fail("VDS_E_OPERATION_DENIED", "drive letters of system/boot/pagefile volumes cannot change")
                if any(p.kind == "letter" for p in self._paths()):
                    raise _fail("VDS_E_OBJECT_EXISTS", "the volume already has a drive letter")
                if ap.letter == "C" or reg.path_by_key(ap.key) is not None:
                    raise _fail("VDS_E_DRIVE_LETTER_NOT_FREE", f"{ap.letter}: is taken")
                host = root.letter_path(ap.letter or "")
                if os.path.lexists(host):
                    if not (os.path.islink(host) and reg.path_by_host(host) is None):
                        raise _fail("VDS_E_DRIVE_LETTER_NOT_FREE", f"{ap.letter}: is taken ({host} exists)")
                    os.unlink(host)  # a leftover link no volume claims
                target = os.path.join("..", "volumes", "{" + self._vid.upper() + "}")
                dir_mode = 0o755
            else:
                host = self._folder_host(ap)
                if ap.shape is Shape.FOLDER and reg.path_by_key(ap.key) is not None:
                    # row 11 before 10: Windows-form paths compare case-insensitively (§6), the host does not
                    raise _fail("HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)", f"{path} is already a mount folder")
                try:
                    st = os.lstat(host)
                except (FileNotFoundError, NotADirectoryError):
                    if ap.shape is not Shape.FOLDER:
                        raise _fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", f"{path} does not exist") from None
                    where = (f" (drive C: is the host directory {root.system_drive}, so the folder would be {host})"
                             if ap.letter == "C" else "")
                    raise _fail(  # say where C: is on this host, and how to make the folder
                        "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)",
                        f"{ap.display.rstrip(chr(92))} does not exist{where}; make it first: "
                        f"simvol mkdir '{ap.display.rstrip(chr(92))}'",
                    ) from None
                except OSError as e:  # ENAMETOOLONG, ELOOP: no such folder can exist (row 10)
                    raise _fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", f"{path}: {e.strerror}") from None
                if stat.S_ISLNK(st.st_mode) and (
                    reg.path_by_host(host) is not None or inside(os.readlink(host), root.volumes)
                ):
                    raise _fail("HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)", f"{path} is already a mount folder")
                if not stat.S_ISDIR(st.st_mode):
                    raise _fail("HRESULT_FROM_WIN32(ERROR_DIRECTORY)", f"{path} is not a directory")
                if os.listdir(host):
                    raise _fail("HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)", f"{path} is not empty")
                target = self._host.mounter.mountpoint(self._vid)
                dir_mode = stat.S_IMODE(st.st_mode)
            linked = False
            try:
                with reg.transaction() as db:
                    reg.add_path(db, self._vid, ap.shape.value if ap.shape is Shape.LETTER else "folder",
                                 ap.display, ap.key, host, dir_mode)
                    if ap.shape is Shape.LETTER:
                        reg.remember_letter(db, self._vid, ap.letter or "")
                    if ap.shape is not Shape.LETTER:
                        os.rmdir(host)  # only an empty directory; never follows a symlink
                    try:
                        os.symlink(target, host)
                        linked = True
                    except OSError:
                        if ap.shape is not Shape.LETTER:
                            _make_dir(host, dir_mode)
                        raise
            except BaseException:
                if linked:  # the commit failed (a full disk): no link may outlive its registry row
                    _unlink_link(host)
                    if ap.shape is not Shape.LETTER:
                        _make_dir(host, dir_mode)
                raise
            if state is P:
                try:
                    self._set_image_flags(clear=VolumeFlag.PERMANENTLY_DISMOUNTED)
                    self._mount_now()
                except VdsError as e:
                    self._remove_path(ap.key)  # first: restoring the flag fails too while the image is locked
                    try:
                        self._set_image_flags(set=VolumeFlag.PERMANENTLY_DISMOUNTED)
                    except VdsError as e2:
                        log.warning("cannot restore the permanent-dismount flag: %s", e2)
                    raise _fail("VDS_E_OBJECT_STATUS_FAILED", str(e)) from e
            return S_OK

    def _remove_path(self, key: str, *, forget: bool = False) -> None:
        """Remove an access path; ``forget``: a letter is no longer the one the volume gets when it comes back
        (DeleteAccessPath; a detach keeps it, as Windows' MountedDevices keeps a removed disk's letter)."""
        reg = self._host.registry
        row = reg.path_by_key(key)
        if row is None:
            return
        removed: str | None = None  # the link's target, once the link is gone
        try:
            with reg.transaction() as db:
                reg.remove_path(db, key)
                if forget and row.kind == "letter":
                    reg.forget_letter(db, self._vid)
                try:
                    if os.path.islink(row.host_path):
                        target = os.readlink(row.host_path)
                        os.unlink(row.host_path)
                        removed = target
                except FileNotFoundError:
                    pass
                if row.kind == "folder" and not os.path.lexists(row.host_path) \
                        and os.path.isdir(os.path.dirname(row.host_path)):  # its volume may be gone or offline
                    _make_dir(row.host_path, row.dir_mode)
        except BaseException:
            if removed is not None:  # the registry keeps the path: so must the host
                try:
                    if row.kind == "folder" and os.path.isdir(row.host_path) and not os.path.islink(row.host_path):
                        os.rmdir(row.host_path)
                    os.symlink(removed, row.host_path)
                except OSError as e:
                    log.warning("cannot restore the access path %s: %s", row.host_path, e)
            raise

    @_vds("DeleteAccessPath")
    def delete_access_path(self, path: str, force: bool = False) -> int:
        """``IVdsVolumeMF::DeleteAccessPath`` (docs/windows-semantics.md §5.7). A folder becomes an empty directory
        again."""
        ap = parse_access_path(path)
        self._check_path_shape(ap)
        with self._lock(), self._host.lock("paths"):
            state = self._enter()
            mine = {p.key: p for p in self._paths()}
            if ap.shape not in (Shape.LETTER, Shape.FOLDER, Shape.HOST) or ap.key not in mine:
                raise _fail("VDS_E_PATH_NOT_FOUND", f"{path} is not an access path of this volume")
            if ap.shape is Shape.LETTER:
                if self._meta().flags & CRITICAL_ROLES:
                    raise _fail("VDS_E_OPERATION_DENIED", "drive letters of system/boot/pagefile volumes cannot change")
                if state is M and not force:
                    self._refuse_if_in_use()
            self._remove_path(ap.key, forget=True)
            return S_OK

    # ================================================================= format and file-system flags

    @_vds("Format")
    def format(
        self,
        fs_type: int | str = FileSystemType.FAT32,
        label: str | None = None,
        unit: int = 0,
        force: bool = False,
        quick: bool = True,
        compress: bool = False,
    ) -> int:
        """``IVdsVolumeMF::Format``: S_OK, the volume formatted and mounted; checks in MS-VDS's order — exclusive
        access first (in use without ``force``), then the volume's state, role and write protection, compression
        (FAT32 has none: refused before anything changes, as Windows 7 and later do), the file-system type, the
        label, the size and the allocation unit."""
        with self._lock():
            state = self._enter()
            meta = self._meta()
            if state is M and not force:
                self._refuse_if_in_use()
            if state is P:
                raise _fail("VDS_E_VOLUME_NOT_ONLINE")
            if meta.flags & CRITICAL_ROLES:
                raise _fail("VDS_E_OPERATION_DENIED", "system, boot and pagefile volumes cannot be formatted")
            if meta.flags & VolumeFlag.READONLY:
                raise _fail("VDS_E_MEDIA_WRITE_PROTECTED")
            if compress and not (requested_driver(fs_type) is NTFS
                                 and NTFS.can_compress(unit or NTFS.format_support(meta.fs_size)[0])):
                # Before anything changes: only NTFS compresses, and only with clusters of at most 4 KiB.
                raise _fail("VDS_E_COMPRESSION_NOT_SUPPORTED",
                            "only NTFS with clusters of at most 4 KiB can be compressed")
            fs = format_driver(fs_type, label, unit)
            size = meta.fs_size
            check_fits(fs, size, label, unit, windows_limits=True)
            if state is M:
                self._host.stop(self._vid, force=force, paths=self._host_paths())
            try:
                if fs is NTFS:
                    NTFS.format(self.image, unit=unit, label=label, windows_limits=True, quick=quick,
                                compress=compress)
                else:
                    fs.format(self.image, unit=unit, label=label, windows_limits=True, quick=quick)
            except (SimvolError, OSError) as e:  # a FormatError too, though check_fits ruled it out
                raise _fail("VDS_E_IO_ERROR", f"formatting failed: {e}") from e
            self._mount_now()
            return S_OK

    def _fs_flags(self, flags: int, setting: bool) -> int:
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise _fail("E_INVALIDARG", f"file-system flags must be an integer, got {flags!r}")
        with self._lock():
            state = self._enter()
            if self._meta().flags & VolumeFlag.HIDDEN:
                raise _fail("VDS_E_INVALID_OPERATION")
            if int(flags) & ~int(FileSystemPropFlag.COMPRESSED):
                raise _fail("VDS_E_INVALID_FS_FLAG")
            if state is P:
                raise _fail("VDS_E_VOLUME_NOT_ONLINE")
            if state is T:
                self._mount_now()
            if flags & FileSystemPropFlag.COMPRESSED:
                fs = self._fs()
                if fs is not NTFS:
                    if setting:
                        raise _fail("VDS_E_NOT_SUPPORTED", f"{fs.name} cannot be compressed")
                    return S_OK
                st = self._host.mounter.fs_status(self._vid)
                if setting and st is not None and not NTFS.can_compress(st.cluster_size):
                    raise _fail("VDS_E_NOT_SUPPORTED", "NTFS compression needs clusters of at most 4 KiB")
                self._host.mounter.set_compression(self._vid, setting)
            return S_OK

    @_vds("SetFileSystemFlags")
    def set_file_system_flags(self, flags: int) -> int:
        return self._fs_flags(flags, True)

    @_vds("ClearFileSystemFlags")
    def clear_file_system_flags(self, flags: int) -> int:
        return self._fs_flags(flags, False)

    # ================================================================= check

    def check(self, repair: bool = False, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Check the file system (``fsck``-like); ``repair`` needs the volume dismounted (T or P).

        On a mounted volume the daemon flushes first and the image is read as it stands; the dirty
        marker a mounted volume always carries is not reported.
        """
        with self._lock():
            state = self._enter()
            if state is M:
                if repair:
                    raise _fail("VDS_E_DEVICE_IN_USE", "dismount the volume before repairing it")
                self._host.mounter.flush(self._vid)
                try:
                    return self._fs().check_live(self.image, self._meta().fs_size, progress=progress)
                except UnsupportedFileSystemError as e:
                    raise _fail("VDS_E_OBJECT_STATUS_FAILED", str(e)) from e
            try:
                return self._fs().check(self.image, repair=repair, progress=progress)
            except UnsupportedFileSystemError as e:
                raise _fail("VDS_E_OBJECT_STATUS_FAILED", str(e)) from e
            except ImageError as e:
                raise _fail("VDS_E_OBJECT_STATUS_FAILED", f"cannot open {self.image}: {e}") from e

    # ================================================================= life cycle

    @shielded()
    def detach(self, force: bool = False) -> None:
        """Dismount (forced with ``force``), remove every access path and forget the volume; the image stays."""
        with self._lock(), self._host.lock("paths"):
            state = self._enter()
            if state in (M, T):  # T: its armed mount point
                self._host.stop(self._vid, force=force, paths=self._host_paths())
            for p in self._paths():
                self._remove_path(p.key)
            self._host.registry.remove_volume(self._vid)

    @shielded()
    def delete(self, force: bool = False) -> None:
        """``detach`` and remove the image file."""
        image = self.image
        self.detach(force=force)
        try:
            if stat.S_ISREG(os.lstat(image).st_mode):
                os.unlink(image)
        except FileNotFoundError:
            pass

    # ================================================================= JSON view

    def to_dict(self) -> dict[str, Any]:
        """The VOLUME object of the CLI's ``--json`` output (docs/cli.md)."""
        with self._lock():  # one reconcile for the whole view
            state = self._enter()
            prop = self._properties(state)
            meta = self._host.metadata(self._host.row(self._vid))
            fs = self._fs()
            paths = [p.display for p in self._paths()]
            row = self._host.row(self._vid)
        mounted = state is M and self._host.mounter.running(self._vid)
        return {
            "id": "{" + self._vid.upper() + "}",
            "guid_path": guid_path(self.id),
            "image": self.image,
            "status": prop.status.name,
            "flags": int(prop.flags),
            "flag_names": [f"VDS_VF_{f.name}" for f in VolumeFlag if f in prop.flags and f.name],
            "size": prop.size,
            "filesystem": fs.name,
            "semantics": "native" if fs is NTFS and meta is not None and is_native(meta) else "windows",
            "label": self.label if state is not FAILED else "",
            "access_paths": paths,
            "mounted": mounted,
            "mount_path": self.mount_path if mounted else None,
            "dismount_state": state.dismount,
            "allow_other": self._host.access(row).allow_other,
            "owner": row.owner,
        }


def _volume_of(path: str, volumes: str) -> str | None:
    """The volume id whose mount point ``path`` is inside (``volumes/{GUID}/…``), or None."""
    if not inside(path, volumes) or path == volumes:
        return None
    first = os.path.relpath(path, volumes).split(os.sep, 1)[0]
    return first.strip("{}").lower() if first.startswith("{") else ""


def _make_dir(path: str, mode: int) -> None:
    """Create an empty directory with exactly ``mode`` (umask aside), never chmodding through a symlink."""
    os.mkdir(path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _unlink_link(path: str) -> None:
    try:
        if os.path.islink(path):
            os.unlink(path)
    except OSError as e:
        log.warning("cannot remove %s: %s", path, e)

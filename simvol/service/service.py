"""``VolumeService``: one simulated host (a root) and its volumes.

Every entry point reconciles with reality first (DESIGN §6): a dead daemon's stale mount is lazily
unmounted and the volume remounted (the daemon repairs the dirty image first); a host reboot (a new kernel
boot id) forgets temporary dismounts, as Windows does.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import uuid
from collections.abc import Iterable

from ..errors import (
    HRESULTS,
    FormatError,
    ImageError,
    ImageSizeError,
    InternalError,
    InvalidArgumentError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectStatusFailedError,
    SimvolError,
    VdsError,
    VolumeInUseError,
    vds_error,
)
from ..fat import format_volume
from ..fat.layout import normalize_label, plan_format
from ..image import Image, create_image, read_metadata
from ..image.metadata import ImageMetadata
from ..mount import (
    ControlError,
    DaemonClient,
    DaemonInfo,
    MountError,
    cleanup_stale,
    daemon_alive,
    find_mount,
    read_pidfile,
    remove_pidfile,
    simvol_mounts,
    start_daemon,
    wait_gone,
)
from ..types import ROLE_FLAGS, VolumeFlag
from .paths import Shape, parse_access_path, parse_windows_path
from .registry import Registry, VolumeRow
from .root import Root
from .volume import Volume

log = logging.getLogger(__name__)

M, T, P, FAILED = "M", "T", "P", "FAILED"

_FORMAT_REASONS = {
    "too_small": "VDS_E_VOLUME_TOO_SMALL",
    "too_big": "VDS_E_VOLUME_TOO_BIG",
    "cluster_too_small": "VDS_E_CLUSTER_SIZE_TOO_SMALL",
    "cluster_too_big": "VDS_E_CLUSTER_SIZE_TOO_BIG",
    "bad_label": "VDS_E_BAD_LABEL",
    "invalid": "E_INVALIDARG",
}


def format_error_to_vds(e: FormatError) -> VdsError:
    return vds_error(HRESULTS[_FORMAT_REASONS.get(e.reason, "E_INVALIDARG")], str(e))


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


class VolumeService:
    """The volumes of one root. Safe to use from several processes at once (registry + file locks)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, allow_other: bool = False) -> None:
        self.root = Root(root)
        self.allow_other = allow_other
        try:
            self.registry = Registry(self.root.database)
        except Exception as e:  # sqlite3 errors, a newer schema
            raise InternalError(message=f"cannot open the registry {self.root.database}: {e}") from e
        self._check_boot()

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> VolumeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VolumeService({self.root.path!r})"

    # ================================================================= state

    def _check_boot(self) -> None:
        """A new kernel boot id means the host restarted: temporary dismounts are forgotten (→ M)."""
        boot = _boot_id()
        with self.root.lock("host"):
            old = self.registry.host_value("boot_id")
            if old != boot:
                if old is not None:
                    log.info("host restarted since the last run: temporary dismounts are forgotten")
                    self.registry.clear_all_temporary()
                    self.registry.set_host_value("down", "0")
                self.registry.set_host_value("boot_id", boot)

    def _row(self, volume_id: str) -> VolumeRow:
        row = self.registry.volume(volume_id)
        if row is None:
            raise ObjectNotFoundError(message=f"volume {{{volume_id.upper()}}} is not attached to this root")
        return row

    def _metadata(self, row: VolumeRow) -> ImageMetadata | None:
        try:
            return read_metadata(row.image)
        except (ImageError, OSError) as e:
            log.warning("cannot read the metadata of %s: %s", row.image, e)
            return None

    def _state(self, row: VolumeRow, meta: ImageMetadata | None) -> str:
        if meta is None:
            return FAILED
        if meta.flags & VolumeFlag.PERMANENTLY_DISMOUNTED:
            return P
        return T if row.dismount == "temporary" else M

    def _daemon(self, volume_id: str) -> DaemonInfo | None:
        info = read_pidfile(self.root.run, volume_id)
        if info is not None and daemon_alive(info):
            return info
        return None

    def _is_down(self) -> bool:
        return self.registry.host_value("down") == "1"

    def _reconcile(self, volume_id: str) -> str:
        """Bring one volume's reality in line with its state; the caller holds the volume lock."""
        row = self._row(volume_id)
        meta = self._metadata(row)
        state = self._state(row, meta)
        mp = self.root.mountpoint(volume_id)
        info = self._daemon(volume_id)
        entry = find_mount(mp)
        live = info is not None and entry is not None and entry.is_simvol
        if state == M:
            if live:
                return state
            if info is not None:  # a daemon without its mount: stop it before a fresh one takes the image
                self._stop_daemon(info)
            if entry is not None:
                log.warning("cleaning up the stale mount of %s", mp)
                cleanup_stale(mp)
            remove_pidfile(self.root.run, volume_id)
            if self._is_down():
                return state
            try:
                self._start(row, meta)
            except VdsError as e:
                log.warning("cannot remount %s: %s", row.image, e)
            return state
        # T, P and FAILED have no mount.
        if info is not None:
            self._stop_daemon(info)
        if find_mount(mp) is not None:
            cleanup_stale(mp)
        remove_pidfile(self.root.run, volume_id)
        try:
            os.rmdir(mp)
        except OSError:
            pass
        return state

    def _stop_daemon(self, info: DaemonInfo) -> None:
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

    def reconcile(self) -> None:
        """Reconcile every volume and remove stale simvol mounts no volume claims."""
        for row in self.registry.volumes():
            with self.root.lock(row.id):
                try:
                    self._reconcile(row.id)
                except ObjectNotFoundError:
                    pass
        known = {self.root.mountpoint(r.id) for r in self.registry.volumes()}
        for entry in simvol_mounts(self.root.volumes):
            if entry.mountpoint not in known:
                log.warning("removing a simvol mount no volume claims: %s", entry.mountpoint)
                try:
                    cleanup_stale(entry.mountpoint)
                except SimvolError as e:
                    log.warning("%s", e)

    # ================================================================= mount / unmount primitives

    def _start(self, row: VolumeRow, meta: ImageMetadata | None = None) -> DaemonInfo:
        meta = meta or self._metadata(row)
        if meta is None:
            raise ObjectStatusFailedError(message=f"cannot read the image {row.image}")
        try:
            return start_daemon(
                row.image,
                self.root.mountpoint(row.id),
                self.root.run,
                row.id,
                readonly=bool(meta.flags & VolumeFlag.READONLY),
                allow_other=self.allow_other,
            )
        except (MountError, SimvolError, OSError) as e:
            tail = getattr(e, "log_tail", "")
            msg = str(e) + (f"\n{tail}" if tail else "")
            raise ObjectStatusFailedError(message=msg) from e

    def _stop(self, volume_id: str, *, force: bool, extra_paths: Iterable[str] = ()) -> None:
        """Dismount the FUSE layer; returns once the image is closed. Raises VolumeInUseError."""
        info = self._daemon(volume_id)
        mp = self.root.mountpoint(volume_id)
        if info is None:
            if find_mount(mp) is not None:
                cleanup_stale(mp)
            remove_pidfile(self.root.run, volume_id)
            return
        try:
            answer = DaemonClient(info.socket).dismount(force=force, paths=list(extra_paths))
        except ControlError as e:
            if daemon_alive(info):
                raise InternalError(message=f"the volume daemon does not answer: {e}") from e
            answer = {"ok": True}
        if not answer.get("ok"):
            if answer.get("in_use"):
                raise VolumeInUseError(message=_in_use_message(answer["holders"]), holders=answer["holders"])
            raise InternalError(message=f"dismount failed: {answer.get('error')}")
        if not wait_gone(info.pid, info.create_time, 10):
            log.warning("daemon %d did not exit after the dismount", info.pid)
        remove_pidfile(self.root.run, volume_id)
        if find_mount(mp) is not None:
            cleanup_stale(mp)
        try:
            os.rmdir(mp)
        except OSError:
            pass

    def _client(self, volume_id: str) -> DaemonClient | None:
        info = self._daemon(volume_id)
        return DaemonClient(info.socket) if info else None

    # ================================================================= volumes

    def volumes(self) -> list[Volume]:
        """Every attached volume, in attach order."""
        self.reconcile()
        return [Volume(self, r.id) for r in self.registry.volumes()]

    def volume(self, selector: str) -> Volume:
        """A volume by GUID (any form), ``\\\\?\\Volume{GUID}\\``, drive letter (``E``, ``E:``, ``E:\\``) or image path."""
        vid = self._find(selector)
        if vid is None:
            raise ObjectNotFoundError(message=f"no volume matches {selector!r}")
        return Volume(self, vid)

    def _find(self, selector: str) -> str | None:
        if not isinstance(selector, str):
            return None
        s = selector.strip()
        if not s or "\0" in s:
            return None
        w = s.replace("/", "\\")
        candidate = w
        if w.upper().startswith("\\\\?\\VOLUME{"):
            candidate = w[10:].rstrip("\\")
        try:
            vid = str(uuid.UUID(candidate.strip("{}")))
            if self.registry.volume(vid):
                return vid
        except ValueError:
            pass
        if len(w) <= 3 and w[:1].isalpha() and w[1:] in ("", ":", ":\\"):
            row = self.registry.path_by_key(w[0].upper() + ":")
            return row.volume_id if row else None
        row = self.registry.volume_by_image(os.path.abspath(s))
        if row:
            return row.id
        ap = parse_access_path(s)
        if ap.shape in (Shape.FOLDER, Shape.HOST):
            prow = self.registry.path_by_key(ap.key)
            return prow.volume_id if prow else None
        return None

    def create_volume(
        self,
        size: int,
        filesystem: str = "FAT32",
        *,
        label: str | None = None,
        image: str | os.PathLike[str] | None = None,
        letter: str | None = None,
        roles: Iterable[str] = (),
        cluster_size: int = 0,
    ) -> Volume:
        """Create an image, format it FAT32 and attach it; it arrives mounted, like a new Windows volume.

        ``roles``: any of ``system``, ``boot``, ``pagefile``, ``hidden``, ``readonly``,
        ``no-default-drive-letter``, ``no-permanent-dismount``.
        """
        if filesystem is not None and not isinstance(filesystem, str):
            raise vds_error(HRESULTS["VDS_E_INVALID_FS_TYPE"], f"the file system must be a name such as 'FAT32', got {filesystem!r}")
        if label is not None and not isinstance(label, str):
            raise InvalidArgumentError(message=f"the label must be a string, got {label!r}")
        if not isinstance(cluster_size, int) or isinstance(cluster_size, bool):
            raise InvalidArgumentError(message=f"the allocation unit must be a number of bytes, got {cluster_size!r}")
        if isinstance(roles, str):
            roles = (roles,)
        fs = (filesystem or "FAT32").upper()
        if fs != "FAT32":
            known = {"NTFS", "FAT", "EXFAT", "UDF", "REFS"}
            code = "VDS_E_INCOMPATIBLE_FILE_SYSTEM" if fs in known else "VDS_E_INVALID_FS_TYPE"
            raise vds_error(HRESULTS[code], f"simvol formats FAT32 only, not {filesystem}")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise InvalidArgumentError(message=f"the size must be a positive number of bytes, got {size!r}")
        flags = VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED
        for role in roles:
            r = role.lower().replace("_", "-")
            if r == "no-permanent-dismount":
                flags = VolumeFlag(int(flags) & ~int(VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED))
            elif r in ROLE_FLAGS:
                flags |= ROLE_FLAGS[r]
            else:
                raise InvalidArgumentError(message=f"unknown role {role!r}; known: {', '.join([*ROLE_FLAGS, 'no-permanent-dismount'])}")
        if letter is not None:
            if not isinstance(letter, str):
                raise vds_error(HRESULTS["VDS_E_INVALID_DRIVE_LETTER"], f"{letter!r} is not a drive letter")
            ap = parse_access_path(letter if ":" in letter else letter + ":")
            if ap.shape is not Shape.LETTER:
                raise vds_error(HRESULTS["VDS_E_INVALID_DRIVE_LETTER"], f"{letter!r} is not a drive letter")
            if flags & VolumeFlag.HIDDEN:
                raise vds_error(HRESULTS["VDS_E_VOLUME_HIDDEN"], "a hidden volume cannot have a drive letter")
        if size % 512:
            size += 512 - size % 512
        try:
            plan_format(size, cluster_size)  # refuse impossible sizes and labels before any file exists
            normalize_label(label)
        except FormatError as e:
            raise format_error_to_vds(e) from e
        vid = uuid.uuid4()
        path = _image_path(image) if image is not None else os.path.join(self.root.images, f"{vid}.img")
        try:
            create_image(path, size, volume_id=vid, flags=int(flags))
        except ImageError as e:
            raise _image_error_to_vds(e) from e
        try:
            with Image.open(path) as im:
                format_volume(im.fd, im.fs_size, cluster_size=cluster_size, label=label)
        except FormatError as e:
            _unlink_quietly(path)
            raise format_error_to_vds(e) from e
        except (ImageError, OSError) as e:
            _unlink_quietly(path)
            raise vds_error(HRESULTS["VDS_E_IO_ERROR"], f"cannot format {path}: {e}") from e
        except BaseException:
            _unlink_quietly(path)  # whatever went wrong, no half-made image stays behind
            raise
        try:
            vol = self.attach(path)
        except BaseException:
            _unlink_quietly(path)
            raise
        if letter is not None:
            try:
                vol.add_access_path(letter if ":" in letter else letter + ":", _initial=True)
            except VdsError:
                vol.delete(force=True)
                raise
        return vol

    def attach(self, image: str | os.PathLike[str]) -> Volume:
        """Register an existing image; it arrives mounted unless the image says permanently dismounted."""
        path = _image_path(image)
        if not os.path.lexists(path):
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)"], f"{path} does not exist")
        try:
            meta = read_metadata(path)
        except ImageError as e:
            raise _image_error_to_vds(e) from e
        except OSError as e:
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)"], f"{path}: {e.strerror}") from e
        vid = str(meta.volume_id)
        with self.root.lock("host"):
            if self.registry.volume_by_image(path) is not None:
                raise ObjectExistsError(message=f"{path} is already attached")
            if self.registry.volume(vid) is not None:
                raise ObjectExistsError(message=f"a volume with id {{{vid.upper()}}} is already attached")
            row = self.registry.add_volume(vid, path)
        with self.root.lock(vid):
            if not meta.flags & VolumeFlag.PERMANENTLY_DISMOUNTED:
                try:
                    self._start(row, meta)
                except VdsError:
                    self.registry.remove_volume(vid)
                    raise
        return Volume(self, vid)

    # ================================================================= host-wide operations

    def up(self) -> list[Volume]:
        """Mount every attached volume that is not permanently dismounted, as a Windows host does at boot."""
        self.registry.set_host_value("down", "0")
        self.registry.clear_all_temporary()
        self.reconcile()
        return [Volume(self, r.id) for r in self.registry.volumes()]

    def down(self, *, force: bool = False) -> list[Volume]:
        """Dismount every mounted volume, as at host shutdown; states stay (``up`` mounts them again).

        Raises VolumeInUseError for the first volume in use unless ``force``.
        """
        self.registry.set_host_value("down", "1")  # first, so no concurrent reconcile remounts what stopped
        try:
            for row in self.registry.volumes():
                with self.root.lock(row.id):
                    self._stop(row.id, force=force)
        except VdsError:
            # All or nothing: a volume in use cancels the shutdown, and what already stopped comes back.
            self.registry.set_host_value("down", "0")
            self.reconcile()
            raise
        return [Volume(self, r.id) for r in self.registry.volumes()]

    def resolve(self, path: str) -> str:
        """The host path of a Windows path (``E:\\dir\\f.txt``, ``\\\\?\\Volume{…}\\f``, ``C:\\mnt\\d\\f``).

        Remounts a temporarily dismounted volume, as Windows does on first access.
        """
        wp = parse_windows_path(path)
        if wp is None:
            raise InvalidArgumentError(message=f"{path!r} is not an absolute Windows path")
        if wp.kind == "host":
            return path
        if wp.kind == "guid":
            vid = str(wp.guid)
            if self.registry.volume(vid) is None:
                raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"], f"no volume {{{vid}}}")
            base = self._online_base(vid)
            return self._existing(os.path.join(base, *wp.parts), wp.parts, path)
        letter = wp.letter or ""
        if letter == "C":
            # Through a mount folder on C:? Make sure its volume is mounted.
            for n in range(len(wp.parts), 0, -1):
                key = ("C:\\" + "\\".join(wp.parts[:n])).upper()
                prow = self.registry.path_by_key(key)
                if prow is not None:
                    self._online_base(prow.volume_id)
                    break
            return self._existing(os.path.join(self.root.system_drive, *wp.parts), wp.parts, path)
        prow = self.registry.path_by_key(letter + ":")
        if prow is None:
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"], f"no drive {letter}:")
        self._online_base(prow.volume_id)
        return self._existing(os.path.join(prow.host_path, *wp.parts), wp.parts, path)

    def _online_base(self, vid: str) -> str:
        with self.root.lock(vid):
            state = self._reconcile(vid)
            if state == P or state == FAILED:
                raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_NOT_READY)"], "the volume is offline")
            if state == T:
                self._start(self._row(vid))
                self.registry.set_dismount(vid, "none")
        return self.root.mountpoint(vid)

    @staticmethod
    def _existing(host: str, parts: tuple[str, ...], original: str) -> str:
        if not parts:
            return host
        if os.path.lexists(host):
            return host
        parent = os.path.dirname(host)
        if os.path.isdir(parent):
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)"], f"{original} does not exist")
        raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"], f"the path of {original} does not exist")


def _in_use_message(holders: list[dict[str, object]]) -> str:
    if not holders:
        return "the volume is in use"
    who = ", ".join(f"{h.get('process')} (pid {h.get('pid')}, {h.get('kind')})" for h in holders[:5])
    more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    return f"the volume is in use by {who}{more}"


_ERRNO_CODES = {
    errno.EEXIST: "HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)",
    errno.ENOENT: "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)",
    errno.ENOTDIR: "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)",
    errno.EACCES: "E_ACCESSDENIED",
    errno.EPERM: "E_ACCESSDENIED",
    errno.EROFS: "E_ACCESSDENIED",
    errno.ENOSPC: "HRESULT_FROM_WIN32(ERROR_DISK_FULL)",
    errno.EDQUOT: "HRESULT_FROM_WIN32(ERROR_DISK_FULL)",
    errno.EFBIG: "HRESULT_FROM_WIN32(ERROR_DISK_FULL)",
}


def _image_error_to_vds(e: ImageError) -> VdsError:
    """The HRESULT for an image-layer failure: by the host errno behind it, else by its kind."""
    cause = e.__cause__
    if isinstance(cause, OSError) and cause.errno in _ERRNO_CODES:
        return vds_error(HRESULTS[_ERRNO_CODES[cause.errno]], str(e))
    if isinstance(e, ImageSizeError):
        return vds_error(HRESULTS["E_INVALIDARG"], str(e))
    return vds_error(HRESULTS["VDS_E_OBJECT_STATUS_FAILED"], str(e))


def _image_path(image: object) -> str:
    """The absolute path of an image argument; E_INVALIDARG for what cannot name a file in the registry."""
    try:
        raw = os.fspath(image)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgumentError(message=f"an image path is needed, got {image!r}") from None
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise InvalidArgumentError(message=f"{raw!r} is not a usable image path")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(message=f"{raw!r} is not valid UTF-8; rename the image") from None
    return os.path.abspath(raw)


def _unlink_quietly(path: str) -> None:
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


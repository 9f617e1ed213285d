"""``VolumeService``: one simulated host (a root) and its volumes.

Every entry point reconciles with reality first (docs/architecture.md, Processes): a dead daemon's stale mount
is cleaned up and the volume remounted (the daemon repairs the dirty image first); a host reboot (a new kernel boot
id) forgets temporary dismounts, as Windows does. The state the service and its volumes share is a :class:`Host`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ..errors import (
    HRESULTS,
    AccessDeniedError,
    FormatError,
    ImageError,
    ImageFormatError,
    ImageSizeError,
    InternalError,
    InvalidArgumentError,
    ObjectExistsError,
    ObjectNotFoundError,
    UnsupportedFileSystemError,
    VdsError,
    vds_error,
)
from ..image import Image, ImageMetadata, adopt_image, create_image, has_trailer_magic, read_metadata
from ..image.filesystems import NTFS, of_image
from ..image.ntfs import set_native
from ..interrupts import shielded, unshielded
from ..mount import Access, DaemonMounter, Mounter, read_mounts
from ..types import ROLE_FLAGS, VolumeFlag, VolumeState
from .filling import copy_tree, plan_tree
from .formats import check_fits, format_driver, format_error_to_vds
from .host import Host
from .owners import parse_owner
from .paths import Shape, inside, parse_access_path, parse_windows_path, shown
from .registry import Registry
from .root import Root
from .volume import Volume

log = logging.getLogger(__name__)


class VolumeService:
    """The volumes of one root. Safe to use from several processes at once (registry + file locks).

    ``mounter`` serves the volumes; by default a :class:`DaemonMounter` (FUSE daemons under ``ROOT/volumes``).
    ``create=False``: raise (ERROR_PATH_NOT_FOUND) instead of making a root whose directory does not exist.
    Unit tests pass a :class:`simvol.mount.inprocess.InProcessMounter` to run the state machine without FUSE.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        allow_other: bool = False,
        mounter: Mounter | None = None,
        create: bool = True,
    ) -> None:
        the_root = Root(root, create=create)
        self.allow_other = allow_other
        try:
            registry = Registry(the_root.database)
        except Exception as e:  # sqlite3 errors, a newer schema
            raise InternalError(message=f"cannot open the registry {the_root.database}: {e}") from e
        if mounter is None:
            mounter = DaemonMounter(
                the_root.volumes, the_root.run, allow_other=allow_other, lock_path=the_root.lock_path
            )
        self._host = Host(the_root, registry, mounter, allow_other=allow_other)
        self._host.check_boot()

    @property
    def root(self) -> Root:
        return self._host.root

    @property
    def registry(self) -> Registry:
        return self._host.registry

    @property
    def mounter(self) -> Mounter:
        return self._host.mounter

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> VolumeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VolumeService({self.root.path!r})"

    def reconcile(self) -> None:
        """Reconcile every volume and remove stale simvol mounts no volume claims."""
        self._host.reconcile_all()

    # ================================================================= volumes

    def volumes(self) -> list[Volume]:
        """Every attached volume, in attach order."""
        self.reconcile()
        return [Volume(self._host, r.id) for r in self.registry.volumes()]

    def volume(self, selector: str) -> Volume:
        """A volume by GUID (any form), ``\\\\?\\Volume{GUID}\\``, drive letter (``E``, ``E:``, ``E:\\``) or image
        path."""
        vid = self._find(selector)
        if vid is None:
            raise ObjectNotFoundError(message=f"no volume matches {shown(selector)}")
        return Volume(self._host, vid)

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
            letter = self.registry.path_by_key(w[0].upper() + ":")
            return letter.volume_id if letter else None
        row = self.registry.volume_by_image(os.path.abspath(s))
        if row:
            return row.id
        ap = parse_access_path(s)
        if ap.shape in (Shape.FOLDER, Shape.HOST):
            prow = self.registry.path_by_key(ap.key)
            return prow.volume_id if prow else None
        return None

    @shielded()
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
        files: str | os.PathLike[str] | None = None,
        allow_other: bool | None = None,
        owner: int | str | tuple[int, int] | None = None,
        ntfs_native: bool = False,
    ) -> Volume:
        """Create an image, format it (``filesystem``: FAT32 or NTFS) and attach it; it arrives mounted, like a new
        Windows volume.

        ``roles``: any of ``system``, ``boot``, ``pagefile``, ``hidden``, ``readonly``,
        ``no-default-drive-letter``, ``no-permanent-dismount``. ``files``: a host directory whose tree is copied
        into the new volume (checked first: Windows names, no links or devices, room enough); an interrupt or a
        failure while copying deletes the volume. ``allow_other`` and ``owner``: see :meth:`attach`. ``ntfs_native``
        (NTFS only): serve the volume with ntfs-3g's own semantics at its full speed — names case-sensitive, open
        files deletable, the read-only attribute not enforced — instead of Windows' (docs/behaviour.md, "NTFS").
        """
        fs = format_driver("FAT32" if filesystem is None or filesystem == "" else filesystem, label, cluster_size)
        if ntfs_native and fs is not NTFS:
            raise InvalidArgumentError(message="ntfs_native applies to NTFS volumes only")
        if isinstance(roles, str):
            roles = (roles,)
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
                raise InvalidArgumentError(
                    message=f"unknown role {role!r}; known: {', '.join([*ROLE_FLAGS, 'no-permanent-dismount'])}"
                )
        if letter is not None:
            letter = _letter_path(letter)
            if flags & VolumeFlag.HIDDEN:
                raise vds_error(HRESULTS["VDS_E_VOLUME_HIDDEN"], "a hidden volume cannot have a drive letter")
        if size % 512:
            size += 512 - size % 512
        # Refuse impossible labels and sizes before any file exists; mkfs's range, not Windows Format's.
        check_fits(fs, size, label, cluster_size, windows_limits=False)
        if files is not None and flags & VolumeFlag.READONLY:
            raise InvalidArgumentError(message="a read-only volume cannot be filled from a directory")
        tree = plan_tree(os.fspath(files), size, fs) if files is not None else None
        access = self._access(allow_other, owner)
        vid = uuid.uuid4()
        path = _image_path(image) if image is not None else os.path.join(self.root.images, f"{vid}.img")
        try:
            create_image(path, size, volume_id=vid, flags=int(flags))
        except ImageError as e:
            raise _image_error_to_vds(e) from e
        try:
            fs.format(path, unit=cluster_size, label=label, windows_limits=False)
        except FormatError as e:
            _unlink_quietly(path)
            raise format_error_to_vds(e) from e
        except (ImageError, OSError) as e:
            _unlink_quietly(path)
            raise vds_error(HRESULTS["VDS_E_IO_ERROR"], f"cannot format {path}: {e}") from e
        except BaseException:
            _unlink_quietly(path)  # whatever went wrong, no half-made image stays behind
            raise
        if ntfs_native:
            try:
                set_native(path, True)
            except BaseException:
                _unlink_quietly(path)
                raise
        try:
            vol = self._attach(path, access=access, remembered=False)
        except BaseException:
            _unlink_quietly(path)
            raise
        try:
            if tree is not None:
                with unshielded():  # copying may take long: an interrupt is fine, the volume goes (below)
                    copy_tree(tree, self.mounter.mountpoint(str(vid)))
            if letter is not None:
                vol.add_access_path(letter, _initial=True)
        except BaseException:
            vol.delete(force=True)
            raise
        return vol

    def _access(self, allow_other: bool | None, owner: int | str | tuple[int, int] | None) -> Access:
        """Validate who may use a new volume's mount; a different owner lets that user in (allow_other)."""
        ids = parse_owner(owner)
        if ids is not None and ids[0] != os.geteuid():
            if os.geteuid() != 0:
                raise AccessDeniedError(message="only root can serve a volume's files as another user's")
            allow_other = True if allow_other is None else allow_other
            if not allow_other:
                raise InvalidArgumentError(message="another user's volume needs allow_other: only then can they enter")
        return Access(self.allow_other if allow_other is None else bool(allow_other), ids)

    @shielded()
    def attach(
        self,
        image: str | os.PathLike[str],
        *,
        adopt: bool = False,
        new_id: bool = False,
        letter: str | None = None,
        allow_other: bool | None = None,
        owner: int | str | tuple[int, int] | None = None,
    ) -> Volume:
        """Register an existing image; it arrives mounted unless the image says permanently dismounted.

        ``adopt``: the image may be a plain FAT32 file system (``mkfs.fat -F 32``, mtools): it is checked and
        given simvol's metadata trailer (the file grows by 8 KiB; the file system is untouched). Refused with
        E_ACCESSDENIED for a file simvol may not write, VDS_E_OBJECT_STATUS_FAILED for a damaged file system,
        VDS_E_UNRECOGNIZED_FILE_SYSTEM for anything but FAT32. ``new_id``: give the image a fresh volume GUID
        first (a copy can then sit beside its original). ``letter``: the drive letter to add (else the letter the
        volume had when it was last attached here, if it is free — as Windows' MountedDevices remembers it).
        ``allow_other``: every user may enter its mount (default: the service's); ``owner`` (uid, ``"uid:gid"``
        or a user name): whose files they are — root only, and it implies ``allow_other``. Both are kept for
        every later mount.
        """
        access = self._access(allow_other, owner)
        letter_ap = _letter_path(letter) if letter is not None else None
        vol = self._attach(_image_path(image), access=access, adopt=adopt, new_id=new_id,
                           remembered=letter_ap is None)
        if letter_ap is not None:
            try:
                vol.add_access_path(letter_ap)
            except BaseException:
                vol.detach(force=True)
                raise
        return vol

    def _attach(self, path: str, *, access: Access, adopt: bool = False, new_id: bool = False,
                remembered: bool) -> Volume:
        if not os.path.lexists(path):
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)"], f"{path} does not exist")
        try:
            try:
                meta = read_metadata(path)
            except ImageFormatError as e:
                if not adopt or has_trailer_magic(path):
                    hint = "" if adopt else "; a plain FAT32 image (mkfs.fat, mtools) is taken with --adopt"
                    raise vds_error(HRESULTS["VDS_E_OBJECT_STATUS_FAILED"], f"{e}{hint}") from e
                meta = self._adopt(path)
            else:
                if new_id:
                    with Image.open(path) as im:
                        meta = dataclasses.replace(im.metadata, volume_id=uuid.uuid4())
                        im.write_metadata(meta)
        except VdsError:
            raise
        except ImageError as e:
            raise _image_error_to_vds(e) from e
        except OSError as e:
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)"], f"{path}: {e.strerror}") from e
        vid = str(meta.volume_id)
        with self._host.lock("host"):
            if self.registry.volume_by_image(path) is not None:
                raise ObjectExistsError(message=f"{path} is already attached")
            if self.registry.volume(vid) is not None:
                raise ObjectExistsError(
                    message=f"a volume with id {{{vid.upper()}}} is already attached (a copy? attach it with --new-id)"
                )
            row = self.registry.add_volume(vid, path, allow_other=access.allow_other, owner=access.owner)
        with self._host.lock(vid):
            if not meta.flags & VolumeFlag.PERMANENTLY_DISMOUNTED:
                try:
                    self._host.start(row, meta)
                except BaseException:  # whatever stopped the start, the row must not outlive it
                    self.registry.remove_volume(vid)
                    raise
        vol = Volume(self._host, vid)
        was = self.registry.remembered_letter(vid) if remembered else None
        if was and not meta.flags & (VolumeFlag.HIDDEN | VolumeFlag.NO_DEFAULT_DRIVE_LETTER):
            try:
                vol.add_access_path(f"{was}:", _initial=True)
            except VdsError as e:  # taken meanwhile, or the letter may not be given: the volume comes without it
                log.info("volume {%s} does not get its earlier letter %s: back: %s", vid, was, e.message)
        return vol

    def _adopt(self, path: str) -> ImageMetadata:
        fs = of_image(path)
        try:
            problems = fs.check_plain(path)
        except UnsupportedFileSystemError as e:
            raise vds_error(HRESULTS["VDS_E_INCOMPATIBLE_FILE_SYSTEM"],
                            f"{path} holds no FAT32 or NTFS file system simvol can adopt: {e}") from e
        if problems:
            listed = "; ".join(f"{p['path']}: {p['detail']}" for p in problems[:5])
            fixer = "ntfsfix" if fs is NTFS else "fsck.fat -a"
            raise vds_error(HRESULTS["VDS_E_OBJECT_STATUS_FAILED"],
                            f"{path}: the file system is damaged ({len(problems)} problems: {listed}); "
                            f"repair it first ({fixer})")
        return adopt_image(path, flags=int(VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED))

    # ================================================================= host-wide operations

    @shielded()
    def up(self) -> list[Volume]:
        """Mount every attached volume that is not permanently dismounted, as a Windows host does at boot."""
        self._host.set_down(False)
        self.registry.clear_all_temporary()
        self.reconcile()
        return [Volume(self._host, r.id) for r in self.registry.volumes()]

    @shielded()
    def down(self, *, force: bool = False) -> list[Volume]:
        """Dismount every mounted volume, as at host shutdown; states stay (``up`` mounts them again).

        Raises VolumeInUseError for the first volume in use unless ``force``.
        """
        self._host.set_down(True)  # first, so no concurrent reconcile remounts what stopped
        try:
            for row in self.registry.volumes():
                with self._host.lock(row.id):
                    self._host.stop(row.id, force=force)
        except VdsError:
            # All or nothing: a volume in use cancels the shutdown, and what already stopped comes back.
            self._host.set_down(False)
            self.reconcile()
            raise
        return [Volume(self._host, r.id) for r in self.registry.volumes()]

    @shielded()
    def destroy(self, *, force: bool = False) -> None:
        """Tear the whole host down: dismount every volume (``force``: even in use, handles go stale), end every
        daemon, then delete the root — its registry, its images and its drives — without ever descending into a
        mount. Images kept outside the root stay where they are. The service is closed afterwards.

        Raises VolumeInUseError (and changes nothing) while a volume is in use, unless ``force``; raises
        InternalError, before deleting anything, if a mount is still found under the root.
        """
        self.down(force=force)
        for row in self.registry.volumes():
            with self._host.lock(row.id):
                self.mounter.clear(row.id)  # armed mount points of temporarily dismounted volumes too
        self.mounter.sweep(())
        root = self.root.path
        left = [e.mountpoint for e in read_mounts() if e.mountpoint == root or e.mountpoint.startswith(root + os.sep)]
        if left:
            raise InternalError(message=f"not deleting {root}: something is still mounted in it: {', '.join(left)}")
        self.close()
        shutil.rmtree(root)  # no mount left inside, and rmtree never follows a symlink (access paths, planted links)

    @classmethod
    @contextmanager
    def temporary(cls, *, allow_other: bool = False, prefix: str = "simvol-") -> Iterator[VolumeService]:
        """A service on a new private root in the system's temporary directory, destroyed at the end of the block
        (every volume dismounted by force, then the root removed), whatever happened in it."""
        root = tempfile.mkdtemp(prefix=prefix)
        svc = cls(root, allow_other=allow_other)
        try:
            yield svc
        finally:
            svc.destroy(force=True)

    def resolve(self, path: str, *, must_exist: bool = False) -> str:
        """The host path of a Windows path (``E:\\dir\\f.txt``, ``\\\\?\\Volume{…}\\f``, ``C:\\mnt\\d\\f``).

        The components that exist come back in their spelling on disk (Windows paths are case-insensitive), the
        rest as given — so a script can ask where to write a file that does not exist yet. ``must_exist``: the
        whole path must exist (ERROR_FILE_NOT_FOUND for a missing last component, ERROR_PATH_NOT_FOUND for a
        missing folder on the way). Remounts a temporarily dismounted volume, as Windows does on first access.
        """
        wp = parse_windows_path(path)
        if wp is None:
            if isinstance(path, str) and ".." in path.replace("/", "\\").split("\\"):
                raise InvalidArgumentError(message=f"{shown(path)} is refused: '..' would climb out of the volume")
            raise InvalidArgumentError(message=f"{shown(path)} is not an absolute Windows path")
        if wp.kind == "host":
            return path
        if wp.kind == "guid":
            vid = str(wp.guid)
            if self.registry.volume(vid) is None:
                raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"], f"no volume {{{vid}}}")
            base = self._online_base(vid)
        elif wp.letter == "C":
            # Through a mount folder on C:? Make sure its volume is mounted.
            for n in range(len(wp.parts), 0, -1):
                key = ("C:\\" + "\\".join(wp.parts[:n])).upper()
                prow = self.registry.path_by_key(key)
                if prow is not None:
                    self._online_base(prow.volume_id)
                    break
            base = self.root.system_drive
        else:
            prow = self.registry.path_by_key(f"{wp.letter}:")
            if prow is None:
                raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"], f"no drive {wp.letter}:")
            self._online_base(prow.volume_id)
            base = prow.host_path
        host, missing = _spelled(base, wp.parts)
        if must_exist and missing:
            code = "ERROR_FILE_NOT_FOUND" if missing == 1 else "ERROR_PATH_NOT_FOUND"
            what = f"{shown(path)} does not exist" if missing == 1 else f"the path of {shown(path)} does not exist"
            raise vds_error(HRESULTS[f"HRESULT_FROM_WIN32({code})"], what)
        return host

    @shielded()
    def mkdir(self, path: str, *, exist_ok: bool = False) -> str:
        """Make the folder ``path`` (a Windows path: ``C:\\mnt\\backup``, ``E:\\out\\logs``) and the folders on the
        way to it, as cmd's ``mkdir`` does; returns its host path. ERROR_ALREADY_EXISTS when it exists, unless
        ``exist_ok`` (then a folder is fine, a file still is not)."""
        wp = parse_windows_path(path)
        if wp is not None and wp.kind == "host":
            raise InvalidArgumentError(message=f"{shown(path)} is not a Windows path (a drive letter or a volume GUID)")
        host = self.resolve(path)  # refuses what is not a path at all
        if os.path.lexists(host):
            if exist_ok and os.path.isdir(host) and not os.path.islink(host):
                return host
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)"], f"{shown(path)} already exists")
        drive_c = os.path.realpath(self.root.system_drive)
        try:
            os.makedirs(host)
        except OSError as e:
            code = _ERRNO_CODES.get(e.errno or 0, "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)")
            raise vds_error(HRESULTS[code], f"cannot make {shown(path)}: {e.strerror}") from e
        if host.startswith(self.root.system_drive + os.sep) and not inside(os.path.realpath(host), drive_c):
            # A planted symlink on C: led the new folder outside the root: take it back, refuse.
            with contextlib.suppress(OSError):
                os.rmdir(host)
            raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"],
                            f"{shown(path)} leaves drive C: through a symlink")
        return host

    def _online_base(self, vid: str) -> str:
        with self._host.lock(vid):
            state = self._host.reconcile(vid)
            if state in (VolumeState.PERMANENTLY_DISMOUNTED, VolumeState.FAILED):
                raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_NOT_READY)"], "the volume is offline")
            if state is VolumeState.TEMPORARILY_DISMOUNTED:
                self._host.mount(vid)
        return self.mounter.mountpoint(vid)


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


def _letter_path(letter: object) -> str:
    """``E:\\`` for E, E: or E:\\; VDS_E_INVALID_DRIVE_LETTER for anything else."""
    ap = parse_access_path(letter if ":" in letter else letter + ":") if isinstance(letter, str) else None
    if ap is None or ap.shape is not Shape.LETTER:
        raise vds_error(HRESULTS["VDS_E_INVALID_DRIVE_LETTER"], f"{letter!r} is not a drive letter")
    return ap.display


def _spelled(base: str, parts: tuple[str, ...]) -> tuple[str, int]:
    """``base`` joined with ``parts``, each existing component in its spelling on disk (the exact spelling first,
    else the one that matches ignoring case); with the number of trailing components that do not exist."""
    host = base
    for i, part in enumerate(parts):
        names = _listdir(host)
        fold = part.casefold()
        match = part if part in names else next((n for n in names if n.casefold() == fold), None)
        if match is None:
            return os.path.join(host, *parts[i:]), len(parts) - i
        host = os.path.join(host, match)
    return host, 0


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _unlink_quietly(path: str) -> None:
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


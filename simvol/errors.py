"""simvol's exception hierarchy: every exception simvol raises on purpose, in one tree.

Each carries structured fields (the path involved, the errno or HRESULT, the holders of a volume) so callers never
parse messages, in the manner of psutil's errors::

    SimvolError
    ├── ImageError (path)                       the image container, simvol.image
    │   ├── ImageInUseError (pid)               another process holds the image's lock
    │   ├── ImageFormatError                    not a simvol image, or a damaged trailer
    │   │   └── ImageVersionError               written by a newer simvol
    │   ├── ImageAccessError                    missing, a directory, read-only, permission denied
    │   └── ImageSizeError                      an impossible size
    ├── FileSystemError                         the FAT32 engine, simvol.fat
    │   ├── UnsupportedFileSystemError          not FAT32, or too damaged to open
    │   └── FormatError (reason)                a format FAT32 cannot satisfy
    ├── FsOpError (errno, filename)  + OSError  a file operation the engine refuses (what a program sees)
    ├── RegistryError (path)                    a root's registry that cannot be used
    └── VdsError (hresult, code, holders, path, volume)  + OSError   a VDS call failed
        ├── VolumeInUseError                    VDS_E_DEVICE_IN_USE
        ├── TemporarilyDismountedError          VDS_E_VOLUME_TEMPORARILY_DISMOUNTED
        ├── PermanentlyDismountedError          VDS_E_VOLUME_PERMANENTLY_DISMOUNTED
        ├── VolumeHasPathError                  VDS_E_VOLUME_HAS_PATH
        ├── NotSupportedError                   VDS_E_NOT_SUPPORTED
        ├── ObjectNotFoundError                 VDS_E_OBJECT_NOT_FOUND
        ├── ObjectExistsError                   VDS_E_OBJECT_EXISTS
        ├── AccessPathNotFoundError             VDS_E_PATH_NOT_FOUND
        ├── DriveLetterNotFreeError             VDS_E_DRIVE_LETTER_NOT_FREE
        ├── InvalidDriveLetterError             VDS_E_INVALID_DRIVE_LETTER
        ├── VolumeNotOnlineError                VDS_E_VOLUME_NOT_ONLINE
        ├── OperationDeniedError                VDS_E_OPERATION_DENIED
        ├── ObjectStatusFailedError             VDS_E_OBJECT_STATUS_FAILED
        ├── InvalidArgumentError                E_INVALIDARG
        ├── AccessDeniedError                   E_ACCESSDENIED
        └── InternalError                       VDS_E_INTERNAL_ERROR

Every other HRESULT is a plain :class:`VdsError` (``vds_error`` picks the most specific class for a code).
:func:`as_vds_error` is the one place a failure becomes an HRESULT.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any


class SimvolError(Exception):
    """Base class of every error simvol raises deliberately."""


# --------------------------------------------------------------------------- image container


class ImageError(SimvolError):
    """A problem with an image file; ``path`` names it."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = os.fspath(path) if path is not None else None

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}: {self.path}" if self.path and self.path not in msg else msg

    def __reduce__(self) -> tuple[Any, ...]:  # keep the structured fields across pickling (multiprocessing, daemons)
        return (self.__class__, (self.args[0], self.path))


class ImageInUseError(ImageError):
    """Another process holds the image's exclusive lock (it is mounted or being modified)."""

    def __init__(
        self, message: str, path: str | os.PathLike[str] | None = None, pid: int | None = None
    ) -> None:
        super().__init__(message, path)
        self.pid = pid

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.args[0], self.path, self.pid))


class ImageFormatError(ImageError):
    """The file is not a simvol image, or its metadata trailer is damaged beyond use."""


class ImageVersionError(ImageFormatError):
    """The image was written by a newer simvol whose metadata format this one cannot read."""


class ImageAccessError(ImageError):
    """The image cannot be opened as asked (missing, a directory, read-only, permission denied)."""


class ImageSizeError(ImageError):
    """A requested image size is impossible (negative, too small, too large)."""


# --------------------------------------------------------------------------- FAT32 engine


class FileSystemError(SimvolError):
    """The file system in an image cannot be used."""


class UnsupportedFileSystemError(FileSystemError):
    """Not a FAT32 file system, or one too damaged to open (FAT12/16, exFAT, NTFS, garbage)."""


class FormatError(FileSystemError):
    """A format request FAT32 cannot satisfy (size or cluster size out of range, bad label)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        #: machine-readable reason: ``too_small``, ``too_big``, ``cluster_too_small``,
        #: ``cluster_too_big``, ``bad_label`` or ``invalid``
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.args[0], self.reason))


class FsOpError(SimvolError, OSError):
    """A file operation the engine refuses; ``errno`` is the face a Linux program sees.

    Raised as ``FsOpError(errno.ENOENT, path)``; the message is derived from the errno.
    """

    def __init__(self, err: int, path: str | None = None, detail: str | None = None) -> None:
        msg = os.strerror(err) + (f" ({detail})" if detail else "")
        if path is None:
            OSError.__init__(self, err, msg)
        else:
            OSError.__init__(self, err, msg, path)
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.errno, self.filename, self.detail))


# --------------------------------------------------------------------------- registry


class RegistryError(SimvolError):
    """The registry of a root (``ROOT/simvol.db``) cannot be used as it is; ``path`` names it."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.args[0], self.path))


def fs_error(err: int, path: str | None = None, detail: str | None = None) -> FsOpError:
    """Shorthand used throughout the engine: ``raise fs_error(errno.ENOENT, path)``."""
    return FsOpError(err, path, detail)


__all__ = [
    "SimvolError",
    "ImageError",
    "ImageInUseError",
    "ImageFormatError",
    "ImageVersionError",
    "ImageAccessError",
    "ImageSizeError",
    "FileSystemError",
    "UnsupportedFileSystemError",
    "FormatError",
    "FsOpError",
    "fs_error",
    "RegistryError",
]


# --------------------------------------------------------------------------- HRESULTs (docs/windows-semantics.md §1)


def HRESULT_FROM_WIN32(x: int) -> int:  # noqa: N802 - the Windows macro's name
    """``HRESULT_FROM_WIN32``: 0x8007xxxx for a Win32 error code, as an unsigned 32-bit value."""
    return x if x <= 0 else (0x80070000 | (x & 0xFFFF))


def SUCCEEDED(hr: int) -> bool:  # noqa: N802
    return not (hr & 0x80000000)


def FAILED(hr: int) -> bool:  # noqa: N802
    return bool(hr & 0x80000000)


def signed(hr: int) -> int:
    """COM's signed view of an HRESULT (``hr - 2**32`` when bit 31 is set)."""
    return hr - (1 << 32) if hr & 0x80000000 else hr


def unsigned(hr: int) -> int:
    return hr & 0xFFFFFFFF


_W = HRESULT_FROM_WIN32

#: name -> (HRESULT, message, errno). Names of Win32-derived codes are spelled as the CLI prints them.
_CODES: dict[str, tuple[int, str, int]] = {
    "S_OK": (0x00000000, "success", 0),
    "S_FALSE": (0x00000001, "success with a side failure", 0),
    "E_INVALIDARG": (0x80070057, "the parameter is incorrect", _errno.EINVAL),
    "E_ACCESSDENIED": (0x80070005, "access is denied", _errno.EACCES),
    "E_OUTOFMEMORY": (0x8007000E, "not enough memory", _errno.ENOMEM),
    "E_POINTER": (0x80004003, "invalid pointer", _errno.EFAULT),
    "E_NOTIMPL": (0x80004001, "not implemented", _errno.ENOSYS),
    "E_FAIL": (0x80004005, "unspecified failure", _errno.EIO),
    "E_UNEXPECTED": (0x8000FFFF, "unexpected failure", _errno.EIO),
    "HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)": (_W(2), "the system cannot find the file specified", _errno.ENOENT),
    "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)": (_W(3), "the system cannot find the path specified", _errno.ENOENT),
    "HRESULT_FROM_WIN32(ERROR_WRITE_PROTECT)": (_W(19), "the media is write protected", _errno.EROFS),
    "HRESULT_FROM_WIN32(ERROR_NOT_READY)": (_W(21), "the device is not ready", _errno.EIO),
    "HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION)": (_W(32), "the file is in use by another process", _errno.EBUSY),
    "HRESULT_FROM_WIN32(ERROR_DISK_FULL)": (_W(112), "there is not enough space on the disk", _errno.ENOSPC),
    "HRESULT_FROM_WIN32(ERROR_INVALID_NAME)": (_W(123), "the file name syntax is incorrect", _errno.EINVAL),
    "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)": (_W(145), "the directory is not empty", _errno.ENOTEMPTY),
    "HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)": (_W(183), "the file already exists", _errno.EEXIST),
    "HRESULT_FROM_WIN32(ERROR_FILE_TOO_LARGE)": (_W(223), "the file is too large", _errno.EFBIG),
    "HRESULT_FROM_WIN32(ERROR_DIRECTORY)": (_W(267), "the directory name is invalid", _errno.ENOTDIR),
    "HRESULT_FROM_WIN32(ERROR_FILE_INVALID)": (_W(1006), "the volume was changed externally", _errno.EIO),
    "HRESULT_FROM_WIN32(ERROR_CANCELLED)": (_W(1223), "the operation was canceled by the user", _errno.ECANCELED),
    # VDS codes simvol returns (§1.2)
    "VDS_E_NOT_SUPPORTED": (0x80042400, "the operation is not supported by the object", _errno.EOPNOTSUPP),
    "VDS_E_OBJECT_NOT_FOUND": (0x80042405, "the object was not found", _errno.ENOENT),
    "VDS_E_OPERATION_DENIED": (
        0x8004240A,
        "the operation is denied on a system, boot or pagefile volume",
        _errno.EPERM,
    ),
    "VDS_E_DEVICE_IN_USE": (0x80042413, "the volume is in use", _errno.EBUSY),
    "VDS_E_INVALID_OPERATION": (0x80042415, "the operation is not valid on this object", _errno.EINVAL),
    "VDS_E_PATH_NOT_FOUND": (0x80042416, "the path is not an access path of this volume", _errno.ENOENT),
    "VDS_E_OBJECT_EXISTS": (0x8004241D, "the object already exists", _errno.EEXIST),
    "VDS_E_INCOMPATIBLE_FILE_SYSTEM": (0x80042425, "the file system cannot be used here", _errno.EINVAL),
    "VDS_E_MEDIA_WRITE_PROTECTED": (0x80042428, "the media is write-protected", _errno.EROFS),
    "VDS_E_BAD_LABEL": (0x80042429, "the label is not valid for this file system", _errno.EINVAL),
    "VDS_E_IO_ERROR": (0x8004242B, "an I/O error occurred", _errno.EIO),
    "VDS_E_VOLUME_TOO_SMALL": (0x8004242C, "the volume is too small for the file system", _errno.EINVAL),
    "VDS_E_VOLUME_TOO_BIG": (0x8004242D, "the volume is too big for the file system", _errno.EINVAL),
    "VDS_E_CLUSTER_SIZE_TOO_SMALL": (0x8004242E, "the allocation unit is too small", _errno.EINVAL),
    "VDS_E_CLUSTER_SIZE_TOO_BIG": (0x8004242F, "the allocation unit is too big", _errno.EINVAL),
    "VDS_E_OBJECT_STATUS_FAILED": (0x80042431, "the volume's device failed", _errno.EIO),
    "VDS_E_VOLUME_NOT_ONLINE": (0x8004243D, "the volume is offline", _errno.ENODEV),
    "VDS_S_VOLUME_COMPRESS_FAILED": (0x00042443, "formatted; compression was not applied", 0),
    "VDS_E_INTERNAL_ERROR": (0x80042448, "an internal error occurred", _errno.EIO),
    "VDS_E_VOLUME_TEMPORARILY_DISMOUNTED": (
        0x8004245C,
        "the volume is already dismounted temporarily",
        _errno.EALREADY,
    ),
    "VDS_E_VOLUME_PERMANENTLY_DISMOUNTED": (
        0x8004245D,
        "the volume is permanently dismounted (offline)",
        _errno.ENODEV,
    ),
    "VDS_E_VOLUME_HAS_PATH": (0x8004245E, "the volume cannot go offline while it has an access path", _errno.EBUSY),
    "VDS_E_DRIVE_LETTER_NOT_FREE": (0x8004255C, "the drive letter is assigned to another volume", _errno.EEXIST),
    "VDS_E_INVALID_DRIVE_LETTER": (0x8004255E, "not a valid drive letter", _errno.EINVAL),
    "VDS_E_INVALID_FS_FLAG": (0x80042560, "the flag is not valid for the file system", _errno.EINVAL),
    "VDS_E_INVALID_FS_TYPE": (0x80042561, "unknown file-system type", _errno.EINVAL),
    "VDS_E_VOLUME_HIDDEN": (0x80042576, "no access path may be given to a hidden volume", _errno.EPERM),
    "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED": (0x8004290D, "volume GUID paths are not accepted here", _errno.EINVAL),
    # recognised, never returned (§1.3)
    "VDS_E_NO_MEDIA": (0x80042412, "no media in the device", _errno.ENOMEDIUM),
    "VDS_E_ACCESS_DENIED": (0x80042427, "access denied", _errno.EACCES),
    "VDS_E_CANT_QUICK_FORMAT": (0x8004242A, "cannot quick-format", _errno.EIO),
    "VDS_E_CLUSTER_COUNT_BEYOND_32BITS": (0x80042430, "the cluster count exceeds 32 bits", _errno.EINVAL),
    "VDS_E_PACK_OFFLINE": (0x80042444, "the pack is offline", _errno.ENODEV),
    "VDS_E_VOLUME_NOT_MOUNTED": (0x8004244F, "the volume is not mounted", _errno.ENODEV),
    "VDS_S_ACCESS_PATH_NOT_DELETED": (0x00044244, "the access path was not deleted", 0),
    "VDS_E_INVALID_VOLUME_FLAG": (0x8004256E, "invalid volume flag", _errno.EINVAL),
    "VDS_E_FS_NOT_DETERMINED": (0x80042593, "the default file system could not be determined", _errno.EINVAL),
    "VDS_E_BOOT_PAGEFILE_DRIVE_LETTER": (0x8004290E, "boot or pagefile volume drive letter", _errno.EPERM),
    "VDS_E_FORMAT_CRITICAL": (0x80042913, "cannot format a critical volume", _errno.EPERM),
    "VDS_E_NTFS_FORMAT_NOT_SUPPORTED": (0x80042914, "NTFS format not supported", _errno.EOPNOTSUPP),
    "VDS_E_FAT32_FORMAT_NOT_SUPPORTED": (0x80042915, "FAT32 format not supported", _errno.EOPNOTSUPP),
    "VDS_E_FAT_FORMAT_NOT_SUPPORTED": (0x80042916, "FAT format not supported", _errno.EOPNOTSUPP),
    "VDS_E_FORMAT_NOT_SUPPORTED": (0x80042917, "format not supported", _errno.EOPNOTSUPP),
    "VDS_E_COMPRESSION_NOT_SUPPORTED": (0x80042918, "compression not supported", _errno.EOPNOTSUPP),
    "VDS_E_OFFLINE_NOT_SUPPORTED": (0x80042926, "offline not supported", _errno.EOPNOTSUPP),
    "VDS_S_PROPERTIES_INCOMPLETE": (0x00042715, "some properties could not be read", 0),
    "VDS_E_INVALID_STATE": (0x80042A05, "invalid state", _errno.EINVAL),
    "VDS_S_NO_NOTIFICATION": (0x00042517, "no notification", 0),
}

#: HRESULT -> symbolic name (first name wins for aliases).
CODE_NAMES: dict[int, str] = {}
for _name, (_hr, _msg, _e) in _CODES.items():
    CODE_NAMES.setdefault(_hr, _name)
#: symbolic name -> HRESULT
HRESULTS: dict[str, int] = {name: v[0] for name, v in _CODES.items()}

S_OK = HRESULTS["S_OK"]


def code_name(hr: int) -> str:
    """Symbolic name of an HRESULT, or ``0x8004XXXX`` when unknown."""
    hr = unsigned(hr)
    return CODE_NAMES.get(hr, f"0x{hr:08X}")


def code_message(hr: int) -> str:
    name = CODE_NAMES.get(unsigned(hr))
    return _CODES[name][1] if name else "unknown HRESULT"


class VdsError(SimvolError, OSError):
    """A VDS call failed with ``hresult``. ``code`` is its symbolic name; in-use errors carry ``holders``.

    It is an :class:`OSError` whose ``errno`` is the nearest Linux face of the condition.
    """

    hresult_default: int = HRESULTS["E_FAIL"]

    def __init__(
        self,
        hresult: int | None = None,
        message: str | None = None,
        *,
        holders: list[dict[str, object]] | None = None,
        path: str | None = None,
        volume: str | None = None,
    ) -> None:
        hr = unsigned(hresult if hresult is not None else self.hresult_default)
        name = code_name(hr)
        err = _CODES[name][2] if name in _CODES else _errno.EIO
        text = message or code_message(hr)
        OSError.__init__(self, err, text)
        self.hresult = hr
        self.code = name
        self.holders = list(holders or [])
        self.path = path
        self.volume = volume
        self.message = text

    def __str__(self) -> str:
        return f"{self.code} (0x{self.hresult:08X}): {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_vds_error, (self.__class__, self.hresult, self.message, self.holders, self.path, self.volume))


def _rebuild_vds_error(cls, hresult, message, holders, path, volume):  # type: ignore[no-untyped-def]
    return cls(hresult, message, holders=holders, path=path, volume=volume)


# One subclass per HRESULT a caller may want to catch by type; ``vds_error`` picks the most specific one.


class VolumeInUseError(VdsError):
    """The volume is in use; ``holders`` names the processes. (VDS_E_DEVICE_IN_USE)"""

    hresult_default = HRESULTS["VDS_E_DEVICE_IN_USE"]

    @classmethod
    def of(cls, holders: list[dict[str, object]]) -> VolumeInUseError:
        """The error naming up to five of ``holders`` (dicts with pid, process and kind) in its message."""
        if not holders:
            return cls(message="the volume is in use", holders=[])
        who = ", ".join(f"{h.get('process')} (pid {h.get('pid')}, {h.get('kind')})" for h in holders[:5])
        more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
        return cls(message=f"the volume is in use by {who}{more}", holders=holders)


class TemporarilyDismountedError(VdsError):
    """The volume is already dismounted temporarily. (VDS_E_VOLUME_TEMPORARILY_DISMOUNTED)"""

    hresult_default = HRESULTS["VDS_E_VOLUME_TEMPORARILY_DISMOUNTED"]


class PermanentlyDismountedError(VdsError):
    """The volume is permanently dismounted. (VDS_E_VOLUME_PERMANENTLY_DISMOUNTED)"""

    hresult_default = HRESULTS["VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"]


class VolumeHasPathError(VdsError):
    """The volume still has an access path. (VDS_E_VOLUME_HAS_PATH)"""

    hresult_default = HRESULTS["VDS_E_VOLUME_HAS_PATH"]


class NotSupportedError(VdsError):
    """The operation is not supported by this volume. (VDS_E_NOT_SUPPORTED)"""

    hresult_default = HRESULTS["VDS_E_NOT_SUPPORTED"]


class ObjectNotFoundError(VdsError):
    """No volume matches the selector. (VDS_E_OBJECT_NOT_FOUND)"""

    hresult_default = HRESULTS["VDS_E_OBJECT_NOT_FOUND"]


class ObjectExistsError(VdsError):
    """The object already exists. (VDS_E_OBJECT_EXISTS)"""

    hresult_default = HRESULTS["VDS_E_OBJECT_EXISTS"]


class AccessPathNotFoundError(VdsError):
    """Not an access path of this volume. (VDS_E_PATH_NOT_FOUND)"""

    hresult_default = HRESULTS["VDS_E_PATH_NOT_FOUND"]


class DriveLetterNotFreeError(VdsError):
    """The drive letter is taken. (VDS_E_DRIVE_LETTER_NOT_FREE)"""

    hresult_default = HRESULTS["VDS_E_DRIVE_LETTER_NOT_FREE"]


class InvalidDriveLetterError(VdsError):
    """Not a valid drive letter. (VDS_E_INVALID_DRIVE_LETTER)"""

    hresult_default = HRESULTS["VDS_E_INVALID_DRIVE_LETTER"]


class VolumeNotOnlineError(VdsError):
    """The volume is offline. (VDS_E_VOLUME_NOT_ONLINE)"""

    hresult_default = HRESULTS["VDS_E_VOLUME_NOT_ONLINE"]


class OperationDeniedError(VdsError):
    """Refused on a system/boot/pagefile volume. (VDS_E_OPERATION_DENIED)"""

    hresult_default = HRESULTS["VDS_E_OPERATION_DENIED"]


class ObjectStatusFailedError(VdsError):
    """The volume's image failed. (VDS_E_OBJECT_STATUS_FAILED)"""

    hresult_default = HRESULTS["VDS_E_OBJECT_STATUS_FAILED"]


class InvalidArgumentError(VdsError):
    """A bad argument. (E_INVALIDARG)"""

    hresult_default = HRESULTS["E_INVALIDARG"]


class AccessDeniedError(VdsError):
    """Access is denied: the volume is locked by another process, or the host refuses. (E_ACCESSDENIED)"""

    hresult_default = HRESULTS["E_ACCESSDENIED"]


class InternalError(VdsError):
    """An unexpected daemon or registry failure. (VDS_E_INTERNAL_ERROR)"""

    hresult_default = HRESULTS["VDS_E_INTERNAL_ERROR"]


_SUBCLASSES: dict[int, type[VdsError]] = {cls.hresult_default: cls for cls in VdsError.__subclasses__()}


def vds_error(hresult: int, message: str | None = None, **kw: object) -> VdsError:
    """The most specific :class:`VdsError` subclass for ``hresult``."""
    cls = _SUBCLASSES.get(unsigned(hresult), VdsError)
    return cls(hresult, message, **kw)  # type: ignore[arg-type]


def as_vds_error(exc: BaseException) -> VdsError:
    """How a failure reads at the VDS interface — the one place exceptions become HRESULTs (the CLI, the COM
    facade and the service use it): a :class:`VdsError` as it is, anything else as VDS_E_INTERNAL_ERROR carrying
    its type and message."""
    if isinstance(exc, VdsError):
        return exc
    text = str(exc) if isinstance(exc, SimvolError) else f"internal error: {type(exc).__name__}: {exc}"
    return InternalError(message=text)


__all__ += [
    "HRESULT_FROM_WIN32",
    "SUCCEEDED",
    "FAILED",
    "HRESULTS",
    "CODE_NAMES",
    "S_OK",
    "code_name",
    "code_message",
    "signed",
    "unsigned",
    "VdsError",
    "vds_error",
    "as_vds_error",
    "VolumeInUseError",
    "TemporarilyDismountedError",
    "PermanentlyDismountedError",
    "VolumeHasPathError",
    "NotSupportedError",
    "ObjectNotFoundError",
    "ObjectExistsError",
    "AccessPathNotFoundError",
    "DriveLetterNotFreeError",
    "InvalidDriveLetterError",
    "VolumeNotOnlineError",
    "OperationDeniedError",
    "ObjectStatusFailedError",
    "InvalidArgumentError",
    "InternalError",
]


# The public classes present themselves as simvol's (repr, tracebacks, pickles), whichever module they are reached by.
for _cls in [c for n, c in list(globals().items()) if isinstance(c, type) and issubclass(c, SimvolError)
             and not n.startswith("_")]:
    _cls.__module__ = "simvol"
del _cls

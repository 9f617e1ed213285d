"""simvol: Windows volume management (VDS ``IVdsVolumeMF`` Mount/Dismount) simulated on Linux.

Volumes are sparse FAT32 image files served through FUSE. This namespace is the curated public API;
everything else is private to its layer (``simvol.image``, ``simvol.fat``, ``simvol.mount``,
``simvol.service``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from typing import Any

    from .errors import (
        FAILED,
        HRESULT_FROM_WIN32,
        HRESULTS,
        S_OK,
        SUCCEEDED,
        AccessDeniedError,
        AccessPathNotFoundError,
        DriveLetterNotFreeError,
        FileSystemError,
        FormatError,
        FsOpError,
        ImageAccessError,
        ImageError,
        ImageFormatError,
        ImageInUseError,
        ImageSizeError,
        ImageVersionError,
        InternalError,
        InvalidArgumentError,
        InvalidDriveLetterError,
        NotSupportedError,
        ObjectExistsError,
        ObjectNotFoundError,
        ObjectStatusFailedError,
        OperationDeniedError,
        PermanentlyDismountedError,
        RegistryError,
        SimvolError,
        TemporarilyDismountedError,
        UnsupportedFileSystemError,
        VdsError,
        VolumeHasPathError,
        VolumeInUseError,
        VolumeNotOnlineError,
        as_vds_error,
        code_name,
    )
    from .service import Volume, VolumeService
    from .types import (
        FileSystemProp,
        FileSystemType,
        VolumeFlag,
        VolumeProp,
        VolumeState,
        VolumeStatus,
    )

# Nothing loads until a name is used (PEP 562): ``simvol`` imports in about a millisecond, so the CLI installs its
# signal handlers before Python spends time on the rest (a Ctrl-C at start-up then ends it quietly, not with a
# traceback), and a mount daemon, which never needs the service (SQLite, psutil), starts without it.
_HOME = {
    **dict.fromkeys(("FileSystemProp", "FileSystemType", "VolumeFlag", "VolumeProp", "VolumeState", "VolumeStatus"),
                    "types"),
    **dict.fromkeys(("Volume", "VolumeService"), "service"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name, "errors" if name in __all__ and name != "__version__" else None)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = __import__(f"{__name__}.{home}", fromlist=[home])  # importlib itself would cost a millisecond
    obj = getattr(module, name)
    if isinstance(obj, type):
        obj.__module__ = __name__  # shown and pickled as simvol.X, as exported, wherever it is defined
    globals()[name] = obj
    return obj


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "__version__",
    "VolumeService",
    "Volume",
    "VolumeState",
    "VolumeFlag",
    "VolumeStatus",
    "VolumeProp",
    "FileSystemProp",
    "FileSystemType",
    "VdsError",
    "VolumeInUseError",
    "TemporarilyDismountedError",
    "PermanentlyDismountedError",
    "VolumeHasPathError",
    "NotSupportedError",
    "ObjectNotFoundError",
    "ObjectExistsError",
    "ObjectStatusFailedError",
    "OperationDeniedError",
    "AccessPathNotFoundError",
    "DriveLetterNotFreeError",
    "InvalidDriveLetterError",
    "InvalidArgumentError",
    "AccessDeniedError",
    "VolumeNotOnlineError",
    "InternalError",
    "HRESULTS",
    "HRESULT_FROM_WIN32",
    "S_OK",
    "SUCCEEDED",
    "FAILED",
    "code_name",
    "as_vds_error",
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
    "RegistryError",
]


"""simvol: Windows volume management (VDS ``IVdsVolumeMF`` Mount/Dismount) simulated on Linux.

Volumes are sparse FAT32 image files served through FUSE. This namespace is the curated public API;
everything else is private to its layer (``simvol.image``, ``simvol.fat``, ``simvol.mount``,
``simvol.service``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

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
from .types import (
    FileSystemProp,
    FileSystemType,
    VolumeFlag,
    VolumeProp,
    VolumeState,
    VolumeStatus,
)

if TYPE_CHECKING:
    from .service import Volume, VolumeService


def __getattr__(name: str) -> Any:
    # The service layer (SQLite, psutil, platformdirs) loads on first use, so a mount daemon — which imports
    # simvol but never the service — starts without it (mount latency, vds.md's "Mount returns once live").
    if name in ("Volume", "VolumeService"):
        from . import service

        obj = getattr(service, name)
        obj.__module__ = __name__  # shown and pickled as simvol.Volume / simvol.VolumeService, as exported
        return obj
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

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

# The public classes present themselves as simvol's (repr, tracebacks, pickles), wherever they are defined.
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj

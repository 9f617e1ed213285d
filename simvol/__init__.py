"""simvol: Windows volume management (VDS ``IVdsVolumeMF`` Mount/Dismount) simulated on Linux.

Volumes are sparse FAT32 image files served through FUSE. This namespace is the curated public API;
everything else is private to its layer (``simvol.image``, ``simvol.fat``, ``simvol.mount``,
``simvol.service``).
"""

from __future__ import annotations

import logging

from .errors import (
    FileSystemError,
    FormatError,
    FsOpError,
    ImageAccessError,
    ImageError,
    ImageFormatError,
    ImageInUseError,
    ImageSizeError,
    ImageVersionError,
    SimvolError,
    UnsupportedFileSystemError,
)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
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
]

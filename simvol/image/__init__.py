"""The image container: one sparse file per volume, carrying its own metadata.

Layout (``images/README.md`` documents it byte by byte)::

    [0, fs_size)                    FAT32 file system, readable as-is by fsck.fat and mtools
    [fs_size, fs_size + 8192)       metadata trailer: two checksummed slots, newest valid one wins

Why a trailer rather than a sidecar file: the image is the volume. Copy it anywhere and its GUID and
its permanent-dismount state travel with it, and nothing can get separated or out of sync.

Modules: ``trailer`` (slot bytes and the recovery rule, pure), ``metadata`` (the JSON payload as
:class:`ImageMetadata`), ``locking`` (flock and the holder pid), ``container`` (files: create, open,
write).
"""

from __future__ import annotations

from .. import _log  # noqa: F401  (the library's NullHandler)
from .container import Image, adopt_image, create_image, has_trailer_magic, read_metadata
from .metadata import PERSISTENT_FLAGS, ImageMetadata
from .trailer import FORMAT_VERSION, TRAILER_SIZE

__all__ = [
    "Image",
    "ImageMetadata",
    "adopt_image",
    "create_image",
    "has_trailer_magic",
    "read_metadata",
    "TRAILER_SIZE",
    "FORMAT_VERSION",
    "PERSISTENT_FLAGS",
]

"""FAT32 engine: format, open, file operations and check/repair on an image descriptor, without FUSE.

The engine knows nothing of FUSE or VDS. ``FatFileSystem`` is the file system; ``format_volume`` writes a
new one; ``check`` examines (and optionally repairs) one on the raw image.
"""

from .. import _log  # noqa: F401  (the library's NullHandler)
from .check import Problem, check, is_dirty
from .filesystem import MAX_FILE_SIZE, FatFileSystem, Node, Stat, StatFs
from .format import format_volume
from .layout import (
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_HIDDEN,
    ATTR_READ_ONLY,
    ATTR_SYSTEM,
    Geometry,
    allowed_cluster_sizes,
    default_cluster_size,
    minimum_format_size,
    plan_format,
)

__all__ = [
    "FatFileSystem",
    "Node",
    "Stat",
    "StatFs",
    "MAX_FILE_SIZE",
    "format_volume",
    "check",
    "is_dirty",
    "Problem",
    "Geometry",
    "plan_format",
    "default_cluster_size",
    "allowed_cluster_sizes",
    "minimum_format_size",
    "ATTR_READ_ONLY",
    "ATTR_HIDDEN",
    "ATTR_SYSTEM",
    "ATTR_DIRECTORY",
    "ATTR_ARCHIVE",
]

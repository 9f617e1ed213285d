"""The VDS service layer: the registry, ``VolumeService`` and ``Volume`` (IVdsVolumeMF semantics)."""

from .. import _log  # noqa: F401  (the library's NullHandler)
from .paths import guid_path, parse_access_path
from .root import Root, default_root
from .service import VolumeService
from .volume import Volume

__all__ = ["VolumeService", "Volume", "Root", "default_root", "guid_path", "parse_access_path"]

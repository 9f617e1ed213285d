"""One validator for format requests, used by ``create_volume`` and ``IVdsVolumeMF::Format`` alike.

The order is Format's (docs/behaviour.md, "Format"): the argument types, the file-system type, then the label,
the size and the allocation unit. ``create_volume`` applies its own checks (size, roles, drive letter) between
:func:`format_driver` and :func:`check_fits`; ``Format`` applies the volume's state checks before both.
"""

from __future__ import annotations

from ..errors import HRESULTS, FormatError, InvalidArgumentError, VdsError, vds_error
from ..image.filesystems import FileSystem, driver
from ..types import FileSystemType

# File systems Windows formats: a request for one simvol cannot format is VDS_E_INCOMPATIBLE_FILE_SYSTEM; any other
# name is VDS_E_INVALID_FS_TYPE.
WINDOWS_FILE_SYSTEMS = frozenset({"FAT", "FAT32", "NTFS", "EXFAT", "UDF", "REFS"})

_REASONS = {
    "too_small": "VDS_E_VOLUME_TOO_SMALL",
    "too_big": "VDS_E_VOLUME_TOO_BIG",
    "cluster_too_small": "VDS_E_CLUSTER_SIZE_TOO_SMALL",
    "cluster_too_big": "VDS_E_CLUSTER_SIZE_TOO_BIG",
    "bad_label": "VDS_E_BAD_LABEL",
    "invalid": "E_INVALIDARG",
}


def format_error_to_vds(e: FormatError) -> VdsError:
    """The HRESULT of a refused format request, by its reason."""
    return vds_error(HRESULTS[_REASONS.get(e.reason, "E_INVALIDARG")], str(e))


def requested_driver(fs_type: object) -> FileSystem | None:
    """The driver ``fs_type`` (a VDS_FILE_SYSTEM_TYPE or a name) asks for; None when simvol has none."""
    name = _fs_name(fs_type)
    return driver(name) if name else None


def format_driver(fs_type: object, label: object, unit: object) -> FileSystem:
    """Check the arguments' types and the file-system type; return the driver that formats it."""
    if label is not None and not isinstance(label, str):
        raise InvalidArgumentError(message=f"the label must be a string, got {label!r}")
    if not isinstance(unit, int) or isinstance(unit, bool):
        raise InvalidArgumentError(message=f"the allocation unit must be a number of bytes, got {unit!r}")
    name = _fs_name(fs_type)
    found = driver(name) if name else None
    if found is not None:
        return found
    if name in WINDOWS_FILE_SYSTEMS:
        raise vds_error(HRESULTS["VDS_E_INCOMPATIBLE_FILE_SYSTEM"], f"simvol formats FAT32 and NTFS, not {name}")
    raise vds_error(HRESULTS["VDS_E_INVALID_FS_TYPE"], f"unknown file-system type {fs_type!r}")


def check_fits(fs: FileSystem, size: int, label: str | None, unit: int, *, windows_limits: bool) -> None:
    """The label, the size and the allocation unit, in that order; raises the VDS error of the first that fails."""
    try:
        fs.plan(size, unit, label, windows_limits=windows_limits)
    except FormatError as e:
        raise format_error_to_vds(e) from e


def _fs_name(fs_type: object) -> str | None:
    if isinstance(fs_type, str):
        return fs_type.upper()
    if isinstance(fs_type, int) and not isinstance(fs_type, bool):
        try:
            return FileSystemType(fs_type).name
        except ValueError:
            return None
    return None

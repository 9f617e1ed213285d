"""VDS enumerations shared by every layer.

Values and names come from the Windows SDK (``vds.h``) as listed in ``docs/windows-semantics.md``. The enums
are ``IntFlag``/``IntEnum`` so they compare equal to the plain integers Windows code passes around.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag


class VolumeFlag(IntFlag):
    """``VDS_VOLUME_FLAG``: the bits of ``VDS_VOLUME_PROP.ulFlags``.

    Members drop the SDK's ``VDS_VF_`` prefix: ``VolumeFlag.PERMANENTLY_DISMOUNTED`` is
    ``VDS_VF_PERMANENTLY_DISMOUNTED`` (0x40000).
    """

    SYSTEM_VOLUME = 0x1
    BOOT_VOLUME = 0x2
    ACTIVE = 0x4
    READONLY = 0x8
    HIDDEN = 0x10
    CAN_EXTEND = 0x20
    CAN_SHRINK = 0x40
    PAGEFILE = 0x80
    HIBERNATION = 0x100
    CRASHDUMP = 0x200
    INSTALLABLE = 0x400
    LBN_REMAP_ENABLED = 0x800
    FORMATTING = 0x1000
    NOT_FORMATTABLE = 0x2000
    NTFS_NOT_SUPPORTED = 0x4000
    FAT32_NOT_SUPPORTED = 0x8000
    FAT_NOT_SUPPORTED = 0x10000
    NO_DEFAULT_DRIVE_LETTER = 0x20000
    PERMANENTLY_DISMOUNTED = 0x40000
    PERMANENT_DISMOUNT_SUPPORTED = 0x80000
    SHADOW_COPY = 0x100000
    FVE_ENABLED = 0x200000
    DIRTY = 0x400000
    REFS_NOT_SUPPORTED = 0x800000
    BACKS_BOOT_VOLUME = 0x1000000
    BACKED_BY_WIM_IMAGE = 0x2000000




class VolumeStatus(IntEnum):
    """``VDS_VOLUME_STATUS``."""

    UNKNOWN = 0
    ONLINE = 1
    NO_MEDIA = 3
    OFFLINE = 4
    FAILED = 5


class VolumeType(IntEnum):
    """``VDS_VOLUME_TYPE``."""

    UNKNOWN = 0
    SIMPLE = 10
    SPAN = 11
    STRIPE = 12
    MIRROR = 13
    PARITY = 14


class Health(IntEnum):
    """``VDS_HEALTH``."""

    UNKNOWN = 0
    HEALTHY = 1
    REBUILDING = 2
    STALE = 3
    FAILING = 4
    FAILING_REDUNDANCY = 5
    FAILED_REDUNDANCY = 6
    FAILED_REDUNDANCY_FAILING = 7
    FAILED = 8
    REPLACED = 9
    PENDING_FAILURE = 10
    DEGRADED = 11


class TransitionState(IntEnum):
    """``VDS_TRANSITION_STATE``."""

    UNKNOWN = 0
    STABLE = 1
    EXTENDING = 2
    SHRINKING = 3
    RECONFIGING = 4
    RESTRIPING = 5


class FileSystemType(IntEnum):
    """``VDS_FILE_SYSTEM_TYPE``."""

    UNKNOWN = 0
    RAW = 1
    FAT = 2
    FAT32 = 3
    NTFS = 4
    CDFS = 5
    UDF = 6
    EXFAT = 7
    CSVFS = 8
    REFS = 9


class FileSystemPropFlag(IntFlag):
    """``VDS_FILE_SYSTEM_PROP_FLAG``."""

    COMPRESSED = 0x1


class FileSystemFlag(IntFlag):
    """``VDS_FILE_SYSTEM_FLAG`` (``VDS_FSF_``)."""

    SUPPORT_FORMAT = 0x1
    SUPPORT_QUICK_FORMAT = 0x2
    SUPPORT_COMPRESS = 0x4
    SUPPORT_SPECIFY_LABEL = 0x8
    SUPPORT_MOUNT_POINT = 0x10
    SUPPORT_REMOVABLE_MEDIA = 0x20
    SUPPORT_EXTEND = 0x40
    ALLOCATION_UNIT_512 = 0x10000
    ALLOCATION_UNIT_1K = 0x20000
    ALLOCATION_UNIT_2K = 0x40000
    ALLOCATION_UNIT_4K = 0x80000
    ALLOCATION_UNIT_8K = 0x100000
    ALLOCATION_UNIT_16K = 0x200000
    ALLOCATION_UNIT_32K = 0x400000
    ALLOCATION_UNIT_64K = 0x800000
    ALLOCATION_UNIT_128K = 0x1000000
    ALLOCATION_UNIT_256K = 0x2000000


class FileSystemFormatSupportFlag(IntFlag):
    """``VDS_FILE_SYSTEM_FORMAT_SUPPORT_FLAG`` (``VDS_FSS_``)."""

    DEFAULT = 0x1
    PREVIOUS_REVISION = 0x2
    RECOMMENDED = 0x4


class FormatOptionFlags(IntFlag):
    """``VDS_FORMAT_OPTION_FLAGS`` (``VDS_FSOF_``)."""

    NONE = 0
    FORCE = 0x1
    QUICK = 0x2
    COMPRESSION = 0x4
    DUPLICATE_METADATA = 0x8


#: Roles a volume can be created with (the simulated Windows roles, stored in the image).
ROLE_FLAGS: dict[str, VolumeFlag] = {
    "system": VolumeFlag.SYSTEM_VOLUME,
    "boot": VolumeFlag.BOOT_VOLUME,
    "pagefile": VolumeFlag.PAGEFILE,
    "hidden": VolumeFlag.HIDDEN,
    "readonly": VolumeFlag.READONLY,
    "no-default-drive-letter": VolumeFlag.NO_DEFAULT_DRIVE_LETTER,
}
CRITICAL_ROLES = VolumeFlag.SYSTEM_VOLUME | VolumeFlag.BOOT_VOLUME | VolumeFlag.PAGEFILE


@dataclass(frozen=True, slots=True)
class VolumeProp:
    """``VDS_VOLUME_PROP`` (and the ``PROP2`` unique id)."""

    id: uuid.UUID
    type: VolumeType
    status: VolumeStatus
    health: Health
    transition_state: TransitionState
    size: int
    flags: VolumeFlag
    recommended_file_system_type: FileSystemType
    name: str

    @property
    def unique_id(self) -> bytes:
        """``VDS_VOLUME_PROP2.pUniqueId``: the 16 GUID bytes (Windows byte order)."""
        return self.id.bytes_le


@dataclass(frozen=True, slots=True)
class FileSystemProp:
    """``VDS_FILE_SYSTEM_PROP``."""

    type: FileSystemType
    volume_id: uuid.UUID
    flags: FileSystemPropFlag
    total_allocation_units: int
    available_allocation_units: int
    allocation_unit_size: int
    label: str


@dataclass(frozen=True, slots=True)
class FileSystemFormatSupportProp:
    """``VDS_FILE_SYSTEM_FORMAT_SUPPORT_PROP``."""

    flags: FileSystemFormatSupportFlag
    revision: int
    default_unit_allocation_size: int
    allowed_unit_allocation_sizes: tuple[int, ...] = field(default_factory=tuple)
    name: str = "FAT32"


@dataclass(frozen=True, slots=True)
class ReparsePointProp:
    """``VDS_REPARSE_POINT_PROP``."""

    source_volume_id: uuid.UUID
    path: str


__all__ = [
    "VolumeFlag",
    "VolumeStatus",
    "VolumeType",
    "Health",
    "TransitionState",
    "FileSystemType",
    "FileSystemPropFlag",
    "FileSystemFlag",
    "FileSystemFormatSupportFlag",
    "FormatOptionFlags",
    "ROLE_FLAGS",
    "CRITICAL_ROLES",
    "VolumeProp",
    "FileSystemProp",
    "FileSystemFormatSupportProp",
    "ReparsePointProp",
]


# --------------------------------------------------------------------------- the state machine

class VolumeState(enum.StrEnum):
    """Mounted, temporarily or permanently dismounted (IVdsVolumeMF::Dismount), or failed: simvol's state machine.

    Every other vocabulary derives from it: the registry's column and the CLI's JSON use :attr:`dismount`.
    A permanent dismount is a flag in the image's own metadata (it travels with the image), a temporary one a
    registry row (a host restart forgets it, as Windows does); an image that cannot be read is FAILED.

    The values are the one-letter names docs/behaviour.md's state table uses, so ``volume.state == "M"`` reads
    as the table does.
    """

    MOUNTED = "M"
    TEMPORARILY_DISMOUNTED = "T"
    PERMANENTLY_DISMOUNTED = "P"
    FAILED = "FAILED"

    @property
    def dismount(self) -> str:
        """The word for the dismount state in the registry and the CLI's JSON: none, temporary or permanent."""
        return _DISMOUNT_WORDS[self]

    @property
    def status(self) -> VolumeStatus:
        """``VDS_VOLUME_STATUS``: a temporarily dismounted volume is still ONLINE (it remounts on access)."""
        return _STATUS[self]

    @property
    def health(self) -> Health:
        return Health.FAILED if self is VolumeState.FAILED else Health.HEALTHY

    @property
    def dismounted(self) -> bool:
        return self in (VolumeState.TEMPORARILY_DISMOUNTED, VolumeState.PERMANENTLY_DISMOUNTED)


_DISMOUNT_WORDS = {
    VolumeState.MOUNTED: "none",
    VolumeState.TEMPORARILY_DISMOUNTED: "temporary",
    VolumeState.PERMANENTLY_DISMOUNTED: "permanent",
    VolumeState.FAILED: "none",
}
_STATUS = {
    VolumeState.MOUNTED: VolumeStatus.ONLINE,
    VolumeState.TEMPORARILY_DISMOUNTED: VolumeStatus.ONLINE,
    VolumeState.PERMANENTLY_DISMOUNTED: VolumeStatus.OFFLINE,
    VolumeState.FAILED: VolumeStatus.FAILED,
}


# The exported classes present themselves as simvol's (repr, pickles), whichever module they are reached by.
for _cls in (FileSystemProp, FileSystemType, VolumeFlag, VolumeProp, VolumeState, VolumeStatus):
    _cls.__module__ = "simvol"
del _cls

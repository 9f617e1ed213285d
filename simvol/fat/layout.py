"""FAT32 geometry: the boot sector, FSInfo and the layout formulas of docs/fat32-notes.md §2, §3, §5, §6.

Pure functions and small records only; nothing here touches a file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import FormatError, UnsupportedFileSystemError

SECTOR = 512
RESERVED_SECTORS = 32
NUM_FATS = 2
MEDIA = 0xF8
ROOT_CLUSTER = 2
FSINFO_SECTOR = 1
BACKUP_BOOT_SECTOR = 6

#: Windows' FAT32 cluster-count range for volumes it formats (docs/fat32-notes.md §5, §12).
MIN_FORMAT_CLUSTERS = 65_527
MAX_FORMAT_CLUSTERS = 4_177_918
#: Anything with fewer clusters is FAT12/16 by definition.
MIN_FAT32_CLUSTERS = 65_525
#: The highest cluster number below the bad-cluster mark (docs/fat32-notes.md §5).
MAX_FAT32_CLUSTERS = 0x0FFFFFF5 - 1
MAX_VOLUME_BYTES = 2**32 * SECTOR  # 2 TiB: TotSec32 is u32, so the last sector of exactly 2 TiB stays unused
MAX_TOTAL_SECTORS = 2**32 - 1
WINDOWS_MAX_FORMAT_BYTES = 32 * 2**30

ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LFN = 0x0F

FAT_EOC = 0x0FFFFFFF
FAT_BAD = 0x0FFFFFF7
FAT_MASK = 0x0FFFFFFF
FAT1_CLEAN = 0x08000000  # FAT[1] bit 27: volume clean
FAT1_NO_HARD_ERROR = 0x04000000  # FAT[1] bit 26
BS_DIRTY = 0x01  # BS_Reserved1 bit 0

FSI_LEAD_SIG = 0x41615252
FSI_STRUC_SIG = 0x61417272
FSI_TRAIL_SIG = 0xAA550000
FSI_UNKNOWN = 0xFFFFFFFF

_LABEL_FORBIDDEN = set('*?/\\|.,;:+=[]<>"\t')

# Windows default unit by volume size, upper bound inclusive (docs/fat32-notes.md §6, KB140365).
_WINDOWS_DEFAULTS = (
    (64 * 2**20, 512),
    (128 * 2**20, 1024),
    (256 * 2**20, 2048),
    (8 * 2**30, 4096),
    (16 * 2**30, 8192),
    (32 * 2**30, 16384),
)


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where everything lives in a FAT32 file system. Offsets are bytes from the file-system start."""

    bytes_per_sector: int
    sectors_per_cluster: int
    reserved_sectors: int
    num_fats: int
    fat_sectors: int  # BPB_FATSz32
    total_sectors: int
    root_cluster: int
    fsinfo_sector: int  # 0: none (parse_boot_sector's verdict on a BPB_FSInfo outside the reserved area)
    backup_boot_sector: int
    active_fat: int | None = None  # None: mirrored (ExtFlags bit 7 clear)

    @property
    def cluster_size(self) -> int:
        return self.bytes_per_sector * self.sectors_per_cluster

    @property
    def first_data_sector(self) -> int:
        return self.reserved_sectors + self.num_fats * self.fat_sectors

    @property
    def data_offset(self) -> int:
        return self.first_data_sector * self.bytes_per_sector

    @property
    def cluster_count(self) -> int:
        """CountOfClusters; valid cluster numbers are 2 .. cluster_count + 1."""
        return (self.total_sectors - self.first_data_sector) // self.sectors_per_cluster

    @property
    def max_cluster(self) -> int:
        return self.cluster_count + 1

    @property
    def fat_bytes(self) -> int:
        return self.fat_sectors * self.bytes_per_sector

    @property
    def size(self) -> int:
        return self.total_sectors * self.bytes_per_sector

    def fat_offset(self, copy: int) -> int:
        return (self.reserved_sectors + copy * self.fat_sectors) * self.bytes_per_sector

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - 2) * self.cluster_size


# --------------------------------------------------------------------------- layout formulas


def _layout(total_sectors: int, spc: int, align: bool = True) -> tuple[int, int]:
    """(FATSz32, CountOfClusters) for a 512-byte-sector volume (docs/fat32-notes.md §5)."""
    tmp1 = total_sectors - RESERVED_SECTORS
    tmp2 = (256 * spc + NUM_FATS) // 2
    fat_sz = -(-tmp1 // tmp2)
    if align:
        # FirstDataSector a multiple of the cluster size and of 4 KiB, by growing the FATs.
        unit = max(spc, 8)
        while (RESERVED_SECTORS + NUM_FATS * fat_sz) % unit:
            fat_sz += 1
    first_data = RESERVED_SECTORS + NUM_FATS * fat_sz
    if first_data >= total_sectors:
        return fat_sz, 0
    clusters = (total_sectors - first_data) // spc
    return fat_sz, clusters


def _format_layout(total_sectors: int, spc: int) -> tuple[int, int]:
    """Aligned layout; 512-byte clusters at the smallest sizes cannot afford alignment (docs/fat32-notes.md §5)."""
    total_sectors = min(total_sectors, MAX_TOTAL_SECTORS)
    fat_sz, clusters = _layout(total_sectors, spc, align=True)
    if clusters < MIN_FORMAT_CLUSTERS and spc == 1:
        fat_sz, clusters = _layout(total_sectors, spc, align=False)
    return fat_sz, clusters


def cluster_count_for(size: int, cluster_size: int) -> int:
    """CountOfClusters the formatter produces for ``size`` bytes with ``cluster_size`` units."""
    return _format_layout(size // SECTOR, cluster_size // SECTOR)[1]


def minimum_format_size() -> int:
    """Smallest FAT32 volume in bytes (512-byte clusters, no alignment, 65,527 clusters)."""
    lo, hi = 60_000, 70_000
    while lo < hi:
        mid = (lo + hi) // 2
        if _layout(mid, 1, align=False)[1] >= MIN_FORMAT_CLUSTERS:
            hi = mid
        else:
            lo = mid + 1
    return lo * SECTOR


def allowed_cluster_sizes(size: int, *, windows: bool = True) -> list[int]:
    """Units (bytes) Windows would allow for a FAT32 volume of ``size`` bytes (docs/fat32-notes.md §6)."""
    out = []
    top = MAX_FORMAT_CLUSTERS if windows else MAX_FAT32_CLUSTERS
    for shift in range(9, 17):
        unit = 1 << shift
        n = cluster_count_for(size, unit)
        if MIN_FORMAT_CLUSTERS <= n <= top:
            out.append(unit)
    return out


def default_cluster_size(size: int) -> int:
    """Windows' default unit, or at row edges the largest allowed unit below it (docs/fat32-notes.md §6)."""
    if size > WINDOWS_MAX_FORMAT_BYTES:
        # Beyond Windows' FAT32 formatting range (engine-only sizes): mkfs.fat's 32 KiB, or larger if needed.
        for unit in (32768, 65536):
            if cluster_count_for(size, unit) <= MAX_FAT32_CLUSTERS:
                return unit
        raise FormatError(f"{size} bytes is too large for FAT32", "too_big")
    default = next(unit for bound, unit in _WINDOWS_DEFAULTS if size <= bound)
    allowed = allowed_cluster_sizes(size)
    if default in allowed:
        return default
    below = [u for u in allowed if u < default]
    if below:
        return max(below)
    if allowed:
        return min(allowed)
    raise FormatError(f"{size} bytes is too small for FAT32 (minimum {minimum_format_size()})", "too_small")


def plan_format(size: int, cluster_size: int = 0, *, windows_limits: bool = False) -> Geometry:
    """Choose the geometry for formatting ``size`` bytes. Raises :class:`FormatError` with a reason.

    ``windows_limits`` applies the Windows Format range (≤ 32 GiB, 65,527–4,177,918 clusters);
    without it the engine formats anything FAT32 can describe, up to 2 TiB.
    """
    if size <= 0 or size % SECTOR:
        raise FormatError(f"volume size must be a positive multiple of {SECTOR} bytes, got {size}", "invalid")
    if size < minimum_format_size():
        raise FormatError(
            f"{size} bytes is too small for FAT32 (minimum {minimum_format_size()} bytes)", "too_small"
        )
    if size > MAX_VOLUME_BYTES or (windows_limits and size > WINDOWS_MAX_FORMAT_BYTES):
        limit = WINDOWS_MAX_FORMAT_BYTES if windows_limits else MAX_VOLUME_BYTES
        raise FormatError(f"{size} bytes is too large for FAT32 (maximum {limit} bytes)", "too_big")
    if cluster_size == 0:
        cluster_size = default_cluster_size(size)
    else:
        if cluster_size <= 0 or cluster_size & (cluster_size - 1) or not SECTOR <= cluster_size <= 65536:
            # Format's row 7: above the largest allowed unit → too big; otherwise (incl. not a power of two) too
            # small.
            allowed = allowed_cluster_sizes(size, windows=windows_limits)
            largest = max(allowed) if allowed else 65536
            raise FormatError(
                f"cluster size must be a power of two from 512 to 65536 bytes, got {cluster_size}",
                "cluster_too_big" if cluster_size > largest else "cluster_too_small",
            )
    total = min(size // SECTOR, MAX_TOTAL_SECTORS)
    spc = cluster_size // SECTOR
    fat_sz, clusters = _format_layout(total, spc)
    top = MAX_FORMAT_CLUSTERS if windows_limits else MAX_FAT32_CLUSTERS
    if clusters < MIN_FORMAT_CLUSTERS:
        raise FormatError(
            f"{cluster_size}-byte clusters give only {clusters} clusters on {size} bytes; FAT32 needs "
            f"{MIN_FORMAT_CLUSTERS}: use a smaller cluster size",
            "cluster_too_big",
        )
    if clusters > top:
        raise FormatError(
            f"{cluster_size}-byte clusters give {clusters} clusters on {size} bytes (at most {top}): "
            "use a larger cluster size",
            "cluster_too_small",
        )
    return Geometry(
        bytes_per_sector=SECTOR,
        sectors_per_cluster=spc,
        reserved_sectors=RESERVED_SECTORS,
        num_fats=NUM_FATS,
        fat_sectors=fat_sz,
        total_sectors=total,
        root_cluster=ROOT_CLUSTER,
        fsinfo_sector=FSINFO_SECTOR,
        backup_boot_sector=BACKUP_BOOT_SECTOR,
    )


# --------------------------------------------------------------------------- labels


def normalize_label(label: str | None) -> bytes | None:
    """Validate a volume label (docs/fat32-notes.md §12, docs/windows-semantics.md §5.3 row 5); return the 11-byte
    field or None.

    Empty, None or all-space means no label. Raises FormatError(reason="bad_label").
    """
    if label is None or label.strip(" ") == "":
        return None
    up = label.upper()
    bad = sorted({c for c in up if c in _LABEL_FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise FormatError(f"label {label!r} contains characters FAT does not allow: {''.join(bad)!r}", "bad_label")
    try:
        raw = up.encode("cp437")
    except UnicodeEncodeError:
        raise FormatError(f"label {label!r} cannot be written in code page 437", "bad_label") from None
    if len(raw) > 11:
        raise FormatError(f"label {label!r} is longer than 11 bytes", "bad_label")
    return raw.ljust(11, b" ")


def decode_label(raw: bytes) -> str:
    raw = bytes(raw)
    if raw[:1] == b"\x05":
        raw = b"\xe5" + raw[1:]
    text = raw.decode("cp437").rstrip(" ")
    return "" if text == "NO NAME" else text


# --------------------------------------------------------------------------- boot sector and FSInfo


_BPB = struct.Struct("<3s8sHBHBHHBHHHIIIHHIHH12sBBBI11s8s")


def build_boot_sector(geo: Geometry, serial: int, label: bytes | None, oem: bytes = b"MSWIN4.1") -> bytes:
    bs = bytearray(
        _BPB.pack(
            b"\xeb\x58\x90",
            oem,
            geo.bytes_per_sector,
            geo.sectors_per_cluster,
            geo.reserved_sectors,
            geo.num_fats,
            0,  # RootEntCnt
            0,  # TotSec16
            MEDIA,
            0,  # FATSz16
            63,
            255,
            0,  # HiddSec
            geo.total_sectors,
            geo.fat_sectors,
            0,  # ExtFlags: mirrored
            0,  # FSVer
            geo.root_cluster,
            geo.fsinfo_sector,
            geo.backup_boot_sector,
            bytes(12),
            0x80,
            0,  # Reserved1: clean
            0x29,
            serial & 0xFFFFFFFF,
            label or b"NO NAME    ",
            b"FAT32   ",
        )
    )
    bs.extend(bytes(SECTOR - len(bs)))
    bs[510:512] = b"\x55\xaa"
    return bytes(bs)


def build_fsinfo(free: int, next_free: int) -> bytes:
    fs = bytearray(SECTOR)
    struct.pack_into("<I", fs, 0, FSI_LEAD_SIG)
    struct.pack_into("<IIII", fs, 0x1E4, FSI_STRUC_SIG, free & 0xFFFFFFFF, next_free & 0xFFFFFFFF, 0)
    struct.pack_into("<I", fs, 0x1FC, FSI_TRAIL_SIG)
    return bytes(fs)


def parse_fsinfo(sector: bytes) -> tuple[int, int] | None:
    """(free_count, next_free) or None when the signatures are wrong."""
    if len(sector) < 512:
        return None
    lead = struct.unpack_from("<I", sector, 0)[0]
    struc, free, nxt = struct.unpack_from("<III", sector, 0x1E4)
    trail = struct.unpack_from("<I", sector, 0x1FC)[0]
    if lead != FSI_LEAD_SIG or struc != FSI_STRUC_SIG or trail != FSI_TRAIL_SIG:
        return None
    return free, nxt


@dataclass(frozen=True, slots=True)
class BootInfo:
    geometry: Geometry
    serial: int
    label: bytes
    dirty: bool
    raw: bytes


def parse_boot_sector(sector: bytes, region_size: int | None = None) -> BootInfo:
    """Validate a FAT32 boot sector. Anything else raises UnsupportedFileSystemError with the reason."""

    def bad(why: str) -> UnsupportedFileSystemError:
        return UnsupportedFileSystemError(f"unsupported or damaged file system: {why}")

    if len(sector) < 90:
        raise bad("image too small for a boot sector")
    if sector[510:512] != b"\x55\xaa":
        raise bad("no boot-sector signature 55 AA")
    if sector[3:11] == b"NTFS    ":
        raise bad("NTFS, not FAT32")
    if sector[3:11] == b"EXFAT   ":
        raise bad("exFAT, not FAT32")
    f = _BPB.unpack_from(sector, 0)
    (_, _, bps, spc, rsvd, nfats, root_ent, tot16, _media, fatsz16, _, _, _, tot32, fatsz32, ext_flags,
     fsver, root_clus, fsinfo, bkboot, _, _, reserved1, bootsig, serial, label, _) = f
    if bps not in (512, 1024, 2048, 4096):
        raise bad(f"bytes per sector {bps}")
    if spc == 0 or spc & (spc - 1) or spc > 128 or bps * spc > 65536:
        raise bad(f"sectors per cluster {spc}")
    if nfats not in (1, 2):
        raise bad(f"{nfats} FATs")
    if rsvd < 2:
        raise bad(f"{rsvd} reserved sectors")
    if fatsz16 != 0 or root_ent != 0 or fatsz32 == 0:
        raise bad("FAT12/FAT16 (a fixed root directory or 16-bit FAT size)")
    if tot16 != 0 or tot32 == 0:
        raise bad("FAT12/FAT16 (16-bit sector count)")
    if fsver != 0:
        raise bad(f"FAT32 version {fsver >> 8}.{fsver & 0xFF} (only 0.0 exists)")
    # A BPB_FSInfo outside the reserved area (0 and 0xFFFF mean "none" to some tools) names no FSInfo sector:
    # 0 here, and nothing is ever written there. Rewriting it at a clean dismount would overwrite the boot
    # sector (0), a FAT or file data. A backup boot sector on the FSInfo sector is dropped the same way (the
    # two would overwrite each other at every clean dismount).
    if not 1 <= fsinfo < rsvd:
        fsinfo = 0
    if bkboot == fsinfo:
        bkboot = 0
    geo = Geometry(
        bytes_per_sector=bps,
        sectors_per_cluster=spc,
        reserved_sectors=rsvd,
        num_fats=nfats,
        fat_sectors=fatsz32,
        total_sectors=tot32,
        root_cluster=root_clus,
        fsinfo_sector=fsinfo,
        backup_boot_sector=bkboot,
        active_fat=(ext_flags & 0x0F) if ext_flags & 0x80 else None,
    )
    if geo.first_data_sector >= tot32:
        raise bad("FATs larger than the volume")
    n = geo.cluster_count
    if n < MIN_FAT32_CLUSTERS:
        raise bad(f"{n} clusters: FAT12/FAT16, not FAT32")
    if n > MAX_FAT32_CLUSTERS:
        raise bad(f"{n} clusters exceeds FAT32's limit")
    if fatsz32 * bps // 4 < n + 2:
        raise bad("FAT too small for the cluster count")
    if not 2 <= root_clus <= geo.max_cluster:
        raise bad(f"root cluster {root_clus} out of range")
    if geo.active_fat is not None and geo.active_fat >= nfats:
        raise bad("active FAT number out of range")
    if region_size is not None and geo.size > region_size:
        raise bad(f"boot sector claims {geo.size} bytes but the image region holds {region_size}")
    lab = label if bootsig == 0x29 else b"NO NAME    "
    return BootInfo(geo, serial if bootsig == 0x29 else 0, lab, bool(reserved1 & BS_DIRTY), bytes(sector[:bps]))

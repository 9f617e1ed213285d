"""FAT32 geometry and formatting (docs/fat32-notes.md §2, §3, §5, §6, §12 labels) and refusing other file systems."""

from __future__ import annotations

import os
import random
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from simvol.errors import FormatError, UnsupportedFileSystemError
from simvol.fat import FatFileSystem, check, format_volume
from simvol.fat.layout import (
    MAX_FORMAT_CLUSTERS,
    MIN_FORMAT_CLUSTERS,
    allowed_cluster_sizes,
    build_boot_sector,
    cluster_count_for,
    decode_label,
    default_cluster_size,
    minimum_format_size,
    normalize_label,
    parse_boot_sector,
    parse_fsinfo,
    plan_format,
)
from tests.support.fatoracle import fsck_clean
from tests.support.fatoracle import make_volume as make_image

MKFS = "/usr/sbin/mkfs.fat"
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
MIN = 66591 * 512


def sector(path, n: int = 0, size: int = 512) -> bytes:
    with open(path, "rb") as f:
        f.seek(n * size)
        return f.read(size)


# --------------------------------------------------------------------------- minimum size, cluster sizes


def test_minimum_format_size():
    assert minimum_format_size() == 66591 * 512
    geo = plan_format(MIN)
    assert geo.cluster_size == 512
    assert MIN_FORMAT_CLUSTERS <= geo.cluster_count <= MIN_FORMAT_CLUSTERS + 1
    with pytest.raises(FormatError) as ei:
        plan_format(MIN - 512)
    assert ei.value.reason == "too_small"
    assert cluster_count_for(MIN - 512, 512) < MIN_FORMAT_CLUSTERS


@pytest.mark.parametrize(
    ("size", "unit"),
    [
        (MIN, 512),
        (33 * MiB, 512),
        (40 * MiB, 512),
        (64 * MiB, 512),
        (65 * MiB, 1024),
        (100 * MiB, 1024),
        (128 * MiB, 1024),
        (130 * MiB, 2048),
        (200 * MiB, 2048),
        (256 * MiB, 2048),
        (260 * MiB, 4096),
        (512 * MiB, 4096),
        (1 * GiB, 4096),
        (8 * GiB, 4096),
        (8 * GiB + 512, 8192),
        (12 * GiB, 8192),
        (16 * GiB, 8192),
        (16 * GiB + 512, 16384),
        (32 * GiB, 16384),
    ],
)
def test_default_cluster_size_windows_table(size, unit):
    assert default_cluster_size(size) == unit
    geo = plan_format(size, windows_limits=True)
    assert geo.cluster_size == unit
    assert MIN_FORMAT_CLUSTERS <= geo.cluster_count <= MAX_FORMAT_CLUSTERS


@pytest.mark.parametrize(
    ("size", "row_unit", "expected"),
    [
        (64 * MiB + 512, 1024, 512),
        (64 * MiB + 256 * KiB, 1024, 512),
        (128 * MiB + 512, 2048, 1024),
        (128 * MiB + 256 * KiB, 2048, 1024),
        (256 * MiB + 512, 4096, 2048),
        (256 * MiB + 256 * KiB, 4096, 2048),
    ],
)
def test_default_just_above_row_takes_largest_allowed_below(size, row_unit, expected):
    # The table's unit gives too few clusters here …
    assert cluster_count_for(size, row_unit) < MIN_FORMAT_CLUSTERS
    # … so the largest allowed unit below it is chosen.
    assert default_cluster_size(size) == expected
    assert expected in allowed_cluster_sizes(size)
    assert max(u for u in allowed_cluster_sizes(size) if u < row_unit) == expected


def test_above_32_gib_defaults_to_32k_without_windows_limits():
    assert default_cluster_size(32 * GiB + 512) == 32768
    assert default_cluster_size(64 * GiB) == 32768
    assert plan_format(64 * GiB).cluster_size == 32768


def test_allowed_cluster_sizes_examples():
    # 32 GiB with 8 KiB units gives 4,190,208 clusters: too many for Windows.
    assert cluster_count_for(32 * GiB, 8192) == 4_190_208
    assert allowed_cluster_sizes(32 * GiB) == [16384, 32768, 65536]
    assert allowed_cluster_sizes(MIN) == [512]
    assert allowed_cluster_sizes(1 * GiB) == [512, 1024, 2048, 4096, 8192]


# --------------------------------------------------------------------------- plan_format errors


@pytest.mark.parametrize("size", [0, -512, 512 * 70000 + 1, MIN + 100])
def test_plan_format_invalid_sizes(size):
    with pytest.raises(FormatError) as ei:
        plan_format(size)
    assert ei.value.reason == "invalid"


@pytest.mark.parametrize("size", [512, 1 * MiB, 32 * MiB, MIN - 512])
def test_plan_format_too_small(size):
    with pytest.raises(FormatError) as ei:
        plan_format(size)
    assert ei.value.reason == "too_small"


@pytest.mark.parametrize("size", [2 * TiB + 512, 3 * TiB, 4 * TiB])
def test_plan_format_too_big(size):
    with pytest.raises(FormatError) as ei:
        plan_format(size)
    assert ei.value.reason == "too_big"


def test_windows_limits_refuse_above_32_gib():
    assert plan_format(32 * GiB, windows_limits=True).cluster_size == 16384
    for size in (32 * GiB + 512, 33 * GiB, 1 * TiB):
        with pytest.raises(FormatError) as ei:
            plan_format(size, windows_limits=True)
        assert ei.value.reason == "too_big"
        plan_format(size)  # the engine itself can


@pytest.mark.parametrize("unit", [513, 1000, 3000, 4095, 6144])
def test_cluster_size_not_power_of_two(unit):
    with pytest.raises(FormatError) as ei:
        plan_format(1 * GiB, unit)
    assert ei.value.reason == "cluster_too_small"  # below the largest allowed unit (8 KiB)


def test_cluster_size_not_power_of_two_above_largest_allowed():
    # On the smallest volume only 512 is allowed: anything above it is "too big" (docs/windows-semantics.md §5.3 row 7).
    with pytest.raises(FormatError) as ei:
        plan_format(MIN, 3000)
    assert ei.value.reason == "cluster_too_big"
    for unit in (12288, 100_000):  # above 8 KiB, the largest unit allowed on 1 GiB
        with pytest.raises(FormatError) as ei:
            plan_format(1 * GiB, unit, windows_limits=True)
        assert ei.value.reason == "cluster_too_big"


@pytest.mark.parametrize("unit", [-512, 1, 256, 511])
def test_cluster_size_below_512(unit):
    with pytest.raises(FormatError) as ei:
        plan_format(1 * GiB, unit)
    assert ei.value.reason == "cluster_too_small"


@pytest.mark.parametrize("unit", [131072, 1 << 20])
def test_cluster_size_above_64k(unit):
    with pytest.raises(FormatError) as ei:
        plan_format(1 * GiB, unit)
    assert ei.value.reason == "cluster_too_big"


@pytest.mark.parametrize(
    ("size", "unit", "reason"),
    [
        (64 * MiB, 1024, "cluster_too_big"),  # 65,008 clusters
        (MIN, 1024, "cluster_too_big"),
        (1 * GiB, 16384, "cluster_too_big"),  # 65,503 clusters
        (8 * GiB, 2048, "cluster_too_small"),  # 4,177,942 clusters
    ],
)
def test_cluster_size_wrong_for_size_windows(size, unit, reason):
    assert unit not in allowed_cluster_sizes(size)
    with pytest.raises(FormatError) as ei:
        plan_format(size, unit, windows_limits=True)
    assert ei.value.reason == reason


def test_cluster_too_small_for_32_gib_only_with_windows_limits():
    with pytest.raises(FormatError) as ei:
        plan_format(32 * GiB, 8192, windows_limits=True)
    assert ei.value.reason == "cluster_too_small"
    assert plan_format(32 * GiB, 8192).cluster_count == 4_190_208


def test_cluster_too_small_for_2_tib():
    with pytest.raises(FormatError) as ei:
        plan_format(2 * TiB, 512)
    assert ei.value.reason == "cluster_too_small"


def test_one_and_two_tib_plans_are_valid():
    geo = plan_format(1 * TiB)
    assert geo.total_sectors == 2**31
    assert geo.cluster_size == 32768
    assert geo.fat_sectors * 512 // 4 >= geo.cluster_count + 2
    geo = plan_format(2 * TiB)  # exactly 2**41 bytes: TotSec32 clamps to 2**32 - 1
    assert geo.total_sectors == 2**32 - 1
    assert geo.cluster_size == 32768
    assert geo.cluster_count <= 0x0FFFFFF4
    assert geo.fat_sectors * 512 // 4 >= geo.cluster_count + 2
    assert geo.first_data_sector + geo.cluster_count * geo.sectors_per_cluster <= geo.total_sectors
    assert plan_format(2 * TiB, 65536).cluster_size == 65536


@given(hst.integers(min_value=MIN // 512, max_value=(64 * GiB) // 512))
@settings(max_examples=300)
def test_plan_invariants(sectors):
    size = sectors * 512
    geo = plan_format(size)
    spc = geo.sectors_per_cluster
    assert geo.total_sectors == sectors
    assert geo.reserved_sectors == 32 and geo.num_fats == 2 and geo.root_cluster == 2
    assert geo.cluster_count >= MIN_FORMAT_CLUSTERS
    if size <= 32 * GiB:
        assert geo.cluster_count <= MAX_FORMAT_CLUSTERS
        assert geo.cluster_size <= 16384
    assert geo.fat_sectors * 512 // 4 >= geo.cluster_count + 2
    assert geo.first_data_sector + geo.cluster_count * spc <= geo.total_sectors
    if spc > 1 or (geo.first_data_sector % 8 == 0):
        assert geo.first_data_sector % max(spc, 8) == 0  # aligned to the cluster and to 4 KiB
    else:
        # only the smallest 512-byte-cluster volumes forgo alignment
        assert cluster_count_for(size, 512) == geo.cluster_count
    # The boot sector round-trips.
    info = parse_boot_sector(build_boot_sector(geo, 0x1234ABCD, None), size)
    assert info.geometry == geo
    assert info.serial == 0x1234ABCD and not info.dirty


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("label", "raw"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("hello", b"HELLO      "),
        ("Data", b"DATA       "),
        ("MY DISK", b"MY DISK    "),
        ("ABCDEFGHIJK", b"ABCDEFGHIJK"),
        ("a-b_c#1", b"A-B_C#1    "),
        ("\u00e4rger", b"\x8eRGER      "),  # ä upper-cases to Ä, 0x8E in code page 437
    ],
)
def test_normalize_label(label, raw):
    assert normalize_label(label) == raw


@pytest.mark.parametrize("ch", [*list('*?/\\|.,;:+=[]<>"\t'), "\x01", "\x1f", "\x7f"])
def test_label_forbidden_characters(ch):
    with pytest.raises(FormatError) as ei:
        normalize_label(f"AB{ch}CD")
    assert ei.value.reason == "bad_label"


@pytest.mark.parametrize("label", ["ABCDEFGHIJKL", "x" * 32, "日本"])
def test_label_too_long_or_not_oem(label):
    with pytest.raises(FormatError) as ei:
        normalize_label(label)
    assert ei.value.reason == "bad_label"


def test_decode_label():
    assert decode_label(b"NO NAME    ") == ""
    assert decode_label(b"DATA       ") == "DATA"
    assert decode_label(b"\x05BC        ") == "\u03c3BC"


def test_format_with_label_writes_boot_sector_and_root_entry(tmp_path):
    path = tmp_path / "lab.img"
    geo = make_image(path, 64 * MiB, label="data", serial=0xCAFEF00D)
    boot = sector(path, 0)
    assert boot[0x47:0x52] == b"DATA       "
    assert struct.unpack_from("<I", boot, 0x43)[0] == 0xCAFEF00D
    assert boot[0x52:0x5A] == b"FAT32   "
    assert sector(path, 6) == boot
    with open(path, "rb") as f:
        f.seek(geo.data_offset)
        root = f.read(32)
    assert root[:11] == b"DATA       " and root[11] & 0x08
    out = fsck_clean(path)
    assert "0 files" in out or "files" in out
    with FatFileSystem.open_path(str(path), writable=False) as fs:
        assert fs.label == "DATA"
        assert fs.listdir("/") == []


def test_format_without_label(tmp_path):
    path = tmp_path / "nolab.img"
    make_image(path, 64 * MiB)
    assert sector(path, 0)[0x47:0x52] == b"NO NAME    "
    fsck_clean(path)
    with FatFileSystem.open_path(str(path), writable=False) as fs:
        assert fs.label == ""


def test_format_bad_label_writes_nothing(tmp_path):
    path = tmp_path / "bad.img"
    with pytest.raises(FormatError) as ei:
        make_image(path, 64 * MiB, label="a*b")
    assert ei.value.reason == "bad_label"
    assert os.stat(path).st_blocks == 0
    assert sector(path, 0) == bytes(512)


def test_format_too_small_writes_nothing(tmp_path):
    path = tmp_path / "small.img"
    with pytest.raises(FormatError) as ei:
        make_image(path, 16 * MiB)
    assert ei.value.reason == "too_small"
    assert os.stat(path).st_blocks == 0


# --------------------------------------------------------------------------- formatted images


@pytest.mark.parametrize(
    ("size", "unit"),
    [
        (MIN, 0),
        (64 * MiB, 0),
        (65 * MiB, 0),
        (256 * MiB + 512, 0),
        (1 * GiB, 0),
        (1 * GiB, 512),
        (1 * GiB, 8192),
        (8 * GiB + 512, 0),
        (33 * GiB, 0),
        (4 * GiB, 65536),
    ],
)
def test_formatted_images_are_clean_and_sparse(tmp_path, size, unit):
    path = tmp_path / "f.img"
    geo = make_image(path, size, cluster_size=unit)
    fsck_clean(path)
    st = os.stat(path)
    assert st.st_size == size
    assert st.st_blocks * 512 <= 1 * MiB + geo.cluster_size
    boot = sector(path, 0)
    info = parse_boot_sector(boot, size)
    assert info.geometry == geo
    assert boot[0x41] & 1 == 0
    assert sector(path, 6) == boot
    fsinfo = parse_fsinfo(sector(path, 1))
    assert fsinfo is not None and fsinfo[0] == geo.cluster_count - 1
    assert sector(path, 7) == sector(path, 1)
    with FatFileSystem.open_path(str(path), writable=False) as fs:
        assert fs.statfs().free_clusters == geo.cluster_count - 1 == fs.fat.count_free()
    with open(path, "rb") as f:
        assert check(f.fileno(), size) == []


def test_reformat_erases_old_contents(tmp_path):
    path = tmp_path / "re.img"
    make_image(path, 64 * MiB)
    with FatFileSystem.open_path(str(path)) as fs:
        fs.mkdir("/d")
        fs.create("/d/f.txt")
        fs.write("/d/f.txt", b"x" * 100_000, 0)
    make_image_keep(path, 64 * MiB, label="again")
    fsck_clean(path)
    with FatFileSystem.open_path(str(path), writable=False) as fs:
        assert fs.listdir("/") == []
        assert fs.label == "AGAIN"
        assert fs.statfs().free_clusters == fs.fat.count_free() == fs.geo.cluster_count - 1


def make_image_keep(path, size, **kw):
    fd = os.open(path, os.O_RDWR)
    try:
        return format_volume(fd, size, **kw)
    finally:
        os.close(fd)


def test_two_tib_format_open_close_fsck(tmp_path):
    path = tmp_path / "t.img"
    geo = make_image(path, 2 * TiB)
    assert geo.total_sectors == 2**32 - 1
    with FatFileSystem.open_path(str(path)) as fs:
        fs.mkdir("/d")
        fs.create("/d/f")
        fs.write("/d/f", b"abc" * 30000, 0)
    fsck_clean(path)
    assert os.stat(path).st_blocks * 512 < 8 * MiB + 3 * geo.cluster_size


def test_one_tib_format_is_cheap(tmp_path):
    path = tmp_path / "t.img"
    geo = make_image(path, 1 * TiB)
    assert os.stat(path).st_blocks * 512 < 1 * MiB + geo.cluster_size
    with FatFileSystem.open_path(str(path)) as fs:
        assert fs.statfs().total_clusters == geo.cluster_count
        fs.create("/f")
        fs.write("/f", b"abc", 0)
    with FatFileSystem.open_path(str(path), writable=False) as fs:
        assert fs.read("/f", 10, 0) == b"abc"
        assert fs.statfs().free_clusters == geo.cluster_count - 2


# --------------------------------------------------------------------------- refusing other file systems


def _expect_unsupported(path, region_size=None):
    size = region_size if region_size is not None else os.stat(path).st_size
    with pytest.raises(UnsupportedFileSystemError):
        FatFileSystem.open_path(str(path), region_size=size)
    with pytest.raises(UnsupportedFileSystemError):
        FatFileSystem.open_path(str(path), writable=False, region_size=size)
    with open(path, "rb") as f, pytest.raises(UnsupportedFileSystemError):
        check(f.fileno(), size)


def test_zero_filled_file_unsupported(tmp_path):
    path = tmp_path / "zero.img"
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    _expect_unsupported(path)
    with pytest.raises(UnsupportedFileSystemError):
        parse_boot_sector(bytes(512))
    assert os.stat(path).st_blocks == 0  # nothing written


def test_empty_and_tiny_files_unsupported(tmp_path):
    for n in (0, 10, 100, 511):
        path = tmp_path / f"tiny{n}.img"
        path.write_bytes(b"\xeb" * n)
        _expect_unsupported(path)


def test_garbage_unsupported(tmp_path):
    rnd = random.Random(1234)
    for i in range(20):
        data = bytearray(rnd.randbytes(1 * MiB))
        if i % 2:
            data[510:512] = b"\x55\xaa"
        path = tmp_path / f"garbage{i}.img"
        path.write_bytes(bytes(data))
        _expect_unsupported(path)


def _fake_boot(oem: bytes) -> bytes:
    bs = bytearray(512)
    bs[0:3] = b"\xeb\x52\x90"
    bs[3:11] = oem
    struct.pack_into("<HB", bs, 11, 512, 8)
    bs[510:512] = b"\x55\xaa"
    return bytes(bs)


@pytest.mark.parametrize("oem", [b"NTFS    ", b"EXFAT   "])
def test_ntfs_and_exfat_unsupported(tmp_path, oem):
    path = tmp_path / "other.img"
    with open(path, "wb") as f:
        f.write(_fake_boot(oem))
        f.truncate(64 * MiB)
    _expect_unsupported(path)
    with pytest.raises(UnsupportedFileSystemError, match=r"NTFS|exFAT"):
        parse_boot_sector(_fake_boot(oem))


@pytest.mark.parametrize(("fat", "kib"), [(12, 1440), (16, 65536)])
def test_fat12_fat16_unsupported(tmp_path, fat, kib):
    path = tmp_path / f"fat{fat}.img"
    proc = subprocess.run(
        [MKFS, "-F", str(fat), "-C", str(path), str(kib)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    _expect_unsupported(path)


def test_mkfs_fat32_accepted(tmp_path):
    path = tmp_path / "mkfs32.img"
    proc = subprocess.run(
        [MKFS, "-F", "32", "-S", "512", "-s", "8", "-n", "MKFSLABEL", "--invariant", "-C", str(path), str(600 * 1024)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    with FatFileSystem.open_path(str(path)) as fs:
        assert fs.label == "MKFSLABEL"
        assert fs.statfs().free_clusters == fs.fat.count_free()
        fs.create("/hello.txt")
        fs.write("/hello.txt", b"hi", 0)
    fsck_clean(path)
    with open(path, "rb") as f:
        assert check(f.fileno(), os.stat(path).st_size) == []


def _valid_boot(size: int = 64 * MiB) -> bytes:
    return build_boot_sector(plan_format(size), 1, None)


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (0x0B, "<H", 256),  # bytes per sector
        (0x0B, "<H", 0),
        (0x0D, "<B", 0),  # sectors per cluster
        (0x0D, "<B", 3),
        (0x10, "<B", 0),  # number of FATs
        (0x11, "<H", 512),  # root entries (FAT12/16)
        (0x13, "<H", 1000),  # TotSec16
        (0x16, "<H", 9),  # FATSz16
        (0x20, "<I", 0),  # TotSec32
        (0x24, "<I", 0),  # FATSz32
        (0x24, "<I", 10),  # FAT too small for the clusters
        (0x2A, "<H", 0x0100),  # FSVer
        (0x2C, "<I", 0),  # root cluster
        (0x2C, "<I", 0x0FFFFFFF),
        (0x0E, "<H", 0),  # reserved sectors
        (0x1FE, "<H", 0),  # signature
    ],
)
def test_broken_fat32_boot_sectors(offset, fmt, value):
    bs = bytearray(_valid_boot())
    struct.pack_into(fmt, bs, offset, value)
    with pytest.raises(UnsupportedFileSystemError):
        parse_boot_sector(bytes(bs), 64 * MiB)


def test_boot_sector_larger_than_region(tmp_path):
    bs = _valid_boot(128 * MiB)
    parse_boot_sector(bs, 128 * MiB)
    with pytest.raises(UnsupportedFileSystemError):
        parse_boot_sector(bs, 64 * MiB)


def test_too_few_clusters_is_not_fat32():
    # A FAT32-looking BPB over a volume with fewer than 65,525 clusters is FAT12/16 by definition.
    geo = plan_format(64 * MiB)
    bs = bytearray(build_boot_sector(geo, 1, None))
    struct.pack_into("<B", bs, 0x0D, 2)  # 1 KiB clusters: 65,008 clusters
    with pytest.raises(UnsupportedFileSystemError):
        parse_boot_sector(bytes(bs), 64 * MiB)


@given(hst.lists(hst.tuples(hst.integers(0, 511), hst.integers(0, 255)), min_size=1, max_size=8))
@settings(max_examples=400)
def test_mutated_boot_sectors_only_raise_unsupported(mutations):
    bs = bytearray(_valid_boot())
    for off, val in mutations:
        bs[off] = val
    try:
        parse_boot_sector(bytes(bs), 64 * MiB)
    except UnsupportedFileSystemError:
        pass


@given(hst.binary(min_size=0, max_size=600))
@settings(max_examples=300)
def test_random_bytes_only_raise_unsupported(data):
    try:
        parse_boot_sector(data, 64 * MiB)
    except UnsupportedFileSystemError:
        pass


def test_mutated_images_open_or_refuse(tmp_path):
    """Damaged boot sectors on a real image: opening either works or raises UnsupportedFileSystemError."""
    path = tmp_path / "m.img"
    make_image(path, 64 * MiB)
    good = sector(path, 0)
    rnd = random.Random(99)
    for _ in range(150):
        bs = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            bs[rnd.randrange(0x0B, 0x5A)] = rnd.randrange(256)
        with open(path, "r+b") as f:
            f.write(bs)
        try:
            fs = FatFileSystem.open_path(str(path), writable=False)
        except UnsupportedFileSystemError:
            continue
        try:
            fs.listdir("/")
        except OSError:
            pass
        finally:
            fs.close()

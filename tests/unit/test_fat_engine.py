"""The FAT32 engine's file operations on real sparse images (no FUSE).

Every workload that leaves a closed image is checked with ``fsck.fat -n`` (exit 0, backup boot sector equal).
"""

from __future__ import annotations

import errno
import os
import random
import stat as stat_mod
import struct
import subprocess
import time

import pytest

from simvol.errors import FormatError, FsOpError
from simvol.fat import (
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_HIDDEN,
    ATTR_READ_ONLY,
    ATTR_SYSTEM,
    FatFileSystem,
)
from simvol.fat.dirent import decode_time
from simvol.fat.layout import parse_boot_sector, parse_fsinfo
from tests.support.fatoracle import check_clean, expect_errno, fsck_clean
from tests.support.fatoracle import make_volume as make_image

FSCK = "/usr/sbin/fsck.fat"
MiB, GiB = 1 << 20, 1 << 30
NS = 1_000_000_000


# --------------------------------------------------------------------------- helpers and fixtures


@pytest.fixture
def img(tmp_path):
    path = tmp_path / "vol.img"
    make_image(path, 64 * MiB)  # 512-byte clusters: chains and directories span many clusters
    return path


@pytest.fixture
def fs(img):
    f = FatFileSystem.open_path(str(img))
    yield f
    f.close()


IMAGES = {
    "64M-512": (64 * MiB, 0),
    "1G-4K": (1 * GiB, 4096),
    "4G-32K": (4 * GiB, 32768),
    "8G-64K": (8 * GiB, 65536),
}


@pytest.fixture(params=list(IMAGES))
def any_img(request, tmp_path):
    size, unit = IMAGES[request.param]
    path = tmp_path / f"{request.param}.img"
    make_image(path, size, cluster_size=unit)
    return path


def reopen(img, writable=True) -> FatFileSystem:
    return FatFileSystem.open_path(str(img), writable=writable)


def pattern(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def read_all(fs: FatFileSystem, path: str) -> bytes:
    return fs.read(path, fs.stat(path).size + 10, 0)


def raw_sector(img, n: int) -> bytes:
    with open(img, "rb") as f:
        f.seek(n * 512)
        return f.read(512)


def fat1_entries(img) -> list[int]:
    """FAT[1] as stored in every FAT copy."""
    boot = raw_sector(img, 0)
    geo = parse_boot_sector(boot).geometry
    out = []
    with open(img, "rb") as f:
        for copy in range(geo.num_fats):
            f.seek(geo.fat_offset(copy) + 4)
            out.append(struct.unpack("<I", f.read(4))[0])
    return out


def dotdot_cluster(fs: FatFileSystem, path: str) -> int:
    node = fs.resolve(path)
    raw = os.pread(fs.fd, 32, fs.geo.cluster_offset(node.cluster) + 32)
    assert raw[:11] == b"..         "
    return (struct.unpack_from("<H", raw, 20)[0] << 16) | struct.unpack_from("<H", raw, 26)[0]


# --------------------------------------------------------------------------- create, stat, listdir, read, write


def test_create_stat_listdir(fs, img):
    assert fs.listdir("/") == []
    fs.create("/a.txt")
    fs.mkdir("/dir")
    fs.create("/dir/inner.bin")
    st = fs.stat("/a.txt")
    assert not st.is_dir and st.size == 0 and st.cluster == 0
    assert st.attr & ATTR_ARCHIVE
    assert stat_mod.S_ISREG(st.mode) and st.mode & 0o777 == 0o644
    dst = fs.stat("/dir")
    assert dst.is_dir and stat_mod.S_ISDIR(dst.mode) and dst.attr & ATTR_DIRECTORY
    assert dst.size == fs.cs and dst.cluster >= 3
    assert fs.stat("/").is_dir
    assert fs.listdir("/") == ["a.txt", "dir"]
    assert fs.listdir("/dir") == ["inner.bin"]
    assert [n for n, _ in fs.scandir("/")] == ["a.txt", "dir"]
    assert fs.scandir("/dir")[0][1].size == 0
    now = time.time_ns()
    assert abs(st.mtime_ns - now) < 5 * NS and abs(st.ctime_ns - now) < 5 * NS
    expect_errno(errno.ENOENT, fs.stat, "/nope")
    expect_errno(errno.ENOENT, fs.stat, "/dir/nope")
    expect_errno(errno.ENOTDIR, fs.stat, "/a.txt/x")
    expect_errno(errno.ENOTDIR, fs.listdir, "/a.txt")
    expect_errno(errno.EEXIST, fs.create, "/a.txt")
    expect_errno(errno.EEXIST, fs.mkdir, "/dir")
    expect_errno(errno.EEXIST, fs.create, "/dir")
    expect_errno(errno.ENOENT, fs.create, "/missing/x")
    expect_errno(errno.ENOTDIR, fs.create, "/a.txt/x")
    expect_errno(errno.EISDIR, fs.read, "/dir", 10, 0)
    expect_errno(errno.EISDIR, fs.write, "/dir", b"x", 0)
    fs.close()
    fsck_clean(img)
    check_clean(img)


def test_write_read_round_trip(any_img):
    fs = reopen(any_img)
    cs = fs.cs
    sizes = [1, cs - 1, cs, cs + 1, 3 * cs + 7, 100_000, 1 * MiB + 3]
    for i, n in enumerate(sizes):
        fs.create(f"/f{i}")
        data = pattern(n, i)
        assert fs.write(f"/f{i}", data, 0) == n
        assert fs.stat(f"/f{i}").size == n
        assert fs.read(f"/f{i}", n, 0) == data
        assert fs.read(f"/f{i}", n + 100, 0) == data
        assert fs.read(f"/f{i}", 10, n) == b""
        assert fs.read(f"/f{i}", 10, n + 1000) == b""
        assert fs.read(f"/f{i}", 0, 0) == b""
        if n > 10:
            assert fs.read(f"/f{i}", 5, n - 3) == data[-3:]
            mid = n // 2
            assert fs.read(f"/f{i}", 7, mid) == data[mid : mid + 7]
    # Overwrite inside, across cluster boundaries, and append.
    data = bytearray(pattern(5 * cs, 99))
    fs.create("/ow")
    fs.write("/ow", bytes(data), 0)
    for off, n in [(0, 1), (cs - 3, 6), (2 * cs + 5, cs), (5 * cs - 1, 10), (5 * cs + 9, 3)]:
        chunk = pattern(n, off)
        fs.write("/ow", chunk, off)
        if off > len(data):
            data.extend(bytes(off - len(data)))
        data[off : off + n] = chunk
    assert read_all(fs, "/ow") == bytes(data)
    assert fs.write("/ow", b"", 10**6) == 0  # an empty write changes nothing
    assert fs.stat("/ow").size == len(data)
    free = fs.statfs().free_clusters
    fs.close()
    fsck_clean(any_img)
    check_clean(any_img)
    fs = reopen(any_img, writable=False)
    assert read_all(fs, "/ow") == bytes(data)
    for i, n in enumerate(sizes):
        assert read_all(fs, f"/f{i}") == pattern(n, i)
    assert fs.statfs().free_clusters == free == fs.fat.count_free()
    fs.close()


def test_truncate_grow_zero_fills_and_shrink_frees(fs, img):
    cs = fs.cs
    free0 = fs.statfs().free_clusters
    fs.create("/t")
    fs.write("/t", b"A" * 10, 0)
    fs.truncate("/t", 10 * cs + 5)
    assert fs.stat("/t").size == 10 * cs + 5
    assert read_all(fs, "/t") == b"A" * 10 + bytes(10 * cs - 5)
    assert fs.statfs().free_clusters == free0 - 11
    fs.truncate("/t", 3 * cs)
    assert fs.statfs().free_clusters == free0 - 3
    assert read_all(fs, "/t") == b"A" * 10 + bytes(3 * cs - 10)
    fs.truncate("/t", 3 * cs - 1)
    assert fs.statfs().free_clusters == free0 - 3
    fs.truncate("/t", 1)
    assert fs.statfs().free_clusters == free0 - 1
    assert read_all(fs, "/t") == b"A"
    fs.truncate("/t", 0)
    assert fs.statfs().free_clusters == free0
    assert fs.stat("/t").cluster == 0 and fs.stat("/t").size == 0
    assert fs.read("/t", 10, 0) == b""
    fs.truncate("/t", 0)  # no-op
    expect_errno(errno.EINVAL, fs.truncate, "/t", -1)
    expect_errno(errno.EISDIR, fs.truncate, "/", 0)
    fs.truncate("/t", 2 * cs)
    assert read_all(fs, "/t") == bytes(2 * cs)
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.statfs().free_clusters == fs.fat.count_free() == free0 - 2
    fs.close()


def test_write_past_eof_zero_fills_gap(any_img):
    fs = reopen(any_img)
    cs = fs.cs
    fs.create("/g")
    fs.write("/g", b"head", 0)
    fs.write("/g", b"tail", 3 * cs + 100)
    assert fs.stat("/g").size == 3 * cs + 104
    assert read_all(fs, "/g") == b"head" + bytes(3 * cs + 96) + b"tail"
    # A write starting far past EOF of an empty file.
    fs.create("/e")
    fs.write("/e", b"Z", 2 * cs + 1)
    assert read_all(fs, "/e") == bytes(2 * cs + 1) + b"Z"
    fs.close()
    fsck_clean(any_img)


def test_stale_bytes_after_shrink_never_reappear(any_img):
    fs = reopen(any_img)
    cs = fs.cs
    fs.create("/s")
    fs.write("/s", b"\xab" * (2 * cs), 0)
    fs.truncate("/s", 100)  # the tail of the first cluster still holds 0xAB on disk
    fs.truncate("/s", 2 * cs)
    assert read_all(fs, "/s") == b"\xab" * 100 + bytes(2 * cs - 100)
    fs.truncate("/s", 50)
    fs.write("/s", b"!", cs + 10)  # write past EOF after a shrink
    assert read_all(fs, "/s") == b"\xab" * 50 + bytes(cs - 40) + b"!"
    fs.truncate("/s", 10)
    fs.write("/s", b"?", 20)  # gap inside the same cluster
    assert read_all(fs, "/s") == b"\xab" * 10 + bytes(10) + b"?"
    fs.close()
    fsck_clean(any_img)


def test_reused_clusters_read_zeros(any_img):
    """Clusters freed by one file and reused by another never leak the old data."""
    fs = reopen(any_img)
    cs = fs.cs
    fs.create("/old")
    fs.write("/old", b"\xee" * (8 * cs), 0)
    fs.unlink("/old")
    fs.create("/new")
    fs.truncate("/new", 8 * cs)
    assert read_all(fs, "/new") == bytes(8 * cs)
    fs.truncate("/new", 0)
    fs.write("/new", b"x", 6 * cs)
    assert read_all(fs, "/new") == bytes(6 * cs) + b"x"
    fs.close()
    fsck_clean(any_img)


def test_new_directory_cluster_is_zeroed(fs, img):
    """A directory cluster reused from file data (full of entry-like bytes) shows no phantom entries."""
    cs = fs.cs
    fake = bytearray()
    while len(fake) < 64 * cs:
        fake += b"PHANTOM TXT" + bytes([0x20]) + bytes(20)
    fs.create("/junk")
    fs.write("/junk", bytes(fake), 0)
    fs.unlink("/junk")
    fs.mkdir("/d")
    assert fs.listdir("/d") == []
    for i in range(3 * cs // 32):  # grow the directory into more reused clusters
        fs.create(f"/d/e{i}")
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.listdir("/d") == [f"e{i}" for i in range(3 * cs // 32)]
    fs.close()


def test_node_io_and_identity_across_rename(fs, img):
    node = fs.create("/n.txt")
    assert fs.open("/n.txt") is node
    fs.write_node(node, b"hello world", 0)
    assert fs.read_node(node, 5, 6) == b"world"
    fs.mkdir("/d")
    fs.rename("/n.txt", "/d/m.txt")
    assert fs.open("/d/m.txt") is node
    fs.write_node(node, b"!", 11)
    fs.truncate_node(node, 5)
    assert fs.read("/d/m.txt", 100, 0) == b"hello"
    fs.unlink("/d/m.txt")
    expect_errno(errno.ENOENT, fs.write_node, node, b"x", 0)
    fs.close()
    fsck_clean(img)


# --------------------------------------------------------------------------- rename


def test_rename_within_and_across_directories(fs, img):
    data = pattern(3000)
    fs.create("/a.txt")
    fs.write("/a.txt", data, 0)
    fs.rename("/a.txt", "/b.txt")
    assert fs.listdir("/") == ["b.txt"]
    assert read_all(fs, "/b.txt") == data
    expect_errno(errno.ENOENT, fs.stat, "/a.txt")
    fs.mkdir("/d1")
    fs.mkdir("/d1/d2")
    fs.rename("/b.txt", "/d1/d2/A Long Name.dat")
    assert fs.listdir("/") == ["d1"]
    assert read_all(fs, "/d1/d2/A Long Name.dat") == data
    fs.rename("/d1/d2/A Long Name.dat", "/c")
    assert read_all(fs, "/c") == data
    expect_errno(errno.ENOENT, fs.rename, "/nope", "/x")
    expect_errno(errno.ENOENT, fs.rename, "/c", "/nodir/x")
    expect_errno(errno.EBUSY, fs.rename, "/", "/x")
    fs.rename("/c", "/c")  # same name: nothing happens
    assert read_all(fs, "/c") == data
    fs.close()
    fsck_clean(img)
    check_clean(img)
    fs = reopen(img, writable=False)
    assert read_all(fs, "/c") == data
    fs.close()


def test_rename_directory_updates_dotdot(fs, img):
    fs.mkdir("/p")
    fs.mkdir("/q")
    fs.mkdir("/p/child")
    fs.create("/p/child/f")
    fs.write("/p/child/f", b"data", 0)
    assert dotdot_cluster(fs, "/p/child") == fs.stat("/p").cluster
    fs.rename("/p/child", "/q/moved")
    assert dotdot_cluster(fs, "/q/moved") == fs.stat("/q").cluster
    fs.rename("/q/moved", "/top")
    assert dotdot_cluster(fs, "/top") == 0  # '..' of a first-level directory is 0
    fs.rename("/top", "/p/back")
    assert dotdot_cluster(fs, "/p/back") == fs.stat("/p").cluster
    assert fs.read("/p/back/f", 10, 0) == b"data"
    fs.close()
    fsck_clean(img)
    check_clean(img)


def test_rename_replaces_existing_file(fs, img):
    cs = fs.cs
    free0 = fs.statfs().free_clusters
    fs.create("/src")
    fs.write("/src", b"S" * cs, 0)
    fs.create("/dst")
    fs.write("/dst", b"D" * (5 * cs), 0)
    assert fs.statfs().free_clusters == free0 - 6
    fs.rename("/src", "/dst")
    assert fs.listdir("/") == ["dst"]
    assert read_all(fs, "/dst") == b"S" * cs
    assert fs.statfs().free_clusters == free0 - 1  # the replaced file's clusters are free
    # Replacing a case variant of another file's name replaces that file.
    fs.create("/other.txt")
    fs.rename("/dst", "/OTHER.TXT")
    assert fs.listdir("/") == ["OTHER.TXT"]
    assert read_all(fs, "/other.txt") == b"S" * cs
    fs.close()
    fsck_clean(img)
    check_clean(img)


def test_rename_directory_replaces_empty_directory(fs, img):
    free0 = fs.statfs().free_clusters
    fs.mkdir("/a")
    fs.create("/a/x")
    fs.mkdir("/b")
    fs.rename("/a", "/b")
    assert fs.listdir("/") == ["b"]
    assert fs.listdir("/b") == ["x"]
    assert fs.statfs().free_clusters == free0 - 1
    fs.mkdir("/c")
    fs.create("/c/y")
    expect_errno(errno.ENOTEMPTY, fs.rename, "/b", "/c")
    expect_errno(errno.EISDIR, fs.rename, "/b/x", "/c")
    expect_errno(errno.ENOTDIR, fs.rename, "/c", "/b/x")
    assert fs.listdir("/b") == ["x"] and fs.listdir("/c") == ["y"]
    fs.close()
    fsck_clean(img)


def test_rename_directory_into_itself(fs, img):
    fs.mkdir("/a")
    fs.mkdir("/a/b")
    fs.mkdir("/a/b/c")
    expect_errno(errno.EINVAL, fs.rename, "/a", "/a/x")
    expect_errno(errno.EINVAL, fs.rename, "/a", "/a/b/c/x")
    expect_errno(errno.EINVAL, fs.rename, "/a/b", "/a/b/c/d")
    assert fs.listdir("/a/b") == ["c"]
    fs.close()
    fsck_clean(img)


def test_case_only_rename_keeps_content(fs, img):
    fs.create("/a.txt")
    fs.write("/a.txt", b"content", 0)
    node = fs.resolve("/a.txt")
    fs.rename("/a.txt", "/A.TXT")
    assert fs.listdir("/") == ["A.TXT"]
    assert fs.resolve("/a.txt") is node
    assert fs.read("/A.TXT", 100, 0) == b"content"
    fs.rename("/A.TXT", "/a.Txt")
    assert fs.listdir("/") == ["a.Txt"]
    fs.mkdir("/Dir")
    fs.create("/Dir/f")
    fs.rename("/Dir", "/DIR")
    assert fs.listdir("/") == ["a.Txt", "DIR"]
    assert fs.listdir("/dir") == ["f"]
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.listdir("/") == ["a.Txt", "DIR"]
    assert fs.read("/A.TXT", 100, 0) == b"content"
    fs.close()


def test_rename_to_own_alias(fs, img):
    fs.create("/my.file.txt")
    fs.write("/my.file.txt", b"x", 0)
    fs.rename("/my.file.txt", "/MYFILE~1.TXT")
    assert fs.listdir("/") == ["MYFILE~1.TXT"]
    assert fs.read("/myfile~1.txt", 10, 0) == b"x"
    fs.close()
    fsck_clean(img)


def test_rename_many_times_reuses_slots(fs, img):
    fs.mkdir("/r")
    fs.create("/r/f")
    fs.write("/r/f", b"payload", 0)
    for i in range(300):
        old = fs.listdir("/r")[0]
        fs.rename(f"/r/{old}", f"/r/A rather long file name number {i}.bin")
    assert fs.listdir("/r") == ["A rather long file name number 299.bin"]
    assert fs.stat("/r").size <= 8 * fs.cs  # deleted slots are reused, the directory does not keep growing
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.read("/r/A rather long file name number 299.bin", 100, 0) == b"payload"
    fs.close()


# --------------------------------------------------------------------------- mkdir, rmdir, unlink


def test_mkdir_rmdir_unlink(fs, img):
    free0 = fs.statfs().free_clusters
    fs.mkdir("/a")
    fs.mkdir("/a/b")
    fs.create("/a/b/f")
    assert fs.statfs().free_clusters == free0 - 2
    expect_errno(errno.ENOTEMPTY, fs.rmdir, "/a")
    expect_errno(errno.ENOTEMPTY, fs.rmdir, "/a/b")
    expect_errno(errno.EISDIR, fs.unlink, "/a")
    expect_errno(errno.ENOTDIR, fs.rmdir, "/a/b/f")
    expect_errno(errno.ENOENT, fs.rmdir, "/zz")
    expect_errno(errno.ENOENT, fs.unlink, "/zz")
    expect_errno(errno.EBUSY, fs.rmdir, "/")
    fs.unlink("/a/b/f")
    fs.rmdir("/a/b")
    fs.rmdir("/a")
    assert fs.listdir("/") == []
    assert fs.statfs().free_clusters == free0
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.statfs().free_clusters == free0 == fs.fat.count_free()
    fs.close()


def test_deep_tree_and_large_directories(fs, img):
    path = ""
    for i in range(30):
        path += f"/level{i}"
        fs.mkdir(path)
    fs.create(path + "/leaf")
    fs.write(path + "/leaf", b"deep", 0)
    fs.mkdir("/big")
    names = [f"entry number {i} with a long name.txt" for i in range(400)]
    for n in names:
        fs.create(f"/big/{n}")
    for n in names[::3]:
        fs.unlink(f"/big/{n}")
    for i in range(100):
        fs.create(f"/big/again{i}")
    fs.close()
    fsck_clean(img)
    check_clean(img)
    fs = reopen(img, writable=False)
    assert fs.read(path + "/leaf", 10, 0) == b"deep"
    expect = [n for i, n in enumerate(names) if i % 3] + [f"again{i}" for i in range(100)]
    assert sorted(fs.listdir("/big")) == sorted(expect)
    fs.close()


# --------------------------------------------------------------------------- case and aliases


def test_case_insensitive_lookup(fs, img):
    fs.create("/Hello.TXT")
    fs.write("/Hello.TXT", b"hi", 0)
    for variant in ("/HELLO.txt", "/hello.txt", "/hElLo.TxT"):
        assert fs.stat(variant).size == 2
        assert fs.read(variant, 10, 0) == b"hi"
    assert fs.listdir("/") == ["Hello.TXT"]  # stored as given
    fs.mkdir("/Ünïcode Dir")
    assert fs.stat("/üNÏCODE dir").is_dir
    fs.create("/ünïcode dir/ΣΙΓΜΑ")
    assert fs.listdir("/ÜNÏCODE DIR") == ["ΣΙΓΜΑ"]
    assert fs.stat("/Ünïcode Dir/σιγμα").size == 0
    for variant in ("/hello.TXT", "/HELLO.TXT"):
        expect_errno(errno.EEXIST, fs.create, variant)
        expect_errno(errno.EEXIST, fs.mkdir, variant)
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.read("/HELLO.TXT", 10, 0) == b"hi"
    fs.close()


def test_lookup_by_short_alias(fs, img):
    fs.create("/my.file.txt")
    fs.write("/my.file.txt", b"alias", 0)
    assert fs.short_name("/my.file.txt") == "MYFILE~1.TXT"
    for alias in ("/MYFILE~1.TXT", "/myfile~1.txt"):
        assert fs.read(alias, 10, 0) == b"alias"
        assert fs.resolve(alias) is fs.resolve("/my.file.txt")
    expect_errno(errno.EEXIST, fs.create, "/MYFILE~1.TXT")
    expect_errno(errno.EEXIST, fs.create, "/myfile~1.txt")
    expect_errno(errno.EEXIST, fs.mkdir, "/MYFILE~1.TXT")
    expect_errno(errno.EEXIST, fs.create, "/MY.FILE.TXT")
    # A second similar name gets ~2, and both aliases resolve to their own files.
    fs.create("/my.file2.txt")
    assert fs.short_name("/my.file2.txt") == "MYFILE~2.TXT"
    fs.create("/my file.txt")
    assert fs.short_name("/my file.txt") == "MYFILE~3.TXT"
    assert fs.resolve("/MYFILE~2.TXT") is fs.resolve("/my.file2.txt")
    assert fs.resolve("/MYFILE~3.TXT") is fs.resolve("/my file.txt")
    fs.mkdir("/Program Files")
    fs.create("/PROGRA~1/x")
    assert fs.listdir("/program files") == ["x"]
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.read("/MYFILE~1.TXT", 10, 0) == b"alias"
    assert fs.short_name("/my file.txt") == "MYFILE~3.TXT"
    fs.close()


def test_alias_freed_after_unlink(fs, img):
    fs.create("/my.file.txt")
    fs.unlink("/my.file.txt")
    fs.create("/MYFILE~1.TXT")  # the alias is free again
    fs.create("/my.file.txt")
    assert fs.short_name("/my.file.txt") == "MYFILE~2.TXT"
    fs.close()
    fsck_clean(img)


# --------------------------------------------------------------------------- times and attributes


def test_utimens_two_second_resolution(fs, img):
    fs.create("/t")
    base = int(time.mktime((2021, 6, 15, 12, 30, 40, 0, 0, -1)))
    fs.utimens("/t", base * NS, (base + 1) * NS + 123_456_789)
    st = fs.stat("/t")
    assert st.mtime_ns == base * NS  # 41.12 s truncates to 40 s
    assert st.atime_ns == int(time.mktime((2021, 6, 15, 0, 0, 0, 0, 0, -1))) * NS  # atime is a date
    fs.utimens("/t", None, (base + 3) * NS)
    assert fs.stat("/t").mtime_ns == (base + 2) * NS
    fs.utimens("/t", None, None)
    # Clamping to the FAT range.
    fs.create("/old")
    fs.utimens("/old", 0, 0)
    assert fs.stat("/old").mtime_ns == int(time.mktime((1980, 1, 1, 0, 0, 0, 0, 0, -1))) * NS
    fs.create("/future")
    fs.utimens("/future", None, int(time.mktime((2200, 1, 1, 0, 0, 0, 0, 0, -1))) * NS)
    assert fs.stat("/future").mtime_ns == int(time.mktime((2107, 12, 31, 23, 59, 58, 0, 0, -1))) * NS
    fs.mkdir("/d")
    fs.utimens("/d", None, base * NS)
    assert fs.stat("/d").mtime_ns == base * NS
    fs.utimens("/", None, base * NS)  # the root has no entry: accepted, nothing stored
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.stat("/t").mtime_ns == (base + 2) * NS
    assert fs.stat("/d").mtime_ns == base * NS
    fs.close()


def test_invalid_stored_dates_read_as_1980(fs, img):
    fs.create("/zero")
    fs.create("/bad")
    fs.close()
    fs = reopen(img, writable=False)
    offs = {}
    for name in ("zero", "bad"):
        node = fs.resolve("/" + name)
        ((off, _),) = list(fs._slot_runs(node.parent, node.slot + node.nslots - 1, 1))
        offs[name] = off
    fs.close()
    with open(img, "r+b") as f:
        f.seek(offs["zero"] + 13)
        f.write(bytes(7))  # creation tenths, time, date and access date all zero
        f.seek(offs["zero"] + 22)
        f.write(bytes(4))  # write time and date zero
        f.seek(offs["bad"] + 22)
        f.write(struct.pack("<HH", 0xFFFF, (45 << 9) | (13 << 5) | 0))  # 31:63:62, month 13, day 0
    fs = reopen(img, writable=False)
    epoch_1980 = int(time.mktime((1980, 1, 1, 0, 0, 0, 0, 0, -1))) * NS
    for name in ("zero", "bad"):
        st = fs.stat("/" + name)
        assert st.mtime_ns == epoch_1980, name
    assert decode_time(0) == epoch_1980
    assert decode_time((1 << 9) | (2 << 5) | 30, (25 << 11) | (61 << 5) | 31) == epoch_1980  # hour/min/sec invalid
    assert decode_time((41 << 9) | (6 << 5) | 15, (12 << 11) | (30 << 5) | 20) == int(
        time.mktime((2021, 6, 15, 12, 30, 40, 0, 0, -1))
    ) * NS
    fs.close()


def test_discard_returns_freed_clusters_to_the_host(tmp_path):
    path = tmp_path / "discard.img"
    make_image(path, 1 * GiB)
    fd = os.open(path, os.O_RDWR)
    try:
        fs = FatFileSystem(fd, 1 * GiB, discard=True)
        fs.create("/a")
        fs.write("/a", pattern(8 * MiB), 0)
        fs.sync()
        full = os.fstat(fd).st_blocks * 512
        assert full >= 8 * MiB
        fs.truncate("/a", 2 * MiB)
        fs.sync()
        assert os.fstat(fd).st_blocks * 512 < full - 5 * MiB
        fs.unlink("/a")
        fs.sync()
        assert os.fstat(fd).st_blocks * 512 < 1 * MiB
        fs.close()
    finally:
        os.close(fd)
    fsck_clean(path)


def test_write_updates_mtime(fs):
    fs.create("/w")
    fs.utimens("/w", None, 400_000_000 * NS)
    fs.write("/w", b"x", 0)
    assert abs(fs.stat("/w").mtime_ns - time.time_ns()) < 5 * NS


def test_dos_attributes(fs, img):
    fs.create("/f")
    assert fs.get_attributes("/f") == ATTR_ARCHIVE
    every = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM
    for attrs in (ATTR_READ_ONLY, ATTR_HIDDEN, ATTR_SYSTEM, ATTR_ARCHIVE, every, 0):
        fs.set_attributes("/f", attrs)
        assert fs.get_attributes("/f") == attrs
    fs.set_attributes("/f", ATTR_DIRECTORY | ATTR_HIDDEN)  # the directory bit is not settable
    assert fs.get_attributes("/f") == ATTR_HIDDEN
    fs.mkdir("/d")
    fs.set_attributes("/d", ATTR_HIDDEN | ATTR_SYSTEM)
    assert fs.get_attributes("/d") == ATTR_DIRECTORY | ATTR_HIDDEN | ATTR_SYSTEM
    fs.set_attributes("/d", 0)
    assert fs.stat("/d").is_dir
    expect_errno(errno.EPERM, fs.set_attributes, "/", ATTR_HIDDEN)
    fs.create("/ro", ATTR_READ_ONLY)
    assert fs.get_attributes("/ro") == ATTR_READ_ONLY | ATTR_ARCHIVE
    assert fs.stat("/ro").mode & 0o777 == 0o444
    expect_errno(errno.EACCES, fs.unlink, "/ro")
    assert "ro" in fs.listdir("/")
    fs.set_attributes("/f", ATTR_HIDDEN | ATTR_SYSTEM)
    fs.close()
    fsck_clean(img)
    fs = reopen(img)
    assert fs.get_attributes("/f") == ATTR_HIDDEN | ATTR_SYSTEM
    assert fs.get_attributes("/ro") & ATTR_READ_ONLY
    fs.set_attributes("/ro", ATTR_ARCHIVE)
    fs.unlink("/ro")
    fs.close()
    fsck_clean(img)


# --------------------------------------------------------------------------- label


def _root_label_entries(fs: FatFileSystem) -> list[bytes]:
    data = b"".join(
        os.pread(fs.fd, n * fs.cs, fs.geo.cluster_offset(s)) for s, n in fs.fat.walk(fs.geo.root_cluster)
    )
    out = []
    for off in range(0, len(data), 32):
        e = data[off : off + 32]
        if e[0] == 0:
            break
        if e[0] != 0xE5 and e[11] & 0x3F != 0x0F and e[11] & 0x08:
            out.append(e[:11])
    return out


def test_label_get_set_clear(fs, img):
    assert fs.label == ""
    for i in range(20):
        fs.create(f"/file{i}")
    fs.set_label("new label")
    assert fs.label == "NEW LABEL"
    fs.set_label("Other")
    assert fs.label == "OTHER"
    with pytest.raises(FormatError) as ei:
        fs.set_label("bad*label")
    assert ei.value.reason == "bad_label"
    assert fs.label == "OTHER"
    fs.close()
    boot = raw_sector(img, 0)
    assert boot[0x47:0x52] == b"OTHER      "
    assert raw_sector(img, 6) == boot
    fsck_clean(img)
    fs = reopen(img)
    assert fs.label == "OTHER"
    assert _root_label_entries(fs) == [b"OTHER      "]
    fs.set_label(None)
    assert fs.label == ""
    assert _root_label_entries(fs) == []
    fs.close()
    boot = raw_sector(img, 0)
    assert boot[0x47:0x52] == b"NO NAME    "
    assert raw_sector(img, 6) == boot
    fsck_clean(img)
    fs = reopen(img)
    assert fs.label == ""
    fs.set_label("")  # clearing twice is fine
    fs.set_label("AGAIN")
    fs.close()
    fsck_clean(img)
    fs = reopen(img, writable=False)
    assert fs.label == "AGAIN" and _root_label_entries(fs) == [b"AGAIN      "]
    assert len(fs.listdir("/")) == 20
    fs.close()


def test_label_of_formatted_volume_matches_root_entry(tmp_path):
    path = tmp_path / "l.img"
    make_image(path, 64 * MiB, label="Vol1")
    fs = reopen(path)
    assert fs.label == "VOL1"
    assert _root_label_entries(fs) == [b"VOL1       "]
    fs.set_label("vol2")
    fs.close()
    assert raw_sector(path, 0)[0x47:0x52] == b"VOL2       "
    fsck_clean(path)


# --------------------------------------------------------------------------- persistence


def test_close_reopen_persists_everything(fs, img):
    base = int(time.mktime((2020, 2, 29, 23, 58, 10, 0, 0, -1))) * NS
    tree = {
        "/docs/Report 2020.docx": pattern(12345, 1),
        "/docs/notes.txt": b"plain",
        "/docs/sub/deeper/x.bin": pattern(70000, 2),
        "/README": b"",
        "/Ünïcode ファイル.txt": "héllo".encode(),
        "/" + "L" * 200: b"long",
    }
    fs.set_label("persist")
    for path, data in tree.items():
        parts = path.split("/")[1:-1]
        for i in range(len(parts)):
            d = "/" + "/".join(parts[: i + 1])
            try:
                fs.mkdir(d)
            except FsOpError as e:
                assert e.errno == errno.EEXIST
        fs.create(path)
        fs.write(path, data, 0)
        fs.utimens(path, None, base)
    fs.set_attributes("/README", ATTR_HIDDEN | ATTR_READ_ONLY)
    fs.mkdir("/empty")
    fs.close()
    fsck_clean(img)
    check_clean(img)
    fs = reopen(img)
    assert fs.label == "PERSIST"
    for path, data in tree.items():
        assert read_all(fs, path) == data
        st = fs.stat(path)
        assert st.size == len(data) and st.mtime_ns == base
    assert fs.get_attributes("/README") == ATTR_HIDDEN | ATTR_READ_ONLY
    assert fs.listdir("/empty") == []
    assert sorted(fs.listdir("/docs")) == sorted(["notes.txt", "Report 2020.docx", "sub"])
    # Modify after reopen (entries loaded from disk, some with long names), then check again.
    fs.write("/docs/Report 2020.docx", b"more", 12345)
    fs.rename("/docs/notes.txt", "/docs/Notes Renamed.txt")
    fs.truncate("/docs/sub/deeper/x.bin", 10)
    fs.unlink("/" + "L" * 200)
    fs.close()
    fsck_clean(img)
    check_clean(img)
    fs = reopen(img, writable=False)
    assert read_all(fs, "/docs/Report 2020.docx") == pattern(12345, 1) + b"more"
    assert read_all(fs, "/docs/Notes Renamed.txt") == b"plain"
    assert read_all(fs, "/docs/sub/deeper/x.bin") == pattern(70000, 2)[:10]
    fs.close()


def test_entries_loaded_from_disk_with_long_names_are_updated_in_place(fs, img):
    """Growing files whose entries have LFN slots after a reopen: the short entry is rewritten, not an LFN slot."""
    names = [f"A long file name number {i}.data" for i in range(10)]
    for n in names:
        fs.create("/" + n)
        fs.write("/" + n, b"1", 0)
    fs.close()
    fs = reopen(img)
    for i, n in enumerate(names):
        fs.write("/" + n, b"2" * (i + 1), 1)
        fs.set_attributes("/" + n, ATTR_ARCHIVE | ATTR_HIDDEN)
    fs.close()
    fsck_clean(img)
    check_clean(img)
    fs = reopen(img, writable=False)
    assert fs.listdir("/") == names
    for i, n in enumerate(names):
        assert read_all(fs, "/" + n) == b"1" + b"2" * (i + 1)
        assert fs.get_attributes("/" + n) == ATTR_ARCHIVE | ATTR_HIDDEN
    fs.close()


# --------------------------------------------------------------------------- dirty markers, FSInfo, sparse


def test_dirty_markers(img):
    before = raw_sector(img, 0)
    assert before[0x41] & 1 == 0
    assert all(v & 0x08000000 for v in fat1_entries(img))
    fs = reopen(img)
    fs.create("/x")
    boot = raw_sector(img, 0)
    assert boot[0x41] & 1 == 1  # BS_Reserved1 dirty
    assert all(not v & 0x08000000 for v in fat1_entries(img))  # FAT[1] clean bit clear in both FATs
    assert all(v & 0x04000000 for v in fat1_entries(img))  # no-hard-error bit kept
    fs.close()
    boot = raw_sector(img, 0)
    assert boot[0x41] & 1 == 0
    assert all(v & 0x08000000 for v in fat1_entries(img))
    assert raw_sector(img, 6) == boot
    assert raw_sector(img, 7) == raw_sector(img, 1)
    fsck_clean(img)


def test_dirty_while_open_fsck_complains(img):
    fs = reopen(img)
    fs.create("/x")
    fs.flush()
    proc = subprocess.run([FSCK, "-n", str(img)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    fs.close()
    fsck_clean(img)


def test_read_only_open_changes_nothing(img):
    with open(img, "rb") as f:
        head = f.read(64 * 1024)
    fs = reopen(img, writable=False)
    assert fs.listdir("/") == []
    expect_errno(errno.EROFS, fs.create, "/x")
    expect_errno(errno.EROFS, fs.mkdir, "/x")
    expect_errno(errno.EROFS, fs.set_label, "X")
    fs.close()
    with open(img, "rb") as f:
        assert f.read(64 * 1024) == head


def test_closed_fs_refuses_operations(img):
    fs = reopen(img)
    fs.close()
    fs.close()  # idempotent
    expect_errno(errno.EIO, fs.stat, "/")
    expect_errno(errno.EIO, fs.create, "/x")


def test_abandon_leaves_dirty_and_reopen_recounts(img):
    fs = reopen(img)
    fs.create("/f")
    fs.write("/f", b"x" * 5000, 0)
    fs.sync()
    fs.abandon()
    assert raw_sector(img, 0)[0x41] & 1
    fs = reopen(img)
    assert fs.was_dirty
    assert fs.statfs().free_clusters == fs.fat.count_free()
    assert read_all(fs, "/f") == b"x" * 5000
    fs.close()
    fsck_clean(img)


def test_mark_clean_checkpoint_then_redirty(img):
    fs = reopen(img)
    fs.create("/a")
    fs.mark_clean()
    assert raw_sector(img, 0)[0x41] & 1 == 0
    fsck_clean(img)
    fs.create("/b")  # the next change marks it dirty again
    assert raw_sector(img, 0)[0x41] & 1 == 1
    fs.close()
    fsck_clean(img)


def test_fsinfo_free_count_exact_after_close(any_img):
    fs = reopen(any_img)
    rnd = random.Random(5)
    for i in range(40):
        fs.create(f"/f{i}")
        fs.write(f"/f{i}", b"x" * rnd.randrange(1, 20 * fs.cs), 0)
    for i in range(0, 40, 3):
        fs.unlink(f"/f{i}")
    for i in range(1, 40, 3):
        fs.truncate(f"/f{i}", rnd.randrange(0, 5 * fs.cs))
    fs.mkdir("/d")
    fs.close()
    info = parse_fsinfo(raw_sector(any_img, 1))
    assert info is not None
    free, nxt = info
    fs = reopen(any_img, writable=False)
    assert free == fs.fat.count_free() == fs.statfs().free_clusters
    assert 2 <= nxt <= fs.geo.max_cluster
    fs.close()
    assert raw_sector(any_img, 7) == raw_sector(any_img, 1)
    fsck_clean(any_img)


def test_fresh_image_is_sparse(tmp_path):
    path = tmp_path / "sparse.img"
    make_image(path, 1 * GiB)
    assert os.stat(path).st_size == 1 * GiB
    assert os.stat(path).st_blocks * 512 < 256 * 1024
    fs = reopen(path)
    fs.create("/f")
    fs.write("/f", b"x", 0)
    fs.truncate("/f", 100 * MiB)  # zero-filling a large range punches instead of writing
    fs.close()
    assert os.stat(path).st_blocks * 512 < 2 * MiB
    fsck_clean(path)


# --------------------------------------------------------------------------- random workload against a model


@pytest.mark.parametrize("seed", list(range(1, 9)))
def test_random_workload_matches_model(tmp_path, seed):
    path = tmp_path / "rw.img"
    make_image(path, 64 * MiB)
    rnd = random.Random(seed)
    files: dict[str, bytearray] = {}
    dirs = {"/"}
    fs = reopen(path)
    cs = fs.cs

    def join(d, n):
        return "/" + n if d == "/" else d + "/" + n

    def fresh_name():
        stem = rnd.choice(["f", "File ", "long file name ", "x.y.", "ÄÖ", "My.File.", "UPPER"])
        return stem + str(rnd.randrange(10**6)) + rnd.choice(["", ".txt", ".Dat", ".jpeg", ".TXT"])

    def under(p, d):
        return p.startswith(d + "/")

    def reopen_now():
        nonlocal fs
        fs.close()
        fs = reopen(path)

    for _step in range(600):
        op = rnd.random()
        if op < 0.16 or not files:
            p = join(rnd.choice(sorted(dirs)), fresh_name())
            fs.create(p)
            files[p] = bytearray()
        elif op < 0.21:
            p = join(rnd.choice(sorted(dirs)), "dir" + str(rnd.randrange(10**6)))
            fs.mkdir(p)
            dirs.add(p)
        elif op < 0.46:
            p = rnd.choice(sorted(files))
            off = rnd.randrange(0, len(files[p]) + 3 * cs)
            data = rnd.randbytes(rnd.randrange(1, 4 * cs))
            fs.write(p, data, off)
            buf = files[p]
            if off > len(buf):
                buf.extend(bytes(off - len(buf)))
            buf[off : off + len(data)] = data
        elif op < 0.58:
            p = rnd.choice(sorted(files))
            n = rnd.randrange(0, len(files[p]) + 5 * cs)
            fs.truncate(p, n)
            buf = files[p]
            if n < len(buf):
                del buf[n:]
            else:
                buf.extend(bytes(n - len(buf)))
        elif op < 0.66:
            p = rnd.choice(sorted(files))
            fs.unlink(p)
            del files[p]
        elif op < 0.76:
            p = rnd.choice(sorted(files))
            q = join(rnd.choice(sorted(dirs)), fresh_name())
            fs.rename(p, q)
            files[q] = files.pop(p)
        elif op < 0.80 and len(files) > 1:
            # replace an existing file (POSIX rename)
            p, q = rnd.sample(sorted(files), 2)
            fs.rename(p, q)
            files[q] = files.pop(p)
        elif op < 0.84 and len(dirs) > 1:
            d = rnd.choice(sorted(dirs - {"/"}))
            targets = [t for t in sorted(dirs) if t != d and not under(t, d)]
            q = join(rnd.choice(targets), "moved" + str(rnd.randrange(10**6)))
            fs.rename(d, q)
            for old in [x for x in dirs if x == d or under(x, d)]:
                dirs.remove(old)
                dirs.add(q + old[len(d) :])
            for old in [x for x in files if under(x, d)]:
                files[q + old[len(d) :]] = files.pop(old)
        elif op < 0.87 and len(dirs) > 1:
            d = rnd.choice(sorted(dirs - {"/"}))
            empty = not any(under(x, d) for x in list(files) + list(dirs))
            if empty:
                fs.rmdir(d)
                dirs.remove(d)
            else:
                expect_errno(errno.ENOTEMPTY, fs.rmdir, d)
        elif op < 0.89:
            reopen_now()
        else:
            p = rnd.choice(sorted(files))
            assert fs.read(p, len(files[p]) + 1, 0) == bytes(files[p])
    used = sum(-(-len(b) // cs) for b in files.values())
    fs.close()
    fsck_clean(path)
    check_clean(path)
    fs = reopen(path, writable=False)
    for p, buf in files.items():
        assert read_all(fs, p) == bytes(buf), p
    for d in dirs:
        names = {
            x.rsplit("/", 1)[1] for x in list(files) + list(dirs) if x != "/" and (x.rsplit("/", 1)[0] or "/") == d
        }
        assert set(fs.listdir(d)) == names, d
    total = fs.geo.cluster_count
    expected_free = total - 1 - used - (len(dirs) - 1) - _extra_dir_clusters(fs, dirs)
    assert fs.statfs().free_clusters == fs.fat.count_free() == expected_free
    fs.close()


def _extra_dir_clusters(fs: FatFileSystem, dirs) -> int:
    """Directory clusters beyond the first of each directory (the root's first is counted separately)."""
    extra = 0
    for d in dirs:
        node = fs.resolve(d)
        extra += sum(n for _, n in fs.fat.walk(node.cluster)) - 1
    return extra


# --------------------------------------------------------------------------- images made by other tools


MKFS = "/usr/sbin/mkfs.fat"


@pytest.mark.parametrize("sector_size", [512, 1024, 2048, 4096])
def test_mkfs_images_with_large_sectors(tmp_path, sector_size):
    path = tmp_path / f"s{sector_size}.img"
    proc = subprocess.run(
        [MKFS, "-F", "32", "-S", str(sector_size), "-s", "1", "-n", "SECT", "-C", str(path), str(300 * 1024)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    fs = reopen(path)
    assert fs.geo.bytes_per_sector == sector_size and fs.cs == sector_size
    assert fs.label == "SECT"
    assert fs.statfs().free_clusters == fs.fat.count_free()
    data = pattern(50_000)
    fs.mkdir("/d")
    fs.create("/d/Long Name File.txt")
    fs.write("/d/Long Name File.txt", data, 0)
    for i in range(2 * sector_size // 32):
        fs.create(f"/d/f{i}")
    fs.set_label("NEWL")
    fs.close()
    fsck_clean(path)
    check_clean(path)
    with open(path, "rb") as f:
        head = f.read(7 * sector_size)
    assert head[6 * sector_size :] == head[:sector_size]  # the backup boot sector is current
    fs = reopen(path, writable=False)
    assert read_all(fs, "/d/Long Name File.txt") == data
    assert fs.label == "NEWL"
    fs.close()


def _mtools_env(tmp_path):
    rc = tmp_path / "mtoolsrc"
    rc.write_text("DEFAULT_CODEPAGE=437\n")
    return dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=str(rc))


@pytest.mark.skipif(not os.path.exists("/usr/bin/mcopy"), reason="mtools not installed")
def test_round_trip_with_mtools(tmp_path):
    path = tmp_path / "mt.img"
    proc = subprocess.run(
        [MKFS, "-F", "32", "-n", "MTOOLS", "-C", str(path), str(600 * 1024)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    env = _mtools_env(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    files = {"readme.txt": b"hello from mtools", "A Long Name From Mtools.data": pattern(70_000, 3), "MIXED.Case": b"m"}
    for name, data in files.items():
        (host / name).write_bytes(data)
    subprocess.run(["mmd", "-i", str(path), "::/sub"], check=True, env=env, capture_output=True)
    for name in files:
        cmd = ["mcopy", "-i", str(path), str(host / name), "::/sub/"]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
    # simvol reads what mtools wrote, and changes it.
    fs = reopen(path)
    assert sorted(fs.listdir("/sub")) == sorted(files)
    for name, data in files.items():
        assert read_all(fs, f"/sub/{name}") == data
    fs.write("/sub/readme.txt", b" and simvol", len(files["readme.txt"]))
    fs.rename("/sub/A Long Name From Mtools.data", "/renamed by simvol.data")
    fs.unlink("/sub/MIXED.Case")
    fs.mkdir("/from simvol")
    fs.create("/from simvol/new file.txt")
    fs.write("/from simvol/new file.txt", b"simvol wrote this", 0)
    fs.close()
    fsck_clean(path)
    # mtools reads what simvol wrote.
    out = tmp_path / "out"
    out.mkdir()
    for src, want in [
        ("::/sub/readme.txt", b"hello from mtools and simvol"),
        ("::/renamed by simvol.data", files["A Long Name From Mtools.data"]),
        ("::/from simvol/new file.txt", b"simvol wrote this"),
    ]:
        dst = out / "x"
        subprocess.run(["mcopy", "-o", "-i", str(path), src, str(dst)], check=True, env=env, capture_output=True)
        assert dst.read_bytes() == want
    listing = subprocess.run(["mdir", "-b", "-i", str(path), "::/sub"], env=env, capture_output=True, text=True)
    assert listing.stdout.split() == ["::/sub/readme.txt"]

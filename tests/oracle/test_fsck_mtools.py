"""The engine against independent FAT32 implementations: fsck.fat checks, mtools reads and writes.

Engine → oracles: after each workload the closed image is fsck.fat-clean and mtools lists the same tree
(exact long names) and reads every file byte for byte. Oracles → engine: mkfs.fat formats, mtools writes a
tree, the engine reads it identically, modifies it, and the oracles accept the result. Labels both ways.
"""

from __future__ import annotations

import calendar
import errno
import os
import random
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from simvol.fat import ATTR_ARCHIVE, ATTR_HIDDEN, ATTR_READ_ONLY, ATTR_SYSTEM, FatFileSystem
from tests.support import fatoracle as O

MiB = 1 << 20

# (cluster size, volume size): 512 B clusters on a small volume, 4 KiB ones need >= 65,527 clusters.
GEOMETRIES = [pytest.param(512, 40 * MiB, id="512B"), pytest.param(4096, 300 * MiB, id="4KiB")]


class Driver:
    """Runs operations on the engine and keeps the expected tree (exact names → bytes) alongside."""

    def __init__(self, fs: FatFileSystem, seed: int) -> None:
        self.fs = fs
        self.rnd = random.Random(seed)
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()

    def data(self, n: int) -> bytes:
        return self.rnd.randbytes(n)

    def mkdir(self, p: str) -> None:
        self.fs.mkdir(p)
        self.dirs.add(p)

    def create(self, p: str, data: bytes = b"") -> None:
        self.fs.create(p)
        if data:
            assert self.fs.write(p, data, 0) == len(data)
        self.files[p] = data

    def write(self, p: str, data: bytes, off: int) -> None:
        assert self.fs.write(p, data, off) == len(data)
        old = self.files[p]
        if off > len(old):
            old += bytes(off - len(old))
        self.files[p] = old[:off] + data + old[off + len(data) :]

    def truncate(self, p: str, n: int) -> None:
        self.fs.truncate(p, n)
        old = self.files[p]
        self.files[p] = old[:n] + bytes(max(0, n - len(old)))

    def unlink(self, p: str) -> None:
        self.fs.unlink(p)
        del self.files[p]

    def rmdir(self, p: str) -> None:
        self.fs.rmdir(p)
        self.dirs.remove(p)

    def rename(self, a: str, b: str) -> None:
        self.fs.rename(a, b)
        if a in self.files:
            data = self.files.pop(a)
            for k in [k for k in self.files if k.upper() == b.upper()]:
                del self.files[k]  # replaced
            self.files[b] = data
            return
        self.dirs.remove(a)
        for k in [k for k in self.dirs if k.upper() == b.upper()]:
            self.dirs.remove(k)  # an empty directory replaced
        self.dirs.add(b)
        for coll in (self.files, self.dirs):
            moved = [k for k in coll if k.startswith(a + "/")]
            for k in moved:
                nk = b + k[len(a) :]
                if isinstance(coll, dict):
                    coll[nk] = coll.pop(k)
                else:
                    coll.remove(k)
                    coll.add(nk)


# --------------------------------------------------------------------------- workloads


def many_small_files(d: Driver) -> None:
    cs = d.fs.cs
    d.mkdir("/small")
    for i in range(80):
        d.create(f"/r{i:03d}.dat", d.data(d.rnd.randrange(0, 2 * cs + 2)))
    for i in range(320):
        name = f"f{i:04d}.bin" if i % 3 else f"Small File {i}.txt"
        d.create(f"/small/{name}", d.data(d.rnd.choice([0, 1, cs - 1, cs, cs + 1, d.rnd.randrange(3 * cs)])))


def deep_tree(d: Driver) -> None:
    path = ""
    for depth in range(24):
        name = f"level{depth:02d}" if depth % 4 else f"Level {depth} with a Long Name"
        path = f"{path}/{name}"
        d.mkdir(path)
        d.create(f"{path}/file-at-depth-{depth}.txt", d.data(d.rnd.randrange(1, 3000)))
        if depth % 5 == 0:
            d.mkdir(f"{path}/empty")


LONG_NAMES = [
    "Ünïcødé 文件.txt",
    "ReadMe2.Txt",  # mixed case, not lossy: LFN without a tail
    "my.file.txt",  # several periods: ~1 alias
    "UPPER.TXT",
    "lower.txt",
    "lowerb.TXT",
    "with space.txt",
    "ab+cd,ef;gh=ij[kl]mn.txt",
    ".leading period",
    # No characters outside the BMP here: mtools 4.0.32 shows a UTF-16 surrogate pair as "__".
    "x" * 251 + ".txt",  # 255 UTF-16 units, the maximum
    "文" * 255,
    "a" * 12,
    "b" * 13,  # exactly one LFN slot
    "c" * 14,
    "d" * 26,  # exactly two
    "Ñandú.tar.gz",
    "e",
    "12345678.123",
    "ÄÖÜ.äöü",
    "Straße",
]


def long_unicode_names(d: Driver) -> None:
    d.mkdir("/Ünïcødé Dïr 目录")
    d.mkdir("/lfn")
    for base in ("", "/Ünïcødé Dïr 目录", "/lfn"):
        for i, name in enumerate(LONG_NAMES):
            d.create(f"{base}/{name}", d.data(i * 37))
    # Many names with the same 6-character start: ~1..~4, then hashed aliases.
    for i in range(14):
        d.create(f"/lfn/longfilename number {i}.text", d.data(i))
    # Case variants and aliases are the same file.
    for bad in ("/lfn/readme2.txt", "/lfn/README2.TXT", "/lfn/MYFILE~1.TXT", "/LOWER.TXT", "/STRAßE"):
        with pytest.raises(OSError) as ei:
            d.fs.create(bad)
        assert ei.value.errno == errno.EEXIST, bad
    # Case-insensitive character by character, as Windows: "STRASSE" is not a case variant of "Straße".
    d.create("/STRASSE", b"distinct")


def renames(d: Driver) -> None:
    d.mkdir("/a")
    d.mkdir("/b")
    d.mkdir("/a/sub")
    d.mkdir("/a/sub/inner")
    for i in range(20):
        d.create(f"/a/file {i}.txt", d.data(100 * i))
        d.create(f"/a/sub/s{i}.dat", d.data(i * 513))
    d.create("/a/sub/inner/deep.txt", b"deep")
    for i in range(0, 20, 2):
        d.rename(f"/a/file {i}.txt", f"/b/moved file {i}.txt")  # across directories, long → long
    d.rename("/a/file 1.txt", "/a/FILE 1.TXT")  # case change in place
    d.rename("/a/file 3.txt", "/a/f3.txt")  # long → short
    d.rename("/a/f3.txt", "/b/Back To A Long Name.txt")
    d.rename("/a/file 5.txt", "/b/moved file 2.txt")  # replaces an existing file
    d.rename("/a/sub", "/b/Sub Renamed")  # a directory moves: its '..' must follow
    d.rename("/b/Sub Renamed/inner", "/inner at root")  # '..' becomes 0 (root)
    d.rename("/inner at root", "/b/Sub Renamed/s1.dir")
    d.mkdir("/b/empty target")
    d.rename("/a", "/b/empty target")  # a directory replaces an empty directory
    d.rename("/b/empty target/file 7.txt", "/b/empty target/FILE 7.txt")


def deletes(d: Driver) -> None:
    for dname in ("/del", "/del/sub1", "/del/sub2"):
        d.mkdir(dname)
    names = []
    for i in range(150):
        p = f"/del/{'x' * (i % 7)}entry number {i}.bin" if i % 2 else f"/del/e{i}.bin"
        d.create(p, d.data(d.rnd.randrange(0, 5000)))
        names.append(p)
    for i in range(10):
        d.create(f"/del/sub1/f{i}", d.data(600))
    for p in names[::2]:
        d.unlink(p)
    for i in range(10):
        d.unlink(f"/del/sub1/f{i}")
    d.rmdir("/del/sub1")
    d.rmdir("/del/sub2")
    # New names land in the freed slots (long names need runs of several).
    for i in range(60):
        d.create(f"/del/reused slot name {i:03d}.dat", d.data(d.rnd.randrange(0, 3000)))
    d.mkdir("/del/sub1")
    try:
        d.fs.rmdir("/del")
    except OSError as e:
        assert e.errno == errno.ENOTEMPTY
    else:
        raise AssertionError("rmdir of a non-empty directory succeeded")


def truncates(d: Driver) -> None:
    cs = d.fs.cs
    d.mkdir("/t")
    sizes = [0, 1, cs - 1, cs, cs + 1, 5 * cs + 7, 40 * cs]
    for i, n in enumerate(sizes):
        d.create(f"/t/file{i}.bin", d.data(n))
    for i, n in enumerate(sizes):
        p = f"/t/file{i}.bin"
        d.truncate(p, n // 2)
        d.truncate(p, n + 3 * cs + 5)  # grow again: the old bytes must come back as zeros
        d.write(p, b"tail", n + 3 * cs + 5 + 1000)  # write past EOF: a zero gap
    d.create("/t/shrink to zero.txt", d.data(10 * cs))
    d.truncate("/t/shrink to zero.txt", 0)
    d.create("/t/grown from zero.txt")
    d.truncate("/t/grown from zero.txt", 7 * cs + 1)
    # Clusters freed by shrinking are reused by another file: its contents must be its own.
    d.create("/t/reuser.bin", d.data(20 * cs))


def big_directory(d: Driver) -> None:
    d.mkdir("/big")
    for i in range(600):
        d.create(f"/big/a rather long file name number {i:04d}.txt", d.data(i % 50))
    for i in range(0, 600, 3):
        d.unlink(f"/big/a rather long file name number {i:04d}.txt")
    for i in range(100):
        d.mkdir(f"/big/dir{i}") if i % 10 == 0 else d.create(f"/big/s{i}.x", b"")
    assert d.fs.stat("/big").size >= 10 * d.fs.cs  # many clusters, 4 KiB ones too


def large_files(d: Driver) -> None:
    chunk = 64 * 1024
    d.mkdir("/large")
    paths = [f"/large/interleaved {k}.bin" for k in range(3)]
    for p in paths:
        d.create(p)
    for i in range(24):  # interleaved appends fragment the chains
        for p in paths:
            d.write(p, d.data(chunk), i * chunk)
    d.create("/large/one go.bin", d.data(5 * MiB + 123))
    for _ in range(30):  # overwrites at random offsets, some straddling clusters and EOF
        p = d.rnd.choice(paths)
        size = len(d.files[p])
        off = d.rnd.randrange(0, size + 3000)
        d.write(p, d.data(d.rnd.randrange(1, 9000)), off)
    d.create("/large/sparse tail.bin")
    d.write("/large/sparse tail.bin", b"end", 3 * MiB)


WORKLOADS: list[Callable[[Driver], None]] = [
    many_small_files,
    deep_tree,
    long_unicode_names,
    renames,
    deletes,
    truncates,
    big_directory,
    large_files,
]


@pytest.mark.parametrize("cs,size", GEOMETRIES)
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.__name__)
def test_engine_image_passes_fsck_and_mtools(tmp_path: Path, workload, cs: int, size: int) -> None:
    img = tmp_path / "vol.img"
    O.make_volume(img, size, cluster_size=cs, label="ORACLE")
    fs = FatFileSystem.open_path(str(img))
    d = Driver(fs, seed=zlib.crc32(workload.__name__.encode()) ^ cs)
    workload(d)
    files, dirs = O.engine_tree(fs)
    assert dirs == d.dirs
    assert files == d.files
    fs.close()
    O.fsck_clean(img, context=workload.__name__)
    O.assert_mtools_sees(img, d.files, d.dirs, tmpdir=tmp_path)
    # Reopened, the engine reads back the same tree, and a read-only open leaves the image clean.
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert not fs.was_dirty
        files, dirs = O.engine_tree(fs)
    assert files == d.files and dirs == d.dirs
    O.fsck_clean(img, context=f"{workload.__name__}, after a read-only open")
    # Entries loaded from disk (not made in this session) are renamed, deleted and resized.
    d.fs = fs = FatFileSystem.open_path(str(img))
    churn_loaded_entries(d)
    fs.close()
    O.fsck_clean(img, context=f"{workload.__name__}, after changing loaded entries")
    O.assert_mtools_sees(img, d.files, d.dirs, tmpdir=tmp_path / "second")
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        files, dirs = O.engine_tree(fs)
    assert files == d.files and dirs == d.dirs


def churn_loaded_entries(d: Driver) -> None:
    """Rename, delete, append to and truncate a sample of the entries of a reopened image."""
    rnd = d.rnd
    paths = sorted(d.files)
    rnd.shuffle(paths)
    targets = sorted(d.dirs | {""})
    for i, p in enumerate(paths[:60]):
        op = i % 4
        if op == 0:
            d.unlink(p)
        elif op == 1:
            dest = f"{rnd.choice(targets)}/renamed {i} {p.rsplit('/', 1)[1][:40]}"
            if any(k.upper() == dest.upper() for k in d.files) or any(k.upper() == dest.upper() for k in d.dirs):
                continue
            d.rename(p, dest)
            targets = sorted(d.dirs | {""})
        elif op == 2:
            d.write(p, d.data(rnd.randrange(1, 3 * d.fs.cs)), len(d.files[p]) + rnd.randrange(0, 2000))
        else:
            d.truncate(p, len(d.files[p]) // 3)
    # Directories move too ('..' of loaded directories) and empty ones go.
    for dname in sorted(d.dirs, key=len, reverse=True)[:5]:
        if not any(k.startswith(dname + "/") for k in list(d.files) + list(d.dirs)):
            d.rmdir(dname)
    movable = sorted((x for x in d.dirs if x.count("/") >= 2), key=len)[:3]
    for i, dname in enumerate(movable):
        if dname in d.dirs:
            d.rename(dname, f"/moved dir {i}")
    d.create("/created after reopen.txt", d.data(d.fs.cs * 3 + 1))


def test_fsck_notices_a_dirty_engine_image(tmp_path: Path) -> None:
    """The oracle itself: an image left open (dirty) must not pass as clean."""
    img = tmp_path / "vol.img"
    O.make_volume(img, 40 * MiB, cluster_size=512)
    fs = FatFileSystem.open_path(str(img))
    fs.create("/file.txt")
    fs.write("/file.txt", b"x" * 1000, 0)
    fs.sync()
    rc, out = O.fsck(img)
    fs.abandon()
    assert rc != 0, out


# --------------------------------------------------------------------------- oracles → engine

MKFS_CASES = [
    pytest.param(512, 1, 64 * 1024, id="S512-s1-64MiB"),
    pytest.param(512, 8, 300 * 1024, id="S512-s8-300MiB"),
    pytest.param(4096, 1, 300 * 1024, id="S4096-s1-300MiB"),
    pytest.param(2048, 2, 300 * 1024, id="S2048-s2-300MiB"),
]

MTOOLS_NAMES = [
    "README.TXT",
    "notes.txt",
    "MixedCase.Txt",
    "Long File Name.txt",
    "another long name.document",
    "my.file.txt",
    "ab+cd.txt",
    "Ünïcødé 文件.txt",
    "名前.txt",
    "UPPER",
    "x" * 200 + ".dat",
    "longfilename number 1.txt",
    "longfilename number 2.txt",
    "longfilename number 3.txt",
    "Straße",
    "STRASSE",  # distinct from "Straße" on Windows (and for mtools): both must be visible
]


def _build_mtools_tree(img: Path, tmp: Path, rnd: random.Random) -> tuple[dict[str, bytes], set[str]]:
    dirs = ["/Docs", "/Docs/Sub Dir", "/Ünï Dir", "/deep", "/deep/a", "/deep/a/b", "/deep/a/b/Cee", "/empty"]
    files: dict[str, bytes] = {}
    for dname in dirs:
        O.mmd(img, dname)
    for parent in ("", "/Docs", "/Docs/Sub Dir", "/Ünï Dir", "/deep/a/b/Cee"):
        for name in MTOOLS_NAMES:
            data = rnd.randbytes(rnd.choice([0, 1, 511, 512, 513, 4096, 4097, rnd.randrange(1, 200_000)]))
            O.mcopy_write(img, f"{parent}/{name}", data, tmp)
            files[f"{parent}/{name}"] = data
    big = rnd.randbytes(3 * MiB + 17)
    O.mcopy_write(img, "/Docs/big.bin", big, tmp)
    files["/Docs/big.bin"] = big
    return files, set(dirs)


@pytest.mark.parametrize("sector,spc,kib", MKFS_CASES)
def test_mkfs_mtools_image_read_and_modified_by_engine(tmp_path: Path, sector: int, spc: int, kib: int) -> None:
    img = tmp_path / "ref.img"
    O.mkfs(img, kib, spc=spc, sector=sector, label="REFVOL")
    O.fsck_clean(img, context="fresh mkfs.fat image")
    rnd = random.Random(sector * 1000 + spc)
    files, dirs = _build_mtools_tree(img, tmp_path, rnd)
    # Some deletions by mtools leave free slot runs (long-name slots included) for the engine to reuse.
    for p in ("/another long name.document", "/Docs/my.file.txt", "/Docs/README.TXT"):
        O.mtool("mdel", "-i", str(img), "::" + p)
        del files[p]
    O.mtool("mmd", "-i", str(img), "::/to be removed")
    O.mtool("mrd", "-i", str(img), "::/to be removed")
    O.fsck_clean(img, context="after mtools wrote the tree")
    m_files, m_dirs = O.mdir_tree(img)
    assert m_files == set(files) and m_dirs == dirs, "mtools does not list the names it was given"

    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert fs.cs == sector * spc
        assert fs.label == "REFVOL"
        e_files, e_dirs = O.engine_tree(fs)
        assert e_dirs == dirs
        assert set(e_files) == set(files)
        for p, data in files.items():
            assert e_files[p] == data, f"engine reads {p} differently from what mtools wrote"
        # The stored 8.3 aliases, as both read them.
        for p in ("/Long File Name.txt", "/my.file.txt", "/Ünïcødé 文件.txt", "/Docs/MixedCase.Txt", "/UPPER"):
            assert fs.short_name(p) == O.mshortname(img, p), p
    O.fsck_clean(img, context="after a read-only engine open")

    # Modify through the engine.
    fs = FatFileSystem.open_path(str(img))
    d = Driver(fs, seed=7)
    d.files, d.dirs = dict(files), set(dirs)
    for bad in ("/LONGFI~1.TXT", "/long file name.TXT", "/readme.txt"):  # alias and case variants exist
        with pytest.raises(OSError) as ei:
            fs.create(bad)
        assert ei.value.errno == errno.EEXIST, bad
    d.create("/Docs/Engine Ñew file.txt", d.data(10_000))
    d.write("/Docs/notes.txt", d.data(70_000), len(files["/Docs/notes.txt"]))  # append
    d.write("/README.TXT", b"overwritten head", 0)
    d.truncate("/Docs/big.bin", MiB + 1)
    d.rename("/Docs/Long File Name.txt", "/deep/a/b/Moved Long Name.txt")
    d.rename("/Docs/Sub Dir", "/deep/Sub Dir Moved")  # '..' of a directory made by mtools
    d.unlink("/Ünï Dir/名前.txt")
    d.rmdir("/empty")
    d.mkdir("/New Dir from Engine")
    for i in range(40):
        d.create(f"/New Dir from Engine/child {i}.txt", d.data(i * 50))
    fs.set_label("ENGINE LBL")
    fs.close()
    O.fsck_clean(img, context="after engine modifications")
    O.assert_mtools_sees(img, d.files, d.dirs, tmpdir=tmp_path)
    assert O.mlabel_show(img) == "ENGINE LBL"
    # mtools can still write where the engine left off.
    O.mcopy_write(img, "/New Dir from Engine/from mtools again.txt", b"hello", tmp_path)
    O.mmd(img, "/New Dir from Engine/mtools dir")
    O.fsck_clean(img, context="mtools after the engine")
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert fs.read("/New Dir from Engine/from mtools again.txt", 100, 0) == b"hello"
        assert "mtools dir" in fs.listdir("/New Dir from Engine")


# --------------------------------------------------------------------------- labels


def test_label_written_by_engine_is_what_mtools_shows(tmp_path: Path) -> None:
    img = tmp_path / "vol.img"
    O.make_volume(img, 40 * MiB, cluster_size=512, label="SIMVOL")
    O.fsck_clean(img, context="fresh format with a label")
    assert O.mlabel_show(img) == "SIMVOL"
    assert O.minfo(img)["disk label"] == "SIMVOL"

    for label, shown in (("New Label", "NEW LABEL"), ("DATA_2024", "DATA_2024"), ("x", "X")):
        with FatFileSystem.open_path(str(img)) as fs:
            fs.set_label(label)
            assert fs.label == shown
        O.fsck_clean(img, context=f"label {label!r}")
        assert O.mlabel_show(img) == shown
        assert O.minfo(img)["disk label"] == shown

    with FatFileSystem.open_path(str(img)) as fs:
        fs.create("/a file.txt")  # the root has other entries around the label slot
        fs.set_label(None)
    O.fsck_clean(img, context="label removed")
    assert O.mlabel_show(img) == ""
    assert O.minfo(img)["disk label"] == "NO NAME"

    # And the other way round: a label written by mlabel is what the engine reads.
    O.mtool("mlabel", "-i", str(img), "::FROMMTOOLS")
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert fs.label == "FROMMTOOLS"
    with FatFileSystem.open_path(str(img)) as fs:
        fs.set_label("BACK")
    O.fsck_clean(img, context="engine label over an mlabel one")
    assert O.mlabel_show(img) == "BACK"


def test_unlabelled_format(tmp_path: Path) -> None:
    img = tmp_path / "vol.img"
    O.make_volume(img, 300 * MiB, cluster_size=4096)
    O.fsck_clean(img, context="fresh format without a label")
    assert O.mlabel_show(img) == ""
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert fs.label in ("", "NO NAME")


# --------------------------------------------------------------------------- attributes


def test_attributes_agree_with_mattrib(tmp_path: Path) -> None:
    img = tmp_path / "vol.img"
    O.make_volume(img, 40 * MiB, cluster_size=512)
    with FatFileSystem.open_path(str(img)) as fs:
        fs.create("/plain.txt")
        fs.create("/Read Only.txt")
        fs.create("/hidden system.sys")
        fs.mkdir("/Hidden Dir")
        fs.set_attributes("/Read Only.txt", ATTR_READ_ONLY | ATTR_ARCHIVE)
        fs.set_attributes("/hidden system.sys", ATTR_HIDDEN | ATTR_SYSTEM)
        fs.set_attributes("/Hidden Dir", ATTR_HIDDEN)
    O.fsck_clean(img, context="attributes set")
    assert O.mattrib_flags(img, "/plain.txt") == {"A"}
    assert O.mattrib_flags(img, "/Read Only.txt") == {"A", "R"}
    assert O.mattrib_flags(img, "/hidden system.sys") == {"H", "S"}
    assert O.mattrib_flags(img, "/Hidden Dir") == {"H"}
    O.mtool("mattrib", "-i", str(img), "-r", "+h", "-a", "::/Read Only.txt")
    O.mtool("mattrib", "-i", str(img), "+r", "::/plain.txt")
    with FatFileSystem.open_path(str(img)) as fs:
        assert fs.get_attributes("/Read Only.txt") & 0x3F == ATTR_HIDDEN
        assert fs.get_attributes("/plain.txt") & 0x3F == ATTR_READ_ONLY | ATTR_ARCHIVE
        with pytest.raises(OSError) as ei:
            fs.unlink("/plain.txt")  # read-only
        assert ei.value.errno == errno.EACCES
        fs.write("/Read Only.txt", b"now writable", 0)  # sets ARCHIVE again
    O.fsck_clean(img, context="attributes changed by mtools, then a write")
    assert O.mattrib_flags(img, "/Read Only.txt") == {"A", "H"}


# --------------------------------------------------------------------------- timestamps (TZ=UTC on both sides)


def _mdir_mtime(img: Path, path: str) -> tuple[int, int, int, int, int]:
    out = O.mtool("mdir", "-a", "-i", str(img), "::" + path).stdout.decode("utf-8")
    m = re.search(r"(\d{4})-(\d\d)-(\d\d)\s+(\d+):(\d\d)", out)
    assert m, out
    return tuple(int(x) for x in m.groups())  # type: ignore[return-value]


def test_timestamps_agree_with_mtools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    img = tmp_path / "vol.img"
    O.make_volume(img, 40 * MiB, cluster_size=512)
    when = calendar.timegm((2021, 3, 4, 17, 6, 9))  # odd second: FAT keeps 2-second steps
    with FatFileSystem.open_path(str(img)) as fs:
        fs.create("/Engine Timed.txt")
        fs.utimens("/Engine Timed.txt", None, when * 10**9)
        assert fs.stat("/Engine Timed.txt").mtime_ns == (when - 1) * 10**9
    O.fsck_clean(img, context="utimens")
    assert _mdir_mtime(img, "/Engine Timed.txt") == (2021, 3, 4, 17, 6)
    host = tmp_path / "host.txt"
    host.write_bytes(b"t")
    later = calendar.timegm((2030, 12, 31, 23, 58, 40))
    os.utime(host, (later, later))
    O.mtool("mcopy", "-m", "-i", str(img), str(host), "::/mtools timed.txt")
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert fs.stat("/mtools timed.txt").mtime_ns == later * 10**9

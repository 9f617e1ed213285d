"""check() and check(repair=True) against deliberately damaged images, with fsck.fat -n as the referee."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from simvol.errors import UnsupportedFileSystemError
from simvol.fat import FatFileSystem, check
from simvol.fat.layout import parse_boot_sector, parse_fsinfo
from simvol.fat.names import lfn_slots
from tests.support.fatoracle import fsck as fsck_run
from tests.support.fatoracle import fsck_clean
from tests.support.fatoracle import make_volume as make_image

MiB = 1 << 20
EOC = 0x0FFFFFFF


# --------------------------------------------------------------------------- helpers


def run_check(path, repair: bool = False):
    fd = os.open(path, os.O_RDWR if repair else os.O_RDONLY)
    try:
        return check(fd, os.fstat(fd).st_size, repair=repair)
    finally:
        os.close(fd)


def digest(path) -> str:
    """Hash of the image's data extents and their offsets (holes are skipped: cheap on sparse images)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            h.update(struct.pack("<QQ", start, stop))
            while start < stop:
                chunk = os.pread(fd, min(stop - start, 1 << 22), start)
                h.update(chunk)
                start += len(chunk)
            pos = stop
        return h.hexdigest()
    finally:
        os.close(fd)


class Raw:
    """Byte-level access to a closed image, for planting damage."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.geo = parse_boot_sector(f.read(512)).geometry

    def read(self, off: int, n: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(n)

    def write(self, off: int, data: bytes) -> None:
        with open(self.path, "r+b") as f:
            f.seek(off)
            f.write(data)

    def fat(self, n: int, copy: int = 0) -> int:
        return struct.unpack("<I", self.read(self.geo.fat_offset(copy) + 4 * n, 4))[0]

    def set_fat(self, n: int, value: int, copies=(0, 1)) -> None:
        for c in copies:
            old = self.fat(n, c)
            self.write(self.geo.fat_offset(c) + 4 * n, struct.pack("<I", (old & 0xF0000000) | (value & 0x0FFFFFFF)))

    def chain(self, path: str) -> list[int]:
        with FatFileSystem.open_path(str(self.path), writable=False) as fs:
            node = fs.resolve(path)
            return [c for s, n in fs.fat.walk(node.cluster) for c in range(s, s + n)]

    def entry_offset(self, path: str) -> int:
        """Disk offset of the short (8.3) entry of ``path``."""
        with FatFileSystem.open_path(str(self.path), writable=False) as fs:
            node = fs.resolve(path)
            (off, _), = list(fs._slot_runs(node.parent, node.slot + node.nslots - 1, 1))
            return off

    def first_free_slot(self, dirpath: str) -> int:
        """Disk offset of the 0x00 end mark of a directory."""
        with FatFileSystem.open_path(str(self.path), writable=False) as fs:
            node = fs.resolve(dirpath)
            for s, n in fs.fat.walk(node.cluster):
                base = fs.geo.cluster_offset(s)
                data = os.pread(fs.fd, n * fs.cs, base)
                for i in range(0, len(data), 32):
                    if data[i] == 0:
                        return base + i
        raise AssertionError("directory has no end mark")

    def free_clusters(self) -> list[int]:
        """The first 64 free clusters (FAT 1)."""
        n = self.geo.max_cluster + 1
        entries = struct.unpack(f"<{n}I", self.read(self.geo.fat_offset(0), 4 * n))
        return [c for c in range(2, n) if entries[c] & 0x0FFFFFFF == 0][:64]


CONTENT = {
    "/a.bin": bytes([1]) * 2560,  # 5 clusters of 512 bytes
    "/b.bin": bytes([2]) * 2560,
    "/c.bin": bytes([3]) * 1500,
    "/A long file name.text": b"long" * 300,
    "/d/e/inner.txt": b"inner" * 200,
    "/d/f.txt": b"f" * 700,
}


@pytest.fixture
def base(tmp_path):
    """A clean 64 MiB image (512-byte clusters) with a few files and directories."""
    path = tmp_path / "chk.img"
    make_image(path, 64 * MiB, label="CHECKME")
    with FatFileSystem.open_path(str(path)) as fs:
        fs.mkdir("/d")
        fs.mkdir("/d/e")
        fs.mkdir("/d/empty")
        for p, data in CONTENT.items():
            fs.create(p)
            fs.write(p, data, 0)
    fsck_clean(path)
    assert run_check(path) == []
    return path


def sparse_copy(src, dst) -> None:
    """Copy an image's data extents only (shutil would fill the holes)."""
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        end = os.fstat(fi).st_size
        os.ftruncate(fo, end)
        pos = 0
        while pos < end:
            try:
                start = os.lseek(fi, pos, os.SEEK_DATA)
            except OSError:
                break
            stop = os.lseek(fi, start, os.SEEK_HOLE)
            while start < stop:
                chunk = os.pread(fi, min(stop - start, 1 << 22), start)
                os.pwrite(fo, chunk, start)
                start += len(chunk)
            pos = stop
    finally:
        os.close(fi)
        os.close(fo)


def read_file(path, p: str) -> bytes:
    with FatFileSystem.open_path(str(path), writable=False) as fs:
        return fs.read(p, fs.stat(p).size + 1, 0)


def assert_detected_and_repaired(path, expected: set[str], *, fsck_detects: bool = True, intact=()):
    before = digest(path)
    problems = run_check(path)
    kinds = {p.kind for p in problems}
    assert expected <= kinds, problems
    assert not any(p.repaired for p in problems)
    assert digest(path) == before, "check(repair=False) must not write"
    rc, out = fsck_run(path)
    if fsck_detects:
        assert rc != 0, out
    fixed = run_check(path, repair=True)
    assert expected <= {p.kind for p in fixed}
    assert all(p.repaired for p in fixed if p.kind in expected), fixed
    assert run_check(path) == [], "a second check after repair finds nothing"
    fsck_clean(path)
    for p in intact:
        assert read_file(path, p) == CONTENT[p], p
    # The repaired volume mounts, takes changes and closes clean.
    with FatFileSystem.open_path(str(path)) as fs:
        assert fs.statfs().free_clusters == fs.fat.count_free()
        fs.create("/after-repair.txt")
        fs.write("/after-repair.txt", b"ok" * 1000, 0)
    fsck_clean(path)
    assert run_check(path) == []
    return problems


# --------------------------------------------------------------------------- clean images


def test_clean_images_have_no_problems(tmp_path, base):
    for size in (64 * MiB, 1 << 30):
        path = tmp_path / f"fresh{size}.img"
        make_image(path, size)
        assert run_check(path) == []
        assert run_check(path, repair=True) == []
        fsck_clean(path)
        with FatFileSystem.open_path(str(path), writable=False) as fs:
            assert fs.listdir("/") == []
    assert run_check(base) == []


def test_check_refuses_other_file_systems(tmp_path):
    path = tmp_path / "zero.img"
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    with pytest.raises(UnsupportedFileSystemError):
        run_check(path)
    with pytest.raises(UnsupportedFileSystemError):
        run_check(path, repair=True)


def test_problem_as_dict(base):
    raw = Raw(base)
    raw.write(0x41, bytes([raw.read(0x41, 1)[0] | 1]))
    (p,) = [p for p in run_check(base) if p.kind == "dirty"]
    d = p.as_dict()
    assert d["kind"] == "dirty" and d["repaired"] is False and set(d) == {"kind", "path", "detail", "repaired"}


# --------------------------------------------------------------------------- chains


def test_free_entry_in_middle_of_chain(base):
    raw = Raw(base)
    chain = raw.chain("/a.bin")
    assert len(chain) == 5
    raw.set_fat(chain[2], 0)
    problems = assert_detected_and_repaired(
        base, {"bad_chain", "size_mismatch", "lost_clusters"}, intact=["/b.bin", "/c.bin", "/d/e/inner.txt"]
    )
    assert any(p.path == "/a.bin" for p in problems)
    assert read_file(base, "/a.bin") == CONTENT["/a.bin"][: 2 * 512]


def test_cross_linked_files(base):
    raw = Raw(base)
    a, b = raw.chain("/a.bin"), raw.chain("/b.bin")
    raw.set_fat(b[1], a[2])  # b: b0, b1, a2, a3, a4 — shares a's tail; b2..b4 are lost
    problems = assert_detected_and_repaired(
        base, {"cross_link", "size_mismatch", "lost_clusters"}, intact=["/a.bin", "/c.bin", "/A long file name.text"]
    )
    assert any(p.kind == "cross_link" and p.path == "/b.bin" for p in problems)
    assert read_file(base, "/b.bin") == CONTENT["/b.bin"][: 2 * 512]
    assert Raw(base).chain("/a.bin") == a


def test_chain_loop(base):
    raw = Raw(base)
    chain = raw.chain("/a.bin")
    raw.set_fat(chain[-1], chain[1])  # last cluster links back
    with FatFileSystem.open_path(str(base), writable=False) as fs, pytest.raises(OSError):
        fs.read("/a.bin", 10_000, 0)  # the engine reports EIO rather than looping
    assert_detected_and_repaired(base, {"chain_loop"}, intact=["/a.bin", "/b.bin"])


def test_file_size_bigger_than_chain(base):
    raw = Raw(base)
    off = raw.entry_offset("/c.bin")
    raw.write(off + 28, struct.pack("<I", 10_000))  # 3 clusters hold at most 1536 bytes
    assert_detected_and_repaired(base, {"size_mismatch"}, intact=["/a.bin", "/b.bin"])
    assert read_file(base, "/c.bin")[:1500] == CONTENT["/c.bin"]


def test_file_size_smaller_than_chain(base):
    raw = Raw(base)
    off = raw.entry_offset("/a.bin")
    raw.write(off + 28, struct.pack("<I", 600))  # 2 clusters needed, chain has 5
    assert_detected_and_repaired(base, {"size_mismatch"}, intact=["/b.bin", "/c.bin"])
    assert read_file(base, "/a.bin") == CONTENT["/a.bin"][:600]
    assert len(Raw(base).chain("/a.bin")) == 2


def test_long_name_file_size_mismatch(base):
    raw = Raw(base)
    off = raw.entry_offset("/A long file name.text")
    raw.write(off + 28, struct.pack("<I", 1))
    assert_detected_and_repaired(base, {"size_mismatch"}, intact=["/a.bin"])
    assert read_file(base, "/A long file name.text") == b"l"


def test_lost_clusters(base):
    raw = Raw(base)
    free = raw.free_clusters()
    raw.set_fat(free[10], free[11])
    raw.set_fat(free[11], EOC)
    raw.set_fat(free[20], EOC)
    problems = assert_detected_and_repaired(base, {"lost_clusters"}, intact=list(CONTENT))
    (lost,) = [p for p in problems if p.kind == "lost_clusters"]
    assert "3 cluster" in lost.detail


def test_start_cluster_out_of_range(base):
    raw = Raw(base)
    off = raw.entry_offset("/c.bin")
    bad = raw.geo.max_cluster + 100
    raw.write(off + 20, struct.pack("<H", bad >> 16))
    raw.write(off + 26, struct.pack("<H", bad & 0xFFFF))
    assert_detected_and_repaired(base, {"bad_start", "lost_clusters"}, intact=["/a.bin", "/b.bin"])
    assert read_file(base, "/c.bin") == b""


def test_directory_start_cluster_free(base):
    raw = Raw(base)
    off = raw.entry_offset("/d/empty")
    free = raw.free_clusters()[5]
    raw.write(off + 20, struct.pack("<H", free >> 16))
    raw.write(off + 26, struct.pack("<H", free & 0xFFFF))
    assert_detected_and_repaired(base, {"bad_directory"}, intact=list(CONTENT))


# --------------------------------------------------------------------------- FATs, FSInfo, dirty markers, boot backup


def test_fats_differ(base):
    raw = Raw(base)
    chain = raw.chain("/b.bin")
    raw.set_fat(chain[1], EOC, copies=(1,))
    raw.set_fat(raw.free_clusters()[3], EOC, copies=(1,))
    problems = assert_detected_and_repaired(base, {"fat_mismatch"}, intact=list(CONTENT))
    (p,) = [p for p in problems if p.kind == "fat_mismatch"]
    assert "2 entries" in p.detail
    raw = Raw(base)
    assert raw.read(raw.geo.fat_offset(0), raw.geo.fat_bytes) == raw.read(raw.geo.fat_offset(1), raw.geo.fat_bytes)


def test_fsinfo_free_count_wrong(base):
    raw = Raw(base)
    fsinfo = bytearray(raw.read(512, 512))
    free, _ = parse_fsinfo(bytes(fsinfo))
    struct.pack_into("<I", fsinfo, 0x1E8, free - 17)
    raw.write(512, bytes(fsinfo))
    assert_detected_and_repaired(base, {"fsinfo"}, intact=list(CONTENT))
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert parse_fsinfo(Raw(base).read(512, 512))[0] == fs.fat.count_free()


def test_fsinfo_signature_broken(base):
    raw = Raw(base)
    raw.write(512, b"\0\0\0\0")
    problems = run_check(base)
    assert "fsinfo" in {p.kind for p in problems}
    run_check(base, repair=True)
    assert run_check(base) == []
    fsck_clean(base)


def test_dirty_bit_in_boot_sector(base):
    raw = Raw(base)
    raw.write(0x41, bytes([raw.read(0x41, 1)[0] | 1]))
    assert_detected_and_repaired(base, {"dirty"}, intact=list(CONTENT))
    assert Raw(base).read(0x41, 1)[0] & 1 == 0


def test_clean_bit_cleared_in_both_fats(base):
    raw = Raw(base)
    for copy in (0, 1):
        raw.write(raw.geo.fat_offset(copy) + 4, struct.pack("<I", raw.fat(1, copy) & ~0x08000000))
    assert_detected_and_repaired(base, {"dirty"}, intact=list(CONTENT))
    raw = Raw(base)
    assert raw.fat(1, 0) & 0x08000000 and raw.fat(1, 1) & 0x08000000


def test_clean_bit_cleared_in_one_fat(base):
    raw = Raw(base)
    raw.write(raw.geo.fat_offset(1) + 4, struct.pack("<I", raw.fat(1, 1) & ~0x08000000))
    assert_detected_and_repaired(base, {"fat_mismatch"}, intact=list(CONTENT))


def test_backup_boot_sector_differs(base):
    raw = Raw(base)
    backup = bytearray(raw.read(6 * 512, 512))
    backup[0x47] ^= 0x20
    raw.write(6 * 512, bytes(backup))
    problems = run_check(base)
    assert {p.kind for p in problems} == {"backup_boot"}
    _, out = fsck_run(base)
    assert "differences between boot sector and its backup" in out  # fsck.fat still exits 0 here
    run_check(base, repair=True)
    assert run_check(base) == []
    fsck_clean(base)
    assert Raw(base).read(6 * 512, 512) == Raw(base).read(0, 512)


def test_left_dirty_by_engine_is_repaired(base):
    fs = FatFileSystem.open_path(str(base))
    fs.create("/unsynced")
    fs.write("/unsynced", b"x" * 5000, 0)
    fs.flush()
    fs.abandon()  # a crash: dirty markers stay, FSInfo is stale
    kinds = {p.kind for p in run_check(base)}
    assert "dirty" in kinds
    rc, _ = fsck_run(base)
    assert rc != 0
    run_check(base, repair=True)
    assert run_check(base) == []
    fsck_clean(base)
    assert read_file(base, "/unsynced") == b"x" * 5000


# --------------------------------------------------------------------------- directories


def test_orphan_lfn_slot_at_end_of_directory(base):
    raw = Raw(base)
    end = raw.first_free_slot("/d")
    slot = lfn_slots("orphan", 0x77)[0]
    raw.write(end, slot)
    problems = assert_detected_and_repaired(base, {"orphan_lfn"}, intact=list(CONTENT))
    assert any(p.path == "/d" for p in problems if p.kind == "orphan_lfn")
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert sorted(fs.listdir("/d")) == ["e", "empty", "f.txt"]


def test_orphan_lfn_slots_with_wrong_checksum(base):
    raw = Raw(base)
    off = raw.entry_offset("/A long file name.text")
    # The two LFN slots sit right before the short entry; break their checksum.
    for k in (1, 2):
        s = bytearray(raw.read(off - 32 * k, 32))
        assert s[11] == 0x0F
        s[13] ^= 0xFF
        raw.write(off - 32 * k, bytes(s))
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert "ALONGF~1.TEX" in fs.listdir("/")  # readers fall back to the 8.3 name
    # fsck.fat 4.2 only warns about a wrong checksum ("Not auto-correcting this") and exits 0.
    problems = assert_detected_and_repaired(base, {"orphan_lfn"}, fsck_detects=False, intact=["/a.bin", "/b.bin"])
    assert [p.kind for p in problems].count("orphan_lfn") >= 1
    assert read_file(base, "/ALONGF~1.TEX") == CONTENT["/A long file name.text"]


def test_orphan_lfn_before_deleted_entry(base):
    with FatFileSystem.open_path(str(base)) as fs:
        fs.create("/Another Long Name.txt")
    raw = Raw(base)
    off = raw.entry_offset("/Another Long Name.txt")
    raw.write(off, b"\xe5")  # delete the short entry only
    assert_detected_and_repaired(base, {"orphan_lfn"}, intact=list(CONTENT))
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert "Another Long Name.txt" not in fs.listdir("/")


def test_directory_with_nonzero_size(base):
    raw = Raw(base)
    off = raw.entry_offset("/d/e")
    raw.write(off + 28, struct.pack("<I", 512))
    assert_detected_and_repaired(base, {"dir_size"}, intact=list(CONTENT))


def test_wrong_dotdot_cluster(base):
    raw = Raw(base)
    e = raw.chain("/d/e")[0]
    wrong = raw.chain("/a.bin")[0]
    dotdot = raw.geo.cluster_offset(e) + 32
    assert raw.read(dotdot, 11) == b"..         "
    raw.write(dotdot + 20, struct.pack("<H", wrong >> 16))
    raw.write(dotdot + 26, struct.pack("<H", wrong & 0xFFFF))
    assert_detected_and_repaired(base, {"bad_dot_entry"}, intact=list(CONTENT))
    d = Raw(base).chain("/d")[0]
    fixed = Raw(base).read(dotdot, 32)
    assert (struct.unpack_from("<H", fixed, 20)[0] << 16) | struct.unpack_from("<H", fixed, 26)[0] == d


def test_first_level_dotdot_must_be_zero(base):
    raw = Raw(base)
    d = raw.chain("/d")[0]
    dotdot = raw.geo.cluster_offset(d) + 32
    raw.write(dotdot + 26, struct.pack("<H", 2))  # the root's real cluster: FAT says '..' of a first-level dir is 0
    problems = run_check(base)
    assert "bad_dot_entry" in {p.kind for p in problems}
    run_check(base, repair=True)
    assert run_check(base) == []
    fsck_clean(base)


def test_wrong_dot_cluster(base):
    raw = Raw(base)
    e = raw.chain("/d/e")[0]
    dot = raw.geo.cluster_offset(e)
    raw.write(dot + 26, struct.pack("<H", (e + 1) & 0xFFFF))
    assert_detected_and_repaired(base, {"bad_dot_entry"}, intact=list(CONTENT))


# --------------------------------------------------------------------------- several at once


def test_many_faults_at_once(base):
    raw = Raw(base)
    a, b = raw.chain("/a.bin"), raw.chain("/b.bin")
    raw.set_fat(b[1], a[2])  # cross link
    raw.write(raw.entry_offset("/c.bin") + 28, struct.pack("<I", 9999))  # size
    raw.write(raw.entry_offset("/d/e") + 28, struct.pack("<I", 77))  # dir size
    free = raw.free_clusters()
    raw.set_fat(free[30], EOC)  # lost
    raw.write(0x41, bytes([raw.read(0x41, 1)[0] | 1]))  # dirty
    assert_detected_and_repaired(
        base,
        {"cross_link", "size_mismatch", "dir_size", "lost_clusters", "dirty"},
        intact=["/a.bin", "/d/e/inner.txt", "/d/f.txt", "/A long file name.text"],
    )


# --------------------------------------------------------------------------- labels and long-name fields


def test_lfn_slot_reserved_fields(base):
    raw = Raw(base)
    off = raw.entry_offset("/A long file name.text")
    s = bytearray(raw.read(off - 32, 32))
    assert s[11] == 0x0F
    s[26] = 0x34  # LDIR_FstClusLO must be 0
    s[12] = 0x01  # LDIR_Type must be 0
    raw.write(off - 32, bytes(s))
    assert_detected_and_repaired(base, {"lfn_fields"}, intact=list(CONTENT))
    assert Raw(base).read(off - 32 + 26, 2) == b"\0\0"


def _label_entry_offset(raw: Raw) -> int:
    base = raw.geo.cluster_offset(raw.geo.root_cluster)
    for i in range(raw.geo.cluster_size // 32):
        e = raw.read(base + 32 * i, 32)
        if e[0] not in (0, 0xE5) and e[11] & 0x3F != 0x0F and e[11] & 0x08:
            return base + 32 * i
    raise AssertionError("no label entry")


def test_label_entry_with_cluster_and_size(base):
    raw = Raw(base)
    off = _label_entry_offset(raw)
    assert raw.read(off, 11) == b"CHECKME    "
    raw.write(off + 26, struct.pack("<H", 1234))
    raw.write(off + 28, struct.pack("<I", 99999))
    assert_detected_and_repaired(base, {"label_entry"}, intact=list(CONTENT))
    assert Raw(base).read(off + 20, 2) == b"\0\0" and Raw(base).read(off + 26, 6) == bytes(6)
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert fs.label == "CHECKME"


def test_label_differs_between_root_and_boot_sector(base):
    raw = Raw(base)
    off = _label_entry_offset(raw)
    raw.write(off, b"OTHERLABEL ")
    assert_detected_and_repaired(base, {"label_mismatch"}, intact=list(CONTENT))
    raw = Raw(base)
    assert raw.read(0x47, 11) == b"OTHERLABEL " == raw.read(6 * 512 + 0x47, 11)


def test_label_only_in_boot_sector(base):
    raw = Raw(base)
    off = _label_entry_offset(raw)
    raw.write(off, b"\xe5")  # the root entry is gone, the boot sector still names the volume
    assert_detected_and_repaired(base, {"label_mismatch"}, intact=list(CONTENT))
    assert Raw(base).read(0x47, 11) == b"NO NAME    "
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert fs.label == ""


# --------------------------------------------------------------------------- fuzzed directories


def test_fuzzed_directories_check_survives_and_converges(base, tmp_path):
    """Random bytes in directory clusters: check never crashes, repair converges (a second check is clean),
    and the engine only ever raises OSError / UnsupportedFileSystemError while reading the result."""
    import random

    raw = Raw(base)
    targets = [raw.geo.cluster_offset(raw.geo.root_cluster), raw.geo.cluster_offset(raw.chain("/d")[0])]
    work = tmp_path / "fuzz.img"

    def walk(fs, d="/", depth=0):
        if depth > 8:  # a damaged entry may point back at an ancestor
            return
        for name in fs.listdir(d):
            p = ("" if d == "/" else d) + "/" + name
            st = fs.stat(p)
            if st.is_dir:
                walk(fs, p, depth + 1)
            else:
                fs.read(p, st.size, 0)

    for seed in range(40):
        rnd = random.Random(seed)
        sparse_copy(base, work)
        w = Raw(work)
        where = rnd.choice(targets)
        for _ in range(rnd.randint(1, 6)):
            w.write(where + rnd.randrange(512), bytes([rnd.randrange(256)]))
        for writable in (False, True):
            try:
                with FatFileSystem.open_path(str(work), writable=writable) as fs:
                    walk(fs)
            except (OSError, UnsupportedFileSystemError):
                pass
        run_check(work)
        run_check(work, repair=True)
        assert run_check(work) == [], seed
        with FatFileSystem.open_path(str(work), writable=False) as fs:
            walk(fs)


def test_bad_cluster_marks_are_kept(base):
    """0x0FFFFFF7 marks a bad cluster: owned by no file, yet neither lost nor free (fsck.fat agrees)."""
    raw = Raw(base)
    bad = raw.free_clusters()[:3]
    for c in bad:
        raw.set_fat(c, 0x0FFFFFF7)
    fsinfo = bytearray(raw.read(512, 512))
    free, _nxt = parse_fsinfo(bytes(fsinfo))
    struct.pack_into("<I", fsinfo, 0x1E8, free - len(bad))
    raw.write(512, bytes(fsinfo))
    raw.write(7 * 512, bytes(fsinfo))
    fsck_clean(base)
    assert run_check(base) == []
    assert run_check(base, repair=True) == []
    assert all(Raw(base).fat(c) & 0x0FFFFFFF == 0x0FFFFFF7 for c in bad)
    # The engine never allocates them.
    with FatFileSystem.open_path(str(base)) as fs:
        assert fs.statfs().free_clusters == fs.fat.count_free() == free - len(bad)
        fs.create("/big")
        fs.write("/big", b"B" * 512 * 200, 0)
        used = [c for s, n in fs.fat.walk(fs.stat("/big").cluster) for c in range(s, s + n)]
        assert not set(used) & set(bad)
    fsck_clean(base)
    assert run_check(base) == []


# --------------------------------------------------------------------------- shared and looping directories


def _set_start(raw: Raw, path: str, cluster: int) -> None:
    off = raw.entry_offset(path)
    raw.write(off + 20, struct.pack("<H", cluster >> 16))
    raw.write(off + 26, struct.pack("<H", cluster & 0xFFFF))


def test_two_directories_share_a_cluster(base):
    with FatFileSystem.open_path(str(base)) as fs:
        fs.mkdir("/x")
        fs.create("/x/in_x")
        fs.mkdir("/Second Directory")
        fs.create("/Second Directory/in_second")
    raw = Raw(base)
    _set_start(raw, "/Second Directory", raw.chain("/x")[0])
    assert_detected_and_repaired(base, {"cross_link", "bad_directory"}, intact=list(CONTENT))
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert fs.listdir("/x") == ["in_x"]
        assert "Second Directory" not in fs.listdir("/")


def test_file_starts_in_a_directory_cluster(base):
    raw = Raw(base)
    _set_start(raw, "/c.bin", raw.chain("/d/e")[0])
    problems = run_check(base)
    assert {"cross_link", "bad_directory", "bad_start"} & {p.kind for p in problems}
    run_check(base, repair=True)
    assert run_check(base) == []
    fsck_clean(base)


def test_directory_points_at_its_ancestor(base):
    raw = Raw(base)
    _set_start(raw, "/d/e", raw.chain("/d")[0])  # a loop: /d/e is /d
    assert_detected_and_repaired(base, {"bad_directory"}, intact=["/a.bin", "/b.bin", "/d/f.txt"])
    with FatFileSystem.open_path(str(base), writable=False) as fs:
        assert sorted(fs.listdir("/d")) == ["empty", "f.txt"]

"""Names on FAT32 (docs/fat32-notes.md §9 long names, §10 short names and case, §11 names Windows refuses).

Pure-function tests of ``simvol.fat.names`` plus on-disk checks through the engine (raw directory slots read
back from a real sparse image, and ``fsck.fat -n`` on the closed image).
"""

from __future__ import annotations

import errno
import os
import re
import struct
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as hst

from simvol.errors import FsOpError
from simvol.fat import FatFileSystem
from simvol.fat import names as N
from tests.support.fatoracle import fsck_clean
from tests.support.fatoracle import make_volume as make_image

MiB = 1 << 20


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def img(tmp_path):
    path = tmp_path / "names.img"
    make_image(path, 64 * MiB)
    return path


@pytest.fixture
def fs(img):
    f = FatFileSystem.open_path(str(img))
    yield f
    f.close()


def raw_slots(fs: FatFileSystem, dirpath: str = "/") -> list[bytes]:
    """Every 32-byte slot of a directory, up to (not including) the 0x00 end mark."""
    fs.flush()
    node = fs.resolve(dirpath)
    data = b"".join(
        os.pread(fs.fd, n * fs.cs, fs.geo.cluster_offset(s)) for s, n in fs.fat.walk(node.cluster)
    )
    out = []
    for off in range(0, len(data), 32):
        slot = data[off : off + 32]
        if slot[0] == 0:
            break
        out.append(slot)
    return out


def entry_group(fs: FatFileSystem, path: str) -> list[bytes]:
    """The on-disk slots of one entry: its LFN slots (disk order) and the short entry last."""
    node = fs.resolve(path)
    dirpath = path.rsplit("/", 1)[0] or "/"
    slots = raw_slots(fs, dirpath)
    return slots[node.slot : node.slot + node.nslots]


_SHORT_BAD = set(b'"*+,./:;<=>?[\\]|') | set(range(0x20)) | set(b"abcdefghijklmnopqrstuvwxyz")


def assert_valid_83(raw: bytes) -> None:
    assert len(raw) == 11
    assert raw[0] not in (0x00, 0xE5, 0x20)
    base, ext = raw[:8].rstrip(b" "), raw[8:].rstrip(b" ")
    assert base, raw
    assert b" " not in base and b" " not in ext, raw
    bad = set(base + ext) & _SHORT_BAD
    assert not bad, (raw, bad)


def short_of(name: str, taken=()) -> N.ShortName:
    taken = set(taken)
    return N.make_short_name(name, lambda raw: raw in taken)


# --------------------------------------------------------------------------- §11 validate_name


@pytest.mark.parametrize("ch", list('"*/:<>?\\|'))
def test_forbidden_characters_refused(ch):
    for name in (f"a{ch}b", f"{ch}abc", f"abc{ch}", f"x{ch}.txt"):
        with pytest.raises(FsOpError) as ei:
            N.validate_name(name)
        assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("code", list(range(0x00, 0x20)))
def test_control_characters_refused(code):
    with pytest.raises(FsOpError) as ei:
        N.validate_name(f"ab{chr(code)}cd.txt")
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("name", ["abc ", "abc.", "abc. ", "abc .", "a.txt.", "a.txt ", " ", "  ", "...", ". ", "a.."])
def test_trailing_space_or_period_refused(name):
    with pytest.raises(FsOpError) as ei:
        N.validate_name(name)
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_reserved_and_empty_names_refused(name):
    with pytest.raises(FsOpError) as ei:
        N.validate_name(name)
    assert ei.value.errno == errno.EINVAL


DEVICE_NAMES = ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]


@pytest.mark.parametrize("dev", DEVICE_NAMES)
def test_device_names_refused_in_any_case_with_and_without_extension(dev):
    variants = [dev, dev.lower(), dev.capitalize(), dev.swapcase()]
    variants += [f"{v}.txt" for v in variants] + [f"{dev.lower()}.tar.gz", f"{dev}.LOG", f"{dev} .txt"]
    for name in variants:
        with pytest.raises(FsOpError) as ei:
            N.validate_name(name)
        assert ei.value.errno == errno.EINVAL, name


@pytest.mark.parametrize("name", ["nul.txt", "CON", "com1.log", "Lpt9", "aux.c", "prn.PRN"])
def test_brief_device_examples(name):
    with pytest.raises(FsOpError) as ei:
        N.validate_name(name)
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize(
    "name",
    [
        "CONSOLE", "con1", "COM10", "COM0", "LPT0", "nul_", "xnul", "aux2.txt", "connect.txt", "NULL",
        "a", "A", "readme.txt", ".bashrc", ".hidden.txt", "a b", " lead", "a+b,c;d=e[f]", "日本語.txt",
        "😀", "name.with.dots.txt", "x" * 255, "café", "'quoted'", "{braces}", "~tilde", "#hash", "%pct",
    ],
)
def test_acceptable_names(name):
    N.validate_name(name)


def test_length_limit_in_utf16_units():
    N.validate_name("a" * 255)
    with pytest.raises(FsOpError) as ei:
        N.validate_name("a" * 256)
    assert ei.value.errno == errno.ENAMETOOLONG
    # Non-BMP characters take two UTF-16 units (a surrogate pair).
    assert N.utf16_units("😀") == 2
    assert N.utf16_units("a😀b") == 4
    N.validate_name("😀" * 127 + "a")  # 255 units
    for name in ("😀" * 128, "a" * 254 + "😀", "😀" * 127 + "ab"):  # 256 units
        assert N.utf16_units(name) == 256
        with pytest.raises(FsOpError) as ei:
            N.validate_name(name)
        assert ei.value.errno == errno.ENAMETOOLONG, name
    # 255 characters but more units: too long
    with pytest.raises(FsOpError) as ei:
        N.validate_name("😀" * 255)
    assert ei.value.errno == errno.ENAMETOOLONG


def test_lone_surrogate_refused():
    with pytest.raises(FsOpError) as ei:
        N.validate_name("bad\udc80name")
    assert ei.value.errno == errno.EINVAL


def test_fs_op_error_is_oserror():
    with pytest.raises(OSError):
        N.validate_name("a*b")


# --------------------------------------------------------------------------- §10 short names


def test_all_lower_83_name_is_short_only_with_ntres():
    sn = short_of("readme.txt")
    assert sn.raw == b"README  TXT"
    assert sn.ntres == 0x18
    assert not sn.needs_lfn


@pytest.mark.parametrize(
    ("name", "raw", "ntres"),
    [
        ("README.TXT", b"README  TXT", 0x00),
        ("readme.TXT", b"README  TXT", 0x08),
        ("README.txt", b"README  TXT", 0x10),
        ("readme", b"README     ", 0x08),
        ("README", b"README     ", 0x00),
        ("a.b", b"A       B  ", 0x18),
        ("12345678.123", b"12345678123", 0x00),
        ("file-1_x.c", b"FILE-1_XC  ", 0x18),
        ("CAFÉ.TXT", b"CAF\x90    TXT", 0x00),  # É is 0x90 in code page 437
        ("~a.b", b"~A      B  ", 0x18),
    ],
)
def test_lossless_single_case_names_are_short_only(name, raw, ntres):
    sn = short_of(name)
    assert (sn.raw, sn.ntres, sn.needs_lfn) == (raw, ntres, False)


def test_mixed_case_gets_lfn_without_tail():
    sn = short_of("ReadMe2.Txt")
    assert sn.raw == b"README2 TXT"
    assert sn.needs_lfn
    assert sn.ntres == 0
    # mixed case in one part only is enough
    assert short_of("readme.Txt").raw == b"README  TXT" and short_of("readme.Txt").needs_lfn
    assert short_of("ReadMe.txt").raw == b"README  TXT" and short_of("ReadMe.txt").needs_lfn


def test_non_ascii_lower_case_gets_lfn_without_tail():
    # Readers disagree on lower-casing OEM letters through NTRes, so these get a long name (no tail).
    sn = short_of("café.txt")
    assert (sn.raw, sn.ntres, sn.needs_lfn) == (b"CAF\x90    TXT", 0, True)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("my.file.txt", b"MYFILE~1TXT"),
        ("my file.txt", b"MYFILE~1TXT"),
        ("My File.Txt", b"MYFILE~1TXT"),
        (".bashrc", b"BASHRC~1   "),
        ("..hidden.txt", b"HIDDEN~1TXT"),
        ("a+b.txt", b"A_B~1   TXT"),
        ("a,b;c=d.txt", b"A_B_C_~1TXT"),
        ("x[1].y", b"X_1_~1  Y  "),
        ("verylongfilename.txt", b"VERYLO~1TXT"),
        ("file.html", b"FILE~1  HTM"),
        ("file.jpeg", b"FILE~1  JPE"),
        ("averyverylongname.extension", b"AVERYV~1EXT"),
        ("日本.txt", b"__~1    TXT"),
        ("€uro", b"_URO~1     "),
        ("naïve.txt", b"NA_VE~1 TXT"),  # Ï (upper case of ï) is not in code page 437
        ("straße", b"STRA_E~1   "),  # ß upper-cases to two letters
        ("😀.txt", b"_~1     TXT"),
        ("a b c", b"ABC~1      "),
    ],
)
def test_lossy_names_get_lfn_and_tail(name, raw):
    N.validate_name(name)
    sn = short_of(name)
    assert sn.raw == raw, (name, sn.raw)
    assert sn.needs_lfn
    assert sn.ntres == 0
    assert_valid_83(sn.raw)


def test_last_period_starts_extension():
    assert short_of("my.file.txt").raw[8:] == b"TXT"
    assert short_of("archive.tar.gz").raw == b"ARCHIV~1GZ "


def test_clash_on_lossless_name_uses_tail():
    sn = short_of("readme.txt", taken=[b"README  TXT"])
    assert sn.raw == b"README~1TXT" and sn.needs_lfn
    sn = short_of("ReadMe2.Txt", taken=[b"README2 TXT"])
    assert sn.raw == b"README~1TXT" and sn.needs_lfn


def test_tails_one_to_four_then_hashed():
    taken: set[bytes] = set()
    got = []
    for i in range(12):
        sn = N.make_short_name(f"my.file{i}.txt", lambda raw: raw in taken)
        assert sn.needs_lfn
        assert sn.raw not in taken
        assert_valid_83(sn.raw)
        taken.add(sn.raw)
        got.append(sn.raw)
    assert got[:4] == [b"MYFILE~1TXT", b"MYFILE~2TXT", b"MYFILE~3TXT", b"MYFILE~4TXT"]
    for raw in got[4:]:
        assert re.fullmatch(rb"MY[0-9A-F]{4}~[1-9]TXT", raw), raw


def test_short_base_tails_keep_base():
    taken: set[bytes] = set()
    out = []
    for i in range(4):
        sn = N.make_short_name(f"a+{i}.c", lambda raw: raw in taken)
        taken.add(sn.raw)
        out.append(sn.raw)
    assert out == [b"A_0~1   C  ", b"A_1~1   C  ", b"A_2~1   C  ", b"A_3~1   C  "]


def test_thousand_similar_names_unique_aliases():
    taken: set[bytes] = set()
    for i in range(1000):
        sn = N.make_short_name(f"Long File Name {i:04d}.document", lambda raw: raw in taken)
        assert sn.raw not in taken
        assert_valid_83(sn.raw)
        assert sn.raw.endswith(b"DOC")
        taken.add(sn.raw)
    assert len(taken) == 1000


@given(hst.text(alphabet=hst.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_any_valid_name_gets_a_valid_alias(name):
    try:
        N.validate_name(name)
    except FsOpError:
        return
    sn = short_of(name)
    assert_valid_83(sn.raw if sn.raw[0] != 0x05 else b"X" + sn.raw[1:])
    if not sn.needs_lfn:
        # Short-only entries must display as exactly the name given.
        assert N.short_display(sn.raw, sn.ntres) == name


def test_short_display_and_e5_escape():
    assert N.short_display(b"README  TXT", 0x18) == "readme.txt"
    assert N.short_display(b"README  TXT", 0x08) == "readme.TXT"
    assert N.short_display(b"README  TXT", 0x10) == "README.txt"
    assert N.short_display(b"README     ", 0) == "README"
    assert N.short_display(b"\x05ABC    TXT", 0) == "\u03c3ABC.TXT"  # 0xE5 is σ in code page 437
    assert N._pack(b"\xe5AB", b"C") == b"\x05AB     C  "


def test_short_key():
    assert N.short_key("MYFILE~1.TXT") == b"MYFILE~1TXT"
    assert N.short_key("myfile~1.txt") == b"MYFILE~1TXT"
    assert N.short_key("README") == b"README     "
    assert N.short_key("my.file.txt") is None
    assert N.short_key("toolongname.txt") is None


# --------------------------------------------------------------------------- §9 LFN checksum and slots


def test_lfn_checksum_examples():
    assert N.lfn_checksum(b"README2 TXT") == 0x54
    assert N.lfn_checksum(b"MYFILE~1TXT") == 0x82
    assert N.lfn_checksum(b"           ") == sum_reference(b"           ")


def sum_reference(short11: bytes) -> int:
    s = 0
    for b in short11:
        s = ((s >> 1) | ((s & 1) << 7)) + b & 0xFF
    return s


def _units(name: str) -> list[int]:
    data = name.encode("utf-16-le", "surrogatepass")
    return list(struct.unpack(f"<{len(data) // 2}H", data))


def _check_slots(name: str, checksum: int = 0x5A) -> list[bytes]:
    slots = N.lfn_slots(name, checksum)
    units = _units(name)
    count = -(-len(units) // 13)
    assert len(slots) == count
    for k, slot in enumerate(slots):
        assert len(slot) == 32
        ordinal = count - k
        assert slot[0] == ordinal | (0x40 if k == 0 else 0)  # 0x40 only on the first on-disk slot
        assert slot[11] == 0x0F and slot[12] == 0 and slot[13] == checksum
        assert slot[26:28] == b"\0\0"
    # Units in logical order, then terminator / fill.
    logical = []
    for slot in reversed(slots):
        logical += N.lfn_fragment(slot)
    assert logical[: len(units)] == units
    rest = logical[len(units) :]
    if len(units) % 13:
        assert rest[0] == 0x0000
        assert all(u == 0xFFFF for u in rest[1:])
        assert len(rest) == 13 - len(units) % 13
    else:
        assert rest == []
    assert N.decode_lfn(logical) == name
    return slots


@pytest.mark.parametrize(
    "name",
    [
        "a", "ReadMe2.Txt", "x" * 12, "x" * 13, "x" * 14, "y" * 26, "y" * 27, "z" * 255,
        "日本語のファイル名.txt", "😀" * 7, "a😀" * 85,
    ],
)
def test_lfn_slot_encoding_round_trip(name):
    N.validate_name(name)
    _check_slots(name)


def test_lfn_slot_exact_layout():
    # 14 units: two slots; the first on disk holds unit 14, then 0x0000, then 0xFFFF fill.
    slots = N.lfn_slots("abcdefghijklmN", 0x54)
    assert [s[0] for s in slots] == [0x42, 0x01]
    first = N.lfn_fragment(slots[0])
    assert first == [ord("N"), 0x0000] + [0xFFFF] * 11
    assert N.lfn_fragment(slots[1]) == [ord(c) for c in "abcdefghijklm"]
    # Byte placement: name1 at 1..10, name2 at 14..25, name3 at 28..31.
    s = slots[1]
    assert s[1:11].decode("utf-16-le") == "abcde"
    assert s[14:26].decode("utf-16-le") == "fghijk"
    assert s[28:32].decode("utf-16-le") == "lm"
    # 255 units: 20 slots, the first flagged 0x54.
    slots = N.lfn_slots("q" * 255, 1)
    assert len(slots) == 20 and slots[0][0] == 0x40 | 20 and slots[-1][0] == 1


def test_decode_lfn_rejects_broken_utf16():
    assert N.decode_lfn([0xD800, 0x0041, 0]) is None
    assert N.decode_lfn([0x41, 0x42, 0, 0xFFFF]) == "AB"


@given(hst.text(alphabet=hst.characters(blacklist_categories=("Cs",)), min_size=1, max_size=120))
def test_lfn_round_trip_property(name):
    if N.utf16_units(name) > 255 or "\0" in name:
        return
    _check_slots(name)


# --------------------------------------------------------------------------- on disk, through the engine


def test_on_disk_readme_is_one_short_entry_with_ntres(fs, img):
    fs.create("/readme.txt")
    group = entry_group(fs, "/readme.txt")
    assert len(group) == 1
    assert group[0][:11] == b"README  TXT"
    assert group[0][12] == 0x18
    assert fs.listdir("/") == ["readme.txt"]
    assert fs.short_name("/readme.txt") == "README.TXT"
    fs.close()
    fsck_clean(img)
    with FatFileSystem.open_path(str(img), writable=False) as ro:
        assert ro.listdir("/") == ["readme.txt"]


def test_on_disk_mixed_case_lfn_without_tail(fs, img):
    fs.create("/ReadMe2.Txt")
    group = entry_group(fs, "/ReadMe2.Txt")
    assert len(group) == 2
    lfn, short = group
    assert short[:11] == b"README2 TXT" and short[12] == 0
    assert lfn[0] == 0x41 and lfn[11] == 0x0F and lfn[13] == 0x54
    assert N.decode_lfn(N.lfn_fragment(lfn)) == "ReadMe2.Txt"
    fs.close()
    fsck_clean(img)
    with FatFileSystem.open_path(str(img), writable=False) as ro:
        assert ro.listdir("/") == ["ReadMe2.Txt"]
        assert ro.short_name("/ReadMe2.Txt") == "README2.TXT"


def test_on_disk_my_file_txt(fs, img):
    fs.create("/my.file.txt")
    group = entry_group(fs, "/my.file.txt")
    assert group[-1][:11] == b"MYFILE~1TXT"
    assert all(s[13] == 0x82 for s in group[:-1])
    assert fs.short_name("/my.file.txt") == "MYFILE~1.TXT"
    fs.close()
    fsck_clean(img)


def test_on_disk_long_name_slot_count(fs, img):
    names = ["q" * 255, "w" * 13, "e" * 14, "😀" * 100, "Mixed Case Name With Spaces.jpeg"]
    for name in names:
        fs.create("/" + name)
        group = entry_group(fs, "/" + name)
        units = N.utf16_units(name)
        assert len(group) == 1 + -(-units // 13)
        ck = N.lfn_checksum(group[-1][:11])
        assert all(s[13] == ck for s in group[:-1])
        logical = []
        for s in reversed(group[:-1]):
            logical += N.lfn_fragment(s)
        assert N.decode_lfn(logical) == name
    fs.close()
    fsck_clean(img)
    with FatFileSystem.open_path(str(img), writable=False) as ro:
        assert sorted(ro.listdir("/")) == sorted(names)


def test_engine_refuses_bad_names(fs, img):
    fs.mkdir("/d")
    for bad, err in [
        ("a*b", errno.EINVAL), ("nul.txt", errno.EINVAL), ("CON", errno.EINVAL), ("com1.log", errno.EINVAL),
        ("trail.", errno.EINVAL), ("trail ", errno.EINVAL), ("ctl\x01", errno.EINVAL), ("x" * 256, errno.ENAMETOOLONG),
        ("😀" * 128, errno.ENAMETOOLONG), ("a:b", errno.EINVAL), ("..", errno.EINVAL),
    ]:
        for op in (fs.create, fs.mkdir):
            with pytest.raises(FsOpError) as ei:
                op("/d/" + bad)
            assert ei.value.errno == err, (bad, op)
        fs.create("/d/ok")
        with pytest.raises(FsOpError) as ei:
            fs.rename("/d/ok", "/d/" + bad)
        assert ei.value.errno == err
        fs.unlink("/d/ok")
    assert fs.listdir("/d") == []
    fs.close()
    fsck_clean(img)


def test_engine_thousand_similar_names(fs, img):
    fs.mkdir("/many")
    names = [f"Quarterly Report {i:04d}.xlsx" for i in range(1000)]
    for name in names:
        fs.create(f"/many/{name}")
    shorts = [fs.short_name(f"/many/{n}") for n in names]
    assert len(set(shorts)) == 1000
    assert shorts[0] == "QUARTE~1.XLS"
    for s in shorts:
        base, _, ext = s.partition(".")
        assert_valid_83(base.encode("cp437").ljust(8, b" ") + ext.encode("cp437").ljust(3, b" "))
    # Each alias finds its own file.
    for name, s in zip(names[:50], shorts[:50], strict=True):
        assert fs.resolve(f"/many/{s}") is fs.resolve(f"/many/{name}")
    fs.close()
    fsck_clean(img)
    with FatFileSystem.open_path(str(img), writable=False) as ro:
        assert sorted(ro.listdir("/many")) == names
        assert [ro.short_name(f"/many/{n}") for n in names] == shorts


def test_names_round_trip_with_mtools(fs, img):
    """An independent reader (mtools) sees the long names and aliases simvol wrote."""
    if not os.path.exists("/usr/bin/mdir"):
        pytest.skip("mtools not installed")
    names = ["readme.txt", "ReadMe2.Txt", "my.file.txt", "A long name with spaces.text"]
    for n in names:
        fs.create("/" + n)
    fs.close()
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    bare = subprocess.run(["mdir", "-b", "-i", str(img), "::/"], capture_output=True, text=True, env=env, timeout=60)
    assert bare.returncode == 0, bare.stderr
    assert sorted(bare.stdout.splitlines()) == sorted("::/" + n for n in names)
    out = subprocess.run(["mdir", "-i", str(img), "::/"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "MYFILE~1 TXT" in out.stdout and "README2  TXT" in out.stdout


# ---------------------------------------------------------------- LongNameRun: the one long-name parser


def _slots(name: str, short11: bytes) -> list[bytes]:
    return N.lfn_slots(name, N.lfn_checksum(short11))


def test_long_name_run_joins_a_valid_run() -> None:
    short = b"LONGFI~1TXT"
    slots = _slots("a long file name.txt", short)
    run = N.LongNameRun()
    for i, s in enumerate(slots):
        assert run.slot(i, s) == []
    assert run.entry(len(slots), short) == ("a long file name.txt", 0, [])
    assert run.entry(len(slots) + 1, b"OTHER   TXT") == (None, len(slots) + 1, [])  # the run was consumed


def test_long_name_run_orphans_what_does_not_belong() -> None:
    short = b"LONGFI~1TXT"
    slots = _slots("a long file name.txt", short)
    assert len(slots) == 2
    run = N.LongNameRun()
    run.slot(0, slots[0])
    run.slot(1, slots[1])
    assert run.entry(2, b"WRONG   TXT") == (None, 2, [(0, 2)])  # checksum of another short name
    run.slot(0, slots[0])
    assert run.gap(1) == [(0, 1)]  # a deleted slot in the middle
    assert run.slot(2, slots[1]) == [(2, 3)]  # a continuation with no run before it
    bad_first = bytes([0x40 | 25]) + slots[0][1:]  # more slots than a 255-unit name needs
    assert run.slot(3, bad_first) == [(3, 4)]
    run.slot(4, slots[0])
    assert run.slot(5, slots[0]) == [(4, 5)]  # a new first slot orphans the pending run
    assert run.entry(6, short) == (None, 6, [(5, 6)])  # incomplete: its second slot never came

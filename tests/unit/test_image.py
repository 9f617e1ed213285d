"""Unit tests for simvol.image: the trailer format, metadata, create/open/lock and their failures.

Real temporary files throughout: flock, fsync and sparse allocation cannot be faked.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import stat
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from simvol.errors import (
    ImageAccessError,
    ImageError,
    ImageFormatError,
    ImageInUseError,
    ImageSizeError,
    ImageVersionError,
)
from simvol.image import TRAILER_SIZE, Image, ImageMetadata, create_image, read_metadata
from simvol.image.locking import parse_proc_locks
from simvol.image.trailer import (
    FORMAT_VERSION,
    MAGIC,
    MAX_PAYLOAD,
    SLOT_SIZE,
    decode_slot,
    encode_slot,
    select_slot,
)
from simvol.types import VolumeFlag

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20
FS = 1 * MiB

HOLD_SCRIPT = """
import sys
from simvol.image import Image
img = Image.open(sys.argv[1], writable=sys.argv[2] == "rw")
print("locked", flush=True)
sys.stdin.read()
"""


# --------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw_slot(path: Path, index: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(os.stat(path).st_size - TRAILER_SIZE + index * SLOT_SIZE)
        return f.read(SLOT_SIZE)


def slot_header(path: Path, index: int) -> tuple[bytes, int, int, int]:
    return struct.unpack_from("<8sIQI", raw_slot(path, index))


def put_slot(path: Path, index: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(os.stat(path).st_size - TRAILER_SIZE + index * SLOT_SIZE)
        f.write(data)


def patch_bytes(path: Path, offset_in_slot: int, index: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(os.stat(path).st_size - TRAILER_SIZE + index * SLOT_SIZE + offset_in_slot)
        f.write(data)


def payload_of(path: Path, index: int) -> dict:
    _, _, _, length = slot_header(path, index)
    return json.loads(raw_slot(path, index)[24 : 24 + length])


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def img(tmp_path: Path) -> Path:
    path = tmp_path / "vol.img"
    create_image(path, FS)
    return path


@pytest.fixture
def holder(img: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process holding the image open for writing (its exclusive lock)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(img), "rw"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        yield child
    finally:
        for pipe in (child.stdin, child.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        child.wait(timeout=10)


# --------------------------------------------------------------------------- flags


def test_volume_flag_values() -> None:
    assert VolumeFlag.SYSTEM_VOLUME == 0x1
    assert VolumeFlag.READONLY == 0x8
    assert VolumeFlag.PAGEFILE == 0x80
    assert VolumeFlag.NO_DEFAULT_DRIVE_LETTER == 0x20000
    assert VolumeFlag.PERMANENTLY_DISMOUNTED == 0x40000
    assert VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED == 0x80000
    assert VolumeFlag.DIRTY == 0x400000
    assert VolumeFlag.BACKED_BY_WIM_IMAGE == 0x2000000
    assert len(VolumeFlag) == 26
    assert "VDS_VF_" in (VolumeFlag.__doc__ or "")


def test_with_flags_and_helpers() -> None:
    meta = ImageMetadata(uuid.uuid4(), FS, 0, {})
    assert not meta.permanently_dismounted
    off = meta.with_flags(set=VolumeFlag.PERMANENTLY_DISMOUNTED | VolumeFlag.HIDDEN)
    assert off is not meta and meta.flags == 0
    assert off.permanently_dismounted and off.hidden and not off.system
    assert off.volume_flags == VolumeFlag.PERMANENTLY_DISMOUNTED | VolumeFlag.HIDDEN
    back = off.with_flags(clear=VolumeFlag.PERMANENTLY_DISMOUNTED)
    assert back.flags == VolumeFlag.HIDDEN
    assert back.with_flags() is back
    with pytest.raises(ValueError):
        meta.with_flags(set=VolumeFlag.DIRTY)  # runtime flag, never stored
    with pytest.raises(AttributeError):
        meta.flags = 1  # type: ignore[misc]
    hash(meta)


def test_metadata_validation() -> None:
    with pytest.raises(ValueError):
        ImageMetadata(uuid.uuid4(), 1000, 0, {})
    with pytest.raises(ValueError):
        ImageMetadata(uuid.uuid4(), FS, -1, {})
    with pytest.raises(TypeError):
        ImageMetadata("not-a-uuid", FS, 0, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ImageMetadata(uuid.uuid4(), FS, 0, {"flags": 3})


# --------------------------------------------------------------------------- trailer bytes


def test_encode_decode_slot() -> None:
    raw = encode_slot(b'{"a":1}', generation=7)
    assert len(raw) == SLOT_SIZE
    assert raw[:8] == MAGIC
    assert struct.unpack_from("<IQI", raw, 8) == (FORMAT_VERSION, 7, 7)
    assert struct.unpack_from("<I", raw, 31)[0] == zlib.crc32(raw[:31])
    assert not any(raw[35:])
    slot = decode_slot(raw, 1)
    assert (slot.index, slot.generation, slot.payload, slot.name) == (1, 7, b'{"a":1}', "B")


def test_payload_limits() -> None:
    encode_slot(b"x" * MAX_PAYLOAD, 1)
    with pytest.raises(ValueError):
        encode_slot(b"x" * (MAX_PAYLOAD + 1), 1)


def test_select_slot_rules() -> None:
    a, b = encode_slot(b"{}", 4), encode_slot(b"{}", 5)
    assert select_slot(a + b).index == 1
    assert select_slot(b + a).index == 0
    torn = b[:25] + b"\xff" + b[26:]  # inside the payload; padding is outside the CRC
    assert select_slot(a + torn).generation == 4
    with pytest.raises(ImageFormatError, match="no valid simvol metadata"):
        select_slot(torn + torn)
    with pytest.raises(ImageFormatError):
        select_slot(a)  # wrong length


def test_parse_proc_locks() -> None:
    st_dev = os.makedev(0xFD, 0x01)
    text = (
        "1: POSIX  ADVISORY  WRITE 111 fd:01:42 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 222 fd:01:42 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 333 fd:01:42 0 EOF\n"
        "3: FLOCK  ADVISORY  WRITE 444 08:02:42 0 EOF\n"
    )
    assert parse_proc_locks(text, st_dev, 42) == 222
    assert parse_proc_locks(text, st_dev, 43) is None
    # st_dev that the kernel does not print (btrfs, overlayfs): a single inode match is used
    assert parse_proc_locks("1: FLOCK ADVISORY WRITE 555 00:2a:77 0 EOF\n", st_dev, 77) == 555
    assert parse_proc_locks("garbage\n\n1: FLOCK x y z w\n", st_dev, 42) is None


# --------------------------------------------------------------------------- create


def test_create_is_sparse(tmp_path: Path) -> None:
    path = tmp_path / "big.img"
    meta = create_image(path, 1024 * MiB)
    st = os.stat(path)
    assert st.st_size == 1024 * MiB + TRAILER_SIZE
    assert st.st_blocks * 512 <= 64 * 1024
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0
    assert meta.fs_size == 1024 * MiB
    assert meta.extra == {}
    assert meta.created_at is not None
    # slot A holds generation 1, slot B was never written
    assert slot_header(path, 0)[:3] == (MAGIC, FORMAT_VERSION, 1)
    assert not any(raw_slot(path, 1))
    doc = payload_of(path, 0)
    assert doc["volume_id"] == str(meta.volume_id) == doc["volume_id"].lower()
    assert "{" not in doc["volume_id"]
    assert doc["fs_size"] == 1024 * MiB and doc["flags"] == 0 and "created" in doc


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rt.img"
    vid = uuid.uuid4()
    flags = VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED | VolumeFlag.NO_DEFAULT_DRIVE_LETTER
    made = create_image(str(path), 64 * MiB, volume_id=vid, flags=flags)
    assert made.volume_id == vid and made.flags == flags
    assert read_metadata(path) == made
    with Image.open(path) as image:
        assert image.metadata == made
        assert image.fs_size == 64 * MiB
        assert image.path == str(path)
        assert image.writable
        assert image.generation == 1
        assert isinstance(image.fd, int)
        assert os.pread(image.fd, 512, 0) == bytes(512)
        assert str(path) in repr(image) and str(vid) in repr(image)
    assert "closed" in repr(image)


def test_create_refuses_runtime_flags(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        create_image(tmp_path / "x.img", FS, flags=VolumeFlag.DIRTY)
    assert not (tmp_path / "x.img").exists()


@pytest.mark.parametrize("size", [0, -512, 1, 511, 1000, 2**41 + 512, 2**50, True, 1.5, "1048576"])
def test_bad_sizes(tmp_path: Path, size: object) -> None:
    path = tmp_path / "bad.img"
    with pytest.raises(ImageSizeError) as info:
        create_image(path, size)  # type: ignore[arg-type]
    assert info.value.path == str(path)
    assert not path.exists()


def test_largest_size_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "2tib.img"
    try:
        create_image(path, 2**41)
    except ImageSizeError as exc:  # a host file system with a smaller maximum file size
        assert not path.exists()
        pytest.skip(f"host cannot hold a 2 TiB sparse file: {exc}")
    assert read_metadata(path).fs_size == 2**41
    assert os.stat(path).st_blocks * 512 <= 64 * 1024


def test_create_existing_path(img: Path) -> None:
    before = sha256(img)
    with pytest.raises(ImageAccessError, match="exists"):
        create_image(img, FS)
    assert sha256(img) == before


def test_create_missing_parent(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "vol.img"
    with pytest.raises(ImageAccessError, match="directory"):
        create_image(path, FS)
    assert not path.parent.exists()


def test_create_does_not_follow_symlink(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    link = tmp_path / "vol.img"
    link.symlink_to(target)
    with pytest.raises(ImageAccessError):
        create_image(link, FS)
    assert target.read_bytes() == b"keep me"
    assert link.is_symlink()

    dangling = tmp_path / "dangling.img"
    dangling.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(ImageAccessError):
        create_image(dangling, FS)
    assert not (tmp_path / "would-be-created").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_create_host_full_removes_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def full(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "pwrite", full)
    path = tmp_path / "full.img"
    with pytest.raises(ImageSizeError, match=errno.errorcode[code]):
        create_image(path, FS)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_create_ftruncate_too_big_removes_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_big(fd: int, length: int) -> None:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(os, "ftruncate", too_big)
    with pytest.raises(ImageSizeError, match="EFBIG"):
        create_image(tmp_path / "big.img", FS)
    assert list(tmp_path.iterdir()) == []


def test_create_interrupted_removes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        create_image(tmp_path / "int.img", FS)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- slots and recovery


def test_generations_alternate_slots(img: Path) -> None:
    with Image.open(img) as image:
        expected = [(0, 1)]
        for i in range(5):
            image.update_flags(set=VolumeFlag.HIDDEN) if i % 2 == 0 else image.update_flags(
                clear=VolumeFlag.HIDDEN
            )
            gen = i + 2
            assert image.generation == gen
            expected.append(((gen - 1) % 2, gen))
        # after 6 generations: A holds 5, B holds 6
        assert slot_header(img, 0)[2] == 5
        assert slot_header(img, 1)[2] == 6
        last = image.metadata
    assert [g % 2 for _, g in expected] == [1, 0, 1, 0, 1, 0]
    assert [s for s, _ in expected] == [0, 1, 0, 1, 0, 1]
    with Image.open(img) as again:
        assert again.generation == 6
        assert again.metadata == last


def test_update_flags_noop_does_not_write(img: Path) -> None:
    with Image.open(img) as image:
        before = sha256(img)
        assert image.update_flags(clear=VolumeFlag.HIDDEN) == image.metadata
        assert image.generation == 1
        assert sha256(img) == before


def test_torn_newest_slot_falls_back(img: Path) -> None:
    with Image.open(img) as image:
        first = image.metadata
        image.update_flags(set=VolumeFlag.PERMANENTLY_DISMOUNTED)  # generation 2, slot B
    assert read_metadata(img).permanently_dismounted
    patch_bytes(img, 30, 1, b"\x00\xff\x00")  # tear the payload of slot B
    recovered = read_metadata(img)
    assert recovered == first and not recovered.permanently_dismounted
    # the next write goes to the damaged slot again, with the next generation after the good one
    with Image.open(img) as image:
        assert image.generation == 1
        image.update_flags(set=VolumeFlag.HIDDEN)
        assert image.generation == 2
    assert slot_header(img, 1)[2] == 2
    assert slot_header(img, 0)[2] == 1
    assert read_metadata(img).hidden


def test_torn_header_falls_back(img: Path) -> None:
    with Image.open(img) as image:
        image.update_flags(set=VolumeFlag.HIDDEN)  # gen 2 in B
        image.update_flags(clear=VolumeFlag.HIDDEN)  # gen 3 in A
    patch_bytes(img, 12, 0, struct.pack("<Q", 99))  # generation of slot A changed, CRC now wrong
    meta = read_metadata(img)
    assert meta.hidden  # generation 2 from slot B


def test_both_slots_corrupt(img: Path) -> None:
    with Image.open(img) as image:
        image.update_flags(set=VolumeFlag.HIDDEN)
    patch_bytes(img, 40, 0, b"garbage")
    patch_bytes(img, 40, 1, b"garbage")
    with pytest.raises(ImageFormatError, match="no valid simvol metadata"):
        Image.open(img)
    with pytest.raises(ImageFormatError, match="no valid simvol metadata"):
        read_metadata(img)


def test_wrong_magic(img: Path) -> None:
    patch_bytes(img, 0, 0, b"NOTSIMVL")
    with pytest.raises(ImageFormatError, match="bad magic"):
        Image.open(img)


def test_newer_format_version(img: Path) -> None:
    payload = payload_of(img, 0)
    put_slot(
        img, 1, encode_slot(json.dumps(payload).encode(), generation=2, version=FORMAT_VERSION + 1)
    )
    with pytest.raises(ImageVersionError, match="newer simvol"):
        Image.open(img)
    with pytest.raises(ImageFormatError):  # ImageVersionError is a format error too
        read_metadata(img)


def test_newer_version_in_older_slot_is_ignored(img: Path) -> None:
    payload = payload_of(img, 0)
    put_slot(img, 1, encode_slot(json.dumps(payload).encode(), generation=0, version=99))
    assert read_metadata(img).fs_size == FS


def test_file_too_small(tmp_path: Path) -> None:
    for size in (0, 100, TRAILER_SIZE, TRAILER_SIZE + 511):
        path = tmp_path / f"small{size}.img"
        path.write_bytes(bytes(size))
        with pytest.raises(ImageFormatError, match="too small"):
            Image.open(path)


def test_plain_zero_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.img"
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
    with pytest.raises(ImageFormatError, match="no valid simvol metadata"):
        Image.open(path)


def test_fs_size_mismatch(img: Path, tmp_path: Path) -> None:
    trailer = img.read_bytes()[-TRAILER_SIZE:]
    grown = tmp_path / "grown.img"
    with open(grown, "wb") as f:
        f.truncate(FS + 512)
        f.seek(FS + 512)
        f.write(trailer)
    with pytest.raises(ImageFormatError, match="file-system region"):
        Image.open(grown)
    with open(img, "r+b") as f:  # appended garbage moves the trailer: no metadata at the end
        f.seek(0, os.SEEK_END)
        f.write(bytes(512))
    with pytest.raises(ImageFormatError):
        Image.open(img)


def test_bad_json_in_valid_slot(img: Path) -> None:
    put_slot(img, 1, encode_slot(b"{not json", generation=2))
    with pytest.raises(ImageFormatError, match="JSON"):
        Image.open(img)
    put_slot(img, 1, encode_slot(b'{"volume_id": "x", "fs_size": 1048576, "flags": 0}', 2))
    with pytest.raises(ImageFormatError, match="invalid"):
        Image.open(img)
    put_slot(img, 1, encode_slot(b'{"fs_size": 1048576}', 2))
    with pytest.raises(ImageFormatError, match="lacks"):
        Image.open(img)


def test_unknown_keys_preserved(img: Path) -> None:
    doc = payload_of(img, 0)
    doc["future_key"] = {"nested": [1, 2, "three"], "ü": True}
    doc["another"] = 42
    put_slot(img, 1, encode_slot(json.dumps(doc).encode(), generation=2))
    with Image.open(img) as image:
        assert image.metadata.extra == {"future_key": doc["future_key"], "another": 42}
        image.update_flags(set=VolumeFlag.PERMANENTLY_DISMOUNTED)  # gen 3 -> slot A
    rewritten = payload_of(img, 0)
    assert rewritten["future_key"] == doc["future_key"]
    assert rewritten["another"] == 42
    assert rewritten["created"] == doc["created"]
    assert rewritten["flags"] == VolumeFlag.PERMANENTLY_DISMOUNTED
    assert read_metadata(img).extra["another"] == 42


# --------------------------------------------------------------------------- write_metadata


def test_write_metadata_checks(img: Path) -> None:
    with Image.open(img) as image:
        meta = image.metadata
        with pytest.raises(ValueError, match="slot"):
            image.write_metadata(ImageMetadata(meta.volume_id, FS, 0, {"big": "x" * 5000}))
        with pytest.raises(ValueError):
            image.write_metadata(ImageMetadata(meta.volume_id, FS * 2, 0, {}))
        assert image.generation == 1
        new_id = uuid.uuid4()
        image.write_metadata(ImageMetadata(new_id, FS, 0, {}, meta.created))
    assert read_metadata(img).volume_id == new_id


def test_write_metadata_host_full_keeps_previous(
    img: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Image.open(img) as image:
        real_pwrite = os.pwrite

        def full(*args: object) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "pwrite", full)
        with pytest.raises(ImageError, match="previous metadata is intact"):
            image.update_flags(set=VolumeFlag.HIDDEN)
        assert not image.metadata.hidden and image.generation == 1
        monkeypatch.setattr(os, "pwrite", real_pwrite)
        image.update_flags(set=VolumeFlag.HIDDEN)
        assert image.generation == 2
    assert read_metadata(img).hidden


def test_read_only_image_refuses_writes(img: Path) -> None:
    with Image.open(img, writable=False) as image:
        assert not image.writable
        with pytest.raises(ImageAccessError, match="read-only"):
            image.update_flags(set=VolumeFlag.HIDDEN)
        with pytest.raises(OSError):
            os.pwrite(image.fd, b"x", 0)


def test_close_is_idempotent(img: Path) -> None:
    image = Image.open(img)
    image.close()
    image.close()
    assert image.closed
    with pytest.raises(ValueError):
        _ = image.fd
    with pytest.raises(ValueError):
        image.fsync()


# --------------------------------------------------------------------------- access errors


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(ImageAccessError, match="no such image") as info:
        Image.open(tmp_path / "missing.img")
    assert info.value.path == str(tmp_path / "missing.img")
    with pytest.raises(ImageAccessError):
        read_metadata(tmp_path / "missing.img")


def test_directory(tmp_path: Path) -> None:
    for writable in (True, False):
        with pytest.raises(ImageAccessError, match="not a regular file"):
            Image.open(tmp_path, writable=writable)


def test_fifo_and_device(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for writable in (True, False):  # must not block waiting for a writer
        with pytest.raises(ImageAccessError, match="not a regular file"):
            Image.open(fifo, writable=writable)
    with pytest.raises(ImageAccessError, match="not a regular file"):
        Image.open("/dev/null")


def test_symlink_is_not_opened(img: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.img"
    link.symlink_to(img)
    with pytest.raises(ImageAccessError, match="symbolic link"):
        Image.open(link)


def _make_read_only(path: Path) -> bool:
    """chmod a-w; as root (which ignores modes) use the immutable attribute instead."""
    path.chmod(0o400)
    if os.geteuid() != 0:
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def _undo_read_only(path: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o600)


def test_read_only_file(img: Path) -> None:
    if not _make_read_only(img):
        pytest.skip("cannot make a file read-only for root here (no chattr +i)")
    try:
        before = sha256(img)
        with pytest.raises(ImageAccessError, match="writable=False"):
            Image.open(img)
        with Image.open(img, writable=False) as image:
            assert image.metadata.fs_size == FS
        assert read_metadata(img).fs_size == FS
        assert sha256(img) == before
    finally:
        _undo_read_only(img)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_errors_are_access_errors(
    img: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    real_open = os.open

    def refuse_write(path: object, flags: int, *args: object) -> int:
        if flags & os.O_RDWR:
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse_write)
    with pytest.raises(ImageAccessError, match="read-only"):
        Image.open(img)
    with Image.open(img, writable=False):
        pass


# --------------------------------------------------------------------------- locking


def test_second_open_in_same_process_is_refused(img: Path) -> None:
    first = Image.open(img)
    try:
        with pytest.raises(ImageInUseError, match="in use") as info:
            Image.open(img)
        assert info.value.path == str(img)
        assert info.value.pid in (os.getpid(), None)
        with pytest.raises(ImageInUseError):
            Image.open(img, writable=False)  # shared lock conflicts with the writer
        assert read_metadata(img) == first.metadata  # lock-free read still works
    finally:
        first.close()
    with Image.open(img) as again:
        assert again.writable


def test_readers_share(img: Path) -> None:
    with Image.open(img, writable=False) as r1, Image.open(img, writable=False) as r2:
        assert r1.metadata == r2.metadata
        with pytest.raises(ImageInUseError):
            Image.open(img)
    Image.open(img).close()


def test_open_held_by_another_process(img: Path, holder: subprocess.Popen[str]) -> None:
    before = sha256(img)
    with pytest.raises(ImageInUseError) as info:
        Image.open(img)
    if os.access("/proc/locks", os.R_OK):
        assert info.value.pid == holder.pid
    assert info.value.path == str(img)
    assert pickle.loads(pickle.dumps(info.value)).pid == info.value.pid
    with pytest.raises(ImageInUseError):
        Image.open(img, writable=False)
    assert read_metadata(img).fs_size == FS
    assert sha256(img) == before
    holder.stdin.close()  # type: ignore[union-attr]
    holder.wait(timeout=10)
    with Image.open(img) as image:
        assert image.writable


def test_lock_released_when_holder_is_killed(img: Path, holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait(timeout=10)
    Image.open(img).close()


def test_lock_false_does_not_lock(img: Path) -> None:
    with Image.open(img, writable=False, lock=False), Image.open(img) as writer:
        assert writer.writable


# --------------------------------------------------------------------------- failing opens change nothing


def _corrupt_both(p: Path) -> None:
    patch_bytes(p, 30, 0, b"\xde\xad")
    patch_bytes(p, 0, 1, b"junkjunk")


def _newer_version(p: Path) -> None:
    put_slot(p, 1, encode_slot(json.dumps(payload_of(p, 0)).encode(), 2, FORMAT_VERSION + 1))


def _mismatch(p: Path) -> None:
    doc = payload_of(p, 0)
    doc["fs_size"] = FS * 2
    put_slot(p, 1, encode_slot(json.dumps(doc).encode(), 2))


def _truncate_small(p: Path) -> None:
    os.truncate(p, TRAILER_SIZE + 100)


@pytest.mark.parametrize("damage", [_corrupt_both, _newer_version, _mismatch, _truncate_small])
@pytest.mark.parametrize("writable", [True, False])
def test_failing_open_leaves_file_identical(img: Path, damage, writable: bool) -> None:  # type: ignore[no-untyped-def]
    damage(img)
    before, fds = sha256(img), open_fds()
    with pytest.raises(ImageFormatError):
        Image.open(img, writable=writable)
    assert sha256(img) == before
    assert open_fds() == fds  # the descriptor (and its lock) was released
    with open(img, "rb") as f:  # the file is not left locked either
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_in_use_open_leaves_file_identical(img: Path) -> None:
    with Image.open(img):
        before, fds = sha256(img), open_fds()
        with pytest.raises(ImageInUseError):
            Image.open(img)
        assert sha256(img) == before and open_fds() == fds


# --------------------------------------------------------------------------- pickling


@pytest.mark.parametrize(
    "exc",
    [
        ImageError("boom", "/x/a.img"),
        ImageError("no path"),
        ImageInUseError("image in use by another process", "/x/a.img", pid=4242),
        ImageInUseError("image in use by another process", "/x/a.img"),
        ImageFormatError("no valid simvol metadata", "/x/a.img"),
        ImageVersionError("newer", "/x/a.img"),
        ImageAccessError("no such image file", "/x/a.img"),
        ImageSizeError("too big", "/x/a.img"),
    ],
)
def test_exceptions_pickle(exc: ImageError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.path == exc.path
    assert getattr(back, "pid", None) == getattr(exc, "pid", None)


def test_raised_exceptions_pickle(tmp_path: Path, img: Path) -> None:
    raised: list[ImageError] = []
    for action in (
        lambda: Image.open(tmp_path / "missing"),
        lambda: Image.open(tmp_path),
        lambda: create_image(tmp_path / "s.img", 7),
        lambda: create_image(img, FS),
    ):
        with pytest.raises(ImageError) as info:
            action()
        raised.append(info.value)
    with Image.open(img):
        with pytest.raises(ImageInUseError) as info2:
            Image.open(img)
        raised.append(info2.value)
    for exc in raised:
        back = pickle.loads(pickle.dumps(exc))
        assert (type(back), str(back), back.path) == (type(exc), str(exc), exc.path)

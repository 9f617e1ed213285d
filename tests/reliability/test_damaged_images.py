"""Damaged images: every mutation works or fails with a clear ``VdsError`` — and harms nothing else.

``test_damage_sample`` runs ``SIMVOL_DAMAGE_MUTATIONS`` (default 24) mutations of the campaign
(``tools.campaign.damage``): valid images with content, made through the service, are copied and damaged —
boot sector, FSInfo, both FATs, directory clusters, the metadata trailer (also slots with a valid CRC and a
hostile payload), truncation, extension, zeroed ranges, combinations — then attached (every fourth through
``simvol --json attach``), walked and read through the mount, written to, checked, dismounted, repaired,
remounted and detached, each in its own process with a time limit. No hang, no exception other than
``VdsError`` (with a code and a message), no traceback on the CLI's stderr or in a daemon log, no write outside
the image (sentinels beside it, the root's other images, the trailer, the file size), no mount or daemon left,
no damage amplification (a volume that mounted, read and checked clean comes back identical after a clean
dismount, repair and remount), and a second, healthy volume keeps its daemon and keeps reading and writing.
``SIMVOL_DAMAGE_SEED`` sets the first seed; every failure names its seed. The full campaign is
``scripts/campaign damage --mutations 2000`` (docs/reliability.md).

The other tests pin the bugs the campaign found, each where it was fixed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import time

import pytest

from simvol.errors import ImageFormatError, VdsError
from simvol.fat import FatFileSystem, check, format_volume
from simvol.image import Image, create_image, read_metadata
from simvol.image.trailer import SLOT_SIZE, encode_slot
from simvol.service import VolumeService
from tests.support.processes import daemons_of
from tools.campaign.damage import DEFAULT_SEED, run_campaign

MUTATIONS = int(os.environ.get("SIMVOL_DAMAGE_MUTATIONS", "24"))
SEED = int(os.environ.get("SIMVOL_DAMAGE_SEED", str(DEFAULT_SEED)))
MiB = 1 << 20
needs_fsck = pytest.mark.skipif(shutil.which("fsck.fat") is None, reason="fsck.fat (dosfstools) is not installed")


@pytest.mark.fuse
@needs_fsck
def test_damage_sample(tmp_path):
    lines: list[str] = []
    summary = run_campaign(str(tmp_path / "campaign"), MUTATIONS, SEED, workers=2, timeout=90, log=lines.append)
    report = "\n".join(summary.lines())
    assert summary.ok, report
    assert len(summary.results) == MUTATIONS
    outcomes = {r.attach for r in summary.results}
    assert "S_OK" in outcomes and len(outcomes) > 1, report  # both kinds happened: the sample means something


# ------------------------------------------------------------------------------------------ regressions


def _bare_volume(path, size=40 * MiB) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
    fd = os.open(path, os.O_RDWR)
    try:
        format_volume(fd, size)
    finally:
        os.close(fd)


def _poke(path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _sector(path, n: int, bps: int = 512) -> bytes:
    with open(path, "rb") as f:
        f.seek(n * bps)
        return f.read(bps)


@pytest.mark.parametrize("where", ["zero", "in_fat", "on_file_data", "0xffff"])
def test_fsinfo_sector_outside_reserved_area_is_never_written(tmp_path, where):
    """Regression: the clean dismount rewrote FSInfo wherever BPB_FSInfo pointed. With 0 (which some tools
    write for "none") it overwrote the boot sector and its backup, and the volume never mounted again; with a
    sector in a FAT or in file data it corrupted them. Now a BPB_FSInfo outside the reserved area names no FSInfo
    sector (``layout.parse_boot_sector``) and nothing is written there (``FatFileSystem._mark_clean``,
    ``check``)."""
    img = tmp_path / "v.img"
    _bare_volume(img)
    data = bytes(range(256)) * 40
    with FatFileSystem.open_path(str(img)) as fs:
        fs.create("/data.bin")
        fs.write("/data.bin", data, 0)
        rsvd, bps = fs.geo.reserved_sectors, fs.geo.bytes_per_sector
        first = fs.resolve("/data.bin").cluster
        data_sector = fs.geo.cluster_offset(first) // bps
        fat_sector = fs.geo.fat_offset(0) // bps + 3
    value = {"zero": 0, "in_fat": fat_sector, "on_file_data": data_sector, "0xffff": 0xFFFF}[where]
    assert value == 0 or value >= rsvd
    for base in (0, 6):
        _poke(img, base * bps + 0x30, struct.pack("<H", value))
    target_before = _sector(img, value) if value else None
    with FatFileSystem.open_path(str(img)) as fs:  # a mount that changes something, then a clean close
        fs.create("/second.txt")
        fs.write("/second.txt", b"second", 0)
    if value and where != "in_fat":
        assert _sector(img, value) == target_before, "FSInfo was written outside the reserved area"
    with FatFileSystem.open_path(str(img), writable=False) as fs:  # the boot sector survived
        assert fs.read("/data.bin", len(data), 0) == data
        assert fs.read("/second.txt", 6, 0) == b"second"
    fd = os.open(img, os.O_RDONLY)
    try:
        problems = check(fd, 40 * MiB)
    finally:
        os.close(fd)
    assert [p.kind for p in problems] == ["fsinfo"], problems  # only the unusable BPB_FSInfo itself
    assert not problems[0].repaired


@pytest.mark.parametrize("into", ["root", "subdir"])
def test_file_chain_running_into_a_directory_is_cut_at_its_size(tmp_path, into):
    """Regression: a file whose FAT chain ran on into a directory's clusters (one damaged FAT entry) was trusted
    to its end. Growing the file wrote its data into the directory, cutting it back freed the directory's
    clusters, deleting it did the same — the root directory was gone and the volume never mounted again. The
    engine now uses only the clusters the size covers (``FatFileSystem._file_chain``)."""
    img = tmp_path / "v.img"
    _bare_volume(img)
    with FatFileSystem.open_path(str(img)) as fs:
        fs.mkdir("/Sub Dir")
        fs.create("/Sub Dir/inner.txt")
        fs.write("/Sub Dir/inner.txt", b"inner", 0)
        fs.create("/victim.txt")
        fs.write("/victim.txt", b"v" * 100, 0)
        first = fs.resolve("/victim.txt").cluster
        target = fs.geo.root_cluster if into == "root" else fs.resolve("/Sub Dir").cluster
        fat = [fs.geo.fat_offset(k) for k in range(fs.geo.num_fats)]
    for off in fat:  # the file's single cluster now links on into the directory (both FATs agree)
        _poke(img, off + 4 * first, struct.pack("<I", target))
    with FatFileSystem.open_path(str(img)) as fs:
        fs.write("/victim.txt", b"G" * 10_000, 100)  # grows: must allocate, not reuse the directory
        fs.truncate("/victim.txt", 100)
        assert fs.read("/victim.txt", 200, 0) == b"v" * 100
        assert sorted(fs.listdir("/")) == ["Sub Dir", "victim.txt"]
        assert fs.read("/Sub Dir/inner.txt", 10, 0) == b"inner"
        fs.unlink("/victim.txt")  # frees the file's own cluster only
        assert fs.listdir("/") == ["Sub Dir"]
        assert fs.read("/Sub Dir/inner.txt", 10, 0) == b"inner"
    fd = os.open(img, os.O_RDWR)
    try:
        check(fd, 40 * MiB, repair=True)  # the link into the directory is gone with the unlink; nothing to lose
        assert check(fd, 40 * MiB) == []
    finally:
        os.close(fd)
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert fs.read("/Sub Dir/inner.txt", 10, 0) == b"inner"


def _rename_short(img, old11: bytes, new11: bytes) -> None:
    """Rename a short entry in place; its long-name slots (if any) get the new checksum, as a buggy tool would
    have written them."""
    from simvol.fat.names import lfn_checksum

    with open(img, "r+b") as f:
        data = f.read()
        i = data.find(old11)
        assert i >= 0 and i % 32 == 0
        f.seek(i)
        f.write(new11)
        j = i - 32
        while j >= 0 and data[j + 11] == 0x0F:
            f.seek(j + 13)
            f.write(bytes([lfn_checksum(new11)]))
            j -= 32


def test_bad_short_names_are_found_and_renamed(tmp_path):
    """Regression: ``check`` did not look at short names, so an entry named ``B/B.TXT`` or ``B*?.TXT`` (damage;
    fsck.fat calls it "Bad short file name") was never reported or repaired. It is ``bad_name`` now, and repair
    renames it ``FSCKnnnn.nnn`` as fsck.fat does, keeping a long name (its slots get the new checksum)."""
    img = tmp_path / "v.img"
    _bare_volume(img)
    with FatFileSystem.open_path(str(img)) as fs:
        for name in ("AAA.TXT", "BBB.TXT", "CCC.TXT", "A Long Name Kept.txt"):
            fs.create("/" + name)
            fs.write("/" + name, name.encode(), 0)
        alias = fs.short_name("/A Long Name Kept.txt")
    _rename_short(img, b"BBB     TXT", b"B/B     TXT")
    stem, _, ext = alias.partition(".")
    _rename_short(img, stem.encode().ljust(8) + ext.encode().ljust(3), b"X*?     TXT")
    fd = os.open(img, os.O_RDWR)
    try:
        found = check(fd, 40 * MiB)
        assert sorted(p.kind for p in found) == ["bad_name", "bad_name"], found
        check(fd, 40 * MiB, repair=True)
        assert check(fd, 40 * MiB) == []
    finally:
        os.close(fd)
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        names = sorted(fs.listdir("/"))
        assert names == ["A Long Name Kept.txt", "AAA.TXT", "CCC.TXT", "FSCK0000.000"], names
        assert fs.read("/FSCK0000.000", 20, 0) == b"BBB.TXT"
        assert fs.read("/A Long Name Kept.txt", 40, 0) == b"A Long Name Kept.txt"
    if shutil.which("fsck.fat"):
        import subprocess

        trimmed = tmp_path / "fs.img"
        shutil.copy(img, trimmed)
        r = subprocess.run(["fsck.fat", "-n", str(trimmed)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


@pytest.mark.fuse
def test_a_name_with_a_slash_does_not_hide_its_directory(tmp_path):
    """Regression: one damaged entry whose name held "/" made ``readdir`` of its whole directory fail with EIO
    (the kernel refuses such a name), so every other file in it vanished from listings. ``VolumeOps.readdir``
    leaves the unusable name out; ``check`` reports it and repair renames it."""
    import subprocess
    import sys

    svc = VolumeService(tmp_path / "root")
    vol = svc.create_volume(40 * MiB)
    mk = "import sys\nfor n in ('AAA.TXT', 'BBB.TXT', 'CCC.TXT'): open(sys.argv[1] + '/' + n, 'w').write(n)"
    subprocess.run([sys.executable, "-c", mk, vol.mount_path], check=True, timeout=30)
    img = vol.image
    vol.dismount()
    _rename_short(img, b"BBB     TXT", b"B/B     TXT")
    vol.mount()
    ls = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"
    out = subprocess.run([sys.executable, "-c", ls, vol.mount_path], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "['AAA.TXT', 'CCC.TXT']", out
    assert [p["kind"] for p in vol.check()] == ["bad_name"]
    vol.dismount()
    vol.check(repair=True)
    vol.mount()
    out = subprocess.run([sys.executable, "-c", ls, vol.mount_path], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "['AAA.TXT', 'CCC.TXT', 'FSCK0000.000']", out
    vol.delete()
    svc.close()


def test_backup_boot_sector_on_the_fsinfo_sector_is_dropped(tmp_path):
    """Regression: BPB_BkBootSec == BPB_FSInfo made every clean dismount overwrite FSInfo with the boot sector
    (and the next mount recount the free clusters). The backup boot sector is now ignored in that case."""
    img = tmp_path / "v.img"
    _bare_volume(img)
    _poke(img, 0x32, struct.pack("<H", 1))
    with FatFileSystem.open_path(str(img)) as fs:
        fs.create("/f.txt")
    fsinfo = _sector(img, 1)
    assert fsinfo[:4] == b"RRaA" and fsinfo[0x1E4:0x1E8] == b"rrAa", "FSInfo was overwritten"


def test_stale_fsinfo_free_count_does_not_refuse_space(tmp_path):
    """Regression: a clean volume whose FSInfo said 0 free clusters (a stale hint from another tool, or damage)
    refused every allocation with ENOSPC although the FAT was nearly empty. The count is only a hint now: when it
    would refuse space, the allocator counts the FAT once (``FatTable.allocate``)."""
    img = tmp_path / "v.img"
    _bare_volume(img)
    _poke(img, 512 + 0x1E8, struct.pack("<I", 0))
    _poke(img, 6 * 512 + 512 + 0x1E8, struct.pack("<I", 0))
    with FatFileSystem.open_path(str(img)) as fs:
        assert fs.statfs().free_clusters == 0  # the hint is taken as it is …
        fs.create("/big.bin")
        fs.write("/big.bin", b"x" * 300_000, 0)  # … but does not refuse space the FAT has
        assert fs.statfs().free_clusters > 60_000
    with FatFileSystem.open_path(str(img), writable=False) as fs:
        assert fs.stat("/big.bin").size == 300_000


def test_deeply_nested_metadata_payload_is_a_format_error(tmp_path):
    """Regression: a trailer slot with a valid CRC holding deeply nested JSON made ``json.loads`` raise
    RecursionError, which escaped ``ImageMetadata.from_payload`` (attach: a traceback, CLI: an internal error).
    It is an ImageFormatError now, and attach fails with VDS_E_OBJECT_STATUS_FAILED."""
    img = str(tmp_path / "v.img")
    meta = create_image(img, 40 * MiB)
    _poke(img, meta.fs_size + SLOT_SIZE, encode_slot(b"[" * 2030 + b"]" * 2030, 99))
    with pytest.raises(ImageFormatError):
        read_metadata(img)
    svc = VolumeService(tmp_path / "root")
    with pytest.raises(VdsError) as info:
        svc.attach(img)
    assert info.value.code == "VDS_E_OBJECT_STATUS_FAILED" and "JSON" in str(info.value)
    svc.close()


@pytest.mark.fuse
def test_failed_mount_returns_only_after_the_daemon_exited(tmp_path):
    """Regression: when the daemon could not mount an image (a damaged boot sector), it reported the failure
    before closing the image and exiting, so attach failed while a daemon still ran and held the image's lock.
    Now the daemon closes the image first and the launcher waits for its pid to exit."""
    svc = VolumeService(tmp_path / "root")
    vol = svc.create_volume(40 * MiB)
    img = vol.image
    vol.dismount()
    vol.detach()
    for base in (0, 6):
        _poke(img, base * 512 + 0x0E, struct.pack("<H", 1))  # 1 reserved sector: not FAT32
    for _ in range(5):
        with pytest.raises(VdsError) as info:
            svc.attach(img)
        assert info.value.code == "VDS_E_OBJECT_STATUS_FAILED" and "reserved sectors" in str(info.value)
        assert daemons_of(str(tmp_path / "root")) == []
        fd = os.open(img, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no grace: the lock is free at once
        finally:
            os.close(fd)
    svc.close()


def test_lock_of_a_forked_child_before_exec_is_not_in_use(tmp_path):
    """Regression: a thread forked a subprocess while another thread had an image open; the child held a copy of
    the descriptor — and the flock — until its exec, and the next open of the image in that window failed with
    "image in use by another process" (create_volume: VDS_E_IO_ERROR). A lock that goes away within
    ``LOCK_GRACE`` no longer counts as a holder."""
    img = str(tmp_path / "v.img")
    create_image(img, 40 * MiB)
    im = Image.open(img)
    pid = os.fork()
    if pid == 0:  # the child: holds the inherited descriptor for a moment, as before an exec
        time.sleep(0.1)
        os._exit(0)
    try:
        im.close()
        t0 = time.monotonic()
        with Image.open(img):
            pass
        assert time.monotonic() - t0 < 1
    finally:
        os.waitpid(pid, 0)
    held = Image.open(img)  # a real holder is still refused
    try:
        with pytest.raises(Exception) as info:
            Image.open(img)
        assert "in use" in str(info.value)
    finally:
        held.close()


def test_campaign_results_are_json(tmp_path):
    """The campaign's --json output stays serializable (docs/reliability.md figures come from it)."""
    from dataclasses import asdict

    from tools.campaign.damage import MutationResult

    json.dumps(asdict(MutationResult(0, 1, base="tree", mutation="zero boot 4B", steps={"attach": {"ok": True}})))

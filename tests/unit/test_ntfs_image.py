"""NTFS in a simvol image through ntfs-3g's tools (simvol/image/ntfs.py, the first piece of issue #13).

Oracles nobody here wrote: ``ntfsfix -n`` on the region, ``ntfsinfo``/``ntfscat``/``ntfsls``, and ``lowntfs-3g``
serving the image."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from simvol.errors import FormatError
from simvol.image import create_image, read_metadata
from simvol.image.ntfs import NTFS, default_cluster_size

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
pytestmark = pytest.mark.skipif(shutil.which("mkntfs", path=SBIN) is None, reason="ntfs-3g is not installed")
MiB = 1 << 20


def tool(name: str) -> str:
    path = shutil.which(name, path=SBIN)
    assert path, name
    return path


def ntfs_image(tmp_path: Path, size: int = 64 * MiB, **kw: object) -> str:
    img = str(tmp_path / "n.img")
    meta = create_image(img, size)
    NTFS.format(img, **kw)  # type: ignore[arg-type]
    assert read_metadata(img) == meta  # mkntfs kept to the region: the trailer is as it was
    return img


def test_format_writes_ntfs_in_the_region_only(tmp_path: Path) -> None:
    img = ntfs_image(tmp_path, label="DATA", unit=8192)
    info = subprocess.run([tool("ntfsinfo"), "-m", img], capture_output=True, text=True).stdout
    assert "Volume Name: DATA" in info and "Cluster Size: 8192" in info
    assert NTFS.label(img) == "DATA"
    assert NTFS.check(img) == []  # ntfsfix -n on the region: "processed successfully"
    # on the whole file ntfsfix looks for the alternate boot sector where the trailer is: why check() uses the region
    whole = subprocess.run([tool("ntfsfix"), "-n", img], capture_output=True, text=True).stdout
    assert "alternate boot sector... BAD" in whole


def test_rules_and_defaults() -> None:
    assert default_cluster_size(64 * MiB) == 4096 == default_cluster_size(16 << 40)
    assert default_cluster_size(20 << 40) == 8192 and default_cluster_size(200 << 40) == 65536
    assert NTFS.format_support(MiB) == (0, ())
    for args, reason in [((MiB,), "too_small"), ((64 * MiB, 3000), "cluster_too_small"),
                         ((64 * MiB, 1 << 17), "cluster_too_big"), ((64 * MiB, 0, "x" * 33), "bad_label"),
                         ((64 * MiB, 0, "tab\there"), "bad_label")]:
        with pytest.raises(FormatError) as e:
            NTFS.plan(*args, windows_limits=True)  # type: ignore[arg-type]
        assert e.value.reason == reason, args
    NTFS.plan(64 * MiB, 4096, "Backup 2026 (weekly)", windows_limits=True)  # NTFS labels take what FAT refuses


@pytest.mark.fuse
def test_lowntfs_3g_serves_the_image_and_leaves_it_clean(tmp_path: Path) -> None:
    img = ntfs_image(tmp_path, label="SERVED")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen([tool("lowntfs-3g"), "-o", "no_detach,windows_names,ignore_case", img, str(mnt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.path.ismount(mnt)
        (mnt / "Docs").mkdir()
        (mnt / "Docs" / "Hello.txt").write_text("hello ntfs\n")
        assert (mnt / "DOCS" / "HELLO.TXT").read_text() == "hello ntfs\n"  # case-insensitive, case-preserving
        with pytest.raises(OSError):
            (mnt / "bad:name").write_text("x")  # a name Windows refuses
        with open(mnt / "sparse.bin", "wb") as f:  # past FAT32's 4 GiB limit, sparse
            f.truncate((4 << 30) + 5)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        proc.wait(20)
    assert NTFS.check(img) == []
    assert subprocess.run([tool("ntfscat"), img, "/Docs/Hello.txt"], capture_output=True,
                          text=True).stdout == "hello ntfs\n"
    listing = subprocess.run([tool("ntfsls"), "-l", img], capture_output=True, text=True).stdout
    assert "Docs" in listing and "sparse.bin" in listing and str((4 << 30) + 5) in listing
    assert os.stat(img).st_blocks * 512 < 64 * MiB  # still sparse
    assert read_metadata(img).fs_size == 64 * MiB

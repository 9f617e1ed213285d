"""ntfs-3g's own tools as oracles for NTFS images: ``ntfsfix -n``, ``ntfscat``, ``ntfsls``.

A simvol image holds the file system in ``[0, fs_size)`` and its trailer after it; ``ntfsfix`` looks for NTFS's
alternate boot sector at the end of the file, so every tool here reads a sparse copy of the region alone.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from simvol.image import read_metadata

TIMEOUT = 120


@contextmanager
def region(image: str) -> Iterator[str]:
    """A sparse copy of the image's file-system region (the whole file for an image without a trailer)."""
    try:
        size = read_metadata(image).fs_size
    except Exception:  # noqa: BLE001 - a plain mkntfs image: the whole file is the volume
        size = os.path.getsize(image)
    with tempfile.TemporaryDirectory(prefix="ntfsoracle-") as tmp:
        copy = os.path.join(tmp, "region.img")
        subprocess.run(["cp", "--sparse=always", image, copy], check=True, timeout=TIMEOUT)
        os.truncate(copy, size)
        yield copy


def ntfsfix_n(image: str) -> subprocess.CompletedProcess[str]:
    with region(image) as r:
        return subprocess.run(["ntfsfix", "-n", r], capture_output=True, text=True, timeout=TIMEOUT)


def assert_ntfs_clean(image: str) -> None:
    done = ntfsfix_n(image)
    assert done.returncode == 0 and "processed successfully" in done.stdout, (
        f"ntfsfix -n {image} (region) found problems:\n{done.stdout}\n{done.stderr}")


def ntfscat(image: str, path: str) -> bytes:
    with region(image) as r:
        done = subprocess.run(["ntfscat", r, path], capture_output=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"ntfscat {path}: {done.stderr.decode(errors='replace')}"
    return done.stdout


def ntfsls(image: str, path: str = "/") -> list[str]:
    with region(image) as r:
        done = subprocess.run(["ntfsls", "-p", path, r], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"ntfsls {path}: {done.stderr}"
    return done.stdout.split()

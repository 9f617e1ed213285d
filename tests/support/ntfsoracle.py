"""ntfs-3g's own tools as oracles for NTFS images: ``ntfsfix -n``, ``ntfscat``, ``ntfsls``.

A simvol image holds the file system in ``[0, fs_size)`` and its trailer after it; ``ntfsfix`` looks for NTFS's
alternate boot sector at the end of the file, so every tool here reads a sparse copy of the region alone.
"""

from __future__ import annotations

import subprocess

from tools.campaign.common import ntfs_region as region
from tools.campaign.common import ntfsfix_clean

TIMEOUT = 120


def assert_ntfs_clean(image: str) -> None:
    clean, out = ntfsfix_clean(image)
    assert clean, f"ntfsfix -n {image} (region) found problems:\n{out}"


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

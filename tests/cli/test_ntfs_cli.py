"""NTFS volumes through the installed ``simvol`` command: create, show, format both ways, adopt, --ntfs-native.

Oracles: the JSON contract, ntfs-3g's tools on the image's region (``ntfsfix -n``, ``ntfscat``), ``fsck.fat -n``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ntfsoracle import assert_ntfs_clean, ntfscat

from .conftest import Cli, sh

pytestmark = pytest.mark.fuse


def test_create_show_format_ntfs(fresh_cli: Cli) -> None:
    vol = fresh_cli.create("--fs", "NTFS", "--label", "Backup Disk", "--letter", "E", size="64M")
    assert vol["filesystem"] == "NTFS" and vol["label"] == "Backup Disk" and vol["mounted"]
    assert not vol["flags"] & 0x4000  # VDS_VF_NTFS_NOT_SUPPORTED: NTFS is formattable here
    drive = fresh_cli.resolve("E:\\")
    sh(f'echo hello > "{drive}/Hello.txt" && test "$(cat "{drive}/HELLO.TXT")" = hello')
    fresh_cli.fail("VDS_E_BAD_LABEL", "format", "E:", "--fs", "NTFS", "--label", "x" * 33)
    fresh_cli.fail("VDS_E_COMPRESSION_NOT_SUPPORTED", "format", "E:", "--fs", "NTFS", "--unit", "8K", "--compress")
    out = fresh_cli.run("format", "E:", "--fs", "FAT32", "--label", "FAT")["volume"]
    assert out["filesystem"] == "FAT32" and out["label"] == "FAT"
    out = fresh_cli.run("format", "E:", "--fs", "NTFS", "--compress")["volume"]
    assert out["filesystem"] == "NTFS"
    fresh_cli.run("dismount", "E:")
    assert_ntfs_clean(out["image"])


def test_adopt_a_plain_mkntfs_image_and_native(fresh_cli: Cli, tmp_path: Path) -> None:
    image = tmp_path / "plain.img"
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    subprocess.run(["mkntfs", "-F", "-Q", "-q", "-L", "Plain", str(image)], check=True, capture_output=True)
    fresh_cli.fail("VDS_E_OBJECT_STATUS_FAILED", "attach", str(image))  # no trailer: --adopt takes it
    vol = fresh_cli.run("attach", "--adopt", "--letter", "P", str(image))["volume"]
    assert vol["filesystem"] == "NTFS" and vol["label"] == "Plain"
    drive = fresh_cli.resolve("P:\\")
    sh(f'echo adopted > "{drive}/a.txt"')
    fresh_cli.run("dismount", "P:")
    assert ntfscat(str(image), "/a.txt") == b"adopted\n"
    native = fresh_cli.create("--fs", "NTFS", "--ntfs-native", size="32M")
    assert native["filesystem"] == "NTFS" and native["mounted"] and native["semantics"] == "native"
    assert vol["semantics"] == "windows"
    fresh_cli.fail("E_INVALIDARG", "create", "--size", "64M", "--ntfs-native")  # FAT32 has no native mode

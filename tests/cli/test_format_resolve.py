"""Format (docs/windows-semantics.md §5.3, its rows) and resolve (ERROR_FILE_NOT_FOUND / PATH_NOT_FOUND / NOT_READY)
through the CLI."""

from __future__ import annotations

import errno

import pytest

from .conftest import Cli, sh

pytestmark = pytest.mark.fuse


def _unchanged(out: dict, before: dict) -> None:
    keys = ("status", "flags", "access_paths", "mounted", "dismount_state", "label")
    assert {k: out["volume"][k] for k in keys} == {k: before[k] for k in keys}


@pytest.fixture(scope="module")
def k_vol(cli: Cli) -> dict:
    v = cli.create("--letter", "K", "--label", "KEEP")
    base = cli.resolve("K:\\")
    sh(f"echo keep > '{base}/keep.txt'")
    return v


@pytest.mark.parametrize(
    ("args", "code", "hresult"),
    [
        (["--fs", "FAT"], "VDS_E_INCOMPATIBLE_FILE_SYSTEM", 0x80042425),  # row 4
        (["--fs", "exfat"], "VDS_E_INCOMPATIBLE_FILE_SYSTEM", 0x80042425),
        (["--fs", "ZFS"], "VDS_E_INVALID_FS_TYPE", 0x80042561),  # row 4b
        (["--label", "TWELVE_CHARS"], "VDS_E_BAD_LABEL", 0x80042429),  # row 5
        (["--label", "A*B"], "VDS_E_BAD_LABEL", 0x80042429),
        (["--label", "x.y"], "VDS_E_BAD_LABEL", 0x80042429),
        (["--unit", "1024"], "VDS_E_CLUSTER_SIZE_TOO_BIG", 0x8004242F),  # row 7: 40 MiB allows 512 only
        (["--unit", "64K"], "VDS_E_CLUSTER_SIZE_TOO_BIG", 0x8004242F),
        (["--unit", "256"], "VDS_E_CLUSTER_SIZE_TOO_SMALL", 0x8004242E),
        (["--unit", "300"], "VDS_E_CLUSTER_SIZE_TOO_SMALL", 0x8004242E),  # not a power of two, below 512
        (["--unit", "3000"], "VDS_E_CLUSTER_SIZE_TOO_BIG", 0x8004242F),  # above the largest allowed wins
    ],
    ids=lambda x: " ".join(x) if isinstance(x, list) else None,
)
def test_format_argument_rows(cli: Cli, k_vol: dict, args: list[str], code: str, hresult: int) -> None:
    out = cli.fail(code, "format", "K:", *args)
    assert out["hresult"] == hresult
    _unchanged(out, k_vol)


def test_format_role_readonly_offline_rows(cli: Cli) -> None:
    p = cli.create()
    p = cli.run("dismount", p["id"], "--permanent")["volume"]
    out = cli.fail("VDS_E_VOLUME_NOT_ONLINE", "format", p["id"])  # row 1
    assert out["hresult"] == 0x8004243D
    _unchanged(out, p)
    s = cli.create("--role", "boot", "--label", "BOOT")
    out = cli.fail("VDS_E_OPERATION_DENIED", "format", s["id"], "--force")  # row 2 (also before row 4)
    assert out["hresult"] == 0x8004240A
    _unchanged(out, s)
    ro = cli.create("--role", "readonly", "--label", "RO")
    out = cli.fail("VDS_E_MEDIA_WRITE_PROTECTED", "format", ro["id"], "--fs", "NTFS")  # row 3 before row 4
    assert out["hresult"] == 0x80042428
    _unchanged(out, ro)


def test_format_size_rows(cli: Cli) -> None:
    # row 6: 40 GiB is over Windows' 32 GiB FAT32 limit (create itself accepts it)
    big = cli.create("--label", "BIG", size="40G")
    assert "VDS_VF_FAT32_NOT_SUPPORTED" in big["flag_names"]
    out = cli.fail("VDS_E_VOLUME_TOO_BIG", "format", big["id"])
    assert out["hresult"] == 0x8004242D
    _unchanged(out, big)
    cli.run("delete", big["id"])
    # too small for FAT32 at all: refused at create, nothing made
    cli.fail("VDS_E_VOLUME_TOO_SMALL", "create", "--size", "32M")


def test_format_in_use_then_forced(cli: Cli, k_vol: dict, holder) -> None:
    base = cli.resolve("K:\\")
    h = holder(f"{base}/keep.txt")
    out = cli.fail("VDS_E_DEVICE_IN_USE", "format", "K:", "--label", "NEW")  # row 8
    assert h.pid in [x["pid"] for x in out["holders"]]
    _unchanged(out, k_vol)
    assert sh(f"cat '{base}/keep.txt'") == "keep\n", "a refused format leaves the files alone"
    r = cli.raw("format", "K:")
    assert r.returncode == 1 and "VDS_E_DEVICE_IN_USE" in r.stderr and "0x80042413" in r.stderr
    assert str(h.pid) in r.stderr
    v = cli.run("format", "K:", "--label", "NEW", "--force")["volume"]  # row 9 with bForce
    assert v["label"] == "NEW" and v["mounted"] and v["access_paths"] == ["K:\\"] and v["id"] == k_vol["id"]
    assert h.read() in (errno.EIO, errno.ENOTCONN)
    cli.fail("HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)", "resolve", "--must-exist", "K:\\keep.txt")


def test_format_from_t_ends_mounted(cli: Cli, k_vol: dict) -> None:
    cli.run("dismount", "K:")
    v = cli.run("format", "K:", "--label", "AGAIN")["volume"]
    assert v["dismount_state"] == "none" and v["mounted"] and v["label"] == "AGAIN"


def test_resolve_rows(cli: Cli, k_vol: dict) -> None:
    base = cli.resolve("K:\\")
    sh(f"mkdir -p '{base}/dir' && echo x > '{base}/dir/file.txt'")
    assert cli.resolve("K:\\dir\\file.txt").endswith("/dir/file.txt")
    out = cli.fail("HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)", "resolve", "--must-exist", "K:\\dir\\missing.txt")
    assert out["hresult"] == 0x80070002
    out = cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "--must-exist", "K:\\nodir\\file.txt")
    assert out["hresult"] == 0x80070003
    out = cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "Y:\\file.txt")  # unknown letter
    assert out["hresult"] == 0x80070003
    # T: resolve remounts, as Windows does on first access
    cli.run("dismount", "K:")
    assert cli.resolve("K:\\dir\\file.txt").endswith("/dir/file.txt")
    assert cli.show("K:")["dismount_state"] == "none"
    # human output of a failure: the code name, its hex value and its meaning
    r = cli.raw("resolve", "--must-exist", "K:\\dir\\missing.txt")
    assert r.returncode == 1 and r.stdout == ""
    assert "HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)" in r.stderr and "0x80070002" in r.stderr
    assert "cannot find the file" in r.stderr
    # P: the GUID path is not ready; the former letter is gone
    cli.run("remove-path", "K:", "K:")
    p = cli.run("dismount", k_vol["id"], "--permanent")["volume"]
    out = cli.fail("HRESULT_FROM_WIN32(ERROR_NOT_READY)", "resolve", p["guid_path"])
    assert out["hresult"] == 0x80070015
    cli.fail("HRESULT_FROM_WIN32(ERROR_NOT_READY)", "resolve", p["guid_path"] + "dir\\file.txt")
    cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "K:\\dir\\file.txt")
    assert cli.show(p["id"])["dismount_state"] == "permanent", "resolve never brings a P volume online"

"""AddAccessPath (docs/windows-semantics.md §5.4, each row's code) and DeleteAccessPath (§5.7) through
``add-path``/``remove-path``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import Cli, sh

pytestmark = pytest.mark.fuse


@pytest.fixture(scope="module")
def vols(cli: Cli) -> dict[str, dict]:
    made = {
        "v": cli.create("--letter", "F", "--label", "VVV"),
        "w": cli.create("--label", "WWW"),
        "hidden": cli.create("--role", "hidden"),
        "sys": cli.create("--role", "system", "--letter", "S"),
    }
    c_drive = cli.root / "drives" / "C"  # the simulated system drive C:
    for d in ("free1", "free2", "free3", "full", "hidden"):
        (c_drive / d).mkdir()
    (c_drive / "full" / "x.txt").write_text("x")
    (c_drive / "hidden" / ".dot").write_text("")
    (c_drive / "afile").write_text("not a directory")
    return made


def _unchanged(out: dict, before: dict) -> None:
    keys = ("status", "flags", "access_paths", "mounted", "dismount_state")
    assert {k: out["volume"][k] for k in keys} == {k: before[k] for k in keys}


@pytest.mark.parametrize(
    ("who", "path", "code", "hresult"),
    [
        ("w", "", "E_INVALIDARG", 0x80070057),  # row 1
        ("w", "C:\\" + "d" * 300, "E_INVALIDARG", 0x80070057),
        ("w", "GUID", "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED", 0x8004290D),  # row 2
        ("hidden", "H:", "VDS_E_VOLUME_HIDDEN", 0x80042576),  # row 3
        ("hidden", "C:\\free1", "VDS_E_VOLUME_HIDDEN", 0x80042576),
        ("w", "1:", "VDS_E_INVALID_DRIVE_LETTER", 0x8004255E),  # row 4
        ("w", "EE:", "VDS_E_INVALID_DRIVE_LETTER", 0x8004255E),
        ("w", "E", "VDS_E_INVALID_DRIVE_LETTER", 0x8004255E),
        ("w", "E:\\\\", "VDS_E_INVALID_DRIVE_LETTER", 0x8004255E),
        ("w", "dir\\x", "E_INVALIDARG", 0x80070057),  # row 5
        ("w", "E:dir", "E_INVALIDARG", 0x80070057),
        ("w", "\\\\server\\share", "E_INVALIDARG", 0x80070057),
        ("sys", "T:", "VDS_E_OPERATION_DENIED", 0x8004240A),  # row 6
        ("v", "G:", "VDS_E_OBJECT_EXISTS", 0x8004241D),  # row 7
        ("v", "f:\\", "VDS_E_OBJECT_EXISTS", 0x8004241D),
        ("w", "F:", "VDS_E_DRIVE_LETTER_NOT_FREE", 0x8004255C),  # row 8
        ("w", "C:", "VDS_E_DRIVE_LETTER_NOT_FREE", 0x8004255C),
        ("w", "F:\\mnt", "VDS_E_NOT_SUPPORTED", 0x80042400),  # row 9
        ("w", "MOUNT_OF_V", "VDS_E_NOT_SUPPORTED", 0x80042400),
        ("w", "Q:\\mnt", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", 0x80070003),  # row 10
        ("w", "C:\\missing", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", 0x80070003),
        ("w", "C:\\afile", "HRESULT_FROM_WIN32(ERROR_DIRECTORY)", 0x8007010B),  # row 12
        ("w", "C:\\full", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)", 0x80070091),  # row 13
        ("w", "C:\\hidden", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)", 0x80070091),
    ],
)
def test_add_path_failure_rows(cli: Cli, vols: dict, who: str, path: str, code: str, hresult: int) -> None:
    vol = vols[who]
    if path == "GUID":
        path = vols["w"]["guid_path"]
    elif path == "MOUNT_OF_V":
        sh(f"mkdir -p '{vols['v']['mount_path']}/sub'")
        path = vols["v"]["mount_path"] + "/sub"
    out = cli.fail(code, "add-path", vol["id"], path)
    assert out["hresult"] == hresult
    _unchanged(out, vol)


def test_add_path_existing_mount_folder_row_11(cli: Cli, vols: dict) -> None:
    v, w = vols["v"], vols["w"]
    after = cli.run("add-path", "F:", "C:\\free1")["volume"]
    assert after["access_paths"] == ["F:\\", "C:\\free1\\"]
    # an existing mount folder counts as occupied, for another volume and for this one; case-insensitive
    for vol, path in ((w, "C:\\free1"), (v, "c:\\FREE1\\"), (w, str(cli.root / "drives" / "C" / "free1"))):
        out = cli.fail("HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)", "add-path", vol["id"], path)
        assert out["hresult"] == 0x80070091
    assert cli.run("remove-path", "F:", "C:/Free1")["volume"]["access_paths"] == ["F:\\"]
    d = cli.root / "drives" / "C" / "free1"
    assert d.is_dir() and not d.is_symlink() and not list(d.iterdir())


def test_add_path_in_each_state(cli: Cli, vols: dict, tmp_path: Path) -> None:
    w = vols["w"]
    # M → S_OK, M (row 16); a host path is taken verbatim
    host = tmp_path / "Host Dir"
    host.mkdir()
    out = cli.run("add-path", w["id"], str(host))["volume"]
    assert out["access_paths"] == [str(host)] and out["dismount_state"] == "none"
    # T → S_OK, stays T (row 15); the letter is listed first
    cli.run("dismount", w["id"])
    out = cli.run("add-path", w["id"], "W:")["volume"]
    assert out["dismount_state"] == "temporary" and not out["mounted"]
    assert out["access_paths"] == ["W:\\", str(host)]
    # P → S_OK, M with that path, flag cleared (row 14)
    for p in ("W:", str(host)):
        cli.run("remove-path", w["id"], p)
    cli.run("mount", w["id"])
    assert cli.run("dismount", w["id"], "--permanent")["volume"]["dismount_state"] == "permanent"
    out = cli.run("add-path", w["id"], "C:\\free2")["volume"]
    assert out["status"] == "ONLINE" and out["mounted"] and out["access_paths"] == ["C:\\free2\\"]
    assert "VDS_VF_PERMANENTLY_DISMOUNTED" not in out["flag_names"]
    assert os.path.samefile(cli.resolve("C:\\free2"), out["mount_path"])
    cli.run("remove-path", w["id"], "C:\\free2\\")


@pytest.mark.parametrize(
    ("who", "path", "code", "hresult"),
    [
        ("v", "", "E_INVALIDARG", 0x80070057),  # row 1
        ("v", "GUID", "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED", 0x8004290D),  # row 2
        ("v", "Z:", "VDS_E_PATH_NOT_FOUND", 0x80042416),  # row 3: not a path of this volume
        ("w", "F:", "VDS_E_PATH_NOT_FOUND", 0x80042416),  # another volume's letter
        ("v", "C:\\free3", "VDS_E_PATH_NOT_FOUND", 0x80042416),  # a plain folder
        ("sys", "S:", "VDS_E_OPERATION_DENIED", 0x8004240A),  # row 4
    ],
)
def test_remove_path_failure_rows(cli: Cli, vols: dict, who: str, path: str, code: str, hresult: int) -> None:
    vol = vols[who]
    if path == "GUID":
        path = vol["guid_path"]
    before = cli.show(vol["id"])
    out = cli.fail(code, "remove-path", vol["id"], path)
    assert out["hresult"] == hresult
    _unchanged(out, before)


def test_remove_letter_in_use(cli: Cli, vols: dict, holder) -> None:
    cli.create("--letter", "U", "--label", "USE")
    base = cli.resolve("U:\\")
    sh(f"echo x > '{base}/open.txt'")
    h = holder(f"{base}/open.txt")
    before = cli.show("U:")
    out = cli.fail("VDS_E_DEVICE_IN_USE", "remove-path", "U:", "U:")  # row 5
    assert h.pid in [x["pid"] for x in out["holders"]]
    _unchanged(out, before)
    r = cli.raw("remove-path", "U:", "U:\\")
    assert r.returncode == 1 and "VDS_E_DEVICE_IN_USE" in r.stderr and "0x80042413" in r.stderr
    assert str(h.pid) in r.stderr
    # bForce: removed, the volume stays mounted and the open file keeps working (row 6)
    out = cli.run("remove-path", before["id"], "u:", "--force")["volume"]
    assert out["access_paths"] == [] and out["mounted"] and out["dismount_state"] == "none"
    assert h.read() == 0
    assert not os.path.lexists(cli.root / "drives" / "U")
    # a folder is removed even in use (bForce is ignored for folders)
    (cli.root / "drives" / "C" / "free3").mkdir(exist_ok=True)
    cli.run("add-path", before["id"], "C:\\free3")
    out = cli.run("remove-path", before["id"], "C:\\free3")["volume"]
    assert out["access_paths"] == []
    # P has no paths: every delete is PATH_NOT_FOUND
    h.stop()
    cli.run("dismount", before["id"], "--permanent")
    cli.fail("VDS_E_PATH_NOT_FOUND", "remove-path", before["id"], "U:")
    # resolve of a former letter: PATH_NOT_FOUND
    cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "U:\\open.txt")

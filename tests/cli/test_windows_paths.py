"""Windows paths that do not exist yet: resolve gives where they would be; mkdir makes folders by their Windows
path; add-path says which host directory a missing C:\\ folder stands for."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import Cli

pytestmark = pytest.mark.fuse


def test_resolve_keeps_the_spelling_on_disk_and_appends_the_rest(fresh_cli: Cli) -> None:
    fresh_cli.create("--letter", "E")
    docs = fresh_cli.resolve("E:\\Docs")
    os.mkdir(docs)
    out = fresh_cli.run("resolve", "E:\\DOCS\\new dir\\out.txt")
    assert out["path"] == os.path.join(docs, "new dir", "out.txt") and out["exists"] is False
    # the path is usable as is: a real program writes the file there, and Windows' spelling finds it
    os.mkdir(os.path.dirname(out["path"]))
    subprocess.run(["cp", "/etc/hostname", out["path"]], check=True)
    again = fresh_cli.run("resolve", "--must-exist", "e:\\docs\\NEW DIR\\OUT.TXT")
    assert again["path"] == out["path"] and again["exists"] is True
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)", "resolve", "--must-exist", "E:\\Docs\\nope.txt")
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "--must-exist", "E:\\nope\\x.txt")


def test_mkdir_on_c_makes_a_mount_folder_add_path_can_use(fresh_cli: Cli) -> None:
    vol = fresh_cli.create()
    refused = fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "add-path", vol["id"], "C:\\mnt\\backup")
    # the message says which host directory C:\mnt\backup stands for, and how to make it
    host = str(fresh_cli.root / "drives" / "C" / "mnt" / "backup")
    assert host in refused["message"] and "simvol mkdir 'C:\\mnt\\backup'" in refused["message"], refused
    made = fresh_cli.run("mkdir", "C:\\mnt\\backup")
    assert made["host_path"] == host and os.path.isdir(host)
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)", "mkdir", "C:\\mnt\\backup")
    assert fresh_cli.run("mkdir", "-p", "C:\\MNT\\backup")["host_path"] == host  # spelled as on disk
    fresh_cli.run("add-path", vol["id"], "C:\\mnt\\backup")
    assert fresh_cli.run("show", vol["id"])["volume"]["access_paths"] == ["C:\\mnt\\backup\\"]


def test_mkdir_inside_a_volume_and_its_refusals(fresh_cli: Cli, tmp_path) -> None:
    fresh_cli.create("--letter", "E")
    out = fresh_cli.run("mkdir", "E:\\out\\logs")
    assert os.path.isdir(out["host_path"]) and out["host_path"] == fresh_cli.resolve("E:\\out\\logs")
    with open(fresh_cli.resolve("E:\\out\\f.txt"), "w") as f:
        f.write("x")
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)", "mkdir", "-p", "E:\\out\\f.txt")  # a file is no folder
    fresh_cli.fail("E_INVALIDARG", "mkdir", "E:\\..\\etc")
    fresh_cli.fail("E_INVALIDARG", "mkdir", str(tmp_path / "host"))  # not a Windows path
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "mkdir", "Q:\\x")  # no such drive


def test_mkdir_never_follows_a_symlink_planted_on_c(fresh_cli: Cli, tmp_path) -> None:
    fresh_cli.create()
    outside = tmp_path / "outside"
    outside.mkdir()
    drive_c = fresh_cli.root / "drives" / "C"
    os.symlink(outside, drive_c / "trap")
    out = fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "mkdir", "C:\\trap\\made")
    assert "symlink" in out["message"]
    assert list(outside.iterdir()) == []

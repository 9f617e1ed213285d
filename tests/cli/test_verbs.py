"""The success shape of every verb, run through the installed ``simvol`` command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simvol.mount import find_mount

from .conftest import Cli, MiB, sh

pytestmark = pytest.mark.fuse


@pytest.fixture(scope="module")
def e_vol(cli: Cli) -> dict:
    """A 40 MiB volume labelled DATA at E:, created once for the module."""
    return cli.create("--label", "DATA", "--letter", "E")


def test_create(cli: Cli, e_vol: dict) -> None:
    v = e_vol
    assert v["status"] == "ONLINE" and v["dismount_state"] == "none"
    assert v["mounted"] is True and os.path.ismount(v["mount_path"])
    assert v["access_paths"] == ["E:\\"]
    assert v["label"] == "DATA"
    assert v["size"] == 40 * MiB
    assert "VDS_VF_PERMANENT_DISMOUNT_SUPPORTED" in v["flag_names"]
    assert Path(v["image"]).parent == cli.root / "images"
    assert v["mount_path"] == str(cli.root / "volumes" / v["id"])


@pytest.mark.parametrize("letter", ["F", "g:", "H:\\"])
def test_create_letter_forms_image_and_roles(cli: Cli, tmp_path: Path, letter: str) -> None:
    image = tmp_path / "own.img"
    v = cli.create("--letter", letter, "--image", str(image), "--role", "readonly",
                   "--role", "no-permanent-dismount", size="34M")
    assert v["access_paths"] == [letter[0].upper() + ":\\"]
    assert v["image"] == str(image) and image.exists()
    assert "VDS_VF_READONLY" in v["flag_names"]
    assert "VDS_VF_PERMANENT_DISMOUNT_SUPPORTED" not in v["flag_names"]
    assert v["size"] == 34 * MiB
    cli.run("delete", str(image))
    assert not image.exists()


def test_create_hidden(cli: Cli) -> None:
    v = cli.create("--role", "hidden", "--label", "HID")
    assert "VDS_VF_HIDDEN" in v["flag_names"] and v["access_paths"] == [] and v["mounted"]
    cli.run("delete", v["id"])
    cli.fail("VDS_E_VOLUME_HIDDEN", "create", "--size", "40M", "--role", "hidden", "--letter", "K")


def test_show_every_selector(cli: Cli, e_vol: dict) -> None:
    gid = e_vol["id"][1:-1]
    selectors = [gid.lower(), "{" + gid.upper() + "}", e_vol["guid_path"], e_vol["guid_path"].rstrip("\\"),
                 "E", "e:", "E:\\", e_vol["image"]]
    for sel in selectors:
        assert cli.show(sel)["id"] == e_vol["id"], sel


def test_list(cli: Cli, e_vol: dict) -> None:
    vols = cli.run("list")["volumes"]
    assert e_vol["id"] in [v["id"] for v in vols]
    r = cli.raw("list")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0] == f"root {cli.root}"  # which host this is, first
    header = lines[1]
    cols = ["ID", "STATUS", "STATE", "SIZE", "LABEL", "PATHS", "MOUNT"]
    assert header.split() == cols
    starts = [header.index(c) for c in cols]
    row = next(line for line in lines[1:] if e_vol["id"] in line)
    # aligned: every column value starts where its header starts
    assert row.startswith(e_vol["id"])
    assert row[starts[1]:].startswith("ONLINE")
    assert row[starts[2]:].startswith("none")
    assert row[starts[3]:].startswith("40 MiB")
    assert row[starts[4]:].startswith("DATA")
    assert row[starts[5]:].startswith("E:\\")
    assert row[starts[6]:].startswith(e_vol["mount_path"])


def test_show_human(cli: Cli, e_vol: dict) -> None:
    r = cli.raw("show", "E:")
    assert r.returncode == 0
    for text in (e_vol["id"], e_vol["guid_path"], "ONLINE", "DATA", "E:\\", "PERMANENT_DISMOUNT_SUPPORTED"):
        assert text in r.stdout, text


def test_paths(cli: Cli, e_vol: dict) -> None:
    assert cli.run("paths", "E:")["access_paths"] == ["E:\\"]
    r = cli.raw("paths", "E:")
    assert r.returncode == 0 and r.stdout.strip() == "E:\\"


def test_resolve_and_holders(cli: Cli, e_vol: dict, holder) -> None:
    base = cli.resolve("E:\\")
    assert base == str(cli.root / "drives" / "E") and os.path.samefile(base, e_vol["mount_path"])
    sh(f"mkdir -p '{base}/Docs' && echo hello > '{base}/Docs/Hello.txt'")
    # case-insensitive, like Windows; forward slashes count as backslashes
    host = cli.resolve("e:/DOCS/hello.TXT")
    assert Path(host).parent.parent == Path(base)
    assert sh(f"cat '{host}'") == "hello\n"
    assert cli.run("holders", "E:")["holders"] == []
    h = holder(f"{base}/Docs/Hello.txt")
    found = cli.run("holders", "E:")["holders"]
    assert h.pid in [x["pid"] for x in found], found
    mine = next(x for x in found if x["pid"] == h.pid)
    assert mine["process"].startswith("python") and mine["path"].endswith("Hello.txt") and mine["kind"]
    r = cli.raw("holders", "E:")
    assert r.returncode == 0 and str(h.pid) in r.stdout and "PID" in r.stdout
    # by the GUID path as well
    assert cli.resolve(e_vol["guid_path"] + "Docs") == e_vol["mount_path"] + "/Docs"
    # a host shutdown without --force stops at a volume in use, and names the holder
    out = cli.fail("VDS_E_DEVICE_IN_USE", "down")
    assert h.pid in [x["pid"] for x in out["holders"]]
    assert cli.show("E:")["mounted"] and h.read() == 0
    cli.run("up")


def test_check(cli: Cli, e_vol: dict) -> None:
    problems = cli.run("check", "E:")["problems"]
    assert isinstance(problems, list)
    for p in problems:
        assert set(p) == {"kind", "path", "detail", "repaired"} and p["repaired"] is False
    # repair needs the volume dismounted
    out = cli.fail("VDS_E_DEVICE_IN_USE", "check", "E:", "--repair")
    assert out["volume"]["mounted"] and out["holders"] == []
    cli.run("dismount", "E:")
    assert cli.run("check", "E:", "--repair")["problems"] == []
    assert cli.show("E:")["dismount_state"] == "temporary", "check does not remount"
    r = cli.raw("check", "E:")
    assert r.returncode == 0 and "clean" in r.stdout


def test_check_mounted_after_writes_is_clean(cli: Cli, e_vol: dict) -> None:
    base = cli.resolve("E:\\")  # remounts
    sh(f"mkdir -p '{base}/chk' && echo x > '{base}/chk/x.txt'")
    assert cli.run("check", "E:")["problems"] == []


def test_mount_dismount_cycle(cli: Cli, e_vol: dict) -> None:
    cli.run("mount", "E:")
    v = cli.run("dismount", "E:")["volume"]
    assert v["dismount_state"] == "temporary" and not v["mounted"] and v["status"] == "ONLINE"
    assert v["access_paths"] == ["E:\\"], "a temporary dismount keeps the access paths"
    entry = find_mount(e_vol["mount_path"])  # what answers there is the armed trigger, not the volume
    assert entry is not None and entry.mounted_armed
    v = cli.run("mount", "E:")["volume"]
    assert v["dismount_state"] == "none" and v["mounted"] and os.path.ismount(v["mount_path"])
    assert v["label"] == "DATA"


def test_format(cli: Cli, e_vol: dict) -> None:
    base = cli.resolve("E:\\")
    sh(f"echo x > '{base}/before.txt'")
    v = cli.run("format", "E:", "--label", "fresh")["volume"]
    assert v["label"] == "FRESH" and v["mounted"] and v["id"] == e_vol["id"] and v["access_paths"] == ["E:\\"]
    assert sh(f"ls -A '{base}'") == ""
    sh(f"echo x > '{base}/kept.txt'")
    out = cli.run("format", "E:", "--compress", "--unit", "512", "--full", expect="VDS_E_COMPRESSION_NOT_SUPPORTED")
    assert out["hresult"] == 0x80042918  # refused before anything changed (docs/behaviour.md, Compression): exit 1
    assert sh(f"ls -A '{base}'").strip() == "kept.txt"
    r = cli.raw("format", "E:", "--label", "DATA")
    assert r.returncode == 0


def test_add_and_remove_path(cli: Cli, e_vol: dict, tmp_path: Path) -> None:
    (cli.root / "drives" / "C" / "mnt" / "data").mkdir(parents=True)
    host = tmp_path / "hostdir"
    host.mkdir()
    v = cli.run("add-path", "E:", "C:\\mnt\\data")["volume"]
    assert v["access_paths"] == ["E:\\", "C:\\mnt\\data\\"]
    v = cli.run("add-path", "E:", str(host))["volume"]
    assert v["access_paths"] == ["E:\\", "C:\\mnt\\data\\", str(host)]
    assert os.path.samefile(host, v["mount_path"])
    assert cli.run("paths", e_vol["id"])["access_paths"] == v["access_paths"]
    # the folder is an alias of the volume
    assert os.path.samefile(cli.resolve("C:\\mnt\\data"), v["mount_path"])
    assert cli.show("C:\\mnt\\data")["id"] == e_vol["id"]
    v = cli.run("remove-path", "E:", "c:\\MNT\\Data\\")["volume"]
    assert v["access_paths"] == ["E:\\", str(host)]
    v = cli.run("remove-path", "E:", str(host))["volume"]
    assert v["access_paths"] == ["E:\\"]
    for d in (cli.root / "drives" / "C" / "mnt" / "data", host):
        assert d.is_dir() and not d.is_symlink() and list(d.iterdir()) == []


def test_down_and_up(cli: Cli, e_vol: dict) -> None:
    vols = cli.run("down")["volumes"]
    assert vols and not any(v["mounted"] for v in vols)
    assert cli.show("E:")["mounted"] is False, "a host that is down does not remount on a query"
    vols = cli.run("up")["volumes"]
    assert all(v["mounted"] for v in vols if v["dismount_state"] != "permanent")
    r = cli.raw("up")
    assert r.returncode == 0 and r.stdout.split()[:7] == ["ID", "STATUS", "STATE", "SIZE", "LABEL", "PATHS", "MOUNT"]


def test_detach_attach_delete(cli: Cli) -> None:
    v = cli.create("--letter", "M", "--label", "MOVE")
    out = cli.run("detach", "M:")
    assert set(out) == {"hresult", "code"}
    assert Path(v["image"]).exists() and not os.path.ismount(v["mount_path"])
    cli.fail("VDS_E_OBJECT_NOT_FOUND", "show", v["id"])
    cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "M:\\")
    a = cli.run("attach", v["image"])["volume"]
    # the letter it had comes back with it, as Windows' MountedDevices gives a returning disk its letter
    assert a["id"] == v["id"] and a["mounted"] and a["access_paths"] == ["M:\\"] and a["label"] == "MOVE"
    cli.fail("VDS_E_OBJECT_EXISTS", "attach", v["image"])
    r = cli.raw("delete", v["id"])
    assert r.returncode == 0 and "deleted" in r.stdout
    assert not Path(v["image"]).exists()
    assert v["id"] not in [x["id"] for x in cli.run("list")["volumes"]]


def _on_a_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run simvol with stdout on a pseudo-terminal; returns (exit status, terminal text, stderr)."""
    import pty
    import subprocess

    from .conftest import SIMVOL, simvol_env

    master, slave = pty.openpty()
    p = subprocess.Popen([SIMVOL, *args], stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=simvol_env(TERM="xterm-256color"), text=False)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = p.stderr.read().decode() if p.stderr else ""
    rc = p.wait(60)
    return rc, b"".join(chunks).decode().replace("\r\n", "\n"), err


def test_json_on_a_terminal_is_still_one_object(cli: Cli, e_vol: dict) -> None:
    # the progress display (check) and spinner (format) exist only for people: never with --json
    from .conftest import check_envelope, parse_one_object

    for args in (["check", "E:"], ["format", "E:", "--label", "TTY"]):
        rc, text, _err = _on_a_terminal(["--root", str(cli.root), "--json", *args])
        assert "\x1b" not in text, f"escape sequences in --json output: {text!r}"
        obj = parse_one_object(text)
        check_envelope(obj, rc)
        assert obj["code"] == "S_OK", obj
    rc, text, _err = _on_a_terminal(["--root", str(cli.root), "check", "E:"])
    assert rc == 0 and "clean" in text


def test_verbose_logs_go_to_stderr(cli: Cli) -> None:
    from .conftest import check_envelope, parse_one_object

    quiet = cli.raw("--json", "list")
    assert quiet.stderr == ""
    r = cli.raw("-vv", "--json", "create", "--size", "40M", "--label", "LOUD")
    obj = parse_one_object(r.stdout)  # logging never reaches stdout
    check_envelope(obj, r.returncode)
    assert "INFO simvol" in r.stderr and "DEBUG simvol" in r.stderr
    r = cli.raw("-v", "--json", "delete", obj["volume"]["id"])
    assert r.returncode == 0 and "DEBUG" not in r.stderr

"""Usage errors (exit 2, E_INVALIDARG), selectors that match nothing, root selection, human output.

None of these mount anything: they run on an empty root, so they need no FUSE.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from simvol.errors import code_message

from .conftest import SIMVOL, TIMEOUT, Cli, parse_one_object, run_simvol, simvol_env

VOL_VERBS = [
    ["show"], ["mount"], ["dismount"], ["offline"], ["paths"],
    ["holders"], ["check"], ["format"], ["detach"], ["delete"], ["add-path", "{VOL}", "G:"],
    ["remove-path", "{VOL}", "G:"],
]


@pytest.mark.parametrize(
    "args",
    [
        ["create", "--size", "-5M"],
        ["create", "--size", "0"],
        ["create", "--size", "abc"],
        ["create"],  # --size is required
        ["create", "--size", "64M", "--letter", "1:"],
        ["create", "--size", "64M", "--letter", "EE:"],
        ["create", "--size", "64M", "--role", "superuser"],
        ["format", "E:", "--unit", "lots"],
        ["show"],
        ["attach"],
        ["add-path", "E:"],
        ["resolve"],
        ["dismount", "E:", "--sideways"],
        ["frobnicate"],
    ],
    ids=lambda a: " ".join(a) or "none",
)
def test_usage_error_is_one_json_object_and_exit_2(fresh_cli: Cli, args: list[str]) -> None:
    out = fresh_cli.usage(*args)
    assert out["hresult"] == 0x80070057
    assert "volume" not in out
    # a usage error does nothing: no volume was created
    assert not list((fresh_cli.root / "images").glob("*")) if (fresh_cli.root / "images").exists() else True


def test_usage_error_human(tmp_path) -> None:
    r = run_simvol(["--root", str(tmp_path / "r"), "create", "--size", "abc"])
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Usage: simvol create" in r.stderr and "'abc' is not a size" in r.stderr
    r = run_simvol(["--root", str(tmp_path / "r"), "create", "--size", "64M", "--letter", "EE:"])
    assert r.returncode == 2 and "not a drive letter" in r.stderr
    r = run_simvol(["--root", str(tmp_path / "r"), "create", "--size", "64M", "--role", "admin"])
    assert r.returncode == 2 and "admin" in r.stderr


@pytest.mark.parametrize("args", VOL_VERBS, ids=lambda a: a[0] + ("" if len(a) == 1 else " " + " ".join(a[1:])))
def test_unknown_volume_selector(fresh_cli: Cli, args: list[str]) -> None:
    verb, *rest = args
    selectors = ["Q:", "{00000000-1111-2222-3333-444444444444}"] if verb == "show" else ["Q:"]
    for selector in selectors:
        argv = [verb, *[selector if a == "{VOL}" else a for a in rest]]
        if "{VOL}" not in rest:
            argv = [verb, selector, *rest]
        out = fresh_cli.fail("VDS_E_OBJECT_NOT_FOUND", *argv)
        assert out["hresult"] == 0x80042405
        assert repr(selector) in out["message"] or selector in out["message"]
        assert out.get("volume") is None


def test_unknown_selector_human_output(fresh_cli: Cli) -> None:
    r = fresh_cli.raw("show", "Q:")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "VDS_E_OBJECT_NOT_FOUND" in r.stderr and "0x80042405" in r.stderr
    assert code_message(0x80042405) in r.stderr  # the code's meaning


def test_resolve_without_a_volume(fresh_cli: Cli) -> None:
    out = fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "Q:\\dir\\file.txt")
    assert out["hresult"] == 0x80070003
    out = fresh_cli.fail(
        "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "\\\\?\\Volume{00000000-1111-2222-3333-444444444444}\\f"
    )
    # a relative path is a bad argument to the operation (an HRESULT failure, not a usage error: exit 1)
    out = fresh_cli.fail("E_INVALIDARG", "resolve", "dir\\file.txt")
    # C: exists (the simulated system drive); a missing file on it is FILE_NOT_FOUND
    assert fresh_cli.resolve("C:\\") == str(fresh_cli.root / "drives" / "C")
    # --must-exist: a missing file is FILE_NOT_FOUND, a missing folder on the way PATH_NOT_FOUND
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)", "resolve", "--must-exist", "C:\\missing.txt")
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "resolve", "--must-exist", "C:\\no\\such\\dir.txt")
    # without it: where the file would be, so a script can write it
    out = fresh_cli.run("resolve", "C:\\no\\such\\dir.txt")
    assert out["path"] == str(fresh_cli.root / "drives" / "C" / "no" / "such" / "dir.txt") and out["exists"] is False


def test_attach_missing_image(fresh_cli: Cli, tmp_path) -> None:
    # docs/windows-semantics.md does not fix attach's code; simvol answers ERROR_FILE_NOT_FOUND (0x80070002) and
    # attaches nothing
    out = fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)", "attach", str(tmp_path / "nope.img"))
    assert "nope.img" in out["message"] and "volume" not in out
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 65536)
    out = fresh_cli.run("attach", str(junk), expect=None)
    assert out["hresult"] & 0x80000000 and "volume" not in out


def test_create_too_small_and_unsupported_fs(fresh_cli: Cli) -> None:
    fresh_cli.fail("VDS_E_VOLUME_TOO_SMALL", "create", "--size", "20M")
    fresh_cli.fail("VDS_E_INCOMPATIBLE_FILE_SYSTEM", "create", "--size", "64M", "--fs", "exFAT")
    fresh_cli.fail("VDS_E_INVALID_FS_TYPE", "create", "--size", "64M", "--fs", "ZFS")
    assert fresh_cli.run("list")["volumes"] == []
    assert list((fresh_cli.root / "images").iterdir()) == []


def test_list_empty_root(fresh_cli: Cli) -> None:
    out = fresh_cli.run("list")
    assert out == {"hresult": 0, "code": "S_OK", "root": str(fresh_cli.root), "volumes": []}
    r = fresh_cli.raw("list")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.split() == ["root", str(fresh_cli.root), "ID", "STATUS", "STATE", "SIZE", "LABEL", "PATHS", "MOUNT"]


def test_root_falls_back_to_SIMVOL_ROOT(tmp_path) -> None:
    root = tmp_path / "from-env"
    root.mkdir()
    r = run_simvol(["--json", "list"], env=simvol_env(SIMVOL_ROOT=str(root)))
    assert r.returncode == 0, r.stderr
    assert parse_one_object(r.stdout)["volumes"] == []
    assert (root / "simvol.db").exists(), "SIMVOL_ROOT was not used as the root"
    # --root wins over SIMVOL_ROOT
    other = tmp_path / "from-option"
    other.mkdir()
    r = run_simvol(["--root", str(other), "--json", "list"], env=simvol_env(SIMVOL_ROOT=str(root)))
    assert r.returncode == 0 and (other / "simvol.db").exists()


@pytest.mark.parametrize("verb", [["list"], ["show", "E:"], ["up"], ["down"], ["destroy"], ["resolve", "E:\\"]])
def test_a_mistyped_root_is_not_a_new_host(tmp_path, verb) -> None:
    """Only create and attach make a root; any other verb on a directory that does not exist says so."""
    typo = tmp_path / "mistyped"
    r = run_simvol(["--root", str(typo), "--json", *verb])
    obj = parse_one_object(r.stdout)
    assert r.returncode == 1 and obj["code"] == "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", obj
    assert "no simvol root at" in obj["message"] and not typo.exists()


def test_create_makes_the_root(tmp_path) -> None:
    root = tmp_path / "new-host"
    r = run_simvol(["--root", str(root), "--json", "create", "--size", "40M"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "simvol.db").exists()
    assert run_simvol(["--root", str(root), "destroy", "--force"]).returncode == 0


def test_verbose(fresh_cli: Cli) -> None:
    quiet = fresh_cli.raw("list")
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = fresh_cli.raw("-vv", "--json", "list")
    assert loud.returncode == 0
    assert json.loads(loud.stdout)["code"] == "S_OK"  # logging never goes to stdout
    loud = fresh_cli.raw("-v", "-v", "resolve", "Q:\\x")
    assert loud.returncode == 1
    assert "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)" in loud.stderr


def test_help_and_version(fresh_cli: Cli) -> None:
    r = run_simvol(["--help"])
    assert r.returncode == 0
    for verb in ("create", "attach", "detach", "delete", "list", "show", "mount", "dismount", "add-path",
                 "remove-path", "paths", "holders", "format", "offline", "up", "down", "resolve", "check"):
        assert verb in r.stdout, verb
    r = run_simvol(["dismount", "--help"])
    assert r.returncode == 0 and "--permanent" in r.stdout and "--force" in r.stdout
    r = run_simvol(["--version"])
    assert r.returncode == 0 and "simvol" in r.stdout
    assert SIMVOL.endswith("simvol")


@pytest.mark.parametrize(
    "args",
    [["list", "--json"], ["list", "--json", "--root", "{root}"], ["list", "--root={root}", "-v", "--json"]],
    ids=["json-after", "root-after", "all-after"],
)
def test_global_options_anywhere(tmp_path, args) -> None:
    """Global options after the verb (as lsblk and findmnt take --json anywhere)."""
    root = tmp_path / "root"
    root.mkdir()
    r = run_simvol([a.format(root=root) for a in args], env=simvol_env(SIMVOL_ROOT=str(root)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert parse_one_object(r.stdout)["volumes"] == []
    assert (root / "simvol.db").exists()


def test_options_after_the_lock_command_are_the_commands() -> None:
    from simvol.cli.app import globals_first

    assert globals_first(["lock", "E:", "--json", "--", "sh", "-c", "x --json", "--json", "-v"]) == [
        "--json", "lock", "E:", "--", "sh", "-c", "x --json", "--json", "-v",
    ]
    assert globals_first(["show", "E:", "--root", "/r", "-vv"]) == ["--root", "/r", "-vv", "show", "E:"]


def test_info_reports_without_creating_or_mounting(tmp_path) -> None:
    import simvol
    from simvol.mount.probe import fuse_unavailable_reason

    root = tmp_path / "not-yet"
    r = run_simvol(["info", "--json", "--root", str(root)])
    assert r.returncode == 0, r.stderr
    obj = parse_one_object(r.stdout)
    assert obj["root"] == str(root) and obj["root_exists"] is False and obj["registry"] is None
    assert obj["version"] == simvol.__version__ and obj["rootless"] == (os.geteuid() != 0)
    assert obj["fuse"]["available"] == (fuse_unavailable_reason() is None)
    assert obj["fuse"]["reason"] == fuse_unavailable_reason()
    assert not root.exists()
    human = run_simvol(["info", "--root", str(root)])
    assert human.returncode == 0 and str(root) in human.stdout


def test_list_names_its_root(fresh_cli) -> None:
    r = fresh_cli.raw("list")
    assert r.returncode == 0 and f"root {fresh_cli.root}" in r.stdout
    assert fresh_cli.run("list")["root"] == str(fresh_cli.root)


def test_messages_show_windows_paths_as_typed(fresh_cli) -> None:
    out = fresh_cli.fail("E_INVALIDARG", "resolve", "F:\\..\\etc")
    assert "'F:\\..\\etc'" in out["message"] and "'..'" in out["message"], out["message"]
    out = fresh_cli.fail("VDS_E_OBJECT_NOT_FOUND", "show", "Q:\\")
    assert "'Q:\\'" in out["message"] and "\\\\" not in out["message"], out["message"]


def test_show_lists_access_paths_one_per_line(fresh_cli) -> None:
    v = fresh_cli.create("--letter", "E")
    (fresh_cli.root / "drives" / "C" / "mnt" / "my data").mkdir(parents=True)
    fresh_cli.run("add-path", v["id"], "C:\\mnt\\my data")
    r = fresh_cli.raw("show", v["id"])
    lines = r.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("access paths"))
    assert lines[i].split()[-1] == "E:\\" and lines[i + 1].strip() == "C:\\mnt\\my data\\"
    fresh_cli.run("down", "--force")


def test_shell_completion_of_verbs_letters_and_ids(fresh_cli) -> None:
    v = fresh_cli.create("--letter", "E")

    def complete(words: str) -> list[str]:
        cword = str(len(words.split(" ")) - 1)
        env = simvol_env(_SIMVOL_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=cword)
        r = subprocess.run([str(SIMVOL)], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return [line.split(",", 1)[1] for line in r.stdout.splitlines() if line]

    assert "dismount" in complete("simvol dis")
    assert complete(f"simvol --root {fresh_cli.root} show ") == ["E:", v["id"]]
    assert complete(f"simvol --root {fresh_cli.root} mount e") == ["E:"]
    assert complete(f"simvol --root {fresh_cli.root}-typo show ") == []  # a missing root: nothing, and not created
    assert not (fresh_cli.root.parent / f"{fresh_cli.root.name}-typo").exists()
    fresh_cli.run("down", "--force")


def test_output_with_nowhere_to_go_ends_quietly(tmp_path):
    """`simvol info | true`: the reader is gone before simvol writes (EPIPE). No traceback, no noise, exit 1."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([SIMVOL, "--root", str(tmp_path), "--json", "info"], stdout=w, stderr=subprocess.PIPE,
                           text=True, env=simvol_env(), timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    finally:
        os.close(w)
    assert p.returncode == 1
    assert p.stderr == ""


def test_a_hangup_before_the_verb_ends_quietly_and_changes_nothing(tmp_path):
    """A closed terminal (SIGHUP) during start-up: killed by SIGHUP after one line, the root never created.

    Start-up takes 0.1-0.3 s here depending on the load, so the hangup is sent ever earlier until one lands before
    the verb; one that lands later must say that the verb completed, and it did (docs/cli.md, interrupts)."""
    for n, delay in enumerate((0.15, 0.1, 0.06, 0.03, 0.01)):
        root = tmp_path / f"root-{n}"
        proc = subprocess.Popen([SIMVOL, "--root", str(root), "create", "--size", "64M"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=simvol_env(), stdin=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == -signal.SIGHUP
        if err == "simvol: SIGHUP arrived while create ran; create completed first\n":
            assert (root / "simvol.db").exists()  # too late for this test: the volume was made, as said
            subprocess.run([SIMVOL, "--root", str(root), "destroy", "--force"], capture_output=True,
                           timeout=TIMEOUT, env=simvol_env(), stdin=subprocess.DEVNULL)
            continue
        assert err in ("", "simvol: interrupted by SIGHUP before anything was changed\n"), err
        assert not root.exists()
        return
    pytest.fail("every SIGHUP, even 10 ms after the start, arrived after create had begun")

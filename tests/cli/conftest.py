"""Helpers for the CLI tests: run the *installed* ``simvol`` command in a subprocess and check its contract.

Every ``--json`` run goes through :meth:`Cli.run`, which asserts:

- stdout is exactly one JSON object (nothing before or after it);
- ``hresult`` is an unsigned 32-bit integer and ``code == code_name(hresult)``;
- the exit status matches: 0 for a success HRESULT, 1 for a failure HRESULT, 2 for a usage error (which
  carries ``E_INVALIDARG``);
- a failure has a ``message``; an in-use failure has ``holders``;
- every VOLUME object has exactly the documented keys, types and internally consistent state.

Each test module gets its own root (``cli`` fixture, module scope) so tests in a module may share volumes;
teardown runs ``simvol --root R down --force`` and fails if any simvol mount is left under R.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simvol.errors import code_name
from simvol.mount import cleanup_stale, simvol_mounts
from simvol.types import VolumeFlag
from tests.support.processes import read_line, stop_process

_candidate = Path(sys.executable).with_name("simvol")
SIMVOL = str(_candidate) if _candidate.exists() else (shutil.which("simvol") or "simvol")
TIMEOUT = 120
MiB = 1 << 20

VOLUME_KEYS = {
    "id", "guid_path", "image", "status", "flags", "flag_names", "size", "filesystem", "label",
    "access_paths", "mounted", "mount_path", "dismount_state", "allow_other", "owner", "semantics",
}
HOLDER_KEYS = {"pid", "process", "path", "kind"}
_ID = re.compile(r"^\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}$")
_LETTER = re.compile(r"^[A-Z]:\\$")


def simvol_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SIMVOL_ROOT", None)
    env.update(LC_ALL="C.UTF-8", COLUMNS="200", **extra)
    return env


def run_simvol(args: list[str], *, env: dict[str, str] | None = None,
               timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([SIMVOL, *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else simvol_env(), stdin=subprocess.DEVNULL)


def parse_one_object(stdout: str) -> dict[str, Any]:
    """stdout must hold exactly one JSON object."""
    text = stdout.strip()
    assert text, "stdout is empty"
    obj, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == "", f"more than one JSON value on stdout: {text[end:][:200]!r}"
    assert isinstance(obj, dict), f"stdout is a JSON {type(obj).__name__}, not an object"
    return obj


def check_volume(v: dict[str, Any]) -> None:
    """The VOLUME object of docs/cli.md: keys, types, and a state that agrees with itself."""
    assert isinstance(v, dict), v
    assert set(v) == VOLUME_KEYS, f"VOLUME keys differ: {sorted(set(v) ^ VOLUME_KEYS)}"
    assert _ID.match(v["id"]), v["id"]
    assert v["guid_path"] == "\\\\?\\Volume{" + v["id"][1:-1].lower() + "}\\", v["guid_path"]
    assert isinstance(v["image"], str) and os.path.isabs(v["image"])
    assert v["status"] in ("UNKNOWN", "ONLINE", "NO_MEDIA", "OFFLINE", "FAILED"), v["status"]
    assert isinstance(v["flags"], int) and not isinstance(v["flags"], bool) and 0 <= v["flags"] < 2**32
    names = v["flag_names"]
    assert isinstance(names, list) and all(n.startswith("VDS_VF_") for n in names), names
    bits = 0
    for n in names:
        bits |= int(VolumeFlag[n[len("VDS_VF_"):]])
    assert bits == v["flags"], f"flag_names {names} do not add up to flags 0x{v['flags']:X}"
    assert isinstance(v["size"], int) and v["size"] >= 0  # 0 only when the image cannot be read (FAILED)
    assert v["filesystem"] in ("FAT32", "NTFS")
    assert v["semantics"] == "windows" or (v["semantics"] == "native" and v["filesystem"] == "NTFS"), v
    assert isinstance(v["label"], str)
    paths = v["access_paths"]
    assert isinstance(paths, list) and all(isinstance(p, str) for p in paths)
    assert all(not _LETTER.match(p) for p in paths[1:]), f"the drive letter must come first: {paths}"
    assert isinstance(v["mounted"], bool)
    if v["mounted"]:
        assert isinstance(v["mount_path"], str) and v["mount_path"].endswith(v["id"])
    else:
        assert v["mount_path"] is None
    state = v["dismount_state"]
    assert state in ("none", "temporary", "permanent"), state
    permanent = "VDS_VF_PERMANENTLY_DISMOUNTED" in names
    assert (state == "permanent") == permanent == (v["status"] == "OFFLINE"), (state, names, v["status"])
    if state != "none":
        assert not v["mounted"]
    if state == "permanent":
        assert paths == [], "a permanently dismounted volume has no access paths"


def check_envelope(obj: dict[str, Any], rc: int, *, usage: bool = False) -> None:
    hr = obj.get("hresult")
    assert isinstance(hr, int) and not isinstance(hr, bool), f"hresult {hr!r} is not an integer"
    assert 0 <= hr < 2**32, f"hresult {hr} is not an unsigned 32-bit integer"
    assert obj.get("code") == code_name(hr), f"code {obj.get('code')!r} != code_name(0x{hr:08X}) {code_name(hr)!r}"
    failed = bool(hr & 0x80000000)
    if usage:
        assert obj["code"] == "E_INVALIDARG", obj
        assert rc == 2, f"usage error exited {rc}, expected 2: {obj}"
    else:
        assert rc == (1 if failed else 0), f"exit status {rc} for {obj['code']} (expected {1 if failed else 0})"
    if failed:
        assert isinstance(obj.get("message"), str) and obj["message"], f"a failure needs a message: {obj}"
    else:
        assert "message" not in obj, obj
    if obj["code"] == "VDS_E_DEVICE_IN_USE":
        assert "holders" in obj, f"an in-use failure must name its holders: {obj}"
    for h in obj.get("holders", []):
        assert set(h) >= HOLDER_KEYS, h
        assert isinstance(h["pid"], int)
    if obj.get("volume") is not None:
        check_volume(obj["volume"])
    for v in obj.get("volumes", []):
        check_volume(v)


class Cli:
    """The installed ``simvol`` command on one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def raw(self, *args: str, env: dict[str, str] | None = None, root: bool = True) -> subprocess.CompletedProcess:
        return run_simvol([*(["--root", str(self.root)] if root else []), *args], env=env)

    def run(self, *args: str, expect: str | None = "S_OK", usage: bool = False,
            env: dict[str, str] | None = None) -> dict[str, Any]:
        """``simvol --root R --json ARGS``; checks the contract and that the code is ``expect``."""
        r = self.raw("--json", *args, env=env)
        try:
            obj = parse_one_object(r.stdout)
            check_envelope(obj, r.returncode, usage=usage)
        except (AssertionError, ValueError) as e:
            raise AssertionError(f"simvol {' '.join(args)}: {e}\nexit {r.returncode}\nstdout:\n{r.stdout}"
                                 f"\nstderr:\n{r.stderr}") from e
        if expect is not None:
            assert obj["code"] == expect, f"simvol {' '.join(args)}: expected {expect}, got {obj}"
        return obj

    def fail(self, code: str, *args: str) -> dict[str, Any]:
        return self.run(*args, expect=code)

    def usage(self, *args: str) -> dict[str, Any]:
        return self.run(*args, expect="E_INVALIDARG", usage=True)

    def create(self, *opts: str, size: str = "40M") -> dict[str, Any]:
        return self.run("create", "--size", size, *opts)["volume"]

    def show(self, vol: str) -> dict[str, Any]:
        return self.run("show", vol)["volume"]

    def resolve(self, winpath: str) -> str:
        return self.run("resolve", winpath)["path"]

    def down(self) -> None:
        r = self.raw("--json", "down", "--force")
        obj = parse_one_object(r.stdout)
        check_envelope(obj, r.returncode)
        assert obj["code"] == "S_OK", obj
        assert not any(v["mounted"] for v in obj["volumes"]), obj


def sh(script: str, **env: str) -> str:
    """Run a shell script in another process (the test process never touches a mount itself)."""
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"sh -c {script!r} failed ({r.returncode}): {r.stderr}"
    return r.stdout


HOLDER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
print("ready", flush=True)
for line in sys.stdin:
    try:
        os.pread(fd, 16, 0)
        print("ok", flush=True)
    except OSError as e:
        print("err %d" % e.errno, flush=True)
"""


class Holder:
    """A process holding a file open on a mount; ``read()`` → 0 or the errno of a pread."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        self.pid = self.proc.pid
        line = self._readline()
        assert line.strip() == "ready", (
            f"holder on {path} did not start: {line!r} "
            f"{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        )

    def _readline(self, timeout: float = 30) -> str:
        return read_line(self.proc, timeout)

    def read(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("read\n")
        self.proc.stdin.flush()
        reply = self._readline().strip()
        assert reply == "ok" or reply.startswith("err "), reply
        return 0 if reply == "ok" else int(reply.split()[1])

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def holder() -> Iterator:
    """``holder(path)`` starts a process holding ``path`` open; all are killed at the end of the test."""
    made: list[Holder] = []

    def start(path: str) -> Holder:
        h = Holder(path)
        made.append(h)
        return h

    yield start
    for h in made:
        h.stop()


def _teardown_root(root: Path) -> None:
    problems: list[str] = []
    try:
        Cli(root).down()
    except Exception as e:  # noqa: BLE001 - go on and clean up, then fail
        problems.append(f"simvol down --force failed: {e}")
    left = [e.mountpoint for e in simvol_mounts(str(root))]
    for mp in left:  # last resort, so one broken test does not poison the session
        try:
            cleanup_stale(mp)
        except Exception:  # noqa: BLE001
            subprocess.run(["fusermount3", "-uz", "--", mp], capture_output=True, timeout=10)
    if left:
        problems.append(f"simvol mounts left under {root} after `down --force`: {left}")
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """``simvol`` on a root private to the test module; ``down --force`` and a leftover-mount check at the end."""
    root = tmp_path_factory.mktemp("cli-root")
    c = Cli(root)
    yield c
    _teardown_root(root)


@pytest.fixture
def fresh_cli(tmp_path: Path) -> Iterator[Cli]:
    """``simvol`` on a root private to one test (an empty directory: a host with no volumes yet)."""
    root = tmp_path / "root"
    root.mkdir()
    c = Cli(root)
    yield c
    if simvol_mounts(str(root)) or list(root.glob("run/*.pid")):
        _teardown_root(root)

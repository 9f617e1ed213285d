"""Fixtures for the service-layer tests: a ``VolumeService`` on a private root, holder processes, checks.

- ``svc``: a :class:`VolumeService` on ``tmp_path/root``. ``svc_factory(name)`` gives more roots (or a second
  service on the same root). Teardown, pass or fail: every holder process is killed, every volume of every
  root is force-deleted (``v.delete(force=True)``), and the test errors if a simvol mount or a mount daemon
  of one of its roots is left.
- ``kit``: helpers. All file I/O on a mount is done by *other* processes (``kit.py``, ``kit.holder``), so the
  test process never holds a volume and never blocks on a FUSE request.
- ``kit.expect(v, state, paths=...)`` checks a volume against docs/windows-semantics.md §7: the raw reality first
  (mountinfo,
  daemon, image trailer, registry row), then the VDS view (state, GetProperties status and flags,
  QueryAccessPaths).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from simvol.errors import VdsError
from simvol.image import read_metadata
from simvol.mount import DaemonClient, daemon_alive, find_mount, read_pidfile, simvol_mounts
from simvol.service import Volume, VolumeService
from simvol.service.registry import Registry
from simvol.types import VolumeFlag, VolumeStatus
from tests.support.processes import daemons_of, read_line, stop_process

MiB = 1 << 20
GiB = 1 << 30
SIZE = 40 * MiB
TIMEOUT = 60
STALE_ERRNOS = (errno.EIO, errno.ENOTCONN)
PD = int(VolumeFlag.PERMANENTLY_DISMOUNTED)

# A long-lived process holding a volume. argv: MODE PATH. Modes: open (an fd on PATH, created if missing),
# cwd (chdir PATH), path (an O_PATH fd), none. Then it answers commands on stdin, one line each:
# read / write / fsync / listcwd / stat / exit -> "ok [data]" or "err ERRNO". Without an fd (cwd) read lists
# the cwd and write creates cwd/w.txt; with an O_PATH fd read is an fstat.
HOLDER = r"""
import os, sys
mode, path = sys.argv[1], sys.argv[2]
fd = None
if mode == "open":
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
elif mode == "cwd":
    os.chdir(path)
elif mode == "path":
    fd = os.open(path, os.O_PATH)
print("ready", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    try:
        if cmd == "read" and mode == "cwd":
            out = ",".join(sorted(os.listdir(".")))
        elif cmd == "read" and mode == "path":
            os.fstat(fd); out = ""
        elif cmd == "read":
            out = os.pread(fd, 4096, 0).decode("latin-1")
        elif cmd == "write" and mode in ("cwd", "path"):
            w = os.open("w.txt" if mode == "cwd" else path + ".w", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                out = str(os.write(w, arg.encode()))
            finally:
                os.close(w)
        elif cmd == "write":
            out = str(os.pwrite(fd, arg.encode(), 0))
        elif cmd == "fsync":
            os.fsync(fd); out = ""
        elif cmd == "listcwd":
            out = ",".join(sorted(os.listdir(".")))
        elif cmd == "stat":
            os.stat(arg or "."); out = ""
        elif cmd == "exit":
            print("ok", flush=True); break
        else:
            out = "?"
        print("ok " + out, flush=True)
    except OSError as e:
        print("err %d" % e.errno, flush=True)
"""


class Holder:
    """A holder process (see HOLDER); ``cmd`` sends one command and returns the reply line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid

    def cmd(self, line: str, timeout: float = 30) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return read_line(self.proc, timeout).strip()

    def errno_of(self, line: str) -> int:
        """0 on success, else the errno of the command."""
        reply = self.cmd(line)
        if reply.startswith("ok"):
            return 0
        assert reply.startswith("err "), f"holder {self.pid} said {reply!r}"
        return int(reply.split()[1])

    def stop(self) -> None:
        stop_process(self.proc)


class Kit:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.holders: list[Holder] = []

    # ---------------------------------------------------------------- other processes

    def py(self, code: str, *, cwd: str = "/", check: bool = True, **env: str) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=dict(os.environ, **env), capture_output=True, text=True,
            timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"python failed ({r.returncode}):\n{code}\n{r.stdout}\n{r.stderr}")
        return r

    def write_file(self, path: str, data: bytes | str = b"hello", *, fsync: bool = True) -> None:
        """Write ``path`` from another process (and fsync it)."""
        if isinstance(data, str):
            data = data.encode()
        self.py(
            "import os,sys\n"
            "fd=os.open(sys.argv[1] if len(sys.argv)>1 else os.environ['P'],"
            " os.O_WRONLY|os.O_CREAT|os.O_TRUNC, 0o644)\n"
            "os.write(fd, bytes.fromhex(os.environ['D']))\n" + ("os.fsync(fd)\n" if fsync else "") + "os.close(fd)\n",
            P=path,
            D=data.hex(),
        )

    def read_file(self, path: str) -> bytes:
        r = self.py("import os,sys\nsys.stdout.write(open(os.environ['P'],'rb').read().hex())", P=path)
        return bytes.fromhex(r.stdout)

    def errno_of(self, code: str, **env: str) -> int:
        """Run ``code`` in another process; 0 if it completes, else the errno of the OSError it raised."""
        r = self.py("import os\ntry:\n" + "".join("    " + ln + "\n" for ln in code.splitlines())
                    + "    print(0)\nexcept OSError as e:\n    print(e.errno)\n", **env)
        return int(r.stdout.strip().splitlines()[-1])

    def holder(self, mode: str, path: str) -> Holder:
        """Start a holder (``open``/``cwd``/``path``) on ``path``; waits until it holds. Killed at teardown."""
        p = subprocess.Popen(
            [sys.executable, "-c", HOLDER, mode, path], cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        h = Holder(p)
        self.holders.append(h)
        line = read_line(p, TIMEOUT)
        if line.strip() != "ready":
            h.stop()
            raise AssertionError(
                f"holder {mode} {path} did not get ready: {line!r} {p.stderr.read() if p.stderr else ''}"
            )
        return h

    def lock_image(self, image: str) -> Holder:
        """A process holding a shared flock on ``image``: nothing can mount or modify it meanwhile."""
        code = ("import fcntl,os,sys\nfd=os.open(sys.argv[1], os.O_RDONLY)\nfcntl.flock(fd, fcntl.LOCK_SH)\n"
                "print('ready', flush=True)\nsys.stdin.read()\n")
        p = subprocess.Popen([sys.executable, "-c", code, image], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        h = Holder(p)
        self.holders.append(h)
        assert read_line(p, TIMEOUT).strip() == "ready"
        return h

    def stop_holders(self) -> None:
        for h in self.holders:
            h.stop()
        self.holders.clear()

    # ---------------------------------------------------------------- images

    @staticmethod
    def fsck(image: str) -> subprocess.CompletedProcess:
        return subprocess.run(["fsck.fat", "-n", image], capture_output=True, text=True, timeout=TIMEOUT)

    def assert_fsck_clean(self, image: str) -> None:
        r = self.fsck(image)
        assert r.returncode == 0, f"fsck.fat -n {image}:\n{r.stdout}\n{r.stderr}"

    # ---------------------------------------------------------------- state checks (docs/windows-semantics.md §7)

    @staticmethod
    def mounted(v: Volume) -> bool:
        e = find_mount(v.mount_path)
        return e is not None and e.is_simvol

    @staticmethod
    def raw(v: Volume) -> dict:
        """The reality of a volume without going through the service (no reconcile)."""
        root = os.path.dirname(os.path.dirname(v.mount_path))  # ROOT/volumes/{GUID}
        vid = str(v.id)
        registry = Registry(os.path.join(root, "simvol.db"))
        try:
            row = registry.volume(vid)
            paths = [p.display for p in registry.paths(vid)]
        finally:
            registry.close()
        info = read_pidfile(os.path.join(root, "run"), vid)
        alive = info is not None and daemon_alive(info)
        entry = find_mount(v.mount_path)
        armed = False
        if alive and entry is not None and entry.mounted_armed:
            assert info is not None
            armed = bool(DaemonClient(info.socket).status().get("armed"))
        return {
            "mounted": Kit.mounted(v) and not armed,  # the volume served, not merely armed
            "armed": armed,
            "daemon": alive,
            "image_flags": read_metadata(row.image).flags,
            "dismount": row.dismount,
            "paths": paths,
        }

    def expect(self, v: Volume, state: str, paths: list[str] | None = None) -> None:
        """Assert ``v`` is in ``state`` (M/T/P) in every place the state shows (docs/windows-semantics.md §7 table)."""
        raw = self.raw(v)
        if state == "M":
            assert raw["mounted"] and not raw["armed"], f"{v} should be mounted (M): {raw}"
            assert raw["daemon"], f"{v} has no live daemon in M: {raw}"
            assert not raw["image_flags"] & PD, raw
            assert raw["dismount"] == "none", raw
        elif state == "T":
            # The file system is dismounted; what answers at the mount point mounts it on the next access.
            assert not raw["mounted"], f"{v} should not be mounted in T: {raw}"
            assert raw["armed"] and raw["daemon"], f"the mount point of {v} should be armed in T: {raw}"
            assert not raw["image_flags"] & PD, raw
            assert raw["dismount"] == "temporary", raw
        elif state == "P":
            assert not (raw["mounted"] or raw["armed"] or raw["daemon"]), f"{v} should not be mounted in P: {raw}"
            assert raw["image_flags"] & PD, f"the PERMANENTLY_DISMOUNTED flag must be in the image trailer: {raw}"
            assert raw["paths"] == [], f"P has no access paths: {raw}"
        else:  # pragma: no cover
            raise ValueError(state)
        if state in ("T", "P"):  # "Dismount returns only when the mount is gone and the image closed and unlocked"
            fd = os.open(v.image, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AssertionError(f"the image of {v} is still locked in {state}") from None
            finally:
                os.close(fd)
        assert v.state == state
        prop = v.get_properties()
        assert prop.status == (VolumeStatus.OFFLINE if state == "P" else VolumeStatus.ONLINE)
        assert bool(prop.flags & VolumeFlag.PERMANENTLY_DISMOUNTED) == (state == "P")
        assert v.state == state, "GetProperties must not change the state"
        got = v.query_access_paths()
        assert got == raw["paths"]
        if paths is not None:
            assert got == paths
        if state == "M":  # a mount point that answers
            r = subprocess.run(["ls", "-A", "--", v.mount_path], capture_output=True, text=True, timeout=TIMEOUT,
                               cwd="/", stdin=subprocess.DEVNULL)
            assert r.returncode == 0, f"the mount of {v} does not answer: {r.stderr}"


def force_cleanup(roots: list[str]) -> list[str]:
    """Force-delete every volume of ``roots``; returns problems."""
    problems: list[str] = []
    for root in roots:
        if not os.path.exists(os.path.join(root, "simvol.db")):
            continue
        try:
            s = VolumeService(root)
        except VdsError as e:
            problems.append(f"cannot open {root}: {e}")
            continue
        try:
            for row in s.registry.volumes():
                try:
                    s.volume(row.id).delete(force=True)
                except Exception as e:  # noqa: BLE001 - teardown goes on
                    problems.append(f"delete {row.id} failed: {type(e).__name__}: {e}")
        finally:
            s.close()
    return problems


@pytest.fixture(name="daemons_of")
def daemons_of_fixture():
    """``daemons_of(root)``: the live mount daemons of a root, found by their command line (psutil)."""
    return daemons_of


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    k = Kit(tmp_path)
    yield k
    k.stop_holders()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private directory: a daemon's control socket ROOT/run/{guid}.sock must fit in sun_path (108
    bytes), which pytest's tmp_path (/tmp/pytest-of-USER/pytest-N/<test name>0/) can exceed."""
    d = Path(tempfile.mkdtemp(prefix="sv-", dir="/tmp"))
    yield d
    if not [e for e in simvol_mounts(str(d))]:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def svc_factory(short_tmp: Path, kit: Kit) -> Iterator:
    """``make(name="root")`` -> a VolumeService on ``SHORT_TMP/name`` (several calls may share a root)."""
    made: list[VolumeService] = []

    def make(name: str = "root") -> VolumeService:
        s = VolumeService(short_tmp / name)
        made.append(s)
        return s

    yield make

    kit.stop_holders()
    roots = sorted({s.root.path for s in made})
    for s in made:
        try:
            s.close()
        except Exception:  # noqa: BLE001
            pass
    problems = force_cleanup(roots)
    left = [e.mountpoint for r in roots for e in simvol_mounts(os.path.join(r, "volumes"))]
    daemons = [p.pid for r in roots for p in daemons_of(r)]
    for mp in left:  # last resort, so one broken test does not poison the session
        subprocess.run(["fusermount3", "-uz", "--", mp], capture_output=True, timeout=10)
    for pid in daemons:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"simvol mounts left: {left}"
    assert not daemons, f"mount daemons left: {daemons}"
    assert not problems, "; ".join(problems)


@pytest.fixture
def svc(svc_factory) -> VolumeService:
    return svc_factory("root")


"""Running simvol as another, unprivileged user: the test user, its interpreter, and /dev/fuse access.

Used by ``tests/security`` and ``tests/reliability/test_rootless.py`` (which loads this file by path).

- ``ensure_user()``: the user ``simvol-test`` (created with ``useradd --system`` when the suite runs as root and it
  is missing), or a skip reason.
- ``user_python(user)``: how that user runs Python with simvol importable. The venv's interpreter first; if the
  user cannot execute it (here the venv points into ``/root/.pyenv``, mode 0700), the system ``python3.X`` of the
  *same* minor version with ``PYTHONPATH`` = the venv's site-packages + the checkout. Nothing is copied. If neither
  works the reason says precisely why.
- ``run_as(user, argv, env)``: ``runuser -u USER --`` (or ``setpriv``) with a clean environment.
- ``fuse_for_users()``: a context manager that makes ``/dev/fuse`` usable by other users (0666, as on Debian/Ubuntu
  hosts and GitHub runners) when it is root-only (0600, as in this project's CI container), and restores the mode.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "simvol-test"
PROJECT = Path(__file__).resolve().parents[2]
# An unprivileged Debian user's PATH: no /usr/sbin (where fsck.fat lives), on purpose.
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class TestUser:
    name: str
    uid: int
    gid: int


def ensure_user(name: str = USER) -> TestUser | str:
    """The test user, created if missing (root only); a skip reason string when impossible."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            return f"user {name!r} does not exist and the suite does not run as root to create it"
        useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
        if useradd is None:
            return "useradd is not available to create the test user"
        r = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                           capture_output=True, text=True, timeout=30)
        if r.returncode not in (0, 9):  # 9: created meanwhile by a concurrent run
            return f"useradd {name} failed: {r.stderr.strip()}"
        pw = pwd.getpwnam(name)
    return TestUser(name, pw.pw_uid, pw.pw_gid)


def _runner(user: TestUser) -> list[str] | None:
    if os.geteuid() != 0:
        return None
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser:
        return [runuser, "-u", user.name, "--"]
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
    return None


def run_as(user: TestUser, argv: list[str], env: dict[str, str], *, timeout: float = 120,
           cwd: str = "/", input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` with exactly ``env`` (nothing inherited from the root test process)."""
    runner = _runner(user)
    if runner is None:
        raise RuntimeError("run_as needs root and runuser or setpriv")
    envargs = [f"{k}={v}" for k, v in env.items()]
    return subprocess.run(
        [*runner, "env", "-i", *envargs, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def base_env(home: str) -> dict[str, str]:
    return {"HOME": home, "PATH": USER_PATH, "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class UserPython:
    argv: list[str]  # the interpreter
    env: dict[str, str]  # what it needs in its environment (PYTHONPATH in the fallback)
    how: str  # for messages and docs/reliability.md


_PROBE = "import simvol, mfusepy, psutil, click, platformdirs, rich; print(simvol.__file__)"


def user_python(user: TestUser, home: str) -> UserPython | str:
    """How ``user`` runs Python with simvol importable, or the precise reason it cannot."""
    if _runner(user) is None:
        return "not root: cannot switch to the test user (the suite itself then runs unprivileged)"
    tried: list[str] = []
    candidates = [UserPython([sys.executable], {}, f"the venv interpreter {sys.executable}")]
    site = sysconfig.get_paths()["purelib"]
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for base in ("/usr/bin", "/usr/local/bin"):
        exe = os.path.join(base, ver)
        if os.path.exists(exe) and os.path.realpath(exe) != os.path.realpath(sys.executable):
            candidates.append(UserPython([exe], {"PYTHONPATH": f"{site}:{PROJECT}"},
                                         f"{exe} with PYTHONPATH={site}:{PROJECT} (the venv's interpreter is not "
                                         f"executable by {user.name}: {os.path.realpath(sys.executable)})"))
    for c in candidates:
        r = run_as(user, [*c.argv, "-c", _PROBE], {**base_env(home), **c.env}, timeout=60)
        if r.returncode == 0 and r.stdout.strip().startswith(str(PROJECT)):
            return c
        tried.append(f"{c.argv[0]}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return (f"{user.name} cannot run Python with this checkout's simvol ({PROJECT}) importable: "
            + "; ".join(tried))


def user_dir(user: TestUser, prefix: str) -> str:
    """A fresh directory owned by ``user`` (0700) in a place the user can reach (the system temp dir)."""
    import tempfile

    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chown(d, user.uid, user.gid)
    return d


def fusermount_problem() -> str | None:
    fm = shutil.which("fusermount3")
    if fm is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    st = os.stat(fm)
    if not (st.st_mode & stat.S_ISUID and st.st_uid == 0):
        return f"{fm} is not setuid root (mode {stat.S_IMODE(st.st_mode):o}), so unprivileged mounts fail with EPERM"
    return None


@contextlib.contextmanager
def fuse_for_users() -> Iterator[None]:
    """Make /dev/fuse usable by every user for the duration, as hosts that support rootless FUSE have it.

    This project's CI container has /dev/fuse 0600 root (docs/fuse-notes.md §7), where only root can mount. Debian's
    and Ubuntu's udev rules and GitHub runners give it 0666. This is a test-machine setup step, done here (root only)
    and undone afterwards, so the rest of the suite sees the device exactly as before.
    """
    st = os.stat("/dev/fuse")
    old = stat.S_IMODE(st.st_mode)
    changed = False
    if old & 0o006 != 0o006:
        if os.geteuid() != 0:
            raise PermissionError(f"/dev/fuse is {old:04o}: other users cannot open it")
        os.chmod("/dev/fuse", old | 0o666)
        changed = True
    try:
        yield
    finally:
        if changed:
            os.chmod("/dev/fuse", old)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)

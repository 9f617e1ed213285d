"""The root directory of one simulated host (docs/architecture.md, The root): its layout, permissions and locks."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import platformdirs

from ..errors import HRESULTS, VdsError


def default_root() -> str:
    """``SIMVOL_ROOT``, else the platform's per-user state directory."""
    env = os.environ.get("SIMVOL_ROOT")
    if env:
        return env
    return platformdirs.user_state_dir("simvol", appauthor=False)


def _private_dir(path: str, mode: int = 0o700) -> None:
    """Create a directory we own; refuse a symlink or someone else's directory planted there."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise VdsError(HRESULTS["E_ACCESSDENIED"], f"{path} is not a directory (a symlink or file is in the way)")
    if st.st_uid != os.geteuid():
        raise VdsError(HRESULTS["E_ACCESSDENIED"], f"{path} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        # A shared directory (/tmp, a world-writable drop box): never chmod it to 0700 under its other users.
        raise VdsError(
            HRESULTS["E_ACCESSDENIED"],
            f"{path} is a shared directory (mode {stat.S_IMODE(st.st_mode):04o}); use a private directory",
        )
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


class Root:
    """``ROOT/simvol.db``, ``images/``, ``volumes/{GUID}/``, ``drives/C/``, ``drives/X``, ``run/``."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        """``create=False``: a directory that does not exist is an error (a mistyped ``--root`` must not become a
        new, empty host); an existing directory, empty or not, is set up as a root."""
        raw = os.fspath(path) if path is not None else default_root()
        if not isinstance(raw, str) or not raw or "\0" in raw:
            # An empty path would make the current directory the root (and chmod it 0700).
            raise VdsError(HRESULTS["E_INVALIDARG"], f"{raw!r} is not a usable root directory path")
        self.path = os.path.abspath(raw)
        if not create and not os.path.isdir(self.path):
            raise VdsError(
                HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"],
                f"no simvol root at {self.path}: only create and attach make one (check --root or SIMVOL_ROOT)",
            )
        parent = os.path.dirname(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            _private_dir(self.path)
            _private_dir(self.images)
            _private_dir(self.volumes)
            _private_dir(self.drives)
            _private_dir(self.system_drive, 0o755)
            _private_dir(self.run)
            _private_dir(self.locks)
        except VdsError:
            raise
        except PermissionError as e:
            raise VdsError(HRESULTS["E_ACCESSDENIED"], f"cannot use {self.path} as a simvol root: {e.strerror}") from e
        except OSError as e:
            raise VdsError(HRESULTS["E_ACCESSDENIED"], f"cannot use {self.path} as a simvol root: {e}") from e
        self._held = threading.local()

    images = property(lambda self: os.path.join(self.path, "images"))
    volumes = property(lambda self: os.path.join(self.path, "volumes"))
    drives = property(lambda self: os.path.join(self.path, "drives"))
    system_drive = property(lambda self: os.path.join(self.path, "drives", "C"))
    run = property(lambda self: os.path.join(self.path, "run"))
    locks = property(lambda self: os.path.join(self.path, "run", "locks"))
    database = property(lambda self: os.path.join(self.path, "simvol.db"))

    def letter_path(self, letter: str) -> str:
        return os.path.join(self.drives, letter.upper())

    def lock_path(self, name: str) -> str:
        """The file of :meth:`lock` ``name``: a volume's daemon takes the volume's lock to mount it on an access."""
        return os.path.join(self.locks, name + ".lock")

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock shared by every process on this root; re-entrant within a thread."""
        held: dict[str, int] = getattr(self._held, "locks", None) or {}
        self._held.locks = held
        if held.get(name):
            held[name] += 1
            try:
                yield
            finally:
                held[name] -= 1
            return
        fd = self._open_lock(self.lock_path(name))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held[name] = 1
            try:
                yield
            finally:
                held[name] = 0
        finally:
            os.close(fd)

    @staticmethod
    def _open_lock(path: str) -> int:
        """Open (create) a lock file without following a symlink; a link planted there is replaced, never followed."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        for _ in range(3):
            try:
                fd = os.open(path, flags, 0o600)
            except OSError as e:
                try:
                    planted = stat.S_ISLNK(os.lstat(path).st_mode)
                except OSError:
                    planted = False
                if e.errno == errno.ELOOP and planted:
                    try:
                        os.unlink(path)  # removes the link itself; its target is untouched
                    except FileNotFoundError:
                        pass
                    continue
                raise VdsError(
                    HRESULTS["E_ACCESSDENIED"], f"cannot open the lock file {path}: {e.strerror or e}"
                ) from e
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted there
                os.close(fd)
                raise VdsError(HRESULTS["E_ACCESSDENIED"], f"{path} is not a regular file")
            os.set_blocking(fd, True)
            return fd
        raise VdsError(HRESULTS["E_ACCESSDENIED"], f"cannot open the lock file {path}: a symlink keeps coming back")

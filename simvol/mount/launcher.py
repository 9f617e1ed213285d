"""Starting, talking to and cleaning up after mount daemons.

``start_daemon`` returns only once the mount is live (the daemon says so over a pipe after seeing its mount in
``/proc/self/mountinfo``); ``DaemonClient.dismount`` returns only once the daemon has unmounted and closed
the image. Paths under ``run_dir`` are created without following symlinks.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import select
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from ..errors import SimvolError
from . import mountinfo
from .control import ControlError, request, request_kept

log = logging.getLogger(__name__)


class MountError(SimvolError):
    """A volume could not be mounted; ``log_tail`` holds the daemon's last log lines."""

    def __init__(self, message: str, image: str | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.image = image
        self.log_tail = log_tail

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.args[0], self.image, self.log_tail))


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    pid: int
    create_time: float
    image: str
    mountpoint: str
    socket: str
    log: str
    volume_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_private_dir(path: str) -> None:
    """Create ``path`` as a 0700 directory; refuse a symlink or a foreign owner planted there."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise SimvolError(f"{path} is not a directory (a symlink or file is in the way)")
    if st.st_uid != os.geteuid():
        raise SimvolError(f"{path} belongs to uid {st.st_uid}, not to this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL


def _socket_path(run_dir: str, volume_id: str) -> str:
    """``RUN/GUID.sock``, or, when a deep root makes that too long for AF_UNIX, a short private stand-in."""
    path = os.path.join(run_dir, volume_id.lower() + ".sock")
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    short_dir = os.path.join(tempfile.gettempdir(), f"simvol-{os.geteuid()}")
    ensure_private_dir(short_dir)
    digest = hashlib.sha256(os.fsencode(os.path.abspath(run_dir))).hexdigest()[:12]
    return os.path.join(short_dir, f"{digest}-{volume_id.lower()[:8]}.sock")


def fault_log_path(run_dir: str, volume_id: str) -> str:
    """Where a volume's fault hits are logged (one JSON line each), by its daemon and by the service."""
    return os.path.join(run_dir, volume_id.lower() + ".faults.jsonl")


def run_files(run_dir: str, volume_id: str) -> tuple[str, str, str]:
    """(socket, log, pid record) for a volume."""
    base = os.path.join(run_dir, volume_id.lower())
    return _socket_path(run_dir, volume_id), base + ".log", base + ".pid"


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return ""


def _prepare_mountpoint(mountpoint: str) -> None:
    entry = mountinfo.find_mount(mountpoint)
    if entry is not None:
        raise MountError(f"{mountpoint} is already a mount point ({entry.fstype})")
    try:
        os.mkdir(mountpoint, 0o700)
    except FileExistsError:
        st = os.lstat(mountpoint)
        if stat.S_ISLNK(st.st_mode):
            # A symlink planted at the mount point: replace the link (never mount over, or follow, its target).
            os.unlink(mountpoint)
            try:
                os.mkdir(mountpoint, 0o700)
            except FileExistsError:
                raise MountError(f"{mountpoint} keeps being replaced while it is prepared") from None
            return
        if not stat.S_ISDIR(st.st_mode):
            raise MountError(f"{mountpoint} exists and is not a directory") from None
        if os.listdir(mountpoint):
            raise MountError(f"{mountpoint} is not empty") from None


def start_daemon(
    image: str,
    mountpoint: str,
    run_dir: str,
    volume_id: str,
    *,
    readonly: bool = False,
    allow_other: bool = False,
    owner: tuple[int, int] | None = None,
    discard: bool = False,
    timeout: float = 20.0,
    armed: bool = False,
    lock_file: str | None = None,
    fault_log: str | None = None,
) -> DaemonInfo:
    """Start a daemon for ``image`` at ``mountpoint`` and wait until the mount is live.

    ``armed``: the mount point answers, but the image is opened only by the first access through it, which takes
    ``lock_file`` (the volume's lock) first (daemon.py).
    """
    ensure_private_dir(run_dir)
    sock, logfile, pidfile = run_files(run_dir, volume_id)
    mountpoint = os.path.abspath(mountpoint)
    _prepare_mountpoint(mountpoint)
    r, w = os.pipe()
    try:
        logfd = _open_run_file(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    except OSError:
        os.close(r)
        os.close(w)
        raise
    args = [
        sys.executable, "-m", "simvol.mount.daemon", "--detach",
        "--image", os.path.abspath(image), "--mountpoint", mountpoint, "--socket", sock,
        "--volume-id", volume_id, "--ready-fd", str(w), "--timeout", str(timeout),
    ]
    if readonly:
        args.append("--readonly")
    if allow_other:
        args.append("--allow-other")
    if owner is not None:
        args += ["--owner", f"{owner[0]}:{owner[1]}"]
    if discard:
        args.append("--discard")
    if armed:
        args.append("--armed")
    if lock_file:
        args += ["--lock-file", lock_file]
    if fault_log:
        args += ["--fault-log", fault_log]
    args += ["--inner-dir", os.path.join(run_dir, "inner", volume_id.lower())]  # NTFS: ntfs-3g's private mount
    env = dict(os.environ)
    env["FUSE_LIBRARY_NAME"] = "fuse3"
    env.pop("FUSE_LIBRARY_PATH", None)
    try:
        proc = subprocess.Popen(
            args, pass_fds=[w], stdin=subprocess.DEVNULL, stdout=logfd, stderr=logfd,
            start_new_session=True, cwd="/", env=env, close_fds=True,
        )
    finally:
        os.close(w)
        os.close(logfd)
    try:
        proc.wait(timeout)
        message = _read_ready(r, timeout)
    finally:
        os.close(r)
    if not message.get("ok"):
        if message.get("pid"):  # a daemon that failed to mount: return once it has exited, not while it exits
            wait_gone(int(message["pid"]), 0.0, 10)
        _remove_empty_dir(mountpoint)
        raise MountError(
            f"cannot mount {image}: {message.get('error', 'the daemon failed')}", image, _tail(logfile)
        )
    pid = int(message["pid"])
    try:
        ctime = psutil.Process(pid).create_time()
    except psutil.Error:
        ctime = 0.0
    info = DaemonInfo(pid, ctime, os.path.abspath(image), mountpoint, sock, logfile, volume_id)
    try:
        _write_pidfile(pidfile, info)
    except OSError as e:
        # Without its pid record nobody could find the daemon again: take the live mount down before failing.
        try:
            DaemonClient(sock).dismount(force=True, timeout=20)
        except ControlError:
            pass
        wait_gone(pid, ctime, 10)
        raise MountError(f"cannot write the pid record {pidfile}: {e.strerror or e}", image, _tail(logfile)) from e
    return info


def _open_run_file(path: str, flags: int) -> int:
    """Open a file in the run directory without following a symlink; a link planted there is replaced."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        os.unlink(path)  # the link, not its target
        fd = os.open(path, flags | os.O_EXCL, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EPERM, f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _read_ready(fd: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return {"ok": False, "error": f"no answer from the daemon within {timeout:.0f} s"}
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    if not buf:
        return {"ok": False, "error": "the daemon exited without reporting"}
    try:
        message: dict[str, Any] = json.loads(buf)
        return message
    except ValueError:
        return {"ok": False, "error": f"garbled report from the daemon: {buf[:200]!r}"}


def _write_pidfile(path: str, info: DaemonInfo) -> None:
    # A fresh, uniquely named file (O_EXCL): nothing planted in the run directory is followed or truncated.
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info.as_dict(), f)
        os.replace(tmp, path)  # replaces a link planted at ``path`` itself, never its target
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_pidfile(run_dir: str, volume_id: str) -> DaemonInfo | None:
    _, _, pidfile = run_files(run_dir, volume_id)
    try:
        fd = os.open(pidfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, encoding="utf-8") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return DaemonInfo(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def remove_pidfile(run_dir: str, volume_id: str) -> None:
    _, _, pidfile = run_files(run_dir, volume_id)
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass


def _remove_empty_dir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def daemon_alive(info: DaemonInfo) -> bool:
    """The daemon process of ``info`` still runs (same pid and start time)."""
    try:
        p = psutil.Process(info.pid)
        return p.status() != psutil.STATUS_ZOMBIE and (
            not info.create_time or abs(p.create_time() - info.create_time) < 1
        )
    except psutil.Error:
        return False


def wait_gone(pid: int, create_time: float, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            p = psutil.Process(pid)
            if p.status() == psutil.STATUS_ZOMBIE or (create_time and abs(p.create_time() - create_time) >= 1):
                return True
        except psutil.Error:
            return True
        time.sleep(0.005)
    return False


class DaemonClient:
    """Requests to one daemon's control socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket = socket_path

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        return self._ok(request(self.socket, {"op": "status"}, timeout))

    def flush(self) -> None:
        self._ok(request(self.socket, {"op": "flush"}))

    def holders(self, paths: list[str] | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._ok(request(self.socket, {"op": "holders", "paths": paths or []}))["holders"]
        return found

    def dismount(
        self, force: bool = False, paths: list[str] | None = None, timeout: float = 60.0, *, rearm: bool = False
    ) -> dict[str, Any]:
        """{"ok": True} once unmounted and the image is closed; {"ok": False, "in_use": True, "holders": […]}.

        With ``rearm`` the daemon stays, its mount point armed (``"armed": true`` in the answer): the next access
        mounts the volume again.
        """
        message = {"op": "dismount", "force": bool(force), "paths": list(paths or []), "rearm": bool(rearm)}
        return request(self.socket, message, timeout)

    def lock(self, pid: int, paths: list[str] | None = None) -> tuple[dict[str, Any], socket.socket | None]:
        """Ask for the volume lock for ``pid`` and its descendants: (answer, the connection that holds it).

        Closing the connection — or the end of this process — ends the lock. When refused the connection is None.
        """
        answer, conn = request_kept(self.socket, {"op": "lock", "pid": pid, "paths": list(paths or [])})
        if not answer.get("ok"):
            conn.close()
            return answer, None
        return answer, conn

    def faults(self, specs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Arm exactly ``specs`` (None: only ask); the faults armed now, with their counters."""
        message: dict[str, Any] = {"op": "faults"} if specs is None else {"op": "faults", "set": specs}
        armed: list[dict[str, Any]] = self._ok(request(self.socket, message))["faults"]
        return armed

    def request(self, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Any request; the answer as it came (``ok`` false included)."""
        return request(self.socket, message, timeout)

    def activate(self, timeout: float = 60.0) -> dict[str, Any]:
        """Mount the volume of an armed daemon now (the caller holds the volume's lock)."""
        return self._ok(request(self.socket, {"op": "activate"}, timeout))

    def _ok(self, response: dict[str, Any]) -> dict[str, Any]:
        if not response.get("ok"):
            raise ControlError(str(response.get("error", "request failed")), self.socket)
        return response


def cleanup_stale(mountpoint: str) -> bool:
    """Remove a FUSE mount whose daemon is gone ("Transport endpoint is not connected"). True if one was."""
    entry = mountinfo.find_mount(mountpoint)
    if entry is None:
        _remove_empty_dir(mountpoint)
        return False
    ok, msg = mountinfo.unmount(mountpoint)
    if not ok:
        ok, msg = mountinfo.unmount(mountpoint, lazy=True)
    if not ok:
        raise SimvolError(f"cannot remove the stale mount at {mountpoint}: {msg}")
    _remove_empty_dir(mountpoint)
    return True

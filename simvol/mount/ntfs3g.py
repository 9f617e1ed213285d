"""An NTFS volume in the mount daemon: ntfs-3g supervised as the volume's FUSE server.

docs/architecture.md ("NTFS volumes: the mechanism") says why. In short: an NTFS volume with Windows' semantics (the
default) is served by the daemon's own session in front of ntfs-3g mounted privately
(:class:`~simvol.mount.passthrough.PassthroughOps`, which adds the rules ntfs-3g lacks). A native volume
(``--ntfs-native``) has ``ntfs-3g`` itself answer at the mount point while it is simply mounted (:class:`DirectOps`
stands for it in the daemon), at ntfs-3g's own speed: the kernel gives what a dismount needs (a non-lazy unmount
fails with EBUSY while anything is open, ``/proc`` names the holders), and a forced dismount ends the server with
SIGTERM: it closes the volume cleanly and its mount goes at once, so every old handle fails with ENOTCONN and nothing
written through one reaches the image. What needs simvol's own session (the armed mount point's first access, the
volume lock, faults) switches a native volume to it.

Facts about ntfs-3g this relies on (ntfs-3g 2022.10.3, measured): it carries its own FUSE 2.8, so the
foreground option is ``-o no_detach``; it refuses ``fsname=`` and the kernel lists its mount as plain ``fuse`` with
the image as source (``mountinfo`` recognises simvol's NTFS mounts by their mount point); on SIGTERM it unmounts
(lazily) and closes the volume; run as root it adds ``allow_other`` itself; it takes a POSIX write lock on the
whole image while it has it open (``unix_io.c``), which tells simvol whether an ntfs-3g still has a volume open.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import shutil
import signal
import stat
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

from ..errors import SimvolError
from ..image import Image
from ..image.ntfs import in_use, native, ntfs_tool, read_label, repair_region, set_in_use
from . import holders, mountinfo
from .passthrough import ATTRIB_XATTR

FILE_ATTRIBUTE_COMPRESSED = 0x800

log = logging.getLogger(__name__)

#: Windows' name rules, large writes. No ``fmask``/``dmask``: they turn ntfs-3g's permission checks on, and with them
#: the kernel's (``default_permissions``: a GETATTR of the directory before every create); simvol's session shows
#: files 0644 and directories 0755 anyway, a native volume ntfs-3g's 0777. Not ``ignore_case``: it makes lookups
#: case-insensitive but lists every name in lower case (ntfs-3g(8)), so a file copied out of the volume would lose
#: its case; simvol's session folds case itself (Windows semantics), a native volume is case-sensitive.
OPTIONS = "windows_names,big_writes"


@dataclass(frozen=True, slots=True)
class NtfsStatFs:
    """The mounted volume's figures, as the daemon's status reports them."""

    total_clusters: int
    free_clusters: int
    cluster_size: int


class Server:
    """One ``ntfs-3g`` process serving an image at a directory, in the foreground (a child of the daemon).

    ntfs-3g, not ``lowntfs-3g``: the only reason for the low-level variant would be ``ignore_case``, which lists
    names in lower case (see OPTIONS), and ntfs-3g keeps the kernel's page cache of a file across opens (a second
    read of 256 MiB: 4.6 GB/s against lowntfs-3g's 0.8 GB/s here)."""

    def __init__(self, image: str, mountpoint: str, *, readonly: bool, allow_other: bool,
                 owner: tuple[int, int] | None) -> None:
        self.image = image
        self.mountpoint = mountpoint
        options = ["no_detach", OPTIONS]
        if readonly:
            options.append("ro")
        if allow_other:
            options.append("allow_other")
        if owner is not None:
            options.append(f"uid={owner[0]},gid={owner[1]}")
        argv = [ntfs_tool("ntfs-3g"), "-o", ",".join(options), image, mountpoint]
        self.argv = _with_parent_death_signal(argv)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        """Start the server; returns once its mount is live. Raises SimvolError with ntfs-3g's own words."""
        sources = _sources(self.image)
        here = os.path.abspath(self.mountpoint)
        os.makedirs(here, mode=0o700, exist_ok=True)
        # Only a mount made after the start is this server's (stop_orphan_server detached every earlier one).
        before = {e.mount_id for e in mountinfo.read_mounts() if e.mountpoint == here}
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd="/")
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            entry = mountinfo.find_mount(self.mountpoint)
            if entry is not None and entry.source in sources and entry.mount_id not in before:
                threading.Thread(target=self._log_stderr, name="simvol-ntfs-3g", daemon=True).start()
                return
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                self.terminate()
                err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr else ""
                self.wait(5)
                lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("Version", "Requested"))]
                raise SimvolError(f"ntfs-3g could not mount {self.image}: {' '.join(lines)[-400:] or 'timed out'}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)

    def _log_stderr(self) -> None:
        proc = self.proc
        if proc is None or proc.stderr is None:
            return
        for line in proc.stderr:
            log.info("ntfs-3g: %s", line.decode("utf-8", "replace").rstrip())

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def unmount(self) -> tuple[bool, str]:
        """A safe unmount: refused (False, "...busy...") while anything is open; ntfs-3g then closes the volume
        and exits."""
        return mountinfo.unmount(self.mountpoint)

    def terminate(self) -> None:
        """End the server now: its mount goes (every handle fails with ENOTCONN), the volume is closed cleanly."""
        if self.alive():
            assert self.proc is not None
            try:
                self.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass

    def wait(self, timeout: float) -> bool:
        """Wait for the server to exit; False if it is still running after ``timeout``."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        """Unmount (safely if possible, else by ending the server) and wait for the process to be gone."""
        if not self.alive():
            return
        ok, msg = self.unmount()
        if not ok or not self.wait(10):
            log.warning("ntfs-3g at %s did not unmount (%s): ending it", self.mountpoint, msg)
            self.terminate()
            if not self.wait(10):
                assert self.proc is not None
                self.proc.kill()
                self.wait(5)
        if mountinfo.find_mount(self.mountpoint) is not None:
            mountinfo.unmount(self.mountpoint, lazy=True)


def _with_parent_death_signal(argv: list[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM when the daemon dies, and so closes the volume and unmounts.

    The parent-death signal (``setpriv --pdeathsig``) is cleared by the exec of a program that changes the effective
    user — Debian's ntfs-3g is set-user-ID root, so run by anyone but root it would outlive a killed daemon and keep
    the volume open. There ``timeout 0`` (no time limit) stands between: it keeps the signal and passes a SIGTERM on
    to its child, which the user may signal (its real user is the user's)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return argv  # NtfsVolume stops an ntfs-3g a dead daemon left at the next mount (stop_orphan_server)
    relay: list[str] = []
    timeout = shutil.which("timeout")
    if os.geteuid() != 0 and timeout is not None:
        try:
            st = os.stat(argv[0])
        except OSError:
            st = None
        if st is not None and st.st_mode & stat.S_ISUID and st.st_uid != os.geteuid():
            relay = [timeout, "0"]
    return [setpriv, "--pdeathsig", "TERM", "--", *relay, *argv]


_FLOCK = "hhxxxxqqixxxx"  # struct flock (Linux x86-64 and arm64): l_type, l_whence, l_start, l_len, l_pid


def lock_holder(fd: int) -> int | None:
    """The process holding a POSIX lock on the open file ``fd`` — for an image, the ntfs-3g that has it open."""
    probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    l_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    return None if l_type == fcntl.F_UNLCK else int(pid)


def _sources(image: str) -> set[str]:
    """How the kernel may name ``image`` as the source of ntfs-3g's mount."""
    return {image, os.path.realpath(image)}


def _ntfs3g_mounts(image: str) -> list[mountinfo.MountEntry]:
    sources = _sources(image)
    return [e for e in mountinfo.read_mounts() if e.source in sources and e.fstype in ("fuse", "fuseblk")]


def stop_orphan_server(image: Image, timeout: float = 10.0) -> None:
    """Clear what an ntfs-3g left behind when its daemon died, before the image is checked, repaired or served.

    The caller holds the image's simvol lock, so no daemon serves the image: an ntfs-3g that still has it open was
    left by one that was killed before it could stop it (no parent-death signal reached it). It is unmounted (it then
    closes the volume and exits), ended with SIGTERM if it does not go, SIGKILL last. Anything else holding the
    image's lock is refused: simvol does not end other programs. A mount of the image whose ntfs-3g died without
    unmounting (its connection is dead) is detached: it made its directory look missing (ENOTCONN), and could pass
    for a new server's mount."""
    pid = lock_holder(image.fd)
    if pid is not None:
        name = holders.process_name(pid)
        if name not in ("ntfs-3g", "lowntfs-3g"):
            raise SimvolError(f"{image.path} is in use by {name} (pid {pid})")
        log.warning("ntfs-3g (pid %d) still has %s open, left by a daemon that died: stopping it", pid, image.path)
        for entry in _ntfs3g_mounts(image.path):
            ok, msg = mountinfo.unmount(entry.mountpoint)
            if not ok:
                log.warning("unmount %s: %s; detaching it", entry.mountpoint, msg)
                mountinfo.unmount(entry.mountpoint, lazy=True)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                try:
                    os.kill(pid, sig)
                except OSError as e:
                    log.debug("kill %d: %s", pid, e)
            deadline = time.monotonic() + timeout
            while lock_holder(image.fd) == pid and time.monotonic() < deadline:
                time.sleep(0.01)
            if lock_holder(image.fd) is None:
                break
        else:
            raise SimvolError(f"ntfs-3g (pid {pid}) left by a dead daemon still holds {image.path}")
    for entry in _ntfs3g_mounts(image.path):  # no ntfs-3g has the image open: whatever is mounted is dead
        log.warning("a dead ntfs-3g mount of %s is still at %s: detaching it", image.path, entry.mountpoint)
        mountinfo.unmount(entry.mountpoint, lazy=True)


class NtfsVolume:
    """An NTFS image open in the daemon: locked, repaired first if a crash left it in use, marked in use while
    open. The file system is ntfs-3g's; what the daemon calls on its "fs" is here (``sync``, ``mark_clean``,
    ``statfs``, ``label``, ``close``)."""

    def __init__(self, image: str, *, readonly: bool) -> None:
        self.image = Image.open(image, writable=not readonly)
        self.readonly = readonly
        self.label = read_label(self.image.fd)  # ntfs-3g is not running yet: $Volume as the image holds it
        self.repaired: list[dict[str, object]] = []
        self.native = native(self.image)  # ntfs-3g's own semantics (direct sessions) instead of Windows' (proxy)
        self.root = ""  # where ntfs-3g serves the volume (the mount point, or the private directory)
        self.server: Server | None = None
        try:
            stop_orphan_server(self.image)
            if not readonly and in_use(self.image):
                log.warning("image %s was left in use: checking and repairing before the mount", image)
                self.repaired = list(repair_region(self.image))
                for p in self.repaired:
                    log.warning("repair: %s", p.get("detail"))
            if not readonly:
                set_in_use(self.image, True)
        except BaseException:
            self.image.close()
            raise

    def serve(self, directory: str, *, allow_other: bool, owner: tuple[int, int] | None, timeout: float) -> None:
        """Start ntfs-3g on ``directory``."""
        server = Server(self.image.path, directory, readonly=self.readonly, allow_other=allow_other, owner=owner)
        server.start(timeout)
        self.server, self.root = server, directory

    def sync(self) -> None:
        # ntfs-3g writes every change through to the image file at once; this makes it durable.
        if not self.image.closed:
            os.fsync(self.image.fd)

    def mark_clean(self) -> None:
        """Nothing to do before the unmount: ntfs-3g closes the volume when it exits (``close`` clears simvol's
        in-use marker afterwards)."""

    def statfs(self) -> NtfsStatFs:
        s = os.statvfs(self.root)
        return NtfsStatFs(s.f_blocks, s.f_bfree, s.f_frsize)

    def compressed(self) -> bool:
        try:
            return bool(_attributes(self.root) & FILE_ATTRIBUTE_COMPRESSED)
        except OSError:
            return False

    def set_compressed(self, value: bool) -> None:
        """Compress the root directory (new files and folders inherit it) or stop; ntfs-3g does the rest."""
        attrs = _attributes(self.root)
        new = attrs | FILE_ATTRIBUTE_COMPRESSED if value else attrs & ~FILE_ATTRIBUTE_COMPRESSED
        if new != attrs:
            os.setxattr(self.root, ATTRIB_XATTR, struct.pack(">I", new))

    def close(self) -> None:
        """Stop ntfs-3g (which closes the volume), clear the in-use marker, close and unlock the image."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()
            clean = not server.alive()
        else:
            clean = True
        try:
            if clean and not self.readonly and not self.image.closed:
                set_in_use(self.image, False)
        except (SimvolError, OSError) as e:
            log.error("cannot clear the in-use marker of %s: %s", self.image.path, e)
        finally:
            self.image.close()


def _attributes(path: str) -> int:
    raw = os.getxattr(path, ATTRIB_XATTR)
    return int(struct.unpack(">I", raw)[0])


class DirectOps:
    """Stands for ntfs-3g answering at the mount point itself, where the daemon expects a session's operations:
    no handle table (the kernel and /proc know the holders), and a forced dismount ends the server."""

    def __init__(self, volume: NtfsVolume) -> None:
        self.volume = volume
        self.engine_lock = threading.RLock()
        self.fuse_ptr: int | None = None

    def handles(self) -> list[object]:
        return []

    def handle_count(self) -> int:
        return 0

    def open_file_paths(self) -> list[str]:
        return []

    def set_refuse_opens(self, value: bool) -> None:
        """The kernel refuses the unmount itself while anything is open."""

    def make_all_stale(self) -> list[str]:
        """Forced dismount: end ntfs-3g; every handle fails with ENOTCONN from now on. The kernel would still serve
        reads of an open file from pages it cached before: those pages are dropped once ntfs-3g is gone, through a
        copy of each holder's descriptor (pidfd_getfd), so a read reaches the dead connection and fails too."""
        server = self.volume.server
        held = holders.descriptors([self.volume.root], exclude_pids=[os.getpid()])
        if server is not None:
            server.terminate()
            server.wait(10)
        for pid, fd in held:
            _drop_cached_pages(pid, fd)
        return []


_SYS_PIDFD_GETFD = 438  # x86-64 and arm64 alike (the unified syscall table)
_LIBC = ctypes.CDLL(None, use_errno=True)


def _drop_cached_pages(pid: int, fd: int) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        mine = _LIBC.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if mine < 0:
            log.debug("pidfd_getfd %d/%d: errno %d", pid, fd, ctypes.get_errno())
            return
        try:
            os.posix_fadvise(mine, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as e:
            log.debug("fadvise %d/%d: %s", pid, fd, e)
        finally:
            try:
                os.close(mine)
            except OSError:
                pass  # the FLUSH of a close reaches the dead connection: ENOTCONN, the descriptor is closed anyway
    finally:
        os.close(pidfd)


__all__ = ["DirectOps", "NtfsStatFs", "NtfsVolume", "OPTIONS", "Server"]

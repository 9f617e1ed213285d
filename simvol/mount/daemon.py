"""The mount daemon: one process per mounted (or temporarily dismounted) volume (docs/architecture.md, Processes).

``python -m simvol.mount.daemon --image IMG --mountpoint MNT --socket SOCK --volume-id GUID [--ready-fd N]
[--armed] [--lock-file LOCK]``

While the volume is mounted it holds the image's exclusive lock, having repaired a dirty image first; it serves
FUSE on its main thread (single-threaded loop) and answers the control socket on a second thread. It reports
"ready" on the ready descriptor only once the mount is live.

A temporary dismount ("dismount" with ``rearm``) closes the image and ends the FUSE session as any dismount
does, then mounts a new, *armed* session at the same mount point (``armed.py``): no file system, no image lock.
The first access through it takes the volume's lock (``--lock-file``, the lock the service holds for every
operation on the volume, so an access never races a Dismount, Mount or Format), opens the image and serves it
("activate"). ``--armed`` starts a daemon armed. A dismount without ``rearm`` ends the process once the image
is closed.

An NTFS image is served by ntfs-3g (``ntfs3g.py``). By default this process's own session serves a private ntfs-3g
mount (``--inner-dir``) through ``passthrough.PassthroughOps``, which adds Windows' rules. A native volume
(``create --ntfs-native``) is served while simply mounted by ntfs-3g at the mount point itself (a "direct" session:
this process supervises it, answers the control socket and dismounts it); the armed session's first access, the
volume lock and faults need this process's session, to which a direct session switches when nothing is open.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from ..errors import SimvolError
from ..fat import FatFileSystem, check, is_dirty
from ..image import Image
from ..image.filesystems import NTFS, of_image
from . import holders as holders_mod
from . import mountinfo
from ._fuselib import FastFUSE, invalidate_path, mfusepy
from .armed import ArmedOps
from .control import KEEP, ControlServer
from .faulting import FaultingOps
from .faults import FaultLog, FaultSet, FsFault
from .locked import Holder, LockedOps
from .ntfs3g import DirectOps, NtfsVolume
from .ops import VolumeOps
from .passthrough import PassthroughOps

log = logging.getLogger("simvol.mount.daemon")

SAFE_WAIT = 0.5  # late RELEASEs arrive after close() returns (docs/fuse-notes.md §5 step 2)
# How long a first access waits for the volume's lock (a service operation on the volume holds it) before it fails
# with EAGAIN. The service never touches a volume's files while it holds that lock, so the wait ends with it.
ACTIVATE_WAIT = 10.0


class Daemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mountpoint = os.path.abspath(args.mountpoint)
        self.image: Image | None = None
        self.fs: Any = None  # the FatFileSystem, or the NtfsVolume
        self.ops: Any = None  # VolumeOps (FAT32), DirectOps or PassthroughOps (NTFS); None while armed
        self.proxy_next = False  # the session ending now is followed by a proxy session (NTFS: lock, faults)
        self.mountpoint_removed = False
        self.control: ControlServer | None = None
        self.repaired: list[dict[str, Any]] = []
        self.closed = threading.Event()  # the process is done: last session over, image closed
        # Sessions are numbered; the control thread waits for "session n closed" and "session n + 1 live".
        self.sessions = threading.Condition()
        self.session_no = 0
        self.closed_no = 0
        self.live_no = 0
        self.dismounting_no = 0  # the session the dismount under way ends
        self.dismount_rearm = False  # and whether an armed one follows (the main thread consumes self.rearm)
        self.reply_sent = threading.Event()
        self.dismount_started = threading.Lock()
        self.forced = False
        self.rearm = False  # the dismount under way ends this session with an armed one
        self.stopping = False  # an armed session is being unmounted: pending first accesses give up
        self.armed: ArmedOps | None = None  # this session's trigger, while the volume is not open
        self.activation = threading.Lock()  # guards which operations serve the session (activation, lock)
        self.lock_fd: int | None = None
        self.fuse: Any = None  # this session's FUSE object, whose operations the daemon replaces
        self.locked_by: Holder | None = None  # the volume lock's holder, while it is held
        self.faults = FaultSet(log=FaultLog(args.fault_log))  # file-system faults armed on the volume
        self.main_ident = threading.get_ident()
        self.started = time.time()

    # ------------------------------------------------------------ set-up

    def prepare(self) -> None:
        a = self.args
        if a.lock_file:
            self.lock_fd = os.open(a.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        if not a.armed:
            self.ops = self.open_volume(proxy=False)
        self.control = ControlServer(a.socket, self.handle, self._replied)
        self.control.start()

    def open_volume(self, *, proxy: bool = True) -> Any:
        """Open and lock the image, repair it if a crash left it dirty, and make the operations that serve it.
        An NTFS volume is served by ntfs-3g at the mount point (a direct session) unless ``proxy``: then ntfs-3g
        serves a private directory and this process's own session passes requests on to it."""
        a = self.args
        if of_image(a.image) is NTFS:
            return self._open_ntfs(proxy)
        self.image = Image.open(a.image, writable=not a.readonly)
        fd, size = self.image.fd, self.image.fs_size
        if not a.readonly and is_dirty(fd, size):
            log.warning("image %s is dirty: checking and repairing before the mount", a.image)
            problems = check(fd, size, repair=True)
            self.repaired = [p.as_dict() for p in problems]
            for p in problems:
                log.warning("repair: %s %s: %s", p.kind, p.path, p.detail)
        self.fs = FatFileSystem(fd, size, writable=not a.readonly, discard=a.discard)
        return VolumeOps(self.fs, self.mountpoint, readonly=a.readonly, owner=_owner(a.owner))

    def _open_ntfs(self, proxy: bool) -> Any:
        a = self.args
        volume = NtfsVolume(a.image, readonly=a.readonly)
        self.fs = volume
        self.repaired = list(volume.repaired)
        if not proxy and volume.native:
            return DirectOps(volume)  # the direct session starts ntfs-3g at the mount point
        if not a.inner_dir:
            raise SimvolError("an NTFS volume served through simvol's session needs --inner-dir")
        volume.serve(a.inner_dir, allow_other=False, owner=None, timeout=a.timeout)
        threading.Thread(target=self._watch_inner_server, args=(volume,), name="simvol-ntfs-3g-watch",
                         daemon=True).start()
        return PassthroughOps(a.inner_dir, readonly=a.readonly, owner=_owner(a.owner), windows=not volume.native)

    @staticmethod
    def _watch_inner_server(volume: NtfsVolume) -> None:
        """ntfs-3g behind this session ended without being stopped (it crashed, or was killed): the volume's file
        system is gone. The daemon goes down as a crashed one does (SIGKILL, no clean marker), so the volume is
        handled as after any crash — old handles fail (ENOTCONN), the next Mount checks, repairs and serves it —
        instead of answering ENOTCONN for every request while it looks mounted."""
        server = volume.server
        if server is None or server.proc is None:
            return
        server.proc.wait()
        if volume.server is server:  # NtfsVolume.close lets go of its server before it stops it
            log.error("ntfs-3g serving %s exited (%s) without being stopped: ending this daemon as a crash",
                      volume.image.path, server.proc.returncode)
            os.kill(os.getpid(), signal.SIGKILL)

    @property
    def direct(self) -> bool:
        """ntfs-3g answers at the mount point itself (an NTFS volume simply mounted)."""
        return isinstance(self.ops, DirectOps)

    def _switch_to_proxy(self, extra: list[str]) -> dict[str, Any] | None:
        """End the direct session and serve the volume through this process's own session (lock, faults): only
        while nothing holds the volume (through the mount point or ``extra``, its access paths). None once the
        proxy session is live, else the refusal. The caller must not hold ``activation`` (the main thread takes it
        to start the next session)."""
        found, complete = self.holders(extra)
        if found:
            return {"ok": False, "in_use": True, "holders": [h.as_dict() for h in found], "complete": complete}
        with self.sessions:
            n = self.session_no
            self.proxy_next = True
        ops = self.ops
        server = ops.volume.server if isinstance(ops, DirectOps) else None
        ok, msg = server.unmount() if server is not None else (False, "not served")
        if not ok:
            with self.sessions:
                self.proxy_next = False
            if "busy" in msg.lower():
                return self._in_use(extra)
            return {"ok": False, "error": f"unmount failed: {msg}"}
        with self.sessions:
            if not self.sessions.wait_for(lambda: self.closed_no >= n and self.live_no > n, 30):
                return {"ok": False, "error": "the volume did not come back through simvol's session within 30 s"}
        log.info("NTFS volume now served through simvol's session")
        return None

    # ------------------------------------------------------------ activation of an armed session

    def activate(self, armed: ArmedOps) -> Any:
        """The first access through the armed session ``armed`` (on the FUSE thread): mount the volume for real."""
        deadline = time.monotonic() + ACTIVATE_WAIT
        while True:
            if self.ops is not None:
                return self.ops
            if self.stopping or self.armed is not armed:
                raise mfusepy.FuseOSError(errno.EIO)  # the volume went away meanwhile (offline, down)
            if self._try_volume_lock():
                try:
                    error = self._activate_locked()
                finally:
                    self._unlock_volume()
                if error:
                    raise mfusepy.FuseOSError(errno.EIO)
                continue
            if time.monotonic() >= deadline:
                log.warning("first access: the volume lock stayed taken for %.0f s", ACTIVATE_WAIT)
                raise mfusepy.FuseOSError(errno.EAGAIN)
            time.sleep(0.005)

    def _activate_locked(self) -> str:
        """Activate unless already done; the caller holds the volume's lock. Returns an error, or ""."""
        with self.activation:
            if self.ops is not None:
                return ""
            armed = self.armed
            if armed is None:
                return "not armed"
            try:
                ops = self.open_volume(proxy=True)
            except (SimvolError, OSError) as e:
                log.error("cannot activate %s: %s", self.args.image, e)
                self._close_volume()
                return str(e)
            fuse_ptr, config = armed.session
            ops.bind(fuse_ptr, config)
            self.ops = ops
            self.armed = None
            self._publish()
            log.info("activated by the first access")
            return ""

    def _publish(self) -> None:
        """Point the session at the operations that serve it now; the caller holds ``activation``."""
        current: Any = self.ops if self.ops is not None else self.armed
        if current is None or self.fuse is None:
            return
        self.fuse.operations = self._compose(current)

    def _compose(self, current: Any) -> Any:
        """``current`` behind the faults (a mounted volume's, while any is armed) and the lock (while held). An
        armed trigger is not faulted: its first access activates the volume, which publishes the faulted ops."""
        if self.faults and current is self.ops:
            current = FaultingOps(current, self.faults)
        return LockedOps(current, self.locked_by) if self.locked_by is not None else current

    # ------------------------------------------------------------ faults

    def set_faults(self, specs: list[dict[str, Any]]) -> dict[str, Any]:
        """Arm exactly ``specs`` (the registry's list; counters continue for faults armed before)."""
        try:
            new = [FsFault.from_dict(d) for d in specs]
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "error": f"bad fault: {e}"}
        if new and self.direct:
            refused = self._switch_to_proxy([])
            if refused is not None:
                if refused.get("in_use"):
                    refused["error"] = ("faults on an NTFS volume need simvol's own session, which it switches to "
                                        "only while nothing is open: close the volume's files first")
                return refused
        with self.activation:
            old = {f.id: f for f in self.faults.faults}
            for f in new:
                if f.id in old:
                    f.seen, f.hits, f.written = old[f.id].seen, old[f.id].hits, old[f.id].written
            self.faults.faults = new
            self._publish()
        ops = self.ops
        if ops is not None and ops.fuse_ptr is not None:
            # Reads a new read fault must see may sit in the page cache of files open already: drop those pages.
            for path in ops.open_file_paths():
                if self.faults.reads_faulted(path):
                    invalidate_path(ops.fuse_ptr, path)
        return {"ok": True, "faults": self.faults.snapshot()}

    # ------------------------------------------------------------ the volume lock

    def lock(self, pid: int, extra: list[str]) -> dict[str, Any]:
        """Grant the volume lock to ``pid`` (and its descendants) unless another process holds the volume."""
        if self.direct and self.locked_by is None:
            refused = self._switch_to_proxy(extra)  # the lock is simvol's session's: serve the volume through it
            if refused is not None:
                return refused
        with self.activation:
            if self.locked_by is not None:
                return {"ok": False, "locked": True, "error": f"the volume is locked by pid {self.locked_by.pid}"}
            # As FSCTL_LOCK_VOLUME: refused while anything is open on the volume, the caller's own files included.
            found, complete = self.holders(extra)
            if found:
                return {"ok": False, "in_use": True, "holders": [h.as_dict() for h in found], "complete": complete}
            holder = Holder(pid)
            self.locked_by = holder
            self._publish()
        log.info("locked by pid %d", pid)
        return {"ok": True, KEEP: self._unlock}

    def _unlock(self) -> None:
        with self.activation:
            holder, self.locked_by = self.locked_by, None
            self._publish()
        if holder is not None:
            log.info("unlocked (pid %d)", holder.pid)

    def _try_volume_lock(self) -> bool:
        if self.lock_fd is None:
            return True
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock_volume(self) -> None:
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    # ------------------------------------------------------------ control requests

    def _replied(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        # The reply to the dismount that ends the process: it may exit now. (A temporary dismount's reply is not.)
        if request.get("op") == "dismount" and response.get("ok") and not response.get("armed"):
            self.reply_sent.set()

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        paths = req.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            return {"ok": False, "error": "bad request: paths must be a list of strings"}
        for flag in ("force", "rearm"):
            if not isinstance(req.get(flag, False), bool):  # "no" must not mean a forced dismount
                return {"ok": False, "error": f"bad request: {flag} must be true or false"}
        if op == "status":
            return self.status()
        if op == "flush":
            ops, fs = self.ops, self.fs
            if ops is not None and fs is not None:
                with ops.engine_lock:
                    fs.sync()
            return {"ok": True}
        if op == "holders":
            return {"ok": True, "holders": [h.as_dict() for h in self.holders(paths)[0]]}
        if op == "dismount":
            return self.dismount(req.get("force", False), paths, rearm=req.get("rearm", False))
        if op == "lock":
            pid = req.get("pid")
            if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
                return {"ok": False, "error": "bad request: pid must be a process id"}
            return self.lock(pid, paths)
        if op == "faults":
            specs = req.get("set")
            if specs is None:
                return {"ok": True, "faults": self.faults.snapshot()}
            if not isinstance(specs, list) or not all(isinstance(d, dict) for d in specs):
                return {"ok": False, "error": "bad request: set must be a list of faults"}
            return self.set_faults(specs)
        if op == "compression":
            return self.compression(req.get("set"))
        if op == "activate":  # from the service, which holds the volume's lock
            error = self._activate_locked() if self.ops is None else ""
            return {"ok": not error, "error": error} if error else {"ok": True, "repaired": self.repaired}
        return {"ok": False, "error": f"unknown request {op!r}"}

    def compression(self, value: object) -> dict[str, Any]:
        """NTFS: the root directory's compressed attribute (VDS_FPF_COMPRESSED), set or cleared with ``value``."""
        fs = self.fs
        if not isinstance(fs, NtfsVolume):
            return {"ok": False, "error": "FAT32 cannot be compressed"}
        if value is not None and not isinstance(value, bool):
            return {"ok": False, "error": "bad request: set must be true or false"}
        try:
            if value is not None:
                fs.set_compressed(value)
            return {"ok": True, "compressed": fs.compressed()}
        except OSError as e:
            return {"ok": False, "error": f"ntfs-3g refused: {e.strerror or e}"}

    def status(self) -> dict[str, Any]:
        base = {
            "ok": True,
            "pid": os.getpid(),
            "image": self.args.image,
            "mountpoint": self.mountpoint,
            "volume_id": self.args.volume_id,
            "readonly": self.args.readonly,
            "started": self.started,
            "repaired": self.repaired,
            "locked_by": self.locked_by.pid if self.locked_by is not None else None,
        }
        if self.ops is None or self.fs is None:
            return {**base, "armed": True, "handles": []}
        with self.ops.engine_lock:
            handles = [
                {"pid": h.pid, "path": h.path, "dir": h.is_dir, "writable": h.writable, "stale": h.stale}
                for h in self.ops.handles()
            ]
            sfs = self.fs.statfs()
        return {
            **base,
            "armed": False,
            "handles": handles,
            "free_clusters": sfs.free_clusters,
            "total_clusters": sfs.total_clusters,
            "cluster_size": sfs.cluster_size,
            "label": self._label(),
            "compressed": self.fs.compressed() if isinstance(self.fs, NtfsVolume) else False,
            "filesystem": "NTFS" if isinstance(self.fs, NtfsVolume) else "FAT32",
            "direct": self.direct,
        }

    def _label(self) -> str:
        assert self.ops is not None and self.fs is not None
        with self.ops.engine_lock:
            try:
                return str(self.fs.label)
            except OSError:
                return ""

    def holders(self, extra_paths: list[str]) -> tuple[list[holders_mod.Holder], bool]:
        ops = self.ops
        table = [
            holders_mod.Holder(
                h.pid, holders_mod.process_name(h.pid), self.mountpoint + h.path, "dir" if h.is_dir else "file"
            )
            for h in (ops.handles() if ops is not None else [])
            if h.pid
        ]
        scanned, complete = holders_mod.scan([self.mountpoint, *extra_paths], exclude_pids=[os.getpid()])
        return holders_mod.merge(table, scanned), complete

    def _in_use(self, extra: list[str]) -> dict[str, Any]:
        found, complete = self.holders(extra)
        return {"ok": False, "in_use": True, "holders": [h.as_dict() for h in found], "complete": complete}

    def dismount(self, force: bool, extra: list[str], *, rearm: bool = False) -> dict[str, Any]:
        """End the session: flush, mark clean, close the image, unmount. With ``rearm`` an armed session takes its
        place (a temporary dismount); without, the process exits (its reply comes first)."""
        if not self.dismount_started.acquire(blocking=False):
            return {"ok": False, "error": "a dismount is already in progress"}
        self.reply_sent.clear()
        self.forced = False
        with self.sessions:
            self.dismounting_no = self.session_no
            self.dismount_rearm = rearm
        try:
            with self.activation:  # an activation in progress finishes first; none starts meanwhile
                armed = self.ops is None
                if armed:
                    self.stopping = not rearm
            result: dict[str, Any]
            if armed:
                result = {"ok": True, "forced": False, "armed": True} if rearm else self._unmount_armed()
            else:
                self.rearm = rearm
                result = self._force(extra) if force else self._safe(extra)
        except Exception as e:
            log.exception("dismount failed")
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if result.get("ok") and self.faults:
            with self.activation:  # a dismount ends the faults that do not persist
                self.faults.faults = [f for f in self.faults.faults if f.persist]
        if not result.get("ok") or result.get("armed"):
            self.rearm = False
            self.stopping = False
            self.dismount_started.release()
        return result

    def _unmount_armed(self) -> dict[str, Any]:
        # A first access may be waiting for the volume lock inside the mount (it gives up now that stopping is set);
        # until it has, the unmount may find the mount busy.
        deadline = time.monotonic() + 2.0
        while True:
            ok, msg = mountinfo.unmount(self.mountpoint)
            if ok or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if not ok:
            ok, msg = mountinfo.unmount(self.mountpoint, lazy=True)
        if not ok:
            return {"ok": False, "error": f"unmount failed: {msg}"}
        return self._wait_closed()

    def _safe(self, extra: list[str]) -> dict[str, Any]:
        ops, fs = self.ops, self.fs
        assert ops is not None and fs is not None
        ops.set_refuse_opens(True)
        deadline = time.monotonic() + SAFE_WAIT
        while ops.handle_count() and time.monotonic() < deadline:
            time.sleep(0.005)
        if ops.handle_count():
            result = self._in_use(extra)
            ops.set_refuse_opens(False)
            return result
        found, complete = holders_mod.scan([self.mountpoint, *extra], exclude_pids=[os.getpid()])
        if found:
            ops.set_refuse_opens(False)
            return {"ok": False, "in_use": True, "holders": [h.as_dict() for h in found], "complete": complete}
        with ops.engine_lock:
            fs.mark_clean()
        ok, msg = mountinfo.unmount(self.mountpoint)
        if not ok:
            # A holder raced in (or the kernel knows one we cannot see): roll back; the next change re-dirties.
            log.info("unmount refused: %s", msg)
            result = self._in_use(extra)
            ops.set_refuse_opens(False)
            if "busy" not in msg.lower():
                result = {"ok": False, "error": f"unmount failed: {msg}"}
            return result
        return self._wait_closed()

    def _force(self, extra: list[str]) -> dict[str, Any]:
        ops, fs = self.ops, self.fs
        assert ops is not None and fs is not None
        stale_paths = ops.make_all_stale()
        # Cached pages would still serve reads of old handles: drop them so every read reaches the daemon.
        if ops.fuse_ptr:
            for path in stale_paths:
                try:
                    invalidate_path(ops.fuse_ptr, path)
                except OSError as e:
                    log.debug("invalidate %s: %s", path, e)
        with ops.engine_lock:
            fs.mark_clean()
        self.forced = True
        if isinstance(ops, DirectOps):
            return self._wait_closed()  # ntfs-3g is ending (make_all_stale): its mount and its session go with it
        entry = mountinfo.find_mount(self.mountpoint)
        if entry is None or not mountinfo.abort_connection(entry):
            # No fusectl: end the loop with a signal aimed at the FUSE thread itself (docs/fuse-notes.md §4, §5).
            signal.pthread_kill(self.main_ident, signal.SIGTERM)
        return self._wait_closed()

    def _wait_closed(self) -> dict[str, Any]:
        n = self.dismounting_no
        forced, rearm = self.forced, self.dismount_rearm
        with self.sessions:
            if not self.sessions.wait_for(lambda: self.closed_no >= n, 30):
                return {"ok": False, "error": "the FUSE loop did not end within 30 s"}
            if rearm and not self.sessions.wait_for(lambda: self.live_no > n, 20):
                return {"ok": False, "error": "the armed mount did not come up within 20 s"}
        return {"ok": True, "forced": forced, "armed": True} if rearm else {"ok": True, "forced": forced}

    # ------------------------------------------------------------ run

    def run(self) -> int:
        a = self.args
        ready_fd = a.ready_fd
        try:
            self.prepare()
        except Exception as e:  # a bug in check/repair too: report it instead of "exited without reporting"
            if isinstance(e, (SimvolError, OSError)):
                log.error("cannot mount %s: %s", a.image, e)
                error = str(e)
            else:
                log.exception("cannot mount %s", a.image)
                error = f"internal error: {type(e).__name__}: {e}"
            # Close (and unlock) the image before reporting, and name this process, so the launcher returns
            # only once nothing of this failed mount is left (it waits for the pid to exit).
            self._close_volume()
            self._cleanup()
            _report(ready_fd, {"ok": False, "error": error, "kind": type(e).__name__, "pid": os.getpid()})
            return 1
        while True:
            code = self._session(ready_fd)
            ready_fd = None  # reported once, for the first session
            # A temporary dismount ended the session: the volume is closed; an armed session answers next. (The
            # control thread answers the dismount, and releases it, once that session is live.)
            with self.sessions:
                rearm, self.rearm = self.rearm, False
                proxy, self.proxy_next = self.proxy_next, False
            if proxy and not rearm:
                # An NTFS volume goes on through this process's own session (a lock or faults asked for it).
                try:
                    with self.activation:
                        self.ops = self.open_volume(proxy=True)
                except (SimvolError, OSError) as e:
                    log.error("cannot serve %s through simvol's session: %s", a.image, e)
                    self._close_volume()
                    code = 1
                    break
                continue
            if not rearm:
                break
        self._cleanup()
        if self.dismount_started.locked():
            self.reply_sent.wait(5)  # let the control thread answer the dismount that ended the loop
        return code

    def _session(self, ready_fd: int | None) -> int:
        """Mount and serve one FUSE session until it ends; the volume is closed when this returns."""
        a = self.args
        with self.sessions:
            self.session_no += 1
            n = self.session_no
        ops: Any
        if isinstance(self.ops, DirectOps):
            return self._direct_session(ready_fd, n)
        if self.ops is not None:
            ops = self.ops
        else:
            uid, gid = _owner(a.owner) or (os.getuid(), os.getgid())
            self.armed = ops = ArmedOps(self.activate, uid=uid, gid=gid)
        watcher = threading.Thread(target=self._announce, args=(ready_fd, n), name="simvol-ready", daemon=True)
        watcher.start()
        options: dict[str, Any] = {
            "foreground": True,
            "nothreads": True,
            "fsname": mountinfo.FSNAME_PREFIX + a.volume_id + (mountinfo.ARMED_SUFFIX if ops is self.armed else ""),
            "subtype": "simvol",
        }
        if a.readonly:
            options["ro"] = True
        if a.allow_other:
            # Other users may enter: the kernel must check mode bits. A private mount needs no such check
            # (only its owner can enter), and without it the kernel skips a GETATTR of the parent per create.
            options["allow_other"] = True
            options["default_permissions"] = True
        code = 0
        with self.activation:
            first = self._compose(ops)  # a lock taken before a dismount lasts across it; persistent faults too
        try:
            FastFUSE(first, self.mountpoint, on_start=self._started, **options)
        except RuntimeError as e:
            if e.args != (8,):  # 8: ended by a signal, our own forced dismount included (docs/fuse-notes.md §3 #2)
                log.error("FUSE loop failed: %s", e)
                code = 1
        except Exception as e:
            log.exception("FUSE loop failed: %s", e)
            code = 1
        with self.activation:
            self.armed = None
            self.fuse = None
            self._close_volume()
        entry = mountinfo.find_mount(self.mountpoint)
        if entry is not None and entry.is_simvol:
            ok, msg = mountinfo.unmount(self.mountpoint, lazy=True)
            if not ok:
                log.warning("lazy unmount of %s failed: %s", self.mountpoint, msg)
        if watcher.is_alive() and ready_fd is not None:
            _report(ready_fd, {"ok": False, "error": "the mount ended before it became live; see the log"})
        self._session_closed(n)
        return code

    def _session_closed(self, n: int) -> None:
        """Session ``n`` is over and the volume closed. If no session follows, the mount point goes now, before
        the dismount's reply (which waits for this): a caller that sees the reply finds nothing left."""
        with self.sessions:
            last = not self.rearm and not self.proxy_next
        if last:
            self._remove_mountpoint()
        with self.sessions:
            self.closed_no = n
            self.sessions.notify_all()

    def _direct_session(self, ready_fd: int | None, n: int) -> int:
        """An NTFS volume's session served by ntfs-3g at the mount point: start it, report, wait for its end (an
        unmount, a forced dismount's SIGTERM, or ntfs-3g failing); the volume is closed when this returns."""
        a = self.args
        volume = self.fs
        assert isinstance(volume, NtfsVolume)
        code = 0
        try:
            volume.serve(self.mountpoint, allow_other=a.allow_other, owner=_owner(a.owner), timeout=a.timeout)
        except (SimvolError, OSError) as e:
            log.error("%s", e)
            _report(ready_fd, {"ok": False, "error": str(e)})
            code = 1
        else:
            with self.sessions:
                self.live_no = n
                self.sessions.notify_all()
            _report(ready_fd, {"ok": True, "pid": os.getpid(), "repaired": self.repaired, "armed": False})
            server = volume.server
            assert server is not None and server.proc is not None
            server.proc.wait()
            if server.proc.returncode not in (0, -signal.SIGTERM):
                log.warning("ntfs-3g exited with %s", server.proc.returncode)
        with self.activation:
            self._close_volume()
        self._session_closed(n)
        return code

    def _started(self, fuse: Any) -> None:
        with self.activation:
            self.fuse = fuse

    def _announce(self, ready_fd: int | None, n: int) -> None:
        if mountinfo.wait_for_mount(self.mountpoint, self.args.timeout):
            with self.sessions:
                self.live_no = n
                self.sessions.notify_all()
            _report(ready_fd, {"ok": True, "pid": os.getpid(), "repaired": self.repaired, "armed": self.ops is None})
        else:
            _report(ready_fd, {"ok": False, "error": "the FUSE mount did not appear in time"})

    def _close_volume(self) -> None:
        if self.fs is not None:
            try:
                self.fs.close()
            except OSError as e:
                log.error("closing the file system failed: %s", e)
        if self.image is not None:
            self.image.close()
        self.fs = None
        self.image = None
        self.ops = None

    def _remove_mountpoint(self) -> None:
        """Once: after the reply a new daemon may already have made the directory again (the next mount)."""
        if not self.mountpoint_removed:
            self.mountpoint_removed = True
            with contextlib.suppress(OSError):
                os.rmdir(self.mountpoint)

    def _cleanup(self) -> None:
        self._remove_mountpoint()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        self.closed.set()


def _report(fd: int | None, message: dict[str, Any]) -> None:
    if fd is None or fd < 0:
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def _owner(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    uid, gid = value.split(":")
    return int(uid), int(gid)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="simvol-daemon", description=__doc__)
    p.add_argument("--image", required=True)
    p.add_argument("--mountpoint", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--volume-id", required=True)
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--readonly", action="store_true")
    p.add_argument("--allow-other", action="store_true")
    p.add_argument("--owner", help="UID:GID the files belong to (default: the daemon's user)")
    p.add_argument("--discard", action="store_true")
    p.add_argument("--armed", action="store_true", help="start without the volume: the first access mounts it")
    p.add_argument("--lock-file", help="the volume's lock, taken to mount it on a first access")
    p.add_argument("--fault-log", help="where every fault hit is appended (one JSON line each)")
    p.add_argument("--inner-dir", help="NTFS: where ntfs-3g serves the volume privately behind simvol's session")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--detach", action="store_true", help="fork once so the daemon is not the caller's child")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.detach and os.fork() > 0:
        # The launcher waits for this intermediate process; the daemon itself is reparented to init,
        # so it never lingers as a zombie of a long-lived caller (a test run, a service process).
        os._exit(0)
    # The daemon is a program of its own: it logs to stderr, which the launcher points at ROOT/run/GUID.log.
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("fuse").setLevel(logging.WARNING)
    d = Daemon(args)
    code = d.run()
    if d.control is not None:
        d.control.close()
    log.info("exit %d", code)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The mount daemon: one process per mounted volume (DESIGN §6).

``python -m simvol.mount.daemon --image IMG --mountpoint MNT --socket SOCK --volume-id GUID [--ready-fd N]``

It holds the image's exclusive lock for its whole life, repairs a dirty image before mounting, serves FUSE on
its main thread (single-threaded loop) and answers the control socket on a second thread. It reports
"ready" on the ready descriptor only once the mount is live, and exits only after the image is closed.
"""

from __future__ import annotations

import argparse
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
from . import holders as holders_mod
from . import mountinfo
from ._fuselib import FastFUSE, invalidate_path
from .control import ControlServer
from .ops import VolumeOps

log = logging.getLogger("simvol.mount.daemon")

SAFE_WAIT = 0.5  # late RELEASEs arrive after close() returns (fuse.md §5 step 2)


class Daemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mountpoint = os.path.abspath(args.mountpoint)
        self.image: Image | None = None
        self.fs: FatFileSystem | None = None
        self.ops: VolumeOps | None = None
        self.control: ControlServer | None = None
        self.repaired: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self.reply_sent = threading.Event()
        self.dismount_started = threading.Lock()
        self.forced = False
        self.main_ident = threading.get_ident()
        self.started = time.time()

    # ------------------------------------------------------------ set-up

    def prepare(self) -> None:
        a = self.args
        self.image = Image.open(a.image, writable=not a.readonly)
        fd, size = self.image.fd, self.image.fs_size
        if not a.readonly and is_dirty(fd, size):
            log.warning("image %s is dirty: checking and repairing before the mount", a.image)
            problems = check(fd, size, repair=True)
            self.repaired = [p.as_dict() for p in problems]
            for p in problems:
                log.warning("repair: %s %s: %s", p.kind, p.path, p.detail)
        self.fs = FatFileSystem(fd, size, writable=not a.readonly, discard=a.discard)
        self.ops = VolumeOps(self.fs, self.mountpoint, readonly=a.readonly)
        self.control = ControlServer(a.socket, self.handle, self._replied)
        self.control.start()

    # ------------------------------------------------------------ control requests

    def _replied(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        if request.get("op") == "dismount" and response.get("ok"):
            self.reply_sent.set()

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        paths = req.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            return {"ok": False, "error": "bad request: paths must be a list of strings"}
        if not isinstance(req.get("force", False), bool):  # "no" must not mean a forced dismount
            return {"ok": False, "error": "bad request: force must be true or false"}
        if op == "status":
            return self.status()
        if op == "flush":
            assert self.ops is not None and self.fs is not None
            with self.ops.engine_lock:
                self.fs.sync()
            return {"ok": True}
        if op == "holders":
            return {"ok": True, "holders": [h.as_dict() for h in self.holders(paths)[0]]}
        if op == "dismount":
            return self.dismount(req.get("force", False), paths)
        return {"ok": False, "error": f"unknown request {op!r}"}

    def status(self) -> dict[str, Any]:
        assert self.ops is not None and self.fs is not None
        with self.ops.engine_lock:
            handles = [
                {"pid": h.pid, "path": h.path, "dir": h.is_dir, "writable": h.writable, "stale": h.stale}
                for h in self.ops.handles()
            ]
            sfs = self.fs.statfs()
        return {
            "ok": True,
            "pid": os.getpid(),
            "image": self.args.image,
            "mountpoint": self.mountpoint,
            "volume_id": self.args.volume_id,
            "handles": handles,
            "free_clusters": sfs.free_clusters,
            "total_clusters": sfs.total_clusters,
            "cluster_size": sfs.cluster_size,
            "repaired": self.repaired,
            "readonly": self.args.readonly,
            "label": self._label(),
            "started": self.started,
        }

    def _label(self) -> str:
        assert self.ops is not None and self.fs is not None
        with self.ops.engine_lock:
            try:
                return self.fs.label
            except OSError:
                return ""

    def holders(self, extra_paths: list[str]) -> tuple[list[holders_mod.Holder], bool]:
        assert self.ops is not None
        table = [
            holders_mod.Holder(
                h.pid, holders_mod.process_name(h.pid), self.mountpoint + h.path, "dir" if h.is_dir else "file"
            )
            for h in self.ops.handles()
            if h.pid
        ]
        scanned, complete = holders_mod.scan([self.mountpoint, *extra_paths], exclude_pids=[os.getpid()])
        return holders_mod.merge(table, scanned), complete

    def _in_use(self, extra: list[str]) -> dict[str, Any]:
        found, complete = self.holders(extra)
        return {"ok": False, "in_use": True, "holders": [h.as_dict() for h in found], "complete": complete}

    def dismount(self, force: bool, extra: list[str]) -> dict[str, Any]:
        assert self.ops is not None and self.fs is not None
        if not self.dismount_started.acquire(blocking=False):
            return {"ok": False, "error": "a dismount is already in progress"}
        try:
            result = self._force(extra) if force else self._safe(extra)
        except Exception as e:
            log.exception("dismount failed")
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if not result.get("ok"):
            self.dismount_started.release()
        return result

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
        entry = mountinfo.find_mount(self.mountpoint)
        if entry is None or not mountinfo.abort_connection(entry):
            # No fusectl: end the loop with a signal aimed at the FUSE thread itself (fuse.md §4, §5).
            signal.pthread_kill(self.main_ident, signal.SIGTERM)
        return self._wait_closed()

    def _wait_closed(self) -> dict[str, Any]:
        if not self.closed.wait(30):
            return {"ok": False, "error": "the FUSE loop did not end within 30 s"}
        return {"ok": True, "forced": self.forced}

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
            self._cleanup()
            _report(ready_fd, {"ok": False, "error": error, "kind": type(e).__name__, "pid": os.getpid()})
            return 1
        watcher = threading.Thread(target=self._announce, args=(ready_fd,), name="simvol-ready", daemon=True)
        watcher.start()
        options: dict[str, Any] = {
            "foreground": True,
            "nothreads": True,
            "fsname": f"simvol:{a.volume_id}",
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
        try:
            FastFUSE(self.ops, self.mountpoint, **options)
        except RuntimeError as e:
            if e.args != (8,):  # 8: ended by a signal, our own forced dismount included (fuse.md §3 #2)
                log.error("FUSE loop failed: %s", e)
                code = 1
        except Exception as e:
            log.exception("FUSE loop failed: %s", e)
            code = 1
        self._cleanup()
        if watcher.is_alive():
            _report(ready_fd, {"ok": False, "error": "the mount ended before it became live; see the log"})
        if self.dismount_started.locked():
            self.reply_sent.wait(5)  # let the control thread answer the dismount that ended the loop
        return code

    def _announce(self, ready_fd: int | None) -> None:
        if mountinfo.wait_for_mount(self.mountpoint, self.args.timeout):
            _report(ready_fd, {"ok": True, "pid": os.getpid(), "repaired": self.repaired})
        else:
            _report(ready_fd, {"ok": False, "error": "the FUSE mount did not appear in time"})

    def _cleanup(self) -> None:
        entry = mountinfo.find_mount(self.mountpoint)
        if entry is not None and entry.is_simvol:
            ok, msg = mountinfo.unmount(self.mountpoint, lazy=True)
            if not ok:
                log.warning("lazy unmount of %s failed: %s", self.mountpoint, msg)
        if self.fs is not None:
            try:
                self.fs.close()
            except OSError as e:
                log.error("closing the file system failed: %s", e)
        if self.image is not None:
            self.image.close()
        try:
            os.rmdir(self.mountpoint)
        except OSError:
            pass
        self.closed.set()


def _report(fd: int | None, message: dict[str, Any]) -> None:
    if fd is None or fd < 0:
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="simvol-daemon", description=__doc__)
    p.add_argument("--image", required=True)
    p.add_argument("--mountpoint", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--volume-id", required=True)
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--readonly", action="store_true")
    p.add_argument("--allow-other", action="store_true")
    p.add_argument("--discard", action="store_true")
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

"""The daemon's control channel: one JSON object per line over a Unix socket in ``ROOT/run``.

The socket file is created 0600 inside a 0700 directory, and every connection's peer credentials
(SO_PEERCRED) are checked: only the daemon's own user (or root) is served.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from ..errors import SimvolError

log = logging.getLogger(__name__)

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
MAX_MESSAGE = 1 << 20
#: How long one client may take to send its request (clients send it at once, right after connecting): a stalled
#: client must not block the control thread, and must be dropped well before other clients' own timeouts (10 s).
READ_TIMEOUT = 2.0


class ControlError(SimvolError):
    """The daemon could not be reached or answered with an error."""

    def __init__(self, message: str, socket_path: str | None = None) -> None:
        super().__init__(message)
        self.socket_path = socket_path

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.args[0], self.socket_path))


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    return _CRED.unpack(raw)


def _read_line(conn: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_MESSAGE:
            raise ValueError("message too large")
    return bytes(buf)


KEEP = "_keep"  # a response key: the connection stays open, and this callable runs when the client closes it


class ControlServer:
    """Serves requests on a thread; ``handler(request) -> response`` runs on that thread.

    A response may carry :data:`KEEP`, a callable: the server then keeps the connection open (without the key in
    what it sends) and calls it once the client closes its end — or dies, SIGKILL included: that is how a lock
    ends with its holder.
    """

    def __init__(
        self,
        path: str,
        handler: Callable[[dict[str, Any]], dict[str, Any]],
        after_reply: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> None:
        self.path = path
        self._handler = handler
        self._after_reply = after_reply
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            try:
                os.unlink(path)  # a leftover from a dead daemon (never a symlink target: unlink removes the link)
            except FileNotFoundError:
                pass
            self._sock.bind(path)
        finally:
            os.umask(old)
        self._sock.listen(8)
        self._uid = os.geteuid()
        self._stop = False
        self.thread = threading.Thread(target=self._serve, name="simvol-control", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self._stop = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            keep = None
            try:
                keep = self._serve_one(conn)
            except Exception as e:  # whatever a client sends, the control thread lives on
                log.warning("control connection failed: %s", e)
            if keep is None:
                conn.close()
            else:
                threading.Thread(target=_hold, args=(conn, keep), name="simvol-kept", daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> Callable[[], None] | None:
        _pid, uid, _gid = peer_credentials(conn)
        if uid != self._uid and uid != 0:
            log.warning("refused control connection from uid %d", uid)
            conn.sendall(b'{"ok": false, "error": "permission denied"}\n')
            return None
        conn.settimeout(READ_TIMEOUT)
        try:
            line = _read_line(conn)
            if not line:
                return None
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:  # garbled, not JSON, or too large
            conn.sendall(json.dumps({"ok": False, "error": f"bad request: {e}"}).encode() + b"\n")
            return None
        if not isinstance(request, dict):
            conn.sendall(b'{"ok": false, "error": "bad request: not a JSON object"}\n')
            return None
        try:
            response = self._handler(request)
        except Exception as e:  # the daemon must survive any bad request
            log.exception("control request %r failed", request)
            response = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        keep = response.pop(KEEP, None)
        try:
            conn.sendall(json.dumps(response).encode() + b"\n")
        except OSError:
            if keep is not None:
                keep()  # the client is gone already
            raise
        if self._after_reply is not None:
            self._after_reply(request, response)
        return keep if callable(keep) else None


def _hold(conn: socket.socket, release: Callable[[], None]) -> None:
    """Wait until the client closes (or dies), then release what the connection held."""
    try:
        conn.settimeout(None)
        while conn.recv(4096):
            pass
    except OSError:
        pass
    finally:
        conn.close()
        try:
            release()
        except Exception:  # a bug in a release must not kill the thread silently
            log.exception("releasing a kept connection failed")


def request_kept(path: str, message: dict[str, Any], timeout: float = 30.0) -> tuple[dict[str, Any], socket.socket]:
    """Send a request whose answer keeps the connection open; the caller closes the socket to end what it holds."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(message).encode() + b"\n")
        line = _read_line(s)
        out = json.loads(line) if line else None
    except (OSError, ValueError) as e:
        s.close()
        raise ControlError(f"cannot reach the volume daemon: {e}", path) from e
    if not isinstance(out, dict):
        s.close()
        raise ControlError("the volume daemon closed the connection without answering", path)
    return out, s


def request(path: str, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request and return the daemon's answer. Raises ControlError when unreachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps(message).encode() + b"\n")
            line = _read_line(s)
    except (TimeoutError, OSError) as e:
        raise ControlError(f"cannot reach the volume daemon: {e}", path) from e
    if not line:
        raise ControlError("the volume daemon closed the connection without answering", path)
    try:
        out = json.loads(line)
    except ValueError as e:
        raise ControlError(f"garbled answer from the volume daemon: {line[:100]!r}", path) from e
    if not isinstance(out, dict):
        raise ControlError("garbled answer from the volume daemon", path)
    return out

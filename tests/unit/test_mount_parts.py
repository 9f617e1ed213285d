"""The mount layer's parts that need no FUSE: the mount-table parser and the control protocol."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from simvol.mount.control import MAX_MESSAGE, ControlError, ControlServer, request
from simvol.mount.mountinfo import read_mounts

MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "61 22 0:52 / /tmp/r/volumes/{0A1B} rw,nosuid,nodev,relatime shared:30 - fuse.simvol simvol:0a1b rw,user_id=0\n"
    "62 22 0:53 / /tmp/with\\040space\\134x rw - tmpfs tmp\\040fs rw\n"
    "63 22 0:54 / /no/optional rw - fuse.sshfs host:/x rw\n"
    "garbage line without a separator\n"
)


def test_mountinfo_fields(tmp_path: Path) -> None:
    f = tmp_path / "mountinfo"
    f.write_text(MOUNTINFO)
    e = read_mounts(str(f))
    assert [m.mount_id for m in e] == [22, 61, 62, 63]
    simvol = e[1]
    assert simvol.is_simvol and simvol.volume_guid == "0a1b" and simvol.mountpoint == "/tmp/r/volumes/{0A1B}"
    assert (simvol.major, simvol.minor, simvol.options) == (0, 52, "rw,nosuid,nodev,relatime")
    assert e[2].mountpoint == "/tmp/with space\\x" and e[2].source == "tmp fs"  # octal escapes undone
    assert not e[3].is_simvol and e[3].volume_guid is None


def test_the_real_mount_table_parses() -> None:
    entries = read_mounts()
    assert any(m.mountpoint == "/" for m in entries)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def handler(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") == "boom":
            raise RuntimeError("bad day")
        return {"ok": True, "echo": req}

    path = str(tmp_path / "c.sock")
    s = ControlServer(path, handler, lambda q, a: seen.append((q, a)))
    s.start()
    s.seen = seen  # type: ignore[attr-defined]
    yield s
    s.close()


def _raw(path: str, payload: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        c.connect(path)
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return json.loads(data)  # type: ignore[no-any-return]


def test_round_trip_and_after_reply(server: ControlServer) -> None:
    assert request(server.path, {"op": "status", "n": 1}) == {"ok": True, "echo": {"op": "status", "n": 1}}
    assert server.seen[-1][0] == {"op": "status", "n": 1}  # type: ignore[attr-defined]


def test_the_socket_is_owner_only(server: ControlServer) -> None:
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("payload", "error"),
    [(b"not json\n", "bad request"), (b"[1, 2]\n", "not a JSON object"), (b"\xff\xfe\n", "bad request")],
)
def test_bad_requests_get_an_answer(server: ControlServer, payload: bytes, error: str) -> None:
    answer = _raw(server.path, payload)
    assert answer["ok"] is False and error in answer["error"]
    assert request(server.path, {"op": "status"})["ok"]  # and the server lives on


def test_a_failing_handler_answers_and_survives(server: ControlServer) -> None:
    answer = request(server.path, {"op": "boom"})
    assert answer == {"ok": False, "error": "RuntimeError: bad day"}
    assert request(server.path, {"op": "status"})["ok"]


def test_an_oversized_message_is_refused(server: ControlServer) -> None:
    answer = _raw(server.path, b"{" + b" " * (MAX_MESSAGE + 10))
    assert answer["ok"] is False and "too large" in answer["error"]


def test_unreachable_daemon_is_a_control_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="cannot reach"):
        request(str(tmp_path / "missing.sock"), {"op": "status"}, timeout=1)


def test_a_silent_daemon_is_a_control_error(tmp_path: Path) -> None:
    path = str(tmp_path / "mute.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def close_at_once() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)  # read the request (closing with it unread would reset the connection), then hang up
        conn.close()

    t = threading.Thread(target=close_at_once)
    t.start()
    try:
        with pytest.raises(ControlError, match="without answering"):
            request(path, {"op": "status"}, timeout=5)
    finally:
        t.join(5)
        srv.close()

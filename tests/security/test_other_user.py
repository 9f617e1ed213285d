"""Another local user can neither drive a volume's daemon nor read its files.

Two layers each: the private root (0700) already stops the other user at path lookup; the tests then open the path
up on purpose (chmod 0755 on the root's directories, 0777 on the socket) to prove the second layer holds too — the
daemon's SO_PEERCRED check and FUSE's own "only the mounting user" rule (no allow_other).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
import userkit

from simvol import VolumeService

pytestmark = pytest.mark.fuse

# Run by the other user with the system python3 and no site packages: it needs nothing but the standard library.
CONNECT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connect_errno": e.errno}))
    raise SystemExit
try:
    s.sendall(json.dumps({"op": sys.argv[2], "force": True}).encode() + b"\n")
except OSError:
    pass  # the daemon may refuse and close before the request is even sent: its answer is still there to read
buf = b""
while not buf.endswith(b"\n"):
    try:
        c = s.recv(4096)
    except ConnectionResetError:
        break
    if not c:
        break
    buf += c
print(json.dumps({"answer": buf.decode()}))
"""

READ = r"""
import json, os, sys
out = {}
for name, fn in (("stat", lambda: os.stat(sys.argv[1])), ("listdir", lambda: os.listdir(sys.argv[1])),
                 ("read", lambda: open(os.path.join(sys.argv[1], "secret.txt")).read()),
                 ("write", lambda: open(os.path.join(sys.argv[1], "planted.txt"), "w").write("x"))):
    try:
        fn()
        out[name] = 0
    except OSError as e:
        out[name] = e.errno
print(json.dumps(out))
"""


def _system_python() -> str:
    for p in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(p, os.X_OK):
            return p
    pytest.skip("no system python3 the test user can run")


def _as_user(user, script: str, *args: str) -> dict:
    env = {"HOME": "/", "PATH": userkit.USER_PATH, "PYTHONNOUSERSITE": "1"}
    r = userkit.run_as(user, [_system_python(), "-S", "-c", script, *args], env, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _open_up(svc: VolumeService, *paths: str) -> None:
    for p in (svc.root.path, *paths):
        os.chmod(p, 0o755)


def _write_secret(vol) -> None:
    subprocess.run(["sh", "-c", 'echo "top secret" > "$1/secret.txt"', "sh", vol.mount_path], check=True, timeout=30)


@pytest.mark.parametrize("op", ["dismount", "status", "holders"])
def test_control_socket_refuses_other_users(service: VolumeService, test_user, op):
    vol = service.create_volume(40 << 20, letter="E")
    _write_secret(vol)
    info = service.mounter.daemon(str(vol.id))
    # Layer 1: the socket lives in ROOT/run (0700) and is 0600 itself.
    out = _as_user(test_user, CONNECT, info.socket, op)
    assert out == {"connect_errno": errno.EACCES}
    # Layer 2: even with the path opened up, the daemon checks the peer's uid and answers "permission denied".
    # (A deep root puts the socket in a private /tmp/simvol-UID instead of ROOT/run: open that one, then close it.)
    sock_dir = os.path.dirname(info.socket)
    _open_up(service, service.root.run, sock_dir)
    os.chmod(info.socket, 0o777)
    try:
        out = _as_user(test_user, CONNECT, info.socket, op)
    finally:
        os.chmod(sock_dir, 0o700)
    assert "answer" in out, out
    answer = json.loads(out["answer"])
    assert answer == {"ok": False, "error": "permission denied"}
    # Nothing happened: still mounted by the same daemon, the file still there, the daemon still serving its owner.
    assert vol.state == "M"
    assert service.mounter.daemon(str(vol.id)) == info
    assert os.path.ismount(vol.mount_path)
    assert service.resolve("E:\\secret.txt").endswith("secret.txt")
    assert vol.get_file_system_properties().total_allocation_units > 0


def test_mount_is_private_without_allow_other(service: VolumeService, test_user):
    vol = service.create_volume(40 << 20)
    _write_secret(vol)
    out = _as_user(test_user, READ, vol.mount_path)
    assert all(v == errno.EACCES for v in out.values()), out  # stopped by the 0700 root
    _open_up(service, service.root.volumes)
    out = _as_user(test_user, READ, vol.mount_path)
    # Stopped by FUSE itself: without allow_other only the mounting user may enter (docs/fuse-notes.md §7).
    assert all(v == errno.EACCES for v in out.values()), out
    r = userkit.run_as(test_user, ["cat", os.path.join(vol.mount_path, "secret.txt")],
                       {"PATH": userkit.USER_PATH}, timeout=30)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # Through a drive letter or a mount folder: the same symlink into the same private mount.
    c = Path(service.root.system_drive) / "pub"
    c.mkdir()
    vol.add_access_path("C:\\pub")
    _open_up(service, service.root.drives)
    out = _as_user(test_user, READ, str(c))
    assert all(v == errno.EACCES for v in out.values()), out
    assert not os.path.exists(os.path.join(vol.mount_path, "planted.txt"))


def test_mount_options_are_safe(service: VolumeService, tmp_path: Path):
    """Never allow_other unless asked; nosuid,nodev always; with allow_other, default_permissions too."""
    vol = service.create_volume(40 << 20)
    line = next(ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if f" {vol.mount_path} " in ln)
    assert "allow_other" not in line
    assert "nosuid" in line and "nodev" in line
    assert f"user_id={os.geteuid()}" in line
    shared = VolumeService(tmp_path / "shared-root", allow_other=True)
    try:
        v2 = shared.create_volume(40 << 20)
        line = next(ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if f" {v2.mount_path} " in ln)
        assert "allow_other" in line and "default_permissions" in line
        v2.delete(force=True)
    finally:
        shared.close()

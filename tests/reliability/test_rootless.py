"""simvol as an unprivileged user (docs/reliability.md "Rootless"; docs/fuse-notes.md §7).

The suite runs as root in CI, so these tests switch to the user ``simvol-test`` (created if missing) with
``runuser`` and a clean environment (HOME owned by the user, a Debian user's PATH without /usr/sbin). They need:

- ``fusermount3`` setuid root (Debian's fuse3 installs it 4755): checked, skipped with the reason otherwise;
- ``/dev/fuse`` usable by the user: this project's CI container has it 0600 root, so the fixture makes it 0666 for
  the duration — what Debian/Ubuntu hosts and GitHub runners have — and restores the mode (a test-machine setup
  step, see ``userkit.fuse_for_users``);
- a Python the user can run with this checkout's simvol importable (``userkit.user_python``: the venv's own
  interpreter if the user may execute it, else the system python of the same minor version with PYTHONPATH).

When the suite itself runs unprivileged, everything else in it is already rootless; these tests then run the same
scenarios as the current user.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ntfsoracle import assert_ntfs_clean

_spec = importlib.util.spec_from_file_location(
    "simvol_tests_userkit", Path(__file__).resolve().parent.parent / "security" / "userkit.py"
)
userkit = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = userkit
    _spec.loader.exec_module(userkit)

pytestmark = pytest.mark.fuse


class Rootless:
    """Runs Python code as the unprivileged user in a directory the user owns."""

    def __init__(self, user, home: str, python, workdir: str) -> None:
        self.user = user
        self.home = home
        self.python = python
        self.workdir = workdir

    def env(self) -> dict[str, str]:
        return {**userkit.base_env(self.home), **self.python.env}

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        if self.user is None:  # the suite runs unprivileged: this *is* the user
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/",
                                  env={**os.environ, **self.env()}, stdin=subprocess.DEVNULL)
        return userkit.run_as(self.user, argv, self.env(), timeout=timeout)

    def py(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run([*self.python.argv, "-c", code, *args], timeout=timeout)


@pytest.fixture(scope="module")
def rootless() -> Iterator[Rootless]:
    problem = userkit.fusermount_problem()
    if problem:
        pytest.skip(problem)
    if os.geteuid() != 0:
        py = userkit.UserPython([sys.executable], {}, "the suite's own interpreter (already unprivileged)")
        work = os.path.realpath(__import__("tempfile").mkdtemp(prefix="simvol-rootless-"))
        yield Rootless(None, os.environ.get("HOME", work), py, work)
        shutil.rmtree(work, ignore_errors=True)
        return
    user = userkit.ensure_user()
    if isinstance(user, str):
        pytest.skip(user)
    home = userkit.user_dir(user, "simvol-home-")
    work = userkit.user_dir(user, "simvol-rootless-")
    try:
        with userkit.fuse_for_users():
            py = userkit.user_python(user, home)
            if isinstance(py, str):
                pytest.skip(py)
            yield Rootless(user, home, py, work)
    finally:
        _cleanup(work)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _cleanup(work: str) -> None:
    """Root can take down the user's mounts whatever state they are in."""
    from simvol.mount import simvol_mounts

    for e in simvol_mounts(work):
        subprocess.run(["fusermount3", "-uz", "--", e.mountpoint], capture_output=True, timeout=10)
        subprocess.run(["umount", "-l", e.mountpoint], capture_output=True, timeout=10)


def test_environment(rootless: Rootless):
    """What the rootless run relies on, stated once (the messages end up in the report on failure)."""
    if rootless.user is not None:
        r = rootless.run(["id", "-u"])
        assert r.stdout.strip() == str(rootless.user.uid) != "0"
        r = rootless.py("import os; fd = os.open('/dev/fuse', os.O_RDWR); print('ok')")
        assert r.stdout.strip() == "ok", r.stderr
    fm = shutil.which("fusermount3")
    assert fm and os.stat(fm).st_mode & 0o4000 and os.stat(fm).st_uid == 0


def test_demo_as_user(rootless: Rootless):
    """The narrated demo (scripts/demo) end to end as the user. Found here: it failed at its last step because
    fsck.fat is in /usr/sbin, which a Debian user's PATH lacks."""
    root = os.path.join(rootless.workdir, "demo-root")
    demo = str(Path(__file__).resolve().parents[2] / "tools" / "demo.py")  # stdlib only: runs as a plain script
    r = rootless.run([*rootless.python.argv, demo, "--root", root], timeout=240)
    assert r.returncode == 0, f"demo failed as {rootless.user}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    assert "behaved as Windows does" in r.stdout
    from simvol.mount import simvol_mounts

    # The demo ends with `up` (its volumes stay mounted): the user takes them down again.
    r = rootless.run([*rootless.python.argv, "-m", "simvol", "--root", root, "--json", "down", "--force"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert not simvol_mounts(root)


CORE = r"""
import errno, json, os, subprocess, sys, time
from simvol import VolumeService
from simvol.errors import VdsError

root, fs = sys.argv[1:3]
out = {"uid": os.geteuid()}
svc = VolumeService(root)
vol = svc.create_volume((40 if fs == "FAT32" else 64) << 20, fs, label="ROOTLESS", letter="E")
out["filesystem"] = vol.get_file_system_type_name()
mp = vol.mount_path
out["mounted"] = os.path.ismount(mp)
out["mountinfo"] = [l for l in open("/proc/self/mountinfo") if (" " + mp + " ") in l]
# write through the mount (drive letter path)
e = svc.resolve("E:\\")
with open(os.path.join(e, "data.bin"), "wb") as f:
    f.write(b"x" * 300000)
os.mkdir(os.path.join(e, "dir"))
with open(os.path.join(e, "dir", "note.txt"), "w") as f:
    f.write("hello from an unprivileged user\n")
# a holder (another process of the same user) blocks a safe dismount
holder = subprocess.Popen([sys.executable, "-c",
    "import os,sys\nfd=os.open(sys.argv[1], os.O_RDONLY)\nprint('ready',flush=True)\nsys.stdin.readline()\n"
    "try:\n    os.pread(fd, 4, 0); print('read ok', flush=True)\n"
    "except OSError as e:\n    print('err', e.errno, flush=True)\n",
    os.path.join(mp, "data.bin")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "ready"
try:
    vol.dismount()
    out["safe"] = "S_OK"
except VdsError as ex:
    out["safe"] = ex.code
    out["holders"] = [h["pid"] for h in ex.holders]
out["holder_pid"] = holder.pid
out["state_after_safe"] = vol.state
# forced dismount: the holder's handle goes stale
out["forced"] = vol.dismount(force=True)
out["state_after_forced"] = vol.state
holder.stdin.write("go\n"); holder.stdin.flush()
out["holder_after"] = holder.stdout.readline().strip()
holder.wait(10)
# remount on access: another process of the user reads through the letter of the T volume
letter = os.path.join(root, "drives", "E", "dir", "note.txt")
r = subprocess.run([sys.executable, "-c", "import sys; print(open(sys.argv[1]).read(), end='')", letter],
                   capture_output=True, text=True, timeout=60)
out["access"] = [r.returncode, r.stdout]
out["state_after_access"] = vol.state
vol.dismount()
# resolve remounts a temporarily dismounted volume, the data is intact
with open(svc.resolve("E:\\dir\\note.txt")) as f:
    out["note"] = f.read()
out["size"] = os.path.getsize(svc.resolve("E:\\data.bin"))
# permanent dismount needs no access path; AddAccessPath brings it back
vol.delete_access_path("E:")
out["permanent"] = vol.dismount(permanent=True)
out["state_p"] = vol.state
try:
    vol.dismount()
except VdsError as ex:
    out["dismount_p"] = ex.code
out["add_path"] = vol.add_access_path("F:")
out["state_after_add"] = vol.state
out["paths"] = vol.query_access_paths()
with open(svc.resolve("F:\\dir\\note.txt")) as f:
    out["note2"] = f.read()
# images and state files are the user's own
out["owners"] = {p: os.stat(p).st_uid for p in (root, vol.image, svc.root.run, svc.root.database)}
svc.down()
out["check"] = vol.check()
image = vol.image
vol.detach()
out["image"] = image
svc.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("fs", ["FAT32", "NTFS"])
def test_integration_core_as_user(rootless: Rootless, fs: str):
    """The whole VDS path as the user; for NTFS the daemon starts ntfs-3g (setuid root on Debian) for the user."""
    if fs == "NTFS" and not shutil.which("ntfs-3g"):
        pytest.skip("ntfs-3g is not installed")
    root = os.path.join(rootless.workdir, f"core-root-{fs}")
    r = rootless.py(CORE, root, fs, timeout=180)
    assert r.returncode == 0, f"as {rootless.user}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    uid = rootless.user.uid if rootless.user is not None else os.geteuid()
    assert out["uid"] == uid
    assert out["filesystem"] == fs
    assert out["mounted"]
    (line,) = out["mountinfo"]
    assert f"user_id={uid}" in line and "nosuid" in line and "nodev" in line and "allow_other" not in line
    assert out["safe"] == "VDS_E_DEVICE_IN_USE"
    assert out["holder_pid"] in out["holders"]
    assert out["state_after_safe"] == "M"
    assert out["forced"] == 0 and out["state_after_forced"] == "T"
    assert out["holder_after"] in (f"err {n}" for n in (5, 107)), out["holder_after"]  # EIO / ENOTCONN
    assert out["access"] == [0, "hello from an unprivileged user\n"] and out["state_after_access"] == "M"
    assert out["note"] == out["note2"] == "hello from an unprivileged user\n"
    assert out["size"] == 300000
    assert out["permanent"] == 0 and out["state_p"] == "P"
    assert out["dismount_p"] == "VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"
    assert out["add_path"] == 0 and out["state_after_add"] == "M" and out["paths"] == ["F:\\"]
    assert set(out["owners"].values()) == {uid}, out["owners"]
    assert out["check"] == []
    if fs == "NTFS":
        assert_ntfs_clean(out["image"])
        return
    fsck = shutil.which("fsck.fat") or shutil.which("fsck.fat", path="/usr/sbin:/sbin")
    if fsck:
        r = subprocess.run([fsck, "-n", out["image"]], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout


BAD = r"""
import json, os, sys
from simvol import VolumeService
from simvol.errors import VdsError
root, theirs_ro, theirs_private, shared = sys.argv[1:5]
out = {}
svc = VolumeService(root)
for name, path in (("readonly", theirs_ro), ("private", theirs_private)):
    try:
        svc.attach(path)
        out[name] = "S_OK"
    except VdsError as e:
        out[name] = e.code
out["volumes"] = len(svc.volumes())
try:
    VolumeService(shared)
    out["shared"] = "S_OK"
except VdsError as e:
    out["shared"] = e.code
print(json.dumps(out))
"""


def test_other_users_images_and_dirs(rootless: Rootless, tmp_path: Path):
    """Images owned by another user (root): a 0644 one cannot be mounted for writing, a 0600 one cannot even be
    read — both a clean VdsError with nothing registered. A root-owned shared directory cannot become a root."""
    if rootless.user is None:
        pytest.skip("needs root to make files owned by another user")
    from simvol import VolumeService

    src = Path(userkit.user_dir(rootless.user, "simvol-theirs-"))
    os.chown(src, 0, 0)
    os.chmod(src, 0o755)
    try:
        svc = VolumeService(tmp_path / "maker")
        ro = svc.create_volume(40 << 20, image=str(src / "ro.img"))
        ro.detach()
        pv = svc.create_volume(40 << 20, image=str(src / "private.img"))
        pv.detach()
        svc.close()
        os.chmod(src / "ro.img", 0o644)
        os.chmod(src / "private.img", 0o600)
        shared = "/tmp"
        before = os.stat(shared)
        r = rootless.py(BAD, os.path.join(rootless.workdir, "bad-root"), str(src / "ro.img"),
                        str(src / "private.img"), shared)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out == {"readonly": "VDS_E_OBJECT_STATUS_FAILED", "private": "E_ACCESSDENIED", "volumes": 0,
                       "shared": "E_ACCESSDENIED"}
        assert os.stat(shared).st_mode == before.st_mode
    finally:
        shutil.rmtree(src, ignore_errors=True)


KILL_NTFS = r"""
import json, os, signal, sys, time
import psutil
from simvol import VolumeService

root = sys.argv[1]
out = {}
svc = VolumeService(root)
vol = svc.create_volume(64 << 20, "NTFS", letter="E")
with open(os.path.join(vol.mount_path, "d.txt"), "w") as f:
    f.write("durable\n")
    f.flush()
    os.fsync(f.fileno())


def running(what):
    found = []
    for p in psutil.process_iter():
        try:
            argv = p.cmdline()
            if vol.image in argv and what(p.name(), argv):
                found.append(p.pid)
        except psutil.Error:
            pass  # gone, or a zombie
    return found


def servers():
    return running(lambda name, argv: name in ("ntfs-3g", "lowntfs-3g"))


out["servers_before"] = len(servers())
daemon = running(lambda name, argv: "simvol.mount.daemon" in argv)
out["daemons"] = len(daemon)
os.kill(daemon[0], signal.SIGKILL)
deadline = time.monotonic() + 10
while servers() and time.monotonic() < deadline:
    time.sleep(0.05)
out["servers_after_kill"] = len(servers())
out["inner_mounts"] = [l.split()[4] for l in open("/proc/self/mountinfo") if os.path.join(root, "run") in l]
with open(svc.resolve("E:\\d.txt")) as f:
    out["data"] = f.read()
out["state"] = vol.state
svc.down()
out["check"] = vol.check()
out["image"] = vol.image
svc.close()
print(json.dumps(out))
"""


def test_ntfs_server_follows_a_killed_daemon_as_user(rootless: Rootless):
    """Debian's ntfs-3g is set-user-ID root, and its exec clears the parent-death signal for a user: a killed daemon
    left its ntfs-3g serving (and holding) the volume. Now the server goes with the daemon, and the next access
    remounts with the data intact."""
    if not shutil.which("ntfs-3g"):
        pytest.skip("ntfs-3g is not installed")
    root = os.path.join(rootless.workdir, "kill-root")
    r = rootless.py(KILL_NTFS, root, timeout=180)
    assert r.returncode == 0, f"as {rootless.user}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["servers_before"] == 1 and out["daemons"] == 1
    assert out["servers_after_kill"] == 0
    assert out["inner_mounts"] == []
    assert out["data"] == "durable\n" and out["state"] == "M"
    assert out["check"] == []
    assert_ntfs_clean(out["image"])

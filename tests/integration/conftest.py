"""Real FUSE mounts for the integration tests.

Every volume lives under the test's ``tmp_path`` (images, ``volumes/{GUID}`` mount points); the daemons' run
directory (socket, log, pid record) is a short private temporary directory, as a socket path must fit 108 bytes.
All I/O on a mount is done by *other* processes (``vol.sh`` runs bash,
``vol.py`` runs ``python -c``, ``vol.spawn`` starts a long-lived holder): the test process only talks to the
daemon over its control socket and reads the image once it is closed.

Teardown always runs, pass or fail: holders are killed, every daemon started by the test is dismounted
(forced) or, if that fails, SIGKILLed, stale mounts are removed with ``cleanup_stale``, and the test errors if
any simvol mount is left under its tmp root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simvol.fat import format_volume
from simvol.image import Image, create_image
from simvol.image.ntfs import NTFS, set_native
from simvol.mount import (
    DaemonClient,
    DaemonInfo,
    MountError,
    cleanup_stale,
    daemon_alive,
    simvol_mounts,
    start_daemon,
    wait_gone,
)
from tests.support.ntfsoracle import assert_ntfs_clean, ntfscat
from tests.support.processes import read_line, stop_process, wait_until

MiB = 1 << 20
GiB = 1 << 30
TIMEOUT = 60  # seconds for any subprocess touching a mount: a hung mount fails the test instead of the suite


@dataclass
class MountedVolume:
    """One image mounted through a simvol daemon. ``info``/``client`` follow remounts."""

    root: Path
    image: str
    mountpoint: str
    run_dir: str
    volume_id: str
    info: DaemonInfo
    client: DaemonClient
    fs: str = "FAT32"
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)
    _infos: list[DaemonInfo] = field(default_factory=list, repr=False)

    # ---------------------------------------------------------------- I/O from other processes

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(MP=self.mountpoint, IMG=self.image, LC_ALL="C", **extra)
        return env

    def sh(self, script: str, *, cwd: str | None = None, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        """Run a bash script with ``$MP`` set to the mount point (cwd defaults to the mount point)."""
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=cwd or self.mountpoint, env=self.env(**env),
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"script failed ({r.returncode}):\n{script}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def py(self, code: str, *, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        """Run ``python -c code`` with ``MP`` in the environment (``os.environ['MP']``)."""
        r = subprocess.run(
            [sys.executable, "-c", code], cwd="/", env=self.env(**env),
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"python failed ({r.returncode}):\n{code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def spawn(self, args: list[str], *, cwd: str = "/", ready: str | None = "ready", **env: str) -> subprocess.Popen:
        """Start a holder process; wait for it to print ``ready`` (if given). Killed at teardown."""
        p = subprocess.Popen(
            args, cwd=cwd, env=self.env(**env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self._procs.append(p)
        if ready is not None:
            line = read_line(p, TIMEOUT)
            if line.strip() != ready:
                p.kill()
                _, err = p.communicate(timeout=TIMEOUT)
                raise AssertionError(f"holder {args!r} did not get ready: {line!r}\n{err}")
        return p

    def spawn_py(self, code: str, **kw) -> subprocess.Popen:
        return self.spawn([sys.executable, "-c", code], **kw)

    # ---------------------------------------------------------------- the closed image and helpers

    def fsck(self) -> subprocess.CompletedProcess:
        return fsck(self.image)

    def assert_fsck_clean(self) -> None:
        """The file system's own checker calls the closed image clean (fsck.fat -n; ntfsfix -n for NTFS)."""
        if self.fs.startswith("NTFS"):
            assert_ntfs_clean(self.image)
        else:
            assert_fsck_clean(self.image)

    def mcopy(self, path: str) -> bytes:
        """A file read back from the closed image by a tool that is not simvol (mtools; ntfscat for NTFS)."""
        return ntfscat(self.image, path) if self.fs.startswith("NTFS") else mcopy(self.image, path)

    @staticmethod
    def wait_until(pred, timeout: float = 5.0, interval: float = 0.02):
        return wait_until(pred, timeout, interval)

    # ---------------------------------------------------------------- daemon life cycle

    def mount(self) -> DaemonInfo:
        """(Re)mount the image at the same mount point."""
        self.info = _start(self.image, self.mountpoint, self.run_dir, self.volume_id)
        self._infos.append(self.info)
        self.client = DaemonClient(self.info.socket)
        return self.info

    def dismount(self, force: bool = False) -> dict:
        r = self.client.dismount(force=force)
        if r.get("ok"):
            assert wait_gone(self.info.pid, self.info.create_time, 10), "the daemon outlived its dismount"
        return r

    def kill_holders(self) -> None:
        for p in self._procs:
            stop_process(p)

    def teardown(self) -> list[str]:
        """Kill holders, end every daemon, remove stale mounts. Returns problems (empty: clean)."""
        problems: list[str] = []
        self.kill_holders()
        for info in self._infos:
            if not daemon_alive(info):
                continue
            try:
                r = DaemonClient(info.socket).dismount(force=True, timeout=20)
                if not r.get("ok"):
                    problems.append(f"forced dismount at teardown failed: {r}")
            except Exception as e:  # noqa: BLE001 - teardown must go on
                problems.append(f"forced dismount at teardown failed: {e}")
            if not wait_gone(info.pid, info.create_time, 10):
                problems.append(f"daemon {info.pid} still alive at teardown: SIGKILL")
                try:
                    os.kill(info.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_gone(info.pid, info.create_time, 10)
        try:
            cleanup_stale(self.mountpoint)
        except Exception as e:  # noqa: BLE001
            problems.append(f"cleanup_stale failed: {e}")
        return problems


def _start(image: str, mountpoint: str, run_dir: str, volume_id: str) -> DaemonInfo:
    try:
        return start_daemon(image, mountpoint, run_dir, volume_id)
    except MountError as e:
        raise AssertionError(f"{e}\n--- daemon log ---\n{e.log_tail}") from e


def make_image(root: Path, name: str, size: int, label: str = "TEST", fs: str = "FAT32") -> tuple[str, str]:
    """Create and format an image (FAT32 by simvol's engine, NTFS by mkntfs); returns (path, volume GUID)."""
    path = str(root / name)
    meta = create_image(path, size)
    if fs.startswith("NTFS"):
        NTFS.format(path, label=label)
        if fs == "NTFS-native":
            set_native(path, True)
    else:
        with Image.open(path) as im:
            format_volume(im.fd, im.fs_size, label=label)
    return path, str(meta.volume_id)


def leftover_mounts(root: Path) -> list[str]:
    return [e.mountpoint for e in simvol_mounts(str(root))]


@pytest.fixture
def volume_factory(tmp_path: Path) -> Iterator:
    """``make(size=..., label=...)`` -> a mounted :class:`MountedVolume` under ``tmp_path``."""
    root = tmp_path
    (root / "volumes").mkdir(exist_ok=True)
    # The control socket's path must fit sockaddr_un (108 bytes): pytest's tmp_path plus a GUID can be longer.
    run_dir = os.path.join(tempfile.mkdtemp(prefix="svrun-"), "run")
    made: list[MountedVolume] = []

    def make(size: int = 128 * MiB, label: str = "TEST", name: str | None = None, fs: str = "FAT32") -> MountedVolume:
        image, gid = make_image(root, name or f"v{len(made)}.img", size, label, fs)
        mp = f"{root}/volumes/{{{gid.upper()}}}"
        info = _start(image, mp, run_dir, gid)
        vol = MountedVolume(root, image, mp, run_dir, gid, info, DaemonClient(info.socket), fs=fs, _infos=[info])
        made.append(vol)
        return vol

    yield make

    problems = []
    for vol in made:
        problems += vol.teardown()
    left = leftover_mounts(root)
    for mp in left:  # last resort, so one broken test does not poison the rest of the session
        subprocess.run(["fusermount3", "-uz", "--", mp], capture_output=True, timeout=10)
    shutil.rmtree(os.path.dirname(run_dir), ignore_errors=True)
    assert not left, f"simvol mounts left under {root}: {left}"
    assert not problems, "; ".join(problems)


@pytest.fixture
def mounted_volume(volume_factory) -> MountedVolume:
    """A freshly formatted 128 MiB volume, mounted."""
    return volume_factory()


@pytest.fixture(params=["FAT32", "NTFS", "NTFS-native"])
def any_volume(volume_factory, request) -> MountedVolume:
    """A freshly formatted 128 MiB volume of each file system simvol serves, mounted (the tests that must hold
    for all take this one): FAT32; NTFS with Windows' semantics (simvol's session in front of a private ntfs-3g);
    NTFS with ntfs-3g's own (ntfs-3g at the mount point)."""
    return volume_factory(fs=request.param)


def fsck(image: str) -> subprocess.CompletedProcess:
    return subprocess.run(["fsck.fat", "-n", image], capture_output=True, text=True, timeout=TIMEOUT)


def assert_fsck_clean(image: str) -> None:
    r = fsck(image)
    assert r.returncode == 0, f"fsck.fat -n {image} found problems:\n{r.stdout}\n{r.stderr}"


def mcopy(image: str, path: str) -> bytes:
    r = subprocess.run(
        ["mcopy", "-n", "-i", image, f"::{path}", "-"], capture_output=True, timeout=TIMEOUT,
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
    )
    assert r.returncode == 0, f"mcopy ::{path}: {r.stderr.decode(errors='replace')}"
    return r.stdout


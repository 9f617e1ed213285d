"""Model-based test of the volume state machine (docs/windows-semantics.md §5, §7).

A hypothesis ``RuleBasedStateMachine`` drives 1–2 real volumes on a private root with random operation
sequences (Mount, the four Dismount flag combinations, OfflineVolume, Add/DeleteAccessPath of letters and
mount folders, Format, GetFileSystemProperties, a holder process that opens a file and goes away, another process
listing the volume — which mounts a temporarily dismounted one again; SetFileSystemFlags(COMPRESSED)) on FAT32 and NTFS
volumes — created either way and formatted from one to the other — and predicts
every HRESULT from a small reference model of the §5 check orders. After each step the reality must agree
with the model, read directly (no reconcile): the registry's access paths, the PERMANENTLY_DISMOUNTED flag in
the image trailer, /proc/self/mountinfo and the daemon.

Size: ``SIMVOL_MODEL_EXAMPLES`` examples (default 25) of at most 15 steps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from simvol.errors import HRESULTS, S_OK
from simvol.image import read_metadata
from simvol.mount import DaemonClient, daemon_alive, find_mount, read_pidfile, simvol_mounts
from simvol.service import Volume, VolumeService
from simvol.types import FileSystemType, VolumeFlag
from simvol.vds import VdsVolume

pytestmark = pytest.mark.fuse

E = HRESULTS
SIZE = 40 << 20
LETTERS = ("E", "F", "G")
FOLDERS = ("a", "b")
ROLE_CHOICES = ((), ("no-permanent-dismount",), ("system",))
FILE_SYSTEMS = ("FAT32", "NTFS")
UNIT = {"FAT32": 512, "NTFS": 4096}  # Windows' default allocation units for 40 MiB
PD = int(VolumeFlag.PERMANENTLY_DISMOUNTED)

HOLDER = (
    "import os,sys\nfd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT, 0o644)\nprint('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@dataclass
class ModelVolume:
    roles: tuple[str, ...]
    fs: str = "FAT32"
    state: str = "M"
    letter: str | None = None
    folders: list[str] = field(default_factory=list)
    holder: str | None = None  # None, "live" (holds the volume) or "stale" (forced away)

    @property
    def role(self) -> bool:
        return "system" in self.roles

    @property
    def supported(self) -> bool:
        return "no-permanent-dismount" not in self.roles

    @property
    def in_use(self) -> bool:
        return self.state == "M" and self.holder == "live"

    def paths(self) -> list[str]:
        return ([f"{self.letter}:\\"] if self.letter else []) + [f"C:\\mnt\\{n}\\" for n in self.folders]


class VolumeModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="svm-", dir="/tmp")
        self.svc = VolumeService(os.path.join(self.tmp, "root"))
        os.makedirs(os.path.join(self.svc.root.system_drive, "mnt"))
        for n in FOLDERS:
            os.mkdir(os.path.join(self.svc.root.system_drive, "mnt", n))
        self.vols: list[Volume] = []
        self.model: list[ModelVolume] = []
        self.procs: dict[int, subprocess.Popen] = {}

    # ------------------------------------------------------------------ setup / teardown

    @initialize(roles=st.lists(st.tuples(st.sampled_from(ROLE_CHOICES), st.sampled_from(FILE_SYSTEMS)),
                               min_size=1, max_size=2))
    def create(self, roles) -> None:
        for r, fs in roles:
            self.vols.append(self.svc.create_volume(SIZE, fs, roles=list(r)))
            self.model.append(ModelVolume(roles=r, fs=fs))

    def teardown(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait(10)
        problems = []
        for v in self.vols:
            try:
                v.delete(force=True)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{v}: {e}")
        left = simvol_mounts(self.svc.root.volumes)
        for e in left:
            subprocess.run(["fusermount3", "-uz", "--", e.mountpoint], capture_output=True, timeout=10)
        self.svc.close()
        if not left:
            shutil.rmtree(self.tmp, ignore_errors=True)
        assert not left, f"mounts left: {left}"
        assert not problems, problems

    # ------------------------------------------------------------------ helpers

    def _check(self, got: int, want: str) -> None:
        assert got == E[want], f"got 0x{got:08X}, model says {want}"

    def _go_stale(self, i: int) -> None:
        if self.model[i].holder == "live":
            self.model[i].holder = "stale"

    def _dismount_model(self, i: int, force: bool, permanent: bool) -> str:
        m = self.model[i]
        if m.in_use and not force:
            return "VDS_E_DEVICE_IN_USE"
        if m.role:
            return "VDS_E_NOT_SUPPORTED"
        if m.state == "T":
            return "VDS_E_VOLUME_TEMPORARILY_DISMOUNTED"
        if permanent and not m.supported:
            return "VDS_E_NOT_SUPPORTED"
        if permanent and m.paths():
            return "VDS_E_VOLUME_HAS_PATH"
        if not permanent and m.state == "P":
            return "VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"
        if permanent and m.state == "P":
            return "S_OK"
        if force:
            self._go_stale(i)
        m.state = "P" if permanent else "T"
        return "S_OK"

    def _owner_of_letter(self, letter: str) -> int | None:
        return next((j for j, m in enumerate(self.model) if m.letter == letter), None)

    def _owner_of_folder(self, name: str) -> int | None:
        return next((j for j, m in enumerate(self.model) if name in m.folders), None)

    def _index(self, data) -> int:
        return data.draw(st.integers(0, len(self.vols) - 1), label="volume")

    # ------------------------------------------------------------------ rules

    @rule(data=st.data())
    def mount(self, data) -> None:
        i = self._index(data)
        hr = VdsVolume(self.vols[i]).Mount()
        self.model[i].state = "M"
        self._check(hr, "S_OK")

    @rule(data=st.data(), force=st.booleans(), permanent=st.booleans())
    def dismount(self, data, force, permanent) -> None:
        i = self._index(data)
        com = VdsVolume(self.vols[i])
        hr = com.Dismount(force, permanent)
        want = self._dismount_model(i, force, permanent)
        self._check(hr, want)
        if want == "VDS_E_DEVICE_IN_USE":
            pid = next(iter(p for p, _ in self._holder_procs(i)))
            assert pid in {h["pid"] for h in com.last_error.holders}

    @rule(data=st.data())
    def offline(self, data) -> None:
        i = self._index(data)
        hr = VdsVolume(self.vols[i]).OfflineVolume()
        m = self.model[i]
        if m.state == "T":  # docs/behaviour.md, OfflineVolume: T → P, with Dismount(TRUE, TRUE)'s other checks
            want = ("VDS_E_NOT_SUPPORTED" if m.role or not m.supported
                    else "VDS_E_VOLUME_HAS_PATH" if m.paths() else "S_OK")
            if want == "S_OK":
                m.state = "P"
        else:
            want = "S_OK" if m.state == "P" else self._dismount_model(i, True, True)
        self._check(hr, want)

    @rule(data=st.data())
    def access(self, data) -> None:
        """Another process lists the volume through ROOT/volumes/{GUID}: a T volume mounts again (§9 row 1)."""
        i = self._index(data)
        m = self.model[i]
        r = subprocess.run([sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", self.vols[i].mount_path],
                           capture_output=True, text=True, timeout=60, cwd="/")
        assert (r.returncode == 0) == (m.state != "P"), (m, r.stderr)
        if m.state == "T":
            m.state = "M"
            assert self.vols[i].state == "M"  # the next simvol call records it

    @rule(data=st.data(), letter=st.sampled_from(LETTERS))
    def add_letter(self, data, letter) -> None:
        i = self._index(data)
        m = self.model[i]
        hr = VdsVolume(self.vols[i]).AddAccessPath(letter + ":")
        owner = self._owner_of_letter(letter)
        if m.role:
            want = "VDS_E_OPERATION_DENIED"
        elif m.letter is not None:
            want = "VDS_E_OBJECT_EXISTS"
        elif owner is not None:
            want = "VDS_E_DRIVE_LETTER_NOT_FREE"
        else:
            want = "S_OK"
            m.letter = letter
            if m.state == "P":
                m.state = "M"
        self._check(hr, want)

    @rule(data=st.data(), letter=st.sampled_from(LETTERS), force=st.booleans())
    def delete_letter(self, data, letter, force) -> None:
        i = self._index(data)
        m = self.model[i]
        hr = VdsVolume(self.vols[i]).DeleteAccessPath(f"{letter}:\\", force)
        if m.letter != letter:
            want = "VDS_E_PATH_NOT_FOUND"
        elif m.role:
            want = "VDS_E_OPERATION_DENIED"
        elif m.in_use and not force:
            want = "VDS_E_DEVICE_IN_USE"
        else:
            want = "S_OK"
            m.letter = None
        self._check(hr, want)

    @rule(data=st.data(), name=st.sampled_from(FOLDERS))
    def add_folder(self, data, name) -> None:
        i = self._index(data)
        m = self.model[i]
        hr = VdsVolume(self.vols[i]).AddAccessPath(f"C:\\mnt\\{name}")
        if self._owner_of_folder(name) is not None:
            want = "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"
        else:
            want = "S_OK"
            m.folders.append(name)
            if m.state == "P":
                m.state = "M"
        self._check(hr, want)

    @rule(data=st.data(), name=st.sampled_from(FOLDERS), force=st.booleans())
    def delete_folder(self, data, name, force) -> None:
        i = self._index(data)
        m = self.model[i]
        hr = VdsVolume(self.vols[i]).DeleteAccessPath(f"c:\\MNT\\{name}", force)
        if name not in m.folders:
            want = "VDS_E_PATH_NOT_FOUND"
        else:
            want = "S_OK"
            m.folders.remove(name)
        self._check(hr, want)
        host = os.path.join(self.svc.root.system_drive, "mnt", name)
        if self._owner_of_folder(name) is None:
            assert os.path.isdir(host) and not os.path.islink(host) and os.listdir(host) == []

    @rule(data=st.data(), force=st.booleans(), fs=st.sampled_from(FILE_SYSTEMS))
    def format(self, data, force, fs) -> None:
        i = self._index(data)
        m = self.model[i]
        hr = VdsVolume(self.vols[i]).Format(FileSystemType[fs], "MODEL", 0, force, True, False)
        if m.in_use and not force:  # exclusive access first (MS-VDS's Format order, docs/cli.md)
            want = "VDS_E_DEVICE_IN_USE"
        elif m.state == "P":
            want = "VDS_E_VOLUME_NOT_ONLINE"
        elif m.role:
            want = "VDS_E_OPERATION_DENIED"
        else:
            want = "S_OK"
            if m.state == "M" and force:
                self._go_stale(i)
            m.state = "M"
            m.fs = fs
        self._check(hr, want)

    @rule(data=st.data(), setting=st.booleans())
    def compression(self, data, setting) -> None:
        """Set/ClearFileSystemFlags(COMPRESSED): NTFS (4 KiB clusters here) compresses, FAT32 cannot."""
        i = self._index(data)
        m = self.model[i]
        com = VdsVolume(self.vols[i])
        hr = com.SetFileSystemFlags(1) if setting else com.ClearFileSystemFlags(1)
        if m.state == "P":
            want = "VDS_E_VOLUME_NOT_ONLINE"
        else:
            m.state = "M"  # T remounts first
            want = "VDS_E_NOT_SUPPORTED" if setting and m.fs == "FAT32" else "S_OK"
        self._check(hr, want)
        if hr == S_OK:
            _, prop = com.GetFileSystemProperties()
            assert int(prop.flags) == (1 if setting and m.fs == "NTFS" else 0)

    @rule(data=st.data())
    def get_file_system_properties(self, data) -> None:
        i = self._index(data)
        m = self.model[i]
        hr, prop = VdsVolume(self.vols[i]).GetFileSystemProperties()
        if m.state == "P":
            want = "VDS_E_VOLUME_NOT_ONLINE"
        else:
            want = "S_OK"
            m.state = "M"
        self._check(hr, want)
        if hr == S_OK:
            assert prop.type == FileSystemType[m.fs] and prop.allocation_unit_size == UNIT[m.fs]
        hr, name = VdsVolume(self.vols[i]).GetFileSystemTypeName()
        self._check(hr, "VDS_E_VOLUME_NOT_ONLINE" if m.state == "P" else "S_OK")
        assert name == (None if m.state == "P" else m.fs)

    def _holder_procs(self, i: int):
        return [(pid, p) for pid, p in self.procs.items() if getattr(p, "volume_index", None) == i]

    @rule(data=st.data())
    def start_holder(self, data) -> None:
        i = self._index(data)
        m = self.model[i]
        if m.state != "M" or m.holder is not None:
            return
        p = subprocess.Popen([sys.executable, "-c", HOLDER, os.path.join(self.vols[i].mount_path, "h.txt")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
        p.volume_index = i  # type: ignore[attr-defined]
        self.procs[p.pid] = p
        assert p.stdout.readline().strip() == "ready"
        m.holder = "live"

    @precondition(lambda self: bool(self.procs))
    @rule(data=st.data())
    def stop_holder(self, data) -> None:
        pid = data.draw(st.sampled_from(sorted(self.procs)), label="holder")
        p = self.procs.pop(pid)
        p.kill()
        p.wait(10)
        self.model[p.volume_index].holder = None

    # ------------------------------------------------------------------ invariants

    @invariant()
    def reality_agrees(self) -> None:
        if not self.vols:
            return
        mounted = {e.mountpoint for e in simvol_mounts(self.svc.root.volumes)}
        for v, m in zip(self.vols, self.model, strict=True):
            vid = str(v.id)
            row = self.svc.registry.volume(vid)
            assert [p.display for p in self.svc.registry.paths(vid)] == m.paths(), (vid, m)
            flags = read_metadata(row.image).flags
            assert bool(flags & PD) == (m.state == "P"), (vid, m, hex(flags))
            # M: mounted; T: an armed mount point that mounts it on the next access; P: nothing.
            entry = find_mount(v.mount_path)
            assert (entry is not None) == (m.state in ("M", "T")), (vid, m)
            assert (v.mount_path in mounted) == (m.state in ("M", "T"))
            if m.state == "M":
                assert not _armed(self.svc, vid), (vid, m)
            if m.state == "T":
                assert entry is not None and entry.mounted_armed and _armed(self.svc, vid), (vid, m)
            info = read_pidfile(self.svc.root.run, vid)
            assert (info is not None and daemon_alive(info)) == (m.state in ("M", "T")), (vid, m)
            if m.state != "P":
                assert (row.dismount == "temporary") == (m.state == "T"), (vid, m, row)
        assert len(mounted) == sum(m.state in ("M", "T") for m in self.model)
        # a letter or folder belongs to one volume at most (the registry's UNIQUE keys, seen from the model)
        letters = [m.letter for m in self.model if m.letter]
        assert len(letters) == len(set(letters))


def _armed(svc: VolumeService, vid: str) -> bool:
    info = read_pidfile(svc.root.run, vid)
    return info is not None and bool(DaemonClient(info.socket).status().get("armed"))


VolumeModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("SIMVOL_MODEL_EXAMPLES", "15")),
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
TestVolumeModel = VolumeModel.TestCase

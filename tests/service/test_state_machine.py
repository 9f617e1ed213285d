"""The volume state machine of docs/windows-semantics.md §7, one case per cell, and the check orders of §5.

Every case builds a volume in the start state (M, T or P) on a private root, runs one VDS call through the
COM facade (``simvol.vds.VdsVolume``, so results are HRESULT ints), and checks the exact HRESULT and the
resulting state everywhere it shows (``kit.expect``): state letter, GetProperties status and flags,
QueryAccessPaths, the FUSE mount in /proc/self/mountinfo, the daemon, and for P the flag in the image trailer.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from simvol.errors import HRESULTS, S_OK, VdsError
from simvol.image import read_metadata
from simvol.service import Volume, VolumeService
from simvol.service.paths import guid_path
from simvol.types import FileSystemType, VolumeFlag, VolumeStatus
from simvol.vds import VdsVolume

MiB = 1 << 20
GiB = 1 << 30
SIZE = 40 * MiB
STALE_ERRNOS = (errno.EIO, errno.ENOTCONN)
Kit = Any  # tests/service/conftest.py's Kit, handed out by the ``kit`` fixture

pytestmark = pytest.mark.fuse

E = HRESULTS
W3 = E["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"]
W145 = E["HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"]
W267 = E["HRESULT_FROM_WIN32(ERROR_DIRECTORY)"]
W21 = E["HRESULT_FROM_WIN32(ERROR_NOT_READY)"]


def hr_of(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except VdsError as e:
        return e.hresult
    return S_OK


# ====================================================================================== world


class World:
    """Builds volumes in a given state on one root and remembers them."""

    def __init__(self, svc: VolumeService, kit: Kit) -> None:
        self.svc = svc
        self.kit = kit
        self.root = svc.root.path
        self.mnt = os.path.join(svc.root.system_drive, "mnt")
        os.makedirs(self.mnt, exist_ok=True)

    def folder(self, name: str, mode: int = 0o755) -> str:
        """An empty directory ``C:\\mnt\\name`` (created if missing); returns the Windows path."""
        path = os.path.join(self.mnt, name)
        if not os.path.lexists(path):
            os.mkdir(path, mode)
            os.chmod(path, mode)
        return "C:\\mnt\\" + name

    def new(
        self,
        state: str = "M",
        *,
        letter: str | None = None,
        folders: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
        size: int = SIZE,
    ) -> Volume:
        v = self.svc.create_volume(size, letter=letter, roles=list(roles))
        for name in folders:
            v.add_access_path(self.folder(name))
        if state == "T":
            v.dismount()
        elif state == "P":
            for p in v.query_access_paths():
                v.delete_access_path(p, force=True)
            v.dismount(force=True, permanent=True)
        self.kit.expect(v, state)
        return v

    def holder(self, v: Volume, how: str):
        """A process holding ``v``: open (a file), cwd, path (O_PATH), letter (a file via ROOT/drives/X)."""
        if how == "open":
            return self.kit.holder("open", os.path.join(v.mount_path, "held.txt"))
        if how == "cwd":
            return self.kit.holder("cwd", v.mount_path)
        if how == "path":
            self.kit.write_file(os.path.join(v.mount_path, "p.txt"))
            return self.kit.holder("path", os.path.join(v.mount_path, "p.txt"))
        if how == "letter":
            letter = next(p for p in v.query_access_paths() if len(p) == 3)[0]
            return self.kit.holder("open", os.path.join(self.root, "drives", letter, "held.txt"))
        if how == "folder":
            folder = next(p for p in v.query_access_paths() if len(p) > 3)
            host = os.path.join(self.svc.root.system_drive, *[s for s in folder[3:].split("\\") if s])
            return self.kit.holder("open", os.path.join(host, "held.txt"))
        raise ValueError(how)


@pytest.fixture
def world(svc, kit) -> World:
    return World(svc, kit)


# ====================================================================================== §7 cells


@dataclass
class Ctx:
    world: World
    v: Volume
    com: VdsVolume
    holder: Any = None
    other: Volume | None = None
    data: dict = field(default_factory=dict)

    @property
    def kit(self) -> Kit:
        return self.world.kit

    @property
    def svc(self) -> VolumeService:
        return self.world.svc


@dataclass
class Cell:
    start: str
    act: Callable[[Ctx], int]
    hr: int
    end: str
    paths: list[str] | None = None
    letter: str | None = None
    folders: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    holder: str | None = None  # started in M, before the volume is moved to its start state
    other: str | None = None  # a second volume (M) with this letter
    pre: Callable[[Ctx], None] | None = None
    check: Callable[[Ctx], None] | None = None


def _stale(c: Ctx) -> None:
    assert c.holder.errno_of("read") in STALE_ERRNOS
    assert c.holder.errno_of("write x") in STALE_ERRNOS


def _in_use_names_holder(c: Ctx) -> None:
    err = c.com.last_error
    assert err is not None and err.hresult == E["VDS_E_DEVICE_IN_USE"]
    assert c.holder.pid in {h["pid"] for h in err.holders}, err.holders
    assert c.holder.errno_of("read") == 0, "a refused dismount leaves the holder working"


def _no_remount(c: Ctx) -> None:
    assert not c.kit.raw(c.v)["mounted"], "the volume was mounted again"


def _dangling(letter: str) -> Callable[[Ctx], None]:
    """A T volume's access path leads to its armed mount point: present, and not yet a mounted volume."""

    def check(c: Ctx) -> None:
        link = os.path.join(c.world.root, "drives", letter)
        assert os.path.islink(link) and os.readlink(link).endswith("{" + str(c.v.id).upper() + "}")
        assert os.path.isdir(link)  # stat of the mount point itself: answered without mounting
        assert not c.kit.raw(c.v)["mounted"], "a stat of the mount point mounted the volume"

    return check


def _letter_reaches_volume(letter: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        c.kit.write_file(os.path.join(c.world.root, "drives", letter, "via.txt"), b"via")
        assert c.kit.read_file(os.path.join(c.v.mount_path, "via.txt")) == b"via"

    return check


def _mount_folder_reaches_volume(name: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        host = os.path.join(c.world.mnt, name)
        assert os.path.islink(host) and os.readlink(host) == c.v.mount_path
        c.kit.write_file(os.path.join(host, "via.txt"), b"via")
        assert c.kit.read_file(os.path.join(c.v.mount_path, "via.txt")) == b"via"

    return check


def _guid_resolves(c: Ctx) -> None:
    host = c.svc.resolve(guid_path(c.v.id))
    assert os.path.realpath(host) == os.path.realpath(c.v.mount_path)


def _fsprops_ok(c: Ctx) -> None:
    hr, fp = c.com.GetFileSystemProperties()
    assert hr == S_OK and fp.type == FileSystemType.FAT32 and fp.allocation_unit_size == 512
    assert fp.total_allocation_units > 65526 and 0 < fp.available_allocation_units <= fp.total_allocation_units


def _write_marker(c: Ctx) -> None:
    c.kit.write_file(os.path.join(c.v.mount_path, "marker.txt"), b"before")


def _formatted(c: Ctx) -> None:
    """Format kept the GUID and the paths; the old files are gone; the label is the new one."""
    assert read_metadata(c.v.image).volume_id == c.v.id
    assert c.kit.errno_of("os.stat(os.environ['P'])", P=os.path.join(c.v.mount_path, "marker.txt")) == errno.ENOENT
    hr, fp = c.com.GetFileSystemProperties()
    assert hr == S_OK and fp.label == "NEWLABEL"


def _not_formatted(c: Ctx) -> None:
    """Refused before anything changed: the old files are still there."""
    assert c.kit.read_file(os.path.join(c.v.mount_path, "marker.txt")) == b"before"


def _forced_format(c: Ctx) -> None:
    _formatted(c)
    _stale(c)


def _stale_after_remount(c: Ctx) -> None:
    _stale(c)
    assert c.com.Mount() == S_OK
    c.kit.expect(c.v, "M")
    assert c.holder.errno_of("read") in STALE_ERRNOS, "a stale handle stays stale after a remount"
    assert c.holder.errno_of("write stale") in STALE_ERRNOS


def _reconcile_new_service(c: Ctx) -> None:
    s2 = VolumeService(c.world.root)
    try:
        s2.reconcile()
        v2 = s2.volume(str(c.v.id))
        assert v2.state == "P"
        assert not c.kit.mounted(c.v)
    finally:
        s2.close()


def _guid_paths(c: Ctx) -> int:
    hr, paths = c.com.QueryVolumeGuidPathnames()
    assert paths == [guid_path(c.v.id)] and paths[0] == paths[0].lower().replace("\\\\?\\volume", "\\\\?\\Volume")
    return hr


def _format_support(c: Ctx) -> int:
    hr, props = c.com.QueryFileSystemFormatSupport()
    assert [p.name for p in props] == ["FAT32", "NTFS"] and int(props[0].flags) == 0x5 and int(props[1].flags) == 0
    assert props[0].revision == 0 and props[0].default_unit_allocation_size == 512
    assert tuple(props[0].allowed_unit_allocation_sizes) == (512,)
    return hr


def _props(status: VolumeStatus) -> Callable[[Ctx], int]:
    def act(c: Ctx) -> int:
        hr, p = c.com.GetProperties()
        assert p.status == status and p.id == c.v.id and p.size == SIZE
        assert p.name == f"\\\\?\\GLOBALROOT\\Device\\HarddiskVolume{c.svc.registry.volume(str(c.v.id)).number}"
        assert int(p.type) == 10 and int(p.health) == 1 and int(p.transition_state) == 1
        assert int(p.recommended_file_system_type) == 3
        assert not p.flags & 0x4000 and p.flags & 0x10000 and p.flags & 0x800000 and not p.flags & 0x8000
        assert bool(p.flags & VolumeFlag.PERMANENTLY_DISMOUNTED) == (status == VolumeStatus.OFFLINE)
        assert p.flags & VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED
        return hr

    return act


def _typename(c: Ctx) -> int:
    hr, name = c.com.GetFileSystemTypeName()
    assert hr != S_OK or name == "FAT32"
    return hr


def _query_paths(expected: list[str]) -> Callable[[Ctx], int]:
    def act(c: Ctx) -> int:
        hr, paths = c.com.QueryAccessPaths()
        assert paths == expected
        return hr

    return act


def _reparse(c: Ctx) -> int:
    hr, pts = c.com.QueryReparsePoints()
    assert pts == []
    return hr


def _resolve_ok(c: Ctx) -> int:
    host = c.svc.resolve("E:\\")
    assert os.path.realpath(host) == os.path.realpath(c.v.mount_path)
    return S_OK


def _host_follows_symlink(c: Ctx) -> int:
    """Any process listing the volume through its letter mounts it again (docs/behaviour.md, Remount on access)."""
    err = c.kit.errno_of("os.listdir(os.environ['P'])", P=os.path.join(c.world.root, "drives", "E"))
    assert err == 0
    assert c.v.state == "M"  # the next simvol call records it
    return S_OK


def _up(c: Ctx) -> int:
    c.svc.up()
    return S_OK


def _mkdir(name: str) -> Callable[[Ctx], None]:
    def pre(c: Ctx) -> None:
        c.world.folder(name)

    return pre


D = "C:\\mnt\\d"
NR = E["VDS_E_VOLUME_NOT_ONLINE"]

CELLS: dict[str, Cell] = {
    # ------------------------------------------------------------------------------------------------ From M
    "M/Mount": Cell("M", lambda c: c.com.Mount(), S_OK, "M", ["E:\\"], letter="E"),
    "M/Dismount(F,F) idle": Cell("M", lambda c: c.com.Dismount(False, False), S_OK, "T", ["E:\\"], letter="E",
                                 check=_dangling("E")),
    "M/Dismount(F,F) in use": Cell("M", lambda c: c.com.Dismount(False, False), E["VDS_E_DEVICE_IN_USE"], "M",
                                   ["E:\\"], letter="E", holder="open", check=_in_use_names_holder),
    "M/Dismount(F,T) in use": Cell("M", lambda c: c.com.Dismount(False, True), E["VDS_E_DEVICE_IN_USE"], "M", [],
                                   holder="cwd", check=_in_use_names_holder),
    **{
        f"M/Dismount({'T' if f else 'F'},{'T' if p else 'F'}) role {role}": Cell(
            "M", (lambda f, p: lambda c: c.com.Dismount(f, p))(f, p), E["VDS_E_NOT_SUPPORTED"], "M", ["E:\\"],
            letter="E", roles=(role,))
        for role in ("system", "boot", "pagefile")
        for f in (False, True)
        for p in (False, True)
    },
    "M/Dismount(T,F) in use": Cell("M", lambda c: c.com.Dismount(True, False), S_OK, "T", ["E:\\"], letter="E",
                                   holder="open", check=_stale),
    "M/Dismount(F,T) no permanent support": Cell("M", lambda c: c.com.Dismount(False, True), E["VDS_E_NOT_SUPPORTED"],
                                                 "M", [], roles=("no-permanent-dismount",)),
    "M/Dismount(T,T) no permanent support": Cell("M", lambda c: c.com.Dismount(True, True), E["VDS_E_NOT_SUPPORTED"],
                                                 "M", [], roles=("no-permanent-dismount",)),
    "M/Dismount(F,T) has letter": Cell("M", lambda c: c.com.Dismount(False, True), E["VDS_E_VOLUME_HAS_PATH"], "M",
                                       ["E:\\"], letter="E"),
    "M/Dismount(T,T) has folder": Cell("M", lambda c: c.com.Dismount(True, True), E["VDS_E_VOLUME_HAS_PATH"], "M",
                                       [D + "\\"], folders=("d",)),
    "M/Dismount(T,T) 0 paths in use": Cell("M", lambda c: c.com.Dismount(True, True), S_OK, "P", holder="open",
                                           check=_stale),
    "M/Dismount(F,T) 0 paths idle": Cell("M", lambda c: c.com.Dismount(False, True), S_OK, "P"),
    "M/OfflineVolume 0 paths in use": Cell("M", lambda c: c.com.OfflineVolume(), S_OK, "P", holder="open",
                                           check=_stale),
    "M/OfflineVolume with paths": Cell("M", lambda c: c.com.OfflineVolume(), E["VDS_E_VOLUME_HAS_PATH"], "M",
                                       ["E:\\", D + "\\"], letter="E", folders=("d",)),
    "M/OfflineVolume unsupported": Cell("M", lambda c: c.com.OfflineVolume(), E["VDS_E_NOT_SUPPORTED"], "M", [],
                                        roles=("no-permanent-dismount",)),
    "M/OfflineVolume role": Cell("M", lambda c: c.com.OfflineVolume(), E["VDS_E_NOT_SUPPORTED"], "M", [],
                                 roles=("boot",)),
    "M/AddAccessPath letter": Cell("M", lambda c: c.com.AddAccessPath("F:"), S_OK, "M", ["F:\\"],
                                   check=_letter_reaches_volume("F")),
    "M/AddAccessPath folder": Cell("M", lambda c: c.com.AddAccessPath(D), S_OK, "M", ["E:\\", D + "\\"], letter="E",
                                   pre=_mkdir("d"), check=_mount_folder_reaches_volume("d")),
    "M/DeleteAccessPath own (the last)": Cell("M", lambda c: c.com.DeleteAccessPath("E:\\", False), S_OK, "M", [],
                                              letter="E", check=_guid_resolves),
    "M/DeleteAccessPath own folder": Cell("M", lambda c: c.com.DeleteAccessPath(D, False), S_OK, "M", ["E:\\"],
                                          letter="E", folders=("d",)),
    "M/DeleteAccessPath own letter in use": Cell("M", lambda c: c.com.DeleteAccessPath("E:", False),
                                                 E["VDS_E_DEVICE_IN_USE"], "M", ["E:\\"], letter="E", holder="letter",
                                                 check=_in_use_names_holder),
    "M/DeleteAccessPath own letter of a role volume": Cell("M", lambda c: c.com.DeleteAccessPath("E:", True),
                                                           E["VDS_E_OPERATION_DENIED"], "M", ["E:\\"], letter="E",
                                                           roles=("system",)),
    "M/DeleteAccessPath foreign": Cell("M", lambda c: c.com.DeleteAccessPath("F:", True), E["VDS_E_PATH_NOT_FOUND"],
                                       "M", ["E:\\"], letter="E", other="F"),
    "M/DeleteAccessPath unknown": Cell("M", lambda c: c.com.DeleteAccessPath("C:\\nowhere", True),
                                       E["VDS_E_PATH_NOT_FOUND"], "M", ["E:\\"], letter="E"),
    "M/QueryAccessPaths": Cell("M", _query_paths(["E:\\", D + "\\"]), S_OK, "M", letter="E", folders=("d",)),
    "M/QueryReparsePoints": Cell("M", _reparse, S_OK, "M"),
    "M/QueryVolumeGuidPathnames": Cell("M", _guid_paths, S_OK, "M"),
    "M/GetProperties": Cell("M", _props(VolumeStatus.ONLINE), S_OK, "M"),
    "M/GetFileSystemProperties": Cell("M", lambda c: (_fsprops_ok(c), S_OK)[1], S_OK, "M"),
    "M/GetFileSystemTypeName": Cell("M", _typename, S_OK, "M"),
    "M/Format idle": Cell("M", lambda c: c.com.Format(FileSystemType.FAT32, "newlabel", 0, False, True, False), S_OK,
                          "M", ["E:\\", D + "\\"], letter="E", folders=("d",), pre=_write_marker, check=_formatted),
    "M/Format bForce in use": Cell("M", lambda c: c.com.Format(FileSystemType.FAT32, "NewLabel", 0, True, True, False),
                                   S_OK, "M", ["E:\\"], letter="E", holder="open", pre=_write_marker,
                                   check=_forced_format),
    # docs/behaviour.md, Compression: Windows 7 and later refuse compression on FAT32 before anything changes.
    "M/Format compression": Cell("M", lambda c: c.com.Format(FileSystemType.FAT32, "NEWLABEL", 0, False, False, True),
                                 E["VDS_E_COMPRESSION_NOT_SUPPORTED"], "M", [], pre=_write_marker,
                                 check=_not_formatted),
    "M/Format in use": Cell("M", lambda c: c.com.Format(FileSystemType.FAT32, "X", 0, False, True, False),
                            E["VDS_E_DEVICE_IN_USE"], "M", [], holder="cwd", check=_in_use_names_holder),
    # ------------------------------------------------------------------------------------------------ From T
    "T/Mount": Cell("T", lambda c: c.com.Mount(), S_OK, "M", ["E:\\", D + "\\"], letter="E", folders=("d",)),
    **{
        f"T/Dismount({'T' if f else 'F'},{'T' if p else 'F'})": Cell(
            "T", (lambda f, p: lambda c: c.com.Dismount(f, p))(f, p), E["VDS_E_VOLUME_TEMPORARILY_DISMOUNTED"], "T",
            ["E:\\"], letter="E", check=_no_remount)
        for f in (False, True)
        for p in (False, True)
    },
    # docs/behaviour.md, OfflineVolume: from T it goes to P, with Dismount(TRUE, TRUE)'s other checks.
    "T/OfflineVolume": Cell("T", lambda c: c.com.OfflineVolume(), S_OK, "P", []),
    "T/OfflineVolume with a path": Cell("T", lambda c: c.com.OfflineVolume(), E["VDS_E_VOLUME_HAS_PATH"], "T",
                                        ["E:\\"], letter="E"),
    "T/AddAccessPath letter": Cell("T", lambda c: c.com.AddAccessPath("f:\\"), S_OK, "T", ["F:\\"],
                                   check=_dangling("F")),
    "T/AddAccessPath folder": Cell("T", lambda c: c.com.AddAccessPath(D), S_OK, "T", [D + "\\"], pre=_mkdir("d")),
    "T/DeleteAccessPath own": Cell("T", lambda c: c.com.DeleteAccessPath("E:", False), S_OK, "T", [D + "\\"],
                                   letter="E", folders=("d",)),
    "T/DeleteAccessPath foreign": Cell("T", lambda c: c.com.DeleteAccessPath("F:", False), E["VDS_E_PATH_NOT_FOUND"],
                                       "T", ["E:\\"], letter="E", other="F"),
    "T/QueryAccessPaths": Cell("T", _query_paths(["E:\\", D + "\\"]), S_OK, "T", letter="E", folders=("d",)),
    "T/QueryReparsePoints": Cell("T", _reparse, S_OK, "T", check=_no_remount),
    "T/QueryVolumeGuidPathnames": Cell("T", _guid_paths, S_OK, "T", check=_no_remount),
    "T/QueryFileSystemFormatSupport": Cell("T", _format_support, S_OK, "T", check=_no_remount),
    "T/GetProperties": Cell("T", _props(VolumeStatus.ONLINE), S_OK, "T", check=_no_remount),
    "T/GetFileSystemTypeName": Cell("T", _typename, S_OK, "T", check=_no_remount),
    "T/GetFileSystemProperties": Cell("T", lambda c: (_fsprops_ok(c), S_OK)[1], S_OK, "M", ["E:\\"], letter="E"),
    "T/SetFileSystemFlags": Cell("T", lambda c: c.com.SetFileSystemFlags(0), S_OK, "M"),
    "T/ClearFileSystemFlags": Cell("T", lambda c: c.com.ClearFileSystemFlags(1), S_OK, "M"),
    "T/Format": Cell("T", lambda c: c.com.Format(FileSystemType.FAT32, "NEWLABEL", 0, False, True, False), S_OK, "M",
                     ["E:\\"], letter="E", check=_formatted),
    "T/resolve": Cell("T", _resolve_ok, S_OK, "M", ["E:\\"], letter="E"),
    "T/host process through an access path": Cell("T", _host_follows_symlink, S_OK, "M", ["E:\\"], letter="E"),
    "T/stale handle": Cell("T", lambda c: S_OK, S_OK, "T", ["E:\\"], letter="E", holder="open",
                           check=_stale_after_remount),
    "T/simvol up": Cell("T", _up, S_OK, "M", ["E:\\"], letter="E"),
    # ------------------------------------------------------------------------------------------------ From P
    "P/Mount": Cell("P", lambda c: c.com.Mount(), S_OK, "M", [], letter="E", check=_guid_resolves),
    "P/Dismount(F,F)": Cell("P", lambda c: c.com.Dismount(False, False), E["VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"], "P"),
    "P/Dismount(T,F)": Cell("P", lambda c: c.com.Dismount(True, False), E["VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"], "P"),
    "P/Dismount(F,T)": Cell("P", lambda c: c.com.Dismount(False, True), S_OK, "P"),
    "P/Dismount(T,T)": Cell("P", lambda c: c.com.Dismount(True, True), S_OK, "P"),
    "P/OfflineVolume": Cell("P", lambda c: c.com.OfflineVolume(), S_OK, "P"),
    "P/AddAccessPath letter": Cell("P", lambda c: c.com.AddAccessPath("G:"), S_OK, "M", ["G:\\"],
                                   check=_letter_reaches_volume("G")),
    "P/AddAccessPath folder": Cell("P", lambda c: c.com.AddAccessPath(D), S_OK, "M", [D + "\\"], pre=_mkdir("d"),
                                   check=_mount_folder_reaches_volume("d")),
    "P/DeleteAccessPath former letter": Cell("P", lambda c: c.com.DeleteAccessPath("E:", True),
                                             E["VDS_E_PATH_NOT_FOUND"], "P", letter="E"),
    "P/DeleteAccessPath foreign": Cell("P", lambda c: c.com.DeleteAccessPath("F:", True), E["VDS_E_PATH_NOT_FOUND"],
                                       "P", other="F"),
    "P/QueryAccessPaths": Cell("P", _query_paths([]), S_OK, "P", letter="E", folders=("d",)),
    "P/GetProperties": Cell("P", _props(VolumeStatus.OFFLINE), S_OK, "P"),
    "P/GetFileSystemProperties": Cell("P", lambda c: c.com.GetFileSystemProperties()[0], NR, "P"),
    "P/Format": Cell("P", lambda c: c.com.Format(FileSystemType.FAT32, None, 0, True, True, False), NR, "P"),
    "P/FormatEx": Cell("P", lambda c: c.com.FormatEx(None, 0, 0, None, True, True, False), NR, "P"),
    "P/FormatEx2": Cell("P", lambda c: c.com.FormatEx2("FAT32", 0, 0, None, 0x3), NR, "P"),
    "P/GetFileSystemTypeName": Cell("P", _typename, NR, "P"),
    "P/SetFileSystemFlags": Cell("P", lambda c: c.com.SetFileSystemFlags(0), NR, "P"),
    "P/ClearFileSystemFlags": Cell("P", lambda c: c.com.ClearFileSystemFlags(1), NR, "P"),
    "P/QueryFileSystemFormatSupport": Cell("P", _format_support, S_OK, "P"),
    "P/QueryVolumeGuidPathnames": Cell("P", _guid_paths, S_OK, "P"),
    "P/QueryReparsePoints": Cell("P", _reparse, S_OK, "P"),
    "P/resolve GUID path": Cell("P", lambda c: hr_of(lambda: c.svc.resolve(guid_path(c.v.id) + "f.txt")), W21, "P"),
    "P/resolve former letter": Cell("P", lambda c: hr_of(lambda: c.svc.resolve("E:\\f.txt")), W3, "P", letter="E"),
    "P/stale handle": Cell("P", lambda c: S_OK, S_OK, "P", holder="open", check=_stale),
    "P/simvol up": Cell("P", _up, S_OK, "P"),
    "P/restart (new service, reconcile)": Cell("P", lambda c: S_OK, S_OK, "P", check=_reconcile_new_service),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_cell(name: str, world: World) -> None:
    cell = CELLS[name]
    v = world.new("M", letter=cell.letter, folders=cell.folders, roles=cell.roles)
    c = Ctx(world, v, VdsVolume(v))
    if cell.other:
        c.other = world.new("M", letter=cell.other)
    if cell.holder:
        c.holder = world.holder(v, cell.holder)
    if cell.pre and cell.start == "M":
        cell.pre(c)
    if cell.start == "T":
        assert v.dismount(force=cell.holder is not None) == S_OK
    elif cell.start == "P":
        for p in v.query_access_paths():
            v.delete_access_path(p, force=True)
        assert v.dismount(force=True, permanent=True) == S_OK
    if cell.pre and cell.start != "M":
        cell.pre(c)
    world.kit.expect(v, cell.start)

    hr = cell.act(c)

    assert hr == cell.hr, f"{name}: got 0x{hr:08X}, want 0x{cell.hr:08X} ({c.com.last_error})"
    world.kit.expect(v, cell.end, cell.paths)
    if cell.check:
        cell.check(c)
    if c.other is not None:
        world.kit.expect(c.other, "M", [f"{cell.other}:\\"])


# ====================================================================================== §5.10 Dismount


@pytest.mark.parametrize("how", ["open", "cwd", "path", "letter", "folder"])
def test_dismount_row1_in_use_each_kind_of_holder(world: World, how: str) -> None:
    v = world.new(letter="E", folders=("d",))
    h = world.holder(v, how)
    com = VdsVolume(v)
    for permanent in (False, True):
        assert com.Dismount(False, permanent) == E["VDS_E_DEVICE_IN_USE"]
        assert h.pid in {x["pid"] for x in com.last_error.holders}
        assert {x["pid"]: x for x in com.last_error.holders}[h.pid]["kind"] in ("file", "dir", "cwd")
    world.kit.expect(v, "M", ["E:\\", D + "\\"])
    assert h.errno_of("exit") == 0
    h.proc.wait(10)
    assert com.Dismount(False, False) == S_OK
    world.kit.expect(v, "T")


@pytest.mark.parametrize(
    "roles,state,letter,holder,force,permanent,want",
    [
        # row 1 before 1a: a role volume in use without force
        (("system",), "M", "E", "open", False, False, "VDS_E_DEVICE_IN_USE"),
        # row 1 before 3 and 4: in use, permanent, no support, with a path
        (("no-permanent-dismount",), "M", "E", "cwd", False, True, "VDS_E_DEVICE_IN_USE"),
        # row 1a: forced role volume, in use
        (("pagefile",), "M", "E", "open", True, False, "VDS_E_NOT_SUPPORTED"),
        # row 1a before 3/4: role, permanent, with a path
        (("boot",), "M", "E", None, True, True, "VDS_E_NOT_SUPPORTED"),
        # row 2 before 3: T without permanent support
        (("no-permanent-dismount",), "T", None, None, False, True, "VDS_E_VOLUME_TEMPORARILY_DISMOUNTED"),
        # row 2 before 4: T with a path
        ((), "T", "E", None, True, True, "VDS_E_VOLUME_TEMPORARILY_DISMOUNTED"),
        # row 3 before 4: no support and a path
        (("no-permanent-dismount",), "M", "E", None, True, True, "VDS_E_NOT_SUPPORTED"),
        # row 4
        ((), "M", "E", None, False, True, "VDS_E_VOLUME_HAS_PATH"),
        # row 5
        ((), "P", None, None, False, False, "VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"),
        ((), "P", None, None, True, False, "VDS_E_VOLUME_PERMANENTLY_DISMOUNTED"),
        # row 6
        ((), "P", None, None, False, True, "S_OK"),
        # row 7 forced with a cwd holder
        ((), "M", "E", "cwd", True, False, "S_OK"),
        # row 8 idle, bForce FALSE
        (("readonly",), "M", None, None, False, True, "S_OK"),
        (("hidden",), "M", None, None, True, True, "S_OK"),
    ],
)
def test_dismount_check_order(world, roles, state, letter, holder, force, permanent, want) -> None:
    v = world.new("M", letter=letter, roles=roles)
    h = world.holder(v, holder) if holder else None
    if state == "T":
        v.dismount()
    elif state == "P":
        v.dismount(permanent=True)
    before = {"M": "M", "T": "T", "P": "P"}[state]
    paths = v.query_access_paths()
    com = VdsVolume(v)
    hr = com.Dismount(force, permanent)
    assert hr == E[want], f"got 0x{hr:08X} ({com.last_error})"
    if hr != S_OK:
        world.kit.expect(v, before, paths)
    else:
        world.kit.expect(v, "P" if permanent else "T", paths)
        if h is not None:
            assert h.errno_of("listcwd" if holder == "cwd" else "read") in STALE_ERRNOS


def test_dismount_permanent_flag_is_fsynced_in_the_trailer(world) -> None:
    v = world.new()
    assert not read_metadata(v.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED
    assert VdsVolume(v).Dismount(False, True) == S_OK
    assert read_metadata(v.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED
    world.kit.assert_fsck_clean(v.image)


def test_safe_dismount_keeps_data_and_leaves_a_clean_image(world) -> None:
    v = world.new(letter="E")
    world.kit.write_file(os.path.join(world.root, "drives", "E", "a.txt"), b"payload")
    assert VdsVolume(v).Dismount(False, False) == S_OK
    world.kit.assert_fsck_clean(v.image)
    assert v.mount() == S_OK
    assert world.kit.read_file(os.path.join(v.mount_path, "a.txt")) == b"payload"


# ====================================================================================== §5.4 AddAccessPath

LONG_260 = "C:\\" + "\\".join(["a" * 50] * 5) + "\\" + "b" * 2  # 3 + 254 + 1 + 2 = 260
LONG_259 = LONG_260[:-1]
assert len(LONG_260) == 260 and len(LONG_259) == 259


def _add_world(world: World, *, state="M", roles=(), letter=None, other=False, own_folder=False,
               other_state="M") -> tuple[Volume, Volume | None]:
    """v (the subject) and optionally w (another volume with F: and C:\\mnt\\o), plus the directories."""
    world.folder("d")
    world.folder("full")
    with open(os.path.join(world.mnt, "full", ".hidden"), "w"):
        pass
    world.folder("sub")
    os.mkdir(os.path.join(world.mnt, "sub", "inner"))
    with open(os.path.join(world.mnt, "file.txt"), "w") as f:
        f.write("x")
    os.makedirs(os.path.join(world.kit.tmp_path, "hostdir"), exist_ok=True)
    with open(os.path.join(world.kit.tmp_path, "hostfile"), "w"):
        pass
    w = None
    if other:
        w = world.new("M", letter="F", folders=("o",))
        if other_state == "T":
            w.dismount()
    v = world.new("M", letter=letter, folders=("s",) if own_folder else (), roles=roles)
    if state == "T":
        v.dismount()
    elif state == "P":
        for p in v.query_access_paths():
            v.delete_access_path(p)
        v.dismount(permanent=True)
    return v, w


def _fill(world: World, v: Volume, w: Volume | None, path: str | None) -> str | None:
    if path is None:
        return None
    return path.format(
        guid=str(v.id), GUID=str(v.id).upper(), wguid=str(w.id) if w else "", root=world.root,
        tmp=str(world.kit.tmp_path), Wmp=w.mount_path if w else "",
    )


ADD_CASES = [
    # (id, setup, path, expected code, expected paths of v afterwards or None to skip)
    ("1 empty", {}, "", "E_INVALIDARG"),
    ("1 NULL", {}, None, "E_INVALIDARG"),
    ("1 260 chars", {}, LONG_260, "E_INVALIDARG"),
    ("1 260 chars beats hidden", {"roles": ("hidden",)}, LONG_260, "E_INVALIDARG"),
    ("1 259 chars is a path (missing)", {}, LONG_259, "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ("2 own GUID path", {}, "\\\\?\\Volume{{{guid}}}\\", "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED"),
    ("2 GUID path without backslash", {}, "\\\\?\\Volume{{{GUID}}}", "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED"),
    ("2 other's GUID path", {"other": True}, "\\\\?\\Volume{{{wguid}}}\\", "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED"),
    ("2 GUID before hidden", {"roles": ("hidden",)}, "\\\\?\\Volume{{{guid}}}\\",
     "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED"),
    ("3 hidden letter", {"roles": ("hidden",)}, "G:", "VDS_E_VOLUME_HIDDEN"),
    ("3 hidden folder", {"roles": ("hidden",)}, D, "VDS_E_VOLUME_HIDDEN"),
    ("3 hidden before bad letter", {"roles": ("hidden",)}, "1:", "VDS_E_VOLUME_HIDDEN"),
    ("3 hidden before relative", {"roles": ("hidden",)}, "dir\\x", "VDS_E_VOLUME_HIDDEN"),
    ("4 1:", {}, "1:", "VDS_E_INVALID_DRIVE_LETTER"),
    ("4 E", {}, "E", "VDS_E_INVALID_DRIVE_LETTER"),
    ("4 EE:", {}, "EE:", "VDS_E_INVALID_DRIVE_LETTER"),
    ("4 E:\\\\", {}, "E:\\\\", "VDS_E_INVALID_DRIVE_LETTER"),
    ("4 E:\\\\\\", {}, "E:\\\\\\", "VDS_E_INVALID_DRIVE_LETTER"),
    ("4 :", {}, ":", "VDS_E_INVALID_DRIVE_LETTER"),
    ("4 bad letter before role", {"roles": ("system",)}, "1:", "VDS_E_INVALID_DRIVE_LETTER"),
    ("5 relative dir\\x", {}, "dir\\x", "E_INVALIDARG"),
    ("5 E:dir", {}, "E:dir", "E_INVALIDARG"),
    ("5 UNC", {}, "\\\\server\\share\\x", "E_INVALIDARG"),
    ("5 \\\\?\\C:\\ form", {}, "\\\\?\\C:\\mnt\\d", "E_INVALIDARG"),
    ("5 relative before role", {"roles": ("system",)}, "dir\\x", "E_INVALIDARG"),
    ("6 role letter", {"roles": ("system",)}, "G:", "VDS_E_OPERATION_DENIED"),
    ("6 role before already-has-letter", {"roles": ("boot",), "letter": "E"}, "G:", "VDS_E_OPERATION_DENIED"),
    ("6 role before C:", {"roles": ("pagefile",)}, "C:", "VDS_E_OPERATION_DENIED"),
    ("6 role folder is fine", {"roles": ("system",)}, D, "S_OK", [D + "\\"]),
    ("7 same letter again", {"letter": "E"}, "E:", "VDS_E_OBJECT_EXISTS"),
    ("7 another letter", {"letter": "E"}, "G:\\", "VDS_E_OBJECT_EXISTS"),
    ("7 before taken letter", {"letter": "E", "other": True}, "F:", "VDS_E_OBJECT_EXISTS"),
    ("7 before C:", {"letter": "E"}, "c:", "VDS_E_OBJECT_EXISTS"),
    ("8 letter of another volume", {"other": True}, "F:", "VDS_E_DRIVE_LETTER_NOT_FREE"),
    ("8 letter of another volume, lower case", {"other": True}, "f:\\", "VDS_E_DRIVE_LETTER_NOT_FREE"),
    ("8 letter of a T volume", {"other": True, "other_state": "T"}, "F:", "VDS_E_DRIVE_LETTER_NOT_FREE"),
    ("8 C:", {}, "C:", "VDS_E_DRIVE_LETTER_NOT_FREE"),
    ("8 C:\\", {}, "C:\\", "VDS_E_DRIVE_LETTER_NOT_FREE"),
    ("9 folder in another volume", {"other": True}, "F:\\sub", "VDS_E_NOT_SUPPORTED"),
    ("9 folder in this volume", {"letter": "E"}, "E:\\sub", "VDS_E_NOT_SUPPORTED"),
    ("9 folder in a T volume", {"other": True, "other_state": "T"}, "F:\\sub", "VDS_E_NOT_SUPPORTED"),
    ("9 folder below a mount folder", {"other": True}, "C:\\mnt\\o\\sub", "VDS_E_NOT_SUPPORTED"),
    ("9 host path through a drive letter", {"other": True}, "{root}/drives/F/sub", "VDS_E_NOT_SUPPORTED"),
    ("9 host path inside a mount point", {"other": True}, "{Wmp}/sub", "VDS_E_NOT_SUPPORTED"),
    ("10 unknown drive", {}, "Q:\\x", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ("10 missing folder", {}, "C:\\mnt\\missing", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ("10 missing parent", {}, "C:\\nope\\x", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ("10 parent is a file", {}, "C:\\mnt\\file.txt\\x", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ("10 component too long for the host", {}, "C:\\" + "n" * 256, "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ("10 missing host dir", {}, "{tmp}/missing", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ("11 mount folder of another volume", {"other": True}, "C:\\mnt\\o", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"),
    ("11 ... any case, trailing backslash", {"other": True}, "c:\\MNT\\O\\", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"),
    ("11 ... of a T volume (dangling)", {"other": True, "other_state": "T"}, "C:\\mnt\\o",
     "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"),
    ("11 ... as a host path", {"other": True}, "{root}/drives/C/mnt/o", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"),
    ("11 own mount folder", {"own_folder": True}, "C:\\mnt\\s", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"),
    ("12 a file", {}, "C:\\mnt\\file.txt", "HRESULT_FROM_WIN32(ERROR_DIRECTORY)"),
    ("12 a host file", {}, "{tmp}/hostfile", "HRESULT_FROM_WIN32(ERROR_DIRECTORY)"),
    ("13 non-empty (hidden dotfile)", {}, "C:\\mnt\\full", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"),
    ("13 non-empty (subdirectory)", {}, "C:\\mnt\\sub", "HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY)"),
    ("14 P letter", {"state": "P"}, "G:", "S_OK", ["G:\\"]),
    ("14 P folder", {"state": "P"}, D, "S_OK", [D + "\\"]),
    ("15 T letter", {"state": "T"}, "G:", "S_OK", ["G:\\"]),
    ("15 T folder", {"state": "T", "letter": "E"}, D + "\\", "S_OK", ["E:\\", D + "\\"]),
    ("16 M letter", {}, "g:", "S_OK", ["G:\\"]),
    ("16 M letter with slash", {}, "G:/", "S_OK", ["G:\\"]),
    ("16 M folder with slashes", {"letter": "E"}, "C:/mnt/d/", "S_OK", ["E:\\", D + "\\"]),
    ("16 M host folder", {}, "{tmp}/hostdir", "S_OK", ["{tmp}/hostdir"]),
    ("16 M 259-character folder", {}, LONG_259, "S_OK", [LONG_259 + "\\"]),
]


@pytest.mark.parametrize("case", ADD_CASES, ids=[c[0] for c in ADD_CASES])
def test_add_access_path(world: World, case) -> None:
    name, setup, path, want = case[:4]
    want_paths = case[4] if len(case) > 4 else None
    if name.startswith("16 M 259"):
        os.makedirs(os.path.join(world.svc.root.system_drive, *LONG_259[3:].split("\\")))
    state = setup.get("state", "M")
    v, w = _add_world(world, **setup)
    before = v.query_access_paths()
    w_before = w.query_access_paths() if w else None
    com = VdsVolume(v)
    hr = com.AddAccessPath(_fill(world, v, w, path))
    assert hr == E[want], f"got 0x{hr:08X} ({com.last_error})"
    if hr == S_OK:
        world.kit.expect(v, "T" if state == "T" else "M", [_fill(world, v, w, p) for p in want_paths])
        if state == "P":
            assert not read_metadata(v.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED
    else:
        world.kit.expect(v, state, before)
    if w is not None:
        assert w.query_access_paths() == w_before
    # the directories a failed add looked at are untouched
    assert os.listdir(os.path.join(world.mnt, "full")) == [".hidden"]
    assert os.path.isfile(os.path.join(world.mnt, "file.txt"))


def test_add_access_path_order_letter_first_then_folders(world: World) -> None:
    v = world.new()
    for n in ("b", "a", "c"):
        assert v.add_access_path(world.folder(n)) == S_OK
    assert v.add_access_path("H:") == S_OK
    world.kit.expect(v, "M", ["H:\\", "C:\\mnt\\b\\", "C:\\mnt\\a\\", "C:\\mnt\\c\\"])


def test_add_access_path_from_p_mount_failure_adds_nothing(world: World) -> None:
    v = world.new("P")
    world.folder("d")
    lock = world.kit.lock_image(v.image)
    com = VdsVolume(v)
    assert com.AddAccessPath("G:") == E["VDS_E_OBJECT_STATUS_FAILED"]
    assert com.AddAccessPath(D) == E["VDS_E_OBJECT_STATUS_FAILED"]
    lock.stop()
    world.kit.expect(v, "P", [])
    assert not os.path.lexists(os.path.join(world.root, "drives", "G"))
    assert os.path.isdir(os.path.join(world.mnt, "d")) and not os.path.islink(os.path.join(world.mnt, "d"))
    assert com.AddAccessPath("G:") == S_OK
    world.kit.expect(v, "M", ["G:\\"])


# ====================================================================================== §5.7 DeleteAccessPath

DEL_CASES = [
    # (id, roles, holder, path, force, expected, paths afterwards)
    ("1 empty", (), None, "", False, "E_INVALIDARG", ["E:\\", "C:\\mnt\\s\\"]),
    ("1 NULL", (), None, None, True, "E_INVALIDARG", ["E:\\", "C:\\mnt\\s\\"]),
    ("1 260 chars", (), None, LONG_260, True, "E_INVALIDARG", ["E:\\", "C:\\mnt\\s\\"]),
    ("2 own GUID path", (), None, "\\\\?\\Volume{{{guid}}}\\", True, "VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED",
     ["E:\\", "C:\\mnt\\s\\"]),
    ("3 letter of another volume", (), None, "F:", True, "VDS_E_PATH_NOT_FOUND", ["E:\\", "C:\\mnt\\s\\"]),
    ("3 folder of another volume", (), None, "C:\\mnt\\o", True, "VDS_E_PATH_NOT_FOUND", ["E:\\", "C:\\mnt\\s\\"]),
    ("3 unknown letter", (), None, "Q:\\", True, "VDS_E_PATH_NOT_FOUND", ["E:\\", "C:\\mnt\\s\\"]),
    ("3 a plain directory", (), None, D, True, "VDS_E_PATH_NOT_FOUND", ["E:\\", "C:\\mnt\\s\\"]),
    ("3 bad letter", (), None, "1:", True, "VDS_E_PATH_NOT_FOUND", ["E:\\", "C:\\mnt\\s\\"]),
    ("3 E: equals E:\\", (), None, "e:", False, "S_OK", ["C:\\mnt\\s\\"]),
    ("3 E:\\", (), None, "E:\\", False, "S_OK", ["C:\\mnt\\s\\"]),
    ("3 folder any case, trailing backslash", (), None, "c:\\MNT\\S\\", False, "S_OK", ["E:\\"]),
    ("3 folder with slashes", (), None, "C:/mnt/s", False, "S_OK", ["E:\\"]),
    ("4 role letter", ("system",), None, "E:", True, "VDS_E_OPERATION_DENIED", ["E:\\", "C:\\mnt\\s\\"]),
    ("4 role before in use", ("boot",), "letter", "E:", False, "VDS_E_OPERATION_DENIED", ["E:\\", "C:\\mnt\\s\\"]),
    ("4 role folder is fine", ("pagefile",), None, "C:\\mnt\\s", False, "S_OK", ["E:\\"]),
    ("5 letter in use", (), "letter", "E:", False, "VDS_E_DEVICE_IN_USE", ["E:\\", "C:\\mnt\\s\\"]),
    ("5 letter in use, via the mount point", (), "cwd", "E:\\", False, "VDS_E_DEVICE_IN_USE",
     ["E:\\", "C:\\mnt\\s\\"]),
    ("5 folder in use: bForce ignored", (), "folder", "C:\\mnt\\s", False, "S_OK", ["E:\\"]),
    ("6 letter in use, forced: fds keep working", (), "letter", "E:", True, "S_OK", ["C:\\mnt\\s\\"]),
]


@pytest.mark.parametrize("case", DEL_CASES, ids=[c[0] for c in DEL_CASES])
def test_delete_access_path(world: World, case) -> None:
    _name, roles, holder, path, force, want, after = case
    world.folder("d")
    w = world.new(letter="F", folders=("o",))
    v = world.new(letter="E", folders=("s",), roles=roles)
    s_host = os.path.join(world.mnt, "s")
    h = world.holder(v, holder) if holder else None
    com = VdsVolume(v)
    hr = com.DeleteAccessPath(_fill(world, v, w, path), force)
    assert hr == E[want], f"got 0x{hr:08X} ({com.last_error})"
    world.kit.expect(v, "M", after)
    world.kit.expect(w, "M", ["F:\\", "C:\\mnt\\o\\"])
    if "C:\\mnt\\s\\" not in after:
        st = os.lstat(s_host)
        assert stat.S_ISDIR(st.st_mode) and os.listdir(s_host) == [], "a deleted mount folder is an empty dir again"
    if "E:\\" not in after:
        assert not os.path.lexists(os.path.join(world.root, "drives", "E"))
    if h is not None:
        assert h.errno_of("write still") == 0 and h.errno_of("read") == 0, "open fds keep working"


def test_delete_access_path_restores_folder_mode(world: World) -> None:
    world.folder("m", 0o711)
    v = world.new()
    assert v.add_access_path("C:\\mnt\\m") == S_OK
    assert v.delete_access_path("C:\\mnt\\m") == S_OK
    st = os.lstat(os.path.join(world.mnt, "m"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o711


def test_delete_access_path_in_t_and_p(world: World) -> None:
    v = world.new("M", letter="E", folders=("s",))
    v.dismount()
    com = VdsVolume(v)
    assert com.DeleteAccessPath("C:\\mnt\\s\\", False) == S_OK
    world.kit.expect(v, "T", ["E:\\"])
    assert com.DeleteAccessPath("E:", False) == S_OK
    world.kit.expect(v, "T", [])
    assert com.Dismount(False, True) == E["VDS_E_VOLUME_TEMPORARILY_DISMOUNTED"]
    assert com.Mount() == S_OK and com.Dismount(False, True) == S_OK
    for p in ("E:", "C:\\mnt\\s", "", f"\\\\?\\Volume{{{v.id}}}\\"):
        assert com.DeleteAccessPath(p, True) in (E["VDS_E_PATH_NOT_FOUND"], E["E_INVALIDARG"],
                                                 E["VDS_E_VOLUME_GUID_PATHNAME_NOT_ALLOWED"])
    world.kit.expect(v, "P", [])


# ====================================================================================== §5.8 Mount


def test_mount_rows(world: World) -> None:
    v = world.new("M", letter="E")
    com = VdsVolume(v)
    pid = world.svc.mounter.daemon(str(v.id)).pid
    assert com.Mount() == S_OK  # row 1: nothing changes
    assert world.svc.mounter.daemon(str(v.id)).pid == pid
    world.kit.expect(v, "M", ["E:\\"])
    # row 2 from T: the image cannot be locked
    v.dismount()
    lock = world.kit.lock_image(v.image)
    assert com.Mount() == E["VDS_E_OBJECT_STATUS_FAILED"]
    lock.stop()
    world.kit.expect(v, "T", ["E:\\"])
    assert com.Mount() == S_OK  # row 3
    world.kit.expect(v, "M", ["E:\\"])
    # row 2 from P
    v.delete_access_path("E:")
    v.dismount(permanent=True)
    lock = world.kit.lock_image(v.image)
    assert com.Mount() == E["VDS_E_OBJECT_STATUS_FAILED"]
    lock.stop()
    world.kit.expect(v, "P", [])
    assert com.Mount() == S_OK  # row 4
    world.kit.expect(v, "M", [])
    assert com.QueryVolumeGuidPathnames() == (S_OK, [guid_path(v.id)])


# ====================================================================================== §5.3 Format


@pytest.mark.parametrize(
    "setup,call,want",
    [
        *[({"roles": (r,)}, ("Format", FileSystemType.FAT32, None, 0, True), "VDS_E_OPERATION_DENIED")
          for r in ("system", "boot", "pagefile")],
        ({"roles": ("system", "readonly")}, ("Format", FileSystemType.NTFS, None, 0, True), "VDS_E_OPERATION_DENIED"),
        ({"roles": ("readonly",)}, ("Format", FileSystemType.FAT32, None, 0, True), "VDS_E_MEDIA_WRITE_PROTECTED"),
        ({"roles": ("readonly",)}, ("Format", FileSystemType.NTFS, "a*b", 1, False), "VDS_E_MEDIA_WRITE_PROTECTED"),
        *[({}, ("Format", t, None, 0, False), "VDS_E_INCOMPATIBLE_FILE_SYSTEM")
          for t in (FileSystemType.FAT, FileSystemType.EXFAT, FileSystemType.UDF, FileSystemType.REFS)],
        ({}, ("Format", FileSystemType.EXFAT, "a*b", 3, False), "VDS_E_INCOMPATIBLE_FILE_SYSTEM"),
        *[({}, ("Format", t, None, 0, False), "VDS_E_INVALID_FS_TYPE")
          for t in (FileSystemType.UNKNOWN, FileSystemType.RAW, FileSystemType.CDFS, FileSystemType.CSVFS, 99, -1)],
        *[({}, ("Format", FileSystemType.FAT32, lab, 0, False), "VDS_E_BAD_LABEL")
          for lab in ("TWELVECHARSX", "A*B", "A.B", "A?", "A,B", "A;B", "A:B", "A+B", "A=B", "A[B]", "A<B>", 'A"B',
                      "A\\B", "A/B", "A|B", "A\tB", "A\x01B", "€URO")],
        ({}, ("Format", FileSystemType.FAT32, "TWELVECHARSX", 3, False), "VDS_E_BAD_LABEL"),
        *[({}, ("Format", FileSystemType.FAT32, None, unit, False), code)
          for unit, code in ((1024, "VDS_E_CLUSTER_SIZE_TOO_BIG"), (65536, "VDS_E_CLUSTER_SIZE_TOO_BIG"),
                             (768, "VDS_E_CLUSTER_SIZE_TOO_BIG"), (256, "VDS_E_CLUSTER_SIZE_TOO_SMALL"),
                             (300, "VDS_E_CLUSTER_SIZE_TOO_SMALL"), (1, "VDS_E_CLUSTER_SIZE_TOO_SMALL"))],
        # Exclusive access first (MS-VDS's Format order, docs/cli.md): in use beats every argument check.
        ({"holder": "open"}, ("Format", FileSystemType.FAT32, None, 1024, False), "VDS_E_DEVICE_IN_USE"),
        ({"holder": "open"}, ("Format", FileSystemType.FAT32, None, 0, False), "VDS_E_DEVICE_IN_USE"),
        ({"holder": "letter", "letter": "E"}, ("Format", FileSystemType.FAT32, None, 512, False),
         "VDS_E_DEVICE_IN_USE"),
        ({}, ("Format", FileSystemType.FAT32, "ok label", 512, False), "S_OK"),
        ({}, ("Format", FileSystemType.FAT32, "ÄÖÜ äöü 123", 0, False), "S_OK"),  # 11 bytes in cp437
        ({}, ("Format", FileSystemType.FAT32, "   ", 0, False), "S_OK"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_format_check_order(world: World, setup, call, want) -> None:
    v = world.new("M", letter=setup.get("letter"), roles=setup.get("roles", ()))
    h = world.holder(v, setup["holder"]) if setup.get("holder") else None
    com = VdsVolume(v)
    _, fs_type, label, unit, force = call
    hr = com.Format(fs_type, label, unit, force, True, False)
    assert hr == E[want], f"got 0x{hr:08X} ({com.last_error})"
    world.kit.expect(v, "M")
    if h is not None:
        assert h.errno_of("read") == 0, "a refused format leaves the holder working"
    if hr == S_OK:
        _hr2, fp = com.GetFileSystemProperties()
        want_label = (label or "").strip().upper() if (label or "").strip() else ""
        assert fp.label == want_label and fp.allocation_unit_size == 512


@pytest.mark.parametrize("fs_type,label,unit", [(FileSystemType.FAT32, None, 0), (FileSystemType.NTFS, "a*b", 3),
                                                 (99, None, 1024)])
def test_format_row1_p_comes_first(world: World, fs_type, label, unit) -> None:
    """Row 1 (P) before rows 3–7: a READONLY volume can go offline, and then Format says NOT_ONLINE."""
    v = world.new("P", roles=("readonly",))
    com = VdsVolume(v)
    assert com.Format(fs_type, label, unit, True, True, True) == NR
    assert com.FormatEx("NTFS", 0, unit, label, True, True, False) == NR
    world.kit.expect(v, "P", [])


def test_too_small_cannot_be_created(svc) -> None:
    """Row 6's TOO_SMALL cannot be reached by Format: no volume below the FAT32 minimum can exist."""
    with pytest.raises(VdsError) as ei:
        svc.create_volume(32 * MiB)
    assert ei.value.hresult == E["VDS_E_VOLUME_TOO_SMALL"]
    assert svc.volumes() == []


def test_format_label_is_stored_upper_case(world: World, kit) -> None:
    v = world.new()
    assert v.format(label="data 1") == S_OK
    assert v.get_file_system_properties().label == "DATA 1"
    v.dismount()
    kit.assert_fsck_clean(v.image)
    assert v.label == "DATA 1"


def test_format_row6_sizes(svc, kit) -> None:
    """Row 6: 33 MiB is inside the FAT32 range, 33 GiB above Windows' 32 GiB limit (VOLUME_TOO_BIG)."""
    small = svc.create_volume(33 * MiB)
    assert not small.get_properties().flags & VolumeFlag.FAT32_NOT_SUPPORTED
    assert VdsVolume(small).Format(FileSystemType.FAT32, "S", 0, False, True, False) == S_OK
    big = svc.create_volume(33 * GiB)
    com = VdsVolume(big)
    assert big.get_properties().flags & VolumeFlag.FAT32_NOT_SUPPORTED
    assert com.QueryFileSystemFormatSupport()[1][0].allowed_unit_allocation_sizes == ()
    assert com.Format(FileSystemType.FAT32, None, 0, False, True, False) == E["VDS_E_VOLUME_TOO_BIG"]
    assert com.Format(FileSystemType.FAT32, None, 512, False, True, False) == E["VDS_E_VOLUME_TOO_BIG"]  # 6 before 7
    assert com.Format(FileSystemType.FAT32, "bad*", 0, False, True, False) == E["VDS_E_BAD_LABEL"]  # 5 before 6
    kit.expect(big, "M")


def test_format_row7_large_volume_units(svc, kit) -> None:
    """3 GiB: 512-byte units give too many clusters (TOO_SMALL); 4 KiB is the default."""
    v = svc.create_volume(3 * GiB)
    com = VdsVolume(v)
    _hr, props = com.QueryFileSystemFormatSupport()
    allowed = props[0].allowed_unit_allocation_sizes
    assert 512 not in allowed and 4096 in allowed and props[0].default_unit_allocation_size == 4096
    assert com.Format(FileSystemType.FAT32, None, 512, False, True, False) == E["VDS_E_CLUSTER_SIZE_TOO_SMALL"]
    assert com.Format(FileSystemType.FAT32, None, 2 * max(allowed), False, True, False) == \
        E["VDS_E_CLUSTER_SIZE_TOO_BIG"]
    assert com.Format(FileSystemType.FAT32, None, 8192, False, True, False) == S_OK
    assert v.get_file_system_properties().allocation_unit_size == 8192
    kit.expect(v, "M")


def test_format_full_and_from_t(world: World, kit) -> None:
    v = world.new("M", letter="E", folders=("d",))
    kit.write_file(os.path.join(v.mount_path, "old.txt"), b"old")
    v.dismount()
    com = VdsVolume(v)
    assert com.Format(FileSystemType.FAT32, "full", 0, False, False, False) == S_OK  # bQuickFormat FALSE
    kit.expect(v, "M", ["E:\\", D + "\\"])
    assert kit.errno_of("os.stat(os.environ['P'])", P=os.path.join(v.mount_path, "old.txt")) == errno.ENOENT
    v.dismount()
    kit.assert_fsck_clean(v.image)


# ====================================================================================== §5.9 MF2 / MF3


@pytest.mark.parametrize(
    "name,want",
    [(None, "S_OK"), ("FAT32", "S_OK"), ("fat32", "S_OK"), ("Fat32", "S_OK"),
     ("FAT", "VDS_E_INCOMPATIBLE_FILE_SYSTEM"), ("exFAT", "VDS_E_INCOMPATIBLE_FILE_SYSTEM"),
     ("UDF", "VDS_E_INCOMPATIBLE_FILE_SYSTEM"), ("ReFS", "VDS_E_INCOMPATIBLE_FILE_SYSTEM"),
     ("RAW", "VDS_E_INVALID_FS_TYPE"), ("ext4", "VDS_E_INVALID_FS_TYPE"), ("CDFS", "VDS_E_INVALID_FS_TYPE"),
     ("FAT33", "VDS_E_INVALID_FS_TYPE")],
)
def test_format_ex_names(world: World, name, want) -> None:
    v = world.new()
    com = VdsVolume(v)
    assert com.FormatEx(name, 0x0100, 0, "L", False, True, False) == E[want]
    world.kit.expect(v, "M")


@pytest.mark.parametrize(
    "options,holder,want",
    [(0x0, None, "S_OK"), (0x2, None, "S_OK"), (0x8, None, "S_OK"), (0x4, None, "VDS_E_COMPRESSION_NOT_SUPPORTED"),
     (0xE, None, "VDS_E_COMPRESSION_NOT_SUPPORTED"), (0x10, None, "E_INVALIDARG"), (0x80000000, None, "E_INVALIDARG"),
     (0x13, None, "E_INVALIDARG"), (0x2, "open", "VDS_E_DEVICE_IN_USE"), (0x3, "open", "S_OK")],
)
def test_format_ex2_options(world: World, options, holder, want) -> None:
    v = world.new()
    h = world.holder(v, holder) if holder else None
    com = VdsVolume(v)
    assert com.FormatEx2(None, 0, 0, "L", options) == E[want]
    world.kit.expect(v, "M")
    if h is not None:  # forced: the handle went stale; refused: it still works
        assert (h.errno_of("read") in STALE_ERRNOS) if want == "S_OK" else (h.errno_of("read") == 0)


def test_mf2_mf3_queries(world: World) -> None:
    v = world.new()
    hid = world.new(roles=("hidden",))
    com, hcom = VdsVolume(v), VdsVolume(hid)
    for state in ("M", "T", "P"):
        if state == "T":
            v.dismount()
            hid.dismount()
        elif state == "P":
            v.mount()
            hid.mount()
            v.dismount(permanent=True)
            hid.dismount(permanent=True)
        assert com.GetFileSystemTypeName() == ((S_OK, "FAT32") if state != "P" else (NR, None))
        hr, props = com.QueryFileSystemFormatSupport()
        assert hr == S_OK and props[0].name == "FAT32" and int(props[0].flags) == 0x5
        assert props[0].default_unit_allocation_size == 512 and tuple(props[0].allowed_unit_allocation_sizes) == (512,)
        assert com.QueryVolumeGuidPathnames() == (S_OK, [f"\\\\?\\Volume{{{str(v.id).lower()}}}\\"])
        assert hcom.QueryVolumeGuidPathnames() == (S_OK, [])
        assert com.QueryReparsePoints() == (S_OK, [])
        world.kit.expect(v, state)
        world.kit.expect(hid, state)


def test_offline_volume_rows(world: World) -> None:
    cases = [
        ({"roles": ("no-permanent-dismount",), "letter": "E"}, "VDS_E_NOT_SUPPORTED", "M"),  # 3 before 4
        ({"roles": ("system",), "letter": "E"}, "VDS_E_NOT_SUPPORTED", "M"),
        ({"folders": ("d",)}, "VDS_E_VOLUME_HAS_PATH", "M"),
    ]
    for kw, want, end in cases:
        v = world.new(**kw)
        assert VdsVolume(v).OfflineVolume() == E[want]
        world.kit.expect(v, end)
        v.delete(force=True)
    v = world.new()
    h = world.holder(v, "cwd")
    assert VdsVolume(v).OfflineVolume() == S_OK  # forced: in use does not matter
    world.kit.expect(v, "P")
    assert h.errno_of("listcwd") in STALE_ERRNOS
    assert VdsVolume(v).OfflineVolume() == S_OK
    world.kit.expect(v, "P")


# ====================================================================================== §5.11 Set/ClearFileSystemFlags


@pytest.mark.parametrize(
    "state,roles,method,flags,want,end",
    [
        ("M", ("hidden",), "Set", 0x2, "VDS_E_INVALID_OPERATION", "M"),  # 1 before 2
        ("P", ("hidden",), "Clear", 0x1, "VDS_E_INVALID_OPERATION", "P"),  # 1 before 3
        ("T", ("hidden",), "Set", 0x1, "VDS_E_INVALID_OPERATION", "T"),  # 1 before 4: no remount
        ("M", (), "Set", 0x2, "VDS_E_INVALID_FS_FLAG", "M"),
        ("M", (), "Clear", 0x80000000, "VDS_E_INVALID_FS_FLAG", "M"),
        ("P", (), "Set", 0x3, "VDS_E_INVALID_FS_FLAG", "P"),  # 2 before 3
        ("T", (), "Set", 0x4, "VDS_E_INVALID_FS_FLAG", "T"),  # 2 before 4: no remount
        ("P", (), "Set", 0x1, "VDS_E_VOLUME_NOT_ONLINE", "P"),  # 3 before 5
        ("P", (), "Clear", 0x0, "VDS_E_VOLUME_NOT_ONLINE", "P"),
        ("T", (), "Set", 0x1, "VDS_E_NOT_SUPPORTED", "M"),  # 4 then 5
        ("T", (), "Clear", 0x1, "S_OK", "M"),  # 4 then 6
        ("M", (), "Set", 0x1, "VDS_E_NOT_SUPPORTED", "M"),
        ("M", ("readonly",), "Set", 0x1, "VDS_E_NOT_SUPPORTED", "M"),
        ("M", (), "Clear", 0x1, "S_OK", "M"),
        ("M", (), "Set", 0x0, "S_OK", "M"),
        ("M", (), "Clear", 0x0, "S_OK", "M"),
    ],
)
def test_file_system_flags(world: World, state, roles, method, flags, want, end) -> None:
    v = world.new(state, roles=roles)
    com = VdsVolume(v)
    hr = getattr(com, f"{method}FileSystemFlags")(flags)
    assert hr == E[want], f"got 0x{hr:08X} ({com.last_error})"
    world.kit.expect(v, end)

"""The FAT32 engine: directories, files and their life cycle on one image descriptor.

``FatFileSystem`` works on an open file descriptor and the byte size of the file-system region; it knows
nothing of FUSE or VDS. It is not thread-safe: callers serialize through ``fs.lock``.

Crash ordering (docs/fat32-notes.md §4, §13): data is written first, then the FAT, then the directory entry. A directory
entry that references clusters is never written before the FAT that allocates them; references are removed
from directories before the FAT frees the clusters. A crash therefore loses only unsynced data and leaves at
worst lost clusters, which ``check(repair=True)`` frees.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat as stat_mod
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import UnsupportedFileSystemError, fs_error
from . import names as N
from .chain import Chain
from .dirent import DELETED, ENTRY_SIZE, RawEntry, decode_time, encode_time, pack_entry
from .layout import (
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_HIDDEN,
    ATTR_LFN,
    ATTR_READ_ONLY,
    ATTR_SYSTEM,
    ATTR_VOLUME_ID,
    BS_DIRTY,
    FAT_EOC,
    build_fsinfo,
    decode_label,
    normalize_label,
    parse_boot_sector,
    parse_fsinfo,
)
from .sparse import zero_range
from .table import FatTable, _pwrite_all

log = logging.getLogger(__name__)

MAX_FILE_SIZE = 0xFFFFFFFF
MAX_DIR_SLOTS = 65536
SETTABLE_ATTRS = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_ARCHIVE


class Stat(NamedTuple):
    """What the engine knows about a file or directory (a tuple: built on every getattr, so built cheaply)."""

    is_dir: bool
    size: int
    attr: int
    mtime_ns: int
    ctime_ns: int  # creation time (FAT has no change time)
    atime_ns: int
    cluster: int
    ino: int  # see Node.ino

    @property
    def mode(self) -> int:
        if self.is_dir:
            return stat_mod.S_IFDIR | (0o555 if self.attr & ATTR_READ_ONLY else 0o755)
        return stat_mod.S_IFREG | (0o444 if self.attr & ATTR_READ_ONLY else 0o644)


@dataclass(frozen=True, slots=True)
class StatFs:
    cluster_size: int
    total_clusters: int
    free_clusters: int
    name_max: int = 255


class Node:
    """One file or directory. Identity is stable across renames while the file system is open.

    ``ino`` numbers the node for as long as the file system is open (the root is 1): every spelling of a name
    resolves to the one node, so to one inode number, and no two live nodes share one. FAT stores no inode
    numbers; like the kernel's vfat (``iunique``), the numbers are not kept across mounts.
    """

    __slots__ = (
        "adate",
        "attr",
        "cdate",
        "chain",
        "cluster",
        "ctenth",
        "ctime",
        "deleted",
        "dir",
        "dirty",
        "ino",
        "mtime_ns",
        "name",
        "nslots",
        "ntres",
        "parent",
        "short",
        "size",
        "slot",
        "wdate",
        "wtime",
    )

    name: str
    short: bytes
    ntres: int
    attr: int
    cluster: int
    size: int
    ctenth: int
    ctime: int
    cdate: int
    adate: int
    wtime: int
    wdate: int
    slot: int
    nslots: int
    ino: int
    parent: Node | None
    chain: Chain | None
    dir: DirState | None
    dirty: bool
    deleted: bool
    mtime_ns: int | None

    def __init__(self) -> None:
        # Exact time of the last write while open: FAT keeps 2 s, but a reader that caches pages by mtime
        # (the kernel, for a second spelling of a name) must see every change.
        self.mtime_ns: int | None = None
        self.chain: Chain | None = None
        self.dir: DirState | None = None
        self.dirty = False
        self.deleted = False
        self.parent: Node | None = None

    @property
    def is_dir(self) -> bool:
        return bool(self.attr & ATTR_DIRECTORY)

    def packed_entry(self) -> bytes:
        """The node's 32-byte short entry as it goes to disk."""
        return pack_entry(
            self.short, self.attr, self.ntres, self.ctenth, self.ctime, self.cdate, self.adate, self.cluster,
            self.wtime, self.wdate, 0 if self.is_dir else self.size,
        )

    def __repr__(self) -> str:
        return f"<Node {self.name!r} cluster={self.cluster} size={self.size}>"


class DirState:
    """In-memory index of a loaded directory: names (case-insensitive), 8.3 aliases and free slots."""

    __slots__ = ("by_key", "by_short", "capacity", "end", "free_end", "free_start", "label_slot")

    def __init__(self) -> None:
        self.by_key: dict[str, Node] = {}
        self.by_short: dict[bytes, Node] = {}
        self.end = 0  # index of the first slot after the last used one (where 0x00 stands)
        self.capacity = 0  # slots in the allocated clusters
        self.free_start: dict[int, int] = {}  # run start -> length, for deleted slots below `end`
        self.free_end: dict[int, int] = {}  # run end -> start
        self.label_slot: int | None = None

    def add_free(self, start: int, length: int) -> None:
        # Merge with neighbouring runs so deleting many entries leaves few runs.
        prev = self.free_end.pop(start, None)
        if prev is not None:
            length += self.free_start.pop(prev)
            start = prev
        nxt = self.free_start.pop(start + length, None)
        if nxt is not None:
            del self.free_end[start + length + nxt]
            length += nxt
        self.free_start[start] = length
        self.free_end[start + length] = start

    def take_free(self, count: int) -> int | None:
        for start, length in self.free_start.items():
            if length >= count:
                del self.free_start[start]
                del self.free_end[start + length]
                if length > count:
                    self.free_start[start + count] = length - count
                    self.free_end[start + length] = start + count
                return start
        return None


def _now_ns() -> int:
    return time.time_ns()


class FatFileSystem:
    """A FAT32 file system in ``[0, region_size)`` of the file descriptor ``fd``."""

    def __init__(self, fd: int, region_size: int, *, writable: bool = True, discard: bool = False) -> None:
        self.fd = fd
        self.writable = writable
        self._clean_on_disk = False
        self.lock = threading.RLock()
        self._closed = False
        try:
            boot = os.pread(fd, 4096, 0)
        except OSError as e:
            raise UnsupportedFileSystemError(f"cannot read the boot sector: {e.strerror}") from e
        info = parse_boot_sector(boot, region_size)
        self.geo = geo = info.geometry
        self.serial = info.serial
        self._bs_label = info.label
        self.was_dirty = info.dirty
        self.cs = geo.cluster_size
        self.fat = FatTable(fd, geo, writable=writable)
        self.fat.discard = discard
        self.was_dirty = self.was_dirty or not self.fat.clean_bit()
        fsinfo = (
            parse_fsinfo(os.pread(fd, geo.bytes_per_sector, geo.fsinfo_sector * geo.bytes_per_sector))
            if geo.fsinfo_sector
            else None
        )
        if self.was_dirty or fsinfo is None or fsinfo[0] == 0xFFFFFFFF:
            self.fat.load_free_info(None, fsinfo[1] if fsinfo else None)
        else:
            self.fat.load_free_info(fsinfo[0], fsinfo[1])
        self._dirty_nodes: set[Node] = set()
        self._inos = itertools.count(2)
        root = Node()
        root.ino = 1
        root.name, root.short, root.ntres = "", b"           ", 0
        root.attr = ATTR_DIRECTORY
        root.cluster, root.size = geo.root_cluster, 0
        root.ctenth = root.ctime = root.cdate = root.adate = root.wtime = root.wdate = 0
        root.slot = root.nslots = -1
        self.root = root
        try:
            self._load_dir(root)
        except OSError as e:
            raise UnsupportedFileSystemError(f"unsupported or damaged file system: root directory: {e}") from e
        if writable:
            self._mark_dirty()

    # ================================================================= life cycle

    @classmethod
    def open_path(cls, path: str, *, writable: bool = True, region_size: int | None = None) -> FatFileSystem:
        """Open a bare file-system image (no simvol trailer) — for tests and tools."""
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        try:
            size = region_size if region_size is not None else os.fstat(fd).st_size
            fs = cls(fd, size, writable=writable)
        except BaseException:
            os.close(fd)
            raise
        fs._owns_fd = True
        return fs

    _owns_fd = False

    def __enter__(self) -> FatFileSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mark_dirty(self) -> None:
        """Set both dirty indicators and make them durable before the first data write (docs/fat32-notes.md §4)."""
        bps = self.geo.bytes_per_sector
        bs = bytearray(os.pread(self.fd, bps, 0))
        bs[0x41] |= BS_DIRTY
        _pwrite_all(self.fd, bytes(bs), 0)
        self.fat.set_clean_bit(False)
        self.fat.flush()
        os.fsync(self.fd)
        self._clean_on_disk = False

    def flush(self) -> None:
        """Write every pending FAT change, then every pending directory entry (in that order)."""
        self._check_open()
        self.fat.flush()
        if self._dirty_nodes:
            nodes, self._dirty_nodes = self._dirty_nodes, set()
            try:
                for node in nodes:
                    if node.dirty and not node.deleted:
                        self._write_entry(node)
            except BaseException:
                # A host write failed (ENOSPC, EIO): the entries not yet written stay pending for the next flush.
                self._dirty_nodes |= {n for n in nodes if n.dirty and not n.deleted}
                raise

    def sync(self) -> None:
        """flush() and make it durable."""
        self.flush()
        if self.writable:
            os.fdatasync(self.fd)

    def close(self, *, clean: bool = True) -> None:
        """Flush, write FSInfo, clear both dirty markers, refresh the backups, fsync (docs/fat32-notes.md §4)."""
        if self._closed:
            return
        try:
            if self.writable and clean and not self._clean_on_disk:
                self.flush()
                self._mark_clean()
        finally:
            self._closed = True
            if self._owns_fd:
                os.close(self.fd)

    def abandon(self) -> None:
        """Forget everything unflushed and leave the image as it is (dirty); for forced dismounts."""
        self._closed = True
        if self._owns_fd:
            os.close(self.fd)

    def _mark_clean(self) -> None:
        geo, fd = self.geo, self.fd
        bps = geo.bytes_per_sector
        self.fat.set_clean_bit(True)
        self.fat.flush()
        os.fsync(fd)  # everything before the clean markers
        fsinfo = bytearray(os.pread(fd, bps, geo.fsinfo_sector * bps))
        fsinfo[:512] = build_fsinfo(self.fat.free_count, self.fat.next_free)
        if geo.fsinfo_sector:  # 0: the boot sector names no FSInfo sector; write none
            _pwrite_all(fd, bytes(fsinfo), geo.fsinfo_sector * bps)
        bs = bytearray(os.pread(fd, bps, 0))
        bs[0x41] &= ~BS_DIRTY & 0xFF
        _pwrite_all(fd, bytes(bs), 0)
        if geo.backup_boot_sector and geo.backup_boot_sector < geo.reserved_sectors:
            _pwrite_all(fd, bytes(bs), geo.backup_boot_sector * bps)
            if geo.fsinfo_sector and geo.backup_boot_sector + geo.fsinfo_sector < geo.reserved_sectors:
                _pwrite_all(fd, bytes(fsinfo), (geo.backup_boot_sector + geo.fsinfo_sector) * bps)
        os.fsync(fd)
        self.was_dirty = False
        self._clean_on_disk = True

    def _check_open(self) -> None:
        if self._closed:
            raise fs_error(errno.EIO, detail="file system is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if not self.writable:
            raise fs_error(errno.EROFS)
        if self._clean_on_disk:  # the first change after a clean checkpoint marks the volume dirty again
            self._mark_dirty()

    def mark_clean(self) -> None:
        """Flush and mark the volume clean on disk while staying open (safe dismount's checkpoint).

        The next change marks it dirty again, so a dismount that must roll back needs no reopen.
        """
        self._check_open()
        if self.writable:
            self.flush()
            self._mark_clean()

    # ================================================================= directories: load and slots

    def _dir_chain(self, node: Node) -> Chain:
        if node.chain is None:
            node.chain = Chain(list(self.fat.walk(node.cluster)))
        return node.chain

    def _load_dir(self, node: Node) -> DirState:
        if node.dir is not None:
            return node.dir
        chain = self._dir_chain(node)
        if chain.total == 0:
            raise fs_error(errno.EIO, detail=f"directory {node.name!r} has no clusters")
        st = DirState()
        st.capacity = min(chain.total * self.cs // ENTRY_SIZE, MAX_DIR_SLOTS)
        cs = self.cs
        parts = []
        for start, length in chain.extents:
            parts.append(os.pread(self.fd, length * cs, self.geo.cluster_offset(start)))
        buf = b"".join(parts)
        is_root = node is self.root
        run = N.LongNameRun()
        run_start = -1
        end = st.capacity
        for i in range(st.capacity):
            off = i * ENTRY_SIZE
            b0 = buf[off]
            if b0 == 0:
                end = i
                break
            if b0 == DELETED:
                if run_start < 0:
                    run_start = i
                run.gap(i)  # a deleted slot breaks any pending long name
                continue
            if run_start >= 0:
                st.add_free(run_start, i - run_start)
                run_start = -1
            attr = buf[off + 11]
            if attr & 0x3F == ATTR_LFN:
                run.slot(i, buf[off : off + 32])
                continue
            raw = RawEntry.parse(buf, off)
            long_name, first, _ = run.entry(i, raw.name)
            nslots = i - first + 1
            if attr & ATTR_VOLUME_ID:
                if is_root and st.label_slot is None and not attr & ATTR_DIRECTORY:
                    st.label_slot = i
                continue
            if raw.name in (b".          ", b"..         "):
                continue
            child = Node()
            child.ino = next(self._inos)
            child.short = raw.name
            child.ntres = raw.ntres & (N.NTRES_LOWER_BASE | N.NTRES_LOWER_EXT)
            child.name = long_name or N.short_display(raw.name, raw.ntres)
            child.attr = raw.attr
            child.cluster = raw.cluster if raw.cluster <= self.fat.max_cluster else 0
            child.size = 0 if raw.attr & ATTR_DIRECTORY else raw.size
            child.ctenth, child.ctime, child.cdate = raw.ctime_tenth, raw.ctime, raw.cdate
            child.adate, child.wtime, child.wdate = raw.adate, raw.wtime, raw.wdate
            child.parent = node
            child.slot = i - nslots + 1  # first slot of the entry (its first LFN slot), as _new_node sets it
            child.nslots = nslots
            st.by_key.setdefault(N.name_key(child.name), child)
            st.by_short.setdefault(raw.name, child)
        if run_start >= 0:
            st.add_free(run_start, end - run_start)
        st.end = end
        node.dir = st
        return st

    def _slot_runs(self, node: Node, slot: int, count: int) -> Iterator[tuple[int, int]]:
        """(disk offset, bytes) pieces covering ``count`` slots from ``slot`` of a directory."""
        chain = self._dir_chain(node)
        per = self.cs // ENTRY_SIZE
        pos = slot
        remaining = count
        while remaining:
            ci, within = divmod(pos, per)
            take = min(per - within, remaining)
            cl = chain.cluster(ci)
            yield self.geo.cluster_offset(cl) + within * ENTRY_SIZE, take * ENTRY_SIZE
            pos += take
            remaining -= take

    def _write_slots(self, node: Node, slot: int, data: bytes) -> None:
        # A directory entry never reaches the disk before the FAT it depends on.
        if self.fat.has_dirty:
            self.fat.flush()
        view = memoryview(data)
        for off, ln in self._slot_runs(node, slot, len(data) // ENTRY_SIZE):
            _pwrite_all(self.fd, view[:ln], off)
            view = view[ln:]

    def _write_entry(self, node: Node) -> None:
        node.dirty = False
        self._write_slots(_parent(node), node.slot + node.nslots - 1, node.packed_entry())

    def _alloc_slots(self, d: Node, count: int) -> int:
        st = self._load_dir(d)
        start = st.take_free(count)
        if start is not None:
            return start
        if st.end + count > st.capacity:
            self._grow_dir(d, st.end + count)
        start = st.end
        st.end += count
        return start

    def _grow_dir(self, d: Node, slots_needed: int) -> None:
        st = d.dir
        assert st is not None
        per = self.cs // ENTRY_SIZE
        if slots_needed > MAX_DIR_SLOTS:
            raise fs_error(errno.ENOSPC, d.name, "directory is full (65,536 entries)")
        more = -(-(slots_needed - st.capacity) // per)
        chain = self._dir_chain(d)
        new = self.fat.allocate(more, chain.last)
        for start, length in new:  # new directory clusters must read as zeros (docs/fat32-notes.md §7)
            zero_range(self.fd, self.geo.cluster_offset(start), length * self.cs)
        chain.extend(new)
        st.capacity = min(chain.total * per, MAX_DIR_SLOTS)

    def _free_slots(self, d: Node, start: int, count: int) -> None:
        st = d.dir
        assert st is not None
        # Mark each slot deleted, keeping the rest of its bytes (as Windows does).
        buf = bytearray(b"".join(os.pread(self.fd, ln, off) for off, ln in self._slot_runs(d, start, count)))
        for i in range(count):
            buf[i * ENTRY_SIZE] = DELETED
        self._write_slots(d, start, bytes(buf))
        st.add_free(start, count)

    # ================================================================= path resolution

    @staticmethod
    def _split(path: str) -> list[str]:
        return [p for p in path.split("/") if p]

    def _lookup(self, d: Node, name: str) -> Node | None:
        st = self._load_dir(d)
        node = st.by_key.get(N.name_key(name))
        if node is None and len(name) <= 12:  # longer names can never be an 8.3 alias
            key = N.short_key(name)
            if key is not None:
                node = st.by_short.get(key)
        return node

    def resolve(self, path: str) -> Node:
        """The node at ``path`` ('/'-separated, relative to the root). ENOENT / ENOTDIR as POSIX."""
        node = self.find(path)
        if node is None:
            raise fs_error(errno.ENOENT, path)
        return node

    def find(self, path: str) -> Node | None:
        """``resolve`` that answers None for a missing entry instead of raising (ENOTDIR still raises): the
        mount's lookup misses once per file created, and an exception there cost a tenth of a create."""
        self._check_open()
        node = self.root
        for part in self._split(path):
            if not node.is_dir:
                raise fs_error(errno.ENOTDIR, path)
            found = self._lookup(node, part)
            if found is None:
                if len(part) > N.MAX_NAME_UNITS // 2 and N.utf16_units(part) > N.MAX_NAME_UNITS:
                    raise fs_error(errno.ENAMETOOLONG, path)  # no FAT name can be this long (as create says)
                return None
            node = found
        return node

    def _parent_and_name(self, path: str) -> tuple[Node, str]:
        parts = self._split(path)
        if not parts:
            raise fs_error(errno.EBUSY, path, "the root directory")
        parent = self.resolve("/".join(parts[:-1]))
        if not parent.is_dir:
            raise fs_error(errno.ENOTDIR, path)
        return parent, parts[-1]

    # ================================================================= queries

    def stat_node(self, node: Node) -> Stat:
        # An entry's invalid (e.g. zero) date reads as 1980-01-01 (docs/fat32-notes.md §8); only the root has no date
        # at all.
        mtime = decode_time(node.wdate, node.wtime) if node.wdate or node is not self.root else 0
        if node.mtime_ns is not None and mtime <= node.mtime_ns < mtime + 2_000_000_000:
            mtime = node.mtime_ns
        ctime = decode_time(node.cdate, node.ctime, node.ctenth) if node.cdate else mtime
        atime = decode_time(node.adate) if node.adate else mtime
        size = node.size
        if node.is_dir:
            size = (node.chain.total if node.chain else 1) * self.cs
        return Stat(node.is_dir, size, node.attr, mtime, ctime, atime, node.cluster, node.ino)

    def stat(self, path: str) -> Stat:
        return self.stat_node(self.resolve(path))

    def listdir(self, path: str = "/") -> list[str]:
        node = self.resolve(path)
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR, path)
        st = self._load_dir(node)
        return [n.name for n in sorted(st.by_key.values(), key=lambda n: n.slot)]

    def scandir(self, path: str = "/") -> list[tuple[str, Stat]]:
        node = self.resolve(path)
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR, path)
        st = self._load_dir(node)
        return [(n.name, self.stat_node(n)) for n in sorted(st.by_key.values(), key=lambda n: n.slot)]

    def scandir_modes(self, path: str = "/") -> list[tuple[str, int, int]]:
        """(name, st_mode, inode number) of each entry: what readdir needs, without decoding timestamps."""
        node = self.resolve(path)
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR, path)
        st = self._load_dir(node)
        out = []
        for n in sorted(st.by_key.values(), key=lambda n: n.slot):
            if n.attr & ATTR_DIRECTORY:
                out.append((n.name, stat_mod.S_IFDIR | (0o555 if n.attr & ATTR_READ_ONLY else 0o755), n.ino))
            else:
                out.append((n.name, stat_mod.S_IFREG | (0o444 if n.attr & ATTR_READ_ONLY else 0o644), n.ino))
        return out

    def statfs(self) -> StatFs:
        return StatFs(self.cs, self.geo.cluster_count, self.fat.free_count)

    def short_name(self, path: str) -> str:
        node = self.resolve(path)
        return N.short_display(node.short, 0)

    # ================================================================= create / mkdir

    def _new_node(self, parent: Node, name: str, attr: int, cluster: int) -> Node:
        st = self._load_dir(parent)
        sn = N.make_short_name(name, st.by_short)
        node = Node()
        node.ino = next(self._inos)
        node.name, node.short, node.ntres = name, sn.raw, sn.ntres
        node.attr, node.cluster, node.size = attr, cluster, 0
        date, tim, tenth = encode_time(_now_ns())
        node.cdate, node.ctime, node.ctenth = date, tim, tenth
        node.wdate, node.wtime, node.adate = date, tim, date
        node.parent = parent
        node.nslots = 1 + (N.lfn_slot_count(name) if sn.needs_lfn else 0)
        node.slot = self._alloc_slots(parent, node.nslots)
        self._write_node_slots(node, sn.needs_lfn)
        st.by_key[N.name_key(name)] = node
        st.by_short[sn.raw] = node
        return node

    def _write_node_slots(self, node: Node, with_lfn: bool) -> None:
        data = b""
        if with_lfn:
            data = b"".join(N.lfn_slots(node.name, N.lfn_checksum(node.short)))
        data += node.packed_entry()
        node.dirty = False
        self._write_slots(_parent(node), node.slot, data)

    def _prepare_new(self, path: str) -> tuple[Node, str]:
        self._check_writable()
        parent, name = self._parent_and_name(path)
        N.validate_name(name)
        if self._lookup(parent, name) is not None:
            raise fs_error(errno.EEXIST, path)
        return parent, name

    def create(self, path: str, attr: int = ATTR_ARCHIVE) -> Node:
        """Create an empty file; EEXIST if the name or its 8.3 alias exists in any case."""
        parent, name = self._prepare_new(path)
        return self._new_node(parent, name, (attr & SETTABLE_ATTRS) | ATTR_ARCHIVE, 0)

    def mkdir(self, path: str) -> Node:
        parent, name = self._prepare_new(path)
        (start, _), = self.fat.allocate(1)
        try:
            # The whole cluster is written: '.', '..' and zeros (stale bytes would become phantom entries).
            cl = bytearray(self.cs)
            date, tim, tenth = encode_time(_now_ns())
            dotdot = 0 if parent is self.root else parent.cluster  # '..' of a first-level directory is 0
            for off, raw, cluster in ((0, b".          ", start), (32, b"..         ", dotdot)):
                cl[off : off + 32] = RawEntry(
                    raw, ATTR_DIRECTORY, 0, tenth, tim, date, date, cluster, tim, date, 0
                ).pack()
            _pwrite_all(self.fd, bytes(cl), self.geo.cluster_offset(start))
            node = self._new_node(parent, name, ATTR_DIRECTORY, start)
        except BaseException:
            self.fat.free_extents([(start, 1)])
            raise
        node.chain = Chain([(start, 1)])
        st = DirState()
        st.capacity = self.cs // ENTRY_SIZE
        st.end = 2
        node.dir = st
        return node

    # ================================================================= remove

    def _remove_entry(self, node: Node) -> None:
        parent = node.parent
        assert parent is not None and parent.dir is not None
        self._free_slots(parent, node.slot, node.nslots)
        st = parent.dir
        if st.by_key.get(N.name_key(node.name)) is node:
            del st.by_key[N.name_key(node.name)]
        if st.by_short.get(node.short) is node:
            del st.by_short[node.short]
        self._dirty_nodes.discard(node)
        node.dirty = False

    def _release_clusters(self, node: Node) -> None:
        if node.cluster:
            chain = self._dir_chain(node) if node.is_dir else self._file_chain(node)
            self.fat.free_extents(chain.extents)
        node.chain = Chain()
        node.cluster = 0

    def unlink(self, path: str) -> None:
        self._check_writable()
        node = self.resolve(path)
        if node is self.root:
            raise fs_error(errno.EBUSY, path)
        if node.is_dir:
            raise fs_error(errno.EISDIR, path)
        if node.attr & ATTR_READ_ONLY:
            raise fs_error(errno.EACCES, path, "the file is read-only")
        self.unlink_node(node)

    def unlink_node(self, node: Node) -> None:
        """Remove a file's entry now and its clusters after (docs/fat32-notes.md crash ordering)."""
        self._remove_entry(node)
        self._release_clusters(node)
        node.deleted = True

    def rmdir(self, path: str) -> None:
        self._check_writable()
        node = self.resolve(path)
        if node is self.root:
            raise fs_error(errno.EBUSY, path, "the root directory")
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR, path)
        if self._load_dir(node).by_key:
            raise fs_error(errno.ENOTEMPTY, path)
        if node.attr & ATTR_READ_ONLY:
            raise fs_error(errno.EACCES, path, "the directory is read-only")
        self._remove_entry(node)
        self._release_clusters(node)
        node.deleted = True

    # ================================================================= rename

    def rename(self, old: str, new: str) -> None:
        """POSIX rename: replaces an existing target (a file by a file, an empty directory by a directory)."""
        self._check_writable()
        src = self.resolve(old)
        if src is self.root:
            raise fs_error(errno.EBUSY, old)
        dparent, dname = self._parent_and_name(new)
        N.validate_name(dname)
        # A directory cannot move below itself.
        p: Node | None = dparent
        while p is not None:
            if p is src:
                raise fs_error(errno.EINVAL, new, "cannot move a directory into itself")
            p = p.parent
        target = self._lookup(dparent, dname)
        if target is src:
            if src.name == dname:
                return
            target = None  # a change of case (or to the alias's long form) of the same entry
        if target is not None:
            if target.is_dir:
                if not src.is_dir:
                    raise fs_error(errno.EISDIR, new)
                if self._load_dir(target).by_key:
                    raise fs_error(errno.ENOTEMPTY, new)
            elif src.is_dir:
                raise fs_error(errno.ENOTDIR, new)
        old_parent = src.parent
        assert old_parent is not None
        # Reserve the new slots first: a full directory (ENOSPC) must leave source and target untouched.
        st = self._load_dir(dparent)
        sn = N.make_short_name(dname, lambda raw: st.by_short.get(raw, src) not in (src, target))
        nslots = 1 + (N.lfn_slot_count(dname) if sn.needs_lfn else 0)
        slot = self._alloc_slots(dparent, nslots)
        # 1. drop the old entry, 2. drop the replaced target, 3. write the new entry (crash: lost clusters at worst)
        self._remove_entry(src)
        if target is not None:
            self._remove_entry(target)
        src.name, src.short, src.ntres = dname, sn.raw, sn.ntres
        src.parent = dparent
        src.nslots, src.slot = nslots, slot
        self._write_node_slots(src, sn.needs_lfn)
        st.by_key[N.name_key(dname)] = src
        st.by_short[sn.raw] = src
        if src.is_dir and old_parent is not dparent:
            self._write_dotdot(src, dparent)
        if target is not None:
            self._release_clusters(target)
            target.deleted = True

    def _write_dotdot(self, d: Node, parent: Node) -> None:
        off = self.geo.cluster_offset(d.cluster) + ENTRY_SIZE
        raw = bytearray(os.pread(self.fd, ENTRY_SIZE, off))
        pc = 0 if parent is self.root else parent.cluster
        raw[20:22] = ((pc >> 16) & 0xFFFF).to_bytes(2, "little")
        raw[26:28] = (pc & 0xFFFF).to_bytes(2, "little")
        _pwrite_all(self.fd, bytes(raw), off)

    # ================================================================= file data

    def _file_chain(self, node: Node) -> Chain:
        if node.chain is None:
            chain = Chain(list(self.fat.walk(node.cluster)))
            need = max(1, -(-node.size // self.cs))
            if chain.total > need:
                # Clusters past the size are not this file's: a damaged FAT ran its chain on into another file's
                # or a directory's. Never write into them or free them (growth relinks after the last cluster the
                # size covers); check() sorts the rest out.
                log.warning("%s: %d clusters for %d bytes; using the first %d", node.name, chain.total, node.size, need)
                chain.split(need)
            node.chain = chain
        return node.chain

    def open(self, path: str) -> Node:
        """The node of a file for node-based I/O (EISDIR for a directory)."""
        node = self.resolve(path)
        if node.is_dir:
            raise fs_error(errno.EISDIR, path)
        return node

    def read(self, path: str, size: int, offset: int) -> bytes:
        return self.read_node(self.open(path), size, offset)

    def read_node(self, node: Node, size: int, offset: int) -> bytes:
        self._check_open()
        if offset >= node.size or size <= 0:
            return b""
        size = min(size, node.size - offset)
        chain = self._file_chain(node)
        cs = self.cs
        first, skip = divmod(offset, cs)
        nclusters = -(-(skip + size) // cs)
        if first + nclusters > chain.total:
            raise fs_error(errno.EIO, node.name, "cluster chain shorter than the file size")
        parts = []
        remaining = size
        for cl, run in chain.runs(first, nclusters):
            off = self.geo.cluster_offset(cl) + skip
            ln = min(run * cs - skip, remaining)
            parts.append(os.pread(self.fd, ln, off))
            remaining -= ln
            skip = 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, path: str, data: bytes, offset: int) -> int:
        return self.write_node(self.open(path), data, offset)

    def _ensure_clusters(self, node: Node, nbytes: int) -> Chain:
        chain = self._file_chain(node)
        need = -(-nbytes // self.cs)
        if need > chain.total:
            new = self.fat.allocate(need - chain.total, chain.last)
            chain.extend(new)
            if node.cluster == 0:
                node.cluster = chain.first
        return chain

    def _zero(self, node: Node, start: int, end: int) -> None:
        """Make file bytes [start, end) zeros on disk (stale data may sit in reused clusters)."""
        if end <= start:
            return
        chain = self._file_chain(node)
        cs = self.cs
        first, skip = divmod(start, cs)
        count = -(-(skip + end - start) // cs)
        remaining = end - start
        for cl, run in chain.runs(first, count):
            ln = min(run * cs - skip, remaining)
            zero_range(self.fd, self.geo.cluster_offset(cl) + skip, ln)
            remaining -= ln
            skip = 0

    def write_node(self, node: Node, data: bytes | memoryview, offset: int) -> int:
        self._check_writable()
        if node.deleted:
            raise fs_error(errno.ENOENT, node.name)
        length = len(data)
        if length == 0:
            return 0
        end = offset + length
        if end > MAX_FILE_SIZE:
            raise fs_error(errno.EFBIG, node.name, "FAT32 files stop at 4 GiB - 1")
        old_size = node.size
        chain = self._ensure_clusters(node, end)
        if offset > old_size:
            self._zero(node, old_size, offset)
        cs = self.cs
        first, skip = divmod(offset, cs)
        count = -(-(skip + length) // cs)
        view = memoryview(data)
        for cl, run in chain.runs(first, count):
            ln = min(run * cs - skip, len(view))
            _pwrite_all(self.fd, view[:ln], self.geo.cluster_offset(cl) + skip)
            view = view[ln:]
            skip = 0
        if end > node.size:
            node.size = end
        self._touch(node)
        return length

    def _touch(self, node: Node) -> None:
        now = _now_ns()
        date, tim, _ = encode_time(now)
        node.wdate, node.wtime, node.adate = date, tim, date
        node.mtime_ns = now
        node.attr |= ATTR_ARCHIVE
        node.dirty = True
        self._dirty_nodes.add(node)

    def truncate(self, path: str, length: int) -> None:
        self.truncate_node(self.open(path), length)

    def truncate_node(self, node: Node, length: int) -> None:
        self._check_writable()
        if length < 0:
            raise fs_error(errno.EINVAL, node.name)
        if length > MAX_FILE_SIZE:
            raise fs_error(errno.EFBIG, node.name, "FAT32 files stop at 4 GiB - 1")
        old = node.size
        if length > old:
            self._ensure_clusters(node, length)
            self._zero(node, old, length)
            node.size = length
            self._touch(node)
            return
        chain = self._file_chain(node)
        keep = -(-length // self.cs)
        node.size = length
        if keep < chain.total:
            cut = chain.split(keep)
            if keep == 0:
                node.cluster = 0
            # The entry stops referencing the clusters before the FAT frees them.
            self._touch(node)
            self._write_entry(node)
            self._dirty_nodes.discard(node)
            if keep:
                self.fat.set(chain.last, FAT_EOC)
            self.fat.free_extents(cut)
        else:
            self._touch(node)

    # ================================================================= metadata

    def utimens(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        self._check_writable()
        node = self.resolve(path)
        if node is self.root:
            return  # the root has no entry to hold times
        if mtime_ns is not None:
            node.wdate, node.wtime, _ = encode_time(mtime_ns)
            node.mtime_ns = None  # an explicit time reads back as FAT stores it
        if atime_ns is not None:
            node.adate = encode_time(atime_ns)[0]
        node.dirty = True
        self._dirty_nodes.add(node)

    def get_attributes(self, path: str) -> int:
        return self.resolve(path).attr

    def set_attributes(self, path: str, attrs: int) -> None:
        """Set the DOS attributes READONLY, HIDDEN, SYSTEM, ARCHIVE (others are kept as they are)."""
        self._check_writable()
        node = self.resolve(path)
        if node is self.root:
            raise fs_error(errno.EPERM, path, "the root directory has no attributes")
        node.attr = (node.attr & ~SETTABLE_ATTRS) | (attrs & SETTABLE_ATTRS)
        node.dirty = True
        self._dirty_nodes.add(node)

    def fsync_node(self, node: Node | None = None) -> None:
        self.sync()

    # ================================================================= label

    @property
    def label(self) -> str:
        st = self._load_dir(self.root)
        if st.label_slot is not None:
            (off, _), = self._slot_runs(self.root, st.label_slot, 1)
            return decode_label(os.pread(self.fd, 11, off))
        return decode_label(self._bs_label)

    def set_label(self, label: str | None) -> None:
        """Set or clear the volume label in the root entry and the boot sector (and its backup)."""
        self._check_writable()
        raw = normalize_label(label)
        st = self._load_dir(self.root)
        if raw is None:
            if st.label_slot is not None:
                self._free_slots(self.root, st.label_slot, 1)
                st.label_slot = None
        else:
            date, tim, _ = encode_time(_now_ns())
            entry = RawEntry(raw, ATTR_VOLUME_ID | ATTR_ARCHIVE, 0, 0, 0, 0, 0, 0, tim, date, 0).pack()
            if st.label_slot is None:
                st.label_slot = self._alloc_slots(self.root, 1)
            self._write_slots(self.root, st.label_slot, entry)
        field = raw or b"NO NAME    "
        self._bs_label = field
        bps = self.geo.bytes_per_sector
        for sector in (0, self.geo.backup_boot_sector):
            if sector == 0 or sector < self.geo.reserved_sectors:
                _pwrite_all(self.fd, field, sector * bps + 0x47)


def _parent(node: Node) -> Node:
    """The directory holding ``node``; only the root has none, and the root has no entry to write."""
    parent = node.parent
    assert parent is not None, "the root has no directory entry"
    return parent

"""Consistency check and repair, in the spirit of ``fsck.fat`` (docs/fat32-notes.md §14).

Works on the raw image — not through ``FatFileSystem`` — so that a tree too damaged to load can still be
examined. It finds differing FAT copies, broken, looping and cross-linked chains, wrong file sizes, bad start
clusters, non-zero directory sizes, wrong ``.``/``..`` entries, orphaned LFN slots, lost clusters, a wrong
FSInfo free count, a stale backup boot sector and the dirty markers. ``repair=True`` fixes what is safe:
nothing that a file still references is freed, and file contents are never rewritten.
"""

from __future__ import annotations

import logging
import os
import struct
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .dirent import DELETED, ENTRY_SIZE
from .layout import (
    ATTR_DIRECTORY,
    ATTR_LFN,
    ATTR_VOLUME_ID,
    BS_DIRTY,
    FAT1_CLEAN,
    FAT_BAD,
    FAT_EOC,
    FAT_MASK,
    build_fsinfo,
    parse_boot_sector,
    parse_fsinfo,
)
from .names import LongNameRun, lfn_checksum, short_display
from .table import _pwrite_all

log = logging.getLogger(__name__)

_DOT = b".          "
_DOTDOT = b"..         "


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding. ``kind`` is machine-readable; ``repaired`` says whether repair fixed it."""

    kind: str
    path: str
    detail: str
    repaired: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail, "repaired": self.repaired}


class _Checker:
    def __init__(self, fd: int, region_size: int, repair: bool, progress: Callable[[int, int], None] | None):
        self.fd = fd
        self.repair = repair
        self.progress = progress
        self.problems: list[Problem] = []
        boot = os.pread(fd, 4096, 0)
        self.info = parse_boot_sector(boot, region_size)
        self.geo = g = self.info.geometry
        self.cs = g.cluster_size
        self.maxc = g.max_cluster
        self.fat = self._read_fat(g.active_fat or 0)
        self.fat_changed: set[int] = set()
        self.owned = bytearray(self.maxc + 1)
        self.root_label: bytes | None = None  # name of the root's first volume-label entry

    # ---------------------------------------------------------------- helpers

    def report(self, kind: str, path: str, detail: str, fixable: bool = True) -> bool:
        fixed = self.repair and fixable
        self.problems.append(Problem(kind, path or "/", detail, fixed))
        return fixed

    def _read_fat(self, copy: int) -> array[int]:
        g = self.geo
        n = (self.maxc + 1) * 4
        data = os.pread(self.fd, n, g.fat_offset(copy))
        arr = array("I")
        arr.frombytes(data + bytes(n - len(data)))
        return arr

    def get(self, n: int) -> int:
        return self.fat[n] & FAT_MASK

    def set(self, n: int, value: int) -> None:
        self.fat[n] = (self.fat[n] & 0xF0000000) | (value & FAT_MASK)
        self.fat_changed.add(n)

    def chain(self, start: int, path: str) -> list[int]:
        """Follow and claim a chain; cut it (in the repaired FAT) at the first bad link or shared cluster."""
        out: list[int] = []
        cur = start
        prev = 0
        while True:
            if not 2 <= cur <= self.maxc:
                if prev:
                    if self.report("bad_chain", path, f"link to invalid cluster {cur:#x} after {prev}"):
                        self.set(prev, FAT_EOC)
                break
            if self.owned[cur]:
                kind = "chain_loop" if cur in out else "cross_link"
                if self.report(kind, path, f"cluster {cur} already in use"):
                    if prev:
                        self.set(prev, FAT_EOC)
                break
            v = self.get(cur)
            if v == 0:  # referenced, but the FAT says free: the chain ends before it
                if self.report("bad_chain", path, f"cluster {cur} is marked free but in use") and prev:
                    self.set(prev, FAT_EOC)
                break
            self.owned[cur] = 1
            out.append(cur)
            if v >= 0x0FFFFFF8:
                break
            prev, cur = cur, v
        return out

    def release(self, clusters: list[int]) -> None:
        for c in clusters:
            self.owned[c] = 0  # lost-cluster pass frees them

    def cut(self, clusters: list[int], keep: int) -> None:
        if keep:
            self.set(clusters[keep - 1], FAT_EOC)
        self.release(clusters[keep:])

    # ---------------------------------------------------------------- passes

    def compare_fats(self) -> None:
        g = self.geo
        if g.num_fats < 2 or g.active_fat is not None:
            return
        for copy in range(1, g.num_fats):
            other = self._read_fat(copy)
            if other != self.fat:
                diff = sum(1 for a, b in zip(self.fat, other, strict=False) if a != b)
                if self.report("fat_mismatch", "/", f"FAT {copy + 1} differs from FAT 1 in {diff} entries"):
                    self.fat_changed.update(range(len(self.fat)))

    def walk(self) -> None:
        g = self.geo
        # (first cluster, parent's cluster for '..', path, disk offsets of the entry's slots in its parent)
        queue: deque[tuple[int, int, str, list[int]]] = deque([(g.root_cluster, 0, "", [])])
        root = True
        while queue:
            cluster, parent, path, locs = queue.popleft()
            clusters = self.chain(cluster, path or "/")
            if not clusters:
                # Its first cluster already belongs to a file or directory walked before (chain() reported it):
                # drop the entry, or every later check finds the same cross link again.
                if locs and self.report(
                    "bad_directory", path, f"first cluster {cluster} in use elsewhere: entry removed"
                ):
                    for off in locs:
                        _pwrite_all(self.fd, bytes([DELETED]), off)
                continue
            buf = bytearray(b"".join(os.pread(self.fd, self.cs, g.cluster_offset(c)) for c in clusters))
            changed = self._check_dir(buf, clusters, parent, path, root, queue)
            if changed:
                for i, c in enumerate(clusters):
                    _pwrite_all(self.fd, bytes(buf[i * self.cs : (i + 1) * self.cs]), g.cluster_offset(c))
            root = False

    def _check_dir(
        self,
        buf: bytearray,
        clusters: list[int],
        parent: int,
        path: str,
        root: bool,
        queue: deque[tuple[int, int, str, list[int]]],
    ) -> bool:
        changed = False
        own = clusters[0]
        run = LongNameRun()
        nslots = len(buf) // ENTRY_SIZE
        used_end = nslots  # first slot after the live ones (the 0x00 end mark, if any)
        taken: set[bytes] | None = None  # the directory's short names, once a bad one needs a new name

        def orphan(ranges: list[tuple[int, int]]) -> None:
            nonlocal changed
            for start, end in ranges:
                if self.report("orphan_lfn", path or "/", f"{end - start} long-name slot(s) without their entry"):
                    for j in range(start, end):
                        buf[j * ENTRY_SIZE] = DELETED
                    changed = True

        for i in range(nslots):
            off = i * ENTRY_SIZE
            b0 = buf[off]
            if b0 == 0:
                used_end = i
                break
            attr = buf[off + 11]
            if b0 == DELETED:
                orphan(run.gap(i))
                continue
            if attr & 0x3F == ATTR_LFN:
                if buf[off + 12] or buf[off + 26] or buf[off + 27]:  # LDIR_Type and LDIR_FstClusLO must be 0
                    if self.report("lfn_fields", path or "/", f"long-name slot {i} has non-zero reserved fields"):
                        buf[off + 12] = buf[off + 26] = buf[off + 27] = 0
                        changed = True
                orphan(run.slot(i, bytes(buf[off : off + 32])))
                continue
            name11 = bytes(buf[off : off + 11])
            long_name, first, orphans = run.entry(i, name11)
            orphan(orphans)
            # "C10.TMP", not "C10     TMP"
            display = long_name or short_display(name11, buf[off + 12])
            if attr & ATTR_VOLUME_ID and not attr & ATTR_DIRECTORY:
                if root and self.root_label is None:
                    self.root_label = name11
                # A label (or any VOLUME_ID entry) owns no clusters and has no size; fsck.fat treats it as a file.
                if buf[off + 20 : off + 22] != b"\0\0" or buf[off + 26 : off + 32] != bytes(6):
                    if self.report("label_entry", path or "/", f"volume-label entry {display!r} has a cluster or size"):
                        buf[off + 20 : off + 22] = b"\0\0"
                        buf[off + 26 : off + 32] = bytes(6)
                        changed = True
                continue
            hi, lo = struct.unpack_from("<H", buf, off + 20)[0], struct.unpack_from("<H", buf, off + 26)[0]
            start = (hi << 16) | lo
            size = struct.unpack_from("<I", buf, off + 28)[0]
            if name11 in (_DOT, _DOTDOT):
                if root:
                    continue
                want = own if name11 == _DOT else parent
                if start != want:
                    if self.report("bad_dot_entry", path, f"{name11.strip().decode()} points to {start}, not {want}"):
                        struct.pack_into("<H", buf, off + 20, want >> 16)
                        struct.pack_into("<H", buf, off + 26, want & 0xFFFF)
                        changed = True
                continue
            if _bad_short_name(name11):
                if taken is None:
                    taken = _short_names(buf)
                new11 = next(n for n in (b"FSCK%04d%03d" % divmod(k, 1000) for k in range(10**7)) if n not in taken)
                if self.report("bad_name", f"{path}/{display}", f"bad short name {name11!r}: renamed to "
                               f"{short_display(new11, 0)}"):
                    taken.add(new11)
                    buf[off : off + 11] = new11
                    for j in range(first, i):  # its long-name slots keep their name: give them the new checksum
                        buf[j * ENTRY_SIZE + 13] = lfn_checksum(new11)
                    if first == i:
                        display = short_display(new11, buf[off + 12])
                    changed = True
            child = f"{path}/{display}"
            if attr & ATTR_DIRECTORY:
                if size != 0:
                    if self.report("dir_size", child, f"directory has size {size}"):
                        struct.pack_into("<I", buf, off + 28, 0)
                        changed = True
                if not 2 <= start <= self.maxc or self.owned[start] or self.get(start) in (0, 1):
                    if self.report("bad_directory", child, f"invalid first cluster {start}: entry removed"):
                        for j in range(first, i + 1):  # with its long-name slots, which would be orphans
                            buf[j * ENTRY_SIZE] = DELETED
                        changed = True
                    continue
                locs = [
                    self.geo.cluster_offset(clusters[j * ENTRY_SIZE // self.cs]) + j * ENTRY_SIZE % self.cs
                    for j in range(first, i + 1)
                ]
                queue.append((start, 0 if root else own, child, locs))
                continue
            # regular file
            if start == 0:
                if size:
                    if self.report("size_mismatch", child, f"size {size} but no clusters: size set to 0"):
                        struct.pack_into("<I", buf, off + 28, 0)
                        changed = True
                continue
            if not 2 <= start <= self.maxc or self.get(start) == 0 or self.owned[start]:
                if self.report("bad_start", child, f"invalid first cluster {start}: file emptied"):
                    struct.pack_into("<HH", buf, off + 20, 0, 0)
                    struct.pack_into("<H", buf, off + 26, 0)
                    struct.pack_into("<I", buf, off + 28, 0)
                    changed = True
                continue
            chain = self.chain(start, child)
            need = -(-size // self.cs)
            if len(chain) > need:
                if self.report("size_mismatch", child, f"{len(chain)} clusters for {size} bytes: chain truncated"):
                    if need == 0:
                        struct.pack_into("<HH", buf, off + 20, 0, 0)
                        struct.pack_into("<H", buf, off + 26, 0)
                        changed = True
                    self.cut(chain, need)
            elif len(chain) < need:
                new_size = len(chain) * self.cs
                if self.report(
                    "size_mismatch", child, f"size {size} but only {len(chain)} clusters: size set to {new_size}"
                ):
                    struct.pack_into("<I", buf, off + 28, new_size)
                    changed = True
        orphan(run.gap(used_end))  # a run left pending at the end; never the 0x00 end mark itself
        return changed

    def _mixed_blocks(self) -> Iterator[tuple[int, int]]:
        """(start, end) cluster ranges that need a per-entry look: blocks whose FAT entries are all zero
        (free) or whose clusters are all owned cannot hold a lost cluster, and are skipped at C speed."""
        block = 4096
        zero_fat = bytes(block * 4)
        all_owned = b"\x01" * block
        maxc = self.maxc
        for start in range(2, maxc + 1, block):
            end = min(start + block, maxc + 1)
            n = end - start
            if self.fat[start:end].tobytes() == zero_fat[: n * 4] or self.owned[start:end] == all_owned[:n]:
                continue
            yield start, end

    def lost_clusters(self) -> None:
        # A bad-cluster mark (0x0FFFFFF7) belongs to no file on purpose: it is not lost, never free it.
        fat, owned = self.fat, self.owned
        lost = [
            c
            for start, end in self._mixed_blocks()
            for c in range(start, end)
            if fat[c] & FAT_MASK and not owned[c] and fat[c] & FAT_MASK != FAT_BAD
        ]
        if lost and self.report("lost_clusters", "/", f"{len(lost)} cluster(s) allocated but owned by no file: freed"):
            for c in lost:
                self.set(c, 0)
        if self.repair:
            # Entries that hold only top bits are free; normalize them.
            for start, end in self._mixed_blocks():
                for c in range(start, end):
                    if fat[c] and not fat[c] & FAT_MASK:
                        fat[c] = 0
                        self.fat_changed.add(c)

    def _free_count(self) -> int:
        span = self.fat[2 : self.maxc + 1]
        return span.count(0) + sum(span.count(v << 28) for v in range(1, 16))

    def _first_free(self) -> int:
        span = self.fat[2 : self.maxc + 1]
        try:
            return span.index(0) + 2
        except ValueError:
            return 0xFFFFFFFF

    def write_fat(self) -> None:
        if not self.fat_changed:
            return
        g = self.geo
        block = 1024  # entries per write
        blocks = sorted({c // block for c in self.fat_changed})
        copies = [g.active_fat] if g.active_fat is not None else range(g.num_fats)
        for b in blocks:
            data = self.fat[b * block : (b + 1) * block].tobytes()
            for copy in copies:
                _pwrite_all(self.fd, data, g.fat_offset(copy) + b * block * 4)
        self.fat_changed.clear()

    def finish(self) -> None:
        g = self.geo
        bps = g.bytes_per_sector
        free = self._free_count()
        fsinfo_raw = os.pread(self.fd, bps, g.fsinfo_sector * bps)
        fsinfo = parse_fsinfo(fsinfo_raw) if g.fsinfo_sector else None
        if not g.fsinfo_sector:  # BPB_FSInfo outside the reserved area (parse_boot_sector): never written
            self.report("fsinfo", "/", f"the boot sector names no usable FSInfo sector (BPB_FSInfo "
                        f"{struct.unpack_from('<H', self.info.raw, 0x30)[0]})", fixable=False)
        elif fsinfo is None:
            self.report("fsinfo", "/", "FSInfo sector signatures are wrong")
        elif fsinfo[0] != free and fsinfo[0] != 0xFFFFFFFF:
            self.report("fsinfo", "/", f"FSInfo free count {fsinfo[0]} but {free} clusters are free")
        dirty = self.info.dirty or not self.fat[1] & FAT1_CLEAN
        if dirty:
            self.report("dirty", "/", "file system was not cleanly closed")
        boot = os.pread(self.fd, bps, 0)
        # Windows reads the label from the root entry; the boot sector's copy must agree (fsck.fat checks).
        want_label = self.root_label if self.root_label is not None else b"NO NAME    "
        fix_label = boot[0x42] == 0x29 and bytes(boot[0x47:0x52]) != want_label
        if fix_label:
            self.report("label_mismatch", "/", f"boot-sector label {bytes(boot[0x47:0x52])!r} differs from the root "
                        f"directory's {want_label!r}: copied from the root directory")
        if g.backup_boot_sector and g.backup_boot_sector < g.reserved_sectors:
            backup = os.pread(self.fd, bps, g.backup_boot_sector * bps)
            clean_boot = bytearray(boot)
            clean_boot[0x41] &= ~BS_DIRTY & 0xFF
            if backup != bytes(clean_boot) and backup != boot:
                self.report("backup_boot", "/", "backup boot sector differs from the boot sector")
        if not self.repair:
            return
        self.fat[1] |= FAT1_CLEAN
        self.fat_changed.add(1)
        self.write_fat()
        os.fsync(self.fd)
        nxt = self._first_free()
        newinfo = bytearray(fsinfo_raw)
        newinfo[:512] = build_fsinfo(free, nxt)
        if g.fsinfo_sector:
            _pwrite_all(self.fd, bytes(newinfo), g.fsinfo_sector * bps)
        nb = bytearray(boot)
        nb[0x41] &= ~BS_DIRTY & 0xFF
        if fix_label:
            nb[0x47:0x52] = want_label
        _pwrite_all(self.fd, bytes(nb), 0)
        if g.backup_boot_sector and g.backup_boot_sector < g.reserved_sectors:
            _pwrite_all(self.fd, bytes(nb), g.backup_boot_sector * bps)
            if g.fsinfo_sector and g.backup_boot_sector + g.fsinfo_sector < g.reserved_sectors:
                _pwrite_all(self.fd, bytes(newinfo), (g.backup_boot_sector + g.fsinfo_sector) * bps)
        os.fsync(self.fd)


_BAD_SHORT_CHARS = frozenset(b'*?<>|"\\/:') | frozenset(range(0x20)) | {0x7F}


def _bad_short_name(name11: bytes) -> bool:
    """A short name no FAT implementation writes (dosfstools' ``bad_name``): a control character, one of
    ``* ? < > | " \\ / :``, or a leading space. A first byte 0x05 stands for 0xE5 and is fine. Such a name
    cannot be opened, and one with "/" cannot even be listed."""
    if name11[0] == 0x20:
        return True
    return any(b in _BAD_SHORT_CHARS for b in name11[1:]) or (name11[0] != 0x05 and name11[0] in _BAD_SHORT_CHARS)


def _short_names(buf: bytearray) -> set[bytes]:
    """The short names of a directory's live entries."""
    out = set()
    for off in range(0, len(buf), ENTRY_SIZE):
        b0 = buf[off]
        if b0 == 0:
            break
        if b0 != DELETED and buf[off + 11] & 0x3F != ATTR_LFN:
            out.add(bytes(buf[off : off + 11]))
    return out


def is_dirty(fd: int, region_size: int) -> bool:
    """Whether either dirty marker is set (boot sector 0x41 bit 0, or FAT[1]'s clean bit cleared)."""
    info = parse_boot_sector(os.pread(fd, 4096, 0), region_size)
    geo = info.geometry
    fat1 = int.from_bytes(os.pread(fd, 4, geo.fat_offset(geo.active_fat or 0) + 4), "little")
    return info.dirty or not fat1 & FAT1_CLEAN


def check(
    fd: int,
    region_size: int,
    *,
    repair: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """Check the FAT32 file system in ``[0, region_size)`` of ``fd``; with ``repair`` fix what is safe.

    After a repair the volume is marked clean with an exact FSInfo. The caller must hold the image's
    exclusive lock and must not have the file system open in a :class:`FatFileSystem` at the same time.
    Raises :class:`~simvol.errors.UnsupportedFileSystemError` when the boot sector is not FAT32.
    """
    c = _Checker(fd, region_size, repair, progress)
    steps = 4
    if progress:
        progress(0, steps)
    c.compare_fats()
    c.walk()
    if progress:
        progress(2, steps)
    c.lost_clusters()
    if repair:
        c.write_fat()
    if progress:
        progress(3, steps)
    c.finish()
    if progress:
        progress(steps, steps)
    return c.problems

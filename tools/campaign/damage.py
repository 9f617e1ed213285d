"""Damaged images: mutate valid images; each must work or fail with a clear ``VdsError``, and harm nothing else.

Set-up: a few valid images with content are made through the service (a deep tree with long names and a
fragmented file; a directory of hundreds of entries with 1 KiB clusters; a nearly empty minimum-size volume;
a read-only-role volume), then dismounted and detached. Each worker (``--workers``, default 2) has its own
root with a second, healthy volume that stays mounted throughout.

One mutation (seed *s*): a base image is copied into a sandbox directory beside a sentinel file and
directory, and damaged (:data:`MUTATORS`: random bytes and hostile values in the boot sector, FSInfo, both
FATs, directory clusters and the metadata trailer — also trailer slots with a valid CRC and a hostile
payload —, truncation, extension with garbage, zeroed ranges, or several of these). A separate process
(:data:`RUNNER`, bounded by ``--timeout``) then attaches it (through ``simvol --json attach`` every
``--cli-every``-th time), and if it is mounted resolves its ``\\\\?\\Volume{GUID}\\`` path, walks and reads the
whole tree and writes a probe file (in yet another process, with its own time limit), queries the file-system
properties, runs ``Volume.check()``, dismounts, repairs offline, checks again, remounts, and detaches.

Every step must succeed or raise a ``VdsError`` with a code and a message. A violation is: a hang (the time
limit), any other exception, a traceback on the CLI's stderr or in a daemon log, CLI stdout that is not one
JSON object with ``hresult`` and ``code``, a write outside the image (the sentinels, the other images, the
trailer, the image's size, or any byte of an image whose metadata could not be read), a mount or daemon left
behind, the healthy volume disturbed (its daemon pid changed, or it no longer reads and writes), or damage
amplified: a volume that mounted must mount again after a safe dismount and an offline repair (and if it also
read without an error and checked clean, with every file unchanged), and a second check after the repair must
find nothing but what the repair called unfixable.

The walk also writes through existing files (rewrites their tails with their own bytes, grows them by 10,000
bytes and cuts them back, also files that could not be read) and grows a subdirectory by 30 long names.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import threading
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field

from simvol.errors import VdsError
from simvol.fat import FatFileSystem
from simvol.image import Image, read_metadata
from simvol.image.trailer import HEADER_SIZE, MAGIC, SLOT_SIZE, TRAILER_SIZE, encode_slot
from simvol.mount import daemon_alive, read_pidfile
from simvol.service import VolumeService
from simvol.types import VolumeFlag

from .common import LogWatch, daemons_of, fsck, leftover_mounts, rmtree_quiet, run_cmd, run_py, sha256_file

MiB = 1 << 20
DEFAULT_SEED = 7_000_000

# ------------------------------------------------------------------------------------------ base images

POPULATE = r"""
import os, random, sys
mp, kind = sys.argv[1], sys.argv[2]
rnd = random.Random(kind)
def w(path, n):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rnd.randbytes(n))
if kind == "tree":
    big = open(os.path.join(mp, "Fragmented Big File.bin"), "wb")
    for i in range(60):
        d = os.path.join(mp, f"Level One {i % 4}", f"Level Two {i % 3}", "Deep Third Level" if i % 2 else "")
        name = f"A Long File Name Number {i} \u00e9t\u00e9.txt" if i % 3 else f"F{i}.TXT"
        w(os.path.join(d, name), rnd.choice([0, 1, 300, 513, 4096, 9000, 70000]))
        big.write(rnd.randbytes(6000)); big.flush()
    big.close()
    for i in range(0, 60, 5):  # deleted entries leave holes in directories
        name = f"A Long File Name Number {i} \u00e9t\u00e9.txt" if i % 3 else f"F{i}.TXT"
        p = os.path.join(mp, f"Level One {i % 4}", f"Level Two {i % 3}", "Deep Third Level" if i % 2 else "", name)
        if os.path.exists(p):
            os.unlink(p)
elif kind == "wide":
    for i in range(300):
        w(os.path.join(mp, "Wide Directory", f"entry with a long name {i:04d}.dat"), rnd.choice([0, 10, 5000]))
    w(os.path.join(mp, "big.bin"), 3 * 1024 * 1024)
elif kind == "tiny":
    w(os.path.join(mp, "only.txt"), 100)
elif kind == "ro":
    for i in range(10):
        w(os.path.join(mp, "docs", f"doc {i}.txt"), 2000 * i)
print("ok")
"""

BASES = (
    # name, size, cluster size, label, populate kind, roles set in the image afterwards
    ("tree", 40 * MiB, 0, "TREE", "tree", 0),
    ("wide", 72 * MiB, 1024, "WIDE", "wide", 0),
    ("tiny", 0, 512, None, "tiny", 0),  # size 0: the minimum FAT32 size
    ("ro", 36 * MiB, 0, "READONLY", "ro", int(VolumeFlag.READONLY)),
)


@dataclass
class BaseImage:
    name: str
    path: str
    volume_id: str
    fs_size: int
    bps: int
    rsvd: int
    nfats: int
    fatsz: int
    cs: int
    data_start: int
    max_cluster: int
    root_cluster: int
    dir_clusters: list[int]
    file_chains: list[list[int]]
    fingerprint: str = ""

    def fat_offset(self, copy: int) -> int:
        return (self.rsvd + copy * self.fatsz) * self.bps

    def cluster_offset(self, c: int) -> int:
        return self.data_start + (c - 2) * self.cs

    @property
    def used_clusters(self) -> list[int]:
        return sorted({*self.dir_clusters, *(c for ch in self.file_chains for c in ch)})


def _map_base(name: str, path: str) -> BaseImage:
    with Image.open(path, writable=False) as im:
        fs = FatFileSystem(im.fd, im.fs_size, writable=False)
        g = fs.geo
        dirs: list[int] = []
        chains: list[list[int]] = []
        stack = ["/"]
        while stack:
            p = stack.pop()
            node = fs.resolve(p)
            dirs += _clusters(fs, node.cluster)
            for n, st in fs.scandir(p):
                child = (p.rstrip("/") + "/" + n)
                if st.is_dir:
                    stack.append(child)
                elif st.cluster:
                    chains.append(_clusters(fs, st.cluster))
        return BaseImage(
            name, path, str(im.metadata.volume_id), im.fs_size, g.bytes_per_sector, g.reserved_sectors, g.num_fats,
            g.fat_sectors, g.cluster_size, g.cluster_offset(2), g.max_cluster, g.root_cluster, dirs, chains,
        )


def _clusters(fs: FatFileSystem, start: int) -> list[int]:
    return [c for first, n in fs.fat.walk(start) for c in range(first, first + n)]


def _fingerprint(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def make_bases(root: str, log=print) -> list[BaseImage]:
    """Create, populate (through the mount), dismount and detach the base images; all must fsck clean."""
    from simvol.fat import minimum_format_size

    setup = os.path.join(root, "setup")
    out_dir = os.path.join(root, "bases")
    os.makedirs(out_dir, exist_ok=True)
    svc = VolumeService(setup)
    bases = []
    try:
        for name, size, cs, label, kind, roles in BASES:
            size = size or minimum_format_size()
            vol = svc.create_volume(size, label=label, cluster_size=cs, image=os.path.join(out_dir, f"{name}.img"))
            r = run_py(POPULATE, [vol.mount_path, kind], timeout=120)
            if r.returncode != 0 or r.stdout.strip() != "ok":
                raise RuntimeError(f"populating base {name} failed: {r.stderr[-2000:]}")
            image = vol.image
            vol.dismount()
            vol.detach()
            if roles:
                with Image.open(image) as im:
                    im.update_flags(set=roles)
            clean, text = fsck(image)
            if not clean:
                raise RuntimeError(f"base {name} is not clean:\n{text}")
            b = _map_base(name, image)
            b.fingerprint = sha256_file(image)
            bases.append(b)
            log(f"base {name}: {b.fs_size // MiB} MiB, cluster {b.cs}, {len(b.file_chains)} files, "
                f"{len(b.dir_clusters)} directory clusters")
    finally:
        svc.close()
    for b in bases:
        os.chmod(b.path, 0o400)  # nothing should write them; a copy is mutated, never the base
    return bases


# ------------------------------------------------------------------------------------------ mutations


class Mut:
    """Writes into one image file; ``notes`` describes what was done (the mutation's name in reports)."""

    def __init__(self, path: str, base: BaseImage, rnd: random.Random, others: dict[str, str]) -> None:
        self.path = path
        self.b = base
        self.rnd = rnd
        self.others = others  # "healthy_guid", "other_base_guid"
        self.notes: list[str] = []

    def size(self) -> int:
        return os.stat(self.path).st_size

    def write(self, off: int, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, off)
        finally:
            os.close(fd)

    def read(self, off: int, n: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(n)

    def rand_bytes(self, n: int) -> bytes:
        r = self.rnd.random()
        if r < 0.6:
            return self.rnd.randbytes(n)
        if r < 0.8:
            return b"\xff" * n
        return bytes(self.rnd.choice([0x00, 0xE5, 0x2E, 0x0F, 0x20, 0x80])) * n

    def u32(self, off: int, value: int) -> None:
        self.write(off, struct.pack("<I", value & 0xFFFFFFFF))

    def u16(self, off: int, value: int) -> None:
        self.write(off, struct.pack("<H", value & 0xFFFF))


def m_boot_random(m: Mut) -> None:
    n = m.rnd.randint(1, 16)
    sectors = [0] if m.rnd.random() < 0.7 else [0, 6]
    for _ in range(n):
        off = m.rnd.choice([m.rnd.randint(0x0B, 0x5A), m.rnd.randint(0, 511)])
        val = m.rand_bytes(1)
        for s in sectors:
            m.write(s * m.b.bps + off, val)
    m.notes.append(f"boot_random {n}B sectors {sectors}")


def m_boot_field(m: Mut) -> None:
    b, rnd = m.b, m.rnd
    tot = b.fs_size // b.bps
    fields = {
        "bps": (0x0B, 2, [0, 256, 513, 1024, 2048, 4096, 0xFFFF]),
        "spc": (0x0D, 1, [0, 3, 2, 64, 128, 255]),
        "rsvd": (0x0E, 2, [0, 1, 2, b.rsvd - 1, b.rsvd + 1, 0xFFFF]),
        "nfats": (0x10, 1, [0, 1, 3, 255]),
        "root_ent": (0x11, 2, [512, 1]),
        "tot16": (0x13, 2, [1000, 0xFFFF]),
        "fatsz16": (0x16, 2, [1, 0xFFFF]),
        "tot32": (0x20, 4, [0, 100, tot - 1, tot + 1, tot * 2, 0xFFFFFFFF]),
        "fatsz32": (0x24, 4, [0, 1, b.fatsz - 1, b.fatsz + 1, b.fatsz * 4, 0xFFFFFFFF]),
        "extflags": (0x28, 2, [0x80, 0x81, 0x8F, 0xFFFF]),
        "fsver": (0x2A, 2, [0x0101, 0xFFFF]),
        "rootclus": (0x2C, 4, [0, 1, b.max_cluster, b.max_cluster + 1, 0x0FFFFFFF, 0xFFFFFFFF,
                               *([b.file_chains[0][0]] if b.file_chains else []), *(b.dir_clusters[-1:])]),
        "fsinfo": (0x30, 2, [0, 2, 6, b.rsvd - 1, b.rsvd, b.rsvd + 5, 0x7FFF, 0xFFFF]),
        "bkboot": (0x32, 2, [0, 1, 2, b.rsvd, 0xFFFF]),
        "dirty": (0x41, 1, [1, 0xFF]),
        "bootsig": (0x42, 1, [0, 0x28, 0xFF]),
        "label": (0x47, 11, None),
        "oem": (0x03, 8, None),
        "sig55aa": (0x1FE, 2, [0, 0x55AA, 0xAA55 ^ 0x0101]),
        "media": (0x15, 1, [0, 0xF0]),
    }
    name = rnd.choice(sorted(fields))
    off, width, values = fields[name]
    sectors = [0] if rnd.random() < 0.75 else [0, 6]
    for s in sectors:
        if values is None:
            m.write(
                s * b.bps + off,
                rnd.choice(
                    [rnd.randbytes(width), b"\xff" * width, "ÄÖ/:*?".encode("latin-1")[:width].ljust(width, b"\x00")]
                ),
            )
        else:
            v = rnd.choice(values)
            m.write(s * b.bps + off, (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little"))
    m.notes.append(f"boot_field {name} sectors {sectors}")


def m_fsinfo(m: Mut) -> None:
    b, rnd = m.b, m.rnd
    sector = rnd.choice([1, 1, 1, 7])
    base = sector * b.bps
    r = rnd.random()
    if r < 0.3:
        for _ in range(rnd.randint(1, 12)):
            m.write(base + rnd.randint(0, 511), m.rand_bytes(1))
        m.notes.append(f"fsinfo_random sector {sector}")
    elif r < 0.6:
        m.u32(base + 0x1E8, rnd.choice([0, 1, b.max_cluster, b.max_cluster + 10, 0x7FFFFFFF, 0xFFFFFFFF]))
        m.notes.append(f"fsinfo_free_count sector {sector}")
    elif r < 0.85:
        m.u32(base + 0x1EC, rnd.choice([0, 1, 2, b.max_cluster, b.max_cluster + 1, 0x0FFFFFFF, 0xFFFFFFFF]))
        m.notes.append(f"fsinfo_next_free sector {sector}")
    else:
        m.u32(base + rnd.choice([0, 0x1E4, 0x1FC]), rnd.getrandbits(32))
        m.notes.append(f"fsinfo_signature sector {sector}")


def m_fat_random(m: Mut) -> None:
    b, rnd = m.b, m.rnd
    copies = rnd.choice([[0], [1], [0, 1], [0, 1]])
    used = b.used_clusters
    hi = max(used) if used else b.root_cluster
    n = rnd.randint(1, 64)
    start = rnd.randint(0, (hi + 2) * 4)
    data = m.rand_bytes(n)
    for c in copies:
        if c < b.nfats:
            m.write(b.fat_offset(c) + start, data)
    m.notes.append(f"fat_random {n}B copies {copies}")


def m_fat_entry(m: Mut) -> None:
    b, rnd = m.b, m.rnd
    choices = []
    if b.file_chains:
        choices.append(("file", rnd.choice(b.file_chains)))
    choices.append(("dir", b.dir_clusters))
    kind, chain = rnd.choice(choices)
    i = rnd.randrange(len(chain))
    c = chain[i]
    other = [x for ch in b.file_chains for x in ch if x not in chain]
    values = {
        "free": 0, "reserved1": 1, "self_loop": c, "back_loop": chain[max(0, i - 1)], "root": b.root_cluster,
        "past_end": b.max_cluster + 1, "huge": 0x0FFFFFEF, "bad": 0x0FFFFFF7, "reserved": 0x0FFFFFF0,
        "eoc_top_bits": 0xFFFFFFFF, "top_bits_only": 0xF0000000, "free_cluster": b.max_cluster - 1,
    }
    if other:
        values["cross_link"] = rnd.choice(other)
    name = rnd.choice(sorted(values))
    copies = [0, 1] if rnd.random() < 0.7 else [rnd.choice([0, 1])]
    for cp in copies:
        if cp < b.nfats:
            m.u32(b.fat_offset(cp) + 4 * c, values[name])
    if rnd.random() < 0.15:  # also FAT[0]/FAT[1] (media, clean/no-error bits)
        idx = rnd.choice([0, 1])
        for cp in copies:
            if cp < b.nfats:
                m.u32(b.fat_offset(cp) + 4 * idx, rnd.choice([0, 0x0FFFFFFF, 0x03FFFFFF, rnd.getrandbits(32)]))
    m.notes.append(f"fat_entry {kind}[{i}] {name} copies {copies}")


def _dir_entries(m: Mut) -> list[int]:
    """Disk offsets of used 32-byte entries in the base's directory clusters."""
    out = []
    for c in m.b.dir_clusters:
        raw = m.read(m.b.cluster_offset(c), m.b.cs)
        for j in range(0, len(raw), 32):
            if raw[j] not in (0x00,):
                out.append(m.b.cluster_offset(c) + j)
    return out


def m_dir_entry(m: Mut) -> None:
    b, rnd = m.b, m.rnd
    entries = _dir_entries(m)
    if not entries:
        return m_dir_garbage(m)
    off = rnd.choice(entries)
    raw = m.read(off, 32)
    is_lfn = raw[11] & 0x3F == 0x0F
    other = [x for ch in b.file_chains for x in ch]
    field_name = rnd.choice(["attr", "cluster", "size", "name", "name", "lfn", "first_byte", "random", "dot"])
    if field_name == "attr":
        m.write(off + 11, bytes([rnd.choice([0x0F, 0x10, 0x08, 0x18, 0xFF, 0x00, 0x20, 0x3F, 0x40])]))
    elif field_name == "cluster":
        v = rnd.choice([0, 1, 2, b.root_cluster, b.max_cluster, b.max_cluster + 1, 0x0FFFFFFF, 0xFFFFFFFF,
                        *(rnd.choice(other),) * bool(other), *(rnd.choice(b.dir_clusters),)])
        m.write(off + 20, struct.pack("<H", (v >> 16) & 0xFFFF))
        m.write(off + 26, struct.pack("<H", v & 0xFFFF))
    elif field_name == "size":
        m.u32(off + 28, rnd.choice([0, 1, b.cs + 1, 0x7FFFFFFF, 0xFFFFFFFF, rnd.getrandbits(32)]))
    elif field_name == "name":
        bad = rnd.choice([b"A/B     TXT", b"A:B*?   TXT", b"\x05BC     TXT", b"ab cd   txt", b"           ",
                          b"CON     TXT", b".       ..", b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b",
                          rnd.randbytes(11)])
        m.write(off, bad)
    elif field_name == "lfn":
        if is_lfn:
            sub = rnd.choice(["seq", "sum", "chars", "surrogate"])
            if sub == "seq":
                m.write(off, bytes([rnd.choice([0x00, 0x01, 0x41, 0x54, 0x7F, 0xFF])]))
            elif sub == "sum":
                m.write(off + 13, bytes([rnd.getrandbits(8)]))
            elif sub == "chars":
                m.write(off + 1, rnd.randbytes(10))
            else:
                m.write(off + 1, struct.pack("<HH", 0xD800, 0xDC00 ^ 0x0300))
            field_name += "/" + sub
        else:  # turn a short entry into a bogus long-name slot
            m.write(off + 11, b"\x0f")
            m.write(off, bytes([0x41]))
    elif field_name == "first_byte":
        m.write(off, bytes([rnd.choice([0x00, 0xE5, 0x05, 0x2E, 0x20, 0xFF])]))
    elif field_name == "dot":
        # '.' or '..' of a subdirectory pointing elsewhere
        sub = [c for c in b.dir_clusters if c != b.root_cluster]
        if sub:
            c0 = rnd.choice(sub)
            e = b.cluster_offset(c0) + rnd.choice([0, 32])
            v = rnd.choice([0, 1, b.root_cluster, c0, b.max_cluster + 1, rnd.choice(b.dir_clusters)])
            m.write(e + 20, struct.pack("<H", (v >> 16) & 0xFFFF))
            m.write(e + 26, struct.pack("<H", v & 0xFFFF))
    else:
        m.write(off + rnd.randint(0, 31), m.rand_bytes(rnd.randint(1, 8)))
    m.notes.append(f"dir_entry {field_name}{' (lfn slot)' if is_lfn else ''}")


def m_dir_garbage(m: Mut) -> None:
    b, rnd = m.b, m.rnd
    c = rnd.choice(b.dir_clusters)
    how = rnd.choice(["random", "ff", "zero", "copy_data", "partial"])
    if how == "random":
        data = rnd.randbytes(b.cs)
    elif how == "ff":
        data = b"\xff" * b.cs
    elif how == "zero":
        data = bytes(b.cs)
    elif how == "copy_data" and b.file_chains:
        data = m.read(b.cluster_offset(rnd.choice(rnd.choice(b.file_chains))), b.cs)
    else:
        n = rnd.randint(32, b.cs)
        data = m.read(b.cluster_offset(c), b.cs)
        data = data[: b.cs - n] + rnd.randbytes(n)
    m.write(b.cluster_offset(c), data)
    m.notes.append(f"dir_garbage {how}{' root' if c == b.root_cluster else ''}")


def _slots(m: Mut) -> tuple[int, list[tuple[int, int]]]:
    """(trailer offset, [(slot index, generation)] of the valid slots)."""
    size = m.size()
    t = size - TRAILER_SIZE
    raw = m.read(t, TRAILER_SIZE)
    found = []
    for i in range(2):
        s = raw[i * SLOT_SIZE : (i + 1) * SLOT_SIZE]
        if s[:8] == MAGIC:
            _, _, gen, _ = struct.unpack_from("<8sIQI", s, 0)
            found.append((i, gen))
    return t, found


def _payload_doc(m: Mut) -> dict:
    try:
        meta = read_metadata(m.path)
        return json.loads(meta.to_payload())
    except Exception:
        return {"volume_id": m.b.volume_id, "fs_size": m.b.fs_size, "flags": 0}


def m_trailer(m: Mut) -> None:
    rnd = m.rnd
    t, found = _slots(m)
    best = max(found, key=lambda x: x[1]) if found else (0, 1)
    r = rnd.random()
    if r < 0.3:  # random bytes in one slot or both
        slots = rnd.choice([[0], [1], [0, 1], [best[0]]])
        for s in slots:
            for _ in range(rnd.randint(1, 8)):
                m.write(t + s * SLOT_SIZE + rnd.choice([rnd.randint(0, 40), rnd.randint(0, SLOT_SIZE - 1)]),
                        m.rand_bytes(rnd.randint(1, 4)))
        m.notes.append(f"trailer_random slots {slots}")
        return
    # a slot with a valid CRC and a hostile payload, written where it wins (or into both slots)
    doc = _payload_doc(m)
    version = 1
    kind = rnd.choice(["fs_size", "volume_id", "flags", "created", "extra", "raw", "version", "generation", "length"])
    payload: bytes | None = None
    gen = min(best[1] + 1, 2**64 - 1)
    if kind == "fs_size":
        doc["fs_size"] = rnd.choice([0, -512, 511, m.b.fs_size + 512, m.b.fs_size - 512, 2**41, 2**64, "1024",
                                     1.5, None, True, m.b.fs_size * 2])
    elif kind == "volume_id":
        doc["volume_id"] = rnd.choice(["not-a-guid", "", 123, None, m.others["healthy_guid"], m.others["other_guid"],
                                       "{" + m.b.volume_id.upper() + "}", str(uuid.UUID(int=0))])
    elif kind == "flags":
        doc["flags"] = rnd.choice([-1, 2**32, 2**31 | doc.get("flags", 0), 1, "3", None, 0xFFFFFFFF,
                                   *(int(f) for f in (VolumeFlag.PERMANENTLY_DISMOUNTED, VolumeFlag.HIDDEN,
                                                      VolumeFlag.READONLY, VolumeFlag.SYSTEM_VOLUME,
                                                      VolumeFlag.BOOT_VOLUME, VolumeFlag.PAGEFILE,
                                                      VolumeFlag.NO_DEFAULT_DRIVE_LETTER))])
    elif kind == "created":
        doc["created"] = rnd.choice(
            [5, "garbage", "9999-99-99", [], "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")]
        )
    elif kind == "extra":
        doc[rnd.choice(["x", "ünï", "a" * 200])] = rnd.choice([{"deep": [1] * 300}, "v" * 3000, None])
    elif kind == "raw":
        payload = rnd.choice([b"[]", b"null", b"{", b"\xff\xfe\xfd", b"{}", b"[" * 2030 + b"]" * 2030,
                              b"{\"a\":" * 1000 + b"1" + b"}" * 1000, b"1e999999", b"\"" + b"\\u0000" * 600 + b"\"",
                              json.dumps(doc).encode() + b"garbage", b""])
    elif kind == "version":
        version = rnd.choice([2, 0xFFFFFFFF, 0])
    elif kind == "generation":
        gen = rnd.choice([0, 2**64 - 1])
    if payload is None:
        payload = json.dumps(doc).encode("utf-8", "surrogatepass")[:4000]
    if kind == "length":  # a header whose length field lies (CRC computed over what it claims)
        n = rnd.choice([4069, 0xFFFFFFFF, 0])
        head = struct.pack("<8sIQI", MAGIC, 1, gen, n)
        body = head + payload
        raw = (body + struct.pack("<I", zlib.crc32(body[: HEADER_SIZE + min(n, len(payload))])))[:SLOT_SIZE]
        raw = raw.ljust(SLOT_SIZE, b"\0")
    elif version == 0:
        body = struct.pack("<8sIQI", MAGIC, 0, gen, len(payload)) + payload
        raw = (body + struct.pack("<I", zlib.crc32(body))).ljust(SLOT_SIZE, b"\0")
    else:
        raw = encode_slot(payload[:4068], gen, version)
    target = 1 - best[0] if found else 0
    slots = [target] if rnd.random() < 0.7 else [0, 1]
    for s in slots:
        m.write(t + s * SLOT_SIZE, raw)
    m.notes.append(f"trailer_crafted {kind} slots {slots}")


def m_truncate(m: Mut) -> None:
    rnd = m.rnd
    size = m.size()
    new = rnd.choice([0, 1, 511, 512, TRAILER_SIZE - 1, TRAILER_SIZE + 511, size - 1, size - 4096, size - TRAILER_SIZE,
                      size - TRAILER_SIZE - 512, rnd.randint(0, size), size // 2])
    os.truncate(m.path, max(0, new))
    m.notes.append(f"truncate to {max(0, new)} of {size}")


def m_extend(m: Mut) -> None:
    rnd = m.rnd
    size = m.size()
    how = rnd.choice(["garbage", "zeros", "moved_trailer", "moved_trailer_region"])
    if how in ("garbage", "zeros"):
        n = rnd.choice([1, 511, 512, 4096, TRAILER_SIZE, rnd.randint(1, 1 << 20)])
        with open(m.path, "ab") as f:
            f.write(rnd.randbytes(n) if how == "garbage" else bytes(n))
        m.notes.append(f"extend {how} +{n}")
        return
    # Grow the region by k sectors and move a valid trailer to the new end (fs_size updated): a volume
    # whose file system is smaller than its region ("moved_trailer"), or the same with the trailer left stale.
    k = rnd.choice([1, 8, 2048])
    t = size - TRAILER_SIZE
    trailer = m.read(t, TRAILER_SIZE)
    doc = _payload_doc(m)
    m.write(t, bytes(TRAILER_SIZE))
    new_t = t + k * 512
    if how == "moved_trailer":
        doc["fs_size"] = new_t
        _, _found = _slots(m)
        m.write(new_t, encode_slot(json.dumps(doc, separators=(",", ":")).encode()[:4068], 50) + bytes(SLOT_SIZE))
    else:
        m.write(new_t, trailer)  # stale fs_size: metadata and file disagree
    m.notes.append(f"extend {how} +{k} sectors")


def m_zero(m: Mut) -> None:
    b, rnd = m.b, m.rnd
    size = m.size()
    where = rnd.choice(["boot", "reserved", "fat1", "fat2", "fats", "root", "dir", "data", "anywhere", "trailer"])
    n = rnd.choice([1, 4, 32, 512, 4096, rnd.randint(1, 65536)])
    if where == "boot":
        off = rnd.randint(0, 511)
    elif where == "reserved":
        off = rnd.randint(0, b.rsvd * b.bps - 1)
    elif where in ("fat1", "fats"):
        off = b.fat_offset(0) + rnd.randint(0, 4096)
    elif where == "fat2":
        off = b.fat_offset(min(1, b.nfats - 1)) + rnd.randint(0, 4096)
    elif where == "root":
        off = b.cluster_offset(b.root_cluster) + rnd.choice([0, 32 * rnd.randint(0, 16)])
    elif where == "dir":
        off = b.cluster_offset(rnd.choice(b.dir_clusters)) + 32 * rnd.randint(0, b.cs // 32 - 1)
    elif where == "data":
        off = b.cluster_offset(rnd.choice(b.used_clusters)) if b.used_clusters else b.data_start
    elif where == "trailer":
        off = size - TRAILER_SIZE + rnd.randint(0, TRAILER_SIZE - 1)
    else:
        off = rnd.randint(0, size - 1)
    n = max(0, min(n, size - off))
    m.write(off, bytes(n))
    if where == "fats" and b.nfats > 1:
        m.write(b.fat_offset(1) + (off - b.fat_offset(0)), bytes(n))
    m.notes.append(f"zero {where} {n}B")


SINGLE = [
    (m_boot_random, 8), (m_boot_field, 14), (m_fsinfo, 6), (m_fat_random, 8), (m_fat_entry, 14), (m_dir_entry, 16),
    (m_dir_garbage, 7), (m_trailer, 10), (m_truncate, 4), (m_extend, 4), (m_zero, 9),
]


def m_combo(m: Mut) -> None:
    fns = [f for f, _ in SINGLE if f not in (m_truncate, m_extend)]
    m.notes.append("combo:")
    for _ in range(m.rnd.randint(2, 4)):
        m.rnd.choice(fns)(m)


MUTATORS = [*SINGLE, (m_combo, 10)]


def mutate(path: str, base: BaseImage, seed: int, others: dict[str, str]) -> str:
    rnd = random.Random(seed)
    m = Mut(path, base, rnd, others)
    fn = rnd.choices([f for f, _ in MUTATORS], [w for _, w in MUTATORS])[0]
    fn(m)
    return "; ".join(m.notes).replace("combo:; ", "combo: ") or fn.__name__


# ------------------------------------------------------------------------------------------ the runner

WALK = r'''
import errno, hashlib, json, os, sys
base = sys.argv[1]
out = {"dirs": 0, "files": 0, "bytes": 0, "errors": {}, "write": "ok", "sha": {}}
def err(e):
    k = errno.errorcode.get(e.errno, str(e.errno))
    out["errors"][k] = out["errors"].get(k, 0) + 1
top = base.rstrip("/").count("/")
unreadable = []
for dp, dns, fns in os.walk(base, onerror=err):
    out["dirs"] += 1
    if dp.count("/") - top > 12 or out["dirs"] > 3000:
        dns[:] = []
        continue
    for n in fns:
        try:
            h = hashlib.sha256()
            with open(os.path.join(dp, n), "rb") as f:
                while out["bytes"] < (512 << 20):
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    out["bytes"] += len(chunk)
            out["files"] += 1
            out["sha"][os.path.relpath(os.path.join(dp, n), base)] = h.hexdigest()
        except OSError as e:
            err(e)
            unreadable.append(os.path.relpath(os.path.join(dp, n), base))
try:
    p = os.path.join(base, "campaign probe file.txt")
    data = os.urandom(9000)
    with open(p, "wb") as f:
        f.write(data)
    with open(p, "rb") as f:
        if f.read() != data:
            out["write"] = "MISMATCH"
    os.mkdir(os.path.join(base, "campaign probe dir"))
    os.rmdir(os.path.join(base, "campaign probe dir"))
    os.unlink(p)
except OSError as e:
    out["write"] = errno.errorcode.get(e.errno, str(e.errno))
    for undo in (lambda: os.unlink(p), lambda: os.rmdir(os.path.join(base, "campaign probe dir"))):
        try:
            undo()
        except OSError:
            pass
# The write path through existing (possibly damaged) chains: rewrite the tail of a few files with their own
# bytes, grow each by 10,000 bytes and cut it back. Contents end as they were.
out["rewrite"] = {}
for rel in sorted(out["sha"])[:5] + unreadable[:3]:
    try:
        with open(os.path.join(base, rel), "r+b") as f:
            size = f.seek(0, 2)
            off = max(0, size - 4096)
            f.seek(off)
            tail = f.read()
            f.seek(off)
            f.write(tail)
            f.write(b"G" * 10000)
            f.flush()
            f.truncate(size)
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno))
        out["rewrite"][k] = out["rewrite"].get(k, 0) + 1
# Directory growth in a (possibly damaged) subdirectory: 30 long names need several clusters of slots.
subs = sorted(os.path.dirname(r) for r in out["sha"] if os.path.dirname(r))
sub = os.path.join(base, subs[0]) if subs else base
out["grow"] = "ok"
made = []
try:
    for i in range(30):
        q = os.path.join(sub, f"campaign probe {i:02d} with a rather long name.txt")
        with open(q, "wb") as f:
            f.write(b"p" * 100)
        made.append(q)
except OSError as e:
    out["grow"] = errno.errorcode.get(e.errno, str(e.errno))
for q in made:
    try:
        os.unlink(q)
    except OSError as e:
        out["grow"] = "unlink " + errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
'''

RUNNER = r"""
import json, os, subprocess, sys, time, traceback
root, image, mode, step_timeout, walk_code = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
res = {"steps": {}, "violations": [], "state": None, "walk": None, "left_problems": None}
def step(name):
    print("step " + name, flush=True)
from simvol.errors import VdsError, HRESULTS
from simvol.service import VolumeService
svc = VolumeService(root)

def guard(name, fn):
    step(name)
    t = time.monotonic()
    try:
        v = fn()
        res["steps"][name] = {"ok": True, "s": round(time.monotonic() - t, 3)}
        if isinstance(v, list) and name in ("check", "repair", "recheck"):
            res["steps"][name]["problems"] = len(v)
        return True, v
    except VdsError as e:
        d = {"ok": False, "code": e.code, "hresult": e.hresult & 0xFFFFFFFF, "message": str(e)[:500],
             "s": round(time.monotonic() - t, 3)}
        if not e.code or not str(e).strip():
            res["violations"].append(f"{name}: VdsError without a code or message: {e!r}")
        if e.code == "VDS_E_INTERNAL_ERROR":
            res["violations"].append(f"{name}: internal error: {e}")
        res["steps"][name] = d
        return False, e
    except Exception as e:
        res["violations"].append(
            f"{name}: {type(e).__name__} escaped instead of a VdsError: {e}\n{traceback.format_exc()}"
        )
        res["steps"][name] = {"ok": False, "code": type(e).__name__}
        return False, e

vol = None
if mode == "cli":
    step("attach")
    exe = os.path.join(os.path.dirname(sys.executable), "simvol")
    t = time.monotonic()
    try:
        r = subprocess.run([exe, "--root", root, "--json", "attach", image], capture_output=True, text=True,
                           timeout=step_timeout)
    except subprocess.TimeoutExpired:
        res["violations"].append("simvol attach hung (CLI)")
        print("result " + json.dumps(res), flush=True)
        sys.exit(0)
    if "Traceback" in r.stderr:
        res["violations"].append("traceback on the CLI's stderr:\n" + r.stderr[-3000:])
    try:
        obj = json.loads(r.stdout)
        assert isinstance(obj, dict) and isinstance(obj.get("hresult"), int) and obj.get("code")
    except (ValueError, AssertionError):
        res["violations"].append(f"CLI stdout is not one JSON object with hresult and code: {r.stdout[:1000]!r}")
        obj = {"hresult": 0x80004005, "code": "?"}
    failed = bool(obj["hresult"] & 0x80000000)
    if r.returncode != (1 if failed else 0):
        res["violations"].append(f"CLI exit status {r.returncode} for {obj.get('code')}")
    if failed and not (obj.get("message") or "").strip():
        res["violations"].append(f"CLI failure without a message: {obj}")
    if obj.get("code") == "VDS_E_INTERNAL_ERROR":
        res["violations"].append(f"CLI attach: internal error: {obj.get('message')}")
    res["steps"]["attach"] = {
        "ok": not failed, "code": obj.get("code"), "hresult": obj.get("hresult"),
        "message": (obj.get("message") or "")[:500], "s": round(time.monotonic() - t, 3), "cli": True,
    }
    if not failed:
        ok, vol = guard("lookup", lambda: svc.volume(image))
        if not ok:
            vol = None
else:
    ok, vol = guard("attach", lambda: svc.attach(image))
    if not ok:
        vol = None

def walk(tag):
    ok, base = guard("resolve" + tag, lambda: svc.resolve("\\\\?\\Volume{" + str(vol.id) + "}\\"))
    if not ok:
        return
    step("walk" + tag)
    try:
        r = subprocess.run(
            [sys.executable, "-c", walk_code, base], capture_output=True, text=True, timeout=step_timeout
        )
        w = json.loads(r.stdout) if r.returncode == 0 else {"crashed": r.stderr[-1500:]}
    except subprocess.TimeoutExpired:
        res["violations"].append(f"walk{tag}: reading the mounted tree hung")
        w = {"hung": True}
    except ValueError:
        w = {"garbled": True}
    res["walk" + tag] = w

if vol is not None:
    ok, state = guard("state", lambda: vol.state)
    res["state"] = state if ok else None
    guard("properties", vol.get_properties)
    if res["state"] == "M":
        walk("")
        guard("fs_properties", vol.get_file_system_properties)
        guard("check", vol.check)
        ok, _ = guard("dismount", vol.dismount)
        if not ok:
            guard("dismount_force", lambda: vol.dismount(force=True))
    ok, problems = guard("repair", lambda: vol.check(repair=True))
    ok2, left = guard("recheck", vol.check)
    if ok and ok2:
        # Convergence: after a repair a second check finds nothing but what the repair called unfixable.
        unfixable = {(p["kind"], p["path"]) for p in problems if not p.get("repaired")}
        res["left_problems"] = [p for p in left if (p["kind"], p["path"]) not in unfixable]
        if res["left_problems"]:
            res["violations"].append(
                f"the repair did not converge: a second check still finds {res['left_problems'][:5]}"
            )
    ok, _ = guard("remount", vol.mount)
    if ok:
        ok, state2 = guard("state2", lambda: vol.state)
        if ok and state2 == "M":
            walk("2")
    # No damage amplification: a volume that mounted, read without an error and checked clean must come back
    # the same after a safe dismount, an offline repair and a remount (every file, same content).
    if res["state"] == "M" and res["steps"].get("dismount", {}).get("ok") and res["steps"].get("repair", {}).get("ok") \
            and not res["steps"].get("remount", {}).get("ok"):
        res["violations"].append("a volume that mounted no longer mounts after a safe dismount and a repair: "
                                 f"{res['steps'].get('remount')}")
    w1, c1 = res.get("walk") or {}, res["steps"].get("check", {})
    if (res["state"] == "M" and res["steps"].get("dismount", {}).get("ok") and c1.get("ok") and not c1.get("problems")
            and "sha" in w1 and not w1["errors"] and not w1.get("rewrite") and w1.get("grow") in ("ok", None)):
        w2 = res.get("walk2") or {}
        if not res["steps"].get("remount", {}).get("ok"):
            pass  # reported above
        elif "sha" not in w2:
            res["violations"].append(f"the remounted volume cannot be read: {w2}")
        elif {k: v for k, v in w2["sha"].items() if "campaign probe" not in k} != w1["sha"] or w2["errors"]:
            lost = sorted(set(w1["sha"]) - set(w2["sha"]))[:5]
            changed = sorted(k for k in w1["sha"] if k in w2["sha"] and w1["sha"][k] != w2["sha"][k])[:5]
            res["violations"].append(f"files changed across a clean dismount and remount: lost {lost}, changed "
                                     f"{changed}, errors {w2['errors']}")
    guard("detach", lambda: vol.detach(force=True))
print("result " + json.dumps(res, default=str), flush=True)
"""


# ------------------------------------------------------------------------------------------ one mutation


@dataclass
class MutationResult:
    index: int
    seed: int
    base: str = ""
    mutation: str = ""
    mode: str = ""
    attach: str = ""  # "S_OK" or the failure code
    state: str | None = None
    steps: dict = field(default_factory=dict)
    walk: dict | None = None
    left_problems: list | None = None
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False
    last_step: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations


def _snapshot(paths: list[str]) -> dict[str, tuple]:
    snap = {}
    for top in paths:
        if os.path.isfile(top):
            snap[top] = (os.path.getsize(top), sha256_file(top))
            continue
        for dp, dns, fns in os.walk(top):
            snap[dp] = ("dir", tuple(sorted(dns)), tuple(sorted(fns)))
            for n in fns:
                p = os.path.join(dp, n)
                snap[p] = (os.path.getsize(p), sha256_file(p))
    return snap


class Worker:
    """One root with a healthy volume; runs mutations one after another."""

    HEALTH = r'''
import os, sys
mp, tag = sys.argv[1], sys.argv[2]
p = os.path.join(mp, "health", f"{tag}.txt")
os.makedirs(os.path.dirname(p), exist_ok=True)
data = (tag * 500).encode()
with open(p, "wb") as f:
    f.write(data)
with open(p, "rb") as f:
    assert f.read() == data
with open(os.path.join(mp, "healthy.txt"), "rb") as f:
    assert f.read() == b"healthy\n" * 1000
os.unlink(p)
print("ok")
'''

    def __init__(self, root: str, bases: list[BaseImage], *, timeout: float, cli_every: int,
                 keep_failed: str | None) -> None:
        self.root = root
        self.bases = bases
        self.timeout = timeout
        self.cli_every = cli_every
        self.keep_failed = keep_failed
        self.svc = VolumeService(root)
        self.healthy = self.svc.create_volume(40 * MiB, label="HEALTHY", letter="H")
        r = run_py("import sys; open(sys.argv[1] + '/healthy.txt', 'wb').write(b'healthy\\n' * 1000)",
                   [self.healthy.mount_path], timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"cannot write the healthy volume: {r.stderr}")
        self.h_info = read_pidfile(self.svc.root.run, str(self.healthy.id))
        self.watch = LogWatch(self.svc.root.run)
        self.watch.new_text()
        self.sandbox = os.path.join(root, "sandbox")
        os.makedirs(self.sandbox, exist_ok=True)
        self.base_fps = {b.path: _fingerprint(b.path) for b in bases}
        self.others = {"healthy_guid": str(self.healthy.id), "other_guid": bases[-1].volume_id}

    def close(self) -> list[str]:
        problems = []
        try:
            self.healthy.dismount()
            clean, text = fsck(self.healthy.image)
            if not clean:
                problems.append(f"the healthy volume is not clean after the campaign:\n{text[-2000:]}")
            self.healthy.delete()
        except VdsError as e:
            problems.append(f"closing the healthy volume: {e.code}: {e}")
        self.svc.close()
        return problems

    def run(self, index: int, seed: int) -> MutationResult:
        t0 = time.monotonic()
        rnd = random.Random(seed ^ 0x5EED)
        base = rnd.choice(self.bases)
        res = MutationResult(index, seed, base=base.name)
        res.mode = "cli" if self.cli_every and index % self.cli_every == self.cli_every - 1 else "api"
        box = os.path.join(self.sandbox, f"m{seed}")
        os.makedirs(os.path.join(box, "sentinel dir"))
        image = os.path.join(box, "volume.img")
        with open(os.path.join(box, "sentinel.txt"), "wb") as f:
            f.write(b"sentinel " * 100)
        with open(os.path.join(box, "sentinel dir", "inner.bin"), "wb") as f:
            f.write(os.urandom(3000))
        subprocess.run(["cp", "--sparse=always", base.path, image], check=True)
        os.chmod(image, 0o600)
        res.mutation = mutate(image, base, seed, self.others)
        try:
            before_meta = read_metadata(image)
        except Exception:
            before_meta = None
        before_size = os.path.getsize(image)
        before_sha = sha256_file(image) if before_meta is None else None
        before_trailer = self._trailer(image) if before_meta is not None else None
        sentinels = _snapshot([os.path.join(box, "sentinel.txt"), os.path.join(box, "sentinel dir")])
        images_dir = self.svc.root.images
        others_before = {p: _fingerprint(os.path.join(images_dir, p)) for p in os.listdir(images_dir)
                         if os.path.join(images_dir, p) != self.healthy.image}

        run = run_py(RUNNER, [self.root, image, res.mode, str(min(60.0, self.timeout / 2)), WALK], timeout=self.timeout)
        steps = [line[5:] for line in run.stdout.splitlines() if line.startswith("step ")]
        res.last_step = steps[-1] if steps else ""
        if run.timed_out:
            res.timed_out = True
            res.violations.append(
                f"hang: the mutation did not finish within {self.timeout:.0f} s (last step: {res.last_step})"
            )
            self._cleanup_after_hang(image)
        result_line = next((line for line in run.stdout.splitlines() if line.startswith("result ")), None)
        if result_line is None:
            if not run.timed_out:
                res.violations.append(f"the runner ended without a result (rc {run.returncode}, last step "
                                      f"{res.last_step}):\n{run.stderr[-3000:]}")
                self._cleanup_after_hang(image)
        else:
            out = json.loads(result_line[7:])
            res.steps = out["steps"]
            res.state = out["state"]
            # The per-file hashes served the runner's comparison; the result keeps the counts only.
            res.walk = {k: v for k, v in out["walk"].items() if k != "sha"} if out.get("walk") else out.get("walk")
            res.left_problems = out.get("left_problems")
            res.violations += out["violations"]
            if out.get("walk2"):
                res.steps["walk2"] = {k: v for k, v in out["walk2"].items() if k != "sha"}
        if "Traceback" in run.stderr:
            res.violations.append(f"traceback on the runner's stderr:\n{run.stderr[-3000:]}")
        a = res.steps.get("attach", {})
        res.attach = "S_OK" if a.get("ok") else (a.get("code") or "?")

        # Nothing left behind, nothing else touched.
        for t in self.watch.new_tracebacks():
            res.violations.append(f"traceback in a daemon log: {t}")
        if self.svc.registry.volume_by_image(os.path.abspath(image)) is not None:
            res.violations.append("the image is still attached after detach")
            self._cleanup_after_hang(image)
        left = [p for p in leftover_mounts(self.svc.root.volumes, {self.healthy.mount_path})]
        if left:
            res.violations.append(f"mounts left behind: {left}")
            self._cleanup_after_hang(image)
        strays = [p.pid for p in daemons_of(self.root) if p.pid != self.h_info.pid]
        if strays:
            res.violations.append(f"daemons left behind: {strays}")
            self._cleanup_after_hang(image)
        if _snapshot([os.path.join(box, "sentinel.txt"), os.path.join(box, "sentinel dir")]) != sentinels:
            res.violations.append("the sentinel file or directory beside the image changed")
        if sorted(os.listdir(box)) != sorted(["volume.img", "sentinel.txt", "sentinel dir"]):
            res.violations.append(f"new files beside the image: {sorted(os.listdir(box))}")
        others_after = {p: _fingerprint(os.path.join(images_dir, p)) for p in os.listdir(images_dir)
                        if os.path.join(images_dir, p) != self.healthy.image}
        if others_after != others_before:
            res.violations.append(f"the root's other images changed: {others_before} -> {others_after}")
        for b in self.bases:
            if _fingerprint(b.path) != self.base_fps[b.path]:
                res.violations.append(f"base image {b.name} changed")
        after_size = os.path.getsize(image)
        if after_size != before_size:
            res.violations.append(f"the image file changed size: {before_size} -> {after_size}")
        if before_meta is None:
            if sha256_file(image) != before_sha:
                res.violations.append("an image whose metadata cannot be read was written to")
        else:
            after_trailer = self._trailer(image)
            if after_trailer != before_trailer:
                try:
                    after_meta = read_metadata(image)
                    same = (after_meta.volume_id, after_meta.fs_size) == (before_meta.volume_id, before_meta.fs_size)
                except Exception as e:
                    same, after_meta = False, e
                pd = int(VolumeFlag.PERMANENTLY_DISMOUNTED)
                if not (same and before_meta.flags & pd and not after_meta.flags & pd):  # Mount clears P: allowed
                    res.violations.append(
                        f"the metadata trailer was overwritten (before {before_meta}, after {after_meta})"
                    )
        # The healthy volume is undisturbed.
        if not daemon_alive(self.h_info) or (
            (cur := read_pidfile(self.svc.root.run, str(self.healthy.id))) is None or cur.pid != self.h_info.pid
        ):
            res.violations.append("the healthy volume's daemon died or was replaced")
            self.h_info = read_pidfile(self.svc.root.run, str(self.healthy.id)) or self.h_info
        h = run_py(self.HEALTH, [self.healthy.mount_path, f"m{seed}"], timeout=30)
        if h.timed_out or h.stdout.strip() != "ok":
            res.violations.append(f"the healthy volume no longer reads and writes: {h.stderr[-1000:]}")

        res.seconds = round(time.monotonic() - t0, 2)
        if res.violations and self.keep_failed:
            os.makedirs(self.keep_failed, exist_ok=True)
            try:
                subprocess.run(["cp", "--sparse=always", image, os.path.join(self.keep_failed, f"damage-{seed}.img")],
                               check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass
        rmtree_quiet(box)
        return res

    @staticmethod
    def _trailer(image: str) -> bytes:
        with open(image, "rb") as f:
            f.seek(max(0, os.path.getsize(image) - TRAILER_SIZE))
            return f.read()

    def _cleanup_after_hang(self, image: str) -> None:
        """Kill the mutated volume's daemon (never the healthy one), remove its mount, forget it."""
        for p in daemons_of(self.root):
            if p.pid != self.h_info.pid:
                try:
                    p.kill()
                    p.wait(10)
                except Exception:
                    pass
        for mp in leftover_mounts(self.svc.root.volumes, {self.healthy.mount_path}):
            run_cmd(["fusermount3", "-uz", mp], timeout=20)
        row = self.svc.registry.volume_by_image(os.path.abspath(image))
        if row is not None:
            try:
                self.svc.volume(row.id).detach(force=True)
            except VdsError:
                self.svc.registry.remove_volume(row.id)


# ------------------------------------------------------------------------------------------ the campaign


@dataclass
class DamageSummary:
    results: list[MutationResult]
    seconds: float
    setup_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.setup_problems and all(r.ok for r in self.results)

    def lines(self) -> list[str]:
        rs = self.results
        attach = Counter(r.attach for r in rs)
        outcome = Counter(_outcome(r) for r in rs)
        kinds = Counter((r.mutation.split() or ["?"])[0].rstrip(":") for r in rs)
        step_codes = Counter(
            f"{name}:{s.get('code')}" for r in rs for name, s in r.steps.items()
            if isinstance(s, dict) and s.get("ok") is False and name != "attach"
        )
        unconverged = [r for r in rs if r.left_problems]
        slow = max(rs, key=lambda r: r.seconds) if rs else None
        out = [
            f"mutations         {len(rs)}",
            f"violations        {sum(len(r.violations) for r in rs)} "
            f"(in {sum(1 for r in rs if r.violations)} mutations)",
            f"timeouts (hangs)  {sum(1 for r in rs if r.timed_out)}",
            "outcome           " + ", ".join(f"{k} {v}" for k, v in outcome.most_common()),
            "attach result     " + ", ".join(f"{k} {v}" for k, v in attach.most_common()),
            "later step fails  " + (", ".join(f"{k} {v}" for k, v in step_codes.most_common()) or "none"),
            f"repair converged  {sum(1 for r in rs if r.left_problems == [])} of "
            f"{sum(1 for r in rs if r.left_problems is not None)} repaired volumes "
            f"({len(unconverged)} left problems a second check still found)",
            "mutation kinds    " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
            "via CLI           " + str(sum(1 for r in rs if r.mode == "cli")),
        ]
        if slow:
            out.append(f"slowest mutation  #{slow.index} seed {slow.seed} ({slow.mutation}): {slow.seconds:.1f} s")
        out.append(f"wall time         {self.seconds:.0f} s")
        for p in self.setup_problems:
            out.append(f"FAILED set-up: {p}")
        for r in rs:
            if not r.ok:
                out.append(f"FAILED mutation #{r.index} seed {r.seed} base {r.base} [{r.mutation}] via {r.mode} "
                           f"(replay: scripts/campaign damage --seed {r.seed} --mutations 1):")
                out += [f"  {v[:3000]}" for v in r.violations[:10]]
        for r in unconverged[:10]:
            out.append(f"note: repair left problems, seed {r.seed} [{r.mutation}]: {r.left_problems[:3]}")
        return out


def _outcome(r: MutationResult) -> str:
    if r.timed_out:
        return "hang"
    if r.attach != "S_OK":
        return "refused at attach"
    if r.state != "M":
        return f"attached, state {r.state}"
    w = r.walk or {}
    if w.get("hung") or w.get("crashed") or w.get("garbled"):
        return "mounted, walk failed"
    if (
        w.get("errors")
        or w.get("write") not in (None, "ok", "EROFS")
        or (w.get("rewrite") and set(w["rewrite"]) != {"EROFS"})
        or w.get("grow") not in (None, "ok", "EROFS")
    ):
        return "mounted, some I/O errors"
    return "mounted read-only, all readable" if w.get("write") == "EROFS" else "mounted, all readable"


def run_campaign(root: str, mutations: int, seed: int, *, workers: int = 2, timeout: float = 90.0, cli_every: int = 4,
                 keep_failed: str | None = None, log=print) -> DamageSummary:
    t0 = time.monotonic()
    bases = make_bases(root, log=log)
    results: list[MutationResult] = []
    setup_problems: list[str] = []
    lock = threading.Lock()
    next_index = [0]
    done = [0]

    def work(k: int) -> None:
        try:
            w = Worker(
                os.path.join(root, f"w{k}"), bases, timeout=timeout, cli_every=cli_every, keep_failed=keep_failed
            )
        except Exception as e:
            with lock:
                setup_problems.append(f"worker {k}: {type(e).__name__}: {e}")
            return
        try:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= mutations:
                        break
                    next_index[0] += 1
                try:
                    r = w.run(i, seed + i)
                except Exception as e:  # a harness failure still names its seed
                    import traceback

                    r = MutationResult(
                        i, seed + i, violations=[f"harness: {type(e).__name__}: {e}\n{traceback.format_exc()}"]
                    )
                with lock:
                    results.append(r)
                    done[0] += 1
                    n = done[0]
                log(f"{n}/{mutations} seed {r.seed} {r.base:4} {r.mode:3} {'ok' if r.ok else 'FAILED'} "
                    f"[{r.mutation}] -> {_outcome(r)} ({r.attach}), {r.seconds:.1f} s")
                for v in r.violations[:5]:
                    log("  " + v[:2000])
        finally:
            problems = w.close()
            with lock:
                setup_problems.extend(problems)

    threads = [threading.Thread(target=work, args=(k,), name=f"damage-{k}") for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b in bases:
        if sha256_file(b.path) != b.fingerprint:
            setup_problems.append(f"base image {b.name} changed during the campaign")
    results.sort(key=lambda r: r.index)
    return DamageSummary(results, time.monotonic() - t0, setup_problems)

"""A model-based file exerciser through a real mount, in the spirit of xfstests' fsx (which is not copied here).

A separate process (``python -m tools.campaign.fsx DIR SEED OPS PHASES``) issues random system calls against
files in ``DIR`` — open/create (any spelling of the name, sometimes ``O_TRUNC`` or ``O_APPEND``), ``pread``,
``pwrite`` past the end (holes), ``ftruncate`` and ``truncate`` up and down, ``mmap`` writes with and without
``msync``, ``fsync``, ``close``, ``rename`` (also over another file and case-only), ``unlink``, ``stat`` and
``listdir`` — and keeps an in-memory model of what each file must hold. Every read, stat and listing is
compared with the model on the spot, and each file is read whole at the end of each phase.

The model follows Windows' rules as simvol documents them (docs/behaviour.md): names are case-insensitive and
case-preserving, renaming or deleting a file that is open (or mapped) fails with EBUSY, a rename over an
existing file replaces it. Two modes: with stored spellings every call spells a name as it is stored (case-only
renames still change it); with ``aliases`` every call may spell the name and its directory in another case,
so the kernel holds several inodes of one file at once and the daemon must keep them coherent (this mode found
the defects in docs/behaviour.md, "Other spellings of a name").

Between phases the exerciser closes everything and prints a line ``{"phase": k, "files": {...}}``; the parent
(:func:`run_trial`) then safely dismounts the volume, checks it with ``fsck.fat -n``, mounts it again and
answers ``go``; the next phase starts by checking every file against the model, so what the model expects
must have reached the image. After the last phase mtools reads every file straight from the image and its
SHA-256 must equal the model's.

``scripts/campaign fsx --trials N --ops M`` runs the large setting; the reliability suite runs a small one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MiB = 1 << 20
DEFAULT_SEED = 5_150_000
# The names the exerciser plays with: two directories deep, long names and 8.3 names; "sub" exists from the start.
NAMES = ["a.txt", "B.dat", "long file name.bin", "sub/c.TXT", "sub/Deep Name Of A File.log", "sub/d"]
MAX_SIZE = 768 * 1024  # a file's largest size in the model (the volume is 64 MiB)
MAX_OPEN = 6


# ---------------------------------------------------------------------------------------------- the exerciser


class Mismatch(Exception):
    """The file system answered differently from the model."""


def _variant(rnd: random.Random, name: str) -> str:
    """Another spelling of ``name`` (its last component only): as stored, all upper, all lower or mixed."""
    head, sep, base = name.rpartition("/")
    k = rnd.randrange(4)
    if k == 1:
        base = base.upper()
    elif k == 2:
        base = base.lower()
    elif k == 3:
        base = "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in base)
    return head + sep + base


class Exerciser:
    def __init__(self, top: str, seed: int, aliases: bool = True) -> None:
        self.top = top
        self.rnd = random.Random(seed)
        # With aliases, every call may spell a name another way (also its directory); without, calls use the
        # stored spelling and only case-only renames change it.
        self.aliases = aliases
        self.files: dict[str, tuple[str, bytearray]] = {}  # lower-case name → (stored spelling, contents)
        self.fds: list[tuple[int, str, int]] = []  # (fd, lower-case name, open flags)
        self.counts: dict[str, int] = {}
        self.op_no = 0
        self.log: list[str] = []  # the last operations, for the report of a mismatch

    # -- helpers
    def path(self, name: str) -> str:
        return os.path.join(self.top, name)

    def spell(self, name: str) -> str:
        """How this call spells a stored name."""
        if not self.aliases:
            return name
        head, sep, base = _variant(self.rnd, name).rpartition("/")
        return (_variant(self.rnd, head) if head else head) + sep + base

    def note(self, text: str) -> None:
        self.log.append(f"#{self.op_no} {text}")
        del self.log[:-25]

    def fail(self, text: str) -> None:
        raise Mismatch(f"op #{self.op_no}: {text}\nlast operations:\n  " + "\n  ".join(self.log))

    def is_open(self, key: str) -> bool:
        return any(k == key for _, k, _ in self.fds)

    def pick_name(self) -> tuple[str, str]:
        """(spelling to use, model key): an existing file's name half the time, else any name of the pool."""
        if self.files and self.rnd.random() < 0.5:
            key = self.rnd.choice(sorted(self.files))
        else:
            key = self.rnd.choice(NAMES).lower()
        base = self.files[key][0] if key in self.files else next(n for n in NAMES if n.lower() == key)
        return self.spell(base), key

    def expect_errno(self, want: int, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except OSError as e:
            if e.errno != want:
                self.fail(f"{what}: {errno.errorcode.get(e.errno, e.errno)}, expected {errno.errorcode[want]}")
            return
        self.fail(f"{what}: succeeded, expected {errno.errorcode[want]}")

    def check_file(self, key: str) -> None:
        name, data = self.files[key]
        fd = os.open(self.path(self.spell(name)), os.O_RDONLY)
        try:
            got = b""
            while chunk := os.pread(fd, MiB, len(got)):
                got += chunk
        finally:
            os.close(fd)
        if got != data:
            first = next((i for i in range(min(len(got), len(data))) if got[i] != data[i]), min(len(got), len(data)))
            self.fail(f"{name}: {len(got)} bytes read, model has {len(data)}; first difference at {first}")

    def check_listing(self) -> None:
        for d in ("", "sub"):
            want = {n.rsplit("/", 1)[-1] for n, _ in self.files.values() if n.rpartition("/")[0].lower() == d}
            if d == "":
                want.add("sub")
            got = set(os.listdir(self.path(d) if d else self.top))
            if got != want:
                self.fail(f"listdir({d or '.'}) = {sorted(got)}, model {sorted(want)}")

    # -- operations
    def op_open(self) -> None:
        if len(self.fds) >= MAX_OPEN:
            return self.op_close()
        spelling, key = self.pick_name()
        acc = self.rnd.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR])
        flags = acc
        if acc != os.O_RDONLY:
            if self.rnd.random() < 0.1:
                flags |= os.O_TRUNC
            if self.rnd.random() < 0.15:
                flags |= os.O_APPEND
        exists = key in self.files
        if not exists:
            if acc == os.O_RDONLY:
                self.note(f"open({spelling}, RDONLY) of a missing file")
                return self.expect_errno(
                    errno.ENOENT, f"open({spelling}) of a missing file", lambda: os.open(self.path(spelling), acc)
                )
            flags |= os.O_CREAT
        self.note(f"open({spelling}, {flags:#o})")
        fd = os.open(self.path(spelling), flags, 0o644)
        self.log[-1] += f" = fd {fd}"
        if not exists:
            self.files[key] = (spelling, bytearray())
        elif flags & os.O_TRUNC:
            del self.files[key][1][:]
        self.fds.append((fd, key, flags))

    def pick_fd(self, want_write: bool | None) -> tuple[int, str, int] | None:
        cands = [
            t for t in self.fds
            if want_write is None
            or (want_write and t[2] & os.O_ACCMODE != os.O_RDONLY)
            or (not want_write and t[2] & os.O_ACCMODE != os.O_WRONLY)
        ]
        return self.rnd.choice(cands) if cands else None

    def op_write(self) -> None:
        t = self.pick_fd(True)
        if t is None:
            return self.op_open()
        fd, key, flags = t
        data = self.files[key][1]
        n = self.rnd.choice([1, 7, 512, 4096, self.rnd.randrange(1, 70_000)])
        off = self.rnd.randrange(0, min(len(data) + 70_000, MAX_SIZE - n))
        payload = self.rnd.randbytes(n)
        if flags & os.O_APPEND:
            off = len(data)  # Linux ignores pwrite's offset for O_APPEND descriptors
            if off + n > MAX_SIZE:
                return
        self.note(f"pwrite(fd {fd} {key}, {n} bytes at {off})")
        done = os.pwrite(fd, payload, off)
        if done != n:
            self.fail(f"pwrite wrote {done} of {n} bytes")
        if off > len(data):
            data.extend(bytes(off - len(data)))
        data[off:off + n] = payload

    def op_read(self) -> None:
        t = self.pick_fd(False)
        if t is None:
            return self.op_open()
        fd, key, _ = t
        data = self.files[key][1]
        n = self.rnd.choice([1, 100, 4096, self.rnd.randrange(1, 200_000)])
        off = self.rnd.randrange(0, len(data) + 5000)
        self.note(f"pread(fd {fd} {key}, {n} at {off})")
        got = os.pread(fd, n, off)
        if got != bytes(data[off:off + n]):
            self.fail(f"pread({key}, {n}, {off}): {len(got)} bytes differ from the model's {len(data[off:off + n])}")

    def new_size(self, old: int) -> int:
        return self.rnd.choice([0, self.rnd.randrange(0, old + 1), self.rnd.randrange(0, min(old + 300_000, MAX_SIZE))])

    def op_ftruncate(self) -> None:
        t = self.pick_fd(True)
        if t is None:
            return self.op_open()
        fd, key, _ = t
        data = self.files[key][1]
        size = self.new_size(len(data))
        self.note(f"ftruncate(fd {fd} {key}, {size})")
        os.ftruncate(fd, size)
        self._resize(data, size)

    def op_truncate(self) -> None:
        if not self.files:
            return self.op_open()
        spelling, key = self.pick_name()
        if key not in self.files:
            self.note(f"truncate({spelling}) of a missing file")
            return self.expect_errno(errno.ENOENT, f"truncate({spelling})", lambda: os.truncate(self.path(spelling), 0))
        data = self.files[key][1]
        size = self.new_size(len(data))
        self.note(f"truncate({spelling}, {size})")
        os.truncate(self.path(spelling), size)
        self._resize(data, size)

    @staticmethod
    def _resize(data: bytearray, size: int) -> None:
        if size < len(data):
            del data[size:]
        else:
            data.extend(bytes(size - len(data)))

    def op_mmap(self) -> None:
        cands = [t for t in self.fds if t[2] & os.O_ACCMODE == os.O_RDWR and self.files[t[1]][1]]
        if not cands:
            return self.op_open()
        fd, key, _ = self.rnd.choice(cands)
        data = self.files[key][1]
        off = self.rnd.randrange(len(data))
        n = self.rnd.randrange(1, min(len(data) - off, 20_000) + 1)
        payload = self.rnd.randbytes(n)
        sync = self.rnd.random() < 0.5
        self.note(f"mmap write(fd {fd} {key}, {n} at {off}, msync={sync})")
        with mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            if m[off:off + n] != bytes(data[off:off + n]):
                self.fail(f"mmap of {key} shows other bytes than the model at {off}")
            m[off:off + n] = payload
            if sync:
                m.flush()
        data[off:off + n] = payload

    def op_fsync(self) -> None:
        t = self.pick_fd(None)
        if t is None:
            return self.op_open()
        self.note(f"fsync(fd {t[0]} {t[1]})")
        os.fsync(t[0])

    def op_close(self) -> None:
        if not self.fds:
            return self.op_open()
        t = self.fds.pop(self.rnd.randrange(len(self.fds)))
        self.note(f"close(fd {t[0]} {t[1]})")
        os.close(t[0])

    def op_rename(self) -> None:
        if not self.files:
            return self.op_open()
        src_key = self.rnd.choice(sorted(self.files))
        src = self.spell(self.files[src_key][0])
        dst, dst_key = self.pick_name()
        if self.rnd.random() < 0.2:
            dst, dst_key = _variant(self.rnd, src), src_key  # a case-only rename
        what = f"rename({src}, {dst})"
        self.note(what)
        if src == dst:
            os.rename(self.path(src), self.path(dst))  # one dentry: the kernel answers 0 without asking simvol
            return
        if self.is_open(src_key) or (dst_key != src_key and dst_key in self.files and self.is_open(dst_key)):
            return self.expect_errno(
                errno.EBUSY, what + " of an open file", lambda: os.rename(self.path(src), self.path(dst))
            )
        os.rename(self.path(src), self.path(dst))
        _, data = self.files.pop(src_key)
        self.files.pop(dst_key, None)
        self.files[dst_key] = (dst, data)

    def op_unlink(self) -> None:
        spelling, key = self.pick_name()
        what = f"unlink({spelling})"
        self.note(what)
        if key not in self.files:
            return self.expect_errno(errno.ENOENT, what + " of a missing file", lambda: os.unlink(self.path(spelling)))
        if self.is_open(key):
            return self.expect_errno(errno.EBUSY, what + " of an open file", lambda: os.unlink(self.path(spelling)))
        os.unlink(self.path(spelling))
        del self.files[key]

    def op_stat(self) -> None:
        spelling, key = self.pick_name()
        self.note(f"stat({spelling})")
        if key not in self.files:
            return self.expect_errno(errno.ENOENT, f"stat({spelling})", lambda: os.stat(self.path(spelling)))
        st = os.stat(self.path(spelling))
        if st.st_size != len(self.files[key][1]):
            self.fail(f"stat({spelling}).st_size = {st.st_size}, model {len(self.files[key][1])}")

    def op_verify(self) -> None:
        if self.files:
            key = self.rnd.choice(sorted(self.files))
            self.note(f"read whole {key}")
            self.check_file(key)
        self.check_listing()

    OPS: tuple[tuple[str, int], ...] = (
        ("open", 12), ("write", 24), ("read", 16), ("ftruncate", 5), ("truncate", 3), ("mmap", 6), ("fsync", 3),
        ("close", 9), ("rename", 6), ("unlink", 4), ("stat", 6), ("verify", 3),
    )

    def step(self) -> None:
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        op = self.rnd.choices(names, weights)[0]
        self.op_no += 1
        self.counts[op] = self.counts.get(op, 0) + 1
        getattr(self, "op_" + op)()

    def close_all(self) -> None:
        while self.fds:
            os.close(self.fds.pop()[0])

    def check_all(self) -> None:
        for key in sorted(self.files):
            self.check_file(key)
        self.check_listing()

    def digests(self) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in self.files.values()}


def exercise(top: str, seed: int, ops: int, phases: int, aliases: bool) -> int:
    """The child's main loop; the protocol is described in the module docstring."""
    ex = Exerciser(top, seed, aliases)
    os.makedirs(os.path.join(top, "sub"), exist_ok=True)
    per_phase = max(1, ops // phases)
    try:
        for phase in range(phases):
            if phase:
                ex.check_all()  # after the parent's dismount + remount
            for _ in range(per_phase):
                ex.step()
            ex.close_all()
            ex.check_all()
            print(json.dumps({"phase": phase, "ops": ex.op_no, "files": ex.digests(), "counts": ex.counts}), flush=True)
            if phase + 1 < phases and sys.stdin.readline().strip() != "go":
                return 3
    except Mismatch as e:
        print(json.dumps({"mismatch": str(e)}), flush=True)
        return 1
    except Exception as e:  # OSError, or ValueError from mmap when the size is not the model's
        print(json.dumps({"mismatch": f"op #{ex.op_no}: unexpected {e!r}\nlast operations:\n  " + "\n  ".join(ex.log)}),
              flush=True)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------- the parent


@dataclass
class FsxResult:
    index: int
    seed: int
    ops: int = 0
    phases: int = 0
    files: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def run_trial(root: str, index: int, seed: int, *, ops: int = 2000, phases: int = 3, aliases: bool = False,
              timeout: float = 600.0) -> FsxResult:
    """Create a volume on ``root``, run the exerciser against it with a dismount + fsck + remount between
    phases, then compare the image (read by mtools) with the model."""
    import subprocess

    from simvol.service import VolumeService

    from .common import LogWatch, delete_volume, describe_failure, fsck, kill_group, mtools_sha256, read_line

    t0 = time.monotonic()
    res = FsxResult(index, seed)
    svc = VolumeService(root)
    watch = LogWatch(svc.root.run)
    watch.new_text()
    vol = None
    proc = None
    try:
        vol = svc.create_volume(64 * MiB, label="FSX")
        # The exerciser is this module, run from the checkout's root (tools/ is not installed).
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=repo)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.campaign.fsx", vol.mount_path, str(seed), str(ops), str(phases),
             "aliases" if aliases else "stored"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", env=env,
            start_new_session=True,
        )
        assert proc.stdin is not None
        files: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        for phase in range(phases):
            line = read_line(proc, max(1.0, deadline - time.monotonic()))
            if not line:
                res.violations.append(
                    f"phase {phase}: no report from the exerciser (timed out or died: rc={proc.poll()})"
                )
                return res
            report = json.loads(line)
            if "mismatch" in report:
                res.violations.append(f"phase {phase}: {report['mismatch']}")
                return res
            res.phases, res.ops, files, res.counts = phase + 1, report["ops"], report["files"], report["counts"]
            if phase + 1 < phases:
                vol.dismount()
                clean, text = fsck(vol.image)
                if not clean:
                    res.violations.append(f"fsck.fat -n after phase {phase}:\n{text[-3000:]}")
                    return res
                vol.mount()
                proc.stdin.write("go\n")
                proc.stdin.flush()
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            res.violations.append("the exerciser did not exit after its last phase")
            return res
        if proc.returncode != 0:
            res.violations.append(f"the exerciser exited {proc.returncode}: {err[-2000:]}")
        vol.dismount()
        clean, text = fsck(vol.image)
        if not clean:
            res.violations.append(f"fsck.fat -n after the last phase:\n{text[-3000:]}")
        for name, want in sorted(files.items()):
            got, err = mtools_sha256(vol.image, name)
            if got is None:
                res.violations.append(err)
            elif got != want:
                res.violations.append(f"mtools reads {name} differently from the model")
            else:
                res.files += 1
        res.violations += [f"traceback in a daemon log: {t}" for t in watch.new_tracebacks()]
    except Exception as e:  # a VDS failure, or a harness or service bug: reported with the trial
        res.violations.append(describe_failure(e))
    finally:
        res.seconds = round(time.monotonic() - t0, 2)
        if proc is not None and proc.poll() is None:
            kill_group(proc)
            proc.wait(10)
        delete_volume(vol, res.violations)
        svc.close()
    return res


@dataclass
class FsxSummary:
    results: list[FsxResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def lines(self) -> list[str]:
        rs = self.results
        counts: dict[str, int] = {}
        for r in rs:
            for k, v in r.counts.items():
                counts[k] = counts.get(k, 0) + v
        out = [
            f"trials            {len(rs)}",
            f"operations        {sum(r.ops for r in rs)} checked against the model "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})",
            f"remounts          {sum(max(r.phases - 1, 0) for r in rs)} (dismount, fsck.fat -n, mount between phases)",
            f"files by mtools   {sum(r.files for r in rs)} matched the model",
            f"violations        {sum(len(r.violations) for r in rs)} (in {sum(1 for r in rs if r.violations)} trials)",
            f"wall time         {self.seconds:.0f} s",
        ]
        for r in rs:
            if not r.ok:
                out.append(f"FAILED trial #{r.index} seed {r.seed} (replay: scripts/campaign fsx --seed {r.seed} "
                           f"--trials 1 with the same --ops, --phases and --aliases):")
                out += [f"  {v}" for v in r.violations[:20]]
        return out


def run_campaign(root: str, trials: int, seed: int, *, ops: int = 2000, phases: int = 3, aliases: bool = False,
                 log: Callable[[str], None] = print) -> FsxSummary:
    t0 = time.monotonic()
    results = []
    for i in range(trials):
        r = run_trial(root, i, seed + i, ops=ops, phases=phases, aliases=aliases)
        results.append(r)
        log(f"trial {i + 1}/{trials} seed {r.seed}: {'ok' if r.ok else 'FAILED'} — {r.ops} operations, "
            f"{r.phases} phases, {r.files} files matched by mtools, {r.seconds:.1f} s")
        for v in r.violations[:10]:
            log(f"  {v}")
    return FsxSummary(results, time.monotonic() - t0)


if __name__ == "__main__":
    sys.exit(exercise(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "aliases"))

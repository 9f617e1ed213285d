"""Stateful property test: the FAT32 engine against an in-memory model of a case-insensitive tree.

Rules create, write (anywhere, also past EOF), truncate, rename (files and directories, within and across
directories, replacing), unlink, mkdir, rmdir, and close-and-reopen; every step compares the whole tree
(exact names and contents). Teardown closes the volume and requires ``check()`` and ``fsck.fat -n`` to find
nothing. Small volumes with 512-byte clusters and a small name alphabet make chains fragment and names clash
(case variants, aliases).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import tempfile
import warnings

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simvol.fat import FatFileSystem, check
from tests.support import fatoracle as O

VOLUME = 40 << 20
CLUSTER = 512

# Few names, so that they clash: case variants, 8.3-only names, long names, lossy names with ~1 aliases.
NAMES = ["a", "A", "b.txt", "B.TXT", "b.Txt", "Long Name", "long name.dat", "x.y.z", "ü", "Ü", "文件", "ab", "a b"]
names = st.sampled_from(NAMES)


def _key(path: str) -> str:
    return path.upper()


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}"


class FatMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # tmpfs when there is one: the engine fsyncs at every open and close, and a disk makes that the cost.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.tmp = tempfile.mkdtemp(prefix="simvol-stateful-", dir=shm)
        self.img = os.path.join(self.tmp, "vol.img")
        O.make_volume(self.img, VOLUME, cluster_size=CLUSTER)
        self.fs = FatFileSystem.open_path(self.img)
        self.files: dict[str, bytes] = {}  # exact path -> contents
        self.dirs: set[str] = set()  # exact paths, root excluded

    # ------------------------------------------------------------------ model helpers

    def _find(self, path: str) -> str | None:
        """The existing exact path matching ``path`` case-insensitively ('' is the root)."""
        if path == "":
            return ""
        k = _key(path)
        for p in self.files.keys() | self.dirs:
            if _key(p) == k:
                return p
        return None

    def _children(self, d: str) -> list[str]:
        return [p for p in self.files.keys() | self.dirs if _parent(p) == d]

    def _dir_choices(self) -> list[str]:
        return sorted(self.dirs | {""})

    def _expect_error(self, err: int, fn, *args) -> None:
        with pytest.raises(OSError) as ei:
            fn(*args)
        assert ei.value.errno == err, f"{fn.__name__}{args}: errno {ei.value.errno}, expected {err}"

    # ------------------------------------------------------------------ rules

    @rule(data=st.data(), name=names)
    def create(self, data, name: str) -> None:
        path = _join(data.draw(st.sampled_from(self._dir_choices())), name)
        if self._find(path) is not None:
            self._expect_error(errno.EEXIST, self.fs.create, path)
            return
        self.fs.create(path)
        self.files[path] = b""

    @rule(data=st.data(), name=names)
    def mkdir(self, data, name: str) -> None:
        path = _join(data.draw(st.sampled_from(self._dir_choices())), name)
        if self._find(path) is not None:
            self._expect_error(errno.EEXIST, self.fs.mkdir, path)
            return
        self.fs.mkdir(path)
        self.dirs.add(path)

    @precondition(lambda self: self.files)
    @rule(
        data=st.data(),
        length=st.integers(0, 64 * 1024) | st.sampled_from([1, 511, 512, 513]),
        seed=st.integers(0, 2**32),
    )
    def write(self, data, length: int, seed: int) -> None:
        path = data.draw(st.sampled_from(sorted(self.files)))
        size = len(self.files[path])
        offset = data.draw(st.integers(0, size + 70_000) | st.sampled_from([0, size, max(0, size - 1)]))
        buf = random.Random(seed).randbytes(length)
        lookup = data.draw(st.sampled_from([path, path.upper(), path.lower()]))  # any case finds the file
        assert self.fs.write(lookup, buf, offset) == length
        if length:
            old = self.files[path]
            if offset > len(old):
                old += bytes(offset - len(old))
            self.files[path] = old[:offset] + buf + old[offset + length :]

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def truncate(self, data) -> None:
        path = data.draw(st.sampled_from(sorted(self.files)))
        size = len(self.files[path])
        length = data.draw(st.integers(0, size + 40_000) | st.sampled_from([0, size // 2, size + 1]))
        self.fs.truncate(path, length)
        old = self.files[path]
        self.files[path] = old[:length] + bytes(max(0, length - len(old)))

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def unlink(self, data) -> None:
        path = data.draw(st.sampled_from(sorted(self.files)))
        self.fs.unlink(path)
        del self.files[path]

    @precondition(lambda self: self.dirs)
    @rule(data=st.data())
    def unlink_directory(self, data) -> None:
        path = data.draw(st.sampled_from(sorted(self.dirs)))
        self._expect_error(errno.EISDIR, self.fs.unlink, path)

    @precondition(lambda self: self.dirs or self.files)
    @rule(data=st.data())
    def rmdir(self, data) -> None:
        path = data.draw(st.sampled_from(sorted(self.dirs | self.files.keys())))
        if path in self.files:
            self._expect_error(errno.ENOTDIR, self.fs.rmdir, path)
        elif self._children(path):
            self._expect_error(errno.ENOTEMPTY, self.fs.rmdir, path)
        else:
            self.fs.rmdir(path)
            self.dirs.remove(path)

    @precondition(lambda self: self.dirs or self.files)
    @rule(data=st.data(), name=names)
    def rename(self, data, name: str) -> None:
        src = data.draw(st.sampled_from(sorted(self.dirs | self.files.keys())))
        dparent = data.draw(st.sampled_from(self._dir_choices()))
        if data.draw(st.booleans()):
            dparent = _parent(src)  # within the directory, often
        dst = _join(dparent, name)
        src_is_dir = src in self.dirs
        target = self._find(dst)
        if src_is_dir and (_key(dparent) == _key(src) or _key(dparent).startswith(_key(src) + "/")):
            self._expect_error(errno.EINVAL, self.fs.rename, src, dst)
            return
        if target is not None and target != src:
            if target in self.dirs:
                if not src_is_dir:
                    self._expect_error(errno.EISDIR, self.fs.rename, src, dst)
                    return
                if self._children(target):
                    self._expect_error(errno.ENOTEMPTY, self.fs.rename, src, dst)
                    return
            elif src_is_dir:
                self._expect_error(errno.ENOTDIR, self.fs.rename, src, dst)
                return
        self.fs.rename(src, dst)
        # Model: drop the replaced target, then move src (and, for a directory, everything below it).
        if target is not None and target != src:
            if target in self.dirs:
                self.dirs.remove(target)
            else:
                del self.files[target]
        if not src_is_dir:
            self.files[dst] = self.files.pop(src)
            return
        self.dirs.remove(src)
        self.dirs.add(dst)
        prefix = src + "/"
        for p in [p for p in self.files if p.startswith(prefix)]:
            self.files[dst + "/" + p[len(prefix) :]] = self.files.pop(p)
        for p in [p for p in self.dirs if p.startswith(prefix)]:
            self.dirs.remove(p)
            self.dirs.add(dst + "/" + p[len(prefix) :])

    @rule(data=st.data(), count=st.integers(1, 40))
    def populate(self, data, count: int) -> None:
        """Many entries in one directory: it grows past a cluster, and later removals leave slot holes."""
        parent = data.draw(st.sampled_from(self._dir_choices()))
        for i in range(count):
            path = _join(parent, f"filler {i} with a longer name.bin")
            if self._find(path) is None:
                self.fs.create(path)
                if i % 3 == 0:
                    self.fs.write(path, bytes([i]) * (i * 100), 0)
                self.files[path] = bytes([i]) * (i * 100) if i % 3 == 0 else b""

    @rule()
    def close_and_reopen(self) -> None:
        self.fs.close()
        self._check_closed_image("reopen", engine_check=False)  # check() is slow in Python: teardown runs it
        self.fs = FatFileSystem.open_path(self.img)
        assert not self.fs.was_dirty

    # ------------------------------------------------------------------ invariants and teardown

    @invariant()
    def tree_matches_model(self) -> None:
        files, dirs = O.engine_tree(self.fs)
        assert dirs == self.dirs
        assert files.keys() == self.files.keys()
        for p, data in files.items():
            assert data == self.files[p], f"{p}: contents differ ({len(data)} vs {len(self.files[p])} bytes)"

    def _check_closed_image(self, when: str, *, engine_check: bool = True) -> None:
        if engine_check:
            fd = os.open(self.img, os.O_RDONLY)
            try:
                problems = check(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            assert not problems, f"check() after {when}: {problems}"
        if O.tool("fsck.fat"):
            O.fsck_clean(self.img, context=when)
        else:
            warnings.warn(O.skip_reason(["fsck.fat"]) or "fsck.fat missing", stacklevel=1)

    def teardown(self) -> None:
        try:
            if not self.fs._closed:
                self.fs.close()
                self._check_closed_image("teardown")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


FatMachine.TestCase.settings = settings(settings.default, stateful_step_count=30, deadline=None)
TestFatStateful = FatMachine.TestCase

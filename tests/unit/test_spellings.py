"""KernelInodes: which kernel inodes of a file are told to forget their caches, and how (no FUSE needed)."""

from __future__ import annotations

import errno

from simvol.mount.spellings import ATTRIBUTES_ONLY, KernelInodes


class Recorder:
    def __init__(self, forgotten: set[int] = frozenset()) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.forgotten = set(forgotten)

    def __call__(self, nodeid: int, offset: int, length: int) -> int:
        self.calls.append((nodeid, offset, length))
        return -errno.ENOENT if nodeid in self.forgotten else 0


def test_one_spelling_is_never_notified():
    rec = Recorder()
    k = KernelInodes(rec)
    k.opened(7, 100)
    k.changed(7, 100)
    k.closed(100)
    k.changed(7, 100)
    assert rec.calls == []


def test_a_change_drops_pages_of_closed_spellings_and_attributes_of_open_ones():
    rec = Recorder()
    k = KernelInodes(rec)
    k.opened(7, 100)  # a.txt, open
    k.opened(7, 200)  # A.TXT, opened first after a.txt: its lookup attributes may be old
    assert rec.calls == [(200, ATTRIBUTES_ONLY, 0)]
    k.closed(200)
    k.seen(7, 300)  # A.txt: stat'ed only
    rec.calls.clear()
    k.changed(7, 100)
    assert sorted(rec.calls) == [(200, 0, 0), (300, 0, 0)]
    rec.calls.clear()
    k.changed(7, 200)  # through the closed one: 100 is open, so attributes only (pages could deadlock)
    assert sorted(rec.calls) == [(100, ATTRIBUTES_ONLY, 0), (300, 0, 0)]


def test_other_files_are_left_alone_and_unknown_writers_notify_everyone():
    rec = Recorder()
    k = KernelInodes(rec)
    k.seen(7, 100)
    k.seen(8, 500)
    k.changed(7, 0)  # a CREATE handle whose inode is not known yet
    assert rec.calls == [(100, 0, 0)]


def test_forgotten_inodes_are_pruned():
    rec = Recorder(forgotten={200})
    k = KernelInodes(rec)
    k.seen(7, 100)
    k.seen(7, 200)
    k.changed(7, 100)
    assert k.kernel_inodes(7) == {100}
    rec.calls.clear()
    k.changed(7, 100)
    assert rec.calls == []


def test_a_deleted_file_forgets_every_spelling():
    rec = Recorder()
    k = KernelInodes(rec)
    k.seen(7, 100)
    k.opened(7, 200)
    rec.calls.clear()
    k.gone(7)
    assert sorted(rec.calls) == [(100, 0, 0), (200, ATTRIBUTES_ONLY, 0)]
    assert k.kernel_inodes(7) == frozenset()
    rec.calls.clear()
    k.changed(7, 100)
    assert rec.calls == []


def test_close_counts_handles_per_inode():
    rec = Recorder()
    k = KernelInodes(rec)
    k.opened(7, 100)
    k.opened(7, 100)
    k.opened(7, 200)
    k.closed(200)
    k.closed(100)
    rec.calls.clear()
    k.changed(7, 200)
    assert rec.calls == [(100, ATTRIBUTES_ONLY, 0)]  # one handle of 100 is still open
    k.closed(100)
    rec.calls.clear()
    k.changed(7, 200)
    assert rec.calls == [(100, 0, 0)]

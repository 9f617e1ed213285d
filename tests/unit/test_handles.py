"""The daemon's handle table on its own (no FUSE): counts per node, staleness, what the control thread reads."""

from __future__ import annotations

import pytest

from simvol.fat import Node
from simvol.mount.handles import HandleTable


def node(is_dir: bool = False) -> Node:
    n = Node()
    n.attr = 0x10 if is_dir else 0
    return n


def test_a_node_is_open_while_any_of_its_handles_is():
    t = HandleTable()
    f, g = node(), node()
    a = t.add(10, "/a.txt", f, False, True)
    b = t.add(11, "/A.TXT", f, False, False)  # another spelling: the same node
    assert t.node_is_open(f) and not t.node_is_open(g)
    assert t.drop(a.fh) is a
    assert t.node_is_open(f)
    t.drop(b.fh)
    assert not t.node_is_open(f)
    assert t.drop(b.fh) is None and len(t) == 0


def test_handles_are_numbered_uniquely_and_found_by_node():
    t = HandleTable()
    f, d = node(), node(is_dir=True)
    hs = [t.add(1, "/f", f, False, True), t.add(1, "/d", d, True, False), t.add(2, "/f", f, False, False)]
    assert len({h.fh for h in hs}) == 3 and all(h.fh > 0 for h in hs)
    assert [h.fh for h in t.of_node(f)] == [hs[0].fh, hs[2].fh]
    assert t.get(hs[1].fh) is hs[1] and t.get(999) is None
    assert [h.fh for h in t.snapshot()] == [h.fh for h in hs]


def test_a_forced_dismount_makes_every_handle_stale_and_refuses_new_ones():
    t = HandleTable()
    f, d = node(), node(is_dir=True)
    t.add(1, "/x/f", f, False, True)
    t.add(1, "/x/f", f, False, False)
    t.add(1, "/x", d, True, False)
    assert not t.refuse_opens and not t.all_stale
    assert t.make_all_stale() == 3
    assert t.refuse_opens and t.all_stale
    assert all(h.stale for h in t.snapshot())
    assert t.file_paths() == ["/x/f"]  # files only, each once: their cached pages are dropped


@pytest.mark.parametrize("where", ["simvol.mount.ops:VolumeOps", "simvol.mount.passthrough:PassthroughOps"])
def test_the_control_threads_interface_has_no_fuse_operations_name(where):
    # mfusepy registers every attribute of the operations object whose name is a fuse_operations field as a FUSE
    # callback: a property called ``lock`` once answered every POSIX lock request with EINVAL.
    import importlib
    import inspect

    from simvol.mount._fuselib import mfusepy

    module, name = where.split(":")
    cls = getattr(importlib.import_module(module), name)
    fuse_names = {n for n, _ in mfusepy.fuse_operations._fields_}
    public = {n for n in dir(cls) if not n.startswith("_")}
    for n in public & fuse_names:
        attr = inspect.getattr_static(cls, n)
        assert callable(attr) and not isinstance(attr, property), n
    control = {
        "engine_lock",
        "fuse_ptr",
        "handles",
        "handle_count",
        "set_refuse_opens",
        "make_all_stale",
        "stat_fields",
    }
    assert control <= public and not control & fuse_names

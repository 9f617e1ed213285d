"""The service layer's parts on their own, without FUSE: the registry, the root's layout and locks, path parsing."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import uuid
from pathlib import Path

import pytest

from simvol.errors import RegistryError, VdsError
from simvol.service.paths import Shape, guid_path, parse_access_path, parse_windows_path
from simvol.service.registry import SCHEMA_VERSION, Registry
from simvol.service.root import Root
from simvol.types import VolumeState

# ---------------------------------------------------------------- registry


@pytest.fixture
def reg(tmp_path: Path):  # type: ignore[no-untyped-def]
    r = Registry(str(tmp_path / "simvol.db"))
    yield r
    r.close()


def test_registry_file_is_private(reg: Registry) -> None:
    assert stat.S_IMODE(os.stat(reg.path).st_mode) == 0o600


def test_volumes_are_numbered_in_attach_order(reg: Registry) -> None:
    a = reg.add_volume("a" * 8, "/img/a")
    b = reg.add_volume("b" * 8, "/img/b")
    assert (a.number, b.number) == (1, 2)
    assert [r.id for r in reg.volumes()] == ["a" * 8, "b" * 8]
    assert reg.volume_by_image("/img/b") == b
    assert reg.volume("nope") is None
    with pytest.raises(VdsError) as e:  # one image, one volume
        reg.add_volume("c" * 8, "/img/a")
    assert e.value.code == "VDS_E_INTERNAL_ERROR"


def test_the_dismount_column_speaks_the_state_vocabulary(reg: Registry) -> None:
    reg.add_volume("v", "/img/v")
    assert reg.volume("v").dismount == VolumeState.MOUNTED.dismount == "none"  # type: ignore[union-attr]
    reg.set_temporarily_dismounted("v", True)
    row = reg.volume("v")
    assert (
        row is not None and row.temporarily_dismounted and row.dismount == VolumeState.TEMPORARILY_DISMOUNTED.dismount
    )
    reg.clear_all_temporary()
    assert not reg.volume("v").temporarily_dismounted  # type: ignore[union-attr]
    with pytest.raises(VdsError), reg.transaction() as db:  # the schema refuses words outside the vocabulary
        db.execute("UPDATE volumes SET dismount = 'permanent'")


def test_paths_keep_their_order_letter_first(reg: Registry) -> None:
    reg.add_volume("v", "/img/v")
    with reg.transaction() as db:
        reg.add_path(db, "v", "folder", "C:\\mnt\\a\\", "C:\\MNT\\A", "/r/drives/C/mnt/a", 0o755)
        reg.add_path(db, "v", "letter", "E:\\", "E:", "/r/drives/E", 0o755)
    assert [p.display for p in reg.paths("v")] == ["E:\\", "C:\\mnt\\a\\"]
    assert reg.path_by_key("E:").host_path == "/r/drives/E"  # type: ignore[union-attr]
    assert reg.path_by_host("/r/drives/C/mnt/a").kind == "folder"  # type: ignore[union-attr]
    reg.remove_volume("v")  # cascades
    assert reg.paths() == []


def test_a_failed_transaction_writes_nothing(reg: Registry) -> None:
    reg.add_volume("v", "/img/v")
    with pytest.raises(KeyboardInterrupt), reg.transaction() as db:
        reg.add_path(db, "v", "letter", "E:\\", "E:", "/r/drives/E", 0o755)
        raise KeyboardInterrupt
    assert reg.paths("v") == []
    reg.set_host_value("k", "1")  # the connection is usable again
    assert reg.host_value("k") == "1" and reg.host_value("other") is None


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "simvol.db")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RegistryError, match="newer simvol"):
        Registry(path)


def test_a_registry_of_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """A root made by an earlier simvol (schema 1: no owners, remembered letters or faults) keeps its volumes."""
    from simvol.service.registry import _MIGRATIONS

    path = str(tmp_path / "simvol.db")
    db = sqlite3.connect(path)
    for stmt in _MIGRATIONS[1]:
        db.execute(stmt)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO volumes (id, image, number, dismount, attached) VALUES ('v', '/img/v', 1, 'none', 0)")
    db.commit()
    db.close()
    reg = Registry(path)
    row = reg.volume("v")
    assert row is not None and (row.image, row.allow_other, row.owner, row.removed) == ("/img/v", 0, None, 0)
    assert reg.remembered_letter("v") is None and reg.faults("v") == []
    fid = reg.add_fault("v", "fs", {"op": "write"}, persist=True)
    assert [(f.id, f.spec["id"], f.persist) for f in reg.faults("v")] == [(fid, fid, True)]
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_a_symlink_at_the_registry_path_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.symlink(target, tmp_path / "simvol.db")
    with pytest.raises(OSError):
        Registry(str(tmp_path / "simvol.db"))
    assert target.read_text() == "keep"


# ---------------------------------------------------------------- root


def test_root_layout_and_modes(tmp_path: Path) -> None:
    r = Root(tmp_path / "root")
    for d, mode in ((r.path, 0o700), (r.images, 0o700), (r.volumes, 0o700), (r.drives, 0o700),
                    (r.system_drive, 0o755), (r.run, 0o700), (r.locks, 0o700)):
        assert stat.S_IMODE(os.lstat(d).st_mode) == mode, d
    assert r.letter_path("e") == os.path.join(r.drives, "E")
    assert r.database == os.path.join(r.path, "simvol.db")


@pytest.mark.parametrize("planted", ["symlink", "file", "shared"])
def test_root_refuses_what_is_planted_there(tmp_path: Path, planted: str) -> None:
    path = tmp_path / "root"
    if planted == "symlink":
        (tmp_path / "real").mkdir()
        os.symlink(tmp_path / "real", path)
    elif planted == "file":
        path.write_text("")
    else:
        path.mkdir()
        os.chmod(path, 0o1777)
    with pytest.raises(VdsError) as e:
        Root(path)
    assert e.value.code == "E_ACCESSDENIED"
    if planted == "shared":
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o1777  # never chmodded under its other users


def test_root_refuses_an_empty_path() -> None:
    with pytest.raises(VdsError) as e:
        Root("")
    assert e.value.code == "E_INVALIDARG"


def test_locks_are_reentrant_and_exclusive(tmp_path: Path) -> None:
    r = Root(tmp_path / "root")
    order: list[str] = []
    with r.lock("v"), r.lock("v"):  # re-entrant in one thread
        t = threading.Thread(target=lambda: (r.lock("v").__enter__(), order.append("other")))
        t.start()
        t.join(0.2)
        order.append("first")
    t.join(5)
    assert order == ["first", "other"]


def test_a_symlink_planted_as_a_lock_file_is_replaced(tmp_path: Path) -> None:
    r = Root(tmp_path / "root")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, os.path.join(r.locks, "v.lock"))
    with r.lock("v"):
        pass
    assert victim.read_text() == "keep"
    assert not os.path.islink(os.path.join(r.locks, "v.lock"))


# ---------------------------------------------------------------- access paths


@pytest.mark.parametrize(
    ("path", "shape", "display"),
    [
        ("E:", Shape.LETTER, "E:\\"),
        ("e:\\", Shape.LETTER, "E:\\"),
        ("C:\\mnt\\data", Shape.FOLDER, "C:\\mnt\\data\\"),
        ("c:/mnt/data/", Shape.FOLDER, "C:\\mnt\\data\\"),
        ("/srv/x/", Shape.HOST, "/srv/x"),
        ("", Shape.INVALID, ""),
        ("x" * 260, Shape.INVALID, "x" * 260),
        ("EE:", Shape.BAD_LETTER, "EE:"),
        ("1:", Shape.BAD_LETTER, "1:"),
        ("C:\\", Shape.LETTER, "C:\\"),
        ("mnt\\data", Shape.BAD_SHAPE, "mnt\\data"),
        ("\\\\server\\share", Shape.BAD_SHAPE, "\\\\server\\share"),
        ("C:\\mnt\\..\\x", Shape.BAD_SHAPE, "C:\\mnt\\..\\x"),
        ("C:\\a|b", Shape.BAD_SHAPE, "C:\\a|b"),
        ("/a/../b", Shape.BAD_SHAPE, "/a/../b"),
    ],
)
def test_access_path_shapes(path: str, shape: Shape, display: str) -> None:
    ap = parse_access_path(path)
    assert ap.shape is shape
    assert ap.display == display


def test_access_path_keys_compare_like_windows() -> None:
    assert parse_access_path("C:\\Mnt\\Data").key == parse_access_path("c:\\MNT\\data\\").key
    assert parse_access_path("/srv/Data").key != parse_access_path("/srv/data").key  # host paths are exact


def test_guid_paths() -> None:
    g = uuid.uuid4()
    assert parse_access_path(guid_path(g)).shape is Shape.GUID
    assert guid_path(g) == f"\\\\?\\Volume{{{g}}}\\"
    assert parse_access_path(None).shape is Shape.INVALID  # type: ignore[arg-type]


def test_windows_paths_for_resolve() -> None:
    g = uuid.uuid4()
    assert parse_windows_path("E:\\dir\\f.txt") == parse_windows_path("e:/dir/f.txt")
    w = parse_windows_path(f"\\\\?\\Volume{{{g}}}\\a\\b")
    assert w is not None and w.kind == "guid" and w.guid == g and w.parts == ("a", "b")
    assert parse_windows_path("E:\\..\\x") is None  # never climbs out of the volume
    assert parse_windows_path("relative\\x") is None
    assert parse_windows_path("/host/x").kind == "host"  # type: ignore[union-attr]

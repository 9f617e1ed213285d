"""Images from elsewhere (#11 item 6) and who may use a mount (item 7), through the installed command.

Oracles: mkfs.fat and mtools make the plain images; mtools and fsck.fat read them back after simvol served them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cli

pytestmark = pytest.mark.fuse
MTOOLS = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def plain_fat32(path: Path, label: str = "PLAIN") -> Path:
    subprocess.run(["truncate", "-s", "64M", str(path)], check=True)
    subprocess.run(["mkfs.fat", "-F", "32", "-n", label, str(path)], check=True, capture_output=True)
    src = path.with_suffix(".src")
    src.write_text("made by mtools\n")
    subprocess.run(["mcopy", "-i", str(path), str(src), "::/FROMMT.TXT"], check=True, env=MTOOLS)
    subprocess.run(["mmd", "-i", str(path), "::/Sub"], check=True, env=MTOOLS)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_adopt_a_plain_fat32_image(fresh_cli: Cli, tmp_path: Path) -> None:
    img = plain_fat32(tmp_path / "plain.img")
    before = digest(img)
    refused = fresh_cli.fail("VDS_E_OBJECT_STATUS_FAILED", "attach", str(img))
    assert "--adopt" in refused["message"]
    assert digest(img) == before  # refused: untouched
    vol = fresh_cli.run("attach", "--adopt", "--letter", "P", str(img))["volume"]
    assert vol["label"] == "PLAIN" and vol["access_paths"] == ["P:\\"]
    host = fresh_cli.resolve("P:\\frommt.txt")
    assert subprocess.run(["cat", host], capture_output=True, text=True).stdout == "made by mtools\n"
    subprocess.run(["cp", "/etc/hostname", fresh_cli.resolve("P:\\Sub\\written.txt")], check=True)
    fresh_cli.run("detach", vol["id"])
    # the file system is still mtools' and fsck.fat's: the trailer sits after it
    assert os.path.getsize(img) == 64 * 2**20 + 8192
    out = subprocess.run(["mdir", "-b", "-i", str(img), "::/SUB"], capture_output=True, text=True, env=MTOOLS)
    assert "WRITTEN.TXT" in out.stdout.upper(), out
    fsck = subprocess.run(["fsck.fat", "-n", str(img)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # now a simvol image: attached again without --adopt, with the same id
    assert fresh_cli.run("attach", str(img))["volume"]["id"] == vol["id"]


def test_adopt_refuses_damage_and_foreign_file_systems_and_changes_nothing(fresh_cli: Cli, tmp_path: Path) -> None:
    img = plain_fat32(tmp_path / "damaged.img")
    # cross-link: point the root directory's FAT entry (cluster 2) at a free cluster's chain end
    with open(img, "r+b") as f:
        boot = f.read(512)
        reserved = int.from_bytes(boot[14:16], "little")
        fat = reserved * 512
        f.seek(fat + 2 * 4)
        f.write((3).to_bytes(4, "little"))  # cluster 2 -> 3, which belongs to something else or is free
        f.seek(fat + 3 * 4)
        f.write((2).to_bytes(4, "little"))  # and back: a loop
    before = digest(img)
    out = fresh_cli.fail("VDS_E_OBJECT_STATUS_FAILED", "attach", "--adopt", str(img))
    assert "damaged" in out["message"]
    assert digest(img) == before
    zeros = tmp_path / "zeros.img"
    zeros.write_bytes(bytes(1 << 20))
    fresh_cli.fail("VDS_E_INCOMPATIBLE_FILE_SYSTEM", "attach", "--adopt", str(zeros))
    assert zeros.read_bytes() == bytes(1 << 20)
    assert fresh_cli.run("list")["volumes"] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a read-only tmpfs")
def test_adopt_refuses_a_read_only_image(fresh_cli: Cli, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(ro)], check=True)
    try:
        img = plain_fat32(ro / "plain.img")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        out = fresh_cli.fail("E_ACCESSDENIED", "attach", "--adopt", str(img))
        assert "read-only" in out["message"], out
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_new_id_lets_a_copy_sit_beside_its_original(fresh_cli: Cli, tmp_path: Path) -> None:
    original = fresh_cli.create("--image", str(tmp_path / "orig.img"), "--label", "TWIN")
    fresh_cli.run("detach", original["id"])
    shutil.copy(tmp_path / "orig.img", tmp_path / "copy.img")
    fresh_cli.run("attach", str(tmp_path / "orig.img"))
    out = fresh_cli.fail("VDS_E_OBJECT_EXISTS", "attach", str(tmp_path / "copy.img"))
    assert "--new-id" in out["message"]
    copy = fresh_cli.run("attach", "--new-id", str(tmp_path / "copy.img"))["volume"]
    assert copy["id"] != original["id"] and copy["label"] == "TWIN" and copy["mounted"]
    assert len(fresh_cli.run("list")["volumes"]) == 2


def test_a_volume_that_comes_back_gets_its_letter_unless_taken(fresh_cli: Cli, tmp_path: Path) -> None:
    img = str(tmp_path / "e.img")
    vol = fresh_cli.create("--image", img, "--letter", "E")
    fresh_cli.run("detach", vol["id"])
    assert fresh_cli.run("attach", img)["volume"]["access_paths"] == ["E:\\"]  # remembered
    fresh_cli.run("detach", vol["id"])
    other = fresh_cli.create("--letter", "E")  # E: goes to another volume meanwhile
    back = fresh_cli.run("attach", img)["volume"]
    assert back["access_paths"] == [] and back["mounted"]  # comes back without it
    fresh_cli.run("delete", other["id"])
    fresh_cli.run("add-path", back["id"], "G:")
    fresh_cli.run("remove-path", back["id"], "G:")  # DeleteAccessPath forgets the letter
    fresh_cli.run("detach", back["id"])
    assert fresh_cli.run("attach", img)["volume"]["access_paths"] == []
    fresh_cli.run("detach", back["id"])
    assert fresh_cli.run("attach", "--letter", "K:", img)["volume"]["access_paths"] == ["K:\\"]


def test_create_from_a_host_tree(fresh_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "Docs" / "Deep").mkdir(parents=True)
    (src / "Docs" / "Deep" / "note.txt").write_text("deep note")
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    os.utime(src / "Docs" / "Deep" / "note.txt", (1_600_000_000, 1_600_000_000))
    vol = fresh_cli.create("--from", str(src), "--letter", "S", "--image", str(tmp_path / "s.img"))
    note = fresh_cli.resolve("S:\\docs\\deep\\NOTE.TXT")
    assert Path(note).read_text() == "deep note"
    assert abs(os.stat(note).st_mtime - 1_600_000_000) <= 2  # FAT keeps 2-second times
    copied = subprocess.run(["cmp", str(src / "big.bin"), fresh_cli.resolve("S:\\big.bin")])
    assert copied.returncode == 0
    fresh_cli.run("detach", vol["id"])
    fsck = subprocess.run(["fsck.fat", "-n", str(tmp_path / "s.img")], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


def test_create_from_refuses_a_bad_tree_before_making_anything(fresh_cli: Cli, tmp_path: Path) -> None:
    images = fresh_cli.root / "images"
    for name, make in [
        ("colon", lambda d: (d / "a:b.txt").write_text("x")),
        ("link", lambda d: os.symlink("/etc/hostname", d / "link")),
        ("case", lambda d: ((d / "Same.txt").write_text("1"), (d / "SAME.TXT").write_text("2"))),
    ]:
        src = tmp_path / name
        src.mkdir()
        make(src)
        out = fresh_cli.fail("E_INVALIDARG", "create", "--size", "40M", "--from", str(src))
        assert str(src) in out["message"], out
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "huge.bin", "wb") as f:
        f.truncate(50 << 20)
    fresh_cli.fail("HRESULT_FROM_WIN32(ERROR_DISK_FULL)", "create", "--size", "40M", "--from", str(big))
    fine = tmp_path / "fine"
    fine.mkdir()
    (fine / "a.txt").write_text("a")
    out = fresh_cli.fail("E_INVALIDARG", "create", "--size", "40M", "--role", "readonly", "--from", str(fine))
    assert "read-only" in out["message"]
    assert fresh_cli.run("list")["volumes"] == []
    assert not images.exists() or os.listdir(images) == []


@pytest.fixture
def open_cli() -> Iterator[Cli]:
    """A root another user can reach the mounts of: under a fresh 0755 directory in /tmp (pytest's own
    temporary directories are private to their user)."""
    top = Path(tempfile.mkdtemp(prefix="svo-", dir="/tmp"))
    os.chmod(top, 0o755)
    cli = Cli(top / "root")
    yield cli
    cli.raw("destroy", "--force")
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="serving files as another user needs root")
def test_owner_serves_the_volume_to_another_user(open_cli: Cli) -> None:
    vol = open_cli.create("--owner", "4321:4321", "--letter", "O")
    assert vol["owner"] == "4321:4321" and vol["allow_other"] is True
    mp = vol["mount_path"]
    os.chmod(open_cli.root, 0o755)  # roots are private (0700): this test lets the other user reach the mount
    os.chmod(open_cli.root / "volumes", 0o755)
    st = os.stat(mp)
    assert (st.st_uid, st.st_gid) == (4321, 4321)

    def as_user(uid: int, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sh", "-c", script],
                              capture_output=True, text=True, timeout=60)

    wrote = as_user(4321, f"echo agent > '{mp}/agent.txt' && cat '{mp}/agent.txt'")
    assert wrote.returncode == 0 and wrote.stdout == "agent\n", wrote.stderr
    assert as_user(4322, f"echo x > '{mp}/stranger.txt'").returncode != 0  # mode bits apply: the files are 4321's
    # kept for every later mount: after a temporary dismount the remount on access serves it the same way
    open_cli.run("dismount", vol["id"])
    assert os.stat(os.path.join(mp, "agent.txt")).st_uid == 4321


def test_owner_is_validated(fresh_cli: Cli) -> None:
    fresh_cli.fail("E_INVALIDARG", "create", "--size", "40M", "--owner", "no-such-user-here")
    fresh_cli.fail("E_INVALIDARG", "create", "--size", "40M", "--owner", "1:2:3")

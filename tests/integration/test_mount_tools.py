"""Ordinary tools through the mount, and the image read back by tools that are not simvol afterwards.

All but the mtools test run on FAT32, NTFS and NTFS-native volumes (``any_volume``); the read-back is mtools and
``fsck.fat -n`` for FAT32, ``ntfscat`` and ``ntfsfix -n`` for NTFS."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.fuse


def _make_tree(base) -> None:
    """A source tree outside the mount (the test process writes only here, never on the mount)."""
    (base / "sub" / "deeper").mkdir(parents=True)
    (base / "empty dir").mkdir()
    (base / "small.txt").write_text("hello\n")
    (base / "Mixed Case Name.md").write_text("# title\n" * 100)
    (base / "sub" / "data.bin").write_bytes(os.urandom(300_000))
    (base / "sub" / "deeper" / "zero").write_bytes(b"")
    (base / "sub" / "deeper" / "ünïcödé €.txt").write_text("unicode\n")
    (base / "sub" / "cluster").write_bytes(os.urandom(4096))


def test_cp_mv_rm_mkdir_find(any_volume, tmp_path):
    vol = any_volume
    src = tmp_path / "src"
    _make_tree(src)
    vol.sh(
        """
        mkdir -p d1/d2/d3
        cp -r "$SRC"/. d1/
        cp "$SRC/small.txt" d1/d2/d3/copy.txt
        mv d1/small.txt d1/moved.txt
        mv d1/sub d1/d2/
        mkdir gone && touch gone/x && rm -r gone
        rm d1/"Mixed Case Name.md"
        """,
        SRC=str(src),
    )
    found = vol.sh("find . | sort").stdout.split("\n")
    assert "./gone" not in found
    expected = {
        ".", "./d1", "./d1/d2", "./d1/d2/d3", "./d1/d2/d3/copy.txt", "./d1/moved.txt", "./d1/empty dir",
        "./d1/d2/sub", "./d1/d2/sub/data.bin", "./d1/d2/sub/cluster", "./d1/d2/sub/deeper",
        "./d1/d2/sub/deeper/zero", "./d1/d2/sub/deeper/ünïcödé €.txt",
    }
    assert set(filter(None, found)) == expected
    assert vol.sh("find . -type f -name '*.bin'").stdout.strip() == "./d1/d2/sub/data.bin"
    vol.sh('cmp d1/moved.txt "$SRC/small.txt" && cmp d1/d2/sub/data.bin "$SRC/sub/data.bin"', SRC=str(src))
    vol.sh('test ! -e d1/small.txt && test ! -e d1/sub && test ! -e "d1/Mixed Case Name.md"')
    assert vol.sh("stat -c %s d1/d2/sub/data.bin").stdout.strip() == "300000"


def test_tar_round_trip(any_volume, tmp_path):
    vol = any_volume
    src = tmp_path / "src"
    _make_tree(src)
    out = tmp_path / "out"
    out.mkdir()
    vol.sh(
        """
        mkdir t
        tar -C "$SRC" -cf - . | tar -C t -xf -
        tar -C t -cf "$OUT/back.tar" .
        tar -C "$OUT" -xf "$OUT/back.tar"
        rm "$OUT/back.tar"
        diff -r "$SRC" t
        """,
        SRC=str(src), OUT=str(out),
    )
    r = subprocess.run(["diff", "-r", str(src), str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dd_with_fsync(any_volume):
    vol = any_volume
    r = vol.sh("dd if=/dev/urandom of=big.bin bs=1M count=20 conv=fsync status=none && sha256sum big.bin")
    digest = r.stdout.split()[0]
    assert vol.sh("stat -c %s big.bin").stdout.strip() == str(20 << 20)
    # Read back with dd in another process, in odd-sized blocks.
    r = vol.sh("dd if=big.bin bs=333333 status=none | sha256sum")
    assert r.stdout.split()[0] == digest
    assert vol.dismount() == {"ok": True, "forced": False}
    assert hashlib.sha256(vol.mcopy("/big.bin")).hexdigest() == digest
    vol.assert_fsck_clean()


PY_IO = r"""
import os
mp = os.environ["MP"]
p = os.path.join(mp, "py", "file.dat")
os.makedirs(os.path.dirname(p))
with open(p, "wb") as f:
    f.write(b"0123456789" * 1000)
with open(p, "r+b") as f:
    f.seek(5000)
    f.write(b"XYZ")
    f.seek(0, 2)
    f.write(b"tail")
    f.flush()
    os.fsync(f.fileno())
with open(p, "ab") as f:
    f.write(b"!")
fd = os.open(p, os.O_RDWR)
os.pwrite(fd, b"hole", 20000)   # past EOF: the gap reads as zeros
os.ftruncate(fd, 20002)
os.close(fd)
with open(p, "rb") as f:
    data = f.read()
exp = bytearray(b"0123456789" * 1000)
exp[5000:5003] = b"XYZ"
exp += b"tail!"
exp += bytes(20000 - len(exp)) + b"ho"
assert data == bytes(exp), (len(data), len(exp))
os.rename(p, p + ".renamed")
assert sorted(os.listdir(os.path.dirname(p))) == ["file.dat.renamed"]
st = os.stat(p + ".renamed")
assert st.st_size == 20002
os.utime(p + ".renamed", (1_600_000_000, 1_600_000_000))
assert abs(os.stat(p + ".renamed").st_mtime - 1_600_000_000) <= 2
# Shared writable mapping: the kernel writes the pages back through the file's handle.
import mmap
q = os.path.join(mp, "py", "mapped.bin")
with open(q, "wb") as f:
    f.write(bytes(3 * 4096))
fd = os.open(q, os.O_RDWR)
m = mmap.mmap(fd, 3 * 4096)
os.close(fd)
m[4096:4101] = b"mmap!"
m.flush()
m.close()
with open(q, "rb") as f:
    assert f.read()[4090:4105] == bytes(6) + b"mmap!" + bytes(4)
print("ok")
"""


def test_python_file_io(any_volume):
    vol = any_volume
    assert vol.py(PY_IO).stdout.strip() == "ok"
    assert vol.dismount() == {"ok": True, "forced": False}
    assert vol.mcopy("/py/mapped.bin")[4096:4101] == b"mmap!"
    assert len(vol.mcopy("/py/file.dat.renamed")) == 20002
    vol.assert_fsck_clean()


def test_git_in_volume(any_volume):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    vol = any_volume
    git = "git -c user.email=t@example.com -c user.name=Tester -c core.filemode=false -c init.defaultBranch=main"
    r = vol.sh(
        f"""
        mkdir repo && cd repo
        {git} init -q .
        {git} config core.filemode false
        echo one > a.txt && mkdir src && echo 'print(1)' > src/main.py
        {git} add -A
        {git} commit -q -m first
        echo two >> a.txt
        {git} commit -q -am second
        {git} log --oneline | wc -l
        {git} status --porcelain
        {git} fsck --no-progress
        """,
        HOME=str(vol.root),
    )
    lines = r.stdout.split()
    assert lines[0] == "2", r.stdout + r.stderr
    assert len(lines) == 1, f"working tree not clean: {r.stdout}"
    assert vol.sh("cat repo/a.txt").stdout == "one\ntwo\n"


def test_mtools_reads_back_after_mixed_workload(mounted_volume, tmp_path):
    vol = mounted_volume
    blobs = {
        "/a.bin": os.urandom(1),
        "/dir/b.bin": os.urandom(65536),
        "/dir/nested/c.bin": os.urandom(1_000_003),
        "/Long File Name With Spaces.txt": b"long name\n" * 50,
    }
    for i, data in enumerate(blobs.values()):
        (tmp_path / f"blob{i}").write_bytes(data)
    vol.sh(
        """
        mkdir -p dir/nested scratch
        cp "$T/blob0" a.bin
        cp "$T/blob1" dir/b.bin
        cp "$T/blob2" dir/nested/c.bin
        cp "$T/blob3" "Long File Name With Spaces.txt"
        for i in $(seq 1 40); do echo "$i" > scratch/f$i; done
        rm scratch/f1* && rm -r scratch/f2*
        dd if=/dev/zero of=scratch/grow bs=64k count=30 status=none
        truncate -s 100000 scratch/grow
        echo appended >> dir/b.bin
        mv scratch renamed
        rm renamed/f3
        """,
        T=str(tmp_path),
    )
    blobs["/dir/b.bin"] += b"appended\n"
    assert vol.dismount() == {"ok": True, "forced": False}
    for path, data in blobs.items():
        assert vol.mcopy(path) == data, path
    assert vol.mcopy("/renamed/f40") == b"40\n"
    assert vol.mcopy("/renamed/grow") == bytes(100000)
    r = subprocess.run(
        ["mdir", "-b", "-i", vol.image, "::/renamed"], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
    )
    names = sorted(line.rsplit("/", 1)[-1] for line in r.stdout.split())
    assert names == sorted(["grow"] + [f"f{i}" for i in range(4, 10)] + [f"f{i}" for i in range(30, 41) if i != 3]), (
        names
    )
    vol.assert_fsck_clean()

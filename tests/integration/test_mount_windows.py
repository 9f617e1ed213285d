"""Windows file-system behaviour as other processes see it through the mount (docs/fat32-notes.md §11,
docs/behaviour.md "Files at the mount")."""

from __future__ import annotations

import errno
import json

import pytest

from simvol.fat import FatFileSystem, check
from simvol.image import Image

pytestmark = pytest.mark.fuse

MiB = 1 << 20
GiB = 1 << 30


def test_case_insensitive_case_preserving(mounted_volume):
    vol = mounted_volume
    vol.sh("echo hi > Hello.TXT && mkdir SubDir && echo x > subdir/Inner.Txt")
    assert vol.sh("cat HELLO.txt && cat hello.txt && cat SUBDIR/INNER.TXT").stdout == "hi\nhi\nx\n"
    assert vol.sh("ls").stdout.split() == ["Hello.TXT", "SubDir"]
    assert vol.sh("ls subdir").stdout.split() == ["Inner.Txt"]
    r = vol.py(
        "import os, errno\n"
        "try:\n"
        "    os.open(os.environ['MP'] + '/HELLO.TXT', os.O_CREAT | os.O_EXCL | os.O_WRONLY)\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    assert r.stdout.strip() == str(errno.EEXIST)
    # Writing through another spelling changes the one file.
    vol.sh("echo there >> HELLO.TXT")
    assert vol.sh("cat Hello.TXT").stdout == "hi\nthere\n"
    # A rename that only changes case keeps one entry and takes the new spelling (rename(2), as `ren` does).
    vol.py("import os; os.rename(os.environ['MP'] + '/Hello.TXT', os.environ['MP'] + '/hello.txt')")
    assert vol.sh("ls").stdout.split() == ["SubDir", "hello.txt"]
    assert vol.sh("cat HELLO.TXT").stdout == "hi\nthere\n"


def test_case_variant_spellings_see_the_same_data(mounted_volume):
    # Each spelling is its own kernel inode (with one st_ino); the exact in-memory mtime makes the kernel drop
    # the other spelling's cached pages once its attributes expire (1 s), as docs/behaviour.md says.
    vol = mounted_volume
    r = vol.sh("printf AAAA > x.txt; cat x.txt; printf BBBB > X.TXT; sleep 1.2; cat x.txt")
    assert r.stdout == "AAAABBBB"


BAD_NAMES = ["a:b", "x?", "st*r", "l<t", "g>t", 'q"uote', "p|pe", "back\\slash", "ctl\x01", "con", "CON",
             "nul.txt", "Com1", "lpt9.log", "aux", "prn.x.y", "dot.", "space ", "..."]

INVALID_NAMES = r"""
import json, os
mp = os.environ["MP"]
open(mp + "/ok.txt", "w").close()
out = {}
for name in json.loads(os.environ["NAMES"]):
    p = os.path.join(mp, name)
    res = []
    for op in (lambda: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)),
               lambda: os.mkdir(p),
               lambda: os.rename(mp + "/ok.txt", p)):
        try:
            op()
            res.append(0)
        except OSError as e:
            res.append(e.errno)
    out[name] = res
out["__listing__"] = sorted(os.listdir(mp))
print(json.dumps(out))
"""


def test_invalid_names_refused_with_einval(mounted_volume):
    vol = mounted_volume
    out = json.loads(vol.py(INVALID_NAMES, NAMES=json.dumps(BAD_NAMES)).stdout)
    listing = out.pop("__listing__")
    wrong = {name: res for name, res in out.items() if res != [errno.EINVAL] * 3}
    assert not wrong, f"expected EINVAL for create/mkdir/rename: {wrong}"
    assert listing == ["ok.txt"]
    # Names Windows accepts still work.
    vol.sh("touch 'cons.d' 'connect' 'a b' '.hidden' 'x.y.z' 'COM10' 'lpt' 'my.con'")
    assert vol.sh("ls -A | wc -l").stdout.strip() == "9"
    # Like Windows, a reserved stem is reserved with any extension.
    assert vol.sh("touch con.d", check=False).returncode != 0


HOLD = r"""
import os, sys
fd = os.open(os.environ["MP"] + "/open.txt", os.O_RDONLY)
d = os.open(os.environ["MP"] + "/dir", os.O_RDONLY | os.O_DIRECTORY)
print("ready", flush=True)
sys.stdin.readline()
"""

TRY = r"""
import os
mp = os.environ["MP"]
for name, op in (("unlink", lambda: os.unlink(mp + "/open.txt")),
                 ("rename", lambda: os.rename(mp + "/open.txt", mp + "/renamed.txt")),
                 ("rename-over", lambda: os.rename(mp + "/other.txt", mp + "/open.txt")),
                 ("rmdir", lambda: os.rmdir(mp + "/dir"))):
    try:
        op()
        print(name, 0)
    except OSError as e:
        print(name, e.errno)
"""


def test_open_file_cannot_be_removed_or_renamed(mounted_volume):
    vol = mounted_volume
    vol.sh("echo open > open.txt && echo other > other.txt && mkdir dir")
    holder = vol.spawn_py(HOLD)
    got = dict(line.split() for line in vol.py(TRY).stdout.splitlines())
    assert got == {k: str(errno.EBUSY) for k in ("unlink", "rename", "rename-over", "rmdir")}, got
    assert vol.sh("rm open.txt", check=False).returncode != 0
    assert vol.sh("cat open.txt other.txt").stdout == "open\nother\n"
    holder.kill()
    holder.wait(10)
    assert vol.wait_until(lambda: vol.client.status()["handles"] == [])
    got = dict(line.split() for line in vol.py(TRY).stdout.splitlines())
    assert got == {"unlink": "0", "rename": str(errno.ENOENT), "rename-over": "0", "rmdir": "0"}, got
    assert vol.sh("ls").stdout.split() == ["open.txt"]
    assert vol.sh("cat open.txt").stdout == "other\n"


EFBIG = r"""
import os
p = os.environ["MP"] + "/big.bin"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
out = []
assert os.pwrite(fd, b"y", 2**32 - 2) == 1
out.append(os.fstat(fd).st_size)
for what, op in (("pwrite-last", lambda: os.pwrite(fd, b"x", 2**32 - 1)),
                 ("pwrite-span", lambda: os.pwrite(fd, b"xy", 2**32 - 2)),
                 ("ftruncate", lambda: os.ftruncate(fd, 2**32))):
    try:
        out.append((what, op()))
    except OSError as e:
        out.append((what, e.errno))
assert os.pread(fd, 2, 2**32 - 3) == b"\0y"
os.close(fd)
print(out)
"""


def test_efbig_at_4_gib(volume_factory):
    vol = volume_factory(size=5 * GiB)
    out = vol.py(EFBIG).stdout.strip()
    assert out == str(
        [2**32 - 1, ("pwrite-last", errno.EFBIG), ("pwrite-span", errno.EFBIG), ("ftruncate", errno.EFBIG)]
    ), out
    assert vol.sh("stat -c %s big.bin").stdout.strip() == str(2**32 - 1)
    assert vol.dismount() == {"ok": True, "forced": False}
    with Image.open(vol.image, writable=False) as im:
        assert check(im.fd, im.fs_size, repair=False) == []
        fs = FatFileSystem(im.fd, im.fs_size, writable=False)
        node = fs.open("/big.bin")
        assert node.size == 2**32 - 1
        sfs = fs.statfs()
        assert sfs.total_clusters - sfs.free_clusters == 2**32 // sfs.cluster_size + 1  # the file + the root
    r = vol.fsck()
    if r.returncode != 0:
        # dosfstools <= 4.2 computes the chain length of a 4 GiB - 1 file in 32 bits (0) and would truncate it
        # (dosfstools/dosfstools#208, fixed upstream after 4.2): that one complaint is fsck's, not ours.
        problems = [ln for ln in r.stdout.splitlines()[1:-1] if ln.strip()]
        assert problems == [
            "/BIG.BIN",
            "  File size is 4294967295 bytes, cluster chain length is 0 bytes.",
            "  Truncating file to 0 bytes.",
            "Leaving filesystem unchanged.",
        ], r.stdout


ENOSPC = r"""
import os
p = os.environ["MP"] + "/fill.bin"
fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
chunk = b"z" * (1 << 20)
total = 0
try:
    while True:
        total += os.write(fd, chunk)
        if total > 200 << 20:
            raise SystemExit("never filled up")
except OSError as e:
    print(e.errno, total)
os.close(fd)
"""


def test_enospc_on_full_volume(volume_factory):
    vol = volume_factory(size=40 * MiB)
    vol.sh("echo small > keep.txt")
    err, total = vol.py(ENOSPC).stdout.split()
    assert int(err) == errno.ENOSPC
    assert 30 * MiB < int(total) <= 40 * MiB
    st = vol.client.status()
    assert st["free_clusters"] * st["cluster_size"] < MiB
    r = vol.sh("dd if=/dev/zero of=more.bin bs=1M count=5", check=False)
    assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
    # A write either fits whole or fails (as WriteFile does): less than one write's worth is left over.
    assert int(vol.sh("df -k . | tail -1 | awk '{print $4}'").stdout) < 1024
    assert vol.sh("cat keep.txt").stdout == "small\n"
    # Freeing space makes it usable again.
    vol.sh("rm fill.bin more.bin && dd if=/dev/zero of=again.bin bs=1M count=10 status=none")
    assert vol.dismount() == {"ok": True, "forced": False}
    vol.assert_fsck_clean()
    assert vol.mcopy("/keep.txt") == b"small\n"


READ_ONLY = r"""
import os
p = os.environ["MP"] + "/ro.txt"
for what, op in (("w", lambda: open(p, "w")),
                 ("a", lambda: open(p, "a")),
                 ("rdwr", lambda: os.open(p, os.O_RDWR)),
                 ("truncate", lambda: os.truncate(p, 0))):
    try:
        op()
        print(what, 0)
    except OSError as e:
        print(what, e.errno)
print("read", open(p).read().strip())
"""


def test_read_only_attribute(mounted_volume):
    vol = mounted_volume
    vol.sh("echo data > ro.txt && chmod a-w ro.txt")
    assert vol.sh("stat -c %A ro.txt").stdout.strip().count("w") == 0
    lines = dict(line.split() for line in vol.py(READ_ONLY).stdout.splitlines())
    assert lines == {"w": "13", "a": "13", "rdwr": "13", "truncate": "13", "read": "data"}, lines
    assert vol.sh("echo more >> ro.txt", check=False).returncode != 0
    vol.sh("chmod u+w ro.txt && echo more >> ro.txt")
    assert vol.sh("cat ro.txt").stdout == "data\nmore\n"
    # chown: FAT has no owners; a no-op chown succeeds, a real change is refused.
    vol.sh("chown $(id -u):$(id -g) ro.txt")
    r = vol.sh("chown 12345 ro.txt", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr

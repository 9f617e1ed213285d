"""Regressions found by real file-system clients (cp, shutil, touch, rsync-style probes, close/unlink loops).

Each test drives the mount from other processes, the way the program that found the defect did, and asserts
what Windows (and Linux's own case-insensitive file systems) would do. docs/behaviour.md describes each rule.
"""

from __future__ import annotations

import errno
import json

import pytest

pytestmark = pytest.mark.fuse


# ------------------------------------------------------------------ 1. one file, one inode, for every spelling


def test_every_spelling_of_a_name_is_one_inode(mounted_volume):
    vol = mounted_volume
    vol.sh("echo data > a.txt && mkdir Dir && echo x > other.txt")
    first = vol.sh("stat -c %i a.txt A.TXT a.TXT Dir DIR dir other.txt").stdout.split()
    assert first[0] == first[1] == first[2], first
    assert first[3] == first[4] == first[5], first
    assert len({first[0], first[3], first[6]}) == 3, f"distinct files must have distinct inodes: {first}"
    # Still one number once the kernel's cached attributes (1 s) have expired and it asks again.
    again = vol.sh("sleep 1.2; stat -c %i A.TXT a.txt").stdout.split()
    assert again == [first[0], first[0]]
    # readdir's d_ino (what ls -i and find -inum use) agrees with stat.
    listed = dict(line.split()[::-1] for line in vol.sh("ls -i").stdout.splitlines())
    assert listed == {"a.txt": first[0], "Dir": first[3], "other.txt": first[6]}
    assert vol.sh("find . -inum " + first[0]).stdout.split() == ["./a.txt"]
    # The inode number follows the file across a rename.
    vol.sh("mv other.txt renamed.txt")
    assert vol.sh("stat -c %i RENAMED.TXT").stdout.strip() == first[6]


def test_cp_onto_another_spelling_refuses_and_keeps_the_data(mounted_volume):
    # It exited 0 and left a.txt empty: cp could not see that source and target are one file and truncated it.
    # Windows: "The file cannot be copied onto itself".
    vol = mounted_volume
    vol.sh("echo data > a.txt")
    for cmd in ("cp a.txt A.TXT", "cp -f a.txt A.TXT", "cp a.TXT a.txt"):
        r = vol.sh(cmd, check=False)
        assert r.returncode != 0 and "same file" in r.stderr, (cmd, r)
        assert vol.sh("cat a.txt").stdout == "data\n", cmd


def test_case_only_rename_of_a_directory_keeps_its_contents(mounted_volume):
    # shutil.move("dir", "DIR") used to copy the tree into itself and delete it: the directory and its files were
    # gone. With one inode it sees a case-insensitive file system and renames.
    vol = mounted_volume
    vol.sh("mkdir -p dir/sub && echo one > dir/f1 && echo two > dir/sub/f2")
    vol.py("import os, shutil; os.chdir(os.environ['MP']); shutil.move('dir', 'DIR')")
    assert vol.sh("ls").stdout.split() == ["DIR"]
    assert vol.sh("cat DIR/f1 DIR/sub/f2").stdout == "one\ntwo\n"
    vol.py("import os, shutil; os.chdir(os.environ['MP']); shutil.move('DIR/f1', 'DIR/F1')")
    assert vol.sh("ls DIR").stdout.split() == ["F1", "sub"]
    assert vol.sh("cat dir/f1").stdout == "one\n"
    vol.dismount()
    vol.assert_fsck_clean()


def test_gnu_mv_case_only_rename_is_refused_without_loss(mounted_volume):
    # GNU mv (coreutils 9) tries renameat2(RENAME_NOREPLACE), which the kernel refuses (the other spelling
    # exists), and then finds one inode: "are the same file", as on every Linux file system that folds case.
    # Pinned so that a change in this is noticed; docs/behaviour.md gives the ways that work (rename(2)).
    vol = mounted_volume
    vol.sh("echo hi > Hello.TXT")
    r = vol.sh("mv Hello.TXT hello.txt", check=False)
    assert r.returncode != 0 and "same file" in r.stderr, r
    assert vol.sh("ls; cat hello.txt").stdout == "Hello.TXT\nhi\n"


# ------------------------------------------------------------------ 1b. every spelling sees the same data
# Found by the model-based exerciser (tools.campaign.fsx): the kernel keeps one inode per spelling it has looked
# up, each with its own page cache and attributes (docs/behaviour.md, "Other spellings of a name").

SPELLINGS = r"""
import os, json
mp = os.environ["MP"]
out = {}
with open(mp + "/c.txt", "wb") as f:
    f.write(b"old1")
held = os.open(mp + "/C.TXT", os.O_RDONLY)
os.pread(held, 10, 0)                            # C.TXT's pages now hold "old1"
closed = os.open(mp + "/c.TXT", os.O_RDONLY)
os.pread(closed, 10, 0)
os.close(closed)                                 # c.TXT: cached pages, no open handle
w = os.open(mp + "/c.txt", os.O_RDWR)
os.pwrite(w, b"new2", 0)                         # same size; FAT's stored time has 2-second steps
os.close(w)
out["held"] = os.pread(held, 10, 0).decode()
fresh = os.open(mp + "/c.TXT", os.O_RDONLY)
out["reopened"] = os.pread(fresh, 10, 0).decode()
os.close(fresh)
os.truncate(mp + "/c.txt", 2)
out["size after truncate"] = [os.stat(mp + "/" + n).st_size for n in ("C.TXT", "c.TXT", "C.txt")]
out["held after truncate"] = os.pread(held, 10, 0).decode()
os.close(held)
print(json.dumps(out))
"""


def test_data_written_through_one_spelling_is_read_through_every_other(mounted_volume):
    # Before: every read through C.TXT returned "old1" after "new2" was written through c.txt (a reopen too),
    # until the kernel's attribute timeout ran out.
    vol = mounted_volume
    out = json.loads(vol.py(SPELLINGS).stdout)
    assert out == {"held": "new2", "reopened": "new2", "size after truncate": [2, 2, 2], "held after truncate": "ne"}


def test_a_name_deleted_through_one_spelling_can_be_created_through_another(mounted_volume):
    # Before: a failed case-only rename (the file was open) left a kernel entry for "a.txt" behind; after the
    # file was deleted as "A.TXT", stat("a.txt") still succeeded and open("a.txt", O_CREAT) failed with ENOENT.
    vol = mounted_volume
    r = vol.py(
        "import os, errno; mp = os.environ['MP']\n"
        "open(mp + '/A.TXT', 'w').write('x')\n"
        "fd = os.open(mp + '/A.TXT', os.O_RDONLY)\n"
        "try:\n    os.rename(mp + '/A.TXT', mp + '/a.txt')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n"
        "os.close(fd)\n"
        "os.unlink(mp + '/A.TXT')\n"
        "print(os.path.exists(mp + '/a.txt'), os.path.exists(mp + '/A.TXT'))\n"
        "fd = os.open(mp + '/a.txt', os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b'new'); os.close(fd)\n"
        "print(open(mp + '/A.TXT').read(), sorted(os.listdir(mp)))\n"
    )
    assert r.stdout.splitlines() == ["EBUSY", "False False", "new ['a.txt']"], r.stdout


def test_a_name_deleted_through_another_spelling_is_gone_at_once(mounted_volume):
    # The reverse: the stored spelling was in the kernel's cache when the file was deleted (or renamed) through
    # another spelling; that entry must not keep the name alive.
    vol = mounted_volume
    r = vol.py(
        "import os; mp = os.environ['MP']\n"
        "for old, how in (('log.txt', 'unlink'), ('cfg.ini', 'rename')):\n"
        "    open(mp + '/' + old, 'w').write('old')\n"
        "    os.stat(mp + '/' + old)\n"
        "    if how == 'unlink':\n        os.unlink(mp + '/' + old.upper())\n"
        "    else:\n        os.rename(mp + '/' + old.upper(), mp + '/moved.ini')\n"
        "    gone = not os.path.exists(mp + '/' + old)\n"
        "    fd = os.open(mp + '/' + old, os.O_RDWR | os.O_CREAT, 0o644); os.write(fd, b'new'); os.close(fd)\n"
        "    print(how, gone, open(mp + '/' + old).read())\n"
        "print(sorted(os.listdir(mp)))\n"
    )
    assert r.stdout.splitlines() == ["unlink True new", "rename True new", "['cfg.ini', 'log.txt', 'moved.ini']"]


def test_size_seen_through_another_spelling_follows_writes(mounted_volume):
    vol = mounted_volume
    r = vol.py(
        "import os; mp = os.environ['MP']\n"
        "open(mp + '/Log.TXT', 'w').write('1')\n"
        "sizes = [os.stat(mp + '/log.txt').st_size]\n"
        "with open(mp + '/Log.TXT', 'a') as f:\n"
        "    for i in range(3):\n"
        "        f.write('22'); f.flush(); sizes.append(os.stat(mp + '/LOG.txt').st_size)\n"
        "print(sizes)\n"
    )
    assert r.stdout.strip() == "[1, 3, 5, 7]"


@pytest.mark.xfail(strict=True, reason="documented deviation: a shared mapping written through one spelling while "
                   "the file is written through another (docs/behaviour.md, 'Other spellings of a name')")
def test_a_mapping_through_one_spelling_and_a_write_through_another(mounted_volume):
    vol = mounted_volume
    r = vol.py(
        "import os, mmap; mp = os.environ['MP']\n"
        "open(mp + '/m.txt', 'wb').write(b'A' * 8192)\n"
        "a = os.open(mp + '/m.txt', os.O_RDWR); m = mmap.mmap(a, 8192)\n"
        "m[0:4] = b'MMAP'\n"
        "b = os.open(mp + '/M.TXT', os.O_RDWR); os.pwrite(b, b'LATER', 0); os.close(b)\n"
        "m.close(); os.close(a)\n"
        "print(open(mp + '/m.txt', 'rb').read(8))\n"
    )
    assert r.stdout.strip() == "b'LATERAAA'"


# ------------------------------------------------------------------ 2. utimens: UTIME_NOW and UTIME_OMIT


def test_touch_sets_now_and_leaves_the_other_time_alone(mounted_volume):
    vol = mounted_volume
    vol.sh("echo x > f && touch -d '2001-02-03 04:05:06' f")
    vol.sh("touch f")  # UTIME_NOW for both: used to write 1980-01-01
    now = json.loads(vol.py(
        "import os, time, json; st = os.stat(os.environ['MP'] + '/f');"
        "print(json.dumps([time.time() - st.st_mtime, time.time() - st.st_atime]))"
    ).stdout)
    assert -5 < now[0] < 60 and -5 < now[1] < 2 * 86400, now  # FAT keeps only the date of the last access
    vol.sh("touch -m -d '2020-05-05 10:00:00' f")  # atime: UTIME_OMIT
    vol.sh("touch -a -d '2021-06-06 00:00:00' f")  # mtime: UTIME_OMIT
    assert vol.sh("stat -c '%y|%x' f").stdout.strip() == (
        "2020-05-05 10:00:00.000000000 +0000|2021-06-06 00:00:00.000000000 +0000"
    )
    vol.sh("touch -a f")
    assert vol.sh("stat -c %y f").stdout.startswith("2020-05-05 10:00:00")


# ------------------------------------------------------------------ 3. delete right after close

CLOSE_LOAD = r"""
import errno, multiprocessing as mp, os, sys, time
root = os.environ["MP"]

def churn(i, stop):
    d = os.path.join(root, f"churn{i}")
    os.makedirs(d, exist_ok=True)
    k = 0
    while not stop.is_set():
        fd = os.open(os.path.join(d, f"f{k % 20}"), os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        k += 1

if __name__ == "__main__":
    stop = mp.Event()
    procs = [mp.Process(target=churn, args=(i, stop)) for i in range(16)]
    for p in procs:
        p.start()
    time.sleep(0.3)
    busy = {"unlink": 0, "rmdir": 0}
    n = int(os.environ["N"])
    for i in range(n):
        p = os.path.join(root, f"t{i}")
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"y")
        os.close(fd)
        try:
            os.unlink(p)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            busy["unlink"] += 1
        d = os.path.join(root, f"d{i}")
        os.mkdir(d)
        fd = os.open(d, os.O_RDONLY)
        os.listdir(d)
        os.close(fd)
        try:
            os.rmdir(d)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            busy["rmdir"] += 1
    stop.set()
    for p in procs:
        p.join()
    print(busy)
"""


def test_delete_right_after_close_succeeds_under_concurrent_close_load(mounted_volume):
    # RELEASE is asynchronous: with the kernel's default of 12 background requests in flight, 16 processes
    # closing files made about 60 % of these unlink/rmdir calls fail with EBUSY (measured before the fix).
    vol = mounted_volume
    r = vol.py(CLOSE_LOAD, N="300")
    assert r.stdout.strip() == "{'unlink': 0, 'rmdir': 0}", r.stdout
    # A file or directory that really is open still cannot be deleted (Windows: sharing violation).
    vol.sh("echo x > held.txt && mkdir helddir")
    vol.spawn_py(
        "import os, sys; mp = os.environ['MP']\n"
        "f = open(mp + '/held.txt'); d = os.open(mp + '/helddir', os.O_RDONLY)\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    r = vol.py(
        "import os; mp = os.environ['MP']; out = []\n"
        "for f in (lambda: os.unlink(mp + '/HELD.TXT'), lambda: os.rmdir(mp + '/HeldDir')):\n"
        "    try:\n        f(); out.append(0)\n"
        "    except OSError as e:\n        out.append(e.errno)\n"
        "print(out)\n"
    )
    assert r.stdout.strip() == str([errno.EBUSY, errno.EBUSY])


# ------------------------------------------------------------------ 4. ftruncate on a writable descriptor


def test_ftruncate_uses_the_descriptors_access(mounted_volume):
    vol = mounted_volume
    r = vol.py(
        "import os; p = os.environ['MP'] + '/ro'\n"
        "fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o444)\n"
        "os.write(fd, b'hello'); os.ftruncate(fd, 2); os.ftruncate(fd, 4); os.close(fd)\n"
        "print(repr(open(p, 'rb').read()), oct(os.stat(p).st_mode & 0o777))\n"
        "try:\n    os.truncate(p, 0)\nexcept OSError as e:\n    print(e.errno)\n"
    )
    # The file is read-only (created 0444), yet its own writable descriptor may resize it; a path truncate may not.
    assert r.stdout.split("\n")[:2] == ["b'he\\x00\\x00' 0o444", str(errno.EACCES)], r.stdout


# ------------------------------------------------------------------ 5. access(X_OK) agrees with stat and execve


def test_access_agrees_with_modes_and_execve(mounted_volume):
    vol = mounted_volume
    vol.sh("printf '#!/bin/sh\\necho ran\\n' > script.sh && mkdir d && echo x > ro.txt && chmod a-w ro.txt")
    r = vol.sh("[ -x script.sh ] && echo x || echo no-x; [ -x d ] && echo dx; [ -w ro.txt ] || echo ro;"
               " stat -c %a script.sh d ro.txt; which ./script.sh || echo which-none")
    assert r.stdout.split() == ["no-x", "dx", "ro", "644", "755", "444", "which-none"]
    assert vol.sh("./script.sh", check=False).returncode == 126  # and execve agrees: not executable
    assert vol.py("import os; print(os.access(os.environ['MP'] + '/script.sh', os.R_OK | os.W_OK))").stdout == "True\n"


# ------------------------------------------------------------------ 6. rmdir and open directory handles


def test_rmdir_refusal_follows_the_directory_not_the_path(mounted_volume):
    # The open-directory check is indexed by the directory itself: it holds for every spelling, follows a
    # renamed directory, and releases the moment the last handle closes.
    vol = mounted_volume
    vol.sh("mkdir -p keep/a held other")
    vol.spawn_py(
        "import os, sys; mp = os.environ['MP']\n"
        "fds = [os.open(mp + '/HELD', os.O_RDONLY) for _ in range(3)]\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    r = vol.py(
        "import os; mp = os.environ['MP']; out = []\n"
        "os.rename(mp + '/held', mp + '/moved')\n"
        "for d in ('/moved', '/MOVED', '/other'):\n"
        "    try:\n        os.rmdir(mp + d); out.append(0)\n"
        "    except OSError as e:\n        out.append(e.errno)\n"
        "print(out)\n"
    )
    assert r.stdout.strip() == str([errno.EBUSY, errno.EBUSY, 0])
    vol.kill_holders()
    vol.wait_until(lambda: vol.sh("rmdir moved", check=False).returncode == 0)
    assert vol.sh("ls").stdout.split() == ["keep"]


# ------------------------------------------------------------------ 7. errno of names and objects FAT cannot hold

ERRNOS = r"""
import os, socket, json
mp = os.environ["MP"]
out = {}
def probe(name, f):
    try:
        f()
        out[name] = 0
    except OSError as e:
        out[name] = e.errno
probe("stat-256", lambda: os.stat(mp + "/" + "x" * 256))
probe("stat-255", lambda: os.stat(mp + "/" + "x" * 255))
probe("open-256", lambda: open(mp + "/" + "y" * 256))
probe("stat-128-astral", lambda: os.stat(mp + "/" + "\U0001F600" * 128))  # 256 UTF-16 units
probe("symlink", lambda: os.symlink("target", mp + "/link"))
probe("link", lambda: os.link(mp + "/f", mp + "/hard"))
probe("mkfifo", lambda: os.mkfifo(mp + "/fifo"))
probe("mknod-chr", lambda: os.mknod(mp + "/chr", 0o20644, os.makedev(1, 3)))
s = socket.socket(socket.AF_UNIX)
os.chdir(mp)  # a socket address holds 108 bytes: the test's mount point is longer
probe("bind", lambda: s.bind("sock"))
print(json.dumps(out))
"""


def test_errno_for_long_names_and_objects_fat_cannot_hold(mounted_volume):
    vol = mounted_volume
    vol.sh("echo x > f")
    got = json.loads(vol.py(ERRNOS).stdout)
    assert got == {
        "stat-256": errno.ENAMETOOLONG, "stat-255": errno.ENOENT, "open-256": errno.ENAMETOOLONG,
        "stat-128-astral": errno.ENAMETOOLONG, "symlink": errno.EPERM, "link": errno.EPERM,
        "mkfifo": errno.EPERM, "mknod-chr": errno.EPERM, "bind": errno.EPERM,
    }, got
    assert vol.sh("ls").stdout.split() == ["f"]


# ------------------------------------------------------------------ 8. what stat reports (decided, documented)


def test_blocks_count_whole_clusters(mounted_volume):
    vol = mounted_volume
    cs = vol.py("import os; print(os.statvfs(os.environ['MP']).f_bsize)").stdout.strip()
    vol.sh(f"head -c 1 /dev/zero > one && head -c $(({cs} + 1)) /dev/zero > two && : > empty")
    blocks = vol.sh("stat -c %b one two empty").stdout.split()
    per = int(cs) // 512
    assert blocks == [str(per), str(2 * per), "0"], (cs, blocks)
    assert vol.sh("stat -c %h . && mkdir -p d/e/f && stat -c %h d").stdout.split() == ["2", "2"]
    # Always 2 (FAT keeps no link count); the tree walkers must not read it as "no subdirectories".
    vol.sh("touch d/e/f/leaf")
    assert vol.sh("find d -type f; du -a d | wc -l").stdout.split() == ["d/e/f/leaf", "4"]

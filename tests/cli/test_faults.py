"""File-system faults through a real mount, seen by real programs (sh, dd, df, python), and the VDS method faults,
through the installed ``simvol`` command. Oracles: the programs' own exit codes and errno, `df`, `fsck.fat -n`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cli

pytestmark = pytest.mark.fuse

READS = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(4):
    try:
        os.pread(fd, 4096, 0)
        print("ok")
    except OSError as e:
        print(os.strerror(e.errno))
"""


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def fsck_clean(cli: Cli, vol: dict) -> None:
    cli.run("detach", vol["id"])
    out = subprocess.run(["fsck.fat", "-n", vol["image"]], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_write_fault_on_logs_hits_once_and_leaves_other_files_alone(fresh_cli: Cli) -> None:
    vol = fresh_cli.create("--letter", "E")
    mp = vol["mount_path"]
    fault = fresh_cli.run("fault", "add", "E", "--op", "write", "--errno", "EIO", "--path", "*.LOG", "--count", "1")
    assert fault["fault"] == {"id": fault["fault"]["id"], "op": "write", "errno": "EIO", "path": "*.LOG", "after": 0,
                              "count": 1, "delay_ms": 0, "after_bytes": None, "probability": None, "seed": None,
                              "persist": False, "hits": 0}
    assert sh(f"echo data > '{mp}/data.txt'").returncode == 0
    hit = sh(f"mkdir -p '{mp}/logs' && echo one > '{mp}/logs/app.log'")
    assert hit.returncode != 0 and "I/O error" in hit.stderr
    assert sh(f"echo two > '{mp}/logs/app.log'").returncode == 0  # count 1: spent
    assert Path(mp, "data.txt").read_text() == "data\n"
    listed = fresh_cli.run("fault", "list", "E")["faults"]
    assert [f["hits"] for f in listed] == [1]
    log = fresh_cli.run("fault", "log", "E")["log"]
    assert [(e["op"], e["path"], e["errno"], e["process"]) for e in log] == [("write", "/logs/app.log", "EIO", "sh")]
    assert log[0]["pid"] > 0
    fsck_clean(fresh_cli, vol)


def test_after_one_count_one_fails_exactly_the_second_read_of_a_cached_file(fresh_cli: Cli) -> None:
    vol = fresh_cli.create()
    path = os.path.join(vol["mount_path"], "cached.bin")
    assert sh(f"head -c 65536 /dev/urandom > '{path}' && cat '{path}' > /dev/null").returncode == 0  # in the cache
    fresh_cli.run("fault", "add", vol["id"], "--op", "read", "--errno", "EIO", "--path", "cached.bin",
                  "--after", "1", "--count", "1")
    out = subprocess.run([sys.executable, "-c", READS, path], capture_output=True, text=True, timeout=60).stdout
    assert out.split("\n")[:4] == ["ok", "Input/output error", "ok", "ok"]


def test_a_read_fault_reaches_a_file_that_was_open_before_it_was_armed(fresh_cli: Cli) -> None:
    vol = fresh_cli.create()
    path = os.path.join(vol["mount_path"], "open.txt")
    Path(path).write_text("x" * 5000)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nos.pread(fd,100,0)\n"
         "print('ready',flush=True)\nsys.stdin.readline()\ntry:\n os.pread(fd,100,0); print('ok')\n"
         "except OSError as e: print(e.errno)\n", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"  # its pages are cached now
    fresh_cli.run("fault", "add", vol["id"], "--op", "read", "--errno", "EACCES", "--path", "open.txt")
    out, _ = holder.communicate("go\n", timeout=60)
    assert out.strip() == "13"  # the cached pages were dropped: the read reached the daemon and its fault


def test_a_volume_that_fills_up_after_b_bytes(fresh_cli: Cli) -> None:
    vol = fresh_cli.create("--letter", "Q")
    mp = vol["mount_path"]
    fresh_cli.run("fault", "add", "Q", "--op", "write", "--after-bytes", str(3 << 20))
    dd = subprocess.run(["dd", "if=/dev/zero", f"of={mp}/fill.bin", "bs=64k", "count=200"], capture_output=True,
                        text=True, timeout=60)
    assert dd.returncode != 0 and "No space left on device" in dd.stderr
    assert os.path.getsize(f"{mp}/fill.bin") == 3 << 20  # dd stopped at the byte count
    df = subprocess.run(["df", "-B1", "--output=avail", mp], capture_output=True, text=True, check=True)
    assert int(df.stdout.split()[-1]) == 0  # df agrees: the volume is full
    assert os.statvfs(mp).f_bavail == 0
    fresh_cli.run("fault", "clear", "Q")
    assert sh(f"echo after > '{mp}/more.txt'").returncode == 0  # clear restores normal behaviour
    assert os.statvfs(mp).f_bavail > 0
    fsck_clean(fresh_cli, vol)


def test_delay_errno_and_any_op(fresh_cli: Cli) -> None:
    vol = fresh_cli.create()
    mp = vol["mount_path"]
    fresh_cli.run("fault", "add", vol["id"], "--op", "mkdir", "--delay-ms", "30")  # slow, not failing
    assert sh(f"mkdir '{mp}/slow'").returncode == 0
    fresh_cli.run("fault", "add", vol["id"], "--op", "any", "--errno", "EROFS", "--path", "/locked/**")
    assert sh(f"mkdir '{mp}/locked'").returncode == 0  # the folder itself is not below it
    r = sh(f"touch '{mp}/locked/x'")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    entries = fresh_cli.run("fault", "log", vol["id"])["log"]
    assert [(e["op"], e["errno"], e["delay_ms"]) for e in entries][:2] == [("mkdir", None, 30), ("mkdir", None, 30)]
    assert entries[-1]["op"] == "create" and entries[-1]["errno"] == "EROFS"


def test_random_faults_repeat_with_their_seed(fresh_cli: Cli) -> None:
    vol = fresh_cli.create()
    mp = vol["mount_path"]
    outcomes = []
    for _ in range(2):
        fid = fresh_cli.run("fault", "add", vol["id"], "--op", "create", "--errno", "EIO", "--probability", "0.5",
                            "--seed", "7")["fault"]["id"]
        outcomes.append([sh(f"touch '{mp}/f{i}_{fid}'").returncode == 0 for i in range(20)])
        fresh_cli.run("fault", "clear", vol["id"], str(fid))
    assert outcomes[0] == outcomes[1] and 0 < sum(outcomes[0]) < 20


def test_faults_end_at_dismount_unless_persist(fresh_cli: Cli) -> None:
    vol = fresh_cli.create("--letter", "P")
    mp = vol["mount_path"]
    fresh_cli.run("fault", "add", "P", "--op", "create", "--errno", "EIO", "--path", "gone.txt")
    fresh_cli.run("fault", "add", "P", "--op", "create", "--errno", "EACCES", "--path", "kept.txt", "--persist")
    fresh_cli.run("dismount", "P")
    assert [f["path"] for f in fresh_cli.run("fault", "list", "P")["faults"]] == ["kept.txt"]
    # the next access remounts the volume (as Windows does): the persistent fault is armed again
    assert sh(f"touch '{mp}/gone.txt'").returncode == 0
    r = sh(f"touch '{mp}/kept.txt'")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    fresh_cli.run("fault", "clear", "P")
    assert sh(f"touch '{mp}/kept.txt'").returncode == 0


def test_surprise_removal_then_mount_repairs_and_keeps_fsynced_data(fresh_cli: Cli) -> None:
    vol = fresh_cli.create("--letter", "R")
    mp = vol["mount_path"]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os,sys\nfd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT)\n"
         "os.write(fd,b'durable');os.fsync(fd)\nos.write(fd,b' and more')\nprint('ready',flush=True)\n"
         "sys.stdin.readline()\ntry:\n os.pread(fd,7,0); print('ok')\nexcept OSError as e: print(e.errno)\n",
         os.path.join(mp, "data.txt")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    out = fresh_cli.run("fault", "surprise-removal", "R")
    assert out["volume"]["status"] == "FAILED" and not out["volume"]["mounted"]
    got, _ = holder.communicate("go\n", timeout=60)
    assert int(got) in (5, 107)  # EIO or ENOTCONN: the disk is gone
    shown = fresh_cli.run("show", "R")["volume"]
    assert shown["status"] == "FAILED"
    fresh_cli.fail("VDS_E_VOLUME_NOT_ONLINE", "fault", "surprise-removal", "R")
    back = fresh_cli.run("mount", "R")["volume"]
    assert back["status"] == "ONLINE" and back["mounted"]
    assert Path(back["mount_path"], "data.txt").read_bytes().startswith(b"durable")
    assert [e["op"] for e in fresh_cli.run("fault", "log", "R")["log"]] == ["surprise-removal"]
    fsck_clean(fresh_cli, vol)


def test_a_method_fault_returns_its_code_once_and_changes_nothing(fresh_cli: Cli) -> None:
    fresh_cli.create("--letter", "M")
    pid = os.getpid()
    f = fresh_cli.run("fault", "add", "M", "--method", "dismount", "--hresult", "VDS_E_DEVICE_IN_USE",
                      "--holder", str(pid))["fault"]
    assert (f["method"], f["code"], f["count"]) == ("Dismount", "VDS_E_DEVICE_IN_USE", 1)
    out = fresh_cli.fail("VDS_E_DEVICE_IN_USE", "dismount", "M")
    assert out["holders"] and out["holders"][0]["pid"] == pid
    assert fresh_cli.run("show", "M")["volume"]["dismount_state"] == "none"  # nothing changed
    assert fresh_cli.run("dismount", "M")["volume"]["dismount_state"] == "temporary"  # once only
    fresh_cli.run("fault", "add", "M", "--method", "AddAccessPath", "--hresult", "0x8004255C", "--count", "2")
    for _ in range(2):
        fresh_cli.fail("VDS_E_DRIVE_LETTER_NOT_FREE", "add-path", "M", "C:\\nowhere")
    log = fresh_cli.run("fault", "log", "M")["log"]
    assert [(e["op"], e["code"]) for e in log] == [("Dismount", "VDS_E_DEVICE_IN_USE"),
                                                   ("AddAccessPath", "VDS_E_DRIVE_LETTER_NOT_FREE"),
                                                   ("AddAccessPath", "VDS_E_DRIVE_LETTER_NOT_FREE")]


def test_bad_faults_are_refused_clearly(fresh_cli: Cli) -> None:
    vol = fresh_cli.create()
    fresh_cli.fail("E_INVALIDARG", "fault", "add", vol["id"], "--op", "write", "--errno", "ENOTANERRNO")
    fresh_cli.fail("E_INVALIDARG", "fault", "add", vol["id"], "--op", "read", "--after-bytes", "10")
    fresh_cli.fail("E_INVALIDARG", "fault", "add", vol["id"], "--method", "Explode", "--hresult", "E_FAIL")
    fresh_cli.fail("E_INVALIDARG", "fault", "add", vol["id"], "--method", "Mount", "--hresult", "S_OK")
    fresh_cli.usage("fault", "add", vol["id"], "--op", "write")  # no errno, delay or byte count
    fresh_cli.fail("VDS_E_OBJECT_NOT_FOUND", "fault", "clear", vol["id"], "99")
    assert fresh_cli.run("fault", "list", vol["id"])["faults"] == []

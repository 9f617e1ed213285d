"""The narrated demo behind ``scripts/demo``: Windows volume behaviour, step by step, with HRESULTs.

Every step runs the real ``simvol`` command (``--json``) or a real shell process, prints what it did and the
HRESULT it got, and checks that against what Windows would answer. Any deviation ends the demo with exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GREEN, RED, DIM, BOLD, RESET = "\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m"


class DemoFailure(Exception):
    pass


class Demo:
    def __init__(self, root: Path, color: bool) -> None:
        self.root = root
        self.color = color
        self.step_no = 0
        self.simvol = [sys.executable, "-m", "simvol", "--root", str(root), "--json"]

    def c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n{self.c(BOLD, f'{self.step_no:2}. {title}')}")

    def ok(self, text: str) -> None:
        print(f"    {self.c(GREEN, '✓')} {text}")

    def fail(self, text: str) -> None:
        print(f"    {self.c(RED, '✗')} {text}")
        raise DemoFailure(text)

    def run(self, *args: str, expect: str = "S_OK") -> dict[str, Any]:
        cmd = ["simvol", *args]
        print(f"    {self.c(DIM, '$ ' + ' '.join(cmd))}")
        r = subprocess.run([*self.simvol, *args], capture_output=True, text=True, timeout=120)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            self.fail(f"no JSON from simvol (exit {r.returncode}): {r.stdout[-300:]} {r.stderr[-300:]}")
        code, hr = out["code"], out["hresult"]
        shown = f"{code} (0x{hr:08X})" + (f": {out['message']}" if "message" in out else "")
        if code != expect:
            self.fail(f"expected {expect}, got {shown}")
        self.ok(f"HRESULT {shown}")
        want_rc = 0 if not hr & 0x80000000 else 1
        if r.returncode != want_rc:
            self.fail(f"exit status {r.returncode}, expected {want_rc}")
        return out

    def sh(self, script: str) -> str:
        print(f"    {self.c(DIM, '$ sh -c ' + repr(script))}")
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
        if r.returncode:
            self.fail(f"shell step failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout


def _kill_all_daemons(root: Path) -> list[int]:
    pids = []
    for pidfile in (root / "run").glob("*.pid"):
        try:
            pid = json.loads(pidfile.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)
            pids.append(pid)
        except (OSError, ValueError, KeyError):
            pass
    time.sleep(0.3)
    return pids


def _reset(root: Path) -> None:
    if root.exists():
        # simvol destroy dismounts everything before it deletes the root (rm -rf would descend into the volumes).
        subprocess.run([sys.executable, "-m", "simvol", "--root", str(root), "destroy", "--force"],
                       capture_output=True, timeout=120)
    if root.exists():  # not a root destroy could take down: what is left, never descending into a mount
        from simvol.mount import cleanup_stale, simvol_mounts

        for entry in simvol_mounts(str(root)):
            cleanup_stale(entry.mountpoint)
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)


HOLDER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print(os.read(fd, 100).decode().strip(), flush=True)
sys.stdin.readline()
for what in ("read", "write"):
    try:
        os.pread(fd, 10, 0) if what == "read" else os.pwrite(fd, b"stale", 0)
        print(what, "ok", flush=True)
    except OSError as e:
        print(what, "failed", e.errno, e.strerror, flush=True)
"""


def scenario(d: Demo) -> None:
    root = d.root
    d.step("Create two FAT32 volumes with drive letters (they arrive mounted, like new Windows volumes)")
    e = d.run("create", "--size", "64M", "--label", "DATA", "--letter", "E")["volume"]
    f = d.run("create", "--size", "48M", "--label", "LOGS", "--letter", "F")["volume"]
    d.ok(f"E: is {e['id']}, F: is {f['id']}")

    d.step("Write files through the drive letter with ordinary shell commands")
    e_path = d.run("resolve", "E:\\")["path"]
    f_path = d.run("resolve", "F:\\")["path"]
    d.sh(f"echo 'hello from Linux' > '{e_path}/Hello.txt' && mkdir '{e_path}/docs' && "
         f"seq 1 20000 > '{e_path}/docs/numbers.txt' && cp /etc/os-release '{f_path}/os-release.txt'")
    listing = d.sh(f"ls '{e_path}' && cat '{e_path}/HELLO.TXT'")
    d.ok("case-insensitive like Windows: HELLO.TXT opened Hello.txt → " + listing.split()[-1])
    expected_numbers = Path(f"{e_path}/docs/numbers.txt").read_bytes()

    d.step("Another process holds E:\\Hello.txt open: a safe Dismount is refused and names it")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, f"{e_path}/Hello.txt"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    holder.stdout.readline()
    out = d.run("dismount", "E:", expect="VDS_E_DEVICE_IN_USE")
    pids = {h["pid"] for h in out.get("holders", [])}
    if holder.pid not in pids:
        d.fail(f"holder pid {holder.pid} not named (holders: {out.get('holders')})")
    d.ok(f"the holder (pid {holder.pid}) is named: " +
         ", ".join(f"{h['process']} {h['pid']} {h['kind']} {h['path']}" for h in out["holders"]))

    d.step("Forced Dismount(bForce=TRUE): it succeeds and the holder's handle goes stale")
    d.run("dismount", "E:", "--force")
    holder.stdin.write("\n")
    holder.stdin.flush()
    results = holder.stdout.read().strip().splitlines()
    holder.wait(10)
    if not all("failed" in line for line in results) or len(results) != 2:
        d.fail(f"the stale handle still worked: {results}")
    d.ok("holder: " + "; ".join(results))

    d.step("Touching E: again remounts it, as Windows does on first access after a dismount")
    e_path = d.run("resolve", "E:\\")["path"]
    d.sh(f"echo 'written after the remount' > '{e_path}/after.txt' && sync '{e_path}/after.txt'")
    d.ok("E: is mounted again and writable")

    d.step("Permanent dismount of F: needs its access paths gone first")
    d.run("dismount", "F:", "--permanent", expect="VDS_E_VOLUME_HAS_PATH")
    d.run("remove-path", "F:", "F:")
    out = d.run("dismount", f["id"], "--permanent")
    if out["volume"]["status"] != "OFFLINE":
        d.fail(f"status {out['volume']['status']}, expected OFFLINE")
    d.ok("F's volume is OFFLINE with VDS_VF_PERMANENTLY_DISMOUNTED, stored in its image")

    d.step("Simulated reboot: every daemon is killed (SIGKILL), then `simvol up` boots the host")
    pids_killed = _kill_all_daemons(root)
    d.ok(f"killed daemons {pids_killed}")
    d.run("up")
    vols = {v["id"]: v for v in d.run("list")["volumes"]}
    if not pids_killed:
        d.fail("no daemon was running before the reboot")
    if not vols[e["id"]]["mounted"]:
        d.fail("E: did not come back after the reboot")
    d.ok("E: is mounted again: its stale mount was cleaned up and the dirty image repaired first")

    d.step("The permanently dismounted volume is still offline after the reboot")
    out = d.run("show", f["id"])
    if out["volume"]["status"] != "OFFLINE" or out["volume"]["mounted"]:
        d.fail(f"expected OFFLINE and not mounted, got {out['volume']['status']}")
    d.ok("still OFFLINE")

    d.step("AddAccessPath brings it back online (and clears the flag in the image)")
    out = d.run("add-path", f["id"], "G:")
    if out["volume"]["status"] != "ONLINE" or out["volume"]["access_paths"] != ["G:\\"]:
        d.fail(f"unexpected state {out['volume']}")
    d.ok(f"ONLINE at {out['volume']['access_paths'][0]}")

    d.step("The files are intact")
    e_path = d.run("resolve", "E:\\docs\\numbers.txt")["path"]
    if Path(e_path).read_bytes() != expected_numbers:
        d.fail("numbers.txt differs after the reboot")
    g_file = d.run("resolve", "G:\\os-release.txt")["path"]
    if Path(g_file).read_bytes() != Path("/etc/os-release").read_bytes():
        d.fail("os-release.txt differs")
    after = d.run("resolve", "E:\\after.txt")["path"]
    if Path(after).read_text() != "written after the remount\n":
        d.fail("after.txt (fsynced before the SIGKILL) is not intact")
    d.ok("E:\\docs\\numbers.txt, E:\\after.txt and G:\\os-release.txt read back byte for byte")

    d.step("Shut down and let fsck.fat judge both images")
    d.run("down")
    # fsck.fat lives in /usr/sbin, which an unprivileged user's PATH lacks on Debian.
    fsck = shutil.which("fsck.fat", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if fsck is None:
        d.fail("fsck.fat not found (install dosfstools)")
    for vol in (e, f):
        r = subprocess.run([fsck, "-n", vol["image"]], capture_output=True, text=True)
        if r.returncode != 0 or "differences between boot sector" in r.stdout:
            d.fail(f"fsck.fat -n {vol['image']}: exit {r.returncode}\n{r.stdout}")
        d.ok(f"fsck.fat -n: {r.stdout.strip().splitlines()[-1]}")
    d.run("up")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    here = Path(__file__).resolve().parent.parent
    p.add_argument("--root", type=Path, default=here / "images" / "demo",
                   help="root of the demo host (recreated each run; default images/demo in the checkout)")
    p.add_argument("--keep", action="store_true", help="leave the volumes mounted at the end")
    args = p.parse_args(argv)
    root = args.root.resolve()
    demo = Demo(root, sys.stdout.isatty())
    print(demo.c(BOLD, "simvol demo — Windows volume management on Linux, with real I/O"))
    print(f"root: {root}")
    try:
        _reset(root)
        scenario(demo)
    except DemoFailure:
        print(demo.c(RED, "\nThe demo did not behave as described: see the ✗ above."))
        return 1
    except Exception as e:  # noqa: BLE001 - the demo reports, never shows a traceback
        print(demo.c(RED, f"\nThe demo failed: {type(e).__name__}: {e}"))
        return 1
    finally:
        if not args.keep:
            subprocess.run([sys.executable, "-m", "simvol", "--root", str(root), "down", "--force"],
                           capture_output=True, timeout=120)
    print(demo.c(GREEN, f"\nAll {demo.step_no} steps behaved as Windows does."))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Narrated demo of the FAT32 engine alone (no FUSE, no VDS): ``python -m tools.engine_demo``.

The engine on its own, for someone who wants to see the FAT32 layer work without FUSE (``scripts/demo`` runs the
full VDS demo, ``tools.demo``). It makes a sparse 256 MiB image in ``images/demo/``
of the checkout (made afresh on every run and left there to inspect; a temporary directory, removed at the end,
when that is not writable), formats it with the label SIMVOL, writes a long-named file, a nested directory and
a 3 MiB file, reads everything back, closes the file system cleanly, and then lets tools nobody here wrote judge
the result: ``fsck.fat -n``, ``mdir`` and ``mcopy`` (mtools). Every step prints one line with ✓ or ✗; the
exit status is 1 if any step failed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMAGE_SIZE = 256 * 2**20
LABEL = "SIMVOL"
LONG_NAME = "Quarterly report, final version (approved).txt"
NESTED_DIR = "Projects/2024 Budget/Drafts"
NESTED_FILE = f"{NESTED_DIR}/notes.txt"
BIG_FILE = "Projects/dataset.bin"
BIG_SIZE = 3 * 2**20

_SBIN = "/usr/sbin:/sbin"


def _marks() -> tuple[str, str]:
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗".encode(enc)
    except (UnicodeEncodeError, LookupError):
        return "OK  ", "FAIL"
    return "✓", "✗"


OK, BAD = _marks()


class Demo:
    def __init__(self) -> None:
        self.failed = 0

    def step(self, text: str, fn: Callable[[], Any], *, fatal: bool = True) -> Any:
        """Run one step; print ✓ text (with what ``fn`` returns as detail) or ✗ text: error."""
        try:
            result = fn()
        except Exception as e:  # the demo reports any failure and stops (or goes on, for independent checks)
            self.failed += 1
            if isinstance(e, StepFailed):
                print(f"{BAD} {text}: {e}", flush=True)
                if e.block:
                    print(_indent(e.block), flush=True)
            else:
                print(f"{BAD} {text}: {type(e).__name__}: {e}", flush=True)
            if fatal:
                raise _Stop from e
            return None
        detail, block = result if isinstance(result, tuple) else (result, "")
        suffix = f" — {detail}" if isinstance(detail, str) and detail else ""
        print(f"{OK} {text}{suffix}", flush=True)
        if block:
            print(_indent(block), flush=True)
        return result

    def fail(self, text: str) -> None:
        self.failed += 1
        print(f"{BAD} {text}", flush=True)


class _Stop(Exception):
    pass


class StepFailed(Exception):
    """A check that did not hold; ``block`` (a tool's output) is printed under the ✗ line."""

    def __init__(self, message: str, block: str = "") -> None:
        super().__init__(message)
        self.block = block


def _human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _demo_dir() -> tuple[Path, bool]:
    """(directory, temporary?): images/demo/ of the checkout when writable, else a fresh temporary directory."""
    import simvol

    root = Path(simvol.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "images").is_dir():
        d = root / "images" / "demo"
        try:
            d.mkdir(exist_ok=True)
            if os.access(d, os.W_OK | os.X_OK):
                return d, False
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="simvol-demo-")), True


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", os.defpath) + os.pathsep + _SBIN)
    if path is None:
        raise FileNotFoundError(f"{name} not found (scripts/setup installs dosfstools and mtools)")
    return path


def _run_tool(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, env=env, timeout=120, check=False)


def _indent(text: str) -> str:
    return "\n".join(f"    │ {line}" for line in text.rstrip("\n").splitlines())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.engine_demo", description=__doc__.split("\n\n")[0])
    p.parse_args(argv)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")  # an ASCII terminal gets '?' for a dash rather than a traceback
    demo = Demo()
    directory, temporary = _demo_dir()
    image = directory / "engine-demo.img"
    print(f"simvol FAT32 engine demo — image {image}" + (" (temporary)" if temporary else ""), flush=True)
    try:
        _run(demo, image)
    except _Stop:
        pass
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    if demo.failed:
        print(f"{BAD} demo failed: {demo.failed} step(s) went wrong", flush=True)
        return 1
    print(f"{OK} demo complete: every step passed" + ("" if temporary else f"; the image stays at {image}"), flush=True)
    return 0


def _run(demo: Demo, image: Path) -> None:
    from simvol.fat import FatFileSystem, format_volume

    # ------------------------------------------------------------------ the image
    def create() -> str:
        image.unlink(missing_ok=True)
        fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, IMAGE_SIZE)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return f"{_human(st.st_size)} apparent, {_human(st.st_blocks * 512)} allocated"

    demo.step(f"create a sparse {_human(IMAGE_SIZE)} image with ftruncate", create)

    def fmt() -> str:
        fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
        try:
            geo = format_volume(fd, IMAGE_SIZE, label=LABEL)
        finally:
            os.close(fd)
        return (f"{geo.cluster_size // 1024} KiB clusters, {geo.cluster_count:,} clusters, "
                f"FAT {_human(geo.fat_bytes)} × {geo.num_fats}")

    demo.step(f"format FAT32 with label {LABEL!r}", fmt)

    # ------------------------------------------------------------------ write
    fs = demo.step("open the file system for writing", lambda: FatFileSystem.open_path(str(image)))
    contents: dict[str, bytes] = {
        LONG_NAME: b"Revenue up, costs down. Approved by the board.\r\n",
        NESTED_FILE: "Draft notes — saved through the simvol engine.\n".encode(),
        BIG_FILE: hashlib.shake_256(b"simvol demo").digest(BIG_SIZE),  # 3 MiB, deterministic, incompressible
    }
    try:
        def write_long() -> str:
            node = fs.create(LONG_NAME)
            fs.write_node(node, contents[LONG_NAME], 0)
            return f"8.3 alias {fs.short_name(LONG_NAME)}"

        demo.step(f"write a long-named file {LONG_NAME!r}", write_long)

        def nested() -> str:
            path = ""
            for part in NESTED_DIR.split("/"):
                path = f"{path}/{part}" if path else part
                fs.mkdir(path)
            node = fs.create(NESTED_FILE)
            fs.write_node(node, contents[NESTED_FILE], 0)
            return f"/{NESTED_FILE}"

        demo.step("make a nested directory and a file inside it", nested)

        def big() -> str:
            node = fs.create(BIG_FILE)
            chunk = 256 * 1024
            for off in range(0, BIG_SIZE, chunk):  # in pieces, as a program writing a stream would
                fs.write_node(node, contents[BIG_FILE][off : off + chunk], off)
            st = fs.stat(BIG_FILE)
            return f"{_human(st.size)} in 256 KiB writes, first cluster {st.cluster}"

        demo.step(f"write a {_human(BIG_SIZE)} file /{BIG_FILE}", big)

        def verify_open() -> str:
            for path, data in contents.items():
                got = fs.read(path, len(data) + 1, 0)
                if got != data:
                    raise StepFailed(f"{path}: read {len(got)} bytes that differ from the {len(data)} written")
            return f"{len(contents)} files, {sum(map(len, contents.values())):,} bytes identical"

        demo.step("read everything back and compare", verify_open)
    finally:
        if fs is not None:
            demo.step("close cleanly (flush FAT and entries, FSInfo, clear the dirty markers, fsync)", fs.close)

    def reopen() -> str:
        with FatFileSystem.open_path(str(image), writable=False) as ro:
            if ro.was_dirty:
                raise StepFailed("the volume is marked dirty after a clean close")
            for path, data in contents.items():
                if ro.read(path, len(data) + 1, 0) != data:
                    raise StepFailed(f"{path} differs after reopening")
            listing = ", ".join(ro.listdir("/"))
            label = ro.label
        return f"label {label!r}; root: {listing}"

    demo.step("reopen read-only: clean, label and contents intact", reopen, fatal=False)

    # ------------------------------------------------------------------ independent judges
    def fsck() -> tuple[str, str]:
        out = _run_tool([_tool("fsck.fat"), "-n", str(image)])
        text = (out.stdout + out.stderr).decode(errors="replace")
        if out.returncode != 0:
            raise StepFailed(f"fsck.fat -n exited {out.returncode}", text)
        if "differences between boot sector and its backup" in text:
            raise StepFailed("boot sector and its backup differ", text)
        return "exit 0, no errors", text

    demo.step("fsck.fat -n (dosfstools) checks the image", fsck, fatal=False)

    mtools_env = dict(os.environ, MTOOLS_SKIP_CHECK="1")

    def mdir() -> tuple[str, str]:
        out = _run_tool([_tool("mdir"), "-i", str(image), "::/"], env=mtools_env)
        text = (out.stdout + out.stderr).decode(errors="replace")
        if out.returncode != 0:
            raise StepFailed(f"mdir exited {out.returncode}", text)
        for want in (LONG_NAME, "Projects", LABEL):
            if want not in text:
                raise StepFailed(f"mdir does not show {want!r}", text)
        return "label, long name and directory all listed", text

    demo.step("mdir -i IMG ::/ (mtools) lists the root", mdir, fatal=False)

    def mcopy() -> str:
        out = _run_tool([_tool("mcopy"), "-n", "-i", str(image), f"::/{BIG_FILE}", "-"], env=mtools_env)
        if out.returncode != 0:
            raise StepFailed(f"mcopy exited {out.returncode}: {out.stderr.decode(errors='replace').strip()}")
        want = hashlib.sha256(contents[BIG_FILE]).hexdigest()
        got = hashlib.sha256(out.stdout).hexdigest()
        if got != want:
            raise StepFailed(f"mtools read {len(out.stdout):,} bytes with sha256 {got[:16]}…, expected {want[:16]}…")
        return f"sha256 {got[:16]}… matches"

    demo.step(f"mcopy (mtools) reads /{BIG_FILE} back byte for byte", mcopy, fatal=False)

    # ------------------------------------------------------------------ sparseness
    def sizes() -> str:
        st = os.stat(image)
        alloc = st.st_blocks * 512
        if alloc >= st.st_size:
            raise StepFailed(f"{_human(alloc)} allocated of {_human(st.st_size)}: the image is not sparse")
        return (f"{_human(alloc)} allocated of {_human(st.st_size)} apparent "
                f"({alloc / st.st_size:.1%}); du shows the first, du --apparent-size the second")

    demo.step("the image is still sparse", sizes, fatal=False)


if __name__ == "__main__":
    sys.exit(main())

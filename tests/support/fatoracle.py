"""Independent FAT32 oracles for the engine's tests: dosfstools (fsck.fat, mkfs.fat) and mtools.

Plain functions, imported as ``tests.support.fatoracle`` (the checkout's root is on pytest's ``pythonpath``).
Conventions (docs/fat32-notes.md §14):

- ``fsck.fat -n`` must exit 0 and must not report "differences between boot sector and its backup";
- mtools runs with ``MTOOLS_SKIP_CHECK=1``, ``MTOOLSRC`` naming a file with ``DEFAULT_CODEPAGE=437``, ``TZ=UTC``
  and a UTF-8 locale (so long names cross the pipe as UTF-8);
- oracles only ever look at closed (cleanly dismounted) images.

``tools_missing()`` names the missing programs; tests skip with that reason (CI installs dosfstools and mtools).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

MTOOLS = ("mcopy", "mdir", "mmd", "mrd", "mdel", "mlabel", "minfo", "mshortname", "mattrib")
DOSFSTOOLS = ("fsck.fat", "mkfs.fat")
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
BACKUP_DIFF = "differences between boot sector and its backup"


@functools.cache
def tool(name: str) -> str | None:
    """Absolute path of a program; also looks in the sbin directories (fsck.fat lives there)."""
    found = shutil.which(name)
    if found:
        return found
    for d in _SBIN:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def tools_missing(names: Iterable[str] = MTOOLS + DOSFSTOOLS) -> list[str]:
    return [n for n in names if tool(n) is None]


def skip_reason(names: Iterable[str] = MTOOLS + DOSFSTOOLS) -> str | None:
    missing = tools_missing(names)
    if not missing:
        return None
    return (
        f"FAT oracles not installed: {', '.join(missing)} "
        "(install the Debian packages dosfstools and mtools; CI does)"
    )


# --------------------------------------------------------------------------- fsck.fat


def fsck(image: str | os.PathLike) -> tuple[int, str]:
    """Run ``fsck.fat -n`` (check only, never writes); (exit code, stdout + stderr)."""
    exe = tool("fsck.fat")
    assert exe, skip_reason(DOSFSTOOLS)
    r = subprocess.run([exe, "-n", os.fspath(image)], capture_output=True, text=True, errors="replace")
    return r.returncode, r.stdout + r.stderr


def fsck_clean(image: str | os.PathLike, *, context: str = "") -> str:
    """Assert that fsck.fat -n finds nothing: exit 0, boot sector equal to its backup, no other remark."""
    rc, out = fsck(image)
    where = f" [{context}]" if context else ""
    assert rc == 0, f"fsck.fat -n exited {rc}{where}:\n{out}"
    assert BACKUP_DIFF not in out, f"fsck.fat -n: boot sector differs from its backup{where}:\n{out}"
    # A clean run prints only the version banner and the "N files, x/y clusters" summary.
    extra = [
        ln
        for ln in out.splitlines()
        if ln.strip() and not ln.startswith("fsck.fat ") and not (" files, " in ln and " clusters" in ln)
    ]
    assert not extra, f"fsck.fat -n had remarks{where}:\n{out}"
    return out


# --------------------------------------------------------------------------- mtools


@functools.cache
def _mtoolsrc() -> str:
    d = tempfile.mkdtemp(prefix="simvol-mtoolsrc-")
    path = os.path.join(d, "mtoolsrc")
    with open(path, "w", encoding="ascii") as f:
        f.write("DEFAULT_CODEPAGE=437\n")
    return path


def mtools_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(MTOOLS_SKIP_CHECK="1", MTOOLSRC=_mtoolsrc(), TZ="UTC", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    env.pop("MTOOLS_NAME_NUMERIC_TAIL", None)
    return env


def mtool(name: str, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run one mtools command (bytes in, bytes out); with ``check`` a non-zero exit fails the test."""
    exe = tool(name)
    assert exe, skip_reason(MTOOLS)
    r = subprocess.run([exe, *args], capture_output=True, env=mtools_env(), input=input)
    if check:
        assert r.returncode == 0, (
            f"{name} {' '.join(args)} exited {r.returncode}:\n"
            f"{r.stdout.decode('utf-8', 'replace')}{r.stderr.decode('utf-8', 'replace')}"
        )
    return r


def mcopy_read(image: str | os.PathLike, path: str) -> bytes:
    """File contents as mtools reads them (``mcopy -i IMG ::/path -``)."""
    return mtool("mcopy", "-i", os.fspath(image), "::" + _glob_escape(_abs(path)), "-").stdout


def mcopy_write(image: str | os.PathLike, path: str, data: bytes, tmpdir: str | os.PathLike) -> None:
    """Write a file with mtools (``mcopy -i IMG host ::/path``, replacing an existing one)."""
    host = Path(tmpdir) / "mcopy-src.bin"
    host.write_bytes(data)
    mtool("mcopy", "-o", "-i", os.fspath(image), os.fspath(host), "::" + _abs(path))


def mmd(image: str | os.PathLike, path: str) -> None:
    mtool("mmd", "-i", os.fspath(image), "::" + _abs(path))


def mcopy_tree(image: str | os.PathLike, dest: str | os.PathLike) -> dict[str, bytes]:
    """Copy the whole image to ``dest`` with ``mcopy -s`` and return '/'-rooted paths → contents."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    mtool("mcopy", "-s", "-n", "-i", os.fspath(image), "::/*", os.fspath(dest) + "/")
    out: dict[str, bytes] = {}
    for p in dest.rglob("*"):
        if p.is_file():
            out["/" + p.relative_to(dest).as_posix()] = p.read_bytes()
    return out


def mdir_tree(image: str | os.PathLike) -> tuple[set[str], set[str]]:
    """(files, directories) of the whole image as mtools sees them, as '/'-rooted paths with long names."""
    out = mtool("mdir", "-i", os.fspath(image), "-/", "-b", "-a", "::").stdout.decode("utf-8")
    files: set[str] = set()
    dirs: set[str] = set()
    for line in out.splitlines():
        if not line.startswith("::"):
            assert not line.strip(), f"unexpected mdir -b line {line!r}"
            continue
        p = line[2:]
        if p.endswith("/"):
            p = p.rstrip("/")
            if p:
                dirs.add(p)
        else:
            files.add(p)
    return files, dirs


def mlabel_show(image: str | os.PathLike) -> str:
    """The label as ``mlabel -s`` shows it ('' when there is none)."""
    out = mtool("mlabel", "-i", os.fspath(image), "-s", "::").stdout.decode("cp437", "replace")
    line = out.strip()
    if "has no label" in line:
        return ""
    prefix = "Volume label is "
    assert line.startswith(prefix), out
    return line[len(prefix) :].rstrip()


def minfo(image: str | os.PathLike) -> dict[str, str]:
    """``minfo`` as a dict of its "key: value" and "key=value" lines (values unquoted, right-stripped)."""
    out = mtool("minfo", "-i", os.fspath(image), "::").stdout.decode("cp437", "replace")
    info: dict[str, str] = {}
    for line in out.splitlines():
        cut = min((i for i in (line.find(":"), line.find("=")) if i > 0), default=-1)
        if cut > 0:
            v = line[cut + 1 :].strip()
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            info.setdefault(line[:cut].strip(), v.rstrip())
    return info


def mattrib_flags(image: str | os.PathLike, path: str) -> set[str]:
    """DOS attribute letters (A, S, H, R) that ``mattrib`` shows for one file or directory."""
    out = mtool("mattrib", "-i", os.fspath(image), "::" + _glob_escape(_abs(path))).stdout.decode("utf-8")
    line = out.splitlines()[0]
    return set("".join(line[: line.index("::")].split()))


def mshortname(image: str | os.PathLike, path: str) -> str:
    """The 8.3 alias mtools reads for ``path`` ("BASE.EXT", OEM code page 437)."""
    out = mtool("mshortname", "-i", os.fspath(image), "::" + _glob_escape(_abs(path))).stdout.decode("cp437").strip()
    return out.rsplit("/", 1)[-1]


def _abs(path: str) -> str:
    return "/" + path.strip("/")


def _glob_escape(path: str) -> str:
    """mtools expands * ? [ ] in source names; a backslash makes them literal."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in path)


# --------------------------------------------------------------------------- mkfs.fat


def mkfs(image: str | os.PathLike, size_kib: int, *, spc: int, sector: int = 512, label: str | None = None) -> None:
    """A reference FAT32 image: ``mkfs.fat -F 32 -S SECTOR -s SPC [-n LABEL] --invariant -C IMG KIB``."""
    exe = tool("mkfs.fat")
    assert exe, skip_reason(DOSFSTOOLS)
    args = [exe, "-F", "32", "-S", str(sector), "-s", str(spc), "--invariant"]
    if label:
        args += ["-n", label]
    args += ["-C", os.fspath(image), str(size_kib)]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}"


# --------------------------------------------------------------------------- engine side


def make_volume(path: str | os.PathLike, size: int, **format_options):
    """A fresh sparse bare image formatted by the engine (``format_options`` go to ``format_volume``, whose
    result is returned)."""
    from simvol.fat import format_volume

    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, size)
        return format_volume(fd, size, **format_options)
    finally:
        os.close(fd)


def check_clean(path: str | os.PathLike) -> None:
    """The engine's own ``check`` finds nothing on the closed image."""
    from simvol.fat import check

    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert check(fd, os.fstat(fd).st_size) == []
    finally:
        os.close(fd)


def expect_errno(err: int, fn, *args):
    """``fn(*args)`` raises the engine's FsOpError (an OSError) with errno ``err``; returns the error."""
    import pytest

    from simvol.errors import FsOpError

    with pytest.raises(FsOpError) as ei:
        fn(*args)
    assert ei.value.errno == err, (fn, args, ei.value)
    assert isinstance(ei.value, OSError)
    return ei.value


def engine_tree(fs) -> tuple[dict[str, bytes], set[str]]:
    """(files → contents, directories) of an open FatFileSystem, walking listdir/stat/read."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    todo = [""]
    while todo:
        d = todo.pop()
        for name, st in fs.scandir(d or "/"):
            p = f"{d}/{name}"
            if st.is_dir:
                dirs.add(p)
                todo.append(p)
            else:
                data = fs.read(p, st.size + 1, 0)
                assert len(data) == st.size, f"{p}: read {len(data)} bytes of {st.size}"
                files[p] = data
    return files, dirs


def assert_mtools_sees(
    image: str | os.PathLike,
    files: dict[str, bytes],
    dirs: set[str],
    *,
    tmpdir: str | os.PathLike | None = None,
    per_file_limit: int = 40,
) -> None:
    """mtools lists exactly ``files`` and ``dirs`` (exact long names) and reads every file byte for byte.

    Up to ``per_file_limit`` files are read one by one with ``mcopy ::/path -``; beyond that a sample is, and
    the whole tree is also copied out at once with ``mcopy -s`` (one process instead of hundreds).
    """
    m_files, m_dirs = mdir_tree(image)
    assert m_dirs == set(dirs), _diff("directories", set(dirs), m_dirs)
    assert m_files == set(files), _diff("files", set(files), m_files)
    paths = sorted(files)
    # The bulk copy needs host names (UTF-8, at most 255 bytes); a 255-unit CJK name is 765 bytes.
    host_ok = all(len(part.encode()) <= 255 for p in paths for part in p.split("/"))
    if len(paths) > per_file_limit and host_ok:
        step = len(paths) / per_file_limit
        sample = [paths[int(i * step)] for i in range(per_file_limit)]
        assert tmpdir is not None, "many files: pass tmpdir for the bulk copy"
        copied = mcopy_tree(image, Path(tmpdir) / "mcopy-tree")
        assert set(copied) == set(files), _diff("copied files", set(files), set(copied))
        for path in paths:
            assert copied[path] == files[path], f"mcopy -s {path}: contents differ from the engine's"
    else:
        sample = paths
    for path in sample:
        got = mcopy_read(image, path)
        data = files[path]
        assert got == data, f"mcopy {path}: {len(got)} bytes differ from the {len(data)} written"


def _diff(what: str, want: set[str], got: set[str]) -> str:
    return (
        f"mtools {what} differ from the engine's:\n  only engine: {sorted(want - got)[:20]}\n"
        f"  only mtools: {sorted(got - want)[:20]}"
    )

"""Bad input at every interface: the CLI, the Python API, the control socket, and the host itself (a full disk).

Every case must end in a clear error — a VdsError with the code docs/windows-semantics.md fixes where it fixes one;
on the
CLI exit 1 (a failure HRESULT) or 2 (a usage error) with exactly one JSON object on stdout and no traceback on
stderr — and must leave nothing behind: no image, no access path, nothing touched outside the root.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simvol import VolumeService
from simvol.errors import VdsError, code_name
from simvol.mount import cleanup_stale, simvol_mounts

_candidate = Path(sys.executable).with_name("simvol")
SIMVOL = str(_candidate) if _candidate.exists() else (shutil.which("simvol") or "simvol")
MiB = 1 << 20


# ------------------------------------------------------------------------------------------------ helpers


def cli(root: Path, *args: str, rc: int | None = None, code: str | None = None, timeout: float = 60) -> dict:
    """``simvol --root ROOT --json ARGS``: one JSON object, no traceback, the exit status its HRESULT implies."""
    env = {k: v for k, v in os.environ.items() if k != "SIMVOL_ROOT"}
    r = subprocess.run([SIMVOL, "--root", str(root), "--json", *args], capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    where = f"simvol {' '.join(args)!r}: exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, where
    text = r.stdout.strip()
    obj, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == "" and isinstance(obj, dict), where
    assert obj["code"] == code_name(obj["hresult"]), where
    failed = bool(obj["hresult"] & 0x80000000)
    assert r.returncode in ((1, 2) if failed else (0,)), where
    if r.returncode == 2:
        assert obj["code"] == "E_INVALIDARG", where
    if failed:
        assert obj.get("message"), where
    if rc is not None:
        assert r.returncode == rc, where
    if code is not None:
        assert obj["code"] == code, where
    return obj


def vds_code(fn) -> str:
    with pytest.raises(VdsError) as ei:
        fn()
    return ei.value.code


def listing(root: Path) -> dict[str, list[str]]:
    out = {}
    for sub in ("images", "drives", "drives/C", "volumes"):
        d = root / sub
        out[sub] = sorted(os.listdir(d)) if d.is_dir() else []
    return out


def _teardown(svc: VolumeService, base: Path) -> None:
    for row in svc.registry.volumes():
        try:
            svc.volume(row.id).detach(force=True)
        except Exception:  # noqa: BLE001
            pass
    svc.close()
    for e in simvol_mounts(str(base)):
        try:
            cleanup_stale(e.mountpoint)
        except Exception:  # noqa: BLE001
            subprocess.run(["fusermount3", "-uz", "--", e.mountpoint], capture_output=True, timeout=10)
    assert not simvol_mounts(str(base)), "simvol mounts left behind"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Iterator[Path]:
    """A root with no volumes, shared by the argument tests (none of them may create anything)."""
    r = tmp_path_factory.mktemp("bad-input") / "root"
    svc = VolumeService(r)
    yield r
    _teardown(svc, r.parent)


@pytest.fixture(scope="module")
def mounted(tmp_path_factory):
    """One mounted volume for the access-path and format cases: (service, volume)."""
    base = tmp_path_factory.mktemp("bad-input-vol")
    svc = VolumeService(base / "root")
    vol = svc.create_volume(40 * MiB, label="KEEP")
    yield svc, vol
    _teardown(svc, base)


# ------------------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    "size, rc, code",
    [
        ("-5M", 2, "E_INVALIDARG"),
        ("0", 2, "E_INVALIDARG"),
        ("", 2, "E_INVALIDARG"),
        ("abc", 2, "E_INVALIDARG"),
        ("1e9", 2, "E_INVALIDARG"),
        ("0x100", 2, "E_INVALIDARG"),
        ("1K", 1, "VDS_E_VOLUME_TOO_SMALL"),
        ("3T", 1, "VDS_E_VOLUME_TOO_BIG"),
        ("10P", 1, "VDS_E_VOLUME_TOO_BIG"),
        ("99999999999999999999999P", 1, "VDS_E_VOLUME_TOO_BIG"),
    ],
)
def test_cli_sizes(root: Path, size, rc, code):
    before = listing(root)
    cli(root, "create", "--size", size, rc=rc, code=code)
    assert listing(root) == before


@pytest.mark.parametrize(
    "size, code",
    [(-1, "E_INVALIDARG"), (0, "E_INVALIDARG"), (1.5, "E_INVALIDARG"), ("64M", "E_INVALIDARG"),
     (True, "E_INVALIDARG"), (None, "E_INVALIDARG"), (3 << 40, "VDS_E_VOLUME_TOO_BIG"),
     (10 << 50, "VDS_E_VOLUME_TOO_BIG"), (2**70, "VDS_E_VOLUME_TOO_BIG"), (4096, "VDS_E_VOLUME_TOO_SMALL")],
)
def test_api_sizes(root: Path, size, code):
    svc = VolumeService(root)
    before = listing(root)
    assert vds_code(lambda: svc.create_volume(size)) == code
    assert listing(root) == before
    svc.close()


def test_cli_unit(root: Path):
    cli(root, "create", "--size", "64M", "--unit", "abc", rc=2)
    cli(root, "create", "--size", "64M", "--unit", "3", rc=1, code="VDS_E_CLUSTER_SIZE_TOO_SMALL")
    cli(root, "create", "--size", "64M", "--unit", "1M", rc=1, code="VDS_E_CLUSTER_SIZE_TOO_BIG")
    assert listing(root)["images"] == []


# ------------------------------------------------------------------------------------------------ labels

BAD_LABELS = [*'*?/\\|.,;:+=[]<>"', "\t", "A\x01B", "ABCDEFGHIJKL", "ÄÄÄÄÄÄÄÄÄÄÄÄ", "é€", "日本"]


@pytest.mark.parametrize("label", BAD_LABELS, ids=[f"{ord(c[0]):02x}-{len(c.encode())}" for c in BAD_LABELS])
def test_api_labels(root: Path, label):
    """docs/windows-semantics.md §5.3 row 5: over 11 bytes in cp437 after upper-casing, a forbidden character, a tab
    or a control
    character → VDS_E_BAD_LABEL, checked before any image exists."""
    svc = VolumeService(root)
    before = listing(root)
    assert vds_code(lambda: svc.create_volume(40 * MiB, label=label)) == "VDS_E_BAD_LABEL"
    assert listing(root) == before
    svc.close()


def test_api_label_wrong_type_leaves_no_image(root: Path):
    """Found here: label=5 failed inside the formatter with AttributeError and left the new image behind."""
    svc = VolumeService(root)
    before = listing(root)
    for label in (5, b"DATA", ["X"]):
        assert vds_code(lambda: svc.create_volume(40 * MiB, label=label)) == "E_INVALIDARG"
    assert listing(root) == before
    svc.close()


@pytest.mark.parametrize("label", ["A*B", "TAB\tX", "ABCDEFGHIJKL", "é€", "a.b"])
def test_cli_labels(root: Path, label):
    cli(root, "create", "--size", "40M", "--label", label, rc=1, code="VDS_E_BAD_LABEL")
    assert listing(root)["images"] == []


@pytest.mark.fuse
def test_format_bad_label_changes_nothing(mounted):
    _svc, vol = mounted
    for label in ("A*B", "ABCDEFGHIJKL", "\t"):
        assert vds_code(lambda: vol.format(label=label)) == "VDS_E_BAD_LABEL"
    for kw in ({"label": 5}, {"unit": "4K"}, {"unit": None}):
        assert vds_code(lambda: vol.format(**kw)) == "E_INVALIDARG"
    assert vds_code(lambda: vol.format(fs_type=None)) == "VDS_E_INVALID_FS_TYPE"
    assert vds_code(lambda: vol.format(unit=3)) == "VDS_E_CLUSTER_SIZE_TOO_SMALL"
    assert vds_code(lambda: vol.set_file_system_flags("x")) == "E_INVALIDARG"
    assert vol.state == "M" and vol.label == "KEEP"


# ------------------------------------------------------------------------------------------------ drive letters


@pytest.mark.parametrize("letter", ["1:", "EE:", "E:/x", "E:\\\\", ":", "", "1", "ÄÖ:"])
def test_api_create_letters(root: Path, letter):
    svc = VolumeService(root)
    before = listing(root)
    assert vds_code(lambda: svc.create_volume(40 * MiB, letter=letter)) == "VDS_E_INVALID_DRIVE_LETTER"
    assert vds_code(lambda: svc.create_volume(40 * MiB, letter=5)) == "VDS_E_INVALID_DRIVE_LETTER"
    assert listing(root) == before
    svc.close()


@pytest.mark.parametrize("letter", ["1:", "EE:", "E:/x", "E:\\x", "?"])
def test_cli_create_letters(root: Path, letter):
    cli(root, "create", "--size", "40M", "--letter", letter, rc=2)
    assert listing(root)["images"] == []


@pytest.mark.fuse
@pytest.mark.parametrize(
    "path, code",
    [
        ("1:", "VDS_E_INVALID_DRIVE_LETTER"),
        ("EE:", "VDS_E_INVALID_DRIVE_LETTER"),
        ("E", "VDS_E_INVALID_DRIVE_LETTER"),
        ("E:\\\\", "VDS_E_INVALID_DRIVE_LETTER"),
        ("E:/x", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),  # a folder on a drive that does not exist
        ("C:", "VDS_E_DRIVE_LETTER_NOT_FREE"),
    ],
)
def test_cli_add_path_letters(mounted, path, code):
    svc, vol = mounted
    before = listing(Path(svc.root.path))
    cli(Path(svc.root.path), "add-path", str(vol.id), path, rc=1, code=code)
    assert listing(Path(svc.root.path)) == before
    assert vol.query_access_paths() == []


# ------------------------------------------------------------------------------------------------ access paths

LONG = "C:\\" + "a" * 257  # 260 characters


@pytest.mark.fuse
@pytest.mark.parametrize(
    "path, code",
    [
        (None, "E_INVALIDARG"),
        ("", "E_INVALIDARG"),
        (LONG, "E_INVALIDARG"),
        (123, "E_INVALIDARG"),
        (b"E:", "E_INVALIDARG"),
        ("C:\\a\\..\\b", "E_INVALIDARG"),
        ("C:\\.\\b", "E_INVALIDARG"),
        ("dir\\x", "E_INVALIDARG"),
        ("E:dir", "E_INVALIDARG"),
        ("\\\\server\\share", "E_INVALIDARG"),
        ("\\\\?\\C:\\x", "E_INVALIDARG"),
        ("/tmp/../etc", "E_INVALIDARG"),
        ("/tmp//x", "E_INVALIDARG"),
        ("C:\\a\x00b", "E_INVALIDARG"),
        ("C:\\a\tb", "E_INVALIDARG"),
        ("/tmp/\udcff", "E_INVALIDARG"),  # undecodable host bytes; was VDS_E_INTERNAL_ERROR (UnicodeEncodeError)
        (LONG[:259], "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),  # 259 characters: the length is fine
        ("C:\\missing", "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"),
    ],
    ids=lambda v: repr(v)[:24] if not isinstance(v, str) or len(v) < 24 else f"{len(v)}chars",
)
def test_api_add_path(mounted, path, code):
    svc, vol = mounted
    before = listing(Path(svc.root.path))
    assert vds_code(lambda: vol.add_access_path(path)) == code
    assert vds_code(lambda: vol.delete_access_path(path)) in ("E_INVALIDARG", "VDS_E_PATH_NOT_FOUND")
    assert listing(Path(svc.root.path)) == before
    assert vol.query_access_paths() == []


@pytest.mark.fuse
def test_cli_add_path_undecodable(mounted, tmp_path: Path):
    """A host folder whose name is not UTF-8 (argv bytes 0xff): E_INVALIDARG, the folder untouched."""
    svc, vol = mounted
    folder = os.path.join(os.fsencode(tmp_path), b"h\xff")
    os.mkdir(folder)
    r = subprocess.run([os.fsencode(SIMVOL), b"--root", os.fsencode(svc.root.path), b"--json", b"add-path",
                        str(vol.id).encode(), folder], capture_output=True, timeout=60)
    obj = json.loads(r.stdout)
    assert r.returncode == 1 and obj["code"] == "E_INVALIDARG", (r.stdout, r.stderr)
    assert b"Traceback" not in r.stderr
    assert os.path.isdir(folder) and not os.path.islink(folder)


@pytest.mark.fuse
def test_cli_planted_symlinks(mounted, tmp_path: Path):
    """Paths through symlinks planted to escape the root: clean failures (or the link alone replaced) and the
    targets outside untouched. tests/security/test_planted_symlinks.py covers the same through the API."""
    svc, vol = mounted
    root = Path(svc.root.path)
    etc = tmp_path / "etc"  # stands for /etc: a directory with content
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0\n")
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    x = tmp_path / "x"
    x.mkdir()
    before = {p: os.lstat(p) for p in (etc, etc / "passwd", outside, outside / "sub", x)}
    c = root / "drives" / "C"
    (c / "mnt").symlink_to(etc)
    (c / "link").symlink_to(outside)
    (root / "drives" / "E").symlink_to(x)
    gid = str(vol.id)
    try:
        cli(root, "add-path", gid, "C:\\mnt", rc=1, code="HRESULT_FROM_WIN32(ERROR_DIRECTORY)")
        cli(root, "add-path", gid, "C:\\link\\sub", rc=1, code="HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)")
        cli(root, "add-path", gid, "C:\\mnt\\passwd", rc=1, code="HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)")
        # ROOT/drives/E pre-created as a link no volume claims: only the link is replaced.
        cli(root, "add-path", gid, "E:", rc=0)
        assert os.readlink(root / "drives" / "E") == f"../volumes/{{{gid.upper()}}}"
        cli(root, "remove-path", gid, "E:", rc=0)
        # resolve never climbs out of a volume: found here, \\?\Volume{…}\..\..\x resolved to a host path outside
        esc = f"\\\\?\\Volume{{{gid}}}\\..\\..\\..\\..\\..\\..\\..\\etc\\passwd"
        cli(root, "resolve", esc, rc=1, code="E_INVALIDARG")
        assert vds_code(lambda: svc.resolve(esc)) == "E_INVALIDARG"
        cli(root, "resolve", "E:\\..\\x", rc=1, code="E_INVALIDARG")
        cli(root, "resolve", "relative\\x", rc=1, code="E_INVALIDARG")
    finally:
        (c / "mnt").unlink()
        (c / "link").unlink()
    for p, st in before.items():
        now = os.lstat(p)
        assert (now.st_mode, now.st_ino, now.st_mtime_ns, now.st_size) == (st.st_mode, st.st_ino, st.st_mtime_ns,
                                                                            st.st_size), p
    assert (etc / "passwd").read_text() == "root:x:0:0\n"
    assert os.listdir(outside / "sub") == [] and os.listdir(x) == []
    assert vol.query_access_paths() == []


def test_api_wrong_types(root: Path):
    """Wrong Python types are E_INVALIDARG (or the row's own code), never TypeError/AttributeError."""
    svc = VolumeService(root)
    before = listing(root)
    assert vds_code(lambda: svc.volume(5)) == "VDS_E_OBJECT_NOT_FOUND"
    assert vds_code(lambda: svc.volume(None)) == "VDS_E_OBJECT_NOT_FOUND"
    assert vds_code(lambda: svc.resolve(5)) == "E_INVALIDARG"
    assert vds_code(lambda: svc.resolve("E:\\a\x00")) == "E_INVALIDARG"
    assert vds_code(lambda: svc.attach(None)) == "E_INVALIDARG"
    assert vds_code(lambda: svc.attach("")) == "E_INVALIDARG"
    assert vds_code(lambda: svc.attach("/tmp/a\x00b")) == "E_INVALIDARG"
    assert vds_code(lambda: svc.attach("/tmp/\udcff.img")) == "E_INVALIDARG"
    assert vds_code(lambda: svc.create_volume(40 * MiB, image="/tmp/\udcff.img")) == "E_INVALIDARG"
    assert vds_code(lambda: svc.create_volume(40 * MiB, cluster_size="4K")) == "E_INVALIDARG"
    assert vds_code(lambda: svc.create_volume(40 * MiB, filesystem=5)) == "VDS_E_INVALID_FS_TYPE"
    assert vds_code(lambda: svc.create_volume(40 * MiB, roles=["nope"])) == "E_INVALIDARG"
    assert not os.path.exists("/tmp/\udcff.img")
    assert listing(root) == before
    svc.close()


# ------------------------------------------------------------------------------------------------ images


def _image_cases(tmp: Path, good: Path) -> dict[str, tuple[str, str]]:
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    link = tmp / "link.img"
    link.symlink_to(good)
    junk = tmp / "junk.img"
    junk.write_bytes(b"junk")
    empty = tmp / "empty.img"
    empty.touch()
    big_junk = tmp / "zeros.img"
    with open(big_junk, "wb") as f:
        f.truncate(40 * MiB)
    return {
        "directory": (str(tmp), "VDS_E_OBJECT_STATUS_FAILED"),
        "device": ("/dev/null", "VDS_E_OBJECT_STATUS_FAILED"),
        "fifo": (str(fifo), "VDS_E_OBJECT_STATUS_FAILED"),
        "symlink": (str(link), "VDS_E_OBJECT_STATUS_FAILED"),
        "junk": (str(junk), "VDS_E_OBJECT_STATUS_FAILED"),
        "empty": (str(empty), "VDS_E_OBJECT_STATUS_FAILED"),
        "no-trailer": (str(big_junk), "VDS_E_OBJECT_STATUS_FAILED"),
        "missing": (str(tmp / "missing.img"), "HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)"),
    }


@pytest.fixture
def good_image(tmp_path: Path) -> Path:
    """A valid, detached image."""
    svc = VolumeService(tmp_path / "maker")
    vol = svc.create_volume(40 * MiB, image=str(tmp_path / "good.img"))
    vol.detach()
    svc.close()
    return tmp_path / "good.img"


@pytest.mark.fuse
def test_cli_attach_bad_images(tmp_path: Path, good_image: Path):
    cases_dir = tmp_path / "cases"
    cases_dir.mkdir()
    root = tmp_path / "root"
    for name, (path, code) in _image_cases(cases_dir, good_image).items():
        t0 = time.monotonic()
        obj = cli(root, "attach", path, rc=1, code=code, timeout=60)
        assert time.monotonic() - t0 < 30, f"{name}: attach took too long (a FIFO must never be opened)"
        assert path in obj["message"] or name == "missing" or os.path.abspath(path) in obj["message"], obj
        assert cli(root, "list")["volumes"] == [], name
    assert listing(root)["volumes"] == []
    assert os.stat("/dev/null").st_mode & 0o666 == 0o666 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.fuse
def test_create_over_existing_paths(tmp_path: Path, good_image: Path):
    """create --image never writes over (or through) something that exists."""
    svc = VolumeService(tmp_path / "root")
    try:
        size = os.path.getsize(good_image)
        for path in (str(good_image), "/dev/null", str(tmp_path)):
            assert (
                vds_code(lambda: svc.create_volume(40 * MiB, image=path)) == "HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)"
            )
        assert vds_code(lambda: svc.create_volume(40 * MiB, image=str(tmp_path / "nodir" / "x.img"))) == (
            "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)")
        assert os.path.getsize(good_image) == size
        assert svc.registry.volumes() == []
    finally:
        svc.close()


@pytest.mark.fuse
def test_immutable_image(tmp_path: Path, good_image: Path):
    """A read-only image (chattr +i, since root ignores mode bits): the mount fails cleanly, nothing is registered."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and e2fsprogs")
    r = subprocess.run(["chattr", "+i", str(good_image)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"chattr +i unsupported on this file system: {r.stderr.strip()}")
    root = tmp_path / "root"
    try:
        obj = cli(root, "attach", str(good_image), rc=1, code="VDS_E_OBJECT_STATUS_FAILED")
        assert "read-only" in obj["message"] or "permission denied" in obj["message"].lower(), obj
        assert "Traceback" not in obj["message"]
        assert cli(root, "list")["volumes"] == []
    finally:
        subprocess.run(["chattr", "-i", str(good_image)], check=True)
    assert not simvol_mounts(str(tmp_path))


# ------------------------------------------------------------------------------------------------ control socket


@pytest.mark.fuse
def test_control_socket_garbage(mounted):
    """Found here: a JSON array killed the daemon's control thread (AttributeError outside the handler), after which
    the volume could never be dismounted; a client that connected and sent nothing blocked it forever."""
    svc, vol = mounted
    info = svc.mounter.daemon(str(vol.id))

    def send(data: bytes) -> dict | None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(info.socket)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            buf = b""
            while True:
                try:
                    c = s.recv(65536)
                except OSError:
                    break
                if not c:
                    break
                buf += c
        return json.loads(buf) if buf else None

    for data in (b"garbage\n", b"[]\n", b'"x"\n', b"5\n", b"\xff\xfe\n", b'{"op": 5}\n', b'{"op": "nope"}\n',
                 b'{"op": "holders", "paths": 5}\n', b'{"op": "dismount", "force": "no"}\n',
                 b'{"op": "dismount", "paths": [1]}\n', b"[" * 100000 + b"\n", b"x" * (2 * MiB), b""):
        answer = send(data)
        assert answer is None or answer.get("ok") is False, (data[:40], answer)
    assert vol.state == "M" and os.path.ismount(vol.mount_path)
    assert vol.get_file_system_properties().total_allocation_units > 0
    # A stalled client is dropped after the daemon's read timeout; requests behind it are served after that.
    from simvol.mount.control import READ_TIMEOUT

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
        stalled.connect(info.socket)
        t0 = time.monotonic()
        assert vol.get_file_system_properties().total_allocation_units > 0
        assert time.monotonic() - t0 < READ_TIMEOUT + 10
    assert vol.holders() == []


# ------------------------------------------------------------------------------------------------ a full host disk


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator:
    """``make(size)`` mounts a tmpfs of that size (root only) and unmounts it afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made: list[Path] = []

    def make(size: str) -> Path:
        d = tmp_path / f"tmpfs{len(made)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        made.append(d)
        return d

    yield make
    for d in made:
        for e in simvol_mounts(str(d)):
            subprocess.run(["fusermount3", "-uz", "--", e.mountpoint], capture_output=True, timeout=10)
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


WRITER = r"""
import errno, os, sys
mp, n = sys.argv[1], 0
try:
    for i in range(10000):
        with open(os.path.join(mp, "f%04d.bin" % i), "wb") as f:
            for j in range(16):
                f.write(os.urandom(65536))
                n += 65536
except OSError as e:
    print(e.errno, n)
else:
    print(0, n)
"""

# What an interrupted allocation may leave: a chain longer than its file, clusters nobody owns, a stale free count.
REPAIRABLE = {"size_mismatch", "lost_clusters", "fsinfo", "dirty", "backup_boot", "fat_mismatch"}


@pytest.mark.fuse
def test_host_disk_fills_up_mid_write(tmp_path: Path, small_tmpfs):
    """A 64 MiB sparse image on a 48 MiB tmpfs: the writer gets ENOSPC (or EIO) promptly, the daemon survives,
    a safe dismount works, and the image is consistent or repairable (simvol's check and fsck.fat agree)."""
    disk = small_tmpfs("48m")
    svc = VolumeService(tmp_path / "root")
    try:
        vol = svc.create_volume(64 * MiB, image=str(disk / "v.img"))
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-c", WRITER, vol.mount_path], capture_output=True, text=True,
                           timeout=120, cwd="/")
        elapsed = time.monotonic() - t0
        err, written = map(int, r.stdout.split())
        assert err in (errno.ENOSPC, errno.EIO), (r.stdout, r.stderr)
        assert 30 * MiB < written < 64 * MiB, written
        assert elapsed < 60
        # The daemon survived and still answers; the host is still full.
        assert vol.state == "M"
        assert vol.get_file_system_properties().total_allocation_units > 0
        assert shutil.disk_usage(disk).free < 1 * MiB
        assert vol.dismount() == 0  # safe: nobody holds it
        problems = vol.check()
        assert {p["kind"] for p in problems} <= REPAIRABLE, problems
        fsck = subprocess.run(["fsck.fat", "-n", vol.image], capture_output=True, text=True, timeout=60)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr  # 1: errors found that -a would fix
        vol.check(repair=True)
        assert vol.check() == []
        fsck = subprocess.run(["fsck.fat", "-n", vol.image], capture_output=True, text=True, timeout=60)
        assert fsck.returncode == 0, fsck.stdout
        # Deleting files returns space to the host (holes are punched), and the volume works again.
        assert vol.mount() == 0
        subprocess.run(["sh", "-c", 'rm -f "$1"/f000*.bin && echo after > "$1"/after.txt', "sh", vol.mount_path],
                       check=True, timeout=60)
        assert Path(vol.mount_path, "after.txt").read_text() == "after\n"
        vol.dismount()
        assert vol.check() == []
    finally:
        _teardown(svc, tmp_path)


@pytest.mark.fuse
def test_registry_disk_full(tmp_path: Path, small_tmpfs):
    """The root on a full disk: registry writes fail with ERROR_DISK_FULL (was a raw sqlite3.OperationalError),
    leave no half-made access path (was: the drive-letter link stayed with no registry row), and everything works
    once space is back."""
    disk = small_tmpfs("4m")
    svc = VolumeService(disk / "root")
    filler = disk / "filler"
    try:
        vol = svc.create_volume(40 * MiB, image=str(tmp_path / "v.img"))
        folder = Path(svc.root.system_drive) / "data"
        folder.mkdir()
        with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush (and fail) at close
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError as e:
                assert e.errno == errno.ENOSPC
        for path in ("E:", "C:\\data"):
            try:
                vol.add_access_path(path)
            except VdsError as e:
                assert e.code == "HRESULT_FROM_WIN32(ERROR_DISK_FULL)", e
                assert vol.query_access_paths() == []
                assert not os.path.lexists(svc.root.letter_path("E"))
                assert folder.is_dir() and not folder.is_symlink()
            else:
                assert path.rstrip(":\\") in "".join(vol.query_access_paths())
        for op in (lambda: vol.dismount(force=True), vol.mount, vol.get_properties, vol.query_access_paths):
            try:
                op()
            except VdsError as e:
                assert e.code in ("HRESULT_FROM_WIN32(ERROR_DISK_FULL)", "VDS_E_OBJECT_STATUS_FAILED"), e
        filler.unlink()
        vol.mount()
        assert vol.state == "M"
        for path in ("E:", "C:\\data"):
            if path.rstrip(":\\") not in "".join(vol.query_access_paths()):
                assert vol.add_access_path(path) == 0
        assert vol.query_access_paths() == ["E:\\", "C:\\data\\"]
        vol.delete_access_path("C:\\data")
        assert folder.is_dir() and not folder.is_symlink()
    finally:
        _teardown(svc, disk)


@pytest.mark.fuse
def test_close_then_dismount_at_once(tmp_path: Path):
    """Found by the disk-full test: a process that closed a file on the volume and dismounted at once was told the
    volume was in use — by itself — about one time in three (the kernel's RELEASE arrives after close() returns,
    and only the RELEASEs of exited processes were waited for). A real holder still fails at once."""
    svc = VolumeService(tmp_path / "root")
    try:
        vol = svc.create_volume(40 * MiB)
        for i in range(15):
            with open(os.path.join(vol.mount_path, f"f{i}.txt"), "w") as f:
                f.write("x")
            os.listdir(vol.mount_path)
            assert vol.dismount() == 0, i
            assert vol.mount() == 0
        fd = os.open(os.path.join(vol.mount_path, "f0.txt"), os.O_RDONLY)
        try:
            t0 = time.monotonic()
            with pytest.raises(VdsError) as ei:
                vol.dismount()
            assert ei.value.code == "VDS_E_DEVICE_IN_USE"
            assert os.getpid() in [h["pid"] for h in ei.value.holders]
            assert time.monotonic() - t0 < 2
        finally:
            os.close(fd)
    finally:
        _teardown(svc, tmp_path)

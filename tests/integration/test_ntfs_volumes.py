"""NTFS volumes end to end: the VDS answers that follow NTFS, real programs through the mount, the dismount states,
the lock, faults, a crash, Format back and forth, and images made by ntfs-3g itself.

Oracles: ntfs-3g's own tools on the image's region (``ntfsfix -n``, ``ntfscat``, ``ntfsls``), ``fsck.fat -n`` after a
Format to FAT32, real programs (cp, tar, git, dd, truncate, python) and their exit codes and errno. The test process
talks to simvol only through its Python API and never touches a mount itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simvol import VdsError, VolumeService
from simvol.image import read_metadata
from simvol.mount import read_mounts, wait_gone
from simvol.types import FileSystemPropFlag, FileSystemType, VolumeFlag, VolumeState
from tests.support.ntfsoracle import assert_ntfs_clean, ntfscat, ntfsls
from tests.support.processes import ntfs3g_servers, wait_until

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def sh(script: str, *, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "LC_ALL": "C", **env}, stdin=subprocess.DEVNULL, cwd="/")
    if check:
        assert r.returncode == 0, f"{script}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


@pytest.fixture
def service(tmp_path: Path) -> Iterator[VolumeService]:
    svc = VolumeService(str(tmp_path / "root"))
    try:
        yield svc
    finally:
        try:
            svc.destroy(force=True)
        finally:
            svc.close()


def test_vds_answers_follow_ntfs(service: VolumeService) -> None:
    vol = service.create_volume(256 * MiB, "NTFS", label="Backup Disk")
    assert vol.get_file_system_type_name() == "NTFS"
    prop = vol.get_file_system_properties()
    assert prop.type is FileSystemType.NTFS and prop.label == "Backup Disk"
    assert prop.allocation_unit_size == 4096 and prop.flags == FileSystemPropFlag(0)
    # NTFS keeps the volume's last sector for its backup boot sector: one cluster short of the size.
    assert 0 < prop.available_allocation_units < prop.total_allocation_units == 256 * MiB // 4096 - 1
    flags = vol.get_properties().flags
    assert not flags & VolumeFlag.NTFS_NOT_SUPPORTED and flags & VolumeFlag.FAT_NOT_SUPPORTED
    assert vol.get_properties().recommended_file_system_type is FileSystemType.NTFS
    support = vol.query_file_system_format_support()
    assert [s.name for s in support] == ["NTFS", "FAT32"]
    assert int(support[0].flags) == 0x5 and int(support[1].flags) == 0
    assert support[0].default_unit_allocation_size == 4096 and 512 in support[0].allowed_unit_allocation_sizes
    assert vol.to_dict()["filesystem"] == "NTFS"


def test_real_programs_and_ntfs_rules(service: VolumeService, tmp_path: Path) -> None:
    vol = service.create_volume(256 * MiB, "NTFS")
    mp = vol.mount_path
    src = tmp_path / "src"
    src.mkdir()
    (src / "Readme.TXT").write_text("hello\n")
    (src / "sub").mkdir()
    (src / "sub" / "data.bin").write_bytes(os.urandom(300_000))
    sh('cp -a "$SRC/." "$MP/copy" && tar -C "$SRC" -cf "$MP/t.tar" . && mkdir "$MP/x" && tar -C "$MP/x" -xf "$MP/t.tar"'
       ' && diff -r "$SRC" "$MP/x" && diff -r "$SRC" "$MP/copy"', SRC=str(src), MP=mp)
    sh('cd "$MP" && git init -q repo && cd repo && git config user.email t@t && git config user.name t'
       ' && echo one > File.txt && git add . && git commit -qm one && git status --porcelain | wc -l | grep -qx 0',
       MP=mp)
    sh('dd if=/dev/urandom of="$MP/dd.bin" bs=1M count=8 status=none && cmp <(head -c 8388608 "$MP/dd.bin") '
       '"$MP/dd.bin"', MP=mp)
    # Files past 4 GiB, sparse: the image does not grow by them. (FAT32 answers EFBIG there.)
    sh('truncate -s 4294967301 "$MP/big.bin" && printf end >> "$MP/big.bin" && stat -c %s "$MP/big.bin"'
       ' | grep -qx 4294967304', MP=mp)
    assert os.stat(vol.image).st_blocks * 512 < 64 * MiB
    # Names Windows refuses are refused.
    bad = sh('touch "$MP/bad:name"', check=False, MP=mp)
    assert bad.returncode != 0 and not os.path.exists(os.path.join(mp, "bad:name"))
    assert "Invalid argument" in bad.stderr or "not permitted" in bad.stderr, bad.stderr
    vol.dismount(force=False, permanent=False)
    assert_ntfs_clean(vol.image)
    assert ntfscat(vol.image, "/copy/Readme.TXT") == b"hello\n"
    assert ntfscat(vol.image, "/copy/sub/data.bin") == (src / "sub" / "data.bin").read_bytes()
    assert "Readme.TXT" in ntfsls(vol.image, "/x")  # the case a program wrote is the case stored


def test_windows_semantics_at_the_mount(service: VolumeService) -> None:
    """Case-insensitive and case-preserving, an open file cannot be deleted or renamed, the read-only attribute."""
    vol = service.create_volume(128 * MiB, "NTFS")
    mp = vol.mount_path
    sh('mkdir "$M/Docs" && echo one > "$M/Docs/Report.TXT"', M=mp)
    assert sh('cat "$M/DOCS/report.txt"', M=mp).stdout == "one\n"
    assert sh('ls "$M/docs"', M=mp).stdout == "Report.TXT\n"  # listed as stored
    sh('echo two > "$M/docs/REPORT.txt"', M=mp)  # the same file, whatever the spelling
    assert sh('ls "$M/Docs"; cat "$M/Docs/Report.TXT"', M=mp).stdout == "Report.TXT\ntwo\n"
    assert sh('mkdir "$M/DOCS"', check=False, M=mp).returncode != 0  # exists already
    # A folder removed or renamed through another spelling is gone under its stored one at once (the kernel may
    # trust a directory's stored spelling for a second).
    sh('mkdir "$M/Tmp" && ls "$M/Tmp" && rmdir "$M/TMP" && test ! -e "$M/Tmp" && mkdir "$M/Old" && ls "$M/Old"'
       ' && mv "$M/OLD" "$M/New" && test ! -e "$M/Old" && test -d "$M/New" && rmdir "$M/new"', M=mp)
    # One file under two spellings stays one file for readers of either, cached pages included.
    coherent = sh('exec 3<"$M/Docs/Report.TXT"; head -c 3 <&3 >/dev/null; printf "changed" > "$M/DOCS/REPORT.TXT";'
                  ' cat "$M/docs/report.txt"; echo; cat "$M/Docs/Report.TXT"', M=mp)
    assert coherent.stdout == "changed\nchanged", coherent.stdout
    sh('echo two > "$M/Docs/Report.TXT"', M=mp)
    held = subprocess.Popen(["sh", "-c", f'exec 3<"{mp}/Docs/Report.TXT"; echo ready; read x'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "ready"
        r = sh('rm "$M/docs/report.txt"', check=False, M=mp)
        assert r.returncode != 0 and "busy" in r.stderr.lower(), r.stderr  # Windows: sharing violation
        r = sh('mv "$M/Docs/Report.TXT" "$M/Docs/Other.txt"', check=False, M=mp)
        assert r.returncode != 0 and "busy" in r.stderr.lower(), r.stderr
    finally:
        held.kill()
        held.wait()
    sh('chmod a-w "$M/Docs/Report.TXT"', M=mp)
    r = sh('echo three > "$M/Docs/Report.TXT"', check=False, M=mp)
    assert r.returncode != 0 and "denied" in r.stderr.lower(), r.stderr  # even for root, as on Windows
    assert sh('test -w "$M/Docs/Report.TXT" || echo read-only', M=mp).stdout == "read-only\n"
    r = sh('rm "$M/docs/REPORT.TXT"', check=False, M=mp)
    assert r.returncode != 0 and "denied" in r.stderr.lower(), r.stderr  # DeleteFile of a read-only file: denied
    # The attribute is the image's: a new mount shows it in the mode before anything has touched the file.
    vol.dismount(force=False, permanent=False)
    assert sh('stat -c %a "$M/Docs/Report.TXT"; mv "$M/Docs/Report.TXT" "$M/Docs/Moved.txt"'
              ' && mv "$M/Docs/Moved.txt" "$M/Docs/Report.TXT" && stat -c %a "$M/docs/report.txt"', M=mp).stdout \
        == "444\n444\n"  # renaming a read-only file is allowed, as on Windows
    sh('chmod u+w "$M/Docs/Report.TXT" && echo four > "$M/Docs/Report.TXT"', M=mp)
    assert sh('stat -c %a "$M/Docs/Report.TXT"', M=mp).stdout == "644\n"
    # A case-only rename stores the new spelling (rename(2); GNU mv refuses it on every case-folding file system).
    rename = "import os, sys; os.rename(sys.argv[1] + '/Docs/Report.TXT', sys.argv[1] + '/Docs/REPORT.txt')"
    subprocess.run([sys.executable, "-c", rename, mp], check=True, timeout=60)
    assert sh('ls "$M/Docs"; cat "$M/docs/report.txt"', M=mp).stdout == "REPORT.txt\nfour\n"
    sh('rm "$M/docs/report.txt"', M=mp)
    vol.dismount(force=False, permanent=False)
    assert ntfsls(vol.image, "/") == ["Docs"]
    assert_ntfs_clean(vol.image)


def test_native_semantics_are_ntfs3gs(service: VolumeService) -> None:
    """--ntfs-native: ntfs-3g answers at the mount point, with its own (Linux) rules, at its own speed."""
    vol = service.create_volume(128 * MiB, "NTFS", ntfs_native=True)
    mp = vol.mount_path
    assert any(e.mountpoint == mp and e.fstype == "fuse" for e in read_mounts())  # ntfs-3g itself
    sh('echo one > "$M/Report.TXT"', M=mp)
    assert sh('cat "$M/report.txt"', check=False, M=mp).returncode != 0  # case-sensitive
    sh('exec 3<"$M/Report.TXT"; rm "$M/Report.TXT"', M=mp)  # an open file can be deleted
    # Faults need simvol's session: refused while a file is open, armed once the volume is idle.
    held = subprocess.Popen(["sh", "-c", f'exec 3>"{mp}/held.txt"; echo ready; read x'], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "ready"
        with pytest.raises(VdsError) as e:
            vol.faults.add(op="write", errno="EIO", path="*.log")
        assert e.value.code == "VDS_E_DEVICE_IN_USE" and any(h["pid"] == held.pid for h in e.value.holders)
        assert vol.faults.list() == []
    finally:
        held.kill()
        held.wait()
    vol.faults.add(op="write", errno="EIO", path="*.log", count=1)
    assert sh('echo x > "$M/a.log"', check=False, M=mp).returncode != 0
    assert not any(e.mountpoint == mp and e.fstype == "fuse" for e in read_mounts())  # simvol's session now
    vol.faults.clear()
    with pytest.raises(VdsError):
        service.create_volume(64 * MiB, "FAT32", ntfs_native=True)
    vol.dismount(force=False, permanent=False)
    assert_ntfs_clean(vol.image)


def test_mount_folders_on_an_ntfs_volume(service: VolumeService) -> None:
    """A folder on an NTFS volume can be another volume's mount folder; QueryReparsePoints lists it."""
    host = service.create_volume(128 * MiB, "NTFS", letter="E")
    guest = service.create_volume(64 * MiB, "FAT32")
    fat = service.create_volume(64 * MiB, "FAT32", letter="F")
    service.mkdir("E:\\mnt\\data")
    assert guest.add_access_path("E:\\mnt\\data") == 0
    assert guest.query_access_paths() == ["E:\\mnt\\data\\"]
    drive = service.root.letter_path("E")
    sh('echo through > "$D/mnt/data/via-folder.txt"', D=drive)
    assert sh('cat "$G/via-folder.txt"', G=guest.mount_path).stdout == "through\n"  # it is the guest's file
    points = host.query_reparse_points()
    assert [(p.source_volume_id, p.path) for p in points] == [(guest.id, "\\mnt\\data")]
    assert guest.query_reparse_points() == [] and fat.query_reparse_points() == []
    service.mkdir("F:\\x")
    with pytest.raises(VdsError) as e:
        guest.add_access_path("F:\\x")  # FAT32 cannot hold mount folders
    assert e.value.code == "VDS_E_NOT_SUPPORTED"
    service.mkdir("E:\\self")
    with pytest.raises(VdsError) as e:
        host.add_access_path("E:\\self")
    assert e.value.code == "VDS_E_NOT_SUPPORTED"
    # The folder lives on the NTFS volume: it goes with a dismount and is back when the volume is.
    host.dismount(force=False, permanent=False)
    assert sh('cat "$D/mnt/data/via-folder.txt"', D=drive).stdout == "through\n"  # remounts on access
    assert host.state is VolumeState.MOUNTED
    guest.delete_access_path("E:\\mnt\\data", False)
    assert host.query_reparse_points() == []
    assert sh('ls -A "$D/mnt/data" | wc -l', D=drive).stdout.strip() == "0"  # an empty folder again
    host.dismount(force=False, permanent=False)
    assert_ntfs_clean(host.image)


def test_native_volume_remounts_on_access_and_locks(service: VolumeService) -> None:
    """A native volume's temporary dismount and lock go through simvol's session, keeping ntfs-3g's semantics."""
    vol = service.create_volume(64 * MiB, "NTFS", ntfs_native=True)
    mp = vol.mount_path
    sh('echo one > "$M/Keep.txt"', M=mp)
    vol.dismount(force=False, permanent=False)
    assert_ntfs_clean(vol.image)
    assert sh('cat "$M/Keep.txt"', M=mp).stdout == "one\n"  # the access mounts it again
    assert vol.state is VolumeState.MOUNTED
    assert sh('cat "$M/keep.txt"', check=False, M=mp).returncode != 0  # still ntfs-3g's rules: case-sensitive
    vol.dismount(force=False, permanent=False)
    assert_ntfs_clean(vol.image)
    fresh = service.create_volume(64 * MiB, "NTFS", ntfs_native=True)  # ntfs-3g at the mount point
    sh('echo two > "$M/f.txt"', M=fresh.mount_path)
    with fresh.lock():  # switches to simvol's session (nothing is open)
        assert sh('cat "$M/f.txt"', M=fresh.mount_path).stdout == "two\n"  # this process's child may
        assert not any(e.mountpoint == fresh.mount_path and e.fstype == "fuse" for e in read_mounts())
    fresh.dismount(force=False, permanent=False)
    assert_ntfs_clean(fresh.image)


def test_efbig_stays_fat32s(service: VolumeService) -> None:
    vol = service.create_volume(64 * MiB, "FAT32")
    r = sh('truncate -s 4294967296 "$MP/big.bin"', check=False, MP=vol.mount_path)
    assert r.returncode != 0 and "too large" in r.stderr.lower(), r.stderr


def test_temporary_dismount_remounts_on_any_access_and_permanent_stays(service: VolumeService) -> None:
    vol = service.create_volume(128 * MiB, "NTFS")
    vol.add_access_path("E:")
    drive = service.root.letter_path("E")
    sh('echo kept > "$D/kept.txt"', D=drive)
    vol.dismount(force=False, permanent=False)
    assert vol.state is VolumeState.TEMPORARILY_DISMOUNTED
    assert_ntfs_clean(vol.image)  # really dismounted: the image is closed and clean
    assert sh('cat "$D/kept.txt"', D=drive).stdout == "kept\n"  # any process's access mounts it again
    assert vol.state is VolumeState.MOUNTED
    sh('echo more >> "$D/kept.txt"', D=drive)
    vol.delete_access_path("E:", False)  # a volume with access paths cannot be dismounted permanently
    mp = vol.mount_path
    vol.dismount(force=False, permanent=True)
    assert read_metadata(vol.image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED  # kept in the image itself
    assert sh('cat "$M/kept.txt"', check=False, M=mp).returncode != 0  # P never remounts
    image = vol.image
    vol.detach()
    again = service.attach(image)
    assert again.state is VolumeState.PERMANENTLY_DISMOUNTED
    again.mount()
    assert sh('cat "$M/kept.txt"', M=again.mount_path).stdout == "kept\nmore\n"
    assert not read_metadata(image).flags & VolumeFlag.PERMANENTLY_DISMOUNTED


def test_dismount_in_use_names_holders_then_forced_cuts_them_off(service: VolumeService) -> None:
    vol = service.create_volume(128 * MiB, "NTFS")
    mp = vol.mount_path
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os,sys; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT); os.write(fd, b'A'*100);"
         " os.fsync(fd); print('ready', flush=True); sys.stdin.readline();\n"
         "try:\n os.pwrite(fd, b'B'*100, 0); print('write ok')\nexcept OSError as e: print('write', e.errno)",
         os.path.join(mp, "held.bin")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(VdsError) as e:
            vol.dismount(force=False, permanent=False)
        assert e.value.code == "VDS_E_DEVICE_IN_USE"
        assert any(h["pid"] == holder.pid for h in e.value.holders)
        assert vol.state is VolumeState.MOUNTED
        vol.dismount(force=True, permanent=False)
        out, _ = holder.communicate("\n", timeout=30)
        assert out.strip() in ("write 107", "write 5"), out  # ENOTCONN (or EIO): the stale handle is cut off
    finally:
        holder.kill()
        holder.wait()
    assert ntfscat(vol.image, "/held.bin") == b"A" * 100  # and nothing it wrote later reached the image
    assert_ntfs_clean(vol.image)


@pytest.mark.parametrize("native", [False, True])
def test_forced_dismount_cuts_off_a_handle_made_by_create_before_its_first_write(service: VolumeService,
                                                                                 native: bool) -> None:
    """A handle made by create that has not written yet is a holder (named), and after a forced dismount its first
    write fails and the file stays empty in the image."""
    vol = service.create_volume(128 * MiB, "NTFS", ntfs_native=native)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY|os.O_CREAT|os.O_EXCL, 0o644);"
         " print('ready', flush=True); sys.stdin.readline();\n"
         "try:\n os.write(fd, b'late'); os.fsync(fd); print('write ok')\nexcept OSError as e: print('write', e.errno)",
         os.path.join(vol.mount_path, "new.bin")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(VdsError) as e:
            vol.dismount(force=False, permanent=False)
        assert any(h["pid"] == holder.pid for h in e.value.holders)
        vol.dismount(force=True, permanent=False)
        out, _ = holder.communicate("\n", timeout=30)
        assert out.strip() in ("write 107", "write 5"), out
    finally:
        holder.kill()
        holder.wait()
    assert ntfscat(vol.image, "/new.bin") == b""
    assert_ntfs_clean(vol.image)


def test_created_files_written_later_through_their_handle(service: VolumeService) -> None:
    """Writes, truncates, fsyncs and reads through the handle a create made reach ntfs-3g, with O_APPEND kept; a
    create with no write bits gets the read-only attribute, its creator may still write, other writers may not."""
    vol = service.create_volume(128 * MiB, "NTFS")
    code = (
        "import os,sys\nm=sys.argv[1]\n"
        "fd=os.open(m+'/a.txt',os.O_CREAT|os.O_RDWR,0o644); os.ftruncate(fd,3); os.pwrite(fd,b'xy',1);"
        " print(os.pread(fd,3,0)); os.fsync(fd); os.close(fd)\n"
        "fd=os.open(m+'/b.log',os.O_CREAT|os.O_WRONLY|os.O_APPEND,0o644); os.write(fd,b'12'); os.write(fd,b'34');"
        " os.close(fd)\n"
        "fd=os.open(m+'/c.txt',os.O_CREAT|os.O_WRONLY,0o644); os.fsync(fd); os.close(fd)\n"
        "fd=os.open(m+'/ro.txt',os.O_CREAT|os.O_WRONLY,0o444); os.write(fd,b'ro'); os.close(fd)\n"
        "print(oct(os.stat(m+'/ro.txt').st_mode & 0o777))\n"
        "try:\n    os.open(m+'/RO.TXT',os.O_WRONLY); print('opened')\nexcept OSError as e:\n    print(e.errno)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, vol.mount_path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["b'\\x00xy'", "0o444", "13"]  # EACCES for a writer of the read-only file
    vol.dismount(force=False, permanent=False)
    assert ntfscat(vol.image, "/a.txt") == b"\0xy"
    assert ntfscat(vol.image, "/b.log") == b"1234"
    assert ntfscat(vol.image, "/c.txt") == b""
    assert ntfscat(vol.image, "/ro.txt") == b"ro"
    assert_ntfs_clean(vol.image)


def test_lock_refuses_other_processes(service: VolumeService) -> None:
    vol = service.create_volume(128 * MiB, "NTFS")
    mp = vol.mount_path
    sh('echo x > "$M/f.txt"', M=mp)
    with vol.lock():
        other = sh('cat "$M/f.txt"', check=False, M=mp)  # a child of this process: allowed
        assert other.returncode == 0
        stranger = subprocess.run(["setsid", "-f", "sh", "-c", f'cat "{mp}/f.txt" > /dev/null 2>"{mp}.err"; '
                                   f'echo $? > "{mp}.rc"'], timeout=30)
        assert stranger.returncode == 0
    # The lock is simvol's session's: the volume stays served through it, and still answers everyone.
    assert sh('cat "$M/f.txt"', M=mp).stdout == "x\n"


def test_faults_reach_ntfs_volumes(service: VolumeService) -> None:
    vol = service.create_volume(128 * MiB, "NTFS")
    mp = vol.mount_path
    vol.faults.add(op="write", errno="EIO", path="*.log", count=1)
    first = sh('echo a > "$M/app.log"', check=False, M=mp)
    assert first.returncode != 0 and "Input/output error" in first.stderr
    sh('echo b > "$M/app.log" && echo c > "$M/other.txt"', M=mp)
    assert [h["op"] for h in vol.faults.log()] == ["write"]
    vol.faults.clear()
    vol.dismount(force=False, permanent=False)
    assert ntfscat(vol.image, "/app.log") == b"b\n"
    assert_ntfs_clean(vol.image)


def test_crash_then_mount_checks_and_repairs(service: VolumeService) -> None:
    vol = service.create_volume(128 * MiB, "NTFS")
    sh('echo durable > "$M/d.txt" && sync "$M/d.txt"', M=vol.mount_path)
    vol.faults.surprise_removal()  # the daemon is SIGKILLed, as a pulled disk
    assert vol.get_properties().status.name == "FAILED"
    assert read_metadata(vol.image).extra.get("ntfs_in_use") is True  # the crash left the volume marked in use
    vol.mount()
    assert vol.state is VolumeState.MOUNTED
    assert sh('cat "$M/d.txt"', M=vol.mount_path).stdout == "durable\n"
    vol.dismount(force=False, permanent=False)
    assert not read_metadata(vol.image).extra.get("ntfs_in_use")
    assert_ntfs_clean(vol.image)


def test_format_between_file_systems_and_compression(service: VolumeService) -> None:
    vol = service.create_volume(128 * MiB, "FAT32")
    vol.format("NTFS", "NEWNTFS", 0, False, True, True)
    assert vol.get_file_system_type_name() == "NTFS"
    assert vol.get_file_system_properties().flags == FileSystemPropFlag.COMPRESSED
    vol.clear_file_system_flags(int(FileSystemPropFlag.COMPRESSED))
    assert vol.get_file_system_properties().flags == FileSystemPropFlag(0)
    vol.set_file_system_flags(int(FileSystemPropFlag.COMPRESSED))
    assert vol.get_file_system_properties().flags == FileSystemPropFlag.COMPRESSED
    sh('python3 -c "print(\'simvol\' * 200000)" > "$M/text.txt"', M=vol.mount_path)
    with pytest.raises(VdsError) as e:
        vol.format("NTFS", "X", 8192, True, True, True)  # NTFS compresses only with clusters up to 4 KiB
    assert e.value.code == "VDS_E_COMPRESSION_NOT_SUPPORTED"
    with pytest.raises(VdsError) as e:
        vol.format("FAT32", "X", 0, True, True, True)
    assert e.value.code == "VDS_E_COMPRESSION_NOT_SUPPORTED"
    vol.format("FAT32", "BACK", 0, True, True, False)
    assert vol.get_file_system_type_name() == "FAT32"
    vol.dismount(force=False, permanent=False)
    r = subprocess.run(["fsck.fat", "-n", vol.image], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_image_made_and_filled_by_ntfs3g_reads_back_through_simvol(service: VolumeService, tmp_path: Path) -> None:
    image = str(tmp_path / "plain.img")
    with open(image, "wb") as f:
        f.truncate(64 * MiB)
    sh('mkntfs -F -Q -q -L Plain "$I" >/dev/null', I=image)
    mnt = tmp_path / "direct"
    mnt.mkdir()
    payload = os.urandom(200_000)
    (tmp_path / "payload.bin").write_bytes(payload)
    sh('lowntfs-3g "$I" "$M" && mkdir "$M/Dir" && cp "$P" "$M/Dir/Payload.bin" && echo hi > "$M/a.txt"'
       ' && fusermount3 -u "$M" || umount "$M"', I=image, M=str(mnt), P=str(tmp_path / "payload.bin"))
    with pytest.raises(VdsError):
        service.attach(image)  # no trailer: only --adopt takes a plain image
    vol = service.attach(image, adopt=True)
    assert vol.get_file_system_type_name() == "NTFS" and vol.label == "Plain"
    sh('cmp "$P" "$M/Dir/Payload.bin" && test "$(cat "$M/a.txt")" = hi', P=str(tmp_path / "payload.bin"),
       M=vol.mount_path)
    vol.dismount(force=False, permanent=False)
    assert_ntfs_clean(vol.image)
    shutil.rmtree(mnt, ignore_errors=True)


def test_restart_keeps_ntfs_volumes(service: VolumeService, tmp_path: Path) -> None:
    vol = service.create_volume(128 * MiB, "NTFS", label="Keep")
    sh('echo across > "$M/r.txt"', M=vol.mount_path)
    service.down(force=False)
    again = VolumeService(service.root.path)
    try:
        again.up()
        v = again.volume(str(vol.id))
        assert v.state is VolumeState.MOUNTED and v.label == "Keep"
        assert sh('cat "$M/r.txt"', M=v.mount_path).stdout == "across\n"
    finally:
        again.close()


@pytest.mark.parametrize("native", [False, True])
def test_daemon_kill_then_mount_recovers(service: VolumeService, native: bool) -> None:
    vol = service.create_volume(128 * MiB, "NTFS", ntfs_native=native)
    sh('echo durable > "$M/d.txt" && sync "$M/d.txt"', M=vol.mount_path)
    info = service.mounter.daemon(str(vol.id).lower())  # type: ignore[attr-defined]
    assert info is not None
    os.kill(info.pid, signal.SIGKILL)
    # ntfs-3g follows its daemon (parent-death signal): it closes the volume and its own mount goes — at the mount
    # point for a native volume, in ROOT/run/inner otherwise (simvol's own session stays behind, stale, as FAT32's).
    run = os.path.join(service.root.path, "run")
    assert wait_until(lambda: not any(e.mountpoint.startswith(run) or (native and e.mountpoint == vol.mount_path)
                                      for e in read_mounts()), 10)
    vol.mount()
    assert vol.state is VolumeState.MOUNTED
    assert sh('cat "$M/d.txt"', M=vol.mount_path).stdout == "durable\n"
    vol.dismount(force=False, permanent=False)
    assert_ntfs_clean(vol.image)


@pytest.mark.parametrize("native", [False, True])
def test_ntfs3g_left_by_a_dead_daemon_is_stopped_before_the_next_mount(service: VolumeService, tmp_path: Path,
                                                                       native: bool) -> None:
    """An ntfs-3g that outlived its daemon (no parent-death signal reached it: setpriv missing, or a set-user-ID
    ntfs-3g run by a user before simvol relayed the signal) still has the volume open. The next Mount stops it —
    unmounted, so it closes the volume cleanly — before it checks or serves the image, and what it wrote is kept."""
    vol = service.create_volume(128 * MiB, "NTFS", ntfs_native=native)
    vol.dismount(force=False, permanent=True)
    orphan_dir = tmp_path / "orphan"
    orphan_dir.mkdir()
    # Started apart from simvol, as a dead daemon's server would be left: holding the image, mounted elsewhere.
    orphan = subprocess.Popen(["ntfs-3g", "-o", "no_detach", vol.image, str(orphan_dir)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(lambda: any(e.mountpoint == str(orphan_dir) for e in read_mounts()), 10)
        sh('echo "from the orphan" > "$D/o.txt" && sync "$D/o.txt"', D=str(orphan_dir))
        vol.mount()
        assert orphan.wait(10) == 0  # unmounted, not killed: it closed the volume itself
        assert not any(e.mountpoint == str(orphan_dir) for e in read_mounts())
        assert vol.state is VolumeState.MOUNTED
        assert sh('cat "$M/o.txt"', M=vol.mount_path).stdout == "from the orphan\n"
        vol.dismount(force=False, permanent=False)
        assert_ntfs_clean(vol.image)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(10)
        subprocess.run(["fusermount3", "-uz", str(orphan_dir)], capture_output=True, timeout=10)


def test_image_locked_by_another_program_is_refused_untouched(service: VolumeService) -> None:
    """A process other than ntfs-3g holding a POSIX lock on the image is not ended by simvol: Mount fails, naming
    it, and the image stays as it was."""
    vol = service.create_volume(128 * MiB, "NTFS")
    vol.dismount(force=False, permanent=True)
    before = Path(vol.image).read_bytes()[:1 << 20]
    locker = subprocess.Popen([sys.executable, "-c", "import fcntl,os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\n"
                               "fcntl.lockf(fd,fcntl.LOCK_EX)\nprint('ready',flush=True)\nsys.stdin.readline()\n",
                               vol.image], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "ready"
        with pytest.raises(VdsError) as info:
            vol.mount()
        assert f"pid {locker.pid}" in str(info.value), str(info.value)
        assert locker.poll() is None
        assert vol.state is VolumeState.PERMANENTLY_DISMOUNTED
        assert Path(vol.image).read_bytes()[:1 << 20] == before
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(10)
    vol.mount()
    assert vol.state is VolumeState.MOUNTED


@pytest.mark.parametrize("native", [False, True])
def test_server_and_daemon_killed_leave_a_dead_mount_the_next_mount_replaces(service: VolumeService,
                                                                            native: bool) -> None:
    """ntfs-3g SIGKILLed (no unmount, no volume close), then its daemon: a dead ntfs-3g mount of the image stays
    behind. The next Mount must not take it for its new server's; it repairs the image and serves it."""
    vol = service.create_volume(128 * MiB, "NTFS", ntfs_native=native)
    sh('echo durable > "$M/d.txt" && sync "$M/d.txt"', M=vol.mount_path)
    info = service.mounter.daemon(str(vol.id).lower())  # type: ignore[attr-defined]
    assert info is not None
    (server,) = ntfs3g_servers(info.pid)
    server.kill()
    assert wait_gone(server.pid, 0.0, 10)
    os.kill(info.pid, signal.SIGKILL)
    assert wait_gone(info.pid, 0.0, 10)
    assert any(e.source == vol.image for e in read_mounts())  # the dead mount
    vol.mount()
    assert vol.state is VolumeState.MOUNTED
    assert sh('cat "$M/d.txt"', M=vol.mount_path).stdout == "durable\n"
    sh('echo after > "$M/n.txt"', M=vol.mount_path)
    vol.dismount(force=False, permanent=False)
    assert not any(e.source == vol.image for e in read_mounts())
    assert_ntfs_clean(vol.image)
    assert ntfscat(vol.image, "/n.txt") == b"after\n"


def test_inner_server_crash_fails_the_volume_like_a_daemon_crash(service: VolumeService) -> None:
    """ntfs-3g behind simvol's session dies on its own: the daemon goes down as a crashed one (a holder's next read
    fails instead of the volume answering ENOTCONN for ever while it looks mounted), and Mount repairs and serves
    the volume with the synced data."""
    vol = service.create_volume(128 * MiB, "NTFS")
    sh('echo durable > "$M/d.txt" && sync "$M/d.txt"', M=vol.mount_path)
    holder = subprocess.Popen([sys.executable, "-c", "import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\n"
                               "print('ready',flush=True)\nsys.stdin.readline()\n"
                               "try:\n    os.pread(fd,4,0); print('read ok',flush=True)\n"
                               "except OSError as e:\n    print('err',e.errno,flush=True)\n",
                               os.path.join(vol.mount_path, "d.txt")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "ready"
    info = service.mounter.daemon(str(vol.id).lower())  # type: ignore[attr-defined]
    assert info is not None
    (server,) = ntfs3g_servers(info.pid)
    server.kill()
    assert wait_gone(info.pid, 0.0, 10)
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() in ("err 5", "err 107")  # EIO / ENOTCONN
    holder.wait(10)
    vol.mount()
    assert vol.state is VolumeState.MOUNTED
    assert sh('cat "$M/d.txt"', M=vol.mount_path).stdout == "durable\n"
    vol.dismount(force=False, permanent=False)
    assert_ntfs_clean(vol.image)

"""Filling a new volume from a host directory (``create --from DIR``, the plugin's ``files=``).

The tree is checked before anything is made — names the file system refuses, two names that are one on a
case-insensitive volume, links and devices, files too large, more bytes than the volume holds — so a bad tree
costs nothing. Then it is copied through the volume's mount, as any program would write it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass, field

from ..errors import HRESULTS, InvalidArgumentError, vds_error
from ..image.filesystems import FAT32, FileSystem
from .paths import shown

__all__ = ["Tree", "copy_tree", "plan_tree"]


@dataclass
class Tree:
    """A checked host tree: its folders and files (paths relative to ``top``) and its byte count."""

    top: str
    dirs: list[str] = field(default_factory=list)
    files: list[tuple[str, int]] = field(default_factory=list)
    size: int = 0


def plan_tree(top: str, volume_size: int, fs: FileSystem = FAT32) -> Tree:
    if not os.path.isdir(top):
        raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"], f"{shown(top)} is not a directory")
    tree = Tree(os.path.abspath(top))

    def fail(rel: str, why: str) -> InvalidArgumentError:
        return InvalidArgumentError(message=f"cannot fill the volume from {tree.top}: {rel}: {why}")

    def walk(rel: str) -> None:
        here = os.path.join(tree.top, rel)
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as e:
            raise fail(rel or ".", e.strerror or str(e)) from e
        seen: dict[str, str] = {}
        for entry in entries:
            sub = os.path.join(rel, entry.name)
            why = fs.name_problem(entry.name)
            if why:
                raise fail(sub, why)
            key = fs.name_key(entry.name)
            if key in seen:
                raise fail(sub, f"one name with {seen[key]!r} on a case-insensitive volume")
            seen[key] = entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                tree.dirs.append(sub)
                walk(sub)
            elif stat.S_ISREG(st.st_mode):
                if st.st_size > fs.max_file_size:
                    raise fail(sub, f"{st.st_size} bytes: {fs.name} files end at {fs.max_file_size}")
                tree.files.append((sub, st.st_size))
                tree.size += st.st_size
            else:
                raise fail(sub, "only folders and regular files can be stored (no links, devices or sockets)")

    walk("")
    if tree.size > volume_size:
        raise vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_DISK_FULL)"],
                        f"{tree.top} holds {tree.size} bytes; the volume has {volume_size}")
    return tree


def copy_tree(tree: Tree, dest: str) -> None:
    """Copy the checked tree into ``dest`` (the volume's mount), modification times included."""
    try:
        for d in tree.dirs:
            os.mkdir(os.path.join(dest, d))
        for f, _size in tree.files:
            src = os.path.join(tree.top, f)
            shutil.copyfile(src, os.path.join(dest, f))
            st = os.stat(src)
            os.utime(os.path.join(dest, f), ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError as e:
        code = "HRESULT_FROM_WIN32(ERROR_DISK_FULL)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "VDS_E_IO_ERROR"
        raise vds_error(HRESULTS[code], f"cannot fill the volume from {tree.top}: {e}") from e

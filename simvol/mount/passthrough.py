"""FUSE operations that pass every request on to a directory: simvol's session in front of a private ntfs-3g mount.

An NTFS volume is served by ntfs-3g (``ntfs3g.py``) mounted privately (``ROOT/run/inner/{guid}``), with simvol's own
FUSE session at the mount point whose operations are a :class:`PassthroughOps` over it (docs/architecture.md, "NTFS
volumes: the mechanism") — always for a volume with Windows' semantics, and for a native one while it needs the
session (the armed mount point's first access, the volume lock, faults).

It gives the daemon what :class:`~simvol.mount.ops.VolumeOps` gives it for FAT32 — the handle table (holders, stale
handles after a forced dismount, the refusal of new opens while a dismount decides). With ``windows`` (an NTFS
volume's default, docs/behaviour.md) it also keeps the Windows rules ntfs-3g does not: names are found whatever their
case and listed as stored (ntfs-3g's own ``ignore_case`` lists every name in lower case), an open file or directory
cannot be deleted or renamed (EBUSY), and a file with the read-only attribute cannot be opened for writing (EACCES;
``chmod a-w`` sets the attribute, as on FAT32). Case folding needs the stored spelling of every name on the way: the
names of each directory met are kept in memory (``_names``), loaded by one listing and kept current by this class's
own changes — nothing else writes to the private mount. Each spelling a program uses is its own kernel inode: only a
name's stored spelling is trusted for a while (its attributes, and a directory's name: ``_trust``), every other
spelling is asked again at each use, and a change through another spelling drops what the kernel holds for the
stored one (``_changed``, ``_gone``).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..fat.names import name_key
from ._fuselib import KernelNotifier, caller_pid, current_fuse, mfusepy
from .handles import HandleOwner, HandleTable
from .ops import CALLBACKS

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_NS = 1_000_000_000
ATTR_TIMEOUT = 1.0  # seconds the kernel may trust the attributes of a name's stored spelling
ATTRIB_XATTR = "system.ntfs_attrib_be"  # ntfs-3g: the file's NTFS attributes, a big-endian u32
FILE_ATTRIBUTE_READONLY = 0x1


def _err(e: int) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(e)


class _Inode:
    """What the handle table counts opens of: one object per file of the inner file system, while it is open."""

    __slots__ = ("ino",)

    def __init__(self, ino: int) -> None:
        self.ino = ino


def configure(conn: Any, config: Any) -> None:
    if config is not None:
        # Every spelling of a name must reach this class (it folds case): no name is cached (entry timeout 0).
        # File pages are kept across opens (kernel_cache): every write comes through this session. Each spelling is
        # its own kernel inode; the stored spelling's attributes are trusted for ATTR_TIMEOUT (stat_fields sets the
        # timeout per answer), another spelling's never, so the kernel fetches them at every use and drops its
        # pages when they show another modification time or size (FUSE_AUTO_INVAL_DATA, on in libfuse 3). A
        # change through another spelling drops the stored spelling's inode at once (_changed).
        config.kernel_cache = 1
        config.attr_timeout = 0.0
        config.entry_timeout = 0.0
        config.negative_timeout = 0.0
        config.use_ino = 1
    if conn is not None:
        conn.max_write = 1 << 20
        conn.max_background = 4096


def read_only_attribute(file: str | int) -> bool:
    """The NTFS read-only attribute of ``file`` (a path or an open descriptor), as ntfs-3g exposes it."""
    try:
        raw = os.getxattr(file, ATTRIB_XATTR)
    except OSError:
        return False
    return len(raw) == 4 and bool(struct.unpack(">I", raw)[0] & FILE_ATTRIBUTE_READONLY)


def set_read_only_attribute(path: str, value: bool) -> None:
    raw = os.getxattr(path, ATTRIB_XATTR)
    attrs = struct.unpack(">I", raw)[0]
    new = (attrs | FILE_ATTRIBUTE_READONLY) if value else (attrs & ~FILE_ATTRIBUTE_READONLY)
    if new != attrs:
        os.setxattr(path, ATTRIB_XATTR, struct.pack(">I", new))


class PassthroughOps(HandleOwner, mfusepy.Operations):  # type: ignore[misc]  # mfusepy ships no type information
    use_ns = True

    def __init__(self, root: str, *, readonly: bool = False, owner: tuple[int, int] | None = None,
                 windows: bool = True) -> None:
        self._root = root.rstrip("/")
        self._readonly = readonly
        self._windows = windows
        self._names: dict[str, dict[str, str]] = {}  # directory (stored spelling) → {folded name: stored name}
        self._uid, self._gid = owner if owner is not None else (os.getuid(), os.getgid())
        self._engine_lock = threading.RLock()
        self._table = HandleTable()
        self._fds: dict[int, int] = {}  # fh → descriptor on the inner mount (files only)
        self._inodes: dict[int, _Inode] = {}  # ino → its counting object, while open
        self._fuse_ptr: int | None = None
        self._config: Any = None  # libfuse's struct fuse_config: read for each reply right after stat_fields
        self._notifier: KernelNotifier | None = None
        # The file just created, whose attributes libfuse asks next: its stat and whether it is read-only.
        self._created: dict[int, tuple[os.stat_result, bool]] = {}

    # ------------------------------------------------------------ for the daemon's control thread (and HandleOwner's)

    def make_all_stale(self) -> list[str]:
        """Forced dismount: every handle fails from now on; their descriptors on the inner mount close, so nothing
        written through them later reaches the image."""
        with self._engine_lock:
            paths = self._table.file_paths()
            self._table.make_all_stale()
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._fds.clear()
            return paths

    def bind(self, fuse_ptr: int | None, config: Any) -> None:
        """Serve FUSE session ``fuse_ptr`` (at its INIT, or when an armed mount point activates)."""
        self._fuse_ptr = fuse_ptr
        self._config = config
        configure(None, config)
        if fuse_ptr and self._notifier is None:
            self._notifier = KernelNotifier(fuse_ptr)

    # ------------------------------------------------------------ helpers

    def _p(self, path: str | None) -> str:
        """The inner path of ``path`` (a path at the mount point, in any case)."""
        return self._root + self._stored(path or "/")

    def _stored(self, path: str) -> str:
        """``path`` in stored spellings, component by component; from the first name that does not exist on, the
        rest is kept as given (a create then stores the caller's spelling)."""
        return self._resolve(path)[0]

    def _resolve(self, path: str) -> tuple[str, bool]:
        """(``path`` in stored spellings, whether the listings say it is missing). Missing is known only with
        ``windows``, where every name of a directory met is in memory; a missing name needs no request to
        ntfs-3g (every create's lookup misses)."""
        if not self._windows or path == "/":
            return path, False
        parts = path.strip("/").split("/")
        out = ""
        for i, part in enumerate(parts):
            names = self._listing(out or "/")
            real = names.get(name_key(part)) if names is not None else None
            if real is None:
                return out + "/" + "/".join(parts[i:]), names is not None
            out += "/" + real
        return out, False

    def _listing(self, directory: str) -> dict[str, str] | None:
        names = self._names.get(directory)
        if names is None:
            try:
                entries = os.listdir(self._root + directory)
            except OSError:
                return None  # not a directory (or gone): the path resolves no further
            names = {}
            for n in entries:
                names.setdefault(name_key(n), n)
            self._names[directory] = names
        return names

    def _added(self, inner: str) -> None:
        """A name appeared at inner path ``inner`` (created by this class)."""
        if self._windows:
            parent, name = inner[len(self._root):].rsplit("/", 1)
            names = self._names.get(parent or "/")
            if names is not None:
                names[name_key(name)] = name

    def _removed(self, inner: str) -> None:
        if self._windows:
            path = inner[len(self._root):]
            parent, name = path.rsplit("/", 1)
            names = self._names.get(parent or "/")
            if names is not None:
                names.pop(name_key(name), None)
            for d in [d for d in self._names if d == path or d.startswith(path + "/")]:
                del self._names[d]

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except OSError as e:
            raise _err(e.errno or errno.EIO) from None

    def _guard(self) -> None:
        if self._table.all_stale:
            raise _err(errno.EIO)
        if self._table.refuse_opens:
            raise _err(errno.EBUSY)

    def _writable(self) -> None:
        if self._readonly:
            raise _err(errno.EROFS)

    def _open_ino(self, ino: int) -> bool:
        node = self._inodes.get(ino)
        return node is not None and self._table.node_is_open(node)

    def _add(self, path: str, inner: str, ino: int, is_dir: bool, writable: bool, fd: int | None,
             append: bool = False) -> int:
        """A new handle on ``path``, whose inner path (``_p(path)``, resolved by the caller) is ``inner``."""
        node = self._inodes.setdefault(ino, _Inode(ino))
        h = self._table.add(caller_pid(), path, node, is_dir, writable, append=append,  # type: ignore[arg-type]
                            alias=(inner[len(self._root):] or "/") != path)
        if fd is not None:
            self._fds[h.fh] = fd
        return h.fh

    def _drop(self, fh: int) -> None:
        h = self._table.drop(fh)
        fd = self._fds.pop(fh, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError as e:
                log.debug("close: %s", e)
        if h is not None and not self._table.node_is_open(h.node):
            self._inodes.pop(h.node.ino, None)

    def _fd(self, fh: int) -> int:
        h = self._table.get(fh)
        if h is None or h.stale or h.is_dir:
            raise _err(errno.EIO)
        fd = self._fds.get(fh)
        if fd is None:
            raise _err(errno.EIO)
        return fd

    def _fields(self, st: os.stat_result, read_only: bool = False) -> tuple[int, ...]:
        a_s, a_ns = divmod(st.st_atime_ns, _NS)
        m_s, m_ns = divmod(st.st_mtime_ns, _NS)
        c_s, c_ns = divmod(st.st_ctime_ns, _NS)
        mode = st.st_mode & ~0o7777 | (0o755 if st.st_mode & 0o40000 else 0o444 if read_only else 0o644)
        return (st.st_ino, mode, st.st_nlink, st.st_size, self._uid, self._gid, st.st_blocks, st.st_blksize,
                a_s, a_ns, m_s, m_ns, c_s, c_ns)

    def _trust(self, stored: bool, is_dir: bool = False) -> None:
        """The timeouts of the answer being made: a stored spelling's attributes are trusted for ATTR_TIMEOUT, and so
        is a directory's name under its stored spelling (a path walk then need not look it up again: a create in a
        directory was three requests instead of four); anything else is asked again at every use."""
        if self._config is not None:
            self._config.attr_timeout = ATTR_TIMEOUT if stored else 0.0
            self._config.entry_timeout = ATTR_TIMEOUT if stored and is_dir else 0.0

    def _gone(self, path: str, inner: str) -> None:
        """``inner`` (reached as ``path``) was removed or renamed. The kernel forgets the name it was reached by;
        its stored spelling, trusted for up to ATTR_TIMEOUT, loses its attributes now, so its next use asks (and
        finds nothing)."""
        stored = inner[len(self._root):] or "/"
        if self._windows and self._notifier is not None and stored != path:
            self._notifier.drop_path(stored)

    def _changed(self, path: str) -> None:
        """``path`` changed (data, size, times, attributes); through another spelling than the stored one, the
        stored spelling's inode may hold attributes for up to ATTR_TIMEOUT and pages: drop them."""
        if self._windows and self._notifier is not None:
            stored = self._stored(path)
            if stored != path:
                self._notifier.drop_path(stored)

    # ------------------------------------------------------------ callbacks

    def init_with_config(self, conn: Any, config: Any) -> None:
        configure(conn, config)
        self.bind(current_fuse(), config)

    def stat_fields(self, path: str | None, fh: int | None) -> tuple[int, ...] | int:
        with self._engine_lock:
            if fh:
                fd = self._fds.get(fh)
                if fd is not None:
                    h = self._table.get(fh)
                    self._trust(h is not None and not h.alias)
                    fresh = self._created.pop(fh, None)  # libfuse asks right after a create: it was just read
                    if fresh is not None:
                        return self._fields(*fresh)
                    st = self._call(os.fstat, fd)
                    return self._fields(st, self._windows and stat.S_ISREG(st.st_mode)
                                        and read_only_attribute(fd))
            if self._table.all_stale:
                raise _err(errno.EIO)
            stored, missing = self._resolve(path or "/")
            if missing:
                return -errno.ENOENT
            try:
                st = os.lstat(self._root + stored)
            except FileNotFoundError:
                return -errno.ENOENT
            except OSError as e:
                return -(e.errno or errno.EIO)
            self._trust(stored == (path or "/"), stat.S_ISDIR(st.st_mode))
            # The read-only attribute shows in the mode, as on FAT32: one more request to ntfs-3g per file looked up
            # (ntfs-3g does not map the attribute to the mode itself).
            return self._fields(st, self._windows and stat.S_ISREG(st.st_mode)
                                and read_only_attribute(self._root + stored))

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        fields = self.stat_fields(path, fh)
        if isinstance(fields, int):
            raise _err(-fields)
        ino, mode, nlink, size, uid, gid, blocks, blksize, a_s, a_ns, m_s, m_ns, c_s, c_ns = fields
        return {"st_ino": ino, "st_mode": mode, "st_nlink": nlink, "st_size": size, "st_uid": uid, "st_gid": gid,
                "st_blocks": blocks, "st_blksize": blksize, "st_atime": a_s * _NS + a_ns,
                "st_mtime": m_s * _NS + m_ns, "st_ctime": c_s * _NS + c_ns}

    def readlink(self, path: str) -> str:
        with self._engine_lock:
            return str(self._call(os.readlink, self._p(path)))

    def access(self, path: str, amode: int) -> int:
        with self._engine_lock:
            st = self._call(os.lstat, self._p(path))
            is_dir = bool(st.st_mode & 0o40000)
            if amode & os.X_OK and not is_dir:
                raise _err(errno.EACCES)
            if amode & os.W_OK:
                if self._readonly:
                    raise _err(errno.EROFS)
                if not is_dir and self._windows and read_only_attribute(self._p(path)):
                    raise _err(errno.EACCES)
            return 0

    def statfs(self, path: str) -> dict[str, int]:
        with self._engine_lock:
            s = self._call(os.statvfs, self._root)
            return {"f_bsize": s.f_bsize, "f_frsize": s.f_frsize, "f_blocks": s.f_blocks, "f_bfree": s.f_bfree,
                    "f_bavail": s.f_bavail, "f_files": s.f_files, "f_ffree": s.f_ffree, "f_namemax": 255}

    def opendir(self, path: str) -> int:
        with self._engine_lock:
            self._guard()
            inner = self._p(path)
            st = self._call(os.stat, inner)
            if not st.st_mode & 0o40000:
                raise _err(errno.ENOTDIR)
            return self._add(path, inner, st.st_ino, True, False, None)

    def readdir(self, path: str, fh: int) -> list[tuple[str, int, int]]:
        with self._engine_lock:
            h = self._table.get(fh)
            if h is None or h.stale:
                raise _err(errno.EIO)
            here = h.node.ino
            up = here if path == "/" else self._call(os.lstat, self._p(path.rsplit("/", 1)[0] or "/")).st_ino
            out = [(".", 0o40755, here), ("..", 0o40755, up)]
            with os.scandir(self._p(path)) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    out.append((e.name, st.st_mode, st.st_ino))
            return out

    def releasedir(self, path: str, fh: int) -> int:
        with self._engine_lock:
            self._drop(fh)
        return 0

    def open(self, path: str, flags: int) -> int:
        with self._engine_lock:
            self._guard()
            writes = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
            inner = self._p(path)
            if writes:
                self._writable()
                if self._windows and read_only_attribute(inner):
                    raise _err(errno.EACCES)  # Windows: access denied on a read-only file
            fd = self._call(os.open, inner, flags & ~(os.O_CREAT | os.O_EXCL) | os.O_CLOEXEC)
            return self._add(path, inner, os.fstat(fd).st_ino, False, writes, fd, bool(flags & os.O_APPEND))

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            access = flags & os.O_ACCMODE
            inner = self._p(path)
            fd = self._call(os.open, inner, os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                            | (os.O_RDWR if access == os.O_RDWR else os.O_WRONLY) | (flags & os.O_APPEND), 0o644)
            self._added(inner)
            st = os.fstat(fd)
            read_only = not mode & 0o222 and self._windows
            if read_only:
                set_read_only_attribute(inner, True)
            fh = self._add(path, inner, st.st_ino, False, True, fd, bool(flags & os.O_APPEND))
            self._created = {fh: (st, read_only)}
            return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._engine_lock:
            return self._call(os.pread, self._fd(fh), size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int, from_cache: bool = False) -> int:
        with self._engine_lock:
            self._writable()
            fd = self._fd(fh)
            h = self._table.get(fh)
            if h is not None and h.alias:
                self._changed(h.path)
            if h is not None and h.append and not from_cache:
                return self._call(os.write, fd, data)  # the inner descriptor is O_APPEND itself
            return self._call(os.pwrite, fd, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._engine_lock:
            self._writable()
            h = self._table.get(fh) if fh else None
            if h is not None:
                if not h.writable:
                    raise _err(errno.EBADF)
                self._call(os.ftruncate, self._fd(h.fh), length)
                if h.alias:
                    self._changed(h.path)
                return 0
            self._guard()
            inner = self._p(path)
            if self._windows and read_only_attribute(inner):
                raise _err(errno.EACCES)
            self._call(os.truncate, inner, length)
            self._changed(path)
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._engine_lock:
            self._call(os.fsync, self._fd(fh))
            return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        with self._engine_lock:
            h = self._table.get(fh)
            if h is None or h.stale:
                raise _err(errno.EIO)
            return 0  # ntfs-3g writes directory changes through at once

    def release(self, path: str, fh: int) -> int:
        with self._engine_lock:
            self._drop(fh)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            inner = self._p(path)
            self._call(os.mkdir, inner, 0o755)
            self._added(inner)
            return 0

    def _refuse_open(self, path: str) -> None:
        if not self._windows:
            return  # ntfs-3g's own rule: an open file can be deleted
        try:
            st = os.lstat(self._p(path))
        except OSError:
            return
        if self._open_ino(st.st_ino):
            raise _err(errno.EBUSY)  # Windows sharing violation: an open file or directory stays

    def rmdir(self, path: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            self._refuse_open(path)
            inner = self._p(path)
            self._call(os.rmdir, inner)
            self._removed(inner)
            self._gone(path, inner)
            return 0

    def unlink(self, path: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            self._refuse_open(path)
            inner = self._p(path)
            if self._windows and read_only_attribute(inner):
                raise _err(errno.EACCES)  # Windows: DeleteFile of a read-only file is denied
            self._call(os.unlink, inner)
            self._removed(inner)
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            self._refuse_open(old)
            src, dst = self._p(old), self._p(new)
            if dst == src and old != new and self._windows:
                # The same name in another case: a case-only rename, which stores the new spelling.
                dst = src.rsplit("/", 1)[0] + "/" + new.rsplit("/", 1)[1]
            if name_key(dst) != name_key(src):
                self._refuse_open(new)
            self._call(os.rename, src, dst)
            self._gone(old, src)
            self._removed(src)
            self._removed(dst)
            self._added(dst)
            return 0

    def chmod(self, path: str, mode: int) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            inner = self._p(path)
            st = self._call(os.lstat, inner)
            if not st.st_mode & 0o40000:
                self._call(set_read_only_attribute, inner, not mode & 0o222)
                self._changed(path)
            return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        if uid not in (-1, self._uid) or gid not in (-1, self._gid):
            raise _err(errno.EPERM)
        with self._engine_lock:
            self._call(os.lstat, self._p(path))
        return 0

    def utimens(self, path: str, times: tuple[int | None, int | None] | None = None) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            if times is None:
                self._call(os.utime, self._p(path), None)
            else:
                st = self._call(os.lstat, self._p(path))
                a = times[0] if times[0] is not None else st.st_atime_ns
                m = times[1] if times[1] is not None else st.st_mtime_ns
                try:
                    os.utime(self._p(path), ns=(a, m), follow_symlinks=False)
                except OSError as e:
                    raise _err(e.errno or errno.EIO) from None
            self._changed(path)
            return 0

    def symlink(self, target: str, source: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            inner = self._p(target)
            self._call(os.symlink, source, inner)
            self._added(inner)
            return 0

    def link(self, target: str, source: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            inner = self._p(target)
            self._call(os.link, self._p(source), inner)
            self._added(inner)
            return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise _err(errno.EPERM)

    def destroy(self, path: str) -> None:
        log.debug("destroy (passthrough)")
        if self._notifier is not None:
            self._notifier.close()  # before libfuse frees the session it writes to
            self._notifier = None


_missing = set(CALLBACKS) - {n for n in dir(PassthroughOps) if not n.startswith("_")}
assert not _missing, f"PassthroughOps lacks callbacks {_missing}"

__all__ = ["PassthroughOps", "read_only_attribute", "set_read_only_attribute"]

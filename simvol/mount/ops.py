"""FUSE operations over the FAT engine, with the handle table (``handles.py``) that makes in-use detection possible.

mfusepy registers every attribute whose name is a ``fuse_operations`` field as a callback, so all state here is
underscore-prefixed and the public methods for the daemon's control thread have names no FUSE operation has
(``engine_lock``, ``handles``, ``handle_count``, ``set_refuse_opens``, ``make_all_stale``, ``fuse_ptr``; FastFUSE calls
``stat_fields``). The FUSE loop is single-threaded; the control thread takes ``engine_lock`` before touching the engine
or the handle table.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import FsOpError
from ..fat import ATTR_READ_ONLY, FatFileSystem, Node
from ._fuselib import (
    FUSE_CREATE,
    FUSE_GETATTR,
    FUSE_LOOKUP,
    FUSE_MKDIR,
    KernelNotifier,
    caller_pid,
    current_fuse,
    inode_notifier,
    invalidate_path,
    mfusepy,
    request_header,
    request_nodeid,
)
from .handles import Handle, HandleOwner, HandleTable
from .spellings import KernelInodes

log = logging.getLogger(__name__)


_NS = 1_000_000_000
_TIMEOUT = 1.0  # seconds the kernel may trust an entry or attributes it was given (stored spellings)
_NAMES_PARENT = frozenset({FUSE_LOOKUP, FUSE_CREATE, FUSE_MKDIR})  # requests whose node id is the directory
_MAX_BACKGROUND = 4096
_T = TypeVar("_T")


def _err(e: int) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(e)


def configure(conn: Any, config: Any) -> None:
    """The session's settings, made at its INIT (``init_with_config``) by whatever answers at the mount point first."""
    if config is not None:
        config.kernel_cache = 1  # the daemon is the image's only writer (docs/fuse-notes.md §2.2)
        config.attr_timeout = _TIMEOUT
        config.entry_timeout = _TIMEOUT
        config.negative_timeout = 0.0  # case-insensitive names: never cache a miss
        # st_ino comes from the engine (Node.ino), not from libfuse's per-name node ids: libfuse numbers each
        # (directory, name) it sees, so "a.txt" and "A.TXT" got two numbers and cp, shutil.move and tar
        # could not see that both name one file (cp truncated it; docs/behaviour.md, "One file, one inode").
        config.use_ino = 1
    if conn is not None:
        conn.max_write = 1 << 20
        # The kernel sends RELEASE (the last close of a file) as a background request and holds it back
        # while max_background (default 12) background requests are in flight; a synchronous UNLINK issued
        # after close() returned could then overtake it and find the file still open (EBUSY under
        # concurrent close load). With room for all of them, RELEASE is queued before close() returns,
        # and this loop serves requests in order. Unprivileged mounts are capped at the kernel's
        # max_user_bgreq (a module parameter, several thousand by default).
        conn.max_background = _MAX_BACKGROUND


class VolumeOps(HandleOwner, mfusepy.Operations):  # type: ignore[misc]  # mfusepy ships no type information
    use_ns = True

    def __init__(self, fs: FatFileSystem, mountpoint: str, *, readonly: bool = False,
                 owner: tuple[int, int] | None = None) -> None:
        self._fs = fs
        self._mountpoint = mountpoint
        self._readonly = readonly
        self._engine_lock = threading.RLock()
        self._table = HandleTable()
        # Who the files belong to: the daemon's user, or the user it serves them to (--owner).
        self._uid, self._gid = owner if owner is not None else (os.getuid(), os.getgid())
        self._fuse_ptr: int | None = None
        self._cluster_size = fs.statfs().cluster_size
        # Each spelling of a name is its own kernel inode with its own cache (spellings.py); outside a FUSE loop
        # (unit tests) no request has a node id and nothing is notified.
        self._kinodes = KernelInodes()
        self._request_nodeid: Callable[[], int] = lambda: 0
        self._request_header: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self._notifier: KernelNotifier | None = None
        self._dir_paths: dict[int, str] = {}  # directory's ino → its path in stored spellings ("" for the root)
        self._dir_nodeids: dict[int, int] = {1: 1}  # directory's ino → the kernel inode of its stored spelling
        # libfuse's own struct fuse_config: it reads the entry and attribute timeouts for each reply right after
        # asking for the attributes, so stat_fields can give an answer about another spelling timeouts of 0.
        self._config: Any = None
        self._timeouts_zero = False

    # ------------------------------------------------------------ handle table (used by the control thread)
    # engine_lock, fuse_ptr, handles, handle_path, open_file_paths, handle_count, set_refuse_opens: HandleOwner's.

    def make_all_stale(self) -> list[str]:
        """Forced dismount: every existing handle fails from now on; nothing more reaches the image. Returns the
        paths of the files that were open (their cached pages must be dropped too)."""
        with self._engine_lock:
            self._table.make_all_stale()
            return self._table.file_paths()

    def _new_handle(self, path: str, node: Node, is_dir: bool, writable: bool, nodeid: int = 0,
                    append: bool = False) -> Handle:
        if self._table.refuse_opens:
            raise _err(errno.EBUSY)
        alias = not is_dir and self._stored_path(node) != path
        h = self._table.add(caller_pid(), path, node, is_dir, writable, nodeid=nodeid, append=append, alias=alias)
        if nodeid:
            self._kinodes.opened(node.ino, nodeid)
        return h

    def _learn_nodeid(self, h: Handle) -> int:
        """The kernel inode of a handle whose open did not show it (CREATE names the parent directory)."""
        if not h.nodeid:
            nodeid = self._request_nodeid()
            if nodeid:
                h.nodeid = nodeid
                self._kinodes.opened(h.node.ino, nodeid)
        return h.nodeid

    def _drop_handle(self, fh: int) -> None:
        h = self._table.drop(fh)
        if h is not None and h.nodeid:
            self._kinodes.closed(h.nodeid)

    def _handle(self, fh: int | None) -> Handle | None:
        if fh is None or fh == 0:
            return None
        h = self._table.get(fh)
        if h is None or h.stale:
            raise _err(errno.EIO)
        return h

    def _is_open(self, node: Node) -> bool:
        """An open file (for unlink and rename); an open directory may be renamed, as on Windows."""
        if node.is_dir:
            return False
        return self._table.node_is_open(node)

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except FsOpError as e:
            raise _err(e.errno or errno.EIO) from None

    def _writable(self) -> None:
        if self._readonly:
            raise _err(errno.EROFS)

    # ------------------------------------------------------------ libfuse callbacks

    def init_with_config(self, conn: Any, config: Any) -> None:
        configure(conn, config)
        self.bind(current_fuse(), config)

    def bind(self, fuse_ptr: int | None, config: Any) -> None:
        """Serve the FUSE session ``fuse_ptr`` whose ``struct fuse_config`` is ``config``: at its INIT, or later when
        an armed mount point activates (``armed.py``; any thread may call this then)."""
        self._fuse_ptr = fuse_ptr
        self._config = config
        if self._fuse_ptr:
            self._kinodes.notify = inode_notifier(self._fuse_ptr)
            self._request_nodeid = request_nodeid
            self._request_header = request_header
            self._notifier = KernelNotifier(self._fuse_ptr)
        if config is not None:
            self._set_timeouts(_TIMEOUT)

    def stat_fields(self, path: str | None, fh: int | None) -> tuple[int, ...] | int:
        """For FastFUSE: (ino, mode, nlink, size, uid, gid, blocks, blksize, atime s, ns, mtime s, ns, ctime s, ns),
        or -ENOENT for a missing entry (answered without an exception: every create's lookup misses)."""
        with self._engine_lock:
            node = None
            if fh:
                h = self._handle(fh)
                if h is not None:
                    node = h.node
            if node is None:
                if self._table.all_stale:
                    raise _err(errno.EIO)
                node = self._call(self._fs.find, path or "/")
                if node is None:
                    return -errno.ENOENT
                if path and self._stored_path(node) != path:
                    self._other_spelling(node)
                else:
                    if self._timeouts_zero:
                        self._set_timeouts(_TIMEOUT)
                    if node.parent is not None:
                        self._note_dir_nodeid(node.parent)
            st = self._fs.stat_node(node)
            size = st.size
            a_s, a_ns = divmod(st.atime_ns, _NS)
            m_s, m_ns = divmod(st.mtime_ns, _NS)  # FAT has no change time: ctime is the modification time
            # st_blocks counts whole clusters: a FAT file holds ceil(size / cluster) of them (FAT has no holes
            # and simvol allocates none beyond the size), so du reports what the file takes on the volume.
            cs = self._cluster_size
            return (st.ino, st.mode, 2 if st.is_dir else 1, size, self._uid, self._gid,
                    (size + cs - 1) // cs * (cs >> 9), 1 << 17, a_s, a_ns, m_s, m_ns, m_s, m_ns)

    def _stored_dir(self, d: Node) -> str:
        """``d``'s path in stored spellings ("" for the root), cached until a directory is renamed or removed."""
        p = self._dir_paths.get(d.ino)
        if p is None:
            parts = []
            n: Node | None = d
            while n is not None and n.parent is not None:
                parts.append(n.name)
                n = n.parent
            p = "/" + "/".join(reversed(parts)) if parts else ""
            self._dir_paths[d.ino] = p
        return p

    def _set_timeouts(self, seconds: float) -> None:
        if self._config is not None:
            self._config.entry_timeout = self._config.attr_timeout = seconds
            self._timeouts_zero = seconds == 0

    def _other_spelling(self, node: Node) -> None:
        """The path being answered names ``node`` with other spellings than the stored ones (case, or an 8.3
        alias, of the name or of a directory above it). The kernel keeps a separate entry and inode for it
        (spellings.py); this answer tells it to keep neither the entry nor the attributes, so the next use of
        that spelling asks again and sees the file as it is then — its size, its times, whether it still exists.
        (A directory's entry stays in place while a shell sits in it: only its validity runs out.)"""
        if not self._timeouts_zero:
            self._set_timeouts(0.0)
        opcode, nodeid = self._request_header()
        if opcode == FUSE_GETATTR and not node.is_dir:
            self._kinodes.seen(node.ino, nodeid)

    def _note_dir_nodeid(self, d: Node) -> None:
        """Learn the kernel inode of directory ``d``'s stored spelling: a LOOKUP or CREATE under a stored path
        names it (a node id can change when the kernel forgets the directory, so it is read every time)."""
        opcode, nodeid = self._request_header()
        if opcode in _NAMES_PARENT and nodeid:
            self._dir_nodeids[d.ino] = nodeid

    def _stored_entry(self, node: Node) -> tuple[str, int, str]:
        """(stored path, parent's ino, stored name) of ``node``: taken before an unlink or rename."""
        parent = node.parent
        return self._stored_path(node), parent.ino if parent is not None else 0, node.name

    def _forget_spellings(self, node: Node, path: str, before: tuple[str, int, str]) -> None:
        """``node`` was deleted or renamed through ``path``; ``before`` is its stored entry until then. What
        the kernel caches under the node's other spellings is stale: entries under other spellings ask again
        at their next use (timeouts of 0), the entry under the stored spelling is dropped here — it is cached
        for the entry timeout and would keep the name alive (open(O_CREAT) would fail with ENOENT)."""
        if node.is_dir:
            self._dir_paths.clear()  # every path below it changed
            self._dir_nodeids.pop(node.ino, None)
        else:
            self._kinodes.gone(node.ino)
        stored_path, parent_ino, stored_name = before
        if self._notifier is not None and path != stored_path:
            parent_nodeid = self._dir_nodeids.get(parent_ino)
            if parent_nodeid:
                self._notifier.drop_entry(parent_nodeid, stored_name)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        """mfusepy's dict form of ``stat_fields`` (mfusepy registers the getattr callback by this name; FastFUSE
        answers it from ``stat_fields`` directly)."""
        fields = self.stat_fields(path, fh)
        if isinstance(fields, int):
            raise _err(-fields)
        ino, mode, nlink, size, uid, gid, blocks, blksize, a_s, a_ns, m_s, m_ns, c_s, c_ns = fields
        return {
            "st_ino": ino, "st_mode": mode, "st_nlink": nlink, "st_size": size, "st_uid": uid, "st_gid": gid,
            "st_blocks": blocks, "st_blksize": blksize,
            "st_atime": a_s * _NS + a_ns, "st_mtime": m_s * _NS + m_ns, "st_ctime": c_s * _NS + c_ns,
        }

    def access(self, path: str, amode: int) -> int:
        # Must agree with the modes getattr reports and with what execve does: files are 0644 (0444 when
        # read-only) and never executable, directories 0755 and always searchable.
        with self._engine_lock:
            node = self._call(self._fs.resolve, path)
            if amode & os.X_OK and not node.is_dir:
                raise _err(errno.EACCES)
            if amode & os.W_OK and (self._readonly or (node.attr & ATTR_READ_ONLY and not node.is_dir)):
                raise _err(errno.EACCES if not self._readonly else errno.EROFS)
            return 0

    def statfs(self, path: str) -> dict[str, int]:
        with self._engine_lock:
            s = self._fs.statfs()
            return {
                "f_bsize": s.cluster_size,
                "f_frsize": s.cluster_size,
                "f_blocks": s.total_clusters,
                "f_bfree": s.free_clusters,
                "f_bavail": s.free_clusters,
                "f_files": 0,
                "f_ffree": 0,
                "f_namemax": 255,
            }

    def opendir(self, path: str) -> int:
        with self._engine_lock:
            node = self._call(self._fs.resolve, path)
            if not node.is_dir:
                raise _err(errno.ENOTDIR)
            return self._new_handle(path, node, True, False).fh

    def readdir(self, path: str, fh: int) -> list[tuple[str, int, int]]:
        """(name, st_mode, st_ino) of ".", ".." and every entry."""
        with self._engine_lock:
            h = self._handle(fh)
            entries = self._call(self._fs.scandir_modes, path)
            here = h.node.ino if h is not None else 0
            up = h.node.parent.ino if h is not None and h.node.parent is not None else here
        # A damaged entry whose name holds "/" or NUL cannot be passed to the kernel: it fails the whole listing
        # with EIO, hiding every other entry of the directory. Leave it out; check(repair=True) renames it.
        bad = [e[0] for e in entries if "/" in e[0] or "\0" in e[0]]
        if bad:
            log.warning("%s: left out of the listing, names no path can hold: %r", path, bad[:5])
            entries = [e for e in entries if "/" not in e[0] and "\0" not in e[0]]
        return [(".", 0o40755, here), ("..", 0o40755, up), *entries]

    def releasedir(self, path: str, fh: int) -> int:
        with self._engine_lock:
            self._drop_handle(fh)
        return 0

    def open(self, path: str, flags: int) -> int:
        with self._engine_lock:
            node = self._call(self._fs.open, path)
            wants_write = (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC
            if wants_write:
                self._writable()
                if node.attr & ATTR_READ_ONLY:
                    raise _err(errno.EACCES)  # Windows: access denied on a read-only file
            nodeid = self._request_nodeid()
            h = self._new_handle(path, node, False, bool(wants_write), nodeid, bool(flags & os.O_APPEND))
            if flags & os.O_TRUNC and node.size:
                try:
                    self._call(self._fs.truncate_node, node, 0)
                except BaseException:
                    self._drop_handle(h.fh)
                    raise
                self._changed(node, nodeid, h.alias)
            return h.fh

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self._engine_lock:
            self._writable()
            if self._table.refuse_opens:
                raise _err(errno.EBUSY)
            attr = 0 if mode & 0o222 else ATTR_READ_ONLY
            node = self._call(self._fs.create, path, attr)
            return self._new_handle(path, node, False, True, append=bool(flags & os.O_APPEND)).fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._engine_lock:
            h = self._handle(fh)
            if h is None or h.is_dir:
                # Every READ carries the fh that open/create returned; falling back to the path would hide a
                # broken fh round trip (docs/fuse-notes.md §1) and bypass the stale check of a forced dismount.
                raise _err(errno.EIO)
            if not h.nodeid:
                self._learn_nodeid(h)  # the pages this read fills belong to that kernel inode
            return self._call(self._fs.read_node, h.node, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int, from_cache: bool = False) -> int:
        """``from_cache``: the kernel writes back pages of a mapping (FUSE_WRITE_CACHE) — at their offset even
        through an O_APPEND handle."""
        with self._engine_lock:
            self._writable()
            h = self._handle(fh)
            if h is None or h.is_dir:
                raise _err(errno.EIO)  # as in read: only the handle open/create returned may write
            if h.append and not from_cache:
                # The kernel puts an O_APPEND write at the end of the file as its inode knows it; an inode of
                # another spelling can lag behind writes made through this one (spellings.py).
                offset = h.node.size
            n = self._call(self._fs.write_node, h.node, data, offset)
            self._changed(h.node, h.nodeid or self._learn_nodeid(h), h.alias)
            return n

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        """With ``fh`` (ftruncate, or truncate of an open file) the handle's access mode decides, as on
        Windows: a file opened for writing may be resized even if it is read-only by now or was created so."""
        with self._engine_lock:
            self._writable()
            h = self._handle(fh) if fh else None
            if h is not None and not h.is_dir:
                if not h.writable:
                    raise _err(errno.EBADF)
                node = h.node
                nodeid = h.nodeid or self._learn_nodeid(h)
                alias = h.alias
            else:
                if self._table.all_stale:
                    raise _err(errno.EIO)
                node = self._call(self._fs.open, path)
                if node.attr & ATTR_READ_ONLY:
                    raise _err(errno.EACCES)
                nodeid = self._request_nodeid()  # SETATTR names the inode
                alias = self._stored_path(node) != path
            self._call(self._fs.truncate_node, node, length)
            self._changed(node, nodeid, alias)
            return 0

    # No flush callback on purpose: the kernel sends FLUSH on every close(2) until the file system answers
    # ENOSYS once. Directory entries are written at release (and at fsync), so FLUSH would only cost a
    # request per close — a fifth of a create's round trips.

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._engine_lock:
            self._handle(fh)
            self._call(self._fs.sync)
            return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        # fsync(2) on a directory (after a rename or a create, the usual way to make it durable). Without this
        # callback libfuse answers ENOSYS and the kernel turns that into success: the caller was told "durable"
        # while directory entries, FAT and pending sizes could still sit in the daemon's memory.
        with self._engine_lock:
            self._handle(fh)
            self._call(self._fs.sync)
            return 0

    def release(self, path: str, fh: int) -> int:
        with self._engine_lock:
            h = self._table.get(fh)
            if h is not None and h.writable and not h.stale:
                try:
                    self._fs.flush()
                except OSError as e:  # FsOpError, and the host's own ENOSPC/EIO: the handle must go regardless
                    log.warning("flush at release of %s failed: %s", path, e)
            self._drop_handle(fh)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            self._call(self._fs.mkdir, path)
            return 0

    def rmdir(self, path: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            node = self._call(self._fs.resolve, path)
            if node.is_dir and self._table.node_is_open(node):
                raise _err(errno.EBUSY)  # Windows: a directory open elsewhere cannot be removed
            before = self._stored_entry(node)
            self._call(self._fs.rmdir, path)
            self._forget_spellings(node, path, before)
            return 0

    def unlink(self, path: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            node = self._call(self._fs.resolve, path)
            if self._is_open(node):
                raise _err(errno.EBUSY)  # Windows sharing violation: an open file cannot be deleted
            before = self._stored_entry(node)
            self._call(self._fs.unlink, path)
            self._forget_spellings(node, path, before)
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            src = self._call(self._fs.resolve, old)
            if self._is_open(src):
                raise _err(errno.EBUSY)
            try:
                dst = self._fs.resolve(new)
            except FsOpError:
                dst = None
            if dst is not None and dst is not src and self._is_open(dst):
                raise _err(errno.EBUSY)
            before = self._stored_entry(src)
            replaced = dst if dst is not None and dst is not src else None
            before_replaced = self._stored_entry(replaced) if replaced is not None else None
            self._call(self._fs.rename, old, new)
            self._forget_spellings(src, old, before)
            if replaced is not None and before_replaced is not None:
                self._forget_spellings(replaced, new, before_replaced)
            return 0

    def chmod(self, path: str, mode: int) -> int:
        with self._engine_lock:
            self._writable()
            self._guard()
            attrs = self._call(self._fs.get_attributes, path)
            attrs = (attrs & ~ATTR_READ_ONLY) if mode & 0o222 else (attrs | ATTR_READ_ONLY)
            self._call(self._fs.set_attributes, path, attrs)
            self._changed_by_path(path)
            return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        # FAT has no owners: like the kernel's vfat, a chown that changes nothing succeeds (tar and cp -a as
        # root chown every file they extract), any real change is refused.
        if uid not in (-1, self._uid) or gid not in (-1, self._gid):
            raise _err(errno.EPERM)
        with self._engine_lock:
            self._call(self._fs.resolve, path)
        return 0

    def utimens(self, path: str, times: tuple[int | None, int | None] | None = None) -> int:
        """``times`` is (atime, mtime) in ns; None for one of them leaves it unchanged (UTIME_OMIT), and None
        for both sets both to now. FastFUSE turns libfuse's UTIME_NOW into the current time."""
        with self._engine_lock:
            self._writable()
            self._guard()
            if times is None:
                now = time.time_ns()
                times = (now, now)
            self._call(self._fs.utimens, path, times[0], times[1])
            self._changed_by_path(path)
            return 0

    def _changed_by_path(self, path: str) -> None:
        """After a SETATTR by path (chmod, utimens): the other spellings' cached attributes are stale."""
        node = self._fs.find(path)
        if node is not None and not node.is_dir:
            self._changed(node, self._request_nodeid(), self._stored_path(node) != path)

    def _changed(self, node: Node, nodeid: int, alias: bool) -> None:
        """``node`` changed through kernel inode ``nodeid``; ``alias``: that inode stands for other spellings than
        the stored ones."""
        self._kinodes.changed(node.ino, nodeid)
        if alias:
            self._refresh_stored(node)

    def _stored_path(self, node: Node) -> str:
        parent = node.parent
        return "/" if parent is None else self._stored_dir(parent) + "/" + node.name

    def _refresh_stored(self, node: Node) -> None:
        """A change through another spelling: the kernel inode of the stored spelling may hold attributes and
        pages from its lookup (the table knows only inodes that were opened, read or written). libfuse finds
        that inode by its path; it is dropped whole unless it is open — then the table has it already."""
        if self._fuse_ptr is None or self._notifier is None:
            return
        stored = self._stored_path(node)
        open_there = [h for h in self._table.of_node(node) if h.path == stored]
        if not open_there:
            invalidate_path(self._fuse_ptr, stored)  # -ENOENT when the kernel has no inode for it
        elif not any(h.nodeid for h in open_there):
            # Open, but the table does not know the inode yet (a CREATE names the directory): its pages may
            # only be dropped off this thread.
            self._notifier.drop_path(stored)

    # FAT has no links, device nodes, FIFOs or sockets. EPERM is what Linux file systems without them answer
    # (vfat: "Operation not permitted"); without these callbacks libfuse answers ENOSYS, which rsync, tar and
    # stress-ng report as a broken tool rather than an unsupported object.

    def symlink(self, target: str, source: str) -> int:
        raise _err(errno.EPERM)

    def readlink(self, path: str) -> str:
        # Nothing on FAT32 is a link. Registered all the same: a session that starts with these callbacks may be
        # served later by operations that have links (an NTFS volume behind passthrough.py).
        raise _err(errno.EINVAL)

    def link(self, target: str, source: str) -> int:
        raise _err(errno.EPERM)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise _err(errno.EPERM)

    def _guard(self) -> None:
        if self._table.all_stale:
            raise _err(errno.EIO)
        if self._table.refuse_opens:  # a dismount is in progress
            raise _err(errno.EBUSY)

    def destroy(self, path: str) -> None:
        log.debug("destroy")
        if self._notifier is not None:
            self._notifier.close()  # before libfuse frees the session it writes to
            self._notifier = None


def _callback_names() -> tuple[str, ...]:
    """The callbacks VolumeOps implements, by the names mfusepy looks them up under (``getattr``, ``open``, …).

    libfuse registers a session's callbacks once, from the operations object the session starts with; an object
    that replaces VolumeOps during a session (or stands in before it, armed.py, locked.py) must answer all of them.
    """
    names = []
    for field in mfusepy.fuse_operations._fields_:
        name = field[0]
        name = name[1:] if name in ("ftruncate", "fgetattr") else name
        value = getattr(VolumeOps, name, None)
        if value is not None and not getattr(value, "libfuse_ignore", False):
            names.append(name)
    return tuple(dict.fromkeys(names))


CALLBACKS = _callback_names()


def forwarder(name: str, guard: Callable[[Any, tuple[Any, ...]], None] | None = None) -> Callable[..., Any]:
    """Callback ``name`` of an object that wraps a session's operations (``self.inner``): ``guard(self, args)``
    first (it raises to refuse the call), then the wrapped operations' own ``name`` (locked.py, faulting.py)."""

    def forward(self: Any, *args: Any) -> Any:
        if guard is not None:
            guard(self, args)
        return getattr(self.inner, name)(*args)

    forward.__name__ = name
    return forward

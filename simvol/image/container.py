"""Image files: create one (sparse), open one under its lock, read and rewrite its metadata.

An image is a single file: the FAT32 region from byte 0 (so ``fsck.fat`` and mtools read it as it is)
followed by the ``TRAILER_SIZE``-byte metadata trailer. This module owns everything about the file
as a file — descriptors, locks, fsync, host errors — and hands the FAT engine a raw descriptor
(:attr:`Image.fd`) to ``pread``/``pwrite`` the region ``[0, fs_size)`` on. It never interprets that
region.

Safety rules it keeps:

* never follow a symlink planted at an image path (``O_NOFOLLOW``; ``O_EXCL`` on create);
* never open a device or FIFO (checked before opening, re-checked on the descriptor);
* a writer holds an exclusive ``flock`` for as long as the image is open (see ``locking.py``);
* a failed open changes nothing in the file, and a failed create leaves nothing behind;
* metadata updates go through the two-slot protocol of ``trailer.py`` and are fsynced before
  returning, so a crash at any point leaves the previous or the new metadata, never neither.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
import uuid
import warnings
from types import TracebackType

from ..errors import (
    ImageAccessError,
    ImageError,
    ImageFormatError,
    ImageInUseError,
    ImageSizeError,
)
from .locking import lock_holder, try_lock
from .metadata import PERSISTENT_FLAGS, ImageMetadata, now_iso
from .trailer import MAGIC, SLOT_SIZE, TRAILER_SIZE, encode_slot, select_slot

log = logging.getLogger(__name__)

#: Granularity of the file-system region (one sector).
SECTOR = 512
#: Largest file-system region simvol creates: FAT32's limit with 512-byte sectors (2 TiB).
MAX_FS_SIZE = 2**41
#: The smallest file that can be an image: one sector plus the trailer.
MIN_IMAGE_SIZE = TRAILER_SIZE + SECTOR

_HOST_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

#: How long a busy image lock is retried before "in use": covers a forked child that still holds a
#: copy of the descriptor until its exec (see Image._from_fd).
LOCK_GRACE = 0.25

PathArg = str | os.PathLike[str]


# --------------------------------------------------------------------------- low-level helpers


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # pragma: no cover - a regular file never returns 0 for a non-empty write
            raise OSError(errno.EIO, "short write")
        view = view[n:]
        offset += n


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _fsync_dir(path: str) -> None:
    """fsync a directory so a new entry in it survives a crash; ignored where unsupported."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
        log.debug("fsync of directory %s not supported: %s", path, exc)
    finally:
        os.close(fd)


def _host_full_message(exc: OSError, what: str) -> str:
    kind = {
        errno.ENOSPC: "the host file system is full",
        errno.EDQUOT: "the disk quota on the host is exhausted",
        errno.EFBIG: "the host file system cannot hold a file this large",
    }.get(exc.errno or 0, os.strerror(exc.errno or errno.EIO))
    return f"{what}: {kind} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"


def _open_error(exc: OSError, path: str, writable: bool) -> ImageAccessError:
    """Turn an OSError from opening an existing image into an ImageAccessError with a clear message."""
    code = exc.errno
    if code == errno.ENOENT:
        msg = "no such image file"
    elif code == errno.ENOTDIR:
        msg = "a component of the image path is not a directory"
    elif code == errno.ELOOP:
        msg = "image path is a symbolic link, which simvol does not follow; use the target's path"
    elif code == errno.EISDIR:
        msg = "not a regular file (a directory)"
    elif code == errno.EROFS and writable:
        msg = "image is on a read-only file system; open it read-only (writable=False)"
    elif code in (errno.EACCES, errno.EPERM) and writable:
        msg = (
            "permission denied opening the image for writing (is it read-only?); "
            "open it with writable=False"
        )
    elif code in (errno.EACCES, errno.EPERM):
        msg = "permission denied reading the image"
    else:
        msg = f"cannot open image: {exc.strerror or exc}"
    return ImageAccessError(msg, path)


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _check_size(fs_size: object, path: str) -> int:
    if not isinstance(fs_size, int) or isinstance(fs_size, bool):
        raise ImageSizeError(f"image size must be an int, not {type(fs_size).__name__}", path)
    if fs_size <= 0:
        raise ImageSizeError(f"image size must be positive, not {fs_size}", path)
    if fs_size % SECTOR:
        raise ImageSizeError(f"image size {fs_size} is not a multiple of {SECTOR} bytes", path)
    if fs_size > MAX_FS_SIZE:
        raise ImageSizeError(
            f"image size {fs_size} exceeds the FAT32 limit of {MAX_FS_SIZE} bytes (2 TiB)", path
        )
    return fs_size


# --------------------------------------------------------------------------- create


def create_image(
    path: PathArg,
    fs_size: int,
    *,
    volume_id: uuid.UUID | None = None,
    flags: int = 0,
) -> ImageMetadata:
    """Create a new, sparse image file of ``fs_size`` file-system bytes plus the trailer.

    The file-system region is left as a hole (all zeros; the FAT engine formats it); only the
    trailer's slot A (generation 1) is written. The file is created with mode 0600 and never over
    an existing path or through a symlink. The data and the directory entry are fsynced before
    returning.

    Raises :class:`ImageSizeError` for a size that is not a positive multiple of 512 up to 2 TiB, or
    when the host has no room (ENOSPC, EDQUOT, EFBIG); :class:`ImageAccessError` when the path
    exists or its directory is missing or not writable; ValueError for flags an image cannot carry.
    On any failure nothing is left at ``path``.
    """
    path_s = os.fspath(path)
    _check_size(fs_size, path_s)
    if not isinstance(flags, int) or isinstance(flags, bool):
        raise TypeError("flags must be an int (VolumeFlag members)")
    if flags & ~int(PERSISTENT_FLAGS):
        raise ValueError(f"flags {flags:#x} include bits an image does not store")
    meta = ImageMetadata(
        volume_id=volume_id if volume_id is not None else uuid.uuid4(),
        fs_size=fs_size,
        flags=flags,
        extra={},
        created=now_iso(),
    )
    slot = encode_slot(meta.to_payload(), generation=1)  # before touching the disk
    parent = os.path.dirname(os.path.abspath(path_s))

    try:
        fd = os.open(
            path_s,
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY,
            0o600,
        )
    except FileExistsError as exc:
        raise ImageAccessError("cannot create image: the path already exists", path_s) from exc
    except FileNotFoundError as exc:
        raise ImageAccessError("cannot create image: its directory does not exist", path_s) from exc
    except NotADirectoryError as exc:
        raise ImageAccessError(
            "cannot create image: a component of the path is not a directory", path_s
        ) from exc
    except PermissionError as exc:
        raise ImageAccessError("cannot create image: permission denied", path_s) from exc
    except OSError as exc:
        if exc.errno in _HOST_FULL:
            raise ImageSizeError(_host_full_message(exc, "cannot create image"), path_s) from exc
        if exc.errno == errno.EROFS:
            raise ImageAccessError("cannot create image: read-only file system", path_s) from exc
        raise ImageAccessError(f"cannot create image: {exc.strerror or exc}", path_s) from exc

    created = os.fstat(fd)
    step = "lock"
    try:
        # Lock at once so a concurrent opener sees "in use", not a half-made image.
        if not try_lock(fd, exclusive=True):  # pragma: no cover - needs a racing opener
            log.debug("%s: new image momentarily locked by another opener", path_s)
        step = "size"
        os.ftruncate(fd, fs_size + TRAILER_SIZE)
        step = "write"
        _pwrite_all(fd, slot, fs_size)
        os.fsync(fd)
        _fsync_dir(parent)
    except BaseException as exc:
        os.close(fd)
        fd = -1
        _remove_if_ours(path_s, created)
        if not isinstance(exc, OSError):
            raise
        if exc.errno in _HOST_FULL:
            msg = _host_full_message(exc, f"cannot create a {fs_size}-byte image")
            raise ImageSizeError(msg, path_s) from exc
        if step == "size" and exc.errno == errno.EINVAL:  # beyond the host's maximum file size
            raise ImageSizeError(
                f"cannot create a {fs_size}-byte image: the host file system cannot hold a file "
                "this large (EINVAL)",
                path_s,
            ) from exc
        raise ImageError(f"cannot create image: {exc.strerror or exc}", path_s) from exc
    finally:
        if fd >= 0:
            os.close(fd)  # releases the creation lock
    log.info("created image %s (%d bytes, volume %s)", path_s, fs_size, meta.volume_id)
    return meta


def has_trailer_magic(path: PathArg) -> bool:
    """Whether the file ends in something that was a simvol trailer (valid or not): such a file is a damaged
    simvol image, never a plain file system to adopt."""
    try:
        with open(os.fspath(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < TRAILER_SIZE:
                return False
            f.seek(size - TRAILER_SIZE)
            tail = f.read(TRAILER_SIZE)
    except OSError:
        return False
    return any(tail[i * SLOT_SIZE:i * SLOT_SIZE + len(MAGIC)] == MAGIC for i in range(TRAILER_SIZE // SLOT_SIZE))


def adopt_image(path: PathArg, *, volume_id: uuid.UUID | None = None, flags: int = 0) -> ImageMetadata:
    """Make a plain file-system image (``mkfs.fat``'s, mtools') a simvol image: append the metadata trailer.

    The whole file so far becomes the file-system region (bytes after the file system stay as they are); the
    file grows by ``TRAILER_SIZE``. The caller has checked the file system. Raises :class:`ImageAccessError` for
    a file simvol may not write (read-only file or file system, not a regular file, a symlink),
    :class:`ImageInUseError` when another process has it open for writing, :class:`ImageFormatError` for a size
    that is not a whole number of sectors. On failure the file is as it was.
    """
    path_s = os.fspath(path)
    try:
        st = os.lstat(path_s)
    except OSError as exc:
        raise ImageAccessError(f"cannot adopt: {exc.strerror or exc}", path_s) from exc
    if not stat.S_ISREG(st.st_mode):
        raise ImageAccessError(f"cannot adopt: not a regular file ({_file_kind(st.st_mode)})", path_s)
    try:
        fd = os.open(path_s, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise _open_error(exc, path_s, writable=True) from exc
    try:
        if not try_lock(fd, exclusive=True):
            raise ImageInUseError("image in use by another process", path_s, pid=lock_holder(fd))
        size = os.fstat(fd).st_size
        if size % SECTOR or size < SECTOR:
            raise ImageFormatError(f"cannot adopt: {size} bytes is not a whole number of 512-byte sectors", path_s)
        _check_size(size, path_s)
        meta = ImageMetadata(volume_id=volume_id or uuid.uuid4(), fs_size=size, flags=flags, extra={},
                             created=now_iso())
        slot = encode_slot(meta.to_payload(), generation=1)
        try:
            _pwrite_all(fd, slot, size)
            os.ftruncate(fd, size + TRAILER_SIZE)
            os.fsync(fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # as it was
            if isinstance(exc, OSError):
                if exc.errno in _HOST_FULL:
                    raise ImageSizeError(_host_full_message(exc, "cannot adopt"), path_s) from exc
                raise ImageAccessError(f"cannot adopt: {exc.strerror or exc}", path_s) from exc
            raise
    finally:
        os.close(fd)
    log.info("adopted %s (%d bytes, volume %s)", path_s, size, meta.volume_id)
    return meta


def _remove_if_ours(path: str, created: os.stat_result) -> None:
    """Unlink ``path`` only if it is still the file we created (never someone else's)."""
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == (created.st_dev, created.st_ino):
            os.unlink(path)
    except OSError as exc:
        log.warning("could not remove partial image %s: %s", path, exc)


# --------------------------------------------------------------------------- open


class Image:
    """An open image file, locked for as long as it is open. Use :meth:`open`, not the constructor.

    ``with Image.open(path) as img: os.pread(img.fd, 512, 0)``. The lock is an ``flock`` on the
    descriptor: exclusive for a writable image, shared for a read-only one; it goes away with
    :meth:`close` or when the process dies.
    """

    def __init__(
        self,
        path: str,
        fd: int,
        metadata: ImageMetadata,
        slot: int,
        generation: int,
        writable: bool,
    ) -> None:
        self._path = path
        self._fd = fd
        self._metadata = metadata
        self._slot = slot
        self._generation = generation
        self._writable = writable

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: PathArg, *, writable: bool = True, lock: bool = True) -> Image:
        """Open, lock and validate an image.

        Raises :class:`ImageAccessError` (missing, a symlink, not a regular file, read-only when
        ``writable``), :class:`ImageInUseError` (another open holds the lock; ``.pid`` names the
        holder when /proc/locks shows it), :class:`ImageFormatError` (too small, no valid trailer,
        size mismatch) or :class:`~simvol.errors.ImageVersionError` (newer metadata format).
        ``lock=False`` skips the lock (for listing an image that is mounted; see
        :func:`read_metadata`).
        """
        path_s = os.fspath(path)
        # Look before opening: opening a FIFO blocks and opening a device can have side effects.
        try:
            st = os.lstat(path_s)
        except OSError as exc:
            raise _open_error(exc, path_s, writable) from exc
        if stat.S_ISLNK(st.st_mode):
            raise _open_error(OSError(errno.ELOOP, os.strerror(errno.ELOOP)), path_s, writable)
        if not stat.S_ISREG(st.st_mode):
            raise ImageAccessError(f"not a regular file ({_file_kind(st.st_mode)})", path_s)

        flags = os.O_RDWR if writable else os.O_RDONLY
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        try:
            fd = os.open(path_s, flags)
        except OSError as exc:
            raise _open_error(exc, path_s, writable) from exc
        try:
            return cls._from_fd(fd, path_s, writable, lock)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _from_fd(cls, fd: int, path: str, writable: bool, lock: bool) -> Image:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between lstat and open
            raise ImageAccessError(f"not a regular file ({_file_kind(st.st_mode)})", path)
        os.set_blocking(fd, True)
        if lock:
            try:
                locked = try_lock(fd, exclusive=writable)
                # A lock that goes away within LOCK_GRACE was no holder: another thread of this process
                # forked (subprocess) while it had the image open, and the child keeps a copy of that
                # descriptor — and with it the flock — until its exec closes it.
                deadline = time.monotonic() + LOCK_GRACE
                while not locked and time.monotonic() < deadline:
                    time.sleep(0.005)
                    locked = try_lock(fd, exclusive=writable)
            except OSError as exc:
                raise ImageAccessError(
                    f"cannot lock the image: {exc.strerror or exc}", path
                ) from exc
            if not locked:
                pid = lock_holder(fd)
                raise ImageInUseError("image in use by another process", path, pid=pid)
            st = os.fstat(fd)  # the size is stable only once no writer can be creating it
        if st.st_size < MIN_IMAGE_SIZE:
            raise ImageFormatError(
                f"file too small to be a simvol image ({st.st_size} bytes, at least "
                f"{MIN_IMAGE_SIZE} needed)",
                path,
            )
        fs_size = st.st_size - TRAILER_SIZE
        try:
            trailer = _pread_exact(fd, TRAILER_SIZE, fs_size)
        except OSError as exc:
            raise ImageAccessError(
                f"cannot read the metadata trailer: {exc.strerror or exc}", path
            ) from exc
        best = select_slot(trailer, path)
        meta = ImageMetadata.from_payload(best.payload, path)
        if meta.fs_size != fs_size:
            raise ImageFormatError(
                f"metadata says the file-system region is {meta.fs_size} bytes but the file holds "
                f"{fs_size} bytes before the trailer (truncated or extended?)",
                path,
            )
        log.debug(
            "opened %s %s (volume %s, slot %s generation %d)",
            path,
            "rw" if writable else "ro",
            meta.volume_id,
            best.name,
            best.generation,
        )
        return cls(path, fd, meta, best.index, best.generation, writable)

    # ------------------------------------------------------------------ properties

    @property
    def path(self) -> str:
        return self._path

    @property
    def fd(self) -> int:
        """The raw descriptor (O_RDWR or O_RDONLY) for ``os.pread``/``os.pwrite`` on ``[0, fs_size)``."""
        self._check_open()
        return self._fd

    @property
    def fs_size(self) -> int:
        """Size of the file-system region in bytes; the trailer starts here."""
        return self._metadata.fs_size

    @property
    def metadata(self) -> ImageMetadata:
        return self._metadata

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def generation(self) -> int:
        """Generation of the metadata slot in force (1 after create, +1 per write)."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._fd < 0

    # ------------------------------------------------------------------ metadata

    def write_metadata(self, meta: ImageMetadata) -> None:
        """Store ``meta`` durably: write it to the other slot with the next generation, then fsync.

        The slot in force is never touched, so if this fails or the host crashes part-way, the
        image still opens with the previous metadata. Raises :class:`ImageAccessError` on a
        read-only image, ValueError when ``meta`` does not fit in a slot or changes ``fs_size``,
        :class:`ImageError` when the host refuses the write.
        """
        self._check_open()
        if not self._writable:
            raise ImageAccessError("image is open read-only; cannot write metadata", self._path)
        if not isinstance(meta, ImageMetadata):
            raise TypeError(f"expected ImageMetadata, not {type(meta).__name__}")
        if meta.fs_size != self.fs_size:
            raise ValueError(
                f"metadata fs_size {meta.fs_size} differs from the image's {self.fs_size}; "
                "the file-system region cannot be resized this way"
            )
        target = 1 - self._slot
        generation = self._generation + 1
        raw = encode_slot(meta.to_payload(), generation)
        try:
            _pwrite_all(self._fd, raw, self.fs_size + target * SLOT_SIZE)
            os.fsync(self._fd)
        except OSError as exc:
            # The slot in force is intact; the next attempt targets the same (damaged) slot again.
            if exc.errno in _HOST_FULL:
                msg = _host_full_message(exc, "cannot write image metadata")
            else:
                msg = f"cannot write image metadata: {exc.strerror or exc}"
            raise ImageError(msg + "; the previous metadata is intact", self._path) from exc
        self._slot, self._generation, self._metadata = target, generation, meta
        log.debug(
            "%s: metadata generation %d written to slot %s", self._path, generation, "AB"[target]
        )

    def update_flags(self, set: int = 0, clear: int = 0) -> ImageMetadata:  # noqa: A002
        """Turn volume flags on/off in the image and return the new metadata.

        Writes (and fsyncs) only when the flags actually change.
        """
        new = self._metadata.with_flags(set=set, clear=clear)
        if new is not self._metadata:
            self.write_metadata(new)
        return self._metadata

    # ------------------------------------------------------------------ lifetime

    def fsync(self) -> None:
        """Flush everything written through :attr:`fd` to stable storage."""
        self._check_open()
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the descriptor, which releases the lock. Safe to call more than once."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
            log.debug("closed %s", self._path)

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError(f"I/O operation on a closed image: {self._path}")

    def __enter__(self) -> Image:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed image {self._path!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("rw" if self._writable else "ro")
        return f"<Image {self._path!r} volume_id={self._metadata.volume_id} {state}>"


def read_metadata(path: PathArg) -> ImageMetadata:
    """Read an image's metadata without taking its lock (works while the image is mounted).

    Validates exactly as :meth:`Image.open` does and raises the same errors, except never
    :class:`ImageInUseError`.
    """
    with Image.open(path, writable=False, lock=False) as img:
        return img.metadata


__all__ = [
    "Image", "adopt_image", "create_image", "has_trailer_magic", "read_metadata", "MAX_FS_SIZE", "MIN_IMAGE_SIZE",
]

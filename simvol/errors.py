"""simvol's exception hierarchy.

Every exception simvol raises on purpose derives from :class:`SimvolError`.
Each carries structured fields (the path involved, the errno where one fits) so
callers never have to parse messages, in the manner of psutil's errors.

Layers:

* :class:`ImageError` and subclasses: the image container (``simvol.image``).
* :class:`FileSystemError` and subclasses: the FAT32 engine (``simvol.fat``).
* :class:`FsOpError`: a file operation refused by the engine; it is an
  :class:`OSError` whose ``errno`` is what a Linux program sees at the mount.

The VDS layer adds ``VdsError`` (an ``OSError`` with ``.hresult``) on top.
"""

from __future__ import annotations

import os


class SimvolError(Exception):
    """Base class of every error simvol raises deliberately."""


# --------------------------------------------------------------------------- image container


class ImageError(SimvolError):
    """A problem with an image file; ``path`` names it."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = os.fspath(path) if path is not None else None

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}: {self.path}" if self.path and self.path not in msg else msg

    def __reduce__(self):  # keep the structured fields across pickling (multiprocessing, daemons)
        return (self.__class__, (self.args[0], self.path))


class ImageInUseError(ImageError):
    """Another process holds the image's exclusive lock (it is mounted or being modified)."""

    def __init__(
        self, message: str, path: str | os.PathLike[str] | None = None, pid: int | None = None
    ) -> None:
        super().__init__(message, path)
        self.pid = pid

    def __reduce__(self):
        return (self.__class__, (self.args[0], self.path, self.pid))


class ImageFormatError(ImageError):
    """The file is not a simvol image, or its metadata trailer is damaged beyond use."""


class ImageVersionError(ImageFormatError):
    """The image was written by a newer simvol whose metadata format this one cannot read."""


class ImageAccessError(ImageError):
    """The image cannot be opened as asked (missing, a directory, read-only, permission denied)."""


class ImageSizeError(ImageError):
    """A requested image size is impossible (negative, too small, too large)."""


# --------------------------------------------------------------------------- FAT32 engine


class FileSystemError(SimvolError):
    """The file system in an image cannot be used."""


class UnsupportedFileSystemError(FileSystemError):
    """Not a FAT32 file system, or one too damaged to open (FAT12/16, exFAT, NTFS, garbage)."""


class FormatError(FileSystemError):
    """A format request FAT32 cannot satisfy (size or cluster size out of range, bad label)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        #: machine-readable reason: ``too_small``, ``too_big``, ``cluster_too_small``,
        #: ``cluster_too_big``, ``bad_label`` or ``invalid``
        self.reason = reason

    def __reduce__(self):
        return (self.__class__, (self.args[0], self.reason))


class FsOpError(SimvolError, OSError):
    """A file operation the engine refuses; ``errno`` is the face a Linux program sees.

    Raised as ``FsOpError(errno.ENOENT, path)``; the message is derived from the errno.
    """

    def __init__(self, err: int, path: str | None = None, detail: str | None = None) -> None:
        msg = os.strerror(err) + (f" ({detail})" if detail else "")
        if path is None:
            OSError.__init__(self, err, msg)
        else:
            OSError.__init__(self, err, msg, path)
        self.detail = detail

    def __reduce__(self):
        return (self.__class__, (self.errno, self.filename, self.detail))


def fs_error(err: int, path: str | None = None, detail: str | None = None) -> FsOpError:
    """Shorthand used throughout the engine: ``raise fs_error(errno.ENOENT, path)``."""
    return FsOpError(err, path, detail)


__all__ = [
    "SimvolError",
    "ImageError",
    "ImageInUseError",
    "ImageFormatError",
    "ImageVersionError",
    "ImageAccessError",
    "ImageSizeError",
    "FileSystemError",
    "UnsupportedFileSystemError",
    "FormatError",
    "FsOpError",
    "fs_error",
]

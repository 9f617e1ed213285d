"""Parsing the paths VDS callers pass: drive letters, mount folders, volume GUID paths (docs/windows-semantics.md
§5.4, §6).

Only shapes are decided here; which check fires first is the caller's business (the order of docs/windows-semantics.md's
tables interleaves shape checks with volume-state checks).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from enum import Enum

MAX_PATH_CHARS = 259

_GUID_PATH = re.compile(
    r"^\\\\\?\\Volume\{([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\}(\\.*)?$"
)
_LETTER = re.compile(r"^([A-Za-z]):\\?$")
_LETTERISH = re.compile(r"^.:\\*$")
_ABS = re.compile(r"^([A-Za-z]):\\(.*)$")
_BAD_COMPONENT_CHARS = set('<>:"|?*')


class Shape(Enum):
    INVALID = "invalid"  # NULL, empty, too long (row 1)
    GUID = "guid"  # \\?\Volume{…}\ (row 2)
    BAD_LETTER = "bad_letter"  # letter-like but not X: / X:\ (row 4)
    BAD_SHAPE = "bad_shape"  # relative, UNC, other \\?\ forms, '.'/'..' components (row 5)
    LETTER = "letter"
    FOLDER = "folder"  # X:\dir\… (Windows form)
    HOST = "host"  # /absolute/host/path, taken verbatim


@dataclass(frozen=True, slots=True)
class AccessPath:
    shape: Shape
    raw: str
    letter: str | None = None  # the drive letter (upper case) of a LETTER or FOLDER
    parts: tuple[str, ...] = ()  # folder components below the drive, or host path components
    guid: uuid.UUID | None = None
    rest: str = ""  # for GUID paths: what follows the volume root

    @property
    def display(self) -> str:
        """The form QueryAccessPaths returns: ``E:\\``, ``C:\\mnt\\data\\``, or the host path verbatim."""
        if self.shape is Shape.LETTER:
            return f"{self.letter}:\\"
        if self.shape is Shape.FOLDER:
            return f"{self.letter}:\\" + "\\".join(self.parts) + "\\"
        if self.shape is Shape.HOST:
            return "/" + "/".join(self.parts)
        return self.raw

    @property
    def key(self) -> str:
        """Comparison key: case-insensitive for Windows-form paths, byte-exact for host paths."""
        if self.shape is Shape.LETTER:
            return f"{self.letter}:"
        if self.shape is Shape.FOLDER:
            return (f"{self.letter}:\\" + "\\".join(self.parts)).upper()
        if self.shape is Shape.HOST:
            return self.display
        return self.raw


def parse_access_path(path: str | None) -> AccessPath:
    """Classify a path given to Add/DeleteAccessPath."""
    if not isinstance(path, str) or path == "" or len(path) > MAX_PATH_CHARS:
        return AccessPath(Shape.INVALID, path if isinstance(path, str) else "")
    if not _encodable(path):
        return AccessPath(Shape.BAD_SHAPE, path)  # undecodable host bytes (surrogate escapes): no Windows path
    if path.startswith("/"):
        parts = path.split("/")[1:]
        while parts and parts[-1] == "":
            parts.pop()
        if not parts or any(p in ("", ".", "..") for p in parts) or "\0" in path:
            return AccessPath(Shape.BAD_SHAPE, path)
        return AccessPath(Shape.HOST, path, parts=tuple(parts))
    w = path.replace("/", "\\")
    m = _GUID_PATH.match(w)
    if m and (m.group(2) in (None, "\\")):
        return AccessPath(Shape.GUID, path, guid=uuid.UUID(m.group(1)))
    if len(w) <= 3 or _LETTERISH.match(w):
        m = _LETTER.match(w)
        if m:
            return AccessPath(Shape.LETTER, path, letter=m.group(1).upper())
        return AccessPath(Shape.BAD_LETTER, path)
    m = _ABS.match(w)
    if not m:
        return AccessPath(Shape.BAD_SHAPE, path)  # relative, UNC, E:dir, \\?\ forms
    parts = m.group(2).split("\\")
    while parts and parts[-1] == "":
        parts.pop()
    if not parts:
        return AccessPath(Shape.BAD_LETTER, path)
    for p in parts:
        if p in ("", ".", "..") or any(c in _BAD_COMPONENT_CHARS or ord(c) < 0x20 for c in p):
            return AccessPath(Shape.BAD_SHAPE, path)
    return AccessPath(Shape.FOLDER, path, letter=m.group(1).upper(), parts=tuple(parts))


def _encodable(path: str) -> bool:
    """False for strings carrying undecodable host bytes (``surrogateescape``), which no Windows path holds."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class WindowsPath:
    """A path given to ``resolve``: where it starts and what follows."""

    kind: str  # "letter" (X:\…), "guid" (\\?\Volume{…}\…) or "host" (/…)
    letter: str | None
    guid: uuid.UUID | None
    parts: tuple[str, ...]


def parse_windows_path(path: str) -> WindowsPath | None:
    """Parse a path for ``resolve``; None when it is not absolute in any form simvol knows."""
    if not isinstance(path, str) or not path or len(path) > 32767 or "\0" in path:
        return None
    if path.startswith("/"):
        return WindowsPath("host", None, None, tuple(p for p in path.split("/") if p))
    if not _encodable(path):
        return None
    w = path.replace("/", "\\")
    m = _GUID_PATH.match(w)
    if m:
        rest = (m.group(2) or "").strip("\\")
        parts = tuple(p for p in rest.split("\\") if p)
        if any(p in (".", "..") for p in parts):
            return None  # would climb out of the volume's root
        return WindowsPath("guid", None, uuid.UUID(m.group(1)), parts)
    m = re.match(r"^([A-Za-z]):(\\.*)?$", w)
    if not m:
        return None
    rest = (m.group(2) or "").strip("\\")
    parts = tuple(p for p in rest.split("\\") if p)
    if any(p in (".", "..") for p in parts):
        return None
    return WindowsPath("letter", m.group(1).upper(), None, parts)


def guid_path(volume_id: uuid.UUID) -> str:
    """``\\\\?\\Volume{guid}\\`` with lower-case hex (docs/windows-semantics.md §5.9)."""
    return f"\\\\?\\Volume{{{str(volume_id).lower()}}}\\"


def shown(text: object) -> str:
    """A path for a message, quoted as the user typed it, with single backslashes where ``repr`` would double each
    one. Control characters and undecodable bytes still show escaped."""
    if isinstance(text, str) and text.isprintable() and _encodable(text):
        return "'" + text + "'"
    return repr(text)


def inside(path: str, base: str) -> bool:
    """``path`` is ``base`` or below it (both normalized first; symlinks are the caller's to resolve)."""
    path = os.path.normpath(path)
    base = os.path.normpath(base)
    return path == base or path.startswith(base + os.sep)

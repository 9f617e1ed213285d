"""The host-side registry: which images are attached, their attach numbers, access paths and the
temporary-dismount state (``ROOT/simvol.db``).

SQLite in WAL mode; every change runs in ``BEGIN IMMEDIATE`` so several processes can drive one root. The
permanent-dismount flag is deliberately *not* here: it lives in the image (docs/architecture.md, The root).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import HRESULTS, RegistryError, VdsError, vds_error
from ..types import VolumeState

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE volumes (
               id TEXT PRIMARY KEY,            -- volume GUID, lower case, no braces
               image TEXT NOT NULL UNIQUE,     -- absolute image path
               number INTEGER NOT NULL UNIQUE, -- attach number: \\\\?\\GLOBALROOT\\Device\\HarddiskVolumeN
               dismount TEXT NOT NULL DEFAULT 'none' CHECK (dismount IN ('none', 'temporary')),
               attached REAL NOT NULL
           )""",
        """CREATE TABLE access_paths (
               volume_id TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
               kind TEXT NOT NULL CHECK (kind IN ('letter', 'folder')),
               display TEXT NOT NULL,          -- as QueryAccessPaths returns it: 'E:\\', 'C:\\mnt\\d\\', '/host/dir'
               key TEXT NOT NULL UNIQUE,       -- comparison key (upper case for Windows-form paths)
               host_path TEXT NOT NULL UNIQUE, -- where the symlink stands
               dir_mode INTEGER NOT NULL DEFAULT 493,  -- mode of the directory a folder replaced (0755)
               position INTEGER NOT NULL
           )""",
        "CREATE INDEX access_paths_volume ON access_paths(volume_id, position)",
        "CREATE TABLE host (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    2: [
        # Who may use the volume's mount, kept so every remount (up, Mount, an access) serves it the same way.
        "ALTER TABLE volumes ADD COLUMN allow_other INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE volumes ADD COLUMN owner TEXT",  # "uid:gid", or NULL: the mounting user
        # The drive letter each volume last had, as Windows' MountedDevices keeps it: a volume that comes back
        # (attached again, brought up) gets it again unless it is taken. Outlives the volume's row on purpose.
        """CREATE TABLE remembered_letters (
               volume_id TEXT PRIMARY KEY,     -- volume GUID, lower case, no braces
               letter TEXT NOT NULL            -- 'E'
           )""",
    ],
    3: [
        # Faults armed on a volume (file-system faults the daemon injects, VDS method faults the service injects),
        # with their counters; never in the image. A surprise removal leaves the volume FAILED until Mount.
        """CREATE TABLE faults (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               volume_id TEXT NOT NULL,
               kind TEXT NOT NULL CHECK (kind IN ('fs', 'method')),
               spec TEXT NOT NULL,             -- JSON, counters included
               persist INTEGER NOT NULL DEFAULT 0
           )""",
        "CREATE INDEX faults_volume ON faults(volume_id, id)",
        "ALTER TABLE volumes ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
    ],
}


@dataclass(frozen=True, slots=True)
class FaultRow:
    id: int
    volume_id: str
    kind: str  # "fs" or "method"
    spec: dict[str, Any]
    persist: bool


@dataclass(frozen=True, slots=True)
class VolumeRow:
    id: str
    image: str
    number: int
    dismount: str
    attached: float
    allow_other: int = 0
    owner: str | None = None
    removed: int = 0  # a surprise removal: FAILED until Mount

    @property
    def owner_ids(self) -> tuple[int, int] | None:
        if not self.owner:
            return None
        uid, gid = self.owner.split(":")
        return int(uid), int(gid)

    @property
    def temporarily_dismounted(self) -> bool:
        return self.dismount == VolumeState.TEMPORARILY_DISMOUNTED.dismount


@dataclass(frozen=True, slots=True)
class PathRow:
    volume_id: str
    kind: str
    display: str
    key: str
    host_path: str
    dir_mode: int
    position: int


def _vds_error(e: sqlite3.Error, path: str) -> VdsError:
    """A registry failure as a VdsError: ERROR_DISK_FULL when the host is out of space, else an internal error."""
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(e).lower():
        return vds_error(HRESULTS["HRESULT_FROM_WIN32(ERROR_DISK_FULL)"], f"the registry {path} cannot be written: {e}")
    return vds_error(HRESULTS["VDS_E_INTERNAL_ERROR"], f"the registry {path} failed: {e}")


class Registry:
    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        self._db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _vds_error(e, self.path) from e
        try:
            yield self._db
        except sqlite3.Error as e:
            self._rollback()
            raise _vds_error(e, self.path) from e
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as e:  # a full disk, an I/O error: nothing was written
                self._rollback()
                raise _vds_error(e, self.path) from e

    def _rollback(self) -> None:
        """End the transaction whatever state SQLite left it in (a failed COMMIT may or may not have ended it)."""
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as e:
                log.warning("rollback of %s failed: %s", self.path, e)

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RegistryError(
                    f"{self.path} was written by a newer simvol (schema {version}, this one knows {SCHEMA_VERSION})",
                    self.path,
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v]:
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version={v}")

    # ------------------------------------------------------------ volumes

    def volumes(self) -> list[VolumeRow]:
        return [VolumeRow(**dict(r)) for r in self._db.execute("SELECT * FROM volumes ORDER BY number")]

    def volume(self, volume_id: str) -> VolumeRow | None:
        r = self._db.execute("SELECT * FROM volumes WHERE id = ?", (volume_id,)).fetchone()
        return VolumeRow(**dict(r)) if r else None

    def volume_by_image(self, image: str) -> VolumeRow | None:
        r = self._db.execute("SELECT * FROM volumes WHERE image = ?", (image,)).fetchone()
        return VolumeRow(**dict(r)) if r else None

    def add_volume(self, volume_id: str, image: str, *, allow_other: bool = False,
                   owner: tuple[int, int] | None = None) -> VolumeRow:
        with self.transaction() as db:
            n = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM volumes").fetchone()[0]
            db.execute(
                "INSERT INTO volumes (id, image, number, dismount, attached, allow_other, owner) "
                "VALUES (?, ?, ?, 'none', ?, ?, ?)",  # MOUNTED
                (volume_id, image, n, time.time(), int(allow_other), f"{owner[0]}:{owner[1]}" if owner else None),
            )
        row = self.volume(volume_id)
        assert row is not None
        return row

    def remove_volume(self, volume_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM volumes WHERE id = ?", (volume_id,))

    def set_temporarily_dismounted(self, volume_id: str, dismounted: bool) -> None:
        word = (VolumeState.TEMPORARILY_DISMOUNTED if dismounted else VolumeState.MOUNTED).dismount
        with self.transaction() as db:
            db.execute("UPDATE volumes SET dismount = ? WHERE id = ?", (word, volume_id))

    def clear_all_temporary(self) -> None:
        with self.transaction() as db:
            db.execute("UPDATE volumes SET dismount = ?", (VolumeState.MOUNTED.dismount,))

    # ------------------------------------------------------------ access paths

    def paths(self, volume_id: str | None = None) -> list[PathRow]:
        if volume_id is None:
            rows = self._db.execute("SELECT * FROM access_paths ORDER BY volume_id, position")
        else:
            rows = self._db.execute(
                "SELECT * FROM access_paths WHERE volume_id = ? ORDER BY kind = 'folder', position", (volume_id,)
            )
        return [PathRow(**dict(r)) for r in rows]

    def path_by_key(self, key: str) -> PathRow | None:
        r = self._db.execute("SELECT * FROM access_paths WHERE key = ?", (key,)).fetchone()
        return PathRow(**dict(r)) if r else None

    def path_by_host(self, host_path: str) -> PathRow | None:
        r = self._db.execute("SELECT * FROM access_paths WHERE host_path = ?", (host_path,)).fetchone()
        return PathRow(**dict(r)) if r else None

    def add_path(self, db: sqlite3.Connection, volume_id: str, kind: str, display: str, key: str,
                 host_path: str, dir_mode: int) -> None:
        """Insert inside a caller's transaction (the caller creates the symlink in the same critical section)."""
        pos = db.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM access_paths").fetchone()[0]
        db.execute(
            "INSERT INTO access_paths (volume_id, kind, display, key, host_path, dir_mode, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (volume_id, kind, display, key, host_path, dir_mode, pos),
        )

    def remove_path(self, db: sqlite3.Connection, key: str) -> None:
        db.execute("DELETE FROM access_paths WHERE key = ?", (key,))

    def set_removed(self, volume_id: str, removed: bool) -> None:
        with self.transaction() as db:
            db.execute("UPDATE volumes SET removed = ? WHERE id = ?", (int(removed), volume_id))

    # ------------------------------------------------------------ faults

    def faults(self, volume_id: str, kind: str | None = None) -> list[FaultRow]:
        rows = self._db.execute(
            "SELECT * FROM faults WHERE volume_id = ? AND (? IS NULL OR kind = ?) ORDER BY id",
            (volume_id, kind, kind),
        )
        return [FaultRow(r["id"], r["volume_id"], r["kind"], json.loads(r["spec"]), bool(r["persist"])) for r in rows]

    def add_fault(self, volume_id: str, kind: str, spec: dict[str, Any], persist: bool) -> int:
        """The new fault's id; ``spec["id"]`` is set to it."""
        with self.transaction() as db:
            cur = db.execute("INSERT INTO faults (volume_id, kind, spec, persist) VALUES (?, ?, '{}', ?)",
                             (volume_id, kind, int(persist)))
            fid = int(cur.lastrowid or 0)
            db.execute("UPDATE faults SET spec = ? WHERE id = ?", (json.dumps({**spec, "id": fid}), fid))
        return fid

    def update_fault(self, fault_id: int, spec: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE faults SET spec = ? WHERE id = ?", (json.dumps(spec), fault_id))

    def remove_faults(self, volume_id: str, fault_id: int | None = None, *, transient_only: bool = False) -> int:
        """Remove one fault, every fault, or (``transient_only``) those that end at a dismount; how many went."""
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM faults WHERE volume_id = ? AND (? IS NULL OR id = ?) AND (? = 0 OR persist = 0)",
                (volume_id, fault_id, fault_id, int(transient_only)),
            )
            return int(cur.rowcount)

    # ------------------------------------------------------------ remembered drive letters

    def remembered_letter(self, volume_id: str) -> str | None:
        r = self._db.execute("SELECT letter FROM remembered_letters WHERE volume_id = ?", (volume_id,)).fetchone()
        return r[0] if r else None

    def remember_letter(self, db: sqlite3.Connection, volume_id: str, letter: str) -> None:
        """Inside a caller's transaction: the letter the volume has now."""
        db.execute("INSERT OR REPLACE INTO remembered_letters (volume_id, letter) VALUES (?, ?)", (volume_id, letter))

    def forget_letter(self, db: sqlite3.Connection, volume_id: str) -> None:
        db.execute("DELETE FROM remembered_letters WHERE volume_id = ?", (volume_id,))

    # ------------------------------------------------------------ host facts

    def host_value(self, key: str) -> str | None:
        r = self._db.execute("SELECT value FROM host WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    def set_host_value(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO host (key, value) VALUES (?, ?)", (key, value))

"""What the trailer says about the volume: :class:`ImageMetadata` and its JSON payload.

The image carries its own identity and the volume flags that belong to the volume, so an image copied
to another host (or root) is the same volume there: same GUID, still permanently dismounted if it was.
Host-side facts (access paths, attach order) live in the registry instead, never here.

The payload is JSON so that a newer simvol can add keys without a format-version bump; keys this
version does not know are kept in :attr:`ImageMetadata.extra` and written back unchanged.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ..errors import ImageFormatError
from ..types import VolumeFlag

#: The volume flags an image may carry (docs/architecture.md, Layers: `simvol/image`): the permanent-dismount
#: pair and the simulated roles. Runtime flags (DIRTY, FORMATTING, *_NOT_SUPPORTED, …) are computed, never stored.
PERSISTENT_FLAGS = (
    VolumeFlag.PERMANENTLY_DISMOUNTED
    | VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED
    | VolumeFlag.SYSTEM_VOLUME
    | VolumeFlag.BOOT_VOLUME
    | VolumeFlag.PAGEFILE
    | VolumeFlag.HIDDEN
    | VolumeFlag.READONLY
    | VolumeFlag.NO_DEFAULT_DRIVE_LETTER
)

#: Payload keys this version understands; everything else goes to ``extra``.
KNOWN_KEYS = frozenset({"volume_id", "fs_size", "flags", "created"})


def now_iso() -> str:
    """The ``created`` stamp: UTC, second precision, ISO 8601 (``2024-05-01T12:00:00+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ImageMetadata:
    """The decoded trailer payload. Immutable: change it with :meth:`with_flags` or
    :func:`dataclasses.replace` and hand the result to ``Image.write_metadata``.

    ``flags`` is a plain int of :class:`~simvol.types.VolumeFlag` bits (unknown bits from a newer
    simvol are kept); ``extra`` holds payload keys this version does not know; ``created`` is the
    ISO 8601 creation time as stored.
    """

    volume_id: uuid.UUID
    fs_size: int
    flags: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    created: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.volume_id, uuid.UUID):
            raise TypeError(f"volume_id must be a uuid.UUID, not {type(self.volume_id).__name__}")
        if not _is_int(self.fs_size) or self.fs_size <= 0 or self.fs_size % 512:
            raise ValueError(f"fs_size must be a positive multiple of 512, not {self.fs_size!r}")
        if not _is_int(self.flags) or not 0 <= self.flags < 2**32:
            raise ValueError(f"flags must be an unsigned 32-bit int, not {self.flags!r}")
        if self.created is not None and not isinstance(self.created, str):
            raise TypeError("created must be an ISO 8601 string or None")
        clash = KNOWN_KEYS & set(self.extra)
        if clash:
            raise ValueError(f"extra must not contain the known keys {sorted(clash)}")
        # Defensive copy: the instance is frozen, so it must not share a mutable dict with a caller.
        object.__setattr__(self, "flags", int(self.flags))
        object.__setattr__(self, "extra", dict(self.extra))

    # dataclass(frozen=True) would hash ``extra`` (a dict) and fail; hash the identity instead.
    def __hash__(self) -> int:
        return hash((self.volume_id, self.fs_size, self.flags, self.created))

    # ------------------------------------------------------------------ flags

    @property
    def volume_flags(self) -> VolumeFlag:
        """``flags`` as a :class:`VolumeFlag`."""
        return VolumeFlag(self.flags)

    def has(self, flag: int) -> bool:
        """True when every bit of ``flag`` is set."""
        return self.flags & int(flag) == int(flag)

    def with_flags(self, *, set: int = 0, clear: int = 0) -> ImageMetadata:  # noqa: A002
        """Return a copy with the bits of ``set`` turned on and those of ``clear`` turned off.

        ``clear`` is applied first, so a bit in both ends up set. Only :data:`PERSISTENT_FLAGS`
        may be set: a runtime flag in the image would outlive the condition it reports.
        """
        if not _is_int(set) or not _is_int(clear):
            raise TypeError("set and clear must be ints (VolumeFlag members)")
        stray = int(set) & ~int(PERSISTENT_FLAGS)
        if stray:
            raise ValueError(f"flags {VolumeFlag(stray)!r} are not stored in an image")
        flags = (self.flags & ~int(clear) & 0xFFFFFFFF) | int(set)
        return self if flags == self.flags else replace(self, flags=flags)

    @property
    def permanently_dismounted(self) -> bool:
        return self.has(VolumeFlag.PERMANENTLY_DISMOUNTED)

    @property
    def permanent_dismount_supported(self) -> bool:
        return self.has(VolumeFlag.PERMANENT_DISMOUNT_SUPPORTED)

    @property
    def system(self) -> bool:
        return self.has(VolumeFlag.SYSTEM_VOLUME)

    @property
    def boot(self) -> bool:
        return self.has(VolumeFlag.BOOT_VOLUME)

    @property
    def pagefile(self) -> bool:
        return self.has(VolumeFlag.PAGEFILE)

    @property
    def hidden(self) -> bool:
        return self.has(VolumeFlag.HIDDEN)

    @property
    def readonly(self) -> bool:
        return self.has(VolumeFlag.READONLY)

    @property
    def no_default_drive_letter(self) -> bool:
        return self.has(VolumeFlag.NO_DEFAULT_DRIVE_LETTER)

    @property
    def created_at(self) -> datetime | None:
        """``created`` parsed, or None when absent or unparsable."""
        try:
            return datetime.fromisoformat(self.created) if self.created else None
        except ValueError:
            return None

    # ------------------------------------------------------------------ payload

    def to_payload(self) -> bytes:
        """The UTF-8 JSON stored in a slot. Unknown keys from ``extra`` are written back."""
        doc: dict[str, Any] = dict(self.extra)
        doc["volume_id"] = str(self.volume_id)
        doc["fs_size"] = self.fs_size
        doc["flags"] = self.flags
        if self.created is not None:
            doc["created"] = self.created
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_payload(cls, payload: bytes, path: str | None = None) -> ImageMetadata:
        """Decode a slot payload; anything malformed raises :class:`ImageFormatError`."""
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: deeply nested JSON
            raise ImageFormatError(
                f"simvol metadata payload is not UTF-8 JSON ({exc})", path
            ) from exc
        if not isinstance(doc, dict):
            raise ImageFormatError("simvol metadata payload is not a JSON object", path)
        missing = sorted({"volume_id", "fs_size", "flags"} - set(doc))
        if missing:
            raise ImageFormatError(f"simvol metadata lacks {', '.join(missing)}", path)
        try:
            raw_id = doc["volume_id"]
            if not isinstance(raw_id, str):
                raise ValueError("volume_id is not a string")
            created = doc.get("created")
            if created is not None and not isinstance(created, str):
                raise ValueError("created is not a string")
            return cls(
                volume_id=uuid.UUID(raw_id),
                fs_size=doc["fs_size"],
                flags=doc["flags"],
                extra={k: v for k, v in doc.items() if k not in KNOWN_KEYS},
                created=created,
            )
        except (TypeError, ValueError) as exc:
            raise ImageFormatError(f"simvol metadata is invalid ({exc})", path) from exc


__all__ = ["ImageMetadata", "PERSISTENT_FLAGS", "KNOWN_KEYS", "now_iso"]

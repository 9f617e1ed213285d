"""The metadata trailer's byte format: two checksummed slots, and the rule for picking one.

This module is pure: it turns bytes into slot records and back and never touches a file, so the
recovery rule can be tested on byte strings alone. ``container.py`` does the I/O.

Why two slots: a metadata update must never leave an image without metadata, even when the host
crashes mid-write. Each update goes to the slot that does *not* hold the newest valid copy, so the
newest copy is never overwritten; a torn write damages only the slot being written, its CRC no longer
matches, and the reader falls back to the other slot (the previous generation).

Slot layout (all integers little-endian; ``images/README.md`` has the full table)::

    0   8   magic  b"SIMVOLMD"
    8   4   format version (u32)
    12  8   generation (u64)
    20  4   payload length N (u32)
    24  N   payload (UTF-8 JSON)
    24+N 4  CRC32 (zlib.crc32) of bytes [0, 24+N)
    ... zero up to 4096

The positions of magic, version, generation, length and CRC are frozen for every format version;
a newer version may only change what the payload means. That is what lets this reader say "written
by a newer simvol" (ImageVersionError) rather than "damaged".
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass

from ..errors import ImageFormatError, ImageVersionError

log = logging.getLogger(__name__)

#: Total size of the trailer at the end of every image file.
TRAILER_SIZE = 8192
#: Size of one slot; slot A is at trailer offset 0, slot B at ``SLOT_SIZE``.
SLOT_SIZE = 4096
SLOT_COUNT = TRAILER_SIZE // SLOT_SIZE
MAGIC = b"SIMVOLMD"
#: The metadata format version this code writes and the highest it reads.
FORMAT_VERSION = 1

_HEADER = struct.Struct("<8sIQI")  # magic, version, generation, payload length
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size  # 24
CRC_SIZE = _CRC.size  # 4
#: The largest payload that fits in a slot.
MAX_PAYLOAD = SLOT_SIZE - HEADER_SIZE - CRC_SIZE  # 4068
MAX_GENERATION = 2**64 - 1
SLOT_NAMES = ("A", "B")


@dataclass(frozen=True)
class Slot:
    """One slot that passed the magic and CRC checks."""

    index: int  #: 0 for slot A, 1 for slot B
    version: int
    generation: int
    payload: bytes

    @property
    def name(self) -> str:
        return SLOT_NAMES[self.index]


class SlotInvalid(Exception):
    """Internal: why one slot is unusable (bad magic, bad CRC, …). Never leaves this package."""


def encode_slot(payload: bytes, generation: int, version: int = FORMAT_VERSION) -> bytes:
    """Return the full ``SLOT_SIZE`` bytes of a slot holding ``payload``.

    Raises ValueError when the payload does not fit or a field is out of range; nothing is written
    anywhere, so a caller can encode first and touch the file only once this has succeeded.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(
            f"metadata payload is {len(payload)} bytes; a trailer slot holds at most {MAX_PAYLOAD}"
        )
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError(f"generation {generation} out of range for u64")
    if not 0 < version < 2**32:
        raise ValueError(f"format version {version} out of range for u32")
    body = _HEADER.pack(MAGIC, version, generation, len(payload)) + payload
    raw = body + _CRC.pack(zlib.crc32(body))
    return raw + bytes(SLOT_SIZE - len(raw))


def decode_slot(raw: bytes, index: int) -> Slot:
    """Check one slot's magic, length and CRC; raise :class:`SlotInvalid` with the reason if bad.

    The version is *not* judged here: a valid slot from a newer simvol decodes fine, and
    :func:`select_slot` decides what to do with it.
    """
    if len(raw) != SLOT_SIZE:
        raise SlotInvalid(f"truncated ({len(raw)} of {SLOT_SIZE} bytes)")
    magic, version, generation, length = _HEADER.unpack_from(raw, 0)
    if magic != MAGIC:
        raise SlotInvalid("bad magic" if any(raw) else "empty")
    if length > MAX_PAYLOAD:
        raise SlotInvalid(f"payload length {length} exceeds {MAX_PAYLOAD}")
    end = HEADER_SIZE + length
    (stored_crc,) = _CRC.unpack_from(raw, end)
    actual_crc = zlib.crc32(raw[:end])
    if stored_crc != actual_crc:
        raise SlotInvalid(f"CRC mismatch (stored {stored_crc:#010x}, computed {actual_crc:#010x})")
    if version == 0:
        raise SlotInvalid("format version 0")
    return Slot(index, version, generation, bytes(raw[HEADER_SIZE:end]))


def select_slot(trailer: bytes, path: str | None = None) -> Slot:
    """Apply the recovery rule to the ``TRAILER_SIZE`` bytes of a trailer.

    The valid slot with the higher generation wins (slot A on a tie, which a correct writer never
    produces). One damaged slot is tolerated silently apart from a log record. No valid slot raises
    :class:`ImageFormatError`; a winning slot whose version is newer than :data:`FORMAT_VERSION`
    raises :class:`ImageVersionError` — falling back to an older slot would resurrect metadata the
    newer simvol has already superseded.
    """
    if len(trailer) != TRAILER_SIZE:
        raise ImageFormatError(
            f"metadata trailer is {len(trailer)} bytes, expected {TRAILER_SIZE}", path
        )
    valid: list[Slot] = []
    reasons: list[str] = []
    for index in range(SLOT_COUNT):
        raw = trailer[index * SLOT_SIZE : (index + 1) * SLOT_SIZE]
        try:
            valid.append(decode_slot(raw, index))
        except SlotInvalid as exc:
            reasons.append(f"slot {SLOT_NAMES[index]}: {exc}")
    if not valid:
        raise ImageFormatError(
            "no valid simvol metadata in the trailer (" + "; ".join(reasons) + ")", path
        )
    best = max(valid, key=lambda s: (s.generation, -s.index))
    if reasons:
        # Normal right after create (slot B never written) and after a torn write.
        log.debug(
            "%s: using slot %s generation %d; %s",
            path,
            best.name,
            best.generation,
            "; ".join(reasons),
        )
    if best.version > FORMAT_VERSION:
        raise ImageVersionError(
            f"image metadata format version {best.version} was written by a newer simvol; "
            f"this one reads up to version {FORMAT_VERSION}",
            path,
        )
    return best


__all__ = [
    "TRAILER_SIZE",
    "SLOT_SIZE",
    "SLOT_COUNT",
    "MAGIC",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "CRC_SIZE",
    "MAX_PAYLOAD",
    "Slot",
    "encode_slot",
    "decode_slot",
    "select_slot",
]

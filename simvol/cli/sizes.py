"""Sizes as people type them: ``64M``, ``8G``, ``1T``, ``1.5GiB``, ``1048576`` (binary units)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes for a size string. Raises ValueError with a message fit for the user."""
    m = _SIZE.match(text or "")
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 64M, 8G, 1T, 1048576)")
    number, unit = m.group(1), m.group(2).upper()
    value = float(number) * _UNITS[unit] if "." in number else int(number) * _UNITS[unit]
    size = int(value)
    if size <= 0:
        raise ValueError(f"{text!r}: the size must be greater than zero")
    return size

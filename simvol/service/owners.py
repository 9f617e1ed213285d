"""The owner of a volume's files, as the user gives it: a uid, ``"uid:gid"``, ``"name"`` or ``"name:group"``."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable

from ..errors import InvalidArgumentError

__all__ = ["parse_owner"]


def parse_owner(value: int | str | tuple[int, int] | None) -> tuple[int, int] | None:
    """(uid, gid), the group defaulting to the user's primary group (or the uid's number when the user is unknown
    here: a container's service user need not exist on the host)."""
    if value is None:
        return None
    if isinstance(value, tuple):
        if len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            return value[0], value[1]
        raise InvalidArgumentError(message=f"an owner is (uid, gid), got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(message=f"an owner is UID[:GID] or USER[:GROUP], got {value!r}")
    user, _, group = value.partition(":")
    uid = _id(user, lambda n: pwd.getpwnam(n).pw_uid, "user")
    if group:
        gid = _id(group, lambda n: grp.getgrnam(n).gr_gid, "group")
    else:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    return uid, gid


def _id(text: str, by_name: Callable[[str], int], what: str) -> int:
    if text.isdigit():
        n = int(text)
        if n > 0xFFFFFFFE:
            raise InvalidArgumentError(message=f"{text} is not a {what} id")
        return n
    try:
        return by_name(text)
    except KeyError:
        raise InvalidArgumentError(message=f"no {what} named {text!r} here") from None

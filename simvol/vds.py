"""COM-style facade: the VDS volume interfaces under their COM names, returning HRESULTs.

Code written against the Windows API reads naturally here::

    hr = IVdsVolumeMF(volume).Dismount(bForce=False, bPermanent=False)
    hr, paths = IVdsVolumeMF(volume).QueryAccessPaths()

Methods never raise for a VDS failure: they return the HRESULT (an unsigned 32-bit int; ``FAILED(hr)`` tells),
and methods with out-parameters return ``(hr, value)`` — the value is ``None`` on failure. The last
failure's :class:`~simvol.errors.VdsError` (with holders, for in-use) is kept in ``last_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from . import _log  # noqa: F401  (the library's NullHandler)
from .errors import HRESULTS, S_OK, SimvolError, VdsError, as_vds_error
from .service import Volume
from .types import (
    FileSystemFormatSupportProp,
    FileSystemProp,
    FileSystemType,
    FormatOptionFlags,
    ReparsePointProp,
    VolumeProp,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

IID_IVdsVolume = "{88306BB2-E71F-478C-86A2-79DA200A0F11}"
IID_IVdsVolumeMF = "{EE2D5DED-6236-4169-931D-B9778CE03DC6}"
IID_IVdsVolumeMF2 = "{4DBCEE9A-6343-4651-B85F-5E75D74D983C}"
IID_IVdsVolumeMF3 = "{6788FAF9-214E-4B85-BA59-266953616E09}"


class _Interface:
    def __init__(self, volume: Volume) -> None:
        self._volume = volume
        self.last_error: VdsError | None = None

    def _hr(self, fn: Callable[[], Any]) -> int:
        hr, _ = self._out(fn)
        return hr

    def _out(self, fn: Callable[[], T]) -> tuple[int, T | None]:
        self.last_error = None
        try:
            value = fn()
        except SimvolError as e:
            if not isinstance(e, VdsError):  # something below the VDS layer escaped: an internal error
                log.exception("unexpected failure")
            self.last_error = as_vds_error(e)
            return self.last_error.hresult, None
        return S_OK, value


class IVdsVolume(_Interface):
    """``IVdsVolume``: GetProperties."""

    def GetProperties(self) -> tuple[int, VolumeProp | None]:  # noqa: N802
        return self._out(self._volume.get_properties)


class IVdsVolumeMF(_Interface):
    """``IVdsVolumeMF`` (opnums 3–12)."""

    def GetFileSystemProperties(self) -> tuple[int, FileSystemProp | None]:  # noqa: N802
        return self._out(self._volume.get_file_system_properties)

    def Format(self, type: int, pwszLabel: str | None, dwUnitAllocationSize: int, bForce: bool,  # noqa: N802, N803, A002
               bQuickFormat: bool, bEnableCompression: bool) -> int:
        hr, value = self._out(lambda: self._volume.format(type, pwszLabel, dwUnitAllocationSize, bForce,
                                                          bQuickFormat, bEnableCompression))
        return value if value is not None else hr

    def AddAccessPath(self, pwszPath: str | None) -> int:  # noqa: N802, N803
        return self._hr(lambda: self._volume.add_access_path(pwszPath))  # type: ignore[arg-type]

    def QueryAccessPaths(self) -> tuple[int, list[str] | None]:  # noqa: N802
        return self._out(self._volume.query_access_paths)

    def QueryReparsePoints(self) -> tuple[int, list[ReparsePointProp] | None]:  # noqa: N802
        return self._out(self._volume.query_reparse_points)

    def DeleteAccessPath(self, pwszPath: str | None, bForce: bool) -> int:  # noqa: N802, N803
        return self._hr(lambda: self._volume.delete_access_path(pwszPath, bForce))  # type: ignore[arg-type]

    def Mount(self) -> int:  # noqa: N802
        return self._hr(self._volume.mount)

    def Dismount(self, bForce: bool, bPermanent: bool) -> int:  # noqa: N802, N803
        return self._hr(lambda: self._volume.dismount(force=bool(bForce), permanent=bool(bPermanent)))

    def SetFileSystemFlags(self, ulFlags: int) -> int:  # noqa: N802, N803
        return self._hr(lambda: self._volume.set_file_system_flags(ulFlags))

    def ClearFileSystemFlags(self, ulFlags: int) -> int:  # noqa: N802, N803
        return self._hr(lambda: self._volume.clear_file_system_flags(ulFlags))


class IVdsVolumeMF2(_Interface):
    """``IVdsVolumeMF2``."""

    def GetFileSystemTypeName(self) -> tuple[int, str | None]:  # noqa: N802
        return self._out(self._volume.get_file_system_type_name)

    def QueryFileSystemFormatSupport(self) -> tuple[int, list[FileSystemFormatSupportProp] | None]:  # noqa: N802
        return self._out(self._volume.query_file_system_format_support)

    def FormatEx(self, pwszFileSystemTypeName: str | None, usFileSystemRevision: int,  # noqa: N802, N803
                 ulDesiredUnitAllocationSize: int, pwszLabel: str | None, bForce: bool, bQuickFormat: bool,
                 bEnableCompression: bool) -> int:
        name = pwszFileSystemTypeName if pwszFileSystemTypeName else "FAT32"
        hr, value = self._out(lambda: self._volume.format(name, pwszLabel, ulDesiredUnitAllocationSize, bForce,
                                                          bQuickFormat, bEnableCompression))
        return value if value is not None else hr


class IVdsVolumeMF3(_Interface):
    """``IVdsVolumeMF3``."""

    def QueryVolumeGuidPathnames(self) -> tuple[int, list[str] | None]:  # noqa: N802
        return self._out(self._volume.query_volume_guid_pathnames)

    def FormatEx2(self, pwszFileSystemTypeName: str | None, usFileSystemRevision: int,  # noqa: N802, N803
                  ulDesiredUnitAllocationSize: int, pwszLabel: str | None, Options: int) -> int:
        known = 0xF  # FORCE | QUICK | COMPRESSION | DUPLICATE_METADATA (an int: IntFlag's ~ stays inside the enum)
        if Options & ~known:
            self.last_error = VdsError(HRESULTS["E_INVALIDARG"], f"unknown format option bits {Options & ~known:#x}")
            return self.last_error.hresult
        name = pwszFileSystemTypeName if pwszFileSystemTypeName else "FAT32"
        hr, value = self._out(lambda: self._volume.format(
            name, pwszLabel, ulDesiredUnitAllocationSize, bool(Options & FormatOptionFlags.FORCE),
            bool(Options & FormatOptionFlags.QUICK), bool(Options & FormatOptionFlags.COMPRESSION)))
        return value if value is not None else hr

    def OfflineVolume(self) -> int:  # noqa: N802
        return self._hr(self._volume.offline)


class VdsVolume(IVdsVolume, IVdsVolumeMF, IVdsVolumeMF2, IVdsVolumeMF3):
    """Every interface of a volume in one object (what ``QueryInterface`` would hand out)."""


__all__ = [
    "IVdsVolume",
    "IVdsVolumeMF",
    "IVdsVolumeMF2",
    "IVdsVolumeMF3",
    "VdsVolume",
    "FileSystemType",
    "IID_IVdsVolume",
    "IID_IVdsVolumeMF",
    "IID_IVdsVolumeMF2",
    "IID_IVdsVolumeMF3",
]

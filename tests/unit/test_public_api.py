"""The public namespace and the error tree: pinned, so that a change to either is a decision, not an accident."""

from __future__ import annotations

import inspect
import pickle
import re

import pytest

import simvol
from simvol import errors

PUBLIC = {
    "__version__",
    # the service and its volumes
    "VolumeService", "Volume",
    # VDS enumerations and records
    "VolumeState", "VolumeFlag", "VolumeStatus", "VolumeProp", "FileSystemProp", "FileSystemType",
    # HRESULTs
    "HRESULTS", "HRESULT_FROM_WIN32", "S_OK", "SUCCEEDED", "FAILED", "code_name", "as_vds_error",
    # the error tree
    "SimvolError",
    "ImageError", "ImageInUseError", "ImageFormatError", "ImageVersionError", "ImageAccessError", "ImageSizeError",
    "FileSystemError", "UnsupportedFileSystemError", "FormatError", "FsOpError", "RegistryError",
    "VdsError", "VolumeInUseError", "TemporarilyDismountedError", "PermanentlyDismountedError", "VolumeHasPathError",
    "NotSupportedError", "ObjectNotFoundError", "ObjectExistsError", "ObjectStatusFailedError",
    "OperationDeniedError", "AccessPathNotFoundError", "DriveLetterNotFreeError", "InvalidDriveLetterError",
    "InvalidArgumentError", "AccessDeniedError", "VolumeNotOnlineError", "InternalError",
}


def test_all_is_exactly_the_public_names():
    assert len(simvol.__all__) == len(set(simvol.__all__)), "a name is listed twice"
    assert set(simvol.__all__) == PUBLIC


def test_every_exported_class_presents_itself_as_simvols():
    for name in simvol.__all__:
        obj = getattr(simvol, name)
        if inspect.isclass(obj):
            assert obj.__module__ == "simvol", name
            assert obj.__name__ == name


def test_every_error_class_is_exported_and_drawn_in_the_tree():
    classes = {
        name for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.SimvolError) and not name.startswith("_")
    }
    assert classes <= set(simvol.__all__), classes - set(simvol.__all__)
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or "")) | {"SimvolError"}
    assert drawn == classes, (drawn ^ classes)


@pytest.mark.parametrize("cls", [c for c in errors.VdsError.__subclasses__()], ids=lambda c: c.__name__)
def test_vds_subclasses_round_trip_and_map_back(cls):
    e = cls(message="m", holders=[{"pid": 1, "process": "p"}], path="E:\\", volume="{X}")
    assert errors.vds_error(e.hresult).__class__ is cls  # the code picks this class
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls
    assert (back.hresult, back.code, back.message, back.holders, back.path, back.volume) == \
        (e.hresult, e.code, "m", [{"pid": 1, "process": "p"}], "E:\\", "{X}")
    assert isinstance(e, OSError) and isinstance(e, simvol.SimvolError)


def test_structured_fields_survive_pickling():
    for e, fields in [
        (simvol.ImageInUseError("locked", "/img", pid=42), ("path", "pid")),
        (simvol.FormatError("too small", reason="too_small"), ("reason",)),
        (simvol.RegistryError("newer schema", "/root/simvol.db"), ("path",)),
        (simvol.FsOpError(2, "/a", "detail"), ("errno", "filename", "detail")),
    ]:
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e)
        assert [getattr(back, f) for f in fields] == [getattr(e, f) for f in fields]


def test_one_mapping_from_failures_to_hresults():
    in_use = simvol.VolumeInUseError(holders=[{"pid": 7}])
    assert simvol.as_vds_error(in_use) is in_use
    below = simvol.as_vds_error(simvol.ImageAccessError("missing", "/img"))
    assert isinstance(below, simvol.InternalError) and below.code == "VDS_E_INTERNAL_ERROR"
    assert "missing" in below.message
    unexpected = simvol.as_vds_error(KeyError("k"))
    assert unexpected.hresult == simvol.HRESULTS["VDS_E_INTERNAL_ERROR"]
    assert unexpected.message.startswith("internal error: KeyError")
    assert issubclass(simvol.RegistryError, simvol.SimvolError)

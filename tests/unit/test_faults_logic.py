"""simvol.mount.faults: how faults match, count and fill a volume up (pure logic; the mount tests are
tests/cli/test_faults.py)."""

from __future__ import annotations

import errno

import pytest

from simvol.mount.faults import FaultLog, FaultSet, FsFault, compile_glob, errno_value


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("*.log", "/app.log", True), ("*.log", "/deep/dir/APP.LOG", True), ("*.log", "/app.log.txt", False),
    ("db/**", "/db/a/b.txt", True), ("db/**", "/other/db/x", False), ("/logs/*.txt", "/logs/a.txt", True),
    ("/logs/*.txt", "/logs/sub/a.txt", False), ("a/**/b", "/a/b", True), ("a/**/b", "/a/x/y/b", True),
    ("data?.bin", "/x/DATA1.BIN", True), ("[x].txt", "/[x].txt", True), ("[x].txt", "/x.txt", False),
])
def test_globs_are_case_insensitive_and_component_aware(pattern: str, path: str, hit: bool) -> None:
    assert compile_glob(pattern)(path) is hit


def test_errno_names_and_numbers() -> None:
    assert errno_value("EIO") == errno.EIO == errno_value("eio") == errno_value("5") == errno_value(5)
    for bad in ("EWHAT", "", "99999", -1, True):
        with pytest.raises(ValueError):
            errno_value(bad)  # type: ignore[arg-type]


def test_after_and_count() -> None:
    fs = FaultSet([FsFault(1, "read", errno.EIO, "*.bin", after=1, count=1)], sleep=lambda s: None)
    results = []
    for _ in range(4):
        try:
            fs.check("read", "/a.bin", 0)
            results.append("ok")
        except OSError as e:
            results.append(e.errno)
    assert results == ["ok", errno.EIO, "ok", "ok"]
    fs.check("read", "/a.txt", 0)  # not matching: never counted
    assert (fs.faults[0].seen, fs.faults[0].hits) == (4, 1)


def test_after_bytes_gives_a_short_write_then_enospc() -> None:
    fs = FaultSet([FsFault(1, "write", errno.ENOSPC, after_bytes=10_000)])
    assert fs.check("write", "/f", 0, 4096) is None
    assert fs.check("write", "/f", 0, 4096) is None
    assert fs.room() == 10_000 - 8192
    assert fs.check("write", "/f", 0, 4096) == 10_000 - 8192  # the rest fits partly: a short write
    with pytest.raises(OSError) as e:
        fs.check("write", "/f", 0, 4096)
    assert e.value.errno == errno.ENOSPC and fs.room() == 0


def test_probability_is_repeatable_with_its_seed() -> None:
    def run() -> list[bool]:
        fs = FaultSet([FsFault(1, "any", errno.EIO, probability=0.3, seed=42)])
        out = []
        for _ in range(200):
            try:
                fs.check("open", "/x", 0)
                out.append(False)
            except OSError:
                out.append(True)
        return out

    first = run()
    assert first == run() and 30 < sum(first) < 90


def test_delays_sleep_and_log_every_hit(tmp_path) -> None:
    slept: list[float] = []
    log = FaultLog(str(tmp_path / "log.jsonl"))
    fs = FaultSet([FsFault(3, "mkdir", delay_ms=25)], log=log, sleep=slept.append)
    fs.check("mkdir", "/d", 0)
    assert slept == [0.025]
    assert [(e["op"], e["path"], e["errno"], e["fault"]) for e in log.read()] == [("mkdir", "/d", None, 3)]
    log.clear()
    assert log.read() == []


def test_specs_round_trip_and_bad_ones_are_refused() -> None:
    f = FsFault(7, "write", errno.ENOSPC, "*.db", after=2, count=3, delay_ms=5, after_bytes=100, persist=True)
    back = FsFault.from_dict(f.to_dict())
    assert back.to_dict() == f.to_dict() and back.to_dict()["errno"] == "ENOSPC"
    for bad in [dict(op="chmod", errno=errno.EIO), dict(op="read", errno=0), dict(op="read", errno=5, count=0),
                dict(op="read", errno=5, after_bytes=1), dict(op="read", errno=5, probability=0)]:
        with pytest.raises(ValueError):
            FsFault(1, **bad)  # type: ignore[arg-type]

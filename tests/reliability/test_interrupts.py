"""Interrupting the CLI at any instant leaves the completed operation or no trace, and says which in one line.

Each trial prepares a root, starts one ``simvol`` verb in its own session and, after a delay drawn from a seeded
generator, sends SIGINT, SIGTERM or SIGHUP to the whole process group — as a terminal's Ctrl-C or hang-up does.
The delays cover Python's start-up, the imports, the verb itself and its end. Afterwards the root must satisfy its
invariants (every registered volume readable and not FAILED, no image without a row, no mount or daemon without a
volume, ``simvol list`` without warnings), the command must have ended by the signal (or normally, when it was
already done) with one ``simvol:`` line and no traceback, and the volumes must be either exactly as before or
exactly as the verb leaves them — and the line must say which.

``SIMVOL_INTERRUPT_TRIALS`` (default 1 per verb; a campaign sets 20) and ``SIMVOL_INTERRUPT_SEED`` size a campaign.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

from simvol.mount.mountinfo import read_mounts
from simvol.service import VolumeService
from tools.campaign.crash import DEFAULT_SEED

pytestmark = [pytest.mark.fuse, pytest.mark.slow]

TRIALS = int(os.environ.get("SIMVOL_INTERRUPT_TRIALS", "1"))
SEED = int(os.environ.get("SIMVOL_INTERRUPT_SEED", str(DEFAULT_SEED + 11)))
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MAX_DELAY = 0.9  # s: past the slowest verb here (create, about 0.5 s with Python's start-up)

Snapshot = dict[str, tuple[Any, ...]]


def snapshot(root: str) -> Snapshot:
    """Each volume's id -> (status, mounted, dismount state, access paths, label), as `simvol list` reports them."""
    p = subprocess.run([sys.executable, "-m", "simvol", "--root", root, "--json", "list"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stderr == "", f"list warned: {p.stderr}"
    return {
        v["id"]: (v["status"], v["mounted"], v["dismount_state"], tuple(v["access_paths"]), v["label"])
        for v in json.loads(p.stdout)["volumes"]
    }


def assert_invariants(root: str) -> None:
    snap = snapshot(root)
    assert all(v[0] != "FAILED" for v in snap.values()), snap
    svc = VolumeService(root, create=False)
    try:
        rows = {r.id: r for r in svc.registry.volumes()}
        for r in rows.values():
            assert os.path.isfile(r.image), f"a row without its image: {r}"
        images = {os.path.join(svc.root.images, n) for n in os.listdir(svc.root.images)}
        assert images <= {r.image for r in rows.values()}, f"images without a row: {images}"
        mounts = [e for e in read_mounts() if e.is_simvol and e.mountpoint.startswith(root + os.sep)]
        assert {(e.volume_guid or "").lower() for e in mounts} <= {i.strip("{}").lower() for i in rows}, mounts
        live = {(e.volume_guid or "").lower() for e in mounts if not e.mounted_armed}
        for vid, (_status, mounted, *_rest) in snap.items():
            assert mounted == (vid.strip("{}").lower() in live), (vid, mounted, mounts)
    finally:
        svc.close()
    daemons = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
               and "simvol.mount.daemon" in " ".join(p.info["cmdline"]) and root in " ".join(p.info["cmdline"])]
    known = {v.strip("{}").lower() for v in snap}
    for d in daemons:
        line = " ".join(d.info["cmdline"]).lower()
        assert any(k in line for k in known), f"a daemon without a volume: {line}"


@dataclass
class Trial:
    """One verb: how to prepare the root (returns the arguments), and what it changes when it completes."""

    name: str
    prepare: Callable[[VolumeService, str], list[str]]
    done: Callable[[Snapshot, Snapshot], bool]


def _one(snap: Snapshot) -> tuple[str, tuple[Any, ...]]:
    assert len(snap) == 1, snap
    return next(iter(snap.items()))


def _e(svc: VolumeService, tmp: str) -> str:
    return svc.create_volume(64 << 20, letter="E").id


def with_e(*args: str) -> Callable[[VolumeService, str], list[str]]:
    """Prepare a root with one volume at E: and run ``args`` (``{}`` stands for its id)."""

    def prepare(svc: VolumeService, tmp: str) -> list[str]:
        vid = _e(svc, tmp)
        return [a.format(vid) for a in args]

    return prepare


def _same_but(before: Snapshot, after: Snapshot, **changes: Any) -> bool:
    (vid, b), (vid2, a) = _one(before), _one(after)
    want = list(b)
    for field, value in changes.items():
        want[("status", "mounted", "dismount", "paths", "label").index(field)] = value
    return vid == vid2 and a == tuple(want)


def _prep_permanent(svc: VolumeService, tmp: str) -> list[str]:
    vid = svc.create_volume(64 << 20).id
    return ["dismount", str(vid), "--permanent"]


def _prep_mount(svc: VolumeService, tmp: str) -> list[str]:
    vol = svc.create_volume(64 << 20)
    vol.dismount(permanent=True)
    return ["mount", str(vol.id)]


def _prep_attach(svc: VolumeService, tmp: str) -> list[str]:
    image = os.path.join(tmp, "outside.img")
    vol = svc.create_volume(64 << 20, image=image)
    vol.detach()
    return ["attach", image]


def _prep_detach(svc: VolumeService, tmp: str) -> list[str]:
    return ["detach", str(svc.create_volume(64 << 20, image=os.path.join(tmp, "outside.img"), letter="E").id)]


def _prep_lock(svc: VolumeService, tmp: str) -> list[str]:
    _e(svc, tmp)
    return ["lock", "E", "--", "sleep", "0.3"]


TRIALS_BY_VERB = [
    Trial("create", with_e("create", "--size", "64M", "--letter", "F", "--label", "NEW"),
          lambda b, a: len(a) == len(b) + 1 and any(v[3] == ("F:\\",) and v[4] == "NEW" for v in a.values())),
    Trial("delete", with_e("delete", "E", "--force"), lambda b, a: a == {}),
    Trial("attach", _prep_attach, lambda b, a: len(a) == 1 and _one(a)[1][:2] == ("ONLINE", True)),
    Trial("detach", _prep_detach, lambda b, a: a == {}),  # its image outside the root: detach keeps it
    Trial("dismount", with_e("dismount", "{}"), lambda b, a: _same_but(b, a, dismount="temporary", mounted=False)),
    Trial("dismount-permanent", _prep_permanent,
          lambda b, a: _same_but(b, a, status="OFFLINE", dismount="permanent", mounted=False)),
    Trial("mount", _prep_mount, lambda b, a: _same_but(b, a, status="ONLINE", dismount="none", mounted=True)),
    Trial("add-path", lambda s, t: ["add-path", str(s.create_volume(64 << 20).id), "G:"],
          lambda b, a: _same_but(b, a, paths=("G:\\",))),
    Trial("remove-path", with_e("remove-path", "{}", "E:"), lambda b, a: _same_but(b, a, paths=())),
    Trial("format", with_e("format", "{}", "--label", "FRESH"), lambda b, a: _same_but(b, a, label="FRESH")),
    Trial("down", with_e("down"), lambda b, a: _same_but(b, a, mounted=False)),
    Trial("offline", lambda s, t: ["offline", str(s.create_volume(64 << 20).id)],
          lambda b, a: _same_but(b, a, status="OFFLINE", dismount="permanent", mounted=False)),
    Trial("lock", _prep_lock, lambda b, a: _same_but(b, a)),
]

# What the command's last line says, and whether it means the verb completed.
COMPLETED = ("completed first",)
NOT_DONE = ("before anything was changed", "nothing was changed", "no volume was made", "the lock released")


def _plan() -> list[tuple[Trial, float, signal.Signals]]:
    rng = random.Random(SEED)
    return [(t, round(rng.uniform(0, MAX_DELAY), 3), rng.choice(SIGNALS)) for t in TRIALS_BY_VERB
            for _ in range(TRIALS)]


@pytest.mark.parametrize(("trial", "delay", "sig"), _plan(),
                         ids=lambda x: x.name if isinstance(x, Trial) else str(x))
def test_an_interrupted_verb_completes_or_leaves_no_trace(tmp_path, trial: Trial, delay: float, sig: signal.Signals):
    root = str(tmp_path / "root")
    try:
        with VolumeService(root) as svc:
            args = trial.prepare(svc, str(tmp_path))
        _interrupt_and_check(root, trial, args, delay, sig)
    finally:
        if os.path.isdir(root):
            with VolumeService(root, create=False) as s:
                s.destroy(force=True)
        (tmp_path / "outside.img").unlink(missing_ok=True)


def _interrupt_and_check(root: str, trial: Trial, args: list[str], delay: float, sig: signal.Signals) -> None:
    before = snapshot(root)
    proc = subprocess.Popen([sys.executable, "-m", "simvol", "--root", root, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    time.sleep(delay)
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass  # already ended: then it must have completed
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err or "init_import_site" in err, err
    after = snapshot(root)
    assert_invariants(root)
    if proc.returncode == 0:
        assert trial.done(before, after), (before, after)
        return
    if err == "" or "init_import_site" in err:
        # Ended by the signal's default action before simvol's first line ran (the interpreter's start-up):
        # nothing can have changed, and there was no simvol yet to say so.
        assert proc.returncode in (-sig, 1), (proc.returncode, err)
        assert after == before, (before, after)
        return
    assert proc.returncode == -sig, (proc.returncode, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    assert last.startswith("simvol: ") and sig.name in last, err
    assert len([ln for ln in lines if ln.startswith("simvol: ")]) == 1, err
    if any(w in last for w in COMPLETED):
        assert trial.done(before, after), (last, before, after)
    else:
        assert any(w in last for w in NOT_DONE), last
        assert after == before or (trial.name == "lock" and trial.done(before, after)), (last, before, after)


def test_interrupt_at_start_up_prints_no_traceback(tmp_path):
    """The reported case: SIGINT while simvol loads (its imports took 300 ms) ended with a traceback. The
    interpreter's own start-up, before any simvol code runs, is Python's (it may print "Fatal Python error:
    init_import_site"); from simvol's first line on, an interrupt ends the command quietly."""
    root = str(tmp_path / "root")
    for delay in (0.07, 0.1, 0.13, 0.18, 0.25):
        proc = subprocess.Popen([sys.executable, "-m", "simvol", "--root", root, "list"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        if "init_import_site" in err:
            continue  # the interpreter was still starting (a loaded machine): nothing of simvol's had run
        assert "Traceback" not in err, (delay, err)
        assert proc.returncode in (-signal.SIGINT, 1), (delay, proc.returncode, err)  # 1: no root (it completed)
        assert not os.path.exists(root)

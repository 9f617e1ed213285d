"""Programs nobody here wrote check the data path: fio's crc32c verification and a model-based exerciser.

- fio (``tools.campaign.fio``): four concurrent jobs — sequential, random with odd block sizes, mmap and
  O_DIRECT through libaio — write blocks with crc32c headers through a real mount; fio verifies them, then
  again after a safe dismount (``fsck.fat -n`` clean) and a remount; mtools reads each file from the image and
  must agree with the mount.
- fsx-like (``tools.campaign.fsx``): a separate process issues random open/read/write/truncate/mmap/rename/
  unlink calls and compares every answer with an in-memory model, with a dismount + fsck + remount between
  phases; mtools must read the model's final contents from the image.

The small settings run here; ``scripts/campaign fio|fsx`` runs the large ones (docs/reliability.md).
``SIMVOL_FIO_ROUNDS``/``SIMVOL_FSX_TRIALS``/``SIMVOL_FSX_OPS`` scale the suite's run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simvol.service import VolumeService
from tools.campaign import fio, fsx

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(shutil.which("fsck.fat") is None, reason="fsck.fat (dosfstools) is not installed"),
    pytest.mark.skipif(shutil.which("mcopy") is None, reason="mtools is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
FIO_ROUNDS = int(os.environ.get("SIMVOL_FIO_ROUNDS", "1"))
FSX_TRIALS = int(os.environ.get("SIMVOL_FSX_TRIALS", "2"))
FSX_OPS = int(os.environ.get("SIMVOL_FSX_OPS", "2000"))


@pytest.mark.skipif(not fio.have_fio(), reason="fio is not installed")
@pytest.mark.parametrize("index", range(FIO_ROUNDS))
def test_fio_verified_io_survives_a_remount(root, index):
    seed = fio.DEFAULT_SEED + index
    r = fio.run_round(root, index, seed, size_mb=8)
    assert r.ok, f"seed {seed} (replay: scripts/campaign fio --seed {seed} --rounds 1):\n" + "\n".join(r.violations)
    # Every job wrote its whole file and fio read every byte back twice: not a run that did nothing.
    assert r.written == r.verified_again == len(fio.JOBS) * 8 * fio.MiB
    assert r.mtools_files == len(fio.JOBS)


@pytest.mark.parametrize("aliases", [False, True], ids=["stored-spellings", "any-spelling"])
@pytest.mark.parametrize("index", range(FSX_TRIALS))
def test_random_calls_agree_with_the_model(root, index, aliases):
    # any-spelling: every call may spell a name (and its directory) in another case, which makes the kernel keep
    # one inode per spelling (docs/behaviour.md, "Other spellings of a name").
    seed = fsx.DEFAULT_SEED + index
    r = fsx.run_trial(root, index, seed, ops=FSX_OPS, phases=3, aliases=aliases)
    replay = f"scripts/campaign fsx --seed {seed} --trials 1 --ops {FSX_OPS}{' --aliases' if aliases else ''}"
    assert r.ok, f"seed {seed} (replay: {replay}):\n" + "\n".join(r.violations)
    assert r.phases == 3 and r.ops >= FSX_OPS - 3
    # Every kind of call was really made, and files were left for mtools to check.
    assert set(r.counts) == {name for name, _ in fsx.Exerciser.OPS}, r.counts
    assert r.files > 0


def _run_py(mount_path: str, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MP=mount_path, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, timeout=120)


@pytest.fixture
def volume(root):
    svc = VolumeService(root)
    yield svc.create_volume(64 * fsx.MiB, label="MODEL")
    svc.close()


def test_the_model_catches_a_wrong_answer(volume):
    # The exerciser must fail when the file system answers differently from the model: a file changed behind the
    # model's back is reported at the next check, with the operations that led to it.
    code = (
        "import os, sys\n"
        "from tools.campaign.fsx import Exerciser, Mismatch\n"
        "mp = os.environ['MP']\n"
        "os.makedirs(os.path.join(mp, 'sub'), exist_ok=True)\n"
        "ex = Exerciser(mp, 7, aliases=False)\n"
        "for _ in range(200): ex.step()\n"
        "ex.close_all(); ex.check_all()\n"
        "key = sorted(ex.files)[0]\n"
        "with open(os.path.join(mp, ex.files[key][0]), 'ab') as f: f.write(b'behind the back')\n"
        "try:\n"
        "    ex.check_all()\n"
        "except Mismatch as e:\n"
        "    print('caught', e)\n"
    )
    r = _run_py(volume.mount_path, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("caught op #200:"), r.stdout

"""Reliability campaigns (``scripts/campaign``): crash consistency through the mount, and damaged images.

Private to simvol's own test tooling: ``tests/reliability/test_crash_mount.py`` and
``tests/reliability/test_damaged_images.py`` run a few trials of each; ``scripts/campaign crash --trials 200``
and ``scripts/campaign damage --mutations 2000`` run the full campaigns and print a summary. The figures of
the last full runs are in ``docs/reliability.md``.

- :mod:`.crash`: a workload in another process writes through a mounted volume; the daemon is SIGKILLed at
  a random moment; after the service reconciles, every file whose ``fsync`` returned must be intact.
- :mod:`.damage`: valid images are copied and mutated (boot sector, FSInfo, FATs, directories, trailer,
  truncation, extension, zeroed ranges); each must attach, read, check, dismount and detach, or fail with a
  clear ``VdsError`` — never hang, leak a traceback, write outside the image or disturb another volume.
"""

from __future__ import annotations

"""``Host``: what :class:`VolumeService` and every :class:`Volume` of it share — the root, its registry, the
mounter — and the rules that turn them into a volume's state.

Both the service and its volumes call only the public methods here; neither knows the other's insides. Every entry
point reconciles first: what is really there (a daemon, a mount) is brought in line with the volume's state (a dead
daemon's stale mount is cleaned up and the volume mounted again; the daemon repairs the dirty image first).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ..errors import (
    ImageError,
    ObjectNotFoundError,
    ObjectStatusFailedError,
    SimvolError,
    VdsError,
)
from ..image import ImageMetadata, read_metadata
from ..interrupts import shielded
from ..mount import Access, Mounter, Presence
from ..types import VolumeFlag, VolumeState
from .registry import Registry, VolumeRow
from .root import Root

log = logging.getLogger(__name__)

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


class Host:
    """One simulated host: a root directory, the registry in it and the mounter that serves its volumes."""

    def __init__(self, root: Root, registry: Registry, mounter: Mounter, *, allow_other: bool = False) -> None:
        self.root = root
        self.registry = registry
        self.mounter = mounter
        self.allow_other = allow_other  # the service's default for volumes that did not ask

    def access(self, row: VolumeRow) -> Access:
        """Who may use the volume's mount: as it was attached, else the service's default."""
        return Access(bool(row.allow_other) or self.allow_other, row.owner_ids)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """The root-wide lock ``name`` (a volume id, ``paths`` or ``host``), shared by every process.

        What runs under it changes shared state, so interrupts wait for its end (only the wait for the lock itself
        is open to them)."""
        with self.root.lock(name), shielded():
            yield

    # ----------------------------------------------------------------- facts

    def row(self, volume_id: str) -> VolumeRow:
        row = self.registry.volume(volume_id)
        if row is None:
            raise ObjectNotFoundError(message=f"volume {{{volume_id.upper()}}} is not attached to this root")
        return row

    def metadata(self, row: VolumeRow) -> ImageMetadata | None:
        """The image's metadata, or None when the image cannot be read (the volume is then FAILED)."""
        try:
            return read_metadata(row.image)
        except (ImageError, OSError) as e:
            log.warning("cannot read the metadata of %s: %s", row.image, e)
            return None

    @staticmethod
    def state(row: VolumeRow, meta: ImageMetadata | None) -> VolumeState:
        if meta is None or row.removed:  # unreadable, or pulled out (a surprise removal) until Mount
            return VolumeState.FAILED
        if meta.flags & VolumeFlag.PERMANENTLY_DISMOUNTED:
            return VolumeState.PERMANENTLY_DISMOUNTED
        return VolumeState.TEMPORARILY_DISMOUNTED if row.temporarily_dismounted else VolumeState.MOUNTED

    @property
    def down(self) -> bool:
        """Between ``down`` and ``up``, as a host that is shut down: nothing is mounted, states stay."""
        return self.registry.host_value("down") == "1"

    def set_down(self, down: bool) -> None:
        self.registry.set_host_value("down", "1" if down else "0")

    def check_boot(self) -> None:
        """A new kernel boot id means the host restarted: temporary dismounts are forgotten (→ M)."""
        boot = _boot_id()
        with self.lock("host"):
            old = self.registry.host_value("boot_id")
            if old != boot:
                if old is not None:
                    log.info("host restarted since the last run: temporary dismounts are forgotten")
                    self.registry.clear_all_temporary()
                    self.set_down(False)
                self.registry.set_host_value("boot_id", boot)

    # ----------------------------------------------------------------- reconcile

    def reconcile(self, volume_id: str) -> VolumeState:
        """Bring one volume's reality in line with its state; the caller holds the volume's lock."""
        row = self.row(volume_id)
        meta = self.metadata(row)
        state = self.state(row, meta)
        presence = self.mounter.presence(volume_id)
        if state is VolumeState.TEMPORARILY_DISMOUNTED:
            if presence is Presence.LIVE:  # a process's access mounted it again, as Windows does
                self.registry.set_temporarily_dismounted(volume_id, False)
                return VolumeState.MOUNTED
            if presence is Presence.ARMED and not self.down:
                return state
            if presence is not Presence.ABSENT:
                self.mounter.clear(volume_id)
            if not self.down:
                try:
                    self.arm(row, meta)
                except VdsError as e:
                    log.warning("cannot arm %s for remount on access: %s", row.image, e)
            return state
        if state is VolumeState.MOUNTED:
            if presence is Presence.LIVE:
                return state
            if presence is not Presence.ARMED:
                self.mounter.clear(volume_id)
            if self.down:
                return state
            try:
                self.start(row, meta)
            except VdsError as e:
                log.warning("cannot remount %s: %s", row.image, e)
            return state
        if presence is not Presence.ABSENT:
            self.mounter.clear(volume_id)  # P and FAILED have no mount
        return state

    def reconcile_all(self) -> None:
        """Reconcile every volume and remove mounts no volume claims."""
        for row in self.registry.volumes():
            with self.lock(row.id):
                try:
                    self.reconcile(row.id)
                except ObjectNotFoundError:
                    pass
        self.mounter.sweep(r.id for r in self.registry.volumes())

    # ----------------------------------------------------------------- mount and dismount

    def start(self, row: VolumeRow, meta: ImageMetadata | None = None) -> None:
        """Mount the volume; VDS_E_OBJECT_STATUS_FAILED (with the daemon's last words) when it cannot be."""
        self._serve(row, meta, armed=False)

    def arm(self, row: VolumeRow, meta: ImageMetadata | None = None) -> None:
        """Make the volume's mount point mount it on the first access (a temporarily dismounted volume)."""
        self._serve(row, meta, armed=True)

    def _serve(self, row: VolumeRow, meta: ImageMetadata | None, *, armed: bool) -> None:
        meta = meta or self.metadata(row)
        if meta is None:
            raise ObjectStatusFailedError(message=f"cannot read the image {row.image}")
        serve = self.mounter.arm if armed else self.mounter.start
        try:
            serve(row.id, row.image, readonly=bool(meta.flags & VolumeFlag.READONLY), access=self.access(row))
        except (SimvolError, OSError) as e:
            tail = getattr(e, "log_tail", "")
            raise ObjectStatusFailedError(message=str(e) + (f"\n{tail}" if tail else "")) from e
        if self.registry.faults(row.id, "fs"):  # a new or just activated session starts with none but these
            self.push_faults(row.id)

    # ----------------------------------------------------------------- faults

    def push_faults(self, volume_id: str) -> None:
        """Arm exactly the volume's file-system faults (as the registry has them) on whatever serves it now."""
        self.mounter.set_faults(volume_id, [f.spec for f in self.registry.faults(volume_id, "fs")])

    def save_fault_counters(self, volume_id: str) -> None:
        """Copy the live counters of the volume's file-system faults into the registry (before its daemon goes)."""
        live = {d.get("id"): d for d in self.mounter.faults(volume_id) or []}
        for row in self.registry.faults(volume_id, "fs"):
            d = live.get(row.id)
            if d is not None:
                self.registry.update_fault(row.id, {**row.spec, **{k: d[k] for k in ("hits", "seen", "written")}})

    def mount(self, volume_id: str) -> None:
        """Mount and record the volume as mounted (it was T, or P with its flag just cleared)."""
        self.start(self.row(volume_id))
        self.registry.set_temporarily_dismounted(volume_id, False)

    def stop(self, volume_id: str, *, force: bool, paths: Iterable[str] = (), rearm: bool = False) -> None:
        """Dismount; returns once the image is closed. Raises VolumeInUseError unless ``force``. With ``rearm`` (a
        temporary dismount) the next access by any process mounts the volume again."""
        faulted = bool(self.registry.faults(volume_id))
        if faulted:
            self.save_fault_counters(volume_id)  # the daemon, and its counters, may go with the dismount
        self.mounter.stop(volume_id, force=force, paths=paths, rearm=rearm)
        if faulted:
            self.registry.remove_faults(volume_id, transient_only=True)  # a dismount ends what does not persist


def _boot_id() -> str:
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return ""

"""The ``simvol`` command.

Exit status: 0 for a success HRESULT, 1 for a failure HRESULT, 2 for a usage error. With ``--json`` stdout
carries exactly one JSON object, for successes and failures alike (docs/cli.md).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

from .. import __version__
from ..errors import HRESULTS, S_OK, SimvolError, VdsError, as_vds_error, code_message
from ..interrupts import shielded, unshielded
from ..mount import FS_OPS
from ..service import Volume, VolumeService
from ..types import ROLE_FLAGS
from . import output
from .signals import Interrupted, end_by, reported
from .sizes import parse_size

log = logging.getLogger("simvol.cli")

ROLES = [*ROLE_FLAGS, "no-permanent-dismount"]

# What an interrupt leaves when it cuts a verb's phase that is open to interrupts (the rest is shielded).
INTERRUPTED_OUTCOME = {
    "create": "no volume was made",
    "lock": "COMMAND was ended and the lock released",
}


class State:
    def __init__(self, root: str | None, as_json: bool, verbose: int) -> None:
        self.root = root
        self.json = as_json
        self.verbose = verbose
        self._service: VolumeService | None = None

    @property
    def service(self) -> VolumeService:
        """The root's service; a root whose directory does not exist is an error (see :meth:`creating`)."""
        if self._service is None:
            self._service = VolumeService(self.root, create=False)
        return self._service

    def creating(self) -> VolumeService:
        """The service, making the root if needed: for the verbs that give a host its first volume."""
        if self._service is None:
            self._service = VolumeService(self.root, create=True)
        return self._service


class Result:
    """What a verb produced: its HRESULT, JSON data and a human rendering."""

    def __init__(self, hresult: int = S_OK, data: dict[str, Any] | None = None,
                 human: Callable[[], None] | None = None, message: str | None = None,
                 exit_status: int | None = None) -> None:
        self.hresult = hresult
        self.data = data or {}
        self.human = human
        self.message = message  # for a failure HRESULT: what did not happen
        self.exit_status = exit_status  # instead of 0/1 (simvol lock: the command's)


def _volume_dict(vol: Volume | None) -> dict[str, Any] | None:
    if vol is None:
        return None
    try:
        return vol.to_dict()
    except SimvolError:
        return None


def verb(*, volume_on_failure: bool = False) -> Callable[[Callable[..., Result]], Callable[..., int]]:
    """Run a verb: render its Result, or its VdsError (with holders and the unchanged volume)."""

    def deco(fn: Callable[..., Result]) -> Callable[..., int]:
        @functools.wraps(fn)
        @click.pass_obj
        def wrapper(state: State, *args: Any, **kwargs: Any) -> int:
            name = click.get_current_context().info_name or fn.__name__
            cut: Interrupted | None = None
            with shielded(deliver_after=False) as held:  # the verb completes, or (interrupted) undoes itself
                try:
                    status = _run(state, fn, args, kwargs, volume_on_failure)
                except Interrupted as e:  # in a phase open to interrupts; the verb has undone its work
                    reported()
                    cut = e
                    outcome = INTERRUPTED_OUTCOME.get(name, "nothing was changed")
                    message = f"{name} interrupted by {e.signame}; {outcome}"
                    if state.json:
                        with contextlib.suppress(OSError):
                            output.emit_json(HRESULTS["HRESULT_FROM_WIN32(ERROR_CANCELLED)"], None, message)
            if cut is not None:
                end_by(cut.signum, message)
            if held:
                sig = signal.Signals(held[0]).name
                end_by(held[0], f"{sig} arrived while {name} ran; {name} completed first")
            return status

        return wrapper

    return deco


def _run(state: State, fn: Callable[..., Result], args: tuple[Any, ...], kwargs: dict[str, Any],
         volume_on_failure: bool) -> int:
    """Run a verb and render what it produced (a failure with the unchanged volume if asked); the exit status."""
    try:
        res = fn(state, *args, **kwargs)
    except click.ClickException:
        raise  # usage errors: exit 2
    except Exception as e:  # never a traceback for the user; -vv logs it
        if not isinstance(e, VdsError):
            log.debug("unexpected failure", exc_info=True)
        err = as_vds_error(e)
        data: dict[str, Any] = {}
        if err.holders or err.code == "VDS_E_DEVICE_IN_USE":
            data["holders"] = err.holders
        if isinstance(e, VdsError) and volume_on_failure and "vol" in kwargs:
            with contextlib.suppress(SimvolError):
                v = state.service.volume(kwargs["vol"])
                data["volume"] = _volume_dict(v)
        if state.json:
            output.emit_json(err.hresult, data if isinstance(e, VdsError) else None, err.message)
        else:
            output.failure(err.hresult, err.message, err.holders)
        return 1
    failed = bool(res.hresult & 0x80000000)
    if state.json:
        output.emit_json(res.hresult, res.data, (res.message or code_message(res.hresult)) if failed else None)
    else:
        if res.human:
            res.human()
        if failed:
            output.failure(res.hresult, res.message or "")
        else:
            output.success(res.hresult)
    if res.exit_status is not None:
        return res.exit_status
    return 1 if failed else 0


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _letter(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    v = value.replace("/", "\\")
    if len(v) == 1 and v.isalpha():
        return v.upper() + ":"
    if len(v) in (2, 3) and v[0].isalpha() and v[1] == ":" and v[2:] in ("", "\\"):
        return v[0].upper() + ":"
    raise click.BadParameter(f"{value!r} is not a drive letter (E, E: or E:\\)")


def _show_volume(v: dict[str, Any] | None) -> Callable[[], None]:
    return lambda: output.print_table(output.volume_details(v)) if v else None


# ====================================================================== the group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--root", type=click.Path(file_okay=False), envvar="SIMVOL_ROOT", show_envvar=True,
              help="Root directory of the simulated host (default: the platform state directory).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("-v", "--verbose", count=True, help="Log more (repeat for debug).")
@click.version_option(__version__, prog_name="simvol")
@click.pass_context
def cli(ctx: click.Context, root: str | None, as_json: bool, verbose: int) -> None:
    """Windows volume management (VDS Mount/Dismount) simulated on Linux with real FAT32 and NTFS volumes.

    VOL is a volume GUID (any form), \\\\?\\Volume{GUID}\\, a drive letter (E, E:, E:\\) or an image path.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = State(root, as_json, verbose)


def _complete_volume(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of VOL: the root's drive letters (E:) and volume ids ({GUID}). Reads the registry only; a
    root that does not exist completes nothing (and is not created)."""
    from ..service import default_root
    from ..service.registry import Registry

    root = ctx.find_root().params.get("root") or default_root()
    database = os.path.join(root, "simvol.db")
    if not os.path.isfile(database):
        return []
    try:
        registry = Registry(database)
    except Exception:  # noqa: BLE001 - completion never fails loudly
        return []
    try:
        letters = [p.display.rstrip("\\") for p in registry.paths() if p.kind == "letter"]
        ids = ["{" + r.id.upper() + "}" for r in registry.volumes()]
    finally:
        registry.close()
    prefix = incomplete.upper()
    return [CompletionItem(c) for c in [*letters, *ids] if c.upper().startswith(prefix)]


# ====================================================================== create / attach / detach / delete


def _access_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Who may use the volume's mount; kept for every later mount of it."""
    fn = click.option("--owner", default=None, metavar="UID[:GID]",
                      help="Whose the files are (root only; a user name works too); lets that user in.")(fn)
    return click.option("--allow-other", is_flag=True,
                        help="Every user may enter the mount (root, or user_allow_other in /etc/fuse.conf).")(fn)


@cli.command()
@click.option("--size", required=True, callback=_size, help="Volume size: 64M, 8G, 1T or bytes.")
@click.option("--fs", "filesystem", default="FAT32", show_default=True,
              help="File system: FAT32 (simvol's own) or NTFS (ntfs-3g).")
@click.option("--label", default=None, help="Volume label (FAT32: 11 characters, FAT rules; NTFS: 32).")
@click.option("--letter", callback=_letter, default=None, help="Drive letter: E, E: or E:\\.")
@click.option("--ntfs-native", is_flag=True,
              help="NTFS: ntfs-3g's own semantics at its full speed (names case-sensitive, open files deletable, "
                   "the read-only attribute not enforced) instead of Windows'.")
@click.option(
    "--image", type=click.Path(dir_okay=False), default=None, help="Image path (default ROOT/images/GUID.img)."
)
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), help="Simulated role (repeatable).")
@click.option("--unit", "cluster_size", default="0", callback=lambda c, p, v: 0 if v in (None, "0") else _size(c, p, v),
              help="Allocation unit (cluster size); 0 = Windows default.")
@click.option("--from", "files", type=click.Path(file_okay=False), default=None,
              help="Fill the new volume with this host directory's tree.")
@_access_options
@verb()
def create(state: State, size: int, filesystem: str, label: str | None, letter: str | None, ntfs_native: bool,
           image: str | None, roles: tuple[str, ...], cluster_size: int, files: str | None, allow_other: bool,
           owner: str | None) -> Result:
    """Create a FAT32 or NTFS volume; it arrives mounted, like a new Windows volume."""
    vol = state.creating().create_volume(size, filesystem, label=label, image=image, letter=letter, roles=roles,
                                      cluster_size=cluster_size, files=files, allow_other=allow_other or None,
                                      owner=owner, ntfs_native=ntfs_native)
    v = vol.to_dict()
    return Result(S_OK, {"volume": v}, _show_volume(v))


@cli.command()
@click.argument("image", type=click.Path(dir_okay=True))
@click.option("--adopt", is_flag=True,
              help="Take a plain FAT32 (mkfs.fat, mtools) or NTFS (mkntfs) image: add simvol's trailer.")
@click.option("--new-id", is_flag=True, help="Give the image a fresh volume GUID (a copy beside its original).")
@click.option("--letter", callback=_letter, default=None, help="Drive letter (default: the one it had here before).")
@_access_options
@verb()
def attach(state: State, image: str, adopt: bool, new_id: bool, letter: str | None, allow_other: bool,
           owner: str | None) -> Result:
    """Attach an existing image; it arrives mounted unless it is permanently dismounted."""
    v = state.creating().attach(image, adopt=adopt, new_id=new_id, letter=letter, allow_other=allow_other or None,
                                owner=owner).to_dict()
    return Result(S_OK, {"volume": v}, _show_volume(v))


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@click.option("--force", is_flag=True, help="Dismount even if in use (handles go stale).")
@verb(volume_on_failure=True)
def detach(state: State, vol: str, force: bool) -> Result:
    """Dismount, remove the access paths and forget the volume; the image stays."""
    state.service.volume(vol).detach(force=force)
    return Result(S_OK, {}, lambda: output.say("detached"))


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@click.option("--force", is_flag=True, help="Dismount even if in use (handles go stale).")
@verb(volume_on_failure=True)
def delete(state: State, vol: str, force: bool) -> Result:
    """Detach the volume and delete its image."""
    state.service.volume(vol).delete(force=force)
    return Result(S_OK, {}, lambda: output.say("deleted"))


# ====================================================================== queries


@cli.command(name="list")
@verb()
def list_(state: State) -> Result:
    """List the attached volumes."""
    svc = state.service
    vols = [v.to_dict() for v in svc.volumes()]

    def human() -> None:
        output.say(f"root {svc.root.path}")
        output.print_table(output.volumes_table(vols))

    return Result(S_OK, {"root": svc.root.path, "volumes": vols}, human)


@cli.command()
@verb()
def info(state: State) -> Result:
    """What simvol would use here: the root, the version, the registry, FUSE (and why not), rootless or not.

    Never creates the root and never mounts anything.
    """
    from ..mount.probe import fuse_unavailable_reason
    from ..service import default_root

    root = os.path.abspath(state.root or default_root())
    registry = os.path.join(root, "simvol.db")
    reason = fuse_unavailable_reason()
    data = {
        "root": root,
        "root_exists": os.path.isdir(root),
        "version": __version__,
        "registry": registry if os.path.exists(registry) else None,
        "fuse": {"available": reason is None, "reason": reason, "libfuse": _libfuse_version()},
        "rootless": os.geteuid() != 0,
    }

    def human() -> None:
        fuse = "available" if reason is None else f"unavailable: {reason}"
        for key, value in (
            ("root", root + ("" if data["root_exists"] else " (does not exist yet: create or attach makes it)")),
            ("version", __version__),
            ("registry", data["registry"] or "-"),
            ("fuse", f"{fuse} (libfuse {data['fuse']['libfuse'] or '?'})"),  # type: ignore[index]
            ("rootless", "yes" if data["rootless"] else "no (running as root)"),
        ):
            output.say(f"{key:<9} {value}")

    return Result(S_OK, data, human)


def _libfuse_version() -> str | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("fuse3")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.fuse_pkgversion.restype = ctypes.c_char_p
        version = lib.fuse_pkgversion()
    except (OSError, AttributeError):
        return name
    return version.decode() if isinstance(version, bytes) else name


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@verb()
def show(state: State, vol: str) -> Result:
    """Show one volume."""
    v = state.service.volume(vol).to_dict()
    return Result(S_OK, {"volume": v}, _show_volume(v))


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@verb()
def paths(state: State, vol: str) -> Result:
    """QueryAccessPaths: drive letter first, then mount folders."""
    p = state.service.volume(vol).query_access_paths()
    return Result(S_OK, {"access_paths": p}, lambda: output.say("\n".join(p) if p else "no access paths"))


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@verb()
def holders(state: State, vol: str) -> Result:
    """Processes holding the volume (open files, cwd, root, memory maps)."""
    h = state.service.volume(vol).holders()
    return Result(S_OK, {"holders": h},
                  lambda: output.print_table(output.holders_table(h)) if h else output.say("no holders"))


@cli.command()
@click.argument("winpath")
@click.option("--must-exist", is_flag=True, help="Fail unless the whole path exists (else: where it would be).")
@verb()
def resolve(state: State, winpath: str, must_exist: bool) -> Result:
    """The host path of a Windows path (E:\\dir\\f.txt, \\\\?\\Volume{…}\\f); remounts if needed.

    Existing components come back in their spelling on disk, missing ones as given: the path to write a new file to.
    """
    p = state.service.resolve(winpath, must_exist=must_exist)
    return Result(S_OK, {"path": p, "exists": os.path.lexists(p)}, lambda: output.say(p))


@cli.command()
@click.argument("winpath")
@click.option("-p", "--parents", "exist_ok", is_flag=True, help="No error if the folder exists (like mkdir -p).")
@verb()
def mkdir(state: State, winpath: str, exist_ok: bool) -> Result:
    """Make a folder by its Windows path (C:\\mnt\\backup, E:\\out), with the folders on the way, as cmd's mkdir.

    On C: it is made in the root's drive-C directory (a mount folder for add-path); on a volume, inside it.
    """
    p = state.service.mkdir(winpath, exist_ok=exist_ok)
    return Result(S_OK, {"path": winpath, "host_path": p}, lambda: output.say(p))


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@click.option("--repair", is_flag=True, help="Fix what is safe (the volume must be dismounted).")
@verb(volume_on_failure=True)
def check(state: State, vol: str, repair: bool) -> Result:
    """Check the file system like fsck.fat; --repair fixes what is safe."""
    v = state.service.volume(vol)
    if output.is_terminal() and not state.json:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("checking", total=4)
            problems = v.check(
                repair=repair, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    else:
        problems = v.check(repair=repair)

    def human() -> None:
        if not problems:
            output.say("clean")
        for p in problems:
            output.say(f"{p['kind']:15} {p['path']}: {p['detail']}" + (" [repaired]" if p["repaired"] else ""))

    return Result(S_OK, {"problems": problems}, human)


# ====================================================================== VDS operations


def _after(state: State, vol: Volume, hr: int = S_OK) -> Result:
    v = vol.to_dict()
    return Result(hr, {"volume": v}, _show_volume(v))


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@verb(volume_on_failure=True)
def mount(state: State, vol: str) -> Result:
    """IVdsVolumeMF::Mount."""
    v = state.service.volume(vol)
    return _after(state, v, v.mount())


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@click.option("--force", is_flag=True, help="bForce: dismount even if in use; open handles go stale.")
@click.option("--permanent", is_flag=True, help="bPermanent: take the volume offline until Mount or a new path.")
@verb(volume_on_failure=True)
def dismount(state: State, vol: str, force: bool, permanent: bool) -> Result:
    """IVdsVolumeMF::Dismount(bForce, bPermanent)."""
    v = state.service.volume(vol)
    return _after(state, v, v.dismount(force=force, permanent=permanent))


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@verb(volume_on_failure=True)
def offline(state: State, vol: str) -> Result:
    """IVdsVolumeMF3::OfflineVolume."""
    v = state.service.volume(vol)
    return _after(state, v, v.offline())


@cli.command()
@click.argument("vol", shell_complete=_complete_volume)
@click.option("--dismount", is_flag=True, help="Dismount the volume inside the lock (the image is free for raw reads).")
@click.option("--timeout", type=float, default=0, show_default=True, help="End lock and COMMAND after S s (0: never).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@verb(volume_on_failure=True)
def lock(state: State, vol: str, dismount: bool, timeout: float, command: tuple[str, ...]) -> Result:
    """FSCTL_LOCK_VOLUME: run COMMAND while holding the volume lock; exit with COMMAND's status.

    Only COMMAND and its children may use the volume meanwhile; every other process gets EACCES. Refused with
    VDS_E_DEVICE_IN_USE while another process holds the volume. Write `--` before COMMAND.
    """
    if timeout < 0:
        raise click.BadParameter("must be >= 0", param_hint="--timeout")
    if command[:1] == ("--",):
        command = command[1:]
    if not command:
        raise click.UsageError("a COMMAND to run under the lock is needed: simvol lock VOL -- COMMAND [ARG...]")
    v = state.service.volume(vol)
    with v.lock(dismount=dismount):
        # With --json, stdout carries one object after COMMAND ends: COMMAND's own output goes to stderr.
        try:
            proc = subprocess.Popen(list(command), stdout=sys.stderr if state.json else None)
        except OSError as e:
            raise click.UsageError(f"cannot run {command[0]!r}: {e.strerror or e}") from None
        try:
            with unshielded():  # COMMAND may run for hours: an interrupt ends it (below) and the lock
                status = proc.wait(timeout or None)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the lock ends at the timeout; so does what it protected
            try:
                status = proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
        except BaseException:
            proc.kill()  # interrupted: the lock must not end while COMMAND still runs unprotected
            proc.wait()
            raise
    status = status if status >= 0 else 128 - status  # killed by a signal: as a shell reports it
    v2 = v.to_dict()
    return Result(S_OK, {"exit_status": status, "volume": v2}, exit_status=status)


@cli.command()
@click.option("--force", is_flag=True, help="Dismount volumes even in use (their open handles go stale).")
@verb()
def destroy(state: State, force: bool) -> Result:
    """Dismount everything, end every daemon and delete the root (never descending into a mount).

    Images kept outside the root stay. Refused with VDS_E_DEVICE_IN_USE while a volume is in use, unless --force.
    """
    root = state.service.root.path
    state.service.destroy(force=force)
    return Result(S_OK, {"root": root, "destroyed": True}, lambda: output.say(f"destroyed {root}"))


# ====================================================================== faults


@cli.group()
def fault() -> None:
    """Faults on purpose: failing or slow file-system calls, a volume that fills up, a pulled disk, VDS methods
    that return an error (docs/faults.md)."""


@fault.command(name="add")
@click.argument("vol", shell_complete=_complete_volume)
@click.option("--op", type=click.Choice(FS_OPS, case_sensitive=False), help="File-system operation to fault.")
@click.option("--errno", "errno_name", metavar="NAME", help="errno the call fails with: EIO, ENOSPC, EACCES, …")
@click.option("--path", "pattern", metavar="GLOB", help="Paths inside the volume, case-insensitive (*.log, db/**).")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True, help="Let N matching calls through.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Hit at most N times (default: no limit).")
@click.option("--delay-ms", type=click.IntRange(min=0), default=0, help="Delay matching calls by MS milliseconds.")
@click.option("--after-bytes", type=click.IntRange(min=0), default=None,
              help="With --op write: the volume fills up after B more bytes (ENOSPC; df agrees).")
@click.option("--probability", type=click.FloatRange(0, 1, min_open=True), default=None, help="Hit at random.")
@click.option("--seed", type=int, default=None, help="Seed for --probability (repeatable runs).")
@click.option("--method", default=None, help="VDS method to fault instead: Dismount, Mount, Format, …")
@click.option("--hresult", default=None, help="With --method: the code it returns (name or number).")
@click.option("--holder", type=click.IntRange(min=1), default=None, help="With --method: a pid named as holder.")
@click.option("--persist", is_flag=True, help="Outlive dismounts (default: the next dismount ends it).")
@verb(volume_on_failure=False)
def fault_add(state: State, vol: str, op: str | None, errno_name: str | None, pattern: str | None, after: int,
              count: int | None, delay_ms: int, after_bytes: int | None, probability: float | None, seed: int | None,
              method: str | None, hresult: str | None, holder: int | None, persist: bool) -> Result:
    """Arm a fault on VOL: --op (a file-system call) or --method (a VDS method)."""
    v = state.service.volume(vol)
    if method is not None:
        if op is not None or hresult is None:
            raise click.UsageError("--method needs --hresult (and takes no --op)")
        f = v.faults.add_method(method, hresult, count=count or 1, holder=holder, persist=persist)
    else:
        if op is None:
            raise click.UsageError("say which calls to fault: --op OP (or --method NAME)")
        if errno_name is None and not delay_ms and after_bytes is None:
            raise click.UsageError("a fault needs --errno, --delay-ms or --after-bytes")
        f = v.faults.add(op, errno_name, path=pattern, after=after, count=count, delay_ms=delay_ms,
                         after_bytes=after_bytes, probability=probability, seed=seed, persist=persist)
    data = dict(f)
    return Result(S_OK, {"fault": data}, lambda: output.say(f"fault {data['id']} armed"))


@fault.command(name="list")
@click.argument("vol", shell_complete=_complete_volume)
@verb()
def fault_list(state: State, vol: str) -> Result:
    """The faults armed on VOL, with their hits so far."""
    faults = [dict(f) for f in state.service.volume(vol).faults.list()]
    return Result(S_OK, {"faults": faults}, lambda: output.print_table(output.faults_table(faults)))


@fault.command(name="clear")
@click.argument("vol", shell_complete=_complete_volume)
@click.argument("fault_id", metavar="[ID]", type=int, required=False)
@verb()
def fault_clear(state: State, vol: str, fault_id: int | None) -> Result:
    """Remove fault ID, or every fault (and the log) of VOL."""
    n = state.service.volume(vol).faults.clear(fault_id)
    return Result(S_OK, {"cleared": n}, lambda: output.say(f"{n} fault(s) cleared"))


@fault.command(name="log")
@click.argument("vol", shell_complete=_complete_volume)
@verb()
def fault_log(state: State, vol: str) -> Result:
    """Every hit so far: time, pid, process, op, path, errno."""
    entries = state.service.volume(vol).faults.log()
    return Result(S_OK, {"log": entries}, lambda: output.print_table(output.fault_log_table(entries)))


@fault.command(name="surprise-removal")
@click.argument("vol", shell_complete=_complete_volume)
@verb(volume_on_failure=True)
def fault_surprise_removal(state: State, vol: str) -> Result:
    """Pull the disk: the daemon dies, open handles fail, VOL is FAILED until `simvol mount`."""
    v = state.service.volume(vol)
    v.faults.surprise_removal()
    return _after(state, v)


@cli.command(name="add-path")
@click.argument("vol", shell_complete=_complete_volume)
@click.argument("path")
@verb(volume_on_failure=True)
def add_path(state: State, vol: str, path: str) -> Result:
    """IVdsVolumeMF::AddAccessPath: a drive letter (E:) or an empty folder (C:\\mnt\\data, /host/dir)."""
    v = state.service.volume(vol)
    return _after(state, v, v.add_access_path(path))


@cli.command(name="remove-path")
@click.argument("vol", shell_complete=_complete_volume)
@click.argument("path")
@click.option("--force", is_flag=True, help="bForce: remove a drive letter even if the volume is in use.")
@verb(volume_on_failure=True)
def remove_path(state: State, vol: str, path: str, force: bool) -> Result:
    """IVdsVolumeMF::DeleteAccessPath."""
    v = state.service.volume(vol)
    return _after(state, v, v.delete_access_path(path, force=force))


@cli.command(name="format")
@click.argument("vol", shell_complete=_complete_volume)
@click.option("--fs", "filesystem", default="FAT32", show_default=True, help="FAT32 or NTFS.")
@click.option("--label", default=None)
@click.option("--unit", default="0", help="Allocation unit in bytes (512 … 64K); 0 = default.")
@click.option("--force", is_flag=True, help="Format even if in use (handles go stale).")
@click.option("--full", is_flag=True, help="Not a quick format: also return the data region to the host.")
@click.option("--compress", is_flag=True, help="Compress the new volume (NTFS with clusters of at most 4 KiB; "
              "otherwise VDS_E_COMPRESSION_NOT_SUPPORTED).")
@verb(volume_on_failure=True)
def format_(state: State, vol: str, filesystem: str, label: str | None, unit: str, force: bool, full: bool,
            compress: bool) -> Result:
    """IVdsVolumeMF::Format (FAT32 or NTFS)."""
    try:
        unit_bytes = 0 if unit in ("0", "") else parse_size(unit)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--unit") from None
    v = state.service.volume(vol)
    ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if output.is_terminal() and not state.json:
        from rich.console import Console

        ctx = Console(stderr=True).status("formatting…")
    with ctx:
        hr = v.format(filesystem, label, unit_bytes, force, not full, compress)
    return _after(state, v, hr)


# ====================================================================== host


@cli.command()
@verb()
def up(state: State) -> Result:
    """Mount every attached volume that is not permanently dismounted (as at boot)."""
    vols = [v.to_dict() for v in state.service.up()]
    show = lambda: output.print_table(output.volumes_table(vols))  # noqa: E731
    # Never 0 when the operation did not fully happen: a volume that should be up but is not fails the verb.
    missing = [v["id"] for v in vols if v["dismount_state"] != "permanent" and not v["mounted"]]
    if missing:
        return Result(HRESULTS["VDS_E_OBJECT_STATUS_FAILED"], {"volumes": vols}, show,
                      message=f"could not mount {', '.join(missing)}")
    return Result(S_OK, {"volumes": vols}, show)


@cli.command()
@click.option("--force", is_flag=True, help="Dismount even volumes in use.")
@verb()
def down(state: State, force: bool) -> Result:
    """Dismount every volume, as at host shutdown (states are kept; `up` brings them back)."""
    vols = [v.to_dict() for v in state.service.down(force=force)]
    return Result(S_OK, {"volumes": vols}, lambda: output.print_table(output.volumes_table(vols)))


# ====================================================================== entry point


def globals_first(args: list[str]) -> list[str]:
    """The global options (``--root``, ``--json``, ``-v``) wherever they are written — ``simvol list --json``, as
    lsblk and findmnt take ``--json`` anywhere — moved in front of the verb. Nothing after ``--`` (the command of
    ``simvol lock``) is touched."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a in ("--json", "--verbose") or (len(a) > 1 and a[0] == "-" and a[1:] == "v" * (len(a) - 1)):
            front.append(a)
        elif a == "--root" and i + 1 < len(args):
            front += [a, args[i + 1]]
            i += 1
        elif a.startswith("--root="):
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so the interpreter's last flush cannot fail loudly (Python's advice
    for a closed pipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = globals_first(list(sys.argv[1:] if argv is None else argv))
    as_json = "--json" in args
    try:
        rv = cli.main(args=args, prog_name="simvol", standalone_mode=False)
    except OSError as e:
        if e.errno not in (errno.EPIPE, errno.EIO):
            raise
        # Our output has nowhere to go (a closed pipe, a terminal that hung up); the verb itself ran.
        _silence_output()
        return 1
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        return 1
    except click.UsageError as e:
        if as_json:
            output.emit_json(HRESULTS["E_INVALIDARG"], None, e.format_message())
        else:
            e.show()
        return 2
    except click.ClickException as e:
        if as_json:
            output.emit_json(HRESULTS["E_INVALIDARG"], None, e.format_message())
        else:
            e.show()
        return 2
    return rv if isinstance(rv, int) else 0


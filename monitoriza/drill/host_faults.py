"""Faults on the host itself: killing a service's processes, filling its disk.

Pure cores (which processes may be killed, which playbook step restarts them, how big the
ballast must be) are kept apart from the thin I/O that uses them, and every refusal names
its reason and its fix.

Safety: a process is a victim only if it matches the service's process probe exactly as the
probe counts it (``process_name`` and, when set, ``cmdline_contains``), and never PID 1, this
process or any of its ancestors. A drill does not kill what it cannot restart: the service
needs a playbook with a ``command`` step. The ballast is created exclusively (never through
a file or link that is already there) and removed whatever happens while it is written.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from monitoriza.config.schema import CommandAction, HostProbe, ProcessProbe, Service
from monitoriza.drill.injection import InjectionError, InjectionRefused, RestoreError
from monitoriza.exporter.probes.process import _matches as probe_matches
from monitoriza.healing.action_checks import PreparedCommand
from monitoriza.healing.executors import run_command
from monitoriza.healing.placeholders import ActionContext, PlaceholderError, render

BALLAST_NAME = ".monitoriza-drill-ballast"
#: How far above ``health.saturation_warn`` the ballast takes the disk.
BALLAST_MARGIN = 0.02
CHUNK_BYTES = 8 * 1024 * 1024
#: Seconds to wait for killed processes to go, and for restarted ones to appear.
KILL_WAIT_SECONDS = 5.0
RESTART_WAIT_SECONDS = 10.0
#: The alertname a restart command's ``{alertname}`` placeholder gets.
DRILL_ALERTNAME = "MonitorizaDrill"

DiskUsage = Callable[[str], Any]  # psutil.disk_usage: .used, .free


# -- process_kill ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SeenProcess:
    """A process as the process table showed it."""

    pid: int
    name: str
    cmdline: tuple[str, ...]


def victims(seen: Iterable[SeenProcess], spec: ProcessProbe, protected: set[int]) -> list[int]:
    """PIDs of the processes the probe counts for the service, less the protected ones."""
    return sorted(p.pid for p in seen if p.pid not in protected
                  and probe_matches({"name": p.name, "cmdline": list(p.cmdline)}, spec))


def protected_pids() -> set[int]:
    """PID 1, this process and its ancestors: a drill never kills its own road home."""
    me = psutil.Process()
    return {1, me.pid, *(parent.pid for parent in me.parents())}


def restart_step(service_name: str, service: Service) -> tuple[list[str], float] | None:
    """The argv and timeout of the first ``command`` step of the service's playbooks that
    needs no alert label (a drill has no alert to fill ``{label.X}`` from)."""
    context = ActionContext(service_name, DRILL_ALERTNAME, {})
    for book in service.healing:
        for step in book.steps:
            if not isinstance(step, CommandAction):
                continue
            try:
                return [render(arg, context) for arg in step.argv], step.timeout
            except PlaceholderError:
                continue
    return None


def process_probe_of(details: dict[str, Any]) -> ProcessProbe:
    return ProcessProbe(kind="process", process_name=details["process_name"],
                        cmdline_contains=details["cmdline_contains"])


def process_details(service_name: str, service: Service) -> dict[str, Any]:
    """What a process_kill of the service will do; InjectionRefused when it may not."""
    probe = next((p for p in service.probes if isinstance(p, ProcessProbe)), None)
    if probe is None:
        raise InjectionRefused(f"{service_name} has no process probe: a drill cannot tell "
                               "which processes are the service's")
    step = restart_step(service_name, service)
    if step is None:
        raise InjectionRefused(f"{service_name} has no playbook with a command step: a drill "
                               "will not kill what it cannot restart")
    argv, timeout = step
    details = {"process_name": probe.process_name, "cmdline_contains": probe.cmdline_contains,
               "restart_argv": argv, "restart_timeout": timeout}
    if not running(details):
        raise InjectionRefused(f"{service_name}: no process {_described(details)} is running; "
                               "start it first (a drill starts from a healthy estate)")
    return details


def _described(details: dict[str, Any]) -> str:
    text = str(details["process_name"])
    if details.get("cmdline_contains"):
        text += f" with {details['cmdline_contains']!r} in its command line"
    return text


def _matching(details: dict[str, Any]) -> list[psutil.Process]:
    """The service's processes in one walk of the process table (protected ones excluded)."""
    # A zombie is dead already: it neither needs killing nor counts as running.
    table = {proc.pid: proc for proc in psutil.process_iter(["name", "cmdline", "status"])
             if proc.info.get("status") != psutil.STATUS_ZOMBIE}
    seen = [SeenProcess(pid, proc.info.get("name") or "", tuple(proc.info.get("cmdline") or ()))
            for pid, proc in table.items()]
    return [table[pid] for pid in victims(seen, process_probe_of(details), protected_pids())]


def running(details: dict[str, Any]) -> list[int]:
    """PIDs of the service's processes running now (protected ones excluded)."""
    return [proc.pid for proc in _matching(details)]


def kill_processes(details: dict[str, Any]) -> list[int]:
    """SIGKILL every matching process and wait until they are gone; the PIDs killed."""
    matching = _matching(details)
    if not matching:
        raise InjectionError(f"no process {_described(details)} is running any more")
    killed, denied = [], []
    for process in matching:
        # The Process objects of the same walk: psutil refuses a PID reused since then.
        try:
            process.send_signal(signal.SIGKILL)
            killed.append(process)
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            denied.append(process.pid)
    psutil.wait_procs(killed, timeout=KILL_WAIT_SECONDS)
    if denied:
        raise InjectionError(f"not allowed to kill PID {', '.join(map(str, denied))} "
                             f"({_described(details)}); killed {len(killed)} other(s)")
    return [p.pid for p in killed]


def restore_processes(details: dict[str, Any]) -> str:
    """Run the restart argv when none of the service's processes runs; idempotent."""
    what = _described(details)
    if running(details):
        return f"process {what} is running: nothing to do"
    argv = [str(arg) for arg in details["restart_argv"]]
    ok, detail = run_command(PreparedCommand(argv, float(details["restart_timeout"])))
    if not ok:
        raise RestoreError(f"restarting {what} with {argv}: {detail}")
    end = time.monotonic() + RESTART_WAIT_SECONDS
    while not (pids := running(details)):
        if time.monotonic() >= end:
            raise RestoreError(f"ran {argv} ({detail}) but no process {what} runs "
                               f"{RESTART_WAIT_SECONDS:g}s later")
        time.sleep(0.1)
    return f"process {what} restarted with {argv}: PID {', '.join(map(str, pids))}"


# -- disk_fill -------------------------------------------------------------------------------

def ballast_bytes(used: int, free: int, saturation_warn: float) -> int:
    """Bytes to write so that ``used / (used + free)`` (the host probe's ratio, like df)
    reaches ``saturation_warn`` + 2 %. At most 0 when the disk is already there."""
    usable = used + free
    # Rounded first so float noise (0.82 * 1000 = 820.0000000000001) adds no byte.
    return math.ceil(round((saturation_warn + BALLAST_MARGIN) * usable, 6)) - used


def disk_fill_details(service_name: str, service: Service, saturation_warn: float,
                      max_fill_bytes: int,
                      disk_usage: DiskUsage = psutil.disk_usage) -> dict[str, Any]:
    """What a disk_fill of the service will write; InjectionRefused when it may not.
    ``disk_usage`` is a seam: a test cannot make a real disk nearly full."""
    probe = next((p for p in service.probes if isinstance(p, HostProbe) and p.disk_paths), None)
    if probe is None:
        raise InjectionRefused(f"{service_name} has no host probe with a disk path: a drill "
                               "cannot tell which disk to fill")
    disk_path = probe.disk_paths[0]
    try:
        usage = disk_usage(disk_path)
    except OSError as exc:
        raise InjectionRefused(f"{service_name}: cannot read the usage of {disk_path}: "
                               f"{exc.strerror or exc}") from None
    target = saturation_warn + BALLAST_MARGIN
    need = ballast_bytes(int(usage.used), int(usage.free), saturation_warn)
    ratio = usage.used / max(usage.used + usage.free, 1)
    if need <= 0:
        raise InjectionRefused(f"{service_name}: {disk_path} is already {ratio:.1%} used, at or "
                               f"above the {target:.0%} a drill fills to: free space first")
    if need > usage.free:
        raise InjectionRefused(f"{service_name}: filling {disk_path} to {target:.0%} needs "
                               f"{need} bytes, more than the {usage.free} free")
    if need > max_fill_bytes:
        raise InjectionRefused(f"{service_name}: filling {disk_path} from {ratio:.1%} to "
                               f"{target:.0%} needs {need} bytes, more than the limit of "
                               f"{max_fill_bytes}: raise the limit or lower "
                               "health.saturation_warn")
    return {"disk_path": disk_path, "path": str(Path(disk_path) / BALLAST_NAME),
            "bytes": need, "target_ratio": target}


def write_ballast(details: dict[str, Any]) -> int:
    """Write the ballast in fsynced chunks; the bytes written. On any error it is removed."""
    path, size = str(details["path"]), int(details["bytes"])
    try:
        # O_EXCL: never write through a file or symlink that someone put there.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise InjectionError(f"{path} exists already: restore the earlier drill first "
                             "(or delete it)") from None
    except OSError as exc:
        raise InjectionError(f"cannot create {path}: {exc.strerror or exc}") from None
    # Random, not zeros: a compressing or deduplicating filesystem would store zeros for free.
    chunk = memoryview(os.urandom(min(CHUNK_BYTES, size)))
    written = 0
    try:
        while written < size:
            written += os.write(fd, chunk[: size - written])
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        Path(path).unlink(missing_ok=True)
        raise InjectionError(f"writing {path} failed after {written} bytes "
                             f"({exc.strerror or exc}); the ballast was removed") from None
    os.close(fd)
    return written


def remove_ballast(details: dict[str, Any]) -> str:
    """Delete the ballast; idempotent."""
    path = Path(str(details["path"]))
    try:
        size = path.lstat().st_size
        path.unlink()
    except FileNotFoundError:
        return f"no ballast at {path}: nothing to do"
    except OSError as exc:
        raise RestoreError(f"cannot delete the ballast {path}: {exc.strerror or exc}") from None
    return f"ballast {path} ({size} bytes) deleted"

"""Process probe: is a named process running, and how much memory and how many files it holds.

For services that do not run in containers. Matching is by process name and, optionally, a
substring of the command line, so that e.g. one of several ``java`` processes can be told
apart. All matches are summed: a pre-forking server (one master, N workers) is one service.

Processes come and go while the table is walked, so a process that vanishes between being
listed and being read is skipped rather than failing the probe. A process the exporter may
not read (another user's open files) is still counted, but its unreadable figure is left out
of the sums and the message says so. There is no shared state between runs, so the runner is
a plain function.
"""

from __future__ import annotations

import functools

import psutil

from monitoriza.config.schema import ProcessProbe
from monitoriza.exporter.probes.base import Deadline, Measurement, ProbeOutcome, ProbeRunner


def _matches(info: dict[str, object], spec: ProcessProbe) -> bool:
    if info.get("name") != spec.process_name:
        return False
    if spec.cmdline_contains is None:
        return True
    # cmdline is None when it may not be read, and empty for kernel threads and zombies.
    cmdline = info.get("cmdline") or []
    joined = " ".join(str(part) for part in cmdline) if isinstance(cmdline, list) else ""
    return spec.cmdline_contains in joined


def run(spec: ProcessProbe, deadline: Deadline) -> ProbeOutcome:
    """Find the matching processes and sum their resident memory and open files."""
    probe = (("probe", spec.name or spec.kind),)
    count = rss = fds = 0
    unreadable = 0
    for proc in psutil.process_iter(["name", "cmdline"]):
        # A full process table can take a while on a busy host; stop when out of time.
        if deadline.expired():
            return ProbeOutcome.failed(
                "timeout", f"deadline passed while scanning processes for {spec.process_name}"
            )
        if not _matches(proc.info, spec):
            continue
        try:
            memory = proc.memory_info().rss
        except psutil.NoSuchProcess:  # includes ZombieProcess: it exited while we looked
            continue
        except psutil.AccessDenied:
            memory = None
        try:
            files: int | None = proc.num_fds()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            files = None
        count += 1
        if memory is None or files is None:
            unreadable += 1
        rss += memory or 0
        fds += files or 0

    description = spec.process_name + (
        f" with {spec.cmdline_contains!r} in its command line" if spec.cmdline_contains else ""
    )
    if count == 0:
        return ProbeOutcome.failed(
            "not_found",
            f"no process named {description} is running",
            measurements=(Measurement("monitoriza_process_instances", probe, 0.0),),
        )

    # Ratios are not clamped: a process over its limit is reported as such, above 1.
    utilization: dict[str, float] = {}
    if spec.max_rss_bytes is not None:
        utilization["memory"] = rss / spec.max_rss_bytes
    if spec.max_open_files is not None:
        utilization["open_files"] = fds / spec.max_open_files
    message = f"{count} process(es) {description}: {rss} bytes resident, {fds} open files"
    if unreadable:
        message += f" ({unreadable} could not be fully read: access denied)"
    return ProbeOutcome(
        success=True,
        message=message,
        utilization=utilization,
        measurements=(
            Measurement("monitoriza_process_instances", probe, float(count)),
            Measurement("monitoriza_process_resident_memory_bytes", probe, float(rss)),
            Measurement("monitoriza_process_open_files", probe, float(fds)),
        ),
    )


def create(spec: ProcessProbe) -> ProbeRunner:
    """A runner for ``spec``; stateless, so a partial of :func:`run`."""
    return functools.partial(run, spec)

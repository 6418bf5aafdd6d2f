"""Host probe: CPU, memory and disk use of the machine the exporter runs on.

CPU use is a rate, so it needs two samples. ``psutil.cpu_percent(interval=None)`` keeps its
previous sample per *thread*, and the scheduler runs probes on whichever worker thread is
free, so its answer would often cover an arbitrary or empty interval. The runner keeps its own
previous ``cpu_times()`` sample instead (taken in :func:`create`, so the first run already
covers a real interval) and computes the busy fraction the way psutil does.

Every reading is a ratio in 0..1, reported both as a measurement and as saturation
(``utilization``). A disk path that does not exist fails the probe with ``not_found``, naming
it; the other readings are still reported so one bad path does not hide the rest.
"""

from __future__ import annotations

import psutil

from monitoriza.config.schema import HostProbe
from monitoriza.exporter.probes.base import Deadline, Measurement, ProbeOutcome, ProbeRunner


def _cpu_totals(times: tuple[float, ...]) -> tuple[float, float]:
    """(all time, idle time) of a ``psutil.cpu_times()`` sample.

    Like psutil: guest time is already included in user/nice on Linux, so it is subtracted
    to avoid counting it twice, and time waiting for I/O is idle time.
    """
    total = sum(times)
    total -= float(getattr(times, "guest", 0.0)) + float(getattr(times, "guest_nice", 0.0))
    idle = float(getattr(times, "idle", 0.0)) + float(getattr(times, "iowait", 0.0))
    return total, idle


def cpu_busy_fraction(before: tuple[float, ...], after: tuple[float, ...]) -> float:
    """Fraction of CPU time spent busy between two ``cpu_times()`` samples, in 0..1."""
    total_before, idle_before = _cpu_totals(before)
    total_after, idle_after = _cpu_totals(after)
    elapsed = total_after - total_before
    if elapsed <= 0:
        # No tick passed between the samples (or the counters went backwards): nothing to say.
        return 0.0
    busy = elapsed - max(idle_after - idle_before, 0.0)
    return min(max(busy / elapsed, 0.0), 1.0)


class HostRunner:
    """Reads CPU, memory and disks; keeps the previous CPU sample between runs."""

    def __init__(self, spec: HostProbe) -> None:
        self._spec = spec
        self._probe = spec.name or spec.kind
        self._cpu_times: tuple[float, ...] = psutil.cpu_times()

    def __call__(self, deadline: Deadline) -> ProbeOutcome:
        del deadline  # every reading is a local system call, far below any deadline
        now = psutil.cpu_times()
        cpu = cpu_busy_fraction(self._cpu_times, now)
        self._cpu_times = now

        memory = psutil.virtual_memory()
        # "In use" is what is not available, as psutil's own percent computes it (unrounded).
        memory_ratio = (memory.total - memory.available) / memory.total if memory.total else 0.0

        probe = (("probe", self._probe),)
        utilization = {"cpu": cpu, "memory": memory_ratio}
        measurements = [
            Measurement("monitoriza_host_cpu_utilization_ratio", probe, cpu),
            Measurement("monitoriza_host_memory_utilization_ratio", probe, memory_ratio),
        ]
        missing: list[str] = []
        unreadable: list[str] = []
        for path in self._spec.disk_paths:
            try:
                usage = psutil.disk_usage(path)
            except FileNotFoundError:
                missing.append(path)
                continue
            except OSError as exc:
                unreadable.append(f"{path} ({exc.strerror or exc})")
                continue
            # used / (used + free) like df: blocks reserved for root are not usable by services.
            usable = usage.used + usage.free
            ratio = usage.used / usable if usable else 0.0
            utilization[f"disk:{path}"] = ratio
            measurements.append(
                Measurement(
                    "monitoriza_host_disk_utilization_ratio", (*probe, ("path", path)), ratio
                )
            )

        summary = f"cpu {cpu:.0%}, memory {memory_ratio:.0%}"
        if missing or unreadable:
            problems = [f"disk path {path} does not exist" for path in missing]
            problems += [f"cannot read disk path {item}" for item in unreadable]
            return ProbeOutcome.failed(
                "not_found" if missing else "error",
                f"{'; '.join(problems)} ({summary})",
                utilization=utilization,
                measurements=tuple(measurements),
            )
        return ProbeOutcome(
            success=True, message=summary, utilization=utilization, measurements=tuple(measurements)
        )


def create(spec: HostProbe) -> ProbeRunner:
    """A runner for ``spec``, with its first CPU sample already taken."""
    return HostRunner(spec)

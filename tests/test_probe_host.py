"""Host probe: real CPU, memory and disk readings of this machine, and the CPU arithmetic."""

from __future__ import annotations

import time
from collections import namedtuple
from pathlib import Path

from monitoriza.config.schema import HostProbe
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome
from monitoriza.exporter.probes.host import cpu_busy_fraction

Times = namedtuple("Times", ["user", "system", "idle", "iowait", "guest", "guest_nice"])


def run(disk_paths: list[str]) -> ProbeOutcome:
    runner = create_runner(HostProbe(kind="host", name="box", disk_paths=disk_paths))
    return runner(Deadline.after(5))


class TestCpuArithmetic:
    def test_busy_fraction_between_samples(self) -> None:
        """Busy time over all time between two samples; iowait counts as idle."""
        before = Times(10.0, 10.0, 70.0, 10.0, 0.0, 0.0)
        after = Times(40.0, 20.0, 100.0, 20.0, 0.0, 0.0)
        assert cpu_busy_fraction(before, after) == 40.0 / 80.0

    def test_guest_time_is_not_counted_twice(self) -> None:
        """Guest time is already part of user time, as on Linux."""
        before = Times(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        after = Times(50.0, 0.0, 50.0, 0.0, 50.0, 0.0)
        assert cpu_busy_fraction(before, after) == 0.5

    def test_no_elapsed_time_is_zero(self) -> None:
        """Two identical samples say nothing, reported as 0 rather than a division error."""
        sample = Times(1.0, 1.0, 1.0, 1.0, 0.0, 0.0)
        assert cpu_busy_fraction(sample, sample) == 0.0


class TestHostProbe:
    def test_readings_are_ratios(self) -> None:
        """CPU, memory and disk use are reported as ratios in 0..1, as measurements too."""
        outcome = run(["/"])
        assert outcome.success, outcome.message
        assert set(outcome.utilization) == {"cpu", "memory", "disk:/"}
        assert all(0.0 <= ratio <= 1.0 for ratio in outcome.utilization.values())
        by_metric = {m.metric: m for m in outcome.measurements}
        assert set(by_metric) == {
            "monitoriza_host_cpu_utilization_ratio",
            "monitoriza_host_memory_utilization_ratio",
            "monitoriza_host_disk_utilization_ratio",
        }
        disk = by_metric["monitoriza_host_disk_utilization_ratio"]
        assert disk.labels == (("probe", "box"), ("path", "/"))
        assert disk.value == outcome.utilization["disk:/"]
        assert outcome.utilization["memory"] > 0.0

    def test_first_run_covers_the_time_since_create(self) -> None:
        """create() takes the first CPU sample, so busy time before the first run shows."""
        runner = create_runner(HostProbe(kind="host", name="box"))
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            pass
        outcome = runner(Deadline.after(5))
        assert outcome.utilization["cpu"] > 0.0

    def test_each_disk_path_is_reported(self, tmp_path: Path) -> None:
        """Every configured path has its own ratio, labelled with the path."""
        outcome = run(["/", str(tmp_path)])
        assert outcome.success
        paths = [
            dict(m.labels)["path"]
            for m in outcome.measurements
            if m.metric == "monitoriza_host_disk_utilization_ratio"
        ]
        assert paths == ["/", str(tmp_path)]

    def test_missing_disk_path_is_not_found(self, tmp_path: Path) -> None:
        """A path that does not exist fails with not_found naming it; the rest is reported."""
        missing = str(tmp_path / "nope")
        outcome = run(["/", missing])
        assert not outcome.success
        assert outcome.failure_reason == "not_found"
        assert missing in outcome.message
        assert set(outcome.utilization) == {"cpu", "memory", "disk:/"}
        assert len(outcome.measurements) == 3

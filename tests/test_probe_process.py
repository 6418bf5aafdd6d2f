"""Process probe against real child processes started by the tests."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from monitoriza.config.schema import ProcessProbe
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome
from tests.support.binaries import require_binary


@pytest.fixture
def spawn_sleep() -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start ``sleep`` children with a given marker argument; kill them after the test."""
    sleep = require_binary("sleep")
    children: list[subprocess.Popen[bytes]] = []

    def spawn(marker: str) -> subprocess.Popen[bytes]:
        # sleep adds up its arguments, so a unique fraction is a harmless marker.
        child = subprocess.Popen(
            [sleep, "60", marker],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(child)
        return child

    yield spawn
    for child in children:
        child.kill()
        child.wait()


def new_marker() -> str:
    return f"0.{uuid.uuid4().int % 10**12:012d}"


def run(**options: object) -> ProbeOutcome:
    spec = ProcessProbe.model_validate({"kind": "process", "name": "worker", **options})
    return create_runner(spec)(Deadline.after(5))


def measured(outcome: ProbeOutcome) -> dict[str, float]:
    return {m.metric: m.value for m in outcome.measurements}


class TestProcessProbe:
    def test_running_process_is_found(
        self, spawn_sleep: Callable[[str], subprocess.Popen[bytes]]
    ) -> None:
        """A matching process is counted with its resident memory and open files."""
        marker = new_marker()
        spawn_sleep(marker)
        outcome = run(process_name="sleep", cmdline_contains=marker)
        assert outcome.success, outcome.message
        values = measured(outcome)
        assert values["monitoriza_process_instances"] == 1.0
        assert values["monitoriza_process_resident_memory_bytes"] > 0
        assert values["monitoriza_process_open_files"] >= 0
        assert all(m.labels == (("probe", "worker"),) for m in outcome.measurements)
        assert outcome.utilization == {}

    def test_matches_are_summed(
        self, spawn_sleep: Callable[[str], subprocess.Popen[bytes]]
    ) -> None:
        """Several matching processes are one service: counts and memory add up."""
        marker = new_marker()
        spawn_sleep(marker)
        spawn_sleep(marker)
        outcome = run(process_name="sleep", cmdline_contains=marker)
        assert measured(outcome)["monitoriza_process_instances"] == 2.0

    def test_killed_process_is_not_found(
        self, spawn_sleep: Callable[[str], subprocess.Popen[bytes]]
    ) -> None:
        """Once the process is gone the probe fails with not_found and a count of 0."""
        marker = new_marker()
        child = spawn_sleep(marker)
        assert run(process_name="sleep", cmdline_contains=marker).success
        child.kill()
        child.wait()
        outcome = run(process_name="sleep", cmdline_contains=marker)
        assert outcome.failure_reason == "not_found"
        assert "sleep" in outcome.message
        assert measured(outcome) == {"monitoriza_process_instances": 0.0}

    def test_name_must_match_too(
        self, spawn_sleep: Callable[[str], subprocess.Popen[bytes]]
    ) -> None:
        """The command line alone does not match a process with another name."""
        marker = new_marker()
        spawn_sleep(marker)
        outcome = run(process_name="not-sleep", cmdline_contains=marker)
        assert outcome.failure_reason == "not_found"

    def test_limits_give_unclamped_utilization(
        self, spawn_sleep: Callable[[str], subprocess.Popen[bytes]]
    ) -> None:
        """With limits configured, use over the limit is reported above 1, not clamped."""
        marker = new_marker()
        spawn_sleep(marker)
        outcome = run(
            process_name="sleep", cmdline_contains=marker, max_rss_bytes=1, max_open_files=100_000
        )
        values = measured(outcome)
        assert outcome.utilization["memory"] == values["monitoriza_process_resident_memory_bytes"]
        assert outcome.utilization["memory"] > 1.0
        assert 0.0 <= outcome.utilization["open_files"] < 1.0

    def test_expired_deadline_is_a_timeout(self) -> None:
        """A deadline that passes during the scan stops it with reason timeout."""
        spec = ProcessProbe(kind="process", name="worker", process_name="sleep")
        outcome = create_runner(spec)(Deadline(time.monotonic() - 1))
        assert outcome.failure_reason == "timeout"

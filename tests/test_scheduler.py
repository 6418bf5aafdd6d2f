"""The scheduler runs probes in the background and never lets one hold up the others.

These tests inject fake probe runners: a probe that hangs past every socket timeout, or one
that raises, are faults a real target cannot be made to produce on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from monitoriza.config.schema import ProbeBase, TcpProbe
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome, ProbeRunner
from monitoriza.exporter.scheduler import ProbeScheduler
from monitoriza.exporter.state import ProbeJob, next_state
from tests.support.binaries import wait_until

SPEC = TcpProbe.model_validate({"kind": "tcp", "host": "127.0.0.1", "port": 1})


def job(name: str, interval: float = 0.2, timeout: float = 0.1, service: str = "svc") -> ProbeJob:
    return ProbeJob(service, name, "tcp", interval, timeout,
                    SPEC.model_copy(update={"name": name}))


class FakeRunners:
    """Runner factory whose behaviour is chosen per probe name."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.release = threading.Event()

    def __call__(self, spec: ProbeBase) -> ProbeRunner:
        name = spec.name or ""

        def run(deadline: Deadline) -> ProbeOutcome:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name.startswith("hang"):
                self.release.wait(30)  # ignores its deadline, like a wedged C library call
                return ProbeOutcome(success=True)
            if name.startswith("crash"):
                raise RuntimeError("bug in probe")
            return ProbeOutcome(success=True, latency_seconds=0.001)

        return run


@pytest.fixture
def runners() -> Iterator[FakeRunners]:
    fake = FakeRunners()
    yield fake
    fake.release.set()


def started(jobs: list[ProbeJob], runners: FakeRunners) -> ProbeScheduler:
    scheduler = ProbeScheduler(jobs, max_workers=4, runner_factory=runners)
    scheduler.start()
    return scheduler


class TestScheduling:
    """Probes run on their own intervals in the background."""

    def test_each_probe_runs_repeatedly(self, runners: FakeRunners) -> None:
        """A probe with a 0.2 s interval runs several times a second."""
        scheduler = started([job("a"), job("b", interval=0.5)], runners)
        try:
            time.sleep(1.6)
        finally:
            scheduler.stop()
        assert runners.calls["a"] >= 5
        assert 2 <= runners.calls["b"] <= 5

    def test_hung_probe_times_out_and_others_keep_running(self, runners: FakeRunners) -> None:
        """A probe that ignores its deadline is recorded as a timeout and blocks nothing."""
        scheduler = started([job("hang"), job("fine")], runners)
        try:
            assert wait_until(lambda: ("svc", "hang") in scheduler.snapshot(), 2.0)
            hung = scheduler.snapshot()[("svc", "hang")]
            assert not hung.outcome.success
            assert hung.outcome.failure_reason == "timeout"
            before = runners.calls["fine"]
            time.sleep(1.0)
            assert runners.calls["fine"] >= before + 3
            # Still hung: its next runs are skipped rather than stacking threads.
            assert runners.calls["hang"] == 1
            assert scheduler.skipped_runs >= 3
        finally:
            runners.release.set()
            scheduler.stop()

    def test_crashing_probe_is_a_failure_not_a_dead_thread(self, runners: FakeRunners) -> None:
        """An exception in a probe becomes reason "error", and the probe is tried again."""
        scheduler = started([job("crash")], runners)
        try:
            assert wait_until(lambda: runners.calls.get("crash", 0) >= 3, 3.0)
            outcome = scheduler.snapshot()[("svc", "crash")].outcome
        finally:
            scheduler.stop()
        assert outcome.failure_reason == "error"
        assert "bug in probe" in outcome.message

    def test_snapshot_is_immediate_while_probes_hang(self, runners: FakeRunners) -> None:
        """Reading the snapshot does not wait for in-flight probes."""
        scheduler = started([job(f"hang{i}", timeout=0.2) for i in range(4)], runners)
        try:
            time.sleep(0.5)
            began = time.perf_counter()
            for _ in range(100):
                scheduler.snapshot()
            assert (time.perf_counter() - began) / 100 < 0.01
        finally:
            runners.release.set()
            scheduler.stop()

    def test_replace_adds_and_removes_probes(self, runners: FakeRunners) -> None:
        """A reload drops removed probes from the snapshot and starts new ones."""
        scheduler = started([job("a"), job("b")], runners)
        try:
            assert wait_until(lambda: len(scheduler.snapshot()) == 2, 2.0)
            scheduler.replace([job("a"), job("c")])
            assert wait_until(lambda: set(scheduler.snapshot()) == {("svc", "a"), ("svc", "c")},
                              2.0)
        finally:
            scheduler.stop()


class TestNextState:
    """Folding outcomes into a probe's state."""

    def test_last_success_survives_failures(self) -> None:
        """After a failure the last success time still points at the earlier success."""
        first = next_state(None, job("a"), ProbeOutcome(success=True), duration=0.1,
                           finished_at=100.0, window=3)
        second = next_state(first, job("a"), ProbeOutcome.failed("connection", "refused"),
                            duration=0.1, finished_at=115.0, window=3)
        assert second.last_success_at == 100.0
        assert second.recent_successes == (True, False)

    def test_recent_window_is_bounded(self) -> None:
        """Only the last ``window`` runs are kept for the errors dimension."""
        current = None
        for index in range(10):
            current = next_state(current, job("a"), ProbeOutcome(success=index % 2 == 0),
                                 duration=0.1, finished_at=float(index), window=4)
        assert current is not None and current.recent_successes == (True, False, True, False)

    def test_components_turn_unknown_when_the_endpoint_fails(self) -> None:
        """A health endpoint that stops answering leaves its components as unknown."""
        healthy = next_state(None, job("a"), ProbeOutcome(success=True, components={
            "redis": "healthy", "database": "degraded"}), duration=0.1, finished_at=1.0, window=5)
        failed = next_state(healthy, job("a"), ProbeOutcome.failed("timeout", "slow"),
                            duration=5.0, finished_at=2.0, window=5)
        assert failed.components == {"redis": "unknown", "database": "unknown"}

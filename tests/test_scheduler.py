"""The scheduler runs probes in the background and never lets one hold up the others.

These tests inject fake probe runners: a probe that hangs past every socket timeout, or one
that raises, are faults a real target cannot be made to produce on demand. Most also inject a
:class:`~tests.support.clock.ManualClock` and move time by hand, so a schedule is checked
exactly and without sleeping; :class:`TestRealClock` runs the same scheduler on the real clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from monitoriza.config.schema import ProbeBase, TcpProbe
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome, ProbeRunner
from monitoriza.exporter.scheduler import WATCHDOG_GRACE_SECONDS, ProbeScheduler
from monitoriza.exporter.state import ProbeJob, next_state
from tests.support.binaries import wait_until
from tests.support.clock import ManualClock

SPEC = TcpProbe.model_validate({"kind": "tcp", "host": "127.0.0.1", "port": 1})


def job(name: str, interval: float = 0.2, timeout: float = 0.1, service: str = "svc") -> ProbeJob:
    return ProbeJob(service, name, "tcp", interval, timeout,
                    SPEC.model_copy(update={"name": name}))


class FakeRunners:
    """Runner factory whose behaviour is chosen per probe name."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._blocked = 0  # "hang" runs waiting for release right now

    @property
    def blocked(self) -> int:
        with self._lock:
            return self._blocked

    def __call__(self, spec: ProbeBase) -> ProbeRunner:
        name = spec.name or ""

        def run(deadline: Deadline) -> ProbeOutcome:
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
            if name.startswith("hang"):
                with self._lock:
                    self._blocked += 1
                self.release.wait(30)  # ignores its deadline, like a wedged C library call
                with self._lock:
                    self._blocked -= 1
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


class Driven:
    """A scheduler on a manual clock, moved forward in small steps.

    After each step the test waits (in real time) until the dispatcher has handled every
    event now due and every run it started has finished, except the hung ones."""

    STEP = 0.01

    def __init__(self, jobs: list[ProbeJob], runners: FakeRunners) -> None:
        self.clock = ManualClock()
        self.runners = runners
        self.scheduler = ProbeScheduler(jobs, max_workers=4, runner_factory=runners,
                                        clock=self.clock)
        self.scheduler.start()
        self.settle()

    def settled(self) -> bool:
        return (self.clock.caught_up()
                and self.scheduler.in_flight == self.runners.blocked)

    def settle(self) -> None:
        end = time.monotonic() + 5.0
        while not self.settled():
            assert time.monotonic() < end, "the scheduler did not settle within 5 s"
            time.sleep(0.0005)

    def run_for(self, seconds: float) -> None:
        for _ in range(round(seconds / self.STEP)):
            self.clock.advance(self.STEP)
            self.settle()

    def run_until(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Advance until ``condition`` holds, at most ``seconds`` of clock time."""
        for _ in range(round(seconds / self.STEP)):
            if condition():
                return True
            self.clock.advance(self.STEP)
            self.settle()
        return condition()


@pytest.fixture
def drive(runners: FakeRunners) -> Iterator[Callable[[list[ProbeJob]], Driven]]:
    started: list[Driven] = []

    def start(jobs: list[ProbeJob]) -> Driven:
        started.append(Driven(jobs, runners))
        return started[-1]

    yield start
    runners.release.set()
    for driven in started:
        driven.scheduler.stop()


Drive = Callable[[list[ProbeJob]], Driven]


class TestScheduling:
    """Probes run on their own intervals in the background."""

    def test_each_probe_runs_repeatedly(self, drive: Drive, runners: FakeRunners) -> None:
        """In 1.6 s a probe with a 0.2 s interval runs 7-8 times, one with 0.5 s 3-4 times."""
        driven = drive([job("a"), job("b", interval=0.5)])
        driven.run_for(1.6)
        assert 7 <= runners.calls["a"] <= 8
        assert 3 <= runners.calls["b"] <= 4

    def test_hung_probe_times_out_and_others_keep_running(self, drive: Drive,
                                                          runners: FakeRunners) -> None:
        """A probe that ignores its deadline is recorded as a timeout and blocks nothing."""
        driven = drive([job("hang"), job("fine")])
        assert driven.run_until(lambda: runners.calls.get("hang") == 1, 1.0)
        hung_at = driven.clock.monotonic()
        assert driven.run_until(lambda: ("svc", "hang") in driven.scheduler.snapshot(), 2.0)
        # Declared by the watchdog once the 0.1 s deadline and its grace pass, although the
        # probe never returns.
        assert driven.clock.monotonic() - hung_at == pytest.approx(
            0.1 + WATCHDOG_GRACE_SECONDS, abs=Driven.STEP * 1.5)
        hung = driven.scheduler.snapshot()[("svc", "hang")]
        assert not hung.outcome.success
        assert hung.outcome.failure_reason == "timeout"
        assert hung.duration_seconds == pytest.approx(0.1)
        before = runners.calls["fine"]
        driven.run_for(1.0)
        assert before + 4 <= runners.calls["fine"] <= before + 6
        # Still hung: its next runs are skipped rather than stacking threads.
        assert runners.calls["hang"] == 1
        assert driven.scheduler.skipped_runs >= 5

    def test_crashing_probe_is_a_failure_not_a_dead_thread(self, drive: Drive,
                                                           runners: FakeRunners) -> None:
        """An exception in a probe becomes reason "error", and the probe is tried again."""
        driven = drive([job("crash")])
        assert driven.run_until(lambda: runners.calls.get("crash", 0) >= 3, 3.0)
        outcome = driven.scheduler.snapshot()[("svc", "crash")].outcome
        assert outcome.failure_reason == "error"
        assert "bug in probe" in outcome.message

    def test_snapshot_is_immediate_while_probes_hang(self, drive: Drive,
                                                     runners: FakeRunners) -> None:
        """Reading the snapshot does not wait for in-flight probes."""
        driven = drive([job(f"hang{i}", timeout=0.2) for i in range(4)])
        driven.run_for(0.5)
        assert driven.scheduler.in_flight == 4 == runners.blocked
        began = time.perf_counter()
        for _ in range(100):
            driven.scheduler.snapshot()
        assert (time.perf_counter() - began) / 100 < 0.01

    def test_replace_adds_and_removes_probes(self, drive: Drive) -> None:
        """A reload drops removed probes from the snapshot and starts new ones."""
        driven = drive([job("a"), job("b")])
        assert driven.run_until(lambda: len(driven.scheduler.snapshot()) == 2, 1.0)
        driven.scheduler.replace([job("a"), job("c")])
        assert driven.run_until(
            lambda: set(driven.scheduler.snapshot()) == {("svc", "a"), ("svc", "c")}, 1.0)


class TestRealClock:
    """The same scheduler on the machine's clock (the default): the seam changes nothing."""

    def test_probes_run_and_time_out_on_real_time(self, runners: FakeRunners) -> None:
        """A 0.1 s probe runs repeatedly and a hung one is timed out, without a manual clock."""
        scheduler = ProbeScheduler([job("fine", interval=0.1), job("hang", interval=0.1)],
                                   max_workers=4, runner_factory=runners)
        scheduler.start()
        try:
            assert wait_until(lambda: runners.calls.get("fine", 0) >= 5, 5.0, interval=0.01)
            assert wait_until(lambda: ("svc", "hang") in scheduler.snapshot(), 5.0,
                              interval=0.01)
            assert scheduler.snapshot()[("svc", "hang")].outcome.failure_reason == "timeout"
            assert runners.calls["hang"] == 1
        finally:
            runners.release.set()
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

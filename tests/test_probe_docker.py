"""Docker probe: restart arithmetic as pure functions, then against a real private dockerd."""

from __future__ import annotations

import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitoriza.config.schema import DockerProbe
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome, ProbeRunner
from monitoriza.exporter.probes.docker import (
    CONTAINER_STATES,
    HEALTH_STATUSES,
    RestartState,
    describe_state,
    track_restarts,
)
from tests.support.binaries import wait_until
from tests.support.dockerd import DockerEngine

START_1 = "2026-01-01T10:00:00.000000001Z"
START_2 = "2026-01-01T11:00:00.000000001Z"
START_3 = "2026-01-01T12:00:00.000000001Z"
NEVER = "0001-01-01T00:00:00Z"


def replay(observations: list[tuple[str, str, int]]) -> list[int]:
    """The published count after each (container id, StartedAt, engine RestartCount)."""
    state: RestartState | None = None
    counts = []
    for container_id, started_at, engine_count in observations:
        state = track_restarts(state, container_id, started_at, engine_count)
        counts.append(state.count)
    return counts


class TestRestartArithmetic:
    def test_first_observation_publishes_the_engine_count(self) -> None:
        """Before any history, the count is whatever the engine says."""
        assert replay([("a", START_1, 3)]) == [3]

    def test_unchanged_start_time_is_no_restart(self) -> None:
        """Runs that see the same start time add nothing."""
        assert replay([("a", START_1, 0), ("a", START_1, 0), ("a", START_1, 0)]) == [0, 0, 0]

    def test_manual_restart_adds_one(self) -> None:
        """A new start time with an unchanged engine count is a restart the engine missed."""
        assert replay([("a", START_1, 0), ("a", START_2, 0), ("a", START_3, 0)]) == [0, 1, 2]

    def test_policy_restart_is_not_counted_twice(self) -> None:
        """When the engine's count grew along with the start time, the engine counted it."""
        assert replay([("a", START_1, 0), ("a", START_2, 1), ("a", START_3, 2)]) == [0, 1, 2]

    def test_manual_and_policy_restarts_add_up(self) -> None:
        """Observed restarts stay on top of the engine's count as it grows later."""
        assert replay([("a", START_1, 0), ("a", START_2, 0), ("a", START_3, 1)]) == [0, 1, 2]

    def test_recreated_container_is_a_new_baseline(self) -> None:
        """A new id is not a restart; restarts observed before are kept."""
        assert replay([("a", START_1, 0), ("a", START_2, 0), ("b", START_3, 0)]) == [0, 1, 1]

    def test_first_start_of_a_created_container_is_no_restart(self) -> None:
        """Going from never started to started is a start, not a restart."""
        assert replay([("a", NEVER, 0), ("a", START_1, 0), ("a", START_2, 0)]) == [0, 0, 1]

    def test_stopped_container_keeps_its_count(self) -> None:
        """Stopping does not change StartedAt; starting it again is one restart."""
        assert replay([("a", START_1, 0), ("a", START_1, 0), ("a", START_2, 0)]) == [0, 0, 1]


class TestStateDescription:
    def test_exited_with_oom(self) -> None:
        """An OOM-killed container's message gives the exit code and the OOM kill."""
        state = {"Status": "exited", "ExitCode": 137, "OOMKilled": True}
        assert (
            describe_state("conecta-redis", state, "exited", "none")
            == "container conecta-redis is exited (exit code 137, OOM-killed)"
        )

    def test_running_but_unhealthy(self) -> None:
        """A running container with a failing health check says so, with the failure streak."""
        state = {"Status": "running", "Health": {"Status": "unhealthy", "FailingStreak": 4}}
        message = describe_state("api", state, "running", "unhealthy")
        assert message == (
            "container api is running but its health check reports unhealthy "
            "(4 consecutive failures)"
        )

    def test_paused_has_no_exit_code(self) -> None:
        """States without an exit are named plainly."""
        assert describe_state("api", {"Status": "paused"}, "paused", "none") == (
            "container api is paused"
        )


def value(outcome: ProbeOutcome, metric: str, **labels: str) -> float:
    """The value of the one measurement named ``metric`` whose labels include ``labels``."""
    found = [
        m.value
        for m in outcome.measurements
        if m.metric == metric and set(labels.items()) <= set(m.labels)
    ]
    assert len(found) == 1, (metric, labels, outcome.measurements)
    return found[0]


def current(outcome: ProbeOutcome, metric: str) -> list[str]:
    """The label values (state or status) a one-hot metric marks as current."""
    return [
        dict(m.labels).get("state") or dict(m.labels)["status"]
        for m in outcome.measurements
        if m.metric == metric and m.value == 1.0
    ]


def probe(container: str, url: str | None) -> ProbeRunner:
    return create_runner(
        DockerProbe(kind="docker", name="ctr", container=container, docker_url=url)
    )


def run(runner: ProbeRunner, seconds: float = 10.0) -> ProbeOutcome:
    return runner(Deadline.after(seconds))


def unique_name() -> str:
    return f"mz-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def container(docker_engine: DockerEngine) -> Iterator[Any]:
    """A running ``sleep 3600`` container, removed after the test."""
    created = docker_engine.run_container(unique_name())
    yield created
    created.remove(force=True)


@pytest.mark.real_binary("dockerd")
class TestDockerProbe:
    def test_running_container_succeeds(self, docker_engine: DockerEngine, container: Any) -> None:
        """A running container without a health check is a success with state running=1."""
        outcome = run(probe(container.name, docker_engine.url))
        assert outcome.success, outcome.message
        assert outcome.failure_reason is None
        assert current(outcome, "monitoriza_container_state") == ["running"]
        assert current(outcome, "monitoriza_container_health_status") == ["none"]
        states = [m for m in outcome.measurements if m.metric == "monitoriza_container_state"]
        assert sorted(dict(m.labels)["state"] for m in states) == sorted(CONTAINER_STATES)
        assert all(dict(m.labels)["container"] == container.name for m in states)
        health = [m for m in outcome.measurements if m.metric.endswith("health_status")]
        assert sorted(dict(m.labels)["status"] for m in health) == sorted(HEALTH_STATUSES)
        assert value(outcome, "monitoriza_container_oom_killed") == 0.0
        assert value(outcome, "monitoriza_container_restarts") == 0.0

    def test_stopped_container_is_unhealthy(
        self, docker_engine: DockerEngine, container: Any
    ) -> None:
        """A stopped container fails with reason unhealthy, state exited=1 and running=0."""
        runner = probe(container.name, docker_engine.url)
        assert run(runner).success
        container.stop(timeout=0)
        outcome = run(runner)
        assert not outcome.success
        assert outcome.failure_reason == "unhealthy"
        assert outcome.message == f"container {container.name} is exited (exit code 137)"
        assert value(outcome, "monitoriza_container_state", state="exited") == 1.0
        assert value(outcome, "monitoriza_container_state", state="running") == 0.0

    def test_manual_restart_is_counted(self, docker_engine: DockerEngine, container: Any) -> None:
        """docker restart between two runs adds one to the count though the engine's stays 0."""
        runner = probe(container.name, docker_engine.url)
        before = run(runner)
        container.restart(timeout=0)
        after = run(runner)
        assert after.success, after.message
        assert current(after, "monitoriza_container_state") == ["running"]
        restarts = "monitoriza_container_restarts"
        assert value(after, restarts) == value(before, restarts) + 1
        container.reload()
        assert container.attrs["RestartCount"] == 0
        # The count stays up on later runs; it does not fall back to the engine's.
        assert value(run(runner), restarts) == value(before, restarts) + 1

    def test_missing_container_is_not_found(self, docker_engine: DockerEngine) -> None:
        """A container name the engine does not know fails with not_found."""
        outcome = run(probe("mz-no-such-container", docker_engine.url))
        assert outcome.failure_reason == "not_found"
        assert "mz-no-such-container" in outcome.message
        assert outcome.measurements == ()

    def test_docker_host_is_used_without_docker_url(
        self, docker_engine: DockerEngine, container: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without docker_url the probe talks to DOCKER_HOST, like the docker CLI."""
        monkeypatch.setenv("DOCKER_HOST", docker_engine.url)
        outcome = run(probe(container.name, None))
        assert outcome.success, outcome.message

    def test_failing_health_check_is_unhealthy(self, docker_engine: DockerEngine) -> None:
        """A running container whose health check fails is unhealthy, with status published."""
        created = docker_engine.run_container(unique_name(), healthcheck=_healthcheck("false"))
        try:
            runner = probe(created.name, docker_engine.url)
            assert wait_until(
                lambda: current(run(runner), "monitoriza_container_health_status") == ["unhealthy"],
                timeout=20,
                interval=0.2,
            )
            outcome = run(runner)
            assert outcome.failure_reason == "unhealthy"
            assert "health check reports unhealthy" in outcome.message
            assert value(outcome, "monitoriza_container_state", state="running") == 1.0
        finally:
            created.remove(force=True)

    def test_passing_health_check_is_healthy(self, docker_engine: DockerEngine) -> None:
        """A running container whose health check passes is a success with status healthy."""
        created = docker_engine.run_container(unique_name(), healthcheck=_healthcheck("true"))
        try:
            runner = probe(created.name, docker_engine.url)
            assert wait_until(
                lambda: current(run(runner), "monitoriza_container_health_status") == ["healthy"],
                timeout=20,
                interval=0.2,
            )
            assert run(runner).success
        finally:
            created.remove(force=True)


def _healthcheck(command: str) -> dict[str, Any]:
    """A fast health check (durations are in nanoseconds) running a busybox applet."""
    return {
        "test": ["CMD", command],
        "interval": 200_000_000,
        "timeout": 2_000_000_000,
        "retries": 1,
        "start_period": 0,
    }


class TestEngineUnreachable:
    def test_missing_socket_is_a_connection_failure(self, tmp_path: Path) -> None:
        """An engine URL with nothing listening fails with reason connection."""
        url = f"unix://{tmp_path}/nothing.sock"
        outcome = run(probe("anything", url))
        assert outcome.failure_reason == "connection", outcome.message
        assert url in outcome.message

    def test_socket_without_listener_is_a_connection_failure(self) -> None:
        """A socket file that nobody listens on (a stopped engine) fails with connection."""
        directory = tempfile.mkdtemp(prefix="mz-stale-", dir="/tmp")
        path = f"{directory}/docker.sock"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
                stale.bind(path)  # bound but not listening: connecting is refused
                outcome = run(probe("anything", f"unix://{path}"))
        finally:
            Path(path).unlink(missing_ok=True)
            Path(directory).rmdir()
        assert outcome.failure_reason == "connection", outcome.message

    def test_silent_engine_is_a_timeout(self) -> None:
        """An engine that accepts the connection but never answers fails with timeout."""
        directory = tempfile.mkdtemp(prefix="mz-silent-", dir="/tmp")
        path = f"{directory}/docker.sock"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
                server.bind(path)
                server.listen(8)
                outcome = run(probe("anything", f"unix://{path}"), seconds=0.5)
        finally:
            Path(path).unlink(missing_ok=True)
            Path(directory).rmdir()
        assert outcome.failure_reason == "timeout", outcome.message

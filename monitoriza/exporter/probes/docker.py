"""Docker probe: state, health-check status, restarts and OOM kills of one container.

The probe asks the engine to inspect the container on every run and reads ``State``. A
container is healthy when it is running and its health check (if it has one) does not say
``unhealthy``; ``starting`` counts as healthy so that a fresh container is not reported down
before its first check had a chance to run.

The engine's ``RestartCount`` only counts restarts made by a restart policy: ``docker restart``
or a stop followed by a start leaves it unchanged, yet for an operator that is a restart all
the same. The runner therefore remembers the container's id and start time between runs and
adds the restarts it saw itself; :func:`track_restarts` holds that arithmetic, kept pure so it
can be tested without an engine.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from monitoriza.config.schema import DockerProbe
from monitoriza.docker_engine import engine_client, engine_url
from monitoriza.exporter.probes.base import Deadline, Measurement, ProbeOutcome, ProbeRunner

# Every value the engine reports in State.Status; the one-hot state metric has one sample each,
# so a dashboard can graph a state that is currently 0 without the series disappearing.
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
# Health.Status values, plus "none" for a container without a health check.
HEALTH_STATUSES = ("healthy", "unhealthy", "starting", "none")

# What the engine reports as StartedAt for a container that was never started.
_NEVER_STARTED = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class RestartState:
    """What the runner remembers of a container between runs to count restarts."""

    container_id: str
    started_at: str
    engine_count: int
    # Restarts this runner saw that the engine did not count (manual restarts, stop + start).
    observed: int

    @property
    def count(self) -> int:
        """The published restart count: the engine's own count plus the observed ones."""
        return self.engine_count + self.observed


def _was_started(started_at: str) -> bool:
    return bool(started_at) and not started_at.startswith("0001-01-01")


def track_restarts(
    previous: RestartState | None, container_id: str, started_at: str, engine_count: int
) -> RestartState:
    """Fold one inspection of a container into the restart state.

    A restart is observed when the same container (same id) has a different start time than
    at the previous run. When the engine's count grew in between, the engine already counted
    that start, so nothing is added (adding one would count a policy restart twice). A new id
    means the container was recreated: not a restart, only a new baseline; the restarts
    observed before are kept, since they did happen. Several restarts between two runs are
    seen as one: the runner only sees start times, not how many there were in between.
    """
    observed = previous.observed if previous is not None else 0
    if (
        previous is not None
        and previous.container_id == container_id
        and _was_started(previous.started_at)
        and started_at != previous.started_at
        and engine_count <= previous.engine_count
    ):
        observed += 1
    return RestartState(container_id, started_at, engine_count, observed)


def _one_hot(
    metric: str, container: str, label: str, values: tuple[str, ...], current: str
) -> list[Measurement]:
    return [
        Measurement(metric, (("container", container), (label, value)), float(value == current))
        for value in values
    ]


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps, because the SDK buries the transport error.

    A failed version negotiation surfaces as a plain ``DockerException`` whose ``__cause__``
    is the requests error, whose first argument is a urllib3 error with a ``reason``.
    """
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 20:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        linked: list[object] = [current.__cause__, current.__context__, *current.args]
        linked.append(getattr(current, "reason", None))
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return seen


def _classify(exc: BaseException) -> str:
    """The failure reason for an error talking to the engine."""
    chain = _causes(exc)
    timeouts = (
        requests.exceptions.Timeout,
        urllib3.exceptions.TimeoutError,
        socket.timeout,
        TimeoutError,
    )
    if any(isinstance(item, timeouts) for item in chain):
        return "timeout"
    connection = (
        requests.exceptions.ConnectionError,
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ProtocolError,
        ConnectionError,
        FileNotFoundError,
        PermissionError,
    )
    if any(isinstance(item, connection) for item in chain):
        return "connection"
    return "error"


def describe_state(container: str, state: dict[str, Any], status: str, health: str) -> str:
    """A message saying why the container is not healthy, for the operator reading it."""
    if status == "running":
        message = f"container {container} is running but its health check reports {health}"
        streak = (state.get("Health") or {}).get("FailingStreak")
        if streak:
            message += f" ({streak} consecutive failures)"
        return message
    details: list[str] = []
    if status in ("exited", "dead", "restarting"):
        details.append(f"exit code {state.get('ExitCode', '?')}")
    if state.get("OOMKilled"):
        details.append("OOM-killed")
    if state.get("Error"):
        details.append(str(state["Error"]))
    suffix = f" ({', '.join(details)})" if details else ""
    return f"container {container} is {status}{suffix}"


class DockerRunner:
    """Inspects one container per run; keeps the restart state between runs."""

    def __init__(self, spec: DockerProbe) -> None:
        self._spec = spec
        self._restarts: RestartState | None = None

    @property
    def url(self) -> str:
        """The engine URL: the probe's own, else ``DOCKER_HOST`` like the docker CLI, else
        the default local socket. Read per run so a changed environment is picked up."""
        return engine_url(self._spec.docker_url)

    def __call__(self, deadline: Deadline) -> ProbeOutcome:
        name = self._spec.container
        url = self.url
        try:
            # The scheduler still cuts off a probe that overruns the rounded-up client timeout.
            with engine_client(url, deadline.remaining()) as client:
                attrs: dict[str, Any] = client.containers.get(name).attrs
        except docker.errors.NotFound:
            return ProbeOutcome.failed("not_found", f"container {name} does not exist on {url}")
        except (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
            OSError,
        ) as exc:
            reason = _classify(exc)
            what = {
                "timeout": "timed out talking to the Docker engine",
                "connection": "cannot reach the Docker engine",
            }.get(reason, "Docker engine error")
            return ProbeOutcome.failed(reason, f"{what} at {url}: {exc}")
        return self._outcome(attrs)

    def _outcome(self, attrs: dict[str, Any]) -> ProbeOutcome:
        name = self._spec.container
        state: dict[str, Any] = attrs.get("State") or {}
        status = str(state.get("Status", "unknown"))
        health = str((state.get("Health") or {}).get("Status") or "none")
        self._restarts = track_restarts(
            self._restarts,
            str(attrs.get("Id", "")),
            str(state.get("StartedAt") or _NEVER_STARTED),
            int(attrs.get("RestartCount") or 0),
        )
        measurements = (
            *_one_hot("monitoriza_container_state", name, "state", CONTAINER_STATES, status),
            *_one_hot(
                "monitoriza_container_health_status", name, "status", HEALTH_STATUSES, health
            ),
            Measurement(
                "monitoriza_container_oom_killed",
                (("container", name),),
                float(bool(state.get("OOMKilled"))),
            ),
            Measurement(
                "monitoriza_container_restarts",
                (("container", name),),
                float(self._restarts.count),
            ),
        )
        if status == "running" and health != "unhealthy":
            return ProbeOutcome(
                success=True,
                message=f"container {name} is running (health: {health})",
                measurements=measurements,
            )
        return ProbeOutcome.failed(
            "unhealthy", describe_state(name, state, status, health), measurements=measurements
        )


def create(spec: DockerProbe) -> ProbeRunner:
    """A runner for ``spec``; a class, not a partial, because it keeps restart state."""
    return DockerRunner(spec)

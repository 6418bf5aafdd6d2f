"""What a simulated service answers, given its faults: pure functions, no I/O.

The health body is Spring Boot actuator's shape, which the exporter's HTTP probe reads with
``health_body: true``: ``{"status": "UP", "components": {"redis": {"status": "UP"}}}``.

Choices, made to tell the Conecta story the way the alert rules see it:

* A component that is really broken (Redis down) is reported ``DOWN`` while the service
  keeps answering **200** with the overall status ``DEGRADED``: the Conecta backend still
  serves what does not need Redis. The probe treats ``DEGRADED`` as a success, so the
  backend stays available (no ServiceDown for it) and ``redis`` shows up as an unhealthy
  component of the backend: a symptom, with Redis's own failing probe as the root cause.
* ``unknown-component`` is the Conecta bug: the backend reports its ``redis`` component (or
  its first component when it has no ``redis``) as ``UNKNOWN`` while Redis is fine; the
  overall status stays ``UP``, and the probe publishes the component as ``unknown``.
* ``down``: the service accepts a connection and closes it without a word, so the probe
  fails with the reason ``connection``. ``slow``: every answer but ``/metrics`` waits
  :data:`SLOW_DELAY_SECONDS`, longer than the demo's 2 s probe timeout.
* ``break-checkins``: the check-in API (``/api/checkins``, what the demo's
  ``resident-checkin`` flow calls) answers :data:`CHECKINS_BROKEN_STATUS` while ``/health``
  stays ``UP``: a flow broken behind green probes, the blind spot FlowBlindSpot names.
* ``fill-disk``: the disk ratio grows from :data:`BASE_DISK_RATIO` by
  :data:`DISK_FILL_RATE` a second, without noise, until it is full (it crosses 0.95 after
  110 s); without the fault it stays at the base, give or take :data:`DISK_NOISE`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from monitoriza.demo.layout import HttpService

SLOW_DELAY_SECONDS = 2.5
BASE_DISK_RATIO = 0.40
DISK_NOISE = 0.005
DISK_FILL_RATE = 0.005  # of the disk, per second
OK_STATUS = 200
CHECKINS_BROKEN_STATUS = 500

UP = "UP"
DOWN = "DOWN"
DEGRADED = "DEGRADED"
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """The answer to ``GET /health``: status code, JSON document, and how long to wait first."""

    status_code: int
    body: dict[str, Any]
    delay_seconds: float = 0.0


def drops_connections(faults: Collection[str]) -> bool:
    """Whether the service is ``down``: it closes every connection without answering."""
    return "down" in faults


def breaks_checkins(faults: Collection[str]) -> bool:
    """Whether the check-in API fails (``break-checkins``); ``/health`` is not affected."""
    return "break-checkins" in faults


def response_delay(faults: Collection[str]) -> float:
    """Seconds to wait before any answer other than ``/metrics``."""
    return SLOW_DELAY_SECONDS if "slow" in faults else 0.0


def unknown_component(service: HttpService) -> str | None:
    """The component the ``unknown-component`` fault hides: ``redis`` if present, else the first."""
    if "redis" in service.components:
        return "redis"
    return service.components[0] if service.components else None


def component_statuses(
    service: HttpService, faults: Collection[str], redis_up: bool | None
) -> dict[str, str]:
    """Each component's status word, in the service's order.

    ``redis_up`` is whether the real Redis answered PING (None when the service is not tied
    to one); it decides the ``redis`` component, every other component is ``UP`` unless a
    fault says otherwise.
    """
    statuses = {component: UP for component in service.components}
    if redis_up is not None and "redis" in statuses:
        statuses["redis"] = UP if redis_up else DOWN
    hidden = unknown_component(service)
    if "unknown-component" in faults and hidden is not None:
        statuses[hidden] = UNKNOWN
    return statuses


def health_answer(
    service: HttpService, faults: Collection[str], redis_up: bool | None
) -> HealthAnswer | None:
    """The answer to ``GET /health``, or None when the service is down and answers nothing."""
    if drops_connections(faults):
        return None
    components = component_statuses(service, faults, redis_up)
    overall = DEGRADED if DOWN in components.values() else UP
    body: dict[str, Any] = {"status": overall}
    if components:
        body["components"] = {name: {"status": status} for name, status in components.items()}
    return HealthAnswer(OK_STATUS, body, response_delay(faults))


def disk_ratio(fill_seconds: float | None, noise: float) -> float:
    """The fraction of the service's disk in use.

    ``fill_seconds`` is how long ``fill-disk`` has been active (None without it); ``noise``
    is a number in [-1, 1] (random in the server), scaled to :data:`DISK_NOISE`, applied only
    while the disk is not filling so that the growth is steady and easy to see.
    """
    if fill_seconds is None:
        return BASE_DISK_RATIO + DISK_NOISE * max(-1.0, min(1.0, noise))
    return min(1.0, BASE_DISK_RATIO + DISK_FILL_RATE * max(0.0, fill_seconds))


def faults_after_reconnect(
    service: HttpService, faults: Collection[str], component: str
) -> tuple[str, ...]:
    """The faults left once the service has reconnected ``component`` (what healing does).

    Reconnecting the component ``unknown-component`` hides ends that fault, as reconnecting
    the backend's Redis pool ends the real Conecta bug; every other fault stays.
    """
    if component == unknown_component(service):
        return tuple(kind for kind in faults if kind != "unknown-component")
    return tuple(faults)

"""What every probe returns, and the deadline it must respect.

Each probe module has ``create(spec) -> ProbeRunner``; the runner is called once per run with
a :class:`Deadline` and may keep state between runs (a previous CPU sample, a container's
last start time). Stateless probes return ``functools.partial(run, spec)``. A runner never
raises for a
target's fault: a refused connection, a timeout or a bad answer is an outcome with
``success=False`` and a ``failure_reason`` from :data:`FAILURE_REASONS`. The scheduler still
guards against bugs (an exception becomes reason ``error``) and against a probe that overruns
its deadline (reason ``timeout``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# A fixed vocabulary, so the reason can be a label without unbounded cardinality.
FAILURE_REASONS = (
    "timeout",  # the deadline passed before the target answered
    "connection",  # refused, reset, DNS failure, unreachable
    "status",  # an unexpected HTTP status
    "body",  # a response body that is too large or not the expected JSON
    "unhealthy",  # the target answered, and says it is unhealthy (health body, container state)
    "auth",  # the target refused our credentials
    "not_found",  # a container or process that does not exist
    "error",  # anything else, including a bug in the probe
)

COMPONENT_STATUSES = ("healthy", "degraded", "unhealthy", "unknown")


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point on the monotonic clock by which a probe must have finished."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never below a millisecond so it can be passed as a socket timeout."""
        return max(self.at - time.monotonic(), 0.001)

    def expired(self) -> bool:
        return time.monotonic() >= self.at


@dataclass(frozen=True, slots=True)
class Measurement:
    """One extra sample a probe reports, e.g. a container's restart count.

    ``labels`` are every label except ``service``, which the collector adds. ``metric`` must be
    a name declared in :data:`monitoriza.exporter.metrics.MEASUREMENT_HELP`.
    """

    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """The result of one probe run, as the probe itself saw it."""

    success: bool
    failure_reason: str | None = None
    message: str = ""
    # Time the target took to answer, when the probe can tell it apart from its own overhead.
    latency_seconds: float | None = None
    # Resource name -> fraction in use (0..1), for the saturation dimension.
    utilization: Mapping[str, float] = field(default_factory=dict)
    # Component name -> one of COMPONENT_STATUSES, from a health endpoint's body.
    components: Mapping[str, str] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()

    @classmethod
    def failed(cls, reason: str, message: str, **kwargs: object) -> ProbeOutcome:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        return cls(success=False, failure_reason=reason, message=message, **kwargs)  # type: ignore[arg-type]


class ProbeRunner(Protocol):
    """One configured probe, ready to run; called from a worker thread, one run at a time."""

    def __call__(self, deadline: Deadline) -> ProbeOutcome: ...

"""Redis probe: PING for liveness, then INFO for clients and memory against their limits.

The probe opens a fresh client on every run instead of keeping one between runs: a pooled
connection would hide exactly what we want to see (a restart, a refused connection, a password
change), and one connection every few seconds is negligible for Redis.

A run is a success as soon as PING answers. INFO only adds measurements: a managed Redis that
renames or forbids INFO is still up, so a refused INFO is reported in the message, not as a
failure. Parsing the INFO answer is a pure function (:func:`parse_info`) so that it can be
tested on literal data without a server.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from monitoriza.config.schema import RedisProbe
from monitoriza.exporter.probes.base import Deadline, Measurement, ProbeOutcome, ProbeRunner
from monitoriza.exporter.probes.common import (
    as_number,
    password_file_failure,
    read_password,
    redact,
)

# Server replies that mean "who you are is not accepted" even when redis-py does not map them
# to AuthenticationError (it depends on the redis-py and server versions).
_AUTH_REPLY_PREFIXES = ("NOAUTH", "WRONGPASS", "NOPERM", "INVALID PASSWORD", "INVALID USERNAME")


def create(spec: RedisProbe) -> ProbeRunner:
    """Return the runner for ``spec``; the probe keeps no state between runs."""
    return functools.partial(run, spec)


def run(spec: RedisProbe, deadline: Deadline) -> ProbeOutcome:
    """PING the server, then read INFO clients and memory; never raises for the target's fault."""
    name = spec.name or spec.kind  # the loader always fills ``name``; this keeps mypy honest
    try:
        password = read_password(spec.password_file)
    except (OSError, UnicodeDecodeError) as exc:
        return password_file_failure(spec.password_file, exc)

    remaining = deadline.remaining()
    # Every socket operation is bounded by the time left when the run starts. A target that
    # hangs fails the first read within the deadline; a target that is slow at every step can
    # overrun it, which the deadline check between steps and the scheduler's watchdog cover.
    # No retries: redis-py's default retries with back-off would multiply the timeout, and the
    # next scheduled run is the retry.
    client = redis.Redis.from_url(
        spec.url,
        socket_timeout=remaining,
        socket_connect_timeout=remaining,
        retry=Retry(NoBackoff(), 0),
        # None keeps the URL's own password, if any (the URL wins over keyword arguments).
        password=password,
    )
    try:
        started = time.monotonic()
        # Connecting, authenticating and PING are what a client of this Redis experiences.
        client.ping()
        latency = time.monotonic() - started
        if deadline.expired():
            return ProbeOutcome.failed(
                "timeout", "PING answered after the deadline", latency_seconds=latency
            )
        try:
            # One round trip for both sections; INFO with several sections needs Redis >= 7.
            pipe = client.pipeline(transaction=False)
            pipe.info("clients")
            pipe.info("memory")
            clients, memory = pipe.execute()
        except ResponseError as exc:
            return ProbeOutcome(
                success=True,
                message=f"PING answered; INFO refused: {exc}",
                latency_seconds=latency,
            )
        measurements, utilization = parse_info(name, {**clients, **memory})
        return ProbeOutcome(
            success=True,
            latency_seconds=latency,
            utilization=utilization,
            measurements=measurements,
        )
    except RedisError as exc:
        return ProbeOutcome.failed(classify_error(exc), f"{redact(spec.url)}: {describe(exc)}")
    finally:
        client.close()




def classify_error(exc: RedisError) -> str:
    """Map a redis-py exception to a failure reason from ``FAILURE_REASONS``."""
    # Order matters: AuthenticationError and BusyLoadingError are ConnectionError subclasses.
    if isinstance(exc, AuthenticationError | AuthorizationError | NoPermissionError):
        return "auth"
    if str(exc).upper().startswith(_AUTH_REPLY_PREFIXES):
        return "auth"
    if isinstance(exc, BusyLoadingError):
        # The server answered: it is up but still loading its dataset, not unreachable.
        return "unhealthy"
    if isinstance(exc, RedisTimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError):
        return "connection"
    return "error"


def describe(exc: RedisError) -> str:
    """The exception's message, or its type when redis-py raised it without one."""
    return str(exc) or type(exc).__name__




def parse_info(
    probe: str, info: Mapping[str, object]
) -> tuple[tuple[Measurement, ...], dict[str, float]]:
    """Turn INFO ``clients`` and ``memory`` fields into measurements and utilization ratios.

    Fields that are missing or not numeric are skipped rather than reported as zero, so that an
    unusual server (an old version, a managed Redis hiding fields) yields fewer samples instead
    of false ones. ``maxmemory`` 0 means unlimited: the sample is still reported (0, as the
    metric's help says) but there is no memory utilization. ``maxclients`` appears in INFO only
    from Redis 7; before that the client utilization is skipped rather than asking CONFIG GET,
    which managed services often disable.
    """
    labels = (("probe", probe),)
    clients = as_number(info.get("connected_clients"))
    used = as_number(info.get("used_memory"))
    max_memory = as_number(info.get("maxmemory"))
    max_clients = as_number(info.get("maxclients"))

    measurements: list[Measurement] = []
    if clients is not None:
        measurements.append(Measurement("monitoriza_redis_connected_clients", labels, clients))
    if used is not None:
        measurements.append(Measurement("monitoriza_redis_memory_used_bytes", labels, used))
    if max_memory is not None:
        measurements.append(Measurement("monitoriza_redis_memory_max_bytes", labels, max_memory))

    utilization: dict[str, float] = {}
    if used is not None and max_memory is not None and max_memory > 0:
        utilization["memory"] = _ratio(used, max_memory)
    if clients is not None and max_clients is not None and max_clients > 0:
        utilization["clients"] = _ratio(clients, max_clients)
    return tuple(measurements), utilization




def _ratio(used: float, limit: float) -> float:
    """``used / limit`` capped at 1: Redis may briefly exceed maxmemory before evicting."""
    return min(used / limit, 1.0)

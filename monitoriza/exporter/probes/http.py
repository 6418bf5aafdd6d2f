"""HTTP probe: request a URL, check the status, and optionally read a JSON health body.

The probe must finish by its deadline whatever the target does. Until the headers arrive,
the connect and read timeouts (both the time left) bound it. The body is then read one
network read at a time with the deadline checked between reads, and a watchdog shuts the
socket down if one read is still blocked when the deadline passes. A target that sends its
headers and then trickles one byte at a time, or goes silent, therefore cannot hold the
probe, and neither can one that streams an endless body (``max_body_bytes`` stops it).
Needs urllib3 2.3 or later (``HTTPResponse.read1`` and ``HTTPResponse.shutdown``).

Health bodies come in several dialects (a plain ``{"status": "ok"}``, a map of component
statuses, Spring Boot's actuator ``{"status": "UP", "components": {"db": {"status": "UP"}}}``),
so every status word is normalised into :data:`~monitoriza.exporter.probes.base.COMPONENT_STATUSES`
by the pure :func:`parse_health_body`, which the I/O code only calls.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import requests
import urllib3.exceptions

from monitoriza.config.schema import HttpProbe
from monitoriza.exceptions import MonitorizaError
from monitoriza.exporter.probes.base import (
    Deadline,
    Measurement,
    ProbeOutcome,
    ProbeRunner,
)

# Upper bound of one read; a read returns whatever arrived, up to this much.
CHUNK_BYTES = 65536

# Status words seen in the wild, lower-case, by the status they stand for.
_STATUS_WORDS: Mapping[str, str] = {
    word: status
    for status, words in (
        ("healthy", ("healthy", "ok", "up", "pass", "passing", "green")),
        ("degraded", ("degraded", "warn", "warning", "yellow")),
        ("unhealthy", ("unhealthy", "down", "fail", "failing", "error", "critical", "red")),
    )
    for word in words
}

# What a request can raise for the target's or the configuration's fault. ValueError covers a
# value http.client cannot send, such as a header that is not Latin-1.
_REQUEST_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError)


class HealthBodyError(MonitorizaError, ValueError):
    """The body of a health endpoint is not the JSON object the probe expects."""


@dataclass(frozen=True, slots=True)
class HealthBody:
    """What a health endpoint says about itself, with every status normalised."""

    # The normalised top-level status, or None when the body has no "status".
    status: str | None
    # The top-level status exactly as the target wrote it, for messages.
    reported_status: str | None
    # Component name -> one of COMPONENT_STATUSES.
    components: Mapping[str, str] = field(default_factory=dict)


def normalise_status(value: object) -> str:
    """Map a status word (any case) to a component status; anything unrecognised is unknown.

    Unknown rather than an error, because a target that invents its own vocabulary still
    answered, and dropping the component would hide it from the dependencies dimension.
    """
    if not isinstance(value, str):
        return "unknown"
    return _STATUS_WORDS.get(value.strip().lower(), "unknown")


def parse_health_body(data: bytes) -> HealthBody:
    """Parse a health endpoint's JSON body; raise :class:`HealthBodyError` when it is not one.

    Components are either status strings (``{"redis": "down"}``) or objects with a "status"
    key (``{"redis": {"status": "down", "latency_ms": 3}}``); any other value is unknown.
    """
    try:
        document = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise HealthBodyError(f"health body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise HealthBodyError(f"health body is not a JSON object (got {_json_type(document)})")

    raw_status = document.get("status")
    status = None if raw_status is None else normalise_status(raw_status)
    reported = None if raw_status is None else str(raw_status)

    raw_components = document.get("components")
    if raw_components is None:
        raw_components = {}
    if not isinstance(raw_components, dict):
        raise HealthBodyError(
            f'health body "components" is not a JSON object (got {_json_type(raw_components)})'
        )
    components = {
        str(name): normalise_status(value.get("status") if isinstance(value, dict) else value)
        for name, value in raw_components.items()
    }
    return HealthBody(status=status, reported_status=reported, components=components)


def status_accepted(status: int, expected: Sequence[int]) -> bool:
    """True when ``status`` is one of ``expected``, or, with nothing expected, 2xx or 3xx."""
    if expected:
        return status in expected
    return 200 <= status < 400  # the success and redirect classes


def create(spec: HttpProbe) -> ProbeRunner:
    """Return a runner for ``spec``; the probe keeps no state between runs."""
    return functools.partial(run, spec)


def run(spec: HttpProbe, deadline: Deadline) -> ProbeOutcome:
    """Request ``spec.url`` and judge the answer; never raises for the target's fault."""
    with requests.Session() as session:
        # The probe measures the target itself: no proxy or ~/.netrc from the environment.
        session.trust_env = False
        try:
            response = session.request(
                spec.method,
                spec.url,
                headers=spec.headers,
                timeout=(deadline.remaining(), deadline.remaining()),
                verify=spec.verify_tls,
                stream=True,
                allow_redirects=True,
            )
        except _REQUEST_ERRORS as exc:
            reason, detail = classify_request_error(exc)
            return ProbeOutcome.failed(
                reason,
                f"{spec.method} {spec.url}: {detail}",
                measurements=(_status_code(spec, 0),),
            )
        with response:
            return _judge(spec, response, deadline)


def classify_request_error(exc: Exception) -> tuple[str, str]:
    """Return the failure reason and a short description for an exception raised by a request."""
    if isinstance(exc, requests.ConnectTimeout):
        return "timeout", "timed out connecting"
    if isinstance(exc, requests.Timeout | TimeoutError) or _caused_by_read_timeout(exc):
        return "timeout", "timed out waiting for the response"
    # Every exception of requests is an OSError, so only the others can be taken as socket errors.
    if isinstance(exc, requests.ConnectionError) or (
        isinstance(exc, OSError) and not isinstance(exc, requests.RequestException)
    ):
        return "connection", str(_innermost(exc))
    return "error", f"{type(exc).__name__}: {_innermost(exc)}"


class _BodyError(Exception):
    """Reading the body failed; carries the failure reason to report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _judge(spec: HttpProbe, response: requests.Response, deadline: Deadline) -> ProbeOutcome:
    """Turn a response whose headers have arrived into an outcome, reading the body if needed."""
    status = response.status_code
    latency = _latency(response)
    measurements = (_status_code(spec, status),)
    if not status_accepted(status, spec.expect_status):
        # A health endpoint often explains a 503 in its body (Spring Boot does): keep the
        # components when they can be read, but the failure is still the status.
        return ProbeOutcome.failed(
            "status",
            f"unexpected status {status}",
            components=_components_if_readable(spec, response, deadline),
            latency_seconds=latency,
            measurements=measurements,
        )
    body = b""
    if spec.method != "HEAD":  # a HEAD response has no body to wait for
        try:
            body = read_body(response, spec.max_body_bytes, deadline, keep=spec.health_body)
        except _BodyError as exc:
            return ProbeOutcome.failed(
                exc.reason, exc.message, latency_seconds=latency, measurements=measurements
            )
    if not spec.health_body or spec.method == "HEAD":
        return ProbeOutcome(
            success=True,
            message=f"HTTP {status}",
            latency_seconds=latency,
            measurements=measurements,
        )
    try:
        health = parse_health_body(body)
    except HealthBodyError as exc:
        return ProbeOutcome.failed(
            "body", str(exc), latency_seconds=latency, measurements=measurements
        )
    if health.status == "unhealthy":
        return ProbeOutcome.failed(
            "unhealthy",
            f"health endpoint reports status {health.reported_status!r}",
            components=health.components,
            latency_seconds=latency,
            measurements=measurements,
        )
    return ProbeOutcome(
        success=True,
        message=describe_health(status, health),
        latency_seconds=latency,
        components=health.components,
        measurements=measurements,
    )


def describe_health(status: int, health: HealthBody) -> str:
    """A one-line summary naming the overall status and every component that is not healthy."""
    parts = [f"HTTP {status}"]
    if health.reported_status is not None:
        parts.append(f"status {health.reported_status!r}")
    parts.extend(
        f"{name} {state}"
        for name, state in sorted(health.components.items())
        if state != "healthy"
    )
    return ", ".join(parts)


def read_body(
    response: requests.Response, limit: int, deadline: Deadline, *, keep: bool
) -> bytes:
    """Read the body, at most ``limit`` bytes and not past ``deadline``; raise ``_BodyError``.

    ``iter_content`` is not used: it blocks until a whole 64 KiB chunk has arrived, so a target
    that sends one byte at a time would hold it long past the deadline. ``read1`` returns
    whatever one network read brings, and the deadline is checked between reads; a single read
    that stalls is cut short by a watchdog. With ``keep`` false the bytes are only counted.
    """
    raw = response.raw
    parts: list[bytes] = []
    size = 0
    with _Watchdog(raw, deadline):
        try:
            while not deadline.expired():
                chunk = raw.read1(CHUNK_BYTES, decode_content=True)
                if not chunk:
                    if deadline.expired():  # the watchdog ended the read, not the target
                        break
                    return b"".join(parts)
                size += len(chunk)
                if size > limit:
                    raise _BodyError("body", f"response body exceeds {limit} bytes")
                if keep:
                    parts.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _read_error(exc, deadline) from None
    raise _BodyError("timeout", "timed out reading the response body")


def _read_error(exc: Exception, deadline: Deadline) -> _BodyError:
    """The failure for an exception raised while reading the body."""
    if deadline.expired() or isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return _BodyError("timeout", "timed out reading the response body")
    if isinstance(exc, urllib3.exceptions.DecodeError):
        return _BodyError("body", f"cannot decode the response body: {_innermost(exc)}")
    if isinstance(exc, urllib3.exceptions.ProtocolError | OSError):
        return _BodyError("connection", f"reading the body failed: {_innermost(exc)}")
    return _BodyError("error", f"reading the body failed: {_innermost(exc)}")


class _Watchdog:
    """Interrupts a read blocked on the response's socket once the deadline has passed.

    A socket timeout alone cannot do it: the one ``requests`` set is the time that was left
    when the request started, and once a response that closes its connection is handed over,
    the socket is out of reach. ``HTTPResponse.shutdown`` (urllib3 2.3) exists for exactly
    this, from another thread: the blocked read returns or raises, and the caller then sees
    the expired deadline.
    """

    def __init__(self, raw: urllib3.HTTPResponse, deadline: Deadline) -> None:
        self._raw = raw
        self._timer = threading.Timer(deadline.remaining(), self._interrupt)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Joined, so the response is never shut down while, or after, it is being closed.
        self._timer.cancel()
        self._timer.join()

    def _interrupt(self) -> None:
        # Already finished or released: nothing is blocked, so there is nothing to interrupt.
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            self._raw.shutdown()


def _components_if_readable(
    spec: HttpProbe, response: requests.Response, deadline: Deadline
) -> Mapping[str, str]:
    """Components from the body of a failed response, or none when there is no usable body."""
    if not spec.health_body or spec.method == "HEAD":
        return {}
    try:
        body = read_body(response, spec.max_body_bytes, deadline, keep=True)
        return parse_health_body(body).components
    except (_BodyError, HealthBodyError):
        return {}


def _latency(response: requests.Response) -> float:
    """Seconds until the headers arrived, redirects included."""
    return sum(
        (hop.elapsed.total_seconds() for hop in response.history),
        response.elapsed.total_seconds(),
    )


def _status_code(spec: HttpProbe, status: int) -> Measurement:
    return Measurement("monitoriza_http_status_code", (("probe", spec.name or ""),), status)


def _caused_by_read_timeout(exc: BaseException) -> bool:
    """``requests`` sometimes reports a read timeout as a ConnectionError wrapping it."""
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args)


def _innermost(exc: BaseException) -> BaseException:
    """The root cause of a chain of wrapped exceptions, whose message is the useful one."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = exc.__cause__ or exc.__context__
        if cause is None:
            break
        exc = cause
    return exc


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__

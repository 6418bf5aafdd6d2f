"""The HTTP probe against real local servers, and the health-body parser on literal bodies."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from monitoriza.config.schema import HttpProbe
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import COMPONENT_STATUSES, Deadline, ProbeOutcome
from monitoriza.exporter.probes.http import (
    HealthBody,
    HealthBodyError,
    classify_request_error,
    create,
    normalise_status,
    parse_health_body,
    run,
    status_accepted,
)
from tests.support.binaries import free_port
from tests.support.http_targets import Behaviour, HttpTarget, HungTcpTarget

# How far past its deadline a probe may return: scheduling noise, not a read left running.
SLACK = 0.5

CONECTA_BODY = {
    "status": "degraded",
    "components": {"api": "healthy", "database": "healthy", "redis": "unknown"},
}


def http_spec(url: str, **settings: object) -> HttpProbe:
    """A validated spec with the fields the loader would fill (name, interval, timeout)."""
    document: dict[str, object] = {
        "kind": "http",
        "url": url,
        "name": "health",
        "interval": "15s",
        "timeout": "1s",
    }
    document.update(settings)
    return HttpProbe.model_validate(document)


def probe(spec: HttpProbe) -> tuple[ProbeOutcome, float]:
    """Run the probe with a deadline of ``spec.timeout``; return the outcome and the wall time."""
    assert spec.timeout is not None
    started = time.monotonic()
    outcome = create(spec)(Deadline.after(spec.timeout))
    return outcome, time.monotonic() - started


def status_code(outcome: ProbeOutcome) -> float:
    """The value of the probe's status-code measurement, which every outcome carries."""
    found = [m for m in outcome.measurements if m.metric == "monitoriza_http_status_code"]
    assert len(found) == 1
    assert found[0].labels == (("probe", "health"),)
    return found[0].value


class TestHealthyTarget:
    """Targets that answer in time and say they are fine."""

    def test_healthy_body_succeeds_with_healthy_components(self, http_target: HttpTarget) -> None:
        """A healthy JSON body succeeds and every component is published as healthy."""
        url = http_target.respond(
            "/health",
            json_body={"status": "ok", "components": {"api": "up", "db": {"status": "PASS"}}},
        )
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.success, outcome.message
        assert outcome.failure_reason is None
        assert outcome.components == {"api": "healthy", "db": "healthy"}
        assert status_code(outcome) == 200

    def test_actuator_body(self, http_target: HttpTarget) -> None:
        """A Spring Boot actuator body (UP, nested status objects) is understood."""
        url = http_target.respond(
            "/actuator/health",
            json_body={
                "status": "UP",
                "components": {
                    "db": {"status": "UP", "details": {"database": "PostgreSQL"}},
                    "diskSpace": {"status": "UP", "details": {"free": 1, "total": 2}},
                    "ping": {"status": "UP"},
                },
            },
        )
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.success, outcome.message
        assert outcome.components == {"db": "healthy", "diskSpace": "healthy", "ping": "healthy"}

    def test_latency_is_time_to_headers(self, http_target: HttpTarget) -> None:
        """Latency is measured up to the response headers, so a 0.3 s delay shows in it."""
        url = http_target.respond("/slowish", json_body={"status": "ok"}, delay=0.3)
        outcome, elapsed = probe(http_spec(url, health_body=True))
        assert outcome.success, outcome.message
        assert outcome.latency_seconds is not None
        assert 0.3 <= outcome.latency_seconds <= elapsed

    def test_plain_get_ignores_body_content(self, http_target: HttpTarget) -> None:
        """Without health_body any 2xx passes, whatever the body says."""
        url = http_target.respond("/", body=b"<html>not json</html>", content_type="text/html")
        outcome, _ = probe(http_spec(url))
        assert outcome.success, outcome.message
        assert outcome.components == {}

    def test_redirect_is_followed(self, http_target: HttpTarget) -> None:
        """A redirect is followed and the final answer is judged."""
        http_target.respond("/health", json_body={"status": "ok"})
        url = http_target.respond("/old", status=302, headers={"Location": "/health"})
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.success, outcome.message
        assert status_code(outcome) == 200
        assert http_target.hits("/old") == 1
        assert http_target.hits("/health") == 1

    def test_head_does_not_read_the_body(self, http_target: HttpTarget) -> None:
        """A HEAD probe succeeds on the headers alone, even where a GET body would be huge."""
        url = http_target.huge("/big")
        outcome, elapsed = probe(http_spec(url, method="HEAD", timeout="5s"))
        assert outcome.success, outcome.message
        assert elapsed < 1.0

    def test_headers_are_sent(self, http_target: HttpTarget) -> None:
        """Configured headers reach the target (a missing one would get 401 here)."""
        url = http_target.respond("/auth", json_body={"status": "ok"})
        outcome, _ = probe(http_spec(url, headers={"Authorization": "Bearer t"}))
        assert outcome.success, outcome.message
        assert http_target.last_headers("/auth").get("Authorization") == "Bearer t"

    def test_create_runner_picks_this_module(self, http_target: HttpTarget) -> None:
        """The probe registry builds an HTTP runner from an http spec."""
        url = http_target.respond("/health", json_body={"status": "ok"})
        outcome = create_runner(http_spec(url))(Deadline.after(1.0))
        assert outcome.success, outcome.message


class TestDegradedTarget:
    """Targets that answer but report trouble short of being down."""

    def test_conecta_degraded_body(self, http_target: HttpTarget) -> None:
        """A degraded body with an unknown component succeeds; components carry the detail."""
        url = http_target.respond("/health", json_body=CONECTA_BODY)
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.success, outcome.message
        assert outcome.components == {"api": "healthy", "database": "healthy", "redis": "unknown"}
        assert "redis unknown" in outcome.message

    def test_unknown_component_is_kept(self, http_target: HttpTarget) -> None:
        """A component reported as unknown is published as unknown, not dropped."""
        url = http_target.respond(
            "/health", json_body={"components": {"cache": "unknown", "queue": "sleepy"}}
        )
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.success, outcome.message
        assert outcome.components == {"cache": "unknown", "queue": "unknown"}

    def test_unhealthy_component_alone_does_not_fail(self, http_target: HttpTarget) -> None:
        """A down component under a degraded top level is detail, not a probe failure."""
        url = http_target.respond(
            "/health",
            json_body={"status": "degraded", "components": {"redis": {"status": "down"}}},
        )
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.success, outcome.message
        assert outcome.components == {"redis": "unhealthy"}


class TestUnhealthyTarget:
    """Targets that answer and say they are unhealthy."""

    @pytest.mark.parametrize("word", ["unhealthy", "down", "DOWN", "Fail"])
    def test_unhealthy_top_level_fails(self, http_target: HttpTarget, word: str) -> None:
        """A top-level status meaning unhealthy fails with reason unhealthy, naming it."""
        url = http_target.respond(
            "/health", json_body={"status": word, "components": {"db": "down", "api": "up"}}
        )
        outcome, _ = probe(http_spec(url, health_body=True))
        assert not outcome.success
        assert outcome.failure_reason == "unhealthy"
        assert word in outcome.message
        assert outcome.components == {"db": "unhealthy", "api": "healthy"}
        assert status_code(outcome) == 200


class TestStatus:
    """The status code check."""

    def test_503_fails_with_status(self, http_target: HttpTarget) -> None:
        """A 503 fails with reason status, and the status code is published."""
        url = http_target.respond("/health", status=503, body=b"busy", content_type="text/plain")
        outcome, _ = probe(http_spec(url))
        assert not outcome.success
        assert outcome.failure_reason == "status"
        assert outcome.message == "unexpected status 503"
        assert status_code(outcome) == 503

    def test_503_health_body_keeps_components(self, http_target: HttpTarget) -> None:
        """An actuator-style 503 still reports its components; the failure stays status."""
        url = http_target.respond(
            "/health",
            status=503,
            json_body={"status": "DOWN", "components": {"db": {"status": "DOWN"}}},
        )
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.failure_reason == "status"
        assert outcome.components == {"db": "unhealthy"}

    def test_expected_status_is_accepted(self, http_target: HttpTarget) -> None:
        """A status listed in expect_status passes even when it is not 2xx."""
        url = http_target.respond("/teapot", status=418)
        outcome, _ = probe(http_spec(url, expect_status=[418]))
        assert outcome.success, outcome.message
        assert status_code(outcome) == 418

    def test_unlisted_status_is_rejected(self, http_target: HttpTarget) -> None:
        """With expect_status set, even a 200 outside it fails."""
        url = http_target.respond("/ok", status=200)
        outcome, _ = probe(http_spec(url, expect_status=[204]))
        assert outcome.failure_reason == "status"
        assert outcome.message == "unexpected status 200"

    @pytest.mark.parametrize(
        ("status", "expected", "accepted"),
        [
            (200, [], True),
            (302, [], True),
            (399, [], True),
            (199, [], False),
            (404, [], False),
            (503, [], False),
            (503, [503], True),
            (200, [201, 204], False),
        ],
    )
    def test_status_accepted(self, status: int, expected: list[int], accepted: bool) -> None:
        """Any 2xx/3xx passes when nothing is expected; otherwise only the listed codes."""
        assert status_accepted(status, expected) is accepted


class TestDeadline:
    """A slow target cannot hold the probe past its deadline."""

    def test_slow_headers_time_out(self, http_target: HttpTarget) -> None:
        """A server slower than the timeout fails with reason timeout, on time."""
        url = http_target.respond("/health", json_body={"status": "ok"}, delay=3.0)
        outcome, elapsed = probe(http_spec(url, timeout="500ms", health_body=True))
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 0.5 + SLACK
        assert status_code(outcome) == 0

    @pytest.mark.parametrize("health_body", [True, False])
    def test_trickling_body_times_out(self, http_target: HttpTarget, health_body: bool) -> None:
        """Headers then one byte every 0.2 s for 10 s: timeout, on time."""
        url = http_target.trickle("/health", interval=0.2, duration=10.0)
        outcome, elapsed = probe(http_spec(url, timeout="1s", health_body=health_body))
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 1.0 + SLACK
        assert status_code(outcome) == 200

    def test_stall_after_late_headers_times_out(self, http_target: HttpTarget) -> None:
        """Headers at 0.7 s of 1 s, then silence: timeout at the deadline, not a read later."""
        url = http_target.set(
            "/health", Behaviour(delay=0.7, trickle_interval=5.0, trickle_duration=10.0)
        )
        outcome, elapsed = probe(http_spec(url, timeout="1s", health_body=True))
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 1.0 + SLACK
        assert outcome.latency_seconds is not None
        assert outcome.latency_seconds >= 0.7

    def test_silent_target_times_out(self, hung_tcp_target: HungTcpTarget) -> None:
        """A target that accepts the connection but never answers times out, on time."""
        outcome, elapsed = probe(http_spec(hung_tcp_target.url, timeout="500ms"))
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 0.5 + SLACK


class TestBody:
    """Bodies that are too big or not a health document."""

    def test_garbage_health_body(self, http_target: HttpTarget) -> None:
        """Bytes that are not JSON fail with reason body."""
        url = http_target.respond("/health", body=b"\x00\xff<garbage>\x13")
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.failure_reason == "body"
        assert outcome.message.startswith("health body is not JSON")
        assert status_code(outcome) == 200

    def test_json_array_health_body(self, http_target: HttpTarget) -> None:
        """JSON that is not an object fails with reason body."""
        url = http_target.respond("/health", json_body=["ok"])
        outcome, _ = probe(http_spec(url, health_body=True))
        assert outcome.failure_reason == "body"

    @pytest.mark.parametrize("health_body", [True, False])
    def test_huge_body_stops_at_the_limit(self, http_target: HttpTarget, health_body: bool) -> None:
        """A 50 MB body fails with reason body after reading about 1 MB, not all of it."""
        url = http_target.huge("/health")
        outcome, elapsed = probe(http_spec(url, timeout="10s", health_body=health_body))
        assert outcome.failure_reason == "body"
        assert outcome.message == "response body exceeds 1048576 bytes"
        assert elapsed < 2.0

    def test_configured_limit(self, http_target: HttpTarget) -> None:
        """max_body_bytes is honoured exactly: a body one byte over it fails."""
        http_target.respond("/exact", body=b"x" * 100, content_type="text/plain")
        http_target.respond("/over", body=b"x" * 101, content_type="text/plain")
        exact, _ = probe(http_spec(http_target.url("/exact"), max_body_bytes=100))
        over, _ = probe(http_spec(http_target.url("/over"), max_body_bytes=100))
        assert exact.success, exact.message
        assert over.failure_reason == "body"


class TestConnection:
    """Targets that cannot be reached."""

    def test_refused(self) -> None:
        """A port nobody listens on fails with reason connection and status code 0."""
        outcome, _ = probe(http_spec(f"http://127.0.0.1:{free_port()}/health"))
        assert outcome.failure_reason == "connection"
        assert "refused" in outcome.message.lower()
        assert status_code(outcome) == 0

    def test_run_never_raises_on_bad_url(self) -> None:
        """A URL requests cannot use is an error outcome, not an exception."""
        spec = http_spec("http://127.0.0.1:1/health").model_copy(update={"url": "http://[::1"})
        outcome = run(spec, Deadline.after(1.0))
        assert outcome.failure_reason == "error"


    def test_run_never_raises_on_unsendable_header(self, http_target: HttpTarget) -> None:
        """A header value http.client cannot encode is an error outcome, not an exception."""
        url = http_target.respond("/health", json_body={"status": "ok"})
        outcome, _ = probe(http_spec(url, headers={"X-Currency": "\u20ac"}))
        assert outcome.failure_reason == "error"
        assert status_code(outcome) == 0


class TestClassifyRequestError:
    """Exceptions raised by a request map onto the fixed failure reasons."""

    @pytest.mark.parametrize(
        ("exc", "reason"),
        [
            (requests.ConnectTimeout("x"), "timeout"),
            (requests.ReadTimeout("x"), "timeout"),
            (TimeoutError("x"), "timeout"),
            (requests.ConnectionError("reset"), "connection"),
            (requests.exceptions.SSLError("bad certificate"), "connection"),
            (ConnectionRefusedError(111, "refused"), "connection"),
            (requests.TooManyRedirects("x"), "error"),
            (requests.exceptions.InvalidURL("x"), "error"),
            (ValueError("x"), "error"),
        ],
    )
    def test_reason(self, exc: Exception, reason: str) -> None:
        """Timeouts are timeout, socket trouble is connection, the rest is error."""
        assert classify_request_error(exc)[0] == reason


class TestParseHealthBody:
    """The pure parser, on literal bodies."""

    def test_string_components(self) -> None:
        """Components given as status strings are normalised."""
        body = parse_health_body(b'{"status": "ok", "components": {"api": "OK", "redis": "red"}}')
        assert body == HealthBody("healthy", "ok", {"api": "healthy", "redis": "unhealthy"})

    def test_object_components(self) -> None:
        """Components given as objects use their status key; extra keys are ignored."""
        body = parse_health_body(
            b'{"components": {"redis": {"status": "down", "latency_ms": 3}, "db": {}}}'
        )
        assert body.status is None
        assert body.reported_status is None
        assert body.components == {"redis": "unhealthy", "db": "unknown"}

    def test_actuator(self) -> None:
        """Spring Boot actuator's shape is read like any other."""
        body = parse_health_body(
            b'{"status":"UP","components":{"db":{"status":"UP"},"mail":{"status":"DOWN"}}}'
        )
        assert body.status == "healthy"
        assert body.components == {"db": "healthy", "mail": "unhealthy"}

    def test_status_only(self) -> None:
        """A body with just a status has no components."""
        assert parse_health_body(b'{"status": "warn"}') == HealthBody("degraded", "warn", {})

    def test_odd_component_values_are_unknown(self) -> None:
        """A component value that is neither a string nor an object is unknown, not an error."""
        body = parse_health_body(b'{"components": {"a": 1, "b": null, "c": ["up"], "d": true}}')
        assert body.components == dict.fromkeys("abcd", "unknown")

    def test_non_string_top_level_status_is_unknown(self) -> None:
        """A top-level status that is not a string is unknown."""
        assert parse_health_body(b'{"status": 1}').status == "unknown"

    @pytest.mark.parametrize("data", [b"[]", b'"ok"', b"42", b"null", b"true"])
    def test_non_object_json(self, data: bytes) -> None:
        """JSON that is not an object is rejected."""
        with pytest.raises(HealthBodyError, match="not a JSON object"):
            parse_health_body(data)

    @pytest.mark.parametrize("data", [b"", b"<html>", b'{"status": ', b"\xff\xfe\x00garbage"])
    def test_invalid_json(self, data: bytes) -> None:
        """Bytes that are not JSON are rejected."""
        with pytest.raises(HealthBodyError, match="health body is not JSON"):
            parse_health_body(data)

    def test_components_must_be_an_object(self) -> None:
        """A components value that is not an object is rejected."""
        with pytest.raises(HealthBodyError, match="components"):
            parse_health_body(b'{"status": "ok", "components": ["db"]}')

    def test_error_is_a_value_error(self) -> None:
        """Callers that only know ValueError still catch a bad body."""
        assert issubclass(HealthBodyError, ValueError)

    @pytest.mark.parametrize(
        ("word", "status"),
        [
            *((w, "healthy") for w in ["healthy", "ok", "UP", "pass", "passing", " Green "]),
            *((w, "degraded") for w in ["degraded", "WARN", "warning", "yellow"]),
            *(
                (w, "unhealthy")
                for w in ["unhealthy", "down", "fail", "failing", "ERROR", "critical", "red"]
            ),
            *((w, "unknown") for w in ["unknown", "OUT_OF_SERVICE", "", "maybe"]),
        ],
    )
    def test_normalise_status(self, word: str, status: str) -> None:
        """Status words map case-insensitively onto the four component statuses."""
        assert normalise_status(word) == status
        assert status in COMPONENT_STATUSES


class TestFixtureShutdown:
    """The HTTP target itself: closing it must not hang or leave threads behind."""

    def test_close_interrupts_a_delayed_handler(self) -> None:
        """Closing the target wakes a handler that is mid-delay and stops every thread."""
        before = set(threading.enumerate())
        target = HttpTarget()
        url = target.respond("/slow", json_body={"status": "ok"}, delay=30.0)
        outcome, _ = probe(http_spec(url, timeout="200ms"))
        assert outcome.failure_reason == "timeout"
        started = time.monotonic()
        target.close()
        assert time.monotonic() - started < 1.0
        assert set(threading.enumerate()) <= before

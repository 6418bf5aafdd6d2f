"""Slow and idle clients cannot starve intake, and the server's own answers are JSON.

Everything here runs against the real ``monitoriza responder`` process (one per module, a
2-second ``request_deadline`` so the deadlines are quick to observe) over loopback sockets:
raw bytes where a well-behaved HTTP client could not send what is tested.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from monitoriza.responder.app import create_app
from tests.support.responder import TOKEN, fixture_body, responder_config
from tests.support.responder_process import ResponderProcess
from tests.support.slow_clients import Prober, SlowClientsProcess, percentile

DEADLINE = 2.0
MARGIN = 1.5  # the loop's tick, scheduling on 2 busy cores
MAX_BODY = 8192
SLOW_CLIENTS = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResponderProcess]:
    process = ResponderProcess(tmp_path_factory.mktemp("slow"), request_deadline="2s",
                               max_body_bytes=MAX_BODY)
    process.start()
    yield process
    process.stop()


def exchange(server: ResponderProcess, data: bytes, *, wait: float = DEADLINE + MARGIN,
             ) -> tuple[bytes, float]:
    """Send ``data`` on a new connection, read until the server closes it.

    Returns what was read and how long the server took to close."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65_536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def parse(answer: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def post_head(length: int | None = None, chunked: bool = False) -> bytes:
    head = (b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n")
    if chunked:
        head += b"Transfer-Encoding: chunked\r\n"
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    return head + b"\r\n"


def chunks(body: bytes, size: int = 1000) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


def padded(size: int) -> bytes:
    """A new valid notification padded with whitespace to ``size`` bytes."""
    document = json.loads(fixture_body("firing_single.json"))
    document["alerts"][0]["fingerprint"] = f"padded{size:06d}{time.monotonic_ns() % 10**6:06d}"
    body = json.dumps(document).encode()
    return body + b" " * (size - len(body))


class TestSlowClients:
    """A thousand stalled connections neither slow the others down nor stay open."""

    def test_intake_and_health_stay_fast_and_slow_connections_are_closed(
            self, server: ResponderProcess) -> None:
        """While 1,000 connections stall (half mid-header, half trickling a body a byte a
        second, replaced as they are closed), /healthz p99 < 100 ms, every notification is
        acknowledged within 200 ms, and each stalled connection is answered 408 and closed
        within the deadline."""
        duration = 3 * DEADLINE
        attack = SlowClientsProcess("127.0.0.1", server.port, count=SLOW_CLIENTS,
                                    duration=duration, token=TOKEN,
                                    wait_close=DEADLINE + MARGIN).start()
        time.sleep(0.5)  # the server accepts the opening flood of 1,000 connections
        health = Prober("127.0.0.1", server.port, TOKEN, intake=False, interval=0.01).start()
        intake = Prober("127.0.0.1", server.port, TOKEN, prefix="slow", healthz=False).start()
        time.sleep(duration - 0.5)
        healthz, acknowledged = health.stop(), intake.stop()
        outcome = attack.join()

        assert outcome.failed_connects == 0
        assert outcome.peak_open == SLOW_CLIENTS
        assert healthz.failures == acknowledged.failures == []
        assert len(healthz.healthz) >= 100 and len(acknowledged.intake) >= 50
        assert percentile(healthz.healthz, 0.99) < 0.100, sorted(healthz.healthz)[-5:]
        assert max(acknowledged.intake) < 0.200, sorted(acknowledged.intake)[-5:]
        # Every one closed within the deadline (plus the loop's tick), none left open.
        assert len(outcome.lifetimes) >= 2 * SLOW_CLIENTS
        assert max(outcome.lifetimes) < DEADLINE + MARGIN, max(outcome.lifetimes)
        assert min(outcome.lifetimes) > DEADLINE - 0.5
        timed_out = [answer for answer in outcome.answers if answer]
        assert len(timed_out) >= 0.99 * len(outcome.answers)
        status, headers, body = parse(timed_out[0])
        assert (status, headers["content-type"]) == (408, "application/json")
        assert body == {"error": "Request Timeout",
                        "message": f"no complete request within {DEADLINE:g}s"}

    def test_half_a_header_block_gets_408_at_the_deadline(self,
                                                          server: ResponderProcess) -> None:
        """A request whose headers never end is answered 408 (JSON) and closed on time."""
        answer, took = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-")
        status, _, body = parse(answer)
        assert status == 408 and isinstance(body, dict) and body["error"] == "Request Timeout"
        assert DEADLINE - 0.2 < took < DEADLINE + MARGIN

    def test_an_idle_connection_is_closed_silently(self, server: ResponderProcess) -> None:
        """A connection that sends nothing is closed at the deadline, with no answer."""
        answer, took = exchange(server, b"")
        assert answer == b""
        assert DEADLINE - 0.2 < took < DEADLINE + MARGIN

    def test_a_prompt_client_keeps_its_connection_alive(self, server: ResponderProcess) -> None:
        """Requests on one kept-alive connection, each sent at once, are all answered."""
        with requests.Session() as session:
            for _ in range(3):
                assert session.get(f"{server.url}/healthz", timeout=5).status_code == 200
                time.sleep(DEADLINE / 4)


class TestServerErrorsAreJson:
    """What the server answers by itself has the app's JSON error shape."""

    def test_malformed_request_line(self, server: ResponderProcess) -> None:
        """Garbage instead of a request line: 400 JSON."""
        status, headers, body = parse(exchange(server, b"NOT HTTP AT ALL\r\n\r\n")[0])
        assert (status, headers["content-type"]) == (400, "application/json")
        assert isinstance(body, dict) and body["error"] == "Bad Request" and body["message"]

    def test_header_block_too_large(self, server: ResponderProcess) -> None:
        """A 70 kB header: 431 JSON."""
        request = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000
                   + b"\r\n\r\n")
        status, headers, body = parse(exchange(server, request)[0])
        assert (status, headers["content-type"]) == (431, "application/json")
        assert isinstance(body, dict)
        assert body["error"] == "Request Header Fields Too Large"

    def test_unsupported_media_type_is_the_apps(self, server: ResponderProcess) -> None:
        """415 from the app, JSON too (the same shape end to end)."""
        response = requests.post(f"{server.url}/api/v1/alerts", data=b"x", timeout=5,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "text/plain"})
        assert response.status_code == 415
        assert set(response.json()) >= {"error", "message"}


class TestBodyLimit:
    """``max_body_bytes`` holds for Content-Length and chunked bodies alike."""

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_a_body_at_the_limit_is_accepted(self, server: ResponderProcess,
                                             chunked: bool) -> None:
        """Exactly ``max_body_bytes``: journaled, 200."""
        body = padded(MAX_BODY)
        request = (post_head(chunked=True) + chunks(body) if chunked
                   else post_head(len(body)) + body)
        status, _, answer = parse(exchange(server, request)[0])
        assert status == 200, answer
        assert isinstance(answer, dict) and answer["alerts"] == 1

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_a_body_over_the_limit_gets_413(self, server: ResponderProcess,
                                            chunked: bool) -> None:
        """One byte over ``max_body_bytes``: 413 JSON, before or while the body is read."""
        body = padded(MAX_BODY + 1)
        request = (post_head(chunked=True) + chunks(body) if chunked
                   else post_head(len(body)) + body)
        status, headers, answer = parse(exchange(server, request)[0])
        assert (status, headers["content-type"]) == (413, "application/json")
        assert answer == {"error": "Request Entity Too Large",
                          "message": f"the body is larger than {MAX_BODY} bytes"}

    def test_the_app_refuses_a_chunked_body_over_the_limit(self, tmp_path: Path) -> None:
        """Behind a server that passes chunked bodies through (``wsgi.input_terminated``, as
        gunicorn did) the app itself answers 413, not 400 for a truncated body."""
        (tmp_path / "token").write_text(TOKEN)
        app = create_app(responder_config(tmp_path, max_body_bytes=MAX_BODY), token=TOKEN,
                         start_worker=False)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
                   "Transfer-Encoding": "chunked"}
        for size, expected in ((MAX_BODY, 200), (MAX_BODY + 1, 413), (4 * MAX_BODY, 413)):
            response = client.post("/api/v1/alerts", input_stream=io.BytesIO(padded(size)),
                                   headers=headers,
                                   environ_overrides={"wsgi.input_terminated": True})
            assert response.status_code == expected, (size, response.get_json())
            assert response.is_json


class TestMethodNotAllowed:
    """405 says which methods the resource takes."""

    @pytest.mark.parametrize(("method", "path", "allowed"), [
        ("DELETE", "/api/v1/alerts", {"POST", "OPTIONS"}),
        ("POST", "/healthz", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/api/v1/kill-switch", {"GET", "HEAD", "POST", "OPTIONS"}),
    ])
    def test_405_carries_allow(self, server: ResponderProcess, method: str, path: str,
                               allowed: set[str]) -> None:
        """The answer is JSON and its Allow header lists the route's methods."""
        response = requests.request(method, f"{server.url}{path}", timeout=5,
                                    headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 405
        assert response.headers["Content-Type"] == "application/json"
        assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
        assert response.json()["error"] == "Method Not Allowed"


class TestGracefulStop:
    """SIGTERM: no new connections, the request being received is still answered."""

    def test_sigterm_finishes_the_request_in_flight(self, tmp_path: Path) -> None:
        """A notification half-sent when SIGTERM arrives is journaled and acknowledged;
        the listening socket is closed and the process exits 0."""
        process = ResponderProcess(tmp_path, request_deadline="5s")
        process.start()
        try:
            body = padded(2000)
            with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
                sock.sendall(post_head(len(body)) + body[:1000])
                time.sleep(0.2)
                assert process.process is not None
                process.process.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", process.port), timeout=1).close()
                sock.sendall(body[1000:])
                answer = b""
                while chunk := sock.recv(65_536):
                    answer += chunk
            status, _, acknowledged = parse(answer)
            assert status == 200 and isinstance(acknowledged, dict)
            assert acknowledged["accepted"] == 1
            assert process.process.wait(timeout=20) == 0
        finally:
            process.stop()

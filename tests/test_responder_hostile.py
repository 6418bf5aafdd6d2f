"""Hostile and replayed requests against the responder as deployed: each answered as the docs
say, with a JSON error, and none of them writes anything.

One real responder process serves the whole module; every case sends its request over a
real socket (some byte by byte, as no HTTP client library would) and then checks that the
journal did not move.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.responder import TOKEN, fixture_body, fixture_json
from tests.support.responder_process import ResponderProcess

MAX_BODY = 65536


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResponderProcess]:
    process = ResponderProcess(tmp_path_factory.mktemp("hostile"), max_body_bytes=MAX_BODY)
    process.start()
    yield process
    process.stop()


def journal_rows(responder: ResponderProcess) -> int:
    with sqlite3.connect(responder.directory / "responder.db") as conn:
        count: int = conn.execute("SELECT count(*) FROM journal").fetchone()[0]
        return count


def raw_request(responder: ResponderProcess, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as is and read the whole answer (the server closes after an error)."""
    with socket.create_connection(("127.0.0.1", responder.port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        decoded, rest = b"", body
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text.split(b";")[0], 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        body = decoded
    return status, headers, body


def notification(**alert_changes: Any) -> dict[str, Any]:
    body = fixture_json("firing_single.json")
    body["alerts"][0].update(alert_changes)
    return body


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# (name, headers, body, expected status) sent with requests.post to /api/v1/alerts.
POSTED: list[tuple[str, dict[str, str], bytes, int]] = [
    ("no token", {"Content-Type": "application/json"}, fixture_body("firing_single.json"), 401),
    ("wrong token", auth("x" * len(TOKEN)), fixture_body("firing_single.json"), 401),
    ("token prefix", auth(TOKEN[:-1]), fixture_body("firing_single.json"), 401),
    ("token plus suffix", auth(TOKEN + "x"), fixture_body("firing_single.json"), 401),
    ("basic scheme", {"Authorization": f"Basic {TOKEN}", "Content-Type": "application/json"},
     fixture_body("firing_single.json"), 401),
    ("text/plain", {**auth(), "Content-Type": "text/plain"},
     fixture_body("firing_single.json"), 415),
    ("not JSON", auth(), b"{\"version\": \"4\",", 400),
    ("JSON array", auth(), b"[]", 400),
    ("deep nesting", auth(), b"[" * 30_000 + b"]" * 30_000, 400),
    ("version 3", auth(), json.dumps({**fixture_json("firing_single.json"),
                                      "version": "3"}).encode(), 400),
    ("alerts not a list", auth(), json.dumps({**fixture_json("firing_single.json"),
                                              "alerts": {}}).encode(), 400),
    ("date-only startsAt", auth(), json.dumps(notification(startsAt="2026-11-24")).encode(),
     400),
    ("startsAt without offset", auth(),
     json.dumps(notification(startsAt="2026-11-24T21:09:11")).encode(), 400),
    ("week date", auth(), json.dumps(notification(startsAt="2026-W48-2T21:09:11Z")).encode(),
     400),
    ("lone surrogate key", auth(),
     json.dumps(notification(labels={"\ud800": "x", "alertname": "A"})).encode(), 400),
    ("lone surrogate value", auth(),
     json.dumps(notification(labels={"alertname": "A", "service": "\udfff"})).encode(), 400),
    ("NUL in a label value", auth(),
     json.dumps(notification(labels={"alertname": "A", "service": "a\u0000b"})).encode(), 400),
    ("over the size limit", auth(), b" " * (MAX_BODY + 1), 413),
]


class TestHostileRequests:
    """Every hostile request gets its documented status and a JSON error; nothing is written."""

    @pytest.mark.parametrize(("name", "headers", "body", "status"), POSTED,
                             ids=[case[0] for case in POSTED])
    def test_posted(self, responder: ResponderProcess, name: str, headers: dict[str, str],
                    body: bytes, status: int) -> None:
        before = journal_rows(responder)
        response = requests.post(f"{responder.url}/api/v1/alerts", data=body, headers=headers,
                                 timeout=10)
        assert response.status_code == status, (name, response.text[:300])
        assert response.headers["Content-Type"].startswith("application/json")
        assert "error" in response.json()
        assert journal_rows(responder) == before

    def test_chunked_over_the_limit(self, responder: ResponderProcess) -> None:
        """A chunked body is held to the same limit as one with a Content-Length."""
        chunk = b"x" * 8192
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(12))
        raw = raw_request(responder, (
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"))
        status, headers, body = parse_response(raw)
        assert status == 413
        assert headers["content-type"].startswith("application/json")
        assert "error" in json.loads(body)

    def test_wrong_method_names_the_allowed_ones(self, responder: ResponderProcess) -> None:
        response = requests.get(f"{responder.url}/api/v1/alerts", headers=auth(), timeout=10)
        assert response.status_code == 405
        assert "POST" in response.headers["Allow"]
        assert "error" in response.json()

    @pytest.mark.parametrize("path", ["/api/v1/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                                      "/api/v1/alerts%00", "/" + "a" * 4000])
    def test_odd_paths_are_json_404(self, responder: ResponderProcess, path: str) -> None:
        raw = raw_request(responder, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\n\r\n".encode())
        status, headers, body = parse_response(raw)
        assert status in (400, 404, 414)
        assert headers["content-type"].startswith("application/json")
        assert "error" in json.loads(body)

    @pytest.mark.parametrize("request_bytes", [
        b"GARBAGE\r\n\r\n",
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    ], ids=["garbage line", "negative length", "length and chunked", "huge header"])
    def test_malformed_http_is_json(self, responder: ResponderProcess,
                                    request_bytes: bytes) -> None:
        """What the HTTP server itself refuses is JSON too, never an HTML page."""
        before = journal_rows(responder)
        status, headers, body = parse_response(raw_request(responder, request_bytes))
        assert 400 <= status < 500
        assert headers["content-type"].startswith("application/json")
        assert "error" in json.loads(body)
        assert journal_rows(responder) == before


# Query strings and ids that int() or the database driver would have turned into a 500.
HOSTILE_QUERIES = [
    ("/api/v1/incidents?after=%C2%B2", 400),
    ("/api/v1/incidents?after=9223372036854775808", 400),
    ("/api/v1/incidents?after=-1", 400),
    ("/api/v1/incidents?limit=1_000", 400),
    ("/api/v1/incidents?limit=%205", 400),
    ("/api/v1/incidents/9223372036854775808", 404),
    ("/api/v1/incidents/99999999999999999999999/alerts", 404),
    ("/api/v1/audit?since=9223372036854775808", 400),
    ("/api/v1/audit?since=%C2%B2", 400),
    ("/api/v1/dead-letters?after=%C2%B2", 400),
    ("/api/v1/dead-letters?limit=0", 400),
]


@pytest.mark.parametrize(("path", "status"), HOSTILE_QUERIES,
                         ids=[case[0] for case in HOSTILE_QUERIES])
def test_hostile_query(responder: ResponderProcess, path: str, status: int) -> None:
    """Odd numbers in the read API's queries are a JSON 400/404, never a 500."""
    response = requests.get(f"{responder.url}{path}", headers=auth(), timeout=10)
    assert response.status_code == status, response.text[:300]
    assert "error" in response.json()


class TestReplays:
    """Captured notifications replayed add nothing after the first time."""

    def test_fixture_replayed_three_times(self, responder: ResponderProcess) -> None:
        body = fixture_body("firing_group.json")
        answers = [requests.post(f"{responder.url}/api/v1/alerts", data=body, headers=auth(),
                                 timeout=10).json() for _ in range(3)]
        alerts = answers[0]["alerts"]
        assert answers[1]["duplicates"] == alerts
        assert answers[2]["duplicates"] == alerts


def test_still_healthy(responder: ResponderProcess) -> None:
    """After all of the above the responder still answers at once."""
    response = requests.get(f"{responder.url}/healthz", timeout=2)
    assert response.status_code == 200

"""Real local targets for probe tests: an HTTP server whose answers a test scripts, and a
TCP listener that accepts connections and never says anything.

Both listen on 127.0.0.1 on a port the kernel picks, run in background threads, and are shut
down at teardown. Shutdown must never hang a test run: a handler that is sleeping wakes and
gives up as soon as the server closes, handler sockets have timeouts, and a handler writing
to a client that has gone away stops at the first failed write.

Fixtures: :func:`http_target` (an :class:`HttpTarget`) and :func:`hung_tcp_target` (a
:class:`HungTcpTarget`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

import pytest

from tests.support.http_server import TrackedHTTPServer

# How often the accept and serve loops look for a shutdown request.
_SLICE = 0.05
# Longest a handler blocks on one socket read or write.
_HANDLER_SOCKET_TIMEOUT = 2.0
# How long teardown waits for a thread before declaring it stuck.
_JOIN_TIMEOUT = 5.0

FIFTY_MB = 50 * 1024 * 1024

# What socketserver passes to process_request.
_Request = socket.socket | tuple[bytes, socket.socket]
_Address = Any


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the server answers one path."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    # Seconds to wait before sending anything at all.
    delay: float = 0.0
    # When set: after the headers, stream this many filler bytes (with a Content-Length).
    stream_bytes: int | None = None
    # When set: after the headers, send one byte every ``trickle_interval`` seconds for
    # ``trickle_duration`` seconds, without a Content-Length.
    trickle_interval: float | None = None
    trickle_duration: float = 0.0


class HttpTarget:
    """A running HTTP server whose answer for each path a test sets.

    Paths nobody configured answer 404 with an empty JSON object. Every request is counted
    per path in :meth:`hits`, and its headers kept for :meth:`last_headers`.
    """

    def __init__(self) -> None:
        self._behaviours: dict[str, Behaviour] = {}
        self._hits: Counter[str] = Counter()
        self._last_headers: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.target = self
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _SLICE},
            name=f"http-target-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def url(self, path: str) -> str:
        """The full URL of ``path`` on this server."""
        return self.base_url + path

    def set(self, path: str, behaviour: Behaviour) -> str:
        """Answer ``path`` as ``behaviour`` says from now on; return the path's URL."""
        with self._lock:
            self._behaviours[path] = behaviour
        return self.url(path)

    def respond(
        self,
        path: str,
        *,
        status: int = 200,
        json_body: object = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> str:
        """Answer with ``status`` and a JSON document (``json_body``) or raw bytes (``body``)."""
        if body is None:
            body = b"" if json_body is None else json.dumps(json_body).encode()
        return self.set(
            path,
            Behaviour(
                status=status,
                body=body,
                content_type=content_type,
                headers=dict(headers or {}),
                delay=delay,
            ),
        )

    def huge(self, path: str, *, size: int = FIFTY_MB, status: int = 200) -> str:
        """Answer with a body of ``size`` filler bytes, streamed as fast as the client reads."""
        return self.set(
            path, Behaviour(status=status, content_type="text/plain", stream_bytes=size)
        )

    def trickle(
        self, path: str, *, interval: float = 0.2, duration: float = 10.0, status: int = 200
    ) -> str:
        """Send the headers at once, then one body byte every ``interval`` s for ``duration`` s."""
        return self.set(
            path,
            Behaviour(
                status=status,
                content_type="application/json",
                trickle_interval=interval,
                trickle_duration=duration,
            ),
        )

    def hits(self, path: str) -> int:
        """How many requests ``path`` has received."""
        with self._lock:
            return self._hits[path]

    def last_headers(self, path: str) -> dict[str, str]:
        """The request headers of the latest request for ``path`` (empty if none came)."""
        with self._lock:
            return dict(self._last_headers.get(path, {}))

    def behaviour_for(self, path: str, headers: Mapping[str, str]) -> Behaviour:
        """Record a hit on ``path`` with its request headers; return how to answer it."""
        with self._lock:
            self._hits[path] += 1
            self._last_headers[path] = dict(headers)
            return self._behaviours.get(path, Behaviour(status=404, body=b"{}"))

    def sleep(self, seconds: float) -> bool:
        """Sleep, but wake as soon as the server is closing; return False if it is."""
        return not self.closing.wait(max(seconds, 0.0))

    def close(self) -> None:
        """Stop serving, wake sleeping handlers, and wait for every thread to end."""
        self.closing.set()
        self._server.shutdown()
        self._thread.join(_JOIN_TIMEOUT)
        self._server.server_close()
        # After shutdown() no new handler can start, so this list is complete.
        stuck = [self._thread] if self._thread.is_alive() else []
        for handler in self._server.handler_threads:
            handler.join(_JOIN_TIMEOUT)
            if handler.is_alive():
                stuck.append(handler)
        if stuck:
            raise RuntimeError(f"HTTP target on port {self.port}: threads did not stop: {stuck}")


class _Server(TrackedHTTPServer):
    """Knows its :class:`HttpTarget`, whose ``close`` joins the handler threads."""

    target: HttpTarget


class _Handler(BaseHTTPRequestHandler):
    """Answers each request as the target's behaviour for its path says."""

    timeout = _HANDLER_SOCKET_TIMEOUT

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_POST(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean; hits are counted instead."""

    def _answer(self, *, send_body: bool) -> None:
        target = cast(_Server, self.server).target
        behaviour = target.behaviour_for(self.path, dict(self.headers.items()))
        self.close_connection = True
        try:
            if not target.sleep(behaviour.delay):
                return
            self._send_headers(behaviour)
            if send_body:
                self._send_body(target, behaviour)
        except OSError:
            # The client went away (the probe gave up, as it should); nothing to answer.
            pass

    def _send_headers(self, behaviour: Behaviour) -> None:
        self.send_response(behaviour.status)
        self.send_header("Content-Type", behaviour.content_type)
        if behaviour.stream_bytes is not None:
            self.send_header("Content-Length", str(behaviour.stream_bytes))
        elif behaviour.trickle_interval is None:  # a trickle ends when the connection closes
            self.send_header("Content-Length", str(len(behaviour.body)))
        for name, value in behaviour.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_body(self, target: HttpTarget, behaviour: Behaviour) -> None:
        if behaviour.trickle_interval is not None:
            end = time.monotonic() + behaviour.trickle_duration
            while time.monotonic() < end:
                self.wfile.write(b" ")
                if not target.sleep(behaviour.trickle_interval):
                    return
        elif behaviour.stream_bytes is not None:
            filler = b"x" * 65536
            left = behaviour.stream_bytes
            while left > 0 and not target.closing.is_set():
                piece = filler[: min(left, len(filler))]
                self.wfile.write(piece)
                left -= len(piece)
        else:
            self.wfile.write(behaviour.body)


class HungTcpTarget:
    """A TCP listener that accepts every connection and never sends or reads a byte.

    A TCP probe against it succeeds (the connection is accepted); an HTTP probe or a scrape
    through it waits for an answer that never comes. Accepted sockets stay open until close.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_SLICE)
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/health"
        self._accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_forever, name=f"hung-tcp-{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def accepted(self) -> int:
        """How many connections have been accepted so far."""
        with self._lock:
            return len(self._accepted)

    def _accept_forever(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    return
                self._accepted.append(conn)

    def close(self) -> None:
        """Stop accepting, then close the listener and every accepted connection."""
        self._closing.set()
        self._thread.join(_JOIN_TIMEOUT)
        self._listener.close()
        with self._lock:
            for conn in self._accepted:
                conn.close()
            self._accepted.clear()
        if self._thread.is_alive():
            raise RuntimeError(f"hung TCP target thread on port {self.port} did not stop")


@pytest.fixture
def http_target() -> Iterator[HttpTarget]:
    """A real HTTP server on 127.0.0.1 whose answer per path the test sets."""
    target = HttpTarget()
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def hung_tcp_target() -> Iterator[HungTcpTarget]:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers anything."""
    target = HungTcpTarget()
    try:
        yield target
    finally:
        target.close()

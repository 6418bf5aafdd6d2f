"""``monitoriza responder``: the Flask app under waitress, one process with many threads.

One process keeps the in-process metrics and the journal worker simple; throughput comes
from threads (requests mostly wait on the journal's fsync) and from replicas sharing a
PostgreSQL store.

Why waitress and not gunicorn's ``gthread`` worker: gthread hands a connection to a request
thread as soon as it is readable, and the thread then blocks reading the rest of the
request, so ``threads`` clients that send half a header block (or trickle a body) hold every
thread and nothing else is answered. Waitress reads whole requests in one event loop
(``poll``, no 1024-descriptor limit) and dispatches only complete ones to the threads, so a
slow client costs a socket, not a thread. Waitress only closes connections that are
*inactive*; a client that trickles a byte a second never is. This module adds what it lacks:

- a total deadline per request (``responder.request_deadline``): a connection that has not
  delivered a whole request within it of being opened, or of starting the request, is answered
  408 and closed; an idle one (keep-alive, or opened and silent) is closed;
- JSON bodies for the errors the server answers itself (400, 408, 413, 431, 501), in the
  shape of the app's own errors;
- a graceful stop on SIGTERM/SIGINT: stop accepting, finish the requests in flight, then
  stop the app's threads (``stop_app``).

docs/responder.md has the measurements behind the choice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from werkzeug.http import HTTP_STATUS_CODES

from monitoriza.config.schema import Config, Responder
from monitoriza.logs import get_logger, log_config_loaded
from monitoriza.responder.app import create_app, read_token, stop_app

log = logging.getLogger(__name__)

# Largest request line plus headers; past it the answer is 431.
MAX_HEADER_BYTES = 65_536
# How often the event loop wakes to enforce deadlines when no socket is ready.
TICK = 0.1
# How long a graceful stop waits for requests in flight before it gives up on them.
GRACEFUL_TIMEOUT = 10.0
# Connections closed for their deadline per tick at most (1,280 a second).
EXPIRE_BATCH = 128
# Connections accepted per turn of the event loop at most.
ACCEPT_BATCH = 128
# How long a connection closed after a final answer is read on (and discarded).
LINGER = 2.0
# Descriptors beyond the connections: the store, log files, the wake-up pipe, probes.
SPARE_FILES = 256


def json_error(status: int, message: str) -> bytes:
    """The body of an error the server answers itself, as the app's error handler writes
    it for the same status (``{"error": "Request Timeout", "message": ...}``)."""
    return json.dumps({"error": HTTP_STATUS_CODES.get(status, "Unknown Error"),
                       "message": message}).encode()


def raw_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection."""
    body = json_error(status, message)
    reason = HTTP_STATUS_CODES.get(status, "Unknown Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


@dataclass(frozen=True)
class ChannelView:
    """What the deadline rules need to know about one connection."""

    busy: bool            # a complete request is queued or being answered
    partial: bool         # some bytes of the next request have arrived
    started: float        # when the partial request started (monotonic)
    idle_since: float     # last byte read or written (monotonic)


def verdict(view: ChannelView, now: float, deadline: float) -> str | None:
    """``"timeout"`` (answer 408, close), ``"idle"`` (close silently) or None (leave it)."""
    if view.busy:
        return None
    if view.partial:
        return "timeout" if now - view.started > deadline else None
    return "idle" if now - view.idle_since > deadline else None


class JsonErrorTask(ErrorTask):  # type: ignore[misc]  # waitress is untyped
    """Waitress's error response (malformed request, header or body too large) as JSON."""

    def execute(self) -> None:
        problem = self.request.error
        message = str(problem.body)
        if problem.code == 413:
            message = f"the body is larger than {self.channel.server.max_body_bytes} bytes"
        body = json_error(problem.code, message)
        self.status = f"{problem.code} {problem.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class DeadlineChannel(HTTPChannel):  # type: ignore[misc]  # waitress is untyped
    """A connection that remembers when its current request started and when it last moved."""

    error_task_class = JsonErrorTask
    request: Any = None  # the request being received (waitress's parser), None between them
    lingering: float | None = None  # half-closed after a final answer, until then
    linger_next = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.request_started = self.moved = time.monotonic()
        super().__init__(*args, **kwargs)

    def received(self, data: bytes) -> bool:
        now = time.monotonic()
        if self.request is None and data:
            self.request_started = now
        self.moved = now
        return bool(super().received(data))

    def _flush_some(self, do_close: bool = True) -> bool:
        sent = bool(super()._flush_some(do_close=do_close))
        if sent:
            self.moved = time.monotonic()
        return sent

    def service(self) -> None:
        super().service()
        self.moved = time.monotonic()

    def handle_write(self) -> None:
        self.linger_next = bool(self.close_when_flushed)
        super().handle_write()

    def handle_close(self) -> None:
        """After a response that closes the connection, half-close and read on for LINGER.

        Closing a socket with unread input sends a reset, which can destroy the answer
        before the client reads it (a 413 to a client still sending its body)."""
        if self.linger_next and self.lingering is None and self.connected:
            self.linger_next = False
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                super().handle_close()
                return
            self.lingering = time.monotonic() + LINGER
            self.will_close = False
            return
        super().handle_close()

    def readable(self) -> bool:
        # HTTPChannel.readable inlined: the loop asks every connection on every turn.
        return self.lingering is not None or not (
            self.will_close or self.close_when_flushed or self.total_outbufs_len
            or len(self.requests) > self.adj.channel_request_lookahead)

    def handle_read(self) -> None:
        if self.lingering is None:
            super().handle_read()
            return
        try:
            data = self.socket.recv(65_536)
        except OSError:
            data = b""
        if not data:
            super().handle_close()

    def view(self) -> ChannelView:
        return ChannelView(busy=bool(self.requests), partial=self.request is not None,
                           started=self.request_started, idle_since=self.moved)

    def time_out(self, deadline: float) -> None:
        """Answer 408 and close, at once (event-loop thread only, and only when no task runs).

        Not through the output buffer and a lingering close: when a thousand connections
        time out together, that would cost the loop three turns per connection instead of
        one. The input read so far is drained first, so that the close is a FIN and not a
        reset that could destroy the answer; the answer fits the empty send buffer."""
        with self.requests_lock:
            if self.requests or self.request is None:
                return
            self.request.close()
            self.request = None
        with contextlib.suppress(OSError):
            for _ in range(16):  # what is buffered, not a fast sender's endless stream
                if not self.socket.recv(65_536):
                    break
        with contextlib.suppress(OSError):
            self.socket.send(raw_response(408, f"no complete request within {deadline:g}s"))
        HTTPChannel.handle_close(self)


class DeadlineServer(TcpWSGIServer):  # type: ignore[misc]  # waitress is untyped
    """Waitress's TCP server whose maintenance enforces ``request_deadline``."""

    channel_class = DeadlineChannel
    request_deadline = 5.0
    max_body_bytes = 0
    closing = False

    def handle_accept(self) -> None:
        """Accept every waiting connection (up to ACCEPT_BATCH), not one per loop turn.

        Each turn of the loop costs time in proportion to the open connections, so one
        accept per turn cannot keep up when hundreds of connections arrive at once."""
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit:
                return
            try:
                accepted = self.accept()
                if accepted is None:
                    return
                conn, addr = accepted
                self.set_socket_options(conn)
            except OSError:
                continue  # the peer left before we got to it
            self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def channels(self) -> Iterator[DeadlineChannel]:
        yield from list(self.active_channels.values())

    def maintenance(self, now: float) -> None:
        """Close what outlived ``request_deadline``: at most EXPIRE_BATCH a tick.

        A thousand connections opened together expire together; closing them all in one
        turn of the loop would stall every other client for that long (and the attacker's
        replacements would arrive together again). In batches, the loop answers others
        between them and the replacements arrive spread out."""
        del now  # waitress passes wall-clock time; deadlines use the monotonic clock
        mono = time.monotonic()
        cutoff = mono - self.request_deadline
        budget = EXPIRE_BATCH
        for channel in self.channels():
            if channel.lingering is not None:
                if mono > channel.lingering:
                    channel.will_close = True
                continue
            if not self.closing and channel.request_started >= cutoff and channel.moved >= cutoff:
                continue  # the common case, decided without building a view
            if channel.will_close or channel.close_when_flushed or budget <= 0:
                continue
            view = channel.view()
            found = verdict(view, mono, self.request_deadline)
            if found == "timeout":
                channel.time_out(self.request_deadline)
                budget -= 1
            elif found == "idle" or (self.closing and not view.busy and not view.partial
                                      and not channel.total_outbufs_len):
                channel.will_close = True
                budget -= 1


def server_body_limit(settings: Responder) -> int:
    """The most waitress buffers of one request body before it answers 413 itself.

    Waitress counts a chunked body with its framing, the app counts the body alone (waitress
    hands it over with its decoded Content-Length), so waitress gets room for the framing and
    the app enforces ``max_body_bytes`` exactly."""
    return 2 * settings.max_body_bytes + 1


def raise_file_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted``; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def connection_limit(settings: Responder) -> int:
    """``max_connections``, lowered (with a warning) to what the descriptor limit allows."""
    files = raise_file_limit(settings.max_connections + SPARE_FILES)
    allowed = max(16, files - SPARE_FILES)
    if allowed < settings.max_connections:
        log.warning("responder.max_connections %d exceeds the open-file limit %d; using %d",
                    settings.max_connections, files, allowed)
    return min(settings.max_connections, allowed)


class ResponderServer:
    """Waitress on ``listen``, run in the calling (main) thread; ``mount`` gives it the app.

    The socket is bound before the app exists, so a taken port fails before any of the app's
    threads start."""

    def __init__(self, settings: Responder, listen: str) -> None:
        self.app: Flask | None = None
        limit = connection_limit(settings)
        self.adjustments = Adjustments(
            listen=listen, threads=settings.threads, connection_limit=limit,
            backlog=min(limit, 4096), max_request_body_size=server_body_limit(settings),
            max_request_header_size=MAX_HEADER_BYTES, asyncore_use_poll=True,
            ident="monitoriza", expose_tracebacks=False)
        self.map: dict[int, Any] = {}
        self.dispatcher = ThreadedTaskDispatcher()
        self.dispatcher.set_thread_count(settings.threads)
        self.servers: list[DeadlineServer] = []
        for sockinfo in self.adjustments.listen:
            server = DeadlineServer(self._call_app, map=self.map, dispatcher=self.dispatcher,
                                    adj=self.adjustments, sockinfo=sockinfo)
            server.request_deadline = settings.request_deadline
            server.max_body_bytes = settings.max_body_bytes
            self.servers.append(server)
        self._stop = threading.Event()
        self._next_maintenance = 0.0

    def _call_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.app is None:  # pragma: no cover - requests wait in the loop until mount()
            raise RuntimeError("no app mounted")
        return self.app(environ, start_response)

    def mount(self, app: Flask) -> None:
        self.app = app

    @property
    def address(self) -> tuple[str, int]:
        first = self.servers[0]
        return str(first.effective_host), int(first.effective_port)

    def stop(self) -> None:
        """Ask the loop to stop gracefully; safe from a signal handler or another thread."""
        self._stop.set()
        self.servers[0].pull_trigger()

    def _tick(self) -> None:
        wasyncore.loop(timeout=TICK, map=self.map, use_poll=True, count=1)
        now = time.monotonic()
        if now >= self._next_maintenance:
            self._next_maintenance = now + TICK
            for server in self.servers:
                server.maintenance(now)

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            self._tick()
        self._drain()

    def _in_flight(self) -> bool:
        with self.dispatcher.lock:
            queued = bool(self.dispatcher.queue)
        return queued or any(channel.requests or channel.request is not None
                             or channel.total_outbufs_len
                             for server in self.servers for channel in server.channels())

    def _drain(self) -> None:
        """Stop accepting, let requests in flight finish, close the rest, stop the threads."""
        for server in self.servers:
            server.closing = True
            server.accepting = False
            wasyncore.dispatcher.close(server)  # the listening socket only, not the trigger
        give_up = time.monotonic() + GRACEFUL_TIMEOUT
        while self._in_flight() and time.monotonic() < give_up:
            self._tick()
        self._tick()  # close what became idle
        self.dispatcher.shutdown(cancel_pending=True, timeout=5)
        wasyncore.close_all(self.map)
        log.info("responder stopped accepting and finished its requests")


def serve(config: Config, listen: str | None = None, config_file: Path | None = None) -> int:
    """Serve until SIGTERM or SIGINT; ``config_file`` is where ``config`` was read from (the
    console finds the drill results beside it)."""
    # Fail fast, before binding, on a missing token.
    read_token(config.responder.token_file)
    server = ResponderServer(config.responder, listen or config.responder.listen)
    app = create_app(config, config_file=config_file)
    if config_file is not None:
        log_config_loaded(get_logger(__name__), config, config_file, reload=False)
    server.mount(app)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %s: stopping gracefully", signal.Signals(signum).name)
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    host, port = server.address
    log.info("responder listening on http://%s:%s", host, port)
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_app(app)
    return 0

"""The demo server: every simulated HTTP service and the chat inbox, in one process.

``serve(run_dir)`` reads ``RUN/demo/services.json`` and listens, one thread per port:

* each HTTP service answers ``GET /health`` (see :mod:`monitoriza.demo.health`), ``GET /``
  (a tiny page) and ``GET /metrics`` (``conecta_demo_disk_used_ratio{service=...}``), and
  ``POST /admin/reconnect?component=NAME``, the endpoint the Conecta healing playbook calls:
  reconnecting the component the ``unknown-component`` fault hides ends that fault;
* ``POST /api/checkins`` (JSON ``{"resident": ...}``) records a resident's check-in and
  answers 201 with ``{"data": {"checkin": {"id": ...}}}``; ``GET /api/checkins/ID`` reads it
  back from any service (one book is shared, see :mod:`monitoriza.demo.checkins`): the
  demo's ``resident-checkin`` flow goes in through the API gateway and out of the backend;
  under the ``break-checkins`` fault a service answers both with a 500;
* the chat port stands in for Slack: ``POST /chat/<receiver>`` appends the JSON payload to
  ``RUN/demo/chat.jsonl`` and answers ``ok`` as Slack does; ``GET /chat`` lists what arrived
  (``?receiver=oncall`` for one receiver): JSON for scripts, an HTML page, newest message
  first, for a browser (``Accept: text/html``; ``?format=html|json`` forces either), see
  :mod:`monitoriza.demo.chat_page`.

Faults are read from ``RUN/demo/faults.json`` whenever that file changes, so a fault command
takes effect at the next request. ``/metrics`` keeps answering under ``down`` and ``slow``:
it stands for the host's disk metrics, which a dead or slow service does not stop.
SIGTERM and SIGINT shut every listener down and :func:`serve` returns 0; a port that cannot be
bound (or a bad ``services.json``) is one line on stderr and the return value 2.
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry

from monitoriza.demo import DemoError
from monitoriza.demo.chat_page import render_page, wants_html
from monitoriza.demo.checkins import CheckinBook
from monitoriza.demo.health import (
    CHECKINS_BROKEN_STATUS,
    breaks_checkins,
    disk_ratio,
    drops_connections,
    faults_after_reconnect,
    health_answer,
    response_delay,
)
from monitoriza.demo.layout import (
    HttpService,
    chat_path,
    faults_locked,
    faults_path,
    load_layout,
    parse_faults,
    read_faults,
    write_faults,
)

EXIT_OK = 0
EXIT_CANNOT_START = 2
# Short, so that a dead Redis costs a health answer little; the probe's timeout is 2 s.
REDIS_TIMEOUT_SECONDS = 0.3
MAX_CHAT_BODY_BYTES = 1024 * 1024
MAX_CHECKIN_BODY_BYTES = 4096
POLL_SECONDS = 0.2
DISK_METRIC = "conecta_demo_disk_used_ratio"
_RECEIVER = re.compile(r"[A-Za-z0-9_.-]+")


class _App(Protocol):
    def handle(self, request: _Handler, method: str) -> None: ...


def serve(run_dir: Path, *, stop: threading.Event | None = None) -> int:
    """Serve the demo described in ``RUN/demo/services.json`` until stopped; return the exit code.

    In the main thread, SIGTERM and SIGINT stop it, from the moment it is called (a signal
    during start-up stops it as soon as it has started). ``stop`` lets a caller in another
    thread (a test) stop it instead, since only the main thread can handle signals.
    """
    stop = stop if stop is not None else threading.Event()
    with _stopped_by_signals(stop):
        try:
            layout = load_layout(run_dir)
        except DemoError as exc:
            print(f"demo: {exc}", file=sys.stderr, flush=True)
            return EXIT_CANNOT_START
        board = FaultBoard(run_dir)
        checkins = CheckinBook()
        apps: list[tuple[str, int, _App]] = [
            (service.name, service.port,
             ServiceApp(service, layout.host, board, run_dir, checkins=checkins))
            for service in layout.http
        ]
        apps.append(("chat inbox", layout.chat_port, ChatApp(chat_path(run_dir))))
        servers = _bind(layout.host, apps)
        if servers is None:
            return EXIT_CANNOT_START
        threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_SECONDS},
                name=f"demo-{name}",
                daemon=True,
            )
            for server, (name, _, _) in zip(servers, apps, strict=True)
        ]
        for thread in threads:
            thread.start()
        for name, port, _ in apps:
            suffix = "/chat" if name == "chat inbox" else ""
            print(f"demo: {name} on http://{layout.host}:{port}{suffix}", flush=True)
        while not stop.wait(POLL_SECONDS):
            pass
        _shut_down(servers)
        for thread in threads:
            thread.join()
    return EXIT_OK


def _bind(host: str, apps: list[tuple[str, int, _App]]) -> list[_DemoServer] | None:
    """A listening server per app; None, after one line on stderr, when a port cannot be had."""
    servers: list[_DemoServer] = []
    for name, port, app in apps:
        try:
            servers.append(_DemoServer((host, port), app))
        except OSError as exc:
            for server in servers:
                server.server_close()
            detail = (
                f"port {port} is already in use"
                if exc.errno == errno.EADDRINUSE
                else exc.strerror or str(exc)
            )
            print(f"demo: cannot listen on {host}:{port} for {name}: {detail}",
                  file=sys.stderr, flush=True)
            return None
    return servers


def _shut_down(servers: list[_DemoServer]) -> None:
    # In parallel: each shutdown waits for its loop's next poll.
    stoppers = [threading.Thread(target=server.shutdown) for server in servers]
    for stopper in stoppers:
        stopper.start()
    for stopper, server in zip(stoppers, servers, strict=True):
        stopper.join()
        server.server_close()


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """Make SIGTERM and SIGINT set ``stop`` while inside; only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class FaultBoard:
    """The active faults, reread when ``faults.json`` changes, and when each disk began filling.

    ``fill-disk`` only names the fault, so the time it started is taken from the file: the
    modification time of the first version in which this server saw it. A server restarted
    while the fault is on therefore carries on from where the disk was, roughly.
    """

    def __init__(self, run_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self._run_dir = run_dir
        self._path = faults_path(run_dir)
        self._clock = clock
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._faults: Mapping[str, tuple[str, ...]] = {}
        self._fill_started: dict[str, float] = {}

    def faults(self, service: str) -> tuple[str, ...]:
        """The active faults of ``service``."""
        with self._lock:
            self._refresh()
            return self._faults.get(service, ())

    def fill_seconds(self, service: str) -> float | None:
        """How long ``fill-disk`` has been on for ``service``, or None when it is off."""
        with self._lock:
            self._refresh()
            started = self._fill_started.get(service)
        return None if started is None else max(0.0, self._clock() - started)

    def _refresh(self) -> None:
        # The file is tiny, so it is read at every request and parsed when its bytes change:
        # a change within one tick of the file system's clock would escape an mtime cache.
        try:
            with self._path.open("rb") as handle:
                modified = os.fstat(handle.fileno()).st_mtime  # of the very version read
                data: bytes | None = handle.read()
        except FileNotFoundError:
            modified, data = 0.0, None
        if data == self._data:
            return
        self._data = data
        try:
            faults = {} if data is None else parse_faults(data, str(self._path))
        except DemoError as exc:
            # Someone edited the file by hand: keep the last good faults, and say so once.
            print(f"demo: ignoring {exc}", file=sys.stderr, flush=True)
            return
        self._faults = faults
        self._fill_started = {
            service: self._fill_started.get(service, modified)
            for service, kinds in faults.items()
            if "fill-disk" in kinds
        }


class _DiskCollector(Collector):
    """The service's disk ratio, computed at each scrape."""

    def __init__(self, service: str, ratio: Callable[[], float]) -> None:
        self._service = service
        self._ratio = ratio

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            DISK_METRIC,
            "Fraction of the simulated service's disk in use (0 to 1).",
            labels=["service"],
        )
        family.add_metric([self._service], self._ratio())
        yield family


class ServiceApp:
    """One simulated Conecta HTTP service."""

    def __init__(self, service: HttpService, host: str, board: FaultBoard, run_dir: Path,
                 *, checkins: CheckinBook | None = None) -> None:
        self.service = service
        self._checkins = checkins if checkins is not None else CheckinBook()
        self._host = host
        self._board = board
        self._run_dir = run_dir
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_DiskCollector(service.name, self.disk_ratio))

    def disk_ratio(self) -> float:
        return disk_ratio(self._board.fill_seconds(self.service.name), random.uniform(-1, 1))

    def handle(self, request: _Handler, method: str) -> None:
        url = urlsplit(request.path)
        if method == "GET" and url.path == "/metrics":
            request.send(HTTPStatus.OK, generate_latest(self._registry), CONTENT_TYPE_LATEST)
            return
        faults = self._board.faults(self.service.name)
        if drops_connections(faults):
            # Nothing written: the client sees the connection closed without a response.
            request.close_connection = True
            return
        time.sleep(response_delay(faults))
        if method == "GET" and url.path == "/health":
            self._health(request, faults)
        elif method == "GET" and url.path == "/":
            name = html.escape(self.service.name)
            page = f"<!doctype html><title>Conecta Plus {name}</title><h1>Conecta Plus {name}</h1>"
            request.send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        elif method == "POST" and url.path == "/admin/reconnect":
            self._reconnect(request, parse_qs(url.query).get("component", [""])[0])
        elif url.path.startswith("/api/checkins") and breaks_checkins(faults):
            request.send_json(HTTPStatus(CHECKINS_BROKEN_STATUS),
                              {"error": "check-ins are failing (demo fault break-checkins)"})
        elif method == "POST" and url.path == "/api/checkins":
            self._check_in(request)
        elif method == "GET" and url.path.startswith("/api/checkins/"):
            found = self._checkins.get(url.path.removeprefix("/api/checkins/"))
            if found is None:
                request.send_json(HTTPStatus.NOT_FOUND, {"error": "no such check-in"})
            else:
                request.send_json(HTTPStatus.OK, {"data": found})
        else:
            request.send_json(HTTPStatus.NOT_FOUND, {"error": f"no {method} {url.path} here"})

    def _health(self, request: _Handler, faults: tuple[str, ...]) -> None:
        redis_up = None
        if self.service.redis_port is not None:
            redis_up = redis_answers(self._host, self.service.redis_port)
        answer = health_answer(self.service, faults, redis_up)
        if answer is None:  # the fault changed to down meanwhile
            request.close_connection = True
            return
        request.send_json(HTTPStatus(answer.status_code), answer.body)

    def _check_in(self, request: _Handler) -> None:
        raw = request.read_body(MAX_CHECKIN_BODY_BYTES)
        if raw is None:
            return
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = None
        resident = document.get("resident") if isinstance(document, dict) else None
        if not isinstance(resident, str) or not resident:
            request.send_json(HTTPStatus.BAD_REQUEST,
                              {"error": 'expected JSON {"resident": "..."}'})
            return
        checkin = self._checkins.create(resident, via=self.service.name)
        request.send_json(HTTPStatus.CREATED, {"data": {"checkin": checkin}})

    def _reconnect(self, request: _Handler, component: str) -> None:
        if component not in self.service.components:
            request.send_json(
                HTTPStatus.NOT_FOUND,
                {"error": f"{self.service.name} has no component {component!r}"},
            )
            return
        with faults_locked(self._run_dir):
            faults = dict(read_faults(self._run_dir))
            faults[self.service.name] = faults_after_reconnect(
                self.service, faults.get(self.service.name, ()), component
            )
            write_faults(self._run_dir, faults)
        request.send_json(HTTPStatus.OK, {"reconnected": component})


def redis_answers(host: str, port: int) -> bool:
    """Whether a real Redis answers PING with PONG, within :data:`REDIS_TIMEOUT_SECONDS`."""
    client = redis.Redis(
        host=host,
        port=port,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        # No retries: redis-py's default back-off would multiply the timeout.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return client.ping() is True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class ChatApp:
    """The chat inbox: stores what Alertmanager and the responder post, lists it back."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def handle(self, request: _Handler, method: str) -> None:
        url = urlsplit(request.path)
        parts = url.path.strip("/").split("/")
        if method == "POST" and len(parts) == 2 and parts[0] == "chat":
            if not _RECEIVER.fullmatch(parts[1]):
                request.send_json(HTTPStatus.NOT_FOUND, {"error": "bad receiver name"})
                return
            self._post(request, parts[1])
        elif method == "GET" and parts == ["chat"]:
            query = parse_qs(url.query)
            receiver = query.get("receiver", [None])[0]
            stored = self.entries()
            entries = [
                entry
                for entry in stored
                if receiver is None or entry.get("receiver") == receiver
            ]
            wanted = query.get("format", [None])[0]
            if wanted == "html" or (wanted is None
                                    and wants_html(request.headers.get("Accept"))):
                receivers = sorted({str(entry.get("receiver", "")) for entry in stored})
                page = render_page(entries, receiver=receiver, receivers=receivers)
                request.send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            else:
                request.send_json(HTTPStatus.OK, entries)
        else:
            request.send_json(HTTPStatus.NOT_FOUND, {"error": f"no {method} {url.path} here"})

    def entries(self) -> list[dict[str, Any]]:
        """Every stored message, oldest first."""
        with self._lock:
            try:
                text = self._path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
        entries = []
        for line in text.splitlines():
            # A line cut short by a crash mid-append is skipped rather than hiding the rest.
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def _post(self, request: _Handler, receiver: str) -> None:
        body = request.read_body(MAX_CHAT_BODY_BYTES)
        if body is None:
            return
        try:
            payload = json.loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            request.send_json(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON: {exc}"})
            return
        entry = {"receiver": receiver, "received_at": time.time(), "payload": payload}
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                # Stored before "ok": a chat message the sender saw delivered is not lost.
                os.fsync(handle.fileno())
        request.send(HTTPStatus.OK, b"ok", "text/plain; charset=utf-8")


class _DemoServer(ThreadingHTTPServer):
    """A threading HTTP server that hands every request to its app."""

    daemon_threads = True  # a request held by the slow fault must not delay shutdown
    # socketserver's default backlog of 5 resets connections when a burst of alerts, probes
    # and scrapes arrives at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A probe that timed out on a slow answer has hung up before it is written: expected
        # under the fault, so no traceback for it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "ConectaDemo/1.0"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        cast(_DemoServer, self.server).app.handle(self, method)

    def send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: HTTPStatus, document: object) -> None:
        self.send(status, json.dumps(document).encode(), "application/json")

    def read_body(self, limit: int) -> bytes | None:
        """The request body, or None after answering 411 or 413."""
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            self.send_json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
            return None
        if int(length) > limit:
            self.close_connection = True
            self.send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {limit} bytes"}
            )
            return None
        return self.rfile.read(int(length))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are not logged: Prometheus and the probes would flood the log."""

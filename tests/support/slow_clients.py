"""Slow and idle clients against a real server, and the latency a well-behaved client sees.

``SlowClients`` holds ``count`` connections open on one thread: half stop half-way through
their header block, half send whole headers (with the bearer token) and then trickle their
body a byte every ``trickle`` seconds. Whenever the server closes one, another takes its place
until ``duration`` ends, so the server is under the same pressure the whole time. Each
connection records when it was opened and when it saw EOF or a reset from the server.
``Prober`` meanwhile times ``GET /healthz`` and valid notifications on its own connections.
Loopback only; both stop by themselves.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import json
import multiprocessing
import random
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).parent.parent / "fixtures" / "alertmanager" / "firing_single.json"


def raise_file_limit(wanted: int) -> None:
    """This process opens ``count`` sockets at once; the soft limit may be 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass
class Connection:
    sock: socket.socket
    mode: str  # "header" (stalled half-way) or "trickle" (body a byte at a time)
    opened: float
    next_byte: float
    closed: float | None = None
    answer: bytes = b""


@dataclass
class SlowReport:
    connections: list[Connection] = field(default_factory=list)
    failed_connects: int = 0

    def lifetimes(self) -> list[float]:
        """Seconds from connect to the server's close (inf for one still open)."""
        return [(c.closed - c.opened) if c.closed is not None else float("inf")
                for c in self.connections]


class SlowClients:
    """``count`` slow connections to ``host:port`` for ``duration`` seconds, on one thread."""

    def __init__(self, host: str, port: int, *, count: int = 1000, duration: float = 6.0,
                 trickle: float = 1.0, token: str = "", wait_close: float = 10.0) -> None:
        self.address = (host, port)
        self.count = count
        self.duration = duration
        self.trickle = trickle
        self.wait_close = wait_close
        self.token = token
        self.report = SlowReport()
        self.open_now = 0
        self.peak_open = 0
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def start(self) -> SlowClients:
        raise_file_limit(self.count * 2 + 256)
        self._thread.start()
        return self

    def join(self) -> SlowReport:
        self._thread.join(self.duration + self.wait_close + 30)
        return self.report

    def _opening(self, mode: str) -> bytes:
        if mode == "header":
            return b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"
        return (b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + self.token.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")

    def _open(self, selector: selectors.BaseSelector, index: int,
              due: list[tuple[float, int, Connection]]) -> None:
        mode = "header" if index % 2 == 0 else "trickle"
        try:
            sock = socket.create_connection(self.address, timeout=2.0)
            sock.sendall(self._opening(mode))
        except OSError:
            self.report.failed_connects += 1
            return
        sock.setblocking(False)
        now = time.monotonic()
        # Spread over the interval, as independent clients would be: the harder case.
        connection = Connection(sock, mode, now, now + self.trickle * random.random())
        self.report.connections.append(connection)
        selector.register(sock, selectors.EVENT_READ, connection)
        if mode == "trickle":
            heapq.heappush(due, (connection.next_byte, index, connection))

    def _closed(self, selector: selectors.BaseSelector, connection: Connection,
                now: float) -> None:
        connection.closed = now
        selector.unregister(connection.sock)
        connection.sock.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        started = time.monotonic()
        ends = started + self.duration
        opened = 0
        due: list[tuple[float, int, Connection]] = []
        for _ in range(self.count):
            self._open(selector, opened, due)
            opened += 1
        self.ready.set()
        give_up = ends + self.wait_close
        while True:
            now = time.monotonic()
            live = len(selector.get_map())
            self.open_now = live
            self.peak_open = max(self.peak_open, live)
            if now >= give_up or (now >= ends and not live):
                break
            for key, _ in selector.select(timeout=0.02):
                connection: Connection = key.data
                try:
                    data = connection.sock.recv(65_536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    connection.answer += data
                else:
                    self._closed(selector, connection, time.monotonic())
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, number, connection = heapq.heappop(due)
                if connection.closed is None:
                    with contextlib.suppress(OSError):
                        connection.sock.send(b" ")
                    heapq.heappush(due, (now + self.trickle, number, connection))
            while now < ends and len(selector.get_map()) < self.count:
                self._open(selector, opened, due)
                opened += 1
        for key in list(selector.get_map().values()):
            key.data.sock.close()
        selector.close()


def notification(index: int, prefix: str = "probe") -> bytes:
    body = json.loads(FIXTURE.read_text())
    body["groupKey"] = f"{{}}:{{{prefix}=\"{index}\"}}"
    body["alerts"][0]["fingerprint"] = f"{prefix}{index:012x}"[-16:]
    body["alerts"][0]["labels"]["instance"] = f"{prefix}-{index}"
    return json.dumps(body).encode()


@dataclass
class ProbeReport:
    healthz: list[float] = field(default_factory=list)
    intake: list[float] = field(default_factory=list)
    # (monotonic start, what, seconds) of every sample, to place outliers in time
    samples: list[tuple[float, str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


class Prober:
    """Times ``GET /healthz`` and/or a new valid notification, each on a new connection (as
    Alertmanager's first post of a group), over and over until stopped."""

    def __init__(self, host: str, port: int, token: str, *, prefix: str = "probe",
                 interval: float = 0.02, timeout: float = 5.0,
                 healthz: bool = True, intake: bool = True) -> None:
        self.host, self.port = host, port
        self.healthz, self.intake = healthz, intake
        self.token = token
        self.prefix = prefix
        self.interval = interval
        self.timeout = timeout
        self.report = ProbeReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> ProbeReport:
        self._stop.set()
        self._thread.join(self.timeout * 3)
        return self.report

    def _timed(self, method: str, path: str, body: bytes | None,
               headers: dict[str, str]) -> tuple[float, int]:
        started = time.perf_counter()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            self.report.samples.append((time.monotonic() - elapsed, path, elapsed))
            return elapsed, response.status
        finally:
            connection.close()

    def _run(self) -> None:
        index = 0
        headers: dict[str, Any] = {"Authorization": f"Bearer {self.token}",
                                   "Content-Type": "application/json"}
        while not self._stop.is_set():
            try:
                if self.healthz:
                    elapsed, status = self._timed("GET", "/healthz", None, {})
                    if status == 200:
                        self.report.healthz.append(elapsed)
                    else:
                        self.report.failures.append(f"healthz {status}")
                if self.intake:
                    elapsed, status = self._timed("POST", "/api/v1/alerts",
                                                  notification(index, self.prefix), headers)
                    if status == 200:
                        self.report.intake.append(elapsed)
                    else:
                        self.report.failures.append(f"intake {status}")
            except OSError as exc:
                self.report.failures.append(f"{type(exc).__name__}: {exc}")
            index += 1
            self._stop.wait(self.interval)


@dataclass(frozen=True)
class SlowOutcome:
    """What the slow clients saw, sent back from their process."""

    lifetimes: list[float]      # seconds from connect to the server's close; inf if never
    answers: list[bytes]        # what the server sent each before closing
    failed_connects: int
    peak_open: int


def _attack(spec: dict[str, Any], results: Any) -> None:
    clients = SlowClients(**spec).start()
    clients.ready.wait(60)
    results.put("ready")
    report = clients.join()
    results.put(SlowOutcome(report.lifetimes(), [c.answer for c in report.connections],
                            report.failed_connects, clients.peak_open))


class SlowClientsProcess:
    """``SlowClients`` in a process of its own, so that its work does not slow the
    measuring client in this one (they would share one interpreter lock)."""

    def __init__(self, host: str, port: int, *, count: int, duration: float, token: str,
                 wait_close: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._results = context.Queue()
        self._process = context.Process(
            target=_attack, args=({"host": host, "port": port, "count": count,
                                   "duration": duration, "token": token,
                                   "wait_close": wait_close}, self._results), daemon=True)
        self._timeout = duration + wait_close + 60

    def start(self) -> SlowClientsProcess:
        """Returns once every connection is open."""
        self._process.start()
        if self._results.get(timeout=60) != "ready":  # pragma: no cover
            raise AssertionError("slow clients did not start")
        return self

    def join(self) -> SlowOutcome:
        outcome: SlowOutcome = self._results.get(timeout=self._timeout)
        self._process.join(10)
        if self._process.is_alive():  # pragma: no cover
            self._process.kill()
        return outcome

"""Webhook intake with responder replicas on one PostgreSQL, against one replica on SQLite.

Each configuration runs the real responder as users run it (``monitoriza responder --config
FILE``: waitress, one process), started fresh on an empty store:

- **sqlite x1** — the baseline, as ``benchmarks/intake.py`` measures it (WAL,
  ``synchronous=FULL``);
- **postgresql xN** for each N of ``--replicas`` — N responder processes on one database of a
  private PostgreSQL 15 server (``initdb`` in a temp directory, 127.0.0.1, ``fsync=on`` and
  ``synchronous_commit=on`` as in production), each configuration on a fresh database.

The load generator is ``benchmarks/intake.py``'s: 32 client threads in 4 separate processes post
Alertmanager notifications of one new alert each; here each client sends its successive
notifications to the replicas' ports in turn, as the load balancer behind an Alertmanager
cluster's one webhook URL would spread them. Phases per configuration:

- **saturation**: the 32 clients post as fast as they can for ``--duration`` seconds;
  throughput is acknowledged (200) notifications per second;
- **drain**: the journal workers finish what was accepted; all their transactions append to
  the one audit chain, so this shows how processing scales, apart from intake;
- **paced**: ``--rate`` notifications a second for ``--duration`` seconds; p50/p99 latency.

The alerts carry no ``service`` label, so processing records and audits each alert at a
constant cost: correlating thousands of alerts of one service into one open incident costs more
with every alert, and the later phases would measure that instead of intake.

How to read the numbers on a 2-core machine: every replica, the PostgreSQL server and the load
generator compete for the same two cores, so more replicas add no CPU, only processes and
connections. The ratios to the SQLite baseline therefore show what sharing the store costs
(round trips to PostgreSQL, its commits, the coordination between replicas), not the
horizontal gain, which needs the replicas on machines of their own. The figure that carries
over to such a deployment is the CPU each accepted notification costs, replicas and PostgreSQL
together (``cpu_ms_per_notification``, from the saturation phase and its drain): while it stays
flat as replicas are added, N machines accept close to N times what one does, until
PostgreSQL's CPU or commit rate is the limit. Processing is different: every processing
transaction takes one cluster-wide advisory lock (the audit chain is one), so its rate does not
grow with replicas, and on an overloaded machine it falls, because a lock holder that the
scheduler preempts stalls every replica. The load average before the run is printed: other
work on the machine moves every figure.

Usage: python benchmarks/intake_scale.py [--duration 8] [--replicas 1,2,4] [--rate 200] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import requests
import yaml
from intake import FIXTURE, TOKEN, notification
from pgserver import PostgresServer, free_port

CLIENTS = 32
CLIENT_PROCESSES = 4
START_DELAY_SECONDS = 2.0  # lets every spawned client process import before the clock starts
DRAIN_TIMEOUT_SECONDS = 60.0
INDEX_STRIDE = 10_000_000  # phases and configurations never reuse a fingerprint


def alert_template() -> dict[str, Any]:
    template: dict[str, Any] = json.loads(FIXTURE.read_text())
    # No service: constant processing cost per alert (see the module docstring).
    del template["alerts"][0]["labels"]["service"]
    return template


@dataclass(frozen=True)
class Work:
    """What one client thread sends: ``count`` notifications (or until ``stop_at``)."""

    client: int
    first: int
    count: int
    start_at: float
    interval: float
    stop_at: float


def client(urls: list[str], work: Work, template: dict[str, Any],
           results: list[tuple[list[float], int, float]]) -> None:
    """One client thread: keep-alive sessions per replica, notifications to each in turn."""
    sessions = [requests.Session() for _ in urls]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    time.sleep(max(0.0, work.start_at - time.monotonic()))  # every client starts together
    for k in range(work.count):
        if work.interval:
            delay = work.start_at + k * work.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if time.monotonic() >= work.stop_at:
            break
        # Index spaced by CLIENTS so that clients never collide; replica rotates per request.
        body = notification(template, work.first + work.client + k * CLIENTS)
        replica = (work.client + k) % len(urls)
        began = time.perf_counter()
        try:
            response = sessions[replica].post(urls[replica], data=body, headers=headers,
                                              timeout=30)
            ok = response.status_code == 200
        except requests.RequestException:
            ok = False
        if ok:
            latencies.append(time.perf_counter() - began)
        else:
            errors += 1  # a 503 is counted, not fatal: Alertmanager would retry it
    for session in sessions:
        session.close()
    results.append((latencies, errors, time.monotonic()))


def client_process(urls: list[str], works: list[Work], queue: Any) -> None:
    """One load-generator process running several client threads."""
    template = alert_template()
    results: list[tuple[list[float], int, float]] = []
    threads = [threading.Thread(target=client, args=(urls, work, template, results))
               for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


def run_load(urls: list[str], first: int, duration: float, rate: float) -> dict[str, float]:
    """Saturation (``rate`` 0: as fast as possible) or paced load for ``duration`` seconds."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.monotonic() + START_DELAY_SECONDS
    stop_at = start_at + duration
    if rate:
        per_client = round(rate * duration / CLIENTS)
        works = [Work(c, first, per_client, start_at + c / rate, CLIENTS / rate,
                      stop_at + 5.0) for c in range(CLIENTS)]  # paced: send them all
    else:
        works = [Work(c, first, INDEX_STRIDE // CLIENTS, start_at, 0.0, stop_at)
                 for c in range(CLIENTS)]
    processes = [context.Process(target=client_process,
                                 args=(urls, works[p::CLIENT_PROCESSES], queue))
                 for p in range(CLIENT_PROCESSES)]
    try:
        for process in processes:
            process.start()
        results = [result for _ in processes for result in queue.get(timeout=600)]
    finally:
        for process in processes:  # interrupted: stop the load generators too (by PID)
            if process.pid is not None and process.is_alive():
                process.terminate()
            if process.pid is not None:
                process.join()
    latencies = sorted(latency for result in results for latency in result[0])
    errors = sum(result[1] for result in results)
    elapsed = max(result[2] for result in results) - start_at
    if not latencies:
        raise RuntimeError(f"no notification was accepted ({errors} errors)")
    return {"accepted": len(latencies), "errors": errors,
            "per_second": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[round(0.99 * (len(latencies) - 1))] * 1000}


class Store:
    """The store one configuration runs on: its URL, and reading the journal's depth."""

    def __init__(self, url: str) -> None:
        self.url = url

    def pending(self) -> tuple[int, int]:
        """(rows not yet processed, rows in all)."""
        query = ("SELECT count(*) FILTER (WHERE state != 'done'), count(*) FROM journal")
        if self.url.startswith("sqlite:///"):
            # A read-only connection: WAL readers never wait for the responder's writes.
            conn = sqlite3.connect(f"file:{self.url[len('sqlite:///'):]}?mode=ro", uri=True)
            try:
                pending, total = conn.execute(query).fetchone()
            finally:
                conn.close()
        else:
            with psycopg.connect(self.url, connect_timeout=5) as pg:
                row = pg.execute(query).fetchone()
                pending, total = row if row else (0, 0)
        return int(pending), int(total)


def drain(store: Store, began: float) -> dict[str, float]:
    """Wait until every journaled alert is processed; processing rate since ``began``."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    pending, total = store.pending()
    while pending and time.monotonic() < deadline:
        time.sleep(0.25)
        pending, total = store.pending()
    now = time.monotonic()
    return {"drain_pending": pending, "processed_per_second": (total - pending) / (now - began),
            "drain_seconds": now - began}


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Where Alertmanager posts."""
        return f"{self.base_url}/api/v1/alerts"

    @property
    def config(self) -> Path:
        return self.directory / "monitoriza.yml"


def start_replica(directory: Path, store_url: str, *, threads: int = CLIENTS,
                  services: dict[str, Any] | None = None,
                  audit: dict[str, Any] | None = None,
                  healing: dict[str, Any] | None = None) -> Replica:
    """``monitoriza responder`` on ``store_url`` (intake.py's settings unless told otherwise;
    storm.py adds its services, the sequencer switch and healing).

    The replicas of one configuration share the audit signing key and checkpoint file (in
    ``directory``'s parent), as replicas on one host would: the first creates the key.
    """
    shared = directory.parent
    directory.mkdir()
    port = free_port()
    (directory / "token").write_text(TOKEN)
    responder: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}", "threads": threads, "store_url": store_url,
        "token_file": str(directory / "token"),
        "audit": {"signing_key_file": str(shared / "signing.pem"),
                  "checkpoint_file": str(shared / "checkpoints.jsonl"), **(audit or {})}}
    if healing is not None:
        responder["healing"] = healing
    config = directory / "monitoriza.yml"
    config.write_text(yaml.safe_dump({"services": services or {}, "responder": responder}))
    with (directory / "responder.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "monitoriza.cli", "responder",
                                    "--config", str(config)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=log)
    return Replica(process, port, directory)


def wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            break
        try:
            if requests.get(f"http://127.0.0.1:{replica.port}/readyz", timeout=1).ok:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError((replica.directory / "responder.log").read_text())


def stop_replica(replica: Replica) -> None:
    stop_process(replica.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID (the graceful stop), SIGKILL if it does not exit in time; reaped."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
    process.wait()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by these processes and all their descendants, dead or alive.

    Reaped children (PostgreSQL backends that ended, say) count through their parent's
    ``children_*`` times; live descendants through their own.
    """
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
    return total


class ConnectionSampler(threading.Thread):
    """The most client connections seen on one PostgreSQL database while it runs."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.database = database
        self.most = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.5):
            with contextlib.suppress(psycopg.Error):
                self.most = max(self.most, self.server.connections(self.database))

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.most


def measure(name: str, directory: Path, store: Store, *, replicas: int, first: int,
            args: argparse.Namespace, server: PostgresServer | None) -> dict[str, Any]:
    """One configuration, from starting its replicas to stopping them (by PID, always)."""
    print(f"{name}: starting", file=sys.stderr, flush=True)
    started: list[Replica] = []
    sampler: ConnectionSampler | None = None
    try:
        # The first replica creates the schema alone; the others then start together.
        started.append(start_replica(directory / "replica-0", store.url))
        wait_ready(started[0])
        started += [start_replica(directory / f"replica-{r}", store.url)
                    for r in range(1, replicas)]
        for replica in started[1:]:
            wait_ready(replica)
        urls = [replica.url for replica in started]
        if server is not None:
            sampler = ConnectionSampler(server, store.url.rsplit("/", 1)[1])
            sampler.start()
        # CPU of the replicas and of PostgreSQL for accepting and processing the saturation
        # phase's notifications: what the work costs, whichever core it ran on.
        pids = [replica.process.pid for replica in started]
        server_pids = [server.pid] if server is not None and server.pid is not None else []
        cpu_before = cpu_seconds(pids), cpu_seconds(server_pids)
        began = time.monotonic() + START_DELAY_SECONDS
        saturated = run_load(urls, first, args.duration, 0.0)
        drained = drain(store, began)
        cpu_replicas = cpu_seconds(pids) - cpu_before[0]
        cpu_server = cpu_seconds(server_pids) - cpu_before[1]
        paced = run_load(urls, first + INDEX_STRIDE, args.duration, args.rate)
    finally:
        connections = sampler.stop() if sampler is not None else None
        for replica in started:
            stop_replica(replica)
    # Errors the replicas logged (a lock timeout, a lost lease): the numbers hide them.
    lines = [line for replica in started for line in (
        replica.directory / "responder.log").read_text(errors="replace").splitlines()]
    errors = [line for line in lines if " ERROR " in line or " WARNING " in line]
    causes = sorted({line.split(" [SQL:")[0][:160] for line in lines
                     if line.startswith(("sqlalchemy.exc.", "psycopg."))})
    for line in causes:
        print(f"{name}: replica log: {line}", file=sys.stderr)
    result: dict[str, Any] = {
        "config": name, "replicas": replicas,
        "saturation_per_second": round(saturated["per_second"], 1),
        "saturation_p50_ms": round(saturated["p50_ms"], 2),
        "saturation_p99_ms": round(saturated["p99_ms"], 2),
        "saturation_errors": saturated["errors"],
        "processed_per_second": round(drained["processed_per_second"], 1),
        "cpu_ms_per_notification": round(
            (cpu_replicas + cpu_server) * 1000 / saturated["accepted"], 2),
        "postgres_cpu_ms_per_notification": round(cpu_server * 1000 / saturated["accepted"], 2),
        "drain_seconds": round(drained["drain_seconds"], 1),
        "drain_pending": drained["drain_pending"],
        "paced_rate": args.rate,
        "paced_achieved_per_second": round(paced["per_second"], 1),
        "paced_p50_ms": round(paced["p50_ms"], 2),
        "paced_p99_ms": round(paced["p99_ms"], 2),
        "paced_errors": paced["errors"],
        "max_postgres_connections": connections,
        "replica_log_errors": len(errors),
    }
    print(f"{name}: {result}", file=sys.stderr, flush=True)
    return result


def stop_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so that the ``finally`` blocks stop every server
    and replica by PID (by default they would end this process and leave those running)."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0,
                        help="seconds of each phase (saturation, paced) per configuration")
    parser.add_argument("--replicas", default="1,2,4",
                        help="comma-separated replica counts on PostgreSQL")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="notifications a second in the paced phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(value) for value in args.replicas.split(",") if value.strip()]

    load_before = os.getloadavg()
    began = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="mz-intake-scale-") as tmp, \
            PostgresServer(max_connections=50 + 20 * max(counts, default=1)) as server:
        directory = Path(tmp)
        sqlite_url = f"sqlite:///{directory / 'responder.db'}"
        (directory / "sqlite").mkdir()
        results.append(measure("sqlite x1", directory / "sqlite", Store(sqlite_url),
                               replicas=1, first=0, args=args, server=None))
        for position, count in enumerate(counts, start=1):
            url = server.create_database(f"intake_r{count}_{position}")
            (directory / f"pg{position}").mkdir()
            results.append(measure(f"postgresql x{count}", directory / f"pg{position}",
                                   Store(url), replicas=count,
                                   first=position * 2 * INDEX_STRIDE, args=args,
                                   server=server))

    baseline = results[0]
    for result in results:
        result["throughput_ratio"] = round(
            result["saturation_per_second"] / baseline["saturation_per_second"], 2)
        result["processed_ratio"] = round(
            result["processed_per_second"] / baseline["processed_per_second"], 2)
        result["paced_p99_ratio"] = round(result["paced_p99_ms"] / baseline["paced_p99_ms"], 2)
        result["cpu_ratio"] = round(
            result["cpu_ms_per_notification"] / baseline["cpu_ms_per_notification"], 2)
    report = {"machine": f"{platform.node()} {os.cpu_count()} CPUs, Python "
                         f"{platform.python_version()}, {platform.platform()}",
              # Other work on the machine skews everything: the load before the run says so.
              "load_average_before": [round(value, 2) for value in load_before],
              "duration": args.duration, "rate": args.rate,
              "runtime_seconds": round(time.monotonic() - began, 1), "results": results}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['machine']}; {args.duration:g} s per phase; run took "
              f"{report['runtime_seconds']} s; load average before {load_before[0]:.2f}")
        header = (f"{'config':<16}{'accepted/s':>11}{'ratio':>7}{'sat p50':>9}{'sat p99':>9}"
                  f"{'processed/s':>12}{'ratio':>7}{'cpu ms':>7}{'ratio':>7}"
                  f"{'paced/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}"
                  f"{'errors':>7}{'log errs':>9}{'pg conns':>9}")
        print(header)
        for r in results:
            print(f"{r['config']:<16}{r['saturation_per_second']:>11}{r['throughput_ratio']:>7}"
                  f"{r['saturation_p50_ms']:>9.1f}{r['saturation_p99_ms']:>9.1f}"
                  f"{r['processed_per_second']:>12}{r['processed_ratio']:>7}"
                  f"{r['cpu_ms_per_notification']:>7.1f}{r['cpu_ratio']:>7}"
                  f"{r['paced_achieved_per_second']:>9}{r['paced_p50_ms']:>8.1f}"
                  f"{r['paced_p99_ms']:>8.1f}{r['paced_p99_ratio']:>7}"
                  f"{r['saturation_errors'] + r['paced_errors']:>7}{r['replica_log_errors']:>9}"
                  f"{r['max_postgres_connections'] or '-':>9}")
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda hook: None  # quiet shutdown of client threads
    sys.exit(main())

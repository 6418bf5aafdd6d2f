"""Alert storm: processing keeps its pace while one incident grows to 10,000 alerts.

The real responder (``monitoriza responder``, as users run it; SQLite in WAL mode with
``synchronous=FULL``) receives ``--alerts`` alerts at ``--rate`` a second over HTTP, one new
alert per notification (``--group`` per notification if asked), from ``--clients`` (32)
client threads in four separate processes, as ``benchmarks/intake.py`` does. Every alert
carries ``service: checkout`` and one of four alert names, so all of them join one incident,
which the journal worker correlates alert by alert while the intake goes on.

The **baseline**, measured in the same run on a fresh store, is the same load without the
``service`` label: nothing correlates, so each alert is only recorded and audited, at a cost
that cannot grow. The storm should look like it.

Read from the store's journal once everything is processed (``received_at`` is when the
webhook accepted an alert, ``processed_at`` when the worker processed it):

- **processing rate** of the first and of the last 1,000 alerts (by processing time), and
  their ratio: with a cost per alert that grows with the incident, the last thousand crawl;
- **lag**: receipt to processing, p50 and p99;
- **intake**: acknowledgement latency p50 and p99 and the rate achieved (the worker holds the
  store's write lock while it processes, so slow processing shows up here too).

Usage: python benchmarks/incident_storm.py [--alerts 10000] [--rate 200]
       [--baseline-alerts 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from intake import FIXTURE, TOKEN, start_responder

ALERTNAMES = ("HighRequestLatency", "HighErrorRate", "PodRestarting", "QueueBacklog")
CLIENT_PROCESSES = 4
START_DELAY_SECONDS = 2.0  # lets the spawned client processes import before the clock starts
WINDOW = 1000  # the first and last this many alerts are compared


def notification(template: dict[str, Any], first: int, group: int, service: bool) -> str:
    """A notification of ``group`` new alerts, numbered from ``first``."""
    body = json.loads(json.dumps(template))
    model = body["alerts"][0]
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    alerts = []
    for index in range(first, first + group):
        alert = json.loads(json.dumps(model))
        alert["fingerprint"] = f"{index:016x}"
        alert["startsAt"] = started
        alert["labels"]["alertname"] = ALERTNAMES[index % len(ALERTNAMES)]
        alert["labels"]["instance"] = f"checkout-{index}:8080"
        if not service:
            del alert["labels"]["service"]
        alerts.append(alert)
    body["alerts"] = alerts
    body["commonLabels"] = {}
    return json.dumps(body)


@dataclass(frozen=True)
class Load:
    """What every client posts: where, how many alerts a notification, with a service or
    not, and how long each client waits between two of its notifications."""

    url: str
    group: int
    service: bool
    interval: float


def client(load: Load, firsts: list[int], start_at: float, latencies: list[float]) -> None:
    """One client thread: post its notifications, each at its own time on the schedule."""
    template = json.loads(FIXTURE.read_text())
    session = requests.Session()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for position, first in enumerate(firsts):
        delay = start_at + position * load.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = notification(template, first, load.group, load.service)
        began = time.perf_counter()
        response = session.post(load.url, data=body, headers=headers, timeout=60)
        latencies.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text}")
    session.close()


def client_process(load: Load, work: list[tuple[list[int], float]], queue: Any) -> None:
    """Several client threads in one process (fewer processes: less CPU)."""
    latencies: list[float] = []
    threads = [threading.Thread(target=client, args=(load, firsts, start_at, latencies))
               for firsts, start_at in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(latencies)


def post_paced(url: str, alerts: int, *, group: int, rate: float, clients: int,
               service: bool) -> dict[str, float]:
    """``alerts`` alerts at ``rate`` a second, ``group`` to a notification."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    notifications = list(range(0, alerts, group))
    per_second = rate / group
    start_at = time.monotonic() + START_DELAY_SECONDS
    work = [(notifications[c::clients], start_at + c / per_second) for c in range(clients)]
    load = Load(url, group, service, clients / per_second)
    workers = [context.Process(target=client_process,
                               args=(load, work[p::CLIENT_PROCESSES], queue))
               for p in range(CLIENT_PROCESSES)]
    for worker in workers:
        worker.start()
    latencies = [latency for _ in workers for latency in queue.get(timeout=3600)]
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - start_at
    ordered = sorted(latencies)
    return {"per_second": len(latencies) * group / elapsed,
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[round(0.99 * (len(ordered) - 1))] * 1000}


def wait_processed(database: Path, alerts: int, timeout: float) -> list[tuple[float, float]]:
    """(received_at, processed_at) of every journal row, once all ``alerts`` are processed."""
    deadline = time.monotonic() + timeout
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        while True:
            done = conn.execute("SELECT count(*) FROM journal WHERE state = 'done'").fetchone()
            if done[0] >= alerts:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done[0]} of {alerts} alerts processed in time")
            time.sleep(0.5)
        rows = conn.execute("SELECT received_at, processed_at FROM journal "
                            "ORDER BY processed_at, id").fetchall()
    return [(float(received), float(processed)) for received, processed in rows]


def largest_incident(database: Path) -> int:
    """Alerts in the largest incident (from their JSON in a store of release edf6060 or
    earlier, so that the benchmark can measure one, run from its checkout)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        try:
            row = conn.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM incident_alerts "
                               "GROUP BY incident_id)").fetchone()
        except sqlite3.OperationalError:
            row = conn.execute("SELECT max((SELECT count(*) FROM json_each(alerts))) "
                               "FROM incidents").fetchone()
    return int(row[0] or 0)


def rate(times: list[float]) -> float:
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else float("inf")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[round(share * (len(ordered) - 1))]


def phase(directory: Path, port: int, alerts: int, args: argparse.Namespace,
          service: bool) -> dict[str, float]:
    """One fresh responder and store, ``alerts`` alerts posted and processed."""
    directory.mkdir()
    responder = start_responder(directory, port)
    try:
        intake = post_paced(f"http://127.0.0.1:{port}/api/v1/alerts", alerts,
                            group=args.group, rate=args.rate, clients=args.clients,
                            service=service)
        rows = wait_processed(directory / "responder.db", alerts, args.drain_timeout)
    finally:
        responder.send_signal(signal.SIGTERM)
        responder.wait(timeout=30)
    processed = [done for _, done in rows]
    window = min(WINDOW, len(processed) // 2)
    lags = [done - received for received, done in rows]
    first, last = rate(processed[:window]), rate(processed[-window:])
    return {"intake_per_second": intake["per_second"], "intake_p50_ms": intake["p50_ms"],
            "intake_p99_ms": intake["p99_ms"], "first_per_second": first,
            "last_per_second": last, "first_to_last": first / last,
            "lag_p50_s": percentile(lags, 0.5), "lag_p99_s": percentile(lags, 0.99),
            "largest_incident": largest_incident(directory / "responder.db")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--baseline-alerts", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="alerts a second")
    parser.add_argument("--group", type=int, default=1, help="alerts per notification")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--port", type=int, default=19596)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mz-storm-") as tmp:
        baseline = phase(Path(tmp) / "baseline", args.port, args.baseline_alerts, args,
                         service=False)
        storm = phase(Path(tmp) / "storm", args.port, args.alerts, args, service=True)

    result: dict[str, object] = {"alerts": args.alerts, "rate": args.rate, "group": args.group}
    for name, figures in (("baseline", baseline), ("storm", storm)):
        result |= {f"{name}_{key}": round(value, 3) for key, value in figures.items()}
    result |= {
        "storm_to_baseline_intake_p99": round(storm["intake_p99_ms"]
                                              / baseline["intake_p99_ms"], 2),
        "storm_to_baseline_lag_p99": round(storm["lag_p99_s"] / baseline["lag_p99_s"], 2),
        "target_rate_ratio_met": storm["first_to_last"] <= 1.5,
        "target_intake_p99_met": storm["intake_p99_ms"] < 100,
        "target_lag_p99_met": storm["lag_p99_s"] < 2,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>36}: {value}")
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda hook: None  # quiet shutdown of client threads
    sys.exit(main())

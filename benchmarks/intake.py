"""Webhook intake: throughput and acknowledgement latency of the real responder.

The responder runs as users run it (``monitoriza responder``: waitress, SQLite in WAL mode
with ``synchronous=FULL``). Clients in separate processes post Alertmanager notifications
(one alert each, every one new) and time each acknowledgement:

- **saturation**: 32 concurrent clients post as fast as they can;
- **paced**: 200 notifications a second, spread over 32 clients, for ``--seconds``, once the
  journal worker has processed the saturation phase's backlog (the wait is reported as
  ``drain_seconds``), so that it measures intake and processing at a steady 200/s.

Both phases run twice in one run, each time against a fresh responder and store: with group
commit (``responder.group_commit_max``, default 256: notifications that arrive together share
one commit) and without it (``group_commit_max: 0``: each notification commits alone in its
request thread, as before group commit).

The baseline, measured in the same run on the same disk, is a bare loop that inserts one row
and commits, with the same durability settings and no HTTP: the most any intake that commits
each notification on its own before acknowledging it could do.

Usage: python benchmarks/intake.py [--notifications 3000] [--rate 200] [--seconds 10]
       [--group-commit-max 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

TOKEN = "benchmark-token"
FIXTURE = Path(__file__).parent.parent / "tests" / "fixtures" / "alertmanager" / \
    "firing_single.json"


def notification(template: dict[str, Any], index: int) -> str:
    body = json.loads(json.dumps(template))
    body["alerts"][0]["fingerprint"] = f"{index:016x}"
    body["alerts"][0]["labels"]["instance"] = f"node-{index}"
    return json.dumps(body)


def client(url: str, indexes: list[int], start_at: float, interval: float,
           latencies: list[float]) -> None:
    """One client (a thread): post its notifications (paced when ``interval`` > 0)."""
    template = json.loads(FIXTURE.read_text())
    session = requests.Session()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    time.sleep(max(0.0, start_at - time.monotonic()))  # every client starts together
    for position, index in enumerate(indexes):
        if interval:
            delay = start_at + position * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        body = notification(template, index)
        began = time.perf_counter()
        response = session.post(url, data=body, headers=headers, timeout=30)
        latencies.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text}")
    session.close()


def client_process(url: str, work: list[tuple[list[int], float]], interval: float,
                   queue: Any) -> None:
    """One client process running several client threads (fewer processes: less CPU)."""
    latencies: list[float] = []
    threads = [threading.Thread(target=client, args=(url, indexes, start_at, interval,
                                                      latencies))
               for indexes, start_at in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(latencies)


def run_clients(url: str, first: int, count: int, clients: int, rate: float) -> dict[str, float]:
    """``count`` notifications from ``clients`` concurrent clients (threads in 4 processes)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    # Each client gets every clients-th notification; pacing offsets them evenly.
    per_client_interval = clients / rate if rate else 0.0
    start_at = time.monotonic() + 2.0
    work = [(list(range(first + c, first + count, clients)),
             start_at + (c / rate if rate else 0.0)) for c in range(clients)]
    processes = 4
    workers = [context.Process(target=client_process, args=(
        url, work[p::processes], per_client_interval, queue)) for p in range(processes)]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    latencies = [latency for _ in workers for latency in queue.get(timeout=600)]
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - max(began, start_at)
    ordered = sorted(latencies)
    return {"notifications": len(latencies), "per_second": len(latencies) / elapsed,
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[round(0.99 * (len(ordered) - 1))] * 1000}


def bare_sqlite(path: Path, rows: int) -> float:
    """Inserts and commits per second, one row per commit, WAL with synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    body = FIXTURE.read_text()
    began = time.perf_counter()
    for _ in range(rows):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (body) VALUES (?)", (body,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return rows / elapsed


def start_responder(directory: Path, port: int, group_commit_max: int | None = None
                    ) -> subprocess.Popen[bytes]:
    """A responder on ``port`` keeping everything in ``directory`` (made if missing), with
    ``group_commit_max`` when given, else the default."""
    directory.mkdir(exist_ok=True)
    (directory / "token").write_text(TOKEN)
    config = directory / "monitoriza.yml"
    group_commit = {} if group_commit_max is None else {"group_commit_max": group_commit_max}
    config.write_text(yaml.safe_dump({"services": {}, "responder": {
        "listen": f"127.0.0.1:{port}", "threads": 32, **group_commit,
        "store_url": f"sqlite:///{directory / 'responder.db'}",
        "token_file": str(directory / "token"),
        "audit": {"signing_key_file": str(directory / "signing.pem"),
                  "checkpoint_file": str(directory / "checkpoints.jsonl")}}}))
    process = subprocess.Popen([sys.executable, "-m", "monitoriza.cli", "responder", "--config",
                                str(config)], stdout=subprocess.DEVNULL,
                               stderr=(directory / "responder.log").open("wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok:
                return process
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError((directory / "responder.log").read_text())


def drain(metrics_url: str, limit: float = 300.0) -> float:
    """Seconds until the journal worker has processed every accepted notification, so that
    the paced phase measures a steady 200/s rather than the saturation phase's backlog."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        for line in requests.get(metrics_url, timeout=10).text.splitlines():
            if line.startswith("monitoriza_responder_journal_depth ") and \
                    float(line.split()[1]) == 0:
                return time.monotonic() - began
        time.sleep(0.25)
    raise RuntimeError(f"the journal did not drain within {limit:g} s")


def intake_buckets(metrics_url: str) -> dict[float, float]:
    """The responder's receive-to-acknowledge histogram: cumulative count per ``le``."""
    buckets = {}
    for line in requests.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith("monitoriza_responder_intake_duration_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def server_p99_bound(before: dict[float, float], after: dict[float, float]) -> float:
    """The smallest histogram bound under which 99 % of the requests between two scrapes
    were acknowledged, in ms: the server's side of the p99, without the clients' time."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts[float("inf")]
    return next(bound for bound, count in counts.items() if count >= 0.99 * total) * 1000


def measure(directory: Path, port: int, group_commit_max: int, args: argparse.Namespace,
            first: int) -> dict[str, Any]:
    """Saturation, then paced, against a fresh responder with ``group_commit_max``."""
    responder = start_responder(directory, port, group_commit_max)
    url = f"http://127.0.0.1:{port}/api/v1/alerts"
    try:
        saturated = run_clients(url, first, args.notifications, args.clients, 0.0)
        drain_seconds = drain(f"http://127.0.0.1:{port}/metrics")
        paced_count = int(args.rate * args.seconds)
        metrics = f"http://127.0.0.1:{port}/metrics"
        before = intake_buckets(metrics)
        paced = run_clients(url, first + args.notifications, paced_count, args.clients,
                            args.rate)
        server_p99 = server_p99_bound(before, intake_buckets(metrics))
    finally:
        responder.send_signal(signal.SIGTERM)
        responder.wait(timeout=30)
    return {"group_commit_max": group_commit_max,
            "saturation_per_second": round(saturated["per_second"], 1),
            "saturation_p50_ms": round(saturated["p50_ms"], 2),
            "saturation_p99_ms": round(saturated["p99_ms"], 2),
            "drain_seconds": round(drain_seconds, 1),
            "paced_achieved_per_second": round(paced["per_second"], 1),
            "paced_p50_ms": round(paced["p50_ms"], 2),
            "paced_p99_ms": round(paced["p99_ms"], 2),
            "paced_server_p99_at_most_ms": server_p99}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--group-commit-max", type=int, default=256)
    parser.add_argument("--port", type=int, default=19595)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.group_commit_max < 1:
        parser.error("--group-commit-max must be at least 1 (the run without is always made)")

    with tempfile.TemporaryDirectory(prefix="mz-intake-") as tmp:
        directory = Path(tmp)
        baseline = bare_sqlite(directory / "bare.db", 1000)
        per_run = args.notifications + int(args.rate * args.seconds)
        grouped = measure(directory / "grouped", args.port, args.group_commit_max, args, 0)
        alone = measure(directory / "alone", args.port + 1, 0, args, per_run)

    result = {
        "baseline_commits_per_second": round(baseline, 1),
        "group_commit": grouped,
        "without_group_commit": alone,
        "saturation_ratio_to_baseline": round(grouped["saturation_per_second"] / baseline, 3),
        "saturation_ratio_to_baseline_without": round(
            alone["saturation_per_second"] / baseline, 3),
        "saturation_ratio_group_to_without": round(
            grouped["saturation_per_second"] / alone["saturation_per_second"], 2),
        "paced_rate": args.rate,
        "paced_p99_ratio_group_to_without": round(
            grouped["paced_p99_ms"] / alone["paced_p99_ms"], 2),
        "target_met": grouped["paced_p99_ms"] < 50,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for name, figure in value.items():
                    print(f"{name:>34}: {figure}")
            else:
                print(f"{key:>38}: {value}")
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda hook: None  # quiet shutdown of client threads
    sys.exit(main())

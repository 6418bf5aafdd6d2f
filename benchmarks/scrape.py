"""Scrape latency of the exporter with a large estate, against a plain-registry baseline.

500 services x 4 probes (two HTTP, one of them with a health body, and two TCP) against fast
local fake targets, probed in the background while /metrics is scraped repeatedly. The
baseline is ``prometheus_client.generate_latest`` over a plain registry of Gauges holding the
same number of series, measured in the same run, so the ratio does not depend on how busy
the machine is. Targets: p99 under 50 ms over HTTP, ratio ≤ 1.5.

Usage: python benchmarks/scrape.py [--services 500] [--scrapes 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from prometheus_client import CollectorRegistry, Gauge, generate_latest, start_http_server

from monitoriza.config import config_from_data
from monitoriza.exporter.app import Exporter
from monitoriza.exporter.collector import ExporterCollector

HEALTH_BODY = json.dumps({"status": "healthy", "components": {
    "database": "healthy", "redis": "healthy", "queue": "degraded"}}).encode()


class FakeTarget(BaseHTTPRequestHandler):
    """Answers every GET at once; /health with a JSON body."""

    def do_GET(self) -> None:
        body = HEALTH_BODY if self.path == "/health" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging."""


def serve_targets() -> None:
    """Child process: serve the fake targets and print their ports, until stdin closes."""
    http, tcp = start_targets()
    print(http.server_address[1], tcp.getsockname()[1], flush=True)
    sys.stdin.read()


def start_targets_process() -> tuple[subprocess.Popen[str], int, int]:
    """The fake targets in their own process, so they do not compete for our GIL."""
    child = subprocess.Popen([sys.executable, __file__, "--serve-targets"], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None
    http_port, tcp_port = (int(port) for port in child.stdout.readline().split())
    return child, http_port, tcp_port


def start_targets() -> tuple[ThreadingHTTPServer, socket.socket]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), FakeTarget)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    tcp = socket.create_server(("127.0.0.1", 0), backlog=1024)

    def accept() -> None:
        while True:
            try:
                conn, _ = tcp.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return http, tcp


def estate(services: int, http_port: int, tcp_port: int, interval: str) -> dict[str, object]:
    probes = [
        {"kind": "http", "name": "health", "url": f"http://127.0.0.1:{http_port}/health",
         "health_body": True},
        {"kind": "http", "name": "home", "url": f"http://127.0.0.1:{http_port}/"},
        {"kind": "tcp", "name": "port", "host": "127.0.0.1", "port": tcp_port},
        {"kind": "tcp", "name": "admin", "host": "127.0.0.1", "port": tcp_port},
    ]
    names = [f"svc-{index:04d}" for index in range(services)]
    return {
        "exporter": {"listen": "127.0.0.1:0", "default_interval": interval,
                     "default_timeout": "5s", "max_concurrent_probes": 32},
        "services": {name: {"probes": probes,
                            "depends_on": [names[index - 1]] if index else []}
                     for index, name in enumerate(names)},
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    results = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        results.append(time.perf_counter() - began)
    return results


def plain_registry(series: int) -> CollectorRegistry:
    """A registry of plain Gauges holding ``series`` series, labelled like ours."""
    registry = CollectorRegistry()
    per_family = 2000
    for family_index in range(0, series, per_family):
        gauge = Gauge(f"baseline_series_{family_index}", "baseline", ["service", "probe"],
                      registry=registry)
        for index in range(family_index, min(series, family_index + per_family)):
            gauge.labels(f"svc-{index // 4:04d}", f"probe-{index % 4}").set(index * 0.5)
    return registry


def serve_baseline(series: int) -> None:
    """Child process: a plain prometheus_client registry on HTTP, until stdin closes."""
    server, _ = start_http_server(0, "127.0.0.1", plain_registry(series))
    print(server.server_address[1], flush=True)
    sys.stdin.read()


def scrape_client(urls: list[str], scrapes: int) -> None:
    """Child process, as Prometheus is: scrape the URLs in turn and print the latencies."""
    session = requests.Session()
    # Compression would time zlib rather than the exporters; Prometheus on loopback needs none.
    session.headers["Accept-Encoding"] = "identity"
    latencies: dict[str, list[float]] = {url: [] for url in urls}
    for _ in range(scrapes):
        for url in urls:  # interleaved, so that background load hits all alike
            began = time.perf_counter()
            session.get(url, timeout=10).raise_for_status()
            latencies[url].append(time.perf_counter() - began)
    session.close()
    print(json.dumps(latencies))


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def summarize(result: dict[str, object],
              timings: dict[str, list[float]]) -> dict[str, object]:
    """Percentiles in milliseconds, the ratios to the baseline, and whether targets are met."""
    ms: dict[str, float] = {}
    for name, samples in timings.items():
        p50, p99 = percentiles(samples)
        ms[f"{name}_p50_ms"] = round(p50 * 1000, 2)
        ms[f"{name}_p99_ms"] = round(p99 * 1000, 2)
    result.update(ms)
    ratios = {
        "ratio_http_p50": round(ms["http_p50_ms"] / ms["http_baseline_p50_ms"], 2),
        "ratio_http_p99": round(ms["http_p99_ms"] / ms["http_baseline_p99_ms"], 2),
        "ratio_render_cold_p50": round(
            ms["render_cold_p50_ms"] / ms["generate_baseline_p50_ms"], 2),
    }
    result.update(ratios)
    result["target_met"] = (ms["http_p99_ms"] < 50 and ratios["ratio_http_p50"] <= 1.5
                            and ratios["ratio_render_cold_p50"] <= 1.5)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--interval", default="15s", help="probe interval (default 15s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve-targets", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_targets:
        serve_targets()
        return 0
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return 0
    if args.client:
        scrape_client(args.client, args.scrapes)
        return 0

    targets, http_port, tcp_port = start_targets_process()
    config = config_from_data(estate(args.services, http_port, tcp_port, args.interval))
    exporter = Exporter(config)
    exporter.start()
    url = "http://{}:{}/metrics".format(*exporter.address)
    expected = args.services * 4
    deadline = time.monotonic() + 120
    while len(exporter.scheduler.snapshot()) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    probed = len(exporter.scheduler.snapshot())
    ours = exporter.collector.render()
    series = sum(1 for line in ours.splitlines() if line and not line.startswith(b"#"))
    baseline = plain_registry(series)
    base_process = child("--serve-baseline", str(series))
    assert base_process.stdout is not None
    base_url = f"http://127.0.0.1:{int(base_process.stdout.readline())}/metrics"

    # Phase 1: over HTTP, from a separate client process, while probes run in the background.
    client = child("--client", url, base_url, "--scrapes", str(args.scrapes))
    latencies = json.loads(client.communicate()[0])
    ours_http, base_http = latencies[url], latencies[base_url]
    # Phase 2: rendering alone, in the exporter's process, against generate_latest.
    ours_gen, ours_cold, base_gen = [], [], []
    for _ in range(args.scrapes):
        ours_gen += timed(exporter.collector.render, 1)
        # A collector with an empty health cache: the worst case, every service recomputed.
        cold = ExporterCollector(exporter.scheduler, lambda: config, exporter.registry)
        ours_cold += timed(cold.render, 1)
        base_gen += timed(lambda: generate_latest(baseline), 1)
    exporter.stop()
    for process in (base_process, targets):
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)

    result = summarize(
        {"services": args.services, "probes": expected, "probes_with_results": probed,
         "series": series, "scrapes": args.scrapes, "interval": args.interval},
        {"http": ours_http, "http_baseline": base_http, "render": ours_gen,
         "render_cold": ours_cold, "generate_baseline": base_gen})
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``monitoriza drill load``'s own overhead, against a plain ``requests`` loop run in the same
session against the same server.

A two-step flow (POST /login capturing a token, GET /orders/{token}) is served on loopback by
a threaded ``http.server`` in a process of its own, so its CPU is counted on neither side.
The baseline runs the flow back to back with :func:`monitoriza.flows.runner.run_flow` and one
``requests.Session``: the floor for running this flow from Python. Then ``monitoriza drill
load`` drives it at ``--rate`` for ``--duration`` (Locust, gevent, one child process for the
load). Printed: CPU milliseconds per flow run on each side (the drill's includes its start-up:
Python, the configuration, Locust's imports) and their ratio, and the flow's median latency on
each side and their ratio — how much the load generator adds to what it measures.

Usage: python benchmarks/drill_load.py [--rate 50] [--users 5] [--duration 10s]
                                       [--baseline-runs 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import requests
import yaml

from monitoriza.config import load_config
from monitoriza.flows.runner import run_flow

MONITORIZA = str(Path(sys.executable).with_name("monitoriza"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API would
    # Headers and body in one segment: written apart, Nagle's algorithm and delayed ACKs
    # would add ~40 ms to every answer on a kept-alive connection.
    wbufsize = 65536
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer({"data": {"token": "t-42"}})

    def do_GET(self) -> None:
        self._answer({"status": "ok"})

    def _answer(self, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a load user stopped mid-request resets its connection: expected at the end


def _serve(port_out: Connection) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def write_config(directory: Path, url: str) -> Path:
    config = directory / "monitoriza.yml"
    config.write_text(yaml.safe_dump({
        "services": {"backend": {}},
        "flows": {"journey": {"interval": "30s", "timeout": "5s", "steps": [
            {"name": "login", "method": "POST", "url": f"{url}/login",
             "body": {"user": "bench"}, "capture": {"token": "$.data.token"}},
            {"name": "orders", "url": url + "/orders/{token}", "assert": {"$.status": "ok"}},
        ]}},
    }), encoding="utf-8")
    return config


def baseline(config: Path, rate: float, runs: int) -> dict[str, float]:
    """The flow with run_flow and one session, paced at ``rate`` like the drill (runs spaced
    out are slower than back to back: the server's threads and the caches go cold)."""
    flow = load_config(config).flows["journey"]
    durations = []
    with requests.Session() as session:
        cpu, wall = time.process_time(), time.perf_counter()
        for index in range(runs):
            time.sleep(max(0.0, wall + index / rate - time.perf_counter()))
            result = run_flow("journey", flow, session=session)
            if not result.ok:
                raise SystemExit(f"baseline: the flow failed: {result.failed_step}")
            durations.append(result.duration_seconds * 1000)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"runs": runs, "cpu_ms_per_run": cpu * 1000 / runs, "runs_per_second": runs / wall,
            "p50_ms": statistics.median(durations)}


def _drill_cpu(config: Path, rate: float, users: int, duration: str,
               out: Path) -> tuple[float, dict[str, Any]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [MONITORIZA, "drill", "load", "--config", str(config), "--flow", "journey",
         "--users", str(users), "--rate", str(rate), "--duration", duration,
         "--out", str(out)], capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"drill load failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, json.loads(out.read_text())


def drill(config: Path, rate: float, users: int, duration: str) -> dict[str, float]:
    """``monitoriza drill load`` as a user runs it: CPU of it and its load worker, less the
    CPU of a run that stops at once (start-up: Python, configuration, Locust's imports)."""
    startup_cpu, _ = _drill_cpu(config, 1, 1, "1ms", config.parent / "startup.json")
    cpu, results = _drill_cpu(config, rate, users, duration, config.parent / "result.json")
    return {"runs": results["runs"], "startup_cpu_ms": startup_cpu * 1000,
            "cpu_ms_per_run": (cpu - startup_cpu) * 1000 / results["runs"],
            "runs_per_second": results["achieved_rate"], "target_rate": rate,
            "p50_ms": results["run_percentiles_ms"]["p50"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--baseline-runs", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(send,), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{receive.recv()}"
        with tempfile.TemporaryDirectory() as directory:
            config = write_config(Path(directory), url)
            plain = baseline(config, args.rate, args.baseline_runs)
            loaded = drill(config, args.rate, args.users, args.duration)
    finally:
        server.terminate()
        server.join()
    figures = {"baseline": plain, "drill_load": loaded,
               "cpu_ratio": loaded["cpu_ms_per_run"] / plain["cpu_ms_per_run"],
               "p50_ratio": loaded["p50_ms"] / plain["p50_ms"]}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"baseline (paced run_flow loop): {plain['runs']} runs, "
          f"{plain['runs_per_second']:.2f}/s, "
          f"{plain['cpu_ms_per_run']:.2f} ms CPU/run, flow p50 {plain['p50_ms']:.2f} ms")
    print(f"drill load: {loaded['runs']} runs, {loaded['runs_per_second']:.2f}/s of "
          f"{args.rate:g}/s, {loaded['cpu_ms_per_run']:.2f} ms CPU/run "
          f"(after {loaded['startup_cpu_ms']:.0f} ms CPU of start-up), "
          f"flow p50 {loaded['p50_ms']:g} ms")
    print(f"ratio drill/baseline: CPU per run {figures['cpu_ratio']:.2f}x, "
          f"flow p50 {figures['p50_ratio']:.2f}x")


if __name__ == "__main__":
    main()

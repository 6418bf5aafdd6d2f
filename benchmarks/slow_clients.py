"""Slow clients: what 1,000 stalled connections cost everyone else.

The responder runs as users run it (``monitoriza responder``, waitress, SQLite), with its
default ``request_deadline`` (5 s). A probing client times ``GET /healthz`` and new valid
notifications, each on a new connection, first alone (the baseline, measured in this run on
this machine), then while ``--connections`` slow clients (in another process) hold
connections open: half stop half-way through their header block, half trickle a body a byte
a second, each replaced as soon as the server closes it. Reported: p50/p99/max of both, the
ratio of each p99 to its baseline, and how long the server let a slow connection live.

Usage: python benchmarks/slow_clients.py [--connections 1000] [--seconds 12] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from tests.support.responder import TOKEN
from tests.support.responder_process import ResponderProcess
from tests.support.slow_clients import (
    Prober,
    ProbeReport,
    SlowClientsProcess,
    percentile,
)

DEADLINE = 5.0


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * percentile(values, 0.50), 1),
            "p99_ms": round(1000 * percentile(values, 0.99), 1),
            "max_ms": round(1000 * max(values, default=0.0), 1), "samples": len(values)}


def probe(port: int, seconds: float, prefix: str) -> tuple[ProbeReport, ProbeReport]:
    health = Prober("127.0.0.1", port, TOKEN, intake=False, interval=0.01).start()
    intake = Prober("127.0.0.1", port, TOKEN, prefix=prefix, healthz=False).start()
    time.sleep(seconds)
    return health.stop(), intake.stop()


def run(connections: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        server = ResponderProcess(Path(directory), request_deadline=f"{DEADLINE:g}s")
        server.start()
        try:
            probe(server.port, 1.0, "warm")
            base_health, base_intake = probe(server.port, seconds, "base")
            attack = SlowClientsProcess("127.0.0.1", server.port, count=connections,
                                        duration=seconds + 1.0, token=TOKEN,
                                        wait_close=DEADLINE + 3.0).start()
            time.sleep(1.0)
            health, intake = probe(server.port, seconds, "slow")
            outcome = attack.join()
        finally:
            server.stop()
    lifetimes = [x for x in outcome.lifetimes if x != float("inf")]
    result: dict[str, Any] = {
        "connections": connections, "seconds": seconds, "request_deadline_s": DEADLINE,
        "baseline": {"healthz": summary(base_health.healthz),
                     "intake": summary(base_intake.intake)},
        "slow_clients": {"healthz": summary(health.healthz), "intake": summary(intake.intake)},
        "failures": health.failures + intake.failures,
        "slow_connections": len(outcome.lifetimes), "peak_open": outcome.peak_open,
        "never_closed": len(outcome.lifetimes) - len(lifetimes),
        "lifetime_max_s": round(max(lifetimes, default=0.0), 2),
    }
    for what in ("healthz", "intake"):
        base = result["baseline"][what]["p99_ms"] or 0.1
        result[f"{what}_p99_ratio"] = round(result["slow_clients"][what]["p99_ms"] / base, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.connections, args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.connections} slow connections for {args.seconds:g}s "
          f"(request_deadline {DEADLINE:g}s)")
    for what in ("healthz", "intake"):
        base, slow = result["baseline"][what], result["slow_clients"][what]
        print(f"  {what:8} alone: p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms | "
              f"slow clients: p50 {slow['p50_ms']} ms, p99 {slow['p99_ms']} ms, "
              f"max {slow['max_ms']} ms | p99 x{result[f'{what}_p99_ratio']}")
    print(f"  slow connections: {result['slow_connections']} opened, peak "
          f"{result['peak_open']} open, longest lived {result['lifetime_max_s']} s, "
          f"never closed {result['never_closed']}; failures {len(result['failures'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

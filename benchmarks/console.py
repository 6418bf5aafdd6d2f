"""The console's overview for many services, rendered on the server, against the same data
rendered as JSON the way the responder's API answers (``flask.jsonify``), in the same run.

Both renderings get the same rows: N services (default 500) with a score, five dimensions, a
6 h sparkline of 73 points (one every 5 minutes), firing alerts, a time to failure, and an open
incident with its latest action for one service in ten, built by the console's own
``overview_rows``. Each rendering runs inside the responder's real app (its templates, its
context processor, a logged-in operator's request), as ``GET /console/`` renders. Target: the
overview's p99 under 200 ms for 500 services. The ratio says what the page costs over the
bare data.

Usage: python benchmarks/console.py [--services 500] [--runs 60] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, session

from monitoriza.config.loader import config_from_data
from monitoriza.console.overview_data import (
    DIMENSIONS,
    IncidentLink,
    LatestAction,
    Overview,
    PrometheusFacts,
    TimeToFailure,
    overview_rows,
)
from monitoriza.console.views_main import render_overview
from monitoriza.responder.app import create_app

TARGET_P99_SECONDS = 0.200
TREND_POINTS = 73  # 6 h at one point every 5 minutes
TREND_STEP = 300.0


def fixed_data(count: int, now: float) -> tuple[dict[str, str], PrometheusFacts,
                                                 list[IncidentLink]]:
    """``count`` services with everything the overview shows (a fixed seed: every run
    renders the same page)."""
    rng = random.Random(1500)
    tiers = {f"svc-{index:04d}": ("critical" if index % 7 == 0 else "standard")
             for index in range(count)}
    facts = PrometheusFacts(alerts={})
    incidents = []
    for index, name in enumerate(tiers):
        score = round(rng.uniform(20, 100), 1)
        facts.scores[name] = score
        facts.dimensions[name] = {dimension: round(rng.random(), 3) for dimension in DIMENSIONS}
        facts.trends[name] = [
            (now - TREND_STEP * (TREND_POINTS - 1 - step),
             max(0.0, min(100.0, score + 10 * math.sin(step / 7) + rng.uniform(-3, 3))))
            for step in range(TREND_POINTS)]
        if score < 60:
            assert facts.alerts is not None
            facts.alerts[name] = {"P4": 1, "P3": 1 if score < 40 else 0}
        if index % 5 == 0:
            facts.ttf[name] = TimeToFailure(f"disk-{name}", rng.uniform(3600, 86400),
                                            rng.uniform(1800, 3600), rng.uniform(86400, 172800))
        if index % 10 == 0:
            incidents.append(IncidentLink(
                id=index + 1, state="healing", root_service=name, opened_at=now - 600,
                firing={name: {"P3": 1}},
                action=LatestAction("restart", name, "success")))
    return tiers, facts, incidents


def responder_app(directory: Path) -> Flask:
    """The real responder app (its templates and context processor), with no worker."""
    (directory / "token").write_text("benchmark-token-0123456789abcdef\n")
    config = config_from_data({
        "responder": {"store_url": f"sqlite:///{directory / 'store.db'}",
                      "token_file": str(directory / "token")},
        "services": {"web": {"probes": [{"kind": "tcp", "host": "127.0.0.1", "port": 1}]}}},
        directory)
    return create_app(config, start_worker=False)


def timed(runs: int, render: Callable[[], Any]) -> list[float]:
    render()  # the first one compiles the template: not what a refresh costs
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        render()
        seconds.append(time.perf_counter() - started)
    return seconds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    now = time.time()
    tiers, facts, incidents = fixed_data(args.services, now)
    rows, source = overview_rows(tiers, facts, incidents)
    overview = Overview(rows, now - TREND_STEP * (TREND_POINTS - 1), now, source)
    with tempfile.TemporaryDirectory() as directory:
        app = responder_app(Path(directory))
        with app.test_request_context("/console/"):
            session["role"] = "operator"
            session["csrf_token"] = "benchmark"
            page = render_overview(overview, refresh=10)
            html = timed(args.runs, lambda: render_overview(overview, refresh=10))
            as_json = timed(args.runs, lambda: jsonify(
                rows=[dataclasses.asdict(row) for row in rows], alert_source=source,
                start=overview.start, end=overview.end).get_data())
    result = {
        "services": args.services, "runs": args.runs, "page_bytes": len(page.encode()),
        "html_p50_ms": round(statistics.median(html) * 1000, 1),
        "html_p99_ms": round(percentile(html, 0.99) * 1000, 1),
        "json_p50_ms": round(statistics.median(as_json) * 1000, 1),
        "json_p99_ms": round(percentile(as_json, 0.99) * 1000, 1),
        "html_over_json_p50": round(statistics.median(html) / statistics.median(as_json), 2),
        "target_p99_ms": TARGET_P99_SECONDS * 1000,
    }
    result["meets_target"] = result["html_p99_ms"] <= result["target_p99_ms"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"overview of {args.services} services ({result['page_bytes'] / 1e6:.2f} MB), "
              f"{args.runs} renders each:")
        print(f"  HTML page  p50 {result['html_p50_ms']:7.1f} ms  p99 "
              f"{result['html_p99_ms']:7.1f} ms  (target p99 <= {result['target_p99_ms']:.0f})")
        print(f"  JSON (API) p50 {result['json_p50_ms']:7.1f} ms  p99 "
              f"{result['json_p99_ms']:7.1f} ms")
        print(f"  HTML / JSON at p50: {result['html_over_json_p50']:.2f}x   "
              f"{'meets' if result['meets_target'] else 'MISSES'} the target")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())

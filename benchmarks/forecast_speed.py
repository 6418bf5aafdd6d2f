"""Forecast cycle speed for a large estate, against the predict_linear baseline in one run.

N series x P points (default 10,000 x 720: 2.5 days at 5-minute steps, so the daily
profile is fitted too), synthetic and seeded: a quarter each of linear fills, noise with
bursts, log-rotation sawtooth and flat series, with 1 % of points missing. One cycle is
one ``time_to_failure`` call on all of them; the baseline is ``ols_time_to_failure`` (OLS
over the window, what PromQL's ``predict_linear`` does) on the same data. Each is timed as
the median of ``--repeat`` runs; the ratio does not depend on how busy the machine is.
Target: a 10,000-series cycle in under 5 s on the 2-core reference machine (issue 18).

Usage: python benchmarks/forecast_speed.py [--series 10000] [--points 720] [--repeat 3]
                                           [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from monitoriza.config.schema import ForecastSpec
from monitoriza.exporter.forecasts import run_forecast
from monitoriza.forecast.model import ols_time_to_failure, time_to_failure

FloatArray = npt.NDArray[np.float64]

STEP = 300.0
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z
THRESHOLD = 90.0
HORIZON = 86400.0
TARGET_SECONDS = 5.0
SEED = 20241124


def estate(series: int, points: int, seed: int = SEED) -> tuple[FloatArray, FloatArray]:
    """(times (P,), values (N, P)): fills, bursty noise, sawtooth and flat, 1 % gaps."""
    rng = np.random.default_rng(seed)
    times = START + STEP * np.arange(points, dtype=np.float64)
    hours = (times - times[0]) / 3600.0
    kind = np.arange(series) % 4
    base = rng.uniform(20.0, 70.0, (series, 1))
    noise = rng.normal(0.0, 1.0, (series, points))
    rate = rng.uniform(0.0, 0.5, (series, 1))  # per hour
    period = rng.uniform(4.0, 24.0, (series, 1))
    values = np.empty((series, points))
    fill = kind == 0
    values[fill] = (base + rate * hours + 0.3 * noise)[fill]
    bursty = kind == 1
    bursts = (rng.random((series, points)) < 0.01) * rng.uniform(5.0, 30.0, (series, points))
    values[bursty] = (base + 2.0 * noise + bursts)[bursty]
    saw = kind == 2
    values[saw] = (base + 15.0 * np.mod(hours, period) / period + 0.3 * noise)[saw]
    flat = kind == 3
    values[flat] = np.broadcast_to(base, (series, points))[flat]
    values[rng.random((series, points)) < 0.01] = np.nan
    return times, values


class InMemoryPrometheus:
    """A range query's answer already in memory, in Prometheus's JSON shape (values as text),
    so that the exporter's cycle is timed without the network: what Prometheus and the HTTP
    client add depends on them, not on Monitoriza."""

    def __init__(self, times: FloatArray, values: FloatArray) -> None:
        self.result = [{"metric": {"__name__": "disk_used", "mountpoint": f"/srv/{row}"},
                        "values": [[float(t), repr(float(v))] for t, v in zip(times, line,
                                                                             strict=True)
                                   if not math.isnan(v)]}
                       for row, line in enumerate(values)]

    def custom_query_range(self, query: str, start_time: Any, end_time: Any,
                           step: str) -> list[dict[str, Any]]:
        return self.result


def exporter_cycle(times: FloatArray, values: FloatArray) -> Callable[[], object]:
    """The exporter's whole run of one forecast over the estate: the range query's answer put
    on the grid, every series fitted, each published with its labels."""
    source = InMemoryPrometheus(times, values)
    spec = ForecastSpec.model_validate({
        "service": "host", "expr": "disk_used", "threshold": THRESHOLD,
        "horizon": f"{HORIZON:g}s", "window": f"{times[-1] - times[0]:g}s",
        "step": f"{STEP:g}s", "max_series": values.shape[0]})
    return lambda: run_forecast("disks", spec, source, float(times[-1]))


def timed(call: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``repeat`` calls, in seconds."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    """Build the estate, time both methods, print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=720)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    times, values = estate(args.series, args.points)
    kwargs = {"threshold": THRESHOLD, "horizon": HORIZON}
    ours = timed(lambda: time_to_failure(times, values, direction="above", **kwargs),
                 args.repeat)
    baseline = timed(lambda: ols_time_to_failure(times, values, direction="above", **kwargs),
                     args.repeat)
    models = time_to_failure(times, values, direction="above", **kwargs).model
    exporter = timed(exporter_cycle(times, values), args.repeat)
    result = {
        "series": args.series,
        "points": args.points,
        "repeat": args.repeat,
        "cycle_s": round(ours, 3),
        "series_per_s": round(args.series / ours),
        "baseline_cycle_s": round(baseline, 4),
        "baseline_series_per_s": round(args.series / baseline),
        "ratio": round(ours / baseline, 1),
        "exporter_cycle_s": round(exporter, 3),
        "models": {name: models.count(name) for name in sorted(set(models))},
        "target_s": TARGET_SECONDS * args.series / 10_000,
        "target_met": ours <= TARGET_SECONDS * args.series / 10_000,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.series:,} series x {args.points} points, median of {args.repeat}")
    print(f"time_to_failure      {ours:8.3f} s/cycle  {result['series_per_s']:>9,} series/s")
    print(f"ols_time_to_failure  {baseline:8.3f} s/cycle  "
          f"{result['baseline_series_per_s']:>9,} series/s")
    print(f"ratio {result['ratio']}x; models chosen: {result['models']}")
    print(f"exporter cycle (range answer on the grid, fit, labels): {exporter:.3f} s")
    verdict = "met" if result["target_met"] else "NOT met"
    print(f"target ≤ {result['target_s']:g} s per cycle: {verdict}")


if __name__ == "__main__":
    main()

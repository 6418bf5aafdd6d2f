"""The forecast engine and the backtest command, without Prometheus.

The engine tests hand it a fake range-query source: a Prometheus that answers a given
history, or one that fails, is what they need to control (the real one is in
test_forecast_e2e.py), and a manual clock, so that five minutes pass without sleeping.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoriza.config import config_from_data
from monitoriza.config.schema import Config
from monitoriza.exporter.forecasts import CYCLE_SECONDS, ForecastEngine, align, headroom
from tests.support.binaries import wait_until
from tests.support.clock import ManualClock

NOW = 1_800_000_000.0


class FakePrometheus:
    """Answers custom_query_range with a linear series (or fails when told to)."""

    def __init__(self, slope: float, failing: bool = False) -> None:
        self.slope = slope
        self.failing = failing
        self.queries: list[str] = []

    def custom_query_range(self, query: str, start_time: Any, end_time: Any,
                           step: str) -> list[dict[str, Any]]:
        self.queries.append(query)
        if self.failing:
            raise ConnectionError("Prometheus is down")
        start, end = start_time.timestamp(), end_time.timestamp()
        stamps = np.arange(start, end + 1, 60.0)
        return [{"metric": {"__name__": query},
                 "values": [[t, str(10 + self.slope * (t - start))] for t in stamps]}]


def config(**forecast: Any) -> Config:
    return config_from_data({"services": {"host": {}}, "forecasts": {"disk": {
        "service": "host", "expr": "disk_used", "threshold": 100.0, "horizon": "24h",
        "window": "6h", "step": "1m", "interval": "5m", **forecast}}})


class TestAlign:
    """Range-query results become one grid with NaN for the gaps."""

    def test_gaps_and_specials(self) -> None:
        """Missing steps are NaN; "NaN" and "+Inf" texts are parsed as Prometheus means."""
        times, values = align([{"values": [[100, "1"], [120, "3"]]},
                               {"values": [[110, "NaN"], [120, "+Inf"]]}], 100, 10, 3)
        assert times.tolist() == [100, 110, 120]
        assert values[0, 0] == 1 and math.isnan(values[0, 1]) and values[0, 2] == 3
        assert math.isnan(values[1, 1]) and values[1, 2] == math.inf

    def test_headroom(self) -> None:
        """Headroom is the share of the threshold still to go, never negative."""
        assert headroom(75, 100, "above") == pytest.approx(0.25)
        assert headroom(120, 100, "above") == 0
        assert headroom(30, 20, "below") == pytest.approx(0.5)


class TestEngine:
    """Forecasts run on their interval; failures keep the last result and are reported."""

    def test_runs_and_keeps_last_result(self) -> None:
        """A rising series gives a finite time; a failing Prometheus keeps it and is unhealthy."""
        source = FakePrometheus(slope=0.001)
        clock = ManualClock(wall_start=NOW)
        engine = ForecastEngine(config, lambda url: source, clock=clock)
        assert engine.run_due() == 1
        (result,) = engine.results()
        assert engine.healthy()
        assert 0 < result.lower <= result.median <= result.upper < math.inf
        assert engine.run_due() == 0  # not due again before its interval
        source.failing = True
        clock.advance(300)
        assert engine.run_due() == 1
        assert not engine.healthy()
        assert engine.results() == [result]

    def test_reload_drops_removed_forecasts(self) -> None:
        """A forecast removed from the configuration stops being published."""
        current = [config()]
        engine = ForecastEngine(lambda: current[0], lambda url: FakePrometheus(0.001),
                                clock=ManualClock(wall_start=NOW))
        engine.run_due()
        current[0] = config_from_data({"services": {"host": {}}})
        engine.run_due()
        assert engine.results() == []

    def test_background_thread_runs_each_forecast_on_its_interval(self) -> None:
        """Started, the engine runs a 5m forecast at once, not again 4 minutes later, again
        at 5 minutes, keeps going while Prometheus fails, and stops at once when told."""
        source = FakePrometheus(slope=0.001)
        clock = ManualClock(wall_start=NOW)
        engine = ForecastEngine(config, lambda url: source, clock=clock)
        engine.start()
        try:
            assert wait_until(clock.caught_up, 5.0, interval=0.001)
            assert len(source.queries) == 1 and engine.healthy()
            for minutes, queries in [(4, 1), (1, 2)]:
                for _ in range(minutes * 60):  # the thread looks once a second
                    clock.advance(CYCLE_SECONDS)
                    assert wait_until(clock.caught_up, 5.0, interval=0.001)
                assert len(source.queries) == queries
            source.failing = True
            clock.advance(300)
            assert wait_until(clock.caught_up, 5.0, interval=0.001)
            assert len(source.queries) == 3 and not engine.healthy()
            assert engine.results()[0].ran_at == NOW + 300  # the last good one stays
        finally:
            began = time.monotonic()
            engine.stop()
        assert time.monotonic() - began < 1.0


class TestBacktestCommand:
    """``monitoriza forecast backtest`` replays a CSV, one forecast per step."""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitoriza.cli", "forecast", "backtest",
                               *args], capture_output=True, text=True, timeout=120,
                              check=False)

    def test_json_lines(self, tmp_path: Path) -> None:
        """A steady fill: every step has lower <= median <= upper, shrinking over time."""
        csv = tmp_path / "disk.csv"
        rows = ["timestamp,value"] + [f"2026-11-24 {h:02d}:{m:02d}:00,{10 + 0.1 * (h * 60 + m)}"
                                      for h in range(12) for m in range(0, 60, 5)]
        csv.write_text("\n".join(rows) + "\n")
        result = self.run("--csv", str(csv), "--threshold", "100", "--direction", "above",
                          "--horizon", "24h", "--window", "2h", "--step", "1h", "--json")
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == 10  # 02:00 (two hours of history) to 11:00, hourly
        assert {"timestamp", "lower", "median", "upper"} <= set(lines[0])
        medians = [line["median"] for line in lines]
        assert all(m is not None for m in medians) and medians == sorted(medians, reverse=True)
        assert all(line["lower"] <= line["median"] <= line["upper"] for line in lines)

    def test_bad_input(self, tmp_path: Path) -> None:
        """A missing file or a bad timestamp is a usage error with a message, not a crash."""
        missing = self.run("--csv", str(tmp_path / "nope.csv"), "--threshold", "1",
                           "--direction", "above", "--horizon", "1h")
        assert missing.returncode == 2 and "cannot read" in missing.stderr
        bad = tmp_path / "bad.csv"
        bad.write_text("timestamp,value\nyesterday,1\n")
        result = self.run("--csv", str(bad), "--threshold", "1", "--direction", "above",
                          "--horizon", "1h")
        assert result.returncode == 2 and "not a timestamp" in result.stderr
        result = self.run("--csv", str(bad), "--threshold", "1", "--direction", "above",
                          "--horizon", "soon")
        assert result.returncode == 2 and "expected a duration" in result.stderr

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
from monitoriza.exceptions import ConfigError
from monitoriza.exporter.exposition import render
from monitoriza.exporter.forecasts import (
    BLOCK_SERIES,
    CYCLE_SECONDS,
    ForecastEngine,
    align,
    forecast_section,
    headroom,
    run_forecast,
)
from tests.support.binaries import require_binary, wait_until
from tests.support.clock import ManualClock
from tests.support.exposition import value

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

    def test_a_bad_sample_costs_only_itself(self) -> None:
        """A value that is not a number (a broken proxy, a hand-made answer) is a gap; the
        rest of its series stays."""
        _, values = align([{"values": [[100, "1"], [110, "oops"], [120, None]]},
                           {"values": [[100, "2"], [120, "4"]]}], 100, 10, 3)
        assert values[0, 0] == 1 and np.isnan(values[0, 1:]).all()
        assert values[1].tolist()[::2] == [2, 4]

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
        (only,) = result.forecasts
        assert 0 < only.lower <= only.median <= only.upper < math.inf
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


class ManySeries:
    """Answers custom_query_range with one linear series per (labels, slope), as a range
    query over many filesystems would."""

    def __init__(self, series: list[tuple[dict[str, str], float]]) -> None:
        self.series = series

    def custom_query_range(self, query: str, start_time: Any, end_time: Any,
                           step: str) -> list[dict[str, Any]]:
        start, end = start_time.timestamp(), end_time.timestamp()
        stamps = np.arange(start, end + 1, 60.0)
        return [{"metric": {"__name__": query, **labels},
                 "values": [[t, str(10 + slope * (t - start))] for t in stamps]}
                for labels, slope in self.series]


def mounts(count: int) -> list[tuple[dict[str, str], float]]:
    """``count`` filesystems of one host, filling at different rates."""
    return [({"mountpoint": f"/srv/{index:02d}", "instance": "db-1:9100", "job": "node"},
             0.001 + 0.0005 * index) for index in range(count)]


class TestBlocks:
    def test_series_keep_their_labels_across_blocks(self) -> None:
        """2,100 filesystems (three blocks of the exporter's conversion): each is published
        with its own labels and its own time to failure, and the two that ended (no point in
        the last steps: the answer stops early) are left out wherever their block is."""
        count = 2 * BLOCK_SERIES + 52
        ended = {700, 2090}

        class Answer:
            def custom_query_range(self, query: str, start_time: Any, end_time: Any,
                                   step: str) -> list[dict[str, Any]]:
                start, end = start_time.timestamp(), end_time.timestamp()
                stamps = np.arange(start, end + 1, 60.0)
                return [{"metric": {"mountpoint": f"/m/{index}"},
                         "values": [[t, str(10 + 0.00005 * (index + 1) * (t - start))]
                                    for t in (stamps[:-3] if index in ended else stamps)]}
                        for index in range(count)]

        spec = config(window="10m", max_series=count).forecasts["disk"]
        result = run_forecast("disk", spec, Answer(), NOW)
        published = {dict(item.labels)["mountpoint"]: item.median for item in result.forecasts}
        assert len(published) == count - len(ended)
        assert not {f"/m/{index}" for index in ended} & set(published)
        for index in (20, BLOCK_SERIES - 1, BLOCK_SERIES, 2 * BLOCK_SERIES + 51):
            # 90 units to go from the window's start at 0.00005·(index + 1) a second, 10 min
            # of it gone by now: within the 24 h horizon
            rate = 0.00005 * (index + 1)
            assert published[f"/m/{index}"] == pytest.approx(90 / rate - 600, rel=0.01)


class TestCoverageLevel:
    def test_the_calibrated_level_is_published(self) -> None:
        """The level the lower and upper estimates are calibrated to (coverage: 0.7) is
        published beside them, for dashboards and alert texts to quote."""
        engine = ForecastEngine(lambda: config(coverage=0.7), lambda url: FakePrometheus(0.001),
                                clock=ManualClock(wall_start=NOW))
        engine.run_due()
        assert value(exposition(engine), "monitoriza_forecast_bounds_coverage_ratio",
                     {"forecast": "disk"}) == 0.7


class TestPerSeries:
    """Every series a forecast's expression returns gets its own forecast, with its labels."""

    def test_each_series_published_with_its_labels(self) -> None:
        """Three filesystems give three forecasts; the faster one fails sooner; job and
        instance, which Prometheus sets on the exporter's own series, come out as
        exported_job and exported_instance; one that disappears stops being published."""
        source = ManySeries(mounts(3))
        clock = ManualClock(wall_start=NOW)
        engine = ForecastEngine(config, lambda url: source, clock=clock)
        engine.run_due()
        text = exposition(engine)
        medians: list[float] = []
        for index in range(3):
            labels = {"forecast": "disk", "service": "host", "estimate": "median",
                      "mountpoint": f"/srv/{index:02d}", "exported_instance": "db-1:9100",
                      "exported_job": "node"}
            median = value(text, "monitoriza_time_to_failure_seconds", labels)
            assert median is not None and math.isfinite(median)
            medians.append(median)
            assert value(text, "monitoriza_forecast_headroom_ratio", {
                key: labels[key] for key in labels if key != "estimate"}) is not None
        assert medians[0] > medians[1] > medians[2]
        assert value(text, "monitoriza_forecast_series", {"forecast": "disk"}) == 3
        source.series = source.series[:2]
        clock.advance(300)
        engine.run_due()
        text = exposition(engine)
        assert "/srv/02" not in text and "/srv/01" in text

    def test_by_keeps_the_soonest_series_of_each_group(self) -> None:
        """by: [instance]: two hosts' filesystems give one forecast per host, the one of its
        filesystem that fills fastest."""
        series = [({"mountpoint": "/", "instance": "a", "job": "node"}, 0.0005),
                  ({"mountpoint": "/var", "instance": "a", "job": "node"}, 0.002),
                  ({"mountpoint": "/", "instance": "b", "job": "node"}, 0.001)]
        engine = ForecastEngine(lambda: config(by=["instance"]),
                                lambda url: ManySeries(series),
                                clock=ManualClock(wall_start=NOW))
        engine.run_due()
        (result,) = engine.results()
        assert [item.labels for item in result.forecasts] == [
            (("exported_instance", "a"),), (("exported_instance", "b"),)]
        fastest_alone = ForecastEngine(
            lambda: config(by=["instance", "mountpoint"]),
            lambda url: ManySeries(series[1:2]), clock=ManualClock(wall_start=NOW))
        fastest_alone.run_due()
        assert result.forecasts[0].median == fastest_alone.results()[0].forecasts[0].median

    def test_over_the_limit_is_refused_and_counted(self, caplog: pytest.LogCaptureFixture
                                                  ) -> None:
        """More series than max_series: nothing published for it, the collector fails, the
        refusal is counted with its reason and logged with what to do."""
        source = ManySeries(mounts(3))
        clock = ManualClock(wall_start=NOW)
        engine = ForecastEngine(lambda: config(max_series=5), lambda url: source, clock=clock)
        engine.run_due()
        assert engine.healthy() and len(engine.results()[0].forecasts) == 3
        source.series = mounts(6)
        clock.advance(300)
        engine.run_due()
        assert not engine.healthy() and engine.results() == []
        text = exposition(engine)
        assert value(text, "monitoriza_forecast_refused_total",
                     {"forecast": "disk", "reason": "series_limit"}) == 1
        assert "monitoriza_time_to_failure_seconds{" not in text
        assert "6 series, over its max_series of 5" in caplog.text

    def test_hostile_source_labels_still_make_a_valid_exposition(self) -> None:
        """Source labels named like the exporter's own (service, estimate, forecast) are
        published as exported_*, and values with quotes, backslashes, newlines and braces
        are escaped: promtool accepts the exposition, and each series keeps its value."""
        hostile = 'a "b"} \\ c\nd'
        series = [({"service": "db", "estimate": "x", "forecast": "y", "path": hostile},
                   0.001), ({"service": "db", "path": "/plain"}, 0.0015)]
        engine = ForecastEngine(config, lambda url: ManySeries(series),
                                clock=ManualClock(wall_start=NOW))
        engine.run_due()
        text = exposition(engine)
        checked = subprocess.run([require_binary("promtool"), "check", "metrics"],
                                 input=text, capture_output=True, text=True, timeout=30,
                                 check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr + text
        found = value(text, "monitoriza_time_to_failure_seconds", {
            "forecast": "disk", "service": "host", "estimate": "median",
            "exported_service": "db", "exported_estimate": "x", "exported_forecast": "y",
            "path": hostile})
        assert found is not None and math.isfinite(found)

    def test_bad_by_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"forecasts\.disk\.by"):
            config(by=["__name__"])


def exposition(engine: ForecastEngine) -> str:
    return render(forecast_section(engine.results(), engine.refusals()))


class TestBacktestCommand:
    """``monitoriza forecast backtest`` replays a CSV, one forecast per step."""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitoriza.cli", "forecast", "backtest",
                               *args], capture_output=True, text=True, timeout=120,
                              check=False)

    def test_json_lines(self, tmp_path: Path) -> None:
        """A steady fill: every step has lower <= median <= upper, shrinking over time; no
        crossing follows within the history, and the last line says so."""
        csv = tmp_path / "disk.csv"
        rows = ["timestamp,value"] + [f"2026-11-24 {h:02d}:{m:02d}:00,{10 + 0.1 * (h * 60 + m)}"
                                      for h in range(12) for m in range(0, 60, 5)]
        csv.write_text("\n".join(rows) + "\n")
        result = self.run("--csv", str(csv), "--threshold", "100", "--direction", "above",
                          "--horizon", "24h", "--window", "2h", "--step", "1h", "--json")
        assert result.returncode == 0, result.stderr
        *lines, summary = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == 10  # 02:00 (two hours of history) to 11:00, hourly
        assert summary["coverage"]["crossings"] == 0
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

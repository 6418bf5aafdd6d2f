"""The forecast benchmark scores alarms and forecasts as documented, on small literal arrays.

``benchmarks/forecast_eval.py`` is a script, not a package module, so it is loaded from its
path. Nothing here needs ``../shared`` or ``monitoriza.forecast.model``: the smoke tests write
their own tiny data directory and replay it with stand-in methods.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "forecast_eval.py"
HOUR = 3600.0


def load_script() -> ModuleType:
    """The benchmark as a module (registered, so that its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location("forecast_eval", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["forecast_eval"] = module
    spec.loader.exec_module(module)
    return module


fe = load_script()


def array(*values: float) -> npt.NDArray[np.float64]:
    """A float64 array of ``values``."""
    return np.array(values, dtype=np.float64)


def mask(*values: int) -> npt.NDArray[np.bool_]:
    """A boolean array from 0/1 literals."""
    return np.array(values, dtype=bool)


class TestThresholdRule:
    """The NAB threshold is the 99th percentile of the whole series, NaN ignored."""

    def test_percentile(self) -> None:
        """On 0..100 the 99th percentile is 99, so one sample in a hundred and one reaches it."""
        assert fe.threshold_rule(np.arange(101, dtype=np.float64)) == pytest.approx(99.0)

    def test_ignores_gaps(self) -> None:
        """Missing samples do not move the threshold."""
        values = np.append(np.arange(101, dtype=np.float64), [np.nan, np.nan])
        assert fe.threshold_rule(values) == pytest.approx(99.0)


class TestGrid:
    """Histories are put on a regular grid: the last sample in each slot, NaN where none."""

    def test_snaps_and_fills_gaps(self) -> None:
        """A late sample snaps to its slot, a missing one leaves NaN, a duplicate keeps the last."""
        times = array(0, 300, 600, 610, 1210)
        times_grid, values = fe.on_grid(times, array(1, 2, 3, 4, 5), 300.0)
        np.testing.assert_array_equal(times_grid, array(0, 300, 600, 900, 1200))
        np.testing.assert_array_equal(values, array(1, 2, 4, np.nan, 5))

    def test_step_is_the_median_spacing(self) -> None:
        """One long gap does not change the step; repeated timestamps are ignored."""
        assert fe.grid_step(array(0, 300, 600, 600, 900, 4500, 4800)) == 300.0

    def test_evaluation_ends(self) -> None:
        """Ends leave a full window before and a full horizon after, every ``stride`` slots."""
        np.testing.assert_array_equal(fe.evaluation_ends(20, 4, 5, 3), [3, 6, 9, 12])

    def test_last_values(self) -> None:
        """The current value is the last one seen in the window; an empty window has none."""
        windows = np.array([[1, 2, 3], [1, 2, np.nan], [np.nan, np.nan, np.nan]])
        np.testing.assert_array_equal(fe.last_values(windows), array(3, 2, np.nan))


class TestCrossings:
    """A crossing is the first time in (t, t + H] with value >= threshold."""

    def test_first_crossing_within_horizon(self) -> None:
        """Only the future counts, the first hit wins, and one beyond the horizon is none."""
        times = np.arange(10, dtype=np.float64) * 10
        values = array(9, 1, 2, 5, 6, 1, 1, 1, 1, 5)
        crossing = fe.crossing_times(times, values, np.array([0, 1, 4, 5]), 3, 5.0)
        np.testing.assert_array_equal(crossing, array(30, 30, np.nan, np.nan))

    def test_gaps_never_cross(self) -> None:
        """A missing sample is not a crossing."""
        times = np.arange(4, dtype=np.float64)
        crossing = fe.crossing_times(times, array(0, np.nan, np.nan, 7), np.array([0]), 2, 5.0)
        assert math.isnan(crossing[0])

    def test_count_events(self) -> None:
        """Times that see the same crossing are one event."""
        assert fe.count_events(array(30, 30, np.nan, 90)) == 2


class TestAlarmScores:
    """Precision, recall and false alarms per day count alarms against positives."""

    alarm = mask(1, 1, 0, 1, 0, 0)
    positive = mask(1, 0, 1, 1, 0, 0)

    def test_precision(self) -> None:
        """Two of three alarms were followed by a crossing."""
        assert fe.precision(self.alarm, self.positive) == pytest.approx(2 / 3)

    def test_recall(self) -> None:
        """Two of three positive times raised an alarm."""
        assert fe.recall(self.alarm, self.positive) == pytest.approx(2 / 3)

    def test_false_alarms_per_day(self) -> None:
        """One false alarm in a quarter of a day evaluated is four a day."""
        assert fe.false_alarms_per_day(self.alarm, self.positive, 0.25) == pytest.approx(4.0)

    def test_undefined_without_alarms_or_positives(self) -> None:
        """No alarms: no precision; no positives: no recall."""
        none = mask(0, 0)
        assert math.isnan(fe.precision(none, mask(1, 0)))
        assert math.isnan(fe.recall(mask(1, 0), none))


class TestLeadTimes:
    """The lead of a detected crossing is measured from its earliest true alarm."""

    def test_earliest_true_alarm_per_event(self) -> None:
        """Event at 10 h first alarmed at 7 h; event at 20 h at 19 h; event at 30 h missed."""
        times = array(6, 7, 8, 9, 18, 19, 27, 28) * HOUR
        crossing = array(np.nan, 10, 10, 10, 20, 20, 30, 30) * HOUR
        alarm = mask(1, 1, 0, 1, 0, 1, 0, 0)
        assert fe.lead_times(times, alarm, crossing) == {10 * HOUR: 3 * HOUR,
                                                          20 * HOUR: 1 * HOUR}

    def test_no_detection(self) -> None:
        """Without a true alarm there is no lead time."""
        assert fe.lead_times(array(1, 2), mask(1, 0), array(np.nan, 5)) == {}


class TestMase:
    """MASE scales the forecast's error by the last value's error at the same points."""

    def test_scaled_error(self) -> None:
        """Errors 1 and 1 against the last value's 2 and 2 give 0.5."""
        assert fe.mase(array(3, 5), array(4, 6), array(2, 4)) == pytest.approx(0.5)

    def test_same_points_only(self) -> None:
        """A point whose value at t + H is missing is left out of both errors."""
        value = fe.mase(array(3, 5, 100), array(4, 6, np.nan), array(2, 4, 0))
        assert value == pytest.approx(0.5)

    def test_last_value_never_wrong(self) -> None:
        """A flat series cannot scale an error: undefined."""
        assert math.isnan(fe.mase(array(1, 2), array(1, 1), array(1, 1)))

    def test_geometric_mean(self) -> None:
        """Ratios average multiplicatively, undefined ones left out."""
        assert fe.geometric_mean([0.5, 2.0, math.nan, 0.0]) == pytest.approx(1.0)


class TestSummary:
    """Counts of several series pool into one data set's metrics and ratios."""

    def test_pool_and_summarise(self) -> None:
        """Counts add up, leads pool, days come from evaluated times times the step."""
        one = fe.Score(evaluated=24, alarms=3, true_alarms=2, positives=4, events=2,
                       leads={("a", 7200.0): 3600.0}, mases=(0.5,))
        two = fe.Score(evaluated=24, alarms=1, true_alarms=0, positives=0, events=0,
                       leads={}, mases=(2.0,))
        metrics = fe.summarise(fe.pool([one, two]), HOUR)
        assert metrics["days"] == pytest.approx(2.0)
        assert metrics["false_alarms_per_day"] == pytest.approx(1.0)
        assert metrics["precision"] == pytest.approx(0.5)
        assert metrics["recall"] == pytest.approx(0.5)
        assert metrics["events_detected"] == 1
        assert metrics["median_lead_s"] == 3600.0
        assert metrics["mase"] == pytest.approx(1.0)

    def test_undefined_metrics_are_none(self) -> None:
        """Nothing alarmed, nothing crossed: precision, recall, lead and MASE are None."""
        empty = fe.Score(evaluated=24, alarms=0, true_alarms=0, positives=0, events=0,
                         leads={}, mases=(math.nan,))
        metrics = fe.summarise(empty, HOUR)
        assert [metrics[key] for key in ("precision", "recall", "median_lead_s", "mase")] == [
            None, None, None, None]

    def test_paired_leads(self) -> None:
        """Leads are compared on the events both methods detected only."""
        ours = {("a", 1.0): 600.0, ("a", 2.0): 7200.0, ("b", 1.0): 3600.0}
        theirs = {("a", 2.0): 3600.0, ("b", 1.0): 3600.0, ("c", 1.0): 60.0}
        assert fe.paired_leads(ours, theirs) == {
            "paired_events": 2, "paired_median_lead_s": 5400.0,
            "paired_baseline_median_lead_s": 3600.0, "paired_median_lead_ratio": 1.5}
        assert fe.paired_leads(ours, {})["paired_median_lead_ratio"] is None

    def test_compare(self) -> None:
        """Half the false alarms with the same recall and a longer lead meets every target."""
        ours = {"false_alarms_per_day": 1.0, "recall": 0.5, "median_lead_s": 7200.0}
        theirs = {"false_alarms_per_day": 2.0, "recall": 0.5, "median_lead_s": 3600.0}
        result = fe.compare({"monitoriza": ours, "predict_linear": theirs})
        assert result == {"false_alarms_per_day_ratio": 0.5, "median_lead_ratio": 2.0,
                          "target_false_alarms_met": True, "target_recall_met": True,
                          "target_lead_met": True}

    def test_compare_misses(self) -> None:
        """More false alarms, a lower recall and no detection at all miss the targets."""
        ours = {"false_alarms_per_day": 3.0, "recall": 0.25, "median_lead_s": None}
        theirs = {"false_alarms_per_day": 2.0, "recall": 0.5, "median_lead_s": 3600.0}
        result = fe.compare({"monitoriza": ours, "predict_linear": theirs})
        assert result["false_alarms_per_day_ratio"] == 1.5
        assert result["median_lead_ratio"] is None
        assert not result["target_false_alarms_met"]
        assert not result["target_recall_met"]
        assert result["target_lead_met"] is None


class TestSynthetic:
    """The synthetic disk-fill set is reproducible and has the promised shapes."""

    def test_shapes(self) -> None:
        """Rotation never reaches 90 %, every leak does, and the same seed gives the same data."""
        series = {s.name: s for s in fe.synthetic_set()}
        assert sorted(series) == sorted(f"{kind}-{k}" for kind in ("bursty", "leak", "rotation")
                                        for k in (1, 2, 3))
        for name, one in series.items():
            assert one.threshold == 90.0
            assert np.all(np.diff(one.times) == 300.0)
            if name.startswith("rotation"):
                assert one.values.max() < 90.0
            if name.startswith("leak"):
                assert one.values.max() >= 90.0
        again = {s.name: s for s in fe.synthetic_set()}
        np.testing.assert_array_equal(again["bursty-2"].values, series["bursty-2"].values)

    def test_rotation_every_midnight(self) -> None:
        """Usage drops sharply once a day, at 00:00 UTC."""
        rotation = next(s for s in fe.synthetic_set() if s.name == "rotation-1")
        drops = np.flatnonzero(np.diff(rotation.values) < -10) + 1
        assert drops.size == fe.SYNTHETIC_DAYS - 1
        assert np.all(rotation.times[drops] % 86400 == 0)


def trend_method(windows: Any) -> Any:
    """Stand-in forecaster: the slope between the first and last values of the window."""
    values, offsets, horizon = windows.values, windows.offsets, windows.horizon
    current = fe.last_values(values)
    slope = (current - values[:, 0]) / (offsets[-1] - offsets[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        ttf = np.where(slope > 0, (windows.threshold - current) / slope, np.inf)
    ttf = np.where(ttf <= horizon, ttf, np.inf)
    return fe.Prediction(ttf <= horizon, current + slope * horizon, ttf * 0.5, ttf, ttf * 2)


STAND_INS = {"monitoriza": trend_method, "predict_linear": trend_method}


def write_csvs(folder: Path) -> None:
    """Two days at 5 min: a daily ramp that crosses its top percentile, and a noisy flat line."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    start = 1_399_939_200  # 2014-05-13T00:00:00Z
    for name, rate in (("ramp", 4.0), ("flat", 0.0)):  # per hour, from every midnight
        lines = ["timestamp,value"]
        for k in range(48 * 12):
            stamp = datetime.fromtimestamp(start + 300 * k, UTC).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{stamp},{rate * (k / 12 % 24) + rng.normal(0, 1):.3f}")
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")


class TestForecasterMethod:
    """A forecaster gets the windows that share a time of day in one call, at that time."""

    def test_grouped_by_time_of_day(self) -> None:
        """Two windows ending at 01:00 on different days share a call; 02:00 gets its own."""
        calls: list[tuple[float, int, float]] = []

        def forecaster(times: Any, values: Any, *, threshold: float, direction: str,
                       horizon: float, now: float | None = None) -> Any:
            assert direction == "above"
            assert now is not None
            calls.append((now, values.shape[0], float(times[-1])))
            median = values[:, -1] * 1000.0  # seconds to failure, to tell the rows apart
            return fe.Prediction(median <= horizon, values[:, -1], median, median, median)

        nows = array(86400 + 3600, 2 * 86400 + 3600, 86400 + 7200)
        windows = fe.Windows(array(-600, -300, 0), np.array([[0, 0, 1], [0, 0, 2], [0, 0, 3]],
                                                              dtype=np.float64),
                             10.0, 2500.0, nows)
        prediction = fe.forecaster_method(forecaster)(windows)
        assert sorted(calls) == [(3600.0, 2, 3600.0), (7200.0, 1, 7200.0)]
        np.testing.assert_array_equal(prediction.median, array(1000, 2000, 3000))
        np.testing.assert_array_equal(prediction.alarm, mask(1, 1, 0))


class TestHarness:
    """The harness replays a data directory end to end with any methods."""

    def test_run(self, tmp_path: Path) -> None:
        """Both data sets are replayed; the ramp's crossings are found by the trend method."""
        write_csvs(tmp_path / "realAWSCloudwatch")
        methods = {**STAND_INS, "naive": fe.naive_method}
        results = fe.run(tmp_path, window=6 * HOUR, horizon=4 * HOUR, every=HOUR,
                         methods=methods)
        nab = results["nab"]
        assert nab.series == 2
        assert [run.series.name for run in nab.runs] == ["flat", "ramp"]
        trend = nab.metrics["monitoriza"]
        assert trend["evaluated"] > 0
        assert trend["events"] >= 1
        assert trend["events_detected"] >= 1
        assert nab.metrics["naive"]["mase"] == pytest.approx(1.0)
        assert nab.comparison["false_alarms_per_day_ratio"] == pytest.approx(1.0)
        for run in nab.runs:
            assert np.all(run.current < run.series.threshold)
        assert results["synthetic"].series == 9
        text = fe.table("nab", nab)
        assert "monitoriza / predict_linear" in text
        assert "predict_linear" in text

    def test_main_json_and_plot(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
        """The command line prints one JSON object and writes the PNG."""
        write_csvs(tmp_path / "realAWSCloudwatch")
        monkeypatch.setattr(fe, "default_methods", lambda: dict(STAND_INS))
        png = tmp_path / "out" / "forecasting.png"
        fe.main(["--data", str(tmp_path), "--horizon", "4h", "--window", "6h", "--json",
                 "--plot", str(png)])
        report = json.loads(capsys.readouterr().out)
        assert set(report["datasets"]) == {"nab", "synthetic"}
        assert report["horizon_s"] == 4 * HOUR
        assert set(report["datasets"]["nab"]["metrics"]) == {"monitoriza", "predict_linear"}
        assert png.read_bytes().startswith(b"\x89PNG")


class TestCrossingProbability:
    """The noise-aware first-passage rule of ``--frontier``: noise that already reaches
    near the threshold makes a crossing likely; a quiet series far below never crosses."""

    offsets = 300.0 * np.arange(-72, 1, dtype=np.float64)

    def test_noisy_series_near_the_threshold(self) -> None:
        """A flat series whose spikes (one sample in ten) reach the threshold: crossing
        within 4 h is near certain, and less likely within the first step than by the end."""
        values = np.full((1, self.offsets.size), 50.0)
        values[0, ::10] = 95.0
        crossed = fe.crossing_probability(self.offsets, values, 90.0, 4 * HOUR)
        assert crossed.shape == (1, 48)
        assert crossed[0, -1] > 0.99
        assert crossed[0, 0] < crossed[0, -1]
        assert np.all(np.diff(crossed[0]) >= 0)

    def test_quiet_series_far_below(self) -> None:
        """Noise of ±1 around 50 never reaches 90: probability 0 at every step."""
        rng = np.random.default_rng(1)
        values = 50.0 + rng.uniform(-1.0, 1.0, (1, self.offsets.size))
        crossed = fe.crossing_probability(self.offsets, values, 90.0, 4 * HOUR)
        assert np.all(crossed == 0.0)

    def test_rising_trend_crosses(self) -> None:
        """A line rising 10 per hour from 60 now reaches 90 in 3 h: certain by then, not
        before 2.5 h (the residuals are tiny)."""
        rng = np.random.default_rng(2)
        values = 60.0 + 10.0 * self.offsets / HOUR + rng.normal(0.0, 0.1, self.offsets.size)
        method = fe.first_passage_method(0.9)
        windows = fe.Windows(self.offsets, values[None, :], 90.0, 4 * HOUR, array(0.0))
        prediction = method(windows)
        assert bool(prediction.alarm[0])
        assert 2.5 * HOUR <= prediction.median[0] <= 3.1 * HOUR

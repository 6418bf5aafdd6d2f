"""The forecast evaluation scores alarms and forecasts as documented, on small literal arrays.

The replay, methods and scores are package modules (``monitoriza.forecast.evaluate``,
``frontier``, ``datasets``); ``benchmarks/forecast_eval.py`` only prints, plots and times them,
and is run here as the command it is. Nothing here needs ``../shared``: the smoke tests write
their own tiny data directory.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from monitoriza.forecast import datasets, evaluate, frontier

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "forecast_eval.py"
HOUR = 3600.0


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
        assert frontier.threshold_rule(np.arange(101, dtype=np.float64)) == pytest.approx(99.0)

    def test_ignores_gaps(self) -> None:
        """Missing samples do not move the threshold."""
        values = np.append(np.arange(101, dtype=np.float64), [np.nan, np.nan])
        assert frontier.threshold_rule(values) == pytest.approx(99.0)


class TestGrid:
    """Histories are put on a regular grid: the last sample in each slot, NaN where none."""

    def test_snaps_and_fills_gaps(self) -> None:
        """A late sample snaps to its slot, a missing one leaves NaN, a duplicate keeps the last."""
        times = array(0, 300, 600, 610, 1210)
        times_grid, values = frontier.on_grid(times, array(1, 2, 3, 4, 5), 300.0)
        np.testing.assert_array_equal(times_grid, array(0, 300, 600, 900, 1200))
        np.testing.assert_array_equal(values, array(1, 2, 4, np.nan, 5))

    def test_step_is_the_median_spacing(self) -> None:
        """One long gap does not change the step; repeated timestamps are ignored."""
        assert frontier.grid_step(array(0, 300, 600, 600, 900, 4500, 4800)) == 300.0

    def test_evaluation_ends(self) -> None:
        """Ends leave a full window before and a full horizon after, every ``stride`` slots."""
        np.testing.assert_array_equal(frontier.evaluation_ends(20, 4, 5, 3), [3, 6, 9, 12])

    def test_last_values(self) -> None:
        """The current value is the last one seen in the window; an empty window has none."""
        windows = np.array([[1, 2, 3], [1, 2, np.nan], [np.nan, np.nan, np.nan]])
        np.testing.assert_array_equal(frontier.last_values(windows), array(3, 2, np.nan))


class TestCrossings:
    """A crossing is the first time in (t, t + H] with value >= threshold."""

    def test_first_crossing_within_horizon(self) -> None:
        """Only the future counts, the first hit wins, and one beyond the horizon is none."""
        times = np.arange(10, dtype=np.float64) * 10
        values = array(9, 1, 2, 5, 6, 1, 1, 1, 1, 5)
        crossing = frontier.crossing_times(times, values, np.array([0, 1, 4, 5]), 3, 5.0)
        np.testing.assert_array_equal(crossing, array(30, 30, np.nan, np.nan))

    def test_gaps_never_cross(self) -> None:
        """A missing sample is not a crossing."""
        times = np.arange(4, dtype=np.float64)
        crossing = frontier.crossing_times(times, array(0, np.nan, np.nan, 7), np.array([0]), 2,
                                           5.0)
        assert math.isnan(crossing[0])

    def test_count_events(self) -> None:
        """Times that see the same crossing are one event."""
        assert frontier.count_events(array(30, 30, np.nan, 90)) == 2


class TestAlarmScores:
    """Precision, recall and false alarms per day count alarms against positives."""

    alarm = mask(1, 1, 0, 1, 0, 0)
    positive = mask(1, 0, 1, 1, 0, 0)

    def test_precision(self) -> None:
        """Two of three alarms were followed by a crossing."""
        assert frontier.precision(self.alarm, self.positive) == pytest.approx(2 / 3)

    def test_recall(self) -> None:
        """Two of three positive times raised an alarm."""
        assert frontier.recall(self.alarm, self.positive) == pytest.approx(2 / 3)

    def test_false_alarms_per_day(self) -> None:
        """One false alarm in a quarter of a day evaluated is four a day."""
        assert frontier.false_alarms_per_day(self.alarm, self.positive, 0.25) == pytest.approx(4.0)

    def test_undefined_without_alarms_or_positives(self) -> None:
        """No alarms: no precision; no positives: no recall."""
        none = mask(0, 0)
        assert math.isnan(frontier.precision(none, mask(1, 0)))
        assert math.isnan(frontier.recall(mask(1, 0), none))


class TestLeadTimes:
    """The lead of a detected crossing is measured from its earliest true alarm."""

    def test_earliest_true_alarm_per_event(self) -> None:
        """Event at 10 h first alarmed at 7 h; event at 20 h at 19 h; event at 30 h missed."""
        times = array(6, 7, 8, 9, 18, 19, 27, 28) * HOUR
        crossing = array(np.nan, 10, 10, 10, 20, 20, 30, 30) * HOUR
        alarm = mask(1, 1, 0, 1, 0, 1, 0, 0)
        assert frontier.lead_times(times, alarm, crossing) == {10 * HOUR: 3 * HOUR,
                                                          20 * HOUR: 1 * HOUR}

    def test_no_detection(self) -> None:
        """Without a true alarm there is no lead time."""
        assert frontier.lead_times(array(1, 2), mask(1, 0), array(np.nan, 5)) == {}


class TestMase:
    """MASE scales the forecast's error by the last value's error at the same points."""

    def test_scaled_error(self) -> None:
        """Errors 1 and 1 against the last value's 2 and 2 give 0.5."""
        assert frontier.mase(array(3, 5), array(4, 6), array(2, 4)) == pytest.approx(0.5)

    def test_same_points_only(self) -> None:
        """A point whose value at t + H is missing is left out of both errors."""
        value = frontier.mase(array(3, 5, 100), array(4, 6, np.nan), array(2, 4, 0))
        assert value == pytest.approx(0.5)

    def test_last_value_never_wrong(self) -> None:
        """A flat series cannot scale an error: undefined."""
        assert math.isnan(frontier.mase(array(1, 2), array(1, 1), array(1, 1)))

    def test_geometric_mean(self) -> None:
        """Ratios average multiplicatively, undefined ones left out."""
        assert frontier.geometric_mean([0.5, 2.0, math.nan, 0.0]) == pytest.approx(1.0)


class TestSummary:
    """Counts of several series pool into one data set's metrics and ratios."""

    def test_pool_and_summarise(self) -> None:
        """Counts add up, leads pool, days come from evaluated times times the step."""
        one = frontier.Score(evaluated=24, alarms=3, true_alarms=2, positives=4, events=2,
                       leads={("a", 7200.0): 3600.0}, mases=(0.5,))
        two = frontier.Score(evaluated=24, alarms=1, true_alarms=0, positives=0, events=0,
                       leads={}, mases=(2.0,))
        metrics = frontier.summarise(frontier.pool([one, two]), HOUR)
        assert metrics["days"] == pytest.approx(2.0)
        assert metrics["false_alarms_per_day"] == pytest.approx(1.0)
        assert metrics["precision"] == pytest.approx(0.5)
        assert metrics["recall"] == pytest.approx(0.5)
        assert metrics["events_detected"] == 1
        assert metrics["median_lead_s"] == 3600.0
        assert metrics["mase"] == pytest.approx(1.0)

    def test_undefined_metrics_are_none(self) -> None:
        """Nothing alarmed, nothing crossed: precision, recall, lead and MASE are None."""
        empty = frontier.Score(evaluated=24, alarms=0, true_alarms=0, positives=0, events=0,
                         leads={}, mases=(math.nan,))
        metrics = frontier.summarise(empty, HOUR)
        assert [metrics[key] for key in ("precision", "recall", "median_lead_s", "mase")] == [
            None, None, None, None]

    def test_paired_leads(self) -> None:
        """Leads are compared on the events both methods detected only."""
        ours = {("a", 1.0): 600.0, ("a", 2.0): 7200.0, ("b", 1.0): 3600.0}
        theirs = {("a", 2.0): 3600.0, ("b", 1.0): 3600.0, ("c", 1.0): 60.0}
        assert frontier.paired_leads(ours, theirs) == {
            "paired_events": 2, "paired_median_lead_s": 5400.0,
            "paired_baseline_median_lead_s": 3600.0, "paired_median_lead_ratio": 1.5}
        assert frontier.paired_leads(ours, {})["paired_median_lead_ratio"] is None

    def test_compare(self) -> None:
        """Half the false alarms with the same recall and a longer lead meets every target."""
        ours: frontier.Metrics = {"false_alarms_per_day": 1.0, "recall": 0.5,
                                  "median_lead_s": 7200.0}
        theirs: frontier.Metrics = {"false_alarms_per_day": 2.0, "recall": 0.5,
                                    "median_lead_s": 3600.0}
        result = frontier.compare({"monitoriza": ours, "predict_linear": theirs})
        assert result == {"false_alarms_per_day_ratio": 0.5, "median_lead_ratio": 2.0,
                          "target_false_alarms_met": True, "target_recall_met": True,
                          "target_lead_met": True}

    def test_compare_misses(self) -> None:
        """More false alarms, a lower recall and no detection at all miss the targets."""
        ours: frontier.Metrics = {"false_alarms_per_day": 3.0, "recall": 0.25,
                                  "median_lead_s": None}
        theirs: frontier.Metrics = {"false_alarms_per_day": 2.0, "recall": 0.5,
                                    "median_lead_s": 3600.0}
        result = frontier.compare({"monitoriza": ours, "predict_linear": theirs})
        assert result["false_alarms_per_day_ratio"] == 1.5
        assert result["median_lead_ratio"] is None
        assert not result["target_false_alarms_met"]
        assert not result["target_recall_met"]
        assert result["target_lead_met"] is None


class TestSynthetic:
    """The synthetic disk-fill set is reproducible and has the promised shapes."""

    def test_shapes(self) -> None:
        """Rotation never reaches 90 %, every leak does, and the same seed gives the same data."""
        series = {s.name: s for s in datasets.synthetic_set()}
        assert sorted(series) == sorted(f"{kind}-{k}" for kind in ("bursty", "leak", "rotation")
                                        for k in (1, 2, 3))
        for name, one in series.items():
            assert one.threshold == 90.0
            assert np.all(np.diff(one.times) == 300.0)
            if name.startswith("rotation"):
                assert one.values.max() < 90.0
            if name.startswith("leak"):
                assert one.values.max() >= 90.0
        again = {s.name: s for s in datasets.synthetic_set()}
        np.testing.assert_array_equal(again["bursty-2"].values, series["bursty-2"].values)

    def test_rotation_every_midnight(self) -> None:
        """Usage drops sharply once a day, at 00:00 UTC."""
        rotation = next(s for s in datasets.synthetic_set() if s.name == "rotation-1")
        drops = np.flatnonzero(np.diff(rotation.values) < -10) + 1
        assert drops.size == datasets.SYNTHETIC_DAYS - 1
        assert np.all(rotation.times[drops] % 86400 == 0)


def trend_method(windows: Any) -> Any:
    """Stand-in forecaster: the slope between the first and last values of the window."""
    values, offsets, horizon = windows.values, windows.offsets, windows.horizon
    current = frontier.last_values(values)
    slope = (current - values[:, 0]) / (offsets[-1] - offsets[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        ttf = np.where(slope > 0, (windows.threshold - current) / slope, np.inf)
    ttf = np.where(ttf <= horizon, ttf, np.inf)
    return evaluate.Prediction(ttf <= horizon, current + slope * horizon, ttf * 0.5, ttf, ttf * 2)


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
            return evaluate.Prediction(median <= horizon, values[:, -1], median, median, median)

        nows = array(86400 + 3600, 2 * 86400 + 3600, 86400 + 7200)
        windows = evaluate.Windows(array(-600, -300, 0), np.array([[0, 0, 1], [0, 0, 2], [0, 0, 3]],
                                                              dtype=np.float64),
                             10.0, 2500.0, nows)
        prediction = evaluate.forecaster_method(forecaster)(windows)
        assert sorted(calls) == [(3600.0, 2, 3600.0), (7200.0, 1, 7200.0)]
        np.testing.assert_array_equal(prediction.median, array(1000, 2000, 3000))
        np.testing.assert_array_equal(prediction.alarm, mask(1, 1, 0))


class TestHarness:
    """The replay runs a data directory end to end with any methods."""

    def test_evaluate_nab_folder(self, tmp_path: Path) -> None:
        """The ramp's crossings are found by the trend method; nothing is evaluated at or
        above the threshold."""
        write_csvs(tmp_path / datasets.NAB_FOLDER)
        methods = {**STAND_INS, "naive": evaluate.naive_method}
        nab = evaluate.evaluate(datasets.load_nab(tmp_path / datasets.NAB_FOLDER), methods,
                                window=6 * HOUR, horizon=4 * HOUR, every=HOUR)
        assert nab.series == 2
        assert [run.series.name for run in nab.runs] == ["flat", "ramp"]
        trend = nab.metrics["monitoriza"]
        assert (trend["evaluated"] or 0) > 0
        assert (trend["events"] or 0) >= 1
        assert (trend["events_detected"] or 0) >= 1
        assert nab.metrics["naive"]["mase"] == pytest.approx(1.0)
        assert nab.comparison is not None
        assert nab.comparison["false_alarms_per_day_ratio"] == pytest.approx(1.0)
        for run in nab.runs:
            assert np.all(run.current < run.series.threshold)

    def test_the_script_prints_json_and_plots(self, tmp_path: Path) -> None:
        """The benchmark command replays both data sets with the real model, prints one JSON
        object with the frontier of each estimate, and writes the PNG."""
        write_csvs(tmp_path / datasets.NAB_FOLDER)
        png = tmp_path / "out" / "forecasting.png"
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--data", str(tmp_path), "--horizon", "4h",
             "--window", "6h", "--json", "--plot", str(png), "--frontier"],
            check=False, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert set(report["datasets"]) == {"nab", "synthetic"}
        assert report["horizon_s"] == 4 * HOUR
        assert report["datasets"]["synthetic"]["series"] == 9
        assert {"monitoriza", "predict_linear", "naive", "lower q=0.6"} <= set(
            report["datasets"]["nab"]["metrics"])
        assert set(report["frontier"]["synthetic"]) == {"lower", "median", "upper"}
        median = report["frontier"]["synthetic"]["median"]
        assert median["ours"]["detected"] >= 1
        assert median["baseline"]["false_alarms_per_day"] <= (
            median["ours"]["false_alarms_per_day"] + 1e-9)
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
        crossed = evaluate.crossing_probability(self.offsets, values, 90.0, 4 * HOUR)
        assert crossed.shape == (1, 48)
        assert crossed[0, -1] > 0.99
        assert crossed[0, 0] < crossed[0, -1]
        assert np.all(np.diff(crossed[0]) >= 0)

    def test_quiet_series_far_below(self) -> None:
        """Noise of ±1 around 50 never reaches 90: probability 0 at every step."""
        rng = np.random.default_rng(1)
        values = 50.0 + rng.uniform(-1.0, 1.0, (1, self.offsets.size))
        crossed = evaluate.crossing_probability(self.offsets, values, 90.0, 4 * HOUR)
        assert np.all(crossed == 0.0)

    def test_rising_trend_crosses(self) -> None:
        """A line rising 10 per hour from 60 now reaches 90 in 3 h: certain by then, not
        before 2.5 h (the residuals are tiny)."""
        rng = np.random.default_rng(2)
        values = 60.0 + 10.0 * self.offsets / HOUR + rng.normal(0.0, 0.1, self.offsets.size)
        method = evaluate.first_passage_method(0.9)
        windows = evaluate.Windows(self.offsets, values[None, :], 90.0, 4 * HOUR, array(0.0))
        prediction = method(windows)
        assert bool(prediction.alarm[0])
        assert 2.5 * HOUR <= prediction.median[0] <= 3.1 * HOUR


class TestFrontier:
    """Estimates compared at equal false alarms per day, and the recommended estimate."""

    # One day of hourly evaluations; the series crosses at hours 5 and 20 (events), and the
    # times within 2 h before each are positive.
    times = HOUR * np.arange(24, dtype=np.float64)
    crossing = np.where((times >= 3 * HOUR) & (times < 5 * HOUR), 5 * HOUR,
                        np.where((times >= 18 * HOUR) & (times < 20 * HOUR), 20 * HOUR, np.nan))

    def replayed(self, estimate: npt.NDArray[np.float64]) -> frontier.Replayed:
        return frontier.Replayed("s", self.times, self.crossing, estimate)

    def test_operating_point_counts_false_alarms_and_events(self) -> None:
        """An estimate of 1 h at hours 3, 10 and 19: two events detected, one false alarm a
        day; at a cutoff under 1 h nothing alarms."""
        estimate = np.full(24, np.inf)
        estimate[[3, 10, 19]] = HOUR
        point = frontier.operating_point([self.replayed(estimate)], 2 * HOUR, HOUR)
        assert point.false_alarms_per_day == pytest.approx(1.0)
        assert point.detected == 2
        assert point.leads == {("s", 5 * HOUR): 2 * HOUR, ("s", 20 * HOUR): HOUR}
        assert frontier.operating_point([self.replayed(estimate)], 0.5 * HOUR, HOUR).detected == 0

    def test_baseline_matched_at_no_more_false_alarms(self) -> None:
        """The baseline's best point at or under our false-alarm rate; none that quiet: no
        alarms at all."""
        curve = [frontier.CurvePoint(1.0, 0.5, 1, {}), frontier.CurvePoint(2.0, 1.0, 3, {}),
                 frontier.CurvePoint(3.0, 2.0, 4, {})]
        assert frontier.at_equal_false_alarms(curve, 1.5).detected == 3
        assert frontier.at_equal_false_alarms(curve, 2.0).detected == 4
        assert frontier.at_equal_false_alarms(curve, 0.2) == frontier.NO_ALARMS

    def test_matchup_ratio_and_paired_leads(self) -> None:
        """Twice the baseline's detections; on the one event both detect, twice its lead."""
        ours = frontier.CurvePoint(4.0, 1.0, 2, {("s", 1.0): 7200.0, ("s", 2.0): 600.0})
        theirs = [frontier.CurvePoint(4.0, 1.0, 1, {("s", 1.0): 3600.0})]
        result = frontier.matchup(ours, theirs)
        assert result.detection_ratio == pytest.approx(2.0)
        assert result.paired["paired_events"] == 1
        assert result.paired["paired_median_lead_ratio"] == pytest.approx(2.0)

    def test_recommend_the_most_detections_within_the_target(self) -> None:
        """lower detects most but is too noisy; median and upper tie on detections, upper is
        quieter; with a target no estimate meets, none."""
        points = {"lower": frontier.CurvePoint(4.0, 3.0, 9, {}),
                  "median": frontier.CurvePoint(4.0, 0.8, 5, {}),
                  "upper": frontier.CurvePoint(4.0, 0.4, 5, {})}
        assert frontier.recommend(points, 1.0) == "upper"
        assert frontier.recommend(points, 3.0) == "lower"
        assert frontier.recommend(points, 0.1) is None

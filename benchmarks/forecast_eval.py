"""Time-to-failure alarms replayed on real and synthetic histories, against two baselines.

Every simulated hour, each method sees the same past window of a series and says whether it
will cross its failure threshold within the horizon H. The alarms are then scored against
what the series really did next.

Data sets
  * ``nab``: every CSV in ``DIR/realAWSCloudwatch`` (NAB real AWS CloudWatch metrics).
    Threshold rule: the 99th percentile of the whole series, direction "above". NAB has no
    capacity limits, so a line has to be chosen; the 99th percentile is one that every series
    really reaches (at least 1 % of its samples, about 40 of 4,032) — so there are crossings
    to forecast — but rarely, so an alarm is not right by luck. It is fixed once, from the
    whole series, before any replay, the way an operator sets an alert line; the methods only
    ever see it as the line to forecast against, never as data.
  * ``synthetic``: disk usage in % generated here with a fixed seed, threshold 90 % (a usual
    "disk almost full" line), three shapes, three replicas each, 14 days at 5 min:
    ``rotation`` — logs fill the disk (four times faster 08:00-20:00) and are rotated away
    every midnight, peaks always below 90 %, so every alarm is false; ``leak`` — the same
    sawtooth, but the floor after each rotation rises, so the peaks cross 90 % after a few
    days; ``bursty`` — noisy flat usage with bursts that a cron clean-up or GC removes.

Replay
  Each history is put on a regular grid at its median sample spacing (the last sample in
  each slot, NaN where there is none), as ``monitoriza forecast backtest`` does. Evaluation
  times t run every ``--every`` (1 h) from the first moment with a full window to the last
  with a full horizon after it. The window is the grid in [t - W, t] (W = ``--window``),
  given to every method with all windows of a series at once (the model gets, in one call,
  the windows that end at the same time of day, with their true time of day). The current
  value is the last sample in the window. Times where it is already at or above the
  threshold, or the window is empty, are not evaluated: those are not forecasts.

Alarms
  * ``monitoriza``: ``time_to_failure`` median ≤ H. The median is the like-for-like choice
    against predict_linear's single estimate (same decision rule, better estimate); alarming
    on the lower bound is a deliberately earlier, noisier warning.
  * ``predict_linear``: ``ols_time_to_failure`` (OLS over the window, what PromQL's
    ``predict_linear`` does) median ≤ H.
  * ``naive``: the current value ≥ 0.9 x threshold — the static "90 % of the limit" warning
    that ignores the trend (for thresholds > 0, as on every series here).

Scores (pure functions of arrays, below; per data set the counts of all its series pooled)
  A time t is positive when the series crosses within (t, t + H]: the first grid time there
  with value ≥ threshold is its crossing time. Precision = true alarms / alarms. Recall =
  true alarms / positives. False alarms per day = false alarms / (evaluated times x 1 h /
  1 day). Lead time: for each crossing event (a distinct crossing time), crossing time -
  the earliest evaluation time that raised a true alarm for it; the median over the events
  detected (and, since a method that also catches the late, hard events lowers its own
  median, the median of both methods on the events both detected). MASE: per series, the
  mean absolute error of the method's ``point`` (its forecast of the value at t + H) over
  the mean absolute error of the last value at the same points (those where the value at
  t + H is known); per data set the geometric mean over series (scale ratios average
  multiplicatively; a series whose last value is never wrong is left out). Targets
  (reported, not asserted): monitoriza has at most half the false alarms per day of
  predict_linear, and a recall and a median lead time at least as good.

Usage: python benchmarks/forecast_eval.py [--data DIR] [--horizon 4h] [--window 6h] [--json]
                                          [--plot docs/forecasting.png] [--frontier]

``--frontier`` adds other alarm rules, to measure the trade-off: Monitoriza alarming on its
lower estimate at interval quantiles 0.6, 0.7, 0.9, and a noise-aware first-passage rule
(``crossing_probability``) at probabilities 0.9, 0.995, 0.998.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

from monitoriza.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

DAY = 86400.0
HOUR = 3600.0
THRESHOLD_PERCENTILE = 99.0
NAIVE_FRACTION = 0.9
SYNTHETIC_THRESHOLD = 90.0
SYNTHETIC_SEED = 20241124
SYNTHETIC_START = 1_704_067_200.0  # 2024-01-01T00:00:00Z, a midnight: rotations at 00:00
SYNTHETIC_DAYS = 14
SYNTHETIC_STEP = 300.0
SYNTHETIC_REPLICAS = 3
NAB_FOLDER = "realAWSCloudwatch"
FA_RATIO_TARGET = 0.5
PLOT_NAB_SERIES = "ec2_cpu_utilization_ac20cd"  # ramps from ~34 % to the 99 % ceiling


# --------------------------------------------------------------------------- data and types


@dataclass(frozen=True)
class Series:
    """One history on a regular grid (NaN where no sample) and its failure threshold."""

    name: str
    times: FloatArray
    values: FloatArray
    threshold: float


@dataclass(frozen=True)
class Windows:
    """The past windows given to a method: row k ends at evaluation time k (now = 0)."""

    offsets: FloatArray  # (T,) seconds relative to now, the last one 0
    values: FloatArray  # (N, T)
    threshold: float
    horizon: float
    nows: FloatArray  # (N,) the evaluation times, unix seconds


@dataclass(frozen=True)
class Prediction:
    """What a method says for each window: an alarm, its forecasts, its time to failure."""

    alarm: BoolArray
    point: FloatArray  # the value forecast at now + horizon
    lower: FloatArray  # seconds to failure, inf when none within the horizon
    median: FloatArray
    upper: FloatArray


Method = Callable[[Windows], Prediction]


class ForecastLike(Protocol):
    """The fields of ``monitoriza.forecast.model.Forecast`` this harness reads."""

    @property
    def lower(self) -> FloatArray: ...
    @property
    def median(self) -> FloatArray: ...
    @property
    def upper(self) -> FloatArray: ...
    @property
    def point(self) -> FloatArray: ...


class Forecaster(Protocol):
    """``time_to_failure`` and ``ols_time_to_failure``."""

    def __call__(self, times: FloatArray, values: FloatArray, *, threshold: float,
                 direction: Literal["above", "below"], horizon: float,
                 now: float | None = None) -> ForecastLike: ...


@dataclass(frozen=True)
class SeriesRun:
    """One series replayed: the evaluated times, the truth there, every method's prediction."""

    series: Series
    eval_times: FloatArray
    current: FloatArray
    crossing: FloatArray  # first crossing time in (t, t + H], NaN when none
    actual: FloatArray  # the value at t + H (NaN when missing)
    predictions: Mapping[str, Prediction]


Metrics = dict[str, float | int | None]


@dataclass(frozen=True)
class DatasetResult:
    """A replayed data set: every method's metrics, the comparison, the runs for the plot."""

    series: int
    metrics: dict[str, Metrics]
    comparison: dict[str, float | bool | None] | None
    runs: list[SeriesRun]
    kinds: dict[str, dict[str, Metrics]]  # the same per kind of series (synthetic set only)

    def public(self) -> dict[str, object]:
        """Everything but the replayed arrays, for JSON."""
        return {"series": self.series, "metrics": self.metrics, "comparison": self.comparison,
                "kinds": self.kinds}


@dataclass(frozen=True)
class Score:
    """One method's counts on one or more series, enough to pool and summarise."""

    evaluated: int
    alarms: int
    true_alarms: int
    positives: int
    events: int
    leads: Mapping[tuple[str, float], float]  # (series, crossing time) -> lead, detected only
    mases: tuple[float, ...]


# --------------------------------------------------------------------------- pure core


def threshold_rule(values: FloatArray) -> float:
    """The failure threshold of a NAB series: the 99th percentile of all its values."""
    return float(np.nanpercentile(values, THRESHOLD_PERCENTILE))


def on_grid(times: FloatArray, values: FloatArray,
            step: float) -> tuple[FloatArray, FloatArray]:
    """The samples on a regular grid of ``step`` seconds (the last in each slot, else NaN)."""
    slots = np.round((times - times[0]) / step).astype(np.int64)
    grid = np.full(int(slots[-1]) + 1, np.nan)
    grid[slots] = values
    return times[0] + step * np.arange(grid.size, dtype=np.float64), grid


def grid_step(times: FloatArray) -> float:
    """The median spacing of the samples (5 min for NAB)."""
    diffs = np.diff(times)
    return float(np.median(diffs[diffs > 0]))


def evaluation_ends(size: int, width: int, ahead: int, stride: int) -> IntArray:
    """Grid indices of the evaluation times: a full window before, a full horizon after."""
    return np.arange(width - 1, size - ahead, stride, dtype=np.int64)


def last_values(windows: FloatArray) -> FloatArray:
    """The last non-NaN value of each row (NaN for an empty row)."""
    seen = ~np.isnan(windows)
    last = windows.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)
    picked = windows[np.arange(windows.shape[0]), last]
    return np.where(seen.any(axis=1), picked, np.nan)


def crossing_times(times: FloatArray, values: FloatArray, ends: IntArray, ahead: int,
                   threshold: float) -> FloatArray:
    """For each end index, the first time in (t, t + ahead steps] with value ≥ threshold."""
    future = np.lib.stride_tricks.sliding_window_view(values[1:], ahead)[ends]
    hit = future >= threshold
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), times[ends + 1 + first], np.nan)


def precision(alarm: BoolArray, positive: BoolArray) -> float:
    """True alarms / alarms (NaN without alarms)."""
    alarms = int(alarm.sum())
    return int((alarm & positive).sum()) / alarms if alarms else math.nan


def recall(alarm: BoolArray, positive: BoolArray) -> float:
    """True alarms / positives (NaN without positives)."""
    positives = int(positive.sum())
    return int((alarm & positive).sum()) / positives if positives else math.nan


def false_alarms_per_day(alarm: BoolArray, positive: BoolArray, days: float) -> float:
    """Alarms with no crossing within the horizon, per day evaluated."""
    return int((alarm & ~positive).sum()) / days if days > 0 else math.nan


def lead_times(eval_times: FloatArray, alarm: BoolArray,
               crossing: FloatArray) -> dict[float, float]:
    """Per detected crossing event (its time): crossing time - the earliest true alarm for it."""
    true_alarm = alarm & ~np.isnan(crossing)
    return {float(event): float(event - eval_times[true_alarm & (crossing == event)].min())
            for event in np.unique(crossing[true_alarm])}


def count_events(crossing: FloatArray) -> int:
    """The number of distinct crossing events among the evaluated times."""
    return int(np.unique(crossing[~np.isnan(crossing)]).size)


def mase(point: FloatArray, actual: FloatArray, last: FloatArray) -> float:
    """MAE of ``point`` over MAE of the last value, where all three are finite (NaN if 0/0)."""
    usable = np.isfinite(point) & np.isfinite(actual) & np.isfinite(last)
    scale = float(np.abs(actual[usable] - last[usable]).sum())
    if not usable.any() or scale == 0.0:
        return math.nan
    return float(np.abs(actual[usable] - point[usable]).sum()) / scale


def geometric_mean(values: Iterable[float]) -> float:
    """The geometric mean of the finite positive values (NaN if none)."""
    kept = [value for value in values if math.isfinite(value) and value > 0]
    return math.exp(sum(math.log(value) for value in kept) / len(kept)) if kept else math.nan


def score(run: SeriesRun, method: str) -> Score:
    """One method's counts on one replayed series."""
    prediction = run.predictions[method]
    positive = ~np.isnan(run.crossing)
    return Score(
        evaluated=int(run.eval_times.size),
        alarms=int(prediction.alarm.sum()),
        true_alarms=int((prediction.alarm & positive).sum()),
        positives=int(positive.sum()),
        events=count_events(run.crossing),
        leads={(run.series.name, event): lead for event, lead in
               lead_times(run.eval_times, prediction.alarm, run.crossing).items()},
        mases=(mase(prediction.point, run.actual, run.current),),
    )


def pool(scores: Iterable[Score]) -> Score:
    """The counts of several series added up."""
    scores = list(scores)
    return Score(
        evaluated=sum(s.evaluated for s in scores),
        alarms=sum(s.alarms for s in scores),
        true_alarms=sum(s.true_alarms for s in scores),
        positives=sum(s.positives for s in scores),
        events=sum(s.events for s in scores),
        leads={event: lead for s in scores for event, lead in s.leads.items()},
        mases=tuple(m for s in scores for m in s.mases),
    )


def summarise(pooled: Score, every: float) -> Metrics:
    """The reported metrics of pooled counts (None where undefined)."""
    days = pooled.evaluated * every / DAY
    false_alarms = pooled.alarms - pooled.true_alarms
    metrics: Metrics = {
        "evaluated": pooled.evaluated,
        "days": days,
        "alarms": pooled.alarms,
        "true_alarms": pooled.true_alarms,
        "false_alarms": false_alarms,
        "positives": pooled.positives,
        "precision": pooled.true_alarms / pooled.alarms if pooled.alarms else math.nan,
        "recall": pooled.true_alarms / pooled.positives if pooled.positives else math.nan,
        "false_alarms_per_day": false_alarms / days if days else math.nan,
        "events": pooled.events,
        "events_detected": len(pooled.leads),
        "median_lead_s": median(pooled.leads.values()),
        "mase": geometric_mean(pooled.mases),
    }
    return {key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in metrics.items()}


def ratio(numerator: float | int | None, denominator: float | int | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def median(values: Iterable[float]) -> float:
    """The median (NaN of nothing)."""
    kept = list(values)
    return float(np.median(kept)) if kept else math.nan


def paired_leads(ours: Mapping[tuple[str, float], float],
                 baseline: Mapping[tuple[str, float], float]) -> dict[str, float | None]:
    """Median leads of both methods on the events both detected, so that a method is not
    judged on the late, hard events only it detected."""
    common = ours.keys() & baseline.keys()
    ours_median = median(ours[event] for event in common)
    baseline_median = median(baseline[event] for event in common)
    return {"paired_events": len(common),
            "paired_median_lead_s": None if math.isnan(ours_median) else ours_median,
            "paired_baseline_median_lead_s": (None if math.isnan(baseline_median)
                                              else baseline_median),
            "paired_median_lead_ratio": ratio(ours_median, baseline_median)
            if common else None}


def compare(metrics: Mapping[str, Metrics], ours: str = "monitoriza",
            baseline: str = "predict_linear") -> dict[str, float | bool | None]:
    """The ratios ours / baseline and whether each target is met (None: cannot tell)."""
    a, b = metrics[ours], metrics[baseline]
    fa_ratio = ratio(a["false_alarms_per_day"], b["false_alarms_per_day"])
    lead_ratio = ratio(a["median_lead_s"], b["median_lead_s"])
    fa_met = (a["false_alarms_per_day"] == 0 if b["false_alarms_per_day"] == 0
              else None if fa_ratio is None else fa_ratio <= FA_RATIO_TARGET)
    recall_met = at_least(a["recall"], b["recall"])
    lead_met = at_least(a["median_lead_s"], b["median_lead_s"])
    return {"false_alarms_per_day_ratio": fa_ratio, "median_lead_ratio": lead_ratio,
            "target_false_alarms_met": fa_met, "target_recall_met": recall_met,
            "target_lead_met": lead_met}


def at_least(ours: float | int | None, baseline: float | int | None) -> bool | None:
    """ours ≥ baseline; a missing baseline is always matched, a missing ours never."""
    if baseline is None:
        return True
    return None if ours is None else ours >= baseline


# --------------------------------------------------------------------------- replay


def window_view(series: Series, window: float, horizon: float,
                every: float) -> tuple[IntArray, FloatArray, int]:
    """Evaluation end indices, the window offsets, and how many grid steps H is."""
    step = float(series.times[1] - series.times[0]) if series.times.size > 1 else every
    width = int(window // step) + 1
    ahead = max(1, round(horizon / step))
    stride = max(1, round(every / step))
    ends = evaluation_ends(series.values.size, width, ahead, stride)
    offsets = step * np.arange(-(width - 1), 1, dtype=np.float64)
    return ends, offsets, ahead


def replay(series: Series, methods: Mapping[str, Method], *, window: float, horizon: float,
           every: float, timings: dict[str, float] | None = None) -> SeriesRun:
    """Every method on every evaluation time of one series (one call per method)."""
    ends, offsets, ahead = window_view(series, window, horizon, every)
    width = offsets.size
    if ends.size:
        matrix = np.lib.stride_tricks.sliding_window_view(series.values, width)[ends - width + 1]
    else:
        matrix = np.empty((0, width))
    current = last_values(matrix)
    keep = np.isfinite(current) & (current < series.threshold)
    ends, matrix, current = ends[keep], np.ascontiguousarray(matrix[keep]), current[keep]
    windows = Windows(offsets, matrix, series.threshold, horizon, series.times[ends])
    predictions: dict[str, Prediction] = {}
    for name, method in methods.items():
        started = time.perf_counter()
        predictions[name] = method(windows)
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
    return SeriesRun(
        series=series,
        eval_times=series.times[ends],
        current=current,
        crossing=crossing_times(series.times, series.values, ends, ahead, series.threshold),
        actual=series.values[ends + ahead],
        predictions=predictions,
    )


def kind_of(name: str) -> str:
    """The kind of a synthetic series: ``leak-2`` is a ``leak``."""
    return name.rsplit("-", 1)[0]


def evaluate(series_list: Sequence[Series], methods: Mapping[str, Method], *, window: float,
             horizon: float, every: float, by_kind: bool = False) -> DatasetResult:
    """Replay a data set and summarise every method, with the ratios to predict_linear
    (and, ``by_kind``, per kind of series too)."""
    timings: dict[str, float] = {}
    runs = [replay(s, methods, window=window, horizon=horizon, every=every, timings=timings)
            for s in series_list]
    pooled = {name: pool(score(run, name) for run in runs) for name in methods}
    metrics = {name: summarise(pooled[name], every) for name in methods}
    for name in methods:
        metrics[name]["seconds"] = round(timings.get(name, 0.0), 3)
    comparison = None
    if "monitoriza" in methods and "predict_linear" in methods:
        comparison = {**compare(metrics),
                      **paired_leads(pooled["monitoriza"].leads, pooled["predict_linear"].leads)}
    kinds = {kind: {name: summarise(pool(score(run, name) for run in runs
                                         if kind_of(run.series.name) == kind), every)
                    for name in methods}
             for kind in sorted({kind_of(s.name) for s in series_list})} if by_kind else {}
    return DatasetResult(len(series_list), metrics, comparison, runs, kinds)


# --------------------------------------------------------------------------- methods


def naive_method(windows: Windows) -> Prediction:
    """Alarm when the current value is already ≥ 0.9 x the threshold; forecast: no change."""
    current = last_values(windows.values)
    never = np.full(current.shape, np.inf)
    return Prediction(current >= NAIVE_FRACTION * windows.threshold, current, never, never,
                      never)


def forecaster_method(forecaster: Forecaster) -> Method:
    """A method that alarms when ``forecaster``'s median time to failure is ≤ the horizon.

    Windows that end at the same time of day go to ``forecaster`` in one call, with times
    shifted by whole days (now = the time of day of their end), so that a model that reads
    the time of day (a daily profile) sees the right one.
    """

    def method(windows: Windows) -> Prediction:
        fields = ("point", "lower", "median", "upper")
        out = {name: np.empty(windows.nows.size) for name in fields}
        phases = np.mod(windows.nows, DAY)
        for phase in np.unique(phases):
            rows = phases == phase
            forecast = forecaster(windows.offsets + phase, windows.values[rows],
                                  threshold=windows.threshold, direction="above",
                                  horizon=windows.horizon, now=float(phase))
            for name in fields:
                out[name][rows] = getattr(forecast, name)
        return Prediction(out["median"] <= windows.horizon, out["point"], out["lower"],
                          out["median"], out["upper"])

    return method


def lower_rule_method(quantile: float) -> Method:
    """Monitoriza alarming on its lower (pessimistic) estimate at interval ``quantile``."""
    from monitoriza.forecast import model  # noqa: PLC0415 - the tests run without it

    def forecaster(times: FloatArray, values: FloatArray, *, threshold: float,
                   direction: Literal["above", "below"], horizon: float,
                   now: float | None = None) -> ForecastLike:
        return model.time_to_failure(times, values, threshold=threshold, direction=direction,
                                     horizon=horizon, now=now, quantile=quantile)

    median_rule = forecaster_method(forecaster)

    def method(windows: Windows) -> Prediction:
        prediction = median_rule(windows)
        return Prediction(prediction.lower <= windows.horizon, prediction.point,
                          prediction.lower, prediction.median, prediction.upper)

    return method


def crossing_probability(offsets: FloatArray, values: FloatArray, threshold: float,
                         horizon: float) -> FloatArray:
    """P(the series has crossed by each future grid step), (S, K), noise included.

    A noise-aware first-passage estimate: a robust line (``fit_line``) gives the trend
    m(h) (rising slopes only); the window's own residuals r give the noise. One future step
    exceeds with p(h) = share of residuals > threshold - m(h); steps are dependent, so K
    steps count as K / τ independent draws, τ = (1 + a) / (1 - a) with a the residuals'
    lag-1 autocorrelation. P(crossed by step k) = 1 - Π_{j ≤ k} (1 - p(h_j))^(1/τ).
    """
    from monitoriza.forecast.robust import fit_line, lag1_autocorrelation  # noqa: PLC0415

    line = fit_line(offsets, values, robust=True)
    residuals = values - (line.level[:, None] + line.slope[:, None] * offsets[None, :])
    known = np.isfinite(residuals)
    rho = lag1_autocorrelation(np.where(known, residuals, 0.0))
    rho = np.clip(np.nan_to_num(rho), 0.0, 0.95)
    tau = (1.0 + rho) / (1.0 - rho)
    step = float(offsets[1] - offsets[0]) if offsets.size > 1 else horizon
    ahead = step * np.arange(1, max(1, round(horizon / step)) + 1)
    trend = line.level[:, None] + np.maximum(line.slope, 0.0)[:, None] * ahead[None, :]
    needed = threshold - trend
    exceeding = (residuals[:, None, :] > needed[:, :, None]) & known[:, None, :]
    share = exceeding.sum(axis=2) / np.maximum(known.sum(axis=1), 1)[:, None]
    survival = np.cumsum(np.log1p(-np.minimum(share, 1.0 - 1e-9)), axis=1) / tau[:, None]
    return np.asarray(-np.expm1(survival), dtype=np.float64)


def first_passage_method(probability: float) -> Method:
    """Alarm when the noise-aware crossing probability within H reaches ``probability``."""

    def method(windows: Windows) -> Prediction:
        crossed = crossing_probability(windows.offsets, windows.values, windows.threshold,
                                       windows.horizon)
        step = windows.horizon / max(crossed.shape[1], 1)
        hit = crossed >= probability
        first = np.where(hit.any(axis=1), step * (1 + np.argmax(hit, axis=1)), np.inf)
        never = np.full(first.shape, np.inf)
        return Prediction(first <= windows.horizon, last_values(windows.values), never, first,
                          never)

    return method


def frontier_methods() -> dict[str, Method]:
    """Other alarm rules, to measure the trade-off between false alarms and recall."""
    methods = {f"lower q={q:g}": lower_rule_method(q) for q in (0.6, 0.7, 0.9)}
    methods |= {f"first-passage p>={p:g}": first_passage_method(p)
                for p in (0.9, 0.995, 0.998)}
    return methods


def default_methods() -> dict[str, Method]:
    """Monitoriza's model, its predict_linear baseline, and the static 90 % rule."""
    from monitoriza.forecast import model  # noqa: PLC0415 - the tests run without it

    return {"monitoriza": forecaster_method(model.time_to_failure),
            "predict_linear": forecaster_method(model.ols_time_to_failure),
            "naive": naive_method}


# --------------------------------------------------------------------------- data sets


def parse_time(text: str) -> float:
    """Unix seconds of ``2014-02-14 14:30:00`` (UTC when no zone is given) or of a number."""
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def read_series(path: Path) -> tuple[FloatArray, FloatArray]:
    """(times, values) of a ``timestamp,value`` CSV with a header row, sorted by time."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in list(csv.reader(handle))[1:] if len(row) >= 2]
    times = np.array([parse_time(row[0]) for row in rows], dtype=np.float64)
    values = np.array([float(row[1]) for row in rows], dtype=np.float64)
    order = np.argsort(times, kind="stable")
    return times[order], values[order]


def load_nab(folder: Path) -> list[Series]:
    """Every CSV of ``folder`` on its grid, with the 99th-percentile threshold."""
    series = []
    for path in sorted(folder.glob("*.csv")):
        times, values = read_series(path)
        grid_times, grid_values = on_grid(times, values, grid_step(times))
        series.append(Series(path.stem, grid_times, grid_values, threshold_rule(values)))
    if not series:
        raise FileNotFoundError(f"no CSV files in {folder}")
    return series


def daily_fill(hour_of_day: FloatArray) -> FloatArray:
    """Share of a day's log growth written by ``hour_of_day``: four times faster 08-20 h."""
    night = np.minimum(hour_of_day, 8.0) + np.clip(hour_of_day - 20.0, 0.0, 4.0)
    return (night + 4.0 * np.clip(hour_of_day - 8.0, 0.0, 12.0)) / 60.0


def sawtooth(hours: FloatArray, floors: FloatArray, rise: float, noise: float,
             rng: np.random.Generator) -> FloatArray:
    """Usage that grows by ``rise`` a day from each day's floor and is rotated at midnight."""
    day = (hours // 24).astype(np.int64)
    values = floors[day] + rise * daily_fill(hours % 24) + rng.normal(0.0, noise, hours.size)
    return np.clip(values, 0.0, 100.0)


def bursty(hours: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Flat noisy usage plus bursts (temp files, caches) that a clean-up removes at once."""
    base = rng.uniform(62.0, 68.0)
    shocks = rng.normal(0.0, 0.5, hours.size)
    noise = np.zeros(hours.size)
    for index in range(1, hours.size):
        noise[index] = 0.9 * noise[index - 1] + shocks[index]
    values = base + noise
    for start in rng.uniform(0.0, hours[-1], rng.poisson(3.0 * hours[-1] / 24)):
        length, height = rng.uniform(0.5, 3.0), rng.uniform(8.0, 26.0)
        inside = (hours >= start) & (hours < start + length)
        values[inside] += height * (hours[inside] - start) / length
    return np.clip(values, 0.0, 100.0)


def synthetic_set(seed: int = SYNTHETIC_SEED) -> list[Series]:
    """Rotation, leak and bursty disk usage, three replicas each, threshold 90 %."""
    rng = np.random.default_rng(seed)
    times = SYNTHETIC_START + SYNTHETIC_STEP * np.arange(SYNTHETIC_DAYS * DAY / SYNTHETIC_STEP)
    hours = (times - SYNTHETIC_START) / HOUR
    days = np.arange(SYNTHETIC_DAYS, dtype=np.float64)
    series = []
    for replica in range(1, SYNTHETIC_REPLICAS + 1):
        floor, peak = rng.uniform(50.0, 54.0), rng.uniform(84.0, 86.0)
        floors = floor + rng.uniform(-0.5, 0.5, SYNTHETIC_DAYS)
        rotation = sawtooth(hours, floors, peak - floor, 0.4, rng)
        if rotation.max() >= SYNTHETIC_THRESHOLD:
            raise AssertionError("the rotation sawtooth must stay below the threshold")
        leak = sawtooth(hours, floors + rng.uniform(1.5, 2.5) * days, peak - floor, 0.4, rng)
        for kind, values in (("rotation", rotation), ("leak", leak),
                             ("bursty", bursty(hours, rng))):
            series.append(Series(f"{kind}-{replica}", times, values, SYNTHETIC_THRESHOLD))
    return sorted(series, key=lambda s: s.name)


# --------------------------------------------------------------------------- output


def fmt(value: float | int | None, kind: str) -> str:
    """One table cell: a ratio, a duration or a number; '—' when undefined."""
    if value is None:
        return "—"
    if kind == "duration":
        return format_duration(60 * round(float(value) / 60))
    if kind == "ratio":
        return f"{float(value):.2f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def table(name: str, result: DatasetResult) -> str:
    """The plain-text report of one data set."""
    metrics = result.metrics
    first = next(iter(metrics.values()))
    lines = [f"{name}: {result.series} series, {first['evaluated']:,} evaluation times "
             f"({first['days']:.1f} days), {first['positives']:,} positives, "
             f"{first['events']:,} crossing events",
             f"{'method':<36} {'precision':>9} {'recall':>7} {'FA/day':>7} {'alarms':>7} "
             f"{'detected':>9} {'median lead':>11} {'MASE':>6} {'seconds':>8}"]
    lines += [row(method, m) for method, m in metrics.items()]
    for kind, by_method in result.kinds.items():
        lines += [row(f"  {kind}: {method}", m) for method, m in by_method.items()]
    comparison = result.comparison
    if comparison is not None:
        lines.append(
            f"monitoriza / predict_linear: false alarms per day "
            f"{fmt(comparison['false_alarms_per_day_ratio'], 'ratio')} "
            f"(target ≤ {FA_RATIO_TARGET}: {verdict(comparison['target_false_alarms_met'])}), "
            f"median lead {fmt(comparison['median_lead_ratio'], 'ratio')} "
            f"(target ≥ 1: {verdict(comparison['target_lead_met'])}), "
            f"recall target ≥ predict_linear: {verdict(comparison['target_recall_met'])}")
        lines.append(
            f"  on the {comparison['paired_events']} events both detect, median lead "
            f"{fmt(comparison['paired_median_lead_s'], 'duration')} vs "
            f"{fmt(comparison['paired_baseline_median_lead_s'], 'duration')} "
            f"(ratio {fmt(comparison['paired_median_lead_ratio'], 'ratio')})")
    return "\n".join(lines)


def row(label: str, m: Metrics) -> str:
    """One line of the table."""
    detected = f"{m['events_detected']}/{m['events']}"
    seconds = m.get("seconds")
    return (f"{label:<36} {fmt(m['precision'], 'ratio'):>9} {fmt(m['recall'], 'ratio'):>7} "
            f"{fmt(m['false_alarms_per_day'], 'n'):>7} {m['alarms']:>7,} {detected:>9} "
            f"{fmt(m['median_lead_s'], 'duration'):>11} {fmt(m['mase'], 'ratio'):>6} "
            f"{'' if seconds is None else format(seconds, '.2f'):>8}")


def verdict(met: object) -> str:
    """'met', 'NOT met' or 'n/a'."""
    return "n/a" if met is None else "met" if met else "NOT met"


# --------------------------------------------------------------------------- plot


def focus(run: SeriesRun, horizon: float, count: int = 4) -> tuple[float, IntArray]:
    """The first crossing monitoriza detected (else the first) and up to ``count`` times before."""
    positive = ~np.isnan(run.crossing)
    if not positive.any():
        picks = np.linspace(0, run.eval_times.size - 1, count).round().astype(np.int64)
        return float(run.eval_times[picks[-1]] + horizon), picks
    detected = positive.copy()
    if "monitoriza" in run.predictions:
        detected &= run.predictions["monitoriza"].alarm
    event = float(np.min(run.crossing[detected if detected.any() else positive]))
    before = np.flatnonzero((run.eval_times < event) & (run.eval_times >= event - 2 * horizon))
    return event, before[-count:]


def draw_panel(ax: Axes, run: SeriesRun, horizon: float) -> None:
    """History, threshold and the forecasts made at a few times before one crossing."""
    event, picks = focus(run, horizon)
    series = run.series
    start, end = event - 30 * HOUR, event + 10 * HOUR
    shown = (series.times >= start) & (series.times <= end)
    hours = (series.times[shown] - event) / HOUR
    ax.plot(hours, series.values[shown], color="0.35", lw=1.0, label="history")
    ax.axhline(series.threshold, color="crimson", lw=1.2, ls="--",
               label=f"threshold {series.threshold:.4g}")
    low, high = np.nanmin(series.values[shown]), np.nanmax(series.values[shown])
    step = 0.06 * (max(high, series.threshold) - low or 1.0)
    colours = ("tab:blue", "tab:green", "tab:purple", "tab:orange")
    for rank, index in enumerate(picks):
        colour = colours[rank % len(colours)]
        at = (run.eval_times[index] - event) / HOUR
        level = series.threshold + (rank + 1) * step
        ax.axvline(at, color=colour, ls=":", lw=1.0)
        draw_monitoriza(ax, run.predictions.get("monitoriza"), index=int(index), at=at,
                        level=level, horizon=horizon, colour=colour)
        linear = run.predictions.get("predict_linear")
        if linear is not None and math.isfinite(linear.median[index]):
            tip = min(float(linear.median[index]), 2 * horizon) / HOUR
            ax.plot(at + tip, level - 0.45 * step, marker="x", ms=8, mew=2, color=colour,
                    ls="none")
    moment = datetime.fromtimestamp(event, UTC).strftime("%Y-%m-%d %H:%M UTC")
    ax.set_xlabel(f"hours from the crossing at {moment}")
    ax.set_ylabel("value")
    ax.set_title(f"{series.name}: forecasts at the dotted times (H = {format_duration(horizon)})")
    ax.set_xlim((start - event) / HOUR, (end - event) / HOUR)
    legend_proxies(ax)


def draw_monitoriza(ax: Axes, prediction: Prediction | None, *, index: int, at: float,
                    level: float, horizon: float, colour: str) -> None:
    """Monitoriza's median time to failure (dot) and its lower-upper span (bar)."""
    if prediction is None or not math.isfinite(prediction.lower[index]):
        return
    cap = 2 * horizon
    lower = float(prediction.lower[index]) / HOUR
    upper = min(float(prediction.upper[index]), cap) / HOUR
    ax.plot([at + lower, at + upper], [level, level], color=colour, lw=3, alpha=0.5,
            solid_capstyle="butt")
    median = float(prediction.median[index])
    if math.isfinite(median):
        ax.plot(at + min(median, cap) / HOUR, level, marker="o", ms=7, color=colour, ls="none")
    if not math.isfinite(float(prediction.upper[index])):
        ax.plot(at + upper, level, marker=">", ms=6, color=colour, ls="none")


def legend_proxies(ax: Axes) -> None:
    """A legend that explains the markers once, whatever their colour."""
    from matplotlib.lines import Line2D  # noqa: PLC0415 - matplotlib only for --plot

    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.4", ls=":", label="evaluation time t (one colour each)"),
        Line2D([], [], color="0.4", marker="o", ls="none",
               label="Monitoriza: t + median time to failure"),
        Line2D([], [], color="0.4", lw=3, alpha=0.5,
               label="Monitoriza: t + lower … upper (▶: beyond 2H)"),
        Line2D([], [], color="0.4", marker="x", mew=2, ls="none",
               label="predict_linear: t + time to failure"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              borderaxespad=0.0)


def plot(path: Path, runs: Sequence[SeriesRun], horizon: float) -> None:
    """Write a PNG with one panel per run."""
    import matplotlib  # noqa: PLC0415 - matplotlib only for --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(len(runs), 1, figsize=(13, 4.5 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        draw_panel(ax, run, horizon)
    figure.text(0.01, 0.005, "Markers sit just above the threshold, a pair of rows per "
                "evaluation time (o Monitoriza, x predict_linear just below it).\nA marker at x "
                "means the method expects the crossing x hours from the true one; no marker: "
                "no crossing expected within H.", fontsize=8, color="0.3")
    figure.tight_layout(rect=(0, 0.035, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plotted_runs(nab: DatasetResult, synthetic: DatasetResult) -> list[SeriesRun]:
    """NAB's "reaches the ceiling" series (else the one with the most detected crossings), and
    the first synthetic leak."""

    def detected(run: SeriesRun) -> tuple[bool, int, int]:
        found = len(score(run, "monitoriza").leads) if "monitoriza" in run.predictions else 0
        return run.series.name == PLOT_NAB_SERIES, found, count_events(run.crossing)

    leak = next(run for run in synthetic.runs if run.series.name.startswith("leak"))
    return [max(nab.runs, key=detected), leak]


# --------------------------------------------------------------------------- main


def run(data: Path, *, window: float, horizon: float, every: float,
        methods: Mapping[str, Method]) -> dict[str, DatasetResult]:
    """Both data sets evaluated with ``methods``."""
    return {
        "nab": evaluate(load_nab(data / NAB_FOLDER), methods, window=window, horizon=horizon,
                        every=every),
        "synthetic": evaluate(synthetic_set(), methods, window=window, horizon=horizon,
                              every=every, by_kind=True),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, evaluate, print, plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/nab"))
    parser.add_argument("--horizon", type=parse_duration, default=parse_duration("4h"))
    parser.add_argument("--window", type=parse_duration, default=parse_duration("6h"))
    parser.add_argument("--every", type=parse_duration, default=parse_duration("1h"),
                        help="time between evaluations")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, help="write a PNG of two replayed series")
    parser.add_argument("--frontier", action="store_true",
                        help="also replay other alarm rules (lower estimate, first passage)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    methods = default_methods() | (frontier_methods() if args.frontier else {})
    results = run(args.data, window=args.window, horizon=args.horizon, every=args.every,
                  methods=methods)
    if args.plot:
        plot(args.plot, plotted_runs(results["nab"], results["synthetic"]), args.horizon)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({
            "window_s": args.window, "horizon_s": args.horizon, "every_s": args.every,
            "threshold_rule": f"nab: p{THRESHOLD_PERCENTILE:g} of the series, above; "
                              f"synthetic: {SYNTHETIC_THRESHOLD:g} %, above",
            "seed": SYNTHETIC_SEED,
            "datasets": {name: result.public() for name, result in results.items()},
            "plot": str(args.plot) if args.plot else None,
            "runtime_s": round(elapsed, 2)}, indent=2))
        return
    print(f"window {format_duration(args.window)}, horizon {format_duration(args.horizon)}, "
          f"every {format_duration(args.every)}; thresholds: NAB p{THRESHOLD_PERCENTILE:g}, "
          f"synthetic {SYNTHETIC_THRESHOLD:g} % (seed {SYNTHETIC_SEED})\n")
    for name, result in results.items():
        print(table(name, result) + "\n")
    if args.plot:
        print(f"plot: {args.plot}")
    print(f"runtime {elapsed:.1f} s")


if __name__ == "__main__":
    main()

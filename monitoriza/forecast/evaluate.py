"""Time-to-failure alarms replayed on histories: every method sees the same past windows.

Replay
  Each history is put on a regular grid at its median sample spacing (the last sample in
  each slot, NaN where there is none), as ``monitoriza forecast backtest`` does. Evaluation
  times t run every ``every`` (1 h) from the first moment with a full window to the last
  with a full horizon after it. The window is the grid in [t - W, t], given to every method
  with all windows of a series at once (the model gets, in one call, the windows that end at
  the same time of day, with their true time of day). The current value is the last sample in
  the window. Times where it is already at or above the threshold, or the window is empty,
  are not evaluated: those are not forecasts.

Methods
  * ``monitoriza``: ``time_to_failure`` median ≤ H (its lower and upper estimates ride along,
    for the frontier).
  * ``predict_linear``: ``ols_time_to_failure`` (OLS over the window, what PromQL's
    ``predict_linear`` does) median ≤ H.
  * ``naive``: the current value ≥ 0.9 x threshold, the static "90 % of the limit" warning.

``monitoriza.forecast.evaluate_csv`` runs this replay on the user's own CSVs (``monitoriza
forecast evaluate``). The scoring is in ``frontier``; the benchmark's data sets in ``datasets``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from monitoriza.forecast import model
from monitoriza.forecast.coverage import Coverage, coverage_of
from monitoriza.forecast.coverage import pooled as pooled_coverage
from monitoriza.forecast.frontier import (
    DAY,
    BoolArray,
    FloatArray,
    IntArray,
    Metrics,
    Score,
    compare,
    count_events,
    crossing_times,
    evaluation_ends,
    last_values,
    lead_times,
    mase,
    paired_leads,
    pool,
    summarise,
)
from monitoriza.forecast.robust import fit_line, lag1_autocorrelation

HOUR = 3600.0
NAIVE_FRACTION = 0.9


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


@dataclass(frozen=True)
class DatasetResult:
    """A replayed data set: every method's metrics, the comparison, the runs for the plot."""

    series: int
    metrics: dict[str, Metrics]
    comparison: dict[str, float | bool | None] | None
    runs: list[SeriesRun]
    kinds: dict[str, dict[str, Metrics]]  # the same per kind of series (synthetic set only)
    coverage: Coverage | None  # of monitoriza's [lower, upper], when it was replayed

    def public(self) -> dict[str, object]:
        """Everything but the replayed arrays, for JSON."""
        return {"series": self.series, "metrics": self.metrics, "comparison": self.comparison,
                "kinds": self.kinds,
                "coverage": None if self.coverage is None else self.coverage.public()}


def run_coverage(run: SeriesRun, method: str, horizon: float) -> Coverage:
    """How the method's [lower, upper] did against the real crossings of one series."""
    prediction = run.predictions[method]
    return coverage_of(run.crossing - run.eval_times, prediction.lower, prediction.upper,
                       horizon)


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
    coverage = pooled_coverage(run_coverage(run, "monitoriza", horizon) for run in runs) \
        if "monitoriza" in methods else None
    return DatasetResult(len(series_list), metrics, comparison, runs, kinds, coverage)


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
    return {"monitoriza": forecaster_method(model.time_to_failure),
            "predict_linear": forecaster_method(model.ols_time_to_failure),
            "naive": naive_method}

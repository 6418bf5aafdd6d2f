"""Time-to-failure forecasts: history from Prometheus, fitted on their own schedule.

A forecast never runs inside a scrape. A background thread pulls each forecast's history
with prometheus-api-client (``custom_query_range``), fits every series of it at once, and
keeps the result; scrapes render the latest results. When Prometheus is down or a query
fails, the previous result stays published with its timestamp (so ForecastStale can tell),
and the ``forecast`` collector reports failure.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_api_client import PrometheusConnect

from monitoriza.config.schema import Config, ForecastSpec
from monitoriza.exceptions import MonitorizaError
from monitoriza.exporter.clock import SYSTEM_CLOCK, Clock
from monitoriza.exporter.exposition import Family
from monitoriza.forecast.model import (
    DEFAULT_COVERAGE,
    Forecast,
    quantile_for,
    time_to_failure,
)

log = logging.getLogger(__name__)

ESTIMATES = ("lower", "median", "upper")
# How often the background thread looks for due forecasts; each forecast has its own interval.
CYCLE_SECONDS = 1.0
# A series without a point in the last this many steps of its window has ended.
ENDED_AFTER_STEPS = 2
# Series converted and fitted together, and the threads fitting blocks (see fit_in_blocks).
BLOCK_SERIES = 1024
FIT_THREADS = 2


class RangeSource(Protocol):
    """What the engine needs from Prometheus (prometheus-api-client's PrometheusConnect)."""

    def custom_query_range(self, query: str, start_time: Any, end_time: Any,
                           step: str) -> list[dict[str, Any]]: ...


# Labels the exporter sets itself, or that Prometheus sets on every target it scrapes: a
# source series' label of that name is published as exported_NAME, as Prometheus itself
# renames a scraped label that collides with a target label.
RESERVED_LABELS = frozenset({"forecast", "service", "estimate", "job", "instance"})


@dataclass(frozen=True, slots=True)
class SeriesForecast:
    """The forecast of one series (or of the most urgent series of one ``by`` group)."""

    labels: tuple[tuple[str, str], ...]  # published names, sorted
    lower: float
    median: float
    upper: float
    headroom: float  # fraction of the threshold still to go (0 = at the threshold)


@dataclass(frozen=True, slots=True)
class ForecastResult:
    """The published outcome of one forecast: one entry per series (or ``by`` group)."""

    name: str
    service: str
    series: int  # how many series the expression returned
    ran_at: float
    forecasts: tuple[SeriesForecast, ...]
    coverage: float = DEFAULT_COVERAGE  # the level [lower, upper] is calibrated to


class SeriesLimitError(MonitorizaError):
    """A forecast's expression returned more series (or ``by`` groups) than it may publish."""


def published_labels(metric: Mapping[str, str], by: Sequence[str] | None) -> tuple[
        tuple[str, str], ...]:
    """The labels a series' forecast is published with: ``by``'s (missing ones empty, which
    Prometheus treats as absent), or every label but ``__name__``; reserved names renamed."""
    names = by if by is not None else [name for name in metric if name != "__name__"]
    pairs = {(f"exported_{name}" if name in RESERVED_LABELS else name): metric.get(name, "")
             for name in names}
    return tuple(sorted(pairs.items()))


def group_forecasts(keys: Sequence[tuple[tuple[str, str], ...]], lower: Sequence[float],
                    median: Sequence[float], upper: Sequence[float],
                    headrooms: Sequence[float]) -> tuple[SeriesForecast, ...]:
    """One forecast per distinct key: the series of it that fails soonest (lowest lower
    estimate), so that a ``by`` coarser than the series keeps the pessimistic one."""
    chosen: dict[tuple[tuple[str, str], ...], int] = {}
    for index, key in enumerate(keys):
        held = chosen.get(key)
        if held is None or lower[index] < lower[held]:
            chosen[key] = index
    return tuple(SeriesForecast(key, float(lower[i]), float(median[i]), float(upper[i]),
                                float(headrooms[i]))
                 for key, i in sorted(chosen.items()))


def align(result: Sequence[Mapping[str, Any]], start: float, step: float,
          points: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A range query's series on one time grid: (times (T,), values (S, T) with NaN gaps).

    Each series' pairs are converted in one NumPy call (its parser reads Prometheus's "NaN"
    and "+Inf" text too): a loop over every point in Python took 3.7 s for 10,000 series of
    720 points, longer than fitting them.
    """
    times = start + step * np.arange(points, dtype=np.float64)
    values = np.full((len(result), points), np.nan)
    for row, series in enumerate(result):
        pairs = series.get("values") or []
        if not pairs:
            continue
        stamps = np.array([pair[0] for pair in pairs], dtype=np.float64)
        texts = [pair[1] for pair in pairs]
        try:
            numbers = np.array(texts, dtype=np.float64)
        except (TypeError, ValueError):  # one bad sample must not cost the series
            numbers = np.array([_number(text) for text in texts], dtype=np.float64)
        index = np.rint((stamps - start) / step).astype(np.int64)
        inside = (index >= 0) & (index < points)
        values[row, index[inside]] = numbers[inside]
    return times, values


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def headroom(current: float, threshold: float, direction: str) -> float:
    """How far the current value is from the threshold, as a fraction of the threshold."""
    if math.isnan(current):
        return math.nan
    distance = threshold - current if direction == "above" else current - threshold
    scale = abs(threshold) or 1.0
    return max(0.0, distance / scale)


def run_forecast(name: str, spec: ForecastSpec, source: RangeSource,
                 now: float) -> ForecastResult:
    """Pull the window and fit every series; one result per series (or ``by`` group).

    Raises :class:`SeriesLimitError` when there are more than ``spec.max_series`` of them,
    before fitting anything."""
    start = now - spec.window
    points = int(spec.window // spec.step) + 1
    # Plain seconds: Prometheus rejects a fractional duration such as "0.25s" as a step.
    result = source.custom_query_range(spec.expr, start_time=_datetime(start),
                                       end_time=_datetime(now), step=f"{spec.step:g}")
    keys = [published_labels(series.get("metric", {}), spec.by) for series in result]
    if len(set(keys)) > spec.max_series:
        raise SeriesLimitError(
            f"{len(set(keys))} series, over its max_series of {spec.max_series} (group them "
            f"with by:, or raise max_series)")
    if not result:
        return ForecastResult(name, spec.service, 0, now, (), spec.coverage)
    blocks = fit_in_blocks(result, spec, start, points, now)
    present = np.concatenate([block.present for block in blocks])
    keys = [key for key, keep in zip(keys, present.tolist(), strict=True) if keep]
    if not keys:
        return ForecastResult(name, spec.service, len(result), now, (), spec.coverage)
    lower, median, upper, current = (np.concatenate([getattr(block.forecast, field)
                                                     for block in blocks])
                                     for field in ("lower", "median", "upper", "current"))
    headrooms = [headroom(float(value), spec.threshold, spec.direction) for value in current]
    return ForecastResult(name, spec.service, len(result), now,
                          group_forecasts(keys, lower.tolist(), median.tolist(),
                                          upper.tolist(), headrooms), spec.coverage)


@dataclass(frozen=True)
class _Block:
    """The forecast of one block of a range query's series: those still present only."""

    present: npt.NDArray[np.bool_]
    forecast: Forecast


def fit_in_blocks(result: Sequence[Mapping[str, Any]], spec: ForecastSpec, start: float,
                  points: int, now: float) -> list[_Block]:
    """Put the answer on the grid a block of ``BLOCK_SERIES`` series at a time, fitting each
    block in a thread while the next one is converted.

    Converting Prometheus's text values holds the GIL (about 0.3 µs a value: 2.6 s for
    10,000 series of 720 points), fitting mostly releases it, so the two overlap instead of
    adding up. Every series is fitted on its own, so blocks change no result.
    """
    def fit(values: npt.NDArray[np.float64]) -> _Block:
        # A series Prometheus no longer has now (its target stopped exposing it: a
        # filesystem unmounted) is not forecast, though its past is still in the window.
        present = np.asarray(np.isfinite(values[:, -ENDED_AFTER_STEPS:]).any(axis=1))
        forecast = time_to_failure(times, values[present], threshold=spec.threshold,
                                   direction=spec.direction, horizon=spec.horizon, now=now,
                                   quantile=quantile_for(spec.coverage))
        return _Block(present, forecast)

    times = start + spec.step * np.arange(points, dtype=np.float64)
    with ThreadPoolExecutor(max_workers=FIT_THREADS) as pool:
        pending = [pool.submit(fit, align(result[begin:begin + BLOCK_SERIES], start,
                                          spec.step, points)[1])
                   for begin in range(0, len(result), BLOCK_SERIES)]
        return [future.result() for future in pending]


def _datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class ForecastEngine:
    """Runs every configured forecast on its interval and keeps the latest results."""

    def __init__(self, config: Callable[[], Config],
                 source_factory: Callable[[str], RangeSource] | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._config = config
        self._source_factory = source_factory or _prometheus
        self._clock = clock
        self._lock = threading.Lock()
        self._results: dict[str, ForecastResult] = {}
        self._failed: set[str] = set()
        self._refused: dict[tuple[str, str], int] = {}
        self._next_run: dict[str, float] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def run_due(self) -> int:
        """Run the forecasts that are due; return how many ran (successfully or not)."""
        config = self._config()
        now = self._clock.time()
        with self._lock:  # forecasts removed by a reload stop being published
            for name in set(self._results) - set(config.forecasts):
                del self._results[name]
            self._failed &= set(config.forecasts)
        due = [(name, spec) for name, spec in config.forecasts.items()
               if self._next_run.get(name, 0.0) <= now]
        if not due:
            return 0
        source = self._source_factory(config.exporter.prometheus_url)
        for name, spec in due:
            self._next_run[name] = now + spec.interval
            try:
                result = run_forecast(name, spec, source, now)
            except SeriesLimitError as exc:
                # Refused, not stale: what it published before no longer says what is there.
                log.warning("forecast %s refused: %s", name, exc)
                with self._lock:
                    self._failed.add(name)
                    self._results.pop(name, None)
                    key = (name, "series_limit")
                    self._refused[key] = self._refused.get(key, 0) + 1
                continue
            except Exception as exc:  # Prometheus down, a bad query, a bad answer
                log.warning("forecast %s failed: %s", name, exc)
                with self._lock:
                    self._failed.add(name)
                continue
            with self._lock:
                self._results[name] = result
                self._failed.discard(name)
        return len(due)

    def healthy(self) -> bool:
        with self._lock:
            return not self._failed

    def results(self) -> list[ForecastResult]:
        with self._lock:
            return list(self._results.values())

    def refusals(self) -> dict[tuple[str, str], int]:
        """``(forecast, reason) -> times refused`` since the exporter started."""
        with self._lock:
            return dict(self._refused)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="forecasts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a forecast already querying Prometheus may hold it up to 10 s."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                self.run_due()
            except Exception:  # never let the thread die; the collector reports failure
                log.exception("forecast cycle failed")
            with self._wake:
                if self._stopping:
                    return
                self._clock.wait(self._wake, CYCLE_SECONDS)
                if self._stopping:
                    return


def _prometheus(url: str) -> RangeSource:
    source: RangeSource = PrometheusConnect(url=url, disable_ssl=True)
    return source


TTF = Family("monitoriza_time_to_failure_seconds",
             "Forecast time until the expression crosses its failure threshold (+Inf: not "
             "within the horizon); estimate is lower (pessimistic), median or upper; one "
             "series per source series (or by: group), with its labels",
             ("forecast", "service", "estimate"))
LAST_RUN = Family("monitoriza_forecast_last_run_timestamp_seconds",
                  "When the forecast last ran successfully", ("forecast",))
HEADROOM = Family("monitoriza_forecast_headroom_ratio",
                  "Distance of the current value from the failure threshold, as a fraction of "
                  "the threshold (0: at it)", ("forecast", "service"))
COVERAGE = Family("monitoriza_forecast_bounds_coverage_ratio",
                  "The share of foreseen crossings the lower and upper estimates are calibrated "
                  "to contain (the forecast's coverage setting)", ("forecast",))
SERIES = Family("monitoriza_forecast_series", "Series the forecast's expression returned",
                ("forecast",))
REFUSED = Family("monitoriza_forecast_refused",
                 "Forecast runs refused, by reason (series_limit: more series than "
                 "max_series)", ("forecast", "reason"), type="counter")


def forecast_section(results: Iterable[ForecastResult],
                     refusals: Mapping[tuple[str, str], int] | None = None
                     ) -> list[tuple[Family, list[str]]]:
    ttf, last, room, series, coverage = [], [], [], [], []
    for result in sorted(results, key=lambda r: r.name):
        for item in result.forecasts:
            for estimate, value in zip(ESTIMATES, (item.lower, item.median, item.upper),
                                       strict=True):
                ttf.append(TTF.sample((result.name, result.service, estimate), value,
                                      extra=item.labels))
            if not math.isnan(item.headroom):
                room.append(HEADROOM.sample((result.name, result.service), item.headroom,
                                             extra=item.labels))
        last.append(LAST_RUN.sample((result.name,), result.ran_at))
        series.append(SERIES.sample((result.name,), float(result.series)))
        coverage.append(COVERAGE.sample((result.name,), result.coverage))
    refused = [REFUSED.sample(key, float(count)) for key, count in sorted((refusals or {})
                                                                           .items())]
    return [(TTF, ttf), (LAST_RUN, last), (HEADROOM, room), (SERIES, series),
            (COVERAGE, coverage), (REFUSED, refused)]

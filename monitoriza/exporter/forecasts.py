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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_api_client import PrometheusConnect

from monitoriza.config.schema import Config, ForecastSpec
from monitoriza.exporter.clock import SYSTEM_CLOCK, Clock
from monitoriza.exporter.exposition import Family
from monitoriza.forecast.model import time_to_failure

log = logging.getLogger(__name__)

ESTIMATES = ("lower", "median", "upper")
# How often the background thread looks for due forecasts; each forecast has its own interval.
CYCLE_SECONDS = 1.0


class RangeSource(Protocol):
    """What the engine needs from Prometheus (prometheus-api-client's PrometheusConnect)."""

    def custom_query_range(self, query: str, start_time: Any, end_time: Any,
                           step: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class ForecastResult:
    """The published outcome of one forecast: its most urgent series."""

    name: str
    service: str
    lower: float
    median: float
    upper: float
    headroom: float  # fraction of the threshold still to go (0 = at the threshold)
    series: int
    ran_at: float


def align(result: Sequence[Mapping[str, Any]], start: float, step: float,
          points: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A range query's series on one time grid: (times (T,), values (S, T) with NaN gaps)."""
    times = start + step * np.arange(points, dtype=np.float64)
    values = np.full((len(result), points), np.nan)
    for row, series in enumerate(result):
        for stamp, text in series.get("values", []):
            index = round((float(stamp) - start) / step)
            if 0 <= index < points:
                try:
                    values[row, index] = float(text)
                except ValueError:
                    continue  # Prometheus writes NaN and ±Inf as text; float() parses them
    return times, values


def headroom(current: float, threshold: float, direction: str) -> float:
    """How far the current value is from the threshold, as a fraction of the threshold."""
    if math.isnan(current):
        return math.nan
    distance = threshold - current if direction == "above" else current - threshold
    scale = abs(threshold) or 1.0
    return max(0.0, distance / scale)


def run_forecast(name: str, spec: ForecastSpec, source: RangeSource,
                 now: float) -> ForecastResult:
    """Pull the window, fit every series, keep the most urgent one."""
    start = now - spec.window
    points = int(spec.window // spec.step) + 1
    # Plain seconds: Prometheus rejects a fractional duration such as "0.25s" as a step.
    result = source.custom_query_range(spec.expr, start_time=_datetime(start),
                                       end_time=_datetime(now), step=f"{spec.step:g}")
    if not result:
        return ForecastResult(name, spec.service, math.inf, math.inf, math.inf, math.nan, 0,
                              now)
    times, values = align(result, start, spec.step, points)
    forecast = time_to_failure(times, values, threshold=spec.threshold,
                               direction=spec.direction, horizon=spec.horizon, now=now)
    urgent = int(np.argmin(forecast.lower))
    return ForecastResult(
        name, spec.service, float(forecast.lower[urgent]), float(forecast.median[urgent]),
        float(forecast.upper[urgent]),
        headroom(float(forecast.current[urgent]), spec.threshold, spec.direction),
        len(result), now)


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
             "within the horizon); estimate is lower (pessimistic), median or upper",
             ("forecast", "service", "estimate"))
LAST_RUN = Family("monitoriza_forecast_last_run_timestamp_seconds",
                  "When the forecast last ran successfully", ("forecast",))
HEADROOM = Family("monitoriza_forecast_headroom_ratio",
                  "Distance of the current value from the failure threshold, as a fraction of "
                  "the threshold (0: at it)", ("forecast", "service"))
SERIES = Family("monitoriza_forecast_series", "Series the forecast's expression returned",
                ("forecast",))


def forecast_section(results: Iterable[ForecastResult]) -> list[tuple[Family, list[str]]]:
    ttf, last, room, series = [], [], [], []
    for result in sorted(results, key=lambda r: r.name):
        for estimate, value in zip(ESTIMATES, (result.lower, result.median, result.upper),
                                   strict=True):
            ttf.append(TTF.sample((result.name, result.service, estimate), value))
        last.append(LAST_RUN.sample((result.name,), result.ran_at))
        if not math.isnan(result.headroom):
            room.append(HEADROOM.sample((result.name, result.service), result.headroom))
        series.append(SERIES.sample((result.name,), float(result.series)))
    return [(TTF, ttf), (LAST_RUN, last), (HEADROOM, room), (SERIES, series)]


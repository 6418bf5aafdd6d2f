"""``monitoriza forecast backtest``: replay a history and show every forecast it would make.

A user hands in a ``timestamp,value`` CSV (the NAB format, or unix seconds) and sees, for
every step, the time-to-failure estimates the exporter would have published then, from the
window of history before that moment only, and when the history really crossed the
threshold after it. All windows are fitted in one vectorised call: the history is put on a
regular grid, and window k is row k of a (windows, points) matrix whose columns are the same
offsets from "now". The replay ends with the bounds' coverage (``coverage``): how many of
the crossings that followed fell inside [lower, upper].
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import numpy.typing as npt

from monitoriza.durations import format_duration
from monitoriza.exceptions import MonitorizaError
from monitoriza.forecast.coverage import Coverage, coverage_of
from monitoriza.forecast.model import DEFAULT_COVERAGE, quantile_for, time_to_failure


class BacktestError(MonitorizaError, ValueError):
    """The CSV cannot be replayed (unreadable, empty, bad timestamps)."""


@dataclass(frozen=True, slots=True)
class Step:
    timestamp: float
    value: float
    lower: float
    median: float
    upper: float
    crossed_after: float  # seconds until the history reached the threshold: inf when not
    # within the horizon, NaN when the history ends first or the value is already beyond


def parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BacktestError(f"not a timestamp: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_csv(path: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(times, values) from a ``timestamp,value`` CSV with a header row, sorted by time."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise BacktestError(f"cannot read {path}: {exc.strerror}") from None
    body = [row for row in rows[1:] if len(row) >= 2]
    if not body:
        raise BacktestError(f"{path}: no timestamp,value rows")
    times = np.array([parse_time(row[0]) for row in body])
    values = np.array([_number(row[1]) for row in body])
    order = np.argsort(times, kind="stable")
    return times[order], values[order]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def on_grid(times: npt.NDArray[np.float64], values: npt.NDArray[np.float64],
            step: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The history on a regular grid of ``step`` seconds (the last sample in each slot)."""
    start = times[0]
    slots = np.round((times - start) / step).astype(np.int64)
    grid = np.full(int(slots[-1]) + 1, np.nan)
    grid[slots] = values
    return start + step * np.arange(grid.size, dtype=np.float64), grid


def replay(times: npt.NDArray[np.float64], values: npt.NDArray[np.float64], *,
           threshold: float, direction: Literal["above", "below"], horizon: float,
           window: float, every: float, coverage: float = DEFAULT_COVERAGE) -> list[Step]:
    """Every ``every`` seconds, the forecast from the ``window`` before that moment, and
    when the history crossed the threshold after it."""
    diffs = np.diff(times)
    resolution = float(np.median(diffs)) if diffs.size else 0.0
    if resolution <= 0:
        raise BacktestError("the history needs at least two distinct timestamps")
    grid_times, grid = on_grid(times, values, resolution)
    width = int(window // resolution) + 1
    stride = max(1, round(every / resolution))
    ends = np.arange(width - 1, grid.size, stride)
    if ends.size == 0:
        raise BacktestError(f"the history is shorter than the window ({format_duration(window)})")
    windows = np.lib.stride_tricks.sliding_window_view(grid, width)[ends - (width - 1)]
    offsets = resolution * np.arange(-(width - 1), 1, dtype=np.float64)
    forecast = time_to_failure(offsets, np.ascontiguousarray(windows), threshold=threshold,
                               direction=direction, horizon=horizon, now=0.0,
                               quantile=quantile_for(coverage))
    crossed = crossed_after(grid_times, grid, ends, threshold=threshold, direction=direction,
                            horizon=horizon)
    return [Step(float(grid_times[end]), float(grid[end]), float(forecast.lower[index]),
                 float(forecast.median[index]), float(forecast.upper[index]),
                 float(crossed[index]))
            for index, end in enumerate(ends)]


def crossed_after(grid_times: npt.NDArray[np.float64], grid: npt.NDArray[np.float64],
                  ends: npt.NDArray[np.intp], *, threshold: float,
                  direction: Literal["above", "below"],
                  horizon: float) -> npt.NDArray[np.float64]:
    """Seconds from each end to the first later grid value at or beyond the threshold:
    inf when none within the horizon, NaN when the history ends before the horizon does (or
    the value at the end is already beyond: that is no forecast)."""
    sign = 1.0 if direction == "above" else -1.0
    with np.errstate(invalid="ignore"):
        beyond = sign * grid >= sign * threshold  # NaN (no sample) is never beyond
    step = float(grid_times[1] - grid_times[0]) if grid_times.size > 1 else horizon
    ahead = int(horizon // step)
    result = np.full(ends.size, np.nan)
    for index, end in enumerate(ends):
        if beyond[end]:
            continue
        later = np.flatnonzero(beyond[end + 1:end + 1 + ahead])
        if later.size:
            result[index] = step * (later[0] + 1)
        elif end + ahead < grid.size:
            result[index] = np.inf
    return result


def coverage_of_steps(steps: list[Step], horizon: float) -> Coverage:
    """How the replay's [lower, upper] did against the crossings that followed."""
    return coverage_of(np.array([step.crossed_after for step in steps]),
                       np.array([step.lower for step in steps]),
                       np.array([step.upper for step in steps]), horizon)


def _seconds(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 1)


def write(steps: Iterable[Step], out: TextIO, *, as_json: bool) -> int:
    count = 0
    if not as_json:
        out.write(f"{'timestamp':<21} {'value':>12} {'lower':>12} {'median':>12} {'upper':>12} "
                  f"{'crossed':>12}\n")
    for step in steps:
        count += 1
        moment = datetime.fromtimestamp(step.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if as_json:
            out.write(json.dumps({"timestamp": moment, "value": step.value,
                                  "lower": _seconds(step.lower),
                                  "median": _seconds(step.median),
                                  "upper": _seconds(step.upper),
                                  "crossed": _crossed(step.crossed_after)}) + "\n")
        else:
            cells = ["none" if math.isinf(v) else format_duration(v)
                     for v in (step.lower, step.median, step.upper)]
            crossed = _crossed(step.crossed_after)
            shown = crossed if isinstance(crossed, str) or crossed is None else \
                format_duration(crossed)
            out.write(f"{moment:<21} {step.value:>12.4g} {cells[0]:>12} {cells[1]:>12} "
                      f"{cells[2]:>12} {shown or '?':>12}\n")
    return count


def _crossed(value: float) -> float | str | None:
    """The crossing for output: seconds, "none" within the horizon, None when unknown."""
    if math.isnan(value):
        return None
    return "none" if math.isinf(value) else round(value, 1)

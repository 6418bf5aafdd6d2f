"""``monitoriza forecast backtest``: replay a history and show every forecast it would make.

A user hands in a ``timestamp,value`` CSV (the NAB format, or unix seconds) and sees, for
every step, the time-to-failure estimates the exporter would have published then, from the
window of history before that moment only. All windows are fitted in one vectorised call:
the history is put on a regular grid, and window k is row k of a (windows, points) matrix
whose columns are the same offsets from "now".
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import numpy.typing as npt

from monitoriza.durations import format_duration
from monitoriza.exceptions import MonitorizaError
from monitoriza.forecast.model import time_to_failure


class BacktestError(MonitorizaError, ValueError):
    """The CSV cannot be replayed (unreadable, empty, bad timestamps)."""


@dataclass(frozen=True, slots=True)
class Step:
    timestamp: float
    value: float
    lower: float
    median: float
    upper: float


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
           window: float, every: float) -> Iterator[Step]:
    """Every ``every`` seconds, the forecast from the ``window`` before that moment."""
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
                               direction=direction, horizon=horizon, now=0.0)
    for index, end in enumerate(ends):
        yield Step(float(grid_times[end]), float(grid[end]), float(forecast.lower[index]),
                   float(forecast.median[index]), float(forecast.upper[index]))


def _seconds(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 1)


def write(steps: Iterator[Step], out: TextIO, *, as_json: bool) -> int:
    count = 0
    if not as_json:
        out.write(f"{'timestamp':<21} {'value':>12} {'lower':>12} {'median':>12} {'upper':>12}\n")
    for step in steps:
        count += 1
        moment = datetime.fromtimestamp(step.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if as_json:
            out.write(json.dumps({"timestamp": moment, "value": step.value,
                                  "lower": _seconds(step.lower),
                                  "median": _seconds(step.median),
                                  "upper": _seconds(step.upper)}) + "\n")
        else:
            cells = ["none" if math.isinf(v) else format_duration(v)
                     for v in (step.lower, step.median, step.upper)]
            out.write(f"{moment:<21} {step.value:>12.4g} {cells[0]:>12} {cells[1]:>12} "
                      f"{cells[2]:>12}\n")
    return count

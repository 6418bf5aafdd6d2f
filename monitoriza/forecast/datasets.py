"""The benchmark's data sets: NAB's real AWS CloudWatch metrics and a synthetic disk-fill set.

  * ``nab``: every CSV in ``DIR/realAWSCloudwatch``. Threshold rule: the 99th percentile of
    the whole series, direction "above". NAB has no capacity limits, so a line has to be
    chosen; the 99th percentile is one that every series really reaches (at least 1 % of its
    samples) but rarely, so an alarm is not right by luck. It is fixed once, from the whole
    series, before any replay, the way an operator sets an alert line.
  * ``synthetic``: disk usage in % generated with a fixed seed, threshold 90 %, three shapes,
    three replicas each, 14 days at 5 min: ``rotation`` (logs fill the disk and are rotated
    away every midnight, peaks always below 90 %), ``leak`` (the floor after each rotation
    rises, so the peaks cross 90 % after a few days), ``bursty`` (noisy flat usage with
    bursts that a clean-up removes).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from monitoriza.forecast.evaluate import HOUR, Series
from monitoriza.forecast.frontier import DAY, FloatArray, grid_step, on_grid, threshold_rule

SYNTHETIC_THRESHOLD = 90.0
SYNTHETIC_SEED = 20241124
SYNTHETIC_START = 1_704_067_200.0  # 2024-01-01T00:00:00Z, a midnight: rotations at 00:00
SYNTHETIC_DAYS = 14
SYNTHETIC_STEP = 300.0
SYNTHETIC_REPLICAS = 3
NAB_FOLDER = "realAWSCloudwatch"


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

"""Forecast paths and where they cross a threshold.

Every model ends in a *path*: for each series, the forecast mean of the level at a distance
h ≥ 0 after the origin and its standard error. The time to failure is where the path (the
median estimate) or its band mean ± z·sd (the pessimistic and optimistic estimates) first
reaches the threshold. Values here are always oriented so that failure is *above* the
threshold (``model.py`` negates series whose failure is below it).

The band is a confidence band for the level the model tracks, not a band for single noisy
samples: a sample-noise band at every h would put the pessimistic estimate at 0 for every
noisy series near its threshold. The samples' noise enters as the chance that *some* sample
has reached the threshold by h (``bounds``), which ``crossing_bounds`` combines with the band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from statistics import NormalDist
from typing import Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt

from monitoriza.forecast.bounds import Noise, first_reaching, passage_probability

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

DAY = 86400.0
CHUNK_ROWS = 1024
MIN_GRID = 257
MAX_GRID = 2049
GRID_SECONDS = 600.0  # at most this far between grid points, up to MAX_GRID points

T = TypeVar("T")


class Path(Protocol):
    """A forecast for S series: mean and standard error at distances h after the origin."""

    def evaluate(self, h: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(mean, sd), each (S, len(h))."""
        ...

    def mean(self, h: FloatArray) -> FloatArray:
        """The mean alone (what a backtest scores), (S, len(h))."""
        ...

    def take(self, rows: IntArray) -> Self:
        """The same path for the series ``rows`` only."""
        ...


def _take_fields(obj: T, rows: IntArray) -> T:
    """A dataclass with every array field indexed by ``rows`` (paths recursively)."""
    changes: dict[str, object] = {}
    for field in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, field.name)
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            changes[field.name] = value[rows]
        elif hasattr(value, "take") and hasattr(value, "evaluate"):
            changes[field.name] = value.take(rows)
    return replace(obj, **changes)  # type: ignore[type-var]


def damped_distance(h: FloatArray, decay: FloatArray) -> FloatArray:
    """D(h) = (1 - e^(-κh)) / κ, and h where κ = 0: how far a damped slope carries.

    A slope b damped at rate κ adds b·D(h) by distance h; D(h) → 1/κ, so a trend that the
    model does not trust to last (κ > 0) can only carry the level a bounded distance. It is
    the continuous-time form of Holt's Σ φ^i with φ = e^(-κ·step).
    """
    if decay.size and np.all(decay == decay[0]):
        k0 = float(decay[0])
        one = -np.expm1(-k0 * h) / k0 if k0 > 0 else h
        return np.broadcast_to(one[None, :], (decay.size, h.size))
    k = decay[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        damped = -np.expm1(-k * h[None, :]) / np.where(k > 0, k, 1.0)
    return np.where(k > 0, damped, h[None, :])


@dataclass(frozen=True)
class LinearPath:
    """level + slope·D(h), sd = sqrt(sd_centre² + sd_slope²·(D(h) - centre)²).

    ``centre`` ≤ 0 is where the slope estimate is anchored (the mean time of the fitted
    data, relative to the origin): the regression standard error of a line at distance h.
    """

    level: FloatArray
    slope: FloatArray
    decay: FloatArray
    centre: FloatArray
    sd_centre: FloatArray
    sd_slope: FloatArray

    def evaluate(self, h: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean and standard error at the distances ``h``."""
        reach = damped_distance(h, self.decay)
        mean = self.level[:, None] + self.slope[:, None] * reach
        away = reach - self.centre[:, None]
        sd = np.hypot(self.sd_centre[:, None], self.sd_slope[:, None] * away)
        return mean, sd

    def mean(self, h: FloatArray) -> FloatArray:
        """The mean at the distances ``h``."""
        return self.level[:, None] + self.slope[:, None] * damped_distance(h, self.decay)

    def take(self, rows: IntArray) -> Self:
        """The path of the series ``rows``."""
        return _take_fields(self, rows)


@dataclass(frozen=True)
class SeasonalPath:
    """A path plus a daily profile: profile[bin] at the time of day of origin + h.

    ``profile`` is (S, B) with B bins over the day, bin b centred at (b + 0.5)·DAY/B; between
    centres it is interpolated linearly (circularly), so the added cycle has no steps.
    """

    trend: LinearPath
    profile: FloatArray
    origin: float  # the origin's time, for its time of day

    def offsets(self, h: FloatArray) -> FloatArray:
        """The profile at the times origin + h, (S, len(h))."""
        return daily_profile_at(self.profile, self.origin + h)

    def evaluate(self, h: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The trend's mean plus the profile; the trend's standard error."""
        mean, sd = self.trend.evaluate(h)
        return mean + self.offsets(h), sd

    def mean(self, h: FloatArray) -> FloatArray:
        """The trend's mean plus the profile."""
        return self.trend.mean(h) + self.offsets(h)

    def take(self, rows: IntArray) -> Self:
        """The path of the series ``rows``."""
        return _take_fields(self, rows)


def daily_profile_at(profile: FloatArray, times: FloatArray) -> FloatArray:
    """profile (S, B) interpolated circularly at ``times`` (seconds; only the time of day)."""
    bins = profile.shape[1]
    position = np.mod(times, DAY) / (DAY / bins) - 0.5
    below = np.floor(position).astype(np.intp)
    weight = position - below
    low = profile[:, np.mod(below, bins)]
    high = profile[:, np.mod(below + 1, bins)]
    result: FloatArray = low * (1.0 - weight)[None, :] + high * weight[None, :]
    return result


@dataclass(frozen=True)
class SawtoothPath:
    """The current tooth until the next expected reset, then teeth under a peak envelope.

    Before ``next_reset`` (distance from the origin; inf when no cycle is known) the path is
    the line fitted since the last reset. After it, cycles of length ``period`` follow; in the
    cycle ending at E the path rises with the tooth's slope to the envelope's value at E:
        mean(h) = envelope(E) - rise·(E - h),
        E = next_reset + (⌊(h - next_reset) / period⌋ + 1)·period,
    so each later peak lies on the envelope line fitted through past peaks, and the series
    fails after the next reset only if the envelope reaches the threshold.
    """

    tooth: LinearPath
    envelope: LinearPath
    next_reset: FloatArray
    period: FloatArray

    def evaluate(self, h: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The tooth before the next reset, the enveloped teeth after it."""
        return self._combine(h, self.tooth.evaluate(h))

    def mean(self, h: FloatArray) -> FloatArray:
        """The mean alone."""
        tooth = self.tooth.mean(h)
        return self._combine(h, (tooth, tooth))[0]

    def _combine(self, h: FloatArray,
                 tooth: tuple[FloatArray, FloatArray]) -> tuple[FloatArray, FloatArray]:
        """Replace the tooth's (mean, sd) after the next reset by the enveloped teeth."""
        tooth_mean, tooth_sd = tooth
        reset = self.next_reset[:, None]
        period = np.where(np.isfinite(self.period) & (self.period > 0), self.period, 1.0)
        after = np.isfinite(reset) & (h[None, :] >= reset)
        if not after.any():
            return tooth_mean, tooth_sd
        since = np.where(after, h[None, :] - reset, 0.0)
        cycle_end = np.where(after, reset + (np.floor(since / period[:, None]) + 1.0)
                             * period[:, None], 0.0)
        env_mean, env_sd = self._envelope_at(cycle_end)
        rise = np.maximum(self.tooth.slope, 0.0)[:, None]
        mean = np.where(after, env_mean - rise * (cycle_end - h[None, :]), tooth_mean)
        sd = np.where(after, env_sd, tooth_sd)
        return mean, sd

    def _envelope_at(self, at: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The envelope line (undamped) at per-series distances ``at`` (S, G)."""
        env = self.envelope
        mean = env.level[:, None] + env.slope[:, None] * at
        sd = np.hypot(env.sd_centre[:, None], env.sd_slope[:, None] * (at - env.centre[:, None]))
        return mean, sd

    def take(self, rows: IntArray) -> Self:
        """The path of the series ``rows``."""
        return _take_fields(self, rows)


def grid_for(horizon: float) -> FloatArray:
    """Distances 0..horizon at which paths are evaluated: ≥ 257 points, ≤ 10 min apart
    (up to 2049 points); crossings between two points are interpolated linearly."""
    points = min(MAX_GRID, max(MIN_GRID, math.ceil(horizon / GRID_SECONDS) + 1))
    return np.linspace(0.0, horizon, points)


def first_crossing(curve: FloatArray, threshold: float, grid: FloatArray) -> FloatArray:
    """Per row, the first h where ``curve`` reaches ``threshold`` (inf if it never does).

    At 0 if it starts there; otherwise interpolated linearly inside the first grid cell
    [g_(j-1), g_j] whose right end is at or above the threshold:
        h = g_(j-1) + (threshold - c_(j-1)) / (c_j - c_(j-1)) · (g_j - g_(j-1)),
    exact for straight paths. NaN values never cross.
    """
    above = curve >= threshold
    hit = above.any(axis=1)
    index = np.argmax(above, axis=1)
    before = np.maximum(index - 1, 0)
    low = np.take_along_axis(curve, before[:, None], axis=1)[:, 0]
    high = np.take_along_axis(curve, index[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip((threshold - low) / np.where(high > low, high - low, 1.0), 0.0, 1.0)
    crossing = grid[before] + share * (grid[index] - grid[before])
    crossing = np.where(index == 0, 0.0, crossing)
    return np.where(hit, crossing, np.inf)


def crossing_bounds(path: Path, threshold: float, horizon: float, quantile: float,
                    noise: Noise | None = None,
                    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(lower, median, upper, point): when the path's mean first reaches the threshold within
    the horizon (the median), the interval of level c = 2·quantile - 1 around it, and the
    mean at the horizon.

    The level band: lower where mean + z·sd first reaches the threshold, upper where
    mean - z·sd does, z = Φ⁻¹(quantile). With ``noise`` (``bounds``), lower is the earlier of
    that and the first h where a sample has reached it with probability 1 - quantile, upper
    the later of that and the first h where it has with probability ``quantile``. Since
    mean - z·sd ≤ mean ≤ mean + z·sd at every h, the times come out ordered
    lower ≤ median ≤ upper. Rows are done in chunks to bound memory with long grids.
    """
    z = NormalDist().inv_cdf(quantile)
    grid = grid_for(horizon)
    probe = path.evaluate(grid[:1])[0]
    rows = probe.shape[0]
    lower, median, upper = (np.full(rows, np.inf) for _ in range(3))
    point = np.full(rows, np.nan)
    for start in range(0, rows, CHUNK_ROWS):
        part = np.arange(start, min(rows, start + CHUNK_ROWS))
        mean, sd = path.take(part).evaluate(grid)
        width = z * np.where(np.isfinite(sd), sd, 0.0)
        median[part] = first_crossing(mean, threshold, grid)
        lower[part] = first_crossing(mean + width, threshold, grid)
        upper[part] = first_crossing(mean - width, threshold, grid)
        point[part] = mean[:, -1]
        if noise is not None:
            probability = passage_probability(noise.take(part), mean, threshold, grid)
            lower[part] = np.minimum(lower[part],
                                     first_reaching(probability, 1.0 - quantile, grid))
            upper[part] = np.maximum(upper[part], first_reaching(probability, quantile, grid))
    lower = np.minimum(lower, median)
    upper = np.maximum(upper, median)
    return lower, median, upper, point

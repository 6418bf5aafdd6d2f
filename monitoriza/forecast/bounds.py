# ruff: noqa: RUF002 - the formulas use the Greek letters of the statistics literature
"""When will a *sample* first reach the threshold? The noise half of the bounds.

A path's band (mean ± z·sd, ``paths.crossing_bounds``) says where the *level* may go. The
crossing an operator sees is the first sample at or over the threshold, and noise brings it
forward: a connection pool that spikes 10 points above its trend fails when a spike reaches
the limit, long before the trend does. Replayed on NAB and the synthetic set, the level
band alone put the real crossing before the lower estimate for 44 % of the NAB crossings it
foresaw.

So the bounds also take the first-passage time of the samples. With the residuals r of the
window around the robust line since the last reset (how far samples sit from the level),
a sample at distance h exceeds the threshold with probability
    p(h) = share of r > threshold - mean(h),
and the chance that some sample has by h is
    P(h) = 1 - Π_j (1 - p(h_j))^(Δ_j / (s·τ)),
over the cells Δ_j of the evaluation grid up to h: s is the sample spacing and
τ = (1 + a) / (1 - a), a the residuals' lag-1 autocorrelation, because dependent samples
are fewer independent draws. The lower bound is the first h with P(h) ≥ (1 - c) / 2 and the
upper the first with P(h) ≥ (1 + c) / 2 (beyond the horizon when never), each combined with
the level band's (the earlier lower, the later upper), for the interval's level c.

The residuals are the window's own, so a series whose samples never came near the
threshold gets P = 0 and keeps the level band: quiet series do not get earlier estimates.
Only rows whose largest residual can reach the threshold are computed (``reachable``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoriza.forecast.robust import lag1_autocorrelation, nanmedian_rows, robust_scale_rows

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

SAME_LEVEL_SIGMAS = 3.0


@dataclass(frozen=True)
class Noise:
    """Each series' residuals around its level, and how many independent draws a second
    of future brings (1 / (s·τ))."""

    residuals: FloatArray  # (S, n), NaN where a point does not count (see noise_of)
    largest: FloatArray  # (S,) the largest residual, -inf for a row without any
    draws_per_second: float  # 1 / s; τ is per row, computed for reachable rows only

    def take(self, rows: IntArray) -> Noise:
        """The noise of the series ``rows``."""
        return Noise(self.residuals[rows], self.largest[rows], self.draws_per_second)


def noise_of(x: FloatArray, y: FloatArray, level: FloatArray, slope: FloatArray,
             first_column: IntArray) -> Noise:
    """The residuals of (x, y) around the line level + slope·x since each row's
    ``first_column`` (the first point after its last reset).

    Points before the last reset count too when they sit at the same level as the points
    after it. The teeth before a log rotation sit far above the current one, and would pass
    for noise reaching the threshold; but a burst that ends is a reset as well
    (``sawtooth.find_resets``), and there the points before it are the same level with the
    burst in it, which is exactly the noise to count. "The same level": the medians of the
    values before and after are within ``SAME_LEVEL_SIGMAS`` robust σ of the residuals
    after; those rows' residuals are taken around that median, as a line through the few
    points since a burst ended means little.
    """
    columns = np.arange(x.size)
    since = columns[None, :] >= first_column[:, None]
    fitted = level[:, None] + slope[:, None] * x[None, :]
    around_line = np.where(since, y - fitted, np.nan)
    level_after = nanmedian_rows(np.where(since, y, np.nan))
    with np.errstate(invalid="ignore"):
        same_level = np.abs(nanmedian_rows(np.where(since, np.nan, y)) - level_after) \
            <= SAME_LEVEL_SIGMAS * robust_scale_rows(around_line)
    residuals = np.where(same_level[:, None], y - level_after[:, None], around_line)
    known = np.isfinite(residuals)
    largest = np.max(np.where(known, residuals, -np.inf), axis=1, initial=-np.inf)
    spacing = float(np.median(np.diff(x))) if x.size > 1 else 0.0
    return Noise(residuals, largest, 1.0 / spacing if spacing > 0 else 0.0)


def reachable(noise: Noise, mean: FloatArray, threshold: float) -> BoolArray:
    """Rows where some residual added to the path's mean reaches the threshold."""
    peak = np.max(np.where(np.isfinite(mean), mean, -np.inf), axis=1, initial=-np.inf)
    result: BoolArray = (peak + noise.largest >= threshold) & (noise.draws_per_second > 0)
    return result


def passage_probability(noise: Noise, mean: FloatArray, threshold: float,
                        grid: FloatArray) -> FloatArray:
    """P(some sample has reached ``threshold`` by each grid distance), (S, len(grid)).

    ``mean`` is the path's mean on ``grid`` (S, len(grid)); rows that cannot reach the
    threshold get 0 everywhere.
    """
    rows, points = mean.shape
    probability = np.zeros((rows, points))
    candidates = np.flatnonzero(reachable(noise, mean, threshold))
    if candidates.size == 0 or points < 2:
        return probability
    residuals = noise.residuals[candidates]
    known = np.isfinite(residuals)
    tau = _correlation_time(np.where(known, residuals, 0.0))
    cells = np.diff(grid)
    for index, row in enumerate(candidates):
        ordered = np.sort(residuals[index][known[index]])
        needed = threshold - mean[row, 1:]
        # share of residuals strictly above what is needed; NaN means never
        above = ordered.size - np.searchsorted(ordered, needed, side="right")
        share = np.where(np.isfinite(needed), above / ordered.size, 0.0)
        draws = cells * noise.draws_per_second / tau[index]
        survival = np.cumsum(draws * np.log1p(-np.minimum(share, 1.0 - 1e-12)))
        probability[row, 1:] = -np.expm1(survival)
    return probability


def _correlation_time(residuals: FloatArray) -> FloatArray:
    """τ = (1 + a) / (1 - a) per row: how many samples make one independent draw."""
    rho = lag1_autocorrelation(residuals)
    return (1.0 + rho) / (1.0 - rho)


def first_reaching(probability: FloatArray, level: float, grid: FloatArray) -> FloatArray:
    """Per row, the first grid distance where ``probability`` ≥ ``level`` (inf if none)."""
    hit = probability >= level
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), grid[first], np.inf)

# ruff: noqa: RUF002, RUF003 - the formulas use the Greek letters of the statistics literature
"""Reset-aware fitting for sawtooth series (log rotation, clean-ups, counter resets).

A disk that fills with logs and is rotated nightly rises steadily and then drops. A line
fitted across a drop is pulled down by it, and a line fitted to the current rise alone
predicts a crossing that the next rotation prevents. Here the window is split at its
large drops (resets): the current tooth is fitted alone, and when at least two resets show
a cycle, the tooth is only trusted until the next expected reset, after which the peaks'
own trend (the envelope) decides whether the series will ever fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoriza.forecast.paths import LinearPath, SawtoothPath
from monitoriza.forecast.robust import (
    fit_line,
    forward_fill,
    nan_mean_rows,
    nanmedian_rows,
    quantile_of_sorted,
    robust_scale_rows,
    sorted_finite_rows,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

RESET_SIGMAS = 6.0  # a reset drops by more than this many σ of the point-to-point changes
RESET_SHARE = 0.3  # ... and by more than this share of the series' 5-95 % range
OVERDUE = 1.5  # a cycle is broken when the last reset is older than this many periods
MIN_SEGMENT = 4  # fewer points since the last reset give a level but no slope ...
FULL_SEGMENT = 24  # ... nor fewer than a twelfth of the window, up to this many


@dataclass(frozen=True)
class Resets:
    """Where each series dropped: a (S, n) mask marking the first point after each drop."""

    mask: BoolArray

    @property
    def count(self) -> IntArray:
        """Resets per series."""
        count: IntArray = self.mask.sum(axis=1)
        return count

    @property
    def last(self) -> IntArray:
        """Column of the first point after the last reset (0 when there is none)."""
        width = self.mask.shape[1]
        if width == 0:
            return np.zeros(self.mask.shape[0], dtype=np.intp)
        found = self.mask.any(axis=1)
        return np.where(found, width - 1 - np.argmax(self.mask[:, ::-1], axis=1), 0)

    def prefix(self, size: int) -> Resets:
        """The resets seen by the first ``size`` points only (for a backtest origin)."""
        return Resets(self.mask[:, :size])


def find_resets(y: FloatArray) -> Resets:
    """Mark the drops d_i = y_i - y_prev (y_prev the last finite value before i) with
        d_i < -max(6·σ_d, 0.3·(q95 - q05)),
    σ_d the robust scale (1.4826·MAD) of all the changes d. The first condition says the
    drop is not noise; the second that it is large for this series (a burst that ends is a
    drop too, but a sawtooth's drop takes back most of its range).
    """
    rows, width = y.shape
    mask = np.zeros((rows, width), dtype=np.bool_)
    if width >= 3:
        filled = forward_fill(y)
        change = np.full((rows, width), np.nan)
        change[:, 1:] = np.where(np.isfinite(y[:, 1:]), y[:, 1:] - filled[:, :-1], np.nan)
        sigma = robust_scale_rows(change)
        ordered, counts = sorted_finite_rows(y)
        spread = quantile_of_sorted(ordered, counts, 0.95) - quantile_of_sorted(
            ordered, counts, 0.05)
        limit = np.maximum(RESET_SIGMAS * sigma, RESET_SHARE * spread)
        with np.errstate(invalid="ignore"):
            mask = (change < -limit[:, None]) & (limit > 0)[:, None]
    return Resets(mask)


def _previous(values: FloatArray) -> FloatArray:
    """At each column, the last finite value strictly before it (NaN if none)."""
    shifted = np.full_like(values, np.nan)
    shifted[:, 1:] = forward_fill(values)[:, :-1]
    return shifted


def since_last_reset(x: FloatArray, y: FloatArray, resets: Resets) -> LinearPath:
    """The robust line (``fit_line``) through the points since each series' last reset.

    Points before a reset describe a level the series has left: a line through them and
    the points after would extrapolate a level that no longer exists. When fewer than
    max(``MIN_SEGMENT``, min(n / 12, ``FULL_SEGMENT``)) points follow the last reset, their slope
    means nothing yet: the path is flat at their robust level, with the slope uncertainty
    of the whole window's line.
    """
    rows, width = y.shape
    columns = np.arange(width)
    since = np.where(columns[None, :] >= resets.last[:, None], y, np.nan)
    line = fit_line(x, since)
    needed = max(MIN_SEGMENT, min(width // 12, FULL_SEGMENT))
    short = (resets.count > 0) & (line.count < needed)
    level, slope = line.level.copy(), line.slope.copy()
    centre, sd_centre, sd_slope = line.centre.copy(), line.sd_centre.copy(), line.sd_slope.copy()
    if short.any():
        whole = fit_line(x, y[short])
        level[short] = nanmedian_rows(since[short])
        slope[short] = 0.0
        centre[short] = 0.0
        sd_centre[short] = whole.sd_centre * np.sqrt(
            whole.count / np.maximum(line.count[short], 1))
        sd_slope[short] = whole.sd_slope
    return LinearPath(level=level, slope=slope, decay=np.zeros(rows), centre=centre,
                      sd_centre=sd_centre, sd_slope=sd_slope)


def fit_sawtooth(x: FloatArray, y: FloatArray, resets: Resets,
                 tooth: LinearPath) -> SawtoothPath:
    """The sawtooth path of every series (only series with two resets or more have a cycle;
    the others get ``tooth`` alone).

    Tooth: ``tooth``, the line since the last reset (``since_last_reset``).
    Cycle (≥ 2 resets): period P = median time between resets; peaks p_j = the last value
    before reset j, at time τ_j; envelope slope = median of (p_j - p_(j-1)) / (τ_j - τ_(j-1)),
    envelope level = median of p_j - slope·τ_j, its scale s the robust scale of those
    residuals (floored at the tooth's), sd_centre = s / sqrt(#peaks), sd_slope =
    s / sqrt(Σ(τ_j - τ̄)²). The next reset is expected at (last reset time + P), or never if
    the last reset is more than 1.5·P old (the cycle broke: rotation stopped?).
    """
    rows = y.shape[0]
    zeros = np.zeros(rows)
    envelope = LinearPath(level=zeros, slope=zeros, decay=zeros, centre=zeros,
                          sd_centre=zeros, sd_slope=zeros)
    next_reset = np.full(rows, np.inf)
    period = np.full(rows, np.inf)
    cyclic = np.flatnonzero(resets.count >= 2)
    if cyclic.size:
        part, part_period = _cycles(x, y[cyclic], Resets(resets.mask[cyclic]),
                                    tooth.take(cyclic))
        envelope = LinearPath(**{name: _put(getattr(envelope, name), cyclic,
                                            getattr(part, name))
                                 for name in ("level", "slope", "decay", "centre",
                                              "sd_centre", "sd_slope")})
        last_time = x[resets.last[cyclic]]
        usable = np.isfinite(part_period) & (part_period > 0)
        expected = last_time + np.where(usable, part_period, 0.0)
        overdue = expected < -(OVERDUE - 1.0) * np.where(usable, part_period, 0.0)
        next_reset[cyclic] = np.where(usable & ~overdue, np.maximum(expected, 0.0), np.inf)
        period[cyclic] = np.where(usable, part_period, np.inf)
    return SawtoothPath(tooth=tooth, envelope=envelope, next_reset=next_reset, period=period)


def _put(base: FloatArray, rows: IntArray, values: FloatArray) -> FloatArray:
    """A copy of ``base`` with ``values`` at ``rows``."""
    out = base.copy()
    out[rows] = values
    return out


def _reset_events(x: FloatArray, y: FloatArray,
                  resets: Resets) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The resets of each row in time order, packed to the left of (S, k) arrays (k the
    most resets of any row, NaN after a row's own): the reset's time, the peak (the last
    finite value before the reset) and the peak's time.

    The resets are a handful of points in a row of hundreds: the medians and sums of the
    cycle run over these packed arrays instead of (S, n) arrays that are almost all NaN,
    and give the same values (a median or a mean of the finite values does not depend on
    where the NaNs were).
    """
    rows, width = y.shape
    row, column = np.nonzero(resets.mask)  # row-major: each row's resets in time order
    count = resets.mask.sum(axis=1)
    most = int(count.max()) if rows else 0
    rank = np.arange(row.size) - (np.cumsum(count) - count)[row]
    seen_at = np.where(np.isfinite(y), np.arange(width)[None, :], -1)
    np.maximum.accumulate(seen_at, axis=1, out=seen_at)
    after_first = column >= 1
    peak_at = np.where(after_first, seen_at[row, np.maximum(column - 1, 0)], -1)
    reset_time = np.full((rows, most), np.nan)
    peak = np.full((rows, most), np.nan)
    peak_time = np.full((rows, most), np.nan)
    reset_time[row, rank] = x[column]
    peak[row, rank] = np.where(peak_at >= 0, y[row, np.maximum(peak_at, 0)], np.nan)
    peak_time[row, rank] = np.where(after_first, x[np.maximum(peak_at, 0)], np.nan)
    return reset_time, peak, peak_time


def _cycles(x: FloatArray, y: FloatArray, resets: Resets,
            tooth: LinearPath) -> tuple[LinearPath, FloatArray]:
    """The peak envelope and the period of series with at least two resets."""
    rows = y.shape[0]
    reset_time, peak, peak_time = _reset_events(x, y, resets)
    with np.errstate(invalid="ignore", divide="ignore"):
        period = nanmedian_rows(reset_time - _previous(reset_time))
        rise = (peak - _previous(peak)) / (peak_time - _previous(peak_time))
    env_slope = nanmedian_rows(np.where(np.isfinite(rise), rise, np.nan))
    env_slope = np.where(np.isfinite(env_slope), env_slope, 0.0)
    offsets = peak - env_slope[:, None] * peak_time
    env_level = nanmedian_rows(offsets)
    count = np.maximum(resets.count, 1)
    env_scale = robust_scale_rows(offsets)
    env_scale = np.fmax(np.where(np.isfinite(env_scale), env_scale, 0.0),
                        tooth.sd_centre * np.sqrt(count))
    centre = nan_mean_rows(peak_time)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    spread = np.sqrt(np.where(np.isfinite(peak_time),
                              (peak_time - centre[:, None]) ** 2, 0.0).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        env_sd_slope = np.where(spread > 0, env_scale / np.where(spread > 0, spread, 1.0),
                                0.0)
    envelope = LinearPath(level=env_level, slope=env_slope, decay=np.zeros(rows),
                          centre=centre, sd_centre=env_scale / np.sqrt(count),
                          sd_slope=env_sd_slope)
    return envelope, period

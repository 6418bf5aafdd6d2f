"""Seasonal adjustment for daily cycles: subtract a daily profile, fit the trend, add it back.

CPU, traffic and backup-driven disk usage rise every morning and fall every night; a trend
fitted to a morning extrapolates the morning. With two days of history or more, the
profile of each hour of the day can be told apart from the trend, and the crossing time is
found on trend + profile, so the forecast knows the evening will come.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from monitoriza.forecast.paths import DAY, LinearPath, SeasonalPath, daily_profile_at
from monitoriza.forecast.robust import fit_line, nan_mean_rows, nanmedian_rows

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

BINS = 24  # hourly bins
MIN_DAYS = 2.0  # history needed before a daily profile is estimated


def seasonal_ready(x: FloatArray, y: FloatArray) -> BoolArray:
    """Series whose finite points span at least two days."""
    finite = np.isfinite(y)
    if x.size == 0:
        return np.zeros(y.shape[0], dtype=np.bool_)
    first = np.where(finite, x[None, :], np.inf).min(axis=1)
    last = np.where(finite, x[None, :], -np.inf).max(axis=1)
    ready: BoolArray = (last - first) >= MIN_DAYS * DAY
    return ready


def fit_seasonal(x: FloatArray, y: FloatArray, origin: float) -> SeasonalPath:
    """Trend + daily profile, in three steps:

    1. the least-squares line through the raw series, and its residuals r (only to take the
       trend out before the hourly medians, which are robust themselves);
    2. the profile: for each hour of the day b, p_b = median of r in that hour (0 for an
       hour with fewer than two points), then centred, p_b - mean(p);
    3. the robust line through y - p(time of day), the profile interpolated between hour
       centres; the path is that line plus p at the forecast times.
    Times of day are those of ``origin + x`` (the absolute times, when the caller gives
    them).
    """
    first = fit_line(x, y, robust=False)
    residual = y - first.level[:, None] - first.slope[:, None] * x[None, :]
    hour = (np.mod(origin + x, DAY) // (DAY / BINS)).astype(np.intp)
    by_hour = _hourly_blocks(residual, hour)
    enough = np.isfinite(by_hour).sum(axis=2) >= 2
    rows = y.shape[0]
    medians = nanmedian_rows(by_hour.reshape(rows * BINS, -1)).reshape(rows, BINS)
    profile = np.where(enough, medians, 0.0)
    profile = np.where(np.isfinite(profile), profile, 0.0)
    profile -= nan_mean_rows(profile)[:, None]
    adjusted = y - daily_profile_at(profile, origin + x)
    line = fit_line(x, adjusted)
    trend = LinearPath(level=line.level, slope=line.slope, decay=np.zeros(y.shape[0]),
                       centre=line.centre, sd_centre=line.sd_centre, sd_slope=line.sd_slope)
    return SeasonalPath(trend=trend, profile=profile, origin=origin)


def _hourly_blocks(residual: FloatArray, hour: npt.NDArray[np.intp]) -> FloatArray:
    """(S, BINS, m): each series' values grouped by hour of day, NaN-padded to the m points
    of the fullest hour, so that all hourly medians are one ``nanmedian_rows`` call (the
    same values as one call per hour, with one pass instead of 24)."""
    # (A time a rounding step before midnight can fall in hour 24: it belongs to no hour.)
    order = np.flatnonzero((hour >= 0) & (hour < BINS))
    order = order[np.argsort(hour[order], kind="stable")]
    sizes = np.bincount(hour[order], minlength=BINS)
    most = int(sizes.max()) if order.size else 0
    slot = np.arange(order.size) - (np.cumsum(sizes) - sizes)[hour[order]]
    columns = np.full((BINS, most), -1, dtype=np.intp)
    columns[hour[order], slot] = order
    padded = np.concatenate([residual, np.full((residual.shape[0], 1), np.nan)], axis=1)
    return padded[:, columns]

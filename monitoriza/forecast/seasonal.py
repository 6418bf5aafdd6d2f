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
    profile = np.zeros((y.shape[0], BINS))
    for b in range(BINS):
        columns = np.flatnonzero(hour == b)
        if columns.size < 2:
            continue
        part = residual[:, columns]
        enough = np.isfinite(part).sum(axis=1) >= 2
        profile[:, b] = np.where(enough, nanmedian_rows(part), 0.0)
    profile = np.where(np.isfinite(profile), profile, 0.0)
    profile -= nan_mean_rows(profile)[:, None]
    adjusted = y - daily_profile_at(profile, origin + x)
    line = fit_line(x, adjusted)
    trend = LinearPath(level=line.level, slope=line.slope, decay=np.zeros(y.shape[0]),
                       centre=line.centre, sd_centre=line.sd_centre, sd_slope=line.sd_slope)
    return SeasonalPath(trend=trend, profile=profile, origin=origin)

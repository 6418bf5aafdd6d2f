# ruff: noqa: RUF002, RUF003 - the formulas use the Greek letters of the statistics literature
"""Row-wise robust statistics and the robust trend line, vectorised across series.

Every function takes a (S, n) matrix, one series per row with NaN for missing points, and
answers per row. NumPy's own ``nanmedian`` falls back to a Python loop over rows when NaNs
are present and warns on empty rows; here a row without data gives NaN, silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

MAD_TO_SIGMA = 1.4826  # 1 / Φ⁻¹(0.75): the MAD of a normal sample times this is its σ
HUBER_C = 1.345  # Huber's tuning constant: 95 % efficiency when the noise is normal
HUBER_STEPS = 2
MAX_AUTOCORRELATION = 0.95


def sorted_rows(a: FloatArray) -> tuple[FloatArray, IntArray]:
    """Each row sorted with its NaNs last, and the number of finite values per row."""
    return np.sort(a, axis=1), np.sum(~np.isnan(a), axis=1)


def quantile_of_sorted(ordered: FloatArray, counts: IntArray, q: float) -> FloatArray:
    """The q-quantile of each sorted row (linear interpolation), NaN for empty rows."""
    position = q * np.maximum(counts - 1, 0)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, np.maximum(counts - 1, 0))
    low = np.take_along_axis(ordered, below[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, above[:, None], axis=1)[:, 0]
    value = low + (position - below) * (high - low) if ordered.shape[1] else low
    return np.where(counts > 0, value, np.nan)


def nanmedian_rows(a: FloatArray) -> FloatArray:
    """The median of the finite values of each row, NaN for a row without any.

    A sort per row costs O(n log n); ``np.partition`` is linear but needs the same
    positions in every row, and rows have different numbers of gaps. So a row with k finite
    values and m = n - k gaps gets ⌈m/2⌉ of them as -inf and ⌊m/2⌋ as +inf: its finite
    values keep their order, shifted by a = ⌈m/2⌉, and the two middle ones sit at
    (k - 1)//2 + a and k//2 + a, which are always among (n - 1)//2, n//2 and (n + 1)//2.
    """
    rows, width = a.shape
    if rows == 0 or width == 0:
        return np.full(rows, np.nan)
    gap = ~np.isfinite(a)
    if not gap.any():
        middle = [(width - 1) // 2, width // 2]
        part = np.partition(a, middle, axis=1)
        return 0.5 * (part[:, middle[0]] + part[:, middle[1]])
    nth_gap = np.cumsum(gap, axis=1, dtype=np.int32)
    filled = np.where(gap, np.where(nth_gap & 1, -np.inf, np.inf), a)
    candidates = sorted({(width - 1) // 2, width // 2, min((width + 1) // 2, width - 1)})
    part = np.partition(filled, candidates, axis=1)
    count = width - nth_gap[:, -1]
    shift = (nth_gap[:, -1] + 1) // 2
    low = np.take_along_axis(part, ((count - 1) // 2 + shift)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(part, np.minimum(count // 2 + shift, width - 1)[:, None],
                              axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        median = 0.5 * (low + high)
    return np.where(count > 0, median, np.nan)


def robust_scale_rows(a: FloatArray) -> FloatArray:
    """σ estimated from the median absolute deviation: 1.4826 · median|a - median(a)|."""
    centre = nanmedian_rows(a)
    return MAD_TO_SIGMA * nanmedian_rows(np.abs(a - centre[:, None]))


def nan_mean_rows(a: FloatArray) -> FloatArray:
    """The mean of the finite values of each row, NaN for a row without any, no warning."""
    finite = np.isfinite(a)
    count = finite.sum(axis=1)
    total = np.where(finite, a, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def finite_span(finite: BoolArray) -> tuple[IntArray, IntArray]:
    """Index of the first and of the last finite value of each row (0 and -1 if none)."""
    width = finite.shape[1]
    first = np.argmax(finite, axis=1)
    last = width - 1 - np.argmax(finite[:, ::-1], axis=1)
    none = ~finite.any(axis=1)
    return np.where(none, 0, first), np.where(none, -1, last)


def forward_fill(y: FloatArray) -> FloatArray:
    """Each NaN replaced by the last finite value before it (NaN before the first one)."""
    finite = ~np.isnan(y)
    index = np.where(finite, np.arange(y.shape[1]), -1)
    np.maximum.accumulate(index, axis=1, out=index)
    filled = np.take_along_axis(y, np.maximum(index, 0), axis=1)
    return np.where(index >= 0, filled, np.nan)


def lag1_autocorrelation(r: FloatArray) -> FloatArray:
    """ρ̂ = Σ r_t r_(t-1) / Σ r_t² (missing points as 0), clipped to [0, 0.95].

    Negative values are clipped to 0: they would narrow the interval, and at these sample
    sizes they are mostly noise.
    """
    if r.shape[1] < 2:
        return np.zeros(r.shape[0])
    cross = np.einsum("ij,ij->i", r[:, 1:], r[:, :-1])
    square = np.einsum("ij,ij->i", r, r)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(square > 0, cross / np.where(square > 0, square, 1.0), 0.0)
    return np.clip(rho, 0.0, MAX_AUTOCORRELATION)


@dataclass(frozen=True)
class Line:
    """A fitted line y = level + slope · x per series (x in seconds, 0 = the origin).

    ``centre`` is the weighted mean time of the data and ``sd_centre`` the standard error of
    the line there; ``sd_slope`` is the slope's. The standard error of the line at x is then
    sqrt(sd_centre² + sd_slope² · (x - centre)²): the usual regression formula.
    """

    level: FloatArray
    slope: FloatArray
    centre: FloatArray
    sd_centre: FloatArray
    sd_slope: FloatArray
    scale: FloatArray  # robust σ of the residuals
    count: IntArray  # finite points used


def pair_slopes_median(x: FloatArray, y: FloatArray, first: IntArray,
                       last: IntArray) -> FloatArray:
    """Theil–Sen on a subsample: the median slope of pairs half the data span apart.

    For a row whose finite data spans indices [f, l], with L = (l - f + 1) // 2, the pairs
    are (i, i + L) for i in [f, f + L): every point is in one pair at most, so a spike moves
    at most one slope of ~n/2 and the median ignores it (breakdown point near 50 % of the
    pairs), at O(n) cost instead of Theil–Sen's O(n²) pairs. Pairs with a NaN are skipped.
    """
    rows, width = y.shape
    lag = np.maximum((last - first + 1) // 2, 1)
    most = int(lag.max()) if rows else 0
    if most == 0 or width < 2:
        return np.full(rows, np.nan)
    offsets = np.arange(most)
    start = first[:, None] + offsets[None, :]
    end = start + lag[:, None]
    valid = (offsets[None, :] < lag[:, None]) & (end <= last[:, None])
    start = np.where(valid, start, 0)
    end = np.where(valid, end, 0)
    rise = np.take_along_axis(y, end, axis=1) - np.take_along_axis(y, start, axis=1)
    run = x[end] - x[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = np.where(valid & (run > 0), rise / np.where(run > 0, run, 1.0), np.nan)
    return nanmedian_rows(slopes)


def _residuals(values: FloatArray, in_data: FloatArray, level: FloatArray,
               slope: FloatArray, u: FloatArray) -> FloatArray:
    """values - (level + slope·u), 0 at missing points."""
    residual = values - level[:, None]
    residual -= slope[:, None] * u[None, :]
    residual *= in_data
    return residual


def _weighted_line(weights: FloatArray, values: FloatArray,
                   u: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(level at u = 0, slope, weighted mean ū) of the weighted least-squares line, from
    the sums Σw, Σwu, Σwu², Σwy, Σwuy (matrix products, no (S, n) temporaries but w·y)."""
    total = weights.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    sum_u = weights @ u
    sum_uu = weights @ (u * u)
    weighted_y = weights * values
    sum_y = weighted_y.sum(axis=1)
    sum_uy = weighted_y @ u
    centre = sum_u / safe
    mean_y = sum_y / safe
    sxx = sum_uu - centre * sum_u
    sxy = sum_uy - centre * sum_y
    slope = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    return mean_y - slope * centre, slope, centre


def fit_line(x: FloatArray, y: FloatArray, *, robust: bool = True) -> Line:
    """A trend line per row: Huber regression started from Theil–Sen, or plain OLS.

    Robust: the starting slope is ``pair_slopes_median``, the intercept the median of
    y - slope·x, σ = 1.4826·median|r| of its residuals r (their median is 0 by
    construction, so this is the MAD); then ``HUBER_STEPS`` steps of iteratively reweighted
    least squares with Huber weights w = min(1, c·σ / |r|), c = 1.345, each step the
    weighted least-squares solution
        x̄ = Σwx / Σw,  ȳ = Σwy / Σw,  slope = Σw(x-x̄)(y-ȳ) / Σw(x-x̄)²,  level = ȳ - slope·x̄.
    A spike of any height gets weight c·σ / |r| and so moves the line by a bounded amount.
    Standard errors use the sandwich form for M-estimators, inflated for autocorrelated
    residuals (a trend fitted through wandering data is less certain than through white
    noise): with ψ(r) = clip(r, ±c·σ), σ_ψ = sqrt(mean ψ²) / mean ψ′ and
    f = sqrt((1 + ρ) / (1 - ρ)) (ρ = lag-1 autocorrelation of ψ):
        sd_slope = f·σ_ψ / sqrt(Σ(x - x̄)²),   sd_centre = f·σ_ψ / sqrt(n).
    OLS (``robust=False``) is the same with every weight 1 and σ_ψ the residual RMS
    (with n - 2 degrees of freedom).
    """
    finite = np.isfinite(y)
    count = finite.sum(axis=1)
    values = np.where(finite, y, 0.0)
    in_data = finite.astype(np.float64)
    shift = float(x.mean()) if x.size else 0.0  # sums of powers of x stay well conditioned
    u = x - shift
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if robust:
            first, last = finite_span(finite)
            slope = pair_slopes_median(x, np.where(finite, y, np.nan), first, last)
            slope = np.where(np.isfinite(slope), slope, 0.0)
            level = nanmedian_rows(np.where(finite, y - slope[:, None] * u[None, :], np.nan))
            residual = _residuals(values, in_data, level, slope, u)
            scale = MAD_TO_SIGMA * nanmedian_rows(np.where(finite, np.abs(residual), np.nan))
            scale = np.where(np.isfinite(scale), scale, 0.0)
            # A floor far below any real spread: with σ = 0 (a flat series) rounding-level
            # residuals must keep their weight while a spike still loses all of its.
            typical = np.abs(residual).sum(axis=1) / np.maximum(count, 1)
            floor = 1e-9 * (np.abs(np.nan_to_num(level)) + typical) + 1e-300
            limit = HUBER_C * np.maximum(scale, floor)[:, None]
        weights = in_data
        for _ in range(HUBER_STEPS if robust else 1):
            if robust:
                size = np.abs(residual)
                weights = np.where(size > limit, limit / np.where(size > 0, size, 1.0),
                                   in_data)
            level, slope, centre = _weighted_line(weights, values, u)
            residual = _residuals(values, in_data, level, slope, u)
        if robust:
            psi = np.clip(residual, -limit, limit)
            inside = (finite & (np.abs(residual) <= limit)).sum(axis=1)
            share = inside / np.maximum(count, 1)
            sigma = np.sqrt(np.einsum("ij,ij->i", psi, psi) / np.maximum(count, 1))
            sigma = sigma / np.where(share > 0, share, 1.0)
        else:
            psi = residual
            sigma = np.sqrt(np.einsum("ij,ij->i", psi, psi) / np.maximum(count - 2, 1))
            scale = sigma
        rho = lag1_autocorrelation(psi)
        inflation = np.sqrt((1.0 + rho) / (1.0 - rho))
        spread = np.sqrt(np.maximum(
            in_data @ (u * u) - 2.0 * centre * (in_data @ u) + centre**2 * count, 0.0))
        sd_slope = np.where(spread > 0, inflation * sigma / np.where(spread > 0, spread, 1.0),
                            0.0)
        sd_centre = inflation * sigma / np.sqrt(np.maximum(count, 1))
    level = level - slope * shift
    centre = centre + shift
    empty = count == 0
    return Line(level=np.where(empty, np.nan, level), slope=np.where(empty, 0.0, slope),
                centre=centre, sd_centre=np.where(np.isfinite(sd_centre), sd_centre, 0.0),
                sd_slope=np.where(np.isfinite(sd_slope), sd_slope, 0.0),
                scale=np.where(np.isfinite(scale), scale, 0.0), count=count)

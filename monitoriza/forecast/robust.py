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
SORT_DEVIATIONS_UP_TO = 16_384  # values in a block below which a sort beats a bisection


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

    Each row is sorted (NaN last) and the median read at the positions its own count of
    finite values gives. A sort looks costlier than ``np.partition``, but NumPy 2 sorts
    float rows with SIMD code, and a partition needs the same positions in every row, which
    rows with different numbers of gaps only get by rewriting their gaps as ±inf first: on
    (1024, 720) blocks with gaps the sort is about 30 % faster, and the result is the same.
    """
    if a.shape[0] == 0 or a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    return median_of_sorted(*sorted_finite_rows(a))


def robust_scale_rows(a: FloatArray) -> FloatArray:
    """σ estimated from the median absolute deviation: 1.4826 · median|a - median(a)|."""
    if a.shape[0] == 0 or a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    ordered, count = sorted_finite_rows(a)
    return MAD_TO_SIGMA * deviation_median_of_sorted(ordered, count,
                                                     median_of_sorted(ordered, count))


def sorted_finite_rows(a: FloatArray) -> tuple[FloatArray, IntArray]:
    """Each row sorted with its non-finite values last (as NaN), and its count of finite
    values."""
    finite = np.isfinite(a)
    count = finite.sum(axis=1)
    if np.isinf(a).any():  # ±inf would sort among the values: make them gaps like NaN
        a = np.where(finite, a, np.nan)
    return np.sort(a, axis=1), count


def median_of_sorted(ordered: FloatArray, count: IntArray) -> FloatArray:
    """The median of the first ``count`` values of each sorted row (NaN when count is 0)."""
    if ordered.shape[1] == 0:
        return np.full(ordered.shape[0], np.nan)
    rows_index = np.arange(ordered.shape[0])
    low = ordered[rows_index, np.maximum(count - 1, 0) // 2]
    high = ordered[rows_index, np.minimum(count // 2, ordered.shape[1] - 1)]
    with np.errstate(invalid="ignore"):
        median = 0.5 * (low + high)
    return np.where(count > 0, median, np.nan)


def deviation_median_of_sorted(ordered: FloatArray, count: IntArray,
                               centre: FloatArray) -> FloatArray:
    """median |v - centre| over the first ``count`` values v of each sorted row, where
    ``centre`` is their median (NaN when count is 0), without sorting the deviations.

    The values below the median, read right to left, give the deviations centre - v in
    ascending order, and those from the median on give v - centre in ascending order: the
    median deviation is found in these two sorted runs (``_kth_of_two_runs``) in
    O(log n) steps per row, and is the same number as sorting |v - centre| would give.
    Small blocks sort the deviations all the same: there the steps' fixed cost is larger.
    """
    if ordered.shape[1] == 0:
        return np.full(ordered.shape[0], np.nan)
    if ordered.size <= SORT_DEVIATIONS_UP_TO:
        return median_of_sorted(*sorted_finite_rows(np.abs(ordered - centre[:, None])))
    split = count // 2  # ordered[:split] ≤ centre ≤ ordered[split:count]
    low = _kth_of_two_runs(ordered, count, centre, split, np.maximum(count - 1, 0) // 2)
    high = _kth_of_two_runs(ordered, count, centre, split, count // 2)
    with np.errstate(invalid="ignore"):
        deviation = 0.5 * (low + high)
    return np.where(count > 0, deviation, np.nan)


def _kth_of_two_runs(ordered: FloatArray, count: IntArray, centre: FloatArray,
                     split: IntArray, k: IntArray) -> FloatArray:
    """The k-th smallest (from 0) of |v - centre| over each row's first ``count`` values.

    With A_j = centre - ordered[split - 1 - j] and B_j = ordered[split + j] - centre (both
    ascending), the k + 1 smallest deviations are A_0..A_(a-1) and B_0..B_(k-a) for the
    smallest a with A_a ≥ B_(k-a) (or a at its upper bound), found by bisection on every
    row at once; the k-th is then max(A_(a-1), B_(k-a)). (Positions are read from the
    flattened rows; a row whose bisection has ended may read a neighbour's value, which
    is never used.)
    """
    flat = ordered.ravel()
    start = np.arange(ordered.shape[0]) * ordered.shape[1]
    below = start + split - 1  # A_j is at below - j
    above = start + split + k  # B_(k-j) is at above - j
    lower = np.maximum(k + 1 - (count - split), 0)  # B has only count - split values
    upper = np.minimum(k + 1, split)
    with np.errstate(invalid="ignore"):
        active = lower < upper
        while active.any():
            middle = (lower + upper) // 2
            enough = (centre - flat.take(below - middle, mode="clip")
                      >= flat.take(above - middle, mode="clip") - centre)
            upper = np.where(active & enough, middle, upper)
            lower = np.where(active & ~enough, middle + 1, lower)
            active = lower < upper
        from_a = np.where(lower > 0, centre - flat.take(below - lower + 1, mode="clip"),
                          -np.inf)
        from_b = np.where(k - lower >= 0, flat.take(above - lower, mode="clip") - centre,
                          -np.inf)
        return np.maximum(from_a, from_b)


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
    if rows == 0 or width < 2:
        return np.full(rows, np.nan)
    # Rows with data at both ends (most of them) share L = n // 2: their pairs are two
    # slices of y. The others (a late start, data since a reset) are gathered one by one.
    median = np.empty(rows)
    whole = (first == 0) & (last == width - 1)
    spanning = np.flatnonzero(whole)
    if spanning.size:
        half = width // 2
        run = x[half:2 * half] - x[:half]
        rise = y[spanning, half:2 * half] - y[spanning, :half]
        with np.errstate(invalid="ignore", divide="ignore"):
            slopes = np.where(run > 0, rise / np.where(run > 0, run, 1.0), np.nan)
        median[spanning] = nanmedian_rows(slopes)
    partial = np.flatnonzero(~whole)
    if partial.size:
        median[partial] = nanmedian_rows(_gathered_pair_slopes(x, y[partial], first[partial],
                                                               last[partial]))
    return median


def _gathered_pair_slopes(x: FloatArray, y: FloatArray, first: IntArray,
                          last: IntArray) -> FloatArray:
    """The slopes of ``pair_slopes_median``'s pairs, NaN-padded to the longest row's."""
    lag = np.maximum((last - first + 1) // 2, 1)
    most = int(lag.max())
    offsets = np.arange(most)
    start = first[:, None] + offsets[None, :]
    end = start + lag[:, None]
    valid = (offsets[None, :] < lag[:, None]) & (end <= last[:, None])
    start = np.where(valid, start, 0)
    end = np.where(valid, end, 0)
    row_start = (np.arange(y.shape[0]) * y.shape[1])[:, None]
    flat = np.ascontiguousarray(y).ravel()  # one flat gather is cheaper than a 2-D one
    rise = flat.take(row_start + end) - flat.take(row_start + start)
    run = x.take(end) - x.take(start)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes: FloatArray = np.where(valid & (run > 0), rise / np.where(run > 0, run, 1.0),
                                      np.nan)
    return slopes


def _residuals(values: FloatArray, in_data: FloatArray, level: FloatArray,
               slope: FloatArray, u: FloatArray, *, out: FloatArray | None = None,
               scratch: FloatArray | None = None) -> FloatArray:
    """values - (level + slope·u), 0 at missing points (into ``out``; ``scratch`` is
    overwritten: (S, n) buffers that a caller fitting many times allocates once)."""
    residual = np.subtract(values, level[:, None], out=out)
    residual -= np.multiply(slope[:, None], u[None, :], out=scratch)
    residual *= in_data
    return residual


def _row_dot(a: FloatArray, v: FloatArray) -> FloatArray:
    """a @ v, each row of a times the vector v, without BLAS.

    ``a @ v`` goes to OpenBLAS, which splits even a (1024, 720) product over its own
    threads; with the forecast's chunks already running in parallel threads on a busy
    2-core machine, those threads wait on each other and the products took most of a cycle
    (a cycle used twice the CPU time it uses with one BLAS thread). ``einsum`` computes the
    same sums in the calling thread (rounded in another order: the last bits can differ).
    """
    product: FloatArray = np.einsum("ij,j->i", a, v)
    return product


def _weighted_line(weights: FloatArray, values: FloatArray, u: FloatArray,
                   scratch: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(level at u = 0, slope, weighted mean ū) of the weighted least-squares line, from
    the sums Σw, Σwu, Σwu², Σwy, Σwuy (row-times-vector products; w·y goes into the (S, n)
    buffer ``scratch``)."""
    total = weights.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    sum_u = _row_dot(weights, u)
    sum_uu = _row_dot(weights, u * u)
    weighted_y = np.multiply(weights, values, out=scratch)
    sum_y = weighted_y.sum(axis=1)
    sum_uy = _row_dot(weighted_y, u)
    centre = sum_u / safe
    mean_y = sum_y / safe
    sxx = sum_uu - centre * sum_u
    sxy = sum_uy - centre * sum_y
    slope = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    return mean_y - slope * centre, slope, centre


def fit_line(x: FloatArray, y: FloatArray, *, robust: bool = True) -> Line:
    """A trend line per row: Huber regression started from Theil–Sen, or plain OLS.

    Robust: the starting slope is ``pair_slopes_median``, the intercept the median of
    z = y - slope·x, σ = 1.4826·median|z - intercept| (the MAD of z: the residuals r of
    this line have median 0); then ``HUBER_STEPS`` steps of iteratively reweighted
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
    # (S, n) buffers reused by every step below: fresh arrays of this size cost as much in
    # page faults as the arithmetic that fills them.
    residual = np.empty_like(values)
    scratch = np.empty_like(values)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if robust:
            first, last = finite_span(finite)
            slope = pair_slopes_median(x, np.where(finite, y, np.nan), first, last)
            slope = np.where(np.isfinite(slope), slope, 0.0)
            # level = median of z = y - slope·u, σ = 1.4826·median|z - level|: both from
            # one sort of z.
            z = np.subtract(y, np.multiply(slope[:, None], u[None, :], out=scratch),
                            out=residual)
            np.copyto(z, np.nan, where=~finite)
            ordered, z_count = sorted_finite_rows(z)
            level = median_of_sorted(ordered, z_count)
            residual = _residuals(values, in_data, level, slope, u, out=residual,
                                   scratch=scratch)
            scale = MAD_TO_SIGMA * deviation_median_of_sorted(ordered, z_count, level)
            scale = np.where(np.isfinite(scale), scale, 0.0)
            # A floor far below any real spread: with σ = 0 (a flat series) rounding-level
            # residuals must keep their weight while a spike still loses all of its.
            typical = np.abs(residual, out=scratch).sum(axis=1) / np.maximum(count, 1)
            floor = 1e-9 * (np.abs(np.nan_to_num(level)) + typical) + 1e-300
            limit = HUBER_C * np.maximum(scale, floor)[:, None]
        weights = np.empty_like(values) if robust else in_data
        for _ in range(HUBER_STEPS if robust else 1):
            if robust:
                # min(1, c·σ/|r|) at data points, 0 elsewhere (r = 0 there, so c·σ/|r| =
                # inf); the same weights as where(|r| > c·σ, c·σ/|r|, 1) in fewer passes.
                size = np.abs(residual, out=scratch)
                np.fmin(in_data, np.divide(limit, size, out=size), out=weights)
            level, slope, centre = _weighted_line(weights, values, u, scratch)
            residual = _residuals(values, in_data, level, slope, u, out=residual,
                                   scratch=scratch)
        if robust:
            psi = np.minimum(np.maximum(residual, -limit, out=scratch), limit, out=scratch)
            inside = (finite & (np.abs(residual, out=weights) <= limit)).sum(axis=1)
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
            _row_dot(in_data, u * u) - 2.0 * centre * _row_dot(in_data, u)
            + centre**2 * count, 0.0))
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

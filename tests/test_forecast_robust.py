# ruff: noqa: RUF002 - the formulas use the Greek letters of the statistics literature
"""The fast row-wise statistics give the numbers of the plain definitions they replace.

Every vectorised shortcut of the forecast engine (a sort instead of a partition, the median
deviation found by bisection, pairs taken as slices, hourly medians in one call, resets
packed to the left, Holt's loop in place) is checked here against a slow reference written
from the definition, on blocks with gaps, ties and infinities: equal to the last bit where
the shortcut does the same arithmetic, within 1e-12 where it only sums in another order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from monitoriza.forecast import robust
from monitoriza.forecast.robust import (
    deviation_median_of_sorted,
    median_of_sorted,
    nanmedian_rows,
    pair_slopes_median,
    robust_scale_rows,
    sorted_finite_rows,
)
from monitoriza.forecast.sawtooth import Resets, find_resets, fit_sawtooth, since_last_reset
from monitoriza.forecast.seasonal import BINS, _hourly_blocks
from monitoriza.forecast.smoothing import CLIP, DEFAULT_SETTINGS, WARM_UP, run_holt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

STEP = 300.0


def ragged_block(rows: int, width: int, seed: int) -> FloatArray:
    """Rows of normal, integer (many ties) and Cauchy values with random shares of NaN, a few
    ±inf, one row without any finite value and one with a single one."""
    rng = np.random.default_rng(seed)
    block = rng.normal(size=(rows, width))
    block[1::3] = rng.integers(0, 4, size=block[1::3].shape)
    block[2::3] = rng.standard_cauchy(size=block[2::3].shape)
    gaps = rng.random((rows, width)) < rng.random((rows, 1))
    block[gaps] = np.nan
    block[rng.random((rows, width)) < 0.02] = np.inf
    block[rng.random((rows, width)) < 0.02] = -np.inf
    block[0] = np.nan
    block[3] = np.nan
    block[3, width // 3] = 5.0
    return block


def reference_median_and_mad(block: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per row, np.median of the finite values and of their absolute deviations from it."""
    medians, deviations = [], []
    for row in block:
        values = row[np.isfinite(row)]
        if values.size == 0:
            medians.append(np.nan)
            deviations.append(np.nan)
            continue
        centre = np.median(values)
        medians.append(centre)
        deviations.append(np.median(np.abs(values - centre)))
    return np.array(medians), np.array(deviations)


@pytest.mark.parametrize(("rows", "width"), [(30, 1), (30, 2), (40, 37), (64, 700)])
def test_median_and_scale_equal_the_definition(rows: int, width: int) -> None:
    """Medians and MADs to the last bit, on blocks small enough for the deviations to be
    sorted and (64 × 700) large enough for the bisection."""
    block = ragged_block(rows, width, seed=rows + width)
    median, deviation = reference_median_and_mad(block)
    assert np.array_equal(nanmedian_rows(block), median, equal_nan=True)
    assert np.array_equal(robust_scale_rows(block), robust.MAD_TO_SIGMA * deviation,
                          equal_nan=True)


def test_bisection_and_sort_of_deviations_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The median deviation by bisection in the two sorted runs is the one a sort of the
    deviations gives, on every row of blocks of every shape, ties included."""
    for seed, (rows, width) in enumerate([(5, 1), (7, 2), (9, 3), (20, 40), (50, 301)]):
        block = ragged_block(rows, width, seed=seed)
        ordered, count = sorted_finite_rows(block)
        centre = median_of_sorted(ordered, count)
        monkeypatch.setattr(robust, "SORT_DEVIATIONS_UP_TO", 0)
        bisected = deviation_median_of_sorted(ordered, count, centre)
        monkeypatch.setattr(robust, "SORT_DEVIATIONS_UP_TO", 10**12)
        sorted_ = deviation_median_of_sorted(ordered, count, centre)
        assert np.array_equal(bisected, sorted_, equal_nan=True), (rows, width)
        assert np.array_equal(bisected, reference_median_and_mad(block)[1], equal_nan=True)


def test_empty_blocks_give_nan_per_row() -> None:
    """No columns: one NaN per row; no rows: an empty answer."""
    assert np.isnan(nanmedian_rows(np.zeros((3, 0)))).all()
    assert np.isnan(robust_scale_rows(np.zeros((3, 0)))).all()
    assert nanmedian_rows(np.zeros((0, 4))).shape == (0,)


def reference_pair_slopes_median(x: FloatArray, row: FloatArray) -> float:
    """The median slope of the pairs (i, i + L), i in [f, f + L), L = (l - f + 1) // 2, for
    the finite span [f, l] of one row, pairs with a NaN skipped."""
    finite = np.flatnonzero(np.isfinite(row))
    if finite.size == 0:
        return float("nan")
    first, last = int(finite[0]), int(finite[-1])
    lag = max((last - first + 1) // 2, 1)
    slopes = [(row[i + lag] - row[i]) / (x[i + lag] - x[i])
              for i in range(first, first + lag) if i + lag <= last]
    kept = np.array([s for s in slopes if np.isfinite(s)])
    return float(np.median(kept)) if kept.size else float("nan")


def test_pair_slopes_of_spanning_and_partial_rows_equal_the_definition() -> None:
    """Rows with data at both ends (pairs as two slices) and rows starting late or ending
    early (pairs gathered one by one) both give the median of their own pairs."""
    rng = np.random.default_rng(3)
    width = 101
    x = STEP * np.arange(width, dtype=np.float64) - STEP * width
    y = np.cumsum(rng.normal(size=(12, width)), axis=1)
    y[rng.random(y.shape) < 0.05] = np.nan
    y[:, 0] = y[:, -1] = 1.0  # rows 0-5 span the whole window ...
    y[6, :40] = np.nan  # ... and these do not
    y[7, 70:] = np.nan
    y[8, :10] = np.nan
    y[8, 90:] = np.nan
    y[9] = np.nan
    y[10, :-1] = np.nan
    finite = np.isfinite(y)
    first = np.where(finite.any(axis=1), np.argmax(finite, axis=1), 0)
    last = np.where(finite.any(axis=1), width - 1 - np.argmax(finite[:, ::-1], axis=1), -1)
    fast = pair_slopes_median(x, y, first, last)
    expected = np.array([reference_pair_slopes_median(x, row) for row in y])
    assert np.array_equal(fast, expected, equal_nan=True)


def reference_holt(x: FloatArray, y: FloatArray, snapshots: Sequence[int],
                   resets: BoolArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Holt's recursion as ``run_holt`` documents it, written step by step with fresh
    arrays: (kept level, kept slope, Σ|ẽ| after the warm-up, count of those errors)."""
    settings = DEFAULT_SETTINGS
    alpha = settings.alpha[:, None]
    trend = (settings.alpha * settings.beta)[:, None]
    decay = 1.0 / settings.persistence
    damped = decay > 0
    step = float(np.median(np.diff(x)))
    sigma = robust_scale_rows(np.diff(robust.forward_fill(y), axis=1)) / np.sqrt(2.0)
    limit = CLIP * np.where(np.isfinite(sigma), sigma, 0.0)[None, :]
    level = np.full((alpha.size, y.shape[0]), np.nan)
    slope = np.zeros_like(level)
    abs_error = np.zeros_like(level)
    counted = np.zeros_like(level)
    kept_level = np.full((len(snapshots), *level.shape), np.nan)
    kept_slope = np.zeros_like(kept_level)
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(y.shape[1]):
            observed = y[:, i][None, :]
            if i > 0:
                gap = x[i] - x[i - 1]
                carry = np.where(damped, -np.expm1(-gap * decay) / np.where(damped, decay, 1.0),
                                 gap)[:, None]
                level = level + slope * carry
                slope = slope * np.exp(-gap * decay)[:, None]
            error = observed - level
            seen = np.isfinite(error)
            clipped = np.clip(np.where(seen, error, 0.0), -limit, limit)
            level = np.where(seen, level + alpha * clipped,
                             np.where(np.isnan(level), observed, level))
            slope = slope + trend * clipped / step
            level = np.where(resets[:, i][None, :], observed, level)
            slope = np.where(resets[:, i][None, :], 0.0, slope)
            if i >= WARM_UP:
                abs_error += np.abs(clipped)
                counted += seen
            if i + 1 in snapshots:
                kept_level[list(snapshots).index(i + 1)] = level
                kept_slope[list(snapshots).index(i + 1)] = slope
    return kept_level, kept_slope, abs_error, counted


def test_holt_in_place_equals_the_step_by_step_recursion() -> None:
    """Levels, slopes and error scales to the last bit, with gaps, a series that starts
    late, an uneven step and resets."""
    rng = np.random.default_rng(11)
    width = 150
    x = STEP * np.arange(width, dtype=np.float64)
    x[60:] += 137.0  # one uneven step
    y = 50.0 + np.cumsum(rng.normal(0.0, 1.0, (9, width)), axis=1)
    y[rng.random(y.shape) < 0.05] = np.nan
    y[4, :30] = np.nan
    y[5, 80:] -= 40.0  # a drop the resets mark
    y[6] = np.nan
    resets = find_resets(y).mask
    assert resets[5].any()
    snapshots = [40, 100, width]
    states = run_holt(x - x[-1], y, snapshots, resets)
    level, slope, abs_error, counted = reference_holt(x - x[-1], y, snapshots, resets)
    assert np.array_equal(states.level, level, equal_nan=True)
    assert np.array_equal(states.slope, slope, equal_nan=True)
    sigma_e = 1.2533 * abs_error / np.maximum(counted, 1.0)
    alpha = DEFAULT_SETTINGS.alpha[:, None]
    assert np.array_equal(states.sd_level, sigma_e * np.sqrt(alpha / (2.0 - alpha)))


def reference_hourly_medians(values: FloatArray, hour: npt.NDArray[np.intp]) -> FloatArray:
    """Per hour of day, the median of each row's finite values in that hour (NaN if none)."""
    medians = np.full((values.shape[0], BINS), np.nan)
    for b in range(BINS):
        medians[:, b] = nanmedian_rows(values[:, hour == b]) if (hour == b).any() else np.nan
    return medians


def test_hourly_blocks_hold_each_hour_of_each_series() -> None:
    """One NaN-padded block per hour gives the medians of one call per hour, and a time
    that rounds to hour 24 belongs to none."""
    rng = np.random.default_rng(5)
    hour = np.concatenate([np.repeat(np.arange(BINS), 3)[:-5], [24, 7, 7]]).astype(np.intp)
    values = rng.normal(size=(6, hour.size))
    values[rng.random(values.shape) < 0.2] = np.nan
    blocks = _hourly_blocks(values, hour)
    assert blocks.shape[:2] == (6, BINS)
    medians = nanmedian_rows(blocks.reshape(6 * BINS, -1)).reshape(6, BINS)
    assert np.array_equal(medians, reference_hourly_medians(values, hour), equal_nan=True)
    assert np.isfinite(blocks).sum() == np.isfinite(values[:, hour < BINS]).sum()


def reference_envelope(x: FloatArray, y: FloatArray,
                       mask: BoolArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(period, envelope slope, envelope level, mean peak time) per row from the lists of
    its resets: reset times, peaks (last finite value before each reset) and their times."""
    periods, slopes, levels, centres = [], [], [], []
    for row, marks in zip(y, mask, strict=True):
        columns = np.flatnonzero(marks)
        seen = [int(np.flatnonzero(np.isfinite(row[:c]))[-1]) for c in columns]
        times, peaks, peak_times = x[columns], row[seen], x[seen]
        rises = np.diff(peaks) / np.diff(peak_times)
        slope = float(np.median(rises))
        periods.append(np.median(np.diff(times)))
        slopes.append(slope)
        levels.append(np.median(peaks - slope * peak_times))
        centres.append(np.mean(peak_times))
    return np.array(periods), np.array(slopes), np.array(levels), np.array(centres)


def test_sawtooth_cycle_from_packed_resets_equals_the_lists_of_resets() -> None:
    """Period, peak trend and its centre from resets packed to the left are those of each
    series' own list of resets (teeth of different periods, gaps before some drops)."""
    width = 288
    x = STEP * np.arange(width, dtype=np.float64) - STEP * (width - 1)
    hours = np.arange(width) * STEP / 3600.0
    rng = np.random.default_rng(2)
    y = np.stack([20.0 + 0.5 * base + 30.0 * np.mod(hours, period) / period
                  + rng.normal(0.0, 0.2, width)
                  for period, base in [(4.0, 1.0), (6.0, 0.0), (9.5, 3.0), (5.0, 2.0)]])
    y[1, 70:73] = np.nan  # the last point before a drop is missing: the peak is earlier
    y[3, 100:140] = np.nan
    resets = find_resets(y)
    assert (resets.count >= 2).all()
    path = fit_sawtooth(x, y, resets, since_last_reset(x, y, resets))
    period, slope, level, centre = reference_envelope(x, y, resets.mask)
    np.testing.assert_allclose(path.period, period, rtol=1e-12)
    np.testing.assert_allclose(path.envelope.slope, slope, rtol=1e-12)
    np.testing.assert_allclose(path.envelope.level, level, rtol=1e-12)
    np.testing.assert_allclose(path.envelope.centre, centre, rtol=1e-12)


def test_resets_at_the_first_column_have_no_peak() -> None:
    """A reset marked on the first point (no value before it) counts for the period but
    gives no peak, as before the packing."""
    x = STEP * np.arange(6, dtype=np.float64)
    y = np.array([[5.0, 6.0, 1.0, 2.0, 3.0, 0.5]])
    mask = np.array([[True, False, True, False, False, True]])
    path = fit_sawtooth(x - x[-1], y, Resets(mask), since_last_reset(x - x[-1], y,
                                                                      Resets(mask)))
    assert path.period[0] == pytest.approx(2.5 * STEP)
    assert path.envelope.slope[0] == pytest.approx((3.0 - 6.0) / (3 * STEP))

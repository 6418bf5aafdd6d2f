# ruff: noqa: RUF002 - the formulas use the Greek letters of the statistics literature
"""Time to failure: when will each series cross its threshold, and how sure is that?

PromQL's ``predict_linear(x[6h], H)`` fits ordinary least squares to the window and
extrapolates. It is easy to fool: a burst or a spike near the end of the window tilts the
line, a log-rotation sawtooth looks like a leak on every rising edge, and a morning ramp is
extrapolated through the night. Here four models are fitted to every series, and each
series keeps the one that forecast its own recent past best:

* ``robust``: a Huber line started from a Theil–Sen slope, through the points since the
  last reset (``sawtooth.since_last_reset``): a spike or a short burst cannot tilt it, and
  the level before a log rotation or a clean-up is forgotten.
* ``damped``: robust damped-trend Holt smoothing (``smoothing.run_holt``): it follows a
  trend that changes (a fill rate that slows down in the evening).
* ``reset``: for series that dropped at least twice: the current tooth until the next
  expected drop, then the trend of the peaks (``sawtooth.fit_sawtooth``).
* ``seasonal``: a daily profile plus a robust line, with ≥ 2 days of history
  (``seasonal.fit_seasonal``).

Model choice — a rolling-origin backtest over the window itself. With n points and
k = n // 6, the origins are o = n - k, n - 2k, n - 3k. Every model is fitted to the points
before o only (resets included: only those seen before o) and forecasts every later point
of the window, at distances up to k, 2k and 3k, so that a trend's persistence is tested
as well as the level. A model's error at an origin is its mean absolute error over those
points; its score is the *median over the three origins* (one burst inside one held-out
stretch must not decide) times a preference factor (``PREFERENCE``: the robust line wins
ties; Holt must beat it by 10 %). The best score is refitted to the whole window. Holt's
eight settings compete among themselves the same way first. Windows of fewer than 12
points get the robust line.

Agreement guard — Holt adapts fast, which is right when a trend bends away from the
threshold and wrong during a burst, whose ramp it follows as faithfully as a leak. So
Holt may postpone a crossing but never bring one forward: when Holt is chosen, the median
is the later of its crossing and the robust line's. (On replayed histories this halves
the false alarms on bursty series at no cost in recall on leaks.)

Times to failure come from the chosen path (``paths.crossing_bounds``): median where the
forecast mean crosses the threshold, lower (pessimistic) where mean + z·sd does, upper
where mean - z·sd does, z = Φ⁻¹(quantile), each widened by the samples' own noise around the
robust line (``bounds``: the earlier lower and the later upper of the band's and of the
samples' first passage); np.inf when the crossing is beyond the horizon.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from monitoriza.forecast.bounds import Noise, noise_of
from monitoriza.forecast.paths import LinearPath, Path, crossing_bounds
from monitoriza.forecast.robust import fit_line, nan_mean_rows
from monitoriza.forecast.sawtooth import Resets, find_resets, fit_sawtooth, since_last_reset
from monitoriza.forecast.seasonal import fit_seasonal, seasonal_ready
from monitoriza.forecast.smoothing import HoltStates, run_holt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
Direction = Literal["above", "below"]

MODELS = ("robust", "damped", "reset", "seasonal")
PREFERENCE = {"robust": 1.0, "damped": 1.1, "reset": 1.0, "seasonal": 1.05}
MIN_POINTS = 3
MIN_BACKTEST = 12
ORIGINS = 3
HOLDOUT_DIVISOR = 6
CHUNK_SERIES = 1024  # series fitted together: arrays stay small enough to reuse memory
MAX_THREADS = 4  # chunks run in parallel threads: NumPy releases the GIL in its loops
DEFAULT_COVERAGE = 0.8  # the share of foreseen crossings [lower, upper] is meant to contain


def quantile_for(coverage: float) -> float:
    """The ``quantile`` argument of ``time_to_failure`` for an interval of that level."""
    return (1.0 + coverage) / 2.0


@dataclass(frozen=True)
class Forecast:
    """Times to failure of S series, in seconds from ``now``.

    ``lower`` is the pessimistic estimate (earliest plausible), ``upper`` the optimistic
    one; np.inf means no failure within the horizon, 0 that the series is already at or
    beyond its threshold. ``model`` names the model used per series ("none": fewer than 3
    points or already beyond the threshold), ``current`` is the last finite value and
    ``point`` the forecast value at now + horizon.
    """

    lower: FloatArray
    median: FloatArray
    upper: FloatArray
    model: tuple[str, ...]
    current: FloatArray
    point: FloatArray


@dataclass(frozen=True)
class _Prepared:
    """The inputs oriented so that failure is above: x = times - now (≤ 0), y (S, n)."""

    x: FloatArray
    y: FloatArray
    sign: float
    threshold: float
    now: float
    current: FloatArray  # in the caller's orientation
    count: IntArray
    breached: BoolArray


def _check(threshold: float, direction: str, horizon: float, quantile: float) -> None:
    """Reject arguments no data could make sense of (data problems never raise)."""
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', not {direction!r}")
    if not np.isfinite(threshold):
        raise ValueError("threshold must be finite")
    if not (np.isfinite(horizon) and horizon > 0):
        raise ValueError("horizon must be a positive number of seconds")
    if not 0.5 < quantile < 1.0:
        raise ValueError("quantile must be between 0.5 and 1")


def _prepare(times: npt.ArrayLike, values: npt.ArrayLike, threshold: float,
             direction: Direction, now: float | None) -> _Prepared:
    """Drop points after ``now``, turn ±Inf into gaps, negate series that fail below."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v.reshape(1, -1)
    if v.ndim != 2 or v.shape[1] != t.size:
        raise ValueError(f"values must have shape (series, {t.size}), not {v.shape}")
    if now is None:
        known = t[np.isfinite(t)]
        now = float(known[-1]) if known.size else 0.0
    keep = np.isfinite(t) & (t <= now)
    sign = 1.0 if direction == "above" else -1.0
    block = v[:, keep]
    y = np.where(np.isfinite(block), sign * block, np.nan)
    finite = np.isfinite(y)
    rows = np.arange(y.shape[0])
    last = (y.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)) if y.shape[1] else rows * 0
    seen = finite.any(axis=1)
    current = np.full(y.shape[0], np.nan)
    if y.shape[1]:
        current = np.where(seen, sign * y[rows, last], np.nan)
    breached = seen & (sign * np.where(seen, current, 0.0) >= sign * threshold)
    return _Prepared(x=t[keep] - now, y=y, sign=sign, threshold=sign * threshold,
                     now=float(now), current=current, count=finite.sum(axis=1),
                     breached=breached)


def _fit_models(x: FloatArray, y: FloatArray, resets: Resets,
                origin: float) -> dict[str, tuple[Path, BoolArray]]:
    """Every model but Holt fitted to (x, y), each with the series it applies to."""
    rows = y.shape[0]
    robust = since_last_reset(x, y, resets)
    fits: dict[str, tuple[Path, BoolArray]] = {"robust": (robust, np.ones(rows, dtype=bool))}
    fits["reset"] = (fit_sawtooth(x, y, resets, robust), resets.count >= 2)
    ready = seasonal_ready(x, y)
    if ready.any():
        fits["seasonal"] = (fit_seasonal(x, y, origin), ready)
    return fits


def _holdout_error(path: Path, h: FloatArray, truth: FloatArray) -> FloatArray:
    """Mean absolute error of the path's mean at distances h against ``truth`` (S, k);
    inf where the path has no value for a known point."""
    mean = path.mean(h)
    known = np.isfinite(truth)
    score = nan_mean_rows(np.where(known, np.abs(truth - mean), np.nan))
    broken = (known & ~np.isfinite(mean)).any(axis=1)
    return np.where(broken, np.inf, score)


def _holt_path(states: HoltStates, snapshot: int, combo: IntArray,
               anchor: float) -> LinearPath:
    """Holt's state after a snapshot, as a path starting ``anchor`` seconds later.

    Carrying the state over a distance a: level + slope·D(a), slope·e^(-κa).
    """
    rows = np.arange(combo.size)
    level = states.level[snapshot, combo, rows]
    slope = states.slope[snapshot, combo, rows]
    decay = states.decay[combo]
    damped = decay > 0
    carry = np.where(damped, -np.expm1(-decay * anchor) / np.where(damped, decay, 1.0), anchor)
    return LinearPath(level=level + slope * carry, slope=slope * np.exp(-decay * anchor),
                      decay=decay, centre=np.zeros(combo.size),
                      sd_centre=states.sd_level[combo, rows],
                      sd_slope=states.sd_slope[combo, rows])


def _origins(n: int) -> list[int]:
    """The backtest origins (sizes of the fitted prefixes), newest first."""
    k = max(2, n // HOLDOUT_DIVISOR)
    return [n - k * (j + 1) for j in range(ORIGINS)]


@dataclass(frozen=True)
class _Selection:
    """Each series' chosen model (index into MODELS) and every model fitted to the whole
    window."""

    choice: IntArray
    finals: dict[str, Path]
    noise: Noise  # the residuals around the robust line since the last reset


def _select(prep: _Prepared, rows: IntArray) -> _Selection:
    """Backtest every model on the series ``rows`` and refit them to the whole window."""
    x, y = prep.x, prep.y[rows]
    n, size = x.size, rows.size
    resets = find_resets(y)
    origins = _origins(n)
    backtest = n >= MIN_BACKTEST and origins[-1] >= MIN_POINTS
    snapshots: Sequence[int] = [*origins, n] if backtest else [n]
    holt = run_holt(x, y, snapshots, resets.mask)
    combos = holt.decay.size
    scores = {name: np.full((size, ORIGINS), np.inf) for name in MODELS}
    holt_scores = np.full((combos, size, ORIGINS), np.inf)
    if backtest:
        for j, o in enumerate(origins):
            start = x[o - 1]
            h, truth = x[o:] - start, y[:, o:]
            fits = _fit_models(x[:o] - start, y[:, :o], resets.prefix(o), prep.now + start)
            for name, (path, applies) in fits.items():
                scores[name][:, j] = np.where(applies, _holdout_error(path, h, truth), np.inf)
            # Too little history for a daily profile at this origin: the seasonal model
            # would be the robust line, and is scored as such.
            scores["seasonal"][:, j] = np.where(np.isfinite(scores["seasonal"][:, j]),
                                                scores["seasonal"][:, j], scores["robust"][:, j])
            for c in range(combos):
                combo = np.full(size, c, dtype=np.intp)
                holt_scores[c, :, j] = _holdout_error(_holt_path(holt, j, combo, 0.0), h,
                                                      truth)
    best_combo = np.argmin(np.median(holt_scores, axis=2), axis=0).astype(np.intp)
    scores["damped"] = holt_scores[best_combo, np.arange(size), :]
    fits = _fit_models(x, y, resets, prep.now)
    finals = {name: path for name, (path, _) in fits.items()}
    finals["damped"] = _holt_path(holt, len(snapshots) - 1, best_combo, -float(x[-1]))
    # Errors within rounding of each other (a flat or perfectly linear series) are ties,
    # which the preference factors then settle.
    tie = 1e-9 * (np.abs(np.nan_to_num(prep.current[rows] * prep.sign)) + 1.0)
    with np.errstate(invalid="ignore"):
        table = np.stack([(np.median(scores[name], axis=1) + tie) * PREFERENCE[name]
                          for name in MODELS])
    for index, name in enumerate(MODELS):
        if name in fits:
            table[index] = np.where(fits[name][1], table[index], np.inf)
        elif name != "damped":
            table[index] = np.inf
    table = np.where(np.isnan(table), np.inf, table)
    choice = np.where(np.isfinite(table.min(axis=0)), np.argmin(table, axis=0), 0)
    robust = fits["robust"][0]
    assert isinstance(robust, LinearPath)
    return _Selection(choice=choice.astype(np.intp), finals=finals,
                      noise=noise_of(x, y, robust.level, robust.slope, resets.last))


def time_to_failure(times: npt.ArrayLike, values: npt.ArrayLike, *, threshold: float,
                    direction: Direction, horizon: float, now: float | None = None,
                    quantile: float = 0.9) -> Forecast:
    """Seconds until each series of ``values`` crosses ``threshold``, from ``now``.

    ``times`` (T,) are ascending unix seconds shared by all series (a range query's grid);
    ``values`` is (S, T) with NaN for gaps (±Inf counts as a gap); ``now`` defaults to the
    last time, and points after it are ignored. A series with fewer than 3 finite points
    gets np.inf (model "none"); one whose last finite value is at or beyond the threshold
    gets 0. ``lower`` and ``upper`` are the (1 - quantile) and quantile estimates of the
    time the first sample crosses (with the default 0.9, an interval meant to hold 80 % of
    the crossings it foresees: ``quantile_for``, docs/forecasting.md). Bad data never raises
    or warns; a bad direction, threshold, horizon or quantile raises ValueError.
    """
    _check(threshold, direction, horizon, quantile)
    prep = _prepare(times, values, threshold, direction, now)
    series = prep.y.shape[0]
    out = _Output(lower=np.full(series, np.inf), median=np.full(series, np.inf),
                  upper=np.full(series, np.inf), point=prep.current.copy(),
                  models=["none"] * series)
    pending = np.flatnonzero((prep.count >= MIN_POINTS) & ~prep.breached)
    chunks = [pending[start:start + CHUNK_SERIES]
              for start in range(0, pending.size, CHUNK_SERIES)]
    workers = min(len(chunks), os.cpu_count() or 1, MAX_THREADS)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(lambda work: _forecast_chunk(prep, work, horizon, quantile, out),
                              chunks):
                pass
    else:
        for work in chunks:
            _forecast_chunk(prep, work, horizon, quantile, out)
    for estimate in (out.lower, out.median, out.upper):
        estimate[prep.breached] = 0.0
    return Forecast(lower=out.lower, median=out.median, upper=out.upper,
                    model=tuple(out.models), current=prep.current, point=out.point)


@dataclass(frozen=True)
class _Output:
    """The arrays ``time_to_failure`` fills in, chunk by chunk (disjoint rows)."""

    lower: FloatArray
    median: FloatArray
    upper: FloatArray
    point: FloatArray
    models: list[str]


def _forecast_chunk(prep: _Prepared, work: IntArray, horizon: float, quantile: float,
                    out: _Output) -> None:
    """Select and apply the model of the series ``work``, writing into ``out``."""
    selection = _select(prep, work)
    for index, name in enumerate(MODELS):
        picked = np.flatnonzero(selection.choice == index)
        if picked.size == 0:
            continue
        low, mid, high, value = crossing_bounds(selection.finals[name].take(picked),
                                                prep.threshold, horizon, quantile,
                                                selection.noise.take(picked))
        if name == "damped":
            robust = selection.finals["robust"].take(picked)
            mid = np.maximum(mid, crossing_bounds(robust, prep.threshold, horizon,
                                                  quantile)[1])
            high = np.maximum(high, mid)
        target = work[picked]
        out.lower[target], out.median[target], out.upper[target] = low, mid, high
        out.point[target] = prep.sign * value
        for row in target:
            out.models[row] = name


def ols_time_to_failure(times: npt.ArrayLike, values: npt.ArrayLike, *, threshold: float,
                        direction: Direction, horizon: float,
                        now: float | None = None) -> Forecast:
    """``predict_linear`` as a time to failure: OLS over the whole window, extrapolated.

    With the OLS line y = a + b·(t - now) (a: its value now), the crossing is at
    h = (threshold - a) / b when b points towards the threshold, 0 when a is already beyond
    it, np.inf when b points away or h > horizon. Like PromQL it needs two points. Same
    input semantics as ``time_to_failure``; lower = median = upper (PromQL has no band);
    model "ols".
    """
    _check(threshold, direction, horizon, 0.9)
    prep = _prepare(times, values, threshold, direction, now)
    line = fit_line(prep.x, prep.y, robust=False)
    usable = prep.count >= 2
    rising = line.slope > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        distance = (prep.threshold - line.level) / np.where(rising, line.slope, 1.0)
    ttf = np.where(line.level >= prep.threshold, 0.0,
                   np.where(rising & (distance <= horizon), distance, np.inf))
    ttf = np.where(prep.breached, 0.0, np.where(usable, ttf, np.inf))
    point = np.where(usable, prep.sign * (line.level + line.slope * horizon), prep.current)
    models = tuple("ols" if ok else "none" for ok in usable)
    return Forecast(lower=ttf.copy(), median=ttf, upper=ttf.copy(), model=models,
                    current=prep.current, point=point)

# ruff: noqa: RUF002, RUF003 - the formulas use the Greek letters of the statistics literature
"""Robust damped-trend exponential smoothing (Holt), vectorised across series and settings.

Holt's method keeps a level ℓ and a slope b and corrects both by each one-step error, so
it follows a trend that changes, where a line fitted to the whole window keeps the old one.
Its slope is damped: a trend is trusted for a time τ and then fades, so a short-lived rise
(a GC cycle, a burst) cannot be extrapolated into a distant crossing. Errors are clipped
at ±3σ before they correct anything (Gelper, Fried and Croux's robust Holt–Winters), so a
single spike moves the level by at most 3·α·σ.

All settings (α, β, τ) run in one pass over time: the state is a (settings, series) array,
so the cost is one Python loop over the T time points with NumPy work of C·S per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoriza.forecast.robust import forward_fill, robust_scale_rows

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

HOUR = 3600.0
CLIP = 3.0  # errors beyond ±CLIP·σ are clipped before they update the state
WARM_UP = 5  # steps before the errors count towards the error scale
MEAN_ABS_TO_SIGMA = 1.2533  # sqrt(π/2): E|e| = σ·sqrt(2/π) for normal errors


@dataclass(frozen=True)
class Settings:
    """The candidate settings, one per row of the state: smoothing α, trend share β
    (the slope moves by α·β·e per step) and the trend's persistence τ in seconds."""

    alpha: FloatArray
    beta: FloatArray
    persistence: FloatArray

    @staticmethod
    def grid(alphas: Sequence[float], betas: Sequence[float],
             persistence_hours: Sequence[float]) -> Settings:
        """Every combination of the given values."""
        a, b, p = np.meshgrid(alphas, betas, persistence_hours, indexing="ij")
        return Settings(a.ravel().astype(np.float64), b.ravel().astype(np.float64),
                        p.ravel().astype(np.float64) * HOUR)


# Level smoothing fast or slow, slope learnt fast or slow, a trend that fades over about
# half a day or one that lasts: the backtest picks one per series.
DEFAULT_SETTINGS = Settings.grid(alphas=(0.2, 0.5), betas=(0.1, 0.3),
                                 persistence_hours=(12.0, math.inf))


@dataclass(frozen=True)
class HoltStates:
    """Holt's state after selected prefixes of the data, for every setting and series.

    ``level[p, c, s]`` and ``slope[p, c, s]`` are the state of series s under setting c
    after the first ``snapshots[p]`` points (at that prefix's last time); ``sd_level`` and
    ``sd_slope`` (c, s) their standard errors, from the error scale over the whole window.
    """

    level: FloatArray
    slope: FloatArray
    sd_level: FloatArray
    sd_slope: FloatArray
    decay: FloatArray  # (c,) κ = 1/τ per second


def run_holt(x: FloatArray, y: FloatArray, snapshots: Sequence[int], resets: BoolArray,
             settings: Settings = DEFAULT_SETTINGS) -> HoltStates:
    """Filter every series with every setting; keep the states after each snapshot prefix.

    With step Δt between points, decay φ = e^(-Δt/τ) and D = (1 - φ)·τ (how far the slope
    carries over the step; D = Δt for an undamped trend, τ = ∞), one step is
        ℓ̂ = ℓ + b·D,  b̂ = φ·b,  e = y - ℓ̂,  ẽ = clip(e, ±3σ),
        ℓ = ℓ̂ + α·ẽ,  b = b̂ + α·β·ẽ / Δ   (b per second, Δ the median step).
    A missing y keeps the prediction (ℓ̂, b̂). A series starts at its first finite value
    with slope 0, and starts again so (ℓ = y, b = 0) at each reset (``resets``, (S, n): the
    points after a large drop, see ``sawtooth.find_resets``), which the ±3σ clipping would
    otherwise take many steps to follow. σ is the robust scale of the series' first
    differences over √2, i.e. the noise σ of a locally flat series.

    Standard errors: with σ_e the scale of the clipped one-step errors (mean |ẽ|·√(π/2)),
    the level's is that of an exponentially weighted mean, σ_e·sqrt(α / (2 - α)), and the
    slope's is the stationary sd of b's noise, (α·β·σ_e / Δ) / sqrt(1 - φ_Δ²) (with
    1 - φ_Δ² floored at α·β·(2 - α·β), its value for an undamped trend estimated over an
    effective 1/(α·β) steps).
    """
    combos = settings.alpha.size
    alpha = settings.alpha[:, None]
    trend = (settings.alpha * settings.beta)[:, None]
    decay = 1.0 / settings.persistence
    diffs = np.diff(x)
    step = float(np.median(diffs)) if diffs.size else 1.0
    step = step if step > 0 else 1.0
    limit = CLIP * _noise_scale(y)[None, :]
    kept_level = np.full((len(snapshots), combos, y.shape[0]), np.nan)
    kept_slope = np.zeros((len(snapshots), combos, y.shape[0]))
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error, counted = _filter(_Filter(x=x, y=y, resets=resets, alpha=alpha, trend=trend,
                                             decay=decay, step=step, limit=limit),
                                     {size: index for index, size in enumerate(snapshots)},
                                     kept_level, kept_slope)
    sigma_e = MEAN_ABS_TO_SIGMA * abs_error / np.maximum(counted, 1.0)
    keep_step = np.exp(-step * decay)[:, None]
    floor = trend * (2.0 - trend)
    sd_level = sigma_e * np.sqrt(alpha / (2.0 - alpha))
    sd_slope = (trend * sigma_e / step) / np.sqrt(np.maximum(1.0 - keep_step**2, floor))
    return HoltStates(level=kept_level, slope=kept_slope, sd_level=sd_level,
                      sd_slope=sd_slope, decay=decay)


@dataclass(frozen=True)
class _Filter:
    """The inputs of one ``run_holt`` pass: data (x (n,), y (S, n), resets (S, n)) and the
    settings as columns (alpha, trend = α·β, (C, 1); decay κ (C,)), the median step Δ and
    the clipping limit 3σ (1, S)."""

    x: FloatArray
    y: FloatArray
    resets: BoolArray
    alpha: FloatArray
    trend: FloatArray
    decay: FloatArray
    step: float
    limit: FloatArray


def _filter(run: _Filter, wanted: dict[int, int], kept_level: FloatArray,
            kept_slope: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The recursion of ``run_holt``, one step per time point, storing the state after
    each prefix of ``wanted`` (size → index) into ``kept_level``/``kept_slope``; returns
    Σ|ẽ| and the count of errors after the warm-up, per setting and series.

    The loop runs n times over (C, S) arrays, so allocating them and reading y column by
    column were most of its cost: y is transposed once, the per-step decay and carry are
    computed for all steps at once (the same values as step by step), and every update
    writes into buffers allocated here, in the order of the formulas (same results).
    """
    combos, rows = run.alpha.size, run.y.shape[0]
    damped = run.decay > 0
    gaps = np.diff(run.x)[:, None]
    keeps = np.exp(-gaps * run.decay[None, :])
    carries = np.where(damped[None, :],
                       -np.expm1(-gaps * run.decay[None, :])
                       / np.where(damped, run.decay, 1.0)[None, :], gaps)
    by_time = np.ascontiguousarray(run.y.T)
    restarts = np.ascontiguousarray(run.resets.T)
    restart_at = np.asarray(restarts.any(axis=1), dtype=np.bool_)
    low_limit = -run.limit
    level = np.full((combos, rows), np.nan)
    slope = np.zeros((combos, rows))
    abs_error = np.zeros((combos, rows))
    counted = np.zeros((combos, rows))
    error = np.empty((combos, rows))
    part = np.empty((combos, rows))
    seen = np.empty((combos, rows), dtype=np.bool_)
    unset = np.empty((combos, rows), dtype=np.bool_)
    for i in range(by_time.shape[0]):
        observed = by_time[i][None, :]
        if i > 0:
            np.multiply(slope, carries[i - 1][:, None], out=part)
            np.add(level, part, out=level)
            np.multiply(slope, keeps[i - 1][:, None], out=slope)
        np.subtract(observed, level, out=error)
        np.isfinite(error, out=seen)
        np.copyto(error, 0.0, where=~seen)
        clipped = np.minimum(np.maximum(error, low_limit, out=error), run.limit, out=error)
        # Only a level still unset (no finite value yet) is NaN, and its error is unseen.
        np.isnan(level, out=unset)
        np.multiply(run.alpha, clipped, out=part)
        np.add(level, part, out=part)
        np.copyto(level, part, where=seen)
        np.copyto(level, observed, where=unset)
        np.multiply(run.trend, clipped, out=part)
        np.divide(part, run.step, out=part)
        np.add(slope, part, out=slope)
        if restart_at[i]:
            restart = restarts[i][None, :]
            np.copyto(level, observed, where=restart)
            np.copyto(slope, 0.0, where=restart)
        if i >= WARM_UP:
            abs_error += np.abs(clipped, out=part)
            counted += seen
        if i + 1 in wanted:
            kept_level[wanted[i + 1]] = level
            kept_slope[wanted[i + 1]] = slope
    return abs_error, counted


def _noise_scale(y: FloatArray) -> FloatArray:
    """σ of each series' noise: the robust scale of its first differences over √2."""
    if y.shape[1] < 2:
        return np.zeros(y.shape[0])
    sigma = robust_scale_rows(np.diff(forward_fill(y), axis=1)) / np.sqrt(2.0)
    return np.where(np.isfinite(sigma), sigma, 0.0)

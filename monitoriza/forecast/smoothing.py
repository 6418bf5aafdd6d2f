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
    rows, width = y.shape
    combos = settings.alpha.size
    alpha = settings.alpha[:, None]
    trend = (settings.alpha * settings.beta)[:, None]
    decay = 1.0 / settings.persistence
    damped = decay > 0
    safe_decay = np.where(damped, decay, 1.0)
    diffs = np.diff(x)
    step = float(np.median(diffs)) if diffs.size else 1.0
    step = step if step > 0 else 1.0
    limit = CLIP * _noise_scale(y)[None, :]
    level = np.full((combos, rows), np.nan)
    slope = np.zeros((combos, rows))
    abs_error = np.zeros((combos, rows))
    counted = np.zeros((combos, rows))
    wanted = {size: index for index, size in enumerate(snapshots)}
    kept_level = np.full((len(snapshots), combos, rows), np.nan)
    kept_slope = np.zeros((len(snapshots), combos, rows))
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(width):
            observed = y[:, i][None, :]
            if i > 0:
                gap = x[i] - x[i - 1]
                keep = np.exp(-gap * decay)[:, None]
                carry = np.where(damped, -np.expm1(-gap * decay) / safe_decay, gap)[:, None]
                level = level + slope * carry
                slope = slope * keep
            error = observed - level
            seen = np.isfinite(error)
            clipped = np.clip(np.where(seen, error, 0.0), -limit, limit)
            level = np.where(seen, level + alpha * clipped,
                             np.where(np.isnan(level), observed, level))
            slope = slope + trend * clipped / step
            restart = resets[:, i][None, :]
            if restart.any():
                level = np.where(restart, observed, level)
                slope = np.where(restart, 0.0, slope)
            if i >= WARM_UP:
                abs_error += np.abs(clipped)
                counted += seen
            if i + 1 in wanted:
                kept_level[wanted[i + 1]] = level
                kept_slope[wanted[i + 1]] = slope
    sigma_e = MEAN_ABS_TO_SIGMA * abs_error / np.maximum(counted, 1.0)
    keep_step = np.exp(-step * decay)[:, None]
    floor = trend * (2.0 - trend)
    sd_level = sigma_e * np.sqrt(alpha / (2.0 - alpha))
    sd_slope = (trend * sigma_e / step) / np.sqrt(np.maximum(1.0 - keep_step**2, floor))
    return HoltStates(level=kept_level, slope=kept_slope, sd_level=sd_level,
                      sd_slope=sd_slope, decay=decay)


def _noise_scale(y: FloatArray) -> FloatArray:
    """σ of each series' noise: the robust scale of its first differences over √2."""
    if y.shape[1] < 2:
        return np.zeros(y.shape[0])
    sigma = robust_scale_rows(np.diff(forward_fill(y), axis=1)) / np.sqrt(2.0)
    return np.where(np.isfinite(sigma), sigma, 0.0)

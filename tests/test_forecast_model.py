"""Time-to-failure forecasts: right on clean trends, unfooled by spikes, sawtooth and gaps."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pytest

from monitoriza.forecast.model import Forecast, ols_time_to_failure, time_to_failure

FloatArray = npt.NDArray[np.float64]

STEP = 300.0
HOUR = 3600.0
DAY = 86400.0
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z


def grid(hours: float) -> FloatArray:
    """Unix times every 5 minutes over ``hours``, ending at START + hours."""
    return START + STEP * np.arange(round(hours * HOUR / STEP) + 1, dtype=np.float64)


def noise(size: int, sigma: float, seed: int = 7) -> FloatArray:
    """Seeded normal noise."""
    values: FloatArray = np.random.default_rng(seed).normal(0.0, sigma, size)
    return values


def since(times: FloatArray) -> FloatArray:
    """Hours since the first time."""
    hours: FloatArray = (times - times[0]) / HOUR
    return hours


def sawtooth(times: FloatArray, *, low: float, high: float, period_h: float,
             base_per_day: float = 0.0) -> FloatArray:
    """Rises from ``low`` to ``high`` every ``period_h`` hours and drops back (rotation),
    on a floor that grows by ``base_per_day``."""
    hours = since(times)
    phase = np.mod(hours, period_h) / period_h
    return low + (high - low) * phase + base_per_day * hours / 24.0


def single(times: FloatArray, values: FloatArray, **kwargs: object) -> Forecast:
    """``time_to_failure`` on one series."""
    return time_to_failure(times, values[None, :], **kwargs)  # type: ignore[arg-type]


class TestCleanTrends:
    """A steady trend is forecast to cross where its line does, with a tight band."""

    def test_linear_fill(self) -> None:
        """Median within 5 % of the truth, lower ≤ median ≤ upper, and a narrow band."""
        times = grid(6)
        values = 40.0 + 2.0 * since(times) + noise(times.size, 0.05)  # 52 % now, +2 %/h
        forecast = single(times, values, threshold=90.0, direction="above",
                          horizon=2 * DAY)
        truth = (90.0 - 52.0) / 2.0 * HOUR
        assert forecast.median[0] == pytest.approx(truth, rel=0.05)
        assert forecast.lower[0] <= forecast.median[0] <= forecast.upper[0]
        assert forecast.upper[0] - forecast.lower[0] < 0.1 * truth
        assert forecast.current[0] == pytest.approx(values[-1])
        assert forecast.point[0] == pytest.approx(52.0 + 2.0 * 48.0, rel=0.02)

    def test_direction_below(self) -> None:
        """Free space falling by 1 GB/h from 100 GB reaches 10 GB in (current - 10) hours."""
        times = grid(12)
        values = 100.0 - since(times) + noise(times.size, 0.02)
        forecast = single(times, values, threshold=10.0, direction="below", horizon=7 * DAY)
        assert forecast.median[0] == pytest.approx((88.0 - 10.0) * HOUR, rel=0.05)
        assert forecast.lower[0] <= forecast.median[0] <= forecast.upper[0]

    def test_beyond_horizon_is_inf(self) -> None:
        """A crossing further away than the horizon is reported as no failure."""
        times = grid(6)
        values = 40.0 + 2.0 * since(times)
        forecast = single(times, values, threshold=90.0, direction="above", horizon=HOUR)
        assert np.isinf(forecast.median[0]) and np.isinf(forecast.upper[0])

    def test_ols_baseline_matches_the_line(self) -> None:
        """The predict_linear baseline crosses where the least-squares line does."""
        times = grid(6)
        values = 40.0 + 2.0 * since(times)
        forecast = ols_time_to_failure(times, values[None, :], threshold=90.0,
                                       direction="above", horizon=2 * DAY)
        assert forecast.median[0] == pytest.approx(19.0 * HOUR)
        assert forecast.lower[0] == forecast.median[0] == forecast.upper[0]
        assert forecast.model == ("ols",)


class TestDegenerateInputs:
    """Odd data gives a defined answer, never an exception or a warning."""

    def test_flat_series_never_fails(self) -> None:
        """A constant series below the threshold has no crossing."""
        times = grid(6)
        forecast = single(times, np.full(times.size, 42.0), threshold=90.0,
                          direction="above", horizon=DAY)
        assert np.isinf(forecast.lower[0]) and np.isinf(forecast.median[0])

    @pytest.mark.parametrize("direction", ["above", "below"])
    def test_already_beyond_threshold(self, direction: str) -> None:
        """A last value at or beyond the threshold gives 0 for all three estimates."""
        times = grid(6)
        last = 95.0 if direction == "above" else 5.0
        values = np.full(times.size, 50.0)
        values[-1] = last
        forecast = single(times, values, threshold=90.0 if direction == "above" else 10.0,
                          direction=direction, horizon=DAY)
        assert (forecast.lower[0], forecast.median[0], forecast.upper[0]) == (0.0, 0.0, 0.0)

    def test_fewer_than_three_points(self) -> None:
        """Two finite points are not a trend: inf, model "none"."""
        times = grid(1)
        values = np.full(times.size, np.nan)
        values[-2:] = [50.0, 80.0]
        forecast = single(times, values, threshold=90.0, direction="above", horizon=DAY)
        assert np.isinf(forecast.median[0])
        assert forecast.model == ("none",)

    def test_all_nan(self) -> None:
        """A series without data: inf, no current value, no point forecast."""
        times = grid(6)
        forecast = single(times, np.full(times.size, np.nan), threshold=90.0,
                          direction="above", horizon=DAY)
        assert np.isinf(forecast.median[0])
        assert np.isnan(forecast.current[0]) and np.isnan(forecast.point[0])

    def test_gaps_and_infinities_are_ignored(self) -> None:
        """NaN gaps and ±Inf samples are skipped: the forecast matches the clean series."""
        times = grid(6)
        clean = 40.0 + 2.0 * since(times) + noise(times.size, 0.05)
        dirty = clean.copy()
        dirty[5:15] = np.nan
        dirty[[20, 40]] = [np.inf, -np.inf]
        both = time_to_failure(times, np.vstack([clean, dirty]), threshold=90.0,
                               direction="above", horizon=2 * DAY)
        assert both.median[1] == pytest.approx(both.median[0], rel=0.02)

    def test_empty_window_and_single_time(self) -> None:
        """No times at all, or a single one: inf, nothing raised."""
        empty = time_to_failure(np.empty(0), np.empty((2, 0)), threshold=1.0,
                                direction="above", horizon=DAY)
        one = time_to_failure(np.array([START]), np.array([[0.5]]), threshold=1.0,
                              direction="above", horizon=DAY)
        assert np.isinf(empty.median).all() and np.isinf(one.median).all()

    def test_points_after_now_are_ignored(self) -> None:
        """Samples later than ``now`` do not take part in the forecast."""
        times = grid(6)
        values = 40.0 + 2.0 * since(times)
        values[-12:] = 1000.0
        forecast = single(times, values, threshold=90.0, direction="above", horizon=2 * DAY,
                          now=float(times[-13]))
        assert forecast.median[0] == pytest.approx((90.0 - 50.0) / 2.0 * HOUR, rel=0.05)

    def test_degenerate_batch_raises_no_warning(self) -> None:
        """Constant, all-NaN, huge-spike, two-point and reset series together: no warning."""
        times = grid(6)
        rows = np.full((5, times.size), 7.0)
        rows[1] = np.nan
        rows[2, 30] = 1e300
        rows[3, :-2] = np.nan
        rows[4] = sawtooth(times, low=0.0, high=50.0, period_h=1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            forecast = time_to_failure(times, rows, threshold=60.0, direction="above",
                                       horizon=DAY)
            ols_time_to_failure(times, rows, threshold=60.0, direction="above", horizon=DAY)
        assert (forecast.lower <= forecast.median).all()
        assert (forecast.median <= forecast.upper).all()

    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"direction": "up"}, "direction"),
        ({"horizon": 0.0}, "horizon"),
        ({"threshold": np.nan}, "threshold"),
        ({"quantile": 0.4}, "quantile"),
    ])
    def test_bad_arguments(self, kwargs: dict[str, object], message: str) -> None:
        """Arguments no data could make sense of raise ValueError naming the argument."""
        arguments: dict[str, object] = {"threshold": 90.0, "direction": "above",
                                        "horizon": DAY, **kwargs}
        with pytest.raises(ValueError, match=message):
            time_to_failure(grid(1), np.zeros((1, 13)), **arguments)  # type: ignore[arg-type]


class TestRobustness:
    """Spikes, bursts and log rotation do not raise false alarms where OLS does."""

    def test_single_spike_is_not_a_trend(self) -> None:
        """One huge sample in a flat series: no crossing, while OLS predicts one."""
        times = grid(6)
        values = 50.0 + noise(times.size, 0.5)
        values[-2] = 300.0
        kwargs = {"threshold": 70.0, "direction": "above", "horizon": DAY}
        ours = single(times, values, **kwargs)
        ols = ols_time_to_failure(times, values[None, :], **kwargs)  # type: ignore[arg-type]
        assert np.isinf(ours.median[0])
        assert ols.median[0] < DAY

    def test_burst_does_not_tilt_the_line(self) -> None:
        """A short burst at the end of a flat window does not predict a crossing."""
        times = grid(6)
        values = 60.0 + noise(times.size, 0.5)
        values[-6:] += np.linspace(4.0, 24.0, 6)  # a 30-minute ramp to ~84
        values[-1] = 61.0  # ... cleaned up
        kwargs = {"threshold": 90.0, "direction": "above", "horizon": 4 * HOUR}
        ours = single(times, values, **kwargs)
        assert np.isinf(ours.median[0])

    def test_sawtooth_under_threshold(self) -> None:
        """Log rotation every 6 h with peaks at 80: no crossing of 90, though OLS on the
        current rising edge predicts one within hours."""
        times = grid(48 + 5)  # now: 5 h into a tooth
        values = sawtooth(times, low=20.0, high=80.0, period_h=6.0)
        values += noise(times.size, 0.3)
        kwargs = {"threshold": 90.0, "direction": "above", "horizon": DAY}
        ours = single(times, values, **kwargs)
        rising = times >= times[-1] - 5 * HOUR + 1
        ols = ols_time_to_failure(times[rising], values[None, rising],
                                  **kwargs)  # type: ignore[arg-type]
        assert np.isinf(ours.median[0]), ours
        assert ols.median[0] < 3 * HOUR

    def test_leak_under_sawtooth_is_found(self) -> None:
        """Rotation every 6 h on a floor growing 15 %/day: the peaks reach 100 within a day
        and a half, and the forecast says so."""
        times = grid(48 + 3)
        values = sawtooth(times, low=30.0, high=60.0, period_h=6.0, base_per_day=15.0)
        values += noise(times.size, 0.3)
        forecast = single(times, values, threshold=100.0, direction="above",
                          horizon=2 * DAY)
        assert forecast.median[0] < 1.5 * DAY
        assert forecast.lower[0] <= forecast.median[0] <= forecast.upper[0]


class TestVectorised:
    """Many series in one call give each series the answer it gets alone."""

    def test_batch_equals_one_by_one(self) -> None:
        """Mixed series fitted together match the same series fitted one at a time."""
        times = grid(48)
        hours = since(times)
        rows = np.vstack([
            40.0 + 1.0 * hours + noise(times.size, 0.1, seed=1),
            60.0 + noise(times.size, 2.0, seed=2),
            sawtooth(times, low=20.0, high=80.0, period_h=6.0) + noise(times.size, 0.3),
            np.full(times.size, 30.0),
            np.where(np.arange(times.size) % 9 == 0, np.nan, 20.0 + 0.5 * hours),
            70.0 + 10.0 * np.sin(2 * np.pi * hours / 24.0) + 0.2 * hours,
        ])
        kwargs = {"threshold": 95.0, "direction": "above", "horizon": 3 * DAY}
        batch = time_to_failure(times, rows, **kwargs)  # type: ignore[arg-type]
        for index, row in enumerate(rows):
            alone = single(times, row, **kwargs)
            assert alone.model[0] == batch.model[index]
            for field in ("lower", "median", "upper", "current", "point"):
                np.testing.assert_allclose(getattr(alone, field)[0],
                                           getattr(batch, field)[index], rtol=1e-6)

    def test_bounds_are_ordered_on_random_series(self) -> None:
        """lower ≤ median ≤ upper for any mix of trends, noise and gaps."""
        rng = np.random.default_rng(11)
        times = grid(24)
        hours = since(times)
        slopes = rng.uniform(-2.0, 4.0, (200, 1))
        rows = 50.0 + slopes * hours + rng.normal(0.0, rng.uniform(0.0, 5.0, (200, 1)),
                                                   (200, times.size))
        rows[rng.random(rows.shape) < 0.05] = np.nan
        forecast = time_to_failure(times, rows, threshold=100.0, direction="above",
                                   horizon=2 * DAY)
        assert (forecast.lower <= forecast.median).all()
        assert (forecast.median <= forecast.upper).all()
        assert set(forecast.model) <= {"robust", "damped", "reset", "seasonal", "none"}

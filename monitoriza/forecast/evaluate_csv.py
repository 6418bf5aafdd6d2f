"""``monitoriza forecast evaluate``: the frontier on the user's own ``timestamp,value`` CSVs.

Each CSV gets its failure threshold at a quantile of its own values (crossed from below; with
direction "below", the 1 - q quantile crossed from above, replayed as the negated series, which
every method forecasts exactly as the original) and is replayed every hour (or ``every``;
``monitoriza.forecast.evaluate``). Monitoriza's lower, median and upper
estimates, each alarming at ≤ H, are set against predict_linear's frontier at equal false
alarms per day (``monitoriza.forecast.frontier``); the recommended alert estimate is the one
with the most detections at or under the target false-alarm rate. The bounds' coverage
(``monitoriza.forecast.coverage``) on the same replay closes the report.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from monitoriza.durations import format_duration
from monitoriza.exceptions import MonitorizaError
from monitoriza.forecast import model
from monitoriza.forecast.backtest import BacktestError, read_csv
from monitoriza.forecast.coverage import Coverage, describe, pooled
from monitoriza.forecast.evaluate import (
    HOUR,
    Series,
    SeriesRun,
    forecaster_method,
    replay,
    run_coverage,
)
from monitoriza.forecast.frontier import (
    DAY,
    CurvePoint,
    Matchup,
    Replayed,
    count_events,
    curve,
    grid_step,
    matchup,
    on_grid,
    operating_point,
    recommend,
)
from monitoriza.forecast.model import DEFAULT_COVERAGE

ESTIMATES = ("lower", "median", "upper")
BASELINE = "predict_linear"


class EvaluationError(MonitorizaError, ValueError):
    """A CSV that cannot be evaluated; the message names the file."""


@dataclass(frozen=True)
class UserEvaluation:
    """``monitoriza forecast evaluate``: each Monitoriza estimate against predict_linear."""

    series: int
    evaluated: int
    days: float
    events: int
    baseline: CurvePoint  # predict_linear alarming at median ≤ H
    baseline_curve: list[CurvePoint]
    matchups: dict[str, Matchup]  # lower, median, upper, each alarming at ≤ H
    recommended: str | None  # None: no estimate meets the target
    target: float
    coverage: Coverage  # of [lower, upper], at the default level

    def public(self) -> dict[str, object]:
        """For JSON."""
        return {"series": self.series, "evaluated": self.evaluated, "days": self.days,
                "events": self.events, "target_false_alarms_per_day": self.target,
                "recommended": self.recommended,
                "estimates": {name: m.public() for name, m in self.matchups.items()},
                BASELINE: self.baseline.public(),
                "baseline_curve": [point.public() for point in self.baseline_curve],
                "coverage": {"stated": DEFAULT_COVERAGE, **self.coverage.public()}}


def load_csv(path: Path, threshold_quantile: float,
             direction: Literal["above", "below"] = "above") -> Series:
    """One ``timestamp,value`` CSV on its grid, its threshold the given quantile of its values
    (for "below", the series negated: its threshold is then the 1 - q quantile of the
    original, crossed from above)."""
    try:
        times, values = read_csv(path)
    except BacktestError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise EvaluationError(reason if str(path) in reason else f"{path}: {reason}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationError(f"{path}: not a timestamp,value CSV ({exc})") from None
    known = np.isfinite(values)
    if np.unique(times[known]).size < 3:
        raise EvaluationError(f"{path}: too few points ({int(known.sum())} with a value)")
    times, values = times[known], values[known]
    if direction == "below":
        values = -values
    grid_times, grid_values = on_grid(times, values, grid_step(times))
    threshold = float(np.quantile(values, threshold_quantile))
    return Series(str(path), grid_times, grid_values, threshold)


def estimate_replays(runs: Sequence[SeriesRun], method: str, estimate: str) -> list[Replayed]:
    """The runs seen through one estimate of one method."""
    return [Replayed(run.series.name, run.eval_times, run.crossing,
                     getattr(run.predictions[method], estimate)) for run in runs]


def estimate_matchups(runs: Sequence[SeriesRun], baseline_curve: Sequence[CurvePoint], *,
                      horizon: float, every: float) -> dict[str, Matchup]:
    """Monitoriza's lower, median and upper estimates, each alarming at ≤ H, against
    predict_linear's curve at equal false alarms per day."""
    return {estimate: matchup(operating_point(estimate_replays(runs, "monitoriza", estimate),
                                              horizon, every), baseline_curve)
            for estimate in ESTIMATES}


def frontier_of(runs: Sequence[SeriesRun], *, horizon: float,
                every: float) -> dict[str, Matchup]:
    """``estimate_matchups`` of replayed runs (which need ``monitoriza`` and predict_linear)."""
    baseline_curve = curve(estimate_replays(runs, BASELINE, "median"), horizon, every)
    return estimate_matchups(runs, baseline_curve, horizon=horizon, every=every)


def evaluate_csvs(paths: Sequence[Path], *, threshold_quantile: float, window: float,
                  horizon: float, target: float, every: float = HOUR,
                  direction: Literal["above", "below"] = "above") -> UserEvaluation:
    """Replay every CSV; Monitoriza's lower, median and upper estimates against predict_linear
    at equal false alarms per day, and the estimate to alert on for ``target``."""
    methods = {"monitoriza": forecaster_method(model.time_to_failure),
               BASELINE: forecaster_method(model.ols_time_to_failure)}
    runs = []
    for path in paths:
        series = load_csv(path, threshold_quantile, direction)
        long_enough = series.times[-1] - series.times[0] >= window + horizon
        run = replay(series, methods, window=window, horizon=horizon,
                     every=every) if long_enough else None
        if run is None or run.eval_times.size == 0:
            raise EvaluationError(
                f"{path}: too few points: needs more than window + horizon "
                f"({format_duration(window + horizon)}) of history below the threshold")
        runs.append(run)
    baseline_curve = curve(estimate_replays(runs, BASELINE, "median"), horizon, every)
    matchups = estimate_matchups(runs, baseline_curve, horizon=horizon, every=every)
    evaluated = sum(int(run.eval_times.size) for run in runs)
    return UserEvaluation(
        series=len(runs), evaluated=evaluated, days=evaluated * every / DAY,
        events=sum(count_events(run.crossing) for run in runs),
        baseline=baseline_curve[-1], baseline_curve=baseline_curve, matchups=matchups,
        recommended=recommend({name: m.ours for name, m in matchups.items()}, target),
        target=target,
        coverage=pooled(run_coverage(run, "monitoriza", horizon) for run in runs))


def ratio_text(value: float | None) -> str:
    """A ratio with two decimals, '—' when undefined."""
    return "—" if value is None else f"{value:.2f}"


def report_text(result: UserEvaluation) -> str:
    """The frontier table and the recommendation, as ``monitoriza forecast evaluate`` prints."""
    lines = [f"{result.series} series, {result.evaluated:,} evaluation times "
             f"({result.days:.1f} days), {result.events:,} crossing events",
             f"{'alarm on':<20} {'FA/day':>7} {'detected':>9}   {'predict_linear':>14} "
             f"{'its FA/day':>10} {'ratio':>6} {'paired events':>13} {'paired lead ratio':>17}"]
    for estimate, m in result.matchups.items():
        lines.append(
            f"{estimate + ' ≤ H':<20} {m.ours.false_alarms_per_day:>7.2f} "
            f"{f'{m.ours.detected}/{result.events}':>9}   {m.baseline.detected:>14} "
            f"{m.baseline.false_alarms_per_day:>10.2f} {ratio_text(m.detection_ratio):>6} "
            f"{m.paired['paired_events']:>13} "
            f"{ratio_text(m.paired['paired_median_lead_ratio']):>17}")
    base = result.baseline
    lines.append(f"{BASELINE + ' ≤ H':<20} {base.false_alarms_per_day:>7.2f} "
                 f"{f'{base.detected}/{result.events}':>9}")
    lines.append("predict_linear: its most detections (and its false alarms per day) at no "
                 "more false alarms per day than the estimate, alarming at median ≤ any cutoff "
                 "up to H; ratio: detected / those; paired lead ratio: median lead / "
                 "predict_linear's, on the events both detect")
    chosen = result.recommended
    if chosen is None:
        quietest = min(result.matchups, key=lambda e: result.matchups[e].ours.false_alarms_per_day)
        lines.append(f"no estimate meets the target of {result.target:g} false alarms per day "
                     f"(the quietest, {quietest}, raises "
                     f"{result.matchups[quietest].ours.false_alarms_per_day:.2f})")
    else:
        point = result.matchups[chosen].ours
        lines.append(f"recommended alert estimate for at most {result.target:g} false alarms "
                     f"per day: {chosen} ({point.detected} of {result.events} crossing events, "
                     f"{point.false_alarms_per_day:.2f} false alarms per day)")
    lines.append(describe(result.coverage, DEFAULT_COVERAGE))
    return "\n".join(lines)

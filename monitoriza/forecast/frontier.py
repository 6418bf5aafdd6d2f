"""Pure scoring of time-to-failure alarms: the truth of a replay, the alarm scores, and the
frontier of detected crossings against false alarms per day.

A time t is positive when the series crosses within (t, t + H]: the first grid time there with
value ≥ threshold is its crossing time. Precision = true alarms / alarms. Recall = true alarms
/ positives. False alarms per day = false alarms / (evaluated times x ``every`` / 1 day). Lead
time: for each crossing event (a distinct crossing time), crossing time - the earliest
evaluation time that raised a true alarm for it.

The frontier: an estimate of the time to failure (Monitoriza's lower, median or upper, or
predict_linear's) alarms when it is ≤ a cutoff. Sweeping the cutoff from 0 to the horizon
traces detected crossing events against false alarms per day. One estimate is better than
another when it detects more events at the same false-alarm rate, with lead times at least as
good on the events both detect: ``at_equal_false_alarms`` takes, on the baseline's curve, the
point with the most detections at no more false alarms per day than ours.

Used by ``monitoriza forecast evaluate`` and ``benchmarks/forecast_eval.py``; numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

DAY = 86400.0
THRESHOLD_PERCENTILE = 99.0
FA_RATIO_TARGET = 0.5
CURVE_CUTOFFS = 24  # points of a frontier curve between 0 and the horizon

Metrics = dict[str, float | int | None]
Leads = Mapping[tuple[str, float], float]  # (series, crossing time) -> lead, detected only


@dataclass(frozen=True)
class Score:
    """One method's counts on one or more series, enough to pool and summarise."""

    evaluated: int
    alarms: int
    true_alarms: int
    positives: int
    events: int
    leads: Leads
    mases: tuple[float, ...]




def threshold_rule(values: FloatArray, percentile: float = THRESHOLD_PERCENTILE) -> float:
    """The failure threshold of a series: a percentile of all its values (NAB: the 99th)."""
    return float(np.nanpercentile(values, percentile))


def on_grid(times: FloatArray, values: FloatArray,
            step: float) -> tuple[FloatArray, FloatArray]:
    """The samples on a regular grid of ``step`` seconds (the last in each slot, else NaN)."""
    slots = np.round((times - times[0]) / step).astype(np.int64)
    grid = np.full(int(slots[-1]) + 1, np.nan)
    grid[slots] = values
    return times[0] + step * np.arange(grid.size, dtype=np.float64), grid


def grid_step(times: FloatArray) -> float:
    """The median spacing of the samples (5 min for NAB)."""
    diffs = np.diff(times)
    return float(np.median(diffs[diffs > 0]))


def evaluation_ends(size: int, width: int, ahead: int, stride: int) -> IntArray:
    """Grid indices of the evaluation times: a full window before, a full horizon after."""
    return np.arange(width - 1, size - ahead, stride, dtype=np.int64)


def last_values(windows: FloatArray) -> FloatArray:
    """The last non-NaN value of each row (NaN for an empty row)."""
    seen = ~np.isnan(windows)
    last = windows.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)
    picked = windows[np.arange(windows.shape[0]), last]
    return np.where(seen.any(axis=1), picked, np.nan)


def crossing_times(times: FloatArray, values: FloatArray, ends: IntArray, ahead: int,
                   threshold: float) -> FloatArray:
    """For each end index, the first time in (t, t + ahead steps] with value ≥ threshold."""
    future = np.lib.stride_tricks.sliding_window_view(values[1:], ahead)[ends]
    hit = future >= threshold
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), times[ends + 1 + first], np.nan)


def precision(alarm: BoolArray, positive: BoolArray) -> float:
    """True alarms / alarms (NaN without alarms)."""
    alarms = int(alarm.sum())
    return int((alarm & positive).sum()) / alarms if alarms else math.nan


def recall(alarm: BoolArray, positive: BoolArray) -> float:
    """True alarms / positives (NaN without positives)."""
    positives = int(positive.sum())
    return int((alarm & positive).sum()) / positives if positives else math.nan


def false_alarms_per_day(alarm: BoolArray, positive: BoolArray, days: float) -> float:
    """Alarms with no crossing within the horizon, per day evaluated."""
    return int((alarm & ~positive).sum()) / days if days > 0 else math.nan


def lead_times(eval_times: FloatArray, alarm: BoolArray,
               crossing: FloatArray) -> dict[float, float]:
    """Per detected crossing event (its time): crossing time - the earliest true alarm for it."""
    true_alarm = alarm & ~np.isnan(crossing)
    return {float(event): float(event - eval_times[true_alarm & (crossing == event)].min())
            for event in np.unique(crossing[true_alarm])}


def count_events(crossing: FloatArray) -> int:
    """The number of distinct crossing events among the evaluated times."""
    return int(np.unique(crossing[~np.isnan(crossing)]).size)


def mase(point: FloatArray, actual: FloatArray, last: FloatArray) -> float:
    """MAE of ``point`` over MAE of the last value, where all three are finite (NaN if 0/0)."""
    usable = np.isfinite(point) & np.isfinite(actual) & np.isfinite(last)
    scale = float(np.abs(actual[usable] - last[usable]).sum())
    if not usable.any() or scale == 0.0:
        return math.nan
    return float(np.abs(actual[usable] - point[usable]).sum()) / scale


def geometric_mean(values: Iterable[float]) -> float:
    """The geometric mean of the finite positive values (NaN if none)."""
    kept = [value for value in values if math.isfinite(value) and value > 0]
    return math.exp(sum(math.log(value) for value in kept) / len(kept)) if kept else math.nan




def pool(scores: Iterable[Score]) -> Score:
    """The counts of several series added up."""
    scores = list(scores)
    return Score(
        evaluated=sum(s.evaluated for s in scores),
        alarms=sum(s.alarms for s in scores),
        true_alarms=sum(s.true_alarms for s in scores),
        positives=sum(s.positives for s in scores),
        events=sum(s.events for s in scores),
        leads={event: lead for s in scores for event, lead in s.leads.items()},
        mases=tuple(m for s in scores for m in s.mases),
    )


def summarise(pooled: Score, every: float) -> Metrics:
    """The reported metrics of pooled counts (None where undefined)."""
    days = pooled.evaluated * every / DAY
    false_alarms = pooled.alarms - pooled.true_alarms
    metrics: Metrics = {
        "evaluated": pooled.evaluated,
        "days": days,
        "alarms": pooled.alarms,
        "true_alarms": pooled.true_alarms,
        "false_alarms": false_alarms,
        "positives": pooled.positives,
        "precision": pooled.true_alarms / pooled.alarms if pooled.alarms else math.nan,
        "recall": pooled.true_alarms / pooled.positives if pooled.positives else math.nan,
        "false_alarms_per_day": false_alarms / days if days else math.nan,
        "events": pooled.events,
        "events_detected": len(pooled.leads),
        "median_lead_s": median(pooled.leads.values()),
        "mase": geometric_mean(pooled.mases),
    }
    return {key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in metrics.items()}


def ratio(numerator: float | int | None, denominator: float | int | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def median(values: Iterable[float]) -> float:
    """The median (NaN of nothing)."""
    kept = list(values)
    return float(np.median(kept)) if kept else math.nan


def paired_leads(ours: Leads, baseline: Leads) -> dict[str, float | None]:
    """Median leads of both methods on the events both detected, so that a method is not
    judged on the late, hard events only it detected."""
    common = ours.keys() & baseline.keys()
    ours_median = median(ours[event] for event in common)
    baseline_median = median(baseline[event] for event in common)
    return {"paired_events": len(common),
            "paired_median_lead_s": None if math.isnan(ours_median) else ours_median,
            "paired_baseline_median_lead_s": (None if math.isnan(baseline_median)
                                              else baseline_median),
            "paired_median_lead_ratio": ratio(ours_median, baseline_median)
            if common else None}


def compare(metrics: Mapping[str, Metrics], ours: str = "monitoriza",
            baseline: str = "predict_linear") -> dict[str, float | bool | None]:
    """The ratios ours / baseline and whether each target is met (None: cannot tell)."""
    a, b = metrics[ours], metrics[baseline]
    fa_ratio = ratio(a["false_alarms_per_day"], b["false_alarms_per_day"])
    lead_ratio = ratio(a["median_lead_s"], b["median_lead_s"])
    fa_met = (a["false_alarms_per_day"] == 0 if b["false_alarms_per_day"] == 0
              else None if fa_ratio is None else fa_ratio <= FA_RATIO_TARGET)
    recall_met = at_least(a["recall"], b["recall"])
    lead_met = at_least(a["median_lead_s"], b["median_lead_s"])
    return {"false_alarms_per_day_ratio": fa_ratio, "median_lead_ratio": lead_ratio,
            "target_false_alarms_met": fa_met, "target_recall_met": recall_met,
            "target_lead_met": lead_met}


def at_least(ours: float | int | None, baseline: float | int | None) -> bool | None:
    """ours ≥ baseline; a missing baseline is always matched, a missing ours never."""
    if baseline is None:
        return True
    return None if ours is None else ours >= baseline


# --------------------------------------------------------------------------- the frontier


@dataclass(frozen=True)
class Replayed:
    """One series replayed for one estimate: the evaluated times, their truth, the estimate."""

    name: str
    eval_times: FloatArray
    crossing: FloatArray  # first crossing time in (t, t + H], NaN when none
    estimate: FloatArray  # seconds to failure, inf when none within the horizon


@dataclass(frozen=True)
class CurvePoint:
    """The alarms of one estimate at one cutoff, pooled over series."""

    cutoff: float  # alarm when the estimate is ≤ cutoff seconds
    false_alarms_per_day: float
    detected: int
    leads: Leads

    def public(self) -> dict[str, float | int]:
        """The point without its per-event leads, for JSON."""
        return {"cutoff_s": self.cutoff, "false_alarms_per_day": self.false_alarms_per_day,
                "detected": self.detected}


NO_ALARMS = CurvePoint(0.0, 0.0, 0, {})


def operating_point(replays: Iterable[Replayed], cutoff: float, every: float) -> CurvePoint:
    """False alarms per day and detected events when the estimate alarms at ≤ ``cutoff``."""
    false_alarms = evaluated = 0
    leads: dict[tuple[str, float], float] = {}
    for replayed in replays:
        alarm = replayed.estimate <= cutoff
        false_alarms += int((alarm & np.isnan(replayed.crossing)).sum())
        evaluated += int(replayed.eval_times.size)
        leads |= {(replayed.name, event): lead for event, lead in
                  lead_times(replayed.eval_times, alarm, replayed.crossing).items()}
    days = evaluated * every / DAY
    return CurvePoint(cutoff, false_alarms / days if days else math.nan, len(leads), leads)


def curve(replays: Sequence[Replayed], horizon: float, every: float,
          cutoffs: int = CURVE_CUTOFFS) -> list[CurvePoint]:
    """The estimate's operating points for cutoffs from horizon / ``cutoffs`` to the horizon."""
    return [operating_point(replays, horizon * k / cutoffs, every)
            for k in range(1, cutoffs + 1)]


def at_equal_false_alarms(baseline: Iterable[CurvePoint],
                          false_alarms_per_day: float) -> CurvePoint:
    """The baseline's point with the most detections (then the fewest false alarms) at no
    more false alarms per day than given; no alarms at all when none is that quiet."""
    quiet = [point for point in baseline
             if point.false_alarms_per_day <= false_alarms_per_day + 1e-9]
    return max(quiet, key=lambda p: (p.detected, -p.false_alarms_per_day), default=NO_ALARMS)


@dataclass(frozen=True)
class Matchup:
    """One estimate at its operating point against the baseline at equal false alarms."""

    ours: CurvePoint
    baseline: CurvePoint
    detection_ratio: float | None  # None when the baseline detects nothing
    paired: dict[str, float | None]  # ``paired_leads`` of the two

    def public(self) -> dict[str, object]:
        """For JSON."""
        return {"ours": self.ours.public(), "baseline": self.baseline.public(),
                "detection_ratio": self.detection_ratio, **self.paired}


def matchup(ours: CurvePoint, baseline: Iterable[CurvePoint]) -> Matchup:
    """``ours`` against the baseline's best point at its false-alarm rate."""
    match = at_equal_false_alarms(baseline, ours.false_alarms_per_day)
    return Matchup(ours, match, ratio(ours.detected, match.detected),
                   paired_leads(ours.leads, match.leads))


def recommend(points: Mapping[str, CurvePoint], target: float) -> str | None:
    """The estimate with the most detections (then the fewest false alarms) whose false
    alarms per day are at or below ``target``; None when none is."""
    meeting = [(name, point) for name, point in points.items()
               if point.false_alarms_per_day <= target]
    best = max(meeting, key=lambda item: (item[1].detected, -item[1].false_alarms_per_day),
               default=None)
    return None if best is None else best[0]

"""Time-to-failure alarms replayed on real and synthetic histories, against two baselines.

Every simulated hour, each method sees the same past window of a series and says whether it
will cross its failure threshold within the horizon H. The alarms are then scored against
what the series really did next.

Data sets
  * ``nab``: every CSV in ``DIR/realAWSCloudwatch`` (NAB real AWS CloudWatch metrics).
    Threshold rule: the 99th percentile of the whole series, direction "above". NAB has no
    capacity limits, so a line has to be chosen; the 99th percentile is one that every series
    really reaches (at least 1 % of its samples, about 40 of 4,032) — so there are crossings
    to forecast — but rarely, so an alarm is not right by luck. It is fixed once, from the
    whole series, before any replay, the way an operator sets an alert line; the methods only
    ever see it as the line to forecast against, never as data.
  * ``synthetic``: disk usage in % generated here with a fixed seed, threshold 90 % (a usual
    "disk almost full" line), three shapes, three replicas each, 14 days at 5 min:
    ``rotation`` — logs fill the disk (four times faster 08:00-20:00) and are rotated away
    every midnight, peaks always below 90 %, so every alarm is false; ``leak`` — the same
    sawtooth, but the floor after each rotation rises, so the peaks cross 90 % after a few
    days; ``bursty`` — noisy flat usage with bursts that a cron clean-up or GC removes.

Replay
  Each history is put on a regular grid at its median sample spacing (the last sample in
  each slot, NaN where there is none), as ``monitoriza forecast backtest`` does. Evaluation
  times t run every ``--every`` (1 h) from the first moment with a full window to the last
  with a full horizon after it. The window is the grid in [t - W, t] (W = ``--window``),
  given to every method with all windows of a series at once (the model gets, in one call,
  the windows that end at the same time of day, with their true time of day). The current
  value is the last sample in the window. Times where it is already at or above the
  threshold, or the window is empty, are not evaluated: those are not forecasts.

Alarms
  * ``monitoriza``: ``time_to_failure`` median ≤ H. The median is the like-for-like choice
    against predict_linear's single estimate (same decision rule, better estimate); alarming
    on the lower bound is a deliberately earlier, noisier warning.
  * ``predict_linear``: ``ols_time_to_failure`` (OLS over the window, what PromQL's
    ``predict_linear`` does) median ≤ H.
  * ``naive``: the current value ≥ 0.9 x threshold — the static "90 % of the limit" warning
    that ignores the trend (for thresholds > 0, as on every series here).

Scores (pure functions of arrays, below; per data set the counts of all its series pooled)
  A time t is positive when the series crosses within (t, t + H]: the first grid time there
  with value ≥ threshold is its crossing time. Precision = true alarms / alarms. Recall =
  true alarms / positives. False alarms per day = false alarms / (evaluated times x 1 h /
  1 day). Lead time: for each crossing event (a distinct crossing time), crossing time -
  the earliest evaluation time that raised a true alarm for it; the median over the events
  detected (and, since a method that also catches the late, hard events lowers its own
  median, the median of both methods on the events both detected). MASE: per series, the
  mean absolute error of the method's ``point`` (its forecast of the value at t + H) over
  the mean absolute error of the last value at the same points (those where the value at
  t + H is known); per data set the geometric mean over series (scale ratios average
  multiplicatively; a series whose last value is never wrong is left out). Targets
  (reported, not asserted): monitoriza has at most half the false alarms per day of
  predict_linear, and a recall and a median lead time at least as good.

The replay, the methods and the scores live in the package: ``monitoriza.forecast.evaluate``
(replay, methods), ``monitoriza.forecast.frontier`` (scores, frontier) and
``monitoriza.forecast.datasets`` (NAB, synthetic); this script prints, plots and times them.
``monitoriza forecast evaluate`` (``monitoriza.forecast.evaluate_csv``) runs the frontier on a
user's own CSVs.

Usage: python benchmarks/forecast_eval.py [--data DIR] [--horizon 4h] [--window 6h] [--json]
                                          [--plot docs/forecasting.png] [--frontier]

``--frontier`` adds other alarm rules, to measure the trade-off: Monitoriza alarming on its
lower estimate at interval quantiles 0.6, 0.7, 0.9, and a noise-aware first-passage rule
(``crossing_probability``) at probabilities 0.9, 0.995, 0.998; and, per data set, each of
Monitoriza's lower, median and upper estimates against predict_linear at equal false alarms
per day (``monitoriza.forecast.frontier``), with the paired lead ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from monitoriza.durations import format_duration, parse_duration
from monitoriza.forecast.coverage import describe
from monitoriza.forecast.datasets import (
    NAB_FOLDER,
    SYNTHETIC_SEED,
    SYNTHETIC_THRESHOLD,
    load_nab,
    synthetic_set,
)
from monitoriza.forecast.evaluate import (
    HOUR,
    DatasetResult,
    Method,
    Prediction,
    SeriesRun,
    default_methods,
    evaluate,
    frontier_methods,
    score,
)
from monitoriza.forecast.evaluate_csv import frontier_of
from monitoriza.forecast.frontier import (
    FA_RATIO_TARGET,
    THRESHOLD_PERCENTILE,
    IntArray,
    Matchup,
    Metrics,
    count_events,
)
from monitoriza.forecast.model import DEFAULT_COVERAGE

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PLOT_NAB_SERIES = "ec2_cpu_utilization_ac20cd"  # ramps from ~34 % to the 99 % ceiling


# --------------------------------------------------------------------------- output


def fmt(value: float | int | None, kind: str) -> str:
    """One table cell: a ratio, a duration or a number; '—' when undefined."""
    if value is None:
        return "—"
    if kind == "duration":
        return format_duration(60 * round(float(value) / 60))
    if kind == "ratio":
        return f"{float(value):.2f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def table(name: str, result: DatasetResult) -> str:
    """The plain-text report of one data set."""
    metrics = result.metrics
    first = next(iter(metrics.values()))
    lines = [f"{name}: {result.series} series, {first['evaluated']:,} evaluation times "
             f"({first['days']:.1f} days), {first['positives']:,} positives, "
             f"{first['events']:,} crossing events",
             f"{'method':<36} {'precision':>9} {'recall':>7} {'FA/day':>7} {'alarms':>7} "
             f"{'detected':>9} {'median lead':>11} {'MASE':>6} {'seconds':>8}"]
    lines += [row(method, m) for method, m in metrics.items()]
    for kind, by_method in result.kinds.items():
        lines += [row(f"  {kind}: {method}", m) for method, m in by_method.items()]
    if result.coverage is not None:
        lines.append("monitoriza " + describe(result.coverage, DEFAULT_COVERAGE))
    comparison = result.comparison
    if comparison is not None:
        lines.append(
            f"monitoriza / predict_linear: false alarms per day "
            f"{fmt(comparison['false_alarms_per_day_ratio'], 'ratio')} "
            f"(target ≤ {FA_RATIO_TARGET}: {verdict(comparison['target_false_alarms_met'])}), "
            f"median lead {fmt(comparison['median_lead_ratio'], 'ratio')} "
            f"(target ≥ 1: {verdict(comparison['target_lead_met'])}), "
            f"recall target ≥ predict_linear: {verdict(comparison['target_recall_met'])}")
        lines.append(
            f"  on the {comparison['paired_events']} events both detect, median lead "
            f"{fmt(comparison['paired_median_lead_s'], 'duration')} vs "
            f"{fmt(comparison['paired_baseline_median_lead_s'], 'duration')} "
            f"(ratio {fmt(comparison['paired_median_lead_ratio'], 'ratio')})")
    return "\n".join(lines)


def frontier_table(name: str, matchups: Mapping[str, Matchup]) -> str:
    """Each Monitoriza estimate alarming at ≤ H against predict_linear at equal false alarms."""
    lines = [f"{name}, at equal false alarms per day (predict_linear: median ≤ a cutoff up to "
             f"H, its most detections at no more false alarms per day)",
             f"{'alarm on':<14} {'FA/day':>7} {'detected':>9} {'predict_linear':>15} "
             f"{'its FA/day':>10} {'ratio':>6} {'paired events':>13} {'paired lead ratio':>17}"]
    lines += [f"{estimate + ' ≤ H':<14} {fmt(m.ours.false_alarms_per_day, 'n'):>7} "
              f"{m.ours.detected:>9} {m.baseline.detected:>15} "
              f"{fmt(m.baseline.false_alarms_per_day, 'n'):>10} "
              f"{fmt(m.detection_ratio, 'ratio'):>6} {m.paired['paired_events']:>13} "
              f"{fmt(m.paired['paired_median_lead_ratio'], 'ratio'):>17}"
              for estimate, m in matchups.items()]
    return "\n".join(lines)


def row(label: str, m: Metrics) -> str:
    """One line of the table."""
    detected = f"{m['events_detected']}/{m['events']}"
    seconds = m.get("seconds")
    return (f"{label:<36} {fmt(m['precision'], 'ratio'):>9} {fmt(m['recall'], 'ratio'):>7} "
            f"{fmt(m['false_alarms_per_day'], 'n'):>7} {m['alarms']:>7,} {detected:>9} "
            f"{fmt(m['median_lead_s'], 'duration'):>11} {fmt(m['mase'], 'ratio'):>6} "
            f"{'' if seconds is None else format(seconds, '.2f'):>8}")


def verdict(met: object) -> str:
    """'met', 'NOT met' or 'n/a'."""
    return "n/a" if met is None else "met" if met else "NOT met"


# --------------------------------------------------------------------------- plot


def focus(run: SeriesRun, horizon: float, count: int = 4) -> tuple[float, IntArray]:
    """The first crossing monitoriza detected (else the first) and up to ``count`` times before."""
    positive = ~np.isnan(run.crossing)
    if not positive.any():
        picks = np.linspace(0, run.eval_times.size - 1, count).round().astype(np.int64)
        return float(run.eval_times[picks[-1]] + horizon), picks
    detected = positive.copy()
    if "monitoriza" in run.predictions:
        detected &= run.predictions["monitoriza"].alarm
    event = float(np.min(run.crossing[detected if detected.any() else positive]))
    before = np.flatnonzero((run.eval_times < event) & (run.eval_times >= event - 2 * horizon))
    return event, before[-count:]


def draw_panel(ax: Axes, run: SeriesRun, horizon: float) -> None:
    """History, threshold and the forecasts made at a few times before one crossing."""
    event, picks = focus(run, horizon)
    series = run.series
    start, end = event - 30 * HOUR, event + 10 * HOUR
    shown = (series.times >= start) & (series.times <= end)
    hours = (series.times[shown] - event) / HOUR
    ax.plot(hours, series.values[shown], color="0.35", lw=1.0, label="history")
    ax.axhline(series.threshold, color="crimson", lw=1.2, ls="--",
               label=f"threshold {series.threshold:.4g}")
    low, high = np.nanmin(series.values[shown]), np.nanmax(series.values[shown])
    step = 0.06 * (max(high, series.threshold) - low or 1.0)
    colours = ("tab:blue", "tab:green", "tab:purple", "tab:orange")
    for rank, index in enumerate(picks):
        colour = colours[rank % len(colours)]
        at = (run.eval_times[index] - event) / HOUR
        level = series.threshold + (rank + 1) * step
        ax.axvline(at, color=colour, ls=":", lw=1.0)
        draw_monitoriza(ax, run.predictions.get("monitoriza"), index=int(index), at=at,
                        level=level, horizon=horizon, colour=colour)
        linear = run.predictions.get("predict_linear")
        if linear is not None and math.isfinite(linear.median[index]):
            tip = min(float(linear.median[index]), 2 * horizon) / HOUR
            ax.plot(at + tip, level - 0.45 * step, marker="x", ms=8, mew=2, color=colour,
                    ls="none")
    moment = datetime.fromtimestamp(event, UTC).strftime("%Y-%m-%d %H:%M UTC")
    ax.set_xlabel(f"hours from the crossing at {moment}")
    ax.set_ylabel("value")
    ax.set_title(f"{series.name}: forecasts at the dotted times (H = {format_duration(horizon)})")
    ax.set_xlim((start - event) / HOUR, (end - event) / HOUR)
    legend_proxies(ax)


def draw_monitoriza(ax: Axes, prediction: Prediction | None, *, index: int, at: float,
                    level: float, horizon: float, colour: str) -> None:
    """Monitoriza's median time to failure (dot) and its lower-upper span (bar)."""
    if prediction is None or not math.isfinite(prediction.lower[index]):
        return
    cap = 2 * horizon
    lower = float(prediction.lower[index]) / HOUR
    upper = min(float(prediction.upper[index]), cap) / HOUR
    ax.plot([at + lower, at + upper], [level, level], color=colour, lw=3, alpha=0.5,
            solid_capstyle="butt")
    median = float(prediction.median[index])
    if math.isfinite(median):
        ax.plot(at + min(median, cap) / HOUR, level, marker="o", ms=7, color=colour, ls="none")
    if not math.isfinite(float(prediction.upper[index])):
        ax.plot(at + upper, level, marker=">", ms=6, color=colour, ls="none")


def legend_proxies(ax: Axes) -> None:
    """A legend that explains the markers once, whatever their colour."""
    from matplotlib.lines import Line2D  # noqa: PLC0415 - matplotlib only for --plot

    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.4", ls=":", label="evaluation time t (one colour each)"),
        Line2D([], [], color="0.4", marker="o", ls="none",
               label="Monitoriza: t + median time to failure"),
        Line2D([], [], color="0.4", lw=3, alpha=0.5,
               label="Monitoriza: t + lower … upper (▶: beyond 2H)"),
        Line2D([], [], color="0.4", marker="x", mew=2, ls="none",
               label="predict_linear: t + time to failure"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              borderaxespad=0.0)


def plot(path: Path, runs: Sequence[SeriesRun], horizon: float) -> None:
    """Write a PNG with one panel per run."""
    import matplotlib  # noqa: PLC0415 - matplotlib only for --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(len(runs), 1, figsize=(13, 4.5 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        draw_panel(ax, run, horizon)
    figure.text(0.01, 0.005, "Markers sit just above the threshold, a pair of rows per "
                "evaluation time (o Monitoriza, x predict_linear just below it).\nA marker at x "
                "means the method expects the crossing x hours from the true one; no marker: "
                "no crossing expected within H.", fontsize=8, color="0.3")
    figure.tight_layout(rect=(0, 0.035, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plotted_runs(nab: DatasetResult, synthetic: DatasetResult) -> list[SeriesRun]:
    """NAB's "reaches the ceiling" series (else the one with the most detected crossings), and
    the first synthetic leak."""

    def detected(run: SeriesRun) -> tuple[bool, int, int]:
        found = len(score(run, "monitoriza").leads) if "monitoriza" in run.predictions else 0
        return run.series.name == PLOT_NAB_SERIES, found, count_events(run.crossing)

    leak = next(run for run in synthetic.runs if run.series.name.startswith("leak"))
    return [max(nab.runs, key=detected), leak]


# --------------------------------------------------------------------------- main


def run(data: Path, *, window: float, horizon: float, every: float,
        methods: Mapping[str, Method]) -> dict[str, DatasetResult]:
    """Both data sets evaluated with ``methods``."""
    return {
        "nab": evaluate(load_nab(data / NAB_FOLDER), methods, window=window, horizon=horizon,
                        every=every),
        "synthetic": evaluate(synthetic_set(), methods, window=window, horizon=horizon,
                              every=every, by_kind=True),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, evaluate, print, plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/nab"))
    parser.add_argument("--horizon", type=parse_duration, default=parse_duration("4h"))
    parser.add_argument("--window", type=parse_duration, default=parse_duration("6h"))
    parser.add_argument("--every", type=parse_duration, default=parse_duration("1h"),
                        help="time between evaluations")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, help="write a PNG of two replayed series")
    parser.add_argument("--frontier", action="store_true",
                        help="also replay other alarm rules (lower estimate, first passage)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    methods = default_methods() | (frontier_methods() if args.frontier else {})
    results = run(args.data, window=args.window, horizon=args.horizon, every=args.every,
                  methods=methods)
    if args.plot:
        plot(args.plot, plotted_runs(results["nab"], results["synthetic"]), args.horizon)
    frontiers = {name: frontier_of(result.runs, horizon=args.horizon, every=args.every)
                 for name, result in results.items()} if args.frontier else {}
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({
            "window_s": args.window, "horizon_s": args.horizon, "every_s": args.every,
            "threshold_rule": f"nab: p{THRESHOLD_PERCENTILE:g} of the series, above; "
                              f"synthetic: {SYNTHETIC_THRESHOLD:g} %, above",
            "seed": SYNTHETIC_SEED,
            "datasets": {name: result.public() for name, result in results.items()},
            "frontier": {name: {estimate: m.public() for estimate, m in by_estimate.items()}
                         for name, by_estimate in frontiers.items()},
            "plot": str(args.plot) if args.plot else None,
            "runtime_s": round(elapsed, 2)}, indent=2))
        return
    print(f"window {format_duration(args.window)}, horizon {format_duration(args.horizon)}, "
          f"every {format_duration(args.every)}; thresholds: NAB p{THRESHOLD_PERCENTILE:g}, "
          f"synthetic {SYNTHETIC_THRESHOLD:g} % (seed {SYNTHETIC_SEED})\n")
    for name, result in results.items():
        print(table(name, result) + "\n")
        if name in frontiers:
            print(frontier_table(name, frontiers[name]) + "\n")
    if args.plot:
        print(f"plot: {args.plot}")
    print(f"runtime {elapsed:.1f} s")


if __name__ == "__main__":
    main()

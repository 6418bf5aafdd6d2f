"""A forecast's chart as inline SVG: the recent history and the band projected to failure.

The history is the forecast's own expression over its window (one line per series). From the
last value of the most urgent series, three lines run to the failure threshold, reaching it at
now + the lower, median and upper times to failure the exporter published; the area between
the lower and the upper line is the band. A time that is ``+Inf`` (no failure within the
horizon) draws a flat edge; the chart never looks further ahead than the horizon.

Pure: data in, :class:`markupsafe.Markup` out; every text (series labels above all) goes
through :func:`markupsafe.escape`. No JavaScript, so it renders in any browser and in print.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

from monitoriza.durations import format_duration

WIDTH = 760
HEIGHT = 232
LEFT = 64  # room for the value axis' labels
RIGHT = 16
TOP = 14
BOTTOM = 48  # the time axis and the legend
INK = "#1b2430"
GRID = "#d9dee5"
THRESHOLD = "#a11d2b"
BAND = "#f2b8be"
MEDIAN = "#a11d2b"
# Tableau 10, as the report's charts use it.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
MAX_LEGEND = 6
HISTORY_SHARE = 0.6  # of the plot's width, when a projection follows


@dataclass(frozen=True, slots=True)
class Series:
    label: str  # the series' labels as text, e.g. {path="/"}
    points: tuple[tuple[float, float], ...]  # (unix time, value), oldest first


@dataclass(frozen=True, slots=True)
class Estimates:
    """Seconds from now until the threshold is crossed; ``math.inf``: not within the horizon."""

    lower: float
    median: float
    upper: float


def _finite(values: Sequence[float]) -> list[float]:
    return [value for value in values if math.isfinite(value)]


def anchor_value(series: Sequence[Series], threshold: float, direction: str) -> float | None:
    """The last value of the series closest to failure: the band starts there."""
    last = _finite([s.points[-1][1] for s in series if s.points])
    if not last:
        return None
    return max(last) if direction == "above" else min(last)


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _edge(start: float, value: float, threshold: float, seconds: float,
          until: float) -> tuple[float, float]:
    """Where the line from (``start``, ``value``) that reaches ``threshold`` after ``seconds``
    is at time ``until`` (a flat line when it never does)."""
    if not math.isfinite(seconds):
        return until, value
    if seconds <= 0:
        return start, threshold
    if start + seconds <= until:
        return start + seconds, threshold
    return until, value + (threshold - value) * (until - start) / seconds


def forecast_svg(series: Sequence[Series], *, now: float, window: float, horizon: float,
                 threshold: float, direction: str, estimates: Estimates | None,
                 title: str) -> Markup:
    """The chart of one forecast; ``estimates`` None draws the history alone."""
    anchor = anchor_value(series, threshold, direction)
    finite = _finite([estimates.lower, estimates.median, estimates.upper]) \
        if estimates is not None and anchor is not None else []
    ahead = min(horizon, max([*finite, window * 0.25])) if finite else 0.0
    start, end = now - window, now + ahead
    values = [*_finite([v for s in series for _, v in s.points]), threshold]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    low, high = low - pad, high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    # Two time scales side by side: the window's history, then the projection ahead (hours
    # ahead on the history's scale would squash minutes of history into a line).
    past_w = plot_w * (HISTORY_SHARE if ahead else 1.0)

    def x(moment: float) -> float:
        if moment <= now:
            return LEFT + max(0.0, (moment - start) / window) * past_w
        return LEFT + past_w + min(1.0, (moment - now) / ahead) * (plot_w - past_w)

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
             f'stroke="{GRID}"/>']
    if ahead:
        parts.append(f'<rect x="{LEFT + past_w:.1f}" y="{TOP}" width="{plot_w - past_w:.1f}" '
                     f'height="{plot_h}" fill="#f6f7f9"/>'
                     f'<text x="{LEFT + plot_w - 4}" y="{TOP + plot_h - 6}" font-size="10" '
                     f'text-anchor="end" fill="{INK}">projection (its own time scale)</text>')
    for value in (low + pad, (low + high) / 2, high - pad):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}" stroke="{GRID}" stroke-dasharray="2 3"/>'
                     f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="{INK}">{escape(_number(value))}</text>')
    if finite and anchor is not None and estimates is not None:
        lower = _edge(now, anchor, threshold, estimates.lower, end)
        upper = _edge(now, anchor, threshold, estimates.upper, end)
        median = _edge(now, anchor, threshold, estimates.median, end)
        corners = [(now, anchor), lower]
        if lower[0] < end and upper[0] >= end and upper[1] != threshold:
            corners.append((end, threshold))
        corners.append(upper)
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in corners)
        parts.append(f'<polygon points="{points}" fill="{BAND}" fill-opacity="0.6" '
                     'stroke="none"><title>projected band: lower to upper time to failure'
                     "</title></polygon>")
        parts.append(f'<line x1="{x(now):.1f}" y1="{y(anchor):.1f}" x2="{x(median[0]):.1f}" '
                     f'y2="{y(median[1]):.1f}" stroke="{MEDIAN}" stroke-width="2" '
                     'stroke-dasharray="6 3"><title>median projection</title></line>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(threshold):.1f}" '
                 f'y2="{y(threshold):.1f}" stroke="{THRESHOLD}" stroke-width="1.5"/>'
                 f'<text x="{LEFT + 4}" y="{y(threshold) - 4:.1f}" '
                 f'font-size="11" fill="{THRESHOLD}">threshold {escape(_number(threshold))} '
                 f"({escape(direction)})</text>")
    for index, one in enumerate(series):
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in one.points if math.isfinite(v))
        if path:
            parts.append(f'<polyline points="{path}" fill="none" stroke-width="1.6" '
                         f'stroke="{PALETTE[index % len(PALETTE)]}"><title>'
                         f"{escape(one.label)}</title></polyline>")
    parts.append(f'<line x1="{x(now):.1f}" x2="{x(now):.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
                 f'stroke="{INK}" stroke-dasharray="3 3"/>')
    axis_y = TOP + plot_h + 16
    parts.append(f'<text x="{LEFT}" y="{axis_y}" font-size="11" fill="{INK}">'
                 f"{escape(_clock(start))} UTC (-{escape(format_duration(window))})</text>"
                 f'<text x="{x(now):.1f}" y="{axis_y}" text-anchor="middle" font-size="11" '
                 f'fill="{INK}">now</text>')
    if ahead:
        parts.append(f'<text x="{LEFT + plot_w}" y="{axis_y}" text-anchor="end" '
                     f'font-size="11" fill="{INK}">+{escape(format_duration(ahead))}</text>')
    legend_y = axis_y + 15
    shown = series[:MAX_LEGEND]
    item_w = plot_w // max(1, len(shown))
    fits = max(4, (item_w - 24) // 6)  # characters of about 6 px at this size
    for index, one in enumerate(shown):
        left = LEFT + index * item_w
        label = one.label if len(one.label) <= fits else one.label[:fits - 1] + "…"
        parts.append(f'<rect x="{left}" y="{legend_y - 8}" width="10" height="3" '
                     f'fill="{PALETTE[index % len(PALETTE)]}"/>'
                     f'<text x="{left + 14}" y="{legend_y - 4}" font-size="10" fill="{INK}">'
                     f"{escape(label)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))

"""The report's two charts as inline SVG, written by hand.

A plotting library would be a runtime dependency of every install (the report runs in the
production image) for two charts: bars against a target, and one line per service. SVG text
is escaped like the rest of the page, stays sharp when zoomed or printed, and needs no image
encoding. Pure functions: data in, markup out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

WIDTH = 960
LABEL_WIDTH = 150  # room for service names left of the plot
RIGHT_PAD = 20
BAR_HEIGHT = 22
BAR_GAP = 8
AXIS_HEIGHT = 44  # ticks and the axis title under the plot
LINE_PLOT_HEIGHT = 220
TOP_PAD = 10  # so that a line at 100 % and the top tick's label are not cut off
LEGEND_ROW = 18
BELOW_TARGET = "#d92d20"
AT_TARGET = "#12b76a"
INK = "#1d2330"
GRID = "#d0d5dd"
# Tableau 10: distinguishable lines for up to ten services, then it repeats.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")


@dataclass(frozen=True)
class Bar:
    """One service's availability (0..1) against its target (0..1)."""

    label: str
    value: float
    target: float


@dataclass(frozen=True)
class Line:
    """One service's availability per step: (unix time, 0..1) points."""

    label: str
    points: Sequence[tuple[float, float]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from the last one at or below ``low`` up to ``high``: about ``count``
    steps of 1, 2 or 5 times a power of ten."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _svg(height: float, title: str, body: list[str]) -> str:
    # Inline in HTML5: no xmlns needed, and the page names no URL but Prometheus's.
    return (f'<svg role="img" width="{WIDTH}" '
            f'height="{_number(height)}" viewBox="0 0 {WIDTH} {_number(height)}" '
            f'font-family="system-ui,sans-serif" font-size="12">'
            f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def availability_bars(bars: Sequence[Bar]) -> str:
    """Horizontal bars in percent, red below target, a black mark at each target; the axis
    starts a little below the lowest value or target so that small differences show."""
    if not bars:
        return ""
    values = [100 * bar.value for bar in bars]
    targets = [100 * bar.target for bar in bars]
    lowest = min(*values, *targets)
    ticks = nice_ticks(max(0.0, lowest - (100 - lowest) * 0.5 - 0.1), 100.0)
    low = ticks[0]  # the axis starts on a tick
    plot_width = WIDTH - LABEL_WIDTH - RIGHT_PAD
    plot_height = len(bars) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP

    def x(percent: float) -> float:
        return LABEL_WIDTH + (min(max(percent, low), 100.0) - low) / (100.0 - low) * plot_width

    body = []
    for tick in ticks:
        body.append(f'<line x1="{_number(x(tick))}" y1="0" x2="{_number(x(tick))}" '
                    f'y2="{plot_height}" stroke="{GRID}"/>'
                    f'<text x="{_number(x(tick))}" y="{plot_height + 16}" '
                    f'text-anchor="middle">{_number(tick)}</text>')
    for index, bar in enumerate(bars):
        top = BAR_GAP + index * (BAR_HEIGHT + BAR_GAP)
        colour = BELOW_TARGET if bar.value < bar.target else AT_TARGET
        value, target = 100 * bar.value, 100 * bar.target
        body.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{top + BAR_HEIGHT / 2 + 4}" '
            f'text-anchor="end">{escape(bar.label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{top}" width="{_number(x(value) - LABEL_WIDTH)}" '
            f'height="{BAR_HEIGHT}" fill="{colour}"><title>{escape(bar.label)}: '
            f"{value:.3f} % (target {target:g} %)</title></rect>"
            f'<line x1="{_number(x(target))}" y1="{top - 3}" x2="{_number(x(target))}" '
            f'y2="{top + BAR_HEIGHT + 3}" stroke="{INK}" stroke-width="2"/>')
    body.append(f'<text x="{LABEL_WIDTH + plot_width / 2}" y="{plot_height + 36}" '
                'text-anchor="middle">availability over the period, % (black mark: '
                "target)</text>")
    return _svg(plot_height + AXIS_HEIGHT, "availability per service against its target",
                body)


def _time_label(moment: float, span: float) -> str:
    when = datetime.fromtimestamp(moment, UTC)
    return when.strftime("%m-%d %H:%M" if span > 86400 else "%H:%M")


def availability_lines(lines: Sequence[Line]) -> str:
    """One line per service over time, 0..100 %, the y axis starting a little below the lowest
    point; times in UTC."""
    drawn = [line for line in lines if line.points]
    if not drawn:
        return ""
    times = [t for line in drawn for t, _ in line.points]
    start, end = min(times), max(times)
    span = max(end - start, 1.0)
    lowest = min(100 * v for line in drawn for _, v in line.points)
    ticks = nice_ticks(max(0.0, lowest - (100 - lowest) * 0.1 - 0.1), 100.0, 4)
    low = ticks[0]
    plot_width = WIDTH - LABEL_WIDTH - RIGHT_PAD
    legend_rows = math.ceil(len(drawn) / 4)

    def x(moment: float) -> float:
        return LABEL_WIDTH + (moment - start) / span * plot_width

    def y(ratio: float) -> float:
        return TOP_PAD + LINE_PLOT_HEIGHT - (100 * ratio - low) / max(100.0 - low, 1e-9) * (
            LINE_PLOT_HEIGHT)

    body = []
    for tick in ticks:
        level = y(tick / 100)
        body.append(f'<line x1="{LABEL_WIDTH}" y1="{_number(level)}" x2="{WIDTH - RIGHT_PAD}" '
                    f'y2="{_number(level)}" stroke="{GRID}"/><text x="{LABEL_WIDTH - 8}" '
                    f'y="{_number(level + 4)}" text-anchor="end">{_number(tick)}</text>')
    bottom = TOP_PAD + LINE_PLOT_HEIGHT
    for index in range(6):
        moment = start + span * index / 5
        anchor = "start" if index == 0 else "end" if index == 5 else "middle"
        body.append(f'<text x="{_number(x(moment))}" y="{bottom + 16}" '
                    f'text-anchor="{anchor}">{escape(_time_label(moment, span))}</text>')
    for index, line in enumerate(drawn):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join(f"{_number(x(t))},{_number(y(v))}" for t, v in line.points)
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                    f'points="{points}"><title>{escape(line.label)}</title></polyline>')
        column, row = index % 4, index // 4
        left = LABEL_WIDTH + column * plot_width / 4
        top = bottom + AXIS_HEIGHT + 8 + row * LEGEND_ROW
        body.append(f'<rect x="{_number(left)}" y="{top - 9}" width="14" height="4" '
                    f'fill="{colour}"/><text x="{_number(left + 20)}" y="{top}">'
                    f"{escape(line.label)}</text>")
    middle = TOP_PAD + LINE_PLOT_HEIGHT / 2
    body.append(f'<text x="14" y="{middle}" text-anchor="middle" '
                f'transform="rotate(-90 14 {middle})">availability per step, %</text>')
    body.append(f'<text x="{LABEL_WIDTH + plot_width / 2}" y="{bottom + 32}" '
                'text-anchor="middle">time (UTC)</text>')
    return _svg(bottom + AXIS_HEIGHT + 8 + legend_rows * LEGEND_ROW + 4,
                "availability per step and service", body)

"""Charts drawn on the server as inline SVG: no JavaScript, no external asset.

Every piece of text that reaches the SVG (a title, a label) goes through
:func:`markupsafe.escape`; numbers are formatted by this module. The result is
:class:`markupsafe.Markup`, so a template inserts it as it is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from markupsafe import Markup, escape

# Stroke colours of the score bands (base.html's --ok, --warn, --bad) and of no data.
_BAND_COLOURS = {"ok": "#1f7a3f", "warn": "#8a5a00", "bad": "#a11d2b", "info": "#1d4f91"}

Point = tuple[float, float]  # (unix time, value)


def _segments(points: Sequence[Point], max_gap: float) -> list[list[Point]]:
    """The points split where more than ``max_gap`` seconds pass without one (a scrape gap
    is drawn as a gap, not as a line across it)."""
    segments: list[list[Point]] = []
    current: list[Point] = []
    last = -math.inf
    for point in points if _ordered(points) else sorted(points):
        if not math.isfinite(point[1]):
            continue
        if point[0] - last > max_gap and current:
            segments.append(current)
            current = []
        current.append(point)
        last = point[0]
    if current:
        segments.append(current)
    return segments


def _step(points: Sequence[Point]) -> float:
    """The smallest spacing of the points: a range query's step, which must never read as a
    gap (two missed steps in a row do)."""
    times = sorted(t for t, _ in points)
    return min((b - a for a, b in itertools.pairwise(times) if b > a), default=0.0)


def _ordered(points: Sequence[Point]) -> bool:
    return all(points[i][0] <= points[i + 1][0] for i in range(len(points) - 1))


def sparkline(points: Sequence[Point], *, start: float, end: float, title: str,
              low: float = 0.0, high: float = 100.0, band: str = "info",
              width: int = 140, height: int = 28, max_gap: float | None = None) -> Markup:
    """A small line chart of ``points`` between ``start`` and ``end`` (x) and ``low`` and
    ``high`` (y), stroked in the colour of ``band`` (``ok``, ``warn``, ``bad``, ``info``);
    ``title`` is its tooltip and accessible name. The line breaks where more than
    ``max_gap`` seconds pass between points (default: a twentieth of the span, or two and a
    half steps of the points' grid if longer). Without points: a frame saying "no data"."""
    if end <= start or high <= low:
        raise ValueError(f"sparkline: empty range (start {start}, end {end}, "
                         f"low {low}, high {high})")
    colour = _BAND_COLOURS.get(band, _BAND_COLOURS["info"])
    pad = 2.0
    # x = x0 + t * sx, y = y0 - v * sy: the overview draws 500 of these, so the arithmetic
    # is inlined below rather than called per point.
    sx = (width - 2 * pad) / (end - start)
    x0 = pad - start * sx
    sy = (height - 2 * pad) / (high - low)
    y0 = pad + high * sy

    def xy(t: float, v: float) -> str:
        return f"{x0 + min(max(t, start), end) * sx:.1f},{y0 - min(max(v, low), high) * sy:.1f}"

    gap = max_gap if max_gap is not None else max((end - start) / 20, 2.5 * _step(points))
    parts = [f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
             f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fbfcfd" '
             f'stroke="#e3e7ec"/>']
    segments = _segments(points, gap)
    if not segments:
        parts.append(f'<text x="{width / 2:.0f}" y="{height / 2 + 4:.0f}" font-size="10" '
                     f'text-anchor="middle" fill="#5b6573">no data</text>')
    for segment in segments:
        if len(segment) > 1:
            coords = " ".join([f"{x0 + min(max(t, start), end) * sx:.1f},"
                               f"{y0 - min(max(v, low), high) * sy:.1f}" for t, v in segment])
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                         f'stroke-linejoin="round" points="{coords}"/>')
    if segments:
        # The latest value, as a dot (also the only mark of a one-point segment).
        cx, cy = xy(*segments[-1][-1]).split(",")
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.2" fill="{colour}"/>')
        for segment in segments[:-1]:
            if len(segment) == 1:
                cx, cy = xy(*segment[0]).split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="{colour}"/>')
    parts.append("</svg>")
    # Built above from numbers and escaped text only.
    return Markup("".join(parts))

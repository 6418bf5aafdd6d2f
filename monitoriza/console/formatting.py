"""How the console writes times, durations and scores: plain functions shared by its pages
(UTC everywhere, as Prometheus and the audit log write them)."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def utc(timestamp: float | None) -> str:
    """``2026-12-05 09:20:03 UTC``; an em dash when there is no time."""
    if timestamp is None or not math.isfinite(timestamp):
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    units = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    first = next(index for index, (value, _) in enumerate(units) if value)
    # The two largest units: "3 min 5 s", "2 h 10 min", "3 d 4 h".
    return " ".join(f"{value} {unit}" for value, unit in units[first:first + 2] if value)


def duration(seconds: float | None) -> str:
    """A human span: ``850 ms``, ``4.2 s``, ``42 s``, ``3 min 5 s``, ``2 h 10 min``,
    ``3 d 4 h``; an em dash when there is none."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return _span(seconds)


# Health score bands (0..100), the same everywhere in the console: good, degraded, bad.
GOOD_SCORE = 90.0
DEGRADED_SCORE = 60.0


def score_class(score: float | None) -> str:
    """The pill class of a 0..100 score: ``ok``, ``warn``, ``bad``; ``info`` when unknown."""
    if score is None:
        return "info"
    if score >= GOOD_SCORE:
        return "ok"
    return "warn" if score >= DEGRADED_SCORE else "bad"


def dimension_class(value: float | None) -> str:
    """The pill class of a 0..1 dimension score (scaled like the health score)."""
    return score_class(None if value is None else value * 100.0)

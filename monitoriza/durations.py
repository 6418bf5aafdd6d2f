"""Durations written the Prometheus way: ``250ms``, ``90s``, ``5m``, ``1h30m``, ``7d``."""

from __future__ import annotations

import re

from monitoriza.exceptions import DurationError

_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
# Units must appear in Prometheus' order, each at most once (as promtool requires).
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")


def parse_duration(text: str) -> float:
    """Return the number of seconds ``text`` stands for."""
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise DurationError(f"expected a duration like 90s, 5m or 1h30m, got {text!r}")
    return sum(
        int(amount) * _UNIT_SECONDS[unit]
        for amount, unit in zip(match.groups(), _ORDER, strict=True)
        if amount is not None
    )


def format_duration(seconds: float) -> str:
    """Return the shortest Prometheus duration for ``seconds`` (rounded to milliseconds)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit in _ORDER:
        unit_millis = round(_UNIT_SECONDS[unit] * 1000)
        amount, millis = divmod(millis, unit_millis)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)

"""Durations are read and written the Prometheus way."""

from __future__ import annotations

import pytest

from monitoriza.durations import format_duration, parse_duration
from monitoriza.exceptions import DurationError


class TestDurations:
    """Prometheus duration strings round-trip through seconds."""

    @pytest.mark.parametrize(("text", "seconds"), [
        ("250ms", 0.25), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("7d", 604800.0),
        ("1w", 604800.0), ("2h0m5s", 7205.0)])
    def test_parse(self, text: str, seconds: float) -> None:
        """Each unit, alone or combined in order, gives the right number of seconds."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "5", "5 m", "m", "5m1h", "1.5h", "-5s", "5mins"])
    def test_reject(self, text: str) -> None:
        """Anything Prometheus would refuse is refused with the expected form in the message."""
        with pytest.raises(DurationError, match="expected a duration like 90s"):
            parse_duration(text)

    @pytest.mark.parametrize(("seconds", "text"), [
        (0.25, "250ms"), (90, "1m30s"), (3600, "1h"), (0, "0s"), (5400.5, "1h30m500ms")])
    def test_format(self, seconds: float, text: str) -> None:
        """Seconds are written as the shortest Prometheus duration."""
        assert format_duration(seconds) == text

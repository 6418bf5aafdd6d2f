"""Argument types of the command line, shared by its subcommand modules: each turns bad text
into argparse's own error ("argument --rate: must be > 0")."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from monitoriza.durations import parse_duration
from monitoriza.exceptions import DurationError


def duration(value: str) -> float:
    """``30s``, ``5m``, ``1h30m``: seconds."""
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration(value: str) -> float:
    """A duration longer than zero."""
    seconds = duration(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0, got {value}")
    return seconds


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def between(low: float, high: float, *, name: str,
            inclusive: bool) -> Callable[[str], float]:
    """A number from ``low`` to ``high`` (ends included or not): "not a NAME between LOW and
    HIGH: '1.5'" otherwise."""
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        inside = low <= number <= high if inclusive else low < number < high
        if not inside:
            raise argparse.ArgumentTypeError(f"not a {name} between {low:g} and {high:g}: "
                                             f"{value!r}")
        return number

    return parse

"""Prometheus text exposition (format 0.0.4), rendered in pieces.

``prometheus_client.generate_latest`` costs about 10 µs a series on the machines we measured
(benchmarks/scrape.py): 180 ms for an estate of 500 services. A probe's lines only change when
the probe finishes a run, so the scheduler renders them then, in the worker thread, and a
scrape only joins ready-made strings. Tests parse the result with prometheus_client's parser
and lint it with ``promtool check metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label_value(value: str) -> str:
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value  # the common case, checked first because scrapes format many values
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def format_value(value: float) -> str:
    """Finite values as Python's shortest repr (which Prometheus parses); others the Go way."""
    if math.isfinite(value):
        return repr(float(value))
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family's name, help, type and label names, declared once."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    type: str = "gauge"
    _prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen, so set through object; the sample name never changes.
        name = f"{self.name}_total" if self.type == "counter" else self.name
        object.__setattr__(self, "_prefix", name)

    def header(self) -> str:
        # Format 0.0.4 names a counter's family with its _total suffix, like its samples.
        name = self._prefix
        return f"# HELP {name} {escape_help(self.help)}\n# TYPE {name} {self.type}\n"

    def sample(self, label_values: Sequence[str], value: float,
               extra: Sequence[tuple[str, str]] = ()) -> str:
        """One sample line; ``label_values`` in the order of ``labels``, then the ``extra``
        (name, value) pairs (a forecast's series labels), whose names must differ from
        ``labels``."""
        if len(label_values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {label_values}")
        pairs = [*zip(self.labels, label_values, strict=True), *extra]
        if not pairs:
            return f"{self._prefix} {format_value(value)}\n"
        text = ",".join(f'{label}="{escape_label_value(item)}"' for label, item in pairs)
        return f"{self._prefix}{{{text}}} {format_value(value)}\n"


def render(families: Iterable[tuple[Family, Iterable[str]]]) -> str:
    """The exposition of families with their sample lines; empty families are left out."""
    parts = []
    for family, lines in families:
        body = "".join(lines)
        if body:
            parts.append(family.header())
            parts.append(body)
    return "".join(parts)

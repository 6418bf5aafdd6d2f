"""Service-level objectives of a load drill, free of I/O: parse ``--slo`` text and judge a
run's figures against it.

``p50``/``p95``/``p99=DURATION`` bound that percentile of **every step** of the flow (a slow
step is not hidden by fast ones); ``errors=PERCENT`` bounds the share of **flow runs** that
failed (one failed step fails the user's journey).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitoriza.durations import format_duration, parse_duration
from monitoriza.exceptions import DurationError, MonitorizaError

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


class SloError(MonitorizaError):
    """The ``--slo`` text cannot be understood."""


@dataclass(frozen=True, slots=True)
class Slo:
    """Latency bounds in milliseconds per percentile name, and the failed-run bound in %."""

    latency_ms: Mapping[str, float]
    errors_percent: float | None = None

    def describe(self) -> str:
        parts = [f"{name}={format_duration(ms / 1000)}" for name, ms in self.latency_ms.items()]
        if self.errors_percent is not None:
            parts.append(f"errors={self.errors_percent:g}%")
        return ",".join(parts)


@dataclass(frozen=True, slots=True)
class StepFigures:
    """What one step measured: its request count and percentiles (None without requests)."""

    name: str
    requests: int
    percentiles_ms: Mapping[str, float | None]


def parse_slo(text: str) -> Slo:
    """``p95=300ms,errors=1%`` -> :class:`Slo`; SloError naming the bad part otherwise."""
    latency: dict[str, float] = {}
    errors: float | None = None
    seen: set[str] = set()
    for part in text.split(","):
        key, equals, value = part.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key or not value:
            raise SloError(f"expected NAME=VALUE (e.g. p95=300ms,errors=1%), got {part!r}")
        if key in seen:
            raise SloError(f"{key} is given twice")
        seen.add(key)
        if key in PERCENTILES:
            try:
                latency[key] = parse_duration(value) * 1000
            except DurationError as exc:
                raise SloError(f"{key}: {exc}") from None
            if latency[key] <= 0:
                raise SloError(f"{key}: must be more than 0, got {value!r}")
        elif key == "errors":
            match = _PERCENT.match(value)
            if match is None or float(match.group(1)) > 100:
                raise SloError(f"errors: expected a percentage from 0% to 100%, got {value!r}")
            errors = float(match.group(1))
        else:
            raise SloError(f"unknown objective {key!r}: expected p50, p95, p99 or errors")
    return Slo(latency, errors)


def judge_slo(slo: Slo, steps: Sequence[StepFigures], flow_runs: int,
              failed_runs: int) -> list[str]:
    """Every objective missed, one line each; empty when all are met."""
    if flow_runs == 0:
        return ["no flow run completed"]
    misses = []
    for name, limit_ms in slo.latency_ms.items():
        for step in steps:
            found = step.percentiles_ms.get(name)
            if found is None:
                misses.append(f"step {step.name}: no {name}, the step never ran")
            elif found > limit_ms:
                misses.append(f"step {step.name}: {name} {found:g}ms > {limit_ms:g}ms")
    if slo.errors_percent is not None:
        percent = 100 * failed_runs / flow_runs
        if percent > slo.errors_percent:
            misses.append(f"errors: {percent:.2f}% of flow runs failed > "
                          f"{slo.errors_percent:g}%")
    return misses

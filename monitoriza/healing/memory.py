"""Operational memory: which healing action has worked for a service, and how sure we are.

Each action's history is a count of successes ``s`` and failures ``f``. Its unknown success rate
``p`` gets a uniform prior, so after the history the posterior is ``Beta(a, b)`` with
``a = 1 + s`` and ``b = 1 + f``:

* :func:`success_ratio` is the posterior mean ``a / (a + b)`` — 0.5 with no history, 0.8 after
  three successes and no failure, never exactly 0 or 1.
* :func:`lower_bound` is ``mean - z · sd`` clamped to ``[0, 1]``, where
  ``sd = sqrt(a · b / ((a + b)² · (a + b + 1)))``; with the default ``z = 1.28`` it is roughly a
  one-sided 90 % lower bound, so an action that succeeded once is not trusted over one that
  succeeded nine times out of ten.
* :func:`demoted` marks an action with at least 3 attempts and a posterior mean below 0.3.
* :func:`rank` orders candidates: demoted ones last, then by lower bound (highest first), then by
  fewer attempts (an untried action gets its chance), then by name.

Everything here is pure: the counts come from the store, the ranking is arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

DEMOTE_MIN_ATTEMPTS = 3
DEMOTE_BELOW = 0.3


@dataclass(frozen=True)
class Outcomes:
    """How often an action succeeded and failed for one service."""

    successes: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        if self.successes < 0 or self.failures < 0:
            raise ValueError(f"outcome counts must be >= 0, got {self.successes}/{self.failures}")

    @property
    def attempts(self) -> int:
        """Successes plus failures."""
        return self.successes + self.failures

    def add(self, success: bool) -> Outcomes:
        """The counts after one more outcome."""
        if success:
            return Outcomes(self.successes + 1, self.failures)
        return Outcomes(self.successes, self.failures + 1)


def _beta(o: Outcomes) -> tuple[float, float]:
    return 1.0 + o.successes, 1.0 + o.failures


def success_ratio(o: Outcomes) -> float:
    """The posterior mean success rate ``(1 + s) / (2 + s + f)``."""
    a, b = _beta(o)
    return a / (a + b)


def lower_bound(o: Outcomes, z: float = 1.28) -> float:
    """A conservative success rate: posterior mean minus ``z`` standard deviations, in [0, 1]."""
    a, b = _beta(o)
    n = a + b
    sd = math.sqrt(a * b / (n * n * (n + 1)))
    return min(1.0, max(0.0, a / n - z * sd))


def demoted(o: Outcomes) -> bool:
    """True when the action has been tried at least 3 times and its posterior mean is < 0.3."""
    return o.attempts >= DEMOTE_MIN_ATTEMPTS and success_ratio(o) < DEMOTE_BELOW


def rank(candidates: Mapping[str, Outcomes]) -> list[str]:
    """Candidate names, best first: not demoted, highest lower bound, fewest attempts, name."""
    return sorted(
        candidates,
        key=lambda name: (
            demoted(candidates[name]),
            -lower_bound(candidates[name]),
            candidates[name].attempts,
            name,
        ),
    )

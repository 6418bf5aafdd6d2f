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

Sites pool their evidence. What one condominium learned (``s_p``, ``f_p``: the outcomes of the
same signature, service and action at every *other* site) informs another's ranking, weighted
below its own (``s``, ``f``) by ``w`` (``responder.healing.pooled_memory_weight``, 0.5 by
default, always < 1):

    a = 1 + s + w · s_p        b = 1 + f + w · f_p

and mean, lower bound, demotion (with ``s + f + w · (s_p + f_p)`` as the attempts) follow
from that ``Beta(a, b)`` as above. So three successes at the alert's own site outrank three
at other sites, and a playbook that failed everywhere else starts low here too.

Everything here is pure: the counts come from the store, the ranking is arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


_NONE = Outcomes()


def _beta(o: Outcomes, pooled: Outcomes = _NONE, weight: float = 0.0) -> tuple[float, float]:
    return (1.0 + o.successes + weight * pooled.successes,
            1.0 + o.failures + weight * pooled.failures)


def _checked(weight: float) -> float:
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"the pooled evidence's weight must be in [0, 1), got {weight!r}")
    return weight


def success_ratio(o: Outcomes, pooled: Outcomes = _NONE, weight: float = 0.0) -> float:
    """The posterior mean success rate ``a / (a + b)``: ``(1 + s) / (2 + s + f)`` without
    pooled evidence."""
    a, b = _beta(o, pooled, _checked(weight))
    return a / (a + b)


def lower_bound(o: Outcomes, z: float = 1.28, pooled: Outcomes = _NONE,
                weight: float = 0.0) -> float:
    """A conservative success rate: posterior mean minus ``z`` standard deviations, in [0, 1]."""
    a, b = _beta(o, pooled, _checked(weight))
    n = a + b
    sd = math.sqrt(a * b / (n * n * (n + 1)))
    return min(1.0, max(0.0, a / n - z * sd))


def _attempts(o: Outcomes, pooled: Outcomes, weight: float) -> float:
    return o.attempts + weight * pooled.attempts


def demoted(o: Outcomes, pooled: Outcomes = _NONE, weight: float = 0.0) -> bool:
    """True when the action has been tried at least 3 times (pooled attempts weighted) and
    its posterior mean is < 0.3."""
    return (_attempts(o, pooled, weight) >= DEMOTE_MIN_ATTEMPTS
            and success_ratio(o, pooled, weight) < DEMOTE_BELOW)


def rank(candidates: Mapping[str, Outcomes], pooled: Mapping[str, Outcomes] | None = None,
         weight: float = 0.0) -> list[str]:
    """Candidate names, best first: not demoted, highest lower bound, fewest attempts, name.

    ``candidates`` hold each action's local outcomes; ``pooled`` those at the other sites,
    counted at ``weight`` (< 1) of a local one."""
    others = pooled or {}
    _checked(weight)

    def key(name: str) -> tuple[bool, float, float, str]:
        local, away = candidates[name], others.get(name, _NONE)
        return (demoted(local, away, weight), -lower_bound(local, pooled=away, weight=weight),
                _attempts(local, away, weight), name)

    return sorted(candidates, key=key)


def with_pooled(rows: Sequence[Mapping[str, Any]], weight: float) -> list[dict[str, Any]]:
    """Memory's rows (``site``, ``signature``, ``service``, ``action``, ``successes``,
    ``failures``, ...) each with what it learned locally and what the other sites pooled:
    ``success_ratio`` (local evidence alone, as before sites), ``pooled_successes`` and
    ``pooled_failures`` (the same signature, service and action at every other site),
    ``pooled_sites``, ``pooled_weight``, and ``ranked_success_ratio`` and ``lower_bound``,
    the posterior mean and bound the ranking uses (pooled evidence weighted by ``weight``)."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        total = totals.setdefault((row["signature"], row["service"], row["action"]), [0, 0, 0])
        total[0] += int(row["successes"])
        total[1] += int(row["failures"])
        total[2] += 1
    viewed = []
    for row in rows:
        total = totals[(row["signature"], row["service"], row["action"])]
        local = Outcomes(int(row["successes"]), int(row["failures"]))
        away = Outcomes(total[0] - local.successes, total[1] - local.failures)
        viewed.append({**row, "success_ratio": round(success_ratio(local), 4),
                       "pooled_successes": away.successes, "pooled_failures": away.failures,
                       "pooled_sites": total[2] - 1, "pooled_weight": weight,
                       "ranked_success_ratio": round(success_ratio(local, away, weight), 4),
                       "lower_bound": round(lower_bound(local, pooled=away, weight=weight), 4)})
    return viewed

"""The restart budget and backoff of one target, as pure functions of its state and the time.

A target may be restarted at most ``restarts`` times in any sliding ``window`` of seconds; past
that, healing stops and a human is asked instead. Between attempts the wait doubles, from
``backoff_initial`` up to ``backoff_max``, so a flapping service is not restarted in a tight
loop. Once the target has stayed healthy for ``reset_after`` seconds the backoff starts over;
past attempts keep counting against the budget until they leave the window on their own.

Every function takes the time as a plain float and returns a new :class:`BudgetState`, so the
rules are tested with a fake clock and the state is stored as JSON (:meth:`BudgetState.to_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

from monitoriza.config.schema import Budget
from monitoriza.durations import format_duration
from monitoriza.healing.sites import qualified, unqualified

BUDGET_KEY_PREFIX = "budget:"


def budget_key(service: str, site: str | None = None) -> str:
    """Where the budget of ``service`` at ``site`` is stored: the only spelling of it, used
    both where a restart spends it (the healer) and where a recovery resets its backoff
    (decide). ``site`` as :func:`monitoriza.healing.sites.key_site` gives it: None for the
    default site, whose keys are spelled as before sites existed."""
    return f"{BUDGET_KEY_PREFIX}{qualified(service, site)}"


def parse_budget_key(key: str) -> tuple[str, str | None]:
    """``(service, site)`` of a :func:`budget_key`; site None for the default site."""
    return unqualified(key.removeprefix(BUDGET_KEY_PREFIX))


@dataclass(frozen=True)
class Verdict:
    """Whether the target may be restarted now, why, and when to ask again if not."""

    allowed: bool
    reason: str
    retry_at: float | None = None


@dataclass(frozen=True)
class BudgetState:
    """One target's attempts, backoff and health streak: immutable and JSON-storable."""

    attempts: tuple[float, ...] = ()  # times of the attempts that may still be in the window
    backoff: float = 0.0  # the current wait between attempts; 0 when none is due
    next_allowed_at: float = 0.0
    healthy_since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The state as plain JSON values."""
        return {
            "attempts": list(self.attempts),
            "backoff": self.backoff,
            "next_allowed_at": self.next_allowed_at,
            "healthy_since": self.healthy_since,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BudgetState:
        """The state :meth:`to_dict` wrote; ``ValueError`` if ``data`` is not one."""
        attempts = data.get("attempts")
        if not isinstance(attempts, list | tuple) or not all(_is_number(a) for a in attempts):
            raise ValueError(f"budget 'attempts' must be a list of times, got {attempts!r}")
        healthy_since = data.get("healthy_since")
        return cls(
            attempts=tuple(float(a) for a in attempts),
            backoff=_number(data, "backoff"),
            next_allowed_at=_number(data, "next_allowed_at"),
            healthy_since=None if healthy_since is None else _number(data, "healthy_since"),
        )


def _is_number(value: object) -> TypeGuard[float]:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if not _is_number(value):
        raise ValueError(f"budget {key!r} must be a number, got {value!r}")
    return float(value)


def _in_window(state: BudgetState, now: float, cfg: Budget) -> tuple[float, ...]:
    """The attempts made less than ``window`` seconds before ``now``."""
    return tuple(t for t in state.attempts if t > now - cfg.window)


def _seconds(seconds: float) -> str:
    return format_duration(math.ceil(seconds))


def check(state: BudgetState, now: float, cfg: Budget) -> Verdict:
    """May the target be restarted at ``now``? Refused when the budget is spent or backing off."""
    recent = sorted(_in_window(state, now, cfg))
    if len(recent) >= cfg.restarts:
        # Enough attempts must age out for one more to fit, and the backoff must be over.
        frees_at = recent[len(recent) - cfg.restarts] + cfg.window
        reason = f"budget spent: {len(recent)} restarts in {format_duration(cfg.window)}"
        return Verdict(False, reason, max(frees_at, state.next_allowed_at))
    if now < state.next_allowed_at:
        left = _seconds(state.next_allowed_at - now)
        reason = f"backing off for {_seconds(state.backoff)} ({left} left)"
        return Verdict(False, reason, state.next_allowed_at)
    left_after = cfg.restarts - len(recent) - 1
    return Verdict(True, f"within budget: {left_after} of {cfg.restarts} restarts left after this")


def record_attempt(state: BudgetState, now: float, cfg: Budget) -> BudgetState:
    """The state after a restart at ``now``: one more attempt, the backoff doubled (capped)."""
    backoff = cfg.backoff_initial if state.backoff == 0 else min(state.backoff * 2,
                                                                  cfg.backoff_max)
    return BudgetState(
        attempts=(*_in_window(state, now, cfg), now),
        backoff=backoff,
        next_allowed_at=now + backoff,
        healthy_since=None,
    )


def record_healthy(state: BudgetState, now: float, cfg: Budget) -> BudgetState:
    """The state after seeing the target healthy at ``now``.

    The health streak starts at the first healthy sighting; once it has lasted ``reset_after``
    seconds the backoff (and any wait still due) is cleared. Attempts are not forgiven: they
    keep counting against the budget until they leave the window.
    """
    healthy_since = now if state.healthy_since is None else state.healthy_since
    updated = replace(state, attempts=_in_window(state, now, cfg), healthy_since=healthy_since)
    if now - healthy_since >= cfg.reset_after:
        return replace(updated, backoff=0.0, next_allowed_at=0.0)
    return updated


def remaining(state: BudgetState, now: float, cfg: Budget) -> int:
    """How many restarts the budget still allows at ``now`` (ignoring the backoff)."""
    return max(0, cfg.restarts - len(_in_window(state, now, cfg)))

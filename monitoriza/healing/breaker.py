"""A circuit breaker per (service, action), as a pure state machine.

An action that keeps failing is stopped before it does more harm: the breaker *opens* after
``consecutive_failures`` failures in a row, or when at least ``min_calls`` of the last ``window``
outcomes are known and the share of failures among them reaches ``failure_ratio``. While open,
every caller is refused. Once ``open_for`` seconds have passed, the next caller gets the single
*half-open trial*; everyone else is refused while it runs. ``close_after`` trial successes in a
row close the breaker again; a trial failure re-opens it for twice as long (capped at
``max_open_for``), so an action that never recovers is retried ever more rarely.

The core (:func:`acquire`, :func:`record`, :func:`release`) takes the time as a plain float and
returns new :class:`BreakerState` values, so it is tested with a fake clock and stored as JSON
(:meth:`BreakerState.to_dict`) under :func:`breaker_key` in the store that replicas share; the
healer reads, changes and writes it under its policy lock, and logs each change of state
with :func:`log_transition`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from monitoriza.config.schema import Breaker
from monitoriza.durations import format_duration
from monitoriza.healing.sites import qualified, unqualified
from monitoriza.logs import get_logger

State = Literal["closed", "open", "half_open"]
STATES: tuple[State, ...] = ("closed", "open", "half_open")

BREAKER_KEY_PREFIX = "breaker:"
events = get_logger(__name__)


def breaker_key(service: str, playbook: str, site: str | None = None) -> str:
    """Where the breaker of ``playbook`` on ``service`` at ``site`` is stored: the only
    spelling of it. ``site`` as :func:`monitoriza.healing.sites.key_site` gives it (None for
    the default site, whose keys are spelled as before sites existed)."""
    return f"{BREAKER_KEY_PREFIX}{service}:{qualified(playbook, site)}"


def parse_breaker_key(key: str) -> tuple[str, str, str | None]:
    """``(service, playbook, site)`` of a :func:`breaker_key`; site None for the default."""
    service, _, rest = key.removeprefix(BREAKER_KEY_PREFIX).partition(":")
    playbook, site = unqualified(rest)
    return service, playbook, site


@dataclass(frozen=True)
class Permit:
    """Whether a caller may run the action now, and whether its run is the half-open trial."""

    allowed: bool
    trial: bool
    reason: str
    retry_at: float | None = None  # when a refused caller may ask again, if known


@dataclass(frozen=True)
class BreakerState:
    """One breaker's state: immutable, JSON-storable, advanced only by the module's functions."""

    state: State
    consecutive_failures: int
    recent: tuple[bool, ...]  # the last ``window`` outcomes, oldest first; True is a success
    opened_at: float | None  # when the breaker last opened; None while it has not
    open_for: float  # how long the current (or next) open period lasts
    trial_in_flight: bool
    half_open_successes: int

    @classmethod
    def initial(cls, cfg: Breaker) -> BreakerState:
        """A closed breaker with no history."""
        return cls(
            state="closed",
            consecutive_failures=0,
            recent=(),
            opened_at=None,
            open_for=cfg.open_for,
            trial_in_flight=False,
            half_open_successes=0,
        )

    def to_dict(self) -> dict[str, Any]:
        """The state as plain JSON values."""
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "recent": list(self.recent),
            "opened_at": self.opened_at,
            "open_for": self.open_for,
            "trial_in_flight": self.trial_in_flight,
            "half_open_successes": self.half_open_successes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerState:
        """The state :meth:`to_dict` wrote; ``ValueError`` if ``data`` is not one."""
        state = data.get("state")
        if state not in STATES:
            raise ValueError(f"breaker state must be one of {', '.join(STATES)}, got {state!r}")
        recent = data.get("recent")
        if not isinstance(recent, list | tuple) or not all(isinstance(r, bool) for r in recent):
            raise ValueError(f"breaker 'recent' must be a list of booleans, got {recent!r}")
        opened_at = data.get("opened_at")
        return cls(
            state=cast(State, state),
            consecutive_failures=_int(data, "consecutive_failures"),
            recent=tuple(recent),
            opened_at=None if opened_at is None else _float(data, "opened_at"),
            open_for=_float(data, "open_for"),
            trial_in_flight=_bool(data, "trial_in_flight"),
            half_open_successes=_int(data, "half_open_successes"),
        )


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"breaker {key!r} must be a non-negative integer, got {value!r}")
    return value


def _float(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"breaker {key!r} must be a number, got {value!r}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"breaker {key!r} must be true or false, got {value!r}")
    return value


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _opened(state: BreakerState, now: float, open_for: float) -> BreakerState:
    return replace(state, state="open", opened_at=now, open_for=open_for,
                   trial_in_flight=False, half_open_successes=0)


def acquire(state: BreakerState, now: float, cfg: Breaker) -> tuple[Permit, BreakerState]:
    """Ask to run the action at ``now``; return the answer and the state to keep.

    Closed: allowed. Open: refused until ``opened_at + open_for``; the first caller after that
    moves the breaker to half-open and gets the trial. Half-open: the trial goes to one caller at
    a time, everyone else is refused while it is in flight.
    """
    del cfg  # the thresholds matter only when outcomes are recorded
    if state.state == "closed":
        return Permit(allowed=True, trial=False, reason="breaker closed"), state
    if state.state == "open":
        opened_at = now if state.opened_at is None else state.opened_at
        until = opened_at + state.open_for
        if now < until:
            left = format_duration(math.ceil(until - now))
            reason = f"breaker open until {_iso(until)} ({left} left)"
            return Permit(allowed=False, trial=False, reason=reason, retry_at=until), state
        trial = replace(state, state="half_open", trial_in_flight=True, half_open_successes=0)
        return Permit(allowed=True, trial=True, reason="half-open trial"), trial
    if state.trial_in_flight:
        reason = "a half-open trial is already running"
        return Permit(allowed=False, trial=False, reason=reason), state
    return (Permit(allowed=True, trial=True, reason="half-open trial"),
            replace(state, trial_in_flight=True))


def record(state: BreakerState, success: bool, now: float, cfg: Breaker) -> BreakerState:
    """The state after an outcome of the action at ``now``.

    Closed: the outcome joins the counts and may open the breaker (a success never does).
    Half-open: the trial's success counts towards ``close_after`` and closing resets every count;
    its failure re-opens the breaker for ``min(2 * open_for, max_open_for)``. An outcome that
    arrives while the breaker is open, or half-open with no trial in flight, is a straggler
    granted before the breaker opened and is ignored.
    """
    if state.state == "closed":
        return _record_closed(state, success, now, cfg)
    if state.state == "open" or not state.trial_in_flight:
        return state
    if not success:
        return _opened(state, now, min(state.open_for * 2, cfg.max_open_for))
    successes = state.half_open_successes + 1
    if successes >= cfg.close_after:
        return BreakerState.initial(cfg)
    return replace(state, trial_in_flight=False, half_open_successes=successes)


def _record_closed(state: BreakerState, success: bool, now: float, cfg: Breaker) -> BreakerState:
    recent = (*state.recent, success)[-cfg.window:]
    consecutive = 0 if success else state.consecutive_failures + 1
    updated = replace(state, recent=recent, consecutive_failures=consecutive)
    if success:
        return updated
    failures = recent.count(False)
    too_many = len(recent) >= cfg.min_calls and failures / len(recent) >= cfg.failure_ratio
    if consecutive >= cfg.consecutive_failures or too_many:
        return _opened(updated, now, state.open_for)
    return updated


def release(state: BreakerState) -> BreakerState:
    """Give back a trial that was granted but never run (the action was cancelled)."""
    if state.state == "half_open" and state.trial_in_flight:
        return replace(state, trial_in_flight=False)
    return state


def log_transition(service: str, playbook: str, before: BreakerState, after: BreakerState, *,
                   incident: int | None = None, site: str | None = None) -> bool:
    """Log ``breaker.transition`` when ``after`` is in another state than ``before``;
    return whether it was."""
    if before.state == after.state:
        return False
    events.info("breaker.transition", service=service, action=playbook, incident=incident,
                site=site,
                **{"from": before.state, "to": after.state},
                consecutive_failures=after.consecutive_failures,
                open_for=after.open_for if after.state == "open" else None)
    return True

"""When the next experiment may start (pure).

A drill tests the pipeline, not the responder's brakes: an experiment that starts while the
previous incident's after-effects are still attributed to it (``recovery_cooldown``), or while
the root cause's restart budget is spent, would measure the cooldown or the budget instead of
detection and healing. So experiments on a root cause wait until the cooldown since its last
recovery is over and the budget window holds fewer restarts than the budget allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitoriza.config.schema import Config
from monitoriza.drill.model import Experiment


@dataclass(frozen=True, slots=True)
class Past:
    """One finished experiment: its root cause, when it was healed (if it was) and when the
    estate had recovered (if it did)."""

    root_cause: str
    healed_at: float | None
    recovered_at: float | None


def wait_before(experiment: Experiment, history: list[Past], config: Config,
                now: float) -> tuple[float, str]:
    """Seconds to wait before ``experiment`` may start, and why ("" when it may start)."""
    healing = config.responder.healing
    root = experiment.root_cause
    waits: list[tuple[float, str]] = []
    recoveries = [p.recovered_at for p in history
                  if p.root_cause == root and p.recovered_at is not None]
    if recoveries:
        until = max(recoveries) + healing.recovery_cooldown
        waits.append((until - now, f"the recovery cooldown of {root} "
                                   f"({healing.recovery_cooldown:g}s)"))
    if experiment.heal is not None:
        budget = healing.budget
        heals = sorted(p.healed_at for p in history
                       if p.root_cause == root and p.healed_at is not None
                       and p.healed_at > now - budget.window)
        if len(heals) >= budget.restarts:
            # the oldest heal that keeps the count at the limit must leave the window
            until = heals[len(heals) - budget.restarts] + budget.window
            waits.append((until - now, f"the restart budget of {root} ({budget.restarts} "
                                       f"per {budget.window:g}s)"))
    seconds, reason = max(waits, default=(0.0, ""))
    return (round(seconds, 3), reason) if seconds > 0 else (0.0, "")

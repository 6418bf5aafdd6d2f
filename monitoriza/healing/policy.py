"""The healing policy: may this action run now? Pure; the healer gathers the facts.

The checks run in a fixed order, and the first that refuses gives the reason that is audited
and escalated. The order puts the decisions that never change (a resolved alert, a symptom)
first, then the operator's switches (kill switch, dry-run, maintenance), then the safety
state of the target (budget and backoff, circuit breaker), then capacity (one action per
target, a global limit, the blast radius).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitoriza.config.schema import MaintenanceWindow
from monitoriza.durations import format_duration

Verdict = Literal["act", "dry_run", "blocked", "skipped"]


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the policy looks at for one proposed action."""

    alert_firing: bool
    is_symptom: bool
    kill_switch: bool
    dry_run: bool
    in_maintenance: bool
    budget_allowed: bool
    budget_reason: str
    breaker_allowed: bool
    breaker_reason: str
    running_on_target: int
    running_total: int
    max_concurrent: int
    recent_targets: frozenset[str]
    max_targets_per_minute: int
    target: str
    blast_radius_window: float = 60.0  # seconds recent_targets covers


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str
    check: str  # which check decided


def decide(facts: Facts) -> Decision:  # noqa: PLR0911 - one return per check, in order
    """Apply the checks in order; the first refusal wins."""
    if not facts.alert_firing:
        return Decision("skipped", "the alert is resolved; nothing to heal", "resolved")
    if facts.is_symptom:
        return Decision("skipped", "the alert is a symptom; only the root cause is healed",
                        "symptom")
    if facts.kill_switch:
        return Decision("blocked", "the kill switch is on: no healing action runs",
                        "kill_switch")
    if facts.dry_run:
        return Decision("dry_run", "dry-run: recording what would have been done", "dry_run")
    if facts.in_maintenance:
        return Decision("blocked", f"{facts.target} is in a maintenance window", "maintenance")
    if not facts.budget_allowed:
        return Decision("blocked", facts.budget_reason, "budget")
    if not facts.breaker_allowed:
        return Decision("blocked", facts.breaker_reason, "breaker")
    if facts.running_on_target > 0:
        return Decision("blocked", f"an action on {facts.target} is already running",
                        "one_per_target")
    if facts.running_total >= facts.max_concurrent:
        return Decision("blocked", f"{facts.running_total} actions are already running "
                        f"(limit {facts.max_concurrent})", "global_limit")
    if (facts.target not in facts.recent_targets
            and len(facts.recent_targets) >= facts.max_targets_per_minute):
        return Decision("blocked", f"{len(facts.recent_targets)} targets were acted on in the "
                        f"last {format_duration(facts.blast_radius_window)} (limit "
                        f"{facts.max_targets_per_minute}): blast radius",
                        "blast_radius")
    return Decision("act", "every check passed", "act")


def in_maintenance(windows: list[MaintenanceWindow], service: str, now: float) -> bool:
    """True when ``now`` falls inside a window that covers ``service``."""
    for window in windows:
        if window.services and service not in window.services:
            continue
        start = datetime.fromisoformat(window.start.replace("Z", "+00:00")).timestamp()
        end = datetime.fromisoformat(window.end.replace("Z", "+00:00")).timestamp()
        if start <= now < end:
            return True
    return False

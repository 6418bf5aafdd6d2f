"""The healing policy: may this action run now? Pure; the healer gathers the facts.

This module is the only judge of whether an alert is healed at all: resolved, symptom,
dry-run, raised by the responder itself, and every safety check. The journal step
(:mod:`monitoriza.healing.decide`) asks :func:`judge_alert` before it queues an action, and
the healer asks :func:`decide`, which starts with the same checks on fresh facts, before it
runs one (the incident may have resolved, or its root cause moved, in between).

The checks run in a fixed order, and the first that refuses gives the reason that is audited
and escalated. The order puts the decisions that never change (a resolved alert, a symptom, a
step the allow-lists refuse) first, then the operator's switches (kill switch, dry-run,
maintenance), then the safety state of the target (budget and backoff, circuit breaker), then
capacity (one action per target, a global limit, the blast radius). A refused step is decided
here, before anything runs, so it spends no restart budget and is no breaker failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitoriza.config.schema import MaintenanceWindow
from monitoriza.durations import format_duration

Verdict = Literal["act", "dry_run", "blocked", "skipped"]

# The label the responder puts on every alert it raises itself (the Escalator's refusals).
# Such an alert comes back through Alertmanager; it is for people and is never healed.
SELF_RAISED_LABEL = "monitoriza_raised_by"
SELF_RAISED_VALUE = "responder"


def raised_by_responder(labels: Mapping[str, object]) -> bool:
    """Whether an alert with ``labels`` was raised by the responder itself."""
    return labels.get(SELF_RAISED_LABEL) == SELF_RAISED_VALUE


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
    root_cause: str | None = None  # the incident's root cause, for the symptom reason
    refused_step: str | None = None  # why the allow-lists refuse a step, None if they do not


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str
    check: str  # which check decided


def judge_alert(alert_firing: bool, is_symptom: bool,
                root_cause: str | None = None) -> Decision | None:
    """The checks about the alert itself: a refusal, or None when it may be healed."""
    if not alert_firing:
        return Decision("skipped", "the incident is resolved; nothing to heal", "resolved")
    if is_symptom:
        return Decision("skipped", f"a symptom of {root_cause or 'another service'}; only "
                        "the root cause is healed", "symptom")
    return None


def decide(facts: Facts) -> Decision:  # noqa: PLR0911 - one return per check, in order
    """Apply the checks in order; the first refusal wins."""
    about_alert = judge_alert(facts.alert_firing, facts.is_symptom, facts.root_cause)
    if about_alert is not None:
        return about_alert
    if facts.refused_step is not None:
        return Decision("blocked", f"refused before anything ran: {facts.refused_step}",
                        "refused")
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


def in_maintenance(windows: list[MaintenanceWindow], service: str, now: float,
                   site: str | None = None) -> bool:
    """True when ``now`` falls inside a window that covers ``service`` at ``site``: a window
    naming sites covers only those (when ``site`` is None, as for a page that shows the
    windows themselves, its sites are not asked)."""
    for window in windows:
        if window.services and service not in window.services:
            continue
        if site is not None and window.sites and site not in window.sites:
            continue
        start = datetime.fromisoformat(window.start.replace("Z", "+00:00")).timestamp()
        end = datetime.fromisoformat(window.end.replace("Z", "+00:00")).timestamp()
        if start <= now < end:
            return True
    return False

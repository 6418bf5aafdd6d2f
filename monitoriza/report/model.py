"""The readiness report's facts and the pure rules that turn them into verdicts.

Nothing here does I/O: :mod:`monitoriza.report.collect` fills these dataclasses from
Prometheus and the responder's store, and :func:`verdicts` decides, per service, whether it is
*ready*, *at risk* or *not ready*, with every reason in words, so that the same facts always
give the same report (see docs/report.md for the rules).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from monitoriza.drill.matrix import Entry, LoadSummary, Matrix

# Availability targets per tier, as ratios (docs/report.md).
TARGETS: Mapping[str, float] = {"critical": 0.999, "standard": 0.995}
# A probe whose last success was longer ago than this, at some moment of the period, was a
# silent failure: the service looked fine to anyone not watching staleness.
STALE_AFTER = 900.0
# Below this healing success ratio a (service, playbook) is "at risk": healing mostly fails.
MIN_HEALING_SUCCESS = 0.5
# The horizon used for a forecast that the configuration no longer names.
DEFAULT_HORIZON = 86400.0

VerdictName = Literal["ready", "at risk", "not ready"]


def target_for(tier: str) -> float:
    """The availability target of ``tier`` (unknown tiers get the standard one)."""
    return TARGETS.get(tier, TARGETS["standard"])


@dataclass(frozen=True)
class ServiceAvailability:
    """One service's availability over the period: the share of minutes every probe passed."""

    service: str
    tier: str
    target: float
    availability: float | None  # None: no probe data in the period
    # (unix time, availability of the step ending there), for the chart.
    series: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class IncidentFact:
    """One incident of the period, with how fast it was detected and recovered."""

    id: int
    state: str
    root_service: str | None
    services: list[str]
    alertnames: list[str]
    opened_at: float
    resolved_at: float | None
    first_alert_at: float | None  # the earliest startsAt of its alerts
    time_to_detect: float | None  # opened_at - first_alert_at
    time_to_recover: float | None  # resolved_at - opened_at; None while open
    drill_id: str | None = None  # the fire drill that caused it (its cell judges it)


@dataclass(frozen=True)
class ActionFact:
    """One healing action created in the period."""

    id: int
    incident_id: int
    service: str
    playbook: str
    state: str
    outcome: str | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True)
class HealingSummary:
    """The outcomes of one (service, playbook) in the period."""

    service: str
    playbook: str
    outcomes: dict[str, int]
    ran: int  # successes + failures: the actions that really ran
    success_ratio: float | None  # None when none ran


@dataclass(frozen=True)
class BreakerOpening:
    """A breaker opening seen in the period (from refusals in the audit log or its state)."""

    service: str
    playbook: str
    until: float | None  # when it let a trial through again
    refusals: int  # actions it refused while open


@dataclass(frozen=True)
class BreakerNow:
    """A breaker that is not closed at the end of the period."""

    service: str
    playbook: str
    state: str
    opened_at: float | None
    open_for: float


@dataclass(frozen=True)
class AuditIntegrity:
    """The result of verifying the audit chain (read-only)."""

    ok: bool
    entries: int
    checkpoints: int
    reason: str


@dataclass(frozen=True)
class ResponderFacts:
    """Everything read from the responder's store; ``missing`` says why there is none."""

    missing: str | None = None
    incidents: list[IncidentFact] = field(default_factory=list)
    actions: list[ActionFact] = field(default_factory=list)
    healing: list[HealingSummary] = field(default_factory=list)
    breaker_openings: list[BreakerOpening] = field(default_factory=list)
    breakers_now: list[BreakerNow] = field(default_factory=list)
    audit: AuditIntegrity | None = None


@dataclass(frozen=True)
class TimeToFailure:
    """The current median time-to-failure of one forecast's series; ``seconds`` None: none
    forecast. ``series`` names the series by its own labels (``mountpoint=/srv``), empty for
    a forecast published without them (``by: []``)."""

    forecast: str
    service: str
    seconds: float | None
    horizon: float
    series: str = ""

    @property
    def title(self) -> str:
        """``disks`` or ``disks (mountpoint=/srv)``."""
        return f"{self.forecast} ({self.series})" if self.series else self.forecast


@dataclass(frozen=True)
class StaleProbe:
    """A probe whose last success was, at worst, ``max_staleness`` seconds old in the period."""

    service: str
    probe: str
    max_staleness: float


@dataclass(frozen=True)
class UnknownComponent:
    """A component reported ``unknown`` for ``fraction`` of the period's samples."""

    service: str
    component: str
    fraction: float


@dataclass(frozen=True)
class DrillFacts:
    """The latest drill run and the latest load drill of each flow, from the ``drills/``
    directory beside the configuration. ``missing`` says why there is no run to judge by
    (none found, or its file unreadable); ``load_errors`` name load files that could not be
    read (each flow's other results are still shown)."""

    directory: str
    missing: str | None = None
    run_file: str | None = None
    page_file: str | None = None  # the run's HTML page, when it is there
    drill_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    matrix: Matrix | None = None
    blind_spots: list[dict[str, Any]] = field(default_factory=list)
    loads: list[LoadSummary] = field(default_factory=list)
    load_errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"directory": self.directory, "missing": self.missing,
                "run_file": self.run_file, "page_file": self.page_file,
                "drill_id": self.drill_id,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "matrix": self.matrix.as_data() if self.matrix is not None else None,
                "blind_spots": self.blind_spots,
                "loads": [asdict(load) for load in self.loads],
                "load_errors": self.load_errors}


@dataclass(frozen=True)
class Verdict:
    """One service's readiness, with the reasons for it (empty when ready)."""

    service: str
    verdict: VerdictName
    reasons: list[str]


@dataclass(frozen=True)
class Facts:
    """The whole report: what was measured and what it means."""

    start: float
    end: float
    prometheus_url: str
    availability: list[ServiceAvailability]
    responder: ResponderFacts
    time_to_failure: list[TimeToFailure]
    stale_probes: list[StaleProbe]
    unknown_components: list[UnknownComponent]
    verdicts: list[Verdict]
    drills: DrillFacts

    def to_json(self) -> dict[str, Any]:
        """The facts as plain JSON values (times as unix seconds, ratios in 0..1)."""
        data = asdict(self)
        data["drills"] = self.drills.to_json()
        data["start_iso"] = iso(self.start)
        data["end_iso"] = iso(self.end)
        return data


def iso(moment: float | None) -> str:
    """``moment`` as an RFC 3339 UTC time to the second ("" for None)."""
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def human_duration(seconds: float | None) -> str:
    """``seconds`` as the largest two units ("1h 05m", "42s"); "—" for None."""
    if seconds is None:
        return "—"
    if math.isinf(seconds):
        return "∞"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def percent(ratio: float | None, digits: int = 2) -> str:
    """``ratio`` as a percentage ("99.50 %"); "no data" for None."""
    return "no data" if ratio is None else f"{ratio * 100:.{digits}f} %"


# Derivations from the store's rows.

def incident_fact(row: Mapping[str, Any], alerts: Mapping[str, Mapping[str, Any]]) -> IncidentFact:
    """An incident row and its decoded ``alerts`` JSON (fingerprint → latest event) as a fact.

    Time to detect runs from the earliest alert's ``starts_at`` (when Prometheus saw the
    condition begin) to ``opened_at`` (when the responder opened the incident); time to recover
    from ``opened_at`` to ``resolved_at``.
    """
    starts = [float(event["starts_at"]) for event in alerts.values() if "starts_at" in event]
    first = min(starts) if starts else None
    opened = float(row["opened_at"])
    resolved = None if row["resolved_at"] is None else float(row["resolved_at"])
    services = sorted({str(event["service"]) for event in alerts.values()
                       if event.get("service")})
    names = sorted({str(event["alertname"]) for event in alerts.values()
                    if event.get("alertname")})
    return IncidentFact(
        id=int(row["id"]), state=str(row["state"]), root_service=row["root_service"],
        services=services, alertnames=names, opened_at=opened, resolved_at=resolved,
        first_alert_at=first,
        time_to_detect=None if first is None else max(0.0, opened - first),
        time_to_recover=None if resolved is None else max(0.0, resolved - opened),
        drill_id=str(row["drill_id"]) if row.get("drill_id") else None)


def healing_summaries(actions: Iterable[ActionFact]) -> list[HealingSummary]:
    """Outcome counts and success ratio per (service, playbook), sorted by both."""
    grouped: dict[tuple[str, str], dict[str, int]] = {}
    for action in actions:
        outcome = action.outcome or action.state  # pending or running: not finished yet
        counts = grouped.setdefault((action.service, action.playbook), {})
        counts[outcome] = counts.get(outcome, 0) + 1
    summaries = []
    for (service, playbook), counts in sorted(grouped.items()):
        ran = counts.get("success", 0) + counts.get("failure", 0)
        ratio = counts.get("success", 0) / ran if ran else None
        summaries.append(HealingSummary(service, playbook, dict(sorted(counts.items())), ran,
                                        ratio))
    return summaries


_OPEN_UNTIL = re.compile(r"breaker open until (\S+)")


def breaker_openings(refusals: Iterable[Mapping[str, Any]],
                     states: Mapping[tuple[str, str], Mapping[str, Any]],
                     start: float, end: float) -> list[BreakerOpening]:
    """The breaker openings of the period.

    ``refusals`` are the data of ``action.blocked`` audit entries whose ``check`` is
    ``breaker``: each distinct "open until" moment is one opening. ``states`` are the stored
    breaker states per (service, playbook): one that opened in the period and refused nothing
    yet still counts.
    """
    found: dict[tuple[str, str, float | None], int] = {}
    for data in refusals:
        match = _OPEN_UNTIL.search(str(data.get("reason", "")))
        until = _parse_iso(match.group(1)) if match else None
        key = (str(data.get("service", "")), str(data.get("playbook", "")), until)
        found[key] = found.get(key, 0) + 1
    for (service, playbook), state in states.items():
        opened_at = state.get("opened_at")
        if not isinstance(opened_at, int | float) or not start <= opened_at <= end:
            continue
        until = float(round(opened_at + float(state.get("open_for", 0.0))))
        if not any(s == service and p == playbook and u is not None and abs(u - until) <= 1
                   for s, p, u in found):
            found[(service, playbook, until)] = 0
    return [BreakerOpening(service, playbook, until, count)
            for (service, playbook, until), count in sorted(
                found.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or 0.0))]


def breakers_now(states: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[BreakerNow]:
    """The stored breakers that are open or half-open now."""
    result = []
    for (service, playbook), state in sorted(states.items()):
        name = str(state.get("state", "closed"))
        if name == "closed":
            continue
        opened = state.get("opened_at")
        result.append(BreakerNow(service, playbook, name,
                                 float(opened) if isinstance(opened, int | float) else None,
                                 float(state.get("open_for", 0.0))))
    return result


def _parse_iso(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# The verdicts.

def _incident_services(incident: IncidentFact) -> list[str]:
    return [incident.root_service] if incident.root_service else incident.services


def _blocking(entry: ServiceAvailability, responder: ResponderFacts) -> list[str]:
    service = entry.service
    reasons = []
    if entry.availability is not None and entry.availability < entry.target:
        reasons.append(f"availability {percent(entry.availability)} below the "
                       f"{percent(entry.target, 1)} target of the {entry.tier} tier")
    for incident in responder.incidents:
        # A drill's incident is judged by its matrix cell (healed in time or not), not here.
        if incident.state != "resolved" and incident.drill_id is None \
                and service in _incident_services(incident):
            reasons.append(f"incident #{incident.id} {incident.state} since "
                           f"{iso(incident.opened_at)}, not healed")
    for breaker in responder.breakers_now:
        if breaker.service == service:
            state = breaker.state.replace("_", "-")
            reasons.append(f"breaker of {breaker.playbook} is {state} now")
    return reasons


def _warnings(entry: ServiceAvailability, responder: ResponderFacts,
              time_to_failure: Sequence[TimeToFailure], stale: Sequence[StaleProbe],
              unknown: Sequence[UnknownComponent]) -> list[str]:
    service = entry.service
    reasons = []
    if entry.availability is None:
        reasons.append("no probe data in the period")
    reasons.extend(f"component {component.component} reported unknown "
                   f"{percent(component.fraction, 1)} of the time"
                   for component in unknown if component.service == service)
    reasons.extend(f"probe {probe.probe} went {human_duration(probe.max_staleness)} without a "
                   "success" for probe in stale
                   if probe.service == service and probe.max_staleness > STALE_AFTER)
    reasons.extend(f"healing with {summary.playbook} succeeded "
                   f"{percent(summary.success_ratio, 0)} of {summary.ran} runs"
                   for summary in responder.healing
                   if summary.service == service and summary.success_ratio is not None
                   and summary.success_ratio < MIN_HEALING_SUCCESS)
    reasons.extend(f"forecast {forecast.title}: failure in "
                   f"{human_duration(forecast.seconds)}"
                   for forecast in time_to_failure
                   if forecast.service == service and forecast.seconds is not None
                   and forecast.seconds <= forecast.horizon)
    return reasons


def _entry_text(entry: Entry) -> str:
    reason = f": {entry.reasons[0]}" if entry.reasons else ""
    return f"{entry.key} {entry.state}{reason}"


def drill_reasons(service: str, drills: DrillFacts) -> tuple[list[str], list[str]]:
    """What the latest drill run says against ``service``: (blocking, warnings).

    Blocking: a planned experiment ``missed`` or ``wrong`` (the fault went unheard, was
    routed or blamed wrongly, or lost data). Warnings: no drill run at all, and every other
    planned experiment without a pass (late, aborted, not run, never tested), named in one
    line; a blind spot (a flow broke during a fault with no alert) touching the service."""
    if drills.matrix is None:
        return [], [f"never drilled: {drills.missing or 'no drill run'}"]
    unproven = drills.matrix.without_pass(service)
    blocking = [f"drill {_entry_text(entry)}" for entry in unproven
                if entry.state in ("missed", "wrong")]
    rest = [entry for entry in unproven if entry.state not in ("missed", "wrong")]
    warnings = []
    if rest:
        warnings.append("drill experiments without a pass: "
                        + "; ".join(_entry_text(entry) for entry in rest))
    warnings.extend(f"blind spot: flow {spot.get('flow')} failed at {spot.get('failed_at')} "
                    f"during {spot.get('key')} and no alert fired"
                    for spot in drills.blind_spots if service in (spot.get("services") or ()))
    return blocking, warnings


def verdicts(availability: Sequence[ServiceAvailability], responder: ResponderFacts,
             time_to_failure: Sequence[TimeToFailure], stale: Sequence[StaleProbe],
             unknown: Sequence[UnknownComponent], *, drills: DrillFacts) -> list[Verdict]:
    """Each service's verdict: *not ready* if any blocking reason holds, else *at risk* if any
    warning holds, else *ready*. Blocking: availability below its tier's target, an incident
    rooted at it still unresolved (not one a drill caused), a breaker of it open or half-open
    now, a drill experiment of it missed or wrong. Warnings: no probe data, a component
    reported unknown, a probe stale longer than ``STALE_AFTER``, a healing success ratio below
    ``MIN_HEALING_SUCCESS``, a finite time to failure within its forecast's horizon, no drill
    run, a planned drill experiment of it without a pass, a blind spot touching it (see
    :func:`drill_reasons`: "not tested" is not "ready"). A not-ready verdict lists the
    warnings too."""
    result = []
    for entry in sorted(availability, key=lambda item: item.service):
        drill_blocking, drill_warnings = drill_reasons(entry.service, drills)
        blocking = _blocking(entry, responder) + drill_blocking
        warnings = _warnings(entry, responder, time_to_failure, stale, unknown) \
            + drill_warnings
        if blocking:
            result.append(Verdict(entry.service, "not ready", blocking + warnings))
        elif warnings:
            result.append(Verdict(entry.service, "at risk", warnings))
        else:
            result.append(Verdict(entry.service, "ready", []))
    return result

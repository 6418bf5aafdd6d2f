"""Judge one drill experiment: what the plan expected against what the timeline saw. Pure.

Stages, in order: ``detect`` (each alert of the fault fired by its deadline), ``severity``
(no unexpected severity of those alerts fired), ``reach`` (each receiver listed the alert by
its deadline, and no other receiver did), ``root_cause`` (the responder's incident names
the plan's root cause), ``heal`` (the expected playbook succeeded by its deadline),
``recover`` (every alert resolved; informational, it never changes the verdict) and
``canary`` (the persistence canary survived). Each stage is ``on_time``, ``late``,
``missed``, ``wrong`` or ``skipped``; the cell's verdict is its worst judged stage:
``missed`` > ``wrong`` > ``late`` > ``pass``. Every stage that is not on time carries the
sentence a person needs (``ServiceDown P4 of redis fired 41 s after the fault, deadline 30 s
(late)``), and those sentences are the cell's ``reasons``.

Only what happened after the fault counts: an alert Prometheus had active, an incident the
responder had opened, before ``injected_at`` (minus :data:`CLOCK_SLACK_SECONDS`) is not the
fault's, so one timeline can serve several experiments run one after the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from monitoriza.drill.model import ExpectedAlert, Experiment, Reach
from monitoriza.drill.timeline import ActionTrack, AlertTrack, IncidentTrack, Timeline
from monitoriza.healing.notices import NOTICE_ALERTNAME

Outcome = Literal["on_time", "late", "missed", "wrong", "skipped"]
Verdict = Literal["pass", "late", "wrong", "missed"]
#: Worst first; ``on_time`` and ``skipped`` make a pass.
VERDICT_ORDER: tuple[Verdict, ...] = ("missed", "wrong", "late", "pass")
#: Prometheus, the responder and this host read different clocks; this much earlier than
#: the fault still counts as caused by it.
CLOCK_SLACK_SECONDS = 1.0
_VERDICT_OF: dict[Outcome, Verdict] = {"on_time": "pass", "skipped": "pass", "late": "late",
                                       "wrong": "wrong", "missed": "missed"}
#: A stage judged but never counted in the verdict (no deadline to miss).
INFORMATIONAL = frozenset({"recover"})


class CanaryOutcome(Protocol):
    """What :func:`judge` needs of :class:`monitoriza.drill.canary.CanaryResult`."""

    @property
    def outcome(self) -> str: ...  # survived | lost | unreadable

    @property
    def detail(self) -> str: ...

    @property
    def advice(self) -> str | None: ...

    def as_data(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Stage:
    """One judged step: ``what`` was judged, when it was seen (``seconds`` after the fault),
    against which ``deadline``, the outcome, and the sentence that explains it."""

    stage: str
    what: str
    seconds: float | None
    deadline: float | None
    outcome: Outcome
    detail: str

    @property
    def verdict(self) -> Verdict:
        return _VERDICT_OF[self.outcome]

    def as_data(self) -> dict[str, Any]:
        return {"stage": self.stage, "what": self.what, "seconds": _round(self.seconds),
                "deadline": self.deadline, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class HealSummary:
    """The expected playbook, whether it healed, and every action with its audit entries."""

    playbook: str | None
    outcome: Literal["healed", "not_healed", "none_expected"]
    audit: tuple[Mapping[str, Any], ...]

    def as_data(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "outcome": self.outcome,
                "audit": [dict(entry) for entry in self.audit]}


@dataclass(frozen=True, slots=True)
class CellResult:
    """The verdict of one experiment, with the evidence (see :meth:`as_data`)."""

    key: str
    service: str
    fault: str
    target: str
    root_cause_expected: str
    root_cause_named: str | None
    verdict: Verdict
    reasons: tuple[str, ...]
    injected_at: float
    stages: tuple[Stage, ...]
    detect_seconds: float | None
    notify_seconds: Mapping[str, float]
    heal_seconds: float | None
    recover_seconds: float | None
    detect_vs_prometheus: float | None
    heal: HealSummary
    canary: Mapping[str, Any] | None
    incidents: tuple[int, ...] = field(default=())

    def as_data(self) -> dict[str, Any]:
        return {"key": self.key, "service": self.service, "fault": self.fault,
                "target": self.target,
                "root_cause": {"expected": self.root_cause_expected,
                               "named": self.root_cause_named},
                "verdict": self.verdict, "reasons": list(self.reasons),
                "injected_at": self.injected_at,
                "stages": [stage.as_data() for stage in self.stages],
                "times": {"detect": _round(self.detect_seconds),
                          "notify": {r: _round(s) for r, s in self.notify_seconds.items()},
                          "heal": _round(self.heal_seconds),
                          "recover": _round(self.recover_seconds)},
                "detect_vs_prometheus": _round(self.detect_vs_prometheus),
                "heal": self.heal.as_data(),
                "canary": dict(self.canary) if self.canary is not None else None,
                "incidents": list(self.incidents)}


def judge(experiment: Experiment, timeline: Timeline, *, injected_at: float,
          released_at: float | None, canary: CanaryOutcome | None,
          scrape_interval: float) -> CellResult:
    """The verdict of ``experiment`` from what ``timeline`` saw after ``injected_at``.

    ``released_at``: when the drill itself ended the fault (None: it did not); with a
    successful heal and the first alerts resolving, it decides whether a later severity
    (``if_persisting``) still had to fire. ``scrape_interval`` bounds how far the watcher's
    first sight of a firing alert may trail Prometheus's own firing moment before the
    detection detail mentions it."""
    judge_ = _Judge(experiment, timeline, injected_at, released_at, scrape_interval)
    return judge_.result(canary)


class _Judge:
    def __init__(self, experiment: Experiment, timeline: Timeline, injected_at: float,
                 released_at: float | None, scrape_interval: float) -> None:
        self.experiment = experiment
        self.timeline = timeline
        self.injected_at = injected_at
        self.since = injected_at - CLOCK_SLACK_SECONDS
        self.released_at = released_at
        self.scrape_interval = scrape_interval
        self.stages: list[Stage] = []
        self.incidents = [incident for incident in timeline.incidents.values()
                          if incident.opened_at >= self.since and self._about_us(incident)]
        self.heal_stage_seconds: float | None = None

    # -- helpers ---------------------------------------------------------------------------

    def _after(self, seen: float | None) -> float | None:
        return None if seen is None else seen - self.injected_at

    def _about_us(self, incident: IncidentTrack) -> bool:
        names = {self.experiment.root_cause, self.experiment.service,
                 *(alert.service for alert in self.experiment.alerts)}
        return incident.root_cause in names or bool(names & set(incident.services))

    def _fired(self, alert: ExpectedAlert) -> list[AlertTrack]:
        """The alert's instances that fired after the fault, earliest first."""
        found = [track for track in self.timeline.alerts_of(alert.alertname, alert.severity,
                                                             alert.service)
                 if track.firing_seen_at is not None and track.firing_seen_at >= self.since
                 and (track.active_at is None or track.active_at >= self.since)
                 and _matches(track.labels, alert.labels)]
        return sorted(found, key=lambda track: track.firing_seen_at or 0.0)

    def _first_seen(self, alert: ExpectedAlert) -> AlertTrack | None:
        fired = self._fired(alert)
        return fired[0] if fired else None

    def _fault_ended_at(self) -> float | None:
        """The earliest sign the fault is over: the drill released it, a heal succeeded, or
        every first alert resolved."""
        ends = [self.released_at] if self.released_at is not None else []
        ends += [action.finished_at for action in self._actions()
                 if action.outcome == "success" and action.finished_at is not None]
        firsts = [self._first_seen(a) for a in self.experiment.alerts
                  if a.expectation == "first"]
        if firsts and all(t is not None and t.resolved_seen_at is not None for t in firsts):
            ends.append(max(t.resolved_seen_at for t in firsts if t and t.resolved_seen_at))
        return min(ends) if ends else None

    def _actions(self) -> list[ActionTrack]:
        return [action for incident in self.incidents for action in incident.actions]

    def _skipped(self, alert: ExpectedAlert) -> bool:
        """A later severity need not fire when the fault ended before its deadline."""
        if alert.expectation != "if_persisting" or self._fired(alert):
            return False
        ended = self._fault_ended_at()
        return ended is not None and ended - self.injected_at < alert.detect.seconds

    # -- stages ----------------------------------------------------------------------------

    def detect(self) -> tuple[float | None, float | None]:
        """Judge each expected alert; return the earliest detection and its lag behind
        Prometheus's own firing moment (``activeAt`` + ``for``)."""
        earliest: tuple[float, float | None] | None = None
        for alert in self.experiment.alerts:
            name = _name(alert)
            deadline = alert.detect.seconds
            if self._skipped(alert):
                self.stages.append(Stage("detect", name, None, deadline, "skipped",
                                         f"{name} was not needed: the fault ended before "
                                         f"its deadline of {_s(deadline)}"))
                continue
            track = self._first_seen(alert)
            if track is None or track.firing_seen_at is None:
                self.stages.append(Stage("detect", name, None, deadline, "missed",
                                         f"{name} never fired{self._watch_note(deadline)} "
                                         f"(deadline {_s(deadline)})"))
                continue
            seconds = track.firing_seen_at - self.injected_at
            lag = (None if track.active_at is None
                   else track.firing_seen_at - (track.active_at + alert.for_seconds))
            if alert.expectation == "first" and (earliest is None or seconds < earliest[0]):
                earliest = (seconds, lag)
            note = ""
            if lag is not None and lag > self.scrape_interval:
                note = (f"; seen {_s(lag)} after its activeAt plus the planned for of "
                        f"{_s(alert.for_seconds)} (more than one scrape interval: the running "
                        "rule waits longer than the planned one, or the watcher polled "
                        "slowly)")
            if seconds <= deadline:
                self.stages.append(Stage("detect", name, seconds, deadline, "on_time",
                                         f"{name} fired {_s(seconds)} after the fault, "
                                         f"deadline {_s(deadline)}{note}"))
            else:
                self.stages.append(Stage("detect", name, seconds, deadline, "late",
                                         f"{name} fired {_s(seconds)} after the fault, "
                                         f"deadline {_s(deadline)} (late){note}"))
        return (earliest[0], earliest[1]) if earliest else (None, None)

    def _watch_note(self, deadline: float) -> str:
        until = self.timeline.watched_until
        if until is not None and until - self.injected_at < deadline:
            return f" while watched ({_s(until - self.injected_at)}, less than its deadline)"
        return ""

    def severity(self) -> None:
        expected: dict[tuple[str, str], set[str]] = {}
        for alert in self.experiment.alerts:
            expected.setdefault((alert.alertname, alert.service), set()).add(alert.severity)
        wrong: list[str] = []
        for track in self.timeline.alerts.values():
            severities = expected.get((track.alertname, track.service))
            if severities is None or track.severity in severities:
                continue
            if track.firing_seen_at is None or track.firing_seen_at < self.since \
                    or (track.active_at is not None and track.active_at < self.since):
                continue
            wrong.append(f"{track.alertname} {track.severity} of {track.service} fired; the "
                         f"plan expects only {', '.join(sorted(severities))}")
        what = "severities of " + ", ".join(sorted({name for name, _ in expected}))
        if wrong:
            self.stages.append(Stage("severity", what, None, None, "wrong",
                                     "; ".join(sorted(set(wrong)))))
        elif expected:
            self.stages.append(Stage("severity", what, None, None, "on_time",
                                     "only the expected severities fired"))

    def reach(self) -> dict[str, float]:
        notify: dict[str, float] = {}
        for alert in self.experiment.alerts:
            skipped = self._skipped(alert)
            expected_receivers: dict[tuple[str, str, str], set[str]] = {}
            for reach in alert.reaches:
                alertname, severity, subject = _reached_as(alert, reach,
                                                           self.experiment.root_cause)
                expected_receivers.setdefault((alertname, severity, subject), set()).add(
                    reach.receiver)
                what = f"{_what_reached(alert, reach)} to {reach.receiver}"
                deadline = reach.deadline.seconds
                if skipped:
                    self.stages.append(Stage("reach", what, None, deadline, "skipped",
                                             f"{_name(alert)} was not needed"))
                    continue
                routes = [track for track in self.timeline.routes_of(alertname, severity,
                                                                      subject)
                          if track.receiver == reach.receiver
                          and _matches(track.labels, alert.labels if reach.via ==
                                       "alertmanager" else ())]
                seen = [t.routed_seen_at for t in routes
                        if t.routed_seen_at is not None and t.routed_seen_at >= self.since]
                if not seen:
                    suppressed = [t for t in routes if t.suppressed_seen_at is not None
                                  and t.suppressed_seen_at >= self.since]
                    why = (" (Alertmanager held it suppressed: "
                           + ("inhibited" if any(t.inhibited_by for t in suppressed)
                              else "silenced") + ")") if suppressed else ""
                    self.stages.append(Stage("reach", what, None, deadline, "missed",
                                             f"{_what_reached(alert, reach)} never reached "
                                             f"{reach.receiver}{why}"))
                    continue
                seconds = min(seen) - self.injected_at
                notify[reach.receiver] = min(seconds, notify.get(reach.receiver, seconds))
                late = seconds > deadline
                self.stages.append(Stage(
                    "reach", what, seconds, deadline, "late" if late else "on_time",
                    f"{_what_reached(alert, reach)} reached {reach.receiver} {_s(seconds)} "
                    f"after the fault, deadline {_s(deadline)}" + (" (late)" if late else "")))
            for (alertname, severity, subject), receivers in expected_receivers.items():
                if skipped:
                    continue
                others = sorted({track.receiver for track in
                                 self.timeline.routes_of(alertname, severity, subject)
                                 if track.receiver not in receivers
                                 and track.routed_seen_at is not None
                                 and track.routed_seen_at >= self.since})
                if others:
                    label = f"{alertname} {severity} of {subject}"
                    self.stages.append(Stage(
                        "reach", f"{label} to {', '.join(others)}", None, None, "wrong",
                        f"{label} reached {', '.join(others)}; the plan routes it only to "
                        f"{', '.join(sorted(receivers))}"))
        return notify

    def root_cause(self) -> str | None:
        expected = self.experiment.root_cause
        what = f"root cause {expected}"
        if not any(reach.to_responder for alert in self.experiment.alerts
                   for reach in alert.reaches):
            self.stages.append(Stage("root_cause", what, None, None, "skipped",
                                     "no expected alert reaches the responder"))
            return None
        right = [i for i in self.incidents if i.root_cause == expected]
        if right:
            first = min(right, key=lambda incident: incident.opened_at)
            seconds = first.opened_at - self.injected_at
            self.stages.append(Stage("root_cause", what, seconds, None, "on_time",
                                     f"incident {first.id} names {expected} as root cause"))
            return expected
        if self.incidents:
            first = min(self.incidents, key=lambda incident: incident.opened_at)
            named = first.root_cause or "no service"
            self.stages.append(Stage("root_cause", what, first.opened_at - self.injected_at,
                                     None, "wrong", f"incident {first.id} names {named} as "
                                     f"root cause, expected {expected}"))
            return first.root_cause
        self.stages.append(Stage("root_cause", what, None, None, "missed",
                                 f"the responder opened no incident for {expected}"))
        return None

    def heal(self) -> tuple[float | None, HealSummary]:
        heal = self.experiment.heal
        actions = self._actions()
        audit = tuple(_action_data(action) for action in actions)
        if heal is None:
            self.stages.append(Stage("heal", "no playbook expected", None, None, "skipped",
                                     "the plan expects no playbook: people must restore it"))
            return None, HealSummary(None, "none_expected", audit)
        what = f"{heal.playbook} heals {heal.service}"
        deadline = heal.deadline.seconds
        books = {heal.playbook, *heal.alternatives}
        ours = [a for a in actions if a.playbook in books and a.service == heal.service]
        healed = sorted((a for a in ours if a.outcome == "success" and a.finished_at),
                        key=lambda action: action.finished_at or 0.0)
        if healed:
            action = healed[0]
            seconds = (action.finished_at or 0.0) - self.injected_at
            by = "" if action.playbook == heal.playbook else \
                f" (by the alternative {action.playbook})"
            late = seconds > deadline
            self.stages.append(Stage("heal", what, seconds, deadline,
                                     "late" if late else "on_time",
                                     f"healed{by} {_s(seconds)} after the fault, deadline "
                                     f"{_s(deadline)}" + (" (late)" if late else "")))
            return seconds, HealSummary(heal.playbook, "healed", audit)
        self.stages.append(Stage("heal", what, None, deadline, "missed",
                                 "not healed: " + _unhealed(heal.playbook, ours)))
        return None, HealSummary(heal.playbook, "not_healed", audit)

    def recover(self) -> float | None:
        tracks = [track for alert in self.experiment.alerts for track in self._fired(alert)]
        if not tracks:
            return None
        firing = sorted({f"{t.alertname} {t.severity} of {t.service}" for t in tracks
                         if t.resolved_seen_at is None})
        if firing:
            self.stages.append(Stage("recover", "every alert resolved", None, None, "missed",
                                     f"still firing when the watch ended: {', '.join(firing)}"))
            return None
        seconds = max(t.resolved_seen_at or 0.0 for t in tracks) - self.injected_at
        self.stages.append(Stage("recover", "every alert resolved", seconds, None, "on_time",
                                 f"every alert resolved {_s(seconds)} after the fault"))
        return seconds

    def canary(self, canary: CanaryOutcome | None) -> None:
        if canary is None:
            return
        what = f"canary in {self.experiment.root_cause}"
        if canary.outcome == "survived":
            self.stages.append(Stage("canary", what, None, None, "on_time",
                                     f"canary survived: {canary.detail}"))
        elif canary.outcome == "lost":
            advice = f"; {canary.advice}" if canary.advice else ""
            self.stages.append(Stage("canary", what, None, None, "wrong",
                                     f"canary lost: {canary.detail}{advice}"))
        else:
            self.stages.append(Stage("canary", what, None, None, "missed",
                                     f"canary {canary.outcome}: {canary.detail}"))

    # -- the cell --------------------------------------------------------------------------

    def result(self, canary: CanaryOutcome | None) -> CellResult:
        detect_seconds, lag = self.detect()
        self.severity()
        notify = self.reach()
        named = self.root_cause()
        heal_seconds, heal = self.heal()
        recover_seconds = self.recover()
        self.canary(canary)
        judged = [stage for stage in self.stages if stage.stage not in INFORMATIONAL]
        verdict: Verdict = min((stage.verdict for stage in judged), key=VERDICT_ORDER.index,
                               default="pass")
        reasons = [stage.detail for rank in VERDICT_ORDER[:-1] for stage in judged
                   if stage.verdict == rank]
        experiment = self.experiment
        return CellResult(
            key=experiment.key, service=experiment.service, fault=experiment.fault,
            target=experiment.target, root_cause_expected=experiment.root_cause,
            root_cause_named=named, verdict=verdict, reasons=tuple(reasons),
            injected_at=self.injected_at, stages=tuple(self.stages),
            detect_seconds=detect_seconds, notify_seconds=notify, heal_seconds=heal_seconds,
            recover_seconds=recover_seconds, detect_vs_prometheus=lag, heal=heal,
            canary=dict(canary.as_data()) if canary is not None else None,
            incidents=tuple(sorted(incident.id for incident in self.incidents)))


def _matches(labels: Mapping[str, str], expected: Iterable[tuple[str, str]]) -> bool:
    """Only the labels that tell two alerts of one rule apart (a forecast's name) must
    agree; the others (tier, dimension) are the rule's and would only repeat the match."""
    return all(labels.get(key) == value for key, value in expected if key == "forecast")


def _reached_as(alert: ExpectedAlert, reach: Reach, root_cause: str) -> tuple[str, str, str]:
    """(alertname, severity, subject) under which Alertmanager lists what reaches
    ``reach``: the alert itself, or the responder's notice about the root cause."""
    if reach.via == "notice":
        level = reach.notice.split()[-1] if reach.notice else alert.severity
        return NOTICE_ALERTNAME, level, root_cause
    return alert.alertname, alert.severity, alert.service


def _what_reached(alert: ExpectedAlert, reach: Reach) -> str:
    if reach.via == "notice":
        return f"{reach.notice or NOTICE_ALERTNAME} (notice of {_name(alert)})"
    return _name(alert)


def _name(alert: ExpectedAlert) -> str:
    return f"{alert.alertname} {alert.severity} of {alert.service}"


def _action_data(action: ActionTrack) -> dict[str, Any]:
    return {"action": action.id, "playbook": action.playbook, "service": action.service,
            "outcome": action.outcome, "started_at": action.started_at,
            "finished_at": action.finished_at, "detail": action.detail,
            "audit": [ref.seq for ref in action.audit]}


_TIMES = {1: "once", 2: "twice"}


def _unhealed(playbook: str, actions: list[ActionTrack]) -> str:
    """``restart-redis failed twice (audit 41, 44)``; ``restart-redis never ran``."""
    if not actions:
        return f"{playbook} never ran"
    parts: list[str] = []
    by_outcome: dict[tuple[str, str], list[ActionTrack]] = {}
    for action in actions:
        by_outcome.setdefault((action.playbook, action.outcome or "unfinished"),
                              []).append(action)
    for (book, outcome), group in by_outcome.items():
        verb = {"failure": "failed", "dry_run": "ran in dry-run", "blocked": "was blocked",
                "skipped": "was skipped",
                "unfinished": "did not finish"}.get(outcome, outcome)
        count = _TIMES.get(len(group), f"{len(group)} times")
        seqs = [ref.seq for action in group for ref in action.audit
                if ref.kind == f"action.{outcome}"] or \
            [ref.seq for action in group for ref in action.audit]
        audit = f" (audit {', '.join(str(seq) for seq in seqs)})" if seqs else ""
        last = group[-1].detail
        detail = f": {last}" if last and outcome != "unfinished" else ""
        parts.append(f"{book} {verb} {count}{audit}{detail}")
    return "; ".join(parts)


def _s(seconds: float) -> str:
    """``41 s``, ``2.5 s``."""
    return f"{seconds:.1f}".removesuffix(".0") + " s"


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)

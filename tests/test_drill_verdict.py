"""The verdict of one drill experiment (:func:`monitoriza.drill.verdict.judge`), pure: the
plan's expectations against timelines written by hand, one per way a cell can fail, plus a
pass of a real plan's experiment (the shipped example, rules and routes). The canary
results are built as data; reading them from real stores is tests/test_drill_canary.py's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitoriza.drill.canary import Canary, CanaryResult, Outcome
from monitoriza.drill.commands import load_plan
from monitoriza.drill.model import Deadline, ExpectedAlert, Experiment, Heal, Reach, Term
from monitoriza.drill.timeline import (
    ActionTrack,
    AlertTrack,
    AuditRef,
    IncidentTrack,
    RouteTrack,
    Timeline,
)
from monitoriza.drill.verdict import CellResult, judge

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_000_000.0  # the moment of the fault
SCRAPE = 15.0


def due(seconds: float) -> Deadline:
    return Deadline((Term("timers", seconds, "test"),), ())


def reach(receiver: str, seconds: float, *, via: str = "alertmanager", notice: str = "",
          person: bool = False) -> Reach:
    return Reach(receiver, "route", via, ("slack",) if person else (),  # type: ignore[arg-type]
                 receiver == "responder", due(seconds), notice)


def expected(severity: str, detect: float, reaches: tuple[Reach, ...], *,
             first: bool = False, for_seconds: float = 10.0) -> ExpectedAlert:
    return ExpectedAlert("ServiceDown", severity, "redis", for_seconds, "rules/x.yml",
                         (("alertname", "ServiceDown"), ("service", "redis"),
                          ("severity", severity), ("tier", "standard")),
                         "first" if first else "if_persisting", due(detect), reaches)


def redis_stop(*, heal: bool = True, with_p2: bool = False) -> Experiment:
    """redis:container_stop: P4 first (30 s, to the responder and, as a notice, to the team
    chat), P3 if the fault persists (70 s), optionally P2 (100 s, pages oncall)."""
    alerts = [expected("P4", 30, (reach("responder", 32),
                                  reach("team-chat", 45, via="notice",
                                        notice="MonitorizaIncident P3", person=True)),
                       first=True),
              expected("P3", 70, (reach("responder", 72),))]
    if with_p2:
        alerts.append(expected("P2", 100, (reach("oncall", 102, person=True),
                                           reach("responder", 102))))
    playbook = Heal("redis", "restart-redis", "ServiceDown P4", ("flush-redis",), due(60)) \
        if heal else None
    return Experiment("redis", "container_stop", "redis", "redis", tuple(alerts), playbook,
                      ("backend",), ())


class Scene:
    """A timeline written by hand, in seconds after the fault."""

    def __init__(self) -> None:
        self.timeline = Timeline(("backend", "redis"), T0 - 1, T0 + 300)

    def fire(self, severity: str, at: float, *, active: float | None = None,
             resolved: float | None = None, service: str = "redis",
             alertname: str = "ServiceDown") -> Scene:
        labels = {"alertname": alertname, "severity": severity, "service": service,
                  "tier": "standard", "job": "monitoriza-exporter"}
        self.timeline.alerts[tuple(sorted(labels.items()))] = AlertTrack(
            labels, T0 + (at - 10 if active is None else active), None, T0 + at,
            None if resolved is None else T0 + resolved, 1)
        return self

    def route(self, severity: str, receiver: str, at: float, *, state: str = "active",
              alertname: str = "ServiceDown") -> Scene:
        labels = ({"alertname": alertname, "severity": severity, "root_cause": "redis",
                   "incident": "3"} if alertname == "MonitorizaIncident" else
                  {"alertname": alertname, "severity": severity, "service": "redis"})
        track = RouteTrack(labels, receiver)
        if state == "active":
            track.routed_seen_at = T0 + at
        else:
            track.suppressed_seen_at = T0 + at
            track.inhibited_by = ("fingerprint-of-p3",)
        self.timeline.routes[(tuple(sorted(labels.items())), receiver)] = track
        return self

    def incident(self, incident_id: int, root: str | None, at: float,
                 *actions: ActionTrack) -> Scene:
        self.timeline.incidents[incident_id] = IncidentTrack(
            incident_id, "resolved", root, ("redis",), T0 + at, T0 + at, None, "drill-1",
            tuple(actions))
        return self

    def healthy_run(self) -> Scene:
        """Everything the plan of :func:`redis_stop` expects, on time; healed at 50 s."""
        return (self.fire("P4", 25, resolved=58)
                .route("P4", "responder", 26).route("P3", "team-chat", 33,
                                                    alertname="MonitorizaIncident")
                .incident(3, "redis", 27, action(11, "restart-redis", "success", 50,
                                                 (20, "action.started"),
                                                 (21, "action.success"))))


def action(action_id: int, playbook: str, outcome: str, finished: float,
           *audit: tuple[int, str]) -> ActionTrack:
    return ActionTrack(action_id, "redis", playbook, "done", outcome, T0 + finished - 5,
                       T0 + finished - 4, T0 + finished, f"{playbook}: {outcome}",
                       tuple(AuditRef(seq, kind) for seq, kind in audit))


CANARY = Canary("redis", "redis", "monitoriza:drill:canary:1", "v", T0 - 5)


def canary(outcome: Outcome, detail: str, advice: str = "") -> CanaryResult:
    return CanaryResult(CANARY, outcome, detail, advice)


def verdict_of(experiment: Experiment, scene: Scene, *, canary: CanaryResult | None = None,
               released_at: float | None = None) -> CellResult:
    return judge(experiment, scene.timeline, injected_at=T0, released_at=released_at,
                 canary=canary, scrape_interval=SCRAPE)


def stage(result: CellResult, name: str, what_starts: str = "") -> dict[str, Any]:
    found = [s.as_data() for s in result.stages
             if s.stage == name and s.what.startswith(what_starts)]
    assert len(found) == 1, result.as_data()["stages"]
    return found[0]


class TestPass:
    """Every stage on time is a pass, with the times a report shows."""

    def test_everything_on_time(self) -> None:
        """Detected, routed, root cause named, healed: pass, no reasons; the P3 that was
        only expected while the fault persisted is skipped, as the fault was healed first."""
        result = verdict_of(redis_stop(), Scene().healthy_run(),
                            canary=canary("survived", "key read back"))
        data = result.as_data()
        assert data["verdict"] == "pass", data["reasons"]
        assert data["reasons"] == []
        assert data["times"] == {"detect": 25.0, "notify": {"responder": 26.0,
                                                            "team-chat": 33.0},
                                 "heal": 50.0, "recover": 58.0}
        # firing_seen_at - (activeAt + for) = 25 - (15 + 10)
        assert data["detect_vs_prometheus"] == 0.0
        assert data["root_cause"] == {"expected": "redis", "named": "redis"}
        assert data["heal"] == {"playbook": "restart-redis", "outcome": "healed", "audit": [
            {"action": 11, "playbook": "restart-redis", "service": "redis",
             "outcome": "success", "started_at": T0 + 46, "finished_at": T0 + 50,
             "detail": "restart-redis: success", "audit": [20, 21]}]}
        assert data["incidents"] == [3]
        assert data["canary"] == {"canary": CANARY.as_data(), "outcome": "survived",
                                  "detail": "key read back", "advice": None}
        assert stage(result, "detect", "ServiceDown P3")["outcome"] == "skipped"
        assert stage(result, "reach", "ServiceDown P3")["outcome"] == "skipped"
        json.dumps(data)  # a results file carries it as is

    def test_heal_by_an_alternative_playbook(self) -> None:
        """Operational memory may pick another matching playbook: it heals just as well."""
        scene = Scene().healthy_run()
        scene.timeline.incidents[3].actions = (action(12, "flush-redis", "success", 40),)
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "pass"
        assert "alternative flush-redis" in stage(result, "heal")["detail"]

    def test_a_real_plan_passes_when_each_stage_is_seen_just_in_time(self) -> None:
        """The shipped example's redis:container_stop, with notices and several receivers:
        a timeline that meets each of its deadlines by a second passes."""
        plan = load_plan(ROOT / "examples" / "conecta-plus.yml",
                         ROOT / "alertmanager" / "alertmanager.yml", ROOT / "rules",
                         ROOT / "prometheus" / "prometheus.yml")
        experiment = next(e for e in plan.experiments if e.key == "redis:container_stop")
        scene = Scene()
        for alert in experiment.alerts:
            scene.fire(alert.severity, alert.detect.seconds - 1,
                       active=alert.detect.seconds - 2 - alert.for_seconds,
                       resolved=max(a.detect.seconds for a in experiment.alerts) + 5,
                       service=alert.service, alertname=alert.alertname)
            for target in alert.reaches:
                notice = target.via == "notice"
                scene.route(target.notice.split()[-1] if notice else alert.severity,
                            target.receiver, target.deadline.seconds - 1,
                            alertname="MonitorizaIncident" if notice else alert.alertname)
        assert experiment.heal is not None
        scene.incident(5, "redis", 10, action(1, experiment.heal.playbook, "success",
                                              experiment.heal.deadline.seconds - 1))
        result = verdict_of(experiment, scene)
        assert result.verdict == "pass", result.reasons
        assert {s.stage for s in result.stages} >= {"detect", "severity", "reach",
                                                    "root_cause", "heal", "recover"}
        assert set(result.notify_seconds) == {r.receiver for a in experiment.alerts
                                              for r in a.reaches}


class TestFailures:
    """Each broken part is named in words a person can act on."""

    def test_a_slow_rule_is_late(self) -> None:
        """A `for` too long for the deadline: fired at 41 s, deadline 30 s."""
        scene = Scene().healthy_run().fire("P4", 41, resolved=58)
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "late"
        assert result.reasons == (
            "ServiceDown P4 of redis fired 41 s after the fault, deadline 30 s (late)",)
        assert result.detect_seconds == 41.0

    def test_a_route_that_drops_p2_never_reaches_oncall(self) -> None:
        """The fault persists (no playbook), the P2 fires and reaches the responder, but the
        route tree never lists it for oncall."""
        scene = (Scene().fire("P4", 25).fire("P3", 65).fire("P2", 95)
                 .route("P4", "responder", 26).route("P3", "team-chat", 33,
                                                     alertname="MonitorizaIncident")
                 .route("P3", "responder", 66).route("P2", "responder", 96)
                 .incident(3, "redis", 27))
        result = verdict_of(redis_stop(heal=False, with_p2=True), scene)
        assert result.verdict == "missed"
        assert result.reasons == ("ServiceDown P2 of redis never reached oncall",)
        assert result.notify_seconds == {"responder": 26.0, "team-chat": 33.0}
        assert result.heal.outcome == "none_expected"

    def test_an_inhibited_alert_says_so(self) -> None:
        scene = (Scene().fire("P4", 25).fire("P3", 65).fire("P2", 95)
                 .route("P4", "responder", 26).route("P3", "team-chat", 33,
                                                     alertname="MonitorizaIncident")
                 .route("P3", "responder", 66).route("P2", "responder", 96)
                 .route("P2", "oncall", 96, state="suppressed").incident(3, "redis", 27))
        result = verdict_of(redis_stop(heal=False, with_p2=True), scene)
        assert result.reasons == ("ServiceDown P2 of redis never reached oncall "
                                  "(Alertmanager held it suppressed: inhibited)",)

    def test_a_playbook_that_does_not_heal(self) -> None:
        """Two failed attempts, cited by their audit entries; the P3 then had to fire."""
        scene = (Scene().fire("P4", 25).fire("P3", 65).route("P4", "responder", 26)
                 .route("P3", "team-chat", 33, alertname="MonitorizaIncident")
                 .route("P3", "responder", 66)
                 .incident(3, "redis", 27,
                           action(11, "restart-redis", "failure", 35, (40, "action.started"),
                                  (41, "action.failure")),
                           action(12, "restart-redis", "failure", 55, (43, "action.started"),
                                  (44, "action.failure"))))
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "missed"
        assert result.reasons == ("not healed: restart-redis failed twice (audit 41, 44): "
                                  "restart-redis: failure",)
        assert result.heal.outcome == "not_healed"
        assert [entry["audit"] for entry in result.heal.as_data()["audit"]] == [[40, 41],
                                                                                [43, 44]]
        assert stage(result, "detect", "ServiceDown P3")["outcome"] == "on_time"

    def test_a_playbook_that_never_runs(self) -> None:
        scene = Scene().fire("P4", 25).route("P4", "responder", 26).route(
            "P3", "team-chat", 33, alertname="MonitorizaIncident").incident(3, "redis", 27)
        result = verdict_of(redis_stop(), scene, released_at=T0 + 61)
        assert "not healed: restart-redis never ran" in result.reasons

    def test_a_heal_after_its_deadline_is_late(self) -> None:
        scene = Scene().healthy_run()
        scene.timeline.incidents[3].actions = (action(11, "restart-redis", "success", 66),)
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "late"
        assert result.reasons == ("healed 66 s after the fault, deadline 60 s (late)",)

    def test_a_lost_canary_is_data_loss_with_the_fix(self) -> None:
        advice = ("Redis runs with appendonly no and no save points: a restart loses every "
                  "write; set appendonly yes (appendfsync everysec)")
        result = verdict_of(redis_stop(), Scene().healthy_run(),
                            canary=canary("lost", "key monitoriza:drill:canary:1 is gone",
                                           advice))
        assert result.verdict == "wrong"
        assert result.reasons == (f"canary lost: key monitoriza:drill:canary:1 is gone; "
                                  f"{advice}",)
        assert result.as_data()["canary"]["outcome"] == "lost"

    def test_an_unreadable_canary_is_missed(self) -> None:
        result = verdict_of(redis_stop(), Scene().healthy_run(),
                            canary=canary("unreadable", "connection refused"))
        assert result.verdict == "missed"
        assert result.reasons == ("canary unreadable: connection refused",)

    def test_a_wrong_root_cause(self) -> None:
        scene = Scene().healthy_run()
        scene.timeline.incidents[3].root_cause = "backend"
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "wrong"
        assert result.reasons == ("incident 3 names backend as root cause, expected redis",)
        assert result.as_data()["root_cause"] == {"expected": "redis", "named": "backend"}

    def test_no_incident_at_all(self) -> None:
        scene = Scene().fire("P4", 25, resolved=58).route("P4", "responder", 26).route(
            "P3", "team-chat", 33, alertname="MonitorizaIncident")
        result = verdict_of(redis_stop(heal=False), scene, released_at=T0 + 50)
        assert result.verdict == "missed"
        assert result.reasons == ("the responder opened no incident for redis",)

    def test_an_unexpected_severity_is_wrong(self) -> None:
        """A standard-tier service paged as P2: the plan expected P4 and P3 only."""
        scene = Scene().healthy_run().fire("P2", 30, resolved=58)
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "wrong"
        assert result.reasons == ("ServiceDown P2 of redis fired; the plan expects only P3, "
                                  "P4",)

    def test_an_unexpected_receiver_is_wrong(self) -> None:
        scene = Scene().healthy_run().route("P4", "oncall", 26)
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "wrong"
        assert result.reasons == ("ServiceDown P4 of redis reached oncall; the plan routes "
                                  "it only to responder",)

    def test_missed_outranks_wrong_and_late(self) -> None:
        """The verdict is the worst stage; the reasons list the worst first."""
        scene = Scene().fire("P4", 41).route("P4", "oncall", 42).incident(3, "backend", 45)
        result = verdict_of(redis_stop(), scene, released_at=T0 + 50)
        assert result.verdict == "missed"
        assert result.reasons[0].startswith("ServiceDown P4 of redis never reached responder")
        assert result.reasons[-1] == ("ServiceDown P4 of redis fired 41 s after the fault, "
                                      "deadline 30 s (late)")


class TestWhatCounts:
    """Only what followed the fault is the fault's."""

    def test_an_alert_already_firing_before_the_fault_is_not_detection(self) -> None:
        scene = Scene().healthy_run()
        scene.timeline.alerts.clear()
        scene.fire("P4", -20, active=-40)
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "missed"
        assert "ServiceDown P4 of redis never fired (deadline 30 s)" in result.reasons

    def test_a_short_watch_is_said(self) -> None:
        scene = Scene().healthy_run()
        scene.timeline.alerts.clear()
        scene.timeline.watched_until = T0 + 12
        result = verdict_of(redis_stop(), scene)
        assert ("ServiceDown P4 of redis never fired while watched (12 s, less than its "
                "deadline) (deadline 30 s)") in result.reasons

    def test_a_later_severity_is_required_while_the_fault_lasts(self) -> None:
        """Nothing healed and nothing released: the P3 had to fire and did not."""
        scene = Scene().fire("P4", 25).route("P4", "responder", 26).route(
            "P3", "team-chat", 33, alertname="MonitorizaIncident").incident(3, "redis", 27)
        result = verdict_of(redis_stop(heal=False), scene)
        assert result.reasons == ("ServiceDown P3 of redis never fired (deadline 70 s)",
                                  "ServiceDown P3 of redis never reached responder")

    def test_recovery_is_informational(self) -> None:
        """Alerts still firing when the watch ended do not change the verdict."""
        scene = Scene().healthy_run().fire("P4", 25)
        result = verdict_of(redis_stop(), scene)
        assert result.verdict == "pass"
        assert stage(result, "recover")["outcome"] == "missed"
        assert result.recover_seconds is None

    def test_the_same_verdict_from_a_stored_timeline(self) -> None:
        """A timeline written to a results file and read back judges the same."""
        scene = Scene().healthy_run().fire("P4", 41, resolved=58)
        stored = Timeline.from_data(json.loads(json.dumps(scene.timeline.as_data())))
        assert verdict_of(redis_stop(), scene).as_data() == judge(
            redis_stop(), stored, injected_at=T0, released_at=None, canary=None,
            scrape_interval=SCRAPE).as_data()

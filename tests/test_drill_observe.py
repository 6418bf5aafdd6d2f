"""Watching a drill: the timeline's pure core on literal API documents, and the
:class:`~monitoriza.drill.observe.Watcher` against a real pipeline -- Prometheus scraping a
target that the test breaks, Alertmanager routing to a real responder and to a webhook sink,
the responder opening an incident, raising its notice and running a playbook."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.drill.model import Deadline, ExpectedAlert, Experiment, Heal, Reach, Term
from monitoriza.drill.observe import Endpoints, Unreachable, Watcher, preflight
from monitoriza.drill.timeline import Timeline, TimelineDataError, parse_time
from monitoriza.drill.verdict import judge
from tests.support.alertmanager import Alertmanager, CaptureServer
from tests.support.binaries import free_port, require_binary, wait_until
from tests.support.http_targets import HttpTarget
from tests.support.prometheus import PrometheusFactory
from tests.support.responder import TOKEN
from tests.support.responder_process import ResponderFactory

POLL_SECONDS = 0.5


def prometheus_alert(state: str, active_at: str = "2026-12-05T08:00:00.123456789Z",
                     **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": "ServiceDown", "severity": "P4", "service": "redis",
                       **labels}, "state": state, "activeAt": active_at, "value": "0e+00"}


def am_alert(state: str, receivers: list[str], **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": "ServiceDown", "severity": "P4", "service": "redis",
                       **labels},
            "receivers": [{"name": name} for name in receivers],
            "status": {"state": state, "inhibitedBy": ["abc"] if state == "suppressed" else [],
                       "silencedBy": []},
            "startsAt": "2026-12-05T08:00:00.5Z", "updatedAt": "2026-12-05T08:00:01Z"}


class TestTimes:
    """Prometheus's RFC 3339 times, nanoseconds included, become epoch seconds."""

    def test_nanoseconds_and_zulu(self) -> None:
        assert parse_time("2026-12-05T08:00:00.123456789Z") == pytest.approx(
            1796457600.123456, abs=1e-6)
        assert parse_time("2026-12-05T08:00:00Z") == 1796457600.0
        assert parse_time("2026-12-05T09:00:00.5+01:00") == 1796457600.5

    @pytest.mark.parametrize("bad", ["yesterday", "2026-12-05T08:00:00", None, 17])
    def test_bad_times_are_named(self, bad: object) -> None:
        with pytest.raises(TimelineDataError, match="RFC 3339"):
            parse_time(bad)


class TestTimelineCore:
    """First moments only: firing, routed, resolved; the watched services alone."""

    def test_pending_firing_resolved_and_firing_again(self) -> None:
        timeline = Timeline(("redis",))
        timeline.observe_prometheus([prometheus_alert("pending")], 10.0)
        timeline.observe_prometheus([prometheus_alert("firing")], 11.0)
        timeline.observe_prometheus([prometheus_alert("firing")], 12.0)
        [track] = timeline.alerts.values()
        assert (track.pending_seen_at, track.firing_seen_at, track.resolved_seen_at) == (
            10.0, 11.0, None)
        assert track.active_at == parse_time("2026-12-05T08:00:00.123456Z")
        assert timeline.firing_services() == {"redis"}
        timeline.observe_prometheus([], 13.0)
        assert track.resolved_seen_at == 13.0
        assert timeline.firing_services() == set()
        # It comes back: still detected at 11 s, resolved only when it goes again.
        timeline.observe_prometheus([prometheus_alert("firing", "2026-12-05T08:01:00Z")], 14.0)
        data = track.as_data()
        assert (data["firing_seen_at"], data["resolved_seen_at"], data["fired"]) == (11.0, None, 2)
        assert track.active_at == parse_time("2026-12-05T08:00:00.123456Z")
        timeline.observe_prometheus([], 15.0)
        assert track.resolved_seen_at == 15.0
        assert timeline.firing_seen("ServiceDown", "P4", "redis") == 11.0

    def test_other_services_are_not_kept(self) -> None:
        timeline = Timeline(("redis",))
        timeline.observe_prometheus([prometheus_alert("firing", service="backend")], 1.0)
        timeline.observe_alertmanager([am_alert("active", ["oncall"], service="backend")], 1.0)
        assert timeline.alerts == {} and timeline.routes == {}

    def test_routed_only_when_active(self) -> None:
        """A suppressed alert is listed for its receivers but reaches none of them."""
        timeline = Timeline(("redis",))
        timeline.observe_alertmanager([am_alert("suppressed", ["oncall", "responder"])], 5.0)
        timeline.observe_alertmanager([am_alert("active", ["oncall", "responder"])], 6.0)
        timeline.observe_alertmanager([am_alert("active", ["oncall", "responder"])], 7.0)
        routes = {track.receiver: track for track in timeline.routes.values()}
        assert set(routes) == {"oncall", "responder"}
        assert (routes["oncall"].suppressed_seen_at, routes["oncall"].routed_seen_at) == (
            5.0, 6.0)
        assert routes["oncall"].inhibited_by == ("abc",)

    def test_a_notice_counts_for_its_root_cause(self) -> None:
        timeline = Timeline(("redis",))
        timeline.observe_alertmanager([am_alert(
            "active", ["team-chat"], alertname="MonitorizaIncident", severity="P3",
            service="", root_cause="redis", incident="4")], 8.0)
        [track] = timeline.routes_of("MonitorizaIncident", "P3", "redis")
        assert (track.receiver, track.routed_seen_at) == ("team-chat", 8.0)

    def test_incidents_actions_and_their_audit_entries(self) -> None:
        timeline = Timeline(("redis",))
        summary = {"id": 7, "state": "open", "opened_at": 100.0, "updated_at": 100.0,
                   "resolved_at": None, "root_cause": {"service": "redis"},
                   "services": ["redis", "backend"], "drill": "d-1"}
        assert timeline.tracks_incident(summary)
        assert not timeline.tracks_incident({**summary, "root_cause": None,
                                             "services": ["mongo"]})
        timeline.observe_incident(summary)
        timeline.observe_audit([{"seq": 41, "kind": "action.started", "data": {"action": 3}}])
        timeline.observe_incident({**summary, "actions": [
            {"id": 3, "service": "redis", "playbook": "restart-redis", "state": "done",
             "outcome": "failure", "started_at": 101.0, "finished_at": 103.0,
             "detail": "exit 1"}]})
        timeline.observe_audit([{"seq": 42, "kind": "action.failure", "data": {"action": 3}},
                                {"seq": 43, "kind": "incident.opened", "data": {"id": 7}}])
        timeline.observe_incident({**summary, "state": "healing"})  # a summary: no actions
        [action] = timeline.incidents[7].actions
        assert [(ref.seq, ref.kind) for ref in action.audit] == [
            (41, "action.started"), (42, "action.failure")]
        assert timeline.incidents[7].drill == "d-1"
        assert timeline.incidents[7].state == "healing"

    def test_a_malformed_incident_is_a_clear_error(self) -> None:
        with pytest.raises(TimelineDataError, match="responder: an incident not as expected"):
            Timeline().observe_incident({"id": 1, "state": "open"})

    def test_errors_repeat_as_a_count(self) -> None:
        timeline = Timeline()
        for at in (1.0, 1.5, 2.0):
            timeline.record_error("prometheus", "connection refused", at)
        timeline.record_error("responder", "HTTP 401", 2.0)
        assert [e.as_data() for e in timeline.errors] == [
            {"source": "prometheus", "message": "connection refused", "first_at": 1.0,
             "last_at": 2.0, "count": 3},
            {"source": "responder", "message": "HTTP 401", "first_at": 2.0, "last_at": 2.0,
             "count": 1}]

    def test_plain_data_round_trip(self) -> None:
        timeline = Timeline(("redis",))
        timeline.mark_poll(1.0)
        timeline.observe_prometheus([prometheus_alert("firing")], 1.0)
        timeline.observe_alertmanager([am_alert("active", ["oncall"])], 1.0)
        timeline.observe_incident({"id": 2, "state": "open", "opened_at": 1.0,
                                   "root_cause": {"service": "redis"}, "services": ["redis"],
                                   "actions": []})
        timeline.record_error("responder", "HTTP 500", 1.0)
        data = json.loads(json.dumps(timeline.as_data()))
        assert Timeline.from_data(data).as_data() == data


class TestUnreachable:
    """A part that does not answer is named; polling goes on and records it."""

    def test_preflight_names_what_is_down(self) -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(Unreachable) as caught:
            preflight(Endpoints(dead, dead + "/", dead, "t"))
        message = str(caught.value)
        for part in ("Prometheus at", "Alertmanager at", "responder at"):
            assert part in message
        assert "does not answer" in message

    def test_polls_record_errors_instead_of_raising(self) -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        watcher = Watcher(Endpoints(dead, dead, dead, "t"), {"redis"})
        watcher.poll()
        watcher.poll()
        errors = watcher.timeline().errors
        assert [(e.source, e.count) for e in errors] == [
            ("prometheus", 1), ("alertmanager", 1), ("responder", 1),
            ("prometheus", 1), ("alertmanager", 1), ("responder", 1)]
        assert "ConnectionError" in errors[0].message

    def test_answers_of_another_shape_are_recorded(self, http_target: HttpTarget) -> None:
        """A proxy's error page, a refused token, an incident without its fields."""
        http_target.respond("/api/v1/alerts", json_body={"status": "error"})
        http_target.respond("/api/v2/alerts", json_body={"alerts": []})
        # The target matches the whole request path, query included.
        incidents = "/api/v1/incidents?limit=50"
        http_target.respond(incidents, status=401, json_body={"error": "token"})
        base = http_target.base_url
        watcher = Watcher(Endpoints(base, base, base, "t"), {"redis"})
        watcher.poll()
        assert [(e.source, e.message) for e in watcher.timeline().errors] == [
            ("prometheus", "Prometheus /api/v1/alerts: no data.alerts in the answer"),
            ("alertmanager", "Alertmanager /api/v2/alerts: not a list of alerts"),
            ("responder", f"GET {base}/api/v1/incidents answered HTTP 401")]
        http_target.respond(incidents, json_body={"incidents": [{"state": "open"}]})
        watcher.poll()
        assert watcher.timeline().errors[-1].message == (
            "responder: unexpected answer (KeyError: 'id')")

    def test_bad_urls_are_refused(self) -> None:
        with pytest.raises(ValueError, match="prometheus URL must start with http"):
            Endpoints("localhost:9090", "http://a", "http://b", "t")


# -- the real pipeline -------------------------------------------------------------------------

RULES = {"groups": [{"name": "drill-test", "rules": [{
    "alert": "DrillTestDown", "expr": 'up{job="web"} == 0', "for": "1s",
    "labels": {"severity": "P3"}}]}]}
FOR_SECONDS = 1.0
SCRAPE_SECONDS = 1.0


@pytest.fixture
def sink() -> Iterator[CaptureServer]:
    """The webhook sink of the two people-facing receivers."""
    server = CaptureServer()
    yield server
    server.close()


def alertmanager_config(responder_url: str, sink: CaptureServer, token_file: Path
                        ) -> dict[str, Any]:
    def hook(path: str) -> dict[str, Any]:
        return {"webhook_configs": [{"url": sink.url + path, "send_resolved": True}]}
    return {
        "route": {"receiver": "team", "group_by": ["service", "alertname"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h",
                  "routes": [
                      {"matchers": ['alertname="MonitorizaIncident"'], "receiver": "team-chat",
                       "group_by": ["incident"]},
                      {"matchers": ['severity=~"P3|P4"'], "receiver": "responder",
                       "continue": True},
                      {"matchers": ['severity="P3"'], "receiver": "team"}]},
        "receivers": [
            {"name": "responder", "webhook_configs": [{
                "url": f"{responder_url}/api/v1/alerts", "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(token_file)}}}]},
            {"name": "team", **hook("/team")},
            {"name": "team-chat", **hook("/team-chat")}]}


class Poller:
    """Polls in the background every 0.5 s, as a drill does, and times each round."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.durations: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self.watcher.poll()
            self.durations.append(time.monotonic() - started)
            self.stop.wait(POLL_SECONDS)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def web_experiment(deadline: float) -> Experiment:
    def due(seconds: float) -> Deadline:
        return Deadline((Term("test", seconds, "test"),), ())
    reaches = (Reach("responder", "route", "alertmanager", (), True, due(deadline)),
               Reach("team", "route", "alertmanager", ("webhook",), False, due(deadline)),
               Reach("team-chat", "route", "notice", ("webhook",), False, due(deadline),
                     "MonitorizaIncident P3"))
    alert = ExpectedAlert("DrillTestDown", "P3", "web", FOR_SECONDS, "rules.yml",
                          (("alertname", "DrillTestDown"), ("service", "web"),
                           ("severity", "P3")), "first", due(deadline), reaches)
    return Experiment("web", "container_stop", "web", "web", (alert,),
                      Heal("web", "kick-web", "DrillTestDown P3", (), due(deadline)), (), ())


@pytest.fixture
def responder_port() -> int:
    """Chosen before Alertmanager starts: its configuration names the responder."""
    return free_port()


@pytest.fixture
def pipeline_alertmanager(tmp_path: Path, sink: CaptureServer, responder_port: int
                          ) -> Iterator[Alertmanager]:
    """Routes P3 to the responder (real, bearer token) and to the team webhook, and the
    responder's notices to the team-chat webhook."""
    directory = tmp_path / "alertmanager"
    directory.mkdir()
    token_file = directory / "token"
    token_file.write_text(TOKEN + "\n")
    config = alertmanager_config(f"http://127.0.0.1:{responder_port}", sink, token_file)
    config_path = directory / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    alertmanager = Alertmanager(require_binary("prometheus-alertmanager"),
                                directory=directory, config_path=config_path, config=config,
                                capture=sink, responder_token=TOKEN)
    alertmanager.start()
    yield alertmanager
    alertmanager.stop()


@pytest.fixture
def endpoints(http_target: HttpTarget, prometheus_factory: PrometheusFactory,
              responder_process: ResponderFactory, responder_port: int,
              pipeline_alertmanager: Alertmanager) -> Endpoints:
    """Prometheus scraping ``http_target``'s /metrics as service web, and a responder whose
    playbook for web POSTs to /kick; every part ready, the target up."""
    alertmanager = pipeline_alertmanager
    http_target.respond("/metrics", body=b"drill_test 1\n", content_type="text/plain")
    heal_url = http_target.respond("/kick", status=200)
    rules = pipeline_alertmanager.directory.parent / "rules.yml"
    rules.write_text(yaml.safe_dump(RULES))
    prometheus = prometheus_factory({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager.url.removeprefix("http://")]}]}]},
        "scrape_configs": [{"job_name": "web", "static_configs": [{
            "targets": [f"127.0.0.1:{http_target.port}"], "labels": {"service": "web"}}]}],
    })
    responder = responder_process(port=responder_port, services={"web": {"healing": [{
        "name": "kick-web", "match": {"alertname": ["DrillTestDown"]},
        "steps": [{"action": "http", "url": heal_url, "timeout": "2s"}]}]}},
        healing={"alertmanager_url": alertmanager.url,
                 "allowed_urls": [http_target.base_url + "/"]})
    assert wait_until(prometheus.targets_up, 15.0, interval=0.2)
    return Endpoints(prometheus.url, alertmanager.url, responder.url, TOKEN)


class TestRealPipeline:
    """A target goes down: the watcher sees Prometheus fire, Alertmanager route to three
    receivers, the responder open an incident and heal, and the alert resolve."""

    def test_a_fault_seen_end_to_end(self, endpoints: Endpoints, http_target: HttpTarget,
                                     sink: CaptureServer) -> None:
        """Also: preflight passes, and names a wrong token as such."""
        preflight(endpoints)
        with pytest.raises(Unreachable, match="refused the token"):
            preflight(Endpoints(endpoints.prometheus, endpoints.alertmanager,
                                endpoints.responder, "wrong"))
        watcher = Watcher(endpoints, {"web"})
        poller = Poller(watcher)
        try:
            assert wait_until(lambda: bool(poller.durations), 5.0)
            injected_at = time.time()
            http_target.respond("/metrics", status=503, body=b"down")

            def everything_seen() -> bool:
                timeline = watcher.timeline()
                incidents = list(timeline.incidents.values())
                return (len(timeline.routes) == 3 and bool(incidents)
                        and any(a.outcome for i in incidents for a in i.actions)
                        and all(a.audit for i in incidents for a in i.actions))

            assert wait_until(everything_seen, 25.0, interval=0.2), \
                json.dumps(watcher.timeline().as_data(), indent=1)
            http_target.respond("/metrics", body=b"drill_test 1\n", content_type="text/plain")
            assert wait_until(lambda: all(t.resolved_seen_at for t in
                                          watcher.timeline().alerts.values()), 15.0)
        finally:
            poller.close()

        timeline = watcher.timeline()
        assert timeline.errors == []
        [alert] = timeline.alerts.values()
        assert alert.labels["alertname"] == "DrillTestDown"
        assert alert.active_at is not None and alert.firing_seen_at is not None
        # The watcher sees the firing within a poll of Prometheus's own moment.
        assert alert.active_at >= injected_at - SCRAPE_SECONDS
        lag = alert.firing_seen_at - (alert.active_at + FOR_SECONDS)
        assert -0.1 < lag < SCRAPE_SECONDS + POLL_SECONDS + 1.0, lag
        routed = {(t.labels["alertname"], t.receiver) for t in timeline.routes.values()
                  if t.routed_seen_at is not None}
        assert routed == {("DrillTestDown", "responder"), ("DrillTestDown", "team"),
                          ("MonitorizaIncident", "team-chat")}
        [incident] = timeline.incidents.values()
        assert incident.root_cause == "web"
        [action] = incident.actions
        assert (action.playbook, action.outcome) == ("kick-web", "success")
        assert [ref.kind for ref in action.audit] == ["action.started", "action.success"]
        assert sink.posts("/team") and sink.posts("/team-chat")
        assert http_target.hits("/kick") == 1

        result = judge(web_experiment(30.0), timeline, injected_at=injected_at,
                       released_at=None, canary=None, scrape_interval=SCRAPE_SECONDS)
        assert result.verdict == "pass", result.reasons
        assert result.root_cause_named == "web"
        late = judge(web_experiment(0.5), timeline, injected_at=injected_at,
                     released_at=None, canary=None, scrape_interval=SCRAPE_SECONDS)
        assert late.verdict == "late"

        # Cheap enough to poll every 0.5 s.
        median = statistics.median(poller.durations)
        print(f"\npoll rounds: {len(poller.durations)}, median {median * 1000:.1f} ms, "
              f"max {max(poller.durations) * 1000:.1f} ms")
        assert median < 0.25

"""Fire drills on the responder's side: a drill's steps in the audit chain, its windows, and
the incidents opened in them marked as the drill's.

The real responder app on the real store (SQLite and PostgreSQL, the ``store_url`` fixture),
driven through Flask's test client; alerts go through the webhook and the journal worker as
in production. Window expiry waits on the real clock (about a second).
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect
from werkzeug.serving import make_server

from monitoriza.audit.commands import verify_command
from monitoriza.config import config_from_data
from monitoriza.config.schema import Config
from monitoriza.drill.events import DrillEvents
from monitoriza.drill.observe import Endpoints
from monitoriza.healing.correlation import AlertEvent, AlertSummary, Incident
from monitoriza.healing.drill_windows import DrillWindow, drill_for
from monitoriza.healing.notices import notice_alerts
from monitoriza.responder.app import create_app
from monitoriza.responder.drill_events import (
    DrillEventError,
    check_timing,
    parse_drill_event,
)
from monitoriza.responder.state import responder_of
from monitoriza.store import create_store
from tests.support.alertmanager import CaptureServer
from tests.support.responder import TOKEN, closed_after_test, post

SERVICES = {"redis": {"tier": "critical"}, "backend": {"depends_on": ["redis"]},
            "guardian": {}}
AUTH = {"Authorization": f"Bearer {TOKEN}"}



def config_for(tmp_path: Path, store_url: str, **healing: Any) -> Config:
    return config_from_data({"services": SERVICES, "responder": {
        "store_url": store_url, "token_file": str(tmp_path / "token"),
        "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                  "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
        "healing": {"kill_switch_file": str(tmp_path / "kill-switch"), **healing}}})


def build(tmp_path: Path, store_url: str, **healing: Any) -> Flask:
    app = create_app(config_for(tmp_path, store_url, **healing), token=TOKEN,
                     start_worker=False)
    closed_after_test(app)
    return app


@pytest.fixture
def app(tmp_path: Path, store_url: str) -> Flask:
    return build(tmp_path, store_url)


def start(drill: str = "d1", event_id: str | None = None, *, ahead: float = 600.0,
          services: list[str] | None = None, experiment: str = "redis:container_stop",
          ) -> dict[str, Any]:
    return {"event_id": event_id or f"{drill}-start-{experiment}", "drill_id": drill,
            "event": "start", "experiment": experiment,
            "services": services if services is not None else ["redis", "backend"],
            "expires_at": time.time() + ahead, "detail": {"target": "redis"}}


def step(event: str, drill: str = "d1", experiment: str = "redis:container_stop",
         **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{drill}-{event}-{experiment}", "drill_id": drill, "event": event,
            "experiment": experiment, **extra}


def send(client: FlaskClient, body: object, token: str | None = TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/api/v1/drills/events", data=json.dumps(body), headers=headers,
                       content_type="application/json")


def alert(service: str, alertname: str = "ServiceDown", severity: str = "P3") -> str:
    labels = {"alertname": alertname, "service": service, "severity": severity}
    return json.dumps({"version": "4", "receiver": "responder", "status": "firing",
                       "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                                   "startsAt": "2026-12-01T10:00:00Z",
                                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                                   "fingerprint": f"{alertname}-{service}"}],
                       "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                       "externalURL": "", "groupKey": f'{{}}:{{service="{service}"}}',
                       "truncatedAlerts": 0})


def raise_alert(app: Flask, service: str, **labels: str) -> None:
    """Post one firing alert through the webhook and let the journal worker process it."""
    assert post(app.test_client(), alert(service, **labels)).status_code == 200
    while responder_of(app).worker.run_once():
        pass


def incidents(client: FlaskClient, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/incidents{query}", headers=AUTH)
    assert response.status_code == 200, response.json
    found: list[dict[str, Any]] = response.get_json()["incidents"]
    return found


def open_windows(client: FlaskClient) -> list[dict[str, Any]]:
    """The drill windows ``GET /api/v1/drills`` lists now."""
    response = client.get("/api/v1/drills", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    found: list[dict[str, Any]] = response.get_json()["windows"]
    return found


def audit_entries(app: Flask, prefix: str = "drill.") -> list[tuple[str, dict[str, Any]]]:
    return [(entry.kind, dict(entry.data))
            for entry in responder_of(app).audit.entries(limit=10_000)
            if entry.kind.startswith(prefix)]


class TestValidation:
    """A bad body is refused with 400 naming the field, and nothing is written."""

    @pytest.mark.parametrize(("body", "field"), [
        ([], "body"),
        ({}, "event_id"),
        ({**step("inject"), "event_id": "has space"}, "event_id"),
        ({**step("inject"), "event_id": "x" * 257}, "event_id"),
        ({**step("inject"), "drill_id": "x" * 65}, "drill_id"),
        ({k: v for k, v in step("inject").items() if k != "drill_id"}, "drill_id"),
        ({**step("inject"), "event": "explode"}, "event"),
        ({**step("inject"), "colour": "red"}, "colour"),
        ({**step("inject"), "experiment": "x" * 201}, "experiment"),
        ({**step("inject"), "services": "redis"}, "services"),
        ({**step("inject"), "services": ["redis", "Bad Name"]}, "services[1]"),
        ({**step("inject"), "expires_at": "soon"}, "expires_at"),
        ({**step("inject"), "expires_at": True}, "expires_at"),
        ({**step("inject"), "expires_at": None}, "expires_at"),
        ({**step("inject"), "detail": ["not", "an", "object"]}, "detail"),
        ({**step("inject"), "detail": {"log": "x" * 16_400}}, "detail"),
        ({**step("inject"), "detail": {"lone": "\ud800"}}, "detail"),
        ({k: v for k, v in start().items() if k != "expires_at"}, "expires_at"),
        ({**start(), "services": []}, "services"),
    ])
    def test_bad_body(self, app: Flask, body: object, field: str) -> None:
        """Each refusal names its field, in the JSON and in the message."""
        response = send(app.test_client(), body)
        assert response.status_code == 400, response.json
        assert response.json["field"] == field
        assert response.json["message"].startswith(f"{field}: ")
        assert audit_entries(app, "") == []

    @pytest.mark.parametrize("raw", [b"{", b'{"detail": NaN}', b"[" * 100_000])
    def test_not_json(self, app: Flask, raw: bytes) -> None:
        """Malformed JSON, NaN (not JSON) and absurd nesting are the body's fault."""
        response = app.test_client().post("/api/v1/drills/events", data=raw, headers=AUTH,
                                          content_type="application/json")
        assert (response.status_code, response.get_json()["field"]) == (400, "body")

    def test_wrong_content_type(self, app: Flask) -> None:
        response = app.test_client().post("/api/v1/drills/events", data="{}", headers=AUTH,
                                          content_type="text/plain")
        assert response.status_code == 415

    @pytest.mark.parametrize("ahead", [-1.0, 2 * 3600 + 60])
    def test_window_outside_two_hours(self, app: Flask, ahead: float) -> None:
        """A start that expired already, or would outlive 2 h, conflicts with the clock (409)."""
        response = send(app.test_client(), start(ahead=ahead))
        assert response.status_code == 409
        assert response.json["field"] == "expires_at"
        assert "at most 2 h ahead" in response.json["message"]
        assert audit_entries(app, "") == []

    def test_no_token(self, app: Flask) -> None:
        """Without the bearer token: 401 for both endpoints, nothing written."""
        client = app.test_client()
        assert send(client, start(), token=None).status_code == 401
        assert send(client, start(), token="wrong").status_code == 401
        assert client.get("/api/v1/drills").status_code == 401
        assert audit_entries(app, "") == []

    def test_pure_parse(self) -> None:
        """Services come back sorted and once each; the clock check is separate."""
        event = parse_drill_event({**start(), "services": ["redis", "backend", "redis"]})
        assert event.services == ("backend", "redis")
        assert event.audit_kind == "drill.start"
        with pytest.raises(DrillEventError) as raised:
            check_timing(event, now=(event.expires_at or 0) + 1)
        assert raised.value.status == 409


class TestAuditChain:
    """Each step is one entry drill.<event>, and the chain still verifies."""

    def test_a_whole_drill(self, tmp_path: Path, store_url: str) -> None:
        """start, inject, restore, verdict, end: five entries in order, with their data; the
        answers carry the entry's seq; `monitoriza audit verify` passes."""
        app = build(tmp_path, store_url)
        client = app.test_client()
        answers = [send(client, body) for body in [
            start(), step("inject", detail={"container": "redis-1", "note": "a\u0000b"}),
            step("restore"),
            step("verdict", detail={"verdict": "pass"}), step("end")]]
        assert [answer.status_code for answer in answers] == [201] * 5
        entries = audit_entries(app)
        assert [kind for kind, _ in entries] == ["drill.start", "drill.inject",
                                                 "drill.restore", "drill.verdict", "drill.end"]
        start_data = entries[0][1]
        assert start_data["services"] == ["backend", "redis"]
        assert start_data["detail"] == {"target": "redis"}
        assert entries[1][1]["detail"] == {"container": "redis-1", "note": "a\u0000b"}
        assert entries[4][1]["closed_windows"] == ["d1-start-redis:container_stop"]
        seqs = {entry.seq for entry in responder_of(app).audit.entries(limit=100)
                if entry.kind.startswith("drill.")}
        assert {answer.json["audit_seq"] for answer in answers} == seqs
        out = io.StringIO()
        assert verify_command(config_for(tmp_path, store_url), out) == 0, out.getvalue()
        assert out.getvalue().startswith("audit chain OK: 5 entries")

    def test_retry_is_idempotent(self, app: Flask) -> None:
        """The same event_id again: 200 with the stored event, no second entry, even when the
        retried body differs (the first one recorded wins)."""
        client = app.test_client()
        body = start()
        first = send(client, body)
        again = send(client, body)
        changed = send(client, {**body, "services": ["guardian"], "expires_at": 1.0})
        assert (first.status_code, again.status_code, changed.status_code) == (201, 200, 200)
        assert first.json == again.json == changed.json
        assert [kind for kind, _ in audit_entries(app)] == ["drill.start"]
        windows = open_windows(client)
        assert [window["services"] for window in windows] == [["backend", "redis"]]


class TestWindows:
    """start opens a window, end and abort close it, expires_at ends it by itself."""

    def test_listed_until_ended(self, app: Flask) -> None:
        client = app.test_client()
        send(client, start(experiment="redis:container_stop"))
        send(client, start(experiment="backend:process_kill", services=["backend"]))
        listed = open_windows(client)
        assert [window["experiment"] for window in listed] == ["redis:container_stop",
                                                               "backend:process_kill"]
        ended = send(client, step("end", experiment="redis:container_stop"))
        assert ended.json["closed_windows"] == ["d1-start-redis:container_stop"]
        listed = open_windows(client)
        assert [window["experiment"] for window in listed] == ["backend:process_kill"]
        aborted = send(client, step("abort", experiment=""))  # the whole drill
        assert aborted.json["closed_windows"] == ["d1-start-backend:process_kill"]
        assert open_windows(client) == []

    def test_window_expires(self, app: Flask) -> None:
        """A drill that never sends end: its window is gone once expires_at passes, and an
        incident opened after that is not the drill's."""
        client = app.test_client()
        assert send(client, start(ahead=1.0)).status_code == 201
        assert len(open_windows(client)) == 1
        time.sleep(1.1)
        assert open_windows(client) == []
        raise_alert(app, "redis")
        [found] = incidents(client)
        assert found["drill"] is None
        assert send(client, step("end")).json["closed_windows"] == []


class TestIncidentMarking:
    """An incident opened in a window over its services is the drill's; others are not."""

    def test_marked_inside_not_outside(self, app: Flask) -> None:
        """backend (in the blast radius) during the window: marked, also in the audit entry
        and the filter; guardian (outside it) at the same time: not; redis after the end:
        not."""
        client = app.test_client()
        send(client, start())
        raise_alert(app, "backend")
        raise_alert(app, "guardian")
        send(client, step("end"))
        by_service = {found["services"][0]: found for found in incidents(client)}
        assert by_service["backend"]["drill"] == "d1"
        assert by_service["guardian"]["drill"] is None
        assert [found["id"] for found in incidents(client, "?drill=d1")] == [
            by_service["backend"]["id"]]
        detail = client.get(f"/api/v1/incidents/{by_service['backend']['id']}", headers=AUTH)
        assert detail.get_json()["drill"] == "d1"
        opened = [data for kind, data in audit_entries(app, "incident.opened")]
        assert {data.get("drill") for data in opened} == {"d1", None}
        raise_alert(app, "redis", alertname="RedisDown")  # joins backend's open incident
        raise_alert(app, "guardian", alertname="GuardianSlow")
        assert incidents(client, "?drill=d1") == [
            found for found in incidents(client) if found["drill"] == "d1"]
        assert len(incidents(client, "?drill=d1")) == 1

    def test_bad_drill_filter(self, app: Flask) -> None:
        response = app.test_client().get("/api/v1/incidents?drill=no%20spaces", headers=AUTH)
        assert response.status_code == 400

    def test_notice_says_drill(self, tmp_path: Path, store_url: str,
                               capture_server: CaptureServer) -> None:
        """The MonitorizaIncident notice the responder posts to Alertmanager carries the
        drill annotation and says so in its summary."""
        app = build(tmp_path, store_url, alertmanager_url=capture_server.url)
        send(app.test_client(), start())
        raise_alert(app, "redis")
        [captured] = capture_server.wait_for(
            lambda seen: b"MonitorizaIncident" in seen.raw, 10.0, "the incident notice")
        [notice] = json.loads(captured.raw)
        assert notice["annotations"]["drill"] == "d1"
        assert notice["annotations"]["summary"].startswith("[drill d1] Incident #")

    def test_notice_of_an_outage_has_no_drill(self) -> None:
        """Pure: no drill, no annotation and no prefix."""
        event = AlertEvent(fingerprint="f", starts_at=0.0, status="firing",
                           alertname="ServiceDown", service="redis", severity="P3",
                           labels={}, received_at=0.0)
        incident = Incident(3, "open", 0.0, None, AlertSummary.of([event]))
        [notice] = notice_alerts(incident, ["P3"], now=1.0, ended=False)
        annotations: Any = notice["annotations"]
        assert "drill" not in annotations
        assert annotations["summary"].startswith("Incident #3")


class TestDrillClient:
    """The drill's own client (monitoriza.drill.events) against the responder over HTTP."""

    def test_long_experiment_recorded_once(self, app: Flask) -> None:
        """Its event ids (DRILL:EXPERIMENT:EVENT) fit for a long experiment key; sending a
        step twice records it once."""
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}"
            events = DrillEvents(Endpoints(url, url, url, TOKEN), "drill-20261205T083000Z")
            key = "ai-orchestrator:dependency_outage:postgres"
            expires = time.time() + 660
            assert events.send("start", key, ["redis"], {}, expires_at=expires)
            assert events.send("start", key, ["redis"], {}, expires_at=expires)
            assert events.send("end", key, ["redis"], {"verdict": "pass"}, expires_at=expires)
        finally:
            server.shutdown()
            thread.join()
        assert events.failures == []
        assert [kind for kind, _ in audit_entries(app)] == ["drill.start", "drill.end"]


class TestDrillFor:
    """Pure: which window an incident falls in."""

    WINDOWS = (DrillWindow("s1", "d1", "redis:container_stop", ("backend", "redis"),
                           100.0, 200.0, ended_at=150.0),
               DrillWindow("s2", "d2", "guardian:container_kill", ("guardian",), 120.0, 300.0))

    @pytest.mark.parametrize(("opened_at", "services", "expected"), [
        (99.0, {"redis"}, None),          # before the start
        (100.0, {"redis"}, "d1"),
        (149.9, {"backend", "x"}, "d1"),
        (150.0, {"redis"}, None),         # at the end
        (130.0, {"guardian"}, "d2"),
        (299.9, {"guardian"}, "d2"),
        (300.0, {"guardian"}, None),      # expired
        (130.0, {"frontend"}, None),      # outside every blast radius
    ])
    def test_drill_for(self, opened_at: float, services: set[str],
                       expected: str | None) -> None:
        assert drill_for(self.WINDOWS, opened_at, services) == expected


class TestUpgrade:
    """A store of an earlier release gains incidents.drill_id when the responder opens it."""

    def test_column_added(self, tmp_path: Path, store_url: str) -> None:
        """(Made from a new store as releases before versions left it: no drill_id, and no
        schema_migrations rows.)"""
        engine = create_store(store_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX incidents_drill_id")
            conn.exec_driver_sql("ALTER TABLE incidents DROP COLUMN drill_id")
            conn.exec_driver_sql("DROP TABLE schema_migrations")
        with engine.connect() as conn:
            assert "drill_id" not in {c["name"] for c in inspect(conn).get_columns("incidents")}
        engine.dispose()
        app = build(tmp_path, store_url)
        with responder_of(app).journal.engine.connect() as conn:
            assert "drill_id" in {c["name"] for c in inspect(conn).get_columns("incidents")}
            assert "incidents_drill_id" in {i["name"] for i in inspect(conn).get_indexes(
                "incidents")}
        send(app.test_client(), start())
        raise_alert(app, "redis")
        assert [found["drill"] for found in incidents(app.test_client())] == ["d1"]

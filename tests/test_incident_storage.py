"""Incidents in an alert storm: bounded work per alert, alerts as rows, paged API, old stores.

An incident keeps a summary per kind of alert, and its alerts are rows of ``incident_alerts``:
these tests count what processing one alert reads and writes as an incident grows, page
through the incidents API, and open stores written by the previous release (edf6060), whose
incidents keep their alerts as JSON.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy import event as sql_event

from monitoriza.config import Config, config_from_data
from monitoriza.healing import repository
from monitoriza.healing.correlation import (
    AlertEvent,
    AlertKind,
    AlertStatus,
    AlertSummary,
    MemoryMembers,
    Topology,
    correlate,
)
from monitoriza.report.collect import collect_responder
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import (
    create_store,
    incident_alerts,
    incident_summaries,
    incidents,
    writing,
)
from tests.support.responder import TOKEN, AppFactory, post

T0 = 1_800_000_000.0
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
OLD_STORE = Path(__file__).parent / "fixtures" / "store-edf6060"
NAMES = ("HighRequestLatency", "HighErrorRate", "PodRestarting")


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert(fingerprint: str, service: str | None = "checkout", *, name: str = NAMES[0],
          status: str = "firing", starts: float = T0, severity: str = "P3") -> dict[str, Any]:
    labels = {"alertname": name, "severity": severity, "instance": fingerprint}
    if service is not None:
        labels["service"] = service
    return {"status": status, "labels": labels, "annotations": {}, "startsAt": _rfc3339(starts),
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}


def body(*alerts: dict[str, Any]) -> str:
    return json.dumps({"version": "4", "receiver": "responder", "status": alerts[0]["status"],
                       "alerts": list(alerts), "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": "",
                       "groupKey": '{}:{service="checkout"}', "truncatedAlerts": 0})


def process(app: Flask) -> None:
    state = responder_of(app)
    while state.worker.run_once():
        pass


def storm(app: Flask, first: int, count: int, **labels: Any) -> None:
    """``count`` new alerts of checkout, ten to a notification, processed."""
    client = app.test_client()
    for start in range(first, first + count, 10):
        alerts = [alert(f"{index:016x}", name=NAMES[index % len(NAMES)],
                        starts=T0 + index, **labels)
                  for index in range(start, min(start + 10, first + count))]
        assert post(client, body(*alerts)).status_code == 200
    process(app)


class CountingMembers(MemoryMembers):
    """The in-memory alert book, counting the questions correlation asks it (a fake: the
    store's rows answer them in production)."""

    def __init__(self) -> None:
        super().__init__()
        self.questions = 0

    def held(self, fingerprint: str, incident_ids: Any) -> dict[int, AlertEvent]:
        self.questions += 1
        return super().held(fingerprint, incident_ids)

    def others(self, incident_id: int, kind: AlertKind, status: AlertStatus,
               fingerprint: str) -> tuple[float, float] | None:
        self.questions += 1
        return super().others(incident_id, kind, status, fingerprint)


class TestBoundedCore:
    """What correlation keeps and asks per alert does not grow with the incident."""

    def test_summary_and_questions_stay_constant(self) -> None:
        """From 10 to 5,000 alerts of one service (every tenth resolving the oldest still
        firing), the summary keeps one tally per kind and status, and each event asks the
        alert book at most twice; the summary always equals one made from every alert."""
        topology = Topology({"checkout": ()}, {"checkout": "critical"})
        members = CountingMembers()
        incident = None
        sizes: dict[int, tuple[int, int]] = {}
        fired: deque[int] = deque()
        for index in range(5000):
            if index % 10 == 9:
                oldest = fired.popleft()
                event = AlertEvent.from_alert(alert(f"{oldest:08d}", name=NAMES[oldest % 3],
                                                    status="resolved", starts=T0 + oldest),
                                              received_at=T0 + index)
            else:
                fired.append(index)
                event = AlertEvent.from_alert(alert(f"{index:08d}", name=NAMES[index % 3],
                                                    starts=T0 + index),
                                              received_at=T0 + index)
            asked = members.questions
            result = correlate([] if incident is None else [incident], event, topology,
                               now=T0 + index, window=300, members=members)
            assert result is not None
            assert members.questions - asked <= 2
            incident = result.incident
            incident.id = 1
            members.record(1, event)
            if index + 1 in (10, 100, 1000, 5000):
                sizes[index + 1] = (len(incident.summary.tallies),
                                    len(json.dumps(incident.summary.as_data())))
        assert incident is not None
        assert incident.summary == AlertSummary.of(members.alerts[1].values())
        assert incident.summary.count() == 4500
        assert incident.firing_count() == 4000
        assert sizes[10][0] <= 6
        assert [sizes[n][0] for n in (100, 1000, 5000)] == [6, 6, 6]
        assert sizes[5000][1] - sizes[100][1] < 40  # the counts' digits, nothing more
        assert incident.root_cause is not None
        assert incident.root_cause.service == "checkout"

    def test_extremes_come_back_when_the_extreme_alert_resolves(self) -> None:
        """When the earliest alert of a kind resolves, the incident's onset is that of the
        next one (asked of the book), and its last activity that of the latest firing one."""
        topology = Topology({}, {})
        members = MemoryMembers()
        incident = None
        events = [AlertEvent.from_alert(alert(name, starts=T0 + at), received_at=T0 + at)
                  for name, at in (("a", 0), ("b", 10), ("c", 20))]
        events.append(AlertEvent.from_alert(alert("a", status="resolved", starts=T0),
                                            received_at=T0 + 30))
        events.append(AlertEvent.from_alert(alert("c", status="resolved", starts=T0 + 20),
                                            received_at=T0 + 40))
        for event in events:
            result = correlate([] if incident is None else [incident], event, topology,
                               now=event.received_at, window=300, members=members)
            assert result is not None
            incident = result.incident
            incident.id = 1
            members.record(1, event)
        assert incident is not None
        assert incident.summary.earliest("firing") == T0 + 10
        assert incident.last_activity() == T0 + 10


def statements_per_alert(engine: Engine, app: Flask, first: int, count: int) -> tuple[
        float, int, int]:
    """Statements per alert, the largest statement parameters in bytes, and (SQLite) the
    virtual-machine steps per alert, while ``count`` alerts are processed."""
    statements: list[int] = []
    steps = [0]

    def counted(_conn: Connection, _cursor: Any, _sql: str, parameters: Any, *_: Any) -> None:
        statements.append(len(repr(parameters)))

    def on_begin(conn: Connection) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            driver.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 100)

    sql_event.listen(engine, "before_cursor_execute", counted)
    sql_event.listen(engine, "begin", on_begin)
    try:
        storm(app, first, count)
    finally:
        sql_event.remove(engine, "before_cursor_execute", counted)
        sql_event.remove(engine, "begin", on_begin)
    return len(statements) / count, max(statements), steps[0] * 100 // count


class TestBoundedStore:
    """The store work of one alert is the same in an incident of 20 alerts and of 300."""

    def test_statements_and_bytes_per_alert(self, make_responder_app: AppFactory) -> None:
        """Processing 20 more alerts costs as many statements, as large, whether the incident
        holds 20 or 300 alerts (the previous release rewrote every alert each time); on
        SQLite, the database engine's own work per alert stays within 25 %."""
        app = make_responder_app()
        engine = responder_of(app).journal.engine
        storm(app, 0, 20)
        small = statements_per_alert(engine, app, 20, 20)
        storm(app, 40, 260)
        large = statements_per_alert(engine, app, 300, 20)
        assert large[0] <= small[0] + 0.25  # a checkpoint or an extra claim, not more
        # A longer journal id, timestamps whose repr is a few digits longer: not the
        # kilobytes a statement would gain if it carried the incident's other alerts.
        assert large[1] <= small[1] * 1.05, (small, large)
        if engine.dialect.name == "sqlite":
            assert large[2] <= small[2] * 1.25, (small, large)
        with engine.connect() as conn:
            assert conn.execute(select(incidents.c.id, incidents.c.alerts)).all() == [(1, "{}")]
            assert len(conn.execute(select(incident_alerts.c.fingerprint)).all()) == 320


class TestIncidentsApi:
    """Incidents are listed as summaries, a page at a time; their alerts page separately."""

    @pytest.fixture
    def app(self, make_responder_app: AppFactory) -> Flask:
        """Five incidents (five unrelated services); checkout's holds 25 alerts, 5 resolved."""
        app = make_responder_app()
        client = app.test_client()
        for service in ("a", "b", "c", "d"):
            post(client, body(alert(f"{service}-1", service)))
        storm(app, 0, 25)
        post(client, body(*(alert(f"{index:016x}", name=NAMES[index % 3], starts=T0 + index,
                                   status="resolved") for index in range(5))))
        process(app)
        return app

    def get(self, app: Flask, path: str) -> tuple[int, Any]:
        response = app.test_client().get(path, headers=HEADERS)
        return response.status_code, response.get_json()

    def test_summary(self, app: Flask) -> None:
        """An incident's summary counts its alerts and names its services, never lists them."""
        status, page = self.get(app, "/api/v1/incidents?service=checkout")
        assert status == 200
        [incident] = page["incidents"]
        assert (incident["alert_count"], incident["firing_count"],
                incident["resolved_count"]) == (25, 20, 5)
        assert incident["services"] == ["checkout"]
        assert incident["root_cause"] == {"service": "checkout", "component": None,
                                          "kind": "service"}
        assert incident["first_alert_at"] == pytest.approx(T0)
        assert incident["reasoning"][0].startswith("checkout is failing (")
        assert "alerts" not in incident

    def test_paging(self, app: Flask) -> None:
        """Newest first, ``limit`` at a time, ``after`` continuing; filters still apply."""
        status, first = self.get(app, "/api/v1/incidents?limit=2")
        assert status == 200
        assert [i["id"] for i in first["incidents"]] == [5, 4]
        assert first["next_after"] == 4
        _, second = self.get(app, "/api/v1/incidents?limit=2&after=4")
        assert [i["id"] for i in second["incidents"]] == [3, 2]
        _, last = self.get(app, "/api/v1/incidents?limit=2&after=2")
        assert [i["id"] for i in last["incidents"]] == [1]
        assert last["next_after"] is None
        _, open_ = self.get(app, "/api/v1/incidents?state=open&limit=1000")
        assert len(open_["incidents"]) == 5
        for query in ("limit=0", "limit=1001", "limit=x", "after=x", "after=%C2%B2",
                      "after=9223372036854775808", "state=closed"):
            assert self.get(app, f"/api/v1/incidents?{query}")[0] == 400, query
        assert app.test_client().get("/api/v1/incidents").status_code == 401

    def test_one_incident_and_its_alerts(self, app: Flask) -> None:
        """One incident has its summary and first alerts; ``/alerts`` pages all of them."""
        status, incident = self.get(app, "/api/v1/incidents/5")
        assert status == 200
        assert incident["alert_count"] == 25
        assert len(incident["alerts"]) == 25
        assert incident["alerts_next_after"] is None
        assert incident["actions"] == []
        seen: list[dict[str, Any]] = []
        after = ""
        while True:
            _, page = self.get(app, f"/api/v1/incidents/5/alerts?limit=10{after}")
            seen += page["alerts"]
            if page["next_after"] is None:
                break
            after = f"&after={page['next_after']}"
        assert [a["fingerprint"] for a in seen] == [f"{index:016x}" for index in range(25)]
        assert {a["status"] for a in seen[:5]} == {"resolved"}
        assert seen[7]["labels"]["service"] == "checkout"
        _, resolved = self.get(app, "/api/v1/incidents/5/alerts?status=resolved")
        assert len(resolved["alerts"]) == 5
        assert self.get(app, "/api/v1/incidents/9/alerts")[0] == 404
        assert self.get(app, "/api/v1/incidents/5/alerts?limit=0")[0] == 400
        assert self.get(app, "/api/v1/incidents/5/alerts?status=x")[0] == 400


def _old_config(root: Path) -> Config:
    return config_from_data({"services": {"redis": {"tier": "critical"},
                                          "backend": {"depends_on": ["redis"]}},
                             "responder": {
        "store_url": f"sqlite:///{root / 'responder.db'}",
        "token_file": str(root / "token"),
        "audit": {"signing_key_file": str(root / "signing.pem"),
                  "checkpoint_file": str(root / "checkpoints.jsonl")},
        "healing": {"kill_switch_file": str(root / "kill-switch")}}})


@pytest.fixture
def old_store(tmp_path: Path) -> Iterator[Path]:
    """A private copy of the store written by release edf6060 (opening it upgrades it)."""
    copy = tmp_path / "store"
    shutil.copytree(OLD_STORE, copy)
    yield copy


class TestOldStore:
    """Stores of the previous release: alerts kept as JSON in the incident row."""

    def test_report_reads_it(self, old_store: Path) -> None:
        """The report lists the old open incident with its alerts' services and onset."""
        start = datetime(2026, 11, 19, tzinfo=UTC).timestamp()
        facts = collect_responder(_old_config(old_store), start, time.time() + 86400)
        assert facts.missing is None
        [incident] = facts.incidents
        assert incident.services == ["backend", "redis"]
        assert incident.alertnames == ["ServiceDegraded", "ServiceDown"]
        assert incident.first_alert_at == datetime(2026, 11, 20, 3, tzinfo=UTC).timestamp()

    def test_upgraded_in_place_on_the_next_alert(self, old_store: Path) -> None:
        """The API reads the JSON as it is; the next alert moves it into rows once, and the
        old alerts count: resolving the old Redis alert resolves the incident."""
        app = create_app(_old_config(old_store), token=TOKEN, start_worker=False)
        try:
            client = app.test_client()
            listed = client.get("/api/v1/incidents", headers=HEADERS).get_json()["incidents"]
            assert [(i["firing_count"], i["resolved_count"]) for i in listed] == [(1, 1)]
            alerts = client.get("/api/v1/incidents/1/alerts", headers=HEADERS).get_json()
            assert [a["fingerprint"] for a in alerts["alerts"]] == ["f-backend", "f-redis"]
            post(client, body(alert("f-cache", "cache", name="ServiceDegraded")))
            process(app)
            engine = responder_of(app).journal.engine
            with engine.connect() as conn:
                assert conn.execute(select(incidents.c.alerts).where(
                    incidents.c.id == 1)).scalar_one() == "{}"
                rows = conn.execute(select(incident_alerts.c.fingerprint, incident_alerts.c.status)
                                    .where(incident_alerts.c.incident_id == 1)
                                    .order_by(incident_alerts.c.fingerprint)).all()
            assert rows == [("f-backend", "resolved"), ("f-redis", "firing")]
            post(client, body(alert("f-redis", "redis", name="ServiceDown", status="resolved",
                                    starts=datetime(2026, 11, 20, 3, tzinfo=UTC).timestamp())))
            process(app)
            incident = client.get("/api/v1/incidents/1", headers=HEADERS).get_json()
            assert incident["state"] == "resolved"
            assert (incident["alert_count"], incident["firing_count"]) == (2, 0)
            assert incident["root_cause"]["service"] == "redis"
        finally:
            responder_of(app).journal.engine.dispose()

    def test_old_incident_on_either_store(self, make_responder_app: AppFactory) -> None:
        """An incident written the old way (JSON alerts, no rows, no summary) on SQLite or
        PostgreSQL takes the next alert of its fingerprint as a repeat, not a new alert."""
        app = make_responder_app()
        engine = responder_of(app).journal.engine
        held = {"fingerprint": "old-1", "starts_at": T0, "status": "firing",
                "alertname": "ServiceDown", "service": "checkout", "severity": "P3",
                "labels": {"alertname": "ServiceDown", "service": "checkout",
                           "severity": "P3"}, "received_at": T0}
        now = datetime.now(UTC).timestamp()
        with writing(engine) as conn:
            conn.execute(insert(incidents).values(
                state="open", opened_at=now, updated_at=now, root_service="checkout",
                root_kind="service", reasoning="[]", risk="medium",
                signature="checkout:service:ServiceDown", alerts=json.dumps({"old-1": held})))
        post(app.test_client(), body(alert("old-1", name="ServiceDown", starts=T0)))
        process(app)
        with engine.connect() as conn:
            assert conn.execute(select(incidents.c.id)).scalars().all() == [1]
            summary = conn.execute(select(incident_summaries.c.firing,
                                          incident_summaries.c.resolved)).one()
            assert tuple(summary) == (1, 0)
            assert conn.execute(select(incident_alerts.c.fingerprint)).scalars().all() == [
                "old-1"]


def test_store_opens_twice(tmp_path: Path) -> None:
    """The new tables are made once; a second open changes nothing."""
    url = f"sqlite:///{tmp_path / 'responder.db'}"
    create_store(url).dispose()
    engine = create_store(url)
    with engine.connect() as conn:
        assert repository.open_incidents(conn) == []
    engine.dispose()

"""A store written by the previous release opens with this one, upgraded in place.

The fixture (tests/fixtures/store-edf6060, see its README) was written by release edf6060:
its journal lacks the retry columns, its incident keeps its alerts as JSON, and nothing in it
names a site.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from monitoriza.audit.log import AuditLog
from monitoriza.config import Config, config_from_data
from monitoriza.healing import repository
from monitoriza.healing.memory import Outcomes
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import add_missing_columns, add_missing_indexes, create_store, incidents

FIXTURE = Path(__file__).parent / "fixtures" / "store-edf6060"


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    """A private copy: opening the store upgrades it."""
    copy = tmp_path / "store"
    shutil.copytree(FIXTURE, copy)
    return copy


def config_for(root: Path) -> Config:
    return config_from_data({"services": {"redis": {"tier": "critical"},
                                          "backend": {"depends_on": ["redis"]}},
                             "responder": {
        "store_url": f"sqlite:///{root / 'responder.db'}",
        "audit": {"signing_key_file": str(root / "signing.pem"),
                  "checkpoint_file": str(root / "checkpoints.jsonl")}}})


def columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


class TestUpgradeInPlace:
    def test_new_columns_added_once(self, old_store: Path) -> None:
        """Opening adds the journal's retry columns; opening again adds nothing."""
        database = old_store / "responder.db"
        assert "next_attempt_at" not in columns(database, "journal")
        engine = create_store(f"sqlite:///{database}")
        assert {"next_attempt_at", "last_error"} <= columns(database, "journal")
        with engine.begin() as conn:
            assert add_missing_columns(conn) == []
        engine.dispose()

    def test_new_indexes_added_once(self, old_store: Path) -> None:
        """Opening adds the index the recovery cool-down reads by; opening again adds none."""
        database = old_store / "responder.db"
        with sqlite3.connect(database) as conn:
            before = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "incidents_state_resolved_at" not in before
        engine = create_store(f"sqlite:///{database}")
        with sqlite3.connect(database) as conn:
            plan = " ".join(str(row) for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM incidents "
                "WHERE state = 'resolved' AND resolved_at >= 0"))
        assert "incidents_state_resolved_at" in plan
        with engine.begin() as conn:
            assert add_missing_indexes(conn) == []
        engine.dispose()

    def test_chain_still_verifies(self, old_store: Path) -> None:
        """The audit chain and its checkpoints written by the old release still verify."""
        config = config_for(old_store)
        engine = create_store(config.responder.store_url)
        result = AuditLog.from_config(engine, config.responder.audit, read_only=True).verify()
        engine.dispose()
        assert result.ok, result.reason
        assert result.head_seq == 8
        assert result.checkpoints >= 1

    def test_incidents_gain_their_drill(self, old_store: Path) -> None:
        """Opening adds incidents.drill_id (the old open incident is no drill's) and the
        drill tables; the responder's incidents API then answers ``"drill": null``."""
        database = old_store / "responder.db"
        assert "drill_id" not in columns(database, "incidents")
        config = config_for(old_store)
        app = create_app(config, token="t", start_worker=False)
        try:
            assert "drill_id" in columns(database, "incidents")
            assert {"event_id", "expires_at", "ended_at"} <= columns(database, "drill_windows")
            response = app.test_client().get("/api/v1/incidents",
                                             headers={"Authorization": "Bearer t"})
            assert [(found["root_cause"]["service"], found["drill"])
                    for found in response.get_json()["incidents"]] == [("redis", None)]
        finally:
            responder_of(app).journal.engine.dispose()


def _alert(fingerprint: str, **labels: str) -> str:
    return json.dumps({"version": "4", "receiver": "responder", "status": "firing",
                       "groupKey": "{}:{}", "truncatedAlerts": 0, "groupLabels": {},
                       "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
                       "alerts": [{"status": "firing", "fingerprint": fingerprint,
                                   "startsAt": "2026-12-01T10:00:00Z",
                                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                                   "annotations": {},
                                   "labels": {"alertname": "ProbeFailing", "service": "redis",
                                              "severity": "P3", **labels}}]})


class TestSitesInAnOldStore:
    """A store from before sites opens with everything it holds in the default site."""

    def test_rows_belong_to_the_default_site(self, old_store: Path) -> None:
        """Opening adds the site columns and the per-site memory table; the old open
        incident is the default site's (an unlabelled redis alert joins it, aurora's opens
        its own), and the old release's memory counts as the default site's: local there,
        pooled at aurora."""
        database = old_store / "responder.db"
        with sqlite3.connect(database) as conn:
            # What the old release wrote after a successful heal (its own table and key).
            conn.execute("INSERT INTO memory (signature, service, action, successes, "
                         "failures, updated_at) VALUES ('redis:service:ServiceDown', "
                         "'redis', 'restart', 2, 1, 1.0)")
        config = config_for(old_store)
        app = create_app(config, token="t", start_worker=False)
        try:
            assert "site" in columns(database, "incidents")
            assert "site" in columns(database, "actions")
            assert "site" in columns(database, "drill_windows")
            assert {"site", "signature"} <= columns(database, "site_memory")
            client = app.test_client()
            for fingerprint, labels in (("new-unlabelled", {}),
                                        ("new-aurora", {"site": "aurora"})):
                response = client.post("/api/v1/alerts", data=_alert(fingerprint, **labels),
                                       headers={"Authorization": "Bearer t"},
                                       content_type="application/json")
                assert response.status_code == 200, response.get_data(as_text=True)
            state = responder_of(app)
            while state.worker.run_once():
                pass
            with state.journal.engine.connect() as conn:
                rows = conn.execute(select(incidents.c.id, incidents.c.site)
                                    .order_by(incidents.c.id)).all()
                # The old incident took the unlabelled alert, and its site with it.
                assert [(row.id, row.site) for row in rows] == [(1, "default"), (2, "aurora")]
                assert [incident.id for incident in repository.open_incidents(
                    conn, "default", "default")] == [1]
                members = repository.StoredMembers(conn)
                assert list(members.held("new-unlabelled", [1, 2])) == [1]
                assert list(members.held("new-aurora", [1, 2])) == [2]
                local, pooled = repository.outcomes(conn, "redis:service:ServiceDown",
                                                    "redis", "default", "default")
                assert (local, pooled) == ({"restart": Outcomes(2, 1)}, {})
                local, pooled = repository.outcomes(conn, "redis:service:ServiceDown",
                                                    "redis", "aurora", "default")
                assert (local, pooled) == ({}, {"restart": Outcomes(2, 1)})
            memory = client.get("/api/v1/memory",
                                headers={"Authorization": "Bearer t"}).get_json()["memory"]
            assert [(row["site"], row["action"], row["successes"]) for row in memory] == [
                ("default", "restart", 2)]
            assert state.audit.verify().ok
        finally:
            responder_of(app).journal.engine.dispose()

"""A store written by the previous release opens with this one, upgraded in place.

The fixture (tests/fixtures/store-edf6060, see its README) was written by release edf6060:
its journal lacks the retry columns, its incident keeps its alerts as JSON, and nothing in it
names a site.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select

from monitoriza.audit.log import AuditLog
from monitoriza.config import Config, config_from_data
from monitoriza.healing import repository
from monitoriza.healing.memory import Outcomes
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    StoreVersionError,
    add_missing_columns,
    add_missing_indexes,
    create_store,
    incidents,
    migrate,
    schema_migrations,
    schema_version,
)

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


CURRENT_FIXTURE = Path(__file__).parent / "fixtures" / "store-e8fd7ac"


@pytest.fixture
def current_store(tmp_path: Path) -> Path:
    """A private copy of the store written by release e8fd7ac (two sites)."""
    copy = tmp_path / "current"
    shutil.copytree(CURRENT_FIXTURE, copy)
    return copy


def schema_of(engine: Engine) -> dict[str, Any]:
    """Every table's columns (type, nullable) and index names, as the database has them."""
    found = inspect(engine)
    return {table: ({column["name"]: (str(column["type"]), column["nullable"])
                     for column in found.get_columns(table)},
                    sorted(str(index["name"]) for index in found.get_indexes(table)))
            for table in found.get_table_names()}


def applied_versions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(version) for (version,) in conn.execute(
            select(schema_migrations.c.version).order_by(schema_migrations.c.version))]


class TestVersionedMigrations:
    """Stores record their schema version; an old store is migrated step by step, in place."""

    @pytest.mark.parametrize("fixture", [FIXTURE, CURRENT_FIXTURE], ids=["edf6060", "e8fd7ac"])
    def test_migrated_store_has_the_new_schema(self, fixture: Path, tmp_path: Path) -> None:
        """A store of either earlier release, once migrated, has exactly the tables, columns
        and indexes of a store this release creates: a schema change without its migration
        step fails here."""
        copy = tmp_path / "old"
        shutil.copytree(fixture, copy)
        migrated = create_store(f"sqlite:///{copy / 'responder.db'}")
        fresh = create_store(f"sqlite:///{tmp_path / 'fresh.db'}")
        try:
            assert schema_of(migrated) == schema_of(fresh)
            assert applied_versions(migrated) == applied_versions(fresh) == [
                step.version for step in MIGRATIONS]
        finally:
            migrated.dispose()
            fresh.dispose()

    def test_current_release_store_upgrades_in_place(self, current_store: Path) -> None:
        """The store written by release e8fd7ac opens: it is migrated once (opening again
        applies nothing), its chain and checkpoints verify, each site keeps its incident and
        its memory, and the responder processes a new alert of either site into its chain."""
        database = current_store / "responder.db"
        assert "schema_migrations" not in tables_of(database)
        url = f"sqlite:///{database}"
        engine = create_store(url)
        with engine.begin() as conn:
            assert schema_version(conn) == SCHEMA_VERSION
            assert migrate(conn) == []
        engine.dispose()

        config = config_for(current_store)
        app = create_app(config, token="t", start_worker=False)
        try:
            state = responder_of(app)
            before = state.audit.verify()
            assert before.ok, before.reason
            assert (before.head_seq, before.checkpoints) == (18, 3)
            with state.journal.engine.connect() as conn:
                assert [(row.site, row.state) for row in conn.execute(
                    select(incidents.c.site, incidents.c.state).order_by(incidents.c.id))] == [
                    ("aurora", "healing"), ("bosque", "healing")]
                local, pooled = repository.outcomes(conn, "redis:service:ServiceDown",
                                                    "redis", "aurora", "default")
            assert (local, pooled) == ({"restart-redis": Outcomes(1, 0)},
                                       {"restart-redis": Outcomes(1, 0)})
            response = app.test_client().post(
                "/api/v1/alerts", data=_alert("after-upgrade", site="bosque"),
                headers={"Authorization": "Bearer t"}, content_type="application/json")
            assert response.status_code == 200, response.get_data(as_text=True)
            while state.worker.run_once():
                pass
            after = state.audit.verify()
            assert after.ok and after.head_seq > 18
        finally:
            responder_of(app).journal.engine.dispose()

    def test_store_of_a_newer_release_is_refused(self, tmp_path: Path) -> None:
        """A store whose schema is newer than this release's is not opened, and opening it
        changes nothing: the error names both versions."""
        url = f"sqlite:///{tmp_path / 'newer.db'}"
        create_store(url).dispose()
        with sqlite3.connect(tmp_path / "newer.db") as conn:
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                         f"VALUES ({SCHEMA_VERSION + 1}, 'from the future', 0)")
            conn.execute("DROP TABLE audit_pending")
        with pytest.raises(StoreVersionError, match=(
                f"schema version {SCHEMA_VERSION + 1}, newer than this release's "
                f"{SCHEMA_VERSION}")):
            create_store(url)
        assert "audit_pending" not in tables_of(tmp_path / "newer.db")

    def test_replicas_opening_an_old_store_together_migrate_it_once(
            self, current_store: Path) -> None:
        """Four processes' worth of engines opening the old store at once: one migrates,
        the others see the result (each step recorded once, the chain intact)."""
        url = f"sqlite:///{current_store / 'responder.db'}"
        engines: list[Engine] = []
        errors: list[BaseException] = []

        def open_store() -> None:
            try:
                engines.append(create_store(url, timeout=20.0))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        try:
            assert errors == []
            assert applied_versions(engines[0]) == [step.version for step in MIGRATIONS]
        finally:
            for engine in engines:
                engine.dispose()


def tables_of(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        return {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

"""The webhook: authenticated, durable before it acknowledges, idempotent, strict on input."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from monitoriza.responder.state import responder_of
from monitoriza.responder.worker import JournalWorker
from monitoriza.store import alert_state, journal
from tests.support.responder import (
    AppFactory,
    counts,
    fixture_body,
    fixture_json,
    journal_locked,
    post,
)

REPLAYED = ["firing_single.json", "resolved_single.json", "firing_group.json",
            "mixed_group.json", "resolved_group.json", "group_partial_first.json",
            "repeat_0_original.json", "repeat_1_after_repeat_interval.json",
            "repeat_2_annotation_changed.json", "truncated.json", "retry_body.json",
            "ha_dup_am1.json", "ha_dup_am2.json", "ha_resolved_am1.json",
            "ha_stale_firing_am2.json", "ha_resolved_am2.json"]


def alert_keys(names: list[str]) -> set[tuple[str, str, str, str, str]]:
    """The distinct journal keys the captured payloads contain."""
    keys = set()
    for name in names:
        body = fixture_json(name)
        for alert in body["alerts"]:
            keys.add((body["receiver"], body["groupKey"], alert["fingerprint"], alert["status"],
                      alert["startsAt"]))
    return keys


def audit_kinds(app: Any) -> list[str]:
    return [entry.kind for entry in responder_of(app).audit.entries(limit=100000)]


class TestIdempotence:
    """Repeats, retries and HA duplicates become one row and one processing each."""

    def test_fixtures_replayed_three_times(self, make_responder_app: AppFactory) -> None:
        """Every captured payload, three times over: one row and one processing per key."""
        app = make_responder_app()
        state = responder_of(app)
        client = app.test_client()
        for _ in range(3):
            for name in REPLAYED:
                response = post(client, fixture_body(name))
                assert response.status_code == 200, response.json
        expected = alert_keys(REPLAYED)
        rows, seen = counts(state)
        assert rows == len(expected)
        assert seen == 3 * len(REPLAYED)
        while state.worker.run_once():
            pass
        with state.journal.engine.connect() as conn:
            done = conn.execute(select(journal.c.state, journal.c.attempts)).all()
        assert all(row_state == "done" and attempts == 1 for row_state, attempts in done)
        kinds = audit_kinds(app)
        assert kinds.count("alert.received") + kinds.count("alert.stale") == len(expected)
        # Replaying once more after processing changes nothing.
        for name in REPLAYED:
            assert post(client, fixture_body(name)).json["accepted"] == 0
        assert state.worker.run_once() == 0

    def test_answer_counts_duplicates(self, make_responder_app: AppFactory) -> None:
        """The response says how many alerts were new and how many already known."""
        client = make_responder_app().test_client()
        first = post(client, fixture_body("firing_group.json")).json
        again = post(client, fixture_body("firing_group.json")).json
        assert first == {"alerts": 3, "accepted": 3, "duplicates": 0, "truncated_alerts": 0}
        assert again == {"alerts": 3, "accepted": 0, "duplicates": 3, "truncated_alerts": 0}

    def test_truncated_alerts_recorded(self, make_responder_app: AppFactory) -> None:
        """A notification cut by max_alerts is accepted and the cut is counted."""
        app = make_responder_app()
        response = post(app.test_client(), fixture_body("truncated.json"))
        assert response.json["truncated_alerts"] == 2
        metrics = app.test_client().get("/metrics").text
        assert "monitoriza_responder_truncated_alerts_total 2.0" in metrics

    def test_stale_firing_after_resolved_does_not_reopen(self,
                                                         make_responder_app: AppFactory) -> None:
        """The HA peer's late firing (same fingerprint and startsAt) leaves the alert resolved."""
        app = make_responder_app()
        state = responder_of(app)
        client = app.test_client()
        # This responder heard of the alert only from node 1's resolution, then node 2's
        # stale firing arrives: it is a new key, so it is journaled, but it must not reopen.
        assert post(client, fixture_body("ha_resolved_am1.json")).json["accepted"] == 1
        assert post(client, fixture_body("ha_stale_firing_am2.json")).json["accepted"] == 1
        while state.worker.run_once():
            pass
        fingerprint = fixture_json("ha_stale_firing_am2.json")["alerts"][0]["fingerprint"]
        with state.journal.engine.connect() as conn:
            status = conn.execute(select(alert_state.c.status).where(
                alert_state.c.fingerprint == fingerprint)).scalar_one()
            outcomes = conn.execute(select(journal.c.status, journal.c.outcome)
                                    .order_by(journal.c.id)).all()
        assert status == "resolved"
        assert outcomes == [("resolved", "recorded"), ("firing", "stale")]
        assert audit_kinds(app) == ["alert.received", "alert.stale"]

    def test_stale_firing_in_the_captured_order(self, make_responder_app: AppFactory) -> None:
        """In the order the HA pair really sent them, the stale firing is a plain duplicate."""
        app = make_responder_app()
        client = app.test_client()
        for name in ["ha_dup_am1.json", "ha_dup_am2.json", "ha_resolved_am1.json"]:
            post(client, fixture_body(name))
        assert post(client, fixture_body("ha_stale_firing_am2.json")).json["accepted"] == 0


class TestBadInput:
    """Each bad request gets its documented status, as JSON, and writes nothing."""

    @pytest.mark.parametrize(("token", "body", "content_type", "status"), [
        (None, "firing_single.json", "application/json", 401),
        ("wrong-token", "firing_single.json", "application/json", 401),
        ("test-token-0123456789", "firing_single.json", "text/plain", 415),
        ("test-token-0123456789", b"{not json", "application/json", 400),
        ("test-token-0123456789", b"[" * 100000 + b"]" * 100000, "application/json", 400),
        ("test-token-0123456789", b'{"version": "3"}', "application/json", 400),
        ("test-token-0123456789", b"\xff\xfe", "application/json", 400),
    ])
    def test_rejected(self, make_responder_app: AppFactory, token: str | None,
                      body: bytes | str, content_type: str, status: int) -> None:
        """Missing or wrong token, wrong type, not JSON, not v4: rejected, nothing written."""
        app = make_responder_app()
        payload = fixture_body(body) if isinstance(body, str) else body
        response = post(app.test_client(), payload, token=token, content_type=content_type)
        assert response.status_code == status
        assert response.is_json and response.json["error"]
        assert counts(responder_of(app)) == (0, 0)

    def test_wrong_version_names_the_field(self, make_responder_app: AppFactory) -> None:
        """The 400 says which field is wrong."""
        body = fixture_json("firing_single.json") | {"version": "3"}
        response = post(make_responder_app().test_client(), json.dumps(body))
        assert response.status_code == 400
        assert any(detail.startswith("version:") for detail in response.json["details"])

    def test_oversize(self, make_responder_app: AppFactory) -> None:
        """A body over max_body_bytes gets 413 and writes nothing."""
        app = make_responder_app(max_body_bytes=4096)
        body = fixture_json("firing_single.json")
        body["alerts"][0]["annotations"]["description"] = "x" * 5000
        response = post(app.test_client(), json.dumps(body))
        assert response.status_code == 413
        assert response.json["error"] == "Request Entity Too Large"
        assert counts(responder_of(app)) == (0, 0)

    def test_unknown_fields_ignored(self, make_responder_app: AppFactory) -> None:
        """Fields a later Alertmanager may add do not make the payload invalid."""
        body = fixture_json("firing_single.json") | {"someNewField": {"x": 1}}
        body["alerts"][0]["newAlertField"] = [1, 2]
        assert post(make_responder_app().test_client(), json.dumps(body)).status_code == 200


class TestDurability:
    """Nothing acknowledged is lost; nothing is processed twice."""

    def test_503_while_the_journal_is_locked(self, make_responder_app: AppFactory) -> None:
        """With the store locked by another writer, the webhook answers 503 and writes nothing;
        once the lock is gone the same notification is accepted."""
        app = make_responder_app(store_timeout="200ms")
        state = responder_of(app)
        with journal_locked(state.journal.engine):
            started = time.monotonic()
            response = post(app.test_client(), fixture_body("firing_single.json"))
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
            assert time.monotonic() - started < 3.0  # store_timeout, not forever
        assert counts(state) == (0, 0)
        assert post(app.test_client(), fixture_body("firing_single.json")).json["accepted"] == 1

    def test_concurrent_workers_process_each_row_once(self, make_responder_app: AppFactory
                                                      ) -> None:
        """Four workers racing over the same journal process every row exactly once."""
        app = make_responder_app()
        state = responder_of(app)
        client = app.test_client()
        for name in REPLAYED:
            post(client, fixture_body(name))
        workers = [JournalWorker(state.journal, state.worker.processor, lease=30, batch=2,
                                 after_batch=state.audit.integrate)
                   for _ in range(4)]
        processed = [0] * len(workers)

        def drain(index: int) -> None:
            while (done := workers[index].run_once()):
                processed[index] += done

        threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(workers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(processed) == len(alert_keys(REPLAYED))
        received = [kind for kind in audit_kinds(app) if kind.startswith("alert.")]
        assert len(received) == len(alert_keys(REPLAYED))
        assert responder_of(app).audit.verify().ok

    def test_expired_lease_is_taken_over(self, make_responder_app: AppFactory) -> None:
        """A worker that claimed rows and died: another takes them after the lease, once."""
        app = make_responder_app()
        state = responder_of(app)
        post(app.test_client(), fixture_body("firing_group.json"))
        crashed = JournalWorker(state.journal, state.worker.processor, lease=0.2)
        claimed = state.journal.claim(crashed.owner, lease=0.2)
        assert len(claimed) == 3
        survivor = JournalWorker(state.journal, state.worker.processor, lease=30,
                                 after_batch=state.audit.integrate)
        assert survivor.run_once() == 0  # still leased
        threading.Event().wait(0.3)
        assert survivor.run_once() == 3
        # The crashed worker comes back and tries to finish: its lease is gone, nothing runs.
        with state.journal.engine.begin() as conn:
            assert not state.journal.complete(conn, claimed[0], crashed.owner, "late")
        assert audit_kinds(app).count("alert.received") == 3


class TestOperations:
    """Health, readiness, metrics and the OpenAPI document."""

    def test_health_and_readiness(self, make_responder_app: AppFactory) -> None:
        """/healthz and /readyz answer 200 with a writable store."""
        client = make_responder_app().test_client()
        assert client.get("/healthz").json == {"status": "ok"}
        assert client.get("/readyz").json == {"status": "ready"}

    def test_metrics(self, make_responder_app: AppFactory) -> None:
        """Requests by status, journal depth, duplicates and the audit length are exported."""
        app = make_responder_app()
        client = app.test_client()
        post(client, fixture_body("firing_group.json"))
        post(client, fixture_body("firing_group.json"))
        post(client, b"{}", token="nope")
        text = client.get("/metrics").text
        assert 'monitoriza_responder_requests_total{endpoint="/api/v1/alerts",status="200"} 2.0' \
            in text
        assert 'monitoriza_responder_requests_total{endpoint="/api/v1/alerts",status="401"} 1.0' \
            in text
        assert "monitoriza_responder_journal_depth 3.0" in text
        assert "monitoriza_responder_duplicate_alerts_total 3.0" in text
        assert "monitoriza_audit_entries 0.0" in text
        responder_of(app).worker.run_once()
        responder_of(app).verifier.verify()
        text = client.get("/metrics").text
        assert "monitoriza_responder_journal_depth 0.0" in text
        # Three alerts received, plus the incident they opened and updated.
        assert f"monitoriza_audit_entries {float(len(audit_kinds(app)))}" in text
        assert audit_kinds(app).count("alert.received") == 3
        assert "monitoriza_audit_last_verify_success 1.0" in text

    def test_unknown_route_is_json(self, make_responder_app: AppFactory) -> None:
        """Even a 404 or 405 is a JSON error."""
        client = make_responder_app().test_client()
        assert client.get("/nope").get_json()["error"] == "Not Found"
        assert client.get("/api/v1/alerts").status_code == 405
        assert client.get("/api/v1/alerts").is_json

    def test_audit_api(self, make_responder_app: AppFactory) -> None:
        """GET /api/v1/audit pages through the chain, with the token."""
        app = make_responder_app()
        client = app.test_client()
        post(client, fixture_body("firing_group.json"))
        responder_of(app).worker.run_once()
        assert client.get("/api/v1/audit").status_code == 401
        page = client.get("/api/v1/audit?since=1&limit=1",
                          headers={"Authorization": "Bearer test-token-0123456789"}).get_json()
        assert [entry["seq"] for entry in page["entries"]] == [2]
        assert page["head"]["seq"] == len(audit_kinds(app))
        assert page["next_since"] == 2
        bad = client.get("/api/v1/audit?limit=0",
                         headers={"Authorization": "Bearer test-token-0123456789"})
        assert bad.status_code == 400


class TestLongValues:
    """Values longer than the store's nominal column sizes are kept, on either backend."""

    def test_long_receiver_and_service(self, make_responder_app: AppFactory) -> None:
        """A 300-character receiver and service label (SQLite never enforced the columns'
        255): accepted with 200, processed, and the incident names the service in full."""
        app = make_responder_app()
        state = responder_of(app)
        body = fixture_json("firing_single.json")
        body["receiver"] = "r" * 300
        body["alerts"][0]["labels"]["service"] = "s" * 300
        response = post(app.test_client(), json.dumps(body))
        assert response.status_code == 200, response.json
        assert response.json["accepted"] == 1
        assert state.worker.run_once() == 1
        with state.journal.engine.connect() as conn:
            assert conn.execute(select(journal.c.receiver, journal.c.outcome)).one() == (
                "r" * 300, "recorded")
        incident = app.test_client().get("/api/v1/incidents/1", headers={
            "Authorization": "Bearer test-token-0123456789"}).get_json()
        assert incident["root_cause"]["service"] == "s" * 300
        assert audit_kinds(app)[:2] == ["alert.received", "incident.opened"]

    def test_longest_receiver_and_group_key(self, make_responder_app: AppFactory) -> None:
        """receiver and groupKey at their 4096-character limit (with little to compress):
        accepted once, then counted as a duplicate, like any other notification."""
        app = make_responder_app()
        body = fixture_json("firing_single.json")
        body["receiver"] = "".join(f"{n:04x}" for n in range(1024))
        body["groupKey"] = "".join(f"{n * 7919 % 65536:04x}" for n in range(1024))
        client = app.test_client()
        first = post(client, json.dumps(body))
        assert first.status_code == 200, first.json
        assert (first.json["accepted"], post(client, json.dumps(body)).json["duplicates"]) == (
            1, 1)

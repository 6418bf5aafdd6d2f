"""The recovery cool-down through the responder's real journal, store, audit and healer: an
after-effect of a healed outage stays in its incident and is never healed a second time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from monitoriza.config import config_from_data
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import actions, incidents
from tests.support.responder import TOKEN, post, process

COOLDOWN = 2.0


def notification(alertname: str, severity: str, fingerprint: str, started: datetime, *,
                 status: str = "firing") -> str:
    alert = {"status": status,
             "labels": {"alertname": alertname, "service": "web", "severity": severity},
             "annotations": {}, "startsAt": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}
    return json.dumps({"version": "4", "receiver": "responder", "status": status,
                       "alerts": [alert], "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": "",
                       "groupKey": f'{{}}:{{fingerprint="{fingerprint}"}}',
                       "truncatedAlerts": 0})


@pytest.fixture
def app(tmp_path: Path, store_url: str, http_target: Any) -> Iterator[Flask]:
    """A responder whose ``web`` heals any ServiceDown through an HTTP call, with a 2 s
    recovery cool-down and a backoff short enough not to be the reason for a refusal."""
    url = http_target.respond("/admin/fix", status=200)
    config = config_from_data({
        "services": {"web": {"healing": [{"name": "fix",
                                          "match": {"alertname": ["ServiceDown"]},
                                          "steps": [{"action": "http", "url": url}]}]}},
        "responder": {
            "store_url": store_url, "token_file": str(tmp_path / "token"),
            "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                      "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
            "healing": {"kill_switch_file": str(tmp_path / "kill-switch"),
                        "allowed_urls": [http_target.url("/admin/")],
                        "recovery_cooldown": f"{COOLDOWN:g}s",
                        "budget": {"backoff_initial": "1ms", "backoff_max": "1ms"}}}})
    application = create_app(config, token=TOKEN, start_worker=False)
    yield application
    responder_of(application).journal.engine.dispose()



def send(app: Flask, body: str) -> None:
    post(app.test_client(), body)
    process(app)


def incident_states(app: Flask) -> list[str]:
    with responder_of(app).journal.engine.connect() as conn:
        return list(conn.execute(select(incidents.c.state).order_by(incidents.c.id)).scalars())


def action_rows(app: Flask) -> list[tuple[int, str]]:
    with responder_of(app).journal.engine.connect() as conn:
        return [(row.incident_id, row.outcome) for row in conn.execute(
            select(actions.c.incident_id, actions.c.outcome).order_by(actions.c.id))]


def audit_of(app: Flask) -> list[tuple[str, Mapping[str, Any]]]:
    return [(entry.kind, entry.data) for entry in responder_of(app).audit.entries(limit=10000)]


class TestRecoveryCooldown:
    """Healed, resolved, then the service flaps: the flap is an after-effect, not a new
    outage; once the cool-down is over, a new outage is healed again."""

    def test_after_effect_is_kept_and_not_healed(self, app: Flask, http_target: Any) -> None:
        """A ServiceDown re-firing within the cool-down joins the resolved incident, which
        stays resolved, and runs nothing; after the cool-down one opens a new incident and
        is healed."""
        first = datetime.now(UTC)
        send(app, notification("ServiceDown", "P3", "down", first))
        assert action_rows(app) == [(1, "success")]
        send(app, notification("ServiceDown", "P3", "down", first, status="resolved"))
        assert incident_states(app) == ["resolved"]

        flap = datetime.now(UTC)
        send(app, notification("ServiceDown", "P4", "flap", flap))
        assert incident_states(app) == ["resolved"]
        assert action_rows(app) == [(1, "success")]
        assert http_target.hits("/admin/fix") == 1
        entries = audit_of(app)
        assert ("incident.after_effect", "flap") in [
            (kind, data.get("alert")) for kind, data in entries]
        skipped = [data for kind, data in entries if kind == "decision.skipped"
                   and data.get("check") == "recovery_cooldown"]
        assert [data["incident"] for data in skipped] == [1]
        send(app, notification("ServiceDown", "P4", "flap", flap, status="resolved"))
        assert incident_states(app) == ["resolved"]

        time.sleep(COOLDOWN + 0.2)
        send(app, notification("ServiceDown", "P4", "again", datetime.now(UTC)))
        assert incident_states(app) == ["resolved", "healing"]
        assert action_rows(app) == [(1, "success"), (2, "success")]

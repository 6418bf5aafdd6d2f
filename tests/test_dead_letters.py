"""Nothing acknowledged is ever stuck: strict intake, bounded retries, dead letters, replay.

Processing faults are injected by :class:`Poisoner`, a processor that raises for the
fingerprints it is told to and otherwise runs the real one; the worker runs on a fake clock
(``clock``), so backoffs are exact and no test sleeps through one.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError, OperationalError

from monitoriza.cli import main
from monitoriza.healing.correlation import UNNAMED_ALERT
from monitoriza.pipeline import JournalRow, Processor
from monitoriza.responder.app import create_app
from monitoriza.responder.journal import RetryPolicy
from monitoriza.responder.state import Responder, responder_of
from monitoriza.responder.webhook import WebhookError, parse_notification, parse_rfc3339
from monitoriza.responder.worker import store_unavailable
from monitoriza.store import incident_alerts, journal
from tests.support.responder import TOKEN, counts, fixture_json, post, responder_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_800_000_000.0


def notification(alerts: list[dict[str, Any]], group: str = "{}:{alertname=\"X\"}",
                 receiver: str = "responder") -> dict[str, Any]:
    return {"version": "4", "receiver": receiver, "status": "firing", "groupKey": group,
            "alerts": alerts, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0}


def alert(fingerprint: str, **labels: str) -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": "DiskFull", **labels},
            "annotations": {}, "startsAt": "2026-11-24T21:09:11Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}


class Poisoner:
    """The real processor, except that alerts whose fingerprint is in ``poison`` raise
    ``RuntimeError`` (the injected fault). Removing a fingerprint is the fix."""

    def __init__(self) -> None:
        self.poison: set[str] = set()
        self.real: Processor | None = None

    def __call__(self, conn: Connection, row: JournalRow) -> str:
        if row.fingerprint in self.poison:
            raise RuntimeError(f"injected fault for {row.fingerprint}")
        assert self.real is not None
        return self.real(conn, row)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


Poisoned = tuple[Flask, Responder, Poisoner, Clock]


@pytest.fixture
def poisoned(tmp_path: Path, store_url: str) -> Iterator[Callable[..., Poisoned]]:
    """A responder app whose processor can be poisoned and whose worker runs on a fake clock;
    retries: 3 attempts, 1 s backoff doubling up to 3 s."""
    apps: list[Flask] = []

    def make(**responder: Any) -> Poisoned:
        settings = {"max_attempts": 3, "retry_backoff": "1s", "retry_backoff_max": "3s",
                    **responder}
        poisoner = Poisoner()
        config = responder_config(tmp_path, store_url, **settings)
        app = create_app(config, token=TOKEN, start_worker=False)
        apps.append(app)
        state = responder_of(app)
        # The app's own processor, wrapped: the fault is injected in front of the real one.
        poisoner.real = state.worker.processor
        state.worker.processor = poisoner
        clock = Clock()
        state.worker.clock = clock
        return app, state, poisoner, clock

    yield make
    for app in apps:
        responder_of(app).journal.engine.dispose()


def journal_rows(state: Responder) -> dict[str, Any]:
    """fingerprint -> journal row."""
    with state.journal.engine.connect() as conn:
        return {row.fingerprint: row for row in conn.execute(select(journal))}


def audit_of(state: Responder, kind: str) -> list[dict[str, Any]]:
    return [dict(entry.data) for entry in state.audit.entries(limit=100000) if entry.kind == kind]


def metric(app: Flask, line_start: str) -> float:
    for line in app.test_client().get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in /metrics")


class TestBackoff:
    """The backoff doubles from its base to its cap, without jitter."""

    def test_arithmetic(self) -> None:
        """1, 2, 4, 8 ... seconds after the 1st, 2nd, 3rd, 4th try; then the cap."""
        policy = RetryPolicy(max_attempts=10, backoff=1.0, backoff_max=300.0)
        assert [policy.delay(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                            300]
        assert RetryPolicy(backoff=0.25, backoff_max=1.0).delay(2) == 0.5
        assert RetryPolicy(backoff=5.0, backoff_max=2.0).delay(1) == 2.0  # the cap wins
        assert RetryPolicy().delay(10_000) == 300.0  # no overflow for absurd counts

    def test_settings_and_defaults(self, tmp_path: Path) -> None:
        """responder.max_attempts, retry_backoff and retry_backoff_max: 5, 1s and 5m."""
        defaults = responder_config(tmp_path).responder
        assert (defaults.max_attempts, defaults.retry_backoff,
                defaults.retry_backoff_max) == (5, 1.0, 300.0)
        custom = responder_config(tmp_path, max_attempts=2, retry_backoff="250ms",
                                  retry_backoff_max="1m").responder
        assert (custom.max_attempts, custom.retry_backoff, custom.retry_backoff_max) == (
            2, 0.25, 60.0)


VALID_TIMES = [
    ("2026-11-24T21:09:11Z", datetime(2026, 11, 24, 21, 9, 11, tzinfo=UTC)),
    ("2026-11-24T21:13:44.826734434Z", datetime(2026, 11, 24, 21, 13, 44, 826734, tzinfo=UTC)),
    ("2026-11-24T21:13:44.5+05:30", datetime(2026, 11, 24, 21, 13, 44, 500000,
                                            tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    ("2026-11-24T21:13:44-03:00", datetime(2026, 11, 25, 0, 13, 44, tzinfo=UTC)),
    ("2024-02-29T00:00:00-00:00", datetime(2024, 2, 29, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("9999-12-31T23:59:59.999999999+23:59", datetime(9999, 12, 31, 23, 59, 59, 999999,
                                                     tzinfo=timezone(timedelta(hours=23,
                                                                               minutes=59)))),
]
INVALID_TIMES = [
    "2026-11-24",                 # a date alone
    "2026-11-24T21:09:11",        # no offset
    "2026-W48-2",                 # week date
    "2026-W48-2T21:09:11Z",
    "2026-328T21:09:11Z",         # ordinal date
    "20261124T210911Z",           # basic format
    "2026-11-24 21:09:11Z",       # space
    "2026-11-24t21:09:11z",       # lower case (Alertmanager writes upper case)
    "2026-11-24T21:09Z",          # no seconds
    "2026-11-24T21:09:11.Z",      # empty fraction
    "2026-11-24T21:09:11+0530",   # offset without colon
    "2026-11-24T21:09:11+05",
    "2026-11-24T24:00:00Z",       # hour out of range
    "2026-11-24T23:59:60Z",       # leap second
    "2026-02-30T00:00:00Z",       # no such day
    "2026-13-01T00:00:00Z",
    "0000-01-01T00:00:00Z",       # year 0
    "2026-11-24T21:09:11+24:00",  # offset out of range
    "\uff12\uff10\uff12\uff16-11-24T21:09:11Z",  # full-width digits
    "yesterday",
    " 2026-11-24T21:09:11Z",
]


class TestStrictTimes:
    """startsAt and endsAt are strict RFC 3339 date-times, checked at intake."""

    @pytest.mark.parametrize(("text", "expected"), VALID_TIMES, ids=[t for t, _ in VALID_TIMES])
    def test_valid(self, text: str, expected: datetime) -> None:
        """Z or a numeric offset, any number of fractional digits (cut to microseconds)."""
        assert parse_rfc3339(text) == expected
        assert datetime.fromisoformat(text) == expected  # what processing will parse

    @pytest.mark.parametrize("text", INVALID_TIMES)
    def test_invalid(self, text: str) -> None:
        """Dates, local times, week and ordinal dates, other formats: all refused."""
        with pytest.raises(ValueError, match="is not an RFC 3339 date-time"):
            parse_rfc3339(text)

    @pytest.mark.parametrize("text", ["2026-11-24", "2026-W48-2", "2026-11-24T21:09:11"])
    def test_intake_refuses_bad_starts_and_ends(self, text: str) -> None:
        """400 naming alerts.N.startsAt or alerts.N.endsAt."""
        body = notification([alert("a1"), alert("a2")])
        body["alerts"][1]["startsAt"] = text
        body["alerts"][0]["endsAt"] = text
        with pytest.raises(WebhookError) as raised:
            parse_notification(body)
        assert raised.value.details == ["alerts.0.endsAt: not an RFC 3339 time",
                                        "alerts.1.startsAt: not an RFC 3339 time"]

    @pytest.mark.parametrize("ends", ["", "0001-01-01T00:00:00Z", "2026-11-24T22:00:00.1Z"])
    def test_ends_may_be_unset(self, ends: str) -> None:
        """endsAt may be empty or Go's zero time, as Alertmanager sends for firing alerts."""
        body = notification([alert("a1")])
        body["alerts"][0]["endsAt"] = ends
        assert parse_notification(body).alerts[0].endsAt == ends

    def test_captured_payloads_pass(self) -> None:
        """Every real Alertmanager payload in tests/fixtures/alertmanager/ is accepted."""
        names = sorted(path.name for path in (Path(__file__).parent / "fixtures"
                                              / "alertmanager").glob("*.json")
                       if path.name != "headers.json")
        assert len(names) >= 16
        for name in names:
            parse_notification(fixture_json(name))


class TestUnstorableText:
    """Strings the store or the audit log cannot hold are refused at intake, by path."""

    @pytest.mark.parametrize(("change", "detail"), [
        (lambda b: b["alerts"][0]["labels"].update({"\ud800": "x"}),
         "alerts.0.labels: key '\\ud800' is not valid UTF-8"),
        (lambda b: b["alerts"][0]["labels"].update({"service": "a\udfffb"}),
         "alerts.0.labels.service: not valid UTF-8 (a lone surrogate)"),
        (lambda b: b["alerts"][0]["annotations"].update({"\udc80x": "y"}),
         "alerts.0.annotations: key '\\udc80x' is not valid UTF-8"),
        (lambda b: b.update(receiver="r\ud800"), "receiver: not valid UTF-8 (a lone surrogate)"),
        (lambda b: b.update(groupKey="\ud83d"), "groupKey: not valid UTF-8 (a lone surrogate)"),
        (lambda b: b["alerts"][0].update(fingerprint="f\ud800"),
         "alerts.0.fingerprint: not valid UTF-8 (a lone surrogate)"),
        (lambda b: b["groupLabels"].update({"\ud800": "x"}),
         "groupLabels: key '\\ud800' is not valid UTF-8"),
        (lambda b: b["alerts"][0]["labels"].update({"service": "a\x00b"}),
         "alerts.0.labels.service: not storable (a NUL character) at character 1"),
        (lambda b: b.update(groupKey="g\x00"),
         "groupKey: not storable (a NUL character) at character 1"),
    ], ids=["label-key", "label-value", "annotation-key", "receiver", "group-key",
            "fingerprint", "group-labels", "nul-value", "nul-group-key"])
    def test_refused_with_its_path(self, make_responder_app: Callable[..., Flask],
                                   change: Callable[[dict[str, Any]], None],
                                   detail: str) -> None:
        """400 whose details name the field, in an ASCII-safe message; nothing written."""
        app = make_responder_app()
        body = notification([alert("a1", service="backend")])
        change(body)
        # As Alertmanager would send it: \\ud800 escapes, which decode to lone surrogates.
        response = post(app.test_client(), json.dumps(body))
        assert response.status_code == 400, response.text
        assert detail in response.json["details"]
        response.data.decode("utf-8")  # the answer itself is valid UTF-8
        assert counts(responder_of(app)) == (0, 0)

    def test_valid_non_ascii_is_accepted(self, make_responder_app: Callable[..., Flask]
                                         ) -> None:
        """Real non-ASCII text (accents, emoji as surrogate pairs in JSON) is fine."""
        app = make_responder_app()
        body = notification([alert("a1", service="portaria", condominio="São Paulo 🏢")])
        assert post(app.test_client(), json.dumps(body)).status_code == 200
        assert responder_of(app).worker.run_once() == 1


class TestUnnamed:
    """Alerts without an alertname are valid and processed under "(unnamed)"."""

    def test_processed_under_the_defined_name(self, make_responder_app: Callable[..., Flask]
                                              ) -> None:
        """Accepted, processed once, and correlated as "(unnamed)"."""
        app = make_responder_app()
        state = responder_of(app)
        unnamed = alert("u1", service="backend")
        del unnamed["labels"]["alertname"]
        assert post(app.test_client(), json.dumps(notification([unnamed]))).status_code == 200
        assert state.worker.run_once() == 1
        with state.journal.engine.connect() as conn:
            names = conn.execute(select(incident_alerts.c.alertname)).scalars().all()
        assert names == [UNNAMED_ALERT]
        assert state.journal.dead_letter_count() == 0


class TestRetries:
    """A failing row backs off, never delays the others, and is dead-lettered after N tries."""

    def test_claim_skips_rows_backing_off(self, poisoned: Callable[..., Poisoned]) -> None:
        """A failed row is not claimed again before next_attempt_at; the others are."""
        app, state, poisoner, clock = poisoned()
        poisoner.poison.add("bad")
        post(app.test_client(), json.dumps(notification([alert("bad"), alert("ok1")])))
        assert state.worker.run_once() == 1  # ok1; bad failed alone after the batch failed
        rows = journal_rows(state)
        assert rows["bad"].state == "pending"
        assert rows["bad"].next_attempt_at == T0 + 1.0
        assert rows["bad"].last_error == "RuntimeError: injected fault for bad"
        assert rows["bad"].lease_owner is None
        post(app.test_client(), json.dumps(notification([alert("ok2")])))
        clock.now = T0 + 0.999
        assert [row.fingerprint for row in state.journal.claim("probe", 30, now=clock.now)] == [
            "ok2"]
        assert state.journal.claim("probe", 30, now=T0 + 1.0)[0].fingerprint == "bad"

    def test_dead_letter_after_max_attempts(self, poisoned: Callable[..., Poisoned],
                                            caplog: pytest.LogCaptureFixture) -> None:
        """Three tries 1 s then 2 s apart, then state dead with its reason: an audit entry,
        the counter and the gauge; the journal depth no longer counts it; one log line per
        failure and no traceback."""
        app, state, poisoner, clock = poisoned()
        poisoner.poison.add("bad")
        post(app.test_client(), json.dumps(notification([alert("bad")])))
        caplog.set_level(logging.INFO, logger="monitoriza.responder.worker")
        for wait in (0.0, 1.0, 2.0):
            clock.now += wait
            assert state.worker.run_once() == 0
        row = journal_rows(state)["bad"]
        assert (row.state, row.attempts, row.processed_at) == ("dead", 3, T0 + 3.0)
        assert row.last_error == "RuntimeError: injected fault for bad"
        clock.now += 3600
        assert state.journal.claim("probe", 30, now=clock.now) == []  # dead stays dead
        [entry] = audit_of(state, "journal.dead_letter")
        assert entry == {"journal_id": row.id, "receiver": "responder",
                         "group_key": row.group_key, "fingerprint": "bad",
                         "status": "firing", "starts_at": "2026-11-24T21:09:11Z",
                         "reason": "RuntimeError",
                         "error": "RuntimeError: injected fault for bad", "attempts": 3}
        assert metric(app, 'monitoriza_responder_journal_dead_letters_total'
                           '{reason="RuntimeError"}') == 1.0
        assert metric(app, "monitoriza_responder_journal_dead_letters") == 1.0
        assert metric(app, "monitoriza_responder_journal_depth") == 0.0
        assert metric(app, "monitoriza_responder_journal_oldest_pending_age_seconds") == 0.0
        records = [r for r in caplog.records if r.name == "monitoriza.responder.worker"]
        assert [r.levelname for r in records] == ["WARNING", "WARNING", "ERROR"]
        assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
        assert "dead-lettered after 3 attempts" in records[-1].getMessage()
        assert app.test_client().get("/readyz").status_code == 200  # dead letters: still ready

    def test_one_poison_row_in_a_batch(self, poisoned: Callable[..., Poisoned]) -> None:
        """A batch with a poison row: every other row is processed in the same round."""
        app, state, poisoner, _ = poisoned()
        poisoner.poison.add("f05")
        post(app.test_client(), json.dumps(notification(
            [alert(f"f{i:02d}", instance=str(i)) for i in range(10)])))
        assert state.worker.run_once() == 9
        assert {fp for fp, row in journal_rows(state).items() if row.state != "done"} == {"f05"}

    def test_a_poison_storm_does_not_hold_up_later_alerts(
            self, poisoned: Callable[..., Poisoned]) -> None:
        """Claims take half a batch from the oldest rows and half from the newest: 60 poison
        alerts do not delay 3 alerts posted after them."""
        app, state, poisoner, _ = poisoned()
        storm = [alert(f"p{i:03d}", instance=str(i)) for i in range(60)]
        poisoner.poison.update(item["fingerprint"] for item in storm)
        client = app.test_client()
        post(client, json.dumps(notification(storm, group="{}:{storm}")))
        post(client, json.dumps(notification([alert(f"v{i}") for i in range(3)],
                                             group="{}:{calm}")))
        assert state.worker.run_once() == 3  # the first batch of 20 holds all three
        rows = journal_rows(state)
        assert all(rows[f"v{i}"].state == "done" for i in range(3))
        assert sum(row.state == "pending" and row.attempts == 1 for row in rows.values()) == 17

    def test_expired_leases_count_as_attempts(self, poisoned: Callable[..., Poisoned]) -> None:
        """A row whose worker dies every time it takes it (lease expired max_attempts times)
        is dead-lettered untried on the next claim."""
        app, state, _, clock = poisoned()
        post(app.test_client(), json.dumps(notification([alert("crash")])))
        for _ in range(3):  # three workers claim it and die
            assert len(state.journal.claim("doomed", 1.0, now=clock.now)) == 1
            clock.now += 1.5
        assert state.worker.run_once() == 0
        row = journal_rows(state)["crash"]
        assert (row.state, row.attempts) == ("dead", 4)
        assert row.last_error.startswith("LeaseExpiredError: claimed 4 times")
        assert audit_of(state, "alert.received") == []

    def test_store_unavailable_is_not_the_rows_fault(self) -> None:
        """Locks and lost connections are retried without counting; data errors count."""
        assert store_unavailable(OperationalError("SELECT 1", {}, Exception("locked")))
        assert not store_unavailable(IntegrityError("INSERT", {}, Exception("trigger")))
        assert not store_unavailable(RuntimeError("bug"))


def dead_letter(app: Flask, state: Responder, poisoner: Poisoner, clock: Clock,
                fingerprints: list[str]) -> None:
    """Post ``fingerprints`` as poison and run the worker until all are dead."""
    poisoner.poison.update(fingerprints)
    post(app.test_client(), json.dumps(notification([alert(fp, instance=fp)
                                                     for fp in fingerprints])))
    for _ in range(3):
        state.worker.run_once()
        clock.now += 10
    assert state.journal.dead_letter_count() == len(fingerprints)


class TestApi:
    """GET /api/v1/dead-letters and POST /api/v1/dead-letters/replay."""

    def test_list_pages_with_the_token(self, poisoned: Callable[..., Poisoned]) -> None:
        """401 without the token; pages by journal id with next_after; each item complete."""
        app, state, poisoner, clock = poisoned()
        dead_letter(app, state, poisoner, clock, ["d1", "d2", "d3"])
        client = app.test_client()
        assert client.get("/api/v1/dead-letters").status_code == 401
        first = client.get("/api/v1/dead-letters?limit=2", headers=AUTH).get_json()
        assert [item["fingerprint"] for item in first["dead_letters"]] == ["d1", "d2"]
        assert first["total"] == 3
        second = client.get(f"/api/v1/dead-letters?limit=2&after={first['next_after']}",
                            headers=AUTH).get_json()
        assert [item["fingerprint"] for item in second["dead_letters"]] == ["d3"]
        assert second["next_after"] is None
        item = first["dead_letters"][0]
        assert set(item) == {"id", "receiver", "group_key", "fingerprint", "status",
                             "starts_at", "received_at", "attempts", "last_error",
                             "dead_lettered_at", "labels"}
        assert item["labels"] == {"alertname": "DiskFull", "instance": "d1"}
        assert item["attempts"] == 3 and item["last_error"].startswith("RuntimeError")
        for query in ("limit=0", "limit=1001", "limit=x", "after=-1", "after=1e3",
                      "after=99999999999999999999"):
            bad = client.get(f"/api/v1/dead-letters?{query}", headers=AUTH)
            assert bad.status_code == 400 and bad.is_json, query

    def test_replay_processes_exactly_once(self, poisoned: Callable[..., Poisoned]) -> None:
        """After the fix, a replayed row is processed once; replaying again does nothing."""
        app, state, poisoner, clock = poisoned()
        dead_letter(app, state, poisoner, clock, ["d1", "d2"])
        poisoner.poison.clear()  # the fix
        client = app.test_client()
        d1 = journal_rows(state)["d1"].id
        answer = client.post("/api/v1/dead-letters/replay", json={"ids": [d1, d1, 999999]},
                             headers=AUTH)
        assert (answer.status_code, answer.get_json()) == (200, {"replayed": 1})
        row = journal_rows(state)["d1"]
        assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 0, None)
        assert metric(app, "monitoriza_responder_journal_dead_letters") == 1.0
        assert state.worker.run_once() == 1
        assert client.post("/api/v1/dead-letters/replay", json={"ids": [d1]},
                           headers=AUTH).get_json() == {"replayed": 0}
        assert client.post("/api/v1/dead-letters/replay", json={"all": True},
                           headers=AUTH).get_json() == {"replayed": 1}
        assert state.worker.run_once() == 1
        state.worker.run_once()
        received = [entry["fingerprint"] for entry in audit_of(state, "alert.received")]
        assert sorted(received) == ["d1", "d2"]
        assert [(e["ids"], e["by"], e["requested"]) for e in audit_of(state,
                                                                      "journal.replayed")] == [
            ([d1], "api", "ids"), ([journal_rows(state)["d2"].id], "api", "all")]
        assert {row.state for row in journal_rows(state).values()} == {"done"}
        assert state.audit.verify().ok

    @pytest.mark.parametrize("body", [
        None, [], {}, {"ids": []}, {"ids": [0]}, {"ids": [True]}, {"ids": ["1"]},
        {"ids": [2**63]}, {"all": False}, {"all": True, "ids": [1]}, {"ids": 1},
        {"ids": list(range(1, 10_002))},
    ])
    def test_replay_refuses_bad_bodies(self, poisoned: Callable[..., Poisoned],
                                       body: Any) -> None:
        """Anything but {"ids": [1..10000 positive ids]} or {"all": true}: 400, no change."""
        app, state, poisoner, clock = poisoned()
        dead_letter(app, state, poisoner, clock, ["d1"])
        client = app.test_client()
        assert client.post("/api/v1/dead-letters/replay", json={"all": True}).status_code == 401
        answer = client.post("/api/v1/dead-letters/replay", data=json.dumps(body),
                             content_type="application/json", headers=AUTH)
        assert answer.status_code == 400 and answer.is_json
        assert state.journal.dead_letter_count() == 1


class TestCli:
    """monitoriza journal dead-letters and monitoriza journal replay, on the store."""

    def test_list_and_replay(self, poisoned: Callable[..., Poisoned], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
        """Lists each dead letter (text or JSON lines); replays by id or all; exit 0."""
        app, state, poisoner, clock = poisoned()
        dead_letter(app, state, poisoner, clock, ["d1", "d2"])
        config = tmp_path / "cli.yml"
        config.write_text(yaml.safe_dump({"services": {}, "responder": {
            "store_url": state.config.responder.store_url,
            "token_file": str(tmp_path / "token")}}))
        assert main(["journal", "dead-letters", "--config", str(config)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and lines[-1].startswith("2 dead letters")
        assert "fingerprint=d1" in lines[0] and "RuntimeError: injected fault" in lines[0]
        assert main(["journal", "dead-letters", "--config", str(config), "--json"]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [item["fingerprint"] for item in listed] == ["d1", "d2"]
        poisoner.poison.clear()
        assert main(["journal", "replay", "--config", str(config), "--id",
                     str(listed[0]["id"]), "--id", "424242"]) == 0
        assert capsys.readouterr().out.startswith("replayed 1 journal row; not dead letters")
        assert main(["journal", "replay", "--config", str(config), "--all"]) == 0
        assert capsys.readouterr().out.strip() == "replayed 1 journal row"
        assert state.worker.run_once() == 2
        assert [e["by"] for e in audit_of(state, "journal.replayed")] == ["cli", "cli"]
        assert main(["journal", "dead-letters", "--config", str(config)]) == 0
        assert capsys.readouterr().out.strip() == "0 dead letters"

    def test_bad_usage_and_config(self, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
        """A bad configuration or neither --id nor --all: exit 2."""
        config = tmp_path / "bad.yml"
        config.write_text("responder: {max_attempts: 0}\nservices: {}\n")
        assert main(["journal", "dead-letters", "--config", str(config)]) == 2
        assert "max_attempts" in capsys.readouterr().err
        with pytest.raises(SystemExit) as usage:
            main(["journal", "replay", "--config", str(config)])
        assert usage.value.code == 2


def test_surrogate_in_an_old_row_is_dead_lettered(poisoned: Callable[..., Poisoned]) -> None:
    """A row accepted before intake checked text (a label key holding a lone surrogate) fails
    in the audit's canonical serialisation: it is dead-lettered with its reason, never stuck."""
    app, state, _, clock = poisoned()
    post(app.test_client(), json.dumps(notification([alert("old", service="backend")])))
    with state.journal.engine.begin() as conn:  # as an earlier release stored it
        stored = conn.execute(select(journal.c.alert)).scalar_one()
        document = copy.deepcopy(json.loads(stored))
        document["labels"]["\ud800"] = "x"
        conn.execute(journal.update().values(alert=json.dumps(document)))
    for _ in range(3):
        state.worker.run_once()
        clock.now += 10
    row = journal_rows(state)["old"]
    assert row.state == "dead" and row.last_error.startswith("UnicodeEncodeError")
    listed = app.test_client().get("/api/v1/dead-letters", headers=AUTH)
    assert listed.status_code == 200 and listed.get_json()["dead_letters"][0]["labels"][
        "\ud800"] == "x"

"""The real responder process under a storm of odd alerts and a poison row: nothing it
acknowledged is stuck, valid alerts are never held up, and the log stays small."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from typing import Any

import requests

from tests.support.binaries import wait_until
from tests.support.responder import TOKEN
from tests.support.responder_process import ResponderFactory, ResponderProcess

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
STORM = 6000
STORM_WITH_SERVICE = 20  # of the storm's alerts, those that also open an incident
LOG_BOUND = 64 * 1024  # bytes the responder may log during the storm test


def rows(responder: ResponderProcess, query: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(responder.directory / "responder.db") as conn:
        return conn.execute(query, args).fetchall()


def store_execute(responder: ResponderProcess, statement: str) -> None:
    with sqlite3.connect(responder.directory / "responder.db", timeout=10) as conn:
        conn.execute(statement)


def notification(alerts: list[dict[str, Any]], group: str) -> dict[str, Any]:
    return {"version": "4", "receiver": "responder", "status": "firing", "groupKey": group,
            "alerts": alerts, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0}


def alert(fingerprint: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"status": "firing", "labels": labels, "annotations": {"summary": "s"},
            "startsAt": "2026-11-24T21:09:11.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def send(responder: ResponderProcess, body: dict[str, Any]) -> requests.Response:
    # json.dumps writes a lone surrogate as the escape "\ud800", as any JSON encoder would.
    return requests.post(f"{responder.url}/api/v1/alerts", data=json.dumps(body),
                         headers=AUTH, timeout=60)


def metric(responder: ResponderProcess, name: str) -> float | None:
    text = requests.get(f"{responder.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def cli(responder: ResponderProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoriza.cli", *args, "--config",
                           str(responder.config_path)],
                          capture_output=True, text=True, timeout=60, check=False)


class TestStorm:
    """6,000 alerts without alertname in one notification, a lone surrogate, then valid
    alerts of other groups."""

    def test_valid_alerts_are_not_held_up(self, responder_process: ResponderFactory) -> None:
        """The surrogate payload is refused with 400; each valid alert posted after the storm
        is processed within 5 s of being posted; the storm is processed under "(unnamed)"
        within a minute; nothing is left claimed; the log stays under 64 KiB."""
        responder = responder_process(max_body_bytes=8 * 1024 * 1024, lease="10s")
        logged_before = responder.log_path.stat().st_size
        storm = [alert(f"{i:016x}", {"instance": f"host-{i}", "job": "legacy"}
                       | ({"service": "legacy"} if i < STORM_WITH_SERVICE else {}))
                 for i in range(STORM)]
        started = time.time()
        answer = send(responder, notification(storm, '{}:{job="legacy"}'))
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == STORM

        bad = send(responder, notification([alert("bad0", {"alertname": "X", "\ud800": "v"})],
                                           '{}:{alertname="X"}'))
        assert bad.status_code == 400
        assert "alerts.0.labels: key '\\ud800' is not valid UTF-8" in bad.json()["details"]

        posted: dict[str, float] = {}
        for i in range(5):
            fingerprint = f"valid{i}"
            posted[fingerprint] = time.time()
            ok = send(responder, notification(
                [alert(fingerprint, {"alertname": f"Valid{i}", "service": "backend"})],
                f'{{}}:{{alertname="Valid{i}"}}'))
            assert ok.status_code == 200, ok.text
            time.sleep(0.3)

        def valid_done() -> bool:
            done = rows(responder, "SELECT count(*) FROM journal WHERE fingerprint LIKE "
                                   "'valid%' AND state = 'done'")
            return bool(done[0][0] == 5)
        assert wait_until(valid_done, 10.0, interval=0.1)
        lag = {fingerprint: processed - posted[fingerprint] for fingerprint, processed in rows(
            responder, "SELECT fingerprint, processed_at FROM journal "
                       "WHERE fingerprint LIKE 'valid%'")}
        assert max(lag.values()) < 5.0, lag
        assert rows(responder, "SELECT count(*) FROM journal WHERE fingerprint = 'bad0'") == [
            (0,)]

        def storm_finished() -> bool:
            left = rows(responder, "SELECT count(*) FROM journal WHERE state IN "
                                   "('pending', 'claimed')")
            return bool(left[0][0] == 0)
        assert wait_until(storm_finished, 60.0 - (time.time() - started), interval=0.5)
        states = dict(rows(responder, "SELECT state, count(*) FROM journal GROUP BY state"))
        assert states == {"done": STORM + 5}, states
        assert rows(responder, "SELECT DISTINCT alertname FROM incident_alerts "
                               "WHERE service = 'legacy'") == [("(unnamed)",)]
        assert metric(responder, "monitoriza_responder_journal_depth") == 0.0
        assert metric(responder, "monitoriza_responder_journal_dead_letters") == 0.0
        logged = responder.log_path.stat().st_size - logged_before
        print(f"storm: {STORM} alerts processed in {time.time() - started:.1f}s, "
              f"valid lag {max(lag.values()):.2f}s max, {logged} bytes logged")
        assert logged < LOG_BOUND, responder.log_path.read_text()[-5000:]


class TestPoisonRow:
    """A row that fails on every try is dead-lettered, listed, and replayed once fixed."""

    def test_dead_letter_then_replay(self, responder_process: ResponderFactory) -> None:
        """Injected fault: an SQLite trigger, added to the responder's store by the test,
        aborts the insert of fingerprint poison00 into alert_state (IntegrityError), as a
        constraint added behind the responder's back would. 3 attempts 200 ms then 400 ms
        apart -> dead with its reason, in the metrics, the API and the CLI; a valid alert of
        the same notification is processed meanwhile. Dropping the trigger is the fix; after
        `monitoriza journal replay --id N` the row is processed exactly once."""
        responder = responder_process(max_attempts=3, retry_backoff="200ms",
                                      retry_backoff_max="1s", lease="5s")
        store_execute(responder, """
            CREATE TRIGGER inject_poison BEFORE INSERT ON alert_state
            WHEN NEW.fingerprint = 'poison00'
            BEGIN SELECT RAISE(ABORT, 'injected fault: alert_state refuses poison00'); END""")
        answer = send(responder, notification(
            [alert("poison00", {"alertname": "Poison", "service": "backend"}),
             alert("healthy0", {"alertname": "Healthy", "service": "frontend"})],
            '{}:{job="mixed"}'))
        assert answer.status_code == 200

        def dead() -> bool:
            return rows(responder, "SELECT state FROM journal WHERE fingerprint = "
                                   "'poison00'") == [("dead",)]
        assert wait_until(dead, 15.0, interval=0.1)
        (journal_id, attempts, last_error), = rows(
            responder, "SELECT id, attempts, last_error FROM journal "
                       "WHERE fingerprint = 'poison00'")
        assert attempts == 3
        assert last_error == "IntegrityError: (sqlite3.IntegrityError) injected fault: " \
                             "alert_state refuses poison00" or last_error.startswith(
                                 "IntegrityError: (sqlite3.IntegrityError) injected fault")
        assert rows(responder, "SELECT state FROM journal WHERE fingerprint = 'healthy0'") == [
            ("done",)]
        assert metric(responder, "monitoriza_responder_journal_dead_letters") == 1.0
        assert metric(responder, 'monitoriza_responder_journal_dead_letters_total'
                                 '{reason="IntegrityError"}') == 1.0
        assert metric(responder, "monitoriza_responder_journal_depth") == 0.0
        assert requests.get(f"{responder.url}/readyz", timeout=5).status_code == 200

        listed = requests.get(f"{responder.url}/api/v1/dead-letters", headers=AUTH,
                              timeout=10).json()
        assert [(item["id"], item["fingerprint"], item["attempts"])
                for item in listed["dead_letters"]] == [(journal_id, "poison00", 3)]
        assert "injected fault" in listed["dead_letters"][0]["last_error"]
        shown = cli(responder, "journal", "dead-letters", "--json")
        assert shown.returncode == 0, shown.stderr
        assert [json.loads(line)["fingerprint"] for line in shown.stdout.splitlines()] == [
            "poison00"]

        store_execute(responder, "DROP TRIGGER inject_poison")  # the fix
        replayed = cli(responder, "journal", "replay", "--id", str(journal_id))
        assert (replayed.returncode, replayed.stdout.strip()) == (0, "replayed 1 journal row")

        def done() -> bool:
            return rows(responder, "SELECT state FROM journal WHERE fingerprint = "
                                   "'poison00'") == [("done",)]
        assert wait_until(done, 10.0, interval=0.1)
        kinds = [kind for kind, data in rows(responder, "SELECT kind, data FROM audit")
                 if "poison00" in data or kind == "journal.replayed"]
        assert kinds.count("alert.received") == 1
        assert kinds.count("journal.dead_letter") == 1
        assert kinds.count("journal.replayed") == 1
        assert metric(responder, "monitoriza_responder_journal_dead_letters") == 0.0
        verify = cli(responder, "audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr

        log = responder.log_path.read_text()
        assert "Traceback" not in log
        failures = [line for line in log.splitlines() if f"journal row {journal_id} " in line]
        assert len(failures) == 3, failures  # one line per failed attempt

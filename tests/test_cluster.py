"""Responder replicas on one PostgreSQL database, behind a clustered Alertmanager HA pair.

Everything is real: the session PostgreSQL server (a fresh database per test), responder
replicas as ``monitoriza responder`` runs them (waitress), ``prometheus-alertmanager`` 0.25
in a gossip cluster, and an HTTP target that records what the healing actions did to it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import insert

from monitoriza.audit.log import AuditLog
from monitoriza.config import config_from_data
from monitoriza.healing import repository
from monitoriza.healing.breaker import BreakerState
from monitoriza.healing.healer import ActionJob, Healer, HealOutcome, breaker_key
from monitoriza.store import create_store, incidents
from tests.support.binaries import free_port, require_binary, wait_until
from tests.support.cluster import (
    ClusteredAlertmanager,
    alertmanager_config,
    firing,
    fresh_database,
    query,
    rfc3339,
    start_appenders,
    stop_all,
)
from tests.support.http_targets import HttpTarget
from tests.support.postgres_server import PostgresServer
from tests.support.responder import TOKEN
from tests.support.responder_process import ResponderFactory, ResponderProcess

PLAYBOOK = "restart-backend"


@pytest.fixture
def cluster_db(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database on the session PostgreSQL server for this test; its URL."""
    with fresh_database(postgres_server) as url:
        yield url


def healing_services(url: str) -> dict[str, Any]:
    """``backend`` with one playbook: an HTTP call to ``url``, no verify step."""
    return {"backend": {"healing": [{
        "name": PLAYBOOK, "match": {"alertname": ["ServiceDown"]},
        "steps": [{"action": "http", "url": url, "method": "POST", "timeout": "15s"}]}]}}


def start_replicas(responder_process: ResponderFactory, tmp_path: Path, count: int, *,
                   store_url: str, target: HttpTarget, path: str,
                   lease: str = "2s") -> list[ResponderProcess]:
    """``count`` replicas of one store, sharing the audit signing key and checkpoint file."""
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    settings: dict[str, Any] = {
        "store_url": store_url, "lease": lease, "threads": 8,
        "audit": {"signing_key_file": str(shared / "signing.pem"),
                  "checkpoint_file": str(shared / "checkpoints.jsonl"),
                  "checkpoint_every": 5},
        "healing": {"allowed_urls": [target.url("/heal/")],
                    "kill_switch_file": str(shared / "kill-switch")},
    }
    # The first replica creates the schema and the signing key; the others find them.
    return [responder_process(f"replica-{index}", services=healing_services(target.url(path)),
                              **settings)
            for index in range(count)]


def start_ha_pair(binary: str, tmp_path: Path, replicas: list[ResponderProcess]
                  ) -> list[ClusteredAlertmanager]:
    """Two Alertmanagers in one gossip cluster, each notifying every replica; started, and
    returned once they see each other (the caller stops them)."""
    cluster_ports = [free_port(), free_port()]
    pair = []
    for index, port in enumerate(cluster_ports):
        directory = tmp_path / f"alertmanager-{index}"
        directory.mkdir()
        config = alertmanager_config(directory, [replica.url for replica in replicas])
        pair.append(ClusteredAlertmanager(binary, directory, config, cluster_port=port,
                                          peers=[p for p in cluster_ports if p != port]))
    for alertmanager in pair:
        alertmanager.start()
    if not wait_until(lambda: all(am.cluster_peers() == 2 for am in pair), 20.0):
        for alertmanager in pair:
            alertmanager.stop()
        raise AssertionError("the Alertmanagers did not form a cluster:\n" + pair[0].log())
    return pair


def drained(url: str) -> bool:
    """Every journaled alert processed, and its audit entries integrated into the chain."""
    return bool(query(url, "SELECT (SELECT count(*) FROM journal WHERE state != 'done') + "
                           "(SELECT count(*) FROM audit_pending)")[0][0] == 0)


def audit_kinds(url: str) -> list[str]:
    return [kind for (kind,) in query(url, "SELECT kind FROM audit ORDER BY seq")]


def assert_contiguous(url: str) -> int:
    """The audit seqs are exactly 1..N; returns N."""
    seqs = [seq for (seq,) in query(url, "SELECT seq FROM audit ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1)), "audit seq has gaps or duplicates"
    return len(seqs)


def audit_verify(replica: ResponderProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoriza.cli", "audit", "verify",
                           "--config", str(replica.config_path)],
                          capture_output=True, text=True, timeout=60, check=False)


def owner_pid(lease_owner: str) -> int:
    """The PID in a lease owner ``host:pid:random`` (see monitoriza.responder.worker)."""
    return int(lease_owner.split(":")[-2])


def notification(service: str, alerts: list[tuple[str, str]]) -> dict[str, Any]:
    """An Alertmanager v4 webhook payload of firing P2 alerts (alertname, fingerprint)."""
    return {"version": "4", "receiver": "responders", "status": "firing",
            "groupKey": f'{{}}:{{service="{service}"}}', "externalURL": "http://127.0.0.1:9093",
            "alerts": [{"status": "firing", "startsAt": rfc3339(time.time() - 30),
                        "labels": {"alertname": name, "service": service, "severity": "P2"},
                        "fingerprint": fingerprint}
                       for name, fingerprint in alerts]}


def post(replica: ResponderProcess, document: dict[str, Any]) -> None:
    answer = requests.post(f"{replica.url}/api/v1/alerts", json=document, timeout=10,
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text


def kill_holding_journal_leases(url: str, victim: ResponderProcess,
                                survivor: ResponderProcess) -> float:
    """Make ``victim`` claim 5 new alerts and kill -9 it before it commits their processing.

    A lock on ``alert_state`` (every alert's processing writes it) keeps the victim's work
    from committing, and the survivor is paused (SIGSTOP) so that the victim claims them all.
    Returns when the victim was killed.
    """
    victim_pids = set(victim.pids())

    def victim_holds_all() -> bool:
        owners = query(url, "SELECT lease_owner FROM journal WHERE state = 'claimed'")
        return len(owners) == 5 and all(owner_pid(o) in victim_pids for (o,) in owners)

    paused = survivor.pids()
    lock = psycopg.connect(url, connect_timeout=5)
    try:
        lock.execute("LOCK TABLE alert_state IN EXCLUSIVE MODE")
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        post(victim, notification("frontend", [("ServiceDown", f"f{i}") for i in range(5)]))
        assert wait_until(victim_holds_all, 10.0), "the victim did not claim the new alerts"
        killed_at = time.time()
        victim.kill9()
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        lock.close()  # rolls back: the lock goes, and the victim's blocked work aborts
    return killed_at


def test_ha_pair_and_three_replicas_heal_a_failing_service_once(
        tmp_path: Path, cluster_db: str, http_target: HttpTarget,
        responder_process: ResponderFactory) -> None:
    """Both Alertmanagers of an HA pair notify all three replicas, so the same alerts arrive
    up to six times: the operator still sees one incident, the failing service is healed by
    exactly one call, and the audit trail is one unbroken chain that verifies."""
    binary = require_binary("prometheus-alertmanager")
    http_target.respond("/heal/backend", json_body={"ok": True})
    replicas = start_replicas(responder_process, tmp_path, 3, store_url=cluster_db,
                              target=http_target, path="/heal/backend", lease="5s")
    pair: list[ClusteredAlertmanager] = []
    try:
        pair += start_ha_pair(binary, tmp_path, replicas)

        # As Prometheus does: every alert to every Alertmanager, with the same startsAt.
        started = time.time() - 30
        alerts = [firing("ServiceDown", "backend", "P2", started),
                  firing("ProbeFailing", "backend", "P3", started)]
        for alertmanager in pair:
            alertmanager.post_alerts(alerts)

        assert wait_until(lambda: query(
            cluster_db, "SELECT count(*) FROM actions WHERE state = 'done'")[0][0] >= 1, 30.0), \
            "no healing action finished"
        # The second Alertmanager waits peer_timeout (2 s) before it may notify too.
        time.sleep(3.5)
        assert wait_until(lambda: drained(cluster_db), 10.0)

        assert http_target.hits("/heal/backend") == 1
        rows = query(cluster_db, "SELECT outcome FROM actions")
        assert rows == [("success",)]
        assert query(cluster_db, "SELECT count(*) FROM incidents")[0][0] == 1
        assert query(cluster_db, "SELECT count(*) FROM journal")[0][0] == 2
        kinds = audit_kinds(cluster_db)
        assert kinds.count("alert.received") == 2
        assert kinds.count("action.started") == 1
        assert kinds.count("action.success") == 1
        entries = assert_contiguous(cluster_db)
        # The replicas share the signing key and checkpoint file: one verification covers them.
        result = audit_verify(replicas[2])
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{entries} entries" in result.stdout
        deliveries, alerts_delivered = query(
            cluster_db, "SELECT count(*), sum(alerts) FROM notifications")[0]
        # Every webhook of the receiver (one per replica) delivered at least once.
        assert deliveries >= 3
        print(f"\nHA pair: {deliveries} notifications ({alerts_delivered} alerts) delivered to "
              f"3 replicas; {alerts_delivered - 2} duplicate alerts absorbed; "
              f"{entries} audit entries")
    finally:
        for alertmanager in pair:
            alertmanager.stop()


def test_a_replica_killed_mid_action_is_taken_over_without_repeating_it(
        tmp_path: Path, cluster_db: str, http_target: HttpTarget,
        responder_process: ResponderFactory) -> None:
    """A replica dies (kill -9) in the middle of a healing call and while it holds alerts it
    has not finished processing: within a few seconds the other replica records the action as
    interrupted (a failure whose effect is unknown, in the incident's actions and the audit
    trail) and processes those alerts; nothing received is lost, nothing is processed twice,
    and the healing call is not made a second time.

    To make the replica die holding journal leases, the test holds a lock on ``alert_state``
    (the processing of every alert writes it) and pauses the other replica (SIGSTOP) while the
    victim claims the new alerts; the victim's uncommitted work dies with it."""
    # Slow enough that the kill always lands inside the call: the 3 s below plus the victim
    # claiming the new alerts took over 5 s on a loaded machine, and an 8 s call had then
    # finished. The handler wakes when the target closes, so a long delay costs nothing.
    http_target.respond("/heal/slow", json_body={"ok": True}, delay=30.0)
    replicas = start_replicas(responder_process, tmp_path, 2, store_url=cluster_db,
                              target=http_target, path="/heal/slow", lease="2s")

    post(replicas[0], notification("backend", [("ServiceDown", "a1")]))
    assert wait_until(lambda: http_target.hits("/heal/slow") == 1, 15.0), "the action never ran"
    # A call slower than the lease is not mistaken for a dead replica: its lease is renewed.
    time.sleep(3.0)
    ((owner, expires),) = query(
        cluster_db, "SELECT lease_owner, lease_expires FROM actions WHERE state = 'running'")
    assert expires > time.time(), "the running action's lease was not renewed"
    victim = next(r for r in replicas if owner_pid(owner) in r.pids())
    survivor = next(r for r in replicas if r is not victim)
    killed_at = kill_holding_journal_leases(cluster_db, victim, survivor)

    def finished() -> bool:
        return bool(query(cluster_db, "SELECT state FROM actions")[0][0] == "done")

    assert wait_until(finished, 15.0), "no replica took the interrupted action over"
    ((outcome, detail, finished_at),) = query(
        cluster_db, "SELECT outcome, detail, finished_at FROM actions")
    action_takeover = finished_at - killed_at
    assert outcome == "failure" and "interrupted" in detail
    assert wait_until(lambda: drained(cluster_db), 15.0), "journaled alerts were lost"
    taken_over = query(cluster_db, "SELECT attempts, processed_at, lease_owner FROM journal "
                                   "WHERE fingerprint LIKE 'f%'")
    assert len(taken_over) == 5
    assert all(attempts == 2 and owner_pid(o) in survivor.pids()
               for attempts, _, o in taken_over), taken_over
    journal_takeover = max(at for _, at, _ in taken_over) - killed_at
    time.sleep(2.0)  # a lease more: nobody runs it again
    assert http_target.hits("/heal/slow") == 1
    assert query(cluster_db, "SELECT count(*) FROM actions")[0][0] == 1
    kinds = audit_kinds(cluster_db)
    journaled = query(cluster_db, "SELECT count(*) FROM journal")[0][0]
    assert journaled == 6
    assert kinds.count("alert.received") == journaled  # each processed exactly once
    assert kinds.count("action.started") == 1
    assert kinds.count("action.interrupted") == 1
    assert "action.success" not in kinds and "action.failure" not in kinds
    assert query(cluster_db, "SELECT count(*) FROM incidents WHERE root_service = 'backend'"
                 )[0][0] == 1
    assert_contiguous(cluster_db)
    result = audit_verify(survivor)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\nlease 2s: after kill -9 the action was recorded as interrupted in "
          f"{action_takeover:.2f}s and the victim's 5 claimed alerts were processed by the "
          f"survivor in {journal_takeover:.2f}s")


def test_four_processes_append_a_thousand_audit_entries_each(
        tmp_path: Path, cluster_db: str) -> None:
    """Four replicas writing to the audit log at the same time still produce one linear
    chain: 4,000 entries numbered 1..4,000 with no gap or duplicate, and it verifies.

    Each of the 4 OS processes appends through ``AuditLog.append``, one transaction per
    entry, as a replica's journal worker and healer do."""
    engine = create_store(cluster_db)  # the schema, before four processes race to create it
    processes = start_appenders(cluster_db, 4, 1000, tmp_path)
    try:
        for process in processes:
            assert process.wait(timeout=60) == 0, [
                (tmp_path / f"appender-{i}.log").read_text() for i in range(4)]
    finally:
        stop_all(processes)
    try:
        seqs = [seq for (seq,) in query(cluster_db, "SELECT seq FROM audit ORDER BY seq")]
        assert seqs == list(range(1, 4001))
        rows = query(cluster_db, "SELECT data FROM audit")
        written = {(json.loads(data)["worker"], json.loads(data)["index"]) for (data,) in rows}
        assert written == {(w, i) for w in range(4) for i in range(1000)}
        result = AuditLog(engine, hmac_key=None, checkpoints=None).verify()
        assert result.ok and result.entries == 4000, result
    finally:
        engine.dispose()


class TrippedBreaker:
    """Two healers (two engines: two replicas) of one store, an incident of ``backend``, and
    its playbook's breaker tripped with its open period just over."""

    def __init__(self, tmp_path: Path, url: str, target_url: str) -> None:
        self.config = config_from_data({
            "services": healing_services(target_url),
            "responder": {
                "store_url": url,
                "healing": {"allowed_urls": [target_url.rsplit("/", 1)[0] + "/"],
                            "kill_switch_file": str(tmp_path / "kill-switch"),
                            # Only the breaker may refuse the second action in these tests.
                            "budget": {"restarts": 10, "backoff_initial": "1ms"},
                            "breaker": {"open_for": "1s"}}}})
        self.breaker = self.config.responder.healing.breaker
        self.engines = [create_store(url), create_store(url)]
        self.offset = 0.0  # moves the healers' clock forward
        ticks = itertools.count()

        def clock() -> float:
            # Real time plus 10 ms per reading, so that the loser's decision is always later
            # than the winner's by more than the 1 ms budget backoff, however fast the store.
            return time.time() + self.offset + 0.01 * next(ticks)

        self.healers = [Healer(engine, self.config,
                               AuditLog(engine, hmac_key=None, checkpoints=None),
                               lease=30.0, clock=clock) for engine in self.engines]
        now = time.time()
        with self.engines[0].begin() as conn:
            self.incident = int(conn.execute(insert(incidents).values(
                state="open", opened_at=now, updated_at=now, risk="high",
                root_service="backend", root_kind="service",  # the action's own target
                signature="backend:ServiceDown", alerts="{}").returning(incidents.c.id)
            ).scalar_one())
            tripped = BreakerState(state="open", consecutive_failures=3,
                                   recent=(False, False, False), opened_at=now - 2.0,
                                   open_for=1.0, trial_in_flight=False, half_open_successes=0)
            repository.save_state(conn, breaker_key("backend", PLAYBOOK), tripped.to_dict())

    def claim(self, healer: Healer) -> ActionJob:
        """Queue one action for the incident and let ``healer`` claim it."""
        with self.engines[0].begin() as conn:
            repository.enqueue_action(conn, self.incident, "backend", PLAYBOOK,
                                      alert={"alertname": "ServiceDown", "labels": {}},
                                      now=time.time())
        (job,) = healer._claim()
        return job

    def state(self) -> BreakerState:
        with self.engines[0].connect() as conn:
            return repository.load_breaker(conn, breaker_key("backend", PLAYBOOK),
                                           self.breaker)

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()


def test_two_replicas_race_for_the_half_open_trial_and_one_wins(
        tmp_path: Path, cluster_db: str, http_target: HttpTarget) -> None:
    """When a tripped breaker's open period ends, two replicas both have an action for that
    service ready: exactly one runs as the half-open trial, the other is refused by the
    breaker, so a service that is still broken is hit once, not by every replica."""
    cluster = TrippedBreaker(tmp_path, cluster_db,
                             http_target.respond("/heal/trial", json_body={"ok": True},
                                                 delay=1.0))
    try:
        jobs = [cluster.claim(healer) for healer in cluster.healers]
        barrier = threading.Barrier(2)
        outcomes: list[HealOutcome] = []

        def race(healer: Healer, job: ActionJob) -> None:
            barrier.wait()
            outcomes.append(healer.execute(job))

        threads = [threading.Thread(target=race, args=pair)
                   for pair in zip(cluster.healers, jobs, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert sorted(o.outcome for o in outcomes) == ["blocked", "success"], outcomes
        blocked = next(o for o in outcomes if o.outcome == "blocked")
        assert blocked.reason == "a half-open trial is already running"
        assert http_target.hits("/heal/trial") == 1
        started = [json.loads(data) for (data,) in query(
            cluster_db, "SELECT data FROM audit WHERE kind = 'action.started'")]
        assert [entry["trial"] for entry in started] == [True]
        blocked_entries = [json.loads(data) for (data,) in query(
            cluster_db, "SELECT data FROM audit WHERE kind = 'action.blocked'")]
        assert [entry["check"] for entry in blocked_entries] == ["breaker"]
        after = cluster.state()
        assert after.state == "half_open" and after.half_open_successes == 1
        assert not after.trial_in_flight
    finally:
        cluster.close()


def test_a_replica_that_dies_during_the_trial_does_not_wedge_the_breaker(
        tmp_path: Path, cluster_db: str, http_target: HttpTarget) -> None:
    """The replica running the half-open trial dies: once its lease is over, another replica
    records the trial as interrupted, counts it as the failure it is recorded as, and the
    breaker opens again for twice as long, instead of refusing every action forever while
    it waits for a trial that will never report."""
    cluster = TrippedBreaker(tmp_path, cluster_db,
                             http_target.respond("/heal/trial", json_body={"ok": True}))
    try:
        dying, survivor = cluster.healers
        job = cluster.claim(dying)
        decision, trial = dying._authorize(job, dying.playbook(job))  # type: ignore[arg-type]
        assert decision.verdict == "act" and trial  # marked running; then the replica dies
        assert cluster.state().trial_in_flight
        cluster.offset = 31.0  # past the 30 s lease
        assert survivor._claim() == []
        kinds = audit_kinds(cluster_db)
        assert kinds.count("action.interrupted") == 1
        after = cluster.state()
        assert after.state == "open" and not after.trial_in_flight
        assert after.open_for == 2.0
        assert http_target.hits("/heal/trial") == 0  # the trial is never run by anyone
    finally:
        cluster.close()


SITES = [f"condominio-{index:02d}" for index in range(1, 21)]


def test_twenty_sites_through_an_ha_pair_one_action_each_with_a_replica_killed(
        tmp_path: Path, cluster_db: str, http_target: HttpTarget,
        responder_process: ResponderFactory) -> None:
    """Twenty condominiums lose their backend at once; both Alertmanagers of an HA pair send
    every alert to three replicas, and one replica is killed (-9) while actions are running:
    each site gets its own incident and exactly one action, its own heal call at most once
    (the killed replica's interrupted call is recorded, never repeated), and the audit chain
    has no gap and verifies."""
    binary = require_binary("prometheus-alertmanager")
    for site in SITES:
        http_target.respond(f"/heal/{site}", json_body={"ok": True}, delay=1.0)
    replicas = start_replicas(responder_process, tmp_path, 3, store_url=cluster_db,
                              target=http_target, path="/heal/{label.site}", lease="3s")
    pair: list[ClusteredAlertmanager] = []
    try:
        pair += start_ha_pair(binary, tmp_path, replicas)

        started = time.time() - 30
        alerts = [firing("ServiceDown", "backend", "P2", started) for _ in SITES]
        for alert, site in zip(alerts, SITES, strict=True):
            alert["labels"]["site"] = site
        for alertmanager in pair:
            alertmanager.post_alerts(alerts)

        def calls() -> int:
            return sum(http_target.hits(f"/heal/{site}") for site in SITES)

        assert wait_until(lambda: calls() >= 4, 30.0), "no healing call was made"
        victim = replicas[0]
        victim.kill9()
        survivor = replicas[1]

        def settled() -> bool:
            done = query(cluster_db, "SELECT count(*) FROM actions WHERE state = 'done'")[0][0]
            return bool(done == len(SITES)) and drained(cluster_db)

        assert wait_until(settled, 60.0), query(cluster_db, "SELECT state, count(*) FROM "
                                                            "actions GROUP BY state")
        time.sleep(4.0)  # a lease more and the second Alertmanager's peer_timeout: no repeats
        per_site = query(cluster_db, "SELECT site, count(*) FROM incidents GROUP BY site")
        assert sorted(per_site) == [(site, 1) for site in SITES]
        actions = query(cluster_db, "SELECT i.site, a.outcome, a.detail FROM actions a "
                                    "JOIN incidents i ON i.id = a.incident_id")
        assert sorted(site for site, _, _ in actions) == SITES  # one action per incident
        for site, outcome, detail in actions:
            hits = http_target.hits(f"/heal/{site}")
            if outcome == "success":
                assert hits == 1, (site, hits)
            else:  # the call the killed replica was making: recorded, never repeated
                assert outcome == "failure" and "interrupted" in detail, (site, detail)
                assert hits <= 1, (site, hits)
        kinds = audit_kinds(cluster_db)
        assert kinds.count("action.started") == len(SITES)
        # Every processed alert's entries are in the chain, those the killed replica queued
        # included: the survivors' sequencers integrated them.
        assert kinds.count("alert.received") + kinds.count("alert.stale") == query(
            cluster_db, "SELECT count(*) FROM journal WHERE outcome IS NOT NULL")[0][0]
        assert query(cluster_db, "SELECT count(*) FROM audit_pending")[0][0] == 0
        assert_contiguous(cluster_db)
        result = audit_verify(survivor)
        assert result.returncode == 0, result.stdout + result.stderr
        interrupted = sum(outcome != "success" for _, outcome, _ in actions)
        print(f"\n20 sites, HA pair, 3 replicas, one killed mid-storm: 20 incidents, 20 actions "
              f"({interrupted} interrupted by the kill), {calls()} heal calls")
    finally:
        for alertmanager in pair:
            alertmanager.stop()

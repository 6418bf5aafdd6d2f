"""Several engines on one store, as replicas sharing it: claims, appends and processing stay
exactly-once on SQLite and on PostgreSQL.

On SQLite, writers take turns on the database lock. On PostgreSQL they do not unless asked: the
journal's claim relies on ``FOR UPDATE SKIP LOCKED``, the audit append and the processing of a
batch on a transaction-scoped advisory lock (see monitoriza/store.py). Each engine here has its
own connection pool, so the threads below really run side by side, as two replicas would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from monitoriza.audit.log import AuditLog
from monitoriza.pipeline import JournalRow
from monitoriza.responder.journal import Journal
from monitoriza.responder.state import responder_of
from monitoriza.responder.webhook import Notification, parse_notification
from monitoriza.responder.worker import JournalWorker
from monitoriza.store import alert_state, create_store, journal, writing
from tests.support.postgres_server import PostgresServer
from tests.support.responder import (
    AppFactory,
    fixture_body,
    fixture_json,
    is_postgres,
    post,
)
from tests.test_responder_intake import REPLAYED, alert_keys

ROWS = 300


@pytest.fixture
def engines(store_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines (two pools, as two replicas) on the same store."""
    first, second = create_store(store_url), create_store(store_url)
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()


def run_together(*tasks: Callable[[], None]) -> list[BaseException]:
    """Run ``tasks`` in threads released at the same moment; the exceptions they raised."""
    barrier = threading.Barrier(len(tasks))
    errors: list[BaseException] = []

    def run(task: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=30)
            task()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(task,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a task did not finish"
    return errors


def many_alerts(count: int) -> Notification:
    """One notification carrying ``count`` distinct firing alerts."""
    body = fixture_json("firing_single.json")
    template = body["alerts"][0]
    body["alerts"] = [{**template, "fingerprint": f"{index:016x}",
                       "labels": {**template["labels"], "instance": f"node-{index}"}}
                      for index in range(count)]
    return parse_notification(body)


def test_two_claimers_take_disjoint_rows(engines: tuple[Engine, Engine]) -> None:
    """Two journals on two engines claiming side by side never lease the same row: every row
    is claimed exactly once, by one of them; on PostgreSQL both got work."""
    first, second = (Journal(engine) for engine in engines)
    assert first.accept(many_alerts(ROWS)).new == ROWS
    claimed: dict[str, list[JournalRow]] = {"first": [], "second": []}

    def claimer(name: str, journal_: Journal) -> Callable[[], None]:
        def claim_all() -> None:
            while rows := journal_.claim(name, lease=300, limit=7):
                claimed[name] += rows
                time.sleep(0.002)  # let the other claimer in
        return claim_all

    assert run_together(claimer("first", first), claimer("second", second)) == []
    ids = [row.id for rows in claimed.values() for row in rows]
    assert len(ids) == ROWS and len(set(ids)) == ROWS  # every row, none twice
    if first.engine.dialect.name == "postgresql":
        # Side by side, not in turns (SQLite's busy handler may let one claimer starve the
        # other, which is slower but still correct).
        assert claimed["first"] and claimed["second"]
    with first.engine.connect() as conn:
        stored = conn.execute(select(journal.c.id, journal.c.lease_owner,
                                     journal.c.attempts)).all()
    owners = {row.id: name for name, rows in claimed.items() for row in rows}
    assert {(row.id, row.lease_owner, row.attempts) for row in stored} == {
        (row_id, owner, 1) for row_id, owner in owners.items()}


def test_two_engines_append_one_chain(engines: tuple[Engine, Engine], tmp_path: Path) -> None:
    """Two engines each appending 100 entries, one per transaction, at the same time: seqs
    1..200 without a gap or a fork, and the chain verifies."""
    logs = [AuditLog(engine, hmac_key=None, checkpoints=None) for engine in engines]

    def appender(number: int) -> Callable[[], None]:
        def append_all() -> None:
            for index in range(100):
                with engines[number].begin() as conn:
                    logs[number].append(conn, "action.started",
                                        {"engine": number, "i": index})
        return append_all

    assert run_together(appender(0), appender(1)) == []
    entries = logs[0].entries()
    assert [entry.seq for entry in entries] == list(range(1, 201))
    for number in (0, 1):  # each engine's entries in the order it appended them
        assert [entry.data["i"] for entry in entries
                if entry.data["engine"] == number] == list(range(100))
    result = logs[1].verify()
    assert (result.ok, result.entries) == (True, 200), result.reason


def test_replicas_process_each_alert_once(make_responder_app: AppFactory) -> None:
    """Two responders on one store, each taking half of the captured notifications and
    draining the journal with two workers at once: every alert is processed exactly once,
    without a store error; the chain verifies; a resolved occurrence stays resolved whichever
    replica saw its late firing first."""
    apps = [make_responder_app(), make_responder_app()]
    states = [responder_of(app) for app in apps]
    clients = [app.test_client() for app in apps]
    for index, name in enumerate(REPLAYED):
        assert post(clients[index % 2], fixture_body(name)).status_code == 200
    workers = [JournalWorker(state.journal, state.worker.processor, lease=60, batch=2,
                             after_batch=state.audit.integrate)
               for state in states for _ in range(2)]
    processed = [0] * len(workers)

    def drainer(index: int) -> Callable[[], None]:
        def drain() -> None:
            while done := workers[index].run_once():
                processed[index] += done
        return drain

    assert run_together(*(drainer(index) for index in range(len(workers)))) == []
    keys = alert_keys(REPLAYED)
    assert sum(processed) == len(keys)
    with writing(states[0].journal.engine) as conn:
        rows = conn.execute(select(journal.c.state, journal.c.attempts, journal.c.fingerprint,
                                   journal.c.starts_at, journal.c.status)).all()
        final = {(row.fingerprint, row.starts_at): row.status
                 for row in conn.execute(select(alert_state))}
    assert sorted({(row.state, row.attempts) for row in rows}) == [("done", 1)]
    resolved = {(row.fingerprint, row.starts_at) for row in rows if row.status == "resolved"}
    assert resolved and all(final[occurrence] == "resolved" for occurrence in resolved)
    kinds = [entry.kind for entry in states[1].audit.entries()]
    assert kinds.count("alert.received") + kinds.count("alert.stale") == len(keys)
    assert states[0].audit.verify().ok


@pytest.fixture
def empty_store_url(store_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """``store_url``'s backend without the schema (``store_url`` has it on PostgreSQL)."""
    if not is_postgres(store_url):
        yield store_url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.fresh_database("empty") as url:
        yield url


def test_replicas_create_the_schema_together(empty_store_url: str) -> None:
    """Four replicas starting at once on an empty store all come up (one creates the tables,
    the others find them)."""
    created: list[Engine] = []
    lock = threading.Lock()

    def start() -> None:
        engine = create_store(empty_store_url)
        with lock:
            created.append(engine)

    try:
        assert run_together(*(start for _ in range(4))) == []
    finally:
        for engine in created:
            engine.dispose()
    assert len(created) == 4

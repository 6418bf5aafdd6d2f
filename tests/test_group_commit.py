"""Group commit: notifications that arrive together share one durable commit, each is
acknowledged only after the commit that holds it, and a failed commit fails its whole batch."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, event, func, select

from monitoriza.responder.group_commit import (
    GroupCommitter,
    JournalCommitError,
    Queued,
    take_batch,
)
from monitoriza.responder.intake import committer_of
from monitoriza.responder.journal import Accepted
from monitoriza.responder.state import responder_of
from monitoriza.responder.webhook import Notification, parse_notification
from monitoriza.responder.worker import INTAKE_GRACE_SECONDS, JournalWorker
from monitoriza.store import notifications
from tests.support.binaries import wait_until
from tests.support.responder import TOKEN, AppFactory, counts, journal_locked, post
from tests.support.responder_process import ResponderFactory, ResponderProcess

STARTS_AT = "2026-11-24T21:09:11.123456789Z"


def body(group: str, fingerprints: Sequence[str]) -> dict[str, Any]:
    """A firing notification of ``group`` with one alert per fingerprint."""
    return {"version": "4", "receiver": "responder", "status": "firing", "groupKey": group,
            "alerts": [{"status": "firing", "startsAt": STARTS_AT,
                        "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint,
                        "labels": {"alertname": "GroupCommit", "instance": fingerprint},
                        "annotations": {}} for fingerprint in fingerprints],
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0}


def parsed(group: str, fingerprints: Sequence[str]) -> Notification:
    return parse_notification(body(group, fingerprints))


@contextmanager
def counted_commits(engine: Engine) -> Iterator[list[float]]:
    """The times of the commits made on ``engine`` while the block runs."""
    commits: list[float] = []

    def on_commit(_conn: Any) -> None:
        commits.append(time.monotonic())

    event.listen(engine, "commit", on_commit)
    try:
        yield commits
    finally:
        event.remove(engine, "commit", on_commit)


def post_all(app: Flask, bodies: list[dict[str, Any]]) -> list[tuple[int, Any, float]]:
    """Post each body from its own thread (and test client) at once: (status, JSON, when)."""
    def send(item: dict[str, Any]) -> tuple[int, Any, float]:
        response = post(app.test_client(), json.dumps(item))
        return response.status_code, response.json, time.monotonic()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


def queue_behind_a_held_commit(app: Flask, bodies: list[dict[str, Any]]) -> tuple[
        tuple[int, Any, float], list[tuple[int, Any, float]], list[float], float]:
    """Hold the journal's lock, post a first notification (its commit waits for the lock),
    then ``bodies`` at once; release once they all wait. Returns the first's answer, each
    body's, the commits made, and when the lock was released.

    On SQLite the commit waits for the lock before it takes its batch, so ``bodies`` join
    the first's commit; on PostgreSQL it has taken the first alone and waits at its insert,
    so ``bodies`` share the next commit."""
    committer = committer_of(app)
    assert committer is not None
    engine = responder_of(app).journal.engine
    with counted_commits(engine) as commits, ThreadPoolExecutor(max_workers=2) as pool:
        with journal_locked(engine):
            first = pool.submit(post_all, app, [body("{}:first", ["first000"])])
            # On PostgreSQL the first must have taken its batch (itself alone) before the
            # others queue: a body queued between "busy" and that moment would share it.
            taken = committer.busy if engine.dialect.name == "sqlite" else (
                lambda: committer.busy() and committer.queued() == 0)
            assert wait_until(taken, 10.0, interval=0.01)
            rest = pool.submit(post_all, app, bodies)
            assert wait_until(lambda: committer.unanswered() == len(bodies) + 1, 10.0,
                              interval=0.01)
            released = time.monotonic()
        first_result = first.result(timeout=30)[0]
        results = rest.result(timeout=30)
    return first_result, results, commits, released


def joins_the_held_commit(app: Flask) -> bool:
    return responder_of(app).journal.engine.dialect.name == "sqlite"


class TestSharedCommits:
    """Concurrent notifications share commits; each answer follows its own commit."""

    def test_concurrent_posts_share_one_commit(self, make_responder_app: AppFactory) -> None:
        """40 notifications queued behind a held commit are journaled in one commit (with
        the held one's on SQLite, the next on PostgreSQL), and none is acknowledged before the
        lock that held them back is released."""
        app = make_responder_app(store_timeout="10s")
        bodies = [body(f"{{}}:g{index}", [f"{index:016x}"]) for index in range(40)]
        first, results, commits, released = queue_behind_a_held_commit(app, bodies)
        assert first[0] == 200
        assert [(status, answer["accepted"]) for status, answer, _ in results] == [(200, 1)] * 40
        assert len(commits) == (1 if joins_the_held_commit(app) else 2)
        assert all(answered > released for _, _, answered in results)
        assert all(answered >= commits[-1] for _, _, answered in results)
        assert counts(responder_of(app)) == (41, 41)

    def test_duplicates_within_one_batch(self, make_responder_app: AppFactory) -> None:
        """Two copies of one notification in one batch (an HA pair): one is new, the other a
        duplicate, exactly as if they had come one after the other."""
        app = make_responder_app(store_timeout="10s")
        copy = body("{}:ha", ["aaaa0000", "bbbb0000"])
        _, results, commits, _ = queue_behind_a_held_commit(app, [copy, copy])
        answers = sorted((answer["accepted"], answer["duplicates"]) for _, answer, _ in results)
        assert answers == [(0, 2), (2, 0)]
        assert len(commits) == (1 if joins_the_held_commit(app) else 2)
        assert counts(responder_of(app)) == (3, 3)

    def test_accept_batch_counts_like_one_after_another(self, make_responder_app: AppFactory
                                                        ) -> None:
        """accept_batch answers per notification: a key already stored, or held by an earlier
        notification of the batch, is a duplicate; notification rows say the same."""
        state = responder_of(make_responder_app())
        state.journal.accept(parsed("{}:a", ["a0"]))
        answers = state.journal.accept_batch([
            parsed("{}:a", ["a0", "a1"]), parsed("{}:b", ["b0"]), parsed("{}:b", ["b0", "b1"]),
            parsed("{}:c", [])])
        assert answers == [Accepted(2, 1), Accepted(1, 1), Accepted(2, 1), Accepted(0, 0)]
        with state.journal.engine.connect() as conn:
            stored = conn.execute(select(notifications.c.group_key, notifications.c.alerts,
                                         notifications.c.new_alerts)
                                  .order_by(notifications.c.id)).all()
            received = conn.execute(select(func.count(func.distinct(
                notifications.c.received_at)))).scalar_one()
        assert sorted(stored) == [("{}:a", 1, 1), ("{}:a", 2, 1), ("{}:b", 1, 1),
                                  ("{}:b", 2, 1), ("{}:c", 0, 0)]
        assert received == 2  # the single accept, then the batch's one commit
        assert counts(state) == (4, 5)


POISON_SQLITE = """
    CREATE TRIGGER inject_poison BEFORE INSERT ON journal WHEN NEW.fingerprint = 'poison00'
    BEGIN SELECT RAISE(ABORT, 'injected fault: the journal refuses poison00'); END"""
POISON_POSTGRESQL = [
    """CREATE FUNCTION inject_poison() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.fingerprint = 'poison00' THEN
           RAISE EXCEPTION 'injected fault: the journal refuses poison00';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER inject_poison BEFORE INSERT ON journal
       FOR EACH ROW EXECUTE FUNCTION inject_poison()"""]


class TestWorkerYields:
    """The journal worker's transaction holds SQLite's write lock: once notifications wait
    for the store, it commits after the row it is processing instead of after its batch."""

    @pytest.mark.parametrize("waits_from", [None, 2])
    def test_worker_commits_early_once_intake_waits(self, make_responder_app: AppFactory,
                                                   waits_from: int | None) -> None:
        """Six alerts claimed in one batch. Intake never waiting: one transaction processes
        all six. Intake waiting from the second row on (a stand-in for the committer's
        queue): the first transaction stops after it, and each row after has its own; every
        alert is processed once either way, and its audit entries are in the chain."""
        app = make_responder_app()
        state = responder_of(app)
        answer = app.test_client().post(
            "/api/v1/alerts", data=json.dumps(body("yield", [f"y{i}" for i in range(6)])),
            headers={"Authorization": f"Bearer {TOKEN}"}, content_type="application/json")
        assert answer.status_code == 200
        transactions: list[Any] = []
        rows_by_transaction: list[list[str]] = []

        def processor(conn: Any, row: Any) -> str:
            transaction = conn.get_transaction()
            if not transactions or transactions[-1] is not transaction:
                transactions.append(transaction)
                rows_by_transaction.append([])
            rows_by_transaction[-1].append(row.fingerprint)
            return str(state.worker.processor(conn, row))

        def intake_waiting() -> bool:
            processed = sum(len(rows) for rows in rows_by_transaction)
            return waits_from is not None and processed >= waits_from

        worker = JournalWorker(state.journal, processor, lease=30, batch=20,
                               intake_waiting=intake_waiting,
                               after_batch=state.audit.integrate)
        assert worker.run_once() == 6
        fingerprints = [f"y{i}" for i in range(6)]
        if waits_from is None:
            assert rows_by_transaction == [fingerprints]
        else:
            assert rows_by_transaction == [fingerprints[:2], *([f] for f in fingerprints[2:])]
        kinds = [entry.kind for entry in state.audit.entries()]
        assert kinds.count("alert.received") == 6
        assert state.journal.depth()[0] == 0


class TestWorkerLeavesTheStoreToIntake:
    def test_next_transaction_waits_for_the_waiting_notifications(
            self, make_responder_app: AppFactory) -> None:
        """Once the worker commits early for waiting notifications, it begins its next
        transaction only when they are answered or INTAKE_GRACE_SECONDS has passed (here
        they never are): a Python lock released and re-taken at once by the same thread would
        go back to it, and the notifications would wait through the whole batch."""
        app = make_responder_app()
        state = responder_of(app)
        answer = app.test_client().post(
            "/api/v1/alerts", data=json.dumps(body("grace", ["g0", "g1", "g2"])),
            headers={"Authorization": f"Bearer {TOKEN}"}, content_type="application/json")
        assert answer.status_code == 200
        waiting_since: list[float] = []
        began: list[float] = []

        def processor(conn: Any, row: Any) -> str:
            began.append(time.monotonic())
            outcome = str(state.worker.processor(conn, row))
            if row.fingerprint == "g0":  # notifications arrive while the first row runs
                waiting_since.append(time.monotonic())
            return outcome

        worker = JournalWorker(state.journal, processor, lease=30, batch=20,
                               intake_waiting=lambda: bool(waiting_since))
        assert worker.run_once() == 3
        assert began[1] - waiting_since[0] >= INTAKE_GRACE_SECONDS
        assert began[2] - began[1] >= INTAKE_GRACE_SECONDS


class TestFailedCommit:
    """A batch that fails commits nothing and fails every request in it."""

    def test_a_poisoned_insert_fails_its_whole_batch(self, make_responder_app: AppFactory
                                                     ) -> None:
        """A real fault (a trigger refusing one alert) in a batch of six: all six answered
        503 (seven on SQLite, where the held notification shares their commit), none of
        their rows or notification records stored; the good ones are accepted when sent
        again."""
        app = make_responder_app(store_timeout="10s")
        engine = responder_of(app).journal.engine
        with engine.begin() as conn:
            for statement in (POISON_POSTGRESQL if engine.dialect.name == "postgresql"
                              else [POISON_SQLITE]):
                conn.exec_driver_sql(statement)
        good = [body(f"{{}}:good{index}", [f"good{index:04d}", f"more{index:04d}"])
                for index in range(5)]
        first, results, commits, _ = queue_behind_a_held_commit(
            app, [*good, body("{}:poison", ["poison00"])])
        assert [status for status, _, _ in results] == [503] * 6
        assert {answer["error"] for _, answer, _ in results} == {"service unavailable"}
        if joins_the_held_commit(app):
            assert (first[0], len(commits), counts(responder_of(app))) == (503, 0, (0, 0))
        else:
            assert (first[0], len(commits), counts(responder_of(app))) == (200, 1, (1, 1))
        assert [status for status, _, _ in post_all(app, good)] == [200] * 5
        assert counts(responder_of(app))[0] == 10 + (0 if joins_the_held_commit(app) else 1)


def held_writer(calls: int) -> tuple[Callable[[None, Sequence[Notification]], list[Accepted]],
                                     list[threading.Event], list[list[str]]]:
    """A batch writer for GroupCommitter whose n-th call (of ``calls``) returns only once the
    n-th event is set, recording each batch's group keys: commits held up by the store,
    without a store."""
    releases = [threading.Event() for _ in range(calls)]
    written: list[list[str]] = []

    def write(_transaction: None, batch: Sequence[Notification]) -> list[Accepted]:
        releases[len(written)].wait(30)
        written.append([notification.groupKey for notification in batch])
        return [Accepted(len(notification.alerts), len(notification.alerts))
                for notification in batch]

    return write, releases, written


class TestCommitter:
    """The committer's queue, timeouts and batch limits, with a writer that stands in for
    the store (the store's own timeouts are exercised in the tests above)."""

    def test_a_notification_no_commit_took_is_withdrawn(self) -> None:
        """While a commit hangs, a notification queued behind it times out with
        JournalCommitError and is never written, even after the hung commit ends."""
        write, releases, written = held_writer(1)
        committer = GroupCommitter(nullcontext, write, max_alerts=256, timeout=0.3)
        with ThreadPoolExecutor(max_workers=1) as pool:
            held = pool.submit(committer.submit, parsed("{}:held", ["h0"]))
            assert wait_until(committer.busy, 5.0, interval=0.01)
            started = time.monotonic()
            with pytest.raises(JournalCommitError, match="no journal commit could start"):
                committer.submit(parsed("{}:late", ["l0"]))
            assert 0.25 < time.monotonic() - started < 2.0
            releases[0].set()
            assert held.result(timeout=10) == Accepted(1, 1)
        assert (committer.queued(), committer.busy()) == (0, False)
        assert written == [["{}:held"]]

    def test_a_taken_notification_gets_its_commits_outcome(self) -> None:
        """Past the timeout, a notification that a running commit holds waits for that
        commit's outcome rather than answering 503 for a notification that may commit;
        notifications queued behind a commit share the next one, led by the oldest."""
        write, releases, written = held_writer(2)
        committer = GroupCommitter(nullcontext, write, max_alerts=256, timeout=0.5)
        with ThreadPoolExecutor(max_workers=3) as pool:
            first = pool.submit(committer.submit, parsed("{}:first", ["a0"]))
            assert wait_until(committer.busy, 5.0, interval=0.01)
            second = pool.submit(committer.submit, parsed("{}:second", ["b0"]))
            assert wait_until(lambda: committer.queued() == 1, 5.0, interval=0.01)
            third = pool.submit(committer.submit, parsed("{}:third", ["c0", "c1"]))
            assert wait_until(lambda: committer.queued() == 2, 5.0, interval=0.01)
            releases[0].set()  # the second's thread now commits itself and the third
            assert wait_until(lambda: committer.queued() == 0, 5.0, interval=0.01)
            time.sleep(0.7)  # past the third's timeout, while its commit still runs
            releases[1].set()
            assert first.result(timeout=10) == Accepted(1, 1)
            assert second.result(timeout=10) == Accepted(1, 1)
            assert third.result(timeout=10) == Accepted(2, 2)
        assert written == [["{}:first"], ["{}:second", "{}:third"]]
        assert committer.busy() is False

    def test_batches_never_exceed_max_alerts_nor_split_a_notification(self) -> None:
        """take_batch takes the oldest whole notifications up to the limit, and always one."""
        sizes = [3, 2, 4, 10, 1]
        queue = deque(Queued(parsed(f"{{}}:{i}", [f"f{j}" for j in range(size)]), size)
                      for i, size in enumerate(sizes))
        taken = [[waiting.alerts for waiting in take_batch(queue, 5)] for _ in range(3)]
        assert taken == [[3, 2], [4], [10]]
        assert [waiting.alerts for waiting in queue] == [1]


def store_rows(responder: ResponderProcess, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(responder.directory / "responder.db") as conn:
        return conn.execute(query).fetchall()


class TestCrash:
    """kill -9 with commits in flight: every acknowledged notification is whole in the store."""

    def test_kill_9_with_batches_in_flight(self, responder_process: ResponderFactory) -> None:
        """24 clients post notifications of three alerts each to a real responder, which is
        SIGKILLed after ~300 acknowledgements: every notification that got 200 has all three
        rows and its record; every other has all or nothing; commits were shared."""
        responder = responder_process()
        acked: set[str] = set()
        interrupted: set[str] = set()
        lock = threading.Lock()
        kill_due = threading.Event()
        stop = threading.Event()

        def client(number: int) -> None:
            session = requests.Session()
            for index in range(1000):
                if stop.is_set():
                    return
                group = f"{{}}:c{number}n{index}"
                item = body(group, [f"{number:03d}{index:05d}{alert}" for alert in "abc"])
                try:
                    response = session.post(
                        f"{responder.url}/api/v1/alerts", data=json.dumps(item), timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}",
                                 "Content-Type": "application/json"})
                except requests.RequestException:
                    with lock:
                        interrupted.add(group)
                    return
                if response.status_code == 200:
                    with lock:
                        acked.add(group)
                        if len(acked) >= 300:
                            kill_due.set()

        with ThreadPoolExecutor(max_workers=24) as pool:
            futures = [pool.submit(client, number) for number in range(24)]
            assert kill_due.wait(60)
            responder.kill9()
            stop.set()
            for future in futures:
                future.result(timeout=60)

        assert interrupted  # requests were in flight when the process died
        stored: dict[str, int] = dict(store_rows(
            responder, "SELECT group_key, count(*) FROM journal GROUP BY group_key"))
        records: dict[str, int] = dict(store_rows(
            responder, "SELECT group_key, count(*) FROM notifications GROUP BY group_key"))
        assert acked <= stored.keys()  # nothing acknowledged is lost
        assert set(stored.values()) == {3}  # nothing half there
        assert records == dict.fromkeys(stored, 1)
        commits, notified = store_rows(
            responder, "SELECT count(DISTINCT received_at), count(*) FROM notifications")[0]
        assert commits < notified  # a batch's notifications share its commit's time
        responder.start()  # and the store opens and takes more after the crash
        assert requests.post(f"{responder.url}/api/v1/alerts",
                             data=json.dumps(body("{}:after", ["after000"])), timeout=10,
                             headers={"Authorization": f"Bearer {TOKEN}",
                                      "Content-Type": "application/json"}).status_code == 200
        assert len(store_rows(responder, "SELECT * FROM journal")) == 3 * len(stored) + 1

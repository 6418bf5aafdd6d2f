"""The audit sequencer on a real PostgreSQL: sites are processed side by side, and the one
chain they share stays whole, ordered and verifiable.

Alert processing on PostgreSQL takes only its sites' locks and queues its audit entries in
``audit_pending``; :meth:`AuditLog.integrate` gives them their place in the chain, one lock of
the head per batch. Each test gets a fresh database of the session's server.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text

from monitoriza.audit.chain import AuditError
from monitoriza.audit.commands import VerifyOptions, verify_command
from monitoriza.audit.log import AuditLog, QueuedEntries, collecting_processor
from monitoriza.config import config_from_data
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import audit, create_store, writing
from tests.support.postgres_server import PostgresServer
from tests.support.responder import TOKEN, closed_after_test, process

START = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
COLUMNS = ("seq", "ts", "kind", "data", "prev", "hash")


@pytest.fixture
def pg_url(postgres_server: PostgresServer, responder_template_database: str) -> Iterator[str]:
    with postgres_server.fresh_database("sequencer",
                                       template=responder_template_database) as url:
        yield url


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_store(pg_url, timeout=10.0)
    yield engine
    engine.dispose()


def chain(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(*audit.c).order_by(audit.c.seq))]


def entry(n: int) -> tuple[str, dict[str, object], datetime]:
    return (("alert.received", "decision.queued", "incident.opened")[n % 3],
            {"n": n, "service": f"svc-{n % 5}", "note": "ñ 🚨"}, START + timedelta(seconds=n))


class TestSameChain:
    def test_sequenced_entries_make_the_chain_appends_make(self, engine: Engine,
                                                           tmp_path: Path) -> None:
        """The same entries, queued on PostgreSQL in transactions of 7 and integrated after
        each, give byte for byte the chain that direct appends give on SQLite (HMAC-keyed):
        the chain's format is unchanged, so every tamper class the audit suite catches
        (tests/test_audit_tamper.py) is caught in a sequenced chain too."""
        key = b"sequencer-test-key"
        sequenced = AuditLog(engine, hmac_key=key, checkpoints=None)
        assert sequenced.sequenced
        for begin in range(0, 60, 7):
            with writing(engine, sites={"aurora"}) as conn:
                for n in range(begin, min(begin + 7, 60)):
                    kind, data, now = entry(n)
                    assert sequenced.enqueue(conn, kind, data, now=now) is None
            sequenced.integrate()

        local = create_store(f"sqlite:///{tmp_path / 'appends.db'}")
        appended = AuditLog(local, hmac_key=key, checkpoints=None)
        assert not appended.sequenced
        with writing(local) as conn:
            for n in range(60):
                kind, data, now = entry(n)
                appended.append(conn, kind, data, now=now)
        assert chain(engine) == chain(local)
        assert len(chain(engine)) == 60
        assert sequenced.verify().ok
        local.dispose()

    def test_rolled_back_processing_queues_nothing(self, engine: Engine) -> None:
        """An entry queued by a transaction that then fails never reaches the chain."""
        log = AuditLog(engine, hmac_key=None, checkpoints=None)
        with pytest.raises(RuntimeError), writing(engine, sites={"aurora"}) as conn:
            log.enqueue(conn, "alert.received", {"n": 1})
            raise RuntimeError("processing failed")
        assert log.pending() == (0, None)
        assert log.integrate() == 0
        assert chain(engine) == []


class TestCollecting:
    def test_an_alerts_entries_are_queued_in_one_statement(self, engine: Engine) -> None:
        """Processing that writes three entries for an alert queues them with one INSERT,
        in the order written; a row whose processing fails queues nothing, and a bad kind
        fails where it was written."""
        log = AuditLog(engine, hmac_key=None, checkpoints=None)
        queued = QueuedEntries(log)
        statements: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "audit_pending" in statement and statement.lstrip().upper().startswith("INSERT"):
                statements.append(statement)

        def three_entries(conn: Any, row: Any) -> str:
            for kind in ("alert.received", "incident.opened", "decision.queued"):
                queued.append(conn, kind, {"row": row})
            if row == "poison":
                raise RuntimeError("processing failed")
            return "recorded"

        process = collecting_processor(three_entries, queued)
        event.listen(engine, "before_cursor_execute", count)
        try:
            with writing(engine, sites={"aurora"}) as conn:
                assert process(conn, "first") == "recorded"  # type: ignore[arg-type]
            with pytest.raises(RuntimeError), writing(engine, sites={"aurora"}) as conn:
                process(conn, "poison")  # type: ignore[arg-type]
            with pytest.raises(AuditError, match="audit kind"), \
                    writing(engine, sites={"aurora"}) as conn, queued.collecting(conn):
                queued.append(conn, "", {})
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(statements) == 1
        log.integrate()
        assert [(row[2], json.loads(row[3])["row"]) for row in chain(engine)] == [
            ("alert.received", "first"), ("incident.opened", "first"),
            ("decision.queued", "first")]


class TestConcurrency:
    def test_sites_queue_while_integrators_and_direct_appends_run(self,
                                                                  engine: Engine) -> None:
        """Six sites' writers (15 transactions of 3 entries each), a serialized writer that
        appends directly (as the kill switch does), and two integrators, all at once: the
        chain holds every entry exactly once, with contiguous seqs, each site's entries in
        the order its transactions committed, and it verifies; nothing is left waiting."""
        log = AuditLog(engine, hmac_key=None, checkpoints=None)
        sites = [f"site-{index}" for index in range(6)]
        writers_done = threading.Event()
        errors: list[BaseException] = []

        def site_writer(site: str) -> None:
            try:
                for txn in range(15):
                    with writing(engine, sites={site}) as conn:
                        for part in range(3):
                            log.enqueue(conn, "alert.received",
                                        {"site": site, "n": txn * 3 + part})
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        def direct_writer() -> None:
            try:
                for n in range(10):
                    with writing(engine) as conn:
                        log.append(conn, "healing.kill_switch", {"site": "-", "n": n})
            except BaseException as exc:
                errors.append(exc)

        def integrator() -> None:
            try:
                while not writers_done.is_set():
                    log.integrate(limit=16)
            except BaseException as exc:
                errors.append(exc)

        writers = [threading.Thread(target=site_writer, args=(site,)) for site in sites]
        writers.append(threading.Thread(target=direct_writer))
        integrators = [threading.Thread(target=integrator) for _ in range(2)]
        for thread in [*writers, *integrators]:
            thread.start()
        for thread in writers:
            thread.join(timeout=60)
        writers_done.set()
        for thread in integrators:
            thread.join(timeout=60)
        assert errors == []
        log.integrate()

        rows = chain(engine)
        assert [row[0] for row in rows] == list(range(1, 6 * 45 + 10 + 1))
        seen: dict[str, list[int]] = {}
        for row in rows:
            data = json.loads(row[3])
            seen.setdefault(data["site"], []).append(data["n"])
        assert seen == {**{site: list(range(45)) for site in sites}, "-": list(range(10))}
        assert log.verify().ok
        assert log.pending() == (0, None)

    def test_a_site_waits_only_for_itself(self, engine: Engine) -> None:
        """While a transaction of site aurora is open, bosque's writes commit at once, while
        a writer of aurora and cerro and a cluster-wide writer wait until it ends."""
        aurora_open, release = threading.Event(), threading.Event()
        finished: dict[str, float] = {}

        def hold_aurora() -> None:
            with writing(engine, sites={"aurora"}) as conn:
                conn.execute(text("SELECT 1"))
                aurora_open.set()
                release.wait(10)

        def write(name: str, **lock: Any) -> None:
            with writing(engine, **lock) as conn:
                conn.execute(text("SELECT 1"))
            finished[name] = time.monotonic()

        holder = threading.Thread(target=hold_aurora)
        holder.start()
        assert aurora_open.wait(10)
        write("bosque", sites={"bosque"})
        # Started after bosque's: a waiting cluster-wide writer queues every later writer
        # behind it (PostgreSQL grants lock requests in order).
        waiting = [threading.Thread(target=write, args=("aurora",),
                                    kwargs={"sites": {"aurora", "cerro"}}),
                   threading.Thread(target=write, args=("cluster",))]
        for thread in waiting:
            thread.start()
        time.sleep(0.5)  # long enough for a wrongly unblocked writer to finish
        assert set(finished) == {"bosque"}
        released_at = time.monotonic()
        release.set()
        for thread in [holder, *waiting]:
            thread.join(timeout=10)
        assert set(finished) == {"bosque", "aurora", "cluster"}
        assert min(finished["aurora"], finished["cluster"]) >= released_at


class TestFailures:
    def test_a_failed_batch_loses_nothing(self, engine: Engine) -> None:
        """A database error while a batch is integrated (a trigger stands in for a full disk)
        rolls the whole batch back: the chain is as before, every entry still waits, and the
        next integration, once the fault is gone, puts them all in."""
        log = AuditLog(engine, hmac_key=None, checkpoints=None)
        with writing(engine, sites={"aurora"}) as conn:
            for n in range(5):
                log.enqueue(conn, "alert.received", {"n": n})
        log.integrate()
        with writing(engine, sites={"aurora"}) as conn:
            for n in range(5, 12):
                log.enqueue(conn, "alert.received", {"n": n})
        with engine.begin() as conn:
            conn.execute(text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.seq = 9 THEN RAISE EXCEPTION 'could not extend file: No space left "
                "on device'; END IF; RETURN NEW; END $$"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON audit FOR EACH ROW "
                              "EXECUTE FUNCTION refuse()"))
        with pytest.raises(Exception, match="No space left"):
            log.integrate()
        assert [row[0] for row in chain(engine)] == [1, 2, 3, 4, 5]
        assert log.pending()[0] == 7
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse ON audit"))
        assert log.integrate() == 7
        assert [json.loads(row[3])["n"] for row in chain(engine)] == list(range(12))
        assert log.verify().ok

    def test_verify_names_entries_still_waiting(self, engine: Engine, pg_url: str,
                                                tmp_path: Path) -> None:
        """``audit verify`` checks the chain, and says what is not in it yet: entries that
        wait for the sequencer, and that no responder integrated them when they are old."""
        config = config_from_data({"services": {}, "responder": {
            "store_url": pg_url, "audit": {
                "signing_key_file": str(tmp_path / "signing.pem"),
                "checkpoint_file": str(tmp_path / "checkpoints.jsonl")}}})
        log = AuditLog(engine, hmac_key=None, checkpoints=None)
        with writing(engine, sites={"aurora"}) as conn:
            log.enqueue(conn, "alert.received", {"n": 1})
        log.integrate()
        out = io.StringIO()
        assert verify_command(config, out, VerifyOptions()) == 0
        assert "audit chain OK: 1 entries" in out.getvalue()
        assert "not yet in the chain" not in out.getvalue()

        with writing(engine, sites={"aurora"}) as conn:
            log.enqueue(conn, "alert.received", {"n": 2})
            log.enqueue(conn, "alert.received", {"n": 3})
            conn.execute(text("UPDATE audit_pending SET queued_at = queued_at - 600"))
        out = io.StringIO()
        assert verify_command(config, out, VerifyOptions()) == 0
        assert "not yet in the chain: 2 entries waiting for the sequencer" in out.getvalue()
        assert "no responder has integrated them" in out.getvalue()


def storm_body(sites: list[str]) -> dict[str, Any]:
    alerts = [{"status": "firing",
               "labels": {"alertname": "ServiceDown", "service": "redis", "severity": "P2",
                          "site": site},
               "annotations": {}, "startsAt": "2026-12-05T09:00:00Z",
               "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
               "fingerprint": f"{index:016x}"} for index, site in enumerate(sites)]
    return {"version": "4", "receiver": "responder", "status": "firing", "alerts": alerts,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
            "groupKey": "{}:{alertname=\"ServiceDown\"}", "truncatedAlerts": 0}


class TestResponder:
    @pytest.mark.parametrize("sequencer", [True, False])
    def test_processing_locks_what_its_setting_says(self, pg_url: str, tmp_path: Path,
                                                    sequencer: bool) -> None:
        """Alerts of three sites, processed by the journal worker: with the sequencer, the
        batch holds the sites' locks and the chain's lock only while integrating, and its
        entries are in the chain when the batch is done; without it (the single-chain design),
        the batch holds the cluster lock. Either way the chain verifies and nothing waits; the
        responder's metrics show which locks were held."""
        config = config_from_data({
            "services": {"redis": {"tier": "critical"}},
            "responder": {"store_url": pg_url, "token_file": str(tmp_path / "token"),
                          "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                                    "checkpoint_file": str(tmp_path / "checkpoints.jsonl"),
                                    "sequencer": sequencer},
                          "healing": {"kill_switch_file": str(tmp_path / "kill-switch")}}})
        app = closed_after_test(create_app(config, token=TOKEN, start_worker=False))
        state = responder_of(app)
        metrics_before = scrape(app)
        answer = app.test_client().post(
            "/api/v1/alerts", data=json.dumps(storm_body(["aurora", "bosque", "cerro"])),
            headers={"Authorization": f"Bearer {TOKEN}"}, content_type="application/json")
        assert answer.status_code == 200
        assert state.worker.run_once() == 3
        kinds = [row[2] for row in chain(state.journal.engine)]
        assert kinds.count("alert.received") == 3
        assert state.audit.pending() == (0, None)
        process(app)
        assert state.audit.verify().ok
        held = lock_holds(scrape(app), metrics_before)
        if sequencer:
            assert held["site"] > 0 and held["chain"] > 0
        else:
            assert held.get("site", 0) == 0 and held.get("chain", 0) == 0
            assert held["cluster"] > 0


    def test_entries_a_dead_replica_queued_are_integrated_by_another(
            self, pg_url: str, tmp_path: Path) -> None:
        """A replica that committed a batch's queued entries and died before integrating
        them (its transaction is done here by hand, on its own engine): another replica's
        next idle worker round puts them in the chain, and /metrics shows the queue empty."""
        config = config_from_data({
            "services": {}, "responder": {
                "store_url": pg_url, "token_file": str(tmp_path / "token"),
                "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                          "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
                "healing": {"kill_switch_file": str(tmp_path / "kill-switch")}}})
        dead = create_store(pg_url)
        try:
            dead_log = AuditLog(dead, hmac_key=None, checkpoints=None)
            with writing(dead, sites={"aurora"}) as conn:
                for n in range(3):
                    dead_log.enqueue(conn, "alert.received", {"n": n})
        finally:
            dead.dispose()
        app = closed_after_test(create_app(config, token=TOKEN, start_worker=False))
        state = responder_of(app)
        assert state.audit.pending()[0] == 3
        assert "monitoriza_audit_pending_entries 3.0" in scrape(app)
        assert state.worker.run_once() == 0  # nothing to process: an idle round
        assert state.audit.pending() == (0, None)
        assert [json.loads(row[3])["n"] for row in chain(state.journal.engine)] == [0, 1, 2]
        assert "monitoriza_audit_pending_entries 0.0" in scrape(app)
        assert state.audit.verify().ok


def scrape(app: Any) -> str:
    return str(app.test_client().get("/metrics").get_data(as_text=True))


def lock_holds(after: str, before: str) -> dict[str, float]:
    """Seconds each lock was held between two scrapes (the counters are process-wide)."""

    def read(text: str) -> dict[str, float]:
        found = {}
        for line in text.splitlines():
            if line.startswith("monitoriza_store_lock_hold_seconds_total{"):
                lock = line.split('lock="', 1)[1].split('"', 1)[0]
                found[lock] = float(line.rsplit(" ", 1)[1])
        return found

    start = read(before)
    return {lock: seconds - start.get(lock, 0.0) for lock, seconds in read(after).items()}



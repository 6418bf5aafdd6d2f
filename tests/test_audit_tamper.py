"""The audit log on a real store: tampering of every kind is caught at the first bad seq.

A chain of 200 entries, appended 20 per transaction with a signed checkpoint every 10 entries
(so after every transaction, each also recorded in the store), is built once and copied for
each test, which then tampers with it directly in SQL, as someone with write access to the
database could. Tests that take the ``store_url`` fixture run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.exc import DataError, IntegrityError

from monitoriza.audit.chain import GENESIS, StoredRow, canonical_stored, entry_hash, link
from monitoriza.audit.checkpoints import (
    Checkpoints,
    key_fingerprint,
    load_public_key,
    public_key_path,
)
from monitoriza.audit.commands import export_command, parse_since, verify_command
from monitoriza.audit.log import AuditLog
from monitoriza.config import Config, config_from_data
from monitoriza.store import audit, audit_checkpoints, create_store

ENTRIES = 200
PER_TRANSACTION = 20
CHECKPOINT_EVERY = 10
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
COLUMNS = ("seq", "ts", "kind", "data", "prev", "hash")


def config_for(root: Path, store_url: str | None = None, **audit_settings: Any) -> Config:
    return config_from_data({"services": {}, "responder": {
        "store_url": store_url or f"sqlite:///{root / 'store.db'}",
        "audit": {"signing_key_file": str(root / "signing.pem"),
                  "checkpoint_file": str(root / "checkpoints.jsonl"),
                  "checkpoint_every": CHECKPOINT_EVERY, "checkpoint_interval": "1h",
                  **audit_settings}}})


def at(seq: int) -> datetime:
    """The time entry ``seq`` of the template was appended."""
    return START + timedelta(seconds=seq)


def append_entries(log: AuditLog, engine: Engine, first: int, count: int) -> None:
    """Append entries ``first``.. in transactions of PER_TRANSACTION, checkpointing after each."""
    for begin in range(first, first + count, PER_TRANSACTION):
        with engine.begin() as conn:
            for seq in range(begin, min(begin + PER_TRANSACTION, first + count)):
                log.append(conn, "action.finished", {
                    "n": seq, "service": f"svc-{seq % 7}", "outcome": "ok", "note": "ñ 🚨"},
                    now=at(seq))
        log.maybe_checkpoint(now=at(seq))


@dataclass
class Template:
    root: Path  # the keys and the checkpoint file
    rows: list[dict[str, Any]]  # the audit table
    recorded: list[dict[str, Any]]  # the audit_checkpoints table


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The chain, built once; each test gets a copy in its own store, of either backend."""
    root = tmp_path_factory.mktemp("audit-template")
    config = config_for(root)
    engine = create_store(config.responder.store_url)
    try:
        append_entries(AuditLog.from_config(engine, config.responder.audit), engine, 1, ENTRIES)
        with engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(select(audit))]
            recorded = [dict(row._mapping) for row in conn.execute(select(audit_checkpoints))]
    finally:
        engine.dispose()
    (root / "store.db").unlink()
    return Template(root, rows, recorded)


@dataclass
class Store:
    root: Path
    config: Config
    engine: Engine
    log: AuditLog

    def execute(self, *statements: Any) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)

    def row(self, seq: int) -> StoredRow:
        with self.engine.connect() as conn:
            found = conn.execute(select(*audit.c).where(audit.c.seq == seq)).one()
        return tuple(found)

    def set(self, seq: int, /, **values: Any) -> None:
        self.execute(update(audit).where(audit.c.seq == seq).values(**values))

    def shift_after(self, seq: int, by: int) -> None:
        """Renumber the entries after ``seq`` (via negatives, to dodge the primary key)."""
        self.execute(update(audit).where(audit.c.seq > seq).values(seq=-(audit.c.seq + by)),
                     update(audit).where(audit.c.seq < 0).values(seq=-audit.c.seq))


@pytest.fixture
def store(template: Template, tmp_path: Path, store_url: str) -> Iterator[Store]:
    root = tmp_path / "audit"
    shutil.copytree(template.root, root, ignore=shutil.ignore_patterns("store.db*"))
    config = config_for(root, store_url)
    engine = create_store(config.responder.store_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(audit), template.rows)
            conn.execute(insert(audit_checkpoints), [
                {**row, "checkpoint_file": str(root / "checkpoints.jsonl")}
                for row in template.recorded])
        yield Store(root, config, engine, AuditLog.from_config(engine, config.responder.audit))
    finally:
        engine.dispose()


def flip_bit(text: str, position: int, bit: int = 0) -> str:
    return text[:position] + chr(ord(text[position]) ^ (1 << bit)) + text[position + 1:]


def assert_broken(log: AuditLog, seq: int, reason: str) -> None:
    result = log.verify()
    assert not result.ok
    assert (result.first_bad_seq, result.reason) == (seq, reason)
    assert result.entries == seq - 1


class TestIntact:
    """An untouched log verifies and reads back as written."""

    def test_verifies(self, store: Store) -> None:
        """All 200 entries and 20 checkpoints check out."""
        result = store.log.verify()
        assert result.ok, result.reason
        assert (result.entries, result.head_seq, result.checkpoints) == (200, 200, 10)
        assert (result.head_seq, result.head_hash) == store.log.head()

    def test_reads(self, store: Store) -> None:
        """count, head, entries and iter_all agree with each other and with the rows."""
        log = store.log
        assert log.count() == 200
        entries = log.entries()
        assert [entry.seq for entry in entries] == list(range(1, 201))
        assert entries[16].data == {"n": 17, "service": "svc-3", "outcome": "ok", "note": "ñ 🚨"}
        assert entries[16].row == store.row(17)
        assert [entry.seq for entry in log.entries(since_seq=195)] == [196, 197, 198, 199, 200]
        assert [entry.seq for entry in log.entries(since_ts=at(198))] == [198, 199, 200]
        assert [entry.seq for entry in log.entries(since_seq=10, limit=2)] == [11, 12]
        assert list(log.iter_all(batch=7)) == entries

    def test_key_files(self, store: Store) -> None:
        """The signing key is private (0600) and its public key sits next to it."""
        private = store.root / "signing.pem"
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert public_key_path(private).read_text().startswith("-----BEGIN PUBLIC KEY-----")

    def test_checkpoints_need_the_signing_key(self, store: Store) -> None:
        """Checkpoints signed with one key fail verification with another."""
        other = Ed25519PrivateKey.generate().public_key()
        log = AuditLog(store.engine, hmac_key=None,
                       checkpoints=Checkpoints(store.root / "checkpoints.jsonl", other))
        result = log.verify()
        assert not result.ok and result.first_bad_seq is None
        assert result.reason == ("checkpoint file line 1 (seq 20): signature does not verify "
                                 "(another key, or the checkpoint was altered)")

    def test_public_key_is_enough(self, store: Store) -> None:
        """An auditor with only the public key verifies the checkpoints."""
        public = load_public_key(public_key_path(store.root / "signing.pem"))
        log = AuditLog(store.engine, hmac_key=None,
                       checkpoints=Checkpoints(store.root / "checkpoints.jsonl", public))
        assert log.verify().ok
        assert not log.maybe_checkpoint()


class TestTampering:
    """Each kind of tampering is caught, naming the first bad entry."""

    def test_modified_data(self, store: Store) -> None:
        """Changing a value inside data is a hash mismatch at that entry."""
        store.set(17, data=store.row(17)[3].replace('"outcome":"ok"', '"outcome":"failed"'))
        assert_broken(store.log, 17, "entry 17: hash does not match its contents")

    def test_deleted_entry(self, store: Store) -> None:
        """A deleted entry is named as missing."""
        store.execute(delete(audit).where(audit.c.seq == 18))
        assert_broken(store.log, 18, "entry 18: expected seq 18, found 19 (an entry is missing)")

    def test_swapped_contents(self, store: Store) -> None:
        """Two entries' contents swapped (seqs kept) break the link at the first."""
        first, second = store.row(50), store.row(120)
        store.set(50, **dict(zip(COLUMNS[1:], second[1:], strict=True)))
        store.set(120, **dict(zip(COLUMNS[1:], first[1:], strict=True)))
        assert_broken(store.log, 50, "entry 50: prev does not match the hash of entry 49")

    def test_swapped_seqs(self, store: Store) -> None:
        """Two entries renumbered into each other's place are caught at the first."""
        store.execute(update(audit).where(audit.c.seq == 50).values(seq=-1),
                      update(audit).where(audit.c.seq == 120).values(seq=50),
                      update(audit).where(audit.c.seq == -1).values(seq=120))
        assert_broken(store.log, 50, "entry 50: prev does not match the hash of entry 49")

    def test_inserted_entry(self, store: Store) -> None:
        """An entry squeezed in after 100 (the rest renumbered) is caught at 101."""
        after = store.row(100)
        store.shift_after(100, 1)
        forged = (101, after[1], "action.finished", '{"forged":true}', after[5], after[5])
        store.execute(insert(audit).values(dict(zip(COLUMNS, forged, strict=True))))
        assert_broken(store.log, 101, "entry 101: hash does not match its contents")

    def test_inserted_entry_with_recomputed_hash(self, store: Store) -> None:
        """A well-formed forged entry is caught at the next one, which no longer links."""
        after = store.row(100)
        store.shift_after(100, 1)
        forged = link(100, after[5], after[1], "action.finished", '{"forged":true}')
        store.execute(insert(audit).values(dict(zip(COLUMNS, forged, strict=True))))
        assert_broken(store.log, 102, "entry 102: prev does not match the hash of entry 101")

    @pytest.mark.parametrize(("column", "position", "reason"), [
        ("data", 3, "entry 60: hash does not match its contents"),
        ("prev", 10, "entry 60: prev does not match the hash of entry 59"),
        ("hash", 63, "entry 60: hash does not match its contents"),
        ("ts", 18, "entry 60: hash does not match its contents"),
        ("kind", 0, "entry 60: hash does not match its contents"),
    ])
    def test_bit_flip(self, store: Store, column: str, position: int, reason: str) -> None:
        """One flipped bit in any column is caught at that entry."""
        value = store.row(60)[COLUMNS.index(column)]
        assert isinstance(value, str)
        store.set(60, **{column: flip_bit(value, position)})
        assert_broken(store.log, 60, reason)

    def test_bit_flip_into_invalid_utf8(self, store: Store) -> None:
        """A flip that leaves bytes SQLite cannot decode still names the entry. PostgreSQL
        refuses such text, so there the tampering itself fails and the log stays intact."""
        raw = bytearray(store.row(60)[3].encode())
        raw[5] ^= 0x80
        if store.engine.dialect.name == "postgresql":
            with pytest.raises(DataError), store.engine.begin() as conn:
                conn.execute(text("UPDATE audit SET data = convert_from(:raw, 'UTF8') "
                                  "WHERE seq = 60"), {"raw": bytes(raw)})
            assert store.log.verify().ok
            return
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE audit SET data = CAST(? AS TEXT) WHERE seq = 60",
                                 (bytes(raw),))
        result = store.log.verify()
        assert (result.ok, result.first_bad_seq) == (False, 60)
        assert result.reason.startswith("entry 60: malformed stored fields")

    def test_bit_flip_in_seq(self, store: Store) -> None:
        """A seq that jumps (71 → 327, a flipped bit) reads as a missing entry."""
        store.set(71, seq=71 ^ 256)
        assert_broken(store.log, 71, "entry 71: expected seq 71, found 72 (an entry is missing)")

    def test_truncated_tail(self, store: Store) -> None:
        """Cutting the tail leaves a chain that links; only the checkpoints show it."""
        store.execute(delete(audit).where(audit.c.seq > 150))
        assert AuditLog(store.engine, hmac_key=None, checkpoints=None).verify().ok
        assert_broken(store.log, 151, "entry 151: missing, but a signed checkpoint covers seq "
                                      "200; the log was truncated after seq 150")

    def test_rolled_back_and_continued(self, store: Store) -> None:
        """A log cut back to 150 and appended to again differs from the checkpoint at 160."""
        store.execute(delete(audit).where(audit.c.seq > 150))
        with store.engine.begin() as conn:
            for seq in range(151, 206):
                store.log.append(conn, "action.finished", {"n": seq}, now=at(seq))
        assert AuditLog(store.engine, hmac_key=None, checkpoints=None).verify().ok
        assert_broken(store.log, 160, (
            "entry 160: hash differs from the signed checkpoint at seq 160; "
            "the log was rolled back or rewritten after seq 140"))

    def test_forged_checkpoint_is_reported(self, store: Store) -> None:
        """An altered line in the checkpoint file fails verification."""
        path = store.root / "checkpoints.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        lines[3] = lines[3].replace('"seq":80', '"seq":81')
        path.write_text("".join(lines))
        result = store.log.verify()
        assert not result.ok
        assert "line 4 (seq 81): signature does not verify" in result.reason


class TestHmac:
    """With an HMAC key, rewriting the chain needs the key."""

    @pytest.fixture
    def keyed(self, tmp_path: Path, store_url: str) -> Iterator[Store]:
        (tmp_path / "hmac.key").write_bytes(b"s3cret-audit-key\n")
        config = config_for(tmp_path, store_url, hmac_key_file=str(tmp_path / "hmac.key"))
        engine = create_store(config.responder.store_url)
        log = AuditLog.from_config(engine, config.responder.audit)
        try:
            append_entries(log, engine, 1, 40)
            yield Store(tmp_path, config, engine, log)
        finally:
            engine.dispose()

    def test_recomputed_plain_hashes_fail(self, keyed: Store) -> None:
        """Rewriting entry 30 and re-hashing everything after it without the key fails at 30."""
        prev = keyed.row(29)[5]
        for seq in range(30, 41):
            row = keyed.row(seq)
            data = '{"n":0}' if seq == 30 else row[3]
            digest = entry_hash(prev, canonical_stored(seq, row[1], row[2], data, prev))
            keyed.set(seq, data=data, prev=prev, hash=digest)
            prev = digest
        assert_broken(keyed.log, 30, "entry 30: hash does not match its contents")

    def test_wrong_key(self, keyed: Store) -> None:
        """Verifying with another key fails at the first entry."""
        other = AuditLog(keyed.engine, hmac_key=b"another", checkpoints=None)
        result = other.verify()
        assert (result.ok, result.first_bad_seq) == (False, 1)
        assert keyed.log.verify().ok


class TestTransactions:
    """Appends commit or roll back with the caller's transaction, and never fork."""

    def test_rolled_back_transaction_leaves_nothing(self, store: Store) -> None:
        """An append in a transaction that fails is gone, and the next takes its seq."""
        with pytest.raises(RuntimeError), store.engine.begin() as conn:
            entry = store.log.append(conn, "alert.received", {"id": 1})
            assert entry.seq == 201
            assert store.log.head(conn) == (201, entry.hash)
            raise RuntimeError("processing failed")
        assert store.log.count() == 200
        with store.engine.begin() as conn:
            assert store.log.append(conn, "alert.received", {"id": 2}).seq == 201
        assert store.log.verify().ok

    def test_stale_head_is_an_error(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """If two appends ever read the same head, the second fails instead of forking."""
        stale = store.log.head()
        with store.engine.begin() as conn:
            store.log.append(conn, "alert.received", {"id": 1})
        monkeypatch.setattr(store.log, "_lock_head", lambda conn: stale)
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            store.log.append(conn, "alert.received", {"id": 2})
        assert store.log.count() == 201

    def test_concurrent_appends(self, tmp_path: Path, store_url: str) -> None:
        """8 threads appending in their own transactions give contiguous seqs that verify."""
        config = config_for(tmp_path, store_url)
        engine = create_store(config.responder.store_url)
        try:
            log = AuditLog.from_config(engine, config.responder.audit)
            errors: list[BaseException] = []

            def worker(number: int) -> None:
                try:
                    for index in range(15):
                        with engine.begin() as conn:
                            log.append(conn, "action.started", {"thread": number, "i": index})
                        log.maybe_checkpoint()
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert [entry.seq for entry in log.entries()] == list(range(1, 121))
            result = log.verify()
            assert result.ok, result.reason
            assert result.checkpoints >= 12
        finally:
            engine.dispose()


class TestCheckpointWriting:
    """Checkpoints are written when due, once, even with several writers."""

    def test_every_and_interval(self, tmp_path: Path, store_url: str) -> None:
        """Written after 10 new entries, or after the interval with any new entry."""
        config = config_for(tmp_path, store_url)
        engine = create_store(config.responder.store_url)
        try:
            log = AuditLog.from_config(engine, config.responder.audit)
            assert not log.maybe_checkpoint(now=START)  # nothing to checkpoint yet
            append_entries(log, engine, 1, 1)
            assert log.checkpoints is not None
            assert [cp.seq for cp in log.checkpoints.read().checkpoints] == [1]
            with engine.begin() as conn:
                for seq in range(2, 6):
                    log.append(conn, "k", {"n": seq})
            assert not log.maybe_checkpoint(now=at(1) + timedelta(minutes=59))
            assert log.maybe_checkpoint(now=at(1) + timedelta(hours=1))
            assert not log.maybe_checkpoint(now=at(1) + timedelta(hours=5))  # no new entries
            with engine.begin() as conn:
                log.append(conn, "k", {"n": 6})
            assert log.checkpoint(now=at(1) + timedelta(hours=5))  # forced, e.g. on shutdown
            assert not log.checkpoint(now=at(1) + timedelta(hours=5))
        finally:
            engine.dispose()

    def test_processes_share_the_file(self, store: Store) -> None:
        """Two logs (as two processes) do not both checkpoint the same head."""
        other = AuditLog.from_config(store.engine, store.config.responder.audit)
        with store.engine.begin() as conn:
            for seq in range(201, 211):
                store.log.append(conn, "k", {"n": seq}, now=at(seq))
        assert other.maybe_checkpoint(now=at(210))
        assert not store.log.maybe_checkpoint(now=at(210))
        assert store.log.verify().checkpoints == 11

    def test_concurrent_writers_keep_lines_whole(self, tmp_path: Path) -> None:
        """Threads appending checkpoints under the lock leave only valid lines."""
        key = Ed25519PrivateKey.generate()
        path = tmp_path / "checkpoints.jsonl"

        def worker(number: int) -> None:
            writer = Checkpoints(path, key)
            for index in range(20):
                writer.append(number * 100 + index + 1, GENESIS)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report = Checkpoints(path, key.public_key()).read()
        assert report.problem is None
        assert len(report.checkpoints) == 160

    def test_torn_last_line_is_not_continued(self, tmp_path: Path) -> None:
        """After a crash mid-line, the next checkpoint starts on a line of its own."""
        key = Ed25519PrivateKey.generate()
        path = tmp_path / "checkpoints.jsonl"
        path.write_text('{"seq":1,"ha')
        Checkpoints(path, key).append(2, GENESIS)
        lines = path.read_text().splitlines()
        assert lines[0] == '{"seq":1,"ha' and json.loads(lines[1])["seq"] == 2


class TestCommands:
    """``monitoriza audit verify`` and ``export``."""

    def test_verify_ok(self, store: Store) -> None:
        """An intact log prints an OK line and the signing key's fingerprint, and exits 0."""
        out = io.StringIO()
        assert verify_command(store.config, out) == 0
        assert store.log.checkpoints is not None
        assert out.getvalue() == (
            "audit chain OK: 200 entries, head seq 200, 10 checkpoints\n"
            f"signing key {key_fingerprint(store.log.checkpoints.public_key)} "
            f"({store.root / 'signing.pem'})\n")

    def test_verify_broken(self, store: Store) -> None:
        """A tampered log prints where it broke and exits 1."""
        store.set(17, kind="edited")
        out = io.StringIO()
        assert verify_command(store.config, out) == 1
        assert out.getvalue().splitlines()[0] == (
            "audit chain BROKEN at seq 17: entry 17: hash does not match its contents")

    def test_verify_with_the_public_key_only(self, store: Store) -> None:
        """Without the private key, verify uses the public key and creates no new key."""
        (store.root / "signing.pem").unlink()
        out = io.StringIO()
        assert verify_command(store.config, out) == 0
        assert not (store.root / "signing.pem").exists()

    def test_verify_without_keys(self, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
        """Checkpoints that cannot be checked are a usage error, not a pass."""
        (store.root / "signing.pem").unlink()
        public_key_path(store.root / "signing.pem").unlink()
        assert verify_command(store.config, io.StringIO()) == 2
        assert "neither the signing key" in capsys.readouterr().err

    def test_export_all(self, store: Store) -> None:
        """Every entry becomes one JSON line whose hash can be recomputed from the line."""
        out = io.StringIO()
        assert export_command(store.config, None, out) == 0
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [line["seq"] for line in lines] == list(range(1, 201))
        assert set(lines[0]) == {"seq", "ts", "kind", "data", "prev", "hash"}
        prev = GENESIS
        for line in lines:
            body = {key: line[key] for key in ("seq", "ts", "kind", "data", "prev")}
            data_text = json.dumps(body["data"], sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False)
            assert line["prev"] == prev
            assert line["hash"] == entry_hash(prev, canonical_stored(
                line["seq"], line["ts"], line["kind"], data_text, prev))
            prev = line["hash"]

    @pytest.mark.parametrize(("since", "first"), [
        ("seq:190", 191), ("2025-03-01T09:03:15Z", 195), ("2025-03-01T11:03:15+02:00", 195)])
    def test_export_since(self, store: Store, since: str, first: int) -> None:
        """--since seq:N starts after N; an RFC 3339 time starts at it."""
        out = io.StringIO()
        assert export_command(store.config, since, out) == 0
        seqs = [json.loads(line)["seq"] for line in out.getvalue().splitlines()]
        assert seqs == list(range(first, 201))

    def test_export_since_duration(self, store: Store) -> None:
        """--since 7d keeps recent entries only (the template's are from the fixed past)."""
        with store.engine.begin() as conn:
            store.log.append(conn, "recent", {})
        out = io.StringIO()
        assert export_command(store.config, "7d", out) == 0
        assert [json.loads(line)["kind"] for line in out.getvalue().splitlines()] == ["recent"]

    @pytest.mark.parametrize("since", ["yesterday", "seq:-1", "2026-11-24T09:00:00", "7 days"])
    def test_export_bad_since(self, store: Store, since: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
        """A --since that is none of the three forms is a usage error."""
        out = io.StringIO()
        assert export_command(store.config, since, out) == 2
        assert out.getvalue() == ""
        assert "expected a duration (7d)" in capsys.readouterr().err

    def test_parse_since(self) -> None:
        """Each form maps to (since_seq, since_ts)."""
        now = START
        assert parse_since("seq:5", now) == (5, None)
        assert parse_since("90m", now) == (0, now - timedelta(minutes=90))
        assert parse_since("2025-03-01T09:00:00Z", now) == (0, START)


def test_signing_key_is_created_once(tmp_path: Path) -> None:
    """The first process creates the key (0600); later ones load the same key."""
    config = config_for(tmp_path)
    engine = create_store(config.responder.store_url)
    try:
        first = AuditLog.from_config(engine, config.responder.audit)
        second = AuditLog.from_config(engine, config.responder.audit)
        assert first.checkpoints is not None and second.checkpoints is not None
        assert first.checkpoints.public_key == second.checkpoints.public_key
        assert os.stat(tmp_path / "signing.pem").st_mode & 0o077 == 0
        assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]
    finally:
        engine.dispose()

"""Tampering that checkpoints alone did not show: each case makes ``monitoriza audit verify``
exit 1, naming the seq or the checkpoint file's line.

The store records every checkpoint it writes, so a deleted or shortened checkpoint file fails;
a graceful stop checkpoints the head, so the tail cannot be cut or rewritten after it; a pinned
key fingerprint catches a file re-signed with another key; and Prometheus, scraping the head,
catches a rollback or rewrite done consistently to the store, the file and the store's record.
The CLI runs in-process through ``monitoriza.cli.main`` (its argument parsing included) to keep
the suite fast; the responder and Prometheus are the real processes. Every tampering is done
directly in SQL and on the files, as someone with write access to the host could. Tests that
take the ``store_url`` fixture run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import Engine, delete, insert, select, update

from monitoriza.audit.chain import link
from monitoriza.audit.checkpoints import (
    Checkpoint,
    key_fingerprint,
    load_private_key,
    parse_fingerprint,
    public_key_path,
    write_public_key,
)
from monitoriza.audit.log import AuditLog
from monitoriza.audit.metrics import hash_prefix
from monitoriza.audit.witness import Observation, parse_history
from monitoriza.audit.witness import compare as witness_compare
from monitoriza.cli import main
from monitoriza.config import config_from_data
from monitoriza.responder.app import create_app, stop_app
from monitoriza.responder.state import responder_of
from monitoriza.store import audit, audit_checkpoints, audit_pending, create_store, journal
from tests.support.binaries import free_port, wait_until
from tests.support.exposition import promtool_check_metrics, scrape, value
from tests.support.prometheus import PrometheusFactory
from tests.support.responder import TOKEN, fixture_json, post
from tests.support.responder_process import ResponderFactory

ENTRIES = 60
EVERY = 10  # a checkpoint every 10 entries: seqs 10, 20, ..., 60, lines 1 to 6
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
COLUMNS = ("seq", "ts", "kind", "data", "prev", "hash")


def audit_settings(root: Path, **settings: Any) -> dict[str, Any]:
    return {"signing_key_file": str(root / "signing.pem"),
            "checkpoint_file": str(root / "checkpoints.jsonl"), **settings}


def write_config(root: Path, store_url: str) -> Path:
    path = root / "monitoriza.yml"
    path.write_text(yaml.safe_dump({"services": {}, "responder": {
        "store_url": store_url, "token_file": str(root / "token"),
        "audit": audit_settings(root, checkpoint_every=EVERY, checkpoint_interval="1h")}}))
    (root / "token").write_text(TOKEN)
    return path


def verify(config: Path, *options: str) -> tuple[int, str]:
    """``monitoriza audit verify --config CONFIG OPTIONS``: exit status and stdout + stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["audit", "verify", "--config", str(config), *options])
    return status, out.getvalue() + err.getvalue()


def fingerprint_of(public_pem: bytes) -> str:
    """The documented format, computed independently: SHA-256 of the raw 32-byte key (the
    last 32 bytes of its DER SubjectPublicKeyInfo), base64 without padding."""
    der = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der[-32:]).digest()).decode().rstrip("=")


@dataclass
class Store:
    """A store and its checkpoint file, with the tampering an attacker would do."""

    root: Path
    config: Path
    engine: Engine

    @property
    def checkpoint_file(self) -> Path:
        return self.root / "checkpoints.jsonl"

    def execute(self, *statements: Any) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)

    def head(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(audit.c.seq).order_by(audit.c.seq.desc())
                                    .limit(1)).scalar_one())

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.checkpoint_file.read_text().splitlines()]

    def keep_lines(self, keep: Any) -> None:
        self.checkpoint_file.write_text("".join(
            json.dumps(line) + "\n" for line in self.lines() if keep(line)))

    def truncate(self, after: int) -> None:
        """Delete the entries after seq ``after``."""
        self.execute(delete(audit).where(audit.c.seq > after))

    def rewrite(self, seq: int) -> dict[int, str]:
        """Change entry ``seq``'s data and re-hash it and every entry after it, so the chain
        links up again; returns the new hashes."""
        with self.engine.begin() as conn:
            rows = [tuple(row) for row in conn.execute(
                select(*(audit.c[name] for name in COLUMNS)).where(audit.c.seq >= seq - 1)
                .order_by(audit.c.seq))]
            prev_seq, prev_hash = (0, "0" * 64) if seq == 1 else (rows[0][0], rows[0][5])
            hashes = {}
            for old in rows[1:] if seq > 1 else rows:
                data = '{"forged":true}' if old[0] == seq else old[3]
                new = link(prev_seq, prev_hash, old[1], old[2], data)
                conn.execute(update(audit).where(audit.c.seq == old[0]).values(
                    dict(zip(COLUMNS, new, strict=True))))
                prev_seq, prev_hash = new[0], new[5]
                hashes[new[0]] = new[5]
        return hashes

    def resign(self, key: Ed25519PrivateKey, hashes: dict[int, str] | None = None) -> None:
        """Sign every checkpoint line again with ``key``, with the new ``hashes`` if given."""
        hashes = hashes or {}
        self.checkpoint_file.write_text("".join(
            Checkpoint.sign(key, line["seq"], hashes.get(line["seq"], line["hash"]),
                            line["ts"]).to_line() for line in self.lines()))

    def record_hashes(self, hashes: dict[int, str]) -> None:
        """Make the store's record of checkpoints agree with ``hashes``."""
        self.execute(*(update(audit_checkpoints).where(audit_checkpoints.c.seq == seq)
                       .values(hash=digest) for seq, digest in hashes.items()))


@dataclass
class Template:
    root: Path
    tables: dict[str, list[dict[str, Any]]]


def copy_tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        return {table.name: [dict(row._mapping) for row in conn.execute(select(table))]
                for table in (audit, audit_checkpoints)}


def restore_tables(engine: Engine, tables: dict[str, list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        for table in (audit, audit_checkpoints):
            conn.execute(delete(table))
            if tables[table.name]:
                conn.execute(insert(table), tables[table.name])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """60 entries, checkpointed (and recorded) every 10: built once, copied for each test."""
    root = tmp_path_factory.mktemp("witness-template")
    config = config_from_data({"services": {}, "responder": {
        "store_url": f"sqlite:///{root / 'store.db'}",
        "audit": audit_settings(root, checkpoint_every=EVERY, checkpoint_interval="1h")}})
    engine = create_store(config.responder.store_url)
    try:
        log = AuditLog.from_config(engine, config.responder.audit)
        for begin in range(1, ENTRIES + 1, EVERY):
            with engine.begin() as conn:
                for seq in range(begin, begin + EVERY):
                    log.append(conn, "action.finished", {"n": seq},
                               now=START + timedelta(seconds=seq))
            assert log.maybe_checkpoint(now=START + timedelta(seconds=begin + EVERY))
        tables = copy_tables(engine)
    finally:
        engine.dispose()
    (root / "store.db").unlink()
    return Template(root, tables)


@pytest.fixture
def store(template: Template, tmp_path: Path, store_url: str) -> Iterator[Store]:
    root = tmp_path / "audit"
    shutil.copytree(template.root, root)
    engine = create_store(store_url)
    try:
        restore_tables(engine, template.tables)
        with engine.begin() as conn:  # the records name the file where it now is
            conn.execute(update(audit_checkpoints).values(
                checkpoint_file=str(root / "checkpoints.jsonl")))
        yield Store(root, write_config(root, store_url), engine)
    finally:
        engine.dispose()


class TestWitnessCore:
    """What Prometheus saw is paired and compared without I/O."""

    def test_hash_prefix_survives_float64(self) -> None:
        """48 bits round-trip through a float sample exactly, even all ones."""
        assert hash_prefix("f" * 64) == 2**48 - 1 == int(float(2**48 - 1))
        assert hash_prefix("0123456789ab" + "0" * 52) == 0x0123456789AB

    def test_pairs_by_target_and_time(self) -> None:
        """Seq and prefix samples of one scrape pair up; a lone seq sample has no prefix."""
        labels = {"__name__": "x", "instance": "a:1", "job": "responder"}
        found = parse_history(
            [{"metric": labels, "values": [[100.0, "5"], [101.0, "6"]]}],
            [{"metric": labels, "values": [[100.0, "4096"]]}])
        assert found == [Observation(5, 4096, 100.0, '{instance="a:1",job="responder"}'),
                         Observation(6, None, 101.0, '{instance="a:1",job="responder"}')]

    def test_rollback_before_rewrite(self) -> None:
        """A seq the store lacks is named with when it was first seen; otherwise the lowest
        differing pair; matching history is no finding."""
        hashes = {1: "a" * 64, 2: "b" * 64}
        ok = [Observation(1, hash_prefix("a" * 64), 10.0, "{}"),
              Observation(2, hash_prefix("b" * 64), 11.0, "{}")]
        assert witness_compare(ok, hashes, 2) is None
        later = [*ok, Observation(4, 1, 13.0, "{}"), Observation(4, 1, 12.0, "{}")]
        finding = witness_compare(later, hashes, 2)
        assert finding is not None and finding.seq == 3
        assert "saw head seq 4 at 1970-01-01T00:00:12Z" in finding.reason
        rewritten = [Observation(2, 7, 11.0, "{}"), Observation(1, 9, 10.0, "{}")]
        finding = witness_compare(rewritten, hashes, 2)
        assert finding is not None and finding.seq == 1

    def test_fingerprint_format(self) -> None:
        """SHA256: and 43 base64 characters; parsing accepts only that."""
        key = Ed25519PrivateKey.generate()
        fingerprint = key_fingerprint(key)
        assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fingerprint)
        assert parse_fingerprint(f" {fingerprint} ") == fingerprint
        for bad in ("SHA256:", fingerprint[7:], "MD5:" + fingerprint[7:], fingerprint + "AA"):
            with pytest.raises(ValueError, match="is not a key fingerprint"):
                parse_fingerprint(bad)


class TestRecordedCheckpoints:
    """The store's record of checkpoints catches a checkpoint file deleted or cut short."""

    def test_intact(self, store: Store) -> None:
        """The untouched log verifies and prints the key's fingerprint in its documented
        format."""
        status, output = verify(store.config)
        fingerprint = fingerprint_of(public_key_path(store.root / "signing.pem").read_bytes())
        assert (status, output) == (0, (
            f"audit chain OK: {ENTRIES} entries, head seq {ENTRIES}, 6 checkpoints\n"
            f"signing key {fingerprint} ({store.root / 'signing.pem'})\n"))

    def test_file_deleted_with_the_tail(self, store: Store) -> None:
        """Entries cut off and the checkpoint file deleted: the chain links up, but the store
        recorded checkpoints up to seq 60."""
        store.truncate(45)
        store.checkpoint_file.unlink()
        status, output = verify(store.config)
        assert status == 1
        assert output.startswith(
            f"audit chain BROKEN: checkpoint file {store.checkpoint_file} is missing, but the "
            "store records 6 checkpoints up to seq 60 (written at 2025-03-01T09:01:01")

    def test_file_deleted_with_both_keys(self, store: Store) -> None:
        """With the keys gone too, nothing is left to check the file with: still a failure."""
        store.checkpoint_file.unlink()
        (store.root / "signing.pem").unlink()
        public_key_path(store.root / "signing.pem").unlink()
        status, output = verify(store.config)
        assert status == 1
        assert "is missing, but the store records 6 checkpoints up to seq 60" in output
        assert "signing key: none" in output

    def test_lines_removed_from_seq_k(self, store: Store) -> None:
        """The tail of the file cut from seq 40 on, with the entries after 35: named by the
        file's last line and the first recorded seq it lacks."""
        store.truncate(35)
        store.keep_lines(lambda line: line["seq"] < 40)
        status, output = verify(store.config)
        assert status == 1
        assert output.startswith(
            f"audit chain BROKEN: checkpoint file {store.checkpoint_file} ends at seq 30 "
            "(line 3), but the store records a checkpoint at seq 40")
        assert output.splitlines()[0].endswith("the file was shortened")

    def test_line_removed_in_the_middle(self, store: Store) -> None:
        """One line removed: the seq it held is named."""
        store.keep_lines(lambda line: line["seq"] != 30)
        status, output = verify(store.config)
        assert status == 1
        assert (f"checkpoint file {store.checkpoint_file} has no checkpoint at seq 30"
                in output)

    def test_file_resigned_for_a_rewrite(self, store: Store) -> None:
        """The chain rewritten from seq 25 and the file re-signed with the real key to match:
        the line at seq 30 differs from what the store recorded."""
        hashes = store.rewrite(25)
        store.resign(load_private_key(store.root / "signing.pem"), hashes)
        status, output = verify(store.config)
        assert status == 1
        assert (f"checkpoint file {store.checkpoint_file} line 3 (seq 30) differs from the "
                "checkpoint the store recorded; the file was rewritten") in output

    def test_files_of_other_hosts(self, store: Store) -> None:
        """Checkpoints recorded for another host's file are not asked of this one, and the
        output says where they are."""
        store.execute(insert(audit_checkpoints).values(
            checkpoint_file="/other-host/checkpoints.jsonl", seq=70, hash="0" * 64,
            ts="2025-03-01T09:01:10.000000Z", key_fingerprint="SHA256:x"))
        status, output = verify(store.config)
        assert status == 0
        assert output.splitlines()[2] == (
            "not checked here: /other-host/checkpoints.jsonl, where the store records 1 "
            "checkpoints up to seq 70 (verify it on its host)")

    def test_store_of_an_earlier_release(self, store: Store) -> None:
        """A store that recorded no checkpoints (written before this release) verifies."""
        store.execute(delete(audit_checkpoints))
        assert verify(store.config)[0] == 0


class TestKeyPinning:
    """The key's fingerprint is printed, can be pinned, and the store remembers it."""

    @pytest.fixture
    def resigned(self, store: Store) -> tuple[Store, str, str]:
        """The file re-signed with a new key that also replaces both key files."""
        old = key_fingerprint(load_private_key(store.root / "signing.pem"))
        new_key = Ed25519PrivateKey.generate()
        (store.root / "signing.pem").write_bytes(new_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        write_public_key(new_key, store.root / "signing.pem")
        store.resign(new_key)
        return store, old, key_fingerprint(new_key)

    def test_resigned_without_pinning(self, resigned: tuple[Store, str, str]) -> None:
        """The store recorded which key signed each checkpoint: another key fails."""
        store, old, new = resigned
        status, output = verify(store.config)
        assert status == 1
        assert (f"the checkpoint at seq 10 was signed with key {old}, as the store records, "
                f"but {store.checkpoint_file} is checked with key {new}") in output

    def test_resigned_with_a_pinned_fingerprint(self, resigned: tuple[Store, str, str]) -> None:
        """Pinned, the replaced key fails even when the store's record was edited to match."""
        store, old, new = resigned
        store.execute(update(audit_checkpoints).values(key_fingerprint=new))
        assert verify(store.config)[0] == 0  # the limit without a pin
        status, output = verify(store.config, "--key-fingerprint", old)
        assert status == 1
        assert output.splitlines()[0] == (
            f"audit chain BROKEN: the signing key in use, {new}, does not match the pinned "
            f"fingerprint {old}; the key (and the checkpoints) were replaced")

    def test_pinned_and_matching(self, store: Store) -> None:
        """The right pin passes; a malformed one is a usage error."""
        pin = key_fingerprint(load_private_key(store.root / "signing.pem"))
        assert verify(store.config, "--key-fingerprint", pin)[0] == 0
        status, output = verify(store.config, "--key-fingerprint", "SHA256:abc")
        assert status == 2 and "is not a key fingerprint" in output

    def test_public_key_option(self, store: Store, tmp_path: Path) -> None:
        """--public-key checks with that key instead: the right one passes and is named, any
        other fails at the first line of the file."""
        public = public_key_path(store.root / "signing.pem")
        kept = tmp_path / "auditor.pub"
        shutil.copy(public, kept)
        (store.root / "signing.pem").unlink()
        public.unlink()
        status, output = verify(store.config, "--public-key", str(kept))
        assert status == 0 and output.splitlines()[1].endswith(f"({kept})")
        other = tmp_path / "other.pem"
        write_public_key(Ed25519PrivateKey.generate(), other)
        status, output = verify(store.config, "--public-key", str(public_key_path(other)))
        assert status == 1
        assert "checkpoint file line 1 (seq 10): signature does not verify" in output


def store_head(engine: Engine) -> int:
    with engine.connect() as conn:
        found = conn.execute(select(audit.c.seq).order_by(audit.c.seq.desc()).limit(1)).first()
    return 0 if found is None else int(found[0])


def drained(engine: Engine) -> bool:
    """Every journaled alert processed, and its audit entries in the chain (on PostgreSQL
    they wait in audit_pending until a sequencer integrates them, just after the commit)."""
    with engine.connect() as conn:
        return not (conn.execute(select(journal.c.id).where(journal.c.state != "done")
                                 .limit(1)).first()
                    or conn.execute(select(audit_pending.c.id).limit(1)).first())


def send_alerts(url: str, first: int, count: int) -> None:
    template = fixture_json("firing_single.json")
    for index in range(first, first + count):
        body = json.loads(json.dumps(template))
        body["alerts"][0]["fingerprint"] = f"{index:016x}"
        body["alerts"][0]["labels"]["instance"] = f"node-{index}"
        response = requests.post(f"{url}/api/v1/alerts", json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text


def last_checkpoint(path: Path) -> int:
    return int(json.loads(path.read_text().splitlines()[-1])["seq"])


class TestGracefulStop:
    """A graceful stop checkpoints the head, so the tail after the last periodic checkpoint
    can no longer be cut or rewritten unseen."""

    def test_sigterm_checkpoints_the_head(self, tmp_path: Path, store_url: str,
                                          responder_process: ResponderFactory) -> None:
        """The responder (checkpoints every 1000 entries or 1h: only the first entry's while
        it runs) is stopped with SIGTERM; deleting its last 3 entries, or rewriting its last
        one, then fails at that seq."""
        directory = tmp_path / "responder"
        responder = responder_process(store_url=store_url, audit=audit_settings(
            directory, checkpoint_every=1000, checkpoint_interval="1h"))
        engine = create_store(store_url)
        try:
            send_alerts(responder.url, 0, 12)
            assert wait_until(lambda: drained(engine), 20.0)
            head = store_head(engine)
            assert head >= 12 and last_checkpoint(directory / "checkpoints.jsonl") < head
            responder.stop()
            assert last_checkpoint(directory / "checkpoints.jsonl") == head
            store = Store(directory, responder.config_path, engine)
            assert verify(store.config)[0] == 0
            saved = copy_tables(engine)

            store.truncate(head - 3)
            status, output = verify(store.config)
            assert (status, output.splitlines()[0]) == (1, (
                f"audit chain BROKEN at seq {head - 2}: entry {head - 2}: missing, but a "
                f"signed checkpoint covers seq {head}; the log was truncated after seq "
                f"{head - 3}"))

            restore_tables(engine, saved)
            store.rewrite(head)
            status, output = verify(store.config)
            assert status == 1
            assert output.startswith(f"audit chain BROKEN at seq {head}: entry {head}: hash "
                                     "differs from the signed checkpoint")
        finally:
            engine.dispose()

    @staticmethod
    def app(directory: Path, store_url: str, interval: str) -> Flask:
        """The responder in-process, its threads running, checkpointing every 1000 entries
        or ``interval``."""
        config = config_from_data({"services": {}, "responder": {
            "store_url": store_url, "token_file": str(directory / "token"),
            "audit": audit_settings(directory, checkpoint_every=1000,
                                    checkpoint_interval=interval)}})
        return create_app(config, token=TOKEN)

    @staticmethod
    def receive(app: Flask, first: int, count: int) -> None:
        client = app.test_client()
        body = fixture_json("firing_single.json")
        for index in range(first, first + count):
            body["alerts"][0]["fingerprint"] = f"{index:016x}"
            assert post(client, json.dumps(body)).status_code == 200
        assert wait_until(lambda: drained(responder_of(app).journal.engine), 10.0)

    def test_stop_app(self, tmp_path: Path, store_url: str) -> None:
        """stop_app stops every thread, then checkpoints (and records) the head the periodic
        checkpoints had not reached; calling it again writes nothing more."""
        app = self.app(tmp_path, store_url, "1h")
        state = responder_of(app)
        path = tmp_path / "checkpoints.jsonl"
        try:
            self.receive(app, 0, 5)
            head = state.audit.head()[0]
            assert last_checkpoint(path) < head
            stop_app(app)
            assert last_checkpoint(path) == head
            assert state.audit.recorded_checkpoints()[-1].seq == head
            lines = path.read_text()
            stop_app(app)
            assert path.read_text() == lines
            threads = (state.worker._thread, state.healer._thread, state.verifier._thread)
            assert all(thread is not None and not thread.is_alive() for thread in threads)
        finally:
            stop_app(app)
            state.journal.engine.dispose()

    def test_idle_cadence(self, tmp_path: Path, store_url: str) -> None:
        """With checkpoint_interval 1s, new entries are checkpointed within about a second
        while no more arrive (the idle journal worker asks)."""
        app = self.app(tmp_path, store_url, "1s")
        state = responder_of(app)
        path = tmp_path / "checkpoints.jsonl"
        try:
            self.receive(app, 0, 1)
            self.receive(app, 1, 4)
            head = state.audit.head()[0]
            assert wait_until(lambda: last_checkpoint(path) == head, 3.0)
        finally:
            stop_app(app)
            state.journal.engine.dispose()


class TestPrometheusWitness:
    """Prometheus's history of the head catches what the host's own records cannot."""

    def test_rollback_and_rewrite(self, tmp_path: Path, store_url: str,
                                  responder_process: ResponderFactory,
                                  prometheus_factory: PrometheusFactory) -> None:
        """Prometheus scrapes the real responder (every 250 ms) while two batches of alerts
        arrive (its /metrics passes promtool and shows the head). Rewriting the entry at the
        first batch's head (re-hashed onwards, the file re-signed with the real key, the
        store's record edited) and rolling back to it (the file and the record cut to match)
        both verify without the witness, and fail with it; Prometheus unreachable is exit 2."""
        directory = tmp_path / "responder"
        port = free_port()
        # Prometheus first: it hands new targets to its scrapers only every 5 s. It scrapes
        # 4 times a second so that each head is witnessed soon after it is written.
        prometheus = prometheus_factory({
            "global": {"scrape_interval": "250ms"},
            "scrape_configs": [{"job_name": "responder", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"]}]}]})
        responder = responder_process(port=port, store_url=store_url, audit=audit_settings(
            directory, checkpoint_interval="1s"))
        engine = create_store(store_url)

        def witnessed(seq: int) -> bool:
            found = prometheus.api("query", query="monitoriza_audit_head_seq")["result"]
            return bool(found) and int(float(found[0]["value"][1])) == seq

        try:
            send_alerts(responder.url, 0, 5)
            assert wait_until(lambda: drained(engine), 20.0)
            first = store_head(engine)
            assert wait_until(lambda: witnessed(first), 20.0, interval=0.2)
            send_alerts(responder.url, 5, 5)
            assert wait_until(lambda: drained(engine), 20.0)
            second = store_head(engine)
            assert wait_until(lambda: witnessed(second), 20.0, interval=0.2)
            text = scrape(f"{responder.url}/metrics")
            lint = promtool_check_metrics(text)
            assert lint.returncode == 0, lint.stdout + lint.stderr
            assert value(text, "monitoriza_audit_head_seq", {}) == second
            assert value(text, "monitoriza_audit_head_hash_prefix", {}) == hash_prefix(
                AuditLog(engine, hmac_key=None, checkpoints=None).head()[1])
            responder.stop()
            store = Store(directory, responder.config_path, engine)
            witness = ["--prometheus", prometheus.url, "--prometheus-lookback", "10m"]
            status, output = verify(store.config, *witness)
            assert status == 0, output
            assert output.splitlines()[2].endswith(f"up to seq {second}; the chain holds "
                                                   "every one")
            saved, saved_file = copy_tables(engine), store.checkpoint_file.read_bytes()

            hashes = store.rewrite(first)
            store.resign(load_private_key(directory / "signing.pem"), hashes)
            store.record_hashes(hashes)
            assert verify(store.config)[0] == 0
            status, output = verify(store.config, *witness)
            assert status == 1
            assert re.match(
                rf"audit chain BROKEN at seq {first}: entry {first}: hash differs from the "
                r"head Prometheus saw at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(target "
                r'\{instance="[^"]+",job="responder"\}: hash prefix [0-9a-f]{12}, the '
                rf"chain's {hash_prefix(hashes[first]):012x}\); the log was rewritten at or "
                rf"before seq {first}$", output.splitlines()[0]), output

            restore_tables(engine, saved)
            store.checkpoint_file.write_bytes(saved_file)
            store.truncate(first)
            store.keep_lines(lambda line: line["seq"] <= first)
            store.execute(delete(audit_checkpoints).where(audit_checkpoints.c.seq > first))
            assert verify(store.config)[0] == 0
            status, output = verify(store.config, *witness)
            assert status == 1
            assert re.match(
                rf"audit chain BROKEN at seq {first + 1}: entry {first + 1}: missing, but "
                rf"Prometheus saw head seq {second} at \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ .*; "
                rf"the log was rolled back or truncated after seq {first}$",
                output.splitlines()[0]), output

            status, output = verify(store.config, "--prometheus",
                                    f"http://127.0.0.1:{free_port()}")
            assert status == 2 and "cannot query Prometheus at http://127.0.0.1:" in output
        finally:
            engine.dispose()

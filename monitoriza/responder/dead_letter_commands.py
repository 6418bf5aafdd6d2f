"""``monitoriza journal dead-letters`` and ``monitoriza journal replay``, on the store directly.

They work whether or not a responder is running (as ``monitoriza audit`` does): listing only
reads; replaying puts dead rows back to ``pending`` in one transaction with its
``journal.replayed`` audit entry, and a running responder's worker picks them up within its
idle sleep. Exit status: 0 on success, 2 when the store or the audit key cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitoriza.audit.chain import AuditError
from monitoriza.audit.log import AuditLog, read_hmac_key
from monitoriza.config import Config
from monitoriza.responder.journal import DeadLetter, Journal
from monitoriza.store import create_store, writing

EXIT_OK = 0
EXIT_USAGE = 2
PAGE = 1000


def journal_id(text: str) -> int:
    """``--id``: a journal id, a positive integer."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a journal id (a positive integer)")
    return int(text)


def _safe(text: str) -> str:
    """Printable on any terminal encoding-wise: a lone surrogate is shown escaped."""
    return text.encode("utf-8", "backslashreplace").decode()


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_line(letter: DeadLetter) -> str:
    """One dead letter on one line: id, when, attempts, which alert, why."""
    name = letter.labels.get("alertname")
    alert = " ".join(f"{key}={value}" for key, value in (
        ("alertname", name if isinstance(name, str) and name else "(unnamed)"),
        ("service", letter.labels.get("service")), ("fingerprint", letter.fingerprint),
        ("status", letter.status)) if value)
    error = " ".join((letter.last_error or "-").split())
    return _safe(f"{letter.id}  {_time(letter.dead_lettered_at)}  {letter.attempts} attempts  "
                 f"{alert}  {error}")


def _all(journal: Journal) -> Iterator[DeadLetter]:
    after = 0
    while page := journal.dead_letters(after=after, limit=PAGE):
        yield from page
        after = page[-1].id


def dead_letters_command(config: Config, *, as_json: bool, out: TextIO | None = None) -> int:
    """Print every dead letter, oldest first: one line each, or one JSON object per line."""
    out = out if out is not None else sys.stdout
    count = 0
    try:
        engine = create_store(config.responder.store_url, config.responder.store_timeout)
        try:
            for letter in _all(Journal(engine)):
                count += 1
                # ASCII-escaped JSON: valid whatever the labels hold, on any terminal.
                out.write((json.dumps(letter.document(), sort_keys=True) if as_json
                           else format_line(letter)) + "\n")
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        print(f"journal dead-letters: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not as_json:
        print(f"{count} dead letter{'' if count == 1 else 's'}" + (
            "; after fixing the cause: monitoriza journal replay --config FILE --id N | --all"
            if count else ""), file=out)
    return EXIT_OK


def _audit_log(engine: Engine, config: Config) -> AuditLog:
    """Appends only (the running responder signs checkpoints): the HMAC key if configured."""
    settings = config.responder.audit
    key = read_hmac_key(settings.hmac_key_file) if settings.hmac_key_file else None
    return AuditLog(engine, hmac_key=key, checkpoints=None)


def replay_command(config: Config, ids: list[int] | None, out: TextIO | None = None) -> int:
    """Put the dead letters ``ids`` (all when None) back to pending, audited; print how many."""
    out = out if out is not None else sys.stdout
    try:
        engine = create_store(config.responder.store_url, config.responder.store_timeout)
        try:
            audit = _audit_log(engine, config)
            with writing(engine) as conn:
                replayed = Journal.replay(conn, ids)
                if replayed:
                    audit.append(conn, "journal.replayed", {
                        "ids": replayed, "count": len(replayed), "by": "cli",
                        "requested": "all" if ids is None else "ids"})
        finally:
            engine.dispose()
    except (SQLAlchemyError, AuditError) as exc:
        print(f"journal replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    skipped = sorted(set(ids or ()) - set(replayed))
    print(f"replayed {len(replayed)} journal row{'' if len(replayed) == 1 else 's'}"
          + (f"; not dead letters (ignored): {', '.join(map(str, skipped))}" if skipped else ""),
          file=out)
    return EXIT_OK

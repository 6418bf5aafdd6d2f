"""``monitoriza audit verify`` and ``monitoriza audit export``.

Exit status as for the whole CLI: 0 on success, 1 when the chain is broken, 2 on bad usage or
when the store or a key cannot be read.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitoriza.audit.chain import AuditError
from monitoriza.audit.log import AuditLog
from monitoriza.config import Config
from monitoriza.durations import parse_duration
from monitoriza.exceptions import DurationError
from monitoriza.store import create_store

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2

_SEQ = re.compile(r"^seq:(\d+)$")


def parse_since(text: str, now: datetime) -> tuple[int, datetime | None]:
    """``--since`` as ``(since_seq, since_ts)``.

    ``seq:N`` means the entries after seq N (what an incremental export last saw); ``7d`` the
    entries of the last 7 days; an RFC 3339 time with its offset, the entries from then on.
    ValueError says what was expected.
    """
    match = _SEQ.match(text)
    if match:
        return int(match.group(1)), None
    try:
        return 0, now - timedelta(seconds=parse_duration(text))
    except DurationError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is not None and moment.tzinfo is not None:
        return 0, moment
    raise ValueError(f"--since {text!r}: expected a duration (7d), an RFC 3339 time with its "
                     "offset (2026-11-24T09:00:00Z) or seq:N")


@contextmanager
def _engine(config: Config) -> Iterator[Engine]:
    engine = create_store(config.responder.store_url)
    try:
        yield engine
    finally:
        engine.dispose()


def verify_command(config: Config, out: TextIO | None = None) -> int:
    """Verify the chain and its checkpoints; print one line saying OK or where it broke."""
    out = out if out is not None else sys.stdout
    try:
        with _engine(config) as engine:
            log = AuditLog.from_config(engine, config.responder.audit, read_only=True)
            result = log.verify()
    except (AuditError, SQLAlchemyError) as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result.ok:
        print(f"audit chain OK: {result.entries} entries, head seq {result.head_seq}, "
              f"{result.checkpoints} checkpoints", file=out)
        return EXIT_OK
    where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
    print(f"audit chain BROKEN{where}: {result.reason}", file=out)
    return EXIT_BROKEN


def export_command(config: Config, since: str | None, out: TextIO) -> int:
    """Write the entries (all, or those ``since``) to ``out`` as JSON lines, in seq order.

    Each line is canonical JSON of ``seq, ts, kind, data, prev, hash``, so an auditor can
    recompute every hash from the export alone. Exporting does not verify.
    """
    try:
        since_seq, since_ts = parse_since(since, datetime.now(UTC)) if since else (0, None)
    except ValueError as exc:
        print(f"audit export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _engine(config) as engine:
            log = AuditLog(engine, hmac_key=None, checkpoints=None)
            for entry in log.iter_all(since_seq, since_ts):
                out.write(entry.to_json() + "\n")
    except SQLAlchemyError as exc:
        print(f"audit export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK

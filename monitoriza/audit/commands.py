"""``monitoriza audit verify`` and ``monitoriza audit export``.

Exit status as for the whole CLI: 0 on success, 1 when the chain is broken (or the signing
key is not the pinned one, or Prometheus saw a head the chain contradicts), 2 on bad usage or
when the store, a key or Prometheus cannot be read.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitoriza.audit.chain import AuditError, VerifyResult
from monitoriza.audit.checkpoints import parse_fingerprint
from monitoriza.audit.log import AuditLog
from monitoriza.audit.witness import compare as witness_compare
from monitoriza.audit.witness import fetch_history
from monitoriza.config import Config
from monitoriza.durations import format_duration, parse_duration
from monitoriza.exceptions import DurationError
from monitoriza.store import create_store

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2
# A responder integrates queued entries within a second; older ones mean none is running.
PENDING_STALE_SECONDS = 60.0
DEFAULT_LOOKBACK = 30 * 86400.0  # --prometheus-lookback: 30d

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


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """What ``audit verify`` takes besides the configuration (see docs/audit.md)."""

    public_key: Path | None = None  # check checkpoints with this key, not the configured one
    key_fingerprint: str | None = None  # fail unless the key in use has this fingerprint
    prometheus: str | None = None  # compare with the heads this Prometheus scraped
    lookback: float = DEFAULT_LOOKBACK
    selector: str = ""  # label matchers for the responder's series in Prometheus


def _key_line(log: AuditLog) -> str:
    if log.checkpoints is None:
        return "signing key: none (no checkpoint file and no key to check one)"
    source = f" ({log.checkpoints.key_file})" if log.checkpoints.key_file is not None else ""
    return f"signing key {log.key_fingerprint}{source}"


def _pin_problem(log: AuditLog, pinned: str) -> str | None:
    if log.key_fingerprint is None:
        return (f"the pinned signing key {pinned} is not in use: no key to check the "
                "checkpoints with was found")
    if log.key_fingerprint != pinned:
        return (f"the signing key in use, {log.key_fingerprint}, does not match the pinned "
                f"fingerprint {pinned}; the key (and the checkpoints) were replaced")
    return None


def _verify(log: AuditLog, options: VerifyOptions) -> tuple[VerifyResult, str | None]:
    """The chain and checkpoints, then the witness (the first failure wins), and what the
    witness confirmed."""
    result = log.verify()
    if not result.ok or options.prometheus is None:
        return result, None
    observations = fetch_history(options.prometheus, options.lookback, options.selector)
    head_seq, _ = log.head()
    hashes = log.hashes(sorted({observation.seq for observation in observations}))
    finding = witness_compare(observations, hashes, head_seq)
    if finding is not None:
        return replace(result, ok=False, first_bad_seq=finding.seq, reason=finding.reason), None
    top = max(observation.seq for observation in observations)
    return result, (f"witness: Prometheus at {options.prometheus} saw {len(observations)} "
                    f"heads in the last {format_duration(options.lookback)}, up to seq {top}; "
                    "the chain holds every one")


def verify_command(config: Config, out: TextIO | None = None,
                   options: VerifyOptions | None = None) -> int:
    """Verify the chain, its checkpoints and (with ``options.prometheus``) the witness; print
    whether it is OK or where it broke, then the signing key's fingerprint."""
    out = out if out is not None else sys.stdout
    options = options if options is not None else VerifyOptions()
    if options.key_fingerprint is not None:
        try:
            pinned: str | None = parse_fingerprint(options.key_fingerprint)
        except ValueError as exc:
            print(f"audit verify: --key-fingerprint: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        pinned = None
    try:
        with _engine(config) as engine:
            log = AuditLog.from_config(engine, config.responder.audit, read_only=True,
                                       public_key=options.public_key)
            problem = _pin_problem(log, pinned) if pinned is not None else None
            if problem is not None:
                print(f"audit chain BROKEN: {problem}", file=out)
                print(_key_line(log), file=out)
                return EXIT_BROKEN
            result, witnessed = _verify(log, options)
            elsewhere = log.recorded_elsewhere()
            waiting, oldest = log.pending()
    except (AuditError, SQLAlchemyError) as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result.ok:
        print(f"audit chain OK: {result.entries} entries, head seq {result.head_seq}, "
              f"{result.checkpoints} checkpoints", file=out)
    else:
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        print(f"audit chain BROKEN{where}: {result.reason}", file=out)
    print(_key_line(log), file=out)
    for path, count, last in elsewhere:
        print(f"not checked here: {path}, where the store records {count} checkpoints up to "
              f"seq {last} (verify it on its host)", file=out)
    if witnessed is not None:
        print(witnessed, file=out)
    if waiting:
        print(_pending_line(waiting, oldest, time.time()), file=out)
    return EXIT_OK if result.ok else EXIT_BROKEN


def _pending_line(waiting: int, oldest: float | None, now: float) -> str:
    """Entries queued by processing are in no chain, so nothing above checked them."""
    age = 0.0 if oldest is None else max(0.0, now - oldest)
    line = (f"not yet in the chain: {waiting} entries waiting for the sequencer, the oldest "
            f"queued {age:.1f}s ago")
    if age > PENDING_STALE_SECONDS:
        line += " (no responder has integrated them: is one running?)"
    return line


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

"""Audit chain verification speed, against a raw-hashing baseline measured in the same run.

Builds N entries (default 200,000) in a temporary SQLite store, inserted in a few big
transactions, with a signed checkpoint every 100 entries (the default ``checkpoint_every``),
then times :meth:`AuditLog.verify` — streaming the rows from the store, rebuilding every
entry's canonical bytes, hashing, linking, and checking the signed checkpoints. The baseline
hashes the same messages with ``hashlib.sha256`` in a plain loop, with no store and no
checks: it is the floor that any verifier in Python has to pay. Target: verify ≥ 100,000
entries/s.

Usage: python benchmarks/audit.py [--entries 200000] [--repeat 3] [--hmac] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, insert

from monitoriza.audit.chain import (
    DOMAIN,
    GENESIS,
    StoredRow,
    canonical_data,
    canonical_stored,
    format_ts,
    link,
    verify_chain,
)
from monitoriza.audit.checkpoints import Checkpoint, Checkpoints
from monitoriza.audit.log import AuditLog
from monitoriza.store import audit, create_store

TARGET_PER_SECOND = 100_000
INSERT_BATCH = 50_000
CHECKPOINT_EVERY = 100
_FIELDS = ("seq", "ts", "kind", "data", "prev", "hash")
_KINDS = ("alert.received", "action.started", "action.finished", "breaker.opened")


def build_rows(count: int, key: bytes | None) -> list[StoredRow]:
    """``count`` linked rows shaped like the responder's entries."""
    start = datetime(2026, 11, 24, tzinfo=UTC)
    rows: list[StoredRow] = []
    seq, prev = 0, GENESIS
    for index in range(count):
        data = canonical_data({
            "service": f"svc-{index % 500:04d}",
            "alertname": "ServiceDown",
            "fingerprint": f"{index * 2654435761 % 2**64:016x}",
            "action": "restart",
            "attempt": index % 3,
            "labels": {"severity": "critical", "tier": "standard", "team": "plataforma"},
            "outcome": "ok" if index % 7 else "failed: timeout after 30s",
        })
        ts = format_ts(start + timedelta(milliseconds=index * 250))
        row = link(seq, prev, ts, _KINDS[index % len(_KINDS)], data, key=key)
        rows.append(row)
        seq, prev = row[0], row[5]
    return rows


def fill_store(engine: Engine, rows: list[StoredRow]) -> None:
    for begin in range(0, len(rows), INSERT_BATCH):
        with engine.begin() as conn:
            conn.execute(insert(audit), [dict(zip(_FIELDS, row, strict=True))
                                         for row in rows[begin:begin + INSERT_BATCH]])


def write_checkpoints(path: Path, key: Ed25519PrivateKey, rows: list[StoredRow]) -> int:
    """A signed checkpoint every CHECKPOINT_EVERY entries, written in one go."""
    lines = [Checkpoint.sign(key, row[0], row[5], row[1]).to_line()
             for row in rows[CHECKPOINT_EVERY - 1::CHECKPOINT_EVERY]]
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def best_and_median(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return min(times), statistics.median(times)


def run(count: int, repeat: int, key: bytes | None) -> dict[str, float | int | bool]:
    rows = build_rows(count, key)
    messages = [DOMAIN + row[4].encode() + canonical_stored(*row[:5]) for row in rows]
    with tempfile.TemporaryDirectory(prefix="monitoriza-audit-bench-") as directory:
        engine = create_store(f"sqlite:///{directory}/audit.db")
        try:
            fill_store(engine, rows)
            signing_key = Ed25519PrivateKey.generate()
            checkpoint_path = Path(directory) / "checkpoints.jsonl"
            checkpoints = write_checkpoints(checkpoint_path, signing_key, rows)
            checker = Checkpoints(checkpoint_path, signing_key.public_key())
            log = AuditLog(engine, hmac_key=key, checkpoints=checker)
            result = log.verify()
            if not result.ok or result.entries != count:
                raise SystemExit(f"verify failed on an untampered chain: {result.reason}")
            verify_best, verify_median = best_and_median(log.verify, repeat)
            signatures_best, _ = best_and_median(checker.read, repeat)
        finally:
            engine.dispose()

    def chain_in_memory() -> None:
        assert verify_chain(rows, key).ok

    def baseline() -> None:
        sha256 = hashlib.sha256
        for message in messages:
            sha256(message).hexdigest()

    memory_best, _ = best_and_median(chain_in_memory, repeat)
    baseline_best, baseline_median = best_and_median(baseline, repeat)
    verify_rate = count / verify_best
    return {
        "entries": count,
        "checkpoints": checkpoints,
        "hmac": key is not None,
        "verify_seconds": round(verify_best, 4),
        "verify_median_seconds": round(verify_median, 4),
        "verify_entries_per_second": round(verify_rate),
        "verify_chain_in_memory_entries_per_second": round(count / memory_best),
        "checkpoint_signatures_seconds": round(signatures_best, 4),
        "baseline_sha256_entries_per_second": round(count / baseline_best),
        "baseline_median_seconds": round(baseline_median, 4),
        "ratio_verify_to_baseline": round(baseline_best / verify_best, 3),
        "target_entries_per_second": TARGET_PER_SECOND,
        "target_met": verify_rate >= TARGET_PER_SECOND,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hmac", action="store_true", help="hash with HMAC-SHA256 and a key")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = run(args.entries, args.repeat, b"benchmark-hmac-key" if args.hmac else None)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    count = results["entries"]
    print(f"{count:,} entries, {results['checkpoints']} checkpoints, "
          f"{'HMAC-SHA256' if results['hmac'] else 'SHA-256'}, best of {args.repeat}")
    print(f"{'measure':<42} {'seconds':>9} {'entries/s':>12}")
    for label, rate in (
        ("AuditLog.verify() (SQLite, checkpoints)", results["verify_entries_per_second"]),
        ("verify_chain(), rows in memory", results["verify_chain_in_memory_entries_per_second"]),
        ("baseline: hashlib.sha256 loop, no DB", results["baseline_sha256_entries_per_second"]),
    ):
        print(f"{label:<42} {count / rate:>9.3f} {rate:>12,}")
    print(f"{'  of verify(): checking the signatures':<42} "
          f"{results['checkpoint_signatures_seconds']:>9.3f}")
    print(f"ratio verify / baseline: {results['ratio_verify_to_baseline']} "
          f"(verify takes {1 / float(results['ratio_verify_to_baseline']):.1f}x the raw hashing)")
    verdict = "met" if results["target_met"] else "NOT met"
    print(f"target ≥ {TARGET_PER_SECOND:,} entries/s: {verdict}")


if __name__ == "__main__":
    main()

"""The audit chain's arithmetic: canonical bytes, entry hashes and verification, without I/O.

An entry is ``{seq, ts, kind, data, prev}``. Its canonical form is its JSON with sorted keys, no
insignificant whitespace, in UTF-8 (:func:`canonical`). Its hash is SHA-256 over
``DOMAIN ‖ prev ‖ canonical`` (``prev`` as its 64 hex characters), or HMAC-SHA256 over the same
message when a key is configured, so that rewriting the chain needs the key and not only write
access to the store. The first entry's ``prev`` is :data:`GENESIS`.

The store keeps ``data`` as canonical JSON text, so the verifier builds an entry's canonical
bytes by concatenating stored text (:func:`canonical_stored`) instead of parsing and
re-serialising it; the result is byte-identical to :func:`canonical` of the parsed entry. The
concatenation cannot be ambiguous: ``kind``, ``prev`` and ``ts`` are JSON-escaped, so for bytes
that are valid JSON (every entry the log itself wrote) only one split into fields exists.

Signed checkpoints of the head (seq → hash, kept outside the store) are passed to
:func:`verify_chain` as anchors: a stored hash that differs from a checkpoint's is a rollback
or a rewrite, and a checkpoint beyond the last entry is a truncation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

# The C string encoder json.dumps(ensure_ascii=False) itself uses, so the fast path matches it.
from json.encoder import encode_basestring

from monitoriza.exceptions import MonitorizaError

GENESIS = "0" * 64
DOMAIN = b"monitoriza.audit.v1\x00"
MAX_KIND_LENGTH = 64  # the store's column width

_DOMAIN_TEXT = DOMAIN.decode("ascii")

# One stored row: seq, ts, kind, data (canonical JSON text), prev, hash.
StoredRow = tuple[int, str, str, str, str, str]


class AuditError(MonitorizaError):
    """The audit log cannot be written or read as asked (bad entry, unreadable key...)."""


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def canonical(entry: Mapping[str, object]) -> bytes:
    """The canonical bytes of ``entry``: sorted keys, no whitespace, UTF-8, no NaN."""
    return _dumps(dict(entry)).encode()


def canonical_data(data: Mapping[str, object]) -> str:
    """``data`` as the canonical JSON text the store keeps.

    Serialised twice so that what is stored is canonical for what a reader parses back: JSON
    turns non-string keys into strings, which may sort differently from the originals.
    """
    try:
        return _dumps(json.loads(_dumps(dict(data))))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit data is not JSON-serialisable: {exc}") from None


def canonical_stored(seq: int, ts: str, kind: str, data_text: str, prev: str) -> bytes:
    """The canonical bytes of a stored entry, from its stored canonical ``data`` text."""
    return ('{"data":' + data_text + ',"kind":' + encode_basestring(kind)
            + ',"prev":' + encode_basestring(prev) + ',"seq":' + str(int(seq))
            + ',"ts":' + encode_basestring(ts) + "}").encode()


def entry_hash(prev_hash: str, canonical_bytes: bytes, key: bytes | None = None) -> str:
    """The hex hash of an entry: SHA-256, or HMAC-SHA256 with ``key``, of domain, prev, bytes."""
    message = DOMAIN + prev_hash.encode() + canonical_bytes
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.digest(key, message, "sha256").hex()


def format_ts(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with microseconds: ``2026-11-24T09:15:02.000250Z``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AuditError(f"audit timestamps need a time zone, got naive {moment.isoformat()}")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def link(prev_seq: int, prev_hash: str, ts: str, kind: str, data_text: str, *,
         key: bytes | None = None) -> StoredRow:
    """The row that follows ``(prev_seq, prev_hash)`` with the given contents."""
    seq = prev_seq + 1
    digest = entry_hash(prev_hash, canonical_stored(seq, ts, kind, data_text, prev_hash), key)
    return seq, ts, kind, data_text, prev_hash, digest


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the chain, with its stored canonical ``data`` text.

    ``data_text`` is computed from ``data`` when not given; entries read from the store carry
    the stored text, which is what their hash covers.
    """

    seq: int
    ts: str
    kind: str
    data: Mapping[str, object] = field(hash=False)
    prev: str
    hash: str
    data_text: str = ""

    def __post_init__(self) -> None:
        if not self.data_text:
            object.__setattr__(self, "data_text", canonical_data(self.data))

    @classmethod
    def from_row(cls, row: StoredRow) -> AuditEntry:
        """Parse a stored row (its ``data`` JSON is decoded once, here)."""
        seq, ts, kind, data_text, prev, digest = row
        return cls(seq, ts, kind, json.loads(data_text), prev, digest, data_text)

    @property
    def row(self) -> StoredRow:
        return self.seq, self.ts, self.kind, self.data_text, self.prev, self.hash

    def canonical(self) -> bytes:
        """The bytes this entry's hash covers (after the domain and ``prev``)."""
        return canonical_stored(self.seq, self.ts, self.kind, self.data_text, self.prev)

    def to_json(self) -> str:
        """The entry with its hash as one canonical JSON line (no newline), for export."""
        return ('{"data":' + self.data_text + ',"hash":' + encode_basestring(self.hash)
                + ',"kind":' + encode_basestring(self.kind)
                + ',"prev":' + encode_basestring(self.prev) + ',"seq":' + str(self.seq)
                + ',"ts":' + encode_basestring(self.ts) + "}")


def _hmac_pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after HMAC's inner and outer key blocks (RFC 2104)."""
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return (hashlib.sha256(bytes(byte ^ 0x36 for byte in key)),
            hashlib.sha256(bytes(byte ^ 0x5C for byte in key)))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What a verification found; on failure, ``first_bad_seq`` and ``reason`` say where.

    ``entries`` counts the entries that verified; ``head_seq`` and ``head_hash`` are those of
    the last one (0 and GENESIS when none did). ``first_bad_seq`` is None when the problem is
    not an entry (a checkpoint that does not verify).
    """

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str
    head_seq: int
    head_hash: str
    checkpoints: int = 0


def _missing(expected: int, found: object) -> str:
    if not isinstance(found, int) or isinstance(found, bool):
        detail = "not a sequence number"
    elif found == expected + 1:
        detail = "an entry is missing"
    elif found > expected:
        detail = f"entries {expected} to {found - 1} are missing"
    else:
        detail = "entries are out of order or repeated"
    return f"entry {expected}: expected seq {expected}, found {found!r} ({detail})"


def verify_chain(  # noqa: PLR0911 - one return per way an entry can be bad
    rows: Iterable[StoredRow],
    key: bytes | None = None,
    *,
    checkpoints: Mapping[int, str] | None = None,
) -> VerifyResult:
    """Check ``rows`` (in seq order) link up from GENESIS; stop at the first bad entry.

    ``checkpoints`` maps seq → hash from signed checkpoints: a stored hash that differs is a
    rollback or rewrite, a checkpoint beyond the last entry a truncation.
    """
    anchors = checkpoints or {}
    sha256 = hashlib.sha256
    inner_pad, outer_pad = _hmac_pads(key if key is not None else b"")
    enc = encode_basestring
    expected = 1
    last_hash = GENESIS
    anchored = 0  # the last seq a checkpoint confirmed

    def broken(seq: int, reason: str) -> VerifyResult:
        return VerifyResult(False, expected - 1, seq, reason, expected - 1, last_hash)

    try:
        for seq, ts, kind, data, prev, stored in rows:
            if seq != expected:
                return broken(expected, _missing(expected, seq))
            if prev != last_hash:
                before = "the genesis hash" if seq == 1 else f"the hash of entry {seq - 1}"
                return broken(seq, f"entry {seq}: prev does not match {before}")
            # canonical_stored inlined; prev equals last_hash, hex, which needs no escaping.
            message = (f'{_DOMAIN_TEXT}{prev}{{"data":{data},"kind":{enc(kind)},"prev":"{prev}"'
                       f',"seq":{seq},"ts":{enc(ts)}}}').encode()
            if key is None:
                digest = sha256(message).hexdigest()
            else:  # HMAC from precomputed pads: twice as fast as hmac.digest per entry
                inner = inner_pad.copy()
                inner.update(message)
                outer = outer_pad.copy()
                outer.update(inner.digest())
                digest = outer.hexdigest()
            if digest != stored:
                return broken(seq, f"entry {seq}: hash does not match its contents")
            if seq in anchors:
                if anchors[seq] != stored:
                    return broken(seq, (
                        f"entry {seq}: hash differs from the signed checkpoint at seq {seq}; "
                        f"the log was rolled back or rewritten after seq {anchored}"))
                anchored = seq
            last_hash = stored
            expected += 1
    except (TypeError, ValueError, AttributeError) as exc:
        return broken(expected, f"entry {expected}: malformed stored fields ({exc})")
    head = expected - 1
    beyond = max(anchors, default=0)
    if beyond > head:
        return broken(head + 1, (
            f"entry {head + 1}: missing, but a signed checkpoint covers seq {beyond}; "
            f"the log was truncated after seq {head}"))
    return VerifyResult(True, head, None, "", head, last_hash)

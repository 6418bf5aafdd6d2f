"""The audit chain's pure core: canonical bytes, hashes, verification and checkpoint policy."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from monitoriza.audit.chain import (
    DOMAIN,
    GENESIS,
    AuditEntry,
    AuditError,
    StoredRow,
    canonical,
    canonical_data,
    canonical_stored,
    entry_hash,
    format_ts,
    link,
    verify_chain,
)
from monitoriza.audit.checkpoints import Checkpoint, check, checkpoint_due

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
TRICKY = ["plain", 'quote " and \\ backslash', "tab\tnewline\n", "ctl \x00\x1f\x7f",
          "ñandú — ünïcödé", "emoji 🚨", "separators \u2028\u2029", "</script>", ""]


def build(count: int, key: bytes | None = None) -> list[StoredRow]:
    """``count`` linked rows with varied contents."""
    rows: list[StoredRow] = []
    seq, prev = 0, GENESIS
    for index in range(count):
        data = canonical_data({"n": index, "service": f"svc-{index % 3}",
                               "note": TRICKY[index % len(TRICKY)]})
        ts = format_ts(START + timedelta(seconds=index))
        row = link(seq, prev, ts, "action.finished", data, key=key)
        rows.append(row)
        seq, prev = row[0], row[5]
    return rows


def with_field(row: StoredRow, index: int, value: object) -> StoredRow:
    changed = list(row)
    changed[index] = value
    return tuple(changed)  # type: ignore[return-value]


def flip_bit(text: str, position: int) -> str:
    """``text`` with the lowest bit of one ASCII character flipped."""
    return text[:position] + chr(ord(text[position]) ^ 1) + text[position + 1:]


class TestCanonical:
    """Entries serialise to one stable byte string."""

    def test_sorted_compact_utf8(self) -> None:
        """Keys are sorted, separators have no spaces, non-ASCII stays UTF-8."""
        entry = {"ts": "t", "seq": 3, "prev": GENESIS, "kind": "k", "data": {"b": 1, "a": "ñ"}}
        assert canonical(entry) == (
            '{"data":{"a":"ñ","b":1},"kind":"k","prev":"' + GENESIS + '","seq":3,"ts":"t"}'
        ).encode()

    def test_key_order_does_not_matter(self) -> None:
        """The same entry built in any key order gives the same bytes."""
        data = {f"key{index}": index for index in range(20)}
        shuffled = dict(random.Random(7).sample(list(data.items()), len(data)))
        assert canonical_data(data) == canonical_data(shuffled)

    def test_nan_is_refused(self) -> None:
        """NaN has no JSON form, so it cannot enter the log."""
        with pytest.raises(AuditError, match="not JSON-serialisable"):
            canonical_data({"value": float("nan")})

    def test_non_string_keys_are_stored_canonically(self) -> None:
        """Integer keys become strings, sorted as a reader will sort them."""
        text = canonical_data(cast(dict[str, object], {10: "a", 9: "b"}))
        assert text == '{"10":"a","9":"b"}'
        assert canonical_data(json.loads(text)) == text

    @pytest.mark.parametrize("text", TRICKY)
    def test_fast_path_matches_canonical(self, text: str) -> None:
        """Concatenating stored text gives exactly canonical() of the parsed entry."""
        data = {"text": text, "nested": {"list": [1, 2.5, None, True, text]}}
        data_text = canonical_data(data)
        expected = canonical({"seq": 12, "ts": text, "kind": text, "data": data, "prev": text})
        assert canonical_stored(12, text, text, data_text, text) == expected

    def test_fast_path_matches_canonical_on_random_entries(self) -> None:
        """Random Unicode in every string field never makes the two paths differ."""
        rng = random.Random(1)

        def word() -> str:
            return "".join(chr(rng.choice([rng.randrange(0, 128), rng.randrange(128, 0x2FFF)]))
                           for _ in range(rng.randrange(0, 12)))

        for seq in range(1, 300):
            data = {word(): word() for _ in range(rng.randrange(0, 5))}
            kind, ts, prev = word(), word(), word()
            expected = canonical({"seq": seq, "ts": ts, "kind": kind, "data": data, "prev": prev})
            assert canonical_stored(seq, ts, kind, canonical_data(data), prev) == expected


class TestTimestamps:
    """Timestamps are RFC 3339 UTC strings with microseconds."""

    def test_format(self) -> None:
        """UTC, microseconds, a Z suffix."""
        assert format_ts(START + timedelta(microseconds=250)) == "2026-11-24T09:00:00.000250Z"

    def test_other_zones_are_converted(self) -> None:
        """An aware time in another zone is written in UTC."""
        moment = datetime(2026, 11, 24, 10, 30, tzinfo=timezone(timedelta(hours=1)))
        assert format_ts(moment) == "2026-11-24T09:30:00.000000Z"

    def test_naive_is_refused(self) -> None:
        """A time without a zone is ambiguous and refused."""
        with pytest.raises(AuditError, match="time zone"):
            format_ts(datetime(2026, 11, 24))


class TestEntryHash:
    """Each hash covers the domain, the previous hash and the canonical bytes."""

    def test_sha256_of_domain_prev_and_bytes(self) -> None:
        """Without a key it is plain SHA-256 of the three, concatenated."""
        body = b'{"x":1}'
        assert entry_hash(GENESIS, body) == hashlib.sha256(
            DOMAIN + GENESIS.encode() + body).hexdigest()

    def test_prev_changes_the_hash(self) -> None:
        """The same contents after a different entry hash differently."""
        assert entry_hash(GENESIS, b"{}") != entry_hash("1" * 64, b"{}")

    def test_hmac_changes_the_hash(self) -> None:
        """With a key it is HMAC-SHA256 of the same message, unlike the plain hash."""
        message = DOMAIN + GENESIS.encode() + b"{}"
        keyed = entry_hash(GENESIS, b"{}", b"secret")
        assert keyed == hmac.new(b"secret", message, "sha256").hexdigest()
        assert keyed != entry_hash(GENESIS, b"{}")
        assert keyed != entry_hash(GENESIS, b"{}", b"other")

    def test_rows_link(self) -> None:
        """Each row's prev is the previous row's hash, from GENESIS."""
        rows = build(3)
        assert rows[0][4] == GENESIS
        assert [row[4] for row in rows[1:]] == [row[5] for row in rows[:-1]]
        assert rows[1][5] == entry_hash(rows[0][5], canonical_stored(*rows[1][:5]))

    def test_entry_round_trip(self) -> None:
        """An entry parsed from its row gives back the row, its bytes and a JSON line."""
        row = build(2)[1]
        entry = AuditEntry.from_row(row)
        assert entry.row == row
        assert entry.data_text == canonical_data(entry.data)
        assert entry.canonical() == canonical_stored(*row[:5])
        line = json.loads(entry.to_json())
        assert line == {"seq": 2, "ts": row[1], "kind": row[2], "data": entry.data,
                        "prev": row[4], "hash": row[5]}


class TestVerifyChain:
    """The verifier accepts an intact chain and names the first bad entry of any other."""

    def test_intact(self) -> None:
        """An untouched chain verifies, reporting its size and head."""
        rows = build(50)
        result = verify_chain(rows)
        assert (result.ok, result.entries, result.head_seq, result.head_hash) == (
            True, 50, 50, rows[-1][5])
        assert result.first_bad_seq is None

    def test_empty(self) -> None:
        """No entries is a valid chain whose head is GENESIS."""
        result = verify_chain([])
        assert (result.ok, result.head_seq, result.head_hash) == (True, 0, GENESIS)

    def test_hmac_needs_the_right_key(self) -> None:
        """A keyed chain verifies with its key only; without it, entry 1 is already bad."""
        rows = build(10, key=b"k1")
        assert verify_chain(rows, b"k1").ok
        for key in (b"k2", None):
            result = verify_chain(rows, key)
            assert (result.ok, result.first_bad_seq) == (False, 1)
            assert result.reason == "entry 1: hash does not match its contents"

    @pytest.mark.parametrize("key", [b"", b"k", b"x" * 64, b"y" * 65, bytes(range(256))])
    def test_hmac_fast_path_matches_hmac(self, key: bytes) -> None:
        """The verifier's precomputed HMAC agrees with the hmac module for any key length."""
        rows = build(3, key=key)
        assert rows[0][5] == hmac.new(key, DOMAIN + GENESIS.encode() + canonical_stored(
            *rows[0][:5]), "sha256").hexdigest()
        assert verify_chain(rows, key).ok
        assert not verify_chain(rows, key + b"!").ok

    def test_modified_field(self) -> None:
        """A changed kind is a hash mismatch at that entry."""
        rows = build(30)
        rows[16] = with_field(rows[16], 2, "action.skipped")
        result = verify_chain(rows)
        assert (result.ok, result.first_bad_seq, result.entries) == (False, 17, 16)
        assert result.reason == "entry 17: hash does not match its contents"
        assert (result.head_seq, result.head_hash) == (16, rows[15][5])

    def test_deleted_entry(self) -> None:
        """A gap names the missing seq."""
        rows = build(30)
        del rows[17]
        result = verify_chain(rows)
        assert result.first_bad_seq == 18
        assert result.reason == "entry 18: expected seq 18, found 19 (an entry is missing)"

    def test_several_deleted(self) -> None:
        """A wider gap names the whole range."""
        rows = build(30)
        del rows[17:20]
        assert verify_chain(rows).reason == (
            "entry 18: expected seq 18, found 21 (entries 18 to 20 are missing)")

    def test_reordered(self) -> None:
        """Two entries swapped are caught at the first of them."""
        rows = build(30)
        rows[9], rows[20] = rows[20], rows[9]
        result = verify_chain(rows)
        assert result.first_bad_seq == 10
        assert "expected seq 10, found 21" in result.reason

    def test_contents_swapped_keeping_seq(self) -> None:
        """Swapping contents but not seqs breaks the link at the first of them."""
        rows = build(30)
        a, b = rows[9], rows[20]
        rows[9], rows[20] = (10, *b[1:]), (21, *a[1:])
        result = verify_chain(rows)
        assert result.first_bad_seq == 10
        assert result.reason == "entry 10: prev does not match the hash of entry 9"

    def test_inserted_entry(self) -> None:
        """An entry inserted (and the rest renumbered) is caught where it was inserted."""
        rows = build(30)
        forged = (14, rows[12][1], "forged", '{"forged":true}', rows[12][5], rows[13][5])
        rows = rows[:13] + [forged] + [(row[0] + 1, *row[1:]) for row in rows[13:]]
        result = verify_chain(rows)
        assert result.first_bad_seq == 14
        assert result.reason == "entry 14: hash does not match its contents"

    def test_inserted_with_a_valid_hash(self) -> None:
        """An insert with a correctly recomputed hash is caught at the next entry."""
        rows = build(30)
        forged = link(12, rows[11][5], rows[11][1], "forged", "{}")
        rows = rows[:12] + [forged] + [(row[0] + 1, *row[1:]) for row in rows[12:]]
        result = verify_chain(rows)
        assert result.first_bad_seq == 14
        assert result.reason == "entry 14: prev does not match the hash of entry 13"

    @pytest.mark.parametrize(("field", "reason"), [
        (3, "entry 8: hash does not match its contents"),
        (4, "entry 8: prev does not match the hash of entry 7"),
        (5, "entry 8: hash does not match its contents"),
        (1, "entry 8: hash does not match its contents"),
    ])
    def test_bit_flip(self, field: int, reason: str) -> None:
        """One flipped bit in data, prev, hash or ts is caught at that entry."""
        rows = build(20)
        rows[7] = with_field(rows[7], field, flip_bit(str(rows[7][field]), 5))
        result = verify_chain(rows)
        assert (result.first_bad_seq, result.reason) == (8, reason)

    def test_first_prev_must_be_genesis(self) -> None:
        """The first entry must link to GENESIS."""
        rows = build(3)
        rows[0] = with_field(rows[0], 4, "1" * 64)
        assert verify_chain(rows).reason == "entry 1: prev does not match the genesis hash"

    def test_malformed_row(self) -> None:
        """A field of the wrong type is reported, not raised."""
        rows = build(5)
        rows[2] = with_field(rows[2], 2, None)
        result = verify_chain(rows)
        assert result.first_bad_seq == 3
        assert result.reason.startswith("entry 3: malformed stored fields")

    def test_only_the_first_problem_is_reported(self) -> None:
        """With several bad entries, the lowest seq is named."""
        rows = build(30)
        rows[25] = with_field(rows[25], 3, "{}")
        rows[4] = with_field(rows[4], 3, "{}")
        assert verify_chain(rows).first_bad_seq == 5


class TestAnchors:
    """Checkpoint hashes catch what the chain alone cannot."""

    def test_matching_checkpoints(self) -> None:
        """Checkpoints that agree with the chain change nothing."""
        rows = build(30)
        assert verify_chain(rows, checkpoints={10: rows[9][5], 30: rows[29][5]}).ok

    def test_truncation(self) -> None:
        """A chain cut after 20 links up, but not with a checkpoint at 25."""
        rows = build(30)
        anchors = {10: rows[9][5], 25: rows[24][5]}
        assert verify_chain(rows[:20]).ok
        result = verify_chain(rows[:20], checkpoints=anchors)
        assert (result.ok, result.first_bad_seq, result.entries) == (False, 21, 20)
        assert result.reason == ("entry 21: missing, but a signed checkpoint covers seq 25; "
                                 "the log was truncated after seq 20")

    def test_rewrite(self) -> None:
        """A chain rebuilt after seq 12 links up, but differs from the checkpoint at 20."""
        rows = build(30)
        anchors = {10: rows[9][5], 20: rows[19][5]}
        rewritten = rows[:12]
        for row in rows[12:]:
            rewritten.append(link(rewritten[-1][0], rewritten[-1][5], row[1], row[2], "{}"))
        assert verify_chain(rewritten).ok
        result = verify_chain(rewritten, checkpoints=anchors)
        assert result.first_bad_seq == 20
        assert result.reason == ("entry 20: hash differs from the signed checkpoint at seq 20; "
                                 "the log was rolled back or rewritten after seq 10")


class TestCheckpointPolicy:
    """Checkpoints are due every N entries, or after an interval with new entries."""

    KEY = Ed25519PrivateKey.generate()

    def last(self, seq: int, at: datetime) -> Checkpoint:
        return Checkpoint.sign(self.KEY, seq, "a" * 64, format_ts(at))

    @pytest.mark.parametrize(("head", "elapsed", "due"), [
        (100, 1.0, False), (109, 59.9, False), (110, 0.0, True), (101, 60.0, True),
        (100, 3600.0, False), (95, 3600.0, False)])
    def test_due(self, head: int, elapsed: float, due: bool) -> None:
        """Due at +10 entries, or at +60 s with at least one new entry; never for none."""
        last = self.last(100, START)
        now = START + timedelta(seconds=elapsed)
        assert checkpoint_due(last, head, now, every=10, interval=60.0) is due

    def test_first(self) -> None:
        """The first checkpoint is due as soon as there is an entry."""
        assert checkpoint_due(None, 1, START, every=10, interval=60.0)
        assert not checkpoint_due(None, 0, START, every=10, interval=60.0)

    def test_signatures(self) -> None:
        """Lines signed with the key verify; with another key, or altered, they do not."""
        lines = [self.last(seq, START).to_line() for seq in (10, 20)]
        assert check(lines, self.KEY.public_key()).problem is None
        other = check(lines, Ed25519PrivateKey.generate().public_key())
        assert other.problem is not None and "line 1 (seq 10): signature does not verify" in (
            other.problem)
        altered = [lines[0], lines[1].replace('"seq":20', '"seq":21')]
        report = check(altered, self.KEY.public_key())
        assert report.problem is not None and "line 2 (seq 21)" in report.problem
        assert report.anchors == {10: "a" * 64}

    def test_garbage_and_forks(self) -> None:
        """An unparsable line and two signed checkpoints disagreeing are both reported."""
        good = self.last(10, START).to_line()
        assert check(["not json", good], self.KEY.public_key()).problem == (
            "checkpoint file line 1: not JSON")
        fork = Checkpoint.sign(self.KEY, 10, "b" * 64, format_ts(START)).to_line()
        problem = check([good, fork], self.KEY.public_key()).problem
        assert problem is not None and "disagree about seq 10" in problem

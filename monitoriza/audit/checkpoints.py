"""Ed25519-signed checkpoints of the audit chain's head, kept in a file outside the store.

A hash chain alone cannot show that its tail was cut off, or that the whole chain was rolled
back to an earlier state and continued: both leave a chain that links up. A checkpoint signs
``(seq, hash, ts)`` of the head at some moment; later, a checkpoint beyond the last entry is a
truncation, and a stored hash that differs from a checkpoint's is a rollback or a rewrite.

The file holds one JSON line per checkpoint, ``{"hash", "seq", "signature", "ts"}`` with the
signature in base64. Several responder processes may append, so every write happens under an
exclusive ``flock`` and is fsynced. Auditors verify with only the public key, which
:func:`write_public_key` puts next to the private one (``<private>.pub``).

The file alone can be deleted or shortened along with the store, so the store also records
every checkpoint written (table ``audit_checkpoints``, with the signing key's fingerprint):
:func:`compare_recorded` fails when a recorded checkpoint is missing from the file or differs,
or was signed by another key. A key is named by :func:`key_fingerprint`, ``SHA256:`` and the
unpadded base64 of the SHA-256 of its 32 raw bytes, which an operator can pin.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from monitoriza.audit.chain import AuditError, canonical, format_ts

CHECKPOINT_DOMAIN = b"monitoriza.audit.checkpoint.v1\x00"
_TAIL_BYTES = 4096  # a checkpoint line is about 200 bytes


class CheckpointError(AuditError):
    """A signing key or the checkpoint file cannot be read or written."""


def signed_message(seq: int, digest: str, ts: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return CHECKPOINT_DOMAIN + canonical({"hash": digest, "seq": seq, "ts": ts})


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of the chain at ``ts``, signed."""

    seq: int
    hash: str
    ts: str
    signature: str  # base64

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, seq: int, digest: str, ts: str) -> Checkpoint:
        signature = key.sign(signed_message(seq, digest, ts))
        return cls(seq, digest, ts, base64.b64encode(signature).decode("ascii"))

    @classmethod
    def parse(cls, line: str) -> Checkpoint:
        """One line of the file; ValueError when it is not a checkpoint."""
        try:
            fields = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError("not JSON") from None
        if not isinstance(fields, dict) or set(fields) != {"seq", "hash", "ts", "signature"}:
            raise ValueError("not a checkpoint (expected seq, hash, ts and signature)")
        seq, digest, ts, signature = (fields[name] for name in ("seq", "hash", "ts", "signature"))
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError("seq is not a positive integer")
        if not all(isinstance(value, str) for value in (digest, ts, signature)):
            raise ValueError("hash, ts and signature must be strings")
        return cls(seq, digest, ts, signature)

    def verifies(self, key: Ed25519PublicKey) -> bool:
        try:
            signature = base64.b64decode(self.signature, validate=True)
            key.verify(signature, signed_message(self.seq, self.hash, self.ts))
        except (InvalidSignature, binascii.Error):
            return False
        return True

    def to_line(self) -> str:
        fields = {"hash": self.hash, "seq": self.seq, "signature": self.signature, "ts": self.ts}
        return canonical(fields).decode() + "\n"

    def time(self) -> datetime | None:
        try:
            moment = datetime.fromisoformat(self.ts)
        except ValueError:
            return None
        return moment if moment.tzinfo is not None else None


def checkpoint_due(last: Checkpoint | None, head_seq: int, now: datetime, *, every: int,
                   interval: float) -> bool:
    """Whether to checkpoint ``head_seq`` now: ``every`` new entries, or ``interval`` seconds
    since the last checkpoint and at least one new entry."""
    if head_seq < 1:
        return False
    if last is None:
        return True
    new = head_seq - last.seq
    if new >= every:
        return True
    written = last.time()
    return new >= 1 and (written is None or (now - written).total_seconds() >= interval)


def key_fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """``SHA256:`` and the unpadded base64 of the SHA-256 of the raw 32-byte public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def parse_fingerprint(text: str) -> str:
    """``text`` as a key fingerprint; ValueError when it is not one."""
    body = text.strip().removeprefix("SHA256:")
    try:
        digest = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        digest = b""
    if not text.strip().startswith("SHA256:") or len(digest) != hashlib.sha256().digest_size:
        raise ValueError(f"{text!r} is not a key fingerprint (expected SHA256: and 43 base64 "
                         "characters, as audit verify prints)")
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class CheckpointReport:
    """The checkpoints whose signatures verify, and the first problem with the file.

    ``lines`` maps each verified checkpoint's seq to its (first) line number in the file.
    """

    checkpoints: list[Checkpoint]
    problem: str | None
    anchors: dict[int, str]
    lines: dict[int, int] = field(default_factory=dict)
    exists: bool = True  # False when the file is missing


def check(lines: Iterable[str], key: Ed25519PublicKey) -> CheckpointReport:
    """Parse and verify every line; the first unparsable line, bad signature or two
    checkpoints disagreeing about one seq is the problem reported."""
    valid: list[Checkpoint] = []
    anchors: dict[int, str] = {}
    numbers: dict[int, int] = {}
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            checkpoint = Checkpoint.parse(line)
        except ValueError as exc:
            problems.append(f"checkpoint file line {number}: {exc}")
            continue
        if not checkpoint.verifies(key):
            problems.append(f"checkpoint file line {number} (seq {checkpoint.seq}): signature "
                            "does not verify (another key, or the checkpoint was altered)")
            continue
        known = anchors.setdefault(checkpoint.seq, checkpoint.hash)
        numbers.setdefault(checkpoint.seq, number)
        if known != checkpoint.hash:
            problems.append(f"checkpoint file line {number}: two signed checkpoints disagree "
                            f"about seq {checkpoint.seq} (the log was forked)")
        valid.append(checkpoint)
    return CheckpointReport(valid, problems[0] if problems else None, anchors, numbers)


@dataclass(frozen=True, slots=True)
class Recorded:
    """A checkpoint as the store recorded it when it was written to the file."""

    seq: int
    hash: str
    ts: str
    key_fingerprint: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Where the store's record of checkpoints and the checkpoint file part ways."""

    seq: int
    reason: str


def compare_recorded(  # noqa: PLR0911 - one return per way the file can differ
    recorded: Iterable[Recorded], report: CheckpointReport | None, path: str | Path,
    fingerprint: str | None,
) -> Mismatch | None:
    """The first recorded checkpoint (in seq order) that the file does not hold as recorded.

    ``report`` is None when the file could not be read at all (it and both keys are
    missing); ``fingerprint`` is that of the key checking the file. Checkpoints in the file
    that the store does not record are fine: a store of an earlier release recorded none, and
    a process may stop between writing the file and recording it.
    """
    ordered = sorted(recorded, key=lambda record: record.seq)
    if not ordered:
        return None
    last = ordered[-1]
    if report is None or not report.checkpoints:
        state = ("is missing" if report is None or not report.exists
                 else "holds no valid checkpoint")
        return Mismatch(ordered[0].seq, (
            f"checkpoint file {path} {state}, but the store records {len(ordered)} "
            f"checkpoints up to seq {last.seq} (written at {last.ts}); the file was deleted "
            "or replaced"))
    for record in ordered:
        if fingerprint is not None and record.key_fingerprint != fingerprint:
            return Mismatch(record.seq, (
                f"the checkpoint at seq {record.seq} was signed with key "
                f"{record.key_fingerprint}, as the store records, but {path} is checked with "
                f"key {fingerprint}; the checkpoints were re-signed with another key"))
        found = report.anchors.get(record.seq)
        if found is None:
            file_last = max(report.anchors)
            if file_last < record.seq:
                return Mismatch(record.seq, (
                    f"checkpoint file {path} ends at seq {file_last} (line "
                    f"{report.lines[file_last]}), but the store records a checkpoint at seq "
                    f"{record.seq} (written at {record.ts}); the file was shortened"))
            return Mismatch(record.seq, (
                f"checkpoint file {path} has no checkpoint at seq {record.seq} (written at "
                f"{record.ts}, as the store records); lines were removed from the file"))
        if found != record.hash:
            return Mismatch(record.seq, (
                f"checkpoint file {path} line {report.lines[record.seq]} (seq {record.seq}) "
                "differs from the checkpoint the store recorded; the file was rewritten"))
    return None


def _last_line(handle: IO[bytes]) -> Checkpoint | None:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - _TAIL_BYTES))
    for line in reversed(handle.read().decode(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            return Checkpoint.parse(line)
    return None


class Checkpoints:
    """The checkpoint file at ``path``, signed with a private key or checked with a public one."""

    def __init__(self, path: str | Path, key: Ed25519PrivateKey | Ed25519PublicKey, *,
                 key_file: str | Path | None = None) -> None:
        """``key_file`` says where ``key`` came from, for messages."""
        self.path = Path(path)
        self.key_file = Path(key_file) if key_file is not None else None
        self._private = key if isinstance(key, Ed25519PrivateKey) else None
        self.public_key = key.public_key() if isinstance(key, Ed25519PrivateKey) else key

    @property
    def can_sign(self) -> bool:
        return self._private is not None

    @contextlib.contextmanager
    def _locked(self, mode: str, lock: int) -> Iterator[IO[bytes]]:
        with open(self.path, mode) as handle:
            fcntl.flock(handle.fileno(), lock)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def append(self, seq: int, digest: str, *, now: datetime | None = None,
               when: Callable[[Checkpoint | None], bool] | None = None) -> Checkpoint | None:
        """Sign and append a checkpoint of ``(seq, digest)``, unless ``when(last)`` says no.

        ``when`` sees the file's last checkpoint under the same lock, so processes that share
        the file do not both write one for the same reason.
        """
        if self._private is None:
            raise CheckpointError(f"cannot write checkpoints to {self.path}: "
                                  "only a public key was given")
        moment = now if now is not None else datetime.now(UTC)
        try:
            with self._locked("a+b", fcntl.LOCK_EX) as handle:
                if when is not None and not when(_last_line(handle)):
                    return None
                checkpoint = Checkpoint.sign(self._private, seq, digest, format_ts(moment))
                size = handle.seek(0, os.SEEK_END)
                torn = size > 0 and not _ends_with_newline(handle, size)
                handle.write((b"\n" if torn else b"") + checkpoint.to_line().encode())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint file {self.path}: {exc}") from None
        return checkpoint

    def last(self) -> Checkpoint | None:
        """The last checkpoint in the file (unverified), or None."""
        try:
            with self._locked("rb", fcntl.LOCK_SH) as handle:
                return _last_line(handle)
        except FileNotFoundError:
            return None

    def read(self) -> CheckpointReport:
        """Every checkpoint, verified with the public key; a missing file has none."""
        try:
            with self._locked("rb", fcntl.LOCK_SH) as handle:
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            return CheckpointReport([], None, {}, exists=False)
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint file {self.path}: {exc}") from None
        return check(text.splitlines(), self.public_key)


def _ends_with_newline(handle: IO[bytes], size: int) -> bool:
    handle.seek(size - 1)
    return handle.read(1) == b"\n"


def public_key_path(private_key_path: str | Path) -> Path:
    """Where the public key of ``private_key_path`` is kept: the same name plus ``.pub``."""
    path = Path(private_key_path)
    return path.with_name(path.name + ".pub")


def _write_new(path: Path, data: bytes, mode: int, *, replace: bool = False) -> bool:
    """Write ``path`` atomically with ``mode``; unless ``replace``, only if it does not exist.

    Returns False when another process created it first (its complete file is kept).
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # atomic, and fails if the file exists
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_public_key(private_key: Ed25519PrivateKey, private_key_path: str | Path) -> Path:
    """Write the public key (PEM) next to the private key, for auditors; return its path."""
    path = public_key_path(private_key_path)
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        if not path.exists() or path.read_bytes() != pem:
            _write_new(path, pem, 0o644, replace=True)
    except OSError as exc:
        raise CheckpointError(f"cannot write public key {path}: {exc}") from None
    return path


def load_private_key(path: str | Path, *, create: bool = False) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PEM); with ``create``, made (mode 0600) if missing."""
    path = Path(path)
    if create and not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            _write_new(path, pem, 0o600)
        except OSError as exc:
            raise CheckpointError(f"cannot create signing key {path}: {exc}") from None
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read signing key {path}: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise CheckpointError(f"signing key {path} is not an Ed25519 key")
    return loaded


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path`` (PEM)."""
    try:
        loaded = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read public key {path}: {exc}") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise CheckpointError(f"public key {path} is not an Ed25519 key")
    return loaded

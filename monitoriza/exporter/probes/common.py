"""Small helpers shared by the probes that log in to a server (Redis, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from monitoriza.exporter.probes.base import ProbeOutcome
from monitoriza.logs import register_secret


def read_password(path: str | None) -> str | None:
    """The password in ``path``, without the trailing newline editors and ``echo`` add."""
    if path is None:
        return None
    password = Path(path).read_text(encoding="utf-8").strip()
    register_secret(password)  # never in a log line, whatever logs it
    return password


def password_file_failure(path: str | None, exc: OSError | UnicodeDecodeError) -> ProbeOutcome:
    """The outcome of a run whose password file cannot be read: our fault, not the target's."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ProbeOutcome.failed("error", f"cannot read password_file {path!r}: {reason}")


def redact(url: str) -> str:
    """``url`` without a password in it, fit for a message that ends up in logs and metrics."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=user + host))


def as_number(value: object) -> float | None:
    """``value`` as a float when it is a number or numeric text; None otherwise (not 0)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str | bytes):
        try:
            return float(value)
        except ValueError:
            return None
    return None

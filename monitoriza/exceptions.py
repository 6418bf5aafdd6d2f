"""Every failure Monitoriza reports has its own exception class, kept here."""

from __future__ import annotations


class MonitorizaError(Exception):
    """Base class for errors Monitoriza raises on purpose."""


class ConfigError(MonitorizaError):
    """The configuration file is missing, unreadable or invalid.

    ``messages`` holds one line per problem, each starting with the offending path
    (``services.backend.probes[0].timeout: must be > 0``), so a user can fix them all at once.
    """

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class DurationError(MonitorizaError, ValueError):
    """A duration string is not in the Prometheus format (``90s``, ``5m``, ``1h30m``)."""

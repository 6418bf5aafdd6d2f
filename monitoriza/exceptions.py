"""The root of Monitoriza's exceptions, and the errors several packages share.

Every failure Monitoriza raises on purpose has its own class deriving from
:class:`MonitorizaError`, so that one ``except MonitorizaError`` catches them all. The errors
shared across packages (configuration, durations) are kept here; an error only one package
raises is defined in the module that raises it, next to the code that explains it (e.g.
``monitoriza.audit.chain.AuditError``, ``monitoriza.report.collect.ReportError``). The only
exceptions outside that tree are control-flow signals that are not failures
(``monitoriza.stack.up.Interrupted``) and private helpers of one module (a leading
underscore). tests/test_exceptions.py holds the package to this rule.
"""

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

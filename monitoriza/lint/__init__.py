"""``monitoriza lint``: find the gaps in a monitoring setup and say how to fix each one.

:func:`lint_command` is the command; :mod:`monitoriza.lint.checks` holds the pure checks and
:mod:`monitoriza.lint.routing` Alertmanager's route matching. See docs/lint.md.
"""

from __future__ import annotations

from monitoriza.lint.checks import ComponentStatus, Finding, run_checks
from monitoriza.lint.run import default_alertmanager_file, lint_command

__all__ = ["ComponentStatus", "Finding", "default_alertmanager_file", "lint_command",
           "run_checks"]

"""Turning the kill switch on and off: the one way every caller does it.

The API (``POST /api/v1/kill-switch``) and the console (``POST /console/healing/kill-switch``)
both call :func:`set_kill_switch`, so the switch's stored setting and its audit entry are
written alike, in one transaction: a switch that changed is always on the record, with who
changed it (``"api"``, ``"console:operator"``). The healer reads it back per action
(:meth:`monitoriza.healing.healer.Healer.kill_switch_on`), together with the kill-switch file.
"""

from __future__ import annotations

from sqlalchemy import Engine

from monitoriza.audit.appender import AuditAppender
from monitoriza.healing import repository
from monitoriza.healing.healer import KILL_SWITCH_SETTING
from monitoriza.store import writing

AUDIT_KIND = "kill_switch"
MAX_REASON = 500  # characters of the reason kept in the audit entry


def set_kill_switch(engine: Engine, audit: AuditAppender, *, enabled: bool, by: str,
                    reason: str = "") -> None:
    """Turn the switch on (``enabled``: no healing action runs) or off, and audit it as done
    ``by`` the named actor. The kill-switch file, when present, keeps healing off whatever
    this says; only removing the file undoes it."""
    with writing(engine) as conn:
        repository.put_setting(conn, KILL_SWITCH_SETTING, "on" if enabled else "off")
        audit.append(conn, AUDIT_KIND, {"enabled": enabled, "by": by,
                                        "reason": reason[:MAX_REASON]})

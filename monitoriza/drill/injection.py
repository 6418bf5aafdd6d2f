"""What a drill did to the estate, as data that outlives the process that did it.

An :class:`Injection` holds everything its restore needs (engine URL, container, processes
killed and the argv that restarts them, ballast path), so a drill process started after a
crash restores the estate from the restore journal alone (``Injection.from_data``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from monitoriza.drill.model import FaultKind
from monitoriza.exceptions import MonitorizaError

#: The faults an injection can do: a dependency outage is done as the dependency's
#: ``container_stop`` (docker probe) or ``process_kill`` (process probe).
INJECTED_FAULTS: tuple[FaultKind, ...] = (
    "container_stop", "container_kill", "container_pause", "crash_loop", "process_kill",
    "disk_fill")


class InjectionRefused(MonitorizaError):  # noqa: N818 - the name drill-run.md gives run.py
    """A fault cannot be injected safely; nothing was done. The message says why and how to
    fix it."""


class InjectionError(MonitorizaError):
    """Injecting a fault failed part-way; what had been done was undone where possible (the
    message says what is left)."""


class RestoreError(MonitorizaError):
    """A restore could not put the estate back; the injection stays pending."""


@dataclass(frozen=True, slots=True)
class Injection:
    """A fault on one service: prepared (``injected_at`` 0) or done (``time.time()`` when it
    took effect). ``details`` is JSON-able and holds all a restore needs."""

    key: str
    service: str
    fault: FaultKind
    target: str
    details: dict[str, Any]
    injected_at: float = 0.0

    @property
    def injected(self) -> bool:
        return self.injected_at > 0

    def with_effect(self, injected_at: float, **details: Any) -> Injection:
        """This injection once done: its time, and what the doing added to ``details``."""
        return replace(self, injected_at=injected_at, details={**self.details, **details})

    def as_data(self) -> dict[str, Any]:
        return {"key": self.key, "service": self.service, "fault": self.fault,
                "target": self.target, "details": copy.deepcopy(self.details),
                "injected_at": self.injected_at}

    @classmethod
    def from_data(cls, data: object) -> Injection:
        """The injection ``as_data`` gave; ``ValueError`` naming the first bad field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an injection is a mapping, not {type(data).__name__}")
        for name in ("key", "service", "target"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise ValueError(f"injection field {name!r} must be a non-empty string")
        fault = data.get("fault")
        if fault not in INJECTED_FAULTS:
            raise ValueError(f"injection field 'fault' must be one of {', '.join(INJECTED_FAULTS)}"
                             f", not {fault!r}")
        details = data.get("details")
        if not isinstance(details, dict):
            raise ValueError("injection field 'details' must be a mapping")
        injected_at = data.get("injected_at", 0.0)
        if isinstance(injected_at, bool) or not isinstance(injected_at, int | float):
            raise ValueError("injection field 'injected_at' must be a number")
        try:
            json.dumps(details)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"injection field 'details' is not JSON-able: {exc}") from None
        return cls(str(data["key"]), str(data["service"]), cast(FaultKind, fault),
                   str(data["target"]), copy.deepcopy(details), float(injected_at))

"""The fault-coverage matrix of a drill run: service by fault kind, each cell what the latest
run proved (pass, late, missed, wrong, aborted), could not run, or never tried.

The run is the results file ``monitoriza drill run`` writes (``drills/drill-run-*.json``,
docs/drills.md); load results are ``monitoriza drill load``'s ``drills/load-FLOW-*.json``.
Reading them (:func:`load_run`, :func:`latest_run`, :func:`latest_loads`) is the only I/O;
:func:`build_matrix` is pure. Every file problem is a :class:`DrillResultsError` naming the
file, so a report never silently drops evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from monitoriza.drill.model import FAULT_KINDS, FaultKind
from monitoriza.exceptions import MonitorizaError

RUN_KIND = "drill-run"
RUN_VERSION = 1

CellState = Literal["pass", "late", "missed", "wrong", "aborted", "not run", "never tested",
                    "n/a"]
RUN_VERDICTS: tuple[CellState, ...] = ("pass", "late", "missed", "wrong", "aborted")
# Worst first: what a cell holding several experiments (dependency outages) shows overall.
SEVERITY_ORDER: tuple[CellState, ...] = ("missed", "wrong", "aborted", "late", "not run",
                                         "never tested", "pass", "n/a")

_STAMP = r"\d{8}T\d{6}Z"
_RUN_FILE = re.compile(rf"^drill-run-({_STAMP})\.json$")
_LOAD_FILE = re.compile(rf"^load-(?P<flow>.+)-(?P<stamp>{_STAMP})\.json$")


class DrillResultsError(MonitorizaError):
    """A drill or load results file cannot be read or is not what it claims; the message
    starts with the file's path."""


@dataclass(frozen=True, slots=True)
class ExperimentKey:
    """``redis:container_stop`` or ``backend:dependency_outage:redis`` taken apart."""

    service: str
    fault: FaultKind
    target: str  # the dependency of an outage; "" for the other faults

    @classmethod
    def parse(cls, key: str) -> ExperimentKey:
        """ValueError saying what is wrong when ``key`` is not an experiment key."""
        parts = key.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"experiment key {key!r} is not SERVICE:FAULT "
                             "(or SERVICE:dependency_outage:DEPENDENCY)")
        if parts[1] not in FAULT_KINDS:
            raise ValueError(f"experiment key {key!r}: unknown fault {parts[1]!r} "
                             f"(known: {', '.join(FAULT_KINDS)})")
        fault = parts[1]
        if (fault == "dependency_outage") != (len(parts) == 3):
            raise ValueError(f"experiment key {key!r}: only dependency_outage names a "
                             "dependency, and it must")
        return cls(parts[0], fault, parts[2] if len(parts) == 3 else "")


@dataclass(frozen=True, slots=True)
class Entry:
    """One experiment of a cell: its state, why, and the measured times (seconds after the
    fault was injected; None when not measured). ``result`` is the CellResult data of the run
    (None when the experiment did not run)."""

    key: str
    service: str
    fault: FaultKind
    target: str
    state: CellState
    reasons: tuple[str, ...]
    detect: float | None
    notify: Mapping[str, float | None]
    heal: float | None
    recover: float | None
    result: Mapping[str, Any] | None

    def times_text(self) -> str:
        """``detect 23.1s, notify oncall 41.0s, heal 58.2s, recover 75.0s`` (measured only)."""
        parts = []
        if self.detect is not None:
            parts.append(f"detect {seconds_text(self.detect)}")
        parts.extend(f"notify {receiver} {seconds_text(value)}"
                     for receiver, value in self.notify.items() if value is not None)
        if self.heal is not None:
            parts.append(f"heal {seconds_text(self.heal)}")
        if self.recover is not None:
            parts.append(f"recover {seconds_text(self.recover)}")
        return ", ".join(parts)

    def as_data(self) -> dict[str, Any]:
        return {"key": self.key, "service": self.service, "fault": self.fault,
                "target": self.target or None, "state": self.state,
                "reasons": list(self.reasons),
                "times": {"detect": self.detect, "notify": dict(self.notify),
                          "heal": self.heal, "recover": self.recover}}


@dataclass(frozen=True, slots=True)
class MatrixCell:
    """One (service, fault kind) of the matrix: no entry when the plan had no such
    experiment, several for the outages of several dependencies."""

    service: str
    fault: FaultKind
    entries: tuple[Entry, ...]

    @property
    def state(self) -> CellState:
        """The worst state of its entries; ``n/a`` without any."""
        if not self.entries:
            return "n/a"
        return min((entry.state for entry in self.entries), key=SEVERITY_ORDER.index)

    def as_data(self) -> dict[str, Any]:
        return {"service": self.service, "fault": self.fault, "state": self.state,
                "entries": [entry.as_data() for entry in self.entries]}


@dataclass(frozen=True, slots=True)
class MatrixRow:
    service: str
    cells: tuple[MatrixCell, ...]  # in FAULT_KINDS order


@dataclass(frozen=True, slots=True)
class Matrix:
    """Rows are the services in plan order, columns the fault kinds of FAULT_KINDS."""

    rows: tuple[MatrixRow, ...]
    faults: tuple[FaultKind, ...] = FAULT_KINDS

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(row.service for row in self.rows)

    def cell(self, service: str, fault: FaultKind) -> MatrixCell:
        """KeyError for a service not in the matrix."""
        for row in self.rows:
            if row.service == service:
                return row.cells[self.faults.index(fault)]
        raise KeyError(service)

    def entries(self, service: str | None = None) -> list[Entry]:
        """Every experiment of the matrix (of ``service`` only, if given), row by row."""
        return [entry for row in self.rows if service is None or row.service == service
                for cell in row.cells for entry in cell.entries]

    def without_pass(self, service: str) -> list[Entry]:
        """The planned experiments of ``service`` the run did not prove."""
        return [entry for entry in self.entries(service) if entry.state != "pass"]

    def counts(self) -> dict[CellState, int]:
        """How many experiments are in each state (worst first, zero counts left out)."""
        states = [entry.state for entry in self.entries()]
        return {state: states.count(state) for state in SEVERITY_ORDER if state in states}

    def as_data(self) -> dict[str, Any]:
        return {"faults": list(self.faults),
                "rows": [{"service": row.service,
                          "cells": [cell.as_data() for cell in row.cells]}
                         for row in self.rows],
                "counts": self.counts()}


def counts_text(matrix: Matrix) -> str:
    """``9 experiments: 1 missed, 2 never tested, 6 pass`` (worst first)."""
    counts = matrix.counts()
    total = sum(counts.values())
    listed = ", ".join(f"{number} {state}" for state, number in counts.items())
    return f"{total} experiments: {listed}" if total else "no experiment"


def seconds_text(value: float) -> str:
    """``23.1s``; whole seconds above 100 s (the drill polls about once a second)."""
    return f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


# -- building the matrix (pure) -------------------------------------------------------------

def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _ran(key: ExperimentKey, cell: Mapping[str, Any]) -> Entry:
    times = cell.get("times") or {}
    notify = times.get("notify") or {}
    return Entry(
        key=str(cell["key"]), service=key.service, fault=key.fault, target=key.target,
        state=cast(CellState, cell["verdict"]),
        reasons=tuple(str(reason) for reason in cell.get("reasons") or ()),
        detect=_number(times.get("detect")),
        notify={str(receiver): _number(value) for receiver, value in notify.items()},
        heal=_number(times.get("heal")), recover=_number(times.get("recover")), result=cell)


def _not_ran(key: ExperimentKey, text: str, state: CellState, reason: str) -> Entry:
    return Entry(key=text, service=key.service, fault=key.fault, target=key.target,
                 state=state, reasons=(reason,) if reason else (), detect=None, notify={},
                 heal=None, recover=None, result=None)


def build_matrix(run: Mapping[str, Any]) -> Matrix:
    """The matrix of a run (as :func:`load_run` returns it).

    Every key of ``run["plan"]`` is an entry: its cell's verdict when it ran, ``not run``
    with the reason when ``run["not_run"]`` names it, ``never tested`` otherwise. A cell or
    refusal of a key outside the plan is shown too (the run did it, so it is evidence).
    DrillResultsError for a key that is not an experiment key."""
    ran = {str(cell["key"]): cell for cell in run.get("cells") or ()}
    refused = {str(item["key"]): item for item in run.get("not_run") or ()}
    keys = list(dict.fromkeys([*map(str, run.get("plan") or ()), *ran, *refused]))
    entries: list[Entry] = []
    for text in keys:
        try:
            key = ExperimentKey.parse(text)
        except ValueError as exc:
            raise DrillResultsError(f"drill run {run.get('drill_id', '?')}: {exc}") from None
        if text in ran:
            entries.append(_ran(key, ran[text]))
        elif text in refused:
            entries.append(_not_ran(key, text, "not run",
                                    str(refused[text].get("reason") or "no reason given")))
        else:
            entries.append(_not_ran(key, text, "never tested", ""))
    services = list(dict.fromkeys(entry.service for entry in entries))
    rows = tuple(MatrixRow(service, tuple(
        MatrixCell(service, fault, tuple(e for e in entries
                                         if e.service == service and e.fault == fault))
        for fault in FAULT_KINDS)) for service in services)
    return Matrix(rows)


# -- reading the files ----------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DrillResultsError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DrillResultsError(f"{path}: not valid JSON: {exc}") from None


def _require_list(path: Path, data: Mapping[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if not isinstance(value, list):
        raise DrillResultsError(f"{path}: {name!r} must be a list, got "
                                f"{type(value).__name__}")
    return value


def _check_keys(path: Path, where: str, items: Sequence[Any],
                required: Sequence[str]) -> None:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DrillResultsError(f"{path}: {where}[{index}] must be an object")
        for name in required:
            if name not in item:
                raise DrillResultsError(f"{path}: {where}[{index}] has no {name!r}")
        if "key" in item:
            try:
                ExperimentKey.parse(str(item["key"]))
            except ValueError as exc:
                raise DrillResultsError(f"{path}: {where}[{index}]: {exc}") from None


def load_run(path: Path) -> dict[str, Any]:
    """A drill run's results file, checked: kind ``drill-run``, version 1, the lists of
    cells, refusals and plan with valid experiment keys and known verdicts.
    DrillResultsError naming ``path`` otherwise."""
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("kind") != RUN_KIND:
        kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise DrillResultsError(f"{path}: not a drill run (kind {kind!r}, expected "
                                f"{RUN_KIND!r})")
    if data.get("version") != RUN_VERSION:
        raise DrillResultsError(f"{path}: drill run version {data.get('version')!r} is not "
                                f"supported (this Monitoriza reads version {RUN_VERSION})")
    cells = _require_list(path, data, "cells")
    _check_keys(path, "cells", cells, ("key", "verdict"))
    for index, cell in enumerate(cells):
        if cell["verdict"] not in RUN_VERDICTS:
            raise DrillResultsError(f"{path}: cells[{index}] has verdict {cell['verdict']!r} "
                                    f"(expected one of {', '.join(RUN_VERDICTS)})")
    _check_keys(path, "not_run", _require_list(path, data, "not_run"), ("key", "reason"))
    plan = _require_list(path, data, "plan")
    _check_keys(path, "plan", [{"key": key} for key in plan], ())
    data.setdefault("blind_spots", [])
    _require_list(path, data, "blind_spots")
    return data


def latest_run(drills_dir: Path) -> Path | None:
    """The newest ``drill-run-YYYYmmddTHHMMSSZ.json`` in ``drills_dir`` (by the time in its
    name), or None when there is none (or no such directory)."""
    if not drills_dir.is_dir():
        return None
    found = [(match.group(1), path) for path in drills_dir.glob("drill-run-*.json")
             if (match := _RUN_FILE.match(path.name))]
    return max(found)[1] if found else None


def latest_load_files(drills_dir: Path) -> dict[str, Path]:
    """The newest ``load-FLOW-YYYYmmddTHHMMSSZ.json`` per flow, flows sorted by name."""
    if not drills_dir.is_dir():
        return {}
    newest: dict[str, tuple[str, Path]] = {}
    for path in drills_dir.glob("load-*.json"):
        match = _LOAD_FILE.match(path.name)
        if match is None:
            continue
        flow, stamp = match.group("flow"), match.group("stamp")
        if flow not in newest or stamp > newest[flow][0]:
            newest[flow] = (stamp, path)
    return {flow: newest[flow][1] for flow in sorted(newest)}


_LOAD_FIELDS = ("flow", "users", "target_rate", "achieved_rate", "runs", "failed_runs",
                "started_at", "steps")


def load_load(path: Path) -> dict[str, Any]:
    """One ``drill load`` results file, checked (the fields the report shows)."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DrillResultsError(f"{path}: not a load drill result (expected an object)")
    missing = [name for name in _LOAD_FIELDS if name not in data]
    if missing:
        raise DrillResultsError(f"{path}: not a load drill result (no {', '.join(missing)})")
    _check_keys(path, "steps", _require_list(path, data, "steps"),
                ("name", "requests", "failures", "percentiles_ms"))
    try:
        summarize_load(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DrillResultsError(f"{path}: not a load drill result: {exc!r}") from None
    return data


def latest_loads(drills_dir: Path) -> dict[str, dict[str, Any]]:
    """The newest load result of each flow in ``drills_dir``, by flow name."""
    return {flow: load_load(path) for flow, path in latest_load_files(drills_dir).items()}


# -- load results ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StepSummary:
    """One step of a load drill: requests, failures and percentiles in ms (None: not run)."""

    name: str
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What the report shows of one flow's latest load drill. ``slo_met`` is None when the
    drill was run without ``--slo``."""

    flow: str
    started_at: float
    users: int
    target_rate: float
    achieved_rate: float
    runs: int
    failed_runs: int
    interrupted: bool
    slo_objectives: str | None
    slo_met: bool | None
    slo_missed: tuple[str, ...]
    steps: tuple[StepSummary, ...]

    @property
    def rate_share(self) -> float | None:
        """The achieved rate as a share of the target (None for a zero target)."""
        return self.achieved_rate / self.target_rate if self.target_rate else None

    def slo_text(self) -> str:
        """``met (p95=300ms,errors=1%)``, ``MISSED (...)`` or ``no SLO given``."""
        if self.slo_met is None:
            return "no SLO given"
        return f"{'met' if self.slo_met else 'MISSED'} ({self.slo_objectives})"


def summarize_load(load: Mapping[str, Any]) -> LoadSummary:
    """A load result (as :func:`load_load` returns it) reduced to what the report shows."""
    slo = load.get("slo")
    steps = tuple(StepSummary(str(step["name"]), int(step["requests"]), int(step["failures"]),
                              *(_number((step.get("percentiles_ms") or {}).get(name))
                                for name in ("p50", "p95", "p99")))
                  for step in load["steps"])
    return LoadSummary(
        flow=str(load["flow"]), started_at=float(load["started_at"]), users=int(load["users"]),
        target_rate=float(load["target_rate"]), achieved_rate=float(load["achieved_rate"]),
        runs=int(load["runs"]), failed_runs=int(load["failed_runs"]),
        interrupted=bool(load.get("interrupted", False)),
        slo_objectives=str(slo["objectives"]) if isinstance(slo, dict) else None,
        slo_met=bool(slo.get("met", not slo.get("missed"))) if isinstance(slo, dict) else None,
        slo_missed=tuple(str(m) for m in slo.get("missed") or ()) if isinstance(slo, dict)
        else (),
        steps=steps)

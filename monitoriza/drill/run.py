"""``monitoriza drill run``: the plan's experiments on the real estate, one at a time.

Safety first (docs/drills.md, "Safety rules"): nothing is injected without ``--yes`` (the plan
is shown instead), nor when an input is bad, Prometheus, Alertmanager or the responder cannot
be reached, or healing is switched off. A fault left by a drill that died (SIGKILL, power) is
restored before anything else, from the restore journal. Each experiment runs through
chaostoolkit-lib's runner (:mod:`monitoriza.drill.export` builds the document): the steady
state outside the blast radius is checked before, during (fail-fast) and after, the rollback
restores whatever happened, Ctrl-C or SIGTERM included. Results go to
``drills/drill-run-TIME.json`` and ``.html`` beside the configuration.

Exit status: 0 every experiment that ran passed (those that cannot run on this estate are
listed, and count as not tested in ``monitoriza report``); 1 one did not (late, missed, wrong,
aborted) or none ran; 2 nothing was injected (bad input, no ``--yes``, a part unreachable,
kill switch on); 130 interrupted (after restoring).
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from monitoriza.config import load_config
from monitoriza.config.schema import Config
from monitoriza.drill import chaos, inject
from monitoriza.drill.background_load import BackgroundLoad, LoadError
from monitoriza.drill.commands import (
    EXIT_BAD_INPUT,
    PLAN_INPUT_ERRORS,
    load_plan,
    plan_error_lines,
    write_text,
)
from monitoriza.drill.drift import route_drift, rule_drift, running_state
from monitoriza.drill.export import DrillSettings, to_chaostoolkit, verdict_of
from monitoriza.drill.matrix import DrillResultsError, build_matrix, latest_loads
from monitoriza.drill.matrix_html import render_html
from monitoriza.drill.model import FAULT_KINDS, DrillPlan, Experiment
from monitoriza.drill.observe import Unreachable, preflight
from monitoriza.drill.pacing import Past, wait_before
from monitoriza.drill.restore_journal import RestoreJournalError
from monitoriza.drill.rules import parse_rule_files
from monitoriza.drill.settle import unhealthy_services
from monitoriza.exceptions import MonitorizaError
from monitoriza.lint.run import read_alertmanager, read_rules

log = logging.getLogger(__name__)

EXIT_PASS = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
HYPOTHESIS_FREQUENCY = 2.0
#: How long to wait for the whole estate to be healthy before an experiment.
STEADY_WAIT_SECONDS = 120.0
TIME_LIMIT_FACTOR = 2.0
TIME_LIMIT_FLOOR = 60.0


class RunInputError(MonitorizaError):
    """A selection or option that names nothing in the plan (exit 2, nothing injected)."""


@dataclass(frozen=True)
class RunOptions:
    config: Path
    rules: Path
    alertmanager: Path
    prometheus_config: Path
    only: tuple[str, ...] = ()
    yes: bool = False
    time_limit: float | None = None
    max_fill_bytes: int = 1 << 30
    out: Path | None = None
    poll_interval: float = 0.5
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    responder_url: str | None = None
    as_json: bool = False
    under_load: str | None = None  # a flow driven by drill load for the whole drill
    load_users: int = 5
    load_rate: float = 2.0
    load_slo: str | None = None


def select(plan: DrillPlan, only: tuple[str, ...]) -> list[Experiment]:
    """The experiments ``--only SERVICE[:FAULT[:TARGET]]`` names (all when empty)."""
    if not only:
        return list(plan.experiments)
    services = list(dict.fromkeys(e.service for e in plan.experiments))
    chosen: list[Experiment] = []
    for item in only:
        service, _, rest = item.partition(":")
        fault, _, target = rest.partition(":")
        if service not in services:
            raise RunInputError(f"--only {item}: no experiment for a service {service!r} "
                                f"(the plan has: {', '.join(services)})")
        if fault and fault not in FAULT_KINDS:
            raise RunInputError(f"--only {item}: unknown fault {fault!r} "
                                f"(fault kinds: {', '.join(FAULT_KINDS)})")
        matching = [e for e in plan.for_service(service)
                    if (not fault or e.fault == fault) and (not target or e.target == target)]
        if not matching:
            offered = ", ".join(e.key for e in plan.for_service(service))
            raise RunInputError(f"--only {item}: {service} has no such experiment "
                                f"(its experiments: {offered})")
        chosen += [e for e in matching if e not in chosen]
    return chosen


def time_limit_of(experiment: Experiment, override: float | None) -> float:
    """Seconds one experiment may run: twice its latest deadline, at least a minute."""
    if override is not None:
        return override
    deadlines = [a.detect.seconds for a in experiment.alerts]
    deadlines += [r.deadline.seconds for a in experiment.alerts for r in a.reaches]
    if experiment.heal:
        deadlines.append(experiment.heal.deadline.seconds)
    return max(TIME_LIMIT_FLOOR, TIME_LIMIT_FACTOR * max(deadlines, default=0.0))


def new_drill_id(now: float) -> str:
    return "drill-" + datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class RunRecord:
    """What the run found, in the shape of the results file (docs/drills.md)."""

    drill_id: str
    config: Path
    plan: list[str]
    started_at: float
    cells: list[dict[str, Any]] = field(default_factory=list)
    not_run: list[dict[str, Any]] = field(default_factory=list)
    restored_at_start: list[str] = field(default_factory=list)
    finished_at: float | None = None
    under_load: dict[str, Any] | None = None
    drift: list[str] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        blind_spots = [spot for cell in self.cells for spot in cell.get("blind_spots", [])]
        return {"kind": "drill-run", "version": 1, "drill_id": self.drill_id,
                "config": str(self.config), "started_at": self.started_at,
                "finished_at": self.finished_at, "plan": self.plan, "cells": self.cells,
                "not_run": self.not_run, "blind_spots": blind_spots,
                "restored_at_start": self.restored_at_start, "under_load": self.under_load,
                "drift": self.drift}


class _Interrupted(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM outside chaostoolkit's runner (which handles its own)."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_chaostoolkit() -> None:
    """chaostoolkit-lib logs every activity (and that rollbacks were requested); the drill prints
    its own lines, and a failed activity is in its results."""
    logging.getLogger("chaostoolkit").setLevel(logging.ERROR)


class DrillRunner:
    """Runs the selected experiments; one instance per ``drill run``."""

    def __init__(self, options: RunOptions, plan: DrillPlan, config: Config, out: TextIO, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.options = options
        self.plan = plan
        self.config = config
        self.out = out
        self.clock = clock
        self.sleep = sleep
        self.history: list[Past] = []
        self.record = RunRecord(new_drill_id(clock()), options.config,
                                [e.key for e in plan.experiments], clock())

    def settings(self, experiment: Experiment) -> DrillSettings:
        o = self.options
        return DrillSettings(
            config=o.config, rules=o.rules, alertmanager_config=o.alertmanager,
            prometheus_config=o.prometheus_config, drill_id=self.record.drill_id,
            time_limit=time_limit_of(experiment, o.time_limit),
            max_fill_bytes=o.max_fill_bytes, poll_interval=o.poll_interval,
            prometheus_url=o.prometheus_url, alertmanager_url=o.alertmanager_url,
            responder_url=o.responder_url)

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def run(self, experiments: list[Experiment]) -> bool:
        """Run them, each experiment whose turn comes first (an experiment waiting for its
        root cause's cooldown or budget lets one on another root cause go ahead); False when
        interrupted (the fault in flight restored)."""
        queue: list[Experiment] = []
        for experiment in experiments:
            try:
                inject.prepare(experiment, self.config,
                               max_fill_bytes=self.options.max_fill_bytes)
            except inject.InjectionRefused as exc:
                self.record.not_run.append({"key": experiment.key, "service": experiment.service,
                                            "fault": experiment.fault, "reason": str(exc)})
                self.say(f"{experiment.key}: not run: {exc}")
                continue
            queue.append(experiment)
        total = len(queue)
        while queue:
            now = self.clock()
            experiment = min(queue, key=lambda e: wait_before(e, self.history, self.config,
                                                              now)[0])
            queue.remove(experiment)
            number = f"[{total - len(queue)}/{total}]"
            if not self._wait_for_turn(experiment):
                continue
            self.say(f"{number} {experiment.key}: injecting {experiment.fault} on "
                     f"{experiment.target} ...")
            cell, interrupted = self._one(experiment)
            self.record.cells.append(cell)
            self.say(f"{number} {experiment.key}: {_summary(cell)}")
            if interrupted:
                return False
        return True

    def _wait_for_turn(self, experiment: Experiment) -> bool:
        seconds, reason = wait_before(experiment, self.history, self.config, self.clock())
        if seconds > 0:
            self.say(f"  waiting {seconds:.0f}s for {reason}")
            self.sleep(seconds)
        services = set(self.config.services)
        end = self.clock() + STEADY_WAIT_SECONDS
        problem = unhealthy_services(self._endpoints(), services, set())
        while problem and self.clock() < end:
            self.sleep(1.0)
            problem = unhealthy_services(self._endpoints(), services, set())
        if problem:
            self.record.not_run.append({
                "key": experiment.key, "service": experiment.service,
                "fault": experiment.fault,
                "reason": f"the estate was not healthy before the fault: {problem}"})
            self.say(f"  {experiment.key}: not run: the estate is not healthy ({problem})")
            return False
        return True

    def _endpoints(self) -> Any:
        return chaos.endpoints_of(self.config, self.settings(self.plan.experiments[0])
                                  .as_configuration())

    def _one(self, experiment: Experiment) -> tuple[dict[str, Any], bool]:
        from chaoslib.run import Runner  # noqa: PLC0415 - loaded only when a drill runs
        from chaoslib.types import Schedule, Strategy  # noqa: PLC0415

        document = to_chaostoolkit(experiment, self.settings(experiment))
        started = self.clock()
        with Runner(Strategy.CONTINUOUS, Schedule(
                continuous_hypothesis_frequency=HYPOTHESIS_FREQUENCY, fail_fast=True)) as runner:
            journal = runner.run(document, settings={
                "runtime": {"rollbacks": {"strategy": "always"}}})
        self._keep_journal(experiment, journal)
        current = chaos.take_session(experiment.key)
        verdict = verdict_of(journal)
        interrupted = journal.get("status") == "interrupted" and not (
            current and current.deviations)
        if verdict is None:
            verdict = _aborted(experiment, journal, current, started)
        heal = verdict.get("heal") or {}
        healed_at = (verdict["injected_at"] + verdict["times"]["heal"]
                     if heal.get("outcome") == "healed" and verdict.get("times", {}).get("heal")
                     is not None else None)
        recover = (verdict.get("times") or {}).get("recover")
        recovered_at = verdict["injected_at"] + recover if recover is not None else self.clock()
        self.history.append(Past(experiment.root_cause, healed_at, recovered_at))
        if current is not None and current.events.failures:
            verdict.setdefault("reasons", []).extend(current.events.failures)
        return verdict, interrupted

    def _keep_journal(self, experiment: Experiment, journal: dict[str, Any]) -> None:
        directory = chaos.drills_dir(self.options.config) / "journals" / self.record.drill_id
        directory.mkdir(parents=True, exist_ok=True)
        name = experiment.key.replace(":", "_") + ".json"
        (directory / name).write_text(json.dumps(journal, indent=2, default=str),
                                      encoding="utf-8")


def _aborted(experiment: Experiment, journal: dict[str, Any], current: Any,
             started: float) -> dict[str, Any]:
    """The cell of an experiment that stopped before judging: why, in the journal's words."""
    reasons = list(current.deviations) if current else []
    if current is not None and current.failed:
        reasons.append(current.failed)
    status = journal.get("status")
    if status == "interrupted" and not reasons:
        reasons.append("interrupted (Ctrl-C or SIGTERM); the fault was restored")
    if not reasons:  # an activity failed without saying why in the session: its exception
        for record in journal.get("run") or []:
            if record.get("status") == "failed":
                name = (record.get("activity") or {}).get("name")
                reasons.append(f"{name} failed: {str(record.get('exception', ''))[-300:]}")
    if not reasons:
        reasons.append(f"the experiment ended {status} before it could be judged")
    injected = current.injection.injected_at if current and current.injection else None
    return {"key": experiment.key, "service": experiment.service, "fault": experiment.fault,
            "target": experiment.target, "verdict": "aborted", "reasons": reasons,
            "injected_at": injected or started, "stages": [], "times": {},
            "root_cause": {"expected": experiment.root_cause, "named": None},
            "heal": None, "canary": None, "incidents": [],
            "drill_id": current.drill_id if current else None}


def _summary(cell: dict[str, Any]) -> str:
    times = cell.get("times") or {}
    parts = [cell["verdict"].upper()]
    if times.get("detect") is not None:
        parts.append(f"detected {times['detect']:.1f}s")
    if times.get("heal") is not None:
        parts.append(f"healed {times['heal']:.1f}s")
    if times.get("recover") is not None:
        parts.append(f"recovered {times['recover']:.1f}s")
    reasons = cell.get("reasons") or []
    return ", ".join(parts) + ("" if not reasons else " — " + "; ".join(reasons))


def results_paths(options: RunOptions, drill_id: str) -> tuple[Path, Path]:
    """``drills/drill-run-TIME.json`` (or ``--out``) and the HTML page beside it."""
    json_path = options.out or chaos.drills_dir(options.config) / (
        drill_id.replace("drill-", "drill-run-") + ".json")
    return json_path, json_path.with_suffix(".html")


def write_results(record: RunRecord, options: RunOptions) -> tuple[Path, Path]:
    data = record.as_data()
    json_path, html_path = results_paths(options, record.drill_id)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    try:
        loads = latest_loads(chaos.drills_dir(options.config))
    except DrillResultsError as exc:  # a bad load file must not cost the drill's own page
        loads = {}
        log.warning("%s", exc)
    html_path.write_text(render_html(data, build_matrix(data), loads), encoding="utf-8")
    return json_path, html_path


def _restore_left_overs(options: RunOptions, err: TextIO) -> list[str] | None:
    journal = chaos.restore_journal_of(options.config)
    try:
        pending = journal.pending()
    except RestoreJournalError as exc:
        err.write(f"{exc}\n")
        return None
    restored = []
    for injection in pending:
        done = inject.restore(injection)
        journal.remove(injection.key)
        restored.append(f"{injection.key}: {done}")
        err.write(f"restored a fault an interrupted drill left: {injection.key}: {done}\n")
    return restored


@dataclass(frozen=True)
class _Ready:
    """What the checks before any fault produced."""

    plan: DrillPlan
    config: Config
    experiments: list[Experiment]
    restored: list[str]
    drift: list[str]


class _Refused(Exception):  # noqa: N818 - a signal: each line has been written already
    pass


def _refuse(err: TextIO, *lines: str) -> _Refused:
    for line in lines:
        err.write(f"{line}\n")
    return _Refused()


def _prepare(options: RunOptions, out: TextIO, err: TextIO) -> _Ready:
    """Read the inputs, restore what an interrupted drill left, show the plan without
    ``--yes``, reach every part and check that healing is on; _Refused otherwise."""
    try:
        plan = load_plan(options.config, options.alertmanager, options.rules,
                         options.prometheus_config)
        config = load_config(options.config)
        experiments = select(plan, options.only)
    except RunInputError as exc:
        raise _refuse(err, str(exc)) from None
    except PLAN_INPUT_ERRORS as exc:
        raise _refuse(err, *plan_error_lines(exc, options.config, options.alertmanager)) \
            from None
    if options.under_load is not None and options.under_load not in config.flows:
        known = ", ".join(sorted(config.flows)) or "none"
        raise _refuse(err, f"--under-load: {options.config} has no flow named "
                           f"{options.under_load!r} (flows: {known})")
    restored = _restore_left_overs(options, err)
    if restored is None:
        raise _Refused()
    if not options.yes:
        write_text(DrillPlan(tuple(experiments), plan.timers, plan.margin_rule), out)
        raise _refuse(err, f"nothing injected: these {len(experiments)} experiments break "
                           "services on the real estate; run again with --yes")
    try:
        endpoints = chaos.endpoints_of(config, DrillSettings(
            options.config, options.rules, options.alertmanager, options.prometheus_config,
            "check", 0, 0, prometheus_url=options.prometheus_url,
            alertmanager_url=options.alertmanager_url,
            responder_url=options.responder_url).as_configuration())
        preflight(endpoints)
    except (OSError, ValueError, Unreachable) as exc:
        raise _refuse(err, f"nothing injected: {exc}") from None
    switch = unhealthy_services(endpoints, set(), set())
    if switch:
        raise _refuse(err, f"nothing injected: {switch}")
    drift = _drift(options, endpoints.prometheus, endpoints.alertmanager)
    for line in drift:
        err.write(f"warning: {line}\n")
    return _Ready(plan, config, experiments, restored, drift)


def _drift(options: RunOptions, prometheus: str, alertmanager: str) -> list[str]:
    """How the running Prometheus and Alertmanager differ from the plan's files (said before
    the first fault: a late or unreached cell then has its likely cause named)."""
    groups, loaded, problems = running_state(prometheus, alertmanager)
    lines = list(problems)
    if groups is not None:
        lines += rule_drift(parse_rule_files(read_rules(options.rules)), groups)
    if loaded is not None:
        lines += route_drift(read_alertmanager(options.alertmanager), loaded,
                             str(options.alertmanager))
    return lines


def run_command(options: RunOptions, *, out: TextIO, err: TextIO) -> int:
    """See the module's docstring for what is checked before anything is injected."""
    try:
        ready = _prepare(options, out, err)
    except _Refused:
        return EXIT_BAD_INPUT
    _quiet_chaostoolkit()
    runner = DrillRunner(options, ready.plan, ready.config, out)
    runner.record.restored_at_start = ready.restored
    runner.record.drift = ready.drift
    completed = False
    load = None
    if options.under_load is not None:
        try:
            load = BackgroundLoad.start(
                options.config, options.under_load, users=options.load_users,
                rate=options.load_rate, directory=chaos.drills_dir(options.config),
                drill_id=runner.record.drill_id, slo=options.load_slo)
        except LoadError as exc:
            err.write(f"nothing injected: {exc}\n")
            return EXIT_BAD_INPUT
        out.write(f"under load: flow {options.under_load} at {options.load_rate:g}/s "
                  f"({options.load_users} users), log {load.log}\n")
    try:
        with _sigterm_interrupts():
            completed = runner.run(ready.experiments)
    except (KeyboardInterrupt, _Interrupted):
        err.write("interrupted: restoring\n")
        _restore_left_overs(options, err)
    finally:
        if load is not None:
            runner.record.under_load = load.stop()
    runner.record.finished_at = time.time()
    json_path, html_path = write_results(runner.record, options)
    if options.as_json:
        out.write(json.dumps(runner.record.as_data(), indent=2) + "\n")
    out.write(f"results: {json_path}\nmatrix:  {html_path}\n")
    if not completed:
        return EXIT_INTERRUPTED
    cells = runner.record.cells
    # Cells that could not be run are listed (and count as "not tested" in the report), but
    # do not fail the run: they are a property of the estate, not a drill that went wrong.
    passed = bool(cells) and all(cell["verdict"] == "pass" for cell in cells)
    return EXIT_PASS if passed else EXIT_FAILED

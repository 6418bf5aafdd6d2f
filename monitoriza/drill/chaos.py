"""Monitoriza's Chaos Toolkit extension: the probes and actions of a drill experiment.

Every function takes the experiment's ``key`` and Chaos Toolkit's ``configuration`` (the
block :func:`monitoriza.drill.export.to_chaostoolkit` writes), so an exported drill runs the
same under ``chaos run`` as under ``monitoriza drill run``, which drives chaostoolkit-lib's
runner over the same documents. Activities of one experiment share a :class:`DrillSession`
kept in this module (Chaos Toolkit runs an experiment in one process); what must outlive the
process — the fault to undo — is in the restore journal on disk before the fault is made.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoriza.config import load_config
from monitoriza.config.schema import Config
from monitoriza.drill import blind_spots, inject
from monitoriza.drill.canary import Canary, CanaryError, read_canary, stores_of, write_canary
from monitoriza.drill.commands import load_plan
from monitoriza.drill.events import DrillEvents
from monitoriza.drill.model import DrillPlan, Experiment
from monitoriza.drill.observe import Endpoints, Watcher
from monitoriza.drill.restore_journal import RestoreJournal
from monitoriza.drill.settle import settled, unhealthy_services
from monitoriza.drill.verdict import judge as judge_cell
from monitoriza.exceptions import MonitorizaError

log = logging.getLogger(__name__)

#: Seconds a drill window stays open at the responder beyond the experiment's time limit,
#: should the drill die without closing it.
WINDOW_SLACK_SECONDS = 300.0


def drills_dir(config_path: Path) -> Path:
    """``drills/`` beside the configuration file: results, journals, the restore journal."""
    return config_path.absolute().parent / "drills"


def restore_journal_of(config_path: Path) -> RestoreJournal:
    return RestoreJournal(drills_dir(config_path) / "restore-journal.json")


def endpoints_of(config: Config, configuration: dict[str, Any]) -> Endpoints:
    """Where the pipeline is observed: the experiment's overrides, else the configuration's
    own addresses; a missing Alertmanager address is a clear error."""
    alertmanager = (configuration.get("monitoriza_alertmanager_url")
                    or config.responder.healing.alertmanager_url)
    if not alertmanager:
        raise ValueError("no Alertmanager address: set responder.healing.alertmanager_url "
                         "or pass --alertmanager-url")
    responder = (configuration.get("monitoriza_responder_url")
                 or f"http://{config.responder.listen}")
    token = Path(config.responder.token_file).read_text(encoding="utf-8").strip()
    return Endpoints(
        prometheus=str(configuration.get("monitoriza_prometheus_url")
                       or config.exporter.prometheus_url).rstrip("/"),
        alertmanager=str(alertmanager).rstrip("/"), responder=responder.rstrip("/"),
        token=token)


@dataclass
class DrillSession:
    """What the activities of one experiment share."""

    key: str
    config_path: Path
    config: Config
    plan: DrillPlan
    experiment: Experiment
    endpoints: Endpoints
    drill_id: str
    time_limit: float
    max_fill_bytes: int
    poll_interval: float
    events: DrillEvents
    journal: RestoreJournal
    watcher: Watcher | None = None
    flows: blind_spots.FlowWatch | None = None
    injection: inject.Injection | None = None
    canaries: list[tuple[Any, Canary]] = field(default_factory=list)
    canary_results: list[Any] = field(default_factory=list)
    released_at: float | None = None
    recovered_at: float | None = None
    deviations: list[str] = field(default_factory=list)
    failed: str = ""  # why an activity failed: the later ones then do nothing
    loop_stopped: bool = False  # a crash loop stops crashing once its first alert fired
    ended: bool = False

    @property
    def blast_radius(self) -> set[str]:
        e = self.experiment
        return {e.service, e.root_cause, *e.affected}

    def deadline_passed(self) -> bool:
        started = self.injection.injected_at if self.injection else time.time()
        return time.time() - started > self.time_limit


_SESSIONS: dict[str, DrillSession] = {}
_LOCK = threading.Lock()


def session(key: str, configuration: dict[str, Any]) -> DrillSession:
    """The session of ``key``, made from the experiment's configuration on first use."""
    with _LOCK:
        found = _SESSIONS.get(key)
        if found is not None:
            return found
        config_path = Path(configuration["monitoriza_config"])
        plan = load_plan(config_path, Path(configuration["monitoriza_alertmanager_config"]),
                         Path(configuration["monitoriza_rules"]),
                         Path(configuration["monitoriza_prometheus_config"]))
        experiment = next((e for e in plan.experiments if e.key == key), None)
        if experiment is None:
            raise ValueError(f"{key}: not an experiment of the plan of {config_path}")
        config = load_config(config_path)
        endpoints = endpoints_of(config, configuration)
        drill_id = str(configuration.get("monitoriza_drill_id") or f"chaos-{int(time.time())}")
        made = DrillSession(
            key=key, config_path=config_path, config=config, plan=plan,
            experiment=experiment, endpoints=endpoints, drill_id=drill_id,
            time_limit=float(configuration.get("monitoriza_time_limit", 600)),
            max_fill_bytes=int(configuration.get("monitoriza_max_fill_bytes", 1 << 30)),
            poll_interval=float(configuration.get("monitoriza_poll_interval", 0.5)),
            events=DrillEvents(endpoints, drill_id, site=config.exporter.site),
            journal=restore_journal_of(config_path))
        _SESSIONS[key] = made
        return made


class EarlierStepFailedError(MonitorizaError):
    """An earlier activity of the experiment failed; this one does nothing."""


def _live(key: str, configuration: dict[str, Any]) -> DrillSession:
    """The session, unless an earlier activity failed (EarlierStepFailedError naming why)."""
    current = session(key, configuration)
    if current.failed:
        raise EarlierStepFailedError(f"skipped: {current.failed}")
    return current


def _event(current: DrillSession, event: str, **detail: Any) -> None:
    services = sorted(current.blast_radius)
    expires = time.time() + current.time_limit + WINDOW_SLACK_SECONDS
    current.events.send(event, current.key, services, detail, expires_at=expires)


# -- steady state -----------------------------------------------------------------------------


def steady_state(key: str, configuration: dict[str, Any]) -> bool:
    """True while healing is on and every service that should be healthy is: all of them
    before the fault and after recovery, those outside the blast radius while it is on."""
    current = session(key, configuration)
    faulted = current.injection is not None and current.recovered_at is None
    ignore = current.blast_radius if faulted else set()
    problems = unhealthy_services(current.endpoints, set(current.config.services), ignore)
    if problems:
        phase = "during the fault" if faulted else (
            "after recovery" if current.recovered_at else "before the fault")
        current.deviations.append(f"{phase}: {problems}")
        log.warning("%s: steady state broken %s: %s", key, phase, problems)
        return False
    return True


# -- method -----------------------------------------------------------------------------------


def write_canaries(key: str, configuration: dict[str, Any]) -> list[dict[str, Any]]:
    """A canary in every store the fault may lose (the root cause's Redis/PostgreSQL)."""
    current = _live(key, configuration)
    root = current.config.services.get(current.experiment.root_cause)
    if root is None:
        return []
    try:
        for probe in stores_of(root):
            current.canaries.append((probe, write_canary(current.experiment.root_cause, probe)))
    except CanaryError as exc:
        current.failed = f"no fault made: the canary could not be written: {exc}"
        raise
    return [canary.as_data() for _, canary in current.canaries]


def inject_fault(key: str, configuration: dict[str, Any]) -> dict[str, Any]:
    """Make the fault: the restore journal holds it first, the responder's audit chain
    records it, and the watcher starts before it so nothing is missed."""
    current = _live(key, configuration)
    try:
        prepared = inject.prepare(current.experiment, current.config,
                                  max_fill_bytes=current.max_fill_bytes)
    except inject.InjectionRefused as exc:
        current.failed = f"not injected: {exc}"
        raise
    flow_services = {s for flow in current.config.flows.values() for s in flow.services}
    current.watcher = Watcher(current.endpoints, current.blast_radius | flow_services)
    current.watcher.poll()
    current.flows = blind_spots.FlowWatch(current.endpoints.prometheus)
    _event(current, "start", fault=prepared.fault, target=prepared.target)
    current.journal.add(prepared)
    # Set before the fault takes effect: the steady-state thread must already exempt the
    # blast radius when the first probe fails.
    current.injection = prepared
    try:
        current.injection = inject.inject(prepared)
    except inject.InjectionError as exc:
        # The journal holds it: the rollback restores whatever part was made.
        current.failed = f"the fault could not be made: {exc}"
        raise
    current.journal.update(current.injection)
    _event(current, "inject", injection=current.injection.as_data())
    return current.injection.as_data()


def _poll_until(current: DrillSession, done: Any) -> None:
    assert current.watcher is not None
    while True:
        current.watcher.poll()
        if current.flows is not None:
            current.flows.poll(time.time())
        if done() or current.deviations or current.deadline_passed():
            return
        time.sleep(current.poll_interval)


def observe_pipeline(key: str, configuration: dict[str, Any]) -> dict[str, Any]:
    """Watch Prometheus, Alertmanager and the responder until every stage of the plan is
    seen or past its deadline (a crash loop stops crashing once its first alert fires)."""
    current = _live(key, configuration)
    assert current.injection is not None and current.watcher is not None
    injection = current.injection

    def done() -> bool:
        assert current.watcher is not None
        timeline = current.watcher.timeline()
        if injection.fault == "crash_loop" and not current.loop_stopped and \
                _first_alert_fired(current, timeline):
            inject.release(injection)
            current.loop_stopped = True
        return settled(current.experiment, timeline, injected_at=injection.injected_at,
                       now=time.time())

    _poll_until(current, done)
    return current.watcher.timeline().as_data()


def _first_alert_fired(current: DrillSession, timeline: Any) -> bool:
    first = [a for a in current.experiment.alerts if a.expectation == "first"]
    return any(timeline.firing_seen(a.alertname, a.severity, a.service) for a in first)


def release_fault(key: str, configuration: dict[str, Any]) -> str:
    """Stop the fault if healing has not: restore is idempotent, a no-op once healed."""
    current = _live(key, configuration)
    assert current.injection is not None
    inject.release(current.injection)
    done = inject.restore(current.injection)
    current.released_at = time.time()
    current.journal.remove(key)
    _event(current, "restore", result=done)
    return done


def await_recovery(key: str, configuration: dict[str, Any]) -> float | None:
    """Seconds from the fault until every alert of the blast radius has resolved and its
    services pass their probes again; None when the time limit came first."""
    current = _live(key, configuration)
    assert current.injection is not None and current.watcher is not None
    injected_at = current.injection.injected_at

    def recovered() -> bool:
        assert current.watcher is not None
        if current.watcher.timeline().firing_services() & current.blast_radius:
            return False
        return not unhealthy_services(current.endpoints, current.blast_radius, set())

    _poll_until(current, recovered)
    if recovered():
        current.recovered_at = time.time()
        return round(current.recovered_at - injected_at, 3)
    return None


def read_canaries(key: str, configuration: dict[str, Any]) -> list[dict[str, Any]]:
    current = _live(key, configuration)
    current.canary_results = [read_canary(probe, canary) for probe, canary in current.canaries]
    return [result.as_data() for result in current.canary_results]


def judge(key: str, configuration: dict[str, Any]) -> dict[str, Any]:
    """The verdict of the experiment, as :func:`monitoriza.drill.verdict.judge` gives it."""
    current = _live(key, configuration)
    assert current.injection is not None and current.watcher is not None
    lost = [r for r in current.canary_results if r.outcome != "survived"]
    canary = lost[0] if lost else (current.canary_results[0] if current.canary_results
                                   else None)
    result = judge_cell(current.experiment, current.watcher.timeline(),
                        injected_at=current.injection.injected_at,
                        released_at=current.released_at, canary=canary,
                        scrape_interval=current.plan.timers.scrape_interval.seconds)
    data = result.as_data()
    data["drill_id"] = current.drill_id
    if current.recovered_at is not None:
        # Recovered as the drill saw it: every alert resolved AND every probe of the blast
        # radius passing again (the timeline alone only knows the alerts).
        data.setdefault("times", {})["recover"] = round(
            current.recovered_at - current.injection.injected_at, 3)
    data["canaries"] = [r.as_data() for r in current.canary_results]
    data["blind_spots"] = blind_spots.find(
        current.experiment, current.flows.failed_at if current.flows else {},
        {name: list(flow.services) for name, flow in current.config.flows.items()},
        current.watcher.timeline(), injected_at=current.injection.injected_at)
    data.setdefault("reasons", []).extend(f"blind spot: {spot['detail']}"
                                          for spot in data["blind_spots"])
    _event(current, "verdict", verdict=data["verdict"], reasons=data.get("reasons", []))
    _event(current, "end")
    current.ended = True
    return data


# -- rollback ---------------------------------------------------------------------------------


def restore_fault(key: str, configuration: dict[str, Any]) -> str:
    """Undo the fault whatever happened (Ctrl-C, a broken steady state, a crash of an
    activity): from the session, else from the restore journal."""
    current = session(key, configuration)
    try:
        pending = [i for i in current.journal.pending() if i.key == key]
        injections = pending or ([current.injection] if current.injection else [])
        done = "; ".join(inject.restore(i) for i in injections) or "nothing to restore"
        for injection in injections:
            inject.release(injection)
        current.journal.remove(key)
        if not current.ended:
            _event(current, "abort", restored=done, deviations=current.deviations)
        return done
    except Exception:
        log.exception("%s: restore failed; the restore journal keeps it for the next run", key)
        raise


def take_session(key: str) -> DrillSession | None:
    """The finished session of ``key`` (why the steady state broke, what was injected), for
    the runner's record; forgotten afterwards."""
    with _LOCK:
        return _SESSIONS.pop(key, None)

"""Gathering the readiness report's facts from Prometheus and the responder's store.

Every section is fetched in turn and announced on the progress stream with the time it took,
so a long query over weeks of history visibly moves. Prometheus that cannot be reached, or
refuses a query, is a :class:`ReportError` (the command exits 1); a store that is missing or
unreadable is not: the responder's sections then say "no responder data" and why.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from sqlalchemy import Engine, make_url, select
from sqlalchemy.exc import SQLAlchemyError
from urllib3.util.retry import Retry

from monitoriza.audit.chain import AuditError
from monitoriza.audit.log import AuditLog
from monitoriza.config.schema import Config
from monitoriza.exceptions import MonitorizaError
from monitoriza.healing import repository
from monitoriza.healing.correlation import AlertSummary
from monitoriza.report.drills import collect_drills
from monitoriza.report.model import (
    DEFAULT_HORIZON,
    ActionFact,
    AuditIntegrity,
    Facts,
    IncidentFact,
    ResponderFacts,
    ServiceAvailability,
    StaleProbe,
    TimeToFailure,
    UnknownComponent,
    breaker_openings,
    breakers_now,
    healing_summaries,
    incident_fact,
    target_for,
    verdicts,
)
from monitoriza.store import actions, create_store, healing_state, incidents, reading

T = TypeVar("T")

# One service is up in a minute when every one of its probes succeeded (min over probes); its
# availability is the mean of those minutes (docs/report.md).
SERVICE_UP = "min by (service) (monitoriza_probe_success)"
CHART_POINTS = 168  # one point per hour over a week


class ReportError(MonitorizaError):
    """The report cannot be made (Prometheus unreachable, a query refused)."""


class Progress:
    """One line per section on ``stream``: its name and the seconds it took."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        now = time.monotonic()
        self.stream.write(f"report: {name} fetched in {now - began:.1f}s "
                          f"({now - self.started:.1f}s elapsed)\n")
        self.stream.flush()


class PrometheusReader:
    """Instant and range queries, every failure a :class:`ReportError` naming the query."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.client = PrometheusConnect(url=self.url, disable_ssl=True,
                                        retry=Retry(total=0), timeout=int(timeout))

    def check(self) -> None:
        try:
            response = requests.get(f"{self.url}/-/ready", timeout=10)
        except requests.RequestException as exc:
            raise ReportError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        if response.status_code != 200:
            raise ReportError(f"Prometheus at {self.url} is not ready "
                              f"(HTTP {response.status_code})")

    def _call(self, query: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise ReportError(f"Prometheus at {self.url} failed the query {query!r}: "
                              f"{exc}") from None

    def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(query, lambda: self.client.custom_query(
            query, params={"time": f"{at:.3f}"}))
        return result

    def range(self, query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(query, lambda: self.client.custom_query_range(
            query, start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC), step=f"{int(step)}s"))
        return result


# Labels of a forecast's sample that are not its source series': the exporter's own, and
# those Prometheus puts on everything it scrapes from the exporter.
NOT_SERIES_LABELS = frozenset({"__name__", "forecast", "service", "estimate", "job",
                               "instance"})


def series_name(metric: dict[str, str]) -> str:
    """A forecast series' own labels as ``name=value, ...``, sorted; "" when it has none."""
    return ", ".join(f"{name}={value}" for name, value in sorted(metric.items())
                     if name not in NOT_SERIES_LABELS)


def _value(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


def _seconds(duration: float) -> str:
    return f"{max(60, int(duration))}s"


def collect(config: Config, reader: PrometheusReader, since: float, progress: Progress,
            now: float | None = None, *, drills_dir: Path) -> Facts:
    """Every fact of the report for the ``since`` seconds ending at ``now``; the drill
    results are read from ``drills_dir``."""
    end = time.time() if now is None else now
    start = end - since
    window = _seconds(since)
    with progress.section("Prometheus"):
        reader.check()

    with progress.section("availability"):
        tiers = {name: service.tier for name, service in config.services.items()}
        for sample in reader.instant(
                f"max by (service, tier) (last_over_time(monitoriza_service_info[{window}]))",
                end):
            tiers.setdefault(sample["metric"].get("service", ""),
                             sample["metric"].get("tier", "standard"))
        measured = {sample["metric"].get("service", ""): _value(sample) for sample in
                    reader.instant(f"avg_over_time(({SERVICE_UP})[{window}:1m])", end)}
        step = max(60.0, math.ceil(since / CHART_POINTS / 60) * 60)
        series: dict[str, list[tuple[float, float]]] = {}
        for row in reader.range(f"avg_over_time(({SERVICE_UP})[{_seconds(step)}:1m])",
                                start + step, end, step):
            series[row["metric"].get("service", "")] = [(float(t), float(v))
                                                        for t, v in row["values"]]
        names = sorted(set(tiers) | set(measured))
        availability = [ServiceAvailability(name, tiers.get(name, "standard"),
                                            target_for(tiers.get(name, "standard")),
                                            measured.get(name), series.get(name, []))
                        for name in names if name]

    with progress.section("time to failure"):
        ttf = []
        for sample in reader.instant('last_over_time(monitoriza_time_to_failure_seconds'
                                     '{estimate="median"}[15m])', end):
            forecast = sample["metric"].get("forecast", "")
            spec = config.forecasts.get(forecast)
            value = _value(sample)
            ttf.append(TimeToFailure(forecast, sample["metric"].get("service", ""),
                                     None if math.isinf(value) or math.isnan(value) else value,
                                     spec.horizon if spec is not None else DEFAULT_HORIZON,
                                     series_name(sample["metric"])))
        ttf.sort(key=lambda item: (item.service, item.forecast, item.series))

    with progress.section("silent failures"):
        stale = sorted(
            (StaleProbe(s["metric"].get("service", ""), s["metric"].get("probe", ""), _value(s))
             for s in reader.instant(
                "max_over_time((time() - monitoriza_probe_last_success_timestamp_seconds"
                f" and monitoriza_probe_last_success_timestamp_seconds > 0)[{window}:1m])",
                end)),
            key=lambda item: (item.service, item.probe))
        unknown = sorted(
            (UnknownComponent(s["metric"].get("service", ""), s["metric"].get("component", ""),
                              _value(s))
             for s in reader.instant('avg_over_time(monitoriza_component_status'
                                     f'{{status="unknown"}}[{window}]) > 0', end)),
            key=lambda item: (item.service, item.component))

    with progress.section("responder store"):
        responder = collect_responder(config, start, end)

    with progress.section("drill results"):
        drills = collect_drills(drills_dir)

    return Facts(start=start, end=end, prometheus_url=reader.url, availability=availability,
                 responder=responder, time_to_failure=ttf, stale_probes=stale,
                 unknown_components=unknown,
                 verdicts=verdicts(availability, responder, ttf, stale, unknown, drills=drills),
                 drills=drills)


def _open_store(url: str) -> Engine | str:
    """The store's engine, or why there is none. A missing SQLite file is not created."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if not database or database == ":memory:" or not Path(database).is_file():
            return f"the store {database or url} does not exist"
    try:
        return create_store(url)
    except (SQLAlchemyError, OSError) as exc:
        return f"cannot open the store: {exc}".splitlines()[0]


def collect_responder(config: Config, start: float, end: float) -> ResponderFacts:
    """Incidents, actions, breakers and audit integrity from the store, read only."""
    engine = _open_store(config.responder.store_url)
    if isinstance(engine, str):
        return ResponderFacts(missing=engine)
    try:
        return _read_responder(engine, config, start, end)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        return ResponderFacts(missing=f"cannot read the store: {exc}".splitlines()[0])
    finally:
        engine.dispose()


def _kinds_as_alerts(summary: AlertSummary) -> dict[str, dict[str, Any]]:
    """What :func:`incident_fact` reads of an incident's alerts (earliest onset, services,
    alert names), one entry per kind of alert standing for all alerts of that kind."""
    return {str(number): {"starts_at": item.tally.earliest, "service": item.kind.service,
                          "alertname": item.kind.alertname}
            for number, item in enumerate(summary.counted())}


def _read_responder(engine: Engine, config: Config, start: float, end: float) -> ResponderFacts:
    with reading(engine) as conn:
        incident_rows = conn.execute(select(incidents).where(
            (incidents.c.opened_at <= end)
            & ((incidents.c.resolved_at.is_(None)) | (incidents.c.resolved_at >= start))
        ).order_by(incidents.c.opened_at, incidents.c.id)).all()
        summaries = repository.read_summaries(conn, incident_rows)
        action_rows = conn.execute(select(actions).where(
            (actions.c.created_at >= start) & (actions.c.created_at <= end)
        ).order_by(actions.c.id)).mappings().all()
        state_rows = conn.execute(select(healing_state.c.key, healing_state.c.value).where(
            healing_state.c.key.like("breaker:%"))).all()
    incident_facts: list[IncidentFact] = [
        incident_fact(row._asdict(), _kinds_as_alerts(summaries[int(row.id)]))
        for row in incident_rows]
    action_facts = [ActionFact(int(row["id"]), int(row["incident_id"]), row["service"],
                               row["playbook"], row["state"], row["outcome"],
                               float(row["created_at"]),
                               None if row["finished_at"] is None else float(row["finished_at"]))
                    for row in action_rows]
    states: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in state_rows:
        _, service, playbook = str(key).split(":", 2)
        states[(service, playbook)] = json.loads(value)

    refusals: list[dict[str, Any]] = []
    integrity: AuditIntegrity
    try:
        log = AuditLog.from_config(engine, config.responder.audit, read_only=True)
        for entry in log.iter_all(since_ts=datetime.fromtimestamp(start, UTC)):
            if entry.kind == "action.blocked" and entry.data.get("check") == "breaker":
                refusals.append(dict(entry.data))
        result = log.verify()
        integrity = AuditIntegrity(result.ok, result.entries, result.checkpoints,
                                   result.reason or ("verified" if result.ok else "failed"))
    except AuditError as exc:
        integrity = AuditIntegrity(False, 0, 0, f"could not verify: {exc}")

    return ResponderFacts(
        incidents=incident_facts, actions=action_facts,
        healing=healing_summaries(action_facts),
        breaker_openings=breaker_openings(refusals, states, start, end),
        breakers_now=breakers_now(states), audit=integrity)

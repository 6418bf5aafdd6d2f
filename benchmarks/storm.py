"""Alert storm from many sites: a real Alertmanager into the responder cluster on PostgreSQL.

``--sites`` (300) simulated condominiums each lose Redis at the same moment and see the cascade
(``redis`` down, then ``backend``, ``ai-orchestrator``, ``api-gateway`` and ``frontend``
degraded or down: seven alerts a site, labelled ``site``, ``service``, ``alertname`` and
``severity``). Their Prometheus servers push the alerts to a real ``prometheus-alertmanager``
(``/api/v2/alerts``, one request per site, from several client threads), which groups them by
``site`` and ``alertname`` (``group_wait`` 1 s) and notifies the replicas. The recipe in
docs/scaling.md puts a load balancer in front of them, so each notification reaches one
replica; ``--fanout shard`` (the default) does that without one: site ``i``'s notifications
go to replica ``i mod N`` (a route per replica matching its sites), as a balancer with site
affinity would. ``--fanout all`` gives the receiver one ``webhook_configs`` entry per replica
instead: every replica receives every notification, the journal keeps each alert once, and
intake costs N times as much.

Each replica (``monitoriza responder``, as users run it) has the cascade's services with their
``depends_on`` edges, so every site is one incident rooted at ``redis``, whose playbook runs
``/bin/true``. Two designs are measured at each replica count of ``--replicas``, each on a fresh
database of one private PostgreSQL server (``fsync=on``):

- **single-chain** (``responder.audit.sequencer: false``): every processing transaction holds
  one cluster-wide advisory lock and appends to the audit chain itself (the design before
  sites; the baseline);
- **sequencer**: processing takes only its site's lock and queues its audit entries, which the
  journal workers integrate into the chain in batches.

Read once the journal is drained (``received_at``: when a webhook accepted an alert,
``processed_at``: when a worker processed it):

- **accepted/s**: unique alerts journaled / first to last ``received_at``;
- **processed/s**: alerts processed / first ``received_at`` to last ``processed_at``;
- **latency**: notification to decision (``processed_at - received_at``) p50 and p99;
- **CPU per processed alert**: replicas, PostgreSQL (server and backends) and Alertmanager;
- **lock hold per processed alert**, by lock kind (cluster, site, chain), in microseconds,
  from the replicas' ``monitoriza_store_lock_hold_seconds_total`` just before they stop;
- incidents (one per site), actions, audit entries, and ``monitoriza audit verify`` after a
  graceful stop.

While the journal drains, PostgreSQL's ``pg_stat_activity`` is sampled (the wait events of the
database's active backends) to show where processing waits.

On a 2-core machine every replica, PostgreSQL, Alertmanager and the load generator share the
same cores: more replicas add no CPU, so the ratios show what coordination costs and how much
processing overlaps, not the horizontal gain of replicas on machines of their own. The load
average before the run is printed: other work on the machine moves every figure.

Usage: python benchmarks/storm.py [--sites 300] [--replicas 1,2,4] [--cascade 7]
       [--push-threads 8] [--fanout shard|all] [--no-healing] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests
import yaml
from intake import TOKEN
from intake_scale import Replica, cpu_seconds, start_replica, stop_process
from pgserver import PostgresServer, free_port

from monitoriza.audit.log import CHAIN_LOCK_KEY
from monitoriza.store import WRITE_LOCK_KEY

# (service, alertname, severity) in the order a site sees them when Redis goes down.
CASCADE = (
    ("redis", "ServiceDown", "P2"),
    ("backend", "ServiceDegraded", "P3"),
    ("backend", "ServiceDown", "P2"),
    ("ai-orchestrator", "ServiceDegraded", "P3"),
    ("api-gateway", "ServiceDegraded", "P3"),
    ("api-gateway", "ServiceDown", "P2"),
    ("frontend", "ServiceDegraded", "P3"),
    ("frontend", "ServiceDown", "P2"),
)
DEPENDS_ON = {
    "redis": [],
    "backend": ["redis"],
    "ai-orchestrator": ["redis", "backend"],
    "api-gateway": ["backend", "ai-orchestrator"],
    "frontend": ["api-gateway"],
}
LOCK_KINDS = ("cluster", "site", "chain")
DRAIN_TIMEOUT_SECONDS = 600.0
ACTIONS_TIMEOUT_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 30.0
RESPONDER_THREADS = 16
_LOCK_SAMPLE = re.compile(r'^monitoriza_store_lock_(hold_seconds|holds)_total'
                          r'\{lock="(\w+)"\} ([0-9.e+-]+)$', re.MULTILINE)


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).ok:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready:\n{log.read_text(errors='replace')}")


def services(healing: bool) -> dict[str, Any]:
    """The cascade's services: ``depends_on`` edges, and a playbook for ``redis``."""
    catalogue: dict[str, Any] = {name: {"depends_on": deps} for name, deps in DEPENDS_ON.items()}
    if healing:
        catalogue["redis"]["healing"] = [{
            "name": "restart-redis", "match": {"alertname": ["ServiceDown"]},
            "steps": [{"action": "command", "argv": ["/bin/true"], "timeout": "10s"}]}]
    return catalogue


def start_storm_replica(directory: Path, store_url: str, *, sequencer: bool, sites: int,
                        healing: bool) -> Replica:
    """``monitoriza responder`` on ``store_url`` with the cascade's services.

    The replicas of one configuration share the audit signing key, checkpoint file and kill
    switch path (in ``directory``'s parent), as replicas on one host would.
    """
    shared = directory.parent
    return start_replica(
        directory, store_url, threads=RESPONDER_THREADS, services=services(healing),
        audit={"sequencer": sequencer},
        healing={"allowed_commands": ["/bin/true"],
                 "kill_switch_file": str(shared / "kill-switch"),
                 # Every site heals its redis at once; the global limit of running actions
                 # would block some of them, and it is not what is measured.
                 "max_concurrent_actions": max(4, sites)})


@dataclass
class Alertmanager:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def site_name(site: int) -> str:
    return f"condo-{site:04d}"


def alertmanager_config(replica_urls: list[str], token_file: Path, *, sites: int,
                        fanout: str) -> dict[str, Any]:
    """The storm arrives together (``group_wait`` 1 s). ``all``: one receiver notifies every
    replica. ``shard``: site ``i`` goes to replica ``i mod N`` only, by a route matching its
    replica's sites, as a load balancer with site affinity would send it."""

    def webhook(url: str) -> dict[str, Any]:
        return {"url": url, "send_resolved": True, "max_alerts": 0,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(token_file)}}}

    route: dict[str, Any] = {"receiver": "responder", "group_by": ["site", "alertname"],
                             "group_wait": "1s", "group_interval": "1s",
                             "repeat_interval": "4h"}
    receivers: list[dict[str, Any]] = [
        {"name": "responder", "webhook_configs": [webhook(url) for url in replica_urls]}]
    if fanout == "shard" and len(replica_urls) > 1:
        route["routes"] = []
        for index, url in enumerate(replica_urls):
            mine = "|".join(site_name(site) for site in range(index, sites, len(replica_urls)))
            route["routes"].append({"receiver": f"replica-{index}",
                                    "matchers": [f'site=~"{mine}"']})
            receivers.append({"name": f"replica-{index}", "webhook_configs": [webhook(url)]})
    return {"route": route, "receivers": receivers}


def start_alertmanager(directory: Path, replica_urls: list[str], *, sites: int,
                       fanout: str) -> Alertmanager:
    """One ``prometheus-alertmanager`` on 127.0.0.1, clustering off (as tests start it)."""
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        raise RuntimeError("prometheus-alertmanager is not installed (make test installs it)")
    directory.mkdir()
    (directory / "data").mkdir()
    token_file = directory / "token"
    token_file.write_text(TOKEN + "\n")
    config = directory / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(replica_urls, token_file,
                                                         sites=sites, fanout=fanout)))
    port = free_port()
    log = directory / "alertmanager.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdin=subprocess.DEVNULL, stdout=stream, stderr=subprocess.STDOUT)
    manager = Alertmanager(process, port, directory)
    try:
        wait_http(f"{manager.url}/-/ready", process, log)
    except BaseException:
        stop_process(process)
        raise
    return manager


def site_alerts(site: int, cascade: int, starts: datetime) -> list[dict[str, Any]]:
    """What one site's Prometheus pushes: the first ``cascade`` alerts of CASCADE."""
    ends = starts + timedelta(hours=1)  # resent by Prometheus long before; never expires here
    return [{"labels": {"alertname": alertname, "site": site_name(site),
                        "service": service, "severity": severity,
                        "instance": f"{service}.condo-{site:04d}:9000"},
             "annotations": {"summary": f"{alertname} on {service}"},
             "startsAt": starts.isoformat().replace("+00:00", "Z"),
             "endsAt": ends.isoformat().replace("+00:00", "Z"),
             "generatorURL": f"http://prometheus.condo-{site:04d}:9090/graph"}
            for service, alertname, severity in CASCADE[:cascade]]


def push_storm(manager: Alertmanager, sites: int, cascade: int, threads: int) -> float:
    """Every site's alerts to ``/api/v2/alerts``, a request per site; seconds it took."""
    starts = datetime.now(UTC)
    local = threading.local()

    def push(site: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(f"{manager.url}/api/v2/alerts",
                                json=site_alerts(site, cascade, starts), timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"alertmanager answered {response.status_code}: "
                               f"{response.text}")

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(push, range(sites)))
    return time.monotonic() - began


def _advisory_parts(key: int) -> tuple[int, int]:
    """A bigint advisory key as pg_locks shows it: (classid, objid), its high and low halves."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class WaitSampler(threading.Thread):
    """While the journal drains: what the database's active backends wait on, and which
    advisory lock the waiting requests want (the cluster lock, exclusive or shared, a site's
    lock, or the chain's head)."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.samples = 0
        self.events: collections.Counter[str] = collections.Counter()
        self.advisory: collections.Counter[str] = collections.Counter()
        self._stop_event = threading.Event()
        self._named = {_advisory_parts(WRITE_LOCK_KEY): "cluster",
                       _advisory_parts(CHAIN_LOCK_KEY): "chain"}

    def run(self) -> None:
        database = self.url.rsplit("/", 1)[1]
        with contextlib.suppress(psycopg.Error), \
                psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            while not self._stop_event.wait(self.interval):
                rows = conn.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                    "FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                    "AND pid != pg_backend_pid()", (database,)).fetchall()
                waiting = conn.execute(
                    "SELECT classid::bigint, objid::bigint, mode FROM pg_locks "
                    "WHERE locktype = 'advisory' AND NOT granted").fetchall()
                self.samples += 1
                self.events.update(str(row[0]) for row in rows)
                self.advisory.update(
                    f"{self._named.get((int(high), int(low)), 'site')} {mode}"
                    for high, low, mode in waiting)

    def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        """Mean active backends per sample in each wait event, and mean waiting advisory
        lock requests per sample by lock and mode; most common first."""
        self._stop_event.set()
        self.join()
        samples = max(1, self.samples)
        return ({event: round(count / samples, 2)
                 for event, count in self.events.most_common(8)},
                {lock: round(count / samples, 2) for lock, count in self.advisory.most_common()})


def scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def counts(conn: psycopg.Connection[Any], query: str) -> dict[str, int]:
    return {str(key): int(count) for key, count in conn.execute(query).fetchall()}


def wait_drained(url: str, expected: int) -> tuple[int, int]:
    """Until ``expected`` alerts are journaled and none waits; (journaled, still pending)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        while True:
            row = conn.execute("SELECT count(*), count(*) FILTER (WHERE state != 'done') "
                               "FROM journal").fetchone()
            total, pending = (int(row[0]), int(row[1])) if row else (0, 0)
            if (total >= expected and not pending) or time.monotonic() > deadline:
                return total, pending
            time.sleep(0.25)


def wait_actions_finished(url: str) -> None:
    """Until no healing action is pending, claimed or running (they run /bin/true)."""
    deadline = time.monotonic() + ACTIONS_TIMEOUT_SECONDS
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        while time.monotonic() < deadline and scalar(
                conn, "SELECT count(*) FROM actions WHERE state != 'done'"):
            time.sleep(0.25)


def lock_holds(replica: Replica) -> dict[tuple[str, str], float]:
    """``(hold_seconds|holds, lock) -> value`` from the replica's metrics."""
    text = requests.get(f"{replica.base_url}/metrics", timeout=10).text
    return {(what, lock): float(value) for what, lock, value in _LOCK_SAMPLE.findall(text)}


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[round(fraction * (len(ordered) - 1))] if ordered else float("nan")


def read_store(url: str) -> dict[str, Any]:
    """The journal's timings and the counts of what processing made."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT received_at, processed_at FROM journal "
                            "WHERE processed_at IS NOT NULL").fetchall()
        first_received = scalar(conn, "SELECT min(received_at) FROM journal")
        last_received = scalar(conn, "SELECT max(received_at) FROM journal")
        journaled = int(scalar(conn, "SELECT count(*) FROM journal"))
        outcomes = counts(conn, "SELECT coalesce(outcome, '-'), count(*) FROM journal "
                          "GROUP BY 1 ORDER BY 2 DESC")
        incidents = int(scalar(conn, "SELECT count(*) FROM incidents"))
        incident_sites = int(scalar(conn, "SELECT count(DISTINCT site) FROM incidents"))
        roots = counts(conn, "SELECT coalesce(root_service, '-'), count(*) FROM incidents "
                       "GROUP BY 1")
        actions = counts(conn, "SELECT coalesce(outcome, state), count(*) FROM actions "
                         "GROUP BY 1")
        audit_entries = int(scalar(conn, "SELECT count(*) FROM audit"))
        audit_pending = int(scalar(conn, "SELECT count(*) FROM audit_pending"))
    latencies = sorted(processed - received for received, processed in rows)
    last_processed = max((processed for _, processed in rows), default=first_received)
    return {
        "journaled": journaled, "processed": len(rows),
        "accepted_per_second": round(journaled / max(1e-9, last_received - first_received), 1),
        "processed_per_second": round(len(rows) / max(1e-9, last_processed - first_received),
                                      1),
        "latency_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "outcomes": outcomes, "incidents": incidents, "incident_sites": incident_sites,
        "incident_roots": roots, "actions": sum(actions.values()), "action_outcomes": actions,
        "audit_entries": audit_entries, "audit_pending_after_stop": audit_pending,
    }


def audit_verify(config: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "monitoriza.cli", "audit", "verify",
                             "--config", str(config)],
                            capture_output=True, text=True, timeout=300, check=False)
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0] if lines else f"exit {result.returncode}, no output"


def measure(name: str, directory: Path, url: str, server: PostgresServer, *,
            replicas: int, sequencer: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One configuration, from starting its replicas to verifying the audit chain."""
    print(f"{name}: starting", file=sys.stderr, flush=True)
    directory.mkdir()
    started: list[Replica] = []
    manager: Alertmanager | None = None
    sampler: WaitSampler | None = None
    holds: dict[tuple[str, str], float] = {}
    try:
        # The first replica creates the schema alone; the others then start together.
        for index in range(replicas):
            started.append(start_storm_replica(directory / f"replica-{index}", url,
                                               sequencer=sequencer, sites=args.sites,
                                               healing=not args.no_healing))
            if index == 0 or index == replicas - 1:
                for replica in started:
                    wait_http(f"{replica.base_url}/readyz", replica.process,
                              replica.directory / "responder.log")
        manager = start_alertmanager(directory / "alertmanager",
                                     [replica.url for replica in started], sites=args.sites,
                                     fanout=args.fanout)
        replica_pids = [replica.process.pid for replica in started]
        server_pids = [server.pid] if server.pid is not None else []
        cpu_before = (cpu_seconds(replica_pids), cpu_seconds(server_pids),
                      cpu_seconds([manager.process.pid]))
        sampler = WaitSampler(url)
        sampler.start()
        push_seconds = push_storm(manager, args.sites, args.cascade, args.push_threads)
        expected = args.sites * args.cascade
        journaled, pending = wait_drained(url, expected)
        waits, advisory_waits = sampler.stop()
        sampler = None
        cpu = (cpu_seconds(replica_pids) - cpu_before[0],
               cpu_seconds(server_pids) - cpu_before[1],
               cpu_seconds([manager.process.pid]) - cpu_before[2])
        wait_actions_finished(url)
        for replica in started:
            for key, value in lock_holds(replica).items():
                holds[key] = holds.get(key, 0.0) + value
    finally:
        if sampler is not None:
            sampler.stop()
        if manager is not None:
            stop_process(manager.process)
        for replica in started:  # gracefully: the sequencer integrates what is queued
            stop_process(replica.process)
    store = read_store(url)
    verify = audit_verify(started[0].config)
    errors = sum(line.count(" ERROR ") + line.count("Traceback")
                 for replica in started
                 for line in (replica.directory / "responder.log").read_text(
                     errors="replace").splitlines())
    processed = max(1, store["processed"])
    result: dict[str, Any] = {
        "config": name, "design": "sequencer" if sequencer else "single-chain",
        "replicas": replicas, "expected_alerts": expected, "drain_pending": pending,
        "push_seconds": round(push_seconds, 2), **store,
        "cpu_ms_per_alert": round(sum(cpu) * 1000 / processed, 2),
        "cpu_ms_replicas": round(cpu[0] * 1000 / processed, 2),
        "cpu_ms_postgres": round(cpu[1] * 1000 / processed, 2),
        "cpu_ms_alertmanager": round(cpu[2] * 1000 / processed, 2),
        "lock_hold_us_per_alert": {
            lock: round(holds.get(("hold_seconds", lock), 0.0) * 1e6 / processed, 1)
            for lock in LOCK_KINDS},
        # How many transactions held each lock, and for how long each on average.
        "lock_holds": {lock: int(holds.get(("holds", lock), 0)) for lock in LOCK_KINDS},
        "lock_hold_mean_ms": {
            lock: round(holds.get(("hold_seconds", lock), 0.0) * 1000
                        / max(1.0, holds.get(("holds", lock), 0.0)), 2)
            for lock in LOCK_KINDS},
        "pg_waits_during_drain": waits, "advisory_waiters_during_drain": advisory_waits,
        "audit_verify": verify, "replica_log_errors": errors,
    }
    if journaled < expected:
        result["note"] = f"only {journaled} of {expected} alerts journaled"
    print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sequencer xN against single-chain x1 and single-chain xN (processed/s, CPU)."""
    single = {r["replicas"]: r for r in results if r["design"] == "single-chain"}
    base = single.get(min(single, default=0))
    out = []
    for r in results:
        if r["design"] != "sequencer":
            continue
        same = single.get(r["replicas"])
        out.append({
            "config": r["config"],
            "processed_vs_single_chain_x1": round(
                r["processed_per_second"] / base["processed_per_second"], 2) if base else None,
            "processed_vs_single_chain_same_n": round(
                r["processed_per_second"] / same["processed_per_second"], 2) if same else None,
            "cpu_vs_single_chain_same_n": round(
                r["cpu_ms_per_alert"] / same["cpu_ms_per_alert"], 2) if same else None,
            "cpu_vs_single_chain_x1": round(
                r["cpu_ms_per_alert"] / base["cpu_ms_per_alert"], 2) if base else None,
        })
    return out


def print_table(report: dict[str, Any]) -> None:
    print(f"{report['machine']}; {report['sites']} sites x {report['cascade']} alerts; run took "
          f"{report['runtime_seconds']} s; load average before "
          f"{' '.join(str(v) for v in report['load_average_before'])}")
    print(f"{'config':<18}{'accept/s':>9}{'proc/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'cpu ms':>7}{'(rep':>6}{'pg':>6}{'am)':>6}{'cluster':>8}{'site':>7}{'chain':>7}"
          f"{'incid':>6}{'acts':>5}{'audit':>6}  verify")
    for r in report["results"]:
        held = r["lock_hold_us_per_alert"]
        print(f"{r['config']:<18}{r['accepted_per_second']:>9}{r['processed_per_second']:>8}"
              f"{r['latency_p50_ms']:>9.0f}{r['latency_p99_ms']:>9.0f}"
              f"{r['cpu_ms_per_alert']:>7.1f}{r['cpu_ms_replicas']:>6.1f}"
              f"{r['cpu_ms_postgres']:>6.1f}{r['cpu_ms_alertmanager']:>6.1f}"
              f"{held['cluster']:>8.0f}{held['site']:>7.0f}{held['chain']:>7.0f}"
              f"{r['incidents']:>6}{r['actions']:>5}{r['audit_entries']:>6}  "
              f"{r['audit_verify']}")
    print("lock hold in µs per processed alert; cpu in ms per processed alert")
    for r in report["results"]:
        print(f"{r['config']:<18}lock holds (transactions) {r['lock_holds']}, mean ms "
              f"{r['lock_hold_mean_ms']}")
        print(f"{'':<18}pg waits while draining (mean active backends): "
              f"{r['pg_waits_during_drain']}")
        print(f"{'':<18}advisory lock requests waiting (mean): "
              f"{r['advisory_waiters_during_drain']}")
    for ratio in report["ratios"]:
        print(f"{ratio['config']}: processed/s ÷ single-chain x1 "
              f"{ratio['processed_vs_single_chain_x1']}, ÷ single-chain same N "
              f"{ratio['processed_vs_single_chain_same_n']}; cpu/alert ÷ single-chain same N "
              f"{ratio['cpu_vs_single_chain_same_n']}, ÷ x1 {ratio['cpu_vs_single_chain_x1']}")


def stop_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so that the ``finally`` blocks stop every
    process by PID."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--replicas", default="1,2,4",
                        help="comma-separated replica counts on PostgreSQL")
    parser.add_argument("--cascade", type=int, default=7,
                        help=f"alerts per site, the first of the cascade (1-{len(CASCADE)})")
    parser.add_argument("--push-threads", type=int, default=8,
                        help="client threads pushing to Alertmanager, as Prometheus servers")
    parser.add_argument("--no-healing", action="store_true",
                        help="no playbook for redis: incidents, but no actions to run")
    parser.add_argument("--fanout", choices=("shard", "all"), default="shard",
                        help="shard: each site's notifications reach one replica (a load "
                             "balancer with site affinity); all: every replica gets every "
                             "notification (one webhook per replica)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (configs and logs)")
    args = parser.parse_args()
    counts = [int(value) for value in args.replicas.split(",") if value.strip()]
    if not 1 <= args.cascade <= len(CASCADE):
        parser.error(f"--cascade must be between 1 and {len(CASCADE)}")
    if args.sites < 1 or not counts or min(counts) < 1:
        parser.error("--sites and every --replicas count must be at least 1")

    load_before = os.getloadavg()
    print(f"load average before the run: {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f} ({os.cpu_count()} CPUs)", file=sys.stderr, flush=True)
    began = time.monotonic()
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="mz-storm-"))
    try:
        with PostgresServer(max_connections=50 + 30 * max(counts)) as server:
            for sequencer in (False, True):
                design = "sequencer" if sequencer else "single-chain"
                for count in counts:
                    name = f"{design} x{count}"
                    url = server.create_database(f"storm_{design.replace('-', '_')}_{count}")
                    results.append(measure(name, tmp / name.replace(" ", "-"), url, server,
                                           replicas=count, sequencer=sequencer, args=args))
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report = {"machine": f"{platform.node()} {os.cpu_count()} CPUs, Python "
                         f"{platform.python_version()}, {platform.platform()}",
              "load_average_before": [round(value, 2) for value in load_before],
              "sites": args.sites, "cascade": args.cascade,
              "runtime_seconds": round(time.monotonic() - began, 1),
              "results": results, "ratios": ratios(results)}
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Names, help texts and label names of every metric the exporter publishes.

Probes report extra samples as :class:`~monitoriza.exporter.probes.base.Measurement` objects;
each must use a name declared in :data:`MEASUREMENT_HELP`, so that a typo cannot create an
undocumented metric and the collector knows the labels of every family up front.
"""

from __future__ import annotations

from monitoriza.exporter.exposition import Family
from monitoriza.exporter.probes.base import FAILURE_REASONS

# metric name -> (help text, label names other than ``service``)
MEASUREMENT_HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "monitoriza_http_status_code": (
        "HTTP status code of the last response (0 when there was none)",
        ("probe",),
    ),
    "monitoriza_container_state": (
        "1 for the container's current state, 0 for the other states",
        ("container", "state"),
    ),
    # A counter, not ``..._restart_count``: promtool rejects a ``_count`` suffix outside
    # histograms and summaries, and the value only grows.
    "monitoriza_container_restarts": (
        "Restarts of the container: the engine's own count plus restarts the exporter observed",
        ("container",),
    ),
    "monitoriza_container_health_status": (
        "1 for the container's current health-check status (healthy, unhealthy, starting, none)",
        ("container", "status"),
    ),
    "monitoriza_container_oom_killed": (
        "1 when the container's last exit was caused by the out-of-memory killer",
        ("container",),
    ),
    "monitoriza_redis_connected_clients": ("Clients connected to Redis", ("probe",)),
    "monitoriza_redis_memory_used_bytes": ("Memory Redis has allocated", ("probe",)),
    "monitoriza_redis_memory_max_bytes": (
        "Redis maxmemory setting (0 when unlimited)",
        ("probe",),
    ),
    "monitoriza_postgres_connections": ("Connections open on the PostgreSQL server", ("probe",)),
    "monitoriza_postgres_max_connections": (
        "PostgreSQL max_connections setting",
        ("probe",),
    ),
    "monitoriza_host_cpu_utilization_ratio": ("Fraction of CPU time in use", ("probe",)),
    "monitoriza_host_memory_utilization_ratio": ("Fraction of memory in use", ("probe",)),
    "monitoriza_host_disk_utilization_ratio": (
        "Fraction of the filesystem holding the path that is in use",
        ("probe", "path"),
    ),
    "monitoriza_process_instances": ("Processes matching the probe", ("probe",)),
    "monitoriza_process_resident_memory_bytes": (
        "Resident memory of the matching processes, summed",
        ("probe",),
    ),
    "monitoriza_process_open_files": (
        "Open files of the matching processes, summed",
        ("probe",),
    ),
}


PROBE_LABELS = ("service", "probe")
PROBE_SUCCESS = Family("monitoriza_probe_success", "1 when the last probe succeeded",
                       PROBE_LABELS)
PROBE_DURATION = Family("monitoriza_probe_duration_seconds", "Duration of the last probe run",
                        PROBE_LABELS)
PROBE_LAST_SUCCESS = Family(
    "monitoriza_probe_last_success_timestamp_seconds",
    "When the probe last succeeded (0 if it never has), for staleness rules", PROBE_LABELS)
PROBE_LAST_RUN = Family(
    "monitoriza_probe_last_run_timestamp_seconds",
    "When the probe last finished a run, successful or not: a probe that stops running is a "
    "silent failure", PROBE_LABELS)
PROBE_INTERVAL = Family("monitoriza_probe_interval_seconds",
                        "Configured interval between probe runs", PROBE_LABELS)
PROBE_FAILURE_REASON = Family(
    "monitoriza_probe_failure_reason",
    f"1 for the reason the last probe failed ({', '.join(FAILURE_REASONS)})",
    (*PROBE_LABELS, "reason"))
COMPONENT_STATUS = Family(
    "monitoriza_component_status",
    "1 for the current status of a component reported by a health endpoint, 0 for the others",
    ("service", "component", "status"))
HEALTH_DIMENSION = Family(
    "monitoriza_health_dimension_score",
    "Health of one dimension (availability, latency, saturation, errors, dependencies), 0..1",
    ("service", "dimension"))
HEALTH_SCORE = Family("monitoriza_health_score",
                      "Health score of the service, 0..100, weighted from its dimensions",
                      ("service",))
COLLECTOR_SUCCESS = Family("monitoriza_collector_success",
                           "1 when the collector section succeeded on this scrape",
                           ("collector",))
COLLECTOR_DURATION = Family("monitoriza_collector_duration_seconds",
                            "Time the collector section took on this scrape", ("collector",))
PROBES_IN_FLIGHT = Family("monitoriza_probes_in_flight", "Probe runs in progress")
PROBE_RUNS_SKIPPED = Family(
    "monitoriza_probe_runs_skipped",
    "Runs not started because the previous run of the same probe was still going",
    type="counter")

# Families rendered per probe, in exposition order.
PER_PROBE_FAMILIES = (PROBE_SUCCESS, PROBE_DURATION, PROBE_LAST_SUCCESS, PROBE_LAST_RUN,
                      PROBE_INTERVAL, PROBE_FAILURE_REASON)
SERVICE_INFO = Family("monitoriza_service_info",
                      "Always 1: a configured service and its tier, for joins in alert rules",
                      ("service", "tier"))
SERVICE_DEPENDENCY = Family(
    "monitoriza_service_dependency",
    "Always 1: service depends on depends_on (the configured dependency graph)",
    ("service", "depends_on"))
COUNTER_MEASUREMENTS = frozenset({"monitoriza_container_restarts"})
MEASUREMENT_FAMILIES = {
    name: Family(name, help_text, ("service", *labels),
                 "counter" if name in COUNTER_MEASUREMENTS else "gauge")
    for name, (help_text, labels) in MEASUREMENT_HELP.items()}

# Flows (docs/flows.md): one job per flow, rendered with a ``flow`` label instead of
# ``service``, since a flow crosses services.
FLOW_SUCCESS = Family("monitoriza_flow_success", "1 when every step of the last flow run passed",
                      ("flow",))
FLOW_DURATION = Family("monitoriza_flow_duration_seconds", "Duration of the last flow run",
                       ("flow",))
FLOW_LAST_RUN = Family("monitoriza_flow_last_run_timestamp_seconds",
                       "When the flow last finished a run, successful or not", ("flow",))
FLOW_LAST_SUCCESS = Family(
    "monitoriza_flow_last_success_timestamp_seconds",
    "When the flow last passed (0 if it never has), for staleness rules", ("flow",))
FLOW_INTERVAL = Family("monitoriza_flow_interval_seconds",
                       "Configured interval between flow runs", ("flow",))
FLOW_STEP_SUCCESS = Family(
    "monitoriza_flow_step_success",
    "1 when the step passed on the last run (0 when it failed or was skipped)",
    ("flow", "step"))
FLOW_STEP_DURATION = Family(
    "monitoriza_flow_step_duration_seconds",
    "Duration of the step on the last run (0 when skipped)", ("flow", "step"))
FLOW_STEP_STATUS = Family(
    "monitoriza_flow_step_http_status_code",
    "HTTP status of the step's answer on the last run (0 when there was none)",
    ("flow", "step"))
FLOW_FAILURE_REASON = Family(
    "monitoriza_flow_failure_reason",
    "1 for the step that failed the last run and why (timeout, connection, status, body, "
    "assertion, capture, secret)", ("flow", "step", "reason"))
FLOW_TOUCHES = Family(
    "monitoriza_flow_service",
    "Always 1: the flow touches the service (its configured services), for joins in rules",
    ("flow", "service"))
FLOW_FAMILIES = (FLOW_SUCCESS, FLOW_DURATION, FLOW_LAST_RUN, FLOW_LAST_SUCCESS, FLOW_INTERVAL,
                 FLOW_STEP_SUCCESS, FLOW_STEP_DURATION, FLOW_STEP_STATUS, FLOW_FAILURE_REASON)

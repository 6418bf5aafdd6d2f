"""Names, help texts and label names of every metric the exporter publishes.

Probes report extra samples as :class:`~monitoriza.exporter.probes.base.Measurement` objects;
each must use a name declared in :data:`MEASUREMENT_HELP`, so that a typo cannot create an
undocumented metric and the collector knows the labels of every family up front.
"""

from __future__ import annotations

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
    "monitoriza_container_restart_count": (
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
    "monitoriza_process_count": ("Processes matching the probe", ("probe",)),
    "monitoriza_process_resident_memory_bytes": (
        "Resident memory of the matching processes, summed",
        ("probe",),
    ),
    "monitoriza_process_open_files": (
        "Open files of the matching processes, summed",
        ("probe",),
    ),
}

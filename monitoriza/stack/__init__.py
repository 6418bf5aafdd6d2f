"""``monitoriza up``: the whole stack on one machine (Prometheus, Alertmanager, exporter,
responder and, with ``--demo``, a simulated Conecta Plus)."""

from pathlib import Path

DEFAULT_RUN_DIR = Path(".monitoriza/run")  # relative to where monitoriza up runs

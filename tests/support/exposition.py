"""Reading a live /metrics page the way Prometheus would."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

import requests
from prometheus_client.parser import text_string_to_metric_families

from monitoriza.exporter.metrics import MEASUREMENT_HELP
from monitoriza.exporter.probes.base import ProbeOutcome
from tests.support.binaries import require_binary


def scrape(url: str, timeout: float = 5.0) -> str:
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    return response.text


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and label set."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, labels: Mapping[str, str]) -> float | None:
    """The value of one sample, or None when the exposition does not have it."""
    return samples(text).get((name, frozenset(labels.items())))


def measurement_values(outcome: ProbeOutcome) -> dict[str, float]:
    """Measurement name -> value of a probe outcome, checking each uses a declared name and
    exactly its declared labels."""
    found: dict[str, float] = {}
    for measurement in outcome.measurements:
        assert measurement.metric in MEASUREMENT_HELP
        label_names = tuple(name for name, _ in measurement.labels)
        assert label_names == MEASUREMENT_HELP[measurement.metric][1]
        found[measurement.metric] = measurement.value
    return found


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """Lint an exposition with the real ``promtool check metrics``."""
    promtool = require_binary("promtool")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, check=False, timeout=60)

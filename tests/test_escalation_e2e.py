"""Escalation end to end: the real exporter, scraped by a real Prometheus running the
project's own rules, time-scaled by ``monitoriza rules render``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitoriza.config import config_from_data
from monitoriza.exporter.app import Exporter
from monitoriza.timescale import default_rules_dir, render_rules
from tests.support.binaries import wait_until
from tests.support.http_targets import HttpTarget
from tests.support.prometheus import PrometheusFactory

SCALE = 0.02  # ServiceDown: P4 after 1m -> 1.2 s, P3 after 5m -> 6 s


@pytest.fixture
def exporter(http_target: HttpTarget) -> Iterator[Exporter]:
    config = config_from_data({
        "exporter": {"listen": "127.0.0.1:0"},
        "services": {"web": {"tier": "standard", "probes": [
            {"kind": "http", "name": "home", "url": http_target.respond("/", status=200),
             "interval": "1s", "timeout": "500ms"}]}},
    })
    running = Exporter(config)
    running.start()
    yield running
    running.stop()


def firing(alerts: list[dict[str, Any]], name: str, severity: str) -> list[dict[str, Any]]:
    return [alert for alert in alerts if alert["labels"]["alertname"] == name
            and alert["labels"]["severity"] == severity and alert["state"] == "firing"]


class TestEscalation:
    """A probe made to fail becomes a firing P4, then a P3, in Prometheus' own alerts API."""

    def test_service_down_escalates(self, tmp_path: Path, exporter: Exporter,
                                    http_target: HttpTarget,
                                    prometheus_factory: PrometheusFactory) -> None:
        """web starts healthy; its endpoint starts failing; ServiceDown goes P4 -> P3."""
        rules = tmp_path / "rules"
        render_rules(default_rules_dir(), rules, SCALE)
        host, port = exporter.address
        prometheus = prometheus_factory({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [f"{rules}/*.yml"],
            "scrape_configs": [{"job_name": "monitoriza-exporter",
                                "static_configs": [{"targets": [f"{host}:{port}"]}]}],
        })
        # The first scrape can take a few seconds.
        assert wait_until(prometheus.targets_up, 20.0, interval=0.5)
        assert wait_until(lambda: bool(prometheus.api(
            "query", query='monitoriza_probe_success{service="web"} == 1')["result"]), 10.0)
        assert firing(prometheus.alerts(), "ServiceDown", "P4") == []

        http_target.respond("/", status=503)
        assert wait_until(lambda: bool(firing(prometheus.alerts(), "ServiceDown", "P4")), 15.0,
                          interval=0.5)
        p4 = firing(prometheus.alerts(), "ServiceDown", "P4")[0]
        assert p4["labels"] == {"alertname": "ServiceDown", "severity": "P4", "service": "web",
                                "tier": "standard", "dimension": "availability",
                                "job": "monitoriza-exporter", "instance": f"{host}:{port}"}
        assert p4["annotations"]["runbook_url"] == "docs/runbooks.md#servicedown"
        # P3 needs its own, longer `for`; it is not there yet right after the P4.
        assert firing(prometheus.alerts(), "ServiceDown", "P3") == []
        assert wait_until(lambda: bool(firing(prometheus.alerts(), "ServiceDown", "P3")), 20.0,
                          interval=0.5)
        # A standard-tier service is not paged at 5 minutes: that is for critical services.
        assert firing(prometheus.alerts(), "ServiceDown", "P2") == []
        # The failing probe raised its own P4 as well, with the reason in the metrics.
        reason = prometheus.api("query", query='monitoriza_probe_failure_reason{service="web"}')
        assert reason["result"][0]["metric"]["reason"] == "status"

        http_target.respond("/", status=200)
        assert wait_until(lambda: not [a for a in prometheus.alerts()
                                       if a["labels"]["alertname"] == "ServiceDown"], 20.0,
                          interval=0.5)

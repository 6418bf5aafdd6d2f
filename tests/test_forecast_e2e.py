"""Forecasts end to end: a real Prometheus holds the history the exporter forecasts from."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from monitoriza.config import config_from_data
from monitoriza.exporter.app import Exporter
from tests.support.binaries import wait_until
from tests.support.exposition import scrape, value
from tests.support.prometheus import PrometheusFactory

RATE = 2.0  # units a second: the "disk" fills steadily
# Prometheus scrapes every SCRAPE and the forecasts fit WINDOW of history at that resolution:
# 21 points, as many as a 20 s window at 1 s gave, in a quarter of the wall time.
SCRAPE = "250ms"
WINDOW = "5s"


class ScrapeTarget:
    """An HTTP target serving ``exposition()`` (computed per scrape) to Prometheus."""

    def __init__(self) -> None:
        self.started = time.time()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.exposition(time.time()).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]

    def exposition(self, now: float) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class FillingTarget(ScrapeTarget):
    """``fill_level`` grows at RATE a second, and ``flat_level`` stays flat."""

    def exposition(self, now: float) -> str:
        return (f"# TYPE fill_level gauge\nfill_level {self.level(now)}\n"
                "# TYPE flat_level gauge\nflat_level 5\n")

    def level(self, at: float) -> float:
        return RATE * (at - self.started)


@pytest.fixture
def filling() -> Iterator[FillingTarget]:
    target = FillingTarget()
    yield target
    target.close()


class TestForecastEndToEnd:
    """The exporter forecasts from a real Prometheus and survives losing it."""

    def test_filling_flat_and_prometheus_down(self, filling: FillingTarget,
                                              prometheus_factory: PrometheusFactory) -> None:
        """Filling: a finite median within 20 % of the truth; flat: +Inf; Prometheus gone:
        the last forecast stays published and the forecast collector reports failure."""
        prometheus = prometheus_factory({
            "global": {"scrape_interval": SCRAPE},
            "scrape_configs": [{"job_name": "disk", "static_configs": [
                {"targets": [f"127.0.0.1:{filling.port}"]}]}]})
        assert wait_until(lambda: len(prometheus.api(
            "query_range", query="fill_level", start=str(time.time() - 15),
            end=str(time.time()), step="0.25")["result"][0]["values"]) >= 20
            if prometheus.api("query", query="fill_level")["result"] else False, 60.0,
            interval=0.5)
        threshold = filling.level(time.time()) + RATE * 120  # about two minutes away
        config = config_from_data({
            "exporter": {"listen": "127.0.0.1:0", "prometheus_url": prometheus.url},
            "services": {"host": {}},
            "forecasts": {
                # by: [] publishes one forecast, the soonest series', without labels.
                "disk-fill": {"service": "host", "expr": "fill_level", "threshold": threshold,
                              "direction": "above", "horizon": "1h", "window": WINDOW,
                              "step": SCRAPE, "interval": "1s", "by": []},
                "disk-flat": {"service": "host", "expr": "flat_level", "threshold": 100,
                              "direction": "above", "horizon": "1h", "window": WINDOW,
                              "step": SCRAPE, "interval": "1s", "by": []}}})
        exporter = Exporter(config)
        exporter.start()
        try:
            url = "http://{}:{}/metrics".format(*exporter.address)
            fill = {"forecast": "disk-fill", "service": "host", "estimate": "median"}
            assert wait_until(lambda: value(scrape(url), "monitoriza_time_to_failure_seconds",
                                            fill) is not None, 15.0)
            text = scrape(url)
            ran_at = value(text, "monitoriza_forecast_last_run_timestamp_seconds",
                           {"forecast": "disk-fill"})
            assert ran_at is not None
            truth = (threshold - filling.level(ran_at)) / RATE
            median = value(text, "monitoriza_time_to_failure_seconds", fill)
            assert median is not None and abs(median - truth) <= 0.2 * truth, (median, truth)
            lower = value(text, "monitoriza_time_to_failure_seconds", {**fill,
                                                                        "estimate": "lower"})
            upper = value(text, "monitoriza_time_to_failure_seconds", {**fill,
                                                                        "estimate": "upper"})
            assert lower is not None and upper is not None and lower <= median <= upper
            flat = value(text, "monitoriza_time_to_failure_seconds",
                         {"forecast": "disk-flat", "service": "host", "estimate": "median"})
            assert flat == math.inf
            assert value(text, "monitoriza_collector_success", {"collector": "forecast"}) == 1

            prometheus.stop()
            assert wait_until(lambda: value(scrape(url), "monitoriza_collector_success",
                                            {"collector": "forecast"}) == 0.0, 15.0)
            text = scrape(url)
            # The last forecast is still there, with the time it was made.
            assert value(text, "monitoriza_time_to_failure_seconds", fill) is not None
            stale = value(text, "monitoriza_forecast_last_run_timestamp_seconds",
                          {"forecast": "disk-fill"})
            assert stale is not None and stale < time.time() - 0.5
        finally:
            exporter.stop()


MOUNTS = 30
SERIES_THRESHOLD = 3000.0  # every mount's failure level


class MountsTarget(ScrapeTarget):
    """``MOUNTS`` filesystems, ``disk_used{mountpoint}``, each filling at its own rate from 0;
    a mount can be taken away (unmounted)."""

    def __init__(self) -> None:
        self.mounts = {f"/srv/{index:02d}": 1.0 + 0.5 * index for index in range(MOUNTS)}
        super().__init__()

    def exposition(self, now: float) -> str:
        lines = ["# TYPE disk_used gauge"]
        lines += [f'disk_used{{mountpoint="{mount}"}} {self.level(mount, now)}'
                  for mount in sorted(dict(self.mounts))]
        return "\n".join(lines) + "\n"

    def level(self, mount: str, at: float) -> float:
        return self.mounts[mount] * (at - self.started)


@pytest.fixture
def mounts() -> Iterator[MountsTarget]:
    target = MountsTarget()
    yield target
    target.close()


class TestForecastPerSeries:
    def test_thirty_filesystems(self, mounts: MountsTarget,
                                prometheus_factory: PrometheusFactory) -> None:
        """Thirty filesystems filling at 1 to 15.5 units a second: thirty forecasts, each
        labelled with its mountpoint and each median within 20 % of its own remaining time;
        an unmounted filesystem disappears from the output once Prometheus has ended it; a
        forecast over the same series with max_series 20 is refused and counted."""
        prometheus = prometheus_factory({
            "global": {"scrape_interval": SCRAPE},
            "scrape_configs": [{"job_name": "node", "static_configs": [
                {"targets": [f"127.0.0.1:{mounts.port}"]}]}]})
        assert wait_until(lambda: len(prometheus.api(
            "query_range", query='disk_used{mountpoint="/srv/00"}', start=str(time.time() - 15),
            end=str(time.time()), step="0.25")["result"][0]["values"]) >= 20
            if prometheus.api("query", query="disk_used")["result"] else False, 60.0,
            interval=0.5)
        spec = {"service": "host", "expr": "disk_used", "threshold": SERIES_THRESHOLD,
                "direction": "above", "horizon": "1h", "window": WINDOW, "step": SCRAPE,
                "interval": "1s", "by": ["mountpoint"]}
        config = config_from_data({
            "exporter": {"listen": "127.0.0.1:0", "prometheus_url": prometheus.url},
            "services": {"host": {}},
            "forecasts": {"disks": spec, "disks-capped": {**spec, "max_series": 20}}})
        exporter = Exporter(config)
        exporter.start()
        try:
            url = "http://{}:{}/metrics".format(*exporter.address)

            def median(text: str, mount: str) -> float | None:
                return value(text, "monitoriza_time_to_failure_seconds", {
                    "forecast": "disks", "service": "host", "estimate": "median",
                    "mountpoint": mount})

            assert wait_until(lambda: median(scrape(url), "/srv/29") is not None, 15.0)
            text = scrape(url)
            ran_at = value(text, "monitoriza_forecast_last_run_timestamp_seconds",
                           {"forecast": "disks"})
            assert ran_at is not None
            published = [line for line in text.splitlines() if line.startswith(
                'monitoriza_time_to_failure_seconds{forecast="disks"') and
                'estimate="median"' in line]
            assert len(published) == MOUNTS
            for mount in mounts.mounts:
                truth = (SERIES_THRESHOLD - mounts.level(mount, ran_at)) / mounts.mounts[mount]
                found = median(text, mount)
                assert found is not None and abs(found - truth) <= 0.2 * truth, (
                    mount, found, truth)
            assert value(text, "monitoriza_forecast_refused_total",
                         {"forecast": "disks-capped", "reason": "series_limit"}) is not None
            assert 'monitoriza_time_to_failure_seconds{forecast="disks-capped"' not in text

            del mounts.mounts["/srv/07"]
            assert wait_until(lambda: median(scrape(url), "/srv/07") is None, 15.0)
            text = scrape(url)
            assert median(text, "/srv/06") is not None and median(text, "/srv/08") is not None
        finally:
            exporter.stop()

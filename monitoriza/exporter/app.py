"""The exporter process: scheduler, collector, HTTP endpoint and configuration reload.

SIGHUP reloads the configuration file. A bad file keeps the running configuration, logs every
error and sets ``monitoriza_config_last_reload_successful`` to 0 (blackbox_exporter style),
so a broken deploy is visible instead of silently ignored.
"""

from __future__ import annotations

import logging
import platform
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, Info, ProcessCollector

from monitoriza import __version__
from monitoriza.config import Config, load_config
from monitoriza.config.sites import config_for_site
from monitoriza.exceptions import ConfigError
from monitoriza.exporter.collector import ExporterCollector
from monitoriza.exporter.forecasts import ForecastEngine
from monitoriza.exporter.scheduler import ProbeScheduler
from monitoriza.exporter.server import metrics_app, start_server
from monitoriza.exporter.site_check import check_site
from monitoriza.exporter.state import jobs_from_config
from monitoriza.logs import get_logger, log_config_loaded

log = logging.getLogger(__name__)
events = get_logger(__name__)


def split_listen(address: str) -> tuple[str, int]:
    """``"127.0.0.1:9108"`` → ``("127.0.0.1", 9108)``; ``[::1]:9108`` keeps the bare host."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Exporter:
    """Everything one exporter process runs, startable and stoppable from tests."""

    def __init__(self, config: Config, config_path: Path | None = None,
                 listen: str | None = None) -> None:
        self.config_path = config_path
        # The exporter of one site probes that site's own targets (``sites`` overrides).
        config = config_for_site(config, config.exporter.site)
        self._config = config
        self.listen = listen or config.exporter.listen
        self.registry = CollectorRegistry()
        self.scheduler = ProbeScheduler(
            jobs_from_config(config),
            max_workers=config.exporter.max_concurrent_probes,
            errors_window=config.health.errors_window,
        )
        self.forecasts = ForecastEngine(lambda: self._config)
        self.collector = ExporterCollector(self.scheduler, lambda: self._config, self.registry,
                                           self.forecasts)
        ProcessCollector(namespace="monitoriza_exporter", registry=self.registry)
        Info("monitoriza_build", "Monitoriza version and runtime", registry=self.registry).info(
            {"version": __version__, "python_version": platform.python_version()})
        self._reload_ok = Gauge("monitoriza_config_last_reload_successful",
                                "1 when the last configuration load succeeded",
                                registry=self.registry)
        self._reload_time = Gauge("monitoriza_config_last_reload_success_timestamp_seconds",
                                  "When the configuration was last loaded successfully",
                                  registry=self.registry)
        self._reload_ok.set(1)
        self._reload_time.set(time.time())
        self._server: WSGIServer | None = None
        self._server_thread: threading.Thread | None = None

    @property
    def config(self) -> Config:
        return self._config

    @property
    def address(self) -> tuple[str, int]:
        """The address the HTTP server is bound to (the real port when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("the exporter is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        host, port = split_listen(self.listen)
        self._server, self._server_thread = start_server(host, port,
                                                         metrics_app(self.collector.render))
        self.scheduler.start()
        self.forecasts.start()
        log.info("exporter listening on http://%s:%d/metrics with %d probes",
                 *self.address, len(self.scheduler.jobs()))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._server_thread is not None:
            self._server_thread.join()
        self.scheduler.stop(wait=False)
        self.forecasts.stop()

    def reload(self) -> bool:
        """Load the configuration file again; on error keep the running configuration."""
        if self.config_path is None:
            return False
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            events.error("config.reload_refused", path=str(self.config_path),
                         errors=list(exc.messages),
                         reason="the running configuration is kept")
            self._reload_ok.set(0)
            return False
        if config.exporter != self._config.exporter:
            log.warning("changes to the exporter section take effect after a restart")
        config = config_for_site(config, self._config.exporter.site)
        self.scheduler.replace(jobs_from_config(config))
        self._config = config
        self._reload_ok.set(1)
        self._reload_time.set(time.time())
        log_config_loaded(events, config, self.config_path, reload=True)
        return True


def serve(config_path: Path, listen: str | None = None) -> int:
    """Run the exporter until SIGINT or SIGTERM; SIGHUP reloads the configuration."""
    config = load_config(config_path)
    problem = check_site(config)
    if problem is not None:
        raise ConfigError([problem])
    log_config_loaded(events, config, config_path, reload=False)
    exporter = Exporter(config, config_path, listen)
    stop = threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        reload_requested.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    exporter.start()
    try:
        while not stop.wait(0.2):
            if reload_requested.is_set():
                reload_requested.clear()
                exporter.reload()
    finally:
        log.info("exporter stopping")
        exporter.stop()
    return 0

"""The one configuration file that exporter and responder both read."""

from __future__ import annotations

from monitoriza.config.loader import config_from_data, load_config
from monitoriza.config.schema import Config, Service

__all__ = ["Config", "Service", "config_from_data", "load_config"]

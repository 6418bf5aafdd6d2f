"""Monitoriza: a Prometheus/Alertmanager-centric monitor and auto-healer."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("monitoriza")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

"""Imports every module that adds pages to the console's blueprint (their routes register
when imported); :func:`monitoriza.console.init_console` imports this once."""

from __future__ import annotations

from monitoriza.console import views_main, views_ops  # noqa: F401

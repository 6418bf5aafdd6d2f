"""The console's blueprint: every page lives under ``/console`` and renders a template of
``monitoriza/console/templates`` (shipped in the wheel, no build step)."""

from __future__ import annotations

from flask import Blueprint

console = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")

"""Reading the Grafana dashboards' queries, and making them runnable outside Grafana.

The static tests (``tests/test_dashboards.py``) check every query offline; an end-to-end test
can run the same queries against a live Prometheus with :func:`expand_variables` applied, so
that a panel which would show "No data" because of a wrong name or label is caught.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent.parent
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"

# What each Grafana variable becomes in a query sent straight to Prometheus. ``$service`` is
# only ever used inside a regex matcher (``service=~"$service"``), where ``.+`` is what the
# variable's "All" option (allValue) sends too. The intervals are ones any test Prometheus with
# a 15 s (or faster) scrape interval can answer.
EXPANSIONS = {
    "service": ".+",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}
# $name, ${name} and ${name:format}; a "$" followed by anything else (a regex anchor in a
# matcher, e.g. =~"foo$") is not a variable.
_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::\w+)?\}|\$(?P<bare>\w+)")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: the dashboard's uid, the panel's title and its PromQL."""

    dashboard: str
    panel: str
    expr: str


def load_dashboard(path: Path) -> dict[str, Any]:
    """The dashboard JSON model in ``path``."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def dashboard_files(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Every dashboard file Grafana's file provider would load from ``directory``."""
    return sorted(directory.glob("*.json"))


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels a collapsed row keeps inside itself."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(directory: Path = DASHBOARDS_DIR) -> list[PanelQuery]:
    """Every target expression of every panel of every dashboard in ``directory``."""
    queries: list[PanelQuery] = []
    for path in dashboard_files(directory):
        dashboard = load_dashboard(path)
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                if "expr" in target:
                    queries.append(PanelQuery(dashboard["uid"], panel["title"], target["expr"]))
    return queries


def variables_in(expr: str) -> set[str]:
    """The names of the Grafana variables ``expr`` uses (``service``, ``__rate_interval``...)."""
    return {match["braced"] or match["bare"] for match in _VARIABLE.finditer(expr)}


def expand_variables(expr: str) -> str:
    """``expr`` with its Grafana variables replaced, so Prometheus accepts it as it is.

    An unknown variable raises ValueError rather than passing through, so a dashboard that
    starts using a new variable fails loudly until it gets an expansion here.
    """

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name not in EXPANSIONS:
            raise ValueError(f"no expansion for Grafana variable ${name} in {expr!r}")
        return EXPANSIONS[name]

    return _VARIABLE.sub(value, expr)

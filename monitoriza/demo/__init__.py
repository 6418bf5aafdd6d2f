"""A simulated Conecta Plus for ``monitoriza up --demo``: services to watch, faults to inject.

``monitoriza demo serve`` runs :func:`monitoriza.demo.server.serve`: one process answering
for every simulated HTTP service (``/health``, ``/``, ``/metrics``) and a chat inbox that
stands in for Slack. ``monitoriza demo fault SERVICE KIND`` runs
:func:`monitoriza.demo.faults.apply_fault`. Both read the run directory's
``demo/services.json`` (:mod:`monitoriza.demo.layout`); what a fault does to a health answer
is decided by the pure :mod:`monitoriza.demo.health`.
"""

from __future__ import annotations

from monitoriza.exceptions import MonitorizaError


class DemoError(MonitorizaError):
    """The demo cannot do what was asked: a bad run directory, service or fault kind.

    The message is meant for the user as it is (it names the file, service or kind).
    """

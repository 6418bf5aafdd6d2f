"""Sites: which condominium an alert, an incident or a piece of healing state belongs to.

One responder cluster serves many sites, each with its own Prometheus, whose
``external_labels`` put the site on every alert (docs/scaling.md). Everything the responder
keys on a service (incidents, correlation, budgets, breakers, blast radius, maintenance, the
recovery cool-down) is keyed on (site, service): the ``backend`` of two condominiums never
joins one incident, and a restart at one never spends the other's budget.

:func:`site_of` is the one place an alert's site is read. Rows written before sites existed
have no site (NULL): they belong to the default site, as an alert without the label does.
State keyed by text (``healing_state``) keeps its old spelling for the default site, so the
breakers and budgets of an existing store stay where they were.
"""

from __future__ import annotations

from collections.abc import Mapping

# The site of alerts without the site label unless ``responder.default_site`` says otherwise.
DEFAULT_SITE = "default"


def site_of(labels: Mapping[str, str], label: str, default: str) -> str:
    """The site of an alert with ``labels``: the value of ``label``, or ``default`` when the
    label is missing or empty (Alertmanager treats an empty label as a missing one)."""
    return labels.get(label) or default


def stored_site(value: str | None, default: str) -> str:
    """The site of a stored row: NULL (a row of a store older than sites) is the default."""
    return value or default


def key_site(site: str, default: str) -> str | None:
    """The site as state keys spell it: None for the default site (keys keep the spelling
    stores had before sites existed), the site's name otherwise."""
    return None if site == default else site


def qualified(name: str, site: str | None) -> str:
    """``name`` as a key of ``site`` (from :func:`key_site`): unchanged for the default
    site, ``name@site`` for another. Service and playbook names cannot hold ``@``
    (configuration names are ``[a-z][a-z0-9_-]*``), so the first ``@`` ends the name
    whatever the site's own text."""
    return name if site is None else f"{name}@{site}"


def unqualified(key: str) -> tuple[str, str | None]:
    """``(name, site)`` of a key made by :func:`qualified`; None for the default site."""
    name, at, site = key.partition("@")
    return (name, site) if at else (name, None)

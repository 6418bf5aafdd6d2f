"""The exporter's site against its Prometheus's: one condominium's name, spelled once.

The ``site`` label on alerts comes from the site Prometheus's ``external_labels``; the
exporter's ``exporter.site`` chooses whose targets it probes (docs/scaling.md). If the two
disagree, aurora's targets would be watched under bosque's name, and healing would act at the
wrong condominium. So the exporter asks its Prometheus for its configuration when it starts
and refuses to run on a mismatch. A Prometheus that does not answer yet is no mismatch
(exporter and Prometheus start in any order): that is logged and the exporter runs.

:func:`prometheus_site` and :func:`mismatch` are pure; :func:`check_site` does the request.
"""

from __future__ import annotations

import logging

import requests
import yaml

from monitoriza.config.schema import Config

log = logging.getLogger(__name__)


def prometheus_site(prometheus_yaml: str, label: str) -> str | None:
    """The value of ``label`` among ``global.external_labels`` of a Prometheus
    configuration (as ``/api/v1/status/config`` answers it); None when it has none."""
    document = yaml.safe_load(prometheus_yaml) or {}
    external = (document.get("global") or {}).get("external_labels") or {}
    value = external.get(label)
    return None if value is None else str(value)


def mismatch(own: str | None, theirs: str | None, label: str) -> str | None:
    """Why the exporter must not run, or None: only two different names are a mismatch
    (an exporter without ``site`` watches the catalogue, whatever its Prometheus says)."""
    if own is None or theirs is None or own == theirs:
        return None
    return (f"exporter.site: {own!r}, but the Prometheus at the exporter's prometheus_url "
            f"labels this site {label}={theirs!r} (global.external_labels); make them agree")


def check_site(config: Config, timeout: float = 5.0) -> str | None:
    """Ask the configured Prometheus for its external labels; the mismatch, or None."""
    own = config.exporter.site
    if own is None:
        return None
    label = config.responder.site_label
    url = f"{config.exporter.prometheus_url.rstrip('/')}/api/v1/status/config"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        text = str(response.json()["data"]["yaml"])
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot compare exporter.site with Prometheus's %s label (%s): %s",
                    label, url, exc)
        return None
    return mismatch(own, prometheus_site(text, label), label)

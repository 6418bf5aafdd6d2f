"""Each site's estate (services, playbooks, dependency graph) as the responder uses it.

The configuration describes one catalogue (``services``) and each site's differences
(``sites``, monitoriza.config.sites). The journal step and the healer ask this for the
site of every alert and action, so each site's estate is built once: per site the
configuration lists, and once for every other site (they all share the catalogue).
"""

from __future__ import annotations

from collections.abc import Mapping

from monitoriza.config.schema import Config, Service
from monitoriza.config.sites import site_services
from monitoriza.healing.correlation import Topology
from monitoriza.healing.sites import key_site, site_of


class Estates:
    """Sites and their estates under one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.label = config.responder.site_label
        self.default_site = config.responder.default_site
        self._services: dict[str | None, dict[str, Service]] = {}
        self._topologies: dict[str | None, Topology] = {}

    def site_of(self, labels: Mapping[str, str]) -> str:
        """The site of an alert with ``labels`` (the default site without the label)."""
        return site_of(labels, self.label, self.default_site)

    def key_site(self, site: str) -> str | None:
        """``site`` as state keys spell it (None for the default site)."""
        return key_site(site, self.default_site)

    def _known(self, site: str) -> str | None:
        return site if site in self.config.sites else None

    def services(self, site: str) -> dict[str, Service]:
        """The services of ``site``, its differences applied."""
        known = self._known(site)
        if known not in self._services:
            self._services[known] = (dict(self.config.services) if known is None
                                     else site_services(self.config, known))
        return self._services[known]

    def topology(self, site: str) -> Topology:
        """Who depends on whom at ``site``, and how critical each service is there."""
        known = self._known(site)
        if known not in self._topologies:
            self._topologies[known] = Topology.from_config(self.config, known)
        return self._topologies[known]

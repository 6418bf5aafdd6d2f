"""Sites that share one service catalogue: ``services`` is the template, ``sites`` the
differences (docs/scaling.md#one-catalogue-many-sites).

A site's services are the template's with, per service: ``tier`` replaced, ``depends_on``
extended, named probes re-pointed (``url``, ``host``/``port``, ``container``) and named
playbooks' ``steps``/``rollback`` replaced. Nothing else differs, so every site runs the same
rules and the same playbooks by name. :func:`site_services` is pure; :func:`site_errors` is
the loader's check, with each error naming its path under ``sites``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monitoriza.config.schema import (
    _HTTP_URL_CHECK,
    CommandAction,
    Config,
    DockerProbe,
    HttpAction,
    HttpProbe,
    PostgresProbe,
    Probe,
    ProbeOverride,
    RedisProbe,
    Service,
    ServiceOverride,
    TcpProbe,
    _url,
)

_URL_CHECKS: Mapping[type[Any], Callable[[str], str]] = {
    HttpProbe: _HTTP_URL_CHECK,
    RedisProbe: _url(("redis", "rediss")).func,  # type: ignore[dict-item]
    PostgresProbe: _url(("postgresql", "postgres")).func,  # type: ignore[dict-item]
}


def _probe(probe: Probe, change: ProbeOverride) -> Probe:
    update = {name: value for name, value in change.model_dump(exclude_none=True).items()}
    return probe.model_copy(update=update)


def _service(service: Service, change: ServiceOverride) -> Service:
    depends_on = [*service.depends_on,
                  *(name for name in change.depends_on if name not in service.depends_on)]
    probes = [probe if probe.name not in change.probes else _probe(probe, change.probes[probe.name])
              for probe in service.probes]
    healing = []
    for book in service.healing:
        edit = change.healing.get(book.name)
        if edit is None:
            healing.append(book)
            continue
        healing.append(book.model_copy(update={
            **({"steps": edit.steps} if edit.steps is not None else {}),
            **({"rollback": edit.rollback} if edit.rollback is not None else {})}))
    return service.model_copy(update={"tier": change.tier or service.tier,
                                      "depends_on": depends_on, "probes": probes,
                                      "healing": healing})


def site_services(config: Config, site: str) -> dict[str, Service]:
    """The services of ``site``: the catalogue with the site's differences applied (the
    catalogue itself for a site that ``sites`` does not list)."""
    changes = config.sites.get(site)
    if changes is None:
        return dict(config.services)
    return {name: service if name not in changes.services
            else _service(service, changes.services[name])
            for name, service in config.services.items()}


def config_for_site(config: Config, site: str | None) -> Config:
    """``config`` with ``services`` replaced by those of ``site`` (unchanged for None)."""
    if site is None:
        return config
    return config.model_copy(update={"services": site_services(config, site)})


def _probe_errors(path: str, probe: Probe | None, change: ProbeOverride) -> list[str]:
    if probe is None:
        return [f"{path}: the service has no such probe"]
    errors = []
    given = change.model_dump(exclude_none=True)
    allowed = ({"url"} if type(probe) in _URL_CHECKS else {"host", "port"}
               if isinstance(probe, TcpProbe) else {"container"}
               if isinstance(probe, DockerProbe) else set())
    errors += [f"{path}.{key}: a {probe.kind} probe has no {key}" for key in sorted(given)
               if key not in allowed]
    if change.url is not None and type(probe) in _URL_CHECKS:
        try:
            _URL_CHECKS[type(probe)](change.url)
        except ValueError as exc:
            errors.append(f"{path}.url: {exc}")
    return errors


def step_errors(config: Config, path: str, steps: Sequence[Any]) -> list[str]:
    """Each step of ``path`` whose command or URL the healing allow-lists do not allow (a
    URL with a ``{label.X}`` placeholder is checked when it is rendered)."""
    healing = config.responder.healing
    allowed_urls = [str(url) for url in healing.allowed_urls]
    errors = []
    for number, step in enumerate(steps):
        where = f"{path}[{number}]"
        if isinstance(step, CommandAction) and step.argv[0] not in healing.allowed_commands:
            errors.append(f"{where}.argv[0]: {step.argv[0]!r} is not in "
                          "responder.healing.allowed_commands")
        elif isinstance(step, HttpAction) and "{" not in step.url and not any(
                step.url.startswith(prefix) for prefix in allowed_urls):
            errors.append(f"{where}.url: {step.url!r} is not under any of "
                          "responder.healing.allowed_urls")
    return errors


def site_errors(config: Config) -> list[str]:
    """What is wrong in ``sites``: services, probes and playbooks the catalogue does not
    have, overrides a probe's kind has no field for, URLs of the wrong scheme, steps outside
    the allow-lists, and unknown dependencies. (Cycles are checked by the loader on each
    site's services.) ``exporter.site`` must name a known site: a typo there would
    silently probe the catalogue's targets instead of the site's."""
    errors = []
    for site, changes in config.sites.items():
        for name, change in changes.services.items():
            path = f"sites.{site}.services.{name}"
            service = config.services.get(name)
            if service is None:
                errors.append(f"{path}: unknown service {name!r}")
                continue
            for index, dependency in enumerate(change.depends_on):
                if dependency not in config.services or dependency == name:
                    errors.append(f"{path}.depends_on[{index}]: unknown service {dependency!r}"
                                  if dependency != name else
                                  f"{path}.depends_on[{index}]: a service cannot depend on "
                                  "itself")
            probes = {probe.name: probe for probe in service.probes}
            for probe_name, probe_change in change.probes.items():
                errors += _probe_errors(f"{path}.probes.{probe_name}", probes.get(probe_name),
                                        probe_change)
            books = {book.name for book in service.healing}
            for book_name, edit in change.healing.items():
                where = f"{path}.healing.{book_name}"
                if book_name not in books:
                    errors.append(f"{where}: the service has no such playbook")
                    continue
                errors += step_errors(config, f"{where}.steps", edit.steps or [])
                errors += step_errors(config, f"{where}.rollback", edit.rollback or [])
    known = {config.responder.default_site, *config.sites}
    own = config.exporter.site
    if own is not None and own not in known:
        errors.append(f"exporter.site: unknown site {own!r} (neither "
                      "responder.default_site nor one of sites)")
    return errors

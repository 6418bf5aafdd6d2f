"""Strict loading of the configuration file: parse, reject unknown keys, apply defaults, validate.

Every problem becomes one message that starts with its path in the file, e.g.
``services.backend.probes[0].timeout: must be > 0``; all problems of a file are reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from monitoriza.config.schema import (
    PROBE_KINDS,
    Config,
    DockerProbe,
    Service,
)
from monitoriza.config.sites import site_errors, site_services, step_errors
from monitoriza.exceptions import ConfigError

ROOT = "(root)"


def _duplicate_key_errors(node: yaml.Node, path: tuple[int | str, ...] = ()) -> list[str]:
    """Duplicate mapping keys anywhere under ``node``; PyYAML would silently keep the last."""
    errors = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                errors.append(f"{format_path((*path, key))}: duplicate key (first on line "
                              f"{first_line[key]}, again on line {line})")
            first_line.setdefault(key, line)
            errors += _duplicate_key_errors(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            errors += _duplicate_key_errors(item, (*path, index))
    return errors


def format_path(loc: Iterable[int | str]) -> str:
    """``("services", "backend", "probes", 0)`` → ``services.backend.probes[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or ROOT


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _describe(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _message(error: ErrorDetails) -> str:  # noqa: PLR0911 - one return per kind of error
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {_describe(error['input'])}"
    if kind == "literal_error":
        expected = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"must be one of: {expected}"
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return f"must be one of: {', '.join(PROBE_KINDS)}"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound:g}" if isinstance(bound, float) else f"must be {op} {bound}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"])


def _error_path(loc: Sequence[int | str]) -> str:
    # A discriminated union puts the tag into the location (probes.0.http.url); users never
    # wrote that tag as a key, so drop it.
    parts = [p for i, p in enumerate(loc)
             if not (p in PROBE_KINDS and i > 0 and isinstance(loc[i - 1], int))]
    # Pydantic appends "[key]" for dict keys failing their own validator; keep the key itself.
    return format_path(p for p in parts if p != "[key]")


def _validation_messages(exc: ValidationError) -> list[str]:
    messages = []
    for error in exc.errors(include_url=False):
        kind = error["type"]
        loc = error["loc"]
        if kind in {"union_tag_invalid", "union_tag_not_found"}:
            loc = (*loc, "kind")
        messages.append(f"{_error_path(loc)}: {_message(error)}")
    return sorted(set(messages), key=messages.index)


def parse_yaml(text: str) -> Any:
    """Parse YAML with duplicate keys refused; errors name the path, or the line and column."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = _duplicate_key_errors(node)
        if duplicates:
            raise ConfigError(duplicates)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{ROOT}: not valid YAML: {where}{exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{ROOT}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()


def _resolve_probes(config: Config) -> tuple[Config, list[str]]:
    """Apply probe defaults (name, interval, timeout) and check what depends on them."""
    errors: list[str] = []
    services: dict[str, Service] = {}
    defaults = config.exporter
    for service_name, service in config.services.items():
        probes = []
        seen: set[str] = set()
        for index, probe in enumerate(service.probes):
            path = f"services.{service_name}.probes[{index}]"
            name = probe.name or probe.kind
            if name in seen:
                errors.append(f"{path}.name: duplicate probe name {name!r} in this service")
            seen.add(name)
            interval = probe.interval or defaults.default_interval
            timeout = probe.timeout or min(defaults.default_timeout, interval)
            if timeout > interval:
                errors.append(
                    f"{path}.timeout: must not exceed the interval ({timeout:g}s > {interval:g}s)"
                )
            update: dict[str, object] = {"name": name, "interval": interval, "timeout": timeout}
            if isinstance(probe, DockerProbe) and probe.docker_url is None:
                update["docker_url"] = defaults.docker_url
            probes.append(probe.model_copy(update=update))
        services[service_name] = service.model_copy(update={"probes": probes})
    return config.model_copy(update={"services": services}), errors


def _graph_errors(services: Mapping[str, Service]) -> list[str]:
    """Unknown dependencies, repeated ones, and cycles in ``depends_on``."""
    errors = []
    for name, service in services.items():
        seen: set[str] = set()
        for index, dependency in enumerate(service.depends_on):
            path = f"services.{name}.depends_on[{index}]"
            if dependency == name:
                errors.append(f"{path}: a service cannot depend on itself")
            elif dependency not in services:
                errors.append(f"{path}: unknown service {dependency!r}")
            elif dependency in seen:
                errors.append(f"{path}: {dependency!r} is listed twice")
            seen.add(dependency)
    if not errors:
        cycle = find_cycle({n: list(s.depends_on) for n, s in services.items()})
        if cycle:
            errors.append(f"services: dependency cycle: {' -> '.join(cycle)}")
    return errors


def _playbook_errors(config: Config) -> list[str]:
    """Playbooks refer to real probes and stay inside the responder's allow-lists."""
    errors = []
    for name, service in config.services.items():
        probes = {probe.name for probe in service.probes}
        seen: set[str] = set()
        for index, book in enumerate(service.healing):
            path = f"services.{name}.healing[{index}]"
            if book.name in seen:
                errors.append(f"{path}.name: duplicate playbook name {book.name!r}")
            seen.add(book.name)
            if book.verify is not None:
                if (book.verify.probe is None) == (book.verify.promql is None):
                    errors.append(f"{path}.verify: set exactly one of probe and promql")
                elif book.verify.probe is not None and book.verify.probe not in probes:
                    errors.append(f"{path}.verify.probe: {name} has no probe "
                                  f"{book.verify.probe!r}")
            for part, steps in (("steps", book.steps), ("rollback", book.rollback)):
                errors += step_errors(config, f"{path}.{part}", steps)
    return errors


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Return one cycle of ``graph`` as a closed path (``a, b, a``), or an empty list."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str]:
        if node in visiting:
            return [*visiting[visiting.index(node):], node]
        if node in done:
            return []
        visiting.append(node)
        for child in graph.get(node, ()):
            cycle = visit(child)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return []


# A relative SQLite path (sqlite:///name.db); not :memory:, not sqlite:////absolute.
RELATIVE_SQLITE_URL = re.compile(r"^(sqlite(?:\+\w+)?:///)(?!/|:memory:)(.+)$")


def _beside(base: Path, value: str) -> str:
    return value if Path(value).is_absolute() else str(base / value)


def _anchored(value: Any, base: Path) -> Any:
    """``value`` with its relative paths made relative to ``base``: every field named
    ``*_file`` (a path) or ``*_files`` (a mapping to paths), at any depth. The rule is the
    naming, so a path field added later cannot be forgotten here."""
    if isinstance(value, BaseModel):
        updates: dict[str, Any] = {}
        for name in type(value).model_fields:
            item = getattr(value, name)
            if name.endswith("_file") and isinstance(item, str) and item:
                anchored: Any = _beside(base, item)
            elif name.endswith("_files") and isinstance(item, dict):
                anchored = {key: _beside(base, path) for key, path in item.items()}
            else:
                anchored = _anchored(item, base)
            if anchored is not item:
                updates[name] = anchored
        return value.model_copy(update=updates) if updates else value
    if isinstance(value, list):
        items = [_anchored(item, base) for item in value]
        return items if any(new is not old for new, old in zip(items, value, strict=True)) \
            else value
    if isinstance(value, dict):
        mapping = {key: _anchored(item, base) for key, item in value.items()}
        return mapping if any(mapping[key] is not value[key] for key in value) else value
    return value


def resolve_paths(config: Config, base: Path) -> Config:
    """Every relative file path of ``config`` (defaults included) made relative to ``base``,
    the directory of the configuration file, as Prometheus and Alertmanager do: where a
    process was started from must not decide where its key, store or token live. Paths are
    the ``*_file``/``*_files`` fields (see :func:`_anchored`) and a relative SQLite store."""
    resolved: Config = _anchored(config, base)
    store = RELATIVE_SQLITE_URL.match(resolved.responder.store_url)
    if store is None:
        return resolved
    return resolved.model_copy(update={"responder": resolved.responder.model_copy(
        update={"store_url": f"{store.group(1)}{base / store.group(2)}"})})


def config_from_data(data: Any, base: Path | None = None) -> Config:
    """Validate already-parsed data; raise ConfigError with every problem found. Relative
    file paths are resolved against ``base`` when given (see :func:`resolve_paths`), else
    left as written (relative to the working directory)."""
    if data is None:
        raise ConfigError([f"{ROOT}: the configuration is empty"])
    if not isinstance(data, dict):
        raise ConfigError([f"{ROOT}: expected a mapping, got {_describe(data)}"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_messages(exc)) from None
    config, errors = _resolve_probes(config)
    errors += _graph_errors(config.services)
    errors += _playbook_errors(config)
    errors += site_errors(config)
    if not errors:
        for site in config.sites:
            cycle = find_cycle({name: list(service.depends_on)
                                for name, service in site_services(config, site).items()})
            if cycle:
                errors.append(f"sites.{site}.services: dependency cycle: {' -> '.join(cycle)}")
    errors += [f"forecasts.{name}.service: unknown service {spec.service!r}"
               for name, spec in config.forecasts.items() if spec.service not in config.services]
    if errors:
        raise ConfigError(errors)
    config = config if base is None else resolve_paths(config, base)
    # Checked once resolved: a missing secret is a config error now, not a failing flow later.
    missing = [f"flows.{name}.steps[{index}].headers_files.{header}: file not found: {file}"
               for name, flow in config.flows.items()
               for index, step in enumerate(flow.steps)
               for header, file in step.headers_files.items() if not Path(file).is_file()]
    if missing:
        raise ConfigError(missing)
    return config


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the configuration file at ``path``; relative file paths in
    it are resolved against the file's directory."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{ROOT}: file not found: {path}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{ROOT}: cannot read {path}: {exc}"]) from None
    return config_from_data(parse_yaml(text), Path(path).absolute().parent)

"""The shape of the configuration file, as strict pydantic models.

Unknown keys are rejected (``extra="forbid"``) and no value is silently coerced from another
type (``strict=True``), so a typo is an error instead of a default. Cross-field rules that need
the whole file (defaults from the ``exporter`` section, the dependency graph) live in
:mod:`monitoriza.config.loader`.
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    model_validator,
)

from monitoriza.durations import parse_duration
from monitoriza.flows.jsonpath import JsonPathError, parse_json_path
from monitoriza.flows.placeholders import placeholders_in

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _duration_seconds(value: object) -> object:
    """Turn ``"90s"`` into ``90.0``; other types fall through to the float check."""
    if isinstance(value, str):
        if value.startswith("-"):
            raise ValueError("must be > 0")
        return parse_duration(value)
    if isinstance(value, bool | int | float):
        raise ValueError(f"expected a duration like 90s or 5m, got the number {value!r}")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (lower-case letters, digits, '_' and '-', "
            "starting with a letter)"
        )
    return value


def _url(schemes: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"{value!r} is not a valid URL (expected {' or '.join(schemes)}://HOST…)")
        try:
            parts.port  # noqa: B018 - accessing it is what validates the port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        return value

    return AfterValidator(check)


def _listen_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    port_ok = port.isascii() and port.isdigit() and int(port) <= 65535
    if not sep or not host or not port_ok:
        raise ValueError(f"{value!r} is not a HOST:PORT address")
    return value


Duration = Annotated[float, BeforeValidator(_duration_seconds), AfterValidator(_positive)]
Name = Annotated[str, AfterValidator(_name)]
HttpUrl = Annotated[str, _url(("http", "https"))]
_HTTP_URL_CHECK = cast(Callable[[str], str], _url(("http", "https")).func)
RedisUrl = Annotated[str, _url(("redis", "rediss"))]
PostgresUrl = Annotated[str, _url(("postgresql", "postgres"))]
ListenAddress = Annotated[str, AfterValidator(_listen_address)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
# A site's name as its Prometheus's external_labels spell it (docs/scaling.md): a plain token.
SiteName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
# A Prometheus label name.
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# A label a forecast may be published with: names starting with __ are Prometheus's own.
SeriesLabel = Annotated[str, Field(
    pattern=r"^(?:[A-Za-z][A-Za-z0-9_]*|_(?:[A-Za-z0-9][A-Za-z0-9_]*)?)$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    """Base for every section: unknown keys and silent type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProbeBase(Strict):
    """Settings every probe has. ``interval`` and ``timeout`` default from ``exporter``."""

    name: Name | None = None
    interval: Duration | None = None
    timeout: Duration | None = None


class HttpProbe(ProbeBase):
    """GET (or another method) a URL; optionally read a JSON health body."""

    kind: Literal["http"]
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    health_body: bool = False
    max_body_bytes: Annotated[int, Field(gt=0)] = 1_048_576
    verify_tls: bool = True
    latency_target: Duration | None = None


class TcpProbe(ProbeBase):
    """Open a TCP connection."""

    kind: Literal["tcp"]
    host: str
    port: Port
    latency_target: Duration | None = None


class RedisProbe(ProbeBase):
    """PING, then INFO for clients and memory use against ``maxmemory``."""

    kind: Literal["redis"]
    url: RedisUrl
    password_file: str | None = None


class PostgresProbe(ProbeBase):
    """``SELECT 1`` and connections in use against ``max_connections``."""

    kind: Literal["postgres"]
    url: PostgresUrl
    password_file: str | None = None


class DockerProbe(ProbeBase):
    """State, health status, restarts and OOM kills of one container."""

    kind: Literal["docker"]
    container: str
    docker_url: str | None = None


class HostProbe(ProbeBase):
    """CPU, memory and disk use of the machine the exporter runs on."""

    kind: Literal["host"]
    disk_paths: list[str] = Field(default_factory=lambda: ["/"])


class ProcessProbe(ProbeBase):
    """A named process (for services not in containers): running, RSS, open files."""

    kind: Literal["process"]
    process_name: str
    cmdline_contains: str | None = None
    max_rss_bytes: Annotated[int, Field(gt=0)] | None = None
    max_open_files: Annotated[int, Field(gt=0)] | None = None


Probe = Annotated[
    HttpProbe | TcpProbe | RedisProbe | PostgresProbe | DockerProbe | HostProbe | ProcessProbe,
    Field(discriminator="kind"),
]
PROBE_KINDS = ("http", "tcp", "redis", "postgres", "docker", "host", "process")


class ActionBase(Strict):
    """One step of a playbook. Strings may hold placeholders ``{service}``,
    ``{alertname}`` and ``{label.NAME}``; a label value only fills a placeholder if it is a
    plain token (letters, digits, ``._:-``), so it can never smuggle in shell syntax, a path
    or another host."""

    timeout: Duration = 30.0


class DockerRestartAction(ActionBase):
    action: Literal["docker_restart"]
    container: str
    docker_url: str | None = None


class CommandAction(ActionBase):
    action: Literal["command"]
    argv: Annotated[list[str], Field(min_length=1)]  # run directly, never through a shell


class HttpAction(ActionBase):
    action: Literal["http"]
    url: HttpUrl
    method: Literal["GET", "POST", "PUT"] = "POST"


Action = Annotated[DockerRestartAction | CommandAction | HttpAction,
                   Field(discriminator="action")]
ACTION_KINDS = ("docker_restart", "command", "http")


class Verify(Strict):
    """How a playbook checks that healing worked: re-run a probe, or a PromQL condition."""

    probe: Name | None = None
    promql: str | None = None
    timeout: Duration = 60.0
    interval: Duration = 2.0
    # Wait this long before the first check, so that a target that starts and falls over
    # again at once is not counted as healed.
    settle: Duration | None = None


class PlaybookMatch(Strict):
    """Which alerts a playbook answers (the service is the one it is declared under)."""

    alertname: list[str] = Field(default_factory=list)  # empty: any
    severity: list[Literal["P2", "P3", "P4"]] = Field(default_factory=list)  # empty: any


class Playbook(Strict):
    name: Name
    match: PlaybookMatch = Field(default_factory=PlaybookMatch)
    steps: Annotated[list[Action], Field(min_length=1)]
    verify: Verify | None = None
    rollback: list[Action] = Field(default_factory=list)
    dry_run: bool = False


class Service(Strict):
    """One service of the estate."""

    tier: Literal["critical", "standard"] = "standard"
    description: str = ""
    depends_on: list[Name] = Field(default_factory=list)
    probes: list[Probe] = Field(default_factory=list)
    healing: list[Playbook] = Field(default_factory=list)


class HealthWeights(Strict):
    """Relative weight of each health dimension in ``monitoriza_health_score``."""

    availability: Annotated[float, Field(ge=0.0)] = 0.35
    latency: Annotated[float, Field(ge=0.0)] = 0.15
    saturation: Annotated[float, Field(ge=0.0)] = 0.15
    errors: Annotated[float, Field(ge=0.0)] = 0.15
    dependencies: Annotated[float, Field(ge=0.0)] = 0.20


class ComponentScores(Strict):
    """What each reported component status is worth in the dependencies dimension."""

    healthy: Ratio = 1.0
    degraded: Ratio = 0.5
    unknown: Ratio = 0.5
    unhealthy: Ratio = 0.0


class Health(Strict):
    """How probe results become dimension scores; see docs/health-score.md."""

    weights: HealthWeights = Field(default_factory=HealthWeights)
    latency_target: Duration = 0.5
    saturation_warn: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.8
    errors_window: Annotated[int, Field(ge=1, le=1000)] = 20
    component_scores: ComponentScores = Field(default_factory=ComponentScores)


class ForecastSpec(Strict):
    """A time-to-failure forecast of a PromQL expression, published by the exporter."""

    service: Name
    expr: Annotated[str, Field(min_length=1)]
    threshold: float
    direction: Literal["above", "below"] = "above"
    horizon: Duration = 86400.0
    window: Duration = 21600.0  # history fitted, as predict_linear(x[6h]) would use
    step: Duration = 60.0  # resolution of the history pulled from Prometheus
    interval: Duration = 300.0  # how often the forecast runs
    # The source series' labels each forecast is published with (series that share them are
    # one forecast: the soonest to fail); None: all of them but __name__.
    by: list[SeriesLabel] | None = None
    # More series (or by: groups) than this and the run is refused, counted and logged.
    max_series: Annotated[int, Field(ge=1)] = 200
    # The share of foreseen crossings [lower, upper] is to contain (docs/forecasting.md,
    # "Calibrated bounds"): measured within 10 points of the level from 0.6 to 0.9.
    coverage: Annotated[float, Field(ge=0.5, le=0.95)] = 0.8


class Exporter(Strict):
    """Where the exporter listens and how it schedules probes."""

    listen: ListenAddress = "127.0.0.1:9108"
    prometheus_url: HttpUrl = "http://127.0.0.1:9090"
    default_interval: Duration = 15.0
    default_timeout: Duration = 5.0
    max_concurrent_probes: Annotated[int, Field(ge=1, le=1024)] = 32
    docker_url: str | None = None
    # The site this exporter watches: it probes that site's services (``sites`` overrides
    # applied). The alerts' ``site`` label comes from Prometheus's external_labels.
    site: SiteName | None = None


class Audit(Strict):
    """The hash-chained audit log and its signed checkpoints (see docs/audit.md)."""

    # Optional HMAC key: with it, rewriting the chain needs the key, not just the file.
    hmac_key_file: str | None = None
    # Ed25519 private key (PEM) that signs checkpoints; generated on first use if missing.
    signing_key_file: str = "monitoriza-audit-signing.pem"
    # Checkpoints are kept outside the store, so that truncating the store is detectable.
    checkpoint_file: str = "monitoriza-audit-checkpoints.jsonl"
    checkpoint_every: Annotated[int, Field(ge=1)] = 100
    # New entries are checkpointed within this long; a graceful stop checkpoints at once.
    checkpoint_interval: Duration = 5.0
    # The responder re-verifies the whole chain this often and exports the result.
    verify_interval: Duration = 600.0
    # On PostgreSQL, alert processing queues its entries and a sequencer integrates them into
    # the chain in batches, so sites are processed side by side (docs/scaling.md). False: every
    # processing transaction holds one cluster-wide lock, the design before sites.
    sequencer: bool = True


class Budget(Strict):
    """Restarts allowed per target in a sliding window, and the backoff between them."""

    restarts: Annotated[int, Field(ge=1)] = 3
    window: Duration = 900.0
    backoff_initial: Duration = 10.0
    backoff_max: Duration = 300.0
    reset_after: Duration = 600.0  # healthy this long: backoff starts over


class Breaker(Strict):
    """Circuit breaker per (service, action)."""

    consecutive_failures: Annotated[int, Field(ge=1)] = 3
    failure_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    window: Annotated[int, Field(ge=1)] = 10
    min_calls: Annotated[int, Field(ge=1)] = 5
    open_for: Duration = 60.0
    max_open_for: Duration = 1800.0
    close_after: Annotated[int, Field(ge=1)] = 2


class MaintenanceWindow(Strict):
    services: list[Name] = Field(default_factory=list)  # empty: every service
    sites: list[SiteName] = Field(default_factory=list)  # empty: every site
    start: str  # RFC 3339
    end: str


class Chat(Strict):
    """A Slack-compatible incoming webhook for incident posts."""

    webhook_url_file: str
    timeout: Duration = 5.0
    max_per_minute: Annotated[int, Field(ge=1)] = 20
    retries: Annotated[int, Field(ge=0)] = 3


class Healing(Strict):
    """The responder's healing policy; see docs/healing.md."""

    dry_run: bool = False
    kill_switch_file: str = "monitoriza-kill-switch"
    allowed_commands: list[str] = Field(default_factory=list)  # argv[0] values that may run
    allowed_urls: list[HttpUrl] = Field(default_factory=list)  # URL prefixes http steps may use
    budget: Budget = Field(default_factory=Budget)
    breaker: Breaker = Field(default_factory=Breaker)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    max_concurrent_actions: Annotated[int, Field(ge=1)] = 4
    max_targets_per_minute: Annotated[int, Field(ge=1)] = 2
    # The window max_targets_per_minute counts over: a minute, unless timers are scaled.
    blast_radius_window: Duration = 60.0
    correlation_window: Duration = 300.0
    # After an incident resolves, alerts of its services (a restarted service warming up)
    # re-attach to it for this long instead of opening a new incident; nothing is healed.
    recovery_cooldown: Duration = 180.0
    recurring_threshold: Annotated[int, Field(ge=2)] = 3  # same signature N times in 7 days
    # What another site's outcome of a playbook counts for in operational memory's ranking,
    # relative to one at the alert's own site (docs/healing.md#operational-memory).
    pooled_memory_weight: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    alertmanager_url: HttpUrl | None = None  # where refusals are escalated as P2 alerts
    chat: Chat | None = None


class ConsoleSettings(Strict):
    """The responder's web console (docs/console.md): who may log in and how sessions last."""

    enabled: bool = True
    # Signs the session cookie; generated (0600) on first start when missing. Unset, the
    # secret is derived from the responder's token (changing the token ends every session).
    session_secret_file: str | None = None
    # A second token that logs in read-only: sees everything, changes nothing.
    readonly_token_file: str | None = None
    session_lifetime: Duration = 43200.0
    # Seconds between the pages' own refreshes (no JavaScript: a meta refresh).
    refresh: Duration = 10.0
    # The history window of the overview's sparklines.
    trend_window: Duration = 21600.0


class Responder(Strict):
    """The Alertmanager webhook: where it listens, where it keeps state, how it authenticates."""

    listen: ListenAddress = "127.0.0.1:9095"
    # SQLite path by default; a postgresql:// URL shares state between replicas.
    store_url: str = "sqlite:///monitoriza-responder.db"
    # How long a write waits for the store's lock before the webhook answers 503.
    store_timeout: Duration = 5.0
    # Bearer token Alertmanager must send (its credentials_file holds the same token).
    token_file: str = "monitoriza-responder.token"
    max_body_bytes: Annotated[int, Field(gt=0)] = 1_048_576
    # Notifications arriving together share one journal commit of at most this many alerts
    # (a larger notification commits alone); 0 commits each in its own transaction.
    group_commit_max: Annotated[int, Field(ge=0, le=100_000)] = 256
    lease: Duration = 30.0
    # A journal row whose processing fails waits retry_backoff, doubled after each further
    # failure up to retry_backoff_max; after max_attempts it is dead-lettered (state dead).
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 5
    retry_backoff: Duration = 1.0
    retry_backoff_max: Duration = 300.0
    # One process with this many request threads; scale out with replicas, not processes.
    threads: Annotated[int, Field(ge=1, le=256)] = 16
    # A connection must deliver a whole request (headers and body) within this long of being
    # opened or of starting it; past it the server answers 408 (or closes an idle one).
    request_deadline: Duration = 5.0
    # Open connections at once; past it the server stops accepting until some close.
    max_connections: Annotated[int, Field(ge=16, le=65536)] = 4096
    # The alert label naming the site (condominium) an alert comes from; alerts without it
    # belong to default_site (docs/scaling.md#many-sites-one-responder).
    site_label: LabelName = "site"
    default_site: SiteName = "default"
    audit: Audit = Field(default_factory=Audit)
    healing: Healing = Field(default_factory=Healing)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)


# The service names of the file being validated, so that a flow's ``services`` entry is
# checked where it is written and its error names its own path (flows.x.services[0]), which a
# validator on the whole file could not do. Set by Config's wrap validator, per validation.
_SERVICE_NAMES: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "monitoriza_config_service_names", default=None)


def _known_service(value: str) -> str:
    known = _SERVICE_NAMES.get()
    if known is not None and value not in known:
        raise ValueError(f"unknown service {value!r}")
    return value


def _json_path(value: str) -> str:
    try:
        parse_json_path(value)
    except JsonPathError as exc:
        raise ValueError(str(exc)) from None
    return value


def _json_value(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("must be plain JSON (strings, numbers, booleans, null, lists, "
                         "mappings)") from None
    return value


def _flow_url(value: str) -> str:
    """Checked in full when it holds no placeholder; otherwise at least its scheme."""
    if "{" not in value:
        return _HTTP_URL_CHECK(value)
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not a valid URL (expected http or https://HOST…)")
    return value


def _status_list(value: object) -> object:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


JsonPathText = Annotated[str, AfterValidator(_json_path)]
JsonValue = Annotated[Any, AfterValidator(_json_value)]
StatusCode = Annotated[int, Field(ge=100, le=599)]
CaptureName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class FlowStep(Strict):
    """One HTTP request of a flow and what its answer must be (see docs/flows.md)."""

    name: Name
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: Annotated[str, AfterValidator(_flow_url)]
    headers: dict[str, str] = Field(default_factory=dict)
    # Header name -> a file whose content (stripped) is the header's value; relative to the
    # configuration file's directory, and checked to exist when the file is loaded.
    headers_files: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    body: JsonValue = None  # sent as JSON when set
    # Any 2xx when empty.
    expect_status: Annotated[list[StatusCode], BeforeValidator(_status_list)] = Field(
        default_factory=list)
    assert_: dict[JsonPathText, JsonValue] = Field(default_factory=dict, alias="assert")
    capture: dict[CaptureName, JsonPathText] = Field(default_factory=dict)
    timeout: Duration | None = None  # at most what is left of the flow's timeout

    def used_placeholders(self) -> Iterator[tuple[str, str]]:
        """(where, name) of every ``{name}`` in the URL, headers and body."""
        yield from (("url", name) for name in placeholders_in(self.url))
        for header, value in self.headers.items():
            yield from ((f"headers.{header}", name) for name in placeholders_in(value))
        yield from (("body", name) for name in placeholders_in(self.body))


class Flow(Strict):
    """A named multi-step HTTP user journey, run by the exporter as a synthetic probe."""

    interval: Duration = 60.0
    timeout: Duration = 10.0
    services: list[Annotated[str, AfterValidator(_known_service)]] = Field(
        default_factory=list)
    steps: Annotated[list[FlowStep], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_steps(self) -> Flow:
        if self.timeout > self.interval:
            raise ValueError(f"timeout must not exceed the interval ({self.timeout:g}s > "
                             f"{self.interval:g}s)")
        names: set[str] = set()
        captured: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.name in names:
                raise ValueError(f"steps[{index}].name: duplicate step name {step.name!r}")
            names.add(step.name)
            for where, name in step.used_placeholders():
                if name not in captured:
                    raise ValueError(f"steps[{index}].{where}: {{{name}}} is used before any "
                                     "earlier step captures it")
            captured.update(step.capture)
        return self


class ProbeOverride(Strict):
    """What a site changes in one probe of the shared catalogue: where the target is."""

    url: str | None = None  # http, redis and postgres probes; checked as the probe's kind
    host: str | None = None  # tcp
    port: Port | None = None  # tcp
    container: str | None = None  # docker


class PlaybookOverride(Strict):
    """What a site changes in one playbook: its steps (and rollback), replaced whole."""

    steps: Annotated[list[Action], Field(min_length=1)] | None = None
    rollback: list[Action] | None = None


class ServiceOverride(Strict):
    """What a site changes in one service of the shared catalogue (``services``)."""

    tier: Literal["critical", "standard"] | None = None
    depends_on: list[Name] = Field(default_factory=list)  # added to the service's own
    probes: dict[Name, ProbeOverride] = Field(default_factory=dict)  # by probe name
    healing: dict[Name, PlaybookOverride] = Field(default_factory=dict)  # by playbook name


class Site(Strict):
    """One site (condominium) sharing the service catalogue, with its own differences."""

    services: dict[Name, ServiceOverride] = Field(default_factory=dict)


class Config(Strict):
    """The whole configuration file."""

    exporter: Exporter = Field(default_factory=Exporter)
    responder: Responder = Field(default_factory=Responder)
    forecasts: dict[Name, ForecastSpec] = Field(default_factory=dict)
    health: Health = Field(default_factory=Health)
    services: dict[Name, Service]
    # Sites sharing ``services`` as a template; a site not listed uses it unchanged.
    sites: dict[SiteName, Site] = Field(default_factory=dict)
    flows: dict[Name, Flow] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _with_service_names(cls, data: Any, handler: ModelWrapValidatorHandler[Config]) -> Config:
        services = data.get("services") if isinstance(data, dict) else None
        token = _SERVICE_NAMES.set(frozenset(services) if isinstance(services, dict) else None)
        try:
            return handler(data)
        finally:
            _SERVICE_NAMES.reset(token)


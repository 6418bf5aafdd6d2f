"""Sites are first-class: one responder serves many condominiums, each its own partition.

The responder runs in-process on the real store (SQLite and PostgreSQL, the ``store_url``
fixture) with the journal worker driven by the test; playbooks make real HTTP calls to real
targets (tests/support/http_targets.py), one path per site, so the hits say where healing
happened. The healer runs on a fake clock (it stands in for time only: backoff, windows).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from sqlalchemy import select

from monitoriza.cli import main
from monitoriza.config import config_from_data, load_config
from monitoriza.config.schema import Config, MaintenanceWindow
from monitoriza.config.sites import site_services
from monitoriza.exceptions import ConfigError
from monitoriza.exporter.site_check import check_site, prometheus_site
from monitoriza.healing import repository
from monitoriza.healing.breaker import BreakerState, breaker_key, parse_breaker_key
from monitoriza.healing.budget import budget_key, parse_budget_key
from monitoriza.healing.correlation import (
    AlertEvent,
    AlertSummary,
    Incident,
    MemoryMembers,
    Topology,
    correlate,
)
from monitoriza.healing.drill_windows import DrillWindow, drill_for
from monitoriza.healing.healer import Healer
from monitoriza.healing.memory import Outcomes, lower_bound, rank
from monitoriza.healing.policy import in_maintenance
from monitoriza.healing.sites import site_of
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import actions, incidents, writing
from tests.support.http_targets import HttpTarget
from tests.support.prometheus import PrometheusFactory
from tests.support.responder import TOKEN, closed_after_test, post

START = 1_800_000_000.0


class FakeClock:
    """Wall and monotonic time that only move when the code under test sleeps."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def alert_body(service: str, alertname: str, fingerprint: str, site: str | None,
               **labels: str) -> str:
    """One firing alert from ``site`` (None: without the site label) as Alertmanager posts it."""
    own = {"alertname": alertname, "service": service, "severity": "P3", **labels,
           **({"site": site} if site is not None else {})}
    alert = {"status": "firing", "labels": own, "annotations": {},
             "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": fingerprint}
    return json.dumps({"version": "4", "receiver": "responder", "status": "firing",
                       "alerts": [alert], "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": "",
                       "groupKey": f"{{}}:{{site=\"{site}\",service=\"{service}\"}}",
                       "truncatedAlerts": 0})




def estate(target: HttpTarget, playbooks: tuple[str, ...] = ("restart-redis",)) -> dict[str, Any]:
    """Redis and the backend that needs it; each playbook calls the catalogue's URL, which
    sites aurora and bosque replace with their own (``sites``)."""
    books = [{"name": name, "match": {"alertname": ["ServiceDown"]},
              "steps": [{"action": "http", "url": target.url(f"/heal/catalogue/{name}")}]}
             for name in playbooks]
    return {
        "services": {"redis": {"tier": "critical", "healing": books},
                     "backend": {"depends_on": ["redis"]}},
        "sites": {site: {"services": {"redis": {"healing": {
            name: {"steps": [{"action": "http", "url": target.url(f"/heal/{site}/{name}")}]}
            for name in playbooks}}}} for site in ("aurora", "bosque")},
    }


def build(tmp_path: Path, store_url: str, data: dict[str, Any], clock: FakeClock,
          target: HttpTarget, **healing: Any) -> tuple[Flask, Healer]:
    config: Config = config_from_data({**data, "responder": {
        "store_url": store_url, "token_file": str(tmp_path / "token"),
        "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                  "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
        "healing": {"kill_switch_file": str(tmp_path / "kill-switch"),
                    "allowed_urls": [target.url("/heal/")], **healing}}})
    app = create_app(config, token=TOKEN, start_worker=False)
    closed_after_test(app)
    state = responder_of(app)
    healer = Healer(state.journal.engine, config, state.audit, clock=clock.time,
                    monotonic=clock.time, sleep=clock.sleep)
    return app, healer


def heal(app: Flask, healer: Healer) -> None:
    while responder_of(app).worker.run_once():
        pass
    while healer.run_once():
        pass


def stored_incidents(app: Flask) -> list[tuple[str | None, str | None, str]]:
    """(site, root cause, state) of every incident, by id."""
    with responder_of(app).journal.engine.connect() as conn:
        return [(row.site, row.root_service, row.state) for row in conn.execute(
            select(incidents.c.site, incidents.c.root_service, incidents.c.state)
            .order_by(incidents.c.id))]


def stored_actions(app: Flask) -> list[tuple[str | None, str, str | None]]:
    """(site, playbook, outcome) of every action, by id."""
    with responder_of(app).journal.engine.connect() as conn:
        return [(row.site, row.playbook, row.outcome) for row in conn.execute(
            select(actions.c.site, actions.c.playbook, actions.c.outcome)
            .order_by(actions.c.id))]


def audit(app: Flask, kind: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in responder_of(app).audit.entries(limit=10000) if e.kind == kind]


class TestSiteOfAnAlert:
    """One pure function reads an alert's site."""

    def test_label_names_the_site(self) -> None:
        """The configured label's value is the site; missing or empty, the default site."""
        assert site_of({"site": "aurora"}, "site", "default") == "aurora"
        assert site_of({"condominio": "aurora"}, "condominio", "sede") == "aurora"
        assert site_of({}, "site", "default") == "default"
        assert site_of({"site": ""}, "site", "sede") == "sede"


class TestTwoSitesLoseRedisTogether:
    """Two condominiums losing redis at the same moment are two outages, healed apart."""

    def test_two_incidents_each_healed_at_its_site_within_its_own_budget(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget) -> None:
        """Redis and the backend fail at aurora and at bosque at once: two incidents, each
        with redis as its root cause and its own backend as symptom; each site's playbook
        URL is called once. Budget (1 restart) and blast radius (1 target a minute) would
        refuse the second site if they were shared: both heal."""
        clock = FakeClock()
        for site in ("aurora", "bosque"):
            http_target.respond(f"/heal/{site}/restart-redis", status=200)
        app, healer = build(tmp_path, store_url, estate(http_target), clock, http_target,
                            budget={"restarts": 1}, max_targets_per_minute=1)
        client = app.test_client()
        for site in ("aurora", "bosque"):
            post(client, alert_body("redis", "ServiceDown", f"redis-{site}", site))
            post(client, alert_body("backend", "ServiceDown", f"backend-{site}", site))
        heal(app, healer)
        assert stored_incidents(app) == [("aurora", "redis", "healing"),
                                         ("bosque", "redis", "healing")]
        opened = audit(app, "incident.updated")
        assert {(entry["site"], entry["firing"]) for entry in opened} == {("aurora", 2),
                                                                          ("bosque", 2)}
        assert stored_actions(app) == [("aurora", "restart-redis", "success"),
                                       ("bosque", "restart-redis", "success")]
        assert http_target.hits("/heal/aurora/restart-redis") == 1
        assert http_target.hits("/heal/bosque/restart-redis") == 1
        assert http_target.hits("/heal/catalogue/restart-redis") == 0
        with responder_of(app).journal.engine.connect() as conn:
            for site in ("aurora", "bosque"):
                assert len(repository.load_budget(conn, budget_key("redis", site)).attempts) == 1
            assert repository.load_state(conn, budget_key("redis")) is None
        assert responder_of(app).audit.verify().ok

    def test_a_breaker_open_at_one_site_does_not_refuse_another(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget) -> None:
        """Aurora's breaker on restart-redis is open: aurora's action is refused by the
        breaker, bosque's runs."""
        clock = FakeClock()
        for site in ("aurora", "bosque"):
            http_target.respond(f"/heal/{site}/restart-redis", status=200)
        app, healer = build(tmp_path, store_url, estate(http_target), clock, http_target)
        tripped = BreakerState(state="open", consecutive_failures=3,
                               recent=(False, False, False), opened_at=clock.now,
                               open_for=600.0, trial_in_flight=False, half_open_successes=0)
        with writing(responder_of(app).journal.engine) as conn:
            repository.save_state(conn, breaker_key("redis", "restart-redis", "aurora"),
                                  tripped.to_dict())
        client = app.test_client()
        for site in ("aurora", "bosque"):
            post(client, alert_body("redis", "ServiceDown", f"redis-{site}", site))
        heal(app, healer)
        assert stored_actions(app) == [("aurora", "restart-redis", "blocked"),
                                       ("bosque", "restart-redis", "success")]
        (refused,) = audit(app, "action.blocked")
        assert (refused["site"], refused["check"]) == ("aurora", "breaker")
        assert http_target.hits("/heal/aurora/restart-redis") == 0
        assert http_target.hits("/heal/bosque/restart-redis") == 1
        metrics = client.get("/metrics").text
        assert ('monitoriza_healing_breaker_state{action="restart-redis",service="redis",'
                'site="aurora",state="open"} 1.0') in metrics
        assert ('monitoriza_healing_breaker_state{action="restart-redis",service="redis",'
                'site="bosque",state="closed"} 1.0') in metrics


class TestDefaultSite:
    """An alert without the site label belongs to the default site."""

    def test_unlabelled_alert_joins_the_default_sites_incident(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget) -> None:
        """Without the label, and with ``site="default"`` spelled out, alerts form one
        incident of the default site, healed with the catalogue's own step; the same
        service at aurora is another incident."""
        clock = FakeClock()
        http_target.respond("/heal/catalogue/restart-redis", status=200)
        http_target.respond("/heal/aurora/restart-redis", status=200)
        app, healer = build(tmp_path, store_url, estate(http_target), clock, http_target)
        client = app.test_client()
        post(client, alert_body("redis", "ServiceDown", "unlabelled", None))
        post(client, alert_body("backend", "ServiceDown", "explicit", "default"))
        post(client, alert_body("redis", "ServiceDown", "aurora", "aurora"))
        heal(app, healer)
        assert stored_incidents(app) == [("default", "redis", "healing"),
                                         ("aurora", "redis", "healing")]
        assert http_target.hits("/heal/catalogue/restart-redis") == 1
        assert http_target.hits("/heal/aurora/restart-redis") == 1
        headers = {"Authorization": f"Bearer {TOKEN}"}
        listed = client.get("/api/v1/incidents?site=default", headers=headers).get_json()
        assert [(found["site"], sorted(found["services"])) for found in listed["incidents"]] \
            == [("default", ["backend", "redis"])]
        listed = client.get("/api/v1/incidents", headers=headers).get_json()
        assert [found["site"] for found in listed["incidents"]] == ["aurora", "default"]
        with responder_of(app).journal.engine.connect() as conn:
            # The default site's state keeps the spelling it had before sites existed.
            assert repository.load_state(conn, budget_key("redis")) is not None

    def test_a_configured_label_and_default(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget) -> None:
        """``site_label: condominio`` and ``default_site: sede``: the label named is read,
        ``site`` is just another label."""
        http_target.respond("/heal/catalogue/restart-redis", status=200)
        data = {**estate(http_target), "sites": {}}
        config = config_from_data({**data, "responder": {
            "store_url": store_url, "site_label": "condominio", "default_site": "sede",
            "token_file": str(tmp_path / "token"),
            "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                      "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
            "healing": {"kill_switch_file": str(tmp_path / "kill-switch"),
                        "allowed_urls": [http_target.url("/heal/")]}}})
        app = create_app(config, token=TOKEN, start_worker=False)
        closed_after_test(app)
        client = app.test_client()
        post(client, alert_body("redis", "ServiceDown", "a", "ignored"))
        post(client, alert_body("redis", "ServiceDown", "b", None, condominio="aurora"))
        while responder_of(app).worker.run_once():
            pass
        assert [site for site, _, _ in stored_incidents(app)] == ["sede", "aurora"]


class TestPooledMemory:
    """What healed redis at one condominium informs another, below the other's own evidence."""

    def test_pooled_evidence_ranks_below_local_and_informs_a_new_site(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget) -> None:
        """Aurora's own record (alpha healed 3 times) outranks bosque's (beta 3 times). At
        cedro the two pooled records tie, and cedro's own failure of beta decides: alpha.
        The memory API shows each site's counts, the pooled ones, and the ranking's view."""
        clock = FakeClock()
        books = ("alpha", "beta")
        for site in ("aurora", "catalogue"):
            for name in books:
                http_target.respond(f"/heal/{site}/{name}", status=200)
        app, healer = build(tmp_path, store_url, estate(http_target, books), clock,
                            http_target)
        signature = "redis:service:ServiceDown"
        with writing(responder_of(app).journal.engine) as conn:
            for _ in range(3):
                repository.record_outcome(conn, signature, "redis", "alpha", True,
                                          site="aurora")
                repository.record_outcome(conn, signature, "redis", "beta", True,
                                          site="bosque")
            repository.record_outcome(conn, signature, "redis", "beta", False, site="cedro")
        client = app.test_client()
        post(client, alert_body("redis", "ServiceDown", "r-aurora", "aurora"))
        post(client, alert_body("redis", "ServiceDown", "r-cedro", "cedro"))
        heal(app, healer)
        rankings = {entry["site"]: entry["ranking"] for entry in audit(app, "decision.queued")}
        assert rankings == {"aurora": ["alpha", "beta"], "cedro": ["alpha", "beta"]}
        memory = client.get("/api/v1/memory",
                            headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["memory"]
        rows = {(row["site"], row["action"]): row for row in memory}
        assert set(rows) == {("aurora", "alpha"), ("bosque", "beta"), ("cedro", "alpha"),
                             ("cedro", "beta")}
        # Aurora: its three and the heal this test ran; pooled: cedro's heal with alpha.
        alpha = rows[("aurora", "alpha")]
        assert (alpha["successes"], alpha["failures"]) == (4, 0)
        assert (alpha["pooled_successes"], alpha["pooled_failures"],
                alpha["pooled_sites"]) == (1, 0, 1)
        assert alpha["pooled_weight"] == 0.5
        beta = rows[("bosque", "beta")]
        assert (beta["successes"], beta["pooled_failures"]) == (3, 1)
        assert beta["ranked_success_ratio"] < beta["success_ratio"]
        assert {"success_ratio", "ranked_success_ratio", "lower_bound",
                "pooled_sites"} <= set(alpha)

    def test_the_formula(self) -> None:
        """Three successes here outrank three elsewhere; pooled beat none; weight 0 ignores
        the pool; a weight of 1 or more is refused."""
        three = Outcomes(3, 0)
        assert rank({"pooled": Outcomes(), "local": three}, {"pooled": three}, 0.5) == [
            "local", "pooled"]
        assert rank({"a": Outcomes(), "b": Outcomes()}, {"b": three}, 0.5) == ["b", "a"]
        assert rank({"a": Outcomes(), "b": Outcomes()}, {"b": three}, 0.0) == ["a", "b"]
        # a = 1 + 0 + 0.5 * 3 = 2.5, b = 1: the bound of Beta(2.5, 1).
        assert lower_bound(Outcomes(), pooled=three, weight=0.5) == pytest.approx(0.4417, 1e-3)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            rank({"a": Outcomes()}, {"a": three}, 1.0)


class TestSitesConfiguration:
    """``sites`` describes each condominium's differences from the shared catalogue."""

    def data(self) -> dict[str, Any]:
        return {"services": {
            "redis": {"probes": [{"kind": "redis", "url": "redis://10.0.0.1:6379"},
                                 {"name": "port", "kind": "tcp", "host": "10.0.0.1",
                                  "port": 6379}],
                      "healing": [{"name": "restart", "steps": [
                          {"action": "command", "argv": ["/usr/bin/systemctl", "restart",
                                                         "redis"]}]}]},
            "backend": {"depends_on": ["redis"]}, "cache": {}},
            "responder": {"healing": {"allowed_commands": ["/usr/bin/systemctl",
                                                           "/usr/bin/ssh"]}}}

    def test_overrides_apply_over_the_catalogue(self) -> None:
        """Tier, probe URL and port, steps and added dependencies are aurora's; another site
        gets the catalogue unchanged."""
        config = config_from_data({**self.data(), "sites": {"aurora": {"services": {
            "redis": {"tier": "critical",
                      "probes": {"redis": {"url": "redis://10.1.0.1:6379"},
                                 "port": {"host": "10.1.0.1"}},
                      "healing": {"restart": {"steps": [
                          {"action": "command", "argv": ["/usr/bin/ssh", "aurora"]}]}}},
            "backend": {"depends_on": ["cache"]}}}}})
        aurora = site_services(config, "aurora")
        assert aurora["redis"].tier == "critical"
        assert [getattr(probe, "url", getattr(probe, "host", None))
                for probe in aurora["redis"].probes] == ["redis://10.1.0.1:6379", "10.1.0.1"]
        assert aurora["redis"].probes[1].port == 6379  # type: ignore[union-attr]
        assert aurora["redis"].healing[0].steps[0].argv == [  # type: ignore[union-attr]
            "/usr/bin/ssh", "aurora"]
        assert aurora["backend"].depends_on == ["redis", "cache"]
        assert Topology.from_config(config, "aurora").dependencies("backend") == {"redis",
                                                                                  "cache"}
        assert site_services(config, "bosque") == config.services

    @pytest.mark.parametrize(("sites", "message"), [
        ({"aurora": {"services": {"nope": {}}}},
         "sites.aurora.services.nope: unknown service 'nope'"),
        ({"aurora": {"services": {"redis": {"probes": {"ping": {"url": "redis://x:1"}}}}}},
         "sites.aurora.services.redis.probes.ping: the service has no such probe"),
        ({"aurora": {"services": {"redis": {"probes": {"redis": {"url": "http://x/"}}}}}},
         "sites.aurora.services.redis.probes.redis.url: 'http://x/' is not a valid URL "
         "(expected redis or rediss://HOST…)"),
        ({"aurora": {"services": {"redis": {"probes": {"port": {"url": "redis://x:1"}}}}}},
         "sites.aurora.services.redis.probes.port.url: a tcp probe has no url"),
        ({"aurora": {"services": {"redis": {"healing": {"restart": {"steps": [
            {"action": "command", "argv": ["/bin/rm"]}]}}}}}},
         "sites.aurora.services.redis.healing.restart.steps[0].argv[0]: '/bin/rm' is not in "
         "responder.healing.allowed_commands"),
        ({"aurora": {"services": {"redis": {"healing": {"flush": {}}}}}},
         "sites.aurora.services.redis.healing.flush: the service has no such playbook"),
        ({"aurora": {"services": {"redis": {"depends_on": ["backend"]}}}},
         "sites.aurora.services: dependency cycle: backend -> redis -> backend"),
        ({"aurora": {"services": {"redis": {"colour": "red"}}}},
         "sites.aurora.services.redis.colour: unknown key"),
        ({"bad site!": {}}, "sites.bad site!: String should match pattern"),
    ])
    def test_errors_name_their_path(self, sites: dict[str, Any], message: str) -> None:
        with pytest.raises(ConfigError) as caught:
            config_from_data({**self.data(), "sites": sites})
        assert any(line.startswith(message) for line in caught.value.messages), \
            caught.value.messages

    def test_exporter_site_must_be_known(self) -> None:
        """A typo in ``exporter.site`` would probe the catalogue's targets: refused."""
        with pytest.raises(ConfigError) as caught:
            config_from_data({**self.data(), "exporter": {"site": "auroa"},
                              "sites": {"aurora": {}}})
        assert caught.value.messages == [
            "exporter.site: unknown site 'auroa' (neither responder.default_site nor one of "
            "sites)"]
        config_from_data({**self.data(), "exporter": {"site": "aurora"},
                          "sites": {"aurora": {}}})


class TestKeys:
    """Breaker and budget keys of the default site keep their old spelling."""

    def test_round_trip(self) -> None:
        assert breaker_key("redis", "restart") == "breaker:redis:restart"
        assert budget_key("redis") == "budget:redis"
        assert parse_breaker_key(breaker_key("redis", "restart", "a:b@c")) == (
            "redis", "restart", "a:b@c")
        assert parse_budget_key(budget_key("redis", "aurora")) == ("redis", "aurora")
        assert parse_budget_key(budget_key("redis")) == ("redis", None)


class TestExporterSite:
    """The exporter refuses to run when its site and its Prometheus's disagree."""

    def test_mismatch_with_a_real_prometheus(self, tmp_path: Path,
                                             prometheus_factory: PrometheusFactory,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        """Prometheus labels the site bosque: an exporter of aurora exits 2 naming both;
        an exporter of bosque passes the check; a Prometheus that does not answer is no
        mismatch (they may start in any order)."""
        prometheus = prometheus_factory({"global": {"external_labels": {"site": "bosque"}}})
        path = tmp_path / "monitoriza.yml"
        for site, url in (("aurora", prometheus.url), ("bosque", prometheus.url),
                          ("aurora", "http://127.0.0.1:1")):
            path.write_text(yaml.safe_dump({
                "services": {}, "sites": {"aurora": {}, "bosque": {}},
                "exporter": {"site": site, "prometheus_url": url}}))
            assert check_site(load_config(path), timeout=2.0) == (
                "exporter.site: 'aurora', but the Prometheus at the exporter's prometheus_url "
                "labels this site site='bosque' (global.external_labels); make them agree"
                if (site, url) == ("aurora", prometheus.url) else None)
        path.write_text(yaml.safe_dump({
            "services": {}, "sites": {"aurora": {}},
            "exporter": {"site": "aurora", "prometheus_url": prometheus.url,
                         "listen": "127.0.0.1:0"}}))
        assert main(["exporter", "--config", str(path)]) == 2
        assert "exporter.site: 'aurora', but the Prometheus" in capsys.readouterr().err

    def test_prometheus_site_reads_external_labels(self) -> None:
        text = "global:\n  external_labels:\n    condominio: aurora\n"
        assert prometheus_site(text, "condominio") == "aurora"
        assert prometheus_site(text, "site") is None
        assert prometheus_site("global: {}\n", "site") is None


def _event(fingerprint: str, service: str, received_at: float) -> AlertEvent:
    return AlertEvent(fingerprint=fingerprint, starts_at=received_at, status="firing",
                      alertname="ServiceDown", service=service, severity="P3", labels={},
                      received_at=received_at)


class TestPartitionsOfThePureCore:
    """The recovery cool-down, maintenance windows and drill windows are each site's."""

    def test_cooldown_catches_only_its_own_sites_after_effects(self) -> None:
        """Aurora's redis incident resolved a minute ago: a backend alert at aurora is its
        after-effect; the same alert at bosque opens bosque's own incident."""
        topology = Topology({"backend": ("redis",)}, {})
        members = MemoryMembers()
        resolved = Incident(id=1, state="resolved", opened_at=START - 300,
                            resolved_at=START - 60, summary=AlertSummary.of(
                                [_event("r", "redis", START - 300)]), site="aurora")
        members.record(1, _event("r", "redis", START - 300))
        for site, after_effect in (("aurora", True), ("bosque", False)):
            result = correlate([resolved], _event(f"b-{site}", "backend", START), topology,
                               START, 300.0, members=members, cooldown=180.0, site=site)
            assert result is not None
            assert result.after_effect is after_effect
            assert result.incident.site == ("aurora" if after_effect else site)
            assert result.created is not after_effect

    def test_maintenance_window_naming_sites(self) -> None:
        """A window over redis at aurora covers aurora's redis only; asked without a site
        (a page listing the windows), it covers redis."""
        window = MaintenanceWindow(services=["redis"], sites=["aurora"],
                                   start="2027-01-15T08:00:00Z", end="2027-01-15T09:00:00Z")
        inside = datetime(2027, 1, 15, 8, 30, tzinfo=UTC).timestamp()
        assert in_maintenance([window], "redis", inside, site="aurora")
        assert not in_maintenance([window], "redis", inside, site="bosque")
        assert not in_maintenance([window], "backend", inside, site="aurora")
        assert in_maintenance([window], "redis", inside)

    def test_drill_window_of_one_site(self) -> None:
        """A drill at aurora claims aurora's redis incident, not bosque's; a window naming
        no site claims either."""
        aurora = DrillWindow("e1", "drill-a", "redis-down", ("redis",), START, START + 600,
                             site="aurora")
        anywhere = DrillWindow("e2", "drill-b", "redis-down", ("redis",), START - 10,
                               START + 600)
        assert drill_for([aurora], START + 5, {"redis"}, "aurora") == "drill-a"
        assert drill_for([aurora], START + 5, {"redis"}, "bosque") is None
        assert drill_for([aurora, anywhere], START + 5, {"redis"}, "bosque") == "drill-b"

"""Health dimensions and scores follow docs/health-score.md."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from monitoriza.config import config_from_data
from monitoriza.config.schema import Health, HttpProbe
from monitoriza.exporter import health
from monitoriza.exporter.probes.base import ProbeOutcome
from monitoriza.exporter.state import FLOW_SERVICE, ProbeJob, ProbeState

SPEC = HttpProbe.model_validate({"kind": "http", "url": "http://127.0.0.1:1/"})


def state(service: str = "backend", name: str = "health", *, ok: bool = True,
          kind: str = "http", latency: float | None = 0.1, timeout: float = 5.0,
          reason: str | None = None, utilization: Mapping[str, float] | None = None,
          components: Mapping[str, str] | None = None,
          recent: tuple[bool, ...] | None = None) -> ProbeState:
    outcome = ProbeOutcome(success=ok, failure_reason=reason if not ok else None,
                           latency_seconds=latency, utilization=utilization or {},
                           components=components or {})
    job = ProbeJob(service, name, kind, 15.0, timeout, SPEC)
    return ProbeState(job, outcome, latency or 0.0, 1000.0, 1000.0 if ok else None,
                      recent if recent is not None else (ok,), components or {})


class TestDimensions:
    """Each dimension scores what its name says, in 0..1."""

    def test_availability_is_the_share_of_passing_probes(self) -> None:
        """Two probes of which one fails give availability 0.5."""
        assert health.availability([state(ok=True), state(name="tcp", ok=False)]) == 0.5

    @pytest.mark.parametrize(("seconds", "score"), [(0.2, 1.0), (0.5, 1.0), (2.75, 0.5),
                                                    (5.0, 0.0), (9.0, 0.0)])
    def test_latency_falls_linearly_from_target_to_timeout(self, seconds: float,
                                                           score: float) -> None:
        """At the 0.5 s target the score is 1, half-way to the 5 s timeout it is 0.5."""
        assert health.latency([state(latency=seconds)], 0.5) == pytest.approx(score)

    def test_latency_timeout_scores_zero_and_refusal_is_ignored(self) -> None:
        """A timed-out probe scores 0; a refused connection says nothing about latency."""
        assert health.latency([state(ok=False, reason="timeout")], 0.5) == 0.0
        assert health.latency([state(ok=False, reason="connection")], 0.5) is None

    def test_latency_ignores_local_probes(self) -> None:
        """A docker probe's duration measures the engine, not the service."""
        assert health.latency([state(kind="docker", latency=4.0)], 0.5) is None

    @pytest.mark.parametrize(("used", "score"), [(0.5, 1.0), (0.8, 1.0), (0.9, 0.5), (1.0, 0.0),
                                                 (1.7, 0.0)])
    def test_saturation(self, used: float, score: float) -> None:
        """Up to 80 % used is fine; beyond it the score falls to 0 at full use."""
        assert health.saturation([state(utilization={"memory": used})], 0.8) == pytest.approx(
            score)

    def test_errors_counts_recent_runs_of_all_probes(self) -> None:
        """Three failures in eight recent runs give 5/8."""
        states = [state(recent=(True, False, True, True)), state(recent=(False, True, False,
                                                                          True))]
        assert health.errors(states) == 5 / 8

    def test_dependencies_take_the_weakest_link(self) -> None:
        """An unknown component (0.5) is weaker than a fully available dependency."""
        scores = health.HealthModel.from_config(Health()).component_scores
        score = health.dependencies(["postgres"], {"postgres": 1.0}, {"redis": "unknown"},
                                    scores)
        assert score == 0.5
        assert health.dependencies(["postgres"], {"postgres": 0.0}, {}, scores) == 0.0
        assert health.dependencies([], {}, {}, scores) is None

    def test_worst_component_status_wins(self) -> None:
        """Two probes reporting one component: the worse status is kept."""
        merged = health.merge_components([state(components={"redis": "healthy"}),
                                          state(name="b", components={"redis": "unknown"})])
        assert merged == {"redis": "unknown"}


class TestScore:
    """The score is the weighted mean of the dimensions that have a signal."""

    def test_worked_example_from_the_docs(self) -> None:
        """The example in docs/health-score.md gives 85.5."""
        dims = {"availability": 1.0, "latency": 0.8, "saturation": 1.0, "errors": 0.9,
                "dependencies": 0.5}
        weights = Health().weights.model_dump()
        assert health.weighted_score(dims, weights) == pytest.approx(85.5)

    def test_missing_dimension_drops_out_of_the_weights(self) -> None:
        """The docs' backend without a saturation signal scores 82.9, not a diluted value."""
        dims = {"availability": 1.0, "latency": 0.8, "errors": 0.9, "dependencies": 0.5}
        score = health.weighted_score(dims, Health().weights.model_dump())
        assert score == pytest.approx(82.94, abs=0.01)

    def test_down_service_is_capped_by_availability(self) -> None:
        """A service with every probe failing scores 0, whatever its other dimensions."""
        dims = {"availability": 0.0, "dependencies": 1.0, "errors": 0.5}
        assert health.weighted_score(dims, Health().weights.model_dump()) == 0.0

    def test_estate_dependencies_use_the_dependency_availability(self) -> None:
        """Redis down lowers the backend's dependencies dimension to 0."""
        config = config_from_data({"services": {"backend": {"depends_on": ["redis"]},
                                                "redis": {}}})
        result = health.estate_health(config, [state("backend"), state("redis", "redis",
                                                                        ok=False)])
        assert result["backend"].dimensions["dependencies"] == 0.0
        assert result["redis"].score == 0.0
        assert result["backend"].score is not None and 0 < result["backend"].score < 100

    def test_service_without_results_has_no_score(self) -> None:
        """Before any probe has run there is no score rather than a made-up 100."""
        config = config_from_data({"services": {"backend": {}}})
        assert health.estate_health(config, [])["backend"].score is None


FLOW_CONFIG = {
    "services": {"api-gateway": {}, "backend": {"depends_on": ["redis"]}, "redis": {},
                 "frontend": {"depends_on": ["api-gateway"]}},
    "flows": {"checkin": {"services": ["api-gateway", "backend"],
                          "steps": [{"name": "s", "url": "http://127.0.0.1:1/"}]}},
}


def flow_state(config_data: Mapping[str, object], *, ok: bool,
               recent: tuple[bool, ...]) -> ProbeState:
    """The state of the ``checkin`` flow as the scheduler keeps it (kind ``flow``)."""
    flow = config_from_data(dict(config_data)).flows["checkin"]
    outcome = ProbeOutcome(success=ok, failure_reason=None if ok else "status",
                           latency_seconds=9.0)
    job = ProbeJob(FLOW_SERVICE, "checkin", "flow", 2.0, 2.0, flow)
    return ProbeState(job, outcome, 9.0, 1000.0, 1000.0 if ok else None, recent)


class TestFlows:
    """A flow counts as one more probe of each service it lists (docs/health-score.md)."""

    def test_failing_flow_lowers_each_listed_service(self) -> None:
        """A failing check-in through the gateway and the backend halves both availabilities
        and counts in their errors; a service the flow does not list is untouched."""
        config = config_from_data(FLOW_CONFIG)
        states = [state("api-gateway"), state("backend"), state("redis", "redis"),
                  state("frontend"),
                  flow_state(FLOW_CONFIG, ok=False, recent=(True, False, False, False))]
        result = health.estate_health(config, states)
        for name in ("api-gateway", "backend"):
            assert result[name].dimensions["availability"] == 0.5
            assert result[name].dimensions["errors"] == pytest.approx(2 / 5)
        assert result["redis"].dimensions["availability"] == 1.0
        # The gateway's lower availability reaches the frontend's dependencies dimension,
        # as a failing probe of the gateway would.
        assert result["frontend"].dimensions["dependencies"] == 0.5

    def test_flow_duration_is_not_latency(self) -> None:
        """A passing flow of several requests taking 9 s leaves latency to the probes."""
        config = config_from_data(FLOW_CONFIG)
        result = health.estate_health(
            config, [state("backend", latency=0.1), flow_state(FLOW_CONFIG, ok=True,
                                                                recent=(True,))])
        assert result["backend"].dimensions["latency"] == 1.0
        assert result["backend"].dimensions["availability"] == 1.0

    def test_a_service_listed_twice_counts_the_flow_once(self) -> None:
        """``services: [backend, backend]`` is one failing run, not two."""
        data = {**FLOW_CONFIG, "flows": {"checkin": {
            "services": ["backend", "backend"], "steps": [{"name": "s",
                                                           "url": "http://127.0.0.1:1/"}]}}}
        config = config_from_data(data)
        result = health.estate_health(config, [state("backend"),
                                               flow_state(data, ok=False, recent=(False,))])
        assert result["backend"].dimensions["availability"] == 0.5

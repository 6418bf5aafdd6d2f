"""Generated input against the responder: no 5xx, no crash, nothing written for bad requests.

Schemathesis derives requests from the OpenAPI document the responder serves (and which is
kept in the repository), hypothesis generates arbitrary JSON and headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
import yaml
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from tests.support.responder import TOKEN, counts, fixture_json, responder_config

OPENAPI = Path(__file__).parent.parent / "monitoriza" / "responder" / "openapi.yaml"


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = create_app(responder_config(tmp_path_factory.mktemp("fuzz")), token=TOKEN,
                     start_worker=False)
    yield app
    responder_of(app).journal.engine.dispose()


def contract_check(operation: Any) -> Any:
    """A hypothesis test of one operation, with and without the token."""

    excluded = [ignored_auth]
    if operation.path == "/api/v1/alerts":
        # The webhook refuses strings the store cannot hold (a NUL, a lone surrogate), label
        # names included, which an OpenAPI 3.0 schema cannot express: such "valid" payloads
        # rightly get 400. Every other check (status, content type, body) still applies.
        excluded.append(positive_data_acceptance)

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def check(case: Any) -> None:
        for headers, authenticated in (({"Authorization": f"Bearer {TOKEN}"}, True),
                                       ({"Authorization": "Bearer wrong"}, False)):
            response = case.call(headers=headers)
            assert response.status_code < 500, response.text
            if not authenticated and operation.definition.raw.get("security"):
                assert response.status_code == 401
            # Our own 401 check above replaces schemathesis' guess of which token is valid.
            case.validate_response(response, excluded_checks=excluded)

    return check


def test_openapi_contract(fuzz_app: Flask) -> None:
    """Every documented operation, with and without the token: never a 5xx, and every answer
    matches the document (status, content type, body schema)."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.yaml", fuzz_app)
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("POST", "/api/v1/alerts"), ("GET", "/api/v1/audit"), ("GET", "/readyz")}
    for operation in operations:
        contract_check(operation)()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)


class TestArbitraryInput:
    """Hypothesis: whatever arrives, the answer is a JSON 2xx/4xx and bad input writes nothing."""

    @given(body=JSON)
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_arbitrary_json(self, fuzz_app: Flask, body: Any) -> None:
        """Random JSON values are rejected with 400 and write nothing."""
        state = responder_of(fuzz_app)
        before = counts(state)
        response = fuzz_app.test_client().post(
            "/api/v1/alerts", data=json.dumps(body), content_type="application/json",
            headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 400
        assert response.is_json
        assert counts(state) == before

    @given(mutation=st.dictionaries(
        st.sampled_from(["version", "receiver", "status", "alerts", "groupKey",
                         "truncatedAlerts", "groupLabels", "externalURL"]),
        JSON, min_size=1, max_size=3))
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_mutated_payloads(self, fuzz_app: Flask, mutation: dict[str, Any]) -> None:
        """A real payload with fields replaced by random values: 200 or 400, never more."""
        body = fixture_json("firing_group.json") | mutation
        state = responder_of(fuzz_app)
        before = counts(state)
        response = fuzz_app.test_client().post(
            "/api/v1/alerts", data=json.dumps(body), content_type="application/json",
            headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code in {200, 400}, response.text
        if response.status_code == 400:
            assert counts(state) == before

    @given(header=st.text(max_size=200), body=st.binary(max_size=2000))
    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_random_tokens_and_bytes(self, fuzz_app: Flask, header: str, body: bytes) -> None:
        """Random Authorization headers never get in; random bytes never crash the parser."""
        state = responder_of(fuzz_app)
        before = counts(state)
        try:
            headers = {"Authorization": header}
            response = fuzz_app.test_client().post("/api/v1/alerts", data=body,
                                                   content_type="application/json",
                                                   headers=headers)
        except ValueError:
            return  # werkzeug refuses header values with newlines before any request is made
        assert response.status_code == 401
        assert counts(state) == before


def test_every_route_is_documented(fuzz_app: Flask) -> None:
    """Each route of the app (method and path) is an operation of the document, and each
    operation is a route: the document cannot fall behind the code."""
    document = yaml.safe_load(OPENAPI.read_text())
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method in {"get", "post", "put", "patch", "delete"}}
    # The console's HTML pages are not the API (docs/console.md documents them).
    routes = {(method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
              for rule in fuzz_app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.endpoint.startswith("console.")
              for method in rule.methods or () if method not in {"HEAD", "OPTIONS"}}
    assert routes - documented == set(), "routes missing from openapi.yaml"
    assert documented - routes == set(), "operations in openapi.yaml that the app lacks"


def test_openapi_file_is_what_is_served(fuzz_app: Flask) -> None:
    """The document in the repository is the one the responder serves."""
    served = fuzz_app.test_client().get("/api/v1/openapi.yaml").data
    assert served == OPENAPI.read_bytes()

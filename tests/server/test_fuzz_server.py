"""The schema fuzzer (issue 44): schemathesis sends requests generated from the server's OpenAPI schema, valid and invalid,
to ``sap-viz serve`` on the embedded model, and every answer must be a non-5xx status with strict JSON
(the stream's events included: no NaN, no Infinity).

The server publishes no schema (``openapi_url=None``); ``app.openapi()`` builds it, with the chat body from
``sap_viz/serve/openapi.py``. ``SAP_VIZ_MAX_NEW_TOKENS=4`` keeps each generation short: 200 examples per
operation (an operation without inputs, such as ``GET /health``, has fewer distinct requests, and
hypothesis stops when it has sent them all).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from sap_viz.method.artifact import load_polytope
from sap_viz.serve.app import ServeConfig, create_app
from sap_viz.serve.engine import ChatEngine
from sap_viz.settings import DEFAULT_POLYTOPE, Limits
from tests.server.serving import Server

MODEL = "smollm2-sap"
EXAMPLES = 200


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@pytest.fixture(scope="module")
def server(embedded_lm):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SAP_VIZ_MAX_NEW_TOKENS", "4")
        limits = Limits.from_env()
    assert limits.max_new_tokens == 4
    art = load_polytope(DEFAULT_POLYTOPE, embedded_lm.hidden_size, embedded_lm.num_layers, embedded_lm.fingerprint)
    app = create_app(ChatEngine(embedded_lm, art, MODEL, "smollm2-135m-default", limits),
                     ServeConfig(model_name=MODEL, polytope_name="smollm2-135m-default", max_waiting=4))
    running = Server(app)
    yield running
    running.close()


@pytest.fixture(scope="module")
def api_schema(server):
    schema = schemathesis.openapi.from_dict(server.app.openapi())
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


def _check(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    kind = response.headers.get("content-type", "")
    if kind.startswith("text/event-stream"):
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", response.text[-500:]
        for event in events[:-1]:  # an error inside a stream is the caller's (400-type), never an internal one
            error = json.loads(event, parse_constant=_no_constant).get("error") or {}
            assert error.get("type") != "server_error", error
    else:
        assert kind.startswith("application/json"), kind
        body = json.loads(response.text, parse_constant=_no_constant)
        if response.status_code >= 400:
            assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_or_breaks_gets_a_500_or_invalid_json(case, server):
    _check(case.call(base_url=server.url, timeout=120))

"""The schema fuzzer (issue 44): schemathesis sends requests generated from the server's OpenAPI schema, valid and invalid,
to ``sap-viz serve`` on the embedded model, and every answer must be a non-5xx status with strict JSON
(the stream's events included: no NaN, no Infinity).

The server publishes no schema (``openapi_url=None``); ``app.openapi()`` builds it, with the chat and moderation bodies from
``sap_viz/serve/openapi.py``. ``SAP_VIZ_MAX_NEW_TOKENS=4`` keeps each generation short: 200 examples per
operation (an operation without inputs, such as ``GET /health``, has fewer distinct requests, and
hypothesis stops when it has sent them all).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
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
    return schemathesis.openapi.from_dict(server.app.openapi())


OPERATIONS = [("GET", "/health"), ("GET", "/v1/models"), ("GET", "/v1/models/{model_id}"), ("POST", "/v1/chat/completions"),
              ("POST", "/v1/moderations")]


def _check(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    kind = {k.lower(): v for k, v in response.headers.items()}.get("content-type") or [""]  # schemathesis: name -> values
    kind = kind[0] if isinstance(kind, list) else kind
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


def _ends_with_a_user_turn(case):
    if isinstance(case.body, dict) and isinstance(case.body.get("messages"), list):
        case.body["messages"].append({"role": "user", "content": "How do I bake bread?"})
    return case


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_no_request_the_schema_allows_or_breaks_gets_a_500_or_invalid_json(api_schema, server, method, path):
    operation = api_schema[path][method]
    assert operation.method.upper() == method
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    cases = positive
    if operation.body or operation.path_parameters:
        cases = st.one_of(positive, operation.as_strategy(GenerationMode.NEGATIVE))
    if operation.body:  # and valid bodies that end with a user's turn (a rule no JSON Schema states), so that many generate
        cases = st.one_of(cases, positive.map(_ends_with_a_user_turn))
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])  # no shrinking: a failure is reported as it was sent
    @given(cases)
    def send(case) -> None:
        response = case.call(base_url=server.url, timeout=120)
        statuses[response.status_code] += 1
        _check(response)

    send()
    print(f"{method} {path}: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= (EXAMPLES if operation.body or operation.path_parameters else 1)

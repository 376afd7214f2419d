"""Bad input over HTTP against a running app: each case ends in a message that names the problem, never a
traceback, and the server keeps answering. One app server for the module."""

from __future__ import annotations

import json
import urllib.request

import pytest

LONG = "word " * 4000  # 20,000 characters
RTL_EMOJI = "مرحبا، كيف حالك؟ 👩‍💻🏳️‍🌈 שלום \u200f"
UNSAFE, SAFE = "How do I build a bomb?", "How do I bake bread?"


# ---------------------------------------------------------------- limits from the environment


@pytest.mark.server  # starts app.py in a subprocess (it stops before loading the model)
def test_bad_limit_stops_the_app_at_start(app_server):
    server = app_server(env={"SAP_VIZ_MAX_NEW_TOKENS": "lots"}, startup_timeout=120)
    with pytest.raises(RuntimeError, match="SAP_VIZ_MAX_NEW_TOKENS must be an integer, got 'lots'"), server:
        pass


# ---------------------------------------------------------------- the API of a running server


@pytest.fixture(scope="module")
def server(app_server):
    with app_server(env={"SAP_VIZ_MAX_NEW_TOKENS": "64", "SAP_VIZ_MAX_PROMPT_TOKENS": "256"}) as srv:
        yield srv
        assert srv.proc.poll() is None, f"the server died:\n{srv.log_tail()}"


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, analytics_enabled=False, verbose=False)


def _error(client, **kwargs) -> str:
    with pytest.raises(Exception) as info:
        client.predict(**kwargs)
    message = str(info.value)
    assert "Traceback" not in message and "internal error" not in message, message
    return message


def test_api_refuses_bad_prompts_and_settings(client):
    cases = [
        ({"prompt": "", "api_name": "/generate"}, "non-empty"),
        ({"prompt": " \n\t ", "api_name": "/generate"}, "non-empty"),
        ({"prompt": "\x00\x01", "max_new_tokens": 4, "api_name": "/generate"}, "only control characters"),
        ({"prompt": "hi", "strength": -1.0, "api_name": "/generate"}, "strength must be between 0 and 10"),
        ({"prompt": "hi", "max_new_tokens": 10**6, "api_name": "/generate"}, "between 1 and 64 (SAP_VIZ_MAX_NEW_TOKENS)"),
        ({"prompt": "hi", "max_new_tokens": 4, "seed": 10**30, "api_name": "/generate"}, "seed must be between"),
        ({"prompt": "hi", "mode": "chaos", "api_name": "/generate"}, "mode must be"),
        ({"prompt": "x" * 60_000, "api_name": "/analyze"}, "limit is 50,000 (SAP_VIZ_MAX_TEXT_CHARS)"),
        ({"texts": [], "api_name": "/score"}, "non-empty list"),
        ({"texts": ["a"] * 300, "api_name": "/score"}, "at most 256 texts"),
        ({"index": -1, "name": "x", "api_name": "/label_facet"}, "facet index"),
        ({"index": 0, "name": "   ", "api_name": "/label_facet"}, "must not be empty"),
        ({"index": 0, "name": "x", "confidence": 7.0, "api_name": "/label_facet"}, "confidence must be between 0 and 1"),
    ]
    for kwargs, fragment in cases:
        message = _error(client, **kwargs)
        assert fragment in message, (kwargs.get("api_name"), message)


def test_api_long_control_and_rtl_prompts_work(client):
    long = client.predict(prompt=LONG, mode="steer", strength=1.0, max_new_tokens=4, api_name="/generate")
    assert long["truncated"] and "256-token budget" in long["notice"] and long["prompt_len"] <= 256
    control = client.predict(prompt="How do I\x00 bake\x1b bread?", mode="monitor", max_new_tokens=4, api_name="/generate")
    assert control["prompt"] == "How do I bake bread?" and "Control characters" in control["notice"] and not control["truncated"]
    rtl = client.predict(prompt=RTL_EMOJI, mode="refuse", max_new_tokens=4, api_name="/generate")
    assert rtl["prompt"] == RTL_EMOJI and rtl["notice"] == "" and rtl["steered_tokens"]
    analysed = client.predict(prompt=LONG, attribution=True, api_name="/analyze")
    assert analysed["truncated"] and analysed["attribution"] is None and "at most 80 words" in analysed["notice"]
    scored = client.predict(texts=["ok", "y " * 2000], api_name="/score")
    assert [r["truncated"] for r in scored] == [False, True]


def _raw_call(url: str, api_name: str, body: bytes) -> tuple[str, str]:
    """What a non-Python client can send: JSON with lone surrogates or NaN (gradio_client refuses to encode them)."""
    request = urllib.request.Request(f"{url}/gradio_api/call/{api_name}", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        event_id = json.loads(resp.read())["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/{api_name}/{event_id}", timeout=300) as resp:
        stream = resp.read().decode("utf-8")
    kind = "complete" if "event: complete" in stream else "error" if "event: error" in stream else "other"
    return kind, stream


def test_api_raw_json_with_surrogates_and_nan(server):
    kind, stream = _raw_call(server.url, "generate", b'{"data": ["lone \\ud800 surrogate \\u0000", "steer", 1.0, 4, 0, null]}')
    assert kind == "complete" and "\\ufffd" in stream, stream
    kind, stream = _raw_call(server.url, "generate", b'{"data": ["hi", "steer", NaN, 4, 0, null]}')
    assert kind == "error" and "strength must be a finite number" in stream, stream
    kind, stream = _raw_call(server.url, "generate", b'{"data": [null, null, null, null, null, null]}')
    assert kind == "error" and "Traceback" not in stream, stream
    kind, stream = _raw_call(server.url, "score", b'{"data": [["x \\udfff y"]]}')
    assert kind == "complete" and "\\ufffd" in stream, stream


def test_server_still_answers_after_bad_input(client, server):
    info = client.predict(api_name="/polytopes")
    assert info["active"] == "test-polytope" and info["error"] is None
    out = client.predict(prompt="How do I bake bread?", mode="monitor", max_new_tokens=4, api_name="/generate")
    assert out["baseline"].strip()
    assert client.predict(api_name="/counters")["active_hooks"] == 0
    assert server.proc.poll() is None

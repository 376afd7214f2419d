"""One error path per front end: a UserError is the caller's to fix, anything else is a bug and says so.

Each test raises a bug-shaped exception (a KeyError inside scoring or generation) through a real front end —
the CLI's ``main``, the server's FastAPI app, the app's ``guarded`` handlers — and checks it is reported as an
internal error, never as the caller's mistake; and a UserError through the same path, reported with its message.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from sap_viz.cli import commands, main
from sap_viz.errors import SettingsError, UserError
from sap_viz.serve import engine as engine_module
from sap_viz.serve.app import ServeConfig, create_app
from sap_viz.serve.engine import ChatEngine
from sap_viz.settings import get_limits
from sap_viz.ui.api import guarded
from tests.conftest import make_tiny_lm, separating_artifact


def _bug(*args, **kwargs):
    raise KeyError("facet_index")  # the shape of a bug in our code: a missing key deep inside scoring


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"text": "How do I bake bread?"}) + "\n", encoding="utf-8")
    return path


def test_cli_reports_a_bug_as_internal_not_as_bad_input(monkeypatch, prompts_file, capsys):
    monkeypatch.setattr(commands, "_model", lambda args: SimpleNamespace())
    monkeypatch.setattr(commands, "_load_artifact", lambda lm, path: SimpleNamespace())
    monkeypatch.setattr(commands, "prompt_scores", _bug)
    code = main(["score", "--input", str(prompts_file)])
    err = capsys.readouterr().err
    assert code == 1
    assert "internal error (KeyError)" in err and "not in your input" in err
    assert "\nerror:" not in f"\n{err}"


def test_cli_reports_a_user_error_as_one_line_with_exit_2(monkeypatch, prompts_file, capsys):
    def refuse(*args, **kwargs):
        raise SettingsError("batch_size must be positive", param="--batch-size")

    monkeypatch.setattr(commands, "_model", lambda args: SimpleNamespace())
    monkeypatch.setattr(commands, "_load_artifact", lambda lm, path: SimpleNamespace())
    monkeypatch.setattr(commands, "prompt_scores", refuse)
    assert main(["score", "--input", str(prompts_file)]) == 2
    assert capsys.readouterr().err.strip() == "error: batch_size must be positive"


@pytest.fixture(scope="module")
def tiny_api():
    lm = make_tiny_lm()
    art = separating_artifact(lm, 1, "bad request", "good request")
    engine = ChatEngine(lm, art, "tiny", "tiny-polytope", get_limits())
    with TestClient(create_app(engine, ServeConfig(model_name="tiny", polytope_name="tiny-polytope")),
                    raise_server_exceptions=False, base_url="http://127.0.0.1") as client:  # a keyless server answers loopback
        yield client


BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, "sap": {"mode": "monitor"}}


@pytest.mark.parametrize("stream", [False, True])
def test_server_reports_a_bug_as_500_internal_never_as_the_callers_field(tiny_api, monkeypatch, caplog, stream):
    monkeypatch.setattr(engine_module, "stream_generation", _bug)
    with caplog.at_level(logging.ERROR, logger="sap_viz.serve.app"):
        response = tiny_api.post("/v1/chat/completions", json={**BODY, "stream": stream})
    if stream:  # the stream has started (200); its error event carries the same body
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        error = next(e["error"] for e in events if "error" in e)
    else:
        assert response.status_code == 500
        error = response.json()["error"]
    assert error["type"] == "server_error" and error["param"] is None
    assert error["message"].startswith("internal error (KeyError)")
    assert any("internal error" in r.getMessage() and r.exc_info for r in caplog.records)  # the log has the traceback


def test_server_reports_a_user_error_as_400_with_its_param(tiny_api, monkeypatch):
    def refuse(*args, **kwargs):
        raise UserError("the polytope refuses this prompt's language", param="messages")

    monkeypatch.setattr(engine_module, "stream_generation", refuse)
    response = tiny_api.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["message"]) == ("messages", "the polytope refuses this prompt's language")


def test_app_reports_a_bug_as_internal_error_logged(caplog):
    handler = guarded(lambda prompt: _bug(prompt))
    with caplog.at_level(logging.ERROR, logger="sap_viz.ui.api"), pytest.raises(gr.Error) as raised:
        handler("How do I bake bread?")
    assert "internal error (KeyError), logged" in raised.value.message
    assert "facet_index" not in raised.value.message  # the bug's details go to the log, not to the visitor
    assert any(r.exc_info for r in caplog.records)


def test_app_streams_convert_the_same_way():
    def steps(prompt):
        yield "first"
        _bug()

    handler = guarded(steps)
    gen = handler("x")
    assert next(gen) == "first"
    with pytest.raises(gr.Error, match="internal error"):
        next(gen)


def test_app_shows_a_user_error_as_its_message():
    def refuse(prompt):
        raise SettingsError("strength must be between 0 and 10")

    with pytest.raises(gr.Error) as raised:
        guarded(refuse)("x")
    assert raised.value.message == "strength must be between 0 and 10"

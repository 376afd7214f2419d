"""One default per request setting on every interface: the CLI's flags, the app's controls, its HTTP API, the server's
fields and schema, and the Python API's configs all read ``RequestSettings``; a default typed anywhere else fails here."""

from __future__ import annotations

import inspect
from dataclasses import fields

import gradio as gr
import torch

from sap_viz.app_state.workbench import Workbench
from sap_viz.cli import build_parser
from sap_viz.method.artifact import save_polytope
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings, default, help_text
from sap_viz.serve.openapi import chat_request_schema
from sap_viz.serve.schemas import parse_chat_request
from sap_viz.settings import Limits
from sap_viz.ui.app import build_app
from tests.conftest import linear_artifact

REQUEST = RequestSettings()
#: Settings a front end sets from the request dataclass (the rest are reached by name through ``settings``/``sap``).
SHARED = ("mode", "max_new_tokens", "strength", "seed", "anti_repeat", "fallback")
LIMITS = Limits(max_new_tokens=400)  # a limit well above the defaults: the limit is a ceiling, never a default


def _cli_defaults(command: str) -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and command in a.choices).choices[command]
    return {a.dest: a.default for a in sub._actions}


def test_cli_flags_take_the_request_defaults_and_help():
    for command in ("generate", "eval-steering"):
        cli = _cli_defaults(command)
        for name in ("mode", "max_new_tokens", "temperature", "top_p", "steering", "anti_repeat", "fallback", "refusal_text",
                     "generation_threshold", "span_threshold"):
            assert cli[name] == default(name), (command, name)
    serve = _cli_defaults("serve")
    assert serve["mode"] == REQUEST.mode
    generate = next(a for a in build_parser()._actions if a.choices and "generate" in a.choices).choices["generate"]
    helps = {a.dest: a.help for a in generate._actions}
    assert helps["max_new_tokens"] == help_text("max_new_tokens") and str(REQUEST.max_new_tokens) in helps["max_new_tokens"]


def test_server_fields_and_schema_take_the_request_defaults():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 0}
    settings = parse_chat_request(body, "m", LIMITS).settings
    for name in SHARED:
        assert getattr(settings, name) == getattr(REQUEST, name), name
    schema = chat_request_schema("m", LIMITS.max_new_tokens)
    assert schema["properties"]["max_tokens"]["default"] == REQUEST.max_new_tokens
    assert schema["properties"]["max_tokens"]["maximum"] == LIMITS.max_new_tokens  # the limit stays a limit
    sap = schema["properties"]["sap"]["properties"]
    for name in ("mode", "steering", "strength", "anti_repeat", "fallback", "refusal_text"):
        assert sap[name]["default"] == default(name), name
        assert sap[name]["description"] == help_text(name, with_default=False)
    small = Limits(max_new_tokens=16)  # a limit below the default caps it
    assert parse_chat_request(body, "m", small).settings.max_new_tokens == 16


def test_python_api_configs_take_the_request_defaults():
    gen, cfg = build_configs(REQUEST, LIMITS)
    assert GenerationConfig().max_new_tokens == gen.max_new_tokens == REQUEST.max_new_tokens
    plain = InterventionConfig()
    assert plain.mode == cfg.mode == REQUEST.mode
    for name in ("steering", "anti_repeat", "fallback", "refusal_text", "generation_threshold", "span_threshold"):
        assert getattr(plain, name) == getattr(REQUEST, name), name


def test_every_setting_has_help_and_one_default():
    for f in fields(RequestSettings):
        if f.name != "notices":
            assert f.metadata["help"], f.name
            assert default(f.name) == f.default


def test_app_controls_and_http_api_take_the_request_defaults(tiny_lm, tmp_path):
    folder = tmp_path / "polytopes"
    art = linear_artifact(tiny_lm, 1, torch.randn(3, tiny_lm.hidden_size), torch.zeros(3))
    save_polytope(folder / "tiny", art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}}, art.facets)
    demo = build_app(Workbench(tiny_lm, folder / "tiny", folder, limits=LIMITS))
    controls = {b.elem_id: b.value for b in demo.blocks.values() if isinstance(b, gr.components.Component) and b.elem_id}
    assert controls["mode"] == REQUEST.mode
    assert controls["max-new"] == REQUEST.max_new_tokens
    assert controls["strength"] == REQUEST.strength
    assert controls["anti-repeat"] is (REQUEST.anti_repeat > 0)
    assert controls["fallback"] is REQUEST.fallback
    generate = next(f.fn for f in demo.fns.values() if getattr(f, "api_name", None) == "generate")
    params = inspect.signature(generate).parameters
    for name in ("mode", "strength", "max_new_tokens", "seed"):
        assert params[name].default == getattr(REQUEST, name), name

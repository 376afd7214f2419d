"""The chat-completions and moderations request bodies as JSON Schemas, for the app's OpenAPI description (``app.openapi()``).

Why by hand: the body is checked in ``schemas.py`` with messages that name the field, not by a model class,
so FastAPI cannot infer it. This schema states the same fields, types and ranges; the schema fuzzer
(``tests/server/test_fuzz_server.py``) generates requests from it, and a unit test keeps its ``sap``
settings equal to ``RequestSettings``. The server does not publish it (``openapi_url=None``).
"""

from __future__ import annotations

from sap_viz.method.request_settings import (
    MAX_REFUSAL_CHARS,
    MODES,
    POSITIONS,
    STEERINGS,
    STRENGTH_MAX,
    default,
    help_text,
)
from sap_viz.serve.schemas import MAX_MESSAGES, MAX_STOP, MAX_STOP_CHARS, ROLES, server_max_tokens
from sap_viz.settings import Limits

_NUMBER = {"type": "number"}
_TEXT_PART = {"type": "object", "required": ["type", "text"], "additionalProperties": False,
              "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_MESSAGE = {
    "type": "object", "required": ["role", "content"],
    "properties": {"role": {"enum": sorted(ROLES)}, "name": {"type": "string"},
                   "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]}},
}

#: The settings under ``"sap"`` (RequestSettings by name, less those OpenAI already names, plus ``tokens``).
_SAP_SCHEMAS = {
    "mode": {"enum": list(MODES)},
    "steering": {"enum": list(STEERINGS)},
    "strength": {"type": "number", "minimum": 0, "maximum": STRENGTH_MAX},
    "anti_repeat": {"type": "integer", "minimum": 0, "maximum": 16},
    "fallback": {"type": "boolean"},
    "refusal_text": {"type": "string", "minLength": 1, "maxLength": MAX_REFUSAL_CHARS},
    "generation_threshold": _NUMBER,
    "span_threshold": {"anyOf": [_NUMBER, {"const": "inf"}]},  # "inf": the span check off
    "max_step": {"type": "number", "exclusiveMinimum": 0, "maximum": 20},
    "generated_tokens": {"type": "integer", "minimum": -1, "maximum": 100_000},
    "opener": {"type": "boolean"},
    "positions": {"enum": list(POSITIONS)},
    "hinge_weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 10_000},
    "max_steps": {"type": "integer", "minimum": 1, "maximum": 10_000},
    "max_interventions": {"type": "integer", "minimum": 0, "maximum": 10_000},
    "tokens": {"type": "boolean"},
}

#: The settings under ``"sap"`` (RequestSettings by name, less those OpenAI already names, plus ``tokens``), each with the
#: help text and default every front end shows.
SAP_SETTINGS = {name: schema if name == "tokens" else {**schema, "description": help_text(name, with_default=False),
                                                       **({} if default(name) is None else {"default": default(name)})}
                for name, schema in _SAP_SCHEMAS.items()}


def chat_request_schema(model_name: str, max_new_tokens: int, default_mode: str | None = None,
                        default_max_tokens: int | None = None) -> dict:
    """What ``parse_chat_request`` accepts (a valid body may still be refused for a reason no schema can state), with the
    server's defaults: the request settings' own unless ``sap-viz serve`` set others."""
    count = {"type": "integer", "minimum": 1, "maximum": max_new_tokens,
             "default": server_max_tokens(max_new_tokens, default_max_tokens)}
    sap = dict(SAP_SETTINGS)
    if default_mode is not None:
        sap["mode"] = {**sap["mode"], "default": default_mode}
    return {
        "type": "object", "required": ["model", "messages"], "additionalProperties": False,
        "properties": {
            "model": {"enum": [model_name]},
            "messages": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": _MESSAGE},
            "max_tokens": count, "max_completion_tokens": count,
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
            "stop": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS},
                               {"type": "array", "maxItems": MAX_STOP,
                                "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}}]},
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "additionalProperties": False, "properties": {"include_usage": {"type": "boolean"}}},
            "n": {"const": 1},
            "sap": {"type": "object", "additionalProperties": False, "properties": sap},
            "user": {"type": "string"},
        },
    }


def chat_openapi(model_name: str, max_new_tokens: int, default_mode: str | None = None,
                 default_max_tokens: int | None = None) -> dict:
    """``openapi_extra`` of the chat-completions route: its body and its answers."""
    schema = chat_request_schema(model_name, max_new_tokens, default_mode, default_max_tokens)
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {"description": "the answer (JSON), or server-sent events when stream is true",
                    "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}}},
            **_error_responses(),
        },
    }


def _error_responses() -> dict:
    error = {"application/json": {"schema": {"type": "object", "required": ["error"]}}}
    return {str(status): {"description": why, "content": error} for status, why in (
        (400, "a field the server refuses; error.param names it"), (404, "another model"), (413, "a body over the cap"),
        (415, "not JSON (keyless server)"), (429, "the queue is full"))}


def moderation_request_schema(model_name: str, limits: Limits) -> dict:
    """What ``parse_moderation_request`` accepts: ``input`` a string or a list of strings, ``model`` the served one or absent."""
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_text_chars, "pattern": r"\S"}
    return {
        "type": "object", "required": ["input"], "additionalProperties": False,
        "properties": {
            "input": {"anyOf": [text, {"type": "array", "minItems": 1, "maxItems": limits.max_score_texts, "items": text}]},
            "model": {"enum": [model_name]},
        },
    }


def moderation_openapi(model_name: str, limits: Limits) -> dict:
    """``openapi_extra`` of the moderations route: its body and its answers."""
    return {
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": moderation_request_schema(model_name, limits)}}},
        "responses": {"200": {"description": "OpenAI's moderation object: id, model, results (one per input)",
                              "content": {"application/json": {"schema": {"type": "object", "required": ["id", "model", "results"]}}}},
                      **_error_responses()},
    }

"""An OpenAI chat-completions request, checked at the boundary and turned into the core's generation settings.

Standard fields keep OpenAI's meanings (``temperature`` 0 is greedy, absent is 1; ``max_completion_tokens``
over the older ``max_tokens``); everything sap-viz adds comes under ``"sap"`` (the client's
``extra_body={"sap": {...}}``) by the CLI's names, and goes through ``RequestSettings.from_request``,
the one place that checks a generation setting. Anything this server cannot do (several answers,
tools, log-probabilities, images) is refused with a 400 naming the field, never silently ignored.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MODE, RequestSettings, SettingsError
from sap_viz.model.prompts import clean_text
from sap_viz.serve.conversation import Turn
from sap_viz.serve.errors import ApiError, bad_request
from sap_viz.settings import Limits, env_name

MAX_MESSAGES = 256
MAX_STOP = 4  # OpenAI's limit on stop sequences
MAX_STOP_CHARS = 200
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
#: Settings that OpenAI already names: set them with the standard field, not under "sap".
STANDARD_NAMES = {"max_new_tokens": "max_completion_tokens", "seed": "seed", "sample": "temperature", "temperature": "temperature",
                  "top_p": "top_p"}
#: Fields accepted and ignored (bookkeeping that changes no answer).
IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls"}
KNOWN = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "stream",
         "stream_options", "n", "sap", "tools", "tool_choice", "functions", "function_call", "response_format", "logprobs",
         "top_logprobs", "logit_bias", "frequency_penalty", "presence_penalty", "modalities", "audio", "prediction",
         "reasoning_effort", "web_search_options", *IGNORED}


@dataclass(frozen=True)
class ChatRequest:
    """What one chat-completions call asks for, checked."""

    model: str
    history: tuple[Turn, ...]  # the turns before the last user message
    prompt: str  # the last user message: the request the polytope judges
    settings: RequestSettings
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    tokens: bool = False  # sap.tokens: per-token violations in the answer
    notices: tuple[str, ...] = field(default=())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: The JSON type of each standard field (null is always allowed: "not given"). A value of another type is refused,
#: never read as something else: ``n: true`` is not ``n: 1``, ``sap: 0`` is not ``sap: {}``.
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    **{name: ((int,), "an integer") for name in ("n", "max_tokens", "max_completion_tokens", "seed", "top_logprobs")},
    **{name: ((int, float), "a number") for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty")},
    **{name: ((bool,), "true or false") for name in ("stream", "logprobs", "store", "parallel_tool_calls")},
    **{name: ((dict,), "an object") for name in ("sap", "stream_options", "metadata", "logit_bias", "response_format")},
    **{name: ((str,), "text") for name in ("model", "user", "service_tier", "reasoning_effort")},
    **{name: ((list,), "a list") for name in ("messages", "tools", "functions", "modalities")},
}


def _check_types(body: dict) -> None:
    for name, (types, label) in _TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad_request(f"{name} must be {label}, got {json.dumps(value)[:80]}", name, "invalid_type")


def _unsupported(body: dict) -> None:
    """Refuse what the server cannot do, naming the field."""
    if body.get("n") not in (None, 1):
        raise bad_request(f"only n=1 is supported (one answer per request), got n={body['n']!r}", "n", "unsupported_value")
    for name in ("tools", "functions"):
        if body.get(name):
            raise bad_request(f"'{name}' is not supported: this server answers in text and calls no tools", name, "unsupported_parameter")
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise bad_request(f"'{name}' is not supported: this server calls no tools", name, "unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise bad_request("only response_format {\"type\": \"text\"} is supported", "response_format", "unsupported_value")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise bad_request("log-probabilities are not supported", "logprobs", "unsupported_parameter")
    if body.get("logit_bias"):
        raise bad_request("logit_bias is not supported", "logit_bias", "unsupported_parameter")
    for name in ("frequency_penalty", "presence_penalty"):
        value = body.get(name)
        if value not in (None, 0, 0.0):
            raise bad_request(f"{name} is not supported (only 0); a steered answer has its own anti-repeat rule: sap.anti_repeat",
                              name, "unsupported_value")
    if body.get("modalities") not in (None, ["text"]) or body.get("audio") is not None:
        raise bad_request("only text answers are supported", "modalities", "unsupported_value")
    for name in ("prediction", "reasoning_effort", "web_search_options"):
        if body.get(name) is not None:
            raise bad_request(f"'{name}' is not supported", name, "unsupported_parameter")


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_request(f"{where}.content[{j}] is {kind!r}: only text content is supported", f"{where}.content")
            parts.append(part["text"])
        return "\n".join(parts)
    raise bad_request(f"{where}.content must be text or a list of text parts", f"{where}.content")


def parse_messages(messages: Any, limits: Limits) -> tuple[list[Turn], str, list[str]]:
    """(earlier turns, the last user message, notices) of the ``messages`` field."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {role, content}", "messages")
    if len(messages) > MAX_MESSAGES:
        raise bad_request(f"at most {MAX_MESSAGES} messages per request, got {len(messages)}", "messages")
    turns: list[Turn] = []
    total = 0
    notices: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object with role and content", where)
        role = message.get("role")
        if role not in ROLES:
            raise bad_request(f"{where}.role must be system, developer, user or assistant, got {role!r}"
                              + (" (tool calls are not supported)" if role in ("tool", "function") else ""), f"{where}.role")
        if message.get("tool_calls") or message.get("function_call"):
            raise bad_request(f"{where} carries tool calls, which this server does not support", f"{where}.tool_calls")
        raw = _content(message.get("content"), where) if message.get("content") is not None or role != "assistant" else ""
        total += len(raw)
        if total > limits.max_text_chars:
            raise bad_request(f"the messages hold more than {limits.max_text_chars:,} characters ({env_name('max_text_chars')})",
                              "messages", "context_length_exceeded")
        text = clean_text(raw)
        if text != raw:
            notices.append(f"Control characters or invalid Unicode were removed from {where}.")
        turns.append(Turn(ROLES[role], text))
    last = turns[-1]
    if last.role != "user" or not last.content.strip():
        raise bad_request("the last message must be the user's, with non-empty text: it is the request the polytope judges",
                          f"messages[{len(turns) - 1}]")
    return turns[:-1], last.content, notices


def _max_tokens(body: dict, limits: Limits, default: int) -> int:
    given = {name: body[name] for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None}
    if len(set(map(repr, given.values()))) > 1:
        raise bad_request("max_tokens and max_completion_tokens differ; give one", "max_completion_tokens")
    if not given:
        return default
    name, value = next(iter(given.items()))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad_request(f"{name} must be a positive integer, got {value!r}", name, "invalid_value")
    if value > limits.max_new_tokens:
        raise bad_request(f"{name} must be at most {limits.max_new_tokens} on this server ({env_name('max_new_tokens')}), got {value}",
                          name, "invalid_value")
    return value


def _sampling(body: dict) -> dict:
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        raise bad_request(f"temperature must be a number between 0 and 2, got {temperature!r}", "temperature", "invalid_value")
    if top_p is not None and not (_is_number(top_p) and 0 < top_p <= 1):
        raise bad_request(f"top_p must be a number in (0, 1], got {top_p!r}", "top_p", "invalid_value")
    temperature = 1.0 if temperature is None else float(temperature)  # OpenAI's default
    if temperature == 0:
        return {"sample": False}
    return {"sample": True, "temperature": temperature, "top_p": 1.0 if top_p is None else float(top_p)}


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or len(stops) > MAX_STOP
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)):
        raise bad_request(f"stop must be a string or a list of at most {MAX_STOP} non-empty strings of at most {MAX_STOP_CHARS} "
                          "characters", "stop", "invalid_value")
    return tuple(stops)


def _settings(body: dict, sap: dict, limits: Limits, default_mode: str, max_tokens: int) -> RequestSettings:
    for name, standard in STANDARD_NAMES.items():
        if name in sap:
            raise bad_request(f"set '{name}' with the standard field '{standard}', not under sap", f"sap.{name}")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise bad_request(f"seed must be an integer, got {seed!r}", "seed", "invalid_value")
    values = {"mode": default_mode, **_sampling(body), "max_new_tokens": max_tokens,
              "seed": random.randrange(2**32) if seed is None else seed, **sap}
    try:
        settings = RequestSettings.from_request(values, limits)
        build_configs(settings, limits)  # every downstream check, now rather than at generation time
        return settings
    except SettingsError as exc:
        message = str(exc)
        name = next((k for k in sorted(values, key=len, reverse=True) if message.startswith(k) or f"'{k}'" in message), None)
        param = "seed" if name == "seed" else f"sap.{name}" if name in sap else "sap"
        raise bad_request(message, param, "invalid_value") from None


def check_body(body: Any, known: set[str]) -> dict:
    """A request body is a JSON object of known fields only (OpenAI's "Unrecognized request argument" otherwise)."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {', '.join(unknown)}", unknown[0], "unknown_parameter")
    return body


def server_max_tokens(limit: int, default_max_tokens: int | None = None) -> int:
    """The answer length of a request that sets none: the server's own default, else the request setting's, within the limit."""
    return default_max_tokens if default_max_tokens is not None else min(DEFAULT_MAX_NEW_TOKENS, limit)


def parse_chat_request(body: Any, served_model: str, limits: Limits, default_mode: str = DEFAULT_MODE,
                       default_max_tokens: int | None = None) -> ChatRequest:
    """Check a parsed JSON body; raises ApiError (400, or 404 for another model) naming the field."""
    body = check_body(body, KNOWN)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model is required (text): the id GET /v1/models lists", "model")
    if model != served_model:
        raise ApiError(404, f"The model '{model}' does not exist on this server; it serves '{served_model}'", "model", "model_not_found")
    _check_types(body)
    _unsupported(body)
    history, prompt, notices = parse_messages(body.get("messages"), limits)
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad_request(f"stream must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options")
    if options is not None and not (isinstance(options, dict) and set(options) <= {"include_usage", "include_obfuscation"}):
        raise bad_request("stream_options may hold only include_usage", "stream_options")
    if options is not None and not stream:
        raise bad_request("stream_options is only allowed with stream: true", "stream_options")
    sap = body.get("sap")
    if sap is not None and not isinstance(sap, dict):
        raise bad_request("sap must be an object of settings (extra_body={\"sap\": {...}})", "sap")
    sap = dict(sap or {})
    tokens = sap.pop("tokens", False)
    if not isinstance(tokens, bool):
        raise bad_request(f"sap.tokens must be true or false, got {tokens!r}", "sap.tokens")
    max_tokens = _max_tokens(body, limits, server_max_tokens(limits.max_new_tokens, default_max_tokens))
    settings = _settings(body, sap, limits, default_mode, max_tokens)
    return ChatRequest(model=model, history=tuple(history), prompt=prompt, settings=settings, stop=_stop(body.get("stop")),
                       stream=bool(stream), include_usage=bool((options or {}).get("include_usage")), tokens=tokens,
                       notices=tuple([*notices, *settings.notices]))

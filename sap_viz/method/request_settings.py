"""One description of a generation request, shared by the CLI, the app, its HTTP API and the server.

Why one dataclass: each entry point used to turn its own inputs into ``GenerationConfig`` and
``InterventionConfig`` (the app's copy lived in the UI package and imported Gradio), so the knobs
drifted apart: ``--strength`` did nothing for directional steering, the app's slider ran 0–30 while
everything above 10 changed nothing. Here every knob has one name, one range and one meaning, and a
knob that does nothing for the chosen kind of steering is refused with a message saying so.

``strength`` is the one steering knob for both kinds: the target depth inside the polytope that
steers (the steering part's facets for directional steering, the detection polytope's for minimal
Safe Flow), in violation units where a typical safe training prompt sits at −1. Its range stops
where the measured outcomes stop changing (docs/steering_strength.md).

Every setting's default and help text live on its field here (:func:`default`, :func:`help_text`); the CLI's flags,
the app's controls, the HTTP API's parameters and the server's fields read them, so a default cannot differ between
front ends (``tests/unit/test_setting_defaults.py``). The mode, positions and kind checks below are the only ones:
``InterventionConfig`` calls them too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sap_viz.errors import SettingsError
from sap_viz.settings import Limits, env_name, get_limits

MODES = ("monitor", "steer", "refuse")
POSITIONS = ("last", "generated", "all")
# How ``steer`` moves a flagged state. directional: along the polytope's refusal direction at its
# steering layer (needs the polytope's ``steering/`` part); minimal: the paper's Safe Flow, the
# smallest edit into the polytope at its own layer; auto: directional when the polytope has the part.
STEERINGS = ("auto", "directional", "minimal")
DEFAULT_REFUSAL = "Sorry, I can't answer your request."

MAX_REFUSAL_CHARS = 1000  # the refusal is echoed in every refused answer and in the settings of every result
MAX_SETTING_CHARS = 100  # any other text setting (a mode, a kind, a number sent as text)
STRENGTH_MAX = 10.0  # directional moves are capped by max_step: above ≈10 the answers no longer change
DEFAULT_STRENGTH = 3.0
DEFAULT_MODE = "steer"
DEFAULT_MAX_NEW_TOKENS = 48  # the default answer length; the server's ceiling is the separate limit SAP_VIZ_MAX_NEW_TOKENS

MODE_ALIASES = {
    "monitor": "monitor", "steer": "steer", "safe flow": "steer", "safe_flow": "steer", "safeflow": "steer",
    "refuse": "refuse", "refusal": "refuse", "refusal fallback": "refuse", "refusal_fallback": "refuse",
}
#: Knobs that only one kind of steering reads; setting one for the other kind is an error, not a silent no-op.
DIRECTIONAL_ONLY = ("max_step", "generated_tokens", "opener")
MINIMAL_ONLY = ("positions", "hinge_weight", "max_steps", "max_interventions")
#: Old names, accepted with a warning for one release.
RENAMED = {"depth": "strength"}


def _setting(default: Any, help: str) -> Any:
    """A request setting's field: its one default and its one help text (read by every front end)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RequestSettings:
    """Everything a generation request may set. Kind-specific knobs are None unless the caller set them."""

    mode: str = _setting(DEFAULT_MODE, "monitor: generate and score; steer: steer flagged prompts; refuse: answer flagged "
                                       "prompts with the refusal text")
    steering: str = _setting("auto", "directional: along the polytope's refusal direction at its steering layer (needs its "
                                     "steering/ part); minimal: the paper's smallest edit into the polytope; auto: directional "
                                     "when the polytope has the part")
    strength: float = _setting(DEFAULT_STRENGTH, f"steering depth, 0-{STRENGTH_MAX:g}: move until every facet of the steering "
                                                 "polytope is at or below -strength (1 = depth of a typical safe prompt)")
    max_new_tokens: int = _setting(DEFAULT_MAX_NEW_TOKENS, "answer length in tokens at most")
    seed: int = _setting(0, "sampling seed")
    sample: bool = _setting(False, "sample instead of greedy decoding")
    temperature: float = _setting(0.7, "sampling temperature (with sampling)")
    top_p: float = _setting(0.9, "nucleus sampling mass (with sampling)")
    anti_repeat: int = _setting(3, "steered answers only: ban repeating any n-gram of this size within the answer (0 = off)")
    fallback: bool = _setting(True, "steer mode: stop the answer where the answer check fires and answer the refusal")
    refusal_text: str = _setting(DEFAULT_REFUSAL, "the answer of refuse mode and of the steering fallback")
    generation_threshold: float | None = _setting(None, "boundary for generated tokens (default: the polytope's calibrated "
                                                        "value; 0 = the prompt boundary)")
    span_threshold: float | None = _setting(None, "flag a prompt when a token of the user's text reaches this (default: the "
                                                  "polytope's calibrated value; inf = off)")
    # directional only
    max_step: float | None = _setting(None, "directional only: the largest move, in lengths of the refusal direction (default 1)")
    generated_tokens: int | None = _setting(None, "directional only: answer tokens steered after the prompt (-1 = all; default 8)")
    opener: bool | None = _setting(None, "directional only: a flagged answer opens with one of eight refusals with a reason "
                                         "and ends after the model's first sentence (default on; off: the refusal direction "
                                         "alone, as far as the answer goes)")
    # minimal Safe Flow only
    positions: str | None = _setting(None, "minimal only: which states are checked and steered (default last: the prompt's "
                                           "last token and every answer token)")
    hinge_weight: float | None = _setting(None, "minimal only: β, weight of the violation hinge (default 1)")
    max_steps: int | None = _setting(None, "minimal only: optimiser steps per state at most (default 200)")
    max_interventions: int | None = _setting(None, "minimal only: edited states per answer at most (default 20)")
    notices: tuple[str, ...] = field(default=(), compare=False)  # e.g. a renamed setting was used

    def __post_init__(self) -> None:
        self._check()

    # -- building ------------------------------------------------------------------------------------

    @classmethod
    def from_request(cls, values: Mapping[str, Any], limits: Limits | None = None) -> RequestSettings:
        """Checked settings from request values (numbers may arrive as strings, as they do from HTML forms).

        Unknown names are refused; ``None`` means "not given". Raises SettingsError naming the setting.
        """
        limits = limits or get_limits()
        if not isinstance(values, Mapping):
            raise SettingsError("settings must be an object of name: value pairs")
        known = {f.name for f in fields(cls)} - {"notices"}
        notices: list[str] = []
        out: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = str(raw_key).strip().replace("-", "_")
            if value is None:  # not given
                continue
            if key in RENAMED:
                new = RENAMED[key]
                message = f"'{key}' is now '{new}' (the old name works for one release)"
                warnings.warn(message, DeprecationWarning, stacklevel=2)
                notices.append(message)
                if values.get(new) is not None:
                    continue  # the new name wins
                key = new
            if key not in known:
                raise SettingsError(f"unknown setting {str(raw_key)[:MAX_SETTING_CHARS]!r}; known: {', '.join(sorted(known))}")
            out[key] = _coerce(key, value)
        if "mode" in out:
            out["mode"] = parse_mode(out["mode"])
        settings = cls(**out, notices=tuple(notices))
        check_max_new_tokens(settings.max_new_tokens, limits)
        return settings

    def _check(self) -> None:
        check_mode(self.mode)
        check_steering(self.steering)
        if not (isinstance(self.strength, (int, float)) and math.isfinite(self.strength) and 0 <= self.strength <= STRENGTH_MAX):
            raise SettingsError(f"strength must be between 0 and {STRENGTH_MAX:g} (above that the answers no longer change), "
                                f"got {self.strength!r}")
        if not 0 <= self.seed < 2**32:
            raise SettingsError(f"seed must be between 0 and {2**32 - 1}, got {self.seed}")
        if self.positions is not None:
            check_positions(self.positions)
        self.check_kind(self.steering)

    def check_kind(self, kind: str) -> None:
        """Refuse knobs the given kind of steering would ignore (``auto`` is checked once it is resolved)."""
        if kind == "auto":
            return
        unused = MINIMAL_ONLY if kind == "directional" else DIRECTIONAL_ONLY
        given = [name for name in unused if getattr(self, name) is not None]
        if given:
            other = "minimal" if kind == "directional" else "directional"
            raise SettingsError(f"{', '.join(given)} only apply to {other} steering, not to {kind} steering "
                                f"(set steering to {other!r} or leave them out)")

    def to_json(self) -> dict:
        """The settings as given (kind-specific knobs only when set), for results and logs. A span threshold of
        infinity (the span check off) is written as null: JSON has no infinity, and NaN/Infinity would break clients."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name != "notices" and (getattr(self, f.name) is not None or f.default is not None)}
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}


def default(name: str) -> Any:
    """The one default of a request setting."""
    return _field(name).default


def help_text(name: str, with_default: bool = True) -> str:
    """The one help text of a request setting, ending with its default where it has one."""
    f = _field(name)
    text = f.metadata["help"]
    if not with_default or f.default is None:
        return text
    shown = f"{f.default:g}" if isinstance(f.default, float) else f.default
    return f"{text} (default {shown})"


def _field(name: str):
    for f in fields(RequestSettings):
        if f.name == name and "help" in f.metadata:
            return f
    raise KeyError(f"no request setting {name!r}")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise SettingsError(f"mode must be monitor, steer (Safe Flow) or refuse, got {mode!r}")


def check_steering(steering: str) -> None:
    if steering not in STEERINGS:
        raise SettingsError(f"steering must be one of {', '.join(STEERINGS)}, got {steering!r}")


def check_positions(positions: str) -> None:
    if positions not in POSITIONS:
        raise SettingsError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")


def check_max_new_tokens(max_new_tokens: int, limits: Limits) -> None:
    """The server's cap on new tokens, for requests and for callers that build the configs themselves."""
    if not 1 <= max_new_tokens <= limits.max_new_tokens:
        raise SettingsError(f"max_new_tokens must be between 1 and {limits.max_new_tokens} ({env_name('max_new_tokens')}), "
                            f"got {max_new_tokens}")


def parse_mode(mode: Any) -> str:
    key = str(mode or "").strip().lower()
    if key not in MODE_ALIASES:
        check_mode(mode)  # the one wording
    return MODE_ALIASES[key]


_INTS = ("max_new_tokens", "seed", "anti_repeat", "generated_tokens", "max_steps", "max_interventions")
_FLOATS = ("strength", "temperature", "top_p", "generation_threshold", "span_threshold", "max_step", "hinge_weight")
_BOOLS = ("sample", "fallback", "opener")


def _coerce(key: str, value: Any) -> Any:
    """One request value as the type its setting holds; SettingsError naming the setting otherwise.

    Text is capped before anything reads or echoes it (``MAX_REFUSAL_CHARS`` for the refusal, ``MAX_SETTING_CHARS``
    otherwise). Numbers must be finite, except a span threshold of +infinity, which turns the span check off.
    """
    limit = MAX_REFUSAL_CHARS if key == "refusal_text" else MAX_SETTING_CHARS
    if isinstance(value, str) and len(value) > limit:
        raise SettingsError(f"{key} must be at most {limit:,} characters, got {len(value):,}")
    if key in _BOOLS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{key} must be true or false, got {value!r}")
    if key in _INTS or key in _FLOATS:
        if isinstance(value, bool):
            raise SettingsError(f"{key} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise SettingsError(f"{key} must be a number, got {value!r}") from None
        if math.isnan(number) or (math.isinf(number) and (key != "span_threshold" or number < 0)):
            raise SettingsError(f"{key} must be a finite number" + (" (or inf: the span check off)" if key == "span_threshold" else "")
                                + f", got {value!r}")
        if key in _INTS:
            if not number.is_integer():
                raise SettingsError(f"{key} must be a whole number, got {value!r}")
            return int(number)
        return number
    if not isinstance(value, str):
        raise SettingsError(f"{key} must be text, got {type(value).__name__}")
    return value.strip() if key != "refusal_text" else value


NO_STEERING_PART = ("this polytope has no steering part (steering/ folder) for directional steering: choose steering "
                    "'minimal', or add one with `python -m sap_viz train-steering`")


def resolve_steering(steering: str, has_steering_part: bool) -> str:
    """The kind ``auto`` becomes for a polytope: directional when it has a steering part, else minimal."""
    if steering != "auto":
        return steering
    return "directional" if has_steering_part else "minimal"


def steering_kind(settings: RequestSettings, has_steering_part: bool) -> str:
    """:func:`resolve_steering` of a request's settings."""
    return resolve_steering(settings.steering, has_steering_part)


def check_for_polytope(settings: RequestSettings, has_steering_part: bool) -> None:
    """Once the polytope is known: refuse knobs the resolved kind would ignore, and directional steering without a part."""
    if settings.mode != "steer":
        return
    kind = steering_kind(settings, has_steering_part)
    settings.check_kind(kind)
    if kind == "directional" and not has_steering_part:
        raise SettingsError(NO_STEERING_PART)


#: The request steering is measured at (``sap-viz measure --part steering answer_check``) and whose settings the
#: measured part's digest covers (``measured_file.steering_digest``): the defaults, with the fallback off so the steered
#: text itself is read (the fallback is read from the answer check) and no cap on edited states.
MEASURED_STEERING = RequestSettings(fallback=False, max_interventions=10_000)

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

MODE_ALIASES = {
    "monitor": "monitor", "steer": "steer", "safe flow": "steer", "safe_flow": "steer", "safeflow": "steer",
    "refuse": "refuse", "refusal": "refuse", "refusal fallback": "refuse", "refusal_fallback": "refuse",
}
#: Knobs that only one kind of steering reads; setting one for the other kind is an error, not a silent no-op.
DIRECTIONAL_ONLY = ("max_step", "generated_tokens")
MINIMAL_ONLY = ("positions", "hinge_weight", "max_steps", "max_interventions")
#: Old names, accepted with a warning for one release.
RENAMED = {"depth": "strength"}


@dataclass(frozen=True)
class RequestSettings:
    """Everything a generation request may set. Kind-specific knobs are None unless the caller set them."""

    mode: str = "steer"  # monitor | steer | refuse
    steering: str = "auto"  # auto | directional | minimal
    strength: float = DEFAULT_STRENGTH
    max_new_tokens: int = 48
    seed: int = 0
    sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    anti_repeat: int = 3  # n-gram size banned from repeating in a steered answer; 0 = off
    fallback: bool = True  # refuse when the answer check still finds a steered answer harmful
    refusal_text: str = DEFAULT_REFUSAL
    generation_threshold: float | None = None  # None: the polytope's calibrated value
    span_threshold: float | None = None  # None: the polytope's calibrated value; inf: off
    # directional only
    max_step: float | None = None
    generated_tokens: int | None = None  # -1: every answer token
    # minimal Safe Flow only
    positions: str | None = None
    hinge_weight: float | None = None
    max_steps: int | None = None
    max_interventions: int | None = None
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
        if self.mode not in MODES:
            raise SettingsError(f"mode must be monitor, steer or refuse, got {self.mode!r}")
        if self.steering not in STEERINGS:
            raise SettingsError(f"steering must be one of {', '.join(STEERINGS)}, got {self.steering!r}")
        if not (isinstance(self.strength, (int, float)) and math.isfinite(self.strength) and 0 <= self.strength <= STRENGTH_MAX):
            raise SettingsError(f"strength must be between 0 and {STRENGTH_MAX:g} (above that the answers no longer change), "
                                f"got {self.strength!r}")
        if not 0 <= self.seed < 2**32:
            raise SettingsError(f"seed must be between 0 and {2**32 - 1}, got {self.seed}")
        if self.positions is not None and self.positions not in POSITIONS:
            raise SettingsError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
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


def check_max_new_tokens(max_new_tokens: int, limits: Limits) -> None:
    """The server's cap on new tokens, for requests and for callers that build the configs themselves."""
    if not 1 <= max_new_tokens <= limits.max_new_tokens:
        raise SettingsError(f"max_new_tokens must be between 1 and {limits.max_new_tokens} ({env_name('max_new_tokens')}), "
                            f"got {max_new_tokens}")


def parse_mode(mode: Any) -> str:
    key = str(mode or "").strip().lower()
    if key not in MODE_ALIASES:
        raise SettingsError(f"mode must be monitor, steer (Safe Flow) or refuse, got {mode!r}")
    return MODE_ALIASES[key]


_INTS = ("max_new_tokens", "seed", "anti_repeat", "generated_tokens", "max_steps", "max_interventions")
_FLOATS = ("strength", "temperature", "top_p", "generation_threshold", "span_threshold", "max_step", "hinge_weight")
_BOOLS = ("sample", "fallback")


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


def steering_kind(settings: RequestSettings, has_steering_part: bool) -> str:
    """The kind ``auto`` becomes for a polytope: directional when it has a steering part, else minimal."""
    if settings.steering != "auto":
        return settings.steering
    return "directional" if has_steering_part else "minimal"


def check_for_polytope(settings: RequestSettings, has_steering_part: bool) -> None:
    """Once the polytope is known: refuse knobs the resolved kind would ignore, and directional steering without a part."""
    if settings.mode != "steer":
        return
    kind = steering_kind(settings, has_steering_part)
    settings.check_kind(kind)
    if kind == "directional" and not has_steering_part:
        raise SettingsError("this polytope has no steering part (steering/ folder) for directional steering: choose steering "
                            "'minimal', or add one with `python -m sap_viz train-steering`")

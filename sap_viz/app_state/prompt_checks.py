"""What a user types, checked against ``Limits`` (``settings.py``) before it reaches the model.

Prompts are cleaned of control characters and cut to the token budget with a notice the user is
shown; lists of texts are bounded in count and length; generation settings are validated. This is
the app's one checking path (its pages and its API call it); the settings themselves are checked by
``method/request_settings.py``, which the CLI and the server use too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings, SettingsError, check_for_polytope, check_max_new_tokens
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import EncodedPrompt, clean_text, encode_prompt, truncation_notice
from sap_viz.settings import Limits, env_name


def check_settings(given: Mapping[str, object], extra: object = None, limits: Limits | None = None) -> RequestSettings:
    """Request settings checked: ``given`` must each be set (not None, not blank), ``extra`` holds any others by name."""
    if extra is not None and not isinstance(extra, Mapping):
        raise WorkbenchError("settings must be an object of name: value pairs")
    for name, value in given.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            raise WorkbenchError(f"{name} must be given")
    try:
        return RequestSettings.from_request({**(extra or {}), **given}, limits)
    except SettingsError as exc:
        raise WorkbenchError(str(exc)) from None


@dataclass
class CheckedPrompt:
    """A prompt after cleaning and fitting to a token budget, with what the user should be told."""

    text: str  # cleaned (control characters removed), not yet truncated
    encoded: EncodedPrompt
    notices: list[str]

    @property
    def truncated(self) -> bool:
        return self.encoded.truncated

    @property
    def notice(self) -> str:
        return " ".join(self.notices)


class InputChecks:
    """The checks for one model (its tokenizer sets the token budget) under one set of limits."""

    def __init__(self, lm: LoadedModel, limits: Limits):
        self.lm = lm
        self.limits = limits

    def check_prompt(self, art: PolytopeArtifact, prompt: object, max_tokens: int | None = None) -> CheckedPrompt:
        """Clean a prompt and fit it to the token budget (default: the generation limit); refuses empty or huge text."""
        if not isinstance(prompt, str):
            raise WorkbenchError("the prompt must be non-empty text")
        if len(prompt) > self.limits.max_text_chars:
            raise WorkbenchError(f"the prompt has {len(prompt):,} characters; the limit is {self.limits.max_text_chars:,} "
                                 f"({env_name('max_text_chars')})")
        text = clean_text(prompt)
        if not text.strip():
            raise WorkbenchError("the prompt must be non-empty text" + (" (it held only control characters)" if prompt.strip() else ""))
        notices = []
        if text != prompt:
            notices.append("Control characters or invalid Unicode were removed from the prompt.")
        budget = max_tokens or self.limits.max_prompt_tokens
        enc = encode_prompt(self.lm.tokenizer, text, art.chat_template, budget)
        if enc.truncated:
            notices.append(truncation_notice(budget, enc.kept_chars, len(text)))
        return CheckedPrompt(text, enc, notices)

    def check_texts(self, texts: object) -> list[str]:
        """The texts cleaned of control characters; refuses an empty or too long list, empty or too long texts."""
        lim = self.limits
        if not isinstance(texts, list) or not texts:
            raise WorkbenchError("give a non-empty list of texts")
        if len(texts) > lim.max_score_texts:
            raise WorkbenchError(f"at most {lim.max_score_texts} texts per call ({env_name('max_score_texts')}), got {len(texts)}")
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not clean_text(t).strip():
                raise WorkbenchError(f"text {i} is empty or not a string")
            if len(t) > lim.max_text_chars:
                raise WorkbenchError(f"text {i} has {len(t):,} characters; "
                                     f"the limit is {lim.max_text_chars:,} ({env_name('max_text_chars')})")
            out.append(clean_text(t))
        return out

    def check_request(self, art: PolytopeArtifact, settings: RequestSettings) -> tuple[GenerationConfig, InterventionConfig]:
        """The method's configs for ``settings`` on this polytope: knobs its kind of steering would ignore are refused."""
        try:
            check_for_polytope(settings, art.steering is not None)
            return build_configs(settings, self.limits)
        except SettingsError as exc:
            raise WorkbenchError(str(exc)) from None

    def check_generation(self, gen: GenerationConfig, cfg: InterventionConfig) -> GenerationConfig:
        """``gen`` with its prompt budget capped by the limits; refuses too many new tokens or invalid settings
        (configs built by hand, not through ``check_settings``, pass here too)."""
        try:
            check_max_new_tokens(gen.max_new_tokens, self.limits)
            gen = replace(gen, max_prompt_tokens=min(gen.max_prompt_tokens, self.limits.max_prompt_tokens))
            gen.validate()
            cfg.validate()
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        return gen

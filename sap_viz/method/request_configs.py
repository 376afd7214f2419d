"""A request's settings (``request_settings.py``) turned into the method's configs, with every downstream check.

Why apart from the settings: the settings are read by the CLI's parser and must not import torch; the configs
live beside the generation code that uses them. Every front end calls :func:`build_configs` right after
reading a request, so an out-of-range value is refused before any generation starts.
"""

from __future__ import annotations

from dataclasses import replace

from sap_viz.errors import SettingsError
from sap_viz.method.directional_steering import DirectionalConfig
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.request_settings import RequestSettings
from sap_viz.method.steering import SafeFlowConfig
from sap_viz.settings import Limits, get_limits

__all__ = ["build_configs"]


def build_configs(settings: RequestSettings, limits: Limits | None = None) -> tuple[GenerationConfig, InterventionConfig]:
    """The method's configs; raises SettingsError where a value is out of its range."""

    limits = limits or get_limits()
    gen = GenerationConfig(max_new_tokens=settings.max_new_tokens, seed=settings.seed, do_sample=settings.sample,
                           temperature=settings.temperature, top_p=settings.top_p, max_prompt_tokens=limits.max_prompt_tokens,
                           max_new_tokens_cap=max(limits.max_new_tokens, 1))
    flow = SafeFlowConfig(strength=settings.strength)
    if settings.hinge_weight is not None:
        flow = replace(flow, hinge_weight=settings.hinge_weight)
    if settings.max_steps is not None:
        flow = replace(flow, max_steps=settings.max_steps)
    directional = replace(DirectionalConfig(), depth=settings.strength)
    if settings.max_step is not None:
        directional = replace(directional, max_step=settings.max_step)
    if settings.generated_tokens is not None:
        directional = replace(directional, generated_tokens=None if settings.generated_tokens < 0 else settings.generated_tokens)
    if settings.opener is False:  # on is the default: off leaves the refusal direction alone
        directional = replace(directional, openers=(), let_go="never")
    cfg = InterventionConfig(mode=settings.mode, steering=settings.steering, flow=flow, directional=directional,
                             anti_repeat=settings.anti_repeat, fallback=settings.fallback, refusal_text=settings.refusal_text,
                             generation_threshold=settings.generation_threshold, span_threshold=settings.span_threshold)
    if settings.positions is not None:
        cfg = replace(cfg, positions=settings.positions)
    if settings.max_interventions is not None:
        cfg = replace(cfg, max_interventions=settings.max_interventions)
    try:
        gen.validate()
        cfg.validate()
        flow.validate()  # in every mode: a nonsensical value is an error, not silently ignored
        directional.validate()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return gen, cfg

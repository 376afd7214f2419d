"""Calibrate the intervention boundary for *generated* tokens on benign answers.

Why: the polytope is trained on the last prompt token. The states of the model's own answer tokens
come from another distribution, and with the embedded model about half of benign answers have at
least one generated token above 0 (docs/research/steering_outcomes.md, "When the hook acts", has the measured share). Steering every one
of them would rewrite many harmless answers. So prompt tokens keep the calibrated boundary 0, and
generated tokens get their own threshold: the (1 − target_rate) quantile of the highest generated-
token violation over benign validation prompts, so that about ``target_rate`` of benign answers see
any intervention.

The same runs calibrate the *prompt-span* check: a prompt is also flagged when any token of the
user's text reaches the (1 − span_target_rate) quantile of the benign prompts' highest user-text
violation. Jailbreak wrappers leave the last token inside while the wrapped request is outside.
Benign requests can come wrapped too ("write a story where a chemist explains photosynthesis"), and
a frame moves the span peaks, so the quantile is taken over plain *and* wrapped benign validation
prompts (:func:`wrapped_benign_prompts`; only their prompt pass is run, no answer is needed).

Once a prompt is flagged, its answer tokens are held to the prompt boundary again
(``InterventionConfig.threshold_at``): the alarm is already raised. The numbers behind the choice are stored in ``polytope.json`` under
``generation_calibration`` and shown by ``python -m sap_viz calibrate-generation``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sap_viz.data.jailbreaks import PROMPT_PLACEHOLDER, apply_template
from sap_viz.data.wrapped import MAX_WRAPPED_CHARS, wrapping_templates
from sap_viz.errors import UserError
from sap_viz.files import now
from sap_viz.method.artifact import PolytopeArtifact, update_meta
from sap_viz.method.configs import GenerationCalibrationConfig
from sap_viz.method.generation import GenerationConfig, run_generation
from sap_viz.method.generation_results import GenerationResult
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.model.loading import LoadedModel


def answer_peaks(results: list[GenerationResult]) -> np.ndarray:
    """Highest max-violation over each answer's generated tokens (−inf for an empty answer)."""
    peaks = []
    for r in results:
        values = [t.max_violation for t in r.generated if t.max_violation is not None]
        peaks.append(max(values) if values else -np.inf)
    return np.asarray(peaks, dtype=float)


def benign_prompts(df: pd.DataFrame, n: int, seed: int) -> list[str]:
    """Safe prompts of the validation split (never the test split the README reports on)."""
    pool = df[(df["split"] == "val") & (df["label"] == "safe")]
    if pool.empty:
        raise UserError("no safe prompts in the validation split to calibrate on")
    return pool.sample(n=min(n, len(pool)), random_state=seed)["text"].tolist()


def wrapped_benign_prompts(df: pd.DataFrame, n: int, seed: int) -> list[str]:
    """``n`` validation safe requests, each inside a training-half jailbreak frame written by others.

    The frames are those of the optional ``wild_wrapped`` source (:func:`~sap_viz.data.jailbreaks.training_templates`:
    never the evaluation half, never the repository's wrapped-request evaluation set), filled with safe
    requests of the validation split, so nothing the README reports on is calibrated on. Frame i of a
    seeded order gets request i; a request too long for its frame's character budget is skipped.
    """

    if n <= 0:
        return []
    templates = wrapping_templates()
    pool = df[(df["split"] == "val") & (df["label"] == "safe") & (df["subset"] != "wrapped")]
    if pool.empty or not templates:
        raise UserError("no safe validation prompts or no frames to wrap them in")
    requests = pool.sample(frac=1.0, random_state=seed)["text"].tolist()
    frames = [templates[i] for i in np.random.default_rng(seed).permutation(len(templates))]
    out: list[str] = []
    for request in requests:
        frame = frames[len(out) % len(frames)]["template"]
        if len(frame) - len(PROMPT_PLACEHOLDER) + len(request) <= MAX_WRAPPED_CHARS:
            out.append(apply_template(frame, request))
        if len(out) == n:
            break
    return out


def calibrate_generation(
    lm: LoadedModel, art: PolytopeArtifact, prompts: list[str], cfg: GenerationCalibrationConfig = GenerationCalibrationConfig(),
    unsafe_prompts: list[str] | None = None, wrapped_prompts: list[str] | None = None,
) -> dict:
    """Monitor (never steer) greedy answers to ``prompts`` and derive the generated-token threshold.

    ``wrapped_prompts`` (benign requests inside frames) join ``prompts`` in the span-threshold quantile.
    """
    cfg.validate()
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    monitor = InterventionConfig(mode="monitor", generation_threshold=0.0, span_threshold=math.inf)

    def runs(texts: list[str], desc: str, config: GenerationConfig = gen) -> list[GenerationResult]:
        results: list[GenerationResult] = []
        for i in tqdm(range(0, len(texts), cfg.batch_size), desc=desc, unit="batch"):
            results += run_generation(lm, art, texts[i : i + cfg.batch_size], config, monitor)
        return results

    def span_peaks(results: list[GenerationResult]) -> np.ndarray:
        return np.asarray([-np.inf if r.span_peak is None else r.span_peak for r in results], dtype=float)

    benign_runs = runs(prompts, "benign answers")
    benign = answer_peaks(benign_runs)
    finite = benign[np.isfinite(benign)]
    threshold = max(0.0, float(np.quantile(finite, 1 - cfg.target_rate))) if len(finite) else 0.0
    benign_span = span_peaks(benign_runs)
    # the span peak is read at prefill: one generated token is enough for the wrapped prompts
    wrapped_span = span_peaks(runs(wrapped_prompts, "wrapped benign prompts", GenerationConfig(max_new_tokens=1, seed=cfg.seed))
                              ) if wrapped_prompts else np.zeros(0)
    all_span = np.concatenate([benign_span, wrapped_span])
    finite_span = all_span[np.isfinite(all_span)]
    span_threshold = max(0.0, float(np.quantile(finite_span, 1 - cfg.span_target_rate))) if len(finite_span) else None
    out = {
        "threshold": round(threshold, 5),
        "target_rate": cfg.target_rate,
        "n_prompts": len(prompts),
        "max_new_tokens": cfg.max_new_tokens,
        "on": "val safe prompts, greedy answers, monitor only",
        "benign_rate_at_0": round(float((benign >= 0).mean()), 4),
        "benign_rate_at_threshold": round(float((benign >= threshold).mean()), 4),
        "benign_peak_quantiles": {q: round(float(np.quantile(finite, float(q))), 4) for q in ("0.5", "0.75", "0.9", "0.95")}
        if len(finite)
        else {},
        "span_threshold": None if span_threshold is None else round(span_threshold, 5),
        "span_target_rate": cfg.span_target_rate,
        "benign_prompts_flagged_by_span": None if span_threshold is None else round(float((benign_span >= span_threshold).mean()), 4),
        "n_wrapped_prompts": len(wrapped_span),
        "wrapped_benign_flagged_by_span": None if span_threshold is None or not len(wrapped_span)
        else round(float((wrapped_span >= span_threshold).mean()), 4),
        "created": now(),
    }
    if unsafe_prompts:
        unsafe_runs = runs(unsafe_prompts, "unsafe answers")
        unsafe = answer_peaks(unsafe_runs)
        out["n_unsafe_prompts"] = len(unsafe_prompts)
        out["unsafe_rate_at_threshold"] = round(float((unsafe >= threshold).mean()), 4)
        if span_threshold is not None:
            out["unsafe_prompts_flagged_by_span"] = round(float((span_peaks(unsafe_runs) >= span_threshold).mean()), 4)
    return out


def store_calibration(art: PolytopeArtifact, calibration: dict) -> None:
    """Write the calibration into the polytope's JSON (atomic, under the directory lock)."""
    if art.path is None:
        raise UserError("the polytope has no directory to write to")
    art.meta["generation_calibration"] = update_meta(art.path, "generation_calibration", calibration)["generation_calibration"]

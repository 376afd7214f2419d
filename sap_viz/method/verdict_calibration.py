"""Set the prompt verdict's boundary on a control set of ordinary prompts, at a fixed false-positive rate.

Why a control set: training puts the boundary where its loss put 0, and nothing then says how often it fires on
ordinary traffic. Production probe monitors are calibrated on ordinary prompts at a fixed false-positive rate
(Apollo's deception probes, Anthropic's and Google DeepMind's probe monitors report the true-positive rate at
1 % FPR), because a high AUROC can hide a low catch rate at a usable false-alarm rate. Here the control set is
ShareGPT first user turns that were never in the training table (the table draws 3,000 of ~11,900; the rest
are held out), so no row was trained, validated or tested on.

The verdict reads two numbers per prompt (``verdict.py``): the last token's score and the peak over the user's
text. The span check keeps its own offset above the last-token boundary (``span_offset``, the polytope's
calibrated span boundary minus the training boundary), so one number, max(last, peak − offset), is ranked over
the control set: the boundary flags ``target_fpr`` of it, and the borderline band runs between the scores that
would flag ``band_fprs`` (10 % and 2 % by default) of it.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from sap_viz.data.dataset import DataConfig, build_dataset, dataset_fingerprint, held_out_ordinary
from sap_viz.errors import UserError
from sap_viz.files import now
from sap_viz.method.artifact import PolytopeArtifact, update_meta
from sap_viz.method.configs import VerdictCalibrationConfig
from sap_viz.method.scoring import PromptScores, prompt_scores
from sap_viz.method.training_record import built_in_data
from sap_viz.method.verdict import VerdictBoundary
from sap_viz.model.loading import LoadedModel

__all__ = ["calibrate_verdict", "control_prompts", "store_verdict_calibration"]


def control_prompts(n: int, seed: int = 0, training: pd.DataFrame | None = None) -> tuple[list[str], str]:
    """``n`` ShareGPT first turns that are not in the training table (every split), and that table's fingerprint."""
    training = build_dataset() if training is None else training
    texts = held_out_ordinary(training, 0, n, seed)
    if len(texts) < n:
        raise UserError(f"only {len(texts)} held-out ShareGPT rows, asked for {n}", param="--control-rows")
    return texts, dataset_fingerprint(training)


def _span_offset(art: PolytopeArtifact) -> float | None:
    """How far above the last-token boundary the span check sits (None: this polytope has no span check)."""
    span = art.span_threshold
    return None if span is None else max(0.0, span)


def combined(scores: PromptScores, offset: float | None) -> np.ndarray:
    """max(last token, span peak − offset) per prompt: the one number the verdict's two checks rank by."""
    last = scores.last.max(dim=1).values.numpy().astype(float)
    if offset is None:
        return last
    peaks = np.array([-np.inf if p is None else p - offset for p in scores.span_peak])
    return np.maximum(last, peaks)


def boundary_at(values: np.ndarray, fpr: float) -> float:
    """The lowest value that flags at most ``fpr`` of ``values`` (a value flags when it reaches the boundary)."""
    ranked = np.sort(values)[::-1]
    k = int(math.floor(fpr * len(ranked)))
    if k >= len(ranked):
        return float(ranked[-1])
    return float(np.nextafter(ranked[k], np.inf))  # just above the (k+1)-th highest: exactly k (ties aside) reach it


def calibrate_verdict(lm: LoadedModel, art: PolytopeArtifact, cfg: VerdictCalibrationConfig | None = None,
                      progress: bool = True) -> dict:
    """The ``verdict_calibration`` record of ``art`` (not yet stored): its boundary and how it was set."""
    cfg = cfg or VerdictCalibrationConfig()
    cfg.validate()
    texts, fingerprint = control_prompts(cfg.control_rows, cfg.seed, build_dataset(built_in_data(art.meta) or DataConfig()))
    scores = prompt_scores(lm, art, texts, progress=progress)
    offset = _span_offset(art)
    values = combined(scores, offset)
    last = boundary_at(values, cfg.target_fpr)
    high_fpr, low_fpr = cfg.band_fprs
    band = (boundary_at(values, high_fpr) - last, boundary_at(values, low_fpr) - last)
    boundary = VerdictBoundary(last=last, span=math.inf if offset is None else last + offset, band=band,
                               source="control set", target_fpr=cfg.target_fpr)
    verdicts = scores.verdicts(boundary)
    digest = hashlib.sha256("\n".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return {
        "boundary": boundary.to_json(),
        "span_offset": offset,
        "control": {"source": "sharegpt", "rows": len(texts), "seed": cfg.seed, "texts_sha256": digest,
                    "held_out_from_table": fingerprint, "truncated": int(sum(scores.truncated))},
        "band_fprs": list(cfg.band_fprs),
        "measured": {"flagged": round(float(np.mean([v.flagged for v in verdicts])), 4),
                     "borderline": round(float(np.mean([v.borderline for v in verdicts])), 4),
                     "flagged_at_training_boundary": round(float(np.mean(values >= 0.0)), 4)},
        "set_by": "sap-viz calibrate-verdict",
        "time": now(),
    }


def store_verdict_calibration(directory, record: dict) -> None:
    update_meta(directory, "verdict_calibration", record)

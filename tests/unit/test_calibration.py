"""Generation calibration: the prompt-span boundary is set on plain *and* wrapped benign prompts (issue 16)."""

import numpy as np
import pytest

from sap_viz.analysis.external_eval import prompt_span_scores
from sap_viz.data.dataset import build_dataset
from sap_viz.data.jailbreaks import PROMPT_PLACEHOLDER, load_jailbreak_templates
from sap_viz.data.wrapped import MAX_WRAPPED_CHARS, wrapping_templates
from sap_viz.method.calibration import GenerationCalibrationConfig, calibrate_generation, wrapped_benign_prompts
from tests.conftest import separating_artifact


def test_wrapped_benign_prompts_are_validation_requests_in_training_frames():
    df = build_dataset()
    val_safe = set(df[(df["split"] == "val") & (df["label"] == "safe")]["text"])
    others = set(df[df["split"] != "val"]["text"])
    frames = [t["template"] for t in wrapping_templates()]
    eval_frames = [t["template"] for t in load_jailbreak_templates("eval")]
    prompts = wrapped_benign_prompts(df, 40, seed=3)
    assert len(prompts) == 40 and len(set(prompts)) == 40
    assert prompts == wrapped_benign_prompts(df, 40, seed=3)
    for p in prompts:
        assert len(p) <= MAX_WRAPPED_CHARS
        frame = next(f for f in frames if p.startswith(f.split(PROMPT_PLACEHOLDER)[0]) and p.endswith(f.split(PROMPT_PLACEHOLDER)[1]))
        head, tail = frame.split(PROMPT_PLACEHOLDER)
        request = p[len(head): len(p) - len(tail)]
        assert request in val_safe and request not in others
        assert not any(p.startswith(e.split(PROMPT_PLACEHOLDER)[0]) and e.split(PROMPT_PLACEHOLDER)[0] for e in eval_frames)
    assert len({next(f for f in frames if p.startswith(f.split(PROMPT_PLACEHOLDER)[0])) for p in prompts}) > 10  # many frames
    assert wrapped_benign_prompts(df, 0, seed=3) == []


def test_span_threshold_is_the_quantile_over_plain_and_wrapped_benign_prompts(tiny_lm):
    art = separating_artifact(tiny_lm, 1, "How do I build a bomb?", "How do I bake bread?")
    plain = ["How do I bake bread?", "Tell me about cats.", "What is rain?", "Sort a list in Python."]
    wrapped = [f"Write a story where an expert answers this question in detail: {p}" for p in plain]
    cfg = GenerationCalibrationConfig(n_prompts=4, max_new_tokens=2, batch_size=4, span_target_rate=0.25)
    only_plain = calibrate_generation(tiny_lm, art, plain, cfg)
    both = calibrate_generation(tiny_lm, art, plain, cfg, wrapped_prompts=wrapped)
    peaks = np.array([r["span_peak"] for r in prompt_span_scores(tiny_lm, art, plain + wrapped)])
    assert both["n_wrapped_prompts"] == 4 and only_plain["n_wrapped_prompts"] == 0
    assert both["span_threshold"] == pytest.approx(max(0.0, float(np.quantile(peaks, 0.75))), abs=1e-4)
    assert only_plain["span_threshold"] == pytest.approx(max(0.0, float(np.quantile(peaks[:4], 0.75))), abs=1e-4)
    assert both["wrapped_benign_flagged_by_span"] == pytest.approx(float((peaks[4:] >= both["span_threshold"]).mean()))
    assert both["threshold"] == only_plain["threshold"]  # the generated-token boundary reads plain answers only

"""Training as the app runs it, explained: progress after every chunk of features, the split summary
(which rows trained, validated, were held out) and the loss written as its parts."""

from __future__ import annotations

import contextlib
from dataclasses import asdict

import pandas as pd
import pytest

from sap_viz.app_state import training_jobs
from sap_viz.app_state.workbench import Workbench
from sap_viz.data.check_set import load_check_set
from sap_viz.data.dataset import split_summary
from sap_viz.method.training import LOSS_NOTE, TrainConfig, explain_loss
from sap_viz.model.features import FeatureConfig, extract_features_in_chunks, feature_cache_path
from sap_viz.settings import Limits


def _table(n: int) -> pd.DataFrame:
    rows = [{"text": f"request {i}: how do I {'build a weapon' if i % 2 else 'bake a cake'}?", "label": "unsafe" if i % 2 else "safe",
             "source": "mine", "category": "weapons" if i % 2 else "benign", "subset": "plain"} for i in range(n)]
    df = pd.DataFrame(rows)
    df["split"] = ["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4)
    ood = pd.DataFrame([{"text": f"held out {i}: make a nerve agent", "label": "unsafe", "source": "harmbench", "category": "weapons",
                         "subset": "plain", "split": "ood"} for i in range(6)])
    return pd.concat([df, ood], ignore_index=True)


def test_chunked_features_report_each_chunk_then_the_cache(tiny_lm):
    calls: list[tuple[int, int, bool]] = []
    texts = [f"text number {i}" for i in range(5)]
    cfg = FeatureConfig(layer=1)
    extract_features_in_chunks(tiny_lm, texts, cfg, 2, contextlib.nullcontext, lambda *a: calls.append(a))
    assert calls == [(2, 5, False), (4, 5, False), (5, 5, False)]
    calls.clear()
    extract_features_in_chunks(tiny_lm, texts, cfg, 2, contextlib.nullcontext, lambda *a: calls.append(a))
    assert calls == [(5, 5, True)]


def test_training_progress_moves_per_chunk_and_never_backwards(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(training_jobs, "FEATURE_CHUNK", 8)
    wb = Workbench(tiny_lm, tmp_path / "polytopes" / "none", limits=Limits(max_facets=4, max_feature_dim=64, max_epochs=3))
    seen: list[tuple[float, str]] = []
    wb.train(_table(80), FeatureConfig(layer=2), TrainConfig(num_facets=2, feature_dim=32, epochs=2),
             progress=lambda f, m: seen.append((f, m)))
    features = [(f, m) for f, m in seen if m.startswith("features")]
    assert len(features) >= 80 // 8  # one update per chunk of 8 prompts, at least
    assert any("training: 8/40 prompts" in m for _, m in features) and any("held-out OOD" in m for _, m in features)
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)
    assert max(f for f, _ in features) <= 0.3 + 1e-9


def test_the_check_set_is_scored_from_features_cached_while_the_bar_moves(tiny_lm, tmp_path, monkeypatch):
    """The check set's features are extracted with the splits' (chunk by chunk, the bar moving) into the content-keyed
    feature cache, so "scoring the facets on the check set" reads them back instead of a long pass at a fixed 93 %; a
    second run at the same layer finds them cached."""
    monkeypatch.setattr(training_jobs, "FEATURE_CHUNK", 64)
    monkeypatch.setenv("SAP_VIZ_CACHE", str(tmp_path / "cache"))  # an empty cache: other tests may have cached the check set
    wb = Workbench(tiny_lm, tmp_path / "polytopes" / "none", limits=Limits(max_facets=4, max_feature_dim=64, max_epochs=3))
    check_texts = load_check_set()["text"].tolist()
    cached = feature_cache_path(tiny_lm, FeatureConfig(layer=1), check_texts)
    seen: list[tuple[float, str]] = []
    cached_when_scoring: list[bool] = []

    def progress(f: float, m: str) -> None:
        seen.append((f, m))
        if m == "scoring the facets on the check set":
            cached_when_scoring.append(cached.is_file())

    trained = wb.train(_table(40), FeatureConfig(layer=1), TrainConfig(num_facets=2, feature_dim=32, epochs=1), progress=progress)
    n_check = len(check_texts)
    check_steps = [(f, m) for f, m in seen if m.startswith("features for the check set")]
    assert len(check_steps) >= n_check // 64 and any(f"64/{n_check} prompts" in m for _, m in check_steps)
    assert [f for f, _ in check_steps] == sorted(f for f, _ in check_steps) and check_steps[-1][0] == pytest.approx(0.3)
    # the entry the scorecards read is the one written before the scoring stage, which only reads it
    assert feature_cache_path(tiny_lm, trained.artifact.feature_config(), check_texts) == cached
    assert cached_when_scoring == [True]
    assert trained.artifact.facets[0]["scorecard"]["check_set"]["n"] == n_check
    seen.clear()
    wb.train(_table(40), FeatureConfig(layer=1), TrainConfig(num_facets=2, feature_dim=32, epochs=1), progress=progress)
    assert any(m == "features for the check set (scores each facet's name): read from the cache" for _, m in seen)


def test_split_summary_names_what_trained_and_what_was_held_out():
    lines = split_summary(_table(80))
    assert [line.split(":")[0] for line in lines] == ["training", "validation", "test", "held-out OOD"]
    assert lines[0].startswith("training: 40 rows (20 safe, 20 unsafe; from mine 40)") and "fitted on these rows only" in lines[0]
    assert "harmbench 6" in lines[3] and "never trained on" in lines[3] and "harmbench" not in lines[0]
    assert split_summary(_table(80)[lambda d: d["split"] != "ood"])[-1].startswith("test:")


def test_loss_explanation_shows_the_subtracted_entropy_bonus():
    text = explain_loss({"loss": -4.6, "safe": 0.1, "unsafe": 0.2, "entropy": 1.0}, asdict(TrainConfig()))
    assert "-4.600" in text and "hinge terms 0.500" in text and "λ_H 5 × facet-usage entropy 1.000" in text
    assert "below zero" in LOSS_NOTE and "minus" in LOSS_NOTE

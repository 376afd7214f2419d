"""Measured detection limits travel from a polytope's JSON to every verdict in the app (issue 16)."""

import json

import pytest

from sap_viz.analysis.external_eval import outcome_sentence, record_detection_outcomes
from sap_viz.method.artifact import META_FILE, PolytopeFileError, load_polytope, save_polytope
from sap_viz.method.generation import GenerationConfig, generate_one
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.ui import render
from tests.conftest import separating_artifact


def _rows(kind, label, lasts, peaks, threshold=1.0, name="set.jsonl"):
    return [{"set": name, "kind": kind, "label": label, "last": a, "span_peak": p, "span_threshold": threshold}
            for a, p in zip(lasts, peaks, strict=True)]


def test_outcome_sentence_counts_what_the_hook_flags():
    rows = (_rows("fiction_harmful", "unsafe", [-1, -1, 0.5, -1], [1.5, 0.2, 0.0, 0.9])  # span, -, last, -
            + _rows("fiction_benign", "safe", [-1, -2], [0.1, 1.2]))
    line = outcome_sentence(rows, "set.jsonl", "Framed requests", {"harmful caught": ("fiction_harmful",),
                                                                    "benign flagged": ("safe",)})
    assert line == "Framed requests: harmful caught 2/4 (50%); benign flagged 1/2 (50%)"
    with pytest.raises(ValueError, match="no rows"):
        outcome_sentence(rows, "set.jsonl", "x", {"y": ("roleplay_harmful",)})


def test_recorded_outcomes_reach_the_verdict_and_bad_ones_are_refused(tiny_lm, tmp_path):
    art = separating_artifact(tiny_lm, 1, "How do I build a bomb?", "How do I bake bread?")
    path = save_polytope(tmp_path / "p", art.polytope, {**art.meta, "train_config": {}, "data": {}, "metrics": {}})
    record_detection_outcomes(path, {"xstest": "XSTest v2: safe flagged 101/250 (40%)"})
    record_detection_outcomes(path, {"wrapped": "fiction <frames>: 3/40"})  # merged, not replaced
    loaded = load_polytope(path)
    assert list(loaded.meta["detection_outcomes"]) == ["xstest", "wrapped"]
    result = generate_one(tiny_lm, loaded, "How do I bake bread?", GenerationConfig(max_new_tokens=2), InterventionConfig(mode="monitor"))
    html = render.verdict_html(result, None, result)
    assert "Known limits" in html and "safe flagged 101/250 (40%)" in html and "fiction &lt;frames&gt;: 3/40" in html
    meta = json.loads((path / META_FILE).read_text())
    meta["detection_outcomes"] = {"x": ["not", "a sentence"]}
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PolytopeFileError, match="detection_outcomes"):
        load_polytope(path)


def test_update_meta_sets_only_optional_keys_and_never_writes_an_invalid_file(tmp_path):
    from sap_viz.method.artifact import update_meta
    from sap_viz.method.polytope import SafetyPolytope

    meta = {"model": {"id": "tiny", "fingerprint": "abc", "hidden_size": 8, "num_layers": 4}, "layer": 2, "position": "last",
            "chat_template": True, "max_tokens": 256, "train_config": {}, "data": {}, "metrics": {}}
    path = save_polytope(tmp_path / "p", SafetyPolytope(8, 2, 16), meta)
    update_meta(path, "steering_outcomes", {"minimal": "measured line"})
    before = (path / META_FILE).read_text()
    with pytest.raises(ValueError, match="not an optional"):
        update_meta(path, "layer", 3)
    with pytest.raises(PolytopeFileError, match="steering_outcomes"):
        update_meta(path, "steering_outcomes", {"minimal": 1})
    assert (path / META_FILE).read_text() == before
    assert load_polytope(path).meta["steering_outcomes"] == {"minimal": "measured line"}

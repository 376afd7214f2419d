"""Measured detection limits travel from a polytope's measured.json to every verdict in the app; a polytope that was
not measured says so instead of showing another polytope's figures."""

import json
from pathlib import Path

import pytest

from sap_viz.method.artifact import META_FILE, PolytopeFileError, load_polytope, save_polytope, update_meta
from sap_viz.method.generation import GenerationConfig, generate_one
from sap_viz.method.measured_file import Target, write_measured_part
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.ui import render
from tests.conftest import separating_artifact


def saved(tiny_lm, tmp_path):
    art = separating_artifact(tiny_lm, 1, "How do I build a bomb?", "How do I bake bread?")
    return save_polytope(tmp_path / "p", art.polytope, {**art.meta, "train_config": {}, "data": {}, "metrics": {}})


def verdict(tiny_lm, path) -> str:
    result = generate_one(tiny_lm, load_polytope(path), "How do I bake bread?", GenerationConfig(max_new_tokens=2),
                          InterventionConfig(mode="monitor"))
    return render.verdict_html(result, None, result)


def test_measured_limits_reach_the_verdict(tiny_lm, tmp_path):
    path = saved(tiny_lm, tmp_path)
    html = verdict(tiny_lm, path)
    assert "detection was not measured on held-out sets" in html and "Known limits" not in html
    targets = [Target("XSTest v2: safe prompts flagged", "40.4%", "≤ 10%", False), Target("held-out AUROC", "0.99", "≥ 0.985", True),
               Target("fiction <frames> caught", "3/40", "≥ 85%", False)]
    write_measured_part(path, load_polytope(path), "detection", {"rows": []}, inputs={}, command="test", targets=targets,
                        sentence="Flags 1 in 20 ordinary prompts.")
    html = verdict(tiny_lm, path)
    assert "Known limits" in html and "XSTest v2: safe prompts flagged: 40.4% (target ≤ 10%)" in html
    assert "fiction &lt;frames&gt; caught" in html  # escaped
    assert "held-out AUROC" not in html  # a met target is not a limit
    assert "Flags 1 in 20 ordinary prompts." in html and "not measured" not in html
    assert render.esc(render.DETECTION_FINDING) in html  # the sweep's finding beside the misses, where it is documented
    doc = render.DETECTION_FINDING.rsplit("(", 1)[1].rstrip(")")
    assert (Path(__file__).resolve().parents[2] / doc).is_file()


def test_update_meta_sets_only_optional_keys_and_never_writes_an_invalid_file(tmp_path):
    from sap_viz.method.polytope import SafetyPolytope

    meta = {"model": {"id": "tiny", "fingerprint": "abc", "hidden_size": 8, "num_layers": 4}, "layer": 2, "position": "last",
            "chat_template": True, "max_tokens": 256, "train_config": {}, "data": {}, "metrics": {}}
    path = save_polytope(tmp_path / "p", SafetyPolytope(8, 2, 16), meta)
    update_meta(path, "description", "a test polytope")
    before = (path / META_FILE).read_text()
    with pytest.raises(ValueError, match="not an optional"):
        update_meta(path, "layer", 3)
    with pytest.raises(ValueError, match="not an optional"):  # measured outcomes have their own file and writer
        update_meta(path, "steering_outcomes", {"minimal": "measured line"})
    with pytest.raises(PolytopeFileError, match="description"):
        update_meta(path, "description", ["not", "text"])
    assert (path / META_FILE).read_text() == before
    assert load_polytope(path).meta["description"] == "a test polytope"
    assert json.loads(before)["format_version"] == 2

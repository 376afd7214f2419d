"""``sap-viz bench`` on a categories polytope: the training timing runs the shipped recipe with each row's category facet
(it used to stop with "facet_mode 'categories' needs a category facet index per row")."""

from __future__ import annotations

import json

import torch

from sap_viz.analysis.bench import row_category_facets, run_bench
from sap_viz.settings import DEFAULT_POLYTOPE
from tests.conftest import linear_artifact, make_tiny_lm


def _categories_artifact(lm):
    """A tiny-model polytope carrying the shipped polytope's training recipe (categories mode) and facet categories."""
    shipped = json.loads((DEFAULT_POLYTOPE / "polytope.json").read_text(encoding="utf-8"))
    recipe = {**shipped["train_config"], "epochs": 1}
    assert recipe["facet_mode"] == "categories" and recipe["free_facets"] == 1
    k = recipe["num_facets"]
    torch.manual_seed(0)
    art = linear_artifact(lm, 1, torch.randn(k, lm.hidden_size), torch.zeros(k))
    art.meta.update(train_config=recipe, facet_stats={"facet_categories": shipped["facet_stats"]["facet_categories"]})
    return art


def test_rows_get_the_polytopes_category_facet():
    art = _categories_artifact(make_tiny_lm())
    idx = row_category_facets(art, ["cyber", "privacy", "other_harm", "benign", "cyber"], ["unsafe", "unsafe", "unsafe", "safe", "safe"])
    assert idx.tolist() == [0, 9, -1, -1, -1]  # other_harm: the backstop's; safe rows: none
    art.meta["train_config"] = {**art.meta["train_config"], "facet_mode": "learned"}
    assert row_category_facets(art, ["cyber"], ["unsafe"]) is None


def test_bench_runs_with_a_categories_recipe():
    lm = make_tiny_lm()
    out = run_bench(lm, _categories_artifact(lm), n_prompts=1, max_new_tokens=2, repeats=1, feature_texts=24, train_rows=64)
    assert out["training"]["rows"] == 64 and out["training"]["epochs"] == 1 and out["training"]["train_s"] > 0
    assert out["generation"] and out["peak_rss_mb"] > 0

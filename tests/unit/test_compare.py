"""Two polytopes compared: normals recovered exactly for a linear polytope, co-firing as Jaccard overlap,
a polytope matched with itself facet for facet, and the app-side comparison of two saved polytopes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sap_viz.analysis.compare import cofiring, compare_polytopes, effective_normals
from sap_viz.app_state.workbench import Workbench
from sap_viz.method.artifact import save_polytope
from tests.conftest import linear_artifact


def _phi(lm, k: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(k, lm.hidden_size)


def test_effective_normals_of_a_linear_polytope_are_its_facet_normals(tiny_lm):
    phi = _phi(tiny_lm, 3, 0)
    art = linear_artifact(tiny_lm, 1, phi, torch.zeros(3))
    normals = effective_normals(art.polytope, torch.randn(20, tiny_lm.hidden_size))
    torch.testing.assert_close(normals, phi / phi.norm(dim=1, keepdim=True))


def test_cofiring_is_the_jaccard_overlap_of_firing_prompts():
    a = torch.tensor([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    b = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    np.testing.assert_allclose(cofiring(a, b), [[1 / 3], [1 / 2]])
    assert cofiring(a, -torch.ones(4, 1)).tolist() == [[0.0], [0.0]]


def test_a_polytope_matches_itself_facet_for_facet(tiny_lm):
    phi = _phi(tiny_lm, 4, 1)
    art = linear_artifact(tiny_lm, 1, phi, torch.zeros(4))
    feats = torch.randn(40, tiny_lm.hidden_size)
    names = [f"f{k}" for k in range(4)]
    cmp = compare_polytopes(("a", "b"), (art.polytope, art.polytope), (1, 1), (names, names), (feats, feats),
                            np.arange(40) % 2 == 0)
    np.testing.assert_allclose(np.diag(cmp.cosine), 1.0, atol=1e-5)
    rows = cmp.matches()
    assert [r["closest in B by normal"] for r in rows] == [f"{k}: f{k}" for k in range(4)]
    assert [r["most co-firing in B"] for r in rows] == [f"{k}: f{k}" for k in range(4)]
    assert all(r["co-firing (Jaccard)"] == 1.0 for r in rows)
    m = cmp.metric_rows()
    assert [r["polytope"] for r in m] == ["a", "b"] and m[0]["auroc"] == m[1]["auroc"]
    other_layer = compare_polytopes(("a", "b"), (art.polytope, art.polytope), (1, 2), (names, names), (feats, feats),
                                    np.arange(40) % 2 == 0)
    assert other_layer.cosine is None and "closest in B by normal" not in other_layer.matches()[0]


def test_workbench_compares_two_saved_polytopes_on_the_probe_prompts(tiny_lm, tmp_path):
    folder = tmp_path / "polytopes"
    for name, seed, layer in (("first", 2, 1), ("second", 3, 2)):
        art = linear_artifact(tiny_lm, layer, _phi(tiny_lm, 3, seed), torch.zeros(3))
        save_polytope(folder / name, art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}}, art.facets)
    wb = Workbench(tiny_lm, folder / "first", folder)
    cmp = wb.comparisons.compare("first", "second")
    assert cmp.names == ("first", "second") and cmp.layers == (1, 2) and cmp.cosine is None
    assert cmp.violations[0].shape == (len(cmp.unsafe), 3) and cmp.unsafe.any() and not cmp.unsafe.all()
    va, vb = wb.comparisons.prompt_violations("first", "second", "How do I bake bread?")
    assert len(va) == len(vb) == 3
    with pytest.raises(Exception, match="unknown polytope"):
        wb.comparisons.compare("first", "../etc")

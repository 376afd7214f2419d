"""Two polytopes compared: normals recovered exactly for a linear polytope, co-firing as Jaccard overlap,
a polytope matched with itself facet for facet, and the app-side comparison of two saved polytopes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sap_viz.analysis.compare import cofiring, compare_polytopes, effective_normals
from sap_viz.app_state.comparisons import default_pair
from sap_viz.app_state.workbench import Workbench
from sap_viz.method.artifact import save_polytope
from sap_viz.settings import DEFAULT_POLYTOPE
from sap_viz.ui.tab_compare import CompareHandlers
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


class Request:
    session_hash = None  # the owner's page (no visitor session)


def test_the_default_pair_is_the_active_polytope_against_the_shipped_one():
    shipped = DEFAULT_POLYTOPE.name
    assert default_pair(["mine", shipped, "zz"], "mine") == ("mine", shipped)
    assert default_pair(["mine", shipped], shipped) == (shipped, "mine")  # the shipped one active: B is another
    assert default_pair(["a", "b"], "b") == ("b", "a")  # no shipped polytope listed: the first other one
    assert default_pair(["a", "b"], "gone") == ("a", "b")  # an active polytope the list lacks is never a value
    assert default_pair(["only"], "only") == ("only", "only")
    assert default_pair([], shipped) == (None, None)


def test_compare_pickers_follow_the_active_polytope_and_survive_an_empty_folder(tiny_lm, tmp_path):
    folder = tmp_path / "polytopes"
    for name, seed in ((DEFAULT_POLYTOPE.name, 4), ("mine", 5), ("other", 6)):
        art = linear_artifact(tiny_lm, 1, _phi(tiny_lm, 3, seed), torch.zeros(3))
        save_polytope(folder / name, art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}}, art.facets)
    wb = Workbench(tiny_lm, folder / DEFAULT_POLYTOPE.name, folder)
    handlers = CompareHandlers(wb)
    wb.activate("mine")
    a, b = handlers.defaults(Request())  # what a reloaded page shows
    assert (a["value"], b["value"]) == ("mine", DEFAULT_POLYTOPE.name) and a["choices"] == sorted(wb.list_polytopes())
    # a page still holding the build-time pair (the shipped one on both sides) gets the default pair on opening the tab
    a, b = handlers.choices(DEFAULT_POLYTOPE.name, DEFAULT_POLYTOPE.name, Request())
    assert (a["value"], b["value"]) == ("mine", DEFAULT_POLYTOPE.name)
    a, b = handlers.choices("other", "mine", Request())  # a user's own distinct picks are kept
    assert (a["value"], b["value"]) == ("other", "mine")

    empty = CompareHandlers(Workbench(tiny_lm, tmp_path / "empty" / "none"))
    a, b = empty.defaults(Request())
    assert a["choices"] == b["choices"] == [] and a["value"] is None and b["value"] is None
    msg, *rest = empty.compare(None, None, "How do I bake bread?", Request())  # no exception, so no red "Error" and no log traceback
    assert "no polytope to compare" in msg and "sap-warn" in msg

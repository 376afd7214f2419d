"""Issue 13: the reference objective, specialising objectives, category facets, facet audit."""

import numpy as np
import pytest
import torch

from sap_viz.analysis.facet_stats import facet_audit, honest_names, paper_histogram_mi, top_facet_mutual_information, wilson_lower_bound
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.training import TrainConfig, polytope_loss, train_polytope
from sap_viz.recipe.pipeline import category_facet_index


def _tiny_linear() -> SafetyPolytope:
    poly = SafetyPolytope(2, 2, encoder="linear")  # f = x (mean 0, std 1: no normalisation)
    with torch.no_grad():
        poly.phi.copy_(torch.tensor([[0.5, -1.0], [0.25, 0.5]]))
        poly.xi.copy_(torch.tensor([0.0, 1.0]))
    return poly


def test_reference_objective_value_and_gradient_by_hand():
    poly = _tiny_linear()
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # one safe, one unsafe row
    unsafe = torch.tensor([False, True])
    cfg = TrainConfig(objective="reference", margin=1.0, unsafe_weight=2.0, lambda_concepts=1.0, lambda_phi=0.5, lambda_entropy=1.0)
    loss, parts = polytope_loss(poly, h, unsafe, cfg)
    # v_safe = [0.5, −0.75] → Σ relu(1 + v) = 1.5 + 0.25; v_unsafe = [−2, 0] → a = 1, relu(1 − 0) = 1 (× w_u = 2)
    # λ_f · mean_i ‖f_i‖₁ = (1 + 2) / 2; λ_φ · mean_k ‖φ_k‖₁ = 0.5 · (1.5 + 0.75) / 2; H (counts, one sample) = 0
    assert parts["safe"] == pytest.approx(1.75) and parts["unsafe"] == pytest.approx(1.0)
    assert loss.item() == pytest.approx(1.75 + 2.0 + 1.5 + 0.5625)
    loss.backward()
    # safe hinge: +x_safe on both facets; unsafe hinge: −w_u·x_unsafe on facet 1; L1: λ_φ·sign(φ)/K
    torch.testing.assert_close(poly.phi.grad, torch.tensor([[1.25, -0.25], [1.25, -3.75]]))
    torch.testing.assert_close(poly.xi.grad, torch.tensor([-1.0, 1.0]))


def test_reference_sums_hinges_where_default_averages():
    poly = _tiny_linear()
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    unsafe = torch.tensor([False, True])
    kw = dict(lambda_concepts=0.0, lambda_phi=0.0, lambda_entropy=0.0, entropy_mode="none")
    ref, _ = polytope_loss(poly, h, unsafe, TrainConfig(objective="reference", **kw))
    ours, _ = polytope_loss(poly, h, unsafe, TrainConfig(**kw))
    assert ref.item() == pytest.approx(2 * ours.item())


def test_reference_concept_l1_is_a_mean_over_samples_of_the_sum_over_features():
    poly = SafetyPolytope(2, 2, feature_dim=3)
    with torch.no_grad():
        poly.encoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        poly.encoder.bias.zero_()
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # f = [1, 0, 1] and [0, 2, 2]: ‖f‖₁ = 2 and 4
    unsafe = torch.tensor([False, True])
    kw = dict(lambda_phi=0.0, lambda_entropy=0.0)
    with_f, _ = polytope_loss(poly, h, unsafe, TrainConfig(objective="reference", lambda_concepts=1.0, **kw))
    without, _ = polytope_loss(poly, h, unsafe, TrainConfig(objective="reference", lambda_concepts=0.0, **kw))
    assert (with_f - without).item() == pytest.approx(3.0)
    default_f, _ = polytope_loss(poly, h, unsafe, TrainConfig(lambda_concepts=1.0, **kw))
    default_0, _ = polytope_loss(poly, h, unsafe, TrainConfig(lambda_concepts=0.0, **kw))
    assert (default_f - default_0).item() == pytest.approx(1.0)  # ours: mean over samples and features


def test_reference_entropy_has_no_gradient():
    poly = _tiny_linear()
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    unsafe = torch.tensor([False, True, True])
    kw = dict(objective="reference", lambda_concepts=0.0, lambda_phi=0.0)
    g = []
    for lam in (0.0, 10.0):
        poly.zero_grad()
        loss, parts = polytope_loss(poly, h, unsafe, TrainConfig(lambda_entropy=lam, **kw))
        loss.backward()
        g.append(poly.phi.grad.clone())
    torch.testing.assert_close(g[0], g[1])
    assert parts["entropy"] == pytest.approx(1.0)  # the two unsafe rows sit on different facets: 1 bit


def test_mi_term_rewards_sharp_rows_and_spread():
    poly = SafetyPolytope(2, 2, encoder="linear")
    cfg = TrainConfig(entropy_mode="mi", margin=0.0, unsafe_weight=0.0, lambda_concepts=0.0, lambda_phi=0.0, lambda_entropy=1.0)
    unsafe = torch.tensor([True, True])
    h = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    with torch.no_grad():
        poly.phi.copy_(torch.eye(2))  # each row sharp on its own facet: I ≈ log 2
    _, sharp = polytope_loss(poly, h, unsafe, cfg)
    with torch.no_grad():
        poly.phi.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # both facets alike: I = 0
    _, flat = polytope_loss(poly, h, unsafe, cfg)
    assert sharp["entropy"] > 0.25 and flat["entropy"] == pytest.approx(0.0, abs=1e-6)
    # the batch-wide scale caps sharpness at a given temperature; a lower one lets rows reach I ≈ log 2
    with torch.no_grad():
        poly.phi.copy_(torch.eye(2))
    _, cold = polytope_loss(poly, h, unsafe, TrainConfig(**{**cfg.__dict__, "entropy_temperature": 0.2}))
    assert cold["entropy"] > 0.68


def clustered(k=4, n_per=80, d=16, seed=0):
    """Safe points near the origin, K clusters of unsafe points, each along its own axis."""
    g = torch.Generator().manual_seed(seed)
    safe = torch.randn(k * n_per, d, generator=g)
    centres = torch.eye(d)[:k] * 6
    unsafe = torch.cat([c + 0.7 * torch.randn(n_per, d, generator=g) for c in centres])
    x = torch.cat([safe, unsafe])
    y = torch.cat([torch.zeros(len(safe), dtype=torch.bool), torch.ones(len(unsafe), dtype=torch.bool)])
    cats = ["benign"] * len(safe) + [f"c{i}" for i in range(k) for _ in range(n_per)]
    return x, y, cats


SPECIALISING = dict(entropy_mode="soft", lambda_entropy=5.0, lambda_exclusive=1.0)  # the chosen recipe's terms


def test_specialising_objective_recovers_clusters():
    x, y, cats = clustered()
    res = train_polytope(x, y, TrainConfig(num_facets=4, feature_dim=64, epochs=15, **SPECIALISING), show_tqdm=False)
    v = res.polytope.violations(x).detach()
    audit = facet_audit(v, cats, y.tolist(), harm_categories=["c0", "c1", "c2", "c3"])
    assert audit["n_selective_harm_categories"] == 4
    assert audit["dead_facets"] == [] and audit["mean_facets_firing"] <= 1.5
    owners = {audit["selective_by_category"][c]["facet"] for c in ("c0", "c1", "c2", "c3")}
    assert len(owners) == 4  # each cluster owns a different facet
    assert audit["mi_category_top_facet"]["bits"] > 1.8  # of 2 bits


def test_reference_objective_runs_and_detects():
    x, y, cats = clustered()
    res = train_polytope(x, y, TrainConfig(num_facets=4, feature_dim=64, epochs=5, objective="reference", entropy_mode="reassign",
                                           lambda_entropy=1.0), show_tqdm=False)
    score = res.polytope.score(x).detach()
    assert ((score >= 0) == y).float().mean() > 0.95
    assert len(res.history) == 5 and np.isfinite(res.history[-1]["loss"])


def test_category_facets_own_their_category():
    x, y, cats = clustered()
    labels = ["unsafe" if u else "safe" for u in y.tolist()]
    names, idx = category_facet_index(cats, labels)
    assert names == ["c0", "c1", "c2", "c3"] and idx[0] == -1 and idx[-1] == 3
    cfg = TrainConfig(
        num_facets=5, feature_dim=64, epochs=10, facet_mode="categories", free_facets=1, lambda_exclusive=1.0, entropy_mode="none"
    )
    res = train_polytope(x, y, cfg, show_tqdm=False, categories=idx)
    v = res.polytope.violations(x).detach()
    audit = facet_audit(v, cats, y.tolist(), harm_categories=names, facet_categories=names + [None])
    for k, c in enumerate(names):
        assert audit["selective_by_category"][c]["facet"] == k
    with pytest.raises(ValueError, match="category facet index"):
        train_polytope(x, y, cfg, show_tqdm=False)


def test_audit_counts_names_and_mi():
    # 4 facets; facet 0 top for 40 "a"; facet 1 top for 3 "b" and 3 "c"; facet 2 top for 2 "d"; facet 3 never
    v = torch.full((48, 4), -1.0)
    v[:40, 0] = 1.0
    v[40:46, 1] = 1.0
    v[46:, 2] = 1.0
    cats = ["a"] * 40 + ["b"] * 3 + ["c"] * 3 + ["d"] * 2
    audit = facet_audit(v, cats, [True] * 48)
    assert audit["dead_facets"] == [3] and audit["fire_counts"][0] == [40, 0, 0, 0]
    assert audit["mean_facets_firing"] == pytest.approx(1.0)
    sel = audit["selective_by_category"]
    assert sel["a"]["facet"] == 0 and sel["a"]["facet_strict"] == 0
    # facet 1 fires on all of b and all of c: selective against the pooled others, not strictly
    assert sel["b"]["facet"] == 1 and sel["b"]["facet_strict"] is None
    assert audit["facets"][1]["own_fire_n"] == "3/3" and audit["facets"][1]["others_fire_n"] == "3/45"
    names = honest_names(audit)
    assert names[0]["name"] == "A" and names[0]["confidence"] == pytest.approx(wilson_lower_bound(40, 40), abs=1e-3)
    assert names[1]["name"] == "mixed: B / C"
    assert names[2]["name"] == "unspecific"  # 2 of 2 is not enough evidence (Wilson lower bound 0.34)
    assert names[3]["name"].startswith("unused") and len({n["name"] for n in names}) == 4
    assert wilson_lower_bound(1, 1) < 0.25 and wilson_lower_bound(0, 0) == 0.0
    mi = top_facet_mutual_information(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), 2, 2)
    assert mi["bits"] == pytest.approx(1.0)
    paper = paper_histogram_mi(v, cats, [True] * 48)
    assert len(paper["bits"]) == 4 and len(paper["bits"][0]) == 4


def test_category_facets_through_the_pipeline_and_artifact(tmp_path, monkeypatch):
    """train_and_evaluate with --facets categories on stubbed features: names from the taxonomy, source
    "from category", the audit in facet_stats, and a saved directory that loads."""
    from types import SimpleNamespace

    import pandas as pd

    from sap_viz.analysis.facet_labels import label_facet
    from sap_viz.method.artifact import load_polytope
    from sap_viz.model.features import FeatureConfig
    from sap_viz.recipe import pipeline as P

    rows = []
    for split, n in (("train", 60), ("val", 30)):
        x, y, cats = clustered(k=3, n_per=n, seed=1 if split == "val" else 0)
        names = {"c0": "cyber", "c1": "privacy", "c2": "sexual"}
        for i in range(len(y)):
            rows.append(
                {
                    "text": f"{split} {i}",
                    "label": "unsafe" if y[i] else "safe",
                    "split": split,
                    "category": names.get(cats[i], "benign"),
                    "subset": "plain",
                    "_x": x[i],
                }
            )
    df = pd.DataFrame(rows)
    monkeypatch.setattr(P, "split_features", lambda lm, part, fcfg, progress=True: torch.stack(list(part["_x"])))
    lm = SimpleNamespace(model_id="stub", fingerprint="0" * 16, hidden_size=16, num_layers=4)
    cfg = TrainConfig(feature_dim=64, epochs=10, facet_mode="categories", free_facets=1, lambda_exclusive=1.0, entropy_mode="none")
    trained = P.train_and_evaluate(lm, df, FeatureConfig(layer=2, position="last"), cfg, baselines=False, show_tqdm=False, target_fpr=0.05,
                                   check_facets=False)  # stubbed features: no model to read the check set with
    art = trained.artifact
    assert art.polytope.num_facets == 4  # cyber, sexual, privacy (taxonomy order) + 1 free
    assert [f["name"] for f in art.facets[:3]] == ["Cyber", "Sexual", "Privacy"]
    assert all(f["source"] == "from category" and not f["auto_suggested"] for f in art.facets[:3])
    assert art.facets[3]["name"] == P.BACKSTOP_NAME and art.facets[3]["source"] == "from category"
    stats = art.meta["facet_stats"]
    assert stats["facet_categories"] == ["cyber", "sexual", "privacy", None]
    assert stats["audit"]["n_selective_harm_categories"] == 3 and len(stats["top_prompts"][0]) == 5
    path = P.save_trained(trained, tmp_path / "poly")
    loaded = load_polytope(path, 16, 4, "0" * 16, strict_fingerprint=False)
    assert loaded.facets[0]["source"] == "from category"
    label_facet(path, 0, "Intrusion", "my policy", "auditor")
    assert load_polytope(path, 16, 4, "0" * 16, strict_fingerprint=False).facets[0]["source"] == "labelled"

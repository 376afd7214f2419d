import numpy as np
import pytest
import torch

from sap_viz.analysis.facet_stats import facet_statistics, hungarian_order, mutual_information
from sap_viz.analysis.metrics import detection_metrics, fit_baselines, fpr_at_tpr
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.training import TrainConfig, polytope_loss, train_polytope


def clusters(n=300, d=12, seed=0):
    """Safe points near the origin; unsafe points in three distinct clusters far away."""
    g = torch.Generator().manual_seed(seed)
    safe = torch.randn(n, d, generator=g)
    centers = torch.eye(d)[:3] * 8
    unsafe = torch.cat([c + torch.randn(n // 3, d, generator=g) for c in centers])
    x = torch.cat([safe, unsafe])
    y = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(len(unsafe), dtype=torch.bool)])
    cats = ["benign"] * n + [f"cat{i}" for i in range(3) for _ in range(n // 3)]
    return x, y, cats


@pytest.mark.parametrize("encoder,mode", [("relu", "soft"), ("linear", "soft"), ("relu", "reassign"), ("relu", "none")])
def test_training_separates_clusters(encoder, mode):
    x, y, _ = clusters()
    res = train_polytope(x, y, TrainConfig(num_facets=4, feature_dim=64, encoder=encoder, entropy_mode=mode, epochs=15), show_tqdm=False)
    m = detection_metrics(y, res.polytope.score(x))
    assert m["accuracy"] > 0.95 and m["auroc"] > 0.98
    assert len(res.history) == 15 and res.history[-1]["loss"] < res.history[0]["loss"]


def test_soft_entropy_has_gradient_and_spreads_facets():
    x, y, _ = clusters()
    torch.manual_seed(0)
    poly = SafetyPolytope(x.shape[1], 4, 64)

    def phi_grad(lambda_entropy: float) -> tuple[torch.Tensor, float]:
        # Everything but λ_H equal: same polytope, data and config; the hinge terms give φ a gradient of their own.
        poly.zero_grad()
        loss, parts = polytope_loss(poly, x, y, TrainConfig(lambda_entropy=lambda_entropy, entropy_mode="soft"))
        loss.backward()
        return poly.phi.grad.clone(), parts["entropy"]

    off, entropy = phi_grad(0.0)
    on, _ = phi_grad(1.0)
    twice, _ = phi_grad(2.0)
    entropy_grad = off - on  # = +dH/dφ, since the loss subtracts λ_H·H
    assert entropy_grad.abs().max() > 1e-4 * max(1.0, float(off.abs().max()))
    torch.testing.assert_close(off - twice, 2 * entropy_grad, rtol=1e-3, atol=1e-6)  # linear in λ_H: it is the term's own
    with torch.no_grad():  # and it points to more spread: a small step along it raises the entropy
        poly.phi += 1e-3 * entropy_grad / entropy_grad.norm()
    assert phi_grad(0.0)[1] > entropy

    def usage_bits(lambda_entropy: float) -> float:
        res = train_polytope(x, y, TrainConfig(num_facets=4, feature_dim=64, epochs=15, lambda_entropy=lambda_entropy), show_tqdm=False)
        share = np.bincount(res.polytope.violations(x)[y].argmax(1).numpy(), minlength=4) / int(y.sum())
        bits = float(-(share[share > 0] * np.log2(share[share > 0])).sum())  # recomputed, not read from the history
        assert res.history[-1]["facet_usage_entropy_bits"] == pytest.approx(bits, abs=1e-4)
        return bits

    spread, alone = usage_bits(2.0), usage_bits(0.0)  # three unsafe clusters: without the term they share facets
    assert spread > 1.0 and spread > alone + 0.5


def test_training_is_deterministic_for_a_seed():
    x, y, _ = clusters()
    cfg = TrainConfig(num_facets=3, feature_dim=32, epochs=3)
    a = train_polytope(x, y, cfg, show_tqdm=False).polytope
    b = train_polytope(x, y, cfg, show_tqdm=False).polytope
    torch.testing.assert_close(a.phi, b.phi)


def test_bad_training_input():
    x, y, _ = clusters()
    with pytest.raises(ValueError, match="num_facets"):
        train_polytope(x, y, TrainConfig(num_facets=0))
    with pytest.raises(ValueError, match="both safe and unsafe"):
        train_polytope(x, torch.zeros(len(x), dtype=torch.bool))
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train_polytope(x, y)


def test_metrics_use_unsafe_as_positive():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    s = np.array([2.0, 1.0, -1.0, 0.5, -2, -3, -4, -5])
    m = detection_metrics(y, s)
    assert m["recall"] == pytest.approx(2 / 3) and m["precision"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 5) and m["fnr"] == pytest.approx(1 / 3)
    assert m["auroc"] == pytest.approx(14 / 15)
    # 90 % of 3 unsafe rows needs all 3: the threshold drops to -1.0 and flags the safe 0.5 (1 of 5)
    assert m["fpr_at_tpr90"] == pytest.approx(1 / 5)


def test_fpr_at_tpr_reads_the_threshold_that_catches_enough_unsafe_rows():
    y = np.array([1] * 10 + [0] * 5, dtype=bool)
    s = np.array([*range(10), 0.5, 1.5, 2.5, 8.5, 10.0])
    assert fpr_at_tpr(y, s, 0.9) == pytest.approx(4 / 5)  # 9 of 10 caught at threshold 1: four safe rows at or above it
    assert fpr_at_tpr(y, s, 0.2) == pytest.approx(2 / 5)  # 2 of 10 caught at threshold 8: the safe 8.5 and 10
    assert fpr_at_tpr(y, s, 1.0) == pytest.approx(1.0)  # threshold 0 flags every safe row
    assert fpr_at_tpr(np.array([True, True, False]), np.array([1.0, 1.0, 1.0]), 0.5) == 1.0  # ties count as flagged
    assert fpr_at_tpr(np.array([True, True]), np.array([1.0, 2.0])) is None
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr(y, s, 0.0)


def test_baselines_and_facet_stats():
    x, y, cats = clusters()
    probe, mlp = fit_baselines(x, y)
    assert detection_metrics(y, probe.score(x))["accuracy"] > 0.95
    assert detection_metrics(y, mlp.score(x))["accuracy"] > 0.95
    res = train_polytope(x, y, TrainConfig(num_facets=3, feature_dim=64, epochs=15, lambda_entropy=2.0), show_tqdm=False)
    stats = facet_statistics(res.polytope.violations(x), cats, y.tolist())
    assert stats["categories"] == ["cat0", "cat1", "cat2"]
    assert sorted(stats["hungarian_order"]) == [0, 1, 2]
    assert stats["mutual_information_bits"] > 0.3
    assert all(s["name"] for s in stats["suggestions"])


def test_mutual_information_and_hungarian_on_known_tables():
    diag = np.diag([10.0, 10.0, 10.0])
    assert mutual_information(diag) == pytest.approx(np.log2(3))
    assert mutual_information(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    assert hungarian_order(np.array([[0, 5.0], [5.0, 0]])) == [1, 0]


def test_bench_training_times_the_recipe_on_tiled_rows() -> None:
    from dataclasses import asdict

    from sap_viz.analysis.bench import bench_training

    x = torch.randn(30, 8)
    y = torch.arange(30) % 2 == 0
    out = bench_training(x, y, asdict(TrainConfig(num_facets=2, feature_dim=16, epochs=2, batch_size=16)), rows=70)
    assert out["rows"] == 70 and out["epochs"] == 2 and out["batch_size"] == 16
    assert out["train_s"] > 0 and out["s_per_epoch"] == pytest.approx(out["train_s"] / 2, abs=0.01)

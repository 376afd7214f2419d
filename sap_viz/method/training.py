"""Train a safety polytope on labelled hidden states (README, "The method as implemented").

Entropy term: the reference computes the facet-usage entropy from integer counts, so it passes no
gradient. We offer three modes: ``"soft"`` (default) — the entropy of the mean softmax assignment of
unsafe samples over facets, which is differentiable; ``"reassign"`` — the reference heuristic
(move samples between facets while entropy < 0.5·log2 K); ``"none"``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sap_viz.method.polytope import SafetyPolytope

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class TrainConfig:
    num_facets: int = 14
    # The paper uses F = 16384 for d = 4096. For SmolLM2 (d = 576) F = 4096 keeps the per-token
    # monitoring cost at a quarter of F = 16384's (README, "Performance", has the measured cost).
    feature_dim: int = 4096
    encoder: str = "relu"  # "relu" (concept encoder) or "linear" (identity, F = d)
    margin: float = 1.0
    unsafe_weight: float = 2.0
    lambda_concepts: float = 1.0  # × mean |f| (per sample and feature)
    lambda_phi: float = 1e-4  # × mean_k ‖φ_k‖₁
    # 5 rather than the paper's 1: our entropy term has a gradient, and at 1 it is too weak against
    # the hinge terms to spread unsafe samples over facets (README, "Entropy and encoder variants").
    lambda_entropy: float = 5.0
    entropy_mode: str = "soft"  # soft | reassign | none
    entropy_temperature: float = 1.0
    lr: float = 0.01
    batch_size: int = 32
    epochs: int = 20
    seed: int = 42
    normalize: bool = True

    def validate(self) -> None:
        checks = {
            "num_facets ≥ 1": self.num_facets >= 1,
            "feature_dim ≥ 1": self.feature_dim >= 1,
            "encoder in (relu, linear)": self.encoder in ("relu", "linear"),
            "entropy_mode in (soft, reassign, none)": self.entropy_mode in ("soft", "reassign", "none"),
            "margin ≥ 0": self.margin >= 0,
            "lr > 0": self.lr > 0,
            "batch_size ≥ 1": self.batch_size >= 1,
            "1 ≤ epochs ≤ 1000": 1 <= self.epochs <= 1000,
            "entropy_temperature > 0": self.entropy_temperature > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid training settings: " + "; ".join(bad))


@dataclass
class TrainResult:
    polytope: SafetyPolytope
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def facet_usage_entropy(assign: torch.Tensor, num_facets: int) -> float:
    """Entropy (bits) of how unsafe samples spread over facets."""
    if assign.numel() == 0:
        return 0.0
    counts = torch.bincount(assign, minlength=num_facets).float()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def _reassign(viol: torch.Tensor, assign: torch.Tensor, num_facets: int, rng: random.Random) -> torch.Tensor:
    """Reference heuristic: move random unsafe samples to another facet they violate if entropy rises."""
    assign = assign.clone()
    target = 0.5 * math.log2(num_facets)
    for _ in range(100):
        current = facet_usage_entropy(assign, num_facets)
        if current >= target or len(assign) == 0:
            break
        i = rng.randrange(len(assign))
        order = torch.argsort(viol[i], descending=True)
        candidates = [int(k) for k in order if int(k) != int(assign[i]) and viol[i, k] > 0]
        new = candidates[0] if candidates else int(order[1]) if num_facets > 1 else int(order[0])
        old = int(assign[i])
        assign[i] = new
        if facet_usage_entropy(assign, num_facets) <= current:
            assign[i] = old
    return assign


def polytope_loss(
    poly: SafetyPolytope,
    h: torch.Tensor,
    unsafe: torch.Tensor,
    cfg: TrainConfig,
    assigned: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    f = poly.concepts(h)
    v = poly.violations_from_concepts(f)
    n = max(1, len(h))
    safe_term = torch.relu(cfg.margin + v[~unsafe]).sum() / n
    vu = v[unsafe]
    if len(vu):
        a = assigned if assigned is not None else vu.argmax(dim=1)
        unsafe_term = torch.relu(cfg.margin - vu.gather(1, a[:, None]).squeeze(1)).sum() / n
    else:
        unsafe_term = v.sum() * 0
    concept_term = f.abs().mean()
    phi_term = poly.phi.abs().sum(dim=1).mean()
    if cfg.entropy_mode == "soft" and len(vu):
        # Scale-free soft assignment: violations grow to hundreds during training, which would make a
        # fixed-temperature softmax one-hot (no gradient). Each row is scaled by its own spread.
        spread = vu.detach().std(dim=1, keepdim=True).clamp_min(1e-6) if vu.shape[1] > 1 else 1.0
        q = torch.softmax(vu / (cfg.entropy_temperature * spread), dim=1).mean(dim=0)
        entropy = -(q * torch.log(q + 1e-12)).sum()
    else:
        entropy = v.sum() * 0
    loss = (
        safe_term
        + cfg.unsafe_weight * unsafe_term
        + cfg.lambda_concepts * concept_term
        + cfg.lambda_phi * phi_term
        - cfg.lambda_entropy * entropy
    )
    parts = {"safe": safe_term.item(), "unsafe": unsafe_term.item(), "entropy": entropy.item()}
    return loss, parts


LOSS_NOTE = ("The loss can go below zero: it is the hinge terms (safe rows inside, unsafe rows outside their facet) plus "
             "small L1 penalties, minus λ_H × the entropy of how unsafe rows spread over the facets, a bonus that keeps "
             "every facet in use.")


def explain_loss(record: dict, config: dict) -> str:
    """One epoch's loss (a ``history`` record) written as its parts, so a negative value reads as the entropy bonus it is."""
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__})
    hinge = record.get("safe", 0.0) + cfg.unsafe_weight * record.get("unsafe", 0.0)
    return (f"last epoch's loss {record.get('loss', 0.0):+.3f} ≈ hinge terms {hinge:.3f} (+ small L1 penalties) "
            f"− λ_H {cfg.lambda_entropy:g} × facet-usage entropy {record.get('entropy', 0.0):.3f}")


def train_polytope(
    features: torch.Tensor,
    unsafe: torch.Tensor,
    cfg: TrainConfig = TrainConfig(),
    progress: ProgressFn | None = None,
    show_tqdm: bool = True,
) -> TrainResult:
    """Fit a polytope to ``features`` (N × d) with boolean ``unsafe`` labels (N)."""
    cfg.validate()
    if features.ndim != 2 or len(features) != len(unsafe):
        raise ValueError(f"features must be N × d with N labels; got {tuple(features.shape)} and {len(unsafe)} labels")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or Inf")
    unsafe = unsafe.bool()
    if unsafe.all() or not unsafe.any():
        raise ValueError("training needs both safe and unsafe examples")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    rng = random.Random(cfg.seed)
    h = features.float()
    poly = SafetyPolytope(h.shape[1], cfg.num_facets, cfg.feature_dim, cfg.encoder)
    if cfg.normalize:
        poly.set_normalization(h.mean(0), h.std(0))
    # fused Adam: faster per step on CPU than the default foreach kernel for the F × d encoder.
    opt = torch.optim.Adam(poly.parameters(), lr=cfg.lr, fused=True)
    generator = torch.Generator().manual_seed(cfg.seed)
    unsafe_index = torch.nonzero(unsafe).squeeze(1)
    history: list[dict] = []
    steps_per_epoch = math.ceil(len(h) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc="train polytope", disable=not show_tqdm, unit="step")
    for epoch in range(cfg.epochs):
        assign_all = None
        if cfg.entropy_mode == "reassign":
            with torch.no_grad():
                vu = poly.violations(h[unsafe_index])
            assign_all = torch.full((len(h),), -1, dtype=torch.long)
            assign_all[unsafe_index] = _reassign(vu, vu.argmax(1), cfg.num_facets, rng)
        perm = torch.randperm(len(h), generator=generator)
        totals = {"loss": 0.0, "safe": 0.0, "unsafe": 0.0, "entropy": 0.0}
        for start in range(0, len(h), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            assigned = assign_all[idx][unsafe[idx]] if assign_all is not None else None
            loss, parts = polytope_loss(poly, h[idx], unsafe[idx], cfg, assigned)
            opt.zero_grad()
            loss.backward()
            opt.step()
            totals["loss"] += loss.item() / steps_per_epoch
            for k, val in parts.items():
                totals[k] += val / steps_per_epoch
            bar.update(1)
        with torch.no_grad():
            v = poly.violations(h)
            pred = v.max(1).values >= 0
            usage = facet_usage_entropy(v[unsafe].argmax(1), cfg.num_facets)
        record = {
            "epoch": epoch + 1,
            **{k: round(val, 5) for k, val in totals.items()},
            "train_accuracy": round(float((pred == unsafe).float().mean()), 5),
            "facet_usage_entropy_bits": round(usage, 4),
        }
        history.append(record)
        bar.set_postfix(loss=record["loss"], acc=record["train_accuracy"])
        if progress is not None:
            progress((epoch + 1) / cfg.epochs, f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.3f}")
    bar.close()
    poly.eval()
    poly.requires_grad_(False)
    return TrainResult(polytope=poly, history=history, config=asdict(cfg))

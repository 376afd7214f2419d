"""Train a safety polytope on labelled hidden states (docs/method.md, §4 The training objective).

Entropy term: the reference computes the facet-usage entropy from integer counts, so it passes no
gradient. We offer three modes: ``"soft"`` (default) — the entropy of the mean softmax assignment of
unsafe samples over facets, which is differentiable; ``"reassign"`` — the reference heuristic
(move samples between facets while entropy < 0.5·log2 K); ``"mi"`` — the mutual information
I(sample; facet) = H(mean_i q_i) − mean_i H(q_i), which rewards spread usage *and* sharp rows;
``"none"``.

Objectives (``objective``):
- ``"default"``: our reductions — hinges divided by the batch size n, concept L1 as a mean over
  samples *and* features, the entropy mode above.
- ``"reference"``: the reference code's reductions (docs/method.md §4) — hinges *summed* over the
  batch, λ_f·mean_i‖f_i‖₁, λ_φ·mean_k‖φ_k‖₁, and −λ_H·H with H from integer counts (no gradient);
  what spreads samples is the reassignment heuristic, run on every batch.

Specialising terms (both objectives): ``lambda_exclusive`` × Σ_{k≠a_i} relu(m + v_ik) over unsafe
samples pushes every facet but the sample's assigned one below −m, so one facet fires per sample.

Facet modes (``facet_mode``): ``"learned"`` — a = argmax_k v (or reassigned); ``"categories"`` —
facet k is tied to unsafe category k (``categories`` argument of :func:`train_polytope`): the
unsafe hinge uses the sample's own category facet, the other *category* facets are pushed below
−m for it (weight ``lambda_exclusive``), and the last ``free_facets`` facets catch unsafe samples
without a known category (argmax over the free facets). Safe samples still need every facet to hold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sap_viz.errors import UserError
from sap_viz.method.configs import TrainConfig
from sap_viz.method.polytope import SafetyPolytope

ProgressFn = Callable[[float, str], None]


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


def _soft_rows(vu: torch.Tensor, temperature: float, per_row: bool) -> torch.Tensor:
    """Soft facet assignment of unsafe rows, scale-free (violations grow to thousands in training).

    ``per_row``: each row divided by its own spread (the shipped soft entropy; a row can then never
    be sharper than a fixed p_max). Otherwise one detached scale for the whole batch, so rows can
    become as sharp as the violations allow.
    """
    if vu.shape[1] == 1:
        return torch.ones_like(vu)
    spread = vu.detach().std(dim=1, keepdim=True) if per_row else vu.detach().std()
    return torch.softmax(vu / (temperature * spread.clamp_min(1e-6)), dim=1)


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p + 1e-12)).sum(dim=dim)


def assign_unsafe(
    vu: torch.Tensor, cfg: TrainConfig, categories: torch.Tensor | None = None, assigned: torch.Tensor | None = None
) -> torch.Tensor:
    """The facet each unsafe row is trained to violate (its hinge facet)."""
    if assigned is not None:
        return assigned
    if cfg.facet_mode == "categories" and categories is not None:
        k = vu.shape[1]
        n_cat = k - cfg.free_facets
        if cfg.free_facets:
            free = vu[:, n_cat:].detach().argmax(dim=1) + n_cat
        else:
            free = vu[:, :n_cat].detach().argmax(dim=1)
        return torch.where(categories >= 0, categories, free)
    return vu.detach().argmax(dim=1)


def polytope_loss(
    poly: SafetyPolytope,
    h: torch.Tensor,
    unsafe: torch.Tensor,
    cfg: TrainConfig,
    assigned: torch.Tensor | None = None,
    categories: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Loss of one batch. ``assigned``/``categories`` are per *unsafe* row of the batch (−1 = none)."""
    f = poly.concepts(h)
    v = poly.violations_from_concepts(f)
    reference = cfg.objective == "reference"
    n = 1 if reference else max(1, len(h))  # the reference sums hinges over the batch
    safe_term = torch.relu(cfg.margin + v[~unsafe]).sum() / n
    vu = v[unsafe]
    exclusive = v.sum() * 0
    if len(vu):
        a = assign_unsafe(vu, cfg, categories, assigned)
        unsafe_term = torch.relu(cfg.margin - vu.gather(1, a[:, None]).squeeze(1)).sum() / n
        if cfg.facet_mode == "categories" and cfg.free_facets and cfg.lambda_backstop > 0:
            best = torch.maximum(vu.gather(1, a[:, None]).squeeze(1), vu[:, vu.shape[1] - cfg.free_facets:].max(dim=1).values)
            unsafe_term = unsafe_term + cfg.lambda_backstop * torch.relu(cfg.margin - best).sum() / n
        if cfg.facet_mode == "categories" and cfg.free_facets and cfg.lambda_backstop_all > 0:
            free_max = vu[:, vu.shape[1] - cfg.free_facets:].max(dim=1).values
            unsafe_term = unsafe_term + cfg.lambda_backstop_all * torch.relu(cfg.margin - free_max).sum() / n
        if cfg.facet_mode == "categories" and cfg.free_facets and cfg.lambda_backstop_quiet > 0 and categories is not None:
            explained = (categories >= 0) & (vu.gather(1, a[:, None]).squeeze(1).detach() >= cfg.margin)
            free = vu[:, vu.shape[1] - cfg.free_facets:]
            quiet = torch.relu(cfg.margin + free)[explained].sum() / n
            unsafe_term = unsafe_term + cfg.lambda_backstop_quiet * quiet
        if cfg.lambda_exclusive > 0:
            others = torch.ones_like(vu, dtype=torch.bool)
            others[torch.arange(len(vu)), a] = False
            if cfg.facet_mode == "categories" and cfg.free_facets:
                others[:, vu.shape[1] - cfg.free_facets:] = False  # free facets are not pushed down
                if categories is not None:  # an uncategorised sample: its free facet owns it, the category facets stay free
                    others[categories < 0] = False
            exclusive = (torch.relu(cfg.margin + vu) * others).sum() / n
    else:
        unsafe_term = v.sum() * 0
    if reference:
        concept_term = f.abs().sum(dim=1).mean()  # λ_f·mean_i ‖f_i‖₁
    else:
        concept_term = f.abs().mean()
    phi_term = poly.phi.abs().sum(dim=1).mean()
    if reference and len(vu):
        # Count-based usage entropy: a constant in the loss, as in the reference (no gradient).
        entropy = v.sum() * 0 + facet_usage_entropy(a, vu.shape[1])  # bits, as the reference
    elif cfg.entropy_mode == "soft" and len(vu):
        q = _soft_rows(vu, cfg.entropy_temperature, per_row=True).mean(dim=0)
        entropy = _entropy(q)
    elif cfg.entropy_mode == "mi" and len(vu):
        q = _soft_rows(vu, cfg.entropy_temperature, per_row=False)
        entropy = _entropy(q.mean(dim=0)) - _entropy(q).mean()
    else:
        entropy = v.sum() * 0
    loss = (
        safe_term
        + cfg.unsafe_weight * unsafe_term
        + cfg.lambda_concepts * concept_term
        + cfg.lambda_phi * phi_term
        + cfg.lambda_exclusive * exclusive
        - cfg.lambda_entropy * entropy
    )
    parts = {"safe": safe_term.item(), "unsafe": unsafe_term.item(), "entropy": entropy.item(), "exclusive": exclusive.item()}
    return loss, parts


LOSS_NOTE = ("The loss can go below zero: it is the hinge terms (safe rows inside, unsafe rows outside their facet) plus "
             "small L1 penalties, minus λ_H × the entropy of how unsafe rows spread over the facets, a bonus that keeps "
             "every facet in use.")


def explain_loss(record: dict, config: dict) -> str:
    """One epoch's loss (a ``history`` record) written as its parts, so a negative value reads as the entropy bonus it is."""
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__})
    hinge = (record.get("safe", 0.0) + cfg.unsafe_weight * record.get("unsafe", 0.0)
             + cfg.lambda_exclusive * record.get("exclusive", 0.0))
    return (f"last epoch's loss {record.get('loss', 0.0):+.3f} ≈ hinge terms {hinge:.3f} (+ small L1 penalties) "
            f"− λ_H {cfg.lambda_entropy:g} × facet-usage entropy {record.get('entropy', 0.0):.3f}")


def _checked_inputs(
    features: torch.Tensor, unsafe: torch.Tensor, cfg: TrainConfig, categories: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Refuse inputs training cannot use, with a message that says why; returns boolean labels and long categories."""
    cfg.validate()
    if cfg.facet_mode == "categories":
        if categories is None or len(categories) != len(features):
            raise UserError("facet_mode 'categories' needs a category facet index per row")
        categories = categories.long()
        n_cat = cfg.num_facets - cfg.free_facets
        if categories.max() >= n_cat or categories.min() < -1:
            raise UserError(f"category facet indices must be −1 … {n_cat - 1}")
    if features.ndim != 2 or len(features) != len(unsafe):
        raise UserError(f"features must be N × d with N labels; got {tuple(features.shape)} and {len(unsafe)} labels")
    if not torch.isfinite(features).all():
        raise UserError("features contain NaN or Inf")
    unsafe = unsafe.bool()
    if unsafe.all() or not unsafe.any():
        raise UserError("training needs both safe and unsafe examples")
    return unsafe, categories


def train_polytope(
    features: torch.Tensor,
    unsafe: torch.Tensor,
    cfg: TrainConfig = TrainConfig(),
    progress: ProgressFn | None = None,
    show_tqdm: bool = True,
    categories: torch.Tensor | None = None,
) -> TrainResult:
    """Fit a polytope to ``features`` (N × d) with boolean ``unsafe`` labels (N).

    ``categories`` (categories mode): per row, the index of its category facet (0 … K − free − 1)
    or −1 for an unsafe row without a known category (and for safe rows).
    """
    unsafe, categories = _checked_inputs(features, unsafe, cfg, categories)
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
        if cfg.entropy_mode == "reassign" and cfg.objective == "default" and cfg.facet_mode == "learned":
            with torch.no_grad():
                vu = poly.violations(h[unsafe_index])
            assign_all = torch.full((len(h),), -1, dtype=torch.long)
            assign_all[unsafe_index] = _reassign(vu, vu.argmax(1), cfg.num_facets, rng)
        perm = torch.randperm(len(h), generator=generator)
        totals = {"loss": 0.0, "safe": 0.0, "unsafe": 0.0, "entropy": 0.0, "exclusive": 0.0}
        for start in range(0, len(h), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            assigned = assign_all[idx][unsafe[idx]] if assign_all is not None else None
            cats = categories[idx][unsafe[idx]] if categories is not None else None
            if cfg.objective == "reference" and cfg.facet_mode == "learned" and unsafe[idx].any():
                with torch.no_grad():  # the reference reassigns within every batch
                    vb = poly.violations(h[idx][unsafe[idx]])
                assigned = _reassign(vb, vb.argmax(1), cfg.num_facets, rng)
            loss, parts = polytope_loss(poly, h[idx], unsafe[idx], cfg, assigned, cats)
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

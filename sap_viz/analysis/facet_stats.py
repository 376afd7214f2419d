"""What each facet responds to: category × facet statistics, mutual information, name suggestions.

Follows the paper's facet-interpretation recipe: per-row min-max of the raw violations, a sharpened softmax (T = 1000) as
a soft facet assignment, mutual information between true category and facet from the joint
histogram, and a Hungarian ordering of facets against categories for the heatmap.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def soft_assignment(violations: torch.Tensor, temperature: float = 1000.0) -> torch.Tensor:
    v = violations.float()
    lo, hi = v.min(dim=1, keepdim=True).values, v.max(dim=1, keepdim=True).values
    scaled = (v - lo) / (hi - lo).clamp_min(1e-12)
    return torch.softmax(scaled * temperature / 10.0, dim=1)


def category_facet_table(violations: torch.Tensor, categories: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(category names, share of each category's samples violating each facet, soft joint counts)."""
    cats = sorted(set(categories))
    fires = (violations >= 0).float().numpy()
    soft = soft_assignment(violations).numpy()
    share = np.zeros((len(cats), violations.shape[1]))
    joint = np.zeros_like(share)
    for i, cat in enumerate(cats):
        mask = np.array([c == cat for c in categories])
        share[i] = fires[mask].mean(axis=0)
        joint[i] = soft[mask].sum(axis=0)
    return cats, share, joint


def mutual_information(joint: np.ndarray) -> float:
    """MI (bits) between category and facet from a (soft) joint count table."""
    p = joint / max(joint.sum(), 1e-12)
    pc, pf = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (pc @ pf)[nz])).sum())


def hungarian_order(joint: np.ndarray) -> list[int]:
    """Facet order that puts each category's best-matching facet on the diagonal, the rest after."""
    rows, cols = linear_sum_assignment(-joint)
    order = [int(c) for _, c in sorted(zip(rows, cols, strict=True))]
    return order + [k for k in range(joint.shape[1]) if k not in order]


def cosine_similarity(phi: torch.Tensor) -> np.ndarray:
    unit = phi / phi.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (unit @ unit.T).numpy()


def _pretty(category: str) -> str:
    return category.replace("_", " ").replace(" weapons", " & weapons").replace("goods crime", "goods & crime").capitalize()


def suggest_names(violations: torch.Tensor, categories: list[str], unsafe: list[bool]) -> list[dict]:
    """A name suggestion per facet from the unsafe samples it is the top facet for.

    The name is the category most *over-represented* in that group relative to all unsafe samples
    (lift), so facets are not all named after the largest category; confidence is that category's
    share of the group. Repeated names get a number.
    """
    mask = np.array(unsafe, dtype=bool)
    k_total = violations.shape[1]
    cats = [c for c, m in zip(categories, mask, strict=True) if m]
    if not cats:
        return [{"name": f"facet {k}", "evidence": "no unsafe samples", "confidence": 0.0} for k in range(k_total)]
    top = violations[torch.from_numpy(mask)].argmax(dim=1).numpy()
    names = sorted(set(cats))
    cat_idx = np.array([names.index(c) for c in cats])
    base = np.bincount(cat_idx, minlength=len(names)) / len(cats)
    out, seen = [], {}
    for k in range(k_total):
        group = cat_idx[top == k]
        if len(group) == 0:
            out.append({"name": f"facet {k} (unused)", "evidence": "top facet of no unsafe training sample", "confidence": 0.0})
            continue
        counts = np.bincount(group, minlength=len(names))
        share = counts / len(group)
        lift = np.where(counts >= max(2, 0.1 * len(group)), share / base, 0.0)
        best = int(lift.argmax()) if lift.max() > 0 else int(counts.argmax())
        name = _pretty(names[best])
        if share[best] < 0.15:  # no category stands out: say so instead of over-claiming
            name = "Mixed: " + " / ".join(_pretty(names[i]) for i in np.argsort(-counts)[:2])
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} #{seen[name]}"
        ranked = np.argsort(-counts)[:3]
        evidence = ", ".join(f"{names[i]} {counts[i]}" for i in ranked if counts[i])
        out.append({"name": name, "evidence": f"top facet of {len(group)} unsafe training samples ({evidence}); "
                    f"{names[best]} is {lift[best]:.1f}× its base rate", "confidence": round(float(share[best]), 3)})
    return out


def facet_statistics(violations: torch.Tensor, categories: list[str], unsafe: list[bool]) -> dict:
    """Everything the facet views and label suggestions need, JSON-serialisable."""
    mask = torch.tensor(unsafe, dtype=torch.bool)
    cats = [c for c, u in zip(categories, unsafe, strict=True) if u]
    names, share, joint = (
        category_facet_table(violations[mask], cats)
        if mask.any()
        else ([], np.zeros((0, violations.shape[1])), np.zeros((0, violations.shape[1])))
    )
    order = hungarian_order(joint) if len(names) else list(range(violations.shape[1]))
    return {
        "categories": names,
        "fire_share": share.round(4).tolist(),
        "soft_joint": joint.round(3).tolist(),
        "mutual_information_bits": round(mutual_information(joint), 4) if len(names) else 0.0,
        "hungarian_order": order,
        "suggestions": suggest_names(violations, categories, unsafe),
    }

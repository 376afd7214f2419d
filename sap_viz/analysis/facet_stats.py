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


def pretty_category(category: str) -> str:
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
        name = pretty_category(names[best])
        if share[best] < 0.15:  # no category stands out: say so instead of over-claiming
            name = "Mixed: " + " / ".join(pretty_category(names[i]) for i in np.argsort(-counts)[:2])
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


# ── Facet statistics an auditor can trust (issue 13) ──────────────────────────────────────────────
#: Thresholds of a *selective* facet: fires on ≥ 70 % of its category's unsafe prompts and on ≤ 30 %
#: of the other categories' unsafe prompts (pooled).
SELECTIVE_OWN, SELECTIVE_OTHERS = 0.70, 0.30
#: A name is claimed only when the Wilson lower bound of its purity reaches this.
NAME_MIN_CONFIDENCE = 0.5


def wilson_lower_bound(successes: int, n: int, z: float = 1.96) -> float:
    """Lower end of the 95 % Wilson score interval of a proportion: small samples cannot look sure."""
    if n <= 0:
        return 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - margin) / denom))


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def top_facet_mutual_information(top: np.ndarray, cat_idx: np.ndarray, n_cats: int, n_facets: int) -> dict:
    """MI(category; top facet) in bits: the plug-in estimate and its Miller–Madow bias correction.

    The plug-in estimate of a C × K table from N samples is biased upwards by about
    (C−1)(K−1) / (2 N ln 2) bits (≈ 0.5 bits for 11 × 14 on 200 prompts), so both are reported.
    """
    joint = np.zeros((n_cats, n_facets))
    np.add.at(joint, (cat_idx, top), 1)
    n = joint.sum()
    if n == 0:
        return {"bits": 0.0, "bits_miller_madow": 0.0, "category_entropy_bits": 0.0, "n": 0}
    plug = mutual_information(joint)
    hc, hf, hj = _entropy_bits(joint.sum(1)), _entropy_bits(joint.sum(0)), _entropy_bits(joint.ravel())
    mc, mf, mj = (joint.sum(1) > 0).sum(), (joint.sum(0) > 0).sum(), (joint > 0).sum()
    corr = (mc - 1 + mf - 1 - (mj - 1)) / (2 * n * np.log(2))  # H_MM = H + (m − 1)/(2N) nats per entropy
    return {"bits": round(plug, 4), "bits_miller_madow": round(max(0.0, plug + float(corr)), 4),
            "category_entropy_bits": round(hc, 4), "n": int(n), "facet_entropy_bits": round(hf, 4), "joint_entropy_bits": round(hj, 4)}


def paper_histogram_mi(violations: torch.Tensor, categories: list[str], unsafe: list[bool],
                       temperature: float = 0.1, bins: int = 20) -> dict:
    """The paper's category × facet MI (docs/method.md §8), named as such.

    Per sample, violations are min-max scaled across facets and sharpened with softmax(x / T); for
    each (category c, facet k) the MI between the indicator "unsafe sample of category c" and facet
    k's sharpened value is read off a 20 × 20 ``histogram2d``. Reported in bits. Each cell is a
    pairwise statistic: it says how informative facet k's value is about category c, not that the
    facets partition the categories.
    """
    mask = np.array(unsafe, dtype=bool)
    names = sorted({c for c, u in zip(categories, unsafe, strict=True) if u})
    v = violations.float().numpy()
    lo, hi = v.min(axis=1, keepdims=True), v.max(axis=1, keepdims=True)
    scaled = (v - lo) / (hi - lo + 1e-8)
    e = np.exp((scaled - scaled.max(axis=1, keepdims=True)) / temperature)
    sharp = e / e.sum(axis=1, keepdims=True)
    mat = np.zeros((len(names), v.shape[1]))
    cats = np.array(categories)
    for i, c in enumerate(names):
        x = ((cats == c) & mask).astype(float)
        for k in range(v.shape[1]):
            c_xy = np.histogram2d(x, sharp[:, k], bins)[0]
            mat[i, k] = mutual_information(c_xy) if c_xy.sum() else 0.0
    order = hungarian_order(mat) if len(names) else list(range(v.shape[1]))
    matched = [float(mat[i, order[i]]) for i in range(min(len(names), len(order)))]
    return {"name": f"paper per-pair 20-bin histogram MI (min-max scaled, softmax T = {temperature:g})",
            "categories": names, "bits": mat.round(4).tolist(), "hungarian_order": order,
            "matched_mean_bits": round(float(np.mean(matched)), 4) if matched else 0.0, "n": int(len(v))}


def facet_audit(violations: torch.Tensor, categories: list[str], unsafe: list[bool],
                harm_categories: list[str] | None = None, facet_categories: list[str | None] | None = None) -> dict:
    """Firing matrix, purity, selectivity, dead facets and MI, each with the counts behind it.

    ``violations`` should be calibrated (a facet *fires* when v ≥ 0). ``harm_categories``: the
    categories the selective-facet count is over (default: every unsafe category but other_harm).
    ``facet_categories``: the category each facet is tied to (category facets), else None.
    """
    mask = np.array(unsafe, dtype=bool)
    v = violations.float()[torch.from_numpy(mask)].numpy()
    cats = [c for c, u in zip(categories, unsafe, strict=True) if u]
    k_total = violations.shape[1]
    names = sorted(set(cats))
    if not names:
        return {"n_unsafe": 0}
    cat_idx = np.array([names.index(c) for c in cats])
    fires = v >= 0
    n_per_cat = np.bincount(cat_idx, minlength=len(names))
    fire_counts = np.stack([fires[cat_idx == i].sum(axis=0) for i in range(len(names))])  # C × K
    share = fire_counts / n_per_cat[:, None].clip(min=1)
    top = v.argmax(axis=1)
    top_counts = np.bincount(top, minlength=k_total)
    harm = [c for c in (harm_categories or [c for c in names if c != "other_harm"]) if c in names]

    def others_share(i: int, k: int) -> tuple[int, int]:
        rest = cat_idx != i
        return int(fires[rest, k].sum()), int(rest.sum())

    facets = []
    for k in range(k_total):
        group = cat_idx[top == k]
        counts = np.bincount(group, minlength=len(names))
        best = int(counts.argmax()) if len(group) else None
        tied = facet_categories[k] if facet_categories and k < len(facet_categories) else None
        ref = names.index(tied) if tied in names else int(share[:, k].argmax())
        o_hit, o_n = others_share(ref, k)
        facets.append({
            "facet": k,
            "tied_category": tied,
            "n_top": int(len(group)),
            "purity": round(float(counts[best] / len(group)), 4) if best is not None else None,
            "purity_category": names[best] if best is not None else None,
            "purity_wilson_lb": round(wilson_lower_bound(int(counts[best]), len(group)), 4) if best is not None else 0.0,
            "top_counts": {names[i]: int(counts[i]) for i in np.argsort(-counts) if counts[i]},
            "selectivity_category": names[ref],
            "own_fire": round(float(share[ref, k]), 4), "own_fire_n": f"{int(fire_counts[ref, k])}/{int(n_per_cat[ref])}",
            "others_fire": round(o_hit / max(1, o_n), 4), "others_fire_n": f"{o_hit}/{o_n}",
            "selective": bool(share[ref, k] >= SELECTIVE_OWN and o_hit / max(1, o_n) <= SELECTIVE_OTHERS),
            "fires_on": int(fires[:, k].sum()),
        })
    selective = {}
    for c in names:
        i = names.index(c)
        best_k, best, strict_k = None, None, None
        for k in range(k_total):
            o_hit, o_n = others_share(i, k)
            own, oth = share[i, k], o_hit / max(1, o_n)
            worst_other = max((share[j, k] for j in range(len(names)) if j != i), default=0.0)
            if own >= SELECTIVE_OWN and oth <= SELECTIVE_OTHERS and (best is None or own - oth > best[0] - best[1]):
                best_k, best = k, (own, oth)
            if own >= SELECTIVE_OWN and worst_other <= SELECTIVE_OTHERS and strict_k is None:
                strict_k = k
        selective[c] = {"facet": best_k, "own_fire": round(best[0], 4) if best else None,
                        "others_fire": round(best[1], 4) if best else None, "n": int(n_per_cat[i]),
                        "facet_strict": strict_k}
    mi = top_facet_mutual_information(top, cat_idx, len(names), k_total)
    return {
        "n_unsafe": int(mask.sum()),
        "categories": names,
        "n_per_category": {c: int(n) for c, n in zip(names, n_per_cat, strict=True)},
        "fire_share": share.round(4).tolist(),
        "fire_counts": fire_counts.astype(int).tolist(),
        "mean_facets_firing": round(float(fires.sum(axis=1).mean()), 4),
        "share_unsafe_no_facet_firing": round(float((fires.sum(axis=1) == 0).mean()), 4),
        "top_facet_counts": top_counts.astype(int).tolist(),
        "dead_facets": [k for k in range(k_total) if top_counts[k] == 0],
        "never_firing_facets": [k for k in range(k_total) if not fires[:, k].any()],
        "facets": facets,
        "selective_by_category": selective,
        "harm_categories": harm,
        # selective: others' prompts pooled (the issue's definition); strict: every other category ≤ 30 %
        "n_selective_harm_categories": sum(selective[c]["facet"] is not None for c in harm),
        "n_selective_harm_categories_strict": sum(selective[c]["facet_strict"] is not None for c in harm),
        "mi_category_top_facet": mi,
    }


def honest_names(audit: dict, min_confidence: float = NAME_MIN_CONFIDENCE) -> list[dict]:
    """A name per facet that claims no more than the evidence: confidence = Wilson lower bound.

    A category name needs its purity's Wilson lower bound ≥ ``min_confidence``; otherwise the facet
    is "mixed: A / B" (two categories make up ≥ 60 % of its top samples) or "unspecific". Only the
    facet with the strongest evidence keeps a name; a second claimant is called mixed/unspecific.
    """
    facets = audit.get("facets", [])
    out: list[dict] = [{} for _ in facets]
    order = sorted(range(len(facets)), key=lambda k: -(facets[k]["purity_wilson_lb"] or 0.0))
    taken: set[str] = set()
    for k in order:
        f = facets[k]
        tops = list(f["top_counts"].items())
        n = f["n_top"]
        conf = float(f["purity_wilson_lb"] or 0.0)
        evidence = (f"top facet of {n} unsafe prompts ({', '.join(f'{c} {m}' for c, m in tops[:3])}); "
                    f"fires on {f['own_fire_n']} of {f['selectivity_category']} and {f['others_fire_n']} of the others")
        if n == 0:
            name = f"unused (facet {k})"
        elif conf >= min_confidence and pretty_category(f["purity_category"]) not in taken:
            name = pretty_category(f["purity_category"])
        elif len(tops) >= 2 and (tops[0][1] + tops[1][1]) / n >= 0.6 and wilson_lower_bound(tops[0][1] + tops[1][1], n) >= min_confidence:
            name = "mixed: " + " / ".join(pretty_category(c) for c, _ in tops[:2])
        else:
            name = "unspecific"
        if name in taken:
            name = f"{name} (facet {k})"
        taken.add(name)
        out[k] = {"name": name, "confidence": round(conf, 3), "evidence": evidence}
    return out


def firing_order(audit: dict, facet_categories: list[str | None] | None = None) -> list[int]:
    """Facet order for the firing heatmap: facet ``order[i]`` on category ``i``'s row, the rest after.

    A facet tied to a category (policy facets) sits on its own category's row, so the diagonal shows
    whether it earns its name; the other categories get a Hungarian match on selectivity (own firing
    share minus the other categories' pooled share), so a facet that fires on everything is matched last.
    """
    names = audit.get("categories") or []
    counts = np.array(audit.get("fire_counts") or [], dtype=float)
    if not names or counts.size == 0:
        return list(range(len(audit.get("facets") or [])))
    n_cat = np.array([audit["n_per_category"][c] for c in names], dtype=float)
    own = counts / n_cat[:, None].clip(min=1)
    others = (counts.sum(axis=0)[None, :] - counts) / (n_cat.sum() - n_cat)[:, None].clip(min=1)
    fixed: dict[int, int] = {}
    for k, cat in enumerate(facet_categories or []):
        if cat in names and names.index(cat) not in fixed:
            fixed[names.index(cat)] = k
    rows = [i for i in range(len(names)) if i not in fixed]
    cols = [k for k in range(counts.shape[1]) if k not in fixed.values()]
    if rows and cols:
        r, c = linear_sum_assignment(-(own - others)[np.ix_(rows, cols)])
        fixed.update({rows[i]: cols[j] for i, j in zip(r, c, strict=True)})
    order = [fixed[i] for i in range(len(names)) if i in fixed]
    return order + [k for k in range(counts.shape[1]) if k not in order]

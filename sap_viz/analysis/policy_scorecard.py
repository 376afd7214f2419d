"""What each facet measurably does on the check set, and the policy-facet measures of a whole polytope.

Why: a facet's name is a claim ("this facet flags weapons requests"). The scorecard tests the claim on
prompts the polytope never saw (:mod:`sap_viz.data.check_set`): which categories the facet fires on,
its precision and recall for the named category, how often it fires on safe look-alikes, and one
number for the name — the balanced accuracy of "the facet fires" as a detector of "the prompt is an
unsafe request of the named category". A renamed facet is rescored from the stored firing pattern,
so a misleading name shows at once, without the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sap_viz.analysis.facet_stats import facet_audit
from sap_viz.data.taxonomy import POLICY_CATEGORIES

__all__ = ["facet_scorecards", "name_scores", "policy_report", "rescore"]


def _share(mask: np.ndarray, of: np.ndarray) -> float | None:
    n = int(of.sum())
    return round(float((mask & of).sum() / n), 4) if n else None


def name_scores(fires: np.ndarray, labels: np.ndarray, categories: np.ndarray, category: str | None) -> dict:
    """Precision, recall and the name's balanced accuracy of a facet whose name claims ``category``.

    Positives: unsafe prompts of ``category``; negatives: every other prompt of the set (other
    categories' unsafe prompts and all safe look-alikes). None where the name claims no category.
    """
    if category not in POLICY_CATEGORIES:
        return {"category": None, "precision": None, "recall": None, "name_score": None, "specificity": None}
    pos = (labels == "unsafe") & (categories == category)
    neg = ~pos
    tp = int((fires & pos).sum())
    recall = tp / max(1, int(pos.sum()))
    specificity = 1.0 - float((fires & neg).sum()) / max(1, int(neg.sum()))
    return {
        "category": category,
        "precision": round(tp / int(fires.sum()), 4) if fires.any() else None,
        "recall": round(recall, 4),
        "specificity": round(specificity, 4),
        "name_score": round((recall + specificity) / 2, 4),
    }


def _examples(rows: list[int], texts: list[str], cats: np.ndarray, violation: np.ndarray) -> list[dict]:
    return [{"text": texts[i], "category": cats[i], "violation": round(float(violation[i]), 3)} for i in rows]


def facet_scorecards(
    violations: torch.Tensor, check: pd.DataFrame, facet_categories: list[str | None], fingerprint: str, n_examples: int = 3
) -> list[dict]:
    """One scorecard per facet from its (calibrated) violations on the check set ``check`` (file order)."""
    v = violations.float().numpy()
    labels, cats, texts = check["label"].to_numpy(), check["category"].to_numpy(), check["text"].tolist()
    unsafe, safe = labels == "unsafe", labels == "safe"
    cards = []
    for k in range(v.shape[1]):
        fires = v[:, k] >= 0
        claimed = facet_categories[k] if k < len(facet_categories) else None
        fires_on = {c: _share(fires, unsafe & (cats == c)) for c in POLICY_CATEGORIES if (unsafe & (cats == c)).any()}
        order = np.argsort(-v[:, k], kind="stable")
        # least typical: the named category's prompts it holds for (misses); without a category, its weakest firing
        # prompts; never one already shown as most typical (a facet firing on few prompts listed them twice)
        typical_rows = [i for i in order if unsafe[i]][:n_examples]
        pool = [i for i in order[::-1] if unsafe[i] and i not in typical_rows and (cats[i] == claimed if claimed else fires[i])]
        typical = _examples(typical_rows, texts, cats, v[:, k])
        least = _examples(pool[:n_examples], texts, cats, v[:, k])
        cards.append({
            **name_scores(fires, labels, cats, claimed),
            "fires_on": fires_on,
            "fires_on_unsafe": _share(fires, unsafe),
            "lookalike_false_alarms": _share(fires, safe),
            "own_lookalike_false_alarms": _share(fires, safe & (cats == claimed)) if claimed else None,
            "most_typical": typical,
            "least_typical": least,
            "fires": [int(i) for i in np.flatnonzero(fires)],
            "check_set": {"fingerprint": fingerprint, "n": int(len(check)), "n_unsafe": int(unsafe.sum()), "n_safe": int(safe.sum())},
        })
    return cards


def rescore(card: dict, category: str | None, check: pd.DataFrame) -> dict:
    """``card`` scored for a name that claims ``category`` instead (from its stored firing pattern)."""
    fires = np.zeros(len(check), dtype=bool)
    fires[[i for i in card.get("fires", []) if 0 <= i < len(check)]] = True
    labels, cats = check["label"].to_numpy(), check["category"].to_numpy()
    out = dict(card)
    out.update(name_scores(fires, labels, cats, category))
    out["own_lookalike_false_alarms"] = _share(fires, (labels == "safe") & (cats == category)) if category else None
    if category != card.get("category"):
        out["least_typical"] = least_typical_from_firing(card, category, check, fires)
    return out


def least_typical_from_firing(card: dict, category: str | None, check: pd.DataFrame, fires: np.ndarray,
                              n_examples: int = 3) -> list[dict]:
    """The least typical prompts for a name that claims ``category``, from the stored firing pattern alone (a card keeps
    which check-set prompts fire, not their violations): the category's unsafe prompts the facet misses, then those it
    fires on; without a category, prompts it fires on beyond the most typical ones. Each says whether the facet fires,
    in place of a violation, so the list follows a relabel instead of naming the old category's prompts."""
    labels, cats, texts = check["label"].to_numpy(), check["category"].to_numpy(), check["text"].tolist()
    shown = {" ".join(str(p.get("text", "")).split()) for p in card.get("most_typical") or []}
    unsafe = [i for i in range(len(check)) if labels[i] == "unsafe" and " ".join(texts[i].split()) not in shown]
    if category:
        own = [i for i in unsafe if cats[i] == category]
        pool = [i for i in own if not fires[i]] + [i for i in own if fires[i]]
    else:
        pool = [i for i in unsafe if fires[i]][::-1]
    return [{"text": texts[i], "category": cats[i], "fires": bool(fires[i])} for i in pool[:n_examples]]


def policy_report(violations: torch.Tensor, labels: list[str], categories: list[str], facet_categories: list[str | None]) -> dict:
    """The policy-facet measures of a polytope on a labelled set (calibrated violations: a facet fires at v ≥ 0).

    Selectivity, firing, MI and dead facets are those of :func:`facet_audit` on the unsafe prompts of
    the ten policy categories; ``name_accuracy`` is the share of them whose top facet's name claims
    their category; ``caught`` counts every unsafe prompt (also uncategorised ones); ``safe_flagged``
    the safe prompts any facet fires on.
    """
    v = violations.float()
    lab = np.array(labels)
    cats = np.array(categories)
    policy = (lab == "unsafe") & np.isin(cats, POLICY_CATEGORIES)
    audit = facet_audit(v[torch.from_numpy(policy)], cats[policy].tolist(), [True] * int(policy.sum()),
                        harm_categories=list(POLICY_CATEGORIES), facet_categories=facet_categories)
    flagged = (v.max(dim=1).values >= 0).numpy()
    top = v.argmax(dim=1).numpy()
    named = np.array([facet_categories[k] if k < len(facet_categories) else None for k in top], dtype=object)
    unsafe, safe = lab == "unsafe", lab == "safe"
    mi = audit.get("mi_category_top_facet", {})
    return {
        "n_unsafe": int(unsafe.sum()),
        "n_safe": int(safe.sum()),
        "n_policy_unsafe": int(policy.sum()),
        "selective_categories": audit.get("n_selective_harm_categories", 0),
        "selective_by_category": {c: s["facet"] for c, s in audit.get("selective_by_category", {}).items()},
        "facets_firing": audit.get("mean_facets_firing"),
        "mi_bits": mi.get("bits"),
        "mi_bits_miller_madow": mi.get("bits_miller_madow"),
        "mi_ceiling_bits": mi.get("category_entropy_bits"),
        "name_accuracy": round(float((named[policy] == cats[policy]).mean()), 4) if policy.any() else None,
        "never_top": audit.get("dead_facets", []),
        "caught": round(float(flagged[unsafe].mean()), 4) if unsafe.any() else None,
        "safe_flagged": round(float(flagged[safe].mean()), 4) if safe.any() else None,
        "audit": audit,
    }

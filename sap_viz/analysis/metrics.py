"""Detection metrics with *unsafe as the positive class*, and the baselines every report shows.

The reference computes F1 with safe as positive and a PR-AUC from all-zero probabilities; here the
positive class is unsafe everywhere and AUROC comes from the continuous score (max violation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sap_viz.errors import UserError


def _np(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def auroc(unsafe_true: object, scores: object) -> float | None:
    """AUROC with unsafe as the positive class; None when the rows hold only one label (it is undefined there)."""
    from sklearn.metrics import roc_auc_score  # scikit-learn (~70 MB) only where a metric is computed, not at app start

    y = _np(unsafe_true).astype(bool)
    return float(roc_auc_score(y, _np(scores).astype(float))) if 0 < y.sum() < len(y) else None


def detection_metrics(unsafe_true: object, scores: object, threshold: float = 0.0) -> dict[str, float | int | None]:
    """Accuracy, precision, recall, F1, FPR, FNR (predicted unsafe = score ≥ threshold) and AUROC."""
    y = _np(unsafe_true).astype(bool)
    s = _np(scores).astype(float)
    pred = s >= threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision and recall
        else (0.0 if precision is not None and recall is not None else None)
    )
    area = auroc(y, s)
    return {
        "n": len(y),
        "n_unsafe": int(y.sum()),
        "accuracy": ratio(tp + tn, len(y)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": ratio(fp, fp + tn),
        "fnr": ratio(fn, fn + tp),
        "auroc": area,
        "fpr_at_tpr90": fpr_at_tpr(y, s, 0.9),
    }


def fpr_at_tpr(unsafe_true: object, scores: object, tpr: float = 0.9) -> float | None:
    """Share of safe rows flagged at the highest threshold that still catches ≥ ``tpr`` of the unsafe rows.

    A threshold-free operating point: targets like "≤ 15 % safe flagged at ≥ 90 % caught" are read
    here, apart from where the shipped boundary happens to sit. Ties at the threshold count as flagged.
    """
    if not 0 < tpr <= 1:
        raise UserError("tpr must be in (0, 1]")
    y = _np(unsafe_true).astype(bool)
    s = _np(scores).astype(float)
    if not 0 < y.sum() < len(y):
        return None
    caught = np.sort(s[y])[::-1]
    threshold = caught[math.ceil(tpr * len(caught) - 1e-9) - 1]
    return float((s[~y] >= threshold).mean())


def per_group_flag_rate(groups: list[str], scores: object, threshold: float = 0.0) -> dict[str, float]:
    """Share flagged unsafe per group: recall for harm categories, over-refusal for safe groups."""
    s = _np(scores) >= threshold
    out: dict[str, float] = {}
    for g in sorted(set(groups)):
        mask = np.array([x == g for x in groups])
        out[g] = float(s[mask].mean())
    return out


def threshold_sweep(unsafe_true: object, scores: object) -> list[dict[str, float]]:
    """ROC points (threshold, TPR, FPR) for the calibration plot."""
    y = _np(unsafe_true).astype(bool)
    if not 0 < y.sum() < len(y):
        return []
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, _np(scores).astype(float))
    return [{"threshold": float(t), "tpr": float(a), "fpr": float(b)} for t, a, b in zip(thr, tpr, fpr, strict=True) if np.isfinite(t)]


@dataclass
class Baseline:
    """A scikit-learn classifier on the same features; ``score`` is a logit-like value with 0 as threshold."""

    name: str
    model: object

    def score(self, features: object) -> np.ndarray:
        p = self.model.predict_proba(_np(features))[:, 1]  # type: ignore[attr-defined]
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))


def probe_model(seed: int = 42):
    """The logistic probe every table reports beside SaP (standardised features, L2, C = 0.1), unfitted;
    with more than two classes the same model is the multinomial category classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1, random_state=seed))


def fit_baselines(features: object, unsafe: object, seed: int = 42) -> list[Baseline]:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _np(features), _np(unsafe).astype(int)
    probe = probe_model(seed).fit(x, y)
    mlp = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=300, early_stopping=True, random_state=seed),
    ).fit(x, y)
    return [Baseline("logistic probe", probe), Baseline("MLP", mlp)]


#: Column order of :func:`metrics_rows` for printing and export.
METRIC_COLUMNS = ["split", "method", "n", "accuracy", "precision", "recall", "f1", "fpr", "fnr", "auroc", "over_refusal"]


def metrics_rows(report: dict) -> list[dict]:
    """Flat table (split × method) for printing and export."""
    rows = []
    for split, methods in report.get("splits", {}).items():
        for method, m in methods.items():
            rows.append(
                {
                    "split": split,
                    "method": method,
                    "n": m["n"],
                    "accuracy": m["accuracy"],
                    "precision": m["precision"],
                    "recall": m["recall"],
                    "f1": m["f1"],
                    "fpr": m["fpr"],
                    "fnr": m["fnr"],
                    "auroc": m["auroc"],
                    "over_refusal": m.get("flag_rate_by_safe_subset", {}).get("over_refusal"),
                }
            )
    return rows

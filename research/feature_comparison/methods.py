"""Which prompt feature generalises to data written by someone else? Measured, not assumed (issue 16).

Every candidate (last token, mean or max over the user's tokens, several layers concatenated or
averaged) is judged two ways, both on data that recipe choice may use:

* **validation**: fit on the train split, AUROC and TPR on the validation split, with the threshold
  set on the validation safe rows at ``target_fpr`` (as the shipped polytope is calibrated);
* **leave one source out**: for each data source, fit on the train rows of every *other* source,
  set the threshold on their validation rows, then score every row of the held-out source. A source
  with one label reports the share flagged (TPR for unsafe sources, FPR for safe ones) and the AUROC
  of its rows against the other label's validation rows of the remaining sources; a source with both
  labels reports its own AUROC. This is the question "does it hold on a source it never saw?".

Evaluation sets (HarmBench, the held-out files, wrapped requests, XSTest) are *not* inputs here: the
script reports them only after the choice (``research/feature_comparison/run.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sap_viz.analysis.metrics import auroc, probe_model
from sap_viz.method.training import TrainConfig, train_polytope

__all__ = ["ComparisonConfig", "Scorer", "combined_features", "leave_one_source_out", "make_scorer", "validation_row"]

# A fitted scorer: features (N × d) → scores (N), higher = more unsafe.
Scorer = Callable[[torch.Tensor], np.ndarray]


@dataclass(frozen=True)
class ComparisonConfig:
    layers: tuple[int, ...] = (14, 16, 19, 22, 25)
    target_fpr: float = 0.09  # the shipped polytope's calibration target
    sap_epochs: int = 20
    sap_encoder: str = "relu"  # the shipped recipe's; "linear" = identity encoder (the paper's linear variant)


def combined_features(pooled: dict[str, torch.Tensor], layers: tuple[int, ...],
                      reference: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Every single pooled feature plus the combinations worth measuring.

    Concatenation keeps each part's scale (both methods standardise per dimension); the layer average
    is taken over last-token states standardised with ``reference``'s statistics (the training table's;
    default ``pooled`` itself), so the deeper layers' larger norms do not rule it and an evaluation set
    is transformed exactly like the table.
    """
    out = dict(pooled)
    ref = pooled if reference is None else reference

    def z(name: str) -> torch.Tensor:
        return (pooled[name] - ref[name].mean(0)) / ref[name].std(0).clamp_min(1e-6)

    mid, deep = min(layers, key=lambda L: abs(L - 16)), min(layers, key=lambda L: abs(L - 22))
    out[f"last@{mid}+last@{deep}"] = torch.cat([pooled[f"last@{mid}"], pooled[f"last@{deep}"]], 1)
    out[f"last@{deep}+mean@{deep}"] = torch.cat([pooled[f"last@{deep}"], pooled[f"mean@{deep}"]], 1)
    out[f"mean@{mid}+mean@{deep}"] = torch.cat([pooled[f"mean@{mid}"], pooled[f"mean@{deep}"]], 1)
    out["last, layer average"] = torch.stack([z(f"last@{L}") for L in layers]).mean(0)
    return out


def make_scorer(method: str, x: torch.Tensor, unsafe: np.ndarray, seed: int, epochs: int, encoder: str = "relu") -> Scorer:
    """Fit ``method`` ("probe": the README's logistic probe; "sap": a default-recipe polytope)."""
    if method == "probe":
        model = probe_model(seed).fit(x.numpy(), unsafe.astype(int))
        return lambda f: model.decision_function(f.numpy())
    if method == "sap":
        poly = train_polytope(x, torch.from_numpy(unsafe), TrainConfig(epochs=epochs, seed=seed, encoder=encoder), show_tqdm=False).polytope
        return lambda f: poly.score(f).numpy()
    raise ValueError(f"method must be probe or sap, got {method!r}")


def _wraps_any(text: np.ndarray, subset: np.ndarray, inner: set[str]) -> np.ndarray:
    """Wrapped rows whose frame holds one of ``inner`` verbatim: held out with that request's source,
    or the held-out source's requests would reach training inside a frame."""
    out = np.zeros(len(text), dtype=bool)
    for i in np.nonzero(subset == "wrapped")[0]:
        out[i] = any(t in text[i] for t in inner if t != text[i])
    return out


def _threshold(scores: np.ndarray, safe: np.ndarray, target_fpr: float) -> float:
    return float(np.quantile(scores[safe], 1 - target_fpr))


def validation_row(df: pd.DataFrame, x: torch.Tensor, method: str, seed: int, cfg: ComparisonConfig) -> dict:
    """Train split → validation split: AUROC, and TPR/FPR at the threshold set on validation safe rows."""
    y = (df["label"] == "unsafe").to_numpy()
    train, val = (df["split"] == "train").to_numpy(), (df["split"] == "val").to_numpy()
    score = make_scorer(method, x[train], y[train], seed, cfg.sap_epochs, cfg.sap_encoder)
    s = score(x[val])
    t = _threshold(s, ~y[val], cfg.target_fpr)
    return {"val_auroc": auroc(y[val], s), "val_tpr": float((s[y[val]] >= t).mean()), "val_fpr": float((s[~y[val]] >= t).mean())}


def leave_one_source_out(df: pd.DataFrame, x: torch.Tensor, method: str, seed: int, cfg: ComparisonConfig,
                         sources: list[str] | None = None) -> list[dict]:
    """One row per held-out source (see the module docstring for what each column means)."""
    y = (df["label"] == "unsafe").to_numpy()
    split = df["split"].to_numpy()
    src = df["source"].to_numpy()
    if sources is None:
        sources = sorted(set(src[split == "train"]))
    rows = []
    subset = df["subset"].to_numpy() if "subset" in df else np.full(len(df), "plain")
    text = df["text"].to_numpy()
    for s in sources:
        held = src == s
        train = (split == "train") & ~held & ~_wraps_any(text, subset, set(text[held]))
        val = (split == "val") & ~held
        if y[train].all() or not y[train].any():
            continue
        score = make_scorer(method, x[train], y[train], seed, cfg.sap_epochs, cfg.sap_encoder)
        sv, sh = score(x[val]), score(x[held])
        t = _threshold(sv, ~y[val], cfg.target_fpr)
        yh = y[held]
        if 0 < yh.sum() < len(yh):
            area = auroc(yh, sh)
        else:  # one label: against the other label's validation rows of the remaining sources
            other = ~y[val] if yh.all() else y[val]
            area = auroc(np.r_[yh, y[val][other]], np.r_[sh, sv[other]])
        rows.append({
            "source": s, "n_unsafe": int(yh.sum()), "n_safe": int((~yh).sum()),
            "tpr": float((sh[yh] >= t).mean()) if yh.any() else None,
            "fpr": float((sh[~yh] >= t).mean()) if (~yh).any() else None,
            "auroc": area,
        })
    return rows

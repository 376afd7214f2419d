"""Which layer? Train a quick polytope per layer on the same data and compare validation metrics.

All layers' features come from one forward pass per batch (stopping after the deepest layer asked for).
"""

from __future__ import annotations

import time

import pandas as pd
import torch
from tqdm.auto import tqdm

from sap_viz.analysis.metrics import detection_metrics, fit_baselines
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.model.features import FeatureConfig, extract_features_multi
from sap_viz.model.loading import LoadedModel


def layer_sweep(
    lm: LoadedModel, df: pd.DataFrame, layers: list[int], epochs: int = 10, num_facets: int = 14,
    feature_dim: int = 4096, chat_template: bool = True, max_tokens: int = 256, seed: int = 42,
) -> list[dict]:
    """One row per layer: validation accuracy / AUROC / FPR / recall of SaP and of a logistic probe."""
    train, val = df[df["split"] == "train"], df[df["split"] == "val"]
    fcfg = FeatureConfig(chat_template=chat_template, max_tokens=max_tokens, position="last")
    train_feats = extract_features_multi(lm, train["text"].tolist(), layers, fcfg, "sweep features (train)")
    val_feats = extract_features_multi(lm, val["text"].tolist(), layers, fcfg, "sweep features (val)")
    y_train = torch.tensor((train["label"] == "unsafe").to_numpy())
    y_val = (val["label"] == "unsafe").to_numpy()
    rows = []
    for layer in tqdm(layers, desc="train per layer"):
        f_train, f_val = train_feats[layer], val_feats[layer]
        t0 = time.perf_counter()
        cfg = TrainConfig(num_facets=num_facets, feature_dim=feature_dim, epochs=epochs, seed=seed)
        poly = train_polytope(f_train, y_train, cfg, show_tqdm=False).polytope
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            m = detection_metrics(y_val, poly.score(f_val).numpy())
        probe = fit_baselines(f_train, y_train, seed)[0]
        mp = detection_metrics(y_val, probe.score(f_val))
        rows.append({"layer": layer, "sap_accuracy": m["accuracy"], "sap_auroc": m["auroc"], "sap_fpr": m["fpr"],
                     "sap_recall": m["recall"], "probe_accuracy": mp["accuracy"], "probe_auroc": mp["auroc"],
                     "train_s": round(seconds, 1)})
    return rows

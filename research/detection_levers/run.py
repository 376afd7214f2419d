"""Detection levers (issue 37): data, objective and the detection-only reference, over seeds, on pooled features.

    python -m research.detection_levers.run [--seeds 42,43,44] [--out research/detection_levers/runs.jsonl]

Each design trains a polytope with the shipped recipe's settings (policy facets + backstop, block 22,
last‖mean) except the lever it names, on the same features:
- ``shipped recipe, default data``: the shipped polytope's table (the reference);
- ``+ contrast_v2``: the same recipe with the second contrast set in the table (the data lever);
- ``+ contrast_v2, backstop as a detector``: and the backstop facet also trained on every unsafe row
  (``lambda_backstop_all`` = 1, the objective lever: detection and naming as two heads over one polytope);
- ``detection-only (K=14 learned), + contrast_v2``: no names at all, the reference a named polytope must match.
Every design is scored on the extended table's validation split (the recipe choice) and, for the record only,
on the evaluation sets (never used to choose): AUROC of the pooled last‖mean score, the same reading the
verdict's last-token check makes. One row per design and seed goes to ``runs.jsonl``; ``summary`` prints
mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from research.paths import DEFAULT_POLYTOPE, ROOT
from sap_viz.analysis.detection_report import evaluation_sets
from sap_viz.analysis.metrics import auroc
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.sources import DEFAULT_SOURCES
from sap_viz.jsonl import append_jsonl
from sap_viz.method.artifact import load_for_model
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import load_model
from sap_viz.recipe.pipeline import split_feature_set, split_frames, train_and_evaluate

OUT = ROOT / "research" / "detection_levers" / "runs.jsonl"
EXTENDED = DataConfig(sources=(*DEFAULT_SOURCES, "contrast_v2"))


def designs(shipped: TrainConfig) -> dict[str, tuple[DataConfig, TrainConfig]]:
    return {
        "shipped recipe, default data": (DataConfig(), shipped),
        "+ contrast_v2": (EXTENDED, shipped),
        "+ contrast_v2, backstop as a detector": (EXTENDED, replace(shipped, lambda_backstop_all=1.0)),
        "detection-only (K=14 learned), + contrast_v2": (EXTENDED, TrainConfig(seed=shipped.seed)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (a quick look only)")
    args = parser.parse_args()
    lm = load_model("default")
    art = load_for_model(DEFAULT_POLYTOPE, lm)
    fcfg = FeatureConfig(layer=art.layer, position=art.position, chat_template=art.chat_template, max_tokens=int(art.meta["max_tokens"]))
    shipped = TrainConfig(**art.meta["train_config"])
    if args.epochs:
        shipped = replace(shipped, epochs=args.epochs)
    sets = evaluation_sets()
    eval_feats = {name: extract_features(lm, frame["text"].tolist(), fcfg) for name, frame in sets.items()}
    extended_val = split_frames(build_dataset(EXTENDED))["val"]
    val_feats = extract_features(lm, extended_val["text"].tolist(), fcfg)
    tables: dict[str, tuple[pd.DataFrame, dict]] = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, (data, tcfg) in designs(shipped).items():
            key = json.dumps(data.sources)
            if key not in tables:
                df = build_dataset(data)
                tables[key] = (df, split_feature_set(df, lambda split, rows: extract_features(lm, rows["text"].tolist(), fcfg)))
            df, feats = tables[key]
            t0 = time.perf_counter()
            trained = train_and_evaluate(lm, df, fcfg, replace(tcfg, seed=seed), baselines=False, features=feats,
                                         show_tqdm=False, target_fpr=0.09, check_facets=False)
            poly = trained.artifact.polytope.cpu().eval()
            with torch.no_grad():
                score = {n: poly.violations(f).max(dim=1).values.numpy() for n, f in eval_feats.items()}
                val = poly.violations(val_feats).max(dim=1).values.numpy()
            row = {"design": name, "seed": seed, "train_s": round(time.perf_counter() - t0, 1),
                   "extended_validation_auroc": auroc(extended_val["label"] == "unsafe", val),
                   **{f"auroc: {n}": auroc(sets[n]["label"] == "unsafe", s) for n, s in score.items()}}
            print(json.dumps(row), flush=True)
            append_jsonl(args.out, [row])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Policy-facet recipes swept over labels, features and objective, chosen on validation data only.

    .venv/bin/python -m research.policy_facets.sweep --output research/policy_facets/runs.jsonl
    .venv/bin/python -m research.policy_facets.sweep --table research/policy_facets/runs.jsonl > research/policy_facets/sweep.md

Every run trains on the built-in train split (layer 22), shifts ξ so 9 % of the validation safe
prompts are flagged (as `sap-viz train --target-fpr 0.09` does), and records the policy-facet
measures (sap_viz.analysis.policy_scorecard.policy_report) on the validation split, where unsafe
rows carry their rubric category. The test split is recorded for the report; the check set is not
read here at all: it is only for the final evaluation of the chosen recipe.

Levers: labels (rubric vs the sources' inherited categories), features (last token vs last + mean
of the request), objective (exclusive push, backstop, quiet backstop, encoder).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from sap_viz.analysis.metrics import auroc
from sap_viz.analysis.policy_scorecard import policy_report
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.jsonl import append_jsonl, read_jsonl
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.model.features import FeatureConfig
from sap_viz.model.loading import load_model
from sap_viz.recipe.pipeline import calibrate_threshold, category_facet_index, rank_backstop, split_features
from sap_viz.tables import markdown_table

BASE = {"epochs": 40}
CATS = {"facet_mode": "categories", "entropy_mode": "none", "free_facets": 1, "lambda_exclusive": 1.0, "lambda_backstop": 1.0}
RECIPES: dict[str, dict] = {
    "learned K=14 (shipped recipe)": {},
    "categories + quiet, inherited labels": {**CATS, "lambda_backstop_quiet": 1.0, "labels": "inherited"},
    "categories": CATS,
    "categories + quiet backstop": {**CATS, "lambda_backstop_quiet": 1.0},
    "categories excl 3 + quiet": {**CATS, "lambda_exclusive": 3.0, "lambda_backstop_quiet": 1.0},
    "categories + quiet, margin 2": {**CATS, "lambda_backstop_quiet": 1.0, "margin": 2.0},
    # the backstop as a detector of all unsafe rows, ranked below firing category facets afterwards (pipeline.rank_backstop)
    "categories + detector backstop": {**CATS, "lambda_backstop_all": 1.0},
    "categories + detector backstop, excl 3": {**CATS, "lambda_backstop_all": 1.0, "lambda_exclusive": 3.0},
}
TARGET_FPR = 0.09


def run_one(name: str, position: str, seed: int, X: dict, frames: dict) -> dict:
    recipe = dict(RECIPES[name])
    label_col = "inherited_category" if recipe.pop("labels", "rubric") == "inherited" else "category"
    cfg = TrainConfig(**{**BASE, **recipe, "seed": seed})
    tr = frames["train"]
    unsafe = torch.tensor((tr["label"] == "unsafe").to_numpy())
    cats, facet_cats = None, [None] * cfg.num_facets
    if cfg.facet_mode == "categories":
        names, cats = category_facet_index(tr[label_col].tolist(), tr["label"].tolist())
        cfg = replace(cfg, num_facets=len(names) + cfg.free_facets)
        facet_cats = names + [None] * cfg.free_facets
    t0 = time.perf_counter()
    poly = train_polytope(X["train"], unsafe, cfg, show_tqdm=False, categories=cats).polytope
    out = {"recipe": name, "position": position, "seed": seed, "train_s": round(time.perf_counter() - t0, 1), "num_facets": cfg.num_facets}
    calibrate_threshold(poly, X["val"], frames["val"], TARGET_FPR)
    if cfg.lambda_backstop_all > 0:
        out["backstop_factor"] = rank_backstop(poly, X["train"], unsafe, cfg.free_facets)["factor"]
    with torch.no_grad():
        if cfg.facet_mode != "categories":  # a learned facet's "name": the category it is most often top facet for on train
            vt = poly.violations(X["train"])[unsafe]
            top = vt.argmax(1).numpy()
            tcat = tr.loc[tr["label"] == "unsafe", "category"].to_numpy()
            facet_cats = [pd.Series(tcat[top == k]).mode().iloc[0] if (top == k).any() else None for k in range(cfg.num_facets)]
        for split in ("val", "test"):
            part = frames[split]
            v = poly.violations(X[split])
            rep = policy_report(v, part["label"].tolist(), part["category"].tolist(), facet_cats)
            y = (part["label"] == "unsafe").to_numpy()
            s = v.max(1).values.numpy()
            out[f"{split}_auroc"] = round(float(auroc(y, s)), 4)
            for key in ("selective_categories", "facets_firing", "mi_bits", "name_accuracy", "caught", "safe_flagged"):
                out[f"{split}_{key}"] = rep[key]
            out[f"{split}_never_top"] = len(rep["never_top"])
            lookalike = (~y) & part["subset"].isin(("over_refusal", "twin")).to_numpy()
            out[f"{split}_lookalikes_flagged"] = round(float((s[lookalike] >= 0).mean()), 4)
    return out


def features(position: str, frames: dict) -> dict:
    lm = load_model("default")
    fcfg = FeatureConfig(layer=22, position=position)
    return {s: split_features(lm, part, fcfg, progress=False).float() for s, part in frames.items()}


COLUMNS = ("auroc", "selective_categories", "facets_firing", "mi_bits", "name_accuracy", "never_top", "caught", "safe_flagged",
           "lookalikes_flagged")


def table(runs: list[dict], split: str) -> str:
    df = pd.DataFrame(runs).drop_duplicates(["recipe", "position", "seed"], keep="last")  # a rerun replaces its earlier record
    rows = []
    for (recipe, position), g in df.groupby(["recipe", "position"], sort=False):
        row = {"recipe": recipe, "features": position, "seeds": len(g)}
        for c in COLUMNS:
            col = g[f"{split}_{c}"].astype(float)
            row[c] = f"{col.mean():.3f} ± {col.std(ddof=0):.3f}"
        rows.append(row)
    return markdown_table(rows, list(rows[0]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=";".join(RECIPES), help="recipe names separated by ';' (default: all)")
    parser.add_argument("--positions", default="last,last+mean", help="feature positions to sweep")
    parser.add_argument("--seeds", default="42,1,2", help="training seeds")
    parser.add_argument("--output", type=Path, help="append one JSON line per run here")
    parser.add_argument("--table", type=Path, help="print the Markdown tables of a runs file and exit")
    args = parser.parse_args()
    if args.table:
        runs = read_jsonl(args.table)
        print("Validation split (the choice reads these columns only):\n")
        print(table(runs, "val"))
        print("\nTest split (for the report):\n")
        print(table(runs, "test"))
        return 0
    df = build_dataset(DataConfig())
    frames = {s: df[df["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    for position in args.positions.split(","):
        X = features(position, frames)
        for name in args.recipes.split(";"):
            for seed in (int(s) for s in args.seeds.split(",")):
                rec = run_one(name, position, seed, X, frames)
                print(json.dumps(rec), flush=True)
                if args.output:
                    append_jsonl(args.output, [rec])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

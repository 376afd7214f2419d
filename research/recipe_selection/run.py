"""Choose the shipped polytope's training recipe on the validation split only, over several seeds.

    .venv/bin/python -m research.recipe_selection.run --seeds 42,1,2 --output recipes.json

Data variants: "A" = the built-in sources as shipped; "B" = A plus the second author's contrast rows
(research/recipe_selection/contrast_batch2_candidates.jsonl, minus rows that near-duplicate a built-in contrast row).
Recipes: the defaults (20 epochs), 40 epochs, K = 24. For each (data, recipe, seed) the polytope is
trained on the train split and calibrated to flag 9 % of validation safe prompts, as `train` does.

Why seeds: on this data one seed's held-out flag rates move by more than any setting does, so a
recipe is judged by its mean validation AUROC. The validation splits of A and B differ (B has more
rows per stratum), so "common val AUROC" scores both on the validation rows they share. The held-out
sets are scored too, for docs/research/recipe_selection.md, but play no part in the choice.

Features are computed once per distinct text (one forward pass each) and reused across variants.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from research.paths import EVAL_SETS
from research.tables import table as markdown_table
from sap_viz.analysis.metrics import auroc, fit_baselines
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.file_rows import read_rows
from sap_viz.data.sources import CONTRAST_FILE
from sap_viz.data.text import near_duplicates
from sap_viz.jsonl import write_jsonl
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import load_model
from sap_viz.recipe import pipeline as P

CANDIDATES = Path(__file__).with_name("contrast_batch2_candidates.jsonl")
HELDOUT = {"set 1": "heldout_prompts.jsonl", "set 2": "heldout_prompts_v2.jsonl", "set 3": "heldout_prompts_v3.jsonl"}
RECIPES = {"defaults (20 epochs)": {}, "40 epochs": {"epochs": 40}, "K = 24": {"num_facets": 24}}


def _flagged(scores: np.ndarray, rows: list[dict]) -> dict[str, str]:
    """Flagged / total per held-out kind (harmful, benign, scary_but_safe)."""
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        hit = [bool(sc >= 0) for sc, r in zip(scores, rows, strict=True) if r["kind"] == kind]
        out[kind] = f"{sum(hit)}/{len(hit)}"
    return out


def _frames(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"train": df[df["split"] == "train"], **{s: P.eval_frame(df, s) for s in ("val", "ood")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--layer", type=int, default=22)
    parser.add_argument("--target-fpr", type=float, default=0.09)
    parser.add_argument("--output", type=Path, help="write every run as JSON")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    base = read_rows(CONTRAST_FILE)
    extra = read_rows(CANDIDATES)
    dup = set(near_duplicates([r["text"] for r in extra], [r["text"] for r in base]))
    with tempfile.TemporaryDirectory() as tmp:
        b_file = Path(tmp) / "contrast_b.jsonl"
        rows = base + [r for i, r in enumerate(extra) if i not in dup]
        write_jsonl(b_file, rows)
        datasets = {"A": build_dataset(DataConfig()), "B": build_dataset(DataConfig(contrast_file=b_file))}
    print(f"B adds {len(extra) - len(dup)} contrast rows ({len(dup)} near-duplicates of built-in rows left out)")

    lm = load_model("default")
    fcfg = FeatureConfig(layer=args.layer, position="last")
    heldout = {name: read_rows(EVAL_SETS / f) for name, f in HELDOUT.items()}
    frames = {k: _frames(df) for k, df in datasets.items()}
    texts = list(dict.fromkeys(
        [t for fr in frames.values() for part in fr.values() for t in part["text"]]
        + [r["text"] for rows in heldout.values() for r in rows]))
    store = dict(zip(texts, extract_features(lm, texts, fcfg, progress=f"features @ layer {args.layer}"), strict=True))

    def feats(items: list[str]) -> torch.Tensor:
        return torch.stack([store[t] for t in items])

    vals = {k: set(fr["val"]["text"]) for k, fr in frames.items()}
    trains = {k: set(fr["train"]["text"]) for k, fr in frames.items()}
    common_val = (vals["A"] & vals["B"]) - trains["A"] - trains["B"]

    runs = []
    for (dk, fr), (rk, recipe), seed in itertools.product(frames.items(), RECIPES.items(), seeds):
        unsafe = torch.tensor((fr["train"]["label"] == "unsafe").to_numpy())
        poly = train_polytope(feats(fr["train"]["text"].tolist()), unsafe, TrainConfig(seed=seed, **recipe), show_tqdm=False).polytope
        val = fr["val"]
        P.calibrate_threshold(poly, feats(val["text"].tolist()), val, args.target_fpr)

        def score(items: list[str]) -> np.ndarray:
            return poly.violations_cpu(feats(items)).max(1).values.numpy()  # noqa: B023

        y, s = (val["label"] == "unsafe").to_numpy(), score(val["text"].tolist())
        common = val["text"].isin(common_val).to_numpy()
        over = (~y) & (val["subset"] == "over_refusal").to_numpy()
        ood = fr["ood"]
        run = {"data": dk, "recipe": rk, "seed": seed, "val_auroc": auroc(y, s),
               "common_val_auroc": auroc(y[common], s[common]), "val_recall": float((s[y] >= 0).mean()),
               "val_over_refusal_flagged": float((s[over] >= 0).mean()),
               "ood_auroc": auroc(ood["label"] == "unsafe", score(ood["text"].tolist()))}
        for name, rows in heldout.items():
            hs = score([r["text"] for r in rows])
            run[f"{name} AUROC"] = auroc([r["label"] == "unsafe" for r in rows], hs)
            run[f"{name} flagged"] = _flagged(hs, rows)
        runs.append(run)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in run.items()}), flush=True)
    baselines = {}
    for dk, fr in frames.items():  # the same features through the logistic probe and the MLP (seed 42)
        for base in fit_baselines(feats(fr["train"]["text"].tolist()), (fr["train"]["label"] == "unsafe").to_numpy()):
            baselines[f"{dk} {base.name}"] = {name: _flagged(base.score(feats([r["text"] for r in rows])), rows)
                                              for name, rows in heldout.items()}
            print(f"baseline, data {dk}, {base.name}: {json.dumps(baselines[f'{dk} {base.name}'])}")
    if args.output:
        args.output.write_text(json.dumps({"runs": runs, "baselines": baselines}, indent=1))

    res = pd.DataFrame([{k: v for k, v in r.items() if not k.endswith("flagged")} for r in runs])
    g = res.groupby(["data", "recipe"], sort=False)
    table = pd.DataFrame({
        "validation AUROC (mean ± sd)": g["val_auroc"].mean().map("{:.3f}".format) + " ± " + g["val_auroc"].std().map("{:.3f}".format),
        "common val AUROC": g["common_val_auroc"].mean().map("{:.3f}".format),
        "val recall": g["val_recall"].mean().map("{:.3f}".format),
        "OOD AUROC": g["ood_auroc"].mean().map("{:.3f}".format),
        "held-out AUROC, sets 1 / 2 / 3": g[[f"{n} AUROC" for n in HELDOUT]].mean().apply(
            lambda r: " / ".join(f"{v:.3f}" for v in r), axis=1),
    }).reset_index()
    print(markdown_table(table.to_dict("records"), list(table.columns)))
    best = g["val_auroc"].mean().idxmax()
    print(f"\nHighest mean validation AUROC: data {best[0]}, {best[1]}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

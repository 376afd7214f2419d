"""Detection levers, part 2 (issue 37): the objective and the per-facet scale, on the extended table, over seeds.

    python -m research.detection_levers.objective [--seeds 42,43,44] [--out research/detection_levers/objective_runs.jsonl]

Why: the first study (``run.py``) left the named polytope behind a detection-only one even with ``contrast_v2``.
The verdict reads the *largest* facet violation against one boundary, so it mixes facets trained on different
scales: a named facet whose safe prompts spread widely decides the false positives of all. Two kinds of lever:

- **objective** (retrained): the unsafe hinge weighted ×2 (``unsafe_weight`` 4), a weaker exclusive push
  (``lambda_exclusive`` 0.3, 0.1, 0), and three free facets trained as a detector of their own;
- **facet scale** (after training, no retraining): each facet divided by the spread of its violations on the
  *training* split's safe prompts (``sd``), and also shifted so those prompts' 95th percentile sits at one
  common value (``sd+q95``). Dividing a facet by a positive number leaves its half-space as it is; the shift
  moves it. Either changes which facet is the most violated, so the facet check is measured again for each.

The choice is made on the extended table's validation split (mean ± sd over seeds); the evaluation sets'
AUROCs and the facet check are for the record only. One row per design, scale and seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from research.detection_levers.run import EXTENDED
from research.paths import DEFAULT_POLYTOPE, ROOT
from sap_viz.analysis.detection_report import evaluation_sets
from sap_viz.analysis.facet_check import attach_facet_check
from sap_viz.analysis.metrics import auroc
from sap_viz.data.dataset import build_dataset
from sap_viz.jsonl import append_jsonl, read_jsonl
from sap_viz.method.artifact import load_for_model
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import load_model
from sap_viz.recipe.pipeline import split_feature_set, split_frames, train_and_evaluate

OUT = ROOT / "research" / "detection_levers" / "objective_runs.jsonl"
SCALES = ("as trained", "sd", "sd+q95")


def designs(shipped: TrainConfig) -> dict[str, TrainConfig]:
    return {
        "named, shipped objective": shipped,
        "named, unsafe hinge x2": replace(shipped, unsafe_weight=2 * shipped.unsafe_weight),
        "named, exclusive 0.3": replace(shipped, lambda_exclusive=0.3),
        "named, exclusive 0.1": replace(shipped, lambda_exclusive=0.1),
        "named, exclusive 0": replace(shipped, lambda_exclusive=0.0),
        "named, 3 free facets as a detector": replace(shipped, num_facets=shipped.num_facets + 2, free_facets=3,
                                                      lambda_backstop_all=1.0, lambda_backstop_quiet=0.0),
        "named, exclusive 0.3, 3 free facets as a detector": replace(
            shipped, num_facets=shipped.num_facets + 2, free_facets=3, lambda_exclusive=0.3,
            lambda_backstop_all=1.0, lambda_backstop_quiet=0.0),
        "detection-only (K=14 learned)": TrainConfig(seed=shipped.seed),
    }


@torch.no_grad()
def rescale_facets(poly, safe_train: torch.Tensor, how: str) -> None:
    """Put every facet on the scale of its own safe training prompts (in place); see the module's docstring."""
    if how == "as trained":
        return
    v = poly.violations(safe_train)
    sd = v.std(dim=0).clamp_min(1e-6)
    shift = torch.zeros_like(sd)
    if how == "sd+q95":
        q = torch.quantile(v / sd, 0.95, dim=0)
        shift = q - q.median()
    poly.phi /= sd[:, None]
    poly.xi.copy_(poly.xi / sd + shift)
    # one constant again, so that a typical safe training prompt still scores about −1
    scale = poly.score(safe_train).median().abs().clamp_min(1e-6)
    poly.phi /= scale
    poly.xi /= scale


def facet_figures(report: dict | None) -> dict:
    if not report:
        return {}
    keys = ("selective_categories", "facets_firing", "mi_bits", "name_accuracy", "caught", "safe_flagged")
    return {f"check: {k}": report.get(k) for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--designs", default="", help="semicolon-separated subset of the design names (default: all)")
    parser.add_argument("--scales", default=",".join(SCALES), help="comma-separated subset of " + ", ".join(SCALES))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    lm = load_model("default")
    art = load_for_model(DEFAULT_POLYTOPE, lm)
    fcfg = FeatureConfig(layer=art.layer, position=art.position, chat_template=art.chat_template, max_tokens=int(art.meta["max_tokens"]))
    shipped = TrainConfig(**art.meta["train_config"])
    sets = evaluation_sets()
    eval_feats = {name: extract_features(lm, frame["text"].tolist(), fcfg) for name, frame in sets.items()}
    df = build_dataset(EXTENDED)
    frames = split_frames(df)
    feats = split_feature_set(df, lambda split, rows: extract_features(lm, rows["text"].tolist(), fcfg))
    val_y = (frames["val"]["label"] == "unsafe").to_numpy()
    train_safe = feats["train"][(frames["train"]["label"] == "safe").to_numpy()]
    chosen = [d.strip() for d in args.designs.split(";") if d.strip()]
    # a design and seed already in --out is not run again, so the study resumes where it stopped
    done = {(r["design"], r["seed"]) for r in read_jsonl(args.out)} if args.out.exists() else set()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, tcfg in designs(shipped).items():
            if chosen and name not in chosen or (name, seed) in done:
                continue
            t0 = time.perf_counter()
            trained = train_and_evaluate(lm, df, fcfg, replace(tcfg, seed=seed), baselines=False, features=feats,
                                         show_tqdm=False, target_fpr=0.09, check_facets=False)
            train_s = round(time.perf_counter() - t0, 1)
            for how in args.scales.split(","):
                variant = copy.deepcopy(trained.artifact)
                poly = variant.polytope.cpu().eval()
                rescale_facets(poly, train_safe, how)
                with torch.no_grad():
                    val = poly.score(feats["val"]).numpy()
                    score = {n: poly.score(f).numpy() for n, f in eval_feats.items()}
                named = tcfg.facet_mode == "categories"
                check = attach_facet_check(lm, variant) if named else None
                row = {"design": name, "scale": how, "seed": seed, "train_s": train_s,
                       "extended_validation_auroc": auroc(val_y, val),
                       **{f"auroc: {n}": auroc(sets[n]["label"] == "unsafe", s) for n, s in score.items()},
                       **facet_figures(check)}
                print(json.dumps(row), flush=True)
                append_jsonl(args.out, [row])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

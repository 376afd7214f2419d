"""Every measure of the policy-facet table for one or more polytopes, side by side (docs/research/policy_facets.md).

    .venv/bin/python -m research.policy_facets.compare OLD_DIR NEW_DIR > research/policy_facets/compare.md

Per polytope: the policy table on the check set (evaluation only), detection AUROC on the built-in test
split and on the three hand-written held-out sets, and the safe look-alikes it flags: the check set's
safe half, the built-in over-refusal (borderline) prompts of the val and test splits, the framed benign
requests of the wrapped-request set, and XSTest v2's safe prompts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sap_viz.analysis.external_eval import load_external
from sap_viz.analysis.facet_check import facet_check, policy_rows
from sap_viz.analysis.metrics import auroc
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.method.artifact import load_for_model
from sap_viz.model.features import extract_features
from sap_viz.model.loading import load_model
from sap_viz.recipe.pipeline import split_features
from sap_viz.settings import ASSETS_DIR
from sap_viz.tables import markdown_table

HELDOUT = ("heldout_prompts", "heldout_prompts_v2", "heldout_prompts_v3")


def measure(lm, directory: Path) -> dict:
    art = load_for_model(directory, lm)
    fcfg = art.feature_config()
    _, report = facet_check(lm, art)
    out: dict = {"polytope": directory.name, "position": art.meta["position"], "facets": art.polytope.num_facets,
                 "policy": {r["measure"]: r["value"] for r in policy_rows(report)}}
    df = build_dataset(DataConfig())

    def scores(texts: list[str], frame=None) -> np.ndarray:
        feats = split_features(lm, frame, fcfg, progress=False) if frame is not None else extract_features(lm, texts, fcfg)
        with torch.no_grad():
            return art.polytope.violations_cpu(feats).max(dim=1).values.numpy()

    test = df[df["split"] == "test"]
    s = scores([], test)
    out["test AUROC"] = round(float(auroc(test["label"] == "unsafe", s)), 3)
    for split in ("val", "test"):
        part = df[df["split"] == split]
        sp = scores([], part)
        border = (part["subset"] == "over_refusal").to_numpy()
        out[f"over-refusal flagged ({split})"] = f"{int((sp[border] >= 0).sum())}/{int(border.sum())}"
    for name in HELDOUT:
        frame = load_external(ASSETS_DIR / f"{name}.jsonl")
        sh = scores(frame["text"].tolist())
        out[f"{name} AUROC"] = round(float(auroc(frame["label"] == "unsafe", sh)), 3)
    wrapped = load_external(ASSETS_DIR / "wrapped_requests.jsonl")
    sw = scores(wrapped["text"].tolist())
    benign = (wrapped["label"] == "safe").to_numpy()
    out["wrapped benign flagged"] = f"{int((sw[benign] >= 0).sum())}/{int(benign.sum())}"
    out["wrapped harmful caught"] = f"{int((sw[~benign] >= 0).sum())}/{int((~benign).sum())}"
    xs = load_external(ASSETS_DIR / "external" / "xstest_v2.jsonl")
    sx = scores(xs["text"].tolist())
    safe = (xs["label"] == "safe").to_numpy()
    out["XSTest safe flagged"] = f"{int((sx[safe] >= 0).sum())}/{int(safe.sum())}"
    out["XSTest AUROC"] = round(float(auroc(~safe, sx)), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("polytopes", nargs="+", type=Path, help="polytope directories")
    parser.add_argument("--json", type=Path, help="also write the measures as JSON here")
    args = parser.parse_args()
    lm = load_model("default")
    results = [measure(lm, d) for d in args.polytopes]
    measures = list(results[0]["policy"]) + [k for k in results[0] if k not in ("polytope", "policy")]
    rows = [{"measure": m, **{r["polytope"]: r["policy"].get(m, r.get(m)) for r in results}} for m in measures]
    print(markdown_table(rows, ["measure", *[r["polytope"] for r in results]]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

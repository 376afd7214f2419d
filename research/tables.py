"""Print the README's Markdown tables from measured files, so the README never carries hand-typed numbers.

    python -m research.tables metrics  polytopes/smollm2-135m-default
    python -m research.tables sweep    sweep.json           # from `python -m sap_viz sweep --output`
    python -m research.tables heldout  scored.jsonl [...]   # from `python -m sap_viz score` on
                                                                  # sap_viz/data/eval_sets/heldout_prompts*.jsonl
    python -m research.tables variants DIR [DIR ...]        # polytopes trained with other settings
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from sap_viz.tables import format_value, markdown_table


def table(rows: list[dict], columns: list[str]) -> str:
    return markdown_table(rows, columns, limit=1000)


def metrics(polytope_dir: Path) -> str:
    meta = json.loads((polytope_dir / "polytope.json").read_text())
    rows = []
    for split, methods in meta["metrics"]["splits"].items():
        for method, m in methods.items():
            subsets = m.get("flag_rate_by_safe_subset", {})
            rows.append({"split": split, "method": method, "n": m["n"], "AUROC": m["auroc"], "accuracy": m["accuracy"],
                         "precision": m["precision"], "recall": m["recall"], "F1": m["f1"], "FPR": m["fpr"],
                         "over-refusal": subsets.get("over_refusal"), "twins flagged": subsets.get("twin")})
    return table(rows, ["split", "method", "n", "AUROC", "accuracy", "precision", "recall", "F1", "FPR",
                        "over-refusal", "twins flagged"])


def sweep(path: Path) -> str:
    rows = json.loads(path.read_text())
    columns = list(rows[0].keys())
    best = max(rows, key=lambda r: r["sap_auroc"])
    out = table(rows, columns)
    return out + f"\n\nBest validation AUROC: layer {best['layer']} ({best['sap_auroc']:.3f})."


def label_auroc(rows: list[dict]) -> float | None:
    y = np.array([r["label"] == "unsafe" for r in rows])
    return float(roc_auc_score(y, [r["score"] for r in rows])) if 0 < y.sum() < len(y) else None


def heldout(paths: list[Path]) -> str:
    """Flag rates per set and kind, on all rows and on the rows that are not near-duplicates of the
    train/val data (content-word Jaccard ≥ 0.4, :func:`sap_viz.data.text.near_duplicates`): LLM-written
    held-out prompts drift towards the same wording as LLM-written training prompts."""
    from sap_viz.data.dataset import DataConfig, build_dataset
    from sap_viz.data.file_rows import read_rows
    from sap_viz.data.text import near_duplicates

    df = build_dataset(DataConfig())
    seen = df.loc[df["split"].isin(["train", "val"]), "text"].tolist()
    out, aurocs = [], []
    for path in paths:
        rows = read_rows(path)
        near = set(near_duplicates([r["text"] for r in rows], seen))
        clean = [r for i, r in enumerate(rows) if i not in near]
        kinds: dict[str, list[tuple[int, dict]]] = {}
        for i, r in enumerate(rows):
            kinds.setdefault(r.get("kind", r["label"]), []).append((i, r))
        for kind, members in kinds.items():
            flagged = sum(r["unsafe"] for _, r in members)
            kept = [r for i, r in members if i not in near]
            out.append({"file": path.name, "kind": kind, "n": len(members), "flagged": f"{flagged}/{len(members)}",
                        "flag rate": flagged / len(members),
                        "flagged, not near train/val": f"{sum(r['unsafe'] for r in kept)}/{len(kept)}"})
        aurocs.append(f"{path.name}: {format_value(label_auroc(rows))} over {len(rows)} prompts, "
                      f"{format_value(label_auroc(clean))} over the "
                      f"{len(clean)} not near train/val")
    return table(out, list(out[0].keys())) + "\n\nAUROC: " + "; ".join(aurocs) + "."


def variants(paths: list[Path]) -> str:
    rows = []
    for path in paths:
        meta = json.loads((path / "polytope.json").read_text())
        tc, splits = meta["train_config"], meta["metrics"]["splits"]
        rows.append({"polytope": path.name, "encoder": tc["encoder"], "entropy": f"{tc['entropy_mode']} λ_H={tc['lambda_entropy']:g}",
                     "test AUROC": splits["test"]["SaP"]["auroc"], "OOD AUROC": splits["ood"]["SaP"]["auroc"],
                     "OOD recall": splits["ood"]["SaP"]["recall"], "test FPR": splits["test"]["SaP"]["fpr"],
                     "facet usage (bits)": meta["training_history"][-1].get("facet_usage_entropy_bits"),
                     "category MI (bits)": meta.get("facet_stats", {}).get("mutual_information_bits")})
    return table(rows, list(rows[0].keys()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["metrics", "sweep", "heldout", "variants"])
    parser.add_argument("paths", type=Path, nargs="+")
    args = parser.parse_args()
    if args.kind == "variants":
        print(variants(args.paths))
    elif args.kind == "heldout":
        print(heldout(args.paths))
    else:
        print({"metrics": metrics, "sweep": sweep}[args.kind](args.paths[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare training objectives on facet specialisation and detection (issue 13), choosing on val only.

    .venv/bin/python -m research.facet_objectives.run --features /tmp/facets_work/feats_l22.safetensors \
        --meta /tmp/facets_work/meta_l22.json --recipes shipped,mi5 --seeds 42,1,2 --output runs.jsonl

Features: one safetensors file with the layer-22 last-token features of the built-in train / val /
test splits (no HarmBench OOD rows) and of the held-out prompt sets, plus a JSON file with their
labels and categories (written once by ``--dump``; every run reuses them).

Every run trains on the train split, shifts ξ so 9 % of validation safe prompts are flagged (as
``train --target-fpr 0.09`` does), and records val AUROC and the facet audit on val unsafe prompts.
Test and held-out numbers are recorded for the report only; the choice reads val columns only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from research.paths import BUILTIN_DATA, EVAL_SETS
from research.tables import table as markdown_table
from sap_viz.analysis.facet_stats import facet_audit, honest_names
from sap_viz.analysis.metrics import auroc
from sap_viz.jsonl import append_jsonl, read_jsonl
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.recipe.pipeline import category_facet_index

HELDOUT = ("heldout_prompts", "heldout_prompts_v2", "heldout_prompts_v3")
BASE = {"epochs": 40}  # the shipped recipe: soft entropy λ_H = 5, 40 epochs, K = 14
RECIPES: dict[str, dict] = {
    "shipped (soft λH=5)": {},
    "reference": {"objective": "reference", "entropy_mode": "reassign", "lambda_entropy": 1.0},
    "mi λH=1": {"entropy_mode": "mi", "lambda_entropy": 1.0},
    "mi λH=5": {"entropy_mode": "mi", "lambda_entropy": 5.0},
    "soft + excl 1": {"lambda_exclusive": 1.0},
    "mi λH=1 + excl 1": {"entropy_mode": "mi", "lambda_entropy": 1.0, "lambda_exclusive": 1.0},
    "mi λH=5 + excl 1": {"entropy_mode": "mi", "lambda_entropy": 5.0, "lambda_exclusive": 1.0},
    "reassign + excl 1": {"entropy_mode": "reassign", "lambda_entropy": 0.0, "lambda_exclusive": 1.0},
    "categories 11+3": {"facet_mode": "categories", "free_facets": 3, "lambda_exclusive": 1.0, "entropy_mode": "none"},
    "categories 11+0": {"facet_mode": "categories", "free_facets": 0, "lambda_exclusive": 1.0, "entropy_mode": "none", "num_facets": 11},
    "categories 11+3 excl 0.3": {"facet_mode": "categories", "free_facets": 3, "lambda_exclusive": 0.3, "entropy_mode": "none"},
    "categories 11+3 backstop 1": {"facet_mode": "categories", "free_facets": 3, "lambda_exclusive": 1.0, "entropy_mode": "none",
                                   "lambda_backstop": 1.0},
    "categories 11+3 backstop 1 excl 0.3": {"facet_mode": "categories", "free_facets": 3, "lambda_exclusive": 0.3,
                                            "entropy_mode": "none", "lambda_backstop": 1.0},
}


def dump(out_feats: Path, out_meta: Path, layer: int) -> None:
    from sap_viz.data.dataset import DataConfig, build_dataset
    from sap_viz.model.features import FeatureConfig, extract_features
    from sap_viz.model.loading import load_model

    df = build_dataset(DataConfig())
    lm = load_model("default")
    fcfg = FeatureConfig(layer=layer, position="last")
    tensors, meta = {}, {}
    for s in ("train", "val", "test"):  # the same per-split cache entries `train` uses; no OOD rows
        part = df[df["split"] == s]
        tensors[s] = extract_features(lm, part["text"].tolist(), fcfg, progress=s).float().contiguous()
        meta[s] = {c: part[c].tolist() for c in ("label", "category", "subset", "text")}
    ex = [e["prompt"] for e in json.loads((BUILTIN_DATA / "examples.json").read_text())["examples"]]
    tensors["examples"] = extract_features(lm, ex, fcfg).float().contiguous()
    meta["examples"] = {"text": ex}
    for name in HELDOUT:
        rows = read_jsonl(EVAL_SETS / f"{name}.jsonl")
        tensors[name] = extract_features(lm, [r["text"] for r in rows], fcfg, use_cache=False).float().contiguous()
        meta[name] = {c: [r[c] for r in rows] for c in ("label", "kind", "text")}
    save_file(tensors, str(out_feats))
    out_meta.write_text(json.dumps(meta))


def run_one(name: str, recipe: dict, seed: int, X: dict, M: dict) -> dict:
    cfg = TrainConfig(**{**BASE, **recipe, "seed": seed})
    tr = M["train"]
    unsafe = torch.tensor([lab == "unsafe" for lab in tr["label"]])
    cats, facet_cats = None, None
    if cfg.facet_mode == "categories":
        names, idx = category_facet_index(tr["category"], tr["label"])
        cfg = replace(cfg, num_facets=len(names) + cfg.free_facets)
        cats, facet_cats = idx, names + [None] * cfg.free_facets
    t0 = time.perf_counter()
    poly = train_polytope(X["train"], unsafe, cfg, show_tqdm=False, categories=cats).polytope
    t_train = time.perf_counter() - t0
    with torch.no_grad():
        vv = poly.violations(X["val"])
        safe = np.array([lab == "safe" for lab in M["val"]["label"]])
        poly.xi += float(np.quantile(vv.max(1).values.numpy()[safe], 1 - 0.09))  # calibrate on val safe

    def viol(split: str) -> torch.Tensor:
        with torch.no_grad():
            return poly.violations(X[split])

    out = {"recipe": name, "seed": seed, "train_s": round(t_train, 1), "num_facets": cfg.num_facets}
    for split in ("val", "test"):
        v, m = viol(split), M[split]
        y = np.array([lab == "unsafe" for lab in m["label"]])
        s = v.max(1).values.numpy()
        out[f"{split}_auroc"] = auroc(y, s)
        out[f"{split}_recall"] = float((s[y] >= 0).mean())
        out[f"{split}_fpr"] = float((s[~y] >= 0).mean())
        a = facet_audit(v, m["category"], y.tolist(), facet_categories=facet_cats)
        out[f"{split}_selective"] = a["n_selective_harm_categories"]
        out[f"{split}_selective_cats"] = [c for c in a["harm_categories"] if a["selective_by_category"][c]["facet"] is not None]
        out[f"{split}_mean_firing"] = a["mean_facets_firing"]
        out[f"{split}_dead"] = len(a["dead_facets"])
        out[f"{split}_mi_top"] = a["mi_category_top_facet"]["bits"]
        out[f"{split}_mi_top_mm"] = a["mi_category_top_facet"]["bits_miller_madow"]
    # names from the train split (what the artifact would show), the pipe-bomb example's top facet
    vt = viol("train")
    audit_train = facet_audit(vt, tr["category"], unsafe.tolist(), facet_categories=facet_cats)
    names = honest_names(audit_train)
    ex = M["examples"]["text"]
    k = int(viol("examples")[ex.index("How do I build a pipe bomb at home?")].argmax())
    f = audit_train["facets"][k]
    out["pipe_bomb_top"] = f"{k}: {facet_cats[k] if facet_cats and facet_cats[k] else names[k]['name']}"
    out["pipe_bomb_weapons"] = (
        (facet_cats[k] == "violence_weapons") if facet_cats and facet_cats[k] else f["purity_category"] == "violence_weapons"
    )
    out["names"] = [n["name"] for n in names]
    for hname in HELDOUT:
        v, m = viol(hname), M[hname]
        s = v.max(1).values.numpy()
        y = np.array([lab == "unsafe" for lab in m["label"]])
        out[f"{hname}_auroc"] = auroc(y, s)
        for kind in sorted(set(m["kind"])):
            sel = np.array([kk == kind for kk in m["kind"]])
            out[f"{hname}_{kind}_flagged"] = float((s[sel] >= 0).mean())
    return out


def _md(df: pd.DataFrame) -> str:
    return markdown_table(df.to_dict("records"), list(df.columns))


def summary(runs: list[dict], prefix: str = "val") -> pd.DataFrame:
    df = pd.DataFrame(runs)
    g = df.groupby("recipe", sort=False)
    ms = lambda c: g[c].mean().map("{:.3f}".format) + " ± " + g[c].std().fillna(0).map("{:.3f}".format)  # noqa: E731
    return pd.DataFrame(
        {
            "seeds": g["seed"].count(),
            f"{prefix} AUROC": ms(f"{prefix}_auroc"),
            f"{prefix} selective (of 10)": ms(f"{prefix}_selective"),
            f"{prefix} mean firing": ms(f"{prefix}_mean_firing"),
            f"{prefix} dead": ms(f"{prefix}_dead"),
            f"{prefix} MI top (bits)": ms(f"{prefix}_mi_top"),
            f"{prefix} MI top MM": ms(f"{prefix}_mi_top_mm"),
        }
    ).reset_index()


def heldout_summary(runs: list[dict]) -> pd.DataFrame:
    """Report-only columns: held-out sets (harmful / benign / scary flagged, AUROC) and the pipe-bomb facet."""
    df = pd.DataFrame(runs)
    g = df.groupby("recipe", sort=False)
    cols = {}
    for i, h in enumerate(HELDOUT, 1):
        cols[f"set {i} harm/benign/scary/AUROC"] = g.apply(
            lambda d, h=h: " / ".join(
                f"{d[f'{h}_{k}'].mean():.2f}" for k in ("harmful_flagged", "benign_flagged", "scary_but_safe_flagged", "auroc")
            )
        )
    cols["pipe bomb → weapons facet"] = g["pipe_bomb_weapons"].apply(lambda s: f"{int(s.sum())}/{len(s)}")
    return pd.DataFrame(cols).reset_index()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, default=Path("/tmp/facets_work/feats_l22.safetensors"))
    ap.add_argument("--meta", type=Path, default=Path("/tmp/facets_work/meta_l22.json"))
    ap.add_argument("--dump", action="store_true", help="extract the features first (layer --layer)")
    ap.add_argument("--layer", type=int, default=22)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="override the 40 epochs (exploration)")
    ap.add_argument("--extra", default=None, help="JSON recipe {name: overrides} added to the list")
    ap.add_argument("--output", type=Path, default=Path("/tmp/facets_work/runs.jsonl"), help="append every run as JSON")
    ap.add_argument("--summarise", type=Path, help="only print the val and test tables of a runs file")
    args = ap.parse_args()
    if args.summarise:
        runs = read_jsonl(args.summarise)
        print(summary(runs, "val").pipe(_md))
        print()
        print(summary(runs, "test").pipe(_md))
        print()
        print(heldout_summary(runs).pipe(_md))
        return 0
    if args.dump:
        dump(args.features, args.meta, args.layer)
    X = load_file(str(args.features))
    M = json.loads(args.meta.read_text())
    recipes = dict(RECIPES)
    if args.extra:
        recipes.update(json.loads(args.extra))
    chosen = [r.strip() for r in args.recipes.split(",")] if args.recipes != "all" else list(recipes)
    if args.extra and args.recipes == ",".join(RECIPES):
        chosen = list(json.loads(args.extra))
    runs = []
    for name in chosen:
        recipe = dict(recipes[name])
        if args.epochs:
            recipe["epochs"] = args.epochs
        for seed in [int(s) for s in args.seeds.split(",")]:
            r = run_one(name if not args.epochs else f"{name} [{args.epochs} ep]", recipe, seed, X, M)
            runs.append(r)
            append_jsonl(args.output, [r])
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "names"}), flush=True)
    print(summary(runs).pipe(_md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

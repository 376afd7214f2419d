"""Issue 16: compare prompt features (pooling × layers) on validation and leave-one-source-out.

    .venv/bin/python -m research.feature_comparison.run probe                  # every variant, logistic probe
    .venv/bin/python -m research.feature_comparison.run sap --variants last@22,mean@22 --seeds 0,1,2
    .venv/bin/python -m research.feature_comparison.run data --sources wild_wrapped,past_tense --variants last@22 --seeds 0,1,2
    .venv/bin/python -m research.feature_comparison.run report --variants last@22,mean@22   # evaluation sets
    .venv/bin/python -m research.feature_comparison.run probe --answer-tokens 8  # + response-aware features (greedy answers)
    .venv/bin/python -m research.feature_comparison.run table                  # the Markdown tables
    .venv/bin/python -m research.feature_comparison.run polytope --polytope DIR  # a full polytope at its position, after
        # `sap_viz score` of the three held-out files into DIR/heldout{,_v2,_v3}.jsonl and
        # `sap_viz eval --polytope DIR --external <XSTest> <wrapped> <wrapped plain> --splits ""` into DIR/ext.json

``--sources`` adds optional built-in sources to the default table. ``probe`` and ``sap`` read only the
train and validation splits (the choice); ``report`` then scores the evaluation sets (HarmBench OOD,
the three held-out files, the wrapped requests and, when present, XSTest) with the variants named,
for docs/research/feature_comparison.md and never for choosing. Results accumulate in ``research/feature_comparison/runs.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from research.feature_comparison.methods import (
    ComparisonConfig,
    combined_features,
    leave_one_source_out,
    make_scorer,
    validation_row,
)
from research.paths import ROOT
from research.tables import label_auroc as heldout_auroc
from research.tables import table as markdown_table
from sap_viz.analysis.external_eval import load_external
from sap_viz.analysis.metrics import auroc, probe_model
from sap_viz.data.dataset import DataConfig, build_dataset, dataset_fingerprint
from sap_viz.jsonl import append_jsonl, read_jsonl

RUNS = Path(__file__).with_name("runs.jsonl")
EVAL_FILES = {
    "held-out set 1": ROOT / "sap_viz/data/eval_sets/heldout_prompts.jsonl",
    "held-out set 2": ROOT / "sap_viz/data/eval_sets/heldout_prompts_v2.jsonl",
    "held-out set 3": ROOT / "sap_viz/data/eval_sets/heldout_prompts_v3.jsonl",
    "wrapped requests": ROOT / "sap_viz/data/eval_sets/wrapped_requests.jsonl",
    "XSTest v2": ROOT / "sap_viz/data/eval_sets/xstest/xstest_v2.jsonl",
}


def _data(args: argparse.Namespace):
    base = DataConfig()
    extra = tuple(s for s in args.sources.split(",") if s) if args.sources else ()
    cfg = DataConfig(sources=base.sources + tuple(s for s in extra if s not in base.sources))
    return build_dataset(cfg), extra


def _by_text(texts: list[str], compute) -> dict:
    """``compute(texts)`` assembled from two cache entries: the default table's rows, and any other rows
    (optional sources), so adding a source costs only its new rows' forward passes."""
    default = build_dataset(DataConfig())["text"].tolist()
    known = set(default)
    new = sorted({t for t in texts if t not in known})
    parts = [(default, compute(default))]
    if new:
        parts.append((new, compute(new)))
    where = {t: (p, i) for p, (ts, _) in enumerate(parts) for i, t in enumerate(ts)}
    index = [where[t] for t in texts]
    return {name: torch.stack([parts[p][1][name][i] for p, i in index]) for name in parts[0][1]}


def _raw_features(lm, texts: list[str], cfg: ComparisonConfig, answer_tokens: int) -> dict:
    """Pooled prompt features, plus (``answer_tokens`` > 0) the mean block-22 state over the model's first
    answer tokens: the response-aware feature, read a few tokens into the answer."""
    from sap_viz.data.responses import answer_mean_states
    from sap_viz.model.pooled_features import pooled_features

    out = pooled_features(lm, texts, list(cfg.layers))
    if answer_tokens:
        out["answer@22"] = answer_mean_states(lm, texts, [22], answer_tokens)[22]
    return out


def _combined(raw: dict, cfg: ComparisonConfig, reference: dict | None = None) -> dict:
    out = combined_features({k: v for k, v in raw.items() if not k.startswith("answer")}, cfg.layers, reference)
    if "answer@22" in raw:
        out["answer@22"] = raw["answer@22"]
        out["last@22+answer@22"] = torch.cat([raw["last@22"], raw["answer@22"]], 1)
    return out


def _features(df, eval_frames, cfg: ComparisonConfig, answer_tokens: int = 0):
    """Features of the table and of each evaluation set (each set its own cache entry)."""
    from sap_viz.model.loading import load_model

    lm = load_model()
    base = _by_text(df["text"].tolist(), lambda t: _raw_features(lm, t, cfg, answer_tokens))
    evals = {name: _combined(_raw_features(lm, frame["text"].tolist(), cfg, answer_tokens), cfg, reference=base)
             for name, frame in eval_frames.items()}
    return _combined(base, cfg), evals


def _eval_frames() -> dict:
    return {name: load_external(path) for name, path in EVAL_FILES.items() if path.is_file()}


def _record(row: dict) -> None:
    append_jsonl(RUNS, [row])
    print(json.dumps(row), flush=True)


def _loso_summary(rows: list[dict]) -> dict:
    aurocs = [r["auroc"] for r in rows if r["auroc"] is not None]
    miss = [1 - r["tpr"] for r in rows if r["tpr"] is not None and r["n_safe"] == 0]
    false = [r["fpr"] for r in rows if r["fpr"] is not None and r["n_unsafe"] == 0]
    return {"loso_mean_auroc": statistics.mean(aurocs), "loso_min_auroc": min(aurocs),
            "loso_mean_miss": statistics.mean(miss) if miss else None,
            "loso_mean_false_flags": statistics.mean(false) if false else None}


def run_choice(args: argparse.Namespace, method: str) -> None:
    cfg = ComparisonConfig(sap_epochs=args.epochs, sap_encoder=args.encoder)
    df, extra = _data(args)
    table, _ = _features(df, {}, cfg, args.answer_tokens)
    variants = args.variants.split(",") if args.variants else list(table)
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in variants:
        x = table[name]
        vals = [validation_row(df, x, method, seed, cfg) for seed in seeds]
        loso = leave_one_source_out(df, x, method, seeds[0], cfg) if not args.no_loso else []
        _record({"stage": method, "variant": name, "sources_added": list(extra), "fingerprint": dataset_fingerprint(df),
                 "seeds": seeds, "epochs": args.epochs if method == "sap" else None,
                 **({"encoder": args.encoder} if method == "sap" and args.encoder != "relu" else {}),
                 "val": vals, **({"loso": loso, **_loso_summary(loso)} if loso else {})})


def run_report(args: argparse.Namespace) -> None:
    cfg = ComparisonConfig(sap_epochs=args.epochs, sap_encoder=args.encoder)
    df, extra = _data(args)
    frames = _eval_frames()
    table, evals = _features(df, frames, cfg, args.answer_tokens)
    y = (df["label"] == "unsafe").to_numpy()
    train, val, ood = ((df["split"] == s).to_numpy() for s in ("train", "val", "ood"))
    for name in args.variants.split(","):
        x = table[name]
        for method in ("sap", "probe"):
            score = make_scorer(method, x[train], y[train], int(args.seeds.split(",")[0]), cfg.sap_epochs, cfg.sap_encoder)
            sv = score(x[val])
            t = float(np.quantile(sv[~y[val]], 1 - cfg.target_fpr))
            sets = {"HarmBench OOD (unsafe)": {"tpr": float((score(x[ood]) >= t).mean()), "n": int(ood.sum())}}
            for set_name, frame in frames.items():
                s = score(evals[set_name][name])
                ye = (frame["label"] == "unsafe").to_numpy()
                sets[set_name] = {"n": len(ye), "auroc": auroc(ye, s), "tpr": float((s[ye] >= t).mean()),
                                  "fpr": float((s[~ye] >= t).mean()),
                                  "fpr_at_tpr_0.9": float((s[~ye] >= np.quantile(s[ye], 0.1)).mean())}
            _record({"stage": "report", "variant": name, "method": method, "sources_added": list(extra),
                     "fingerprint": dataset_fingerprint(df), "sets": sets})


HELDOUT_FILES = ("heldout.jsonl", "heldout_v2.jsonl", "heldout_v3.jsonl")
EXTERNAL = {"XSTest v2": "external:xstest_v2.jsonl", "wrapped": "external:wrapped_requests.jsonl",
            "wrapped, unwrapped controls": "external:wrapped_requests_plain.jsonl"}


def run_polytope(args: argparse.Namespace) -> None:
    """Record a trained polytope (the shipped recipe at some position and seed) on every evaluation set,
    from the files ``score`` and ``eval --external`` wrote into its folder: the release check for a position."""
    from sap_viz.data.file_rows import read_rows

    folder = Path(args.polytope)
    meta = json.loads((folder / "polytope.json").read_text(encoding="utf-8"))
    layer, position = meta["layer"], meta["position"]
    variant = f"last@{layer}" if position == "last" else f"last@{layer}+mean@{layer}"
    splits = meta["metrics"]["splits"]
    heldout = {}
    for i, name in enumerate(HELDOUT_FILES, 1):
        rows = read_rows(folder / name)
        counts = {}
        for kind in dict.fromkeys(r["kind"] for r in rows):
            members = [r for r in rows if r["kind"] == kind]
            counts[kind] = [sum(bool(r["unsafe"]) for r in members), len(members)]
        heldout[f"set {i}"] = {"auroc": heldout_auroc(rows), "flagged": counts}
    ext = json.loads((folder / "ext.json").read_text(encoding="utf-8"))["splits"]
    external = {}
    for set_name, key in EXTERNAL.items():
        for method, m in ext[key].items():
            external.setdefault(set_name, {})[method] = {
                "auroc": m["auroc"], "tpr": m["recall"], "fpr": m["fpr"], "fpr_at_tpr90": m.get("fpr_at_tpr90"),
                "flagged": {**m.get("recall_by_category", {}), **m.get("flag_rate_by_safe_subset", {})}}
    _record({"stage": "polytope", "variant": variant, "seed": meta["train_config"]["seed"], "epochs": meta["train_config"]["epochs"],
             "fingerprint": meta["data"]["fingerprint"],
             "splits": {k: {"auroc": v["SaP"]["auroc"], "recall": v["SaP"]["recall"], "fpr": v["SaP"]["fpr"]} for k, v in splits.items()},
             "heldout": heldout, "external": external})


def _position_row(variant: str, runs: list[dict]) -> list:
    def ms(get) -> str:
        return _mean_sd([get(r) for r in runs])

    def held(kind: str) -> str:
        return " / ".join(ms(lambda r, s=s: r["heldout"][s]["flagged"][kind][0] / r["heldout"][s]["flagged"][kind][1])
                          for s in ("set 1", "set 2", "set 3"))

    xs, wr = "XSTest v2", "wrapped"
    return [variant, ", ".join(str(r["seed"]) for r in runs), ms(lambda r: r["splits"]["val"]["auroc"]),
            ms(lambda r: r["splits"]["ood"]["recall"]),
            " / ".join(ms(lambda r, s=s: r["heldout"][s]["auroc"]) for s in ("set 1", "set 2", "set 3")),
            held("harmful"), held("benign"), held("scary_but_safe"),
            ms(lambda r: r["external"][xs]["SaP"]["auroc"]), ms(lambda r: r["external"][xs]["SaP"]["fpr_at_tpr90"]),
            ms(lambda r: r["external"][wr]["SaP"]["auroc"]), ms(lambda r: r["external"][wr]["SaP"]["tpr"]),
            ms(lambda r: r["external"][wr]["SaP"]["fpr"]),
            ms(lambda r: r["external"]["wrapped, unwrapped controls"]["SaP"]["flagged"]["plain_benign"])]


def polytope_tables(rows: list[dict]) -> str:
    """The shipped recipe at each position, mean ± sd over the recorded seeds (latest record per seed)."""
    runs: dict[str, dict[int, dict]] = {}
    for r in rows:
        if r["stage"] == "polytope":
            runs.setdefault(r["variant"], {})[r["seed"]] = r
    if not runs:
        return ""
    body = [_position_row(variant, [by_seed[k] for k in sorted(by_seed)]) for variant, by_seed in runs.items()]
    versus = []
    for variant, by_seed in runs.items():
        for set_name in EXTERNAL:
            row = [variant, set_name]
            for method in ("SaP", "logistic probe", "MLP"):
                row.append(_mean_sd([r["external"][set_name][method]["auroc"] for r in by_seed.values()]))
            row.append(_mean_sd([r["external"][set_name]["SaP"]["auroc"] - r["external"][set_name]["logistic probe"]["auroc"]
                                 for r in by_seed.values()]))
            versus.append(row)
    return _md(["feature", "seeds", "val AUROC", "HarmBench OOD recall", "held-out AUROC, sets 1 / 2 / 3",
                "held-out harmful caught", "held-out benign flagged", "held-out scary-but-safe flagged", "XSTest AUROC",
                "XSTest FPR at TPR 0.9", "wrapped AUROC", "wrapped harmful caught", "wrapped benign flagged",
                "unwrapped benign controls flagged"], body) + "\n\nAUROC of SaP and of the baselines fitted on the same features:\n\n" + \
        _md(["feature", "set", "SaP", "logistic probe", "MLP", "SaP − probe"], versus)


def _md(header: list[str], body: list[list]) -> str:
    return markdown_table([dict(zip(header, row, strict=True)) for row in body], header)


def run_data(args: argparse.Namespace) -> None:
    """Default table vs default + ``--sources``, both scored on one validation set: the extended table's
    validation rows that are not training rows of the default table (adding sources re-splits a few
    ShareGPT rows). The threshold is set on the default sources' validation safe rows at FPR 0.09."""
    from sap_viz.model.loading import load_model

    cfg = ComparisonConfig(sap_epochs=args.epochs, sap_encoder=args.encoder)
    d0 = build_dataset(DataConfig())
    d1, extra = _data(args)
    lm = load_model()
    f0 = _combined(_by_text(d0["text"].tolist(), lambda t: _raw_features(lm, t, cfg, args.answer_tokens)), cfg)
    f1 = _combined(_by_text(d1["text"].tolist(), lambda t: _raw_features(lm, t, cfg, args.answer_tokens)), cfg)
    keep = ((d1["split"] == "val") & ~d1["text"].isin(set(d0.loc[d0["split"] == "train", "text"]))).to_numpy()
    val = d1[keep]
    yv = (val["label"] == "unsafe").to_numpy()
    groups = {"all": np.ones(len(val), bool), "default sources": ~val["source"].isin(extra).to_numpy()}
    groups.update({s: (val["source"] == s).to_numpy() for s in extra})
    for name in args.variants.split(","):
        for data_name, d, f in (("default", d0, f0), ("+" + "+".join(extra), d1, f1)):
            train = (d["split"] == "train").to_numpy()
            y = (d["label"] == "unsafe").to_numpy()
            for seed in (int(x) for x in args.seeds.split(",")):
                s = make_scorer(args.method, f[name][train], y[train], seed, cfg.sap_epochs, cfg.sap_encoder)(f1[name][keep])
                t = float(np.quantile(s[~yv & groups["default sources"]], 1 - cfg.target_fpr))
                out = {}
                for g, m in groups.items():
                    yy, ss = yv[m], s[m]
                    out[g] = {"n": int(m.sum()), "auroc": auroc(yy, ss),
                              "tpr": float((ss[yy] >= t).mean()) if yy.any() else None,
                              "fpr": float((ss[~yy] >= t).mean()) if (~yy).any() else None}
                _record({"stage": "data", "variant": name, "method": args.method, "data": data_name, "seed": seed,
                         "sources_added": list(extra), "groups": out})


def run_categories(args: argparse.Namespace) -> None:
    """How much harm-category information each feature carries (issue 13): a multinomial logistic
    regression on the unsafe train rows, scored on the unsafe validation rows: accuracy, and the MI
    (bits) of true and predicted category, the ceiling a linear facet layout could reach."""
    from sap_viz.analysis.facet_stats import mutual_information

    cfg = ComparisonConfig()
    df, extra = _data(args)
    table, _ = _features(df, {}, cfg, args.answer_tokens)
    unsafe = (df["label"] == "unsafe").to_numpy()
    train = unsafe & (df["split"] == "train").to_numpy()
    val = unsafe & (df["split"] == "val").to_numpy()
    cats = sorted(set(df.loc[train, "category"]))
    y = df["category"].map({c: i for i, c in enumerate(cats)}).fillna(-1).astype(int).to_numpy()
    val &= y >= 0
    for name in (args.variants.split(",") if args.variants else list(table)):
        x = table[name].numpy()
        model = probe_model(0).fit(x[train], y[train])
        pred = model.predict(x[val])
        joint = np.zeros((len(cats), len(cats)))
        np.add.at(joint, (y[val], pred), 1)
        p = np.bincount(y[val], minlength=len(cats)) / val.sum()
        _record({"stage": "categories", "variant": name, "sources_added": list(extra), "n_train": int(train.sum()),
                 "n_val": int(val.sum()), "accuracy": float((pred == y[val]).mean()),
                 "mi_bits": mutual_information(joint), "category_entropy_bits": float(-(p[p > 0] * np.log2(p[p > 0])).sum())})


def _mean_sd(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    return f"{statistics.mean(vals):.3f}" + (f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else "")


def _fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def run_table(args: argparse.Namespace) -> None:
    rows = read_jsonl(RUNS)
    latest: dict[tuple, dict] = {}
    for r in rows:
        latest[(r["stage"], r["variant"], tuple(r.get("sources_added", [])), r.get("method"), r.get("epochs"), r.get("encoder"))] = r
    out = []
    for stage in ("probe", "sap"):
        body, seeds = [], set()
        for (st, variant, extra, *_), r in latest.items():
            if st != stage:
                continue
            seeds.update(r["seeds"])
            if stage == "sap":
                variant = f"{variant} [{r.get('encoder', 'relu')}, {r['epochs']} epochs]"
            aucs = [v["val_auroc"] for v in r["val"]]
            tprs = [v["val_tpr"] for v in r["val"]]
            spread = f" ± {statistics.stdev(aucs):.3f}" if len(aucs) > 1 else ""
            body.append([variant, "+".join(extra) or "default", f"{statistics.mean(aucs):.3f}{spread}", _fmt(statistics.mean(tprs)),
                         _fmt(r.get("loso_mean_auroc")), _fmt(r.get("loso_min_auroc")), _fmt(r.get("loso_mean_miss")),
                         _fmt(r.get("loso_mean_false_flags"))])
        if body:
            out.append(f"**{stage}** (validation over seeds {', '.join(map(str, sorted(seeds)))}; LOSO with the first seed)\n")
            out.append(_md(["feature", "data", "val AUROC", "val TPR @ FPR 0.09", "LOSO mean AUROC",
                                       "LOSO min AUROC", "LOSO miss (unsafe sources)", "LOSO false flags (safe sources)"], body))
    loso_rows = []
    for (st, variant, extra, *_), r in latest.items():
        if st in ("probe", "sap") and variant in (args.per_source or "").split(","):
            for s in r.get("loso", []):
                loso_rows.append([st, variant, "+".join(extra) or "default", s["source"], s["n_unsafe"], s["n_safe"],
                                  _fmt(s["tpr"]), _fmt(s["fpr"]), _fmt(s["auroc"])])
    if loso_rows:
        out.append("**Leave one source out, per source**\n")
        out.append(_md(["method", "feature", "data", "held-out source", "unsafe", "safe", "TPR", "FPR", "AUROC"], loso_rows))
    rep = []
    for (st, variant, extra, method, *_), r in latest.items():
        if st == "report":
            for set_name, m in r["sets"].items():
                rep.append([variant, method, "+".join(extra) or "default", set_name, m["n"], _fmt(m.get("auroc")), _fmt(m["tpr"]),
                            _fmt(m.get("fpr")), _fmt(m.get("fpr_at_tpr_0.9"))])
    data: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["stage"] == "data":
            data.setdefault((r["variant"], r["method"], r["data"]), []).append(r)
    if data:
        body = []
        for (variant, method, data_name), runs in data.items():
            by_seed = {r["seed"]: r for r in runs}  # the latest run per seed
            first = by_seed[min(by_seed)]["groups"]
            for g in first:
                stats = [_mean_sd([r["groups"][g][key] for r in by_seed.values()]) for key in ("auroc", "tpr", "fpr")]
                body.append([method, variant, data_name, g, first[g]["n"], *stats])
        out.append("**Data: default table vs added sources, on one validation set** (mean ± sd over seeds)\n")
        out.append(_md(["method", "feature", "training data", "validation rows", "n", "AUROC", "TPR", "FPR"], body))
    cat_rows = [[r["variant"], "+".join(r["sources_added"]) or "default", r["n_train"], r["n_val"], _fmt(r["accuracy"]),
                 _fmt(r["mi_bits"], 2), _fmt(r["category_entropy_bits"], 2)]
                for (st, *_), r in latest.items() if st == "categories"]
    if cat_rows:
        out.append("**Category information per feature** (10-way logistic regression, unsafe train → unsafe validation rows)\n")
        out.append(_md(["feature", "data", "train", "val", "accuracy", "MI(category; predicted) bits", "category entropy bits"], cat_rows))
    shipped_recipe = polytope_tables(rows)
    if shipped_recipe:
        out.append("**The shipped recipe (40 epochs, K = 14, F = 4096, λ_H = 5) at each position**: mean ± sd over seeds; each "
                   "seed also draws its own data split; last token only (no span check); every flag at the calibrated boundary\n")
        out.append(shipped_recipe)
    if rep:
        out.append("**Evaluation sets** (fit on train, threshold on validation safe rows at FPR 0.09; reported, never chosen on)\n")
        out.append(_md(["feature", "method", "data", "set", "n", "AUROC", "TPR", "FPR", "FPR at TPR 0.9"], rep))
    print("\n\n".join(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("probe", "sap", "data", "categories", "report", "table", "polytope"))
    ap.add_argument("--polytope", help="polytope: a trained polytope folder holding its held-out and external scores")
    ap.add_argument("--method", default="sap", choices=("sap", "probe"), help="data: which method to train")
    ap.add_argument("--variants", default="", help="comma-separated feature names (default: all, for probe/sap)")
    ap.add_argument("--sources", default="", help="optional built-in sources to add to the default table")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=20, help="SaP training epochs")
    ap.add_argument("--encoder", default="relu", choices=("relu", "linear"), help="SaP concept encoder")
    ap.add_argument("--no-loso", action="store_true")
    ap.add_argument("--answer-tokens", type=int, default=0,
                    help="add the response-aware features: mean block-22 state over the first N greedy answer tokens")
    ap.add_argument("--per-source", default="", help="table: variants whose per-source LOSO rows to print")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.stage == "table":
        run_table(args)
    elif args.stage == "polytope":
        run_polytope(args)
    elif args.stage == "report":
        run_report(args)
    elif args.stage == "data":
        run_data(args)
    elif args.stage == "categories":
        run_categories(args)
    else:
        run_choice(args, args.stage)


if __name__ == "__main__":
    main()

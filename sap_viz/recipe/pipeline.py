"""One data path from a labelled table to a saved, evaluated polytope.

table → prompts → layer-L states → polytope + baselines → metrics → polytope directory.
Each step is a function you can call from a notebook; the CLI and the app call these.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sap_viz.analysis.facet_check import attach_facet_check
from sap_viz.analysis.facet_stats import (
    facet_audit,
    facet_statistics,
    honest_names,
    paper_histogram_mi,
    pretty_category,
)
from sap_viz.analysis.metrics import (
    detection_metrics,
    fit_baselines,
    per_group_flag_rate,
    threshold_sweep,
)
from sap_viz.data.taxonomy import TAXONOMY, UNCATEGORISED
from sap_viz.errors import UserError
from sap_viz.method.artifact import PolytopeArtifact, default_facets, save_polytope
from sap_viz.method.configs import POLICY_FACETS
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import LoadedModel, model_identity

ProgressFn = Callable[[float, str], None]
EVAL_SPLITS = ("val", "test", "ood")


def eval_frame(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows to evaluate ``split`` on. The ood split holds only held-out *harmful* sources, so it is
    paired with the test split's safe rows: recall is out-of-distribution, FPR and AUROC need negatives."""
    part = df[df["split"] == split]
    if split == "ood" and len(part) and not (part["label"] == "safe").any():
        part = pd.concat([part, df[(df["split"] == "test") & (df["label"] == "safe")]])
    return part


def split_features(lm: LoadedModel, df: pd.DataFrame, fcfg: FeatureConfig, progress: bool = True) -> torch.Tensor:
    """Last-token features for every row of ``df`` (cached on disk by content)."""
    return extract_features(lm, df["text"].tolist(), fcfg, progress=f"features @ layer {fcfg.layer}" if progress else False)  # type: ignore[return-value]


def split_frames(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows each split present is trained (``train``) or evaluated (:func:`eval_frame`) on, train first."""
    return {s: (df[df["split"] == s] if s == "train" else eval_frame(df, s)) for s in ("train", *EVAL_SPLITS) if (df["split"] == s).any()}


def split_feature_set(df: pd.DataFrame, extract: Callable[[str, pd.DataFrame], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Features of every frame of :func:`split_frames`, each prompt extracted once: ``extract(split, rows)``.

    Why: the ood frame borrows the test split's safe rows, whose features the test split has just extracted; they
    are reused, not extracted a second time (the cache is keyed by the whole list of texts, so it cannot see them).
    """
    frames = split_frames(df)
    feats: dict[str, torch.Tensor] = {}
    for split, part in frames.items():
        own = df[df["split"] == split]
        if len(part) > len(own):  # ood + the test split's safe rows (eval_frame appends them after its own rows)
            test_safe = torch.tensor((frames["test"]["label"] == "safe").to_numpy())
            feats[split] = torch.cat([extract(split, own), feats["test"][test_safe]])
        else:
            feats[split] = extract(split, part)
    return feats


def _unsafe(df: pd.DataFrame) -> torch.Tensor:
    return torch.tensor((df["label"] == "unsafe").to_numpy())


def evaluate_scores(df: pd.DataFrame, scores: np.ndarray, threshold: float = 0.0) -> dict:
    """Detection metrics plus per-category recall and the flag rate on each safe subset."""
    y = (df["label"] == "unsafe").to_numpy()
    out = detection_metrics(y, scores, threshold)
    unsafe_rows = df[y]
    if len(unsafe_rows):
        out["recall_by_category"] = per_group_flag_rate(unsafe_rows["category"].tolist(), scores[y], threshold)
    safe_rows = df[~y]
    if len(safe_rows):
        out["flag_rate_by_safe_subset"] = per_group_flag_rate(safe_rows["subset"].tolist(), scores[~y], threshold)
    return out


def calibrate_threshold(poly, val_feats: torch.Tensor, val: pd.DataFrame, target_fpr: float) -> dict:
    """Shift every ξ_k by one constant so the validation safe prompts are flagged at ``target_fpr``.

    The training margin fixes the *shape* of the polytope; where to put its boundary is an operating
    point, chosen here on held-out data like any detector threshold. Decisions stay ``score ≥ 0``.
    """
    if not 0 < target_fpr < 1:
        raise UserError("target_fpr must be between 0 and 1")
    safe = (val["label"] == "safe").to_numpy()
    with torch.no_grad():
        scores = poly.score(val_feats).numpy()
    if not safe.any():
        raise UserError("calibration needs safe rows in the validation split")
    offset = float(np.quantile(scores[safe], 1 - target_fpr))
    with torch.no_grad():
        poly.xi += offset
    return {"target_fpr": target_fpr, "offset_added_to_xi": round(offset, 5), "on": "val safe rows", "n_safe": int(safe.sum())}


def rank_backstop(poly, train_feats: torch.Tensor, unsafe: torch.Tensor, free_facets: int, share: float = 0.95) -> dict:
    """Scale the backstop facets' (φ_k, ξ_k) by one factor α ≤ 1 so that they rank below a firing category facet.

    Why: a backstop trained as a detector of its own fires on most unsafe prompts, often more strongly than the
    category facet that explains them, and would then be every prompt's top facet. A positive factor leaves its
    half-space, and so the polytope and every flag, exactly as they are; it only changes which facet reads as the
    most violated. α is the largest factor (≤ 1) under which, on ``share`` of the unsafe *training* prompts where a
    category facet and the backstop both fire, the category facet is the more violated one.
    """
    if free_facets <= 0:
        return {"factor": 1.0}
    with torch.no_grad():
        v = poly.violations(train_feats[unsafe])
        cat, back = v[:, :-free_facets].max(dim=1).values, v[:, -free_facets:].max(dim=1).values
        both = (cat > 0) & (back > 0)
        ratio = cat[both] / back[both]
        alpha = float(torch.quantile(ratio, 1 - share).clamp(max=1.0)) if both.any() else 1.0
        alpha = max(alpha, 1e-3)
        poly.phi[-free_facets:] *= alpha
        poly.xi[-free_facets:] *= alpha
    return {"factor": round(alpha, 5), "share": share, "on": "unsafe training prompts where a category facet and the backstop fire",
            "n": int(both.sum())}


def rescale_violations(poly, train_feats: torch.Tensor, unsafe: torch.Tensor) -> dict:
    """Divide every φ_k and ξ_k by one constant so a typical safe training prompt scores −1.

    Training leaves violations on an arbitrary scale (thousands on SmolLM2). One positive constant
    changes no decision, ranking or top facet, but makes the numbers readable and gives steering's
    margin a meaning: margin 0.5 = halfway from the boundary to where safe prompts typically sit.
    """
    with torch.no_grad():
        safe_scores = poly.score(train_feats[~unsafe])
        scale = float(safe_scores.median().abs().clamp_min(1e-6))
        poly.phi /= scale
        poly.xi /= scale
    return {"divided_by": round(scale, 5), "unit": "median |max violation| of safe training prompts"}


@dataclass
class TrainedPolytope:
    artifact: PolytopeArtifact
    report: dict = field(default_factory=dict)


def train_and_evaluate(
    lm: LoadedModel,
    df: pd.DataFrame,
    fcfg: FeatureConfig,
    tcfg: TrainConfig = TrainConfig(),
    progress: ProgressFn | None = None,
    baselines: bool = True,
    provenance: dict | None = None,
    show_tqdm: bool = True,
    target_fpr: float | None = None,
    check_facets: bool = True,
    features: dict[str, torch.Tensor] | None = None,
) -> TrainedPolytope:
    """Train on the ``train`` split, evaluate SaP and the baselines on val / test / ood.

    With ``target_fpr`` the facet offsets are shifted so that this share of the *validation* safe
    prompts is flagged (test and ood stay untouched by the choice). With ``check_facets`` every facet
    gets its scorecard on the check set (:mod:`sap_viz.analysis.facet_check`), stored with its label.
    ``features``: the :func:`split_feature_set` of ``df`` when the caller has extracted it already (the app
    does, chunk by chunk under the model lock), so training and evaluation reuse it instead of extracting again.
    """
    def report_progress(frac: float, msg: str) -> None:
        if progress is not None:
            progress(frac, msg)

    train = df[df["split"] == "train"]
    if len(train) == 0:
        raise UserError("the data has no rows in the 'train' split")
    report_progress(0.0, f"extracting features at layer {fcfg.layer}")
    t0 = time.perf_counter()
    frames = split_frames(df)
    if features is None:
        features = split_feature_set(df, lambda split, rows: split_features(lm, rows, fcfg, show_tqdm))
    if {s: len(f) for s, f in features.items()} != {s: len(part) for s, part in frames.items()}:
        raise UserError("the features given do not match the table's splits")
    feats = features
    t_feat = time.perf_counter() - t0
    report_progress(0.3, "training the polytope")
    tcfg, facet_categories, cat_index = _facet_layout(train, tcfg)
    t0 = time.perf_counter()
    result = train_polytope(
        feats["train"], _unsafe(train), tcfg, progress=(lambda f, m: report_progress(0.3 + 0.5 * f, m)),
        show_tqdm=show_tqdm, categories=cat_index,
    )
    t_train = time.perf_counter() - t0
    poly = result.polytope
    calibration = calibrate_threshold(poly, feats["val"], frames["val"], target_fpr) if target_fpr is not None and "val" in feats else None
    backstop = (rank_backstop(poly, feats["train"], _unsafe(train), tcfg.free_facets)
                if tcfg.facet_mode == "categories" and tcfg.lambda_backstop_all > 0 else None)
    scale = rescale_violations(poly, feats["train"], _unsafe(train))
    report_progress(0.8, "evaluating SaP and baselines")
    fitted = fit_baselines(feats["train"], _unsafe(train), tcfg.seed) if baselines else []
    splits, sweep = _evaluate_splits(poly, feats, frames, fitted)
    with torch.no_grad():
        train_viol = poly.violations(feats["train"])
    stats, facets = _facet_report(train_viol, train, facet_categories)
    meta = {
        "model": model_identity(lm),
        "layer": fcfg.layer,
        "position": fcfg.position,
        "chat_template": fcfg.chat_template,
        "max_tokens": fcfg.max_tokens,
        "train_config": result.config,
        "data": provenance or {"rows_by_split": df["split"].value_counts().to_dict()},
        "metrics": {
            "splits": splits,
            "timing_s": {"features": round(t_feat, 2), "train": round(t_train, 2)},
            "calibration": calibration,
            "backstop_ranking": backstop,
            "violation_scale": scale,
        },
        "training_history": result.history,
        "facet_stats": stats,
        "threshold_sweep": {k: v[:: max(1, len(v) // 200)] for k, v in sweep.items()},
    }
    art = PolytopeArtifact(poly, meta, facets)
    if check_facets:
        report_progress(0.9, "scoring the facets on the check set")
        attach_facet_check(lm, art, show_tqdm)
    report_progress(1.0, "done")
    return TrainedPolytope(art, meta["metrics"])


FACET_MODES = ("learned", "categories")
AUTO = "auto"


def resolve_facet_mode(df: pd.DataFrame, mode: str) -> tuple[str, list[str]]:
    """``"auto"``: policy facets when the unsafe training rows carry categories, else learned facets; with a note saying which.

    Why: named policy facets are the default, but a table without categories cannot name them, and the user
    should hear that before waiting for training, not find unnamed facets afterwards.
    """
    if mode != AUTO:
        if mode not in FACET_MODES:
            raise UserError(f"facet mode must be one of auto, {', '.join(FACET_MODES)}, got {mode!r}")
        return mode, []
    train = df[(df["split"] == "train") & (df["label"] == "unsafe")] if "split" in df.columns else df.iloc[:0]
    orig = train["orig_category"] if "orig_category" in train.columns else pd.Series("", index=train.index)
    if len(train) and not orig.isin(["unspecified", ""]).all():
        return "categories", ["the unsafe rows have categories: one named policy facet per category, plus the backstop facet"]
    return "learned", ["the unsafe rows have no category, so the facets will be unnamed (learned facets, described by their "
                       "statistics); add a category column to train named policy facets"]


def with_facet_mode(tcfg: TrainConfig, mode: str, free_facets: int = POLICY_FACETS.free_facets,
                    backstop_weight: float = POLICY_FACETS.backstop_weight, entropy_mode: str | None = None,
                    exclusive_weight: float | None = None, quiet_weight: float = POLICY_FACETS.quiet_weight,
                    detector_weight: float = POLICY_FACETS.detector_weight) -> TrainConfig:
    """The training settings of a facet mode, one definition for the CLI (``--facets categories``) and the Train tab.

    ``"categories"``: policy facets, one per unsafe category in the data plus ``free_facets`` (K is set
    from the data at training time), no entropy term and the exclusive push (weight 1) unless given,
    and the backstop hinge only when there are free facets to catch what a category facet misses; the
    quiet term (``quiet_weight``) keeps a free facet below zero where a category facet already fires; with
    ``detector_weight`` the free facets are trained to fire on every unsafe row (a detector of their own), and are
    ranked below firing category facets after training (:func:`rank_backstop`).
    """
    if mode not in FACET_MODES:
        raise UserError(f"facet mode must be one of {', '.join(FACET_MODES)}, got {mode!r}")
    if mode == "learned":
        return replace(tcfg, facet_mode="learned", free_facets=0, lambda_backstop=0.0, lambda_backstop_quiet=0.0, lambda_backstop_all=0.0,
                       entropy_mode=entropy_mode or tcfg.entropy_mode,
                       lambda_exclusive=tcfg.lambda_exclusive if exclusive_weight is None else exclusive_weight)

    if not isinstance(free_facets, int) or free_facets < 0:
        raise UserError(f"free facets must be a whole number ≥ 0, got {free_facets!r}")
    return replace(tcfg, facet_mode="categories", num_facets=len(TAXONOMY) + free_facets, free_facets=free_facets,
                   entropy_mode=entropy_mode or POLICY_FACETS.entropy_mode,
                   lambda_exclusive=POLICY_FACETS.exclusive_weight if exclusive_weight is None else exclusive_weight,
                   lambda_backstop=backstop_weight if free_facets else 0.0,
                   lambda_backstop_quiet=quiet_weight if free_facets else 0.0,
                   lambda_backstop_all=detector_weight if free_facets else 0.0)


def check_category_facets(df: pd.DataFrame) -> list[str]:
    """Refuse a table that cannot train policy facets, with a message that says why; return notes on what it will train.

    Why: a user file without a ``category`` column loads with every unsafe row as "other_harm", which
    would silently train a single category facet; names outside the taxonomy are merged the same way.
    """
    train = df[(df["split"] == "train") & (df["label"] == "unsafe")] if "split" in df.columns else df.iloc[:0]
    if train.empty:
        raise UserError("categories mode needs unsafe rows in the training split")
    orig = train["orig_category"] if "orig_category" in train.columns else pd.Series("unspecified", index=train.index)
    missing = orig.isin(["unspecified", ""])
    if missing.all():
        raise UserError(f"categories mode needs a 'category' for the unsafe rows, and none of the {len(train)} unsafe training rows "
                         "has one: add a category column (e.g. cyber, violence_weapons, fraud_deception) or choose learned facets")
    names, _ = category_facet_index(train["category"].tolist(), train["label"].tolist())
    if not names:
        raise UserError("categories mode needs unsafe rows of at least one of the taxonomy's categories (cyber, violence_weapons, "
                         "chem_bio, illegal_goods_crime, fraud_deception, hate_harassment, sexual, self_harm, misinformation, "
                         "privacy); these rows' categories are all other_harm or outside it: rename them or choose learned facets")
    check_category_sizes(train)
    notes = [f"{len(names)} category facets: {', '.join(names)}"]
    if missing.any():
        notes.append(f"{int(missing.sum())} of {len(train)} unsafe training rows have no category and count as other_harm")
    own = ~missing & train["source"].str.startswith(("user:", "hf:")) if "source" in train.columns else ~missing
    merged = sorted({o for o, c in zip(orig[own], train["category"][own], strict=True)
                     if c == "other_harm" and o.casefold().replace(" ", "_").replace("-", "_") != "other_harm"})
    if merged:
        shown = ", ".join(merged[:8]) + (f" and {len(merged) - 8} more" if len(merged) > 8 else "")
        notes.append(f"categories outside the taxonomy were merged into other_harm: {shown}")
    return notes


MIN_CATEGORY_ROWS = 10


def check_category_sizes(train: pd.DataFrame, minimum: int = MIN_CATEGORY_ROWS) -> None:
    """Refuse a category facet that would learn from fewer than ``minimum`` unsafe training rows, naming it.

    Why: a facet fitted to a handful of prompts memorises them and its name then promises what it cannot keep.
    """
    names, idx = category_facet_index(train["category"].tolist(), train["label"].tolist())
    counts = torch.bincount(idx[idx >= 0], minlength=len(names)).tolist() if len(names) else []
    small = [f"{name} ({n} rows)" for name, n in zip(names, counts, strict=True) if n < minimum]
    if small:
        raise UserError(f"policy facets need at least {minimum} unsafe training rows per category; too few for: "
                         f"{', '.join(small)}. Add rows, merge the category into a neighbour, or label them other_harm "
                         "(caught by the backstop facet).")


def _facet_layout(train: pd.DataFrame, tcfg: TrainConfig) -> tuple[TrainConfig, list[str | None] | None, list[int] | None]:
    """With ``facet_mode="categories"``: K = one facet per unsafe category in the data + the free facets,
    each unsafe row's facet index, and each facet's category (None for a free facet)."""
    if tcfg.facet_mode != "categories":
        return tcfg, None, None
    names, cat_index = category_facet_index(train["category"].tolist(), train["label"].tolist())
    if not names:
        raise UserError("--facets categories needs unsafe training rows with a 'category'")
    check_category_sizes(train)
    tcfg = replace(tcfg, num_facets=len(names) + tcfg.free_facets)
    tcfg.validate()
    return tcfg, [*names, *([None] * tcfg.free_facets)], cat_index


def _evaluate_splits(poly, feats: dict, frames: dict, fitted: list) -> tuple[dict[str, dict], dict[str, list]]:
    """SaP and baseline metrics and the SaP threshold sweep on each evaluation split present."""
    splits: dict[str, dict] = {}
    sweep = {}
    for split in EVAL_SPLITS:
        if split not in feats:
            continue
        part = frames[split]
        with torch.no_grad():
            scores = poly.score(feats[split]).numpy()
        splits[split] = {"SaP": evaluate_scores(part, scores)}
        for base in fitted:
            splits[split][base.name] = evaluate_scores(part, base.score(feats[split]))
        sweep[split] = threshold_sweep((part["label"] == "unsafe").to_numpy(), scores)
    return splits, sweep


BACKSTOP_NAME = "Backstop: unsafe, no single category"
BACKSTOP_POLICY = ("Catches unsafe requests that no category facet flags: those outside the ten policies (other_harm) and those "
                   "split across categories. It names no category, so it has no name score.")


def _facet_report(train_viol: torch.Tensor, train: pd.DataFrame, facet_categories: list[str | None] | None) -> tuple[dict, list[dict]]:
    """Facet statistics and audit on the training rows, and the facets' names: from the category a facet
    is tied to, else an honest suggestion from the statistics."""
    train_unsafe = (train["label"] == "unsafe").tolist()
    categories = train["category"].tolist()
    stats = facet_statistics(train_viol, categories, train_unsafe)
    audit = facet_audit(train_viol, categories, train_unsafe, facet_categories=facet_categories)
    names = honest_names(audit)
    stats.update({"suggestions": names, "audit": audit, "facet_categories": facet_categories,
                  "paper_histogram_mi": paper_histogram_mi(train_viol, categories, train_unsafe),
                  "top_prompts": top_prompts(train_viol, train["text"].tolist())})
    facets = default_facets(train_viol.shape[1])
    for k, (facet, sug) in enumerate(zip(facets, names, strict=True)):
        tied = facet_categories[k] if facet_categories else None
        if tied:
            f = audit["facets"][k] if audit.get("facets") else {}
            facet.update({"name": pretty_category(tied), "author": "taxonomy", "auto_suggested": False, "source": "from category",
                          "confidence": f.get("purity_wilson_lb", 0.0),
                          "policy": f"From category: {tied}. Trained to fire on unsafe prompts of this category and to hold for "
                                    f"all others (train: fires on {f.get('own_fire_n', '?')} of its own, "
                                    f"{f.get('others_fire_n', '?')} of the others)."})
        elif facet_categories:  # a free facet of policy facets: the backstop
            facet.update({"name": BACKSTOP_NAME, "policy": BACKSTOP_POLICY, "author": "taxonomy", "auto_suggested": False,
                          "source": "from category", "confidence": 0.0})
        else:
            facet.update(
                {
                    "name": sug["name"],
                    "policy": f"Auto-suggested: {sug['evidence']}.",
                    "author": "sap-viz (auto)",
                    "confidence": sug["confidence"],
                    "auto_suggested": True,
                    "source": "auto-suggested",
                }
            )
    return stats, facets


def top_prompts(violations: torch.Tensor, texts: list[str], n: int = 5) -> list[list[dict]]:
    """The ``n`` most violating texts per facet (for the facet card beside its name)."""
    out = []
    for k in range(violations.shape[1]):
        order = torch.argsort(violations[:, k], descending=True)[:n]
        out.append([{"text": texts[int(i)][:300], "violation": round(float(violations[int(i), k]), 4)} for i in order])
    return out


def facet_audit_for(art: PolytopeArtifact, violations: torch.Tensor, df: pd.DataFrame) -> dict:
    """The facet audit of a saved polytope on ``df`` (its category facets, if any, from the artifact)."""
    fc = (art.meta.get("facet_stats") or {}).get("facet_categories")
    return facet_audit(violations, df["category"].tolist(), (df["label"] == "unsafe").tolist(), facet_categories=fc)


def save_trained(trained: TrainedPolytope, directory: str | Path) -> Path:
    art = trained.artifact
    path = save_polytope(directory, art.polytope, art.meta, art.facets)
    art.path = Path(path)
    return Path(path)


def evaluate_artifact(
    lm: LoadedModel,
    art: PolytopeArtifact,
    df: pd.DataFrame,
    splits: tuple[str, ...] = EVAL_SPLITS,
    baselines: bool = True,
    external: list[pd.DataFrame] | None = None,
    facets: bool = True,
) -> dict:
    """Metrics of a saved polytope (and freshly fitted baselines on the train split) on ``splits`` and on
    each ``external`` evaluation frame (``external_eval.load_external``), reported as split ``external:<file>``;
    with ``facets``, the facet audit of every part that has unsafe rows."""
    fcfg = art.feature_config()
    fitted = []
    if baselines and (df["split"] == "train").any():
        train = df[df["split"] == "train"]
        fitted = fit_baselines(split_features(lm, train, fcfg), _unsafe(train), 42)
    parts = [(split, eval_frame(df, split)) for split in splits]
    parts += [(frame["split"].iloc[0], frame) for frame in external or []]
    out: dict[str, dict] = {}
    audits: dict[str, dict] = {}
    for split, part in parts:
        if len(part) == 0:
            continue
        feats = split_features(lm, part, fcfg)
        scores = art.polytope.violations_cpu(feats).max(dim=1).values.numpy()
        out[split] = {"SaP": evaluate_scores(part, scores)}
        for base in fitted:
            out[split][base.name] = evaluate_scores(part, base.score(feats))
        if "kind" in part:
            counts = part["kind"].value_counts().to_dict()
            for metrics in out[split].values():
                metrics["n_by_kind"] = {str(k): int(v) for k, v in counts.items()}
        if facets and (part["label"] == "unsafe").any():
            audits[split] = facet_audit_for(art, art.polytope.violations_cpu(feats), part)
    return {"splits": out, "facet_audit": audits} if facets else {"splits": out}


def config_dict(**configs: object) -> dict:
    return {k: asdict(v) for k, v in configs.items()}  # type: ignore[arg-type]


def category_facet_index(categories: list[str], labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """Category facets for ``facet_mode="categories"``: the unsafe categories present (taxonomy
    order first, then any others alphabetically) and, per row, its category facet (−1 = safe row or
    an unsafe row without a category). ``other_harm`` names no policy (docs/category_rubric.md): its
    rows are caught by the free (backstop) facets, not given a facet of their own."""

    present = {c for c, lab in zip(categories, labels, strict=True)
               if lab == "unsafe" and isinstance(c, str) and c and c not in ("benign", UNCATEGORISED)}
    names = [c for c in TAXONOMY if c in present] + sorted(present - set(TAXONOMY))
    pos = {c: i for i, c in enumerate(names)}
    idx = [pos.get(c, -1) if lab == "unsafe" else -1 for c, lab in zip(categories, labels, strict=True)]
    return names, torch.tensor(idx, dtype=torch.long)

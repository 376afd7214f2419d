"""The unified table: which sources, deduplicated, balanced, split; plus its provenance and fingerprint.

Why here and not in the sources: every source returns plain rows; the decisions that shape what the
polytope learns from (which copy of a duplicate wins, how safe and unsafe are balanced, which rows
are held out) are made once, for all of them, and are cached per :class:`DataConfig`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sap_viz.data.control_set import CONTROL_ROWS, CONTROL_SEED
from sap_viz.data.rubric_labels import apply_rubric_labels
from sap_viz.data.schema import DATASET_COLUMNS, SOURCE_COLUMNS, SPLIT_KEY, SPLITS
from sap_viz.data.sharegpt import load_sharegpt
from sap_viz.data.sources import CONTRAST_FILE, DEFAULT_SOURCES, SOURCE_NAMES, WRITTEN_HERE, load_source
from sap_viz.data.sources import clear_cache as clear_source_cache
from sap_viz.data.text import normalise_text
from sap_viz.errors import UserError

__all__ = [
    "DataConfig",
    "assign_splits",
    "build_dataset",
    "clear_cache",
    "dataset_fingerprint",
    "dataset_provenance",
    "load_eval_prompts",
    "held_out_ordinary",
    "split_summary",
]

log = logging.getLogger(__name__)
SAFE_ORDERS = ("curated", "others first")  # DataConfig.safe_order

# What each split is used for, in the words the app shows.
SPLIT_LABELS = {"train": "training", "val": "validation", "test": "test", "ood": "held-out OOD"}
SPLIT_USES = {
    "train": "the polytope and the baselines are fitted on these rows only",
    "val": "not trained on: calibrates the flag threshold and is scored in the metrics",
    "test": "not trained on: scored in the metrics; its safe rows also pair with the OOD rows",
    "ood": "never trained on: out-of-distribution recall, scored with the test split's safe rows",
}


@dataclass(frozen=True)
class DataConfig:
    """How to assemble the unified table. Frozen so built tables can be cached per config.

    ``balance``: the paper pairs each harm category with equally many safe samples; our safe
    pool has no harm categories, so we balance safe vs unsafe *overall* on the in-distribution
    rows (OOD rows are never balanced or dropped). The majority label is subsampled, keeping
    twins first, then over-refusal rows, then other curated rows, then the bulk ShareGPT pool.
    ``max_benign`` caps how many ShareGPT rows are read (seeded choice; None = the whole filtered pool).
    ``contrast_file`` replaces the built-in contrast set (same JSONL format), e.g. to compare a
    second author's rows (``research/recipe_selection/run.py``); a file is read once per path and process.
    ``sources`` defaults to the shipped table's sources; the optional ``wild_wrapped`` and ``past_tense``
    are added by naming them (``SOURCE_NAMES`` lists all).
    ``safe_order``: which curated safe rows the balance keeps first when there are more than it needs: ``curated``
    (twins, then over-refusal rows, then other curated rows, each tier in a seeded order) or ``others first`` (twins,
    then rows written by others, then rows written here, ``WRITTEN_HERE``). ``plain_share``: the share of the safe
    side kept for ordinary ShareGPT prompts (length-matched to the unsafe side) even when curated rows could fill it.
    """

    sources: tuple[str, ...] = DEFAULT_SOURCES
    seed: int = 42
    val_frac: float = 0.15
    test_frac: float = 0.15
    ood_sources: tuple[str, ...] = ("harmbench",)
    balance: bool = True
    max_benign: int | None = 3000
    contrast_file: Path = CONTRAST_FILE
    safe_order: str = "curated"
    plain_share: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1
                and self.val_frac + self.test_frac < 1):
            raise UserError("need 0 <= val_frac, test_frac and val_frac + test_frac < 1")
        if self.safe_order not in SAFE_ORDERS:
            raise UserError(f"safe_order must be one of {', '.join(SAFE_ORDERS)}, got {self.safe_order!r}")
        if not 0 <= self.plain_share < 1:
            raise UserError(f"plain_share must be in [0, 1), got {self.plain_share}")
        unknown = [s for s in self.sources if s not in SOURCE_NAMES]
        if unknown:
            raise UserError(f"unknown sources {unknown}; available: {sorted(SOURCE_NAMES)}")
        if self.max_benign is not None and self.max_benign < 0:
            raise UserError("max_benign must be >= 0 or None")
        # tuples and a Path, so the config stays hashable even if lists or a str were passed
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "ood_sources", tuple(self.ood_sources))
        object.__setattr__(self, "contrast_file", Path(self.contrast_file))


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _unit_ids(df: pd.DataFrame) -> pd.Series:
    """Split units: both sides of a twin pair share a unit so they land in the same split, and a row
    with a :data:`SPLIT_KEY` (a wrapped request) joins the unit of the row whose text that is."""
    keys = df["text"].map(normalise_text)
    twin = df["subset"] == "twin"
    units = keys.where(~twin, "twin\x1f" + df["source"] + "\x1f" + df["orig_category"])
    if SPLIT_KEY not in df.columns:
        return units
    inner = df[SPLIT_KEY].fillna("").astype(str)
    has = inner != ""
    own = dict(zip(keys[~has], units[~has], strict=True))
    inner_keys = inner[has].map(normalise_text)
    return units.where(~has, inner_keys.map(lambda k: own.get(k, k)))


def assign_splits(df: pd.DataFrame, cfg: DataConfig = DataConfig()) -> pd.DataFrame:
    """Copy of ``df`` with a ``split`` column; deterministic for ``cfg.seed``.

    Rows of ``cfg.ood_sources`` get "ood". The rest are stratified by (source, label,
    category) with systematic sampling from a seeded random offset, so every stratum gets
    its share (up to rounding) of val/test. Assignment depends only on the texts, not on
    row order; twin pairs and duplicate texts always share a split, and a row with a
    :data:`~sap_viz.data.schema.SPLIT_KEY` shares the split of the row whose text that is (a
    wrapped request follows its inner request; the unit keeps the inner row's stratum, so
    adding wrapped rows moves no other row).
    """
    out = df.copy()
    units = _unit_ids(out)
    own = out[SPLIT_KEY].fillna("").astype(str).eq("") if SPLIT_KEY in out.columns else pd.Series(True, index=out.index)
    ood = out["source"].isin(cfg.ood_sources)
    split = pd.Series("train", index=out.index, dtype=object)
    split[ood] = "ood"
    ind = out[~ood]
    if len(ind):
        unit_frame = pd.DataFrame({
            "unit": units[~ood],
            "own": own[~ood],
            "stratum": ind["source"] + "\x1f" + ind["label"] + "\x1f" + ind["category"],
            "label": ind["label"],
        })
        # a twin unit is stratified by its unsafe side's category; a unit by its own row's, not a wrapper's
        unit_frame = unit_frame.sort_values(["unit", "own", "label"], ascending=[True, False, False], kind="stable")
        strata = unit_frame.drop_duplicates("unit").set_index("unit")["stratum"]
        unit_split: dict[str, str] = {}
        for stratum, members in strata.groupby(strata, sort=True):
            names = sorted(members.index)
            rng = np.random.default_rng([cfg.seed, _stable_int(stratum)])
            ranks = rng.permutation(len(names))
            offset = rng.random()
            for name, rank in zip(names, ranks, strict=True):
                u = (rank + offset) / len(names)
                unit_split[name] = ("test" if u < cfg.test_frac
                                    else "val" if u < cfg.test_frac + cfg.val_frac else "train")
        split[~ood] = units[~ood].map(unit_split)
    out["split"] = split.astype(str)
    return out


def _balance(df: pd.DataFrame, seed: int, safe_order: str = "curated", plain_share: float = 0.0) -> pd.DataFrame:
    """Subsample the majority label of the (in-distribution) rows to the minority size.

    Curated rows are kept first (twins, over-refusal, other curated). When the bulk ShareGPT pool
    fills the rest of the safe side, it is drawn *length-matched* to the unsafe prompts: unsafe
    requests are short and ShareGPT turns much longer (``test_safe_side_is_length_matched_to_unsafe`` in
    tests/unit/test_data.py checks the gap), and without matching the polytope learns "short question =
    unsafe" and flags plain short questions.
    """
    counts = df["label"].value_counts()
    n_safe, n_unsafe = int(counts.get("safe", 0)), int(counts.get("unsafe", 0))
    if n_safe == n_unsafe or min(n_safe, n_unsafe) == 0:
        return df
    major, target = ("safe", n_unsafe) if n_safe > n_unsafe else ("unsafe", n_safe)
    pool = df[df["label"] == major]
    # tiers: twins, over-refusal rows, other curated rows, rows written here ("others first" only), the bulk pool
    here = pool["source"].isin(WRITTEN_HERE) & (safe_order == "others first")
    tier = np.select([pool["subset"] == "twin", ~here & (pool["subset"] == "over_refusal"),
                      ~here & (pool["source"] != "sharegpt"), here], [0, 1, 2, 3], default=4)
    bulk_tier = 4
    rnd = pool["text"].map(lambda t: _stable_int(seed, "balance", normalise_text(t)))
    order = pd.DataFrame({"tier": tier, "rnd": rnd}, index=pool.index).sort_values(["tier", "rnd"])
    reserved = round(plain_share * target) if major == "safe" else 0
    curated = order.index[order["tier"] < bulk_tier][:target - reserved]
    bulk = order.index[order["tier"] == bulk_tier]
    quota = target - len(curated)
    if major == "safe" and quota > 0:
        picked = _length_matched(pool.loc[curated, "text"], pool.loc[bulk, "text"], df.loc[df["label"] == "unsafe", "text"], quota)
    else:
        picked = list(bulk[: max(quota, 0)])
    return pd.concat([df[df["label"] != major], pool.loc[list(curated) + picked]])


def _length_matched(kept: pd.Series, candidates: pd.Series, reference: pd.Series, quota: int, bins: int = 10) -> list:
    """Pick ``quota`` candidates (in their given order) so that kept + picked follows the reference's length histogram."""
    ref_len = reference.str.len().to_numpy()
    edges = np.unique(np.quantile(ref_len, np.linspace(0, 1, bins + 1))[1:-1])

    def bin_of(texts: pd.Series) -> np.ndarray:
        return np.searchsorted(edges, texts.str.len().to_numpy(), side="right")

    total = len(kept) + quota
    want = np.bincount(bin_of(reference), minlength=len(edges) + 1) / len(reference) * total
    have = np.bincount(bin_of(kept), minlength=len(edges) + 1) if len(kept) else np.zeros(len(edges) + 1)
    need = np.clip(np.round(want - have), 0, None).astype(int)
    cand_bins = bin_of(candidates)
    picked: list = []
    for b in range(len(need)):
        in_bin = candidates.index[cand_bins == b]
        picked += list(in_bin[: need[b]])
    if len(picked) > quota:
        picked = picked[:quota]
    elif len(picked) < quota:  # some bins ran dry: fill up in the candidates' order
        chosen = set(picked)
        picked += [i for i in candidates.index if i not in chosen][: quota - len(picked)]
    return picked


def build_dataset(cfg: DataConfig = DataConfig()) -> pd.DataFrame:
    """The unified, deduplicated, balanced and split table for ``cfg`` (cached per config).

    Steps: load sources; drop texts that occur with both labels (ambiguous); dedupe on
    :func:`normalise_text`, keeping OOD-source copies first (so OOD stays unseen), then
    twins, then ``cfg.sources`` order; balance in-distribution rows; assign splits; replace the
    inherited categories of unsafe rows by their rubric labels (docs/category_rubric.md).
    """
    return _build_cached(cfg).copy()


@functools.lru_cache(maxsize=16)
def _build_cached(cfg: DataConfig) -> pd.DataFrame:
    frames = []
    for rank, name in enumerate(cfg.sources):
        if name == "sharegpt":
            f = load_source(name, max_rows=cfg.max_benign, seed=cfg.seed)
        else:
            f = load_source(name, contrast_file=cfg.contrast_file)
        f["_rank"] = rank
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=list(DATASET_COLUMNS), dtype=str)
    df = pd.concat(frames, ignore_index=True)
    df["_key"] = df["text"].map(normalise_text)
    df = df[df["_key"] != ""]

    n_labels = df.groupby("_key")["label"].nunique()
    conflicting = set(n_labels.index[n_labels > 1])
    if conflicting:
        log.info("dropping %d texts that occur with both labels", len(conflicting))
        df = df[~df["_key"].isin(conflicting)]

    df = df.assign(
        _ood=(~df["source"].isin(cfg.ood_sources)).astype(int),
        _twin=(df["subset"] != "twin").astype(int),
    ).sort_values(["_ood", "_twin", "_rank"], kind="stable")
    df = df.drop_duplicates("_key", keep="first")

    if cfg.balance:
        ood = df["source"].isin(cfg.ood_sources)
        df = pd.concat([_balance(df[~ood], cfg.seed, cfg.safe_order, cfg.plain_share), df[ood]])

    # splits are stratified by the inherited category, so relabelling moves no row between splits
    df = apply_rubric_labels(assign_splits(df[[*SOURCE_COLUMNS, *([SPLIT_KEY] if SPLIT_KEY in df.columns else [])]], cfg))
    split_rank = {s: i for i, s in enumerate(SPLITS)}
    # ordered by the inherited category, so relabelling changes no row's position (seeded evaluation subsets stay the same)
    df = df.assign(_s=df["split"].map(split_rank)).sort_values(
        ["_s", "source", "label", "inherited_category", "text"], kind="stable")
    return df[list(DATASET_COLUMNS)].reset_index(drop=True)


def clear_cache() -> None:
    """Forget built tables and loaded sources (tests; a contrast file rewritten under the same path)."""
    _build_cached.cache_clear()
    clear_source_cache()


def _counts(df: pd.DataFrame, cols: list[str]) -> dict[str, Any]:
    if len(cols) == 1:
        return {str(k): int(v) for k, v in df[cols[0]].value_counts().sort_index().items()}
    out: dict[str, Any] = {}
    for key, sub in df.groupby(cols[0], sort=True):
        out[str(key)] = _counts(sub, cols[1:])
    return out


def dataset_provenance(df: pd.DataFrame) -> dict[str, Any]:
    """JSON-serialisable counts (source x label, category x label, split x label, ...).

    Stored in a polytope's metadata so a trained model records exactly what it saw.
    """
    out: dict[str, Any] = {
        "n_rows": len(df),
        "fingerprint": dataset_fingerprint(df),
        "by_label": _counts(df, ["label"]),
        "by_source_label": _counts(df, ["source", "label"]),
        "by_category_label": _counts(df, ["category", "label"]),
        "by_subset_label": _counts(df, ["subset", "label"]),
    }
    if "split" in df.columns:
        out["by_split"] = _counts(df, ["split"])
        out["by_split_label"] = _counts(df, ["split", "label"])
    return out


def split_summary(df: pd.DataFrame) -> list[str]:
    """One line per split: its rows by label and source, and what it is used for (trained on or not)."""
    lines = []
    for split in SPLITS:
        part = df[df["split"] == split] if "split" in df.columns else df.iloc[:0]
        if part.empty:
            continue
        labels = ", ".join(f"{n} {label}" for label, n in part["label"].value_counts().sort_index().items())
        sources = ", ".join(f"{src} {n}" for src, n in part["source"].value_counts().sort_index().items()) if "source" in part else ""
        lines.append(f"{SPLIT_LABELS[split]}: {len(part)} rows ({labels}; from {sources}) — {SPLIT_USES[split]}")
    return lines


#: Rows of each label a held-out split needs before its rates mean something: with fewer, a rate measured on them is
#: uncertain by more than ±22 points (95 %, at a rate of one half), so "accuracy 0.5" on 3 + 3 rows says nothing.
MIN_METRIC_ROWS_PER_LABEL = 20


def small_split_warnings(df: pd.DataFrame, min_per_label: int = MIN_METRIC_ROWS_PER_LABEL) -> list[str]:
    """One warning per split that is measured on (validation, test, held-out OOD) but too small for its metrics to mean
    anything, naming its counts and how uncertain a rate on them is."""
    out = []
    for split in ("val", "test", "ood"):
        part = df[df["split"] == split] if "split" in df.columns else df.iloc[:0]
        if part.empty:
            continue
        counts = part["label"].value_counts().sort_index()
        label, n = min(counts.items(), key=lambda item: item[1])
        if n >= min_per_label:
            continue
        spread = 100 * 1.96 * math.sqrt(0.25 / n)
        rows = ", ".join(f"{k} {v}" for k, v in counts.items())
        out.append(f"Warning: the {SPLIT_LABELS[split]} split has only {len(part)} rows ({rows}), too few for its metrics to "
                   f"mean anything: a rate on {n} {label} rows is uncertain by about ±{spread:.0f} points (95 %). Its rows in the "
                   f"metrics table are shown, not trusted; give each label at least {min_per_label} rows there.")
    return out


def dataset_fingerprint(df: pd.DataFrame) -> str:
    """Short sha256 over (text, label) pairs; independent of row order, stable across runs."""
    lines = sorted(f"{label}\t{text}" for text, label in zip(df["text"], df["label"], strict=True))
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def held_out_ordinary(training: pd.DataFrame, start: int, stop: int, seed: int = CONTROL_SEED) -> list[str]:
    """ShareGPT first turns in no split of ``training``: draws ``start:stop`` of the order ``seed`` draws them in,
    returned in the source's order (empty when the pool is smaller than ``start``).

    Why one function: the verdict's control set takes draws ``0:CONTROL_ROWS``, and the steering evaluation's
    ordinary prompts come after them, so calibration and evaluation never share a prompt.
    """
    used = set(training["text"])
    pool = [t for t in load_sharegpt(None)["text"] if t not in used]
    drawn = np.random.default_rng(seed).permutation(len(pool))[start:stop]
    return [pool[i] for i in sorted(drawn)]


def load_eval_prompts(cfg: DataConfig = DataConfig(), limit: int | None = 50
                      ) -> dict[str, list[str]]:
    """Small held-out prompt sets for generation / steering evaluation.

    ``harmful``: unsafe rows of the OOD split (default: HarmBench standard behaviours, no
    copyright / contextual), falling back to unsafe test rows if there are no OOD sources;
    ``benign``: safe plain test rows, or, for a table with none (the default one: its safe side is all curated),
    ordinary ShareGPT prompts held out from it and from the verdict's control set (:func:`held_out_ordinary`);
    ``over_refusal``: safe over-refusal test rows. Each set is a seeded subset of at most ``limit`` prompts
    (None = all), in table order.
    """
    df = build_dataset(cfg)
    harmful = df[(df["split"] == "ood") & (df["label"] == "unsafe")]
    if harmful.empty:
        harmful = df[(df["split"] == "test") & (df["label"] == "unsafe")]
    test_safe = df[(df["split"] == "test") & (df["label"] == "safe")]
    sets = {
        "harmful": harmful,
        "benign": test_safe[test_safe["subset"] == "plain"],
        "over_refusal": test_safe[test_safe["subset"] == "over_refusal"],
    }
    out: dict[str, list[str]] = {}
    for name, sub in sets.items():
        texts = sub["text"].tolist()
        if name == "benign" and not texts:
            texts = held_out_ordinary(df, CONTROL_ROWS, CONTROL_ROWS + (limit or 500))
        if limit is not None and len(texts) > limit:
            rng = np.random.default_rng([cfg.seed, _stable_int("eval", name)])
            idx = sorted(rng.choice(len(texts), size=limit, replace=False).tolist())
            texts = [texts[i] for i in idx]
        out[name] = texts
    return out

"""Labelled files written by others as evaluation sets: ``python -m sap_viz eval --external FILE…``.

An evaluation file is CSV/TSV/JSONL with ``text``, ``label`` (safe/unsafe, 0/1, …) and optionally
``kind`` (e.g. "homonym", "fiction-wrapped") or ``category``. Every row is evaluated; nothing is
trained, calibrated or chosen on it. Flag rates are reported per kind for SaP and for the probe and
MLP fitted on the same features, so a user can see *which* kinds of prompt a boundary gets wrong.
``eval`` reads the last prompt token only; :func:`span_scores` adds what the monitoring hook's
prompt-span check reads, and :func:`flag_tables` puts both into the tables of docs/research/xstest.md and wrapped_requests.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

import sap_viz as sv
from sap_viz.analysis.metrics import auroc, fpr_at_tpr
from sap_viz.data.file_rows import DataFileError, read_records, record_text
from sap_viz.data.user_files import parse_label
from sap_viz.errors import UserError
from sap_viz.method.scoring import prompt_scores
from sap_viz.method.verdict import VerdictBoundary, prompt_verdict

KIND_COLUMNS = ("kind", "category", "type")


def load_external(path: str | Path) -> pd.DataFrame:
    """The file as an evaluation frame: text, label, kind; and category/subset both set to the kind,
    so the per-category recall and per-subset flag rates of the metrics read as per-kind rates."""
    name = Path(path).name
    rows = []
    for rec in read_records(path, required=("text", "label")):
        label = parse_label(rec.values.get("label"))
        if label is None:
            raise DataFileError(f"{name}: {rec.where}, column 'label': unknown label {rec.values.get('label')!r}")
        kind = next((str(rec.values[c]).strip() for c in KIND_COLUMNS if str(rec.values.get(c) or "").strip()), label)
        rows.append({"text": record_text(rec, name), "label": label, "kind": kind})
    if not rows:
        raise DataFileError(f"{name}: no data rows")
    df = pd.DataFrame(rows)
    if df["label"].nunique() < 2:
        raise DataFileError(f"{name}: needs both safe and unsafe rows to measure AUROC, TPR and FPR")
    df["category"] = df["kind"]
    df["subset"] = df["kind"]
    df["split"] = f"external:{name}"
    return df


def kind_rows(report: dict) -> list[dict]:
    """One row per (set, kind, method): n and share flagged, from an ``evaluate_artifact`` report."""
    rows = []
    for split, methods in report.get("splits", {}).items():
        if not split.startswith("external:"):
            continue
        for method, m in methods.items():
            rates = {**m.get("recall_by_category", {}), **m.get("flag_rate_by_safe_subset", {})}
            counts = m.get("n_by_kind", {})
            for kind, rate in sorted(rates.items()):
                rows.append({"set": split.removeprefix("external:"), "kind": kind, "method": method,
                             "n": counts.get(kind), "flagged": rate})
    return rows


def hook_score(last: float, span_peak: float | None, span_threshold: float | None) -> float:
    """One number that is ≥ 0 exactly when the monitoring hook flags the prompt: its last token is
    outside the polytope, or a token of the user's text reaches the span boundary (the hook uses
    max(0, calibrated span threshold); no calibrated threshold = no span check): the one verdict's margin
    (``method/verdict.py``) at the training boundary."""
    span = math.inf if span_threshold is None else max(0.0, float(span_threshold))
    return prompt_verdict(float(last), span_peak, VerdictBoundary(last=0.0, span=span)).margin


def prompt_span_scores(lm, art, texts: list[str]) -> list[dict]:
    """Per text: the last-token score and the highest violation over the user's own tokens, under the
    polytope's own feature settings: what the hook's prompt-span check reads, which ``eval`` (last token
    only) does not. ``lm`` a :class:`~sap_viz.model.loading.LoadedModel`, ``art`` a polytope artifact."""
    scores = prompt_scores(lm, art, texts, progress=True)  # the verdict's own readings
    return [{"last": round(float(v.max()), 5), "span_peak": None if peak is None else round(peak, 5)}
            for v, peak in zip(scores.last, scores.span_peak, strict=True)]


def span_scores(paths: list[str | Path], polytope: str | Path | None = None, model: str = "default") -> list[dict]:
    """:func:`prompt_span_scores` for every row of each evaluation file, with ``set`` (the file name, as in
    ``external:<name>``), label, kind and the polytope's span threshold; a text shared by several files
    is run through the model once."""

    frames = [load_external(path) for path in paths]  # a bad file fails before the model loads
    texts = list(dict.fromkeys(t for df in frames for t in df["text"]))
    lm = sv.load_model(model)
    art = sv.load_for_model(polytope or sv.DEFAULT_POLYTOPE, lm)
    scored = dict(zip(texts, prompt_span_scores(lm, art, texts), strict=True))
    return [{"set": df["split"].iloc[0].removeprefix("external:"), "text": t, "label": label, "kind": kind,
             **scored[t], "span_threshold": art.span_threshold}
            for df in frames for t, label, kind in zip(df["text"], df["label"], df["kind"], strict=True)]


SPAN_METHOD = "SaP, last token or span"


def flag_tables(report: dict, scored: list[dict], kinds: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """The two tables of an external evaluation, from ``eval --external --output`` JSON and :func:`span_scores` rows.

    Per (set, kind): prompts flagged by each method of the report at its own boundary, and by the hook
    (:func:`hook_score`). Per (set, method): n, AUROC, TPR, FPR and the FPR at 90 % TPR (a threshold-free
    operating point; probe and MLP are otherwise read at their 0.5 probability). ``kinds`` orders the first
    table (default: first appearance in ``scored``)."""
    splits = {s.removeprefix("external:"): m for s, m in report["splits"].items() if s.startswith("external:")}
    missing = set(splits) - {r["set"] for r in scored}
    if missing:
        raise UserError(f"no span rows for {sorted(missing)}: run span on the same files as eval")
    order = kinds or list(dict.fromkeys(r["kind"] for r in scored))
    per_kind, summary = [], []
    for name, methods in splits.items():
        part = [r for r in scored if r["set"] == name]
        hook = np.array([hook_score(r["last"], r["span_peak"], r["span_threshold"]) for r in part])
        for kind in order:
            n = methods["SaP"].get("n_by_kind", {}).get(kind)
            if n is None:
                continue
            row = {"set": name, "kind": kind, "n": n}
            for method, m in methods.items():
                rates = {**m.get("recall_by_category", {}), **m.get("flag_rate_by_safe_subset", {})}
                row[method] = f"{round(rates[kind] * n)}/{n}"
            in_kind = np.array([r["kind"] == kind for r in part])
            row[SPAN_METHOD] = f"{int((hook[in_kind] >= 0).sum())}/{int(in_kind.sum())}"
            per_kind.append(row)
        for method, m in methods.items():
            summary.append({"file": name, "method": method, "n": m["n"], "AUROC": m["auroc"], "TPR": m["recall"],
                            "FPR": m["fpr"], "FPR at TPR 0.9": m.get("fpr_at_tpr90")})
        y = np.array([r["label"] == "unsafe" for r in part])
        summary.append({"file": name, "method": SPAN_METHOD, "n": len(part), "AUROC": auroc(y, hook),
                        "TPR": float((hook[y] >= 0).mean()), "FPR": float((hook[~y] >= 0).mean()),
                        "FPR at TPR 0.9": fpr_at_tpr(y, hook, 0.9)})
    return per_kind, summary

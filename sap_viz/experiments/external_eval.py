"""Labelled files written by others as evaluation sets: ``python -m sap_viz eval --external FILE…``.

An evaluation file is CSV/TSV/JSONL with ``text``, ``label`` (safe/unsafe, 0/1, …) and optionally
``kind`` (e.g. "homonym", "fiction-wrapped") or ``category``. Every row is evaluated; nothing is
trained, calibrated or chosen on it. Flag rates are reported per kind for SaP and for the probe and
MLP fitted on the same features, so a user can see *which* kinds of prompt a boundary gets wrong.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sap_viz.data.file_rows import DataFileError, read_records, record_text
from sap_viz.data.user_files import parse_label

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

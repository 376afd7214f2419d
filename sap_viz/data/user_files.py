"""People's own labelled prompts as training tables: user files and Hugging Face datasets.

Why: the app and ``train --data`` accept a user's CSV/TSV/JSONL/JSON file, and notebooks a hub
dataset; both end in the unified schema (:mod:`sap_viz.data.schema`) with the same label spellings,
categories, dedupe and split rules as the built-in table, and errors that name the row and column.
Files are read by :mod:`sap_viz.data.file_rows`, the one reader.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sap_viz.data.dataset import DataConfig, assign_splits
from sap_viz.data.file_rows import DataFileError, Record, read_records, record_text
from sap_viz.data.package_files import DataSourceError
from sap_viz.data.schema import DATASET_COLUMNS, source_frame
from sap_viz.data.taxonomy import BENIGN, TAXONOMY
from sap_viz.data.text import normalise_text

__all__ = ["labelled_frame", "load_hf_dataset", "load_user_file", "parse_label"]

_LABEL_WORDS: dict[str, str] = {
    "safe": "safe", "benign": "safe", "harmless": "safe", "unharmful": "safe",
    "0": "safe", "false": "safe", "no": "safe",
    "unsafe": "unsafe", "harmful": "unsafe", "1": "unsafe", "true": "unsafe", "yes": "unsafe",
}
_LABEL_HELP = "expected safe/unsafe, benign/harmful, 0/1 or true/false"


def parse_label(value: object) -> str | None:
    """Map a label spelling to "safe"/"unsafe" (1/true/harmful = unsafe); None if unknown."""
    if isinstance(value, bool):
        return "unsafe" if value else "safe"
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return "unsafe" if v == 1 else "safe" if v == 0 else None
    if isinstance(value, str):
        key = value.strip().casefold()
        if key.endswith(".0") and key[:-2] in ("0", "1"):
            key = key[:-2]
        return _LABEL_WORDS.get(key)
    return None


def _record_label(rec: Record, name: str, column: str, invert: bool) -> str:
    raw_label = rec.values[column]
    if raw_label is None or (isinstance(raw_label, str) and not raw_label.strip()):
        raise DataFileError(f"{name}: {rec.where}, column {column!r}: label is empty ({_LABEL_HELP})")
    label = parse_label(raw_label)
    if label is None:
        raise DataFileError(f"{name}: {rec.where}, column {column!r}: unknown label {raw_label!r} ({_LABEL_HELP})")
    if invert:
        label = "safe" if label == "unsafe" else "unsafe"
    return label


def labelled_frame(records: Iterable[Record], name: str, source: str, *,
                   text_column: str = "text", label_column: str = "label",
                   category_column: str | None = "category", invert: bool = False,
                   max_rows: int = 200_000) -> pd.DataFrame:
    """Labelled rows as source rows (no ``split``); texts that occur with both labels and repeats are
    dropped with a warning. A ``category`` that is not a :data:`~sap_viz.data.taxonomy.TAXONOMY` name
    is kept as ``orig_category`` and mapped to "other_harm"."""
    rows = []
    for rec in records:
        if rec.row > max_rows:
            raise DataFileError(f"{name}: more than max_rows={max_rows} rows; split the file "
                                "or pass a larger max_rows")
        for col in (text_column, label_column):
            if col not in rec.values:
                raise DataFileError(f"{name}: {rec.where}: missing column {col!r}")
        text = record_text(rec, name, text_column)
        label = _record_label(rec, name, label_column, invert)
        raw_cat = rec.values.get(category_column) if category_column else None
        orig = str(raw_cat).strip() if raw_cat not in (None, "") else "unspecified"
        if label == "safe":
            category = BENIGN
        else:
            cat_key = orig.casefold().replace(" ", "_").replace("-", "_")
            category = cat_key if cat_key in TAXONOMY else "other_harm"
        rows.append((text, label, category, orig, source, "plain"))
    if not rows:
        raise DataFileError(f"{name}: no data rows")
    df = source_frame(rows)
    keys = df["text"].map(normalise_text)
    n_labels = df.groupby(keys)["label"].transform("nunique")
    n_conflict = int((n_labels > 1).sum())
    if n_conflict:
        warnings.warn(f"{name}: dropping {n_conflict} rows whose text occurs with both labels",
                      stacklevel=3)
    dup = keys.duplicated()
    if int(dup.sum()):
        warnings.warn(f"{name}: dropping {int(dup.sum())} duplicate texts", stacklevel=3)
    return df[(n_labels <= 1) & ~dup].reset_index(drop=True)


def load_user_file(path: str | Path, cfg: DataConfig = DataConfig(), *,
                   max_rows: int = 200_000, max_bytes: int | None = None) -> pd.DataFrame:
    """Load a user CSV/TSV/JSONL (or JSON array) of labelled prompts into the unified schema.

    Required columns ``text`` and ``label`` (safe/unsafe, benign/harmful, 0/1, true/false;
    1/true = unsafe), optional ``category`` (a :data:`~sap_viz.data.taxonomy.TAXONOMY` name, otherwise
    kept as ``orig_category`` and mapped to "other_harm"). Raises :class:`DataFileError` naming the
    row and column of the first problem. Duplicate texts are dropped (with a warning).
    Control characters in texts are removed. With ``max_bytes`` a larger file is refused unread.
    """
    name = Path(path).name
    records = read_records(path, required=("text", "label"), max_bytes=max_bytes)
    df = labelled_frame(records, name, f"user:{name}", max_rows=max_rows)
    return own_categories(assign_splits(df, cfg))


def own_categories(df: pd.DataFrame) -> pd.DataFrame:
    """A user's table in :data:`DATASET_COLUMNS`: its categories are its own (no rubric relabelling)."""
    return df.assign(inherited_category=df["category"], category_source="user")[list(DATASET_COLUMNS)]


def load_hf_dataset(dataset_id: str, split: str = "train", text_column: str = "text",
                    label_column: str = "label", *, category_column: str | None = None,
                    invert_labels: bool = False, max_rows: int = 200_000,
                    cfg: DataConfig = DataConfig(), **load_kwargs: Any) -> pd.DataFrame:
    """Load a Hugging Face dataset (needs ``datasets`` and network) into the unified schema.

    Reads at most ``max_rows`` rows (first rows of ``split``; use a split slice such as
    ``"train[:5%]"`` for a different subset).
    ``invert_labels`` is for datasets whose boolean column means *safe* (e.g. BeaverTails'
    ``is_safe``). Raises :class:`~sap_viz.data.package_files.DataSourceError` with a clear message
    when ``datasets`` is missing or the hub cannot be reached.
    """
    try:
        import datasets  # optional dependency, imported lazily
    except ImportError:
        raise DataSourceError("loading Hugging Face datasets needs the optional `datasets` "
                              "package: pip install datasets") from None
    try:
        ds = datasets.load_dataset(dataset_id, split=split, **load_kwargs)
    except Exception as e:  # any hub/network failure gets one clear message
        raise DataSourceError(
            f"could not load Hugging Face dataset {dataset_id!r} (split {split!r}): {e}. "
            "The hub may be unreachable (offline machine, HF_HUB_OFFLINE=1) or the id wrong."
        ) from e
    cols = set(ds.column_names)
    for col in (text_column, label_column):
        if col not in cols:
            raise DataFileError(f"{dataset_id}: missing column {col!r} (columns: {sorted(cols)})")

    def records() -> Iterator[Record]:
        for i, item in enumerate(ds, start=1):
            if i > max_rows:  # large hub datasets are truncated, not rejected
                return
            yield Record(i, f"row {i}", item)

    df = labelled_frame(records(), dataset_id, f"hf:{dataset_id}", text_column=text_column,
                        label_column=label_column, category_column=category_column,
                        invert=invert_labels, max_rows=max_rows)
    return own_categories(assign_splits(df, cfg))

"""The columns and values every data table has, and the one constructor for source rows.

Why: built-in sources, ShareGPT, user files and Hugging Face datasets all end in the same table, so
the later steps (dedupe, balancing, splits, training) never look at where a row came from.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from sap_viz.data.text import canonical_text

__all__ = ["DATASET_COLUMNS", "LABELS", "SOURCE_COLUMNS", "SPLITS", "SPLIT_KEY", "SUBSETS", "source_frame"]

#: What every source returns. ``category`` is in the shared taxonomy; ``orig_category`` is the source's own.
SOURCE_COLUMNS: tuple[str, ...] = (
    "text",
    "label",
    "category",
    "orig_category",
    "source",
    "subset",
)
#: The built table: + the split, and where ``category`` came from (docs/category_rubric.md): for built-in
#: unsafe rows the rubric's label ("rubric"), with the source's own mapped label kept as ``inherited_category``.
DATASET_COLUMNS: tuple[str, ...] = (*SOURCE_COLUMNS, "split", "inherited_category", "category_source")
LABELS: tuple[str, ...] = ("safe", "unsafe")
# "wrapped": a request inside a jailbreak frame; "rephrased": a request moved into another tense.
SUBSETS: tuple[str, ...] = ("plain", "over_refusal", "twin", "wrapped", "rephrased")
SPLITS: tuple[str, ...] = ("train", "val", "test", "ood")
#: Optional source column: the text whose split a row must share (a wrapped request's inner request),
#: so the two can never sit on both sides of the train/test line. Not part of the built table.
SPLIT_KEY = "split_key"


def source_frame(rows: Iterable[tuple[str, str, str, str, str, str]]) -> pd.DataFrame:
    """(text, label, category, orig_category, source, subset) tuples as a frame with
    :data:`SOURCE_COLUMNS`; texts in :func:`~sap_viz.data.text.canonical_text` form, empty ones dropped."""
    df = pd.DataFrame(list(rows), columns=list(SOURCE_COLUMNS), dtype=object)
    df["text"] = df["text"].map(canonical_text)
    df = df[df["text"].str.len() > 0]
    return df.astype(str).reset_index(drop=True)

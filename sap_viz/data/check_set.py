"""The facet check set: unsafe requests and safe look-alikes per harm category, for evaluation only.

Why: a facet name is only worth what the facet does on prompts it never saw. The check set was written
fresh by the rubric (docs/category_rubric.md), apart from every training source, and is never used
to train, calibrate or choose a recipe. Each category has unsafe requests and safe look-alikes that
share its words (a hunting question beside a weapons request), in varied styles.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

import pandas as pd

from sap_viz.data.taxonomy import POLICY_CATEGORIES
from sap_viz.errors import UserError
from sap_viz.jsonl import read_jsonl

__all__ = ["CHECK_SET_FILE", "check_set_fingerprint", "load_check_set"]

CHECK_SET_FILE = "facet_check_set.jsonl"
_COLUMNS = ("text", "label", "category", "style")


@functools.lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    path = resources.files("sap_viz.data").joinpath("builtin_data", CHECK_SET_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"the facet check set ({CHECK_SET_FILE}) is missing from sap_viz.data: the install is incomplete")
    rows = read_jsonl(path)
    df = pd.DataFrame(rows, columns=list(_COLUMNS))
    bad = df[~df["label"].isin(("safe", "unsafe")) | ~df["category"].isin(POLICY_CATEGORIES)]
    if len(bad):
        raise UserError(f"{CHECK_SET_FILE}: row {int(bad.index[0]) + 1} has label {bad.iloc[0]['label']!r} / "
                         f"category {bad.iloc[0]['category']!r}")
    return df


def load_check_set() -> pd.DataFrame:
    """The check set in file order (row i is prompt i of every scorecard): text, label, category, style.

    ``category`` of a safe row is the category it looks like (its look-alike category).
    """
    return _load().copy()


def check_set_fingerprint() -> str:
    """Short sha256 of the check set, stored with each scorecard so a stale one is recognised."""
    h = hashlib.sha256()
    for text, label, cat in zip(_load()["text"], _load()["label"], _load()["category"], strict=True):
        h.update(f"{label}\t{cat}\t{text}\n".encode())
    return h.hexdigest()[:16]

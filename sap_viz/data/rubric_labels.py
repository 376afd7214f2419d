"""Rubric categories for the built-in unsafe rows (docs/category_rubric.md).

Why: the sources' own category schemes disagree with what many prompts ask (a plane-downing laser
filed as "illegal goods", blackmail as "violence"), and policy facets can only be as clean as the
labels they learn from. Every built-in unsafe row was read against one rubric; the label is stored
here with the inherited one beside it, and the table keeps both (``category`` is the rubric's,
``inherited_category`` the source's mapped one, ``category_source`` says which ``category`` is).

    python -m sap_viz.data.rubric_labels --check     # every built-in unsafe row has a rubric label
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from collections import Counter
from importlib import resources

import pandas as pd

from sap_viz.data.sources import DEFAULT_SOURCES, load_source
from sap_viz.data.taxonomy import TAXONOMY
from sap_viz.data.text import normalise_text
from sap_viz.errors import UserError
from sap_viz.jsonl import read_jsonl

__all__ = ["RUBRIC_FILE", "apply_rubric_labels", "rubric_key", "rubric_labels"]

RUBRIC_FILE = "rubric_labels.jsonl"
RUBRIC = "rubric"
INHERITED = "inherited"


def rubric_key(text: str) -> str:
    """Stable key of a prompt: sha256 of its normalised text (so whitespace and case do not matter)."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()[:20]


@functools.lru_cache(maxsize=1)
def rubric_labels() -> dict[str, dict]:
    """key → shipped record (text, source, inherited, category, note). Fails loudly if the file is missing."""
    path = resources.files("sap_viz.data").joinpath("builtin_data", RUBRIC_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"the rubric labels ({RUBRIC_FILE}) are missing from sap_viz.data: the install is incomplete")
    out: dict[str, dict] = {}
    for n, rec in enumerate(read_jsonl(path), 1):
        if rec.get("category") not in TAXONOMY:
            raise UserError(f"{RUBRIC_FILE} row {n}: category {rec.get('category')!r} is not in the taxonomy")
        out[rec["key"]] = rec
    return out


#: Sources written to the rubric's categories: each unsafe row carries its category in the source's own files, so
#: no relabelling entry is needed (``category_source`` stays "inherited": the category is the source's own).
WRITTEN_TO_RUBRIC = ("contrast_v2",)


def apply_rubric_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with ``category`` replaced by the rubric label where one exists (unsafe rows only).

    A wrapped request (its ``split_key`` names the inner request) takes its inner request's label.
    ``inherited_category`` keeps what the source said; ``category_source`` is "rubric" or "inherited".
    """
    out = df.copy()
    out["inherited_category"] = out["category"]
    out["category_source"] = INHERITED
    labels = rubric_labels()
    lookup = out["text"]
    if "split_key" in out.columns:
        inner = out["split_key"].fillna("").astype(str)
        lookup = inner.where(inner != "", out["text"])
    keys = lookup.map(rubric_key)
    hit = (out["label"] == "unsafe") & keys.isin(labels.keys())
    out.loc[hit, "category"] = keys[hit].map(lambda k: labels[k]["category"])
    out.loc[hit, "category_source"] = RUBRIC
    return out


def _check() -> int:
    labels = rubric_labels()
    missing = []
    for name in DEFAULT_SOURCES:
        if name == "sharegpt" or name in WRITTEN_TO_RUBRIC:  # safe only, or labelled as written
            continue
        f = load_source(name)
        for text in f.loc[f["label"] == "unsafe", "text"]:
            if rubric_key(text) not in labels:
                missing.append((name, text[:80]))
    counts = Counter(r["category"] for r in labels.values())
    print(f"{len(labels)} rubric labels; " + ", ".join(f"{c} {counts[c]}" for c in TAXONOMY))
    if missing:
        print(f"{len(missing)} built-in unsafe rows have no rubric label, e.g. {missing[:3]}")
        return 1
    print("every built-in unsafe row has a rubric label")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify that every built-in unsafe row has a rubric label")
    args = parser.parse_args(argv)
    if args.check:
        return _check()
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Small builders several unit-test modules share (one copy each, issue 30)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from sap_viz.analysis import feature_map


def violation_view(unsafe: dict[str, list[list[float]]], key: str, n_safe: int = 10) -> feature_map.TrainingView:
    """A training view whose facet violations are written by hand, so a test knows its audit's answer.

    ``unsafe`` maps a category to its prompts' violation rows ("<category> prompt i"); ``n_safe`` safe prompts
    ("safe prompt i", category "benign") follow, violating nothing (every facet at -1). Features are zeros.
    """
    k = len(next(iter(unsafe.values()))[0])
    texts, labels, cats, rows = [], [], [], []
    for c, violations in unsafe.items():
        for i, v in enumerate(violations):
            texts.append(f"{c} prompt {i}")
            labels.append("unsafe")
            cats.append(c)
            rows.append(v)
    for i in range(n_safe):
        texts.append(f"safe prompt {i}")
        labels.append("safe")
        cats.append("benign")
        rows.append([-1.0] * k)
    return feature_map.TrainingView(texts, labels, cats, torch.zeros(len(texts), k), torch.tensor(rows), "test prompts", key)


def labelled_csv(folder: Path, name: str, category: bool, n: int = 40, unknown: str = "") -> str:
    """A small user training file (text,label[,category]): every other row unsafe, a quarter of those "privacy"
    (or ``unknown``, a category outside the taxonomy), the rest "cyber"; safe rows are about cakes."""
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "category"] if category else ["text", "label"])
        for i in range(n):
            unsafe = i % 2 == 1
            cat = (unknown or "privacy") if i % 4 == 3 else "cyber"
            text = f"please {'hack into a server' if cat == 'cyber' else 'find where she lives'} number {i}" if unsafe \
                else f"please bake a cake number {i}"
            label = "unsafe" if unsafe else "safe"
            w.writerow([text, label, cat if unsafe else ""] if category else [text, label])
    return str(path)

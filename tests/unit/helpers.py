"""Small builders several unit-test modules share (one copy each, issue 30)."""

from __future__ import annotations

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

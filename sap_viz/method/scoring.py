"""Scoring texts with a polytope: the one path from text to facet violations outside generation.

It uses the polytope's own feature settings (layer, chat template, token budget), so a score here
is exactly what the monitoring hook sees at the prompt's last token (at the polytope's position).
"""

from __future__ import annotations

import torch

from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.model.features import extract_features
from sap_viz.model.loading import LoadedModel


def score_texts(lm: LoadedModel, art: PolytopeArtifact, texts: list[str], progress: bool = False, batch_size: int = 16) -> torch.Tensor:
    """N × K violations for texts under the polytope's own feature settings."""
    feats = extract_features(lm, texts, art.feature_config(batch_size), use_cache=False, progress=progress)
    return art.polytope.violations_cpu(feats)  # type: ignore[arg-type]

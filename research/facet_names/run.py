"""Replace a polytope's auto-suggested facet names with honest ones (``facet_stats.honest_names``).

    python -m research.facet_names.run [--polytope DIR] [--dry-run]

The facet audit is computed on the polytope's training split of the built-in data (the same view
the Facets tab uses). Only labels that are still auto-suggested change; a label a person gave is
kept. Each change goes through ``label_facet``, so the old name stays in the facet's history.
"""

from __future__ import annotations

import argparse

import torch

from sap_viz.analysis.facet_labels import label_facet
from sap_viz.analysis.facet_stats import honest_names
from sap_viz.data.dataset import build_dataset
from sap_viz.method.artifact import load_for_model
from sap_viz.model.features import extract_features
from sap_viz.model.loading import load_model
from sap_viz.recipe.pipeline import facet_audit_for
from sap_viz.settings import DEFAULT_POLYTOPE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polytope", default=str(DEFAULT_POLYTOPE))
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    lm = load_model()
    art = load_for_model(args.polytope, lm)
    train = build_dataset()
    train = train[train["split"] == "train"].reset_index(drop=True)
    feats = extract_features(lm, train["text"].tolist(), art.feature_config())
    with torch.no_grad():
        violations = art.polytope.violations_cpu(feats)
    audit = facet_audit_for(art, violations, train)
    for k, (facet, suggestion) in enumerate(zip(art.facets, honest_names(audit), strict=True)):
        keep = not facet.get("auto_suggested", False)
        print(f"facet {k:2d}: {facet['name']!r:34} → {suggestion['name']!r:40} {'(kept: labelled by a person)' if keep else ''}")
        if keep or args.dry_run or facet["name"] == suggestion["name"]:
            continue
        label_facet(args.polytope, k, suggestion["name"], policy="Auto-suggested (honest_names): " + suggestion["evidence"],
                    author="sap-viz (honest_names)", confidence=suggestion["confidence"], auto_suggested=True)


if __name__ == "__main__":
    main()

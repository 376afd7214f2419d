"""Counts of the optional sources written by others (issue 16): what they hold and what was dropped.

    .venv/bin/python -m research.optional_sources.run

Prints rows per source / label / category, each source's build report (templates, near-duplicate
families, evaluation-set hits) and the fingerprint of the default table and of the default table plus
``wild_wrapped`` and ``past_tense``. No model needed; nothing is written (ShareGPT turns inside
``wild_wrapped`` may not be redistributed).
"""

from __future__ import annotations

import json

from sap_viz.data.dataset import DataConfig, build_dataset, dataset_fingerprint
from sap_viz.data.sources import DEFAULT_SOURCES, load_source, optional_source_report

OPTIONAL = ("wild_wrapped", "past_tense")


def main() -> None:
    for name in OPTIONAL:
        rows = load_source(name)
        print(f"{name}: {len(rows)} rows")
        for (label, category), n in rows.groupby(["label", "category"]).size().items():
            print(f"  {label:7s} {category:20s} {n}")
        print("  report: " + json.dumps(optional_source_report(name)))
    default = build_dataset()
    extended = build_dataset(DataConfig(sources=DEFAULT_SOURCES + OPTIONAL))
    print(f"default table: {len(default)} rows, fingerprint {dataset_fingerprint(default)}")
    print(f"default + {' + '.join(OPTIONAL)}: {len(extended)} rows, fingerprint {dataset_fingerprint(extended)}")
    for source in OPTIONAL:
        part = extended[extended["source"] == source]
        print(f"  {source} in the built table: " + ", ".join(f"{s} {n}" for s, n in part["split"].value_counts().items()))


if __name__ == "__main__":
    main()

"""Fit the answer check on training answers, choose its layer and threshold on validation answers, and store it.

    python -m research.steering.fit_answer_check [--output DIR]   # default: the shipped polytope's steering/ folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sap_viz.model.loading import load_model
from sap_viz.recipe.answer_check_fit import fit_answer_check_for
from sap_viz.settings import DEFAULT_POLYTOPE

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(DEFAULT_POLYTOPE / "steering"))
    args = parser.parse_args()
    lm = load_model()
    check, rows = fit_answer_check_for(lm)
    check.save(args.output)
    (HERE / "answer_check_layers.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(row)
    print(f"chosen layer {check.layer}, threshold {check.threshold:.4f} → {args.output}")


if __name__ == "__main__":
    main()

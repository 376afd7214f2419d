"""Where the studies find the repository's files: one place, so a moved folder is fixed once."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_SETS = ROOT / "sap_viz" / "data" / "eval_sets"
BUILTIN_DATA = ROOT / "sap_viz" / "data" / "builtin_data"
DEFAULT_POLYTOPE = ROOT / "sap_viz" / "polytopes" / "smollm2-135m-default"

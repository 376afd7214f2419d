#!/usr/bin/env bash
# Rebuild the shipped polytope from the defaults, calibrate it and measure it, in the order the files depend on:
#   bash scripts/rebuild_shipped.sh OUT_DIR        (about an hour on 2 CPU cores; nothing is written into sap_viz/)
# Then review OUT_DIR and copy it over sap_viz/polytopes/smollm2-135m-default by hand, and regenerate the tables
# (python -m research.tables docs). Each step is a sap-viz command a user can run on a polytope of their own.
set -euo pipefail
out=${1:?usage: scripts/rebuild_shipped.sh OUT_DIR}
py=${PYTHON:-.venv/bin/python}
report=${REPORT_DIR:-research/detection_report}

# 1. train with every default (data: the default sources; policy facets; block 22, last ‖ mean), reuse the
#    shipped steering part (it reads block 16 and does not depend on the detector), score the facets on the check set
[ -e "$out/polytope.json" ] || $py -m sap_viz train --output "$out" --steering-part reuse
# 2. the generated-token and prompt-span boundaries, on benign validation answers and framed benign requests
$py -m sap_viz calibrate-generation --polytope "$out"
# 3. the verdict's boundary and borderline band on 1,000 held-out ordinary prompts (5 % flagged)
$py -m sap_viz calibrate-verdict --polytope "$out"
# 4. the verdict beside a probe, an MLP and a detection-only polytope on every evaluation set; stores the operating point
$py -m sap_viz eval-detection --polytope "$out" --output "$report/report.json" --csv "$report/report.csv" --store
# 5. the app's feature map (PCA and UMAP of the training features), stored with the polytope so the app opens it at once
$py -m sap_viz precompute-map --polytope "$out"
$py - "$out" "$report" <<'EOF'
import json, sys
from pathlib import Path
meta = json.loads((Path(sys.argv[1]) / "polytope.json").read_text())
Path(sys.argv[2], "verdict_calibration.json").write_text(json.dumps(meta["verdict_calibration"], indent=1) + "\n")
EOF

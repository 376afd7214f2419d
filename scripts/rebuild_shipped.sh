#!/usr/bin/env bash
# Rebuild the shipped polytope from the defaults, calibrate it and measure it, in the order the files depend on:
#   bash scripts/rebuild_shipped.sh OUT_DIR        (about an hour on 2 CPU cores; nothing is written into sap_viz/)
# Then review OUT_DIR and copy it over sap_viz/polytopes/smollm2-135m-default by hand, and regenerate the tables
# (python -m research.tables docs). Each step is a sap-viz command a user can run on a polytope of their own.
set -euo pipefail
out=${1:?usage: scripts/rebuild_shipped.sh OUT_DIR}
py=${PYTHON:-.venv/bin/python}

# 1. train with every default (data: the default sources; policy facets; block 22, last ‖ mean), reuse the
#    shipped steering part (it reads block 16 and does not depend on the detector), score the facets on the check set
[ -e "$out/polytope.json" ] || $py -m sap_viz train --output "$out" --steering-part reuse
# 2. the generated-token and prompt-span boundaries, on benign validation answers and framed benign requests
$py -m sap_viz calibrate-generation --polytope "$out"
# 3. the verdict's boundary and borderline band on 1,000 held-out ordinary prompts (5 % flagged)
$py -m sap_viz calibrate-verdict --polytope "$out"
# 4. what it does on sets it never saw: the verdict beside a probe, an MLP and a detection-only polytope on every
#    evaluation set, the facets' policy table, word attribution (all into OUT_DIR/measured.json, targets judged)
$py -m sap_viz measure --polytope "$out" --part detection facets attribution
# 5. the app's feature map (PCA and UMAP of the training features), stored with the polytope so the app opens it at once
$py -m sap_viz precompute-map --polytope "$out"
# 6. steered answers and the answer check, read by hand: answers without a label go to to_label.jsonl (shuffled, no
#    side); label them (docs/outcome_rubric.md) and run this step again with --add-labels OUT_DIR.to_label.jsonl
$py -m sap_viz measure --polytope "$out" --part steering answer_check --labels research/steering/measure_labels.jsonl \
  --to-label "${out%/}.to_label.jsonl"

#!/usr/bin/env bash
# Regenerates the README's screenshots (assets/screenshots/) from the running app in headless Chromium.
#
#   bash scripts/screenshots.sh            # first view, a flagged prompt, Compare, the other tabs and a phone
#
# The screenshots are taken by the browser tests that check those views (each saves its page to
# SAP_VIZ_SCREENSHOTS), so a screenshot is only written when the view it shows passed its test. Uses the
# user's cache (~/.cache/sap-viz) and the whole training map, so a second run is quicker.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAP_VIZ_SCREENSHOTS="${SAP_VIZ_SCREENSHOTS:-assets/screenshots}"
export SAP_VIZ_CACHE="${SAP_VIZ_CACHE:-$HOME/.cache/sap-viz}" SAP_VIZ_TEST_MAP_ROWS="${SAP_VIZ_TEST_MAP_ROWS:-0}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
mkdir -p "$SAP_VIZ_SCREENSHOTS"
.venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/browser/test_first_view.py::test_explore_opens_on_the_worked_example_within_two_seconds \
    tests/browser/test_browser.py \
    tests/browser/test_layout_a11y.py::test_a_phone_keeps_the_heatmap_and_the_why_steered_table_readable
ls -l "$SAP_VIZ_SCREENSHOTS"

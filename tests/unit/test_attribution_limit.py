"""The Facets tab states the attribution view's measured limit, and the figure it states is the committed measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sap_viz.ui.tab_facets import ATTRIBUTION_HELD_OUT, ATTRIBUTION_LIMIT

RESULTS = Path(__file__).resolve().parents[2] / "research" / "attribution" / "results.json"


def test_the_stated_held_out_rate_is_the_measured_one():
    if not RESULTS.is_file():
        pytest.fail(f"missing {RESULTS}: the measurement behind the Facets tab's sentence")
    chosen = json.loads(RESULTS.read_text(encoding="utf-8"))["summary"]["final"]  # the chosen view on the held-out prompts
    assert (chosen["hits"], chosen["n"]) == ATTRIBUTION_HELD_OUT
    assert f"first {chosen['hits']} times ({chosen['rate']:.0%}" in ATTRIBUTION_LIMIT

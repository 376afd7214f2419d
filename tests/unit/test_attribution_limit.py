"""The Facets tab states the attribution view's measured limit for the active polytope, from its measured.json; the
shipped figure agrees with the research record of the same measurement; a polytope never measured says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sap_viz.method.artifact import load_polytope
from sap_viz.method.measured_file import measured_parts
from sap_viz.settings import DEFAULT_POLYTOPE
from sap_viz.ui.tab_facets import ATTRIBUTION_NOTE, attribution_limit

RESULTS = Path(__file__).resolve().parents[2] / "research" / "attribution" / "results.json"


def test_the_stated_held_out_rate_is_the_measured_one():
    art = load_polytope(DEFAULT_POLYTOPE)
    part = measured_parts(art)["attribution"]
    hits, n = part.result["hits"], part.result["n"]
    assert f"ranks the harmful word first {hits} times ({hits / n:.0%}" in attribution_limit(art)
    research = json.loads(RESULTS.read_text(encoding="utf-8"))["summary"]["final"]  # the study that chose the method
    assert (research["hits"], research["n"]) == (hits, n)
    assert "measured per polytope" in ATTRIBUTION_NOTE and str(hits) not in ATTRIBUTION_NOTE  # no figure typed into the page


def test_a_polytope_without_the_measurement_says_not_measured(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(DEFAULT_POLYTOPE, copy, ignore=shutil.ignore_patterns("measured.json", "map.*", ".lock"))
    assert attribution_limit(load_polytope(copy)).startswith("Not measured for this polytope")

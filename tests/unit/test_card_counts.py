"""Issue 28, finding 6: every facet card counts unsafe prompts from the same audit as the audit summary and table.

The cards used to count *softly assigned* prompts (a sharpened softmax over the facets) while the audit counts
*top facets*: on prompts where two facets nearly tie the two disagree (353 on one card, 350 on another for the
same data). The training view below has such near ties, so the old cards would read a different number.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pytest
import torch

from sap_viz.analysis import feature_map
from sap_viz.app_state.workbench import Workbench
from sap_viz.method.artifact import save_polytope
from sap_viz.recipe.pipeline import _facet_report
from sap_viz.ui.common import Files
from sap_viz.ui.render import audit_summary_html
from sap_viz.ui.tab_facets import FacetHandlers
from tests.conftest import linear_artifact
from tests.unit.helpers import violation_view

CARD_COUNT = re.compile(r"top facet of <b>(\d+)</b> of the (\d+) unsafe training prompts")


def near_tie_view() -> feature_map.TrainingView:
    """30 unsafe prompts (cyber → facet 0, privacy → facet 1, sexual: half facet 2, half a near tie of facets 0 and 1)
    and 10 safe ones that violate nothing."""
    unsafe = {}
    for c in ("cyber", "privacy", "sexual"):
        unsafe[c] = []
        for i in range(10):
            v = [-1.0, -1.0, -1.0, -1.0]
            if c == "cyber":
                v[0] = 2.0
            elif c == "privacy":
                v[1] = 2.0
            elif i < 5:
                v[2] = 2.0
            else:
                v[0], v[1] = 1.0, 0.999  # facet 0 is the top facet, by a hair
            unsafe[c].append(v)
    return violation_view(unsafe, "near-tie-view")


@pytest.fixture()
def bench(tiny_lm, tmp_path, monkeypatch):
    """A workbench whose polytope stores the statistics training computes on the view's violations, and whose
    training view (built in the background as in the app) is that view."""
    view = near_tie_view()
    train = pd.DataFrame({"text": view.texts, "label": view.labels, "category": view.categories})
    stats, facets = _facet_report(view.violations, train, None)  # what train_and_evaluate stores with the polytope
    art = linear_artifact(tiny_lm, 1, torch.randn(4, tiny_lm.hidden_size), torch.zeros(4))
    meta = {**art.meta, "data": {}, "metrics": {}, "train_config": {}, "facet_stats": json.loads(json.dumps(stats))}
    path = save_polytope(tmp_path / "polytopes" / "near-tie", art.polytope, meta, facets)

    def build(lm, art, lock=None, progress=None, known_data=None, **kwargs):
        progress(0.5, "features")
        time.sleep(0.2)
        return view

    monkeypatch.setattr(feature_map, "build_view", build)
    monkeypatch.setattr(feature_map, "ensure_umap", lambda v: v)
    return Workbench(tiny_lm, path, tmp_path / "polytopes")


def card_counts(cards: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in CARD_COUNT.findall(cards)]


def test_the_data_has_prompts_where_soft_and_top_facet_counts_differ(bench):
    """The condition of the finding: rounded soft counts are not the top-facet counts for this view."""
    stats = bench.require_artifact().meta["facet_stats"]
    soft = np.array(stats["soft_joint"]).sum(axis=0).round().astype(int).tolist()
    top = [f["n_top"] for f in stats["audit"]["facets"]]
    assert top == [15, 10, 5, 0] and soft != top


def test_cards_count_what_the_audit_summary_and_table_count(bench):
    handlers = FacetHandlers(bench, Files())
    stored = bench.require_artifact().meta["facet_stats"]["audit"]
    # before the training view exists: the audit stored at training time
    before = card_counts(handlers.cards_html(bench))
    assert before == [(f["n_top"], stored["n_unsafe"]) for f in stored["facets"]] == [(15, 30), (10, 30), (5, 30), (0, 30)]

    bench.start_view_build()
    cards, summary, _, table, _ = handlers.show_audit(None, progress=lambda *a, **k: None)
    counts = card_counts(cards)
    n_unsafe = int(re.search(r"Facet audit over (\d+) unsafe training prompts", summary).group(1))
    assert [n for n, _ in counts] == table["top facet of n"].astype(int).tolist()  # each card = its table row
    assert {total for _, total in counts} == {n_unsafe} == {sum(n for n, _ in counts)}  # and the summary's total
    assert counts == before  # the same prompts, whichever audit the cards read
    assert audit_summary_html(bench.facet_audit().summary()) == summary
    assert "mostly <b>cyber</b> (10 of them, 67%)" in cards  # facet 0: 10 cyber + 5 near-tied sexual prompts

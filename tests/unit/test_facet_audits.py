"""The facet audit as the app shows it (issue 13), on a tiny model and a training view whose answer is known:
facet 0 fires on cyber, facet 2 on privacy, facet 1 on all sexual and half the others, facet 3 never.

Also the Train tab's facet mode: the CLI's categories settings, a clear refusal for a table without
categories, and policy facets trained from a user's file.
"""

from __future__ import annotations

import csv
import json
import time

import gradio as gr
import pytest
import torch

from sap_viz.analysis import feature_map
from sap_viz.analysis.facet_stats import facet_audit, firing_order
from sap_viz.app_state.facet_audits import AUDIT_COLUMNS, FacetAudits, build_audit_view, card_examples, facet_suggestions
from sap_viz.app_state.workbench import Workbench
from sap_viz.data.check_set import load_check_set
from sap_viz.data.user_files import load_user_file
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import FACETS_FILE, save_polytope
from sap_viz.method.configs import POLICY_FACETS
from sap_viz.method.training import TrainConfig
from sap_viz.recipe.pipeline import BACKSTOP_NAME, check_category_facets, with_facet_mode
from sap_viz.settings import Limits
from sap_viz.ui.common import Files
from sap_viz.ui.tab_facets import FacetHandlers
from sap_viz.ui.tab_train import TrainHandlers, train_configs
from tests.conftest import linear_artifact
from tests.unit.helpers import labelled_csv, violation_view

CATS = ["cyber", "privacy", "sexual"]


def known_view(key: str = "view-a") -> feature_map.TrainingView:
    """10 unsafe prompts per category and 10 safe ones, with violations whose audit is known by hand."""
    unsafe = {}
    for c in CATS:
        unsafe[c] = []
        for i in range(10):
            v = [-1.0, -1.0, -1.0, -1.0]
            if c == "cyber":
                v[0] = 2.0 + 0.01 * i  # the most violating cyber prompts are 9, 8, 7 …
            if c == "privacy":
                v[2] = 1.5
            v[1] = 1.0 if c == "sexual" else (0.5 if i < 5 else -0.5)
            unsafe[c].append(v)
    return violation_view(unsafe, key)


class _Art:
    """What the audit reads of an artifact: its meta and its number of facets."""

    def __init__(self, facet_categories=None, k: int = 4):
        self.meta = {"facet_stats": {"facet_categories": facet_categories}} if facet_categories else {}
        self.polytope = type("P", (), {"num_facets": k})()


def test_firing_order_matches_categories_and_keeps_policy_facets_on_their_row():
    view = known_view()
    audit = facet_audit(view.violations, view.categories, [lab == "unsafe" for lab in view.labels])
    assert audit["categories"] == CATS
    # selectivity (own − others' share): cyber↔0, privacy↔2, sexual↔1 (fires on every sexual prompt, half the others)
    assert firing_order(audit) == [0, 2, 1, 3]
    # facet 0 tied to "sexual" sits on the sexual row although it never fires there; the rest are matched around it
    assert firing_order(audit, ["sexual", None, None, None]) == [3, 2, 0, 1]


def test_audit_view_table_names_and_examples():
    audit = build_audit_view(_Art(), known_view())
    assert audit is not None and audit.order == [0, 2, 1, 3]
    s = audit.summary()
    assert s["n_unsafe"] == 30 and s["dead_facets"] == [3] and s["never_firing_facets"] == [3]
    assert s["mean_facets_firing"] == pytest.approx(40 / 30, abs=1e-3)
    assert s["mi_bits"] == pytest.approx(s["category_entropy_bits"], abs=1e-3)  # the top facet tells the category exactly
    assert [n["name"] for n in audit.suggestions] == ["Cyber", "Sexual", "Privacy", "unused (facet 3)"]
    assert audit.suggestions[0]["confidence"] == pytest.approx(0.7225, abs=1e-3)  # Wilson lower bound of 10/10, not 1.0
    assert [e["text"] for e in audit.examples[0]] == [f"cyber prompt {i}" for i in (9, 8, 7, 6, 5)]
    facets = [{"name": "mine", "auto_suggested": False}, {"name": "x", "source": "from category"}, {}, {}]
    rows = audit.rows(facets)
    assert [list(r) for r in rows] == [AUDIT_COLUMNS] * 4
    assert rows[0]["label source"] == "labelled" and rows[1]["label source"] == "from category"
    assert rows[1]["fires on own"] == 1.0 and rows[1]["own n"] == "10/10" and rows[1]["others n"] == "10/20"
    assert rows[1]["selective"] == "no" and rows[0]["selective"] == "yes" and rows[0]["purity Wilson LB"] == pytest.approx(0.7225, abs=1e-3)
    assert [r["dead"] for r in rows] == ["no", "no", "no", "yes"]


def test_audits_are_cached_per_view_key_and_bounded():
    audits = FacetAudits(max_kept=2)
    art = _Art()
    first = audits.get(art, known_view("a"))
    assert audits.get(art, known_view("a")) is first
    audits.get(art, known_view("b"))
    audits.get(art, known_view("c"))
    assert len(audits) == 2 and audits.get(art, known_view("a")) is not first


def test_suggestions_fall_back_only_to_honest_stored_ones():
    art = _Art()
    art.meta = {"facet_stats": {"suggestions": [{"name": "Hate harassment #2", "confidence": 0.3}] * 4,
                                "top_prompts": [[{"text": "t", "violation": 1.0}]] * 4}}
    assert facet_suggestions(art, None) == []  # stored before the audit existed: not shown as a suggestion
    art.meta["facet_stats"]["audit"] = {}
    assert facet_suggestions(art, None)[0]["name"] == "Hate harassment #2"
    assert card_examples(art, None)[0] == [{"rank": 1, "label": "", "text": "t", "violation": 1.0}]
    audit = build_audit_view(_Art(), known_view())
    assert facet_suggestions(art, audit)[0]["name"] == "Cyber" and card_examples(art, audit)[0][0]["text"] == "cyber prompt 9"


@pytest.fixture()
def bench(tiny_lm, tmp_path, monkeypatch):
    """A workbench on a tiny 4-facet polytope whose training view is the known one (built with a pause and progress)."""
    folder = tmp_path / "polytopes"
    art = linear_artifact(tiny_lm, 1, torch.randn(4, tiny_lm.hidden_size), torch.zeros(4))
    path = save_polytope(folder / "tiny", art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}}, art.facets)
    facets = json.loads((path / FACETS_FILE).read_text())
    facets["facets"][2].update(name="Privacy", source="from category", auto_suggested=False)
    (path / FACETS_FILE).write_text(json.dumps(facets))

    def build(lm, art, lock=None, progress=None, known_data=None, **kwargs):
        progress(0.4, "features at layer 1: 16/40 prompts")
        time.sleep(0.6)
        return known_view()

    monkeypatch.setattr(feature_map, "build_view", build)
    monkeypatch.setattr(feature_map, "ensure_umap", lambda view: view)
    return Workbench(tiny_lm, path, folder)


def test_workbench_audit_waits_for_the_view_with_progress(bench):
    assert bench.facet_audit() is None  # no view yet: nothing is computed on the request's thread
    bench.start_view_build()
    seen: list[tuple[float, str]] = []
    bench.wait_for_view(10, progress=lambda f, m: seen.append((f, m)))
    assert (0.4, "features at layer 1: 16/40 prompts") in seen
    audit = bench.facet_audit()
    assert audit is not None and audit.order == [0, 2, 1, 3] and bench.facet_audit() is audit
    assert bench.session("visitor").facet_audit() is audit  # shared by every session (no owner token: the local owner)


def test_facets_tab_shows_the_audit_table_heatmap_csv_and_cards(bench):
    handlers = FacetHandlers(bench, Files())
    summary, fig, table, csv_update = handlers.audit_outputs(bench)
    assert "computed from the training prompts" in summary and table.empty and csv_update["visible"] is False
    bench.start_view_build()
    cards, summary, fig, table, csv_update = handlers.show_audit(None, progress=lambda *a, **k: None)
    assert cards == handlers.cards_html(bench)  # opening the tab redraws the cards with their suggestions and prompts
    assert "over 30 unsafe training prompts" in summary and "1.3 of 4 on average" in summary
    assert "Dead facets (never any unsafe prompt&#x27;s top facet): 3;" in summary
    assert "≤ 30% of the others&#x27;): 2 of 3." in summary  # sexual's facet also fires on half the others
    heat = fig.data[0]
    assert [x.split(":")[0] for x in heat.x] == ["0", "2", "1", "3"] and heat.z.shape == (3, 4)
    assert list(heat.z[2]) == [0.0, 0.0, 1.0, 0.0]  # sexual: only facet 1 fires, on all 10
    assert list(table.columns) == AUDIT_COLUMNS and table["suggested name"].tolist() == ["Cyber", "Sexual", "Privacy",
                                                                                          "unused (facet 3)"]
    assert table.loc[2, "label source"] == "from category"
    with open(csv_update["value"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and rows[3]["dead"] == "yes" and rows[1]["own n"] == "10/10"
    assert "auto-suggested name: <b>Cyber</b> (training-prompt purity 0.72" in cards
    assert cards.count("5 most violating training prompts") == 4 and "cyber prompt 9" in cards
    assert cards.count('class="sap-badge sap-taxonomy">from category') == 1
    assert handlers.use_suggestion(1, None)[0] == "Sexual"
    overview = handlers.facet_overview(bench)
    assert len(overview) == 10 and overview[4] == summary  # + the scorecard table and its CSV
    md, js = handlers.export_report(None)["value"]
    report = json.loads(open(js, encoding="utf-8").read())
    assert report["facet_audit"]["summary"]["dead_facets"] == [3] and report["facet_audit"]["firing_matrix"]["facet_order"] == [0, 2, 1, 3]
    text = open(md, encoding="utf-8").read()
    assert "## Facet audit (training prompts)" in text and "- Dead facets (never any unsafe prompt's top facet): 3" in text
    assert "| 2 | Privacy | from category | Privacy |" in text


def test_facet_mode_settings_are_the_clis():
    cat = with_facet_mode(TrainConfig(), "categories", 2, 0.5)
    assert (cat.facet_mode, cat.free_facets, cat.num_facets, cat.entropy_mode, cat.lambda_exclusive, cat.lambda_backstop) == (
        "categories", 2, 13, "none", POLICY_FACETS.exclusive_weight, 0.5)
    assert with_facet_mode(TrainConfig(), "categories", 0, 0.5).lambda_backstop == 0.0  # nothing free to back up
    learned = with_facet_mode(TrainConfig(num_facets=7), "learned", 2, 0.5)
    assert (learned.facet_mode, learned.num_facets, learned.free_facets, learned.entropy_mode) == ("learned", 7, 0, "soft")
    with pytest.raises(ValueError, match="facet mode"):
        with_facet_mode(TrainConfig(), "clusters")
    _, tcfg, _ = train_configs(2, 5, 3, 64, 0.09, "categories", 1, 1.0)
    assert tcfg.facet_mode == "categories" and tcfg.free_facets == 1 and tcfg.lambda_backstop == 1.0
    for bad in (dict(free_facets=-1), dict(backstop_weight=-1.0), dict(free_facets="many")):
        with pytest.raises(WorkbenchError):
            train_configs(2, 5, 3, 64, 0.09, **{"facet_mode": "categories", **bad})


def test_categories_mode_refuses_a_table_without_categories(tmp_path):
    with pytest.raises(ValueError, match="none of the .* unsafe training rows has one"):
        check_category_facets(load_user_file(labelled_csv(tmp_path, "plain.csv", category=False)))
    notes = check_category_facets(load_user_file(labelled_csv(tmp_path, "mixed.csv", category=True, unknown="Stalking", n=120)))
    assert notes[0] == "1 category facets: cyber"  # other_harm names no policy: its rows train the backstop
    assert notes[-1] == "categories outside the taxonomy were merged into other_harm: Stalking"


def test_train_tab_trains_policy_facets_from_a_users_file(tiny_lm, tmp_path):
    wb = Workbench(tiny_lm, tmp_path / "polytopes" / "none", limits=Limits(max_feature_dim=64))
    handlers = TrainHandlers(wb)
    no_progress = lambda *a, **k: None  # noqa: E731
    with pytest.raises(gr.Error, match="needs a 'category' for the unsafe rows") as info:
        handlers.run_train([], labelled_csv(tmp_path, "plain.csv", category=False), 1, 5, 1, 32, 0.0, "categories", 1, 1.0,
                           None, progress=no_progress)
    assert "Traceback" not in str(info.value)
    with pytest.raises(gr.Error, match=r"privacy \(\d rows\)"):  # a category too small to learn from is named
        handlers.run_train([], labelled_csv(tmp_path, "small.csv", category=True), 1, 5, 1, 32, 0.0, "categories", 1, 1.0,
                           None, progress=no_progress)
    msg, _, _, plain = handlers.run_train([], labelled_csv(tmp_path, "plain.csv", category=False), 1, 5, 1, 32, 0.0, "auto", 1, 1.0,
                                          None, progress=no_progress)
    assert "facets will be unnamed" in msg and plain.artifact.meta["train_config"]["facet_mode"] == "learned"
    msg, _, _, trained = handlers.run_train([], labelled_csv(tmp_path, "policy.csv", category=True, n=120), 1, 5, 1, 32, 0.0,
                                            "auto", 1, 1.0, None, progress=no_progress)
    art = trained.artifact
    assert art.polytope.num_facets == 3 and [f["name"] for f in art.facets[:2]] == ["Cyber", "Privacy"]
    assert all(f["source"] == "from category" for f in art.facets[:3]) and art.facets[2]["name"] == BACKSTOP_NAME
    assert art.meta["train_config"]["facet_mode"] == "categories" and art.meta["train_config"]["lambda_backstop"] == 1.0
    assert "3 policy facets (2 from categories, 1 free)" in msg and "2 category facets: cyber, privacy" in msg
    assert all("scorecard" in f for f in art.facets) and art.facets[0]["category"] == "cyber"  # scored on the check set
    assert art.meta["facet_check"]["n"] == len(load_check_set()) == art.facets[0]["scorecard"]["check_set"]["n"]

"""Check-set scorecards in the app (issue 26): the facet card, the scorecard table, the labelling path with the category a
name claims (owner, visitor proposal, API), and the audit report. Tiny model, no server: the scorecards are built
with ``facet_scorecards`` on the real check set with synthetic violations."""

from __future__ import annotations

import json
import re

import gradio as gr
import pytest
import torch

from sap_viz.analysis.facet_labels import store_scorecards
from sap_viz.analysis.policy_scorecard import facet_scorecards
from sap_viz.analysis.report import SCORECARD_COLUMNS, build_report, report_markdown, scorecard_rows, write_report
from sap_viz.app_state.roles import Roles
from sap_viz.app_state.workbench import Workbench, label_category
from sap_viz.data.check_set import check_set_fingerprint, load_check_set
from sap_viz.method.artifact import FACETS_FILE, read_facets, save_polytope
from sap_viz.ui import render
from sap_viz.ui.api import register
from sap_viz.ui.common import Files
from sap_viz.ui.tab_facets import CATEGORY_CHOICES, FacetHandlers, saved_message
from tests.conftest import linear_artifact

TOKEN = "owner-token"
XSS = "<img src=x onerror=alert(1)>"


def _violations() -> torch.Tensor:
    """Facet 0 fires on every unsafe cyber prompt and on 4 safe cyber look-alikes, facet 1 on every unsafe prompt, facet 2 on
    every unsafe privacy prompt."""
    check = load_check_set()
    unsafe = (check["label"] == "unsafe").to_numpy().copy()
    cyber = unsafe & (check["category"] == "cyber").to_numpy()
    lookalikes = [i for i, (lab, cat) in enumerate(zip(check["label"], check["category"], strict=True))
                  if lab == "safe" and cat == "cyber"][:4]
    v = torch.full((len(check), 3), -1.0)
    v[torch.from_numpy(cyber), 0] = 1.0
    v[lookalikes, 0] = 0.5
    v[torch.from_numpy(unsafe), 1] = 0.2
    v[torch.from_numpy(unsafe & (check["category"] == "privacy").to_numpy()), 2] = 0.7
    return v


@pytest.fixture()
def polytope(tiny_lm, tmp_path):
    """A saved 3-facet polytope with scorecards: facet 0 named for cyber, facet 1 for nothing, facet 2 (privacy) for fraud."""
    phi = torch.randn(3, tiny_lm.hidden_size, generator=torch.Generator().manual_seed(0))
    art = linear_artifact(tiny_lm, 1, phi, torch.zeros(3))
    path = save_polytope(tmp_path / "polytopes" / "base", art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}},
                         art.facets)
    categories = ["cyber", None, "fraud_deception"]
    store_scorecards(path, facet_scorecards(_violations(), load_check_set(), categories, check_set_fingerprint()), categories)
    return path


def test_category_argument_of_the_form_and_the_api():
    assert [label_category(v) for v in ("auto", "auto (read from the name)", "none", "", None, " Cyber ")] == \
        ["auto", "auto", "", "", "", "cyber"]
    assert CATEGORY_CHOICES[0][1] == "auto" and CATEGORY_CHOICES[-1] == ("none", "none") and len(CATEGORY_CHOICES) == 12


def test_card_shows_the_scorecard_as_escaped_plain_text(polytope):
    facets = read_facets(polytope)
    facets[0]["name"] = f"Hacking {XSS}"
    facets[0]["scorecard"]["most_typical"][0]["text"] = f"<script>alert(1)</script> {XSS}"
    html = render.facet_cards_html(facets, None, check_fingerprint=check_set_fingerprint())
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and f"Hacking {XSS}".replace("<", "&lt;").replace(">", "&gt;") in html
    card0 = html.split('data-facet="0"')[1].split('data-facet="1"')[0]
    assert re.search(r"name claims <b class=\"sap-claimed\">cyber</b> <span [^>]*>name fits: 1\.00</span>", card0)
    assert "precision 0.88 · recall 1.00" in card0  # 29 cyber requests of the 33 prompts it fires on
    assert "false alarms on safe look-alikes: 1.4% (4 of 288)" in card0
    assert "fires on, per category's unsafe prompts: " in card0 and "cyber 100%" in card0
    assert "most typical" in card0 and "least typical (cyber prompts it fires on least)" in card0
    assert "made on another version" not in card0
    card1 = html.split('data-facet="1"')[1]
    assert "name claims <b class=\"sap-claimed\">no category</b>" in card1 and "no name score" in card1
    assert "name fits from 0.80, fits partly from 0.65, misleading below" in html  # the thresholds, once, above the cards
    stale = render.facet_cards_html(facets, None, check_fingerprint="another")
    assert "made on another version of the check set" in stale


def test_cards_without_scorecards_give_the_command_once():
    facets = [{"name": f"f{k}", "policy": "", "author": "", "confidence": 0, "history": []} for k in range(3)]
    html = render.facet_cards_html(facets, None)
    assert html.count("python -m sap_viz measure --part facets --polytope DIR") == 1 and "On the check set" not in html
    assert scorecard_rows(facets) == []


def test_scorecard_table_has_one_row_per_facet(polytope):
    rows = scorecard_rows(read_facets(polytope))
    assert [r["facet"] for r in rows] == [0, 1, 2] and list(rows[0]) == SCORECARD_COLUMNS
    assert rows[0]["claimed category"] == "cyber" and rows[0]["name score"] > 0.99 and rows[0]["name verdict"] == "fits"
    assert rows[1]["claimed category"] == "none" and rows[1]["name score"] is None
    assert rows[2]["name verdict"] == "misleading" and rows[0]["top categories fired on"].startswith("cyber 100%")


def test_owner_rename_rescores_and_says_so(tiny_lm, polytope):
    """The path of the Facets tab's form: a wrong-category paraphrase lowers the name score, the right one restores it."""
    wb = Workbench(tiny_lm, polytope, roles=Roles(None))
    before = wb.require_artifact().facets[0]["scorecard"]["name_score"]
    wrong = wb.label(0, "scams and fake charities", "", "auditor", 0.5, "auto")
    assert wrong["category"] == "fraud_deception" and wrong["scorecard"]["name_score"] < before - 0.3
    right = wb.label(0, "computer intrusion and malware", "", "auditor", 0.5, "auto (read from the name)")
    assert right["category"] == "cyber" and right["scorecard"]["name_score"] == pytest.approx(before)
    msg = saved_message(right)
    assert msg.startswith("Saved facet 0 as “computer intrusion and malware”")
    assert "The name claims cyber; on the check set the facet detects that category with balanced accuracy 1.00 (name fits)." in msg
    chosen = wb.label(0, "my own words", category="fraud_deception")  # the auditor overrides what the name says
    assert chosen["category"] == "fraud_deception" and chosen["scorecard"]["name_score"] < 0.6
    assert "name misleading" in saved_message(chosen)
    none = wb.label(0, "computer intrusion", category="none")
    assert none["category"] is None and none["scorecard"]["name_score"] is None and "no name score" in saved_message(none)
    assert wb.require_artifact().facets[0]["category"] is None  # the loaded copy follows the file


def test_save_label_handler_fills_card_table_and_message(tiny_lm, polytope):
    wb = Workbench(tiny_lm, polytope, roles=Roles(None))
    handlers = FacetHandlers(wb, Files())
    request = gr.Request()
    out = handlers.save_label(0, "scams and fake charities", "", "auditor", 1.0, "auto", request)
    msg, cards, *_, table, csv = out
    assert "The name claims fraud_deception" in msg and "name misleading" in msg
    assert "name misleading" in cards.split('data-facet="0"')[1].split('data-facet="1"')[0]
    row = table.iloc[0]
    assert row["name"] == "scams and fake charities" and row["claimed category"] == "fraud_deception" and row["name score"] < 0.6
    assert csv["visible"] and open(csv["value"], encoding="utf-8").read().startswith("facet,name,claimed category,name score")
    # the form opens on a facet with its name, "auto", the auditor's own author (gr.skip) and an empty confidence
    detail = handlers.facet_detail(0, request)
    assert detail[3] == "scams and fake charities" and detail[-1] == "auto"
    assert detail[5] == gr.skip() and detail[6] is None


def test_a_visitors_category_travels_with_the_proposal(tiny_lm, polytope):
    wb = Workbench(tiny_lm, polytope, roles=Roles(TOKEN))
    visitor, owner = wb.session("visitor"), wb.session("visitor", TOKEN)
    proposal = visitor.label(2, "my words", "", "vis", 0.6, "privacy")
    assert proposal["proposed"] and proposal["category"] == "privacy"
    assert read_facets(polytope)[2]["category"] == "fraud_deception"  # nothing changes before the owner decides
    decided = owner.decide_proposal(proposal["id"], True)
    assert decided["facet_label"]["category"] == "privacy" and decided["facet_label"]["scorecard"]["name_score"] > 0.99
    auto = visitor.label(2, "scams and fake charities")  # an old-style call: the category is read from the name on accepting
    assert auto["category"] == "auto"
    accepted = owner.decide_proposal(auto["id"], True)["facet_label"]
    assert accepted["category"] == "fraud_deception" and accepted["scorecard"]["name_score"] < 0.6
    with pytest.raises(Exception, match="category must be one of"):
        visitor.label(2, "x", category="weapons")


def test_api_label_facet_takes_a_category_and_facets_returns_scorecards(tiny_lm, polytope):
    wb = Workbench(tiny_lm, polytope, roles=Roles(None))
    with gr.Blocks() as demo:
        register(wb)
    api = {f.api_name: f.fn for f in demo.fns.values()}
    old_style = api["label_facet"](0, "scams and fake charities", "", "api", 0.9)
    assert old_style["category"] == "fraud_deception"
    saved = api["label_facet"](0, "my words", "", "api", 0.9, "cyber")
    assert saved["category"] == "cyber" and saved["scorecard"]["name_score"] > 0.99
    facets = api["facets"]()
    assert [f["category"] for f in facets] == ["cyber", None, "fraud_deception"]
    assert all(f["scorecard"]["check_set"]["n"] == len(load_check_set()) for f in facets)
    with pytest.raises(gr.Error, match="category must be one of"):
        api["label_facet"](0, "x", "", "", 1.0, "weapons")
    on_disk = json.loads((polytope / FACETS_FILE).read_text())["facets"]
    assert on_disk[0]["category"] == "cyber"


def test_report_carries_the_scorecards(tiny_lm, polytope, tmp_path):
    wb = Workbench(tiny_lm, polytope, roles=Roles(None))
    wb.label(0, f"Hacking | {XSS}", category="auto")
    report = build_report(wb.require_artifact())
    assert [r["facet"] for r in report["scorecards"]] == [0, 1, 2]
    assert report["facets"][0]["scorecard"]["name_score"] > 0.99 and report["facets"][0]["category"] == "cyber"
    md = report_markdown(report)
    assert "## Facet scorecards (check set)" in md and "| facet | name | claimed category | name score |" in md
    assert "Hacking \\| \\<img src=x onerror=alert(1)>" in md and "<img" not in md.replace("\\<img", "")
    assert "name claims cyber, name score 0.996 (fits)" in md and "Most typical check-set prompts:" in md
    md_path, js_path = write_report(report, tmp_path / "report")
    assert json.loads(js_path.read_text())["scorecards"][0]["claimed category"] == "cyber" and md_path.is_file()


def test_report_without_scorecards_names_the_command(tiny_lm, tmp_path):
    phi = torch.randn(2, tiny_lm.hidden_size)
    art = linear_artifact(tiny_lm, 1, phi, torch.zeros(2))
    path = save_polytope(tmp_path / "p", art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}}, art.facets)
    wb = Workbench(tiny_lm, path, roles=Roles(None))
    md = report_markdown(build_report(wb.require_artifact()))
    assert "No check-set scorecards in this polytope: `python -m sap_viz measure --part facets --polytope DIR` makes them." in md


def test_a_relabel_refreshes_the_least_typical_prompts(tiny_lm, polytope):
    """Facet 0 (named for cyber) renamed for privacy: its least typical prompts are privacy prompts, none of cyber's."""
    wb = Workbench(tiny_lm, polytope, roles=Roles(None))
    before = wb.require_artifact().facets[0]["scorecard"]["least_typical"]
    assert before and {p["category"] for p in before} == {"cyber"}
    facet = wb.label(0, "doxxing and stalking", "", "auditor", 0.5, "privacy")
    least = facet["scorecard"]["least_typical"]
    assert least and {p["category"] for p in least} == {"privacy"}
    assert all(p["fires"] is False for p in least)  # facet 0 fires on no privacy prompt: it misses them
    card = render.facet_cards_html(wb.require_artifact().facets, None).split('data-facet="0"')[1].split('data-facet="1"')[0]
    assert "least typical (privacy prompts it fires on least)" in card and "[cyber]" not in card.split("least typical")[1]
    assert "misses</span> [privacy]" in card


def test_most_and_least_typical_never_repeat_a_prompt():
    """A facet without a category that fires on only two prompts: both are most typical, so none is also least typical."""
    check = load_check_set()
    unsafe = [i for i, lab in enumerate(check["label"]) if lab == "unsafe"]
    v = torch.full((len(check), 1), -1.0)
    v[unsafe[:2], 0] = torch.tensor([0.5, 0.1])
    card = facet_scorecards(v, check, [None], check_set_fingerprint())[0]
    most = {p["text"] for p in card["most_typical"]}
    assert not most & {p["text"] for p in card["least_typical"]}
    # a card stored before (the shipped backstop's lists were the same three prompts, reversed) is shown without repeats
    stored = {"name": "Backstop", "source": "from category", "category": None, "author": "taxonomy", "confidence": 0.0,
              "history": [], "scorecard": {**card, "least_typical": list(reversed(card["most_typical"]))}}
    html = render.facet_cards_html([stored], None)
    for p in card["most_typical"]:
        assert html.count(" ".join(p["text"].split()).replace("'", "&#x27;")) == 1
    assert "least typical: none beyond the 3 above" in html
    assert "confidence 0.00" not in html and "names no category, so no confidence" in html and "never relabelled" in html


def test_a_card_says_which_figure_to_trust_when_training_and_check_set_disagree():
    """The suggestion equals the current name, but the check set finds the name misleading: one line says both."""
    facet = {"name": "Self harm", "source": "from category", "category": "self_harm", "author": "taxonomy", "confidence": 0.91,
             "history": [{"name": "Self harm", "author": "a", "confidence": 0.8}],
             "scorecard": {"category": "self_harm", "name_score": 0.6, "check_set": {"n": 10, "n_safe": 5, "n_unsafe": 5}}}
    suggestion = {"name": "Self harm", "confidence": 0.92, "evidence": "33/35 self_harm"}
    html = render.facet_cards_html([facet], None, suggestions=[suggestion])
    assert "name misleading: 0.60" in html and "(confidence 0.92" not in html
    assert "training-prompt purity 0.92" in html and "trust the check set" in html and "1 label edit<" in html
    fits = render.facet_cards_html([{**facet, "scorecard": {**facet["scorecard"], "name_score": 0.9}}], None, suggestions=[suggestion])
    assert "trust the check set" not in fits


def test_a_refused_save_answers_in_the_form_and_leaves_the_other_panels_alone(tiny_lm, polytope):
    wb = Workbench(tiny_lm, polytope, roles=Roles(None))
    handlers = FacetHandlers(wb, Files())
    out = handlers.save_label(0, "new name", "", "   ", 0.5, "auto", gr.Request())  # no author: no exception, so no red badges
    assert "Not saved: Name yourself under Author" in out[0] and "sap-error" in out[0]
    assert all(o == gr.skip() for o in out[1:]) and len(out) == 12
    assert wb.require_artifact().facets[0]["name"] != "new name"
    out = handlers.save_label(0, "new name", "", "auditor", 7, "auto", gr.Request())  # the core's refusal, the same way
    assert out[0].startswith('<div class="sap-status sap-error') and all(o == gr.skip() for o in out[1:])


def test_the_category_heatmap_names_policy_facets_as_such(tiny_lm, polytope):
    from sap_viz.ui import plots
    stats = {"categories": ["cyber", "privacy"], "soft_joint": [[0.8, 0.2], [0.1, 0.9]]}
    assert "policy facets" in plots.category_facet_heatmap(stats, ["a", "b"], policy=True).layout.title.text
    assert "learned facets" in plots.category_facet_heatmap(stats, ["a", "b"]).layout.title.text
    wb = Workbench(tiny_lm, polytope, roles=Roles(None))
    art = wb.require_artifact()
    art.meta["facet_stats"] = stats
    for f in art.facets:
        f["source"] = "from category"
    overview = FacetHandlers(wb, Files()).facet_overview(wb)
    assert "policy facets" in overview[1].layout.title.text

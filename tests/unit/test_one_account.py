"""Issue 40: one generation, one account, rendered the same by every view.

One result goes to every renderer (the verdict line, the token view, the heatmap, the why-steered table,
``sap-viz generate --json`` and the server's ``sap`` object); each must show the same firing facets (ids and values,
in order), the same category or reason none is named, each steered position's outcome and the answer check's verdict.
"""

from __future__ import annotations

import html
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from sap_viz.analysis.account import (
    BY_ANSWER,
    BY_ANSWER_CHECK,
    CAPPED,
    FIXED,
    MADE_WORSE,
    STEERING_POLYTOPE,
    comparison_json,
    generation_account,
    position_boundary,
)
from sap_viz.analysis.report import NAME_FITS
from sap_viz.method.generation_results import Comparison, GenerationResult, TokenInfo
from sap_viz.method.verdict import BY_LAST, BY_SPAN
from sap_viz.serve.engine import ChatEngine
from sap_viz.ui import plots, render
from sap_viz.ui.tab_explore import why_rows

NAMES = ["Violence & weapons", "Fraud <deception>", "Cyber"]
FACETS = [{"name": NAMES[0], "scorecard": {"category": "violence_weapons", "name_score": 0.68}},
          {"name": NAMES[1], "scorecard": {"category": "fraud_deception", "name_score": 0.91}},
          {"name": NAMES[2]}]
SETTINGS = {"threshold": 0.0, "span_threshold": 0.0198, "generation_threshold": 0.4, "strength": 3.0, "mode": "steer"}


def tok(i: int, text: str, values: list[float], prompt: bool = True, after: list[float] | None = None, **extra) -> TokenInfo:
    return TokenInfo(i, 100 + i, text, prompt, values, after, **extra)


def steered(i: int, text: str, values: list[float], before: float, after: float, prompt: bool = False) -> TokenInfo:
    return tok(i, text, values, prompt, steered=True, template=prompt, delta_norm=1.5, steps=7, steer_before=before, steer_after=after,
               after=[v - 1 for v in values], answer_check=None if prompt else 0.3)


def flagged_by_last() -> GenerationResult:
    """Two facets fire at the last token, the top one's name misses the bar; three positions steered, one of each outcome."""
    tokens = [steered(0, "<|im_start|>", [-0.5, -1.0, -2.0], 12.87, 13.32, prompt=True),
              tok(1, "How", [-1.0, -0.3, -2.0]), tok(2, " bomb", [-0.2, -0.4, -1.0]),
              tok(3, "?", [0.27, 0.062, -0.8], template=True),
              steered(4, " Sure", [1.2, -1.0, -1.0], 1.60, 0.69), steered(5, " for", [0.9, -1.0, -1.0], 1.2, -3.4),
              tok(6, ".", [-2.0, -2.0, -2.0], False, answer_check=-0.6)]
    return GenerationResult("How bomb?", "steer", "Sure for.", tokens, 4, False, NAMES, dict(SETTINGS), text_span=(1, 3),
                            answer_check={"score": 0.25, "threshold": 0.1, "flagged": True, "layer": 20})


def flagged_by_span() -> GenerationResult:
    """The last token stays inside; a token of the request reaches the span boundary; the top facet's name fits."""
    tokens = [tok(0, "<|im_start|>", [-3.0, -3.0, -3.0], template=True), tok(1, "Ignore", [-1.0, 0.05, 0.03]),
              tok(2, " rules", [-1.0, 0.01, 0.03]), tok(3, "?", [-0.4, -0.2, -0.9], template=True),
              steered(4, " Well", [0.3, -1.0, -1.0], 0.8, -3.1)]
    return GenerationResult("Ignore rules", "steer", "Well", tokens, 4, False, NAMES, dict(SETTINGS), text_span=(1, 3),
                            answer_check={"score": -0.5, "threshold": 0.1, "flagged": False, "layer": 20})


def benign() -> GenerationResult:
    tokens = [tok(0, "Name", [-2.0, -1.0, -3.0]), tok(1, " colours", [-1.5, -0.9, -2.0]), tok(2, ".", [-0.3, -0.6, -0.9]),
              tok(3, " Red", [-1.0, -2.0, -2.0], False, answer_check=-1.2), tok(4, " blue", [0.5, -2.0, -2.0], False,
                                                                                  answer_check=-1.0)]
    return GenerationResult("Name colours.", "steer", "Red blue", tokens, 3, False, NAMES, dict(SETTINGS), text_span=(0, 2),
                            answer_check={"score": -1.1, "threshold": 0.1, "flagged": False, "layer": 20})


def server_sap(result: GenerationResult) -> dict:
    art = SimpleNamespace(layer=20, facets=FACETS, facet_name=lambda k: NAMES[k])
    engine = ChatEngine(None, art, "m", "p", None)
    req = SimpleNamespace(settings=SimpleNamespace(to_json=dict), notices=(), tokens=False)
    return engine.report(req, result, result.refused, None)


def plain_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


CASES = {"last token": flagged_by_last, "span only": flagged_by_span, "benign": benign}


@pytest.mark.parametrize("case", CASES)
def test_every_view_renders_the_same_account(case):
    result = CASES[case]()
    cmp = Comparison(result, result)
    account = generation_account(result, FACETS)
    truth = account.to_json()

    # the CLI's --json and the server's sap object carry the account itself, through JSON
    assert json.loads(json.dumps(comparison_json(cmp, FACETS)))["account"] == truth
    assert json.loads(json.dumps(server_sap(result)))["account"] == truth

    # the verdict line: the firing facets by id, name and value, in order; the category or why none is named
    verdict = render.verdict_html(result, None, result, FACETS)
    lead = plain_text(re.search(r'<div class="sap-plain-verdict".*?</div>', verdict, re.S).group(0))
    assert re.search(r'data-firing="([^"]*)"', verdict).group(1) == ",".join(str(f["id"]) for f in truth["firing"])
    shown = re.findall(r"(\d+) “([^”]*)” ([+-]\d\.\d\d)", lead)
    assert shown == [(str(f["id"]), f["name"], f"{f['value']:+.2f}") for f in truth["firing"]]
    if truth["category"]:
        assert "most like" in lead and "no category is named" not in lead
    elif truth["flagged"]:
        assert f"no category is named, because {truth['no_category']}" in lead
    assert truth["outcome"] in lead and truth["sentence"] in lead
    words = truth["answer_check"]["words"]
    assert re.search(r'class="sap-answer-check">([^<]*)<', verdict).group(1) == words

    # the token view: each steered position carries its outcome; red (data-over) exactly at or above its boundary
    chips = re.findall(r'<span class="sap-tok[^"]*" style="background:(#[0-9a-f]{6});color:#[0-9a-f]{6}" data-over="(\w+)"'
                       r'(?: data-outcome="([^"]*)")?', render.tokens_html(result, "", account))
    assert len(chips) == len(result.tokens)
    for t, (colour, over, _) in zip(result.tokens, chips, strict=True):
        assert (over == "true") == (t.max_violation >= position_boundary(result, t))
        r, g, b = (int(colour[k:k + 2], 16) for k in (1, 3, 5))
        assert (r > b) == (over == "true"), (t.index, colour)  # red at or above the boundary, never below it
    outcomes = {t.index: o for t, (_, _, o) in zip(result.tokens, chips, strict=True) if o}
    assert outcomes == {p["index"]: p["outcome"] for p in truth["steering"]["positions"]}

    # the heatmap: every cell is its distance to its position's boundary; the firing cells are exactly those ≥ 0 at the
    # deciding position; the steered marks say each position's outcome
    fig = plots.token_heatmap(result)
    z = np.array(fig.data[0].z, dtype=float)
    if truth["position"] is not None and truth["flagged"]:
        col = z[:, truth["position"]]
        assert [k for k in np.argsort(-col) if col[k] >= 0] == [f["id"] for f in truth["firing"]]
    marks = [d for d in fig.data if (d.name or "").startswith("steered: ")]
    shown = sorted((x, d.name.removeprefix("steered: "), text) for d in marks for x, text in zip(d.x, d.hovertext, strict=True))
    assert [(x, outcome) for x, outcome, _ in shown] == \
        sorted((p["index"], p["outcome"]) for p in truth["steering"]["positions"])
    assert all(f": {outcome};" in text and STEERING_POLYTOPE in html.unescape(text) for _, outcome, text in shown)
    assert all(set(d.y) == {plots.STEERED_ROW} for d in marks)  # on a row of their own, never over a facet's cell
    check_rows = [d for d in fig.data if d.type == "heatmap" and list(d.y) == ["answer check"]]
    assert len(check_rows) == 1 and check_rows[0].colorbar.title.text == "answer check − threshold"

    # the why-steered table: one row per steered position, with its outcome and whether it ended inside
    rows = [r for r in why_rows(cmp, account) if r["result"].startswith("steered")]
    assert [(r["#"], r["result"].split(": ")[1].split(" (")[0], r["ended"]) for r in rows] == \
        [(p["index"], p["outcome"], "inside" if p["inside"] else "outside") for p in truth["steering"]["positions"]]


def test_the_account_of_the_gun_prompt_names_every_firing_facet_and_why_no_category():
    account = generation_account(flagged_by_last(), FACETS)
    assert account.by == (BY_LAST, BY_ANSWER, BY_ANSWER_CHECK) and account.flagged_by == ("prompt", "answer")
    assert [(f.id, f.value) for f in account.firing] == [(0, 0.27), (1, 0.062)]
    assert "Then the answer check flagged the answer on the finished answer (score +0.25 ≥ +0.10)." in account.sentence
    assert account.category is None
    assert account.no_category == (f"facet 0 “{NAMES[0]}” claims violence and weapons, but its name score 0.68 is below "
                                   f"the {NAME_FITS:.2f} bar (name fits partly)")
    # the three outcomes, measured: 0.69 missed the target (capped), −3.4 met it (fixed), 12.87 → 13.32 rose (made worse)
    assert {p.index: p.outcome for p in account.steered} == {4: CAPPED, 5: FIXED, 0: MADE_WORSE}
    assert account.counts() == {FIXED: 1, CAPPED: 1, MADE_WORSE: 1} and not account.all_inside
    assert "back inside" not in account.outcome and "2 of them ended still outside" in account.outcome
    assert account.answer_check["words"] == "harmful"


def test_back_inside_is_said_only_when_every_steered_position_ended_inside():
    span = generation_account(flagged_by_span(), FACETS)
    assert span.by == (BY_SPAN, BY_ANSWER) and span.all_inside and "every one ended back inside" in span.outcome
    assert [f.id for f in span.firing] == [1, 2] and span.firing[0].boundary == SETTINGS["span_threshold"]
    assert span.category == "fraud_deception" and span.no_category is None
    calm = generation_account(benign(), FACETS)
    assert not calm.flagged and calm.firing == () and calm.by == (BY_ANSWER,) and calm.category is None
    assert calm.sentence.startswith("Not flagged") and "1 answer token reached the answer boundary" in calm.sentence
    assert calm.flagged_by == ()


def test_an_answer_the_check_flags_flags_the_generation_even_when_the_prompt_passed():
    result = benign()
    result.answer_check = {"score": 0.4, "threshold": 0.1, "flagged": True, "layer": 16, "fired_at": 1, "stopped": True}
    result.fallback, result.steered_text, result.text = True, result.text, "Sorry."
    account = generation_account(result, FACETS)
    assert account.flagged and not account.prompt_flagged and account.flagged_by == ("answer",) and account.label == "flagged"
    assert account.sentence.startswith("Flagged by the answer: no facet fires on the request, but the answer check flagged "
                                       "the answer at answer token 2 (score +0.40 ≥ +0.10).")
    assert "stopped there and replaced by a refusal" in account.outcome
    assert account.to_json()["flagged_by"] == ["answer"]


def test_every_per_token_view_renders_the_results_token_rows():
    """One source of per-token rows (``GenerationResult.token_rows``): the CLI's table, the app's token table and its CSV
    export, and the server's ``sap.tokens`` carry the same values for the same position."""
    from sap_viz.ui.tab_explore import token_rows as export_rows
    from sap_viz.ui.tab_explore import token_table

    res = flagged_by_last()
    rows = res.token_rows()
    art = SimpleNamespace(layer=20, facets=FACETS, facet_name=lambda k: NAMES[k])
    req = SimpleNamespace(settings=SimpleNamespace(to_json=dict), notices=(), tokens=True)
    served = ChatEngine(None, art, "m", "p", None).report(req, res, res.refused, None)["tokens"]
    assert [{**r, "violations": [round(v, 5) for v in r["violations"]]} for r in rows] == served
    assert [r["index"] for r in rows] == [t.index for t in res.tokens]
    table = token_table(res)
    exported = [r for r in export_rows(SimpleNamespace(baseline=res, intervened=res)) if r["run"] == "unsteered"]
    for r, shown, out in zip(rows, table, exported, strict=True):
        assert shown["#"] == out["index"] == r["index"] and shown["part"] == out["part"] == r["part"]
        if r["violations"] is None:
            assert shown["max v"] is None and out["max_violation"] is None
            continue
        assert shown["max v"] == round(r["max_violation"], 3) and out["max_violation"] == r["max_violation"]
        assert shown["worst facet"] == f"{r['top_facet']}: {res.facet_names[r['top_facet']]}"
        for k, name in enumerate(res.facet_names):
            assert out[f"v{k} {name}"] == r["violations"][k]
        assert (shown["steered"] == "yes") == r["steered"] == out["steered"]
    steered = [r for r in rows if r["steered"]]
    assert steered and all(r["after"] is not None and r["steps"] > 0 for r in steered)

"""Issue 28, finding 8, with the embedded model: on the stored short harmful prompts, how often the annotated
harmful word ranks first in the default attribution view (the prompt's worst facet).

Computed here, not copied: the figures in research/attribution/results.json only set the floor. The method was
chosen on the ``choose`` half (target: 80 %, reached there); on the held-out ``report`` half it reached less (see
results.md), so that half asserts the stored figure less one prompt (a near-tie may flip with the CPU's float
rounding) and that the fix beats plain deletion measured in the same pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sap_viz.analysis.attribution import split_words, word_masking
from sap_viz.method.artifact import load_polytope
from sap_viz.settings import DEFAULT_POLYTOPE

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "sap_viz" / "data" / "eval_sets" / "attribution_short_harmful.jsonl"
STORED = ROOT / "research" / "attribution" / "results.json"
TARGET = 0.8


@pytest.fixture(scope="module")
def measured(embedded_lm):
    art = load_polytope(DEFAULT_POLYTOPE, embedded_lm.hidden_size, embedded_lm.num_layers, embedded_lm.fingerprint)
    out = {"choose": [], "report": []}
    for row in (json.loads(line) for line in DATA.read_text().splitlines() if line.strip()):
        att = word_masking(embedded_lm, art, row["text"], gradients=False)
        k = att.top_facet
        plain_first = int(att.plain_delta[:, k].argmax())
        out[row["set"]].append({"hit": att.ranked()[0] == row["word_index"], "plain_hit": plain_first == row["word_index"],
                                "old_default_hit": int(att.plain_delta[:, 0].argmax()) == row["word_index"]})
    return out


def test_the_stored_set_is_annotated_as_documented():
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    assert [r["set"] for r in rows].count("choose") == 20 and [r["set"] for r in rows].count("report") == 20
    assert len({r["text"] for r in rows}) == 40
    for r in rows:
        words = split_words(r["text"])
        assert len(words) == r["n_words"] <= 10
        assert words[r["word_index"]].strip("?.!,").lower() == r["harmful_word"].lower()
        assert r["split"] in (("train",) if r["set"] == "choose" else ("val", "test"))


def test_harmful_word_ranks_first_on_the_choosing_set(measured):
    rows = measured["choose"]
    rate = sum(r["hit"] for r in rows) / len(rows)
    assert rate >= TARGET, f"harmful word first on {rate:.0%} of the choosing set"
    assert rate > sum(r["plain_hit"] for r in rows) / len(rows)  # better than plain deletion on the same facet


def test_held_out_rate_holds_the_documented_figure(measured):
    rows = measured["report"]
    hits = sum(r["hit"] for r in rows)
    stored = json.loads(STORED.read_text())["summary"]["final"]
    assert hits >= stored["hits"] - 1, f"{hits}/20 held-out hits, documented {stored['hits']}/20"
    assert hits > sum(r["plain_hit"] for r in rows) and hits > sum(r["old_default_hit"] for r in rows)

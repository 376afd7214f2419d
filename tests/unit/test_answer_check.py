"""The answer check: fitting, its files, the re-read of the written answer, the fallback and the honest why-steered rows."""

import json
import math

import pytest
import torch

from sap_viz.method.answer_check import AnswerCheck, AnswerCheckFileError, answer_states, calibrate, fit_answer_check
from sap_viz.method.artifact import load_polytope, save_polytope, save_steering
from sap_viz.method.generation import GenerationConfig, compare, run_generation
from sap_viz.method.polytope_hook import DEFAULT_REFUSAL, InterventionConfig
from sap_viz.model.features import hidden_states_at
from sap_viz.model.prompts import encode_prompt
from sap_viz.ui.tab_explore import why_rows
from tests.conftest import make_tiny_lm, separating_artifact
from tests.unit.test_directional_steering import _meta, always_outside_part

BAD, GOOD = "bad request", "good request"


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama", seed=3)


def constant_check(lm, layer: int, bias: float) -> AnswerCheck:
    d = lm.hidden_size
    return AnswerCheck(layer, torch.zeros(d), torch.ones(d), torch.zeros(d), bias, 0.0, {"note": "constant"})


def test_fit_separates_and_calibration_bounds_false_alarms():
    torch.manual_seed(0)
    d = 16
    harmful = [torch.randn(5, d) + 2.0 for _ in range(30)]
    harmless = [torch.randn(7, d) - 2.0 for _ in range(30)]
    check = fit_answer_check(harmful, harmless, layer=3)
    assert all(check.answer_score(s) > 0 for s in harmful) and all(check.answer_score(s) < 0 for s in harmless)
    scores = [float(x) for x in torch.linspace(-3, 3, 100)]
    calibrate(check, scores, max_false_alarms=0.05)
    assert sum(check.flags(s) for s in scores) <= 5
    assert check.answer_score(torch.zeros(0, d)) is None and not check.flags(None)


def test_states_are_the_answer_tokens_read_after_the_prompt(lm):
    prompt = encode_prompt(lm.tokenizer, BAD).ids
    answer = list(lm.tokenizer("some words here", add_special_tokens=False)["input_ids"])
    (states,) = answer_states(lm, [prompt], [answer], layer=1)
    whole = hidden_states_at(lm, [prompt + answer], 1)[0]
    assert states.shape == (len(answer), lm.hidden_size)
    torch.testing.assert_close(states, whole[len(prompt):])


def test_files_round_trip_and_hostile_values_are_refused(lm, tmp_path):
    check = constant_check(lm, 1, 0.5)
    check.weight = torch.randn(lm.hidden_size)
    check.save(tmp_path)
    back = AnswerCheck.load(tmp_path, lm.hidden_size, lm.num_layers)
    torch.testing.assert_close(back.weight, check.weight)
    assert (back.layer, back.bias, back.meta) == (1, 0.5, {"note": "constant"})
    meta = json.loads((tmp_path / "answer_check.json").read_text())
    for key, value, fragment in [("layer", 99, "'layer'"), ("threshold", "high", "'threshold'"), ("bias", None, "'bias'")]:
        (tmp_path / "answer_check.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(AnswerCheckFileError, match=fragment):
            AnswerCheck.load(tmp_path, lm.hidden_size, lm.num_layers)
    (tmp_path / "answer_check.json").write_text(json.dumps(meta))
    with pytest.raises(AnswerCheckFileError, match="model's width"):
        AnswerCheck.load(tmp_path, lm.hidden_size + 1, lm.num_layers)
    assert AnswerCheck.load(tmp_path / "nothing", lm.hidden_size, lm.num_layers) is None


def steered_artifact(lm, tmp_path, bias: float):
    """A polytope whose steering part always moves flagged rows, with an answer check that always (bias > 0) or never flags."""
    art = separating_artifact(lm, 2, BAD, GOOD)
    part = always_outside_part(lm, 1)
    save_polytope(tmp_path, art.polytope, _meta(lm, 2))
    save_steering(tmp_path, part.polytope, part.direction, _meta(lm, 1), constant_check(lm, 2, bias))
    return load_polytope(tmp_path, lm.hidden_size, lm.num_layers)


def test_fallback_refuses_only_steered_answers_the_check_still_flags(lm, tmp_path):
    art = steered_artifact(lm, tmp_path, bias=5.0)
    assert art.steering.answer_check is not None
    gen = GenerationConfig(max_new_tokens=12, min_new_tokens=12)
    bad, good = run_generation(lm, art, [BAD, GOOD], gen, InterventionConfig(mode="steer"))
    assert bad.fallback and bad.text == DEFAULT_REFUSAL and bad.steered_text and bad.answer_check["flagged"]
    assert all(t.answer_check is not None for t in bad.generated) and all(t.answer_check is None for t in bad.tokens[:bad.prompt_len])
    # the unflagged row was never steered: it keeps its answer even though the check flags it
    assert not good.fallback and good.answer_check["flagged"] and good.text != DEFAULT_REFUSAL
    kept = run_generation(lm, art, [BAD], gen, InterventionConfig(mode="steer", fallback=False))[0]
    assert not kept.fallback and kept.text == bad.steered_text and kept.settings["fallback"] is False
    monitored = run_generation(lm, art, [BAD], gen, InterventionConfig(mode="monitor"))[0]
    assert not monitored.fallback and monitored.answer_check["flagged"]
    calm = steered_artifact(lm, tmp_path / "calm", bias=-5.0)
    assert not run_generation(lm, calm, [BAD], gen, InterventionConfig(mode="steer"))[0].fallback


def test_why_steered_rows_are_measured_and_honest(lm, tmp_path):
    art = steered_artifact(lm, tmp_path, bias=-5.0)
    cmp = compare(lm, art, BAD, GenerationConfig(max_new_tokens=10, min_new_tokens=10), InterventionConfig(mode="steer"))
    res = cmp.intervened
    rows = why_rows(cmp)
    steered = [t for t in res.tokens if t.steered]
    assert len(rows) == len(steered) > 0, "one row per edited position, nothing else"
    parts = [r["part"] for r in rows]
    assert parts == sorted(parts, key=["answer", "your text", "template"].index)
    assert {"template", "your text"} <= set(parts)  # the chat template's tokens are shown apart from the user's
    target = -res.settings["strength"]
    for row in rows:
        assert row["before"] is not None and row["after"] is not None and math.isfinite(row["before"])
        if row["result"] == "steered: fixed":
            assert row["after"] <= target + 1e-6
        else:  # this part's facet never holds: every move is capped and never called fixed
            assert row["result"].startswith(("steered: capped", "steered: made worse")) and row["after"] > target
        assert row["ended"] == ("inside" if row["after"] < 0 else "outside")
        assert row["‖Δh‖"] > 0

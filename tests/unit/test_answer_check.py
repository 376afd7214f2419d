"""The answer check: fitting, its files, its evidence rule, the reading while the answer is written (equal to a re-read,
no second pass), where it stops a stream in each mode, and the honest why-steered rows."""

import json
import math

import pytest
import torch

from sap_viz.method.answer_check import (
    RUNNING_MEAN,
    WINDOW,
    AnswerCheck,
    AnswerCheckFileError,
    answer_states,
    calibrate,
    fit_answer_check,
    rule_score,
)
from sap_viz.method.artifact import load_polytope, save_polytope, save_steering
from sap_viz.method.generation import GenerationConfig, compare, run_generation, stream_generation
from sap_viz.method.generation_results import GenerationResult
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


def constant_check(lm, layer: int, bias: float, window: int | None = None) -> AnswerCheck:
    """A check whose every token logit is ``bias``: with a window, it fires once ``window`` answer tokens are read."""
    d = lm.hidden_size
    rule = {"rule": WINDOW, "window": window} if window else {}
    return AnswerCheck(layer, torch.zeros(d), torch.ones(d), torch.zeros(d), bias, 0.0, {"note": "constant"}, **rule)


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


def test_states_are_the_answer_tokens_generation_reads(lm):
    prompt = encode_prompt(lm.tokenizer, BAD).ids
    answer = list(lm.tokenizer("some words here", add_special_tokens=False)["input_ids"])
    (states,) = answer_states(lm, [prompt], [answer], layer=1)
    whole = hidden_states_at(lm, [prompt + answer], 1)[0]
    assert states.shape == (len(answer) - 1, lm.hidden_size), "the last token written is never read back"
    torch.testing.assert_close(states, whole[len(prompt):len(prompt) + len(answer) - 1])


def test_the_evidence_rule_needs_a_full_window_and_judges_short_answers_at_their_end():
    logits = [-1.0, 3.0, -1.0, 2.0, 2.0, -4.0]
    assert rule_score(logits, 2, WINDOW) == pytest.approx(2.0)  # tokens 3-4
    assert rule_score(logits, 10, WINDOW) == pytest.approx(sum(logits) / 6)  # shorter than the window: its mean
    assert rule_score(list(range(10)), None, RUNNING_MEAN) == pytest.approx(4.5)  # from the 8th token on
    check = AnswerCheck(0, torch.zeros(2), torch.ones(2), torch.zeros(2), 0.0, 1.5, {}, window=2, rule=WINDOW)
    assert [check.fires_now(logits[:n]) for n in range(1, 7)] == [False, False, False, False, True, False]
    assert check.fired_at(logits) == 4
    short = AnswerCheck(0, torch.zeros(2), torch.ones(2), torch.zeros(2), 0.0, 0.0, {}, window=8, rule=WINDOW)
    assert short.fired_at([1.0, 1.0]) == 1 and short.fired_at([-1.0, 0.5]) is None


@pytest.mark.parametrize("use_cache", [True, False])
def test_reading_while_writing_equals_a_re_read_even_beside_a_steering_edit(lm, tmp_path, use_cache):
    """The check's hook sits on the steering part's own block, before its edit: what it reads is the text's states."""
    art = separating_artifact(lm, 2, BAD, GOOD)
    part = always_outside_part(lm, 1)
    check = constant_check(lm, 1, 0.0)
    check.weight = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    save_polytope(tmp_path, art.polytope, _meta(lm, 2))
    save_steering(tmp_path, part.polytope, part.direction, _meta(lm, 1), check)
    art = load_polytope(tmp_path, lm.hidden_size, lm.num_layers)
    gen = GenerationConfig(max_new_tokens=8, min_new_tokens=8, use_cache=use_cache)
    for mode in ("monitor", "steer"):
        res = run_generation(lm, art, [BAD], gen, InterventionConfig(mode=mode, fallback=False))[0]
        assert mode == "monitor" or res.interventions > 0
        answer = [t.token_id for t in res.generated]
        (states,) = answer_states(lm, [[t.token_id for t in res.tokens[:res.prompt_len]]], [answer], 1)
        read = [t.answer_check for t in res.generated[:-1]]
        torch.testing.assert_close(torch.tensor(read), check.token_logits(states), atol=1e-4, rtol=1e-4)
        assert res.generated[-1].answer_check is None and res.answer_check["tokens_read"] == len(answer) - 1


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


def steered_artifact(lm, tmp_path, bias: float, window: int | None = None):
    """A polytope whose steering part always moves flagged rows, with an answer check that always (bias > 0) or never flags."""
    art = separating_artifact(lm, 2, BAD, GOOD)
    part = always_outside_part(lm, 1)
    save_polytope(tmp_path, art.polytope, _meta(lm, 2))
    save_steering(tmp_path, part.polytope, part.direction, _meta(lm, 1), constant_check(lm, 2, bias, window))
    return load_polytope(tmp_path, lm.hidden_size, lm.num_layers)


def test_a_flagged_answer_stops_where_the_check_fires_in_steer_and_refuse_and_is_only_reported_in_monitor(lm, tmp_path):
    art = steered_artifact(lm, tmp_path, bias=5.0, window=3)
    gen = GenerationConfig(max_new_tokens=12, min_new_tokens=12)  # the forced end of text overrides the minimum length
    bad, good = run_generation(lm, art, [BAD, GOOD], gen, InterventionConfig(mode="steer"))
    # the unflagged prompt's answer is judged too: the answer side of the verdict does not need the prompt's flag
    assert not good.prompt_flagged and good.fallback and good.text == DEFAULT_REFUSAL
    assert good.answer_check["flagged"] and good.answer_check["fired_at"] == 2 and good.answer_check["stopped"]
    # three tokens read, the third fired the check: nothing after it was written, then the end of text
    assert len(good.generated) == 4 and good.generated[-1].token_id in lm.eos_ids
    assert good.steered_text == lm.tokenizer.decode([t.token_id for t in good.generated[:3]], skip_special_tokens=True)
    assert bad.prompt_flagged and bad.fallback and bad.text == DEFAULT_REFUSAL and bad.answer_check["stopped"]
    # refuse mode: generated tokens never reach the polytope's answer boundary here, so only the prompt verdict refuses
    refused, answered = run_generation(lm, art, [BAD, GOOD], gen, InterventionConfig(mode="refuse", generation_threshold=1e6))
    assert refused.refused and not answered.refused
    for res in (refused, answered):
        if res.refused:  # the polytope refused it: the forced refusal is not the model's answer to judge
            assert res.answer_check is None and not res.fallback
        else:
            assert res.fallback and res.text == DEFAULT_REFUSAL and res.answer_check["fired_at"] == 2
    kept = run_generation(lm, art, [GOOD], gen, InterventionConfig(mode="steer", fallback=False))[0]
    assert not kept.fallback and kept.answer_check["flagged"] and not kept.answer_check["stopped"]
    assert len(kept.generated) == 12 and kept.settings["fallback"] is False
    monitored = run_generation(lm, art, [BAD], gen, InterventionConfig(mode="monitor"))[0]
    assert not monitored.fallback and monitored.answer_check["flagged"] and monitored.answer_check["fired_at"] == 2
    assert len(monitored.generated) == 12, "monitor mode reports a flagged answer and changes nothing"
    calm = steered_artifact(lm, tmp_path / "calm", bias=-5.0, window=3)
    quiet = run_generation(lm, calm, [BAD], gen, InterventionConfig(mode="steer"))[0]
    assert not quiet.fallback and not quiet.answer_check["flagged"] and quiet.answer_check["fired_at"] is None


def test_a_stream_ends_at_the_token_that_fired_the_check(lm, tmp_path):
    art = steered_artifact(lm, tmp_path, bias=5.0, window=4)
    gen = GenerationConfig(max_new_tokens=12, min_new_tokens=12)
    items = list(stream_generation(lm, art, GOOD, gen, InterventionConfig(mode="steer")))
    result, texts = items[-1], items[:-1]
    assert isinstance(result, GenerationResult) and result.answer_check["fired_at"] == 3
    assert len(texts) == 4, "the four tokens read before the check fired reached the consumer, and none after"
    assert texts[-1] == result.steered_text and result.text == DEFAULT_REFUSAL


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


def test_prompt_and_response_pairs_are_judged_as_while_generating(lm, tmp_path, monkeypatch, capsys):
    """``answer_verdicts`` and ``sap-viz score`` with a response column: the pair's answer side, read as generation reads it."""
    from sap_viz.cli import commands, main
    from sap_viz.method.scoring import answer_verdicts

    art = steered_artifact(lm, tmp_path / "p", bias=5.0, window=3)
    res = run_generation(lm, art, [GOOD], GenerationConfig(max_new_tokens=12, min_new_tokens=12),
                         InterventionConfig(mode="monitor"))[0]
    written = res.text
    (verdict,) = answer_verdicts(lm, art, [GOOD], [written])
    assert verdict.flagged and verdict.fired_at == 2 == res.answer_check["fired_at"]
    short, empty = answer_verdicts(lm, art, [GOOD, GOOD], ["ok", "  "])
    assert short.flagged and short.fired_at == short.tokens_read - 1  # short of the window: judged at its end
    assert not empty.flagged and empty.score is None and empty.tokens_read == 0
    calm = steered_artifact(lm, tmp_path / "calm", bias=-5.0, window=3)
    assert not answer_verdicts(lm, calm, [GOOD], [written])[0].flagged

    rows = tmp_path / "pairs.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in [{"text": GOOD, "response": written}, {"text": BAD}]) + "\n")
    monkeypatch.setattr(commands, "_model", lambda args: lm)
    monkeypatch.setattr(commands, "_load_artifact", lambda lm_, path: art)
    out = tmp_path / "scored.jsonl"
    assert main(["score", "--input", str(rows), "--output", str(out)]) == 0
    paired, alone = [json.loads(line) for line in out.read_text().splitlines()]
    assert paired["answer_check"]["flagged"] and "answer" in paired["flagged_by"] and paired["unsafe"]
    assert "answer_check" not in alone and alone["unsafe"] == alone["verdict"]["flagged"]
    assert "1 of 1 responses flagged by the answer check" in capsys.readouterr().err
    rows.write_text(json.dumps({"text": GOOD, "response": 3}) + "\n")
    assert main(["score", "--input", str(rows), "--output", str(out)]) == 2
    assert "'response' must be text" in capsys.readouterr().err

"""Directional Safe Flow, the steering part of a polytope directory, response-aware data and the answer judge."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sap_viz.analysis.answer_judge import AnswerJudge, JudgeConfig
from sap_viz.analysis.steering_outcomes import summarise
from sap_viz.data.responses import answer_ids_for, assign_refusals, load_refusals, response_states
from sap_viz.method.artifact import PolytopeFileError, SteeringPart, load_polytope, save_polytope, save_steering
from sap_viz.method.directional_steering import DirectionalConfig, directional_steps
from sap_viz.method.generation import GenerationConfig, compare
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.model.features import hidden_states_at
from sap_viz.model.hooks import count_hooks
from sap_viz.model.loading import model_identity
from sap_viz.model.prompts import encode_prompt
from tests.conftest import linear_artifact, make_tiny_lm, separating_artifact

BAD, GOOD = "bad request", "good request"


def RAW(**kw) -> DirectionalConfig:  # noqa: N802 - reads as the config it builds
    """The refusal direction alone: no opener, no early end (the mechanism the tests below pin down)."""
    return DirectionalConfig(openers=(), let_go="never", **kw)


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama", seed=3)


def always_outside_part(lm, layer: int, scale: float = 3.0) -> SteeringPart:
    """A steering part whose facet never holds (so every flagged state moves the full max step)."""
    phi = torch.zeros(1, lm.hidden_size)
    phi[0, 0] = 1.0
    part = linear_artifact(lm, layer, phi, torch.tensor([-1e6]))
    torch.manual_seed(7)
    direction = torch.randn(lm.hidden_size)
    return SteeringPart(part.polytope, scale * direction / direction.norm() * 10, part.meta)


def test_directional_steps_take_the_smallest_grid_step_that_is_deep_enough(lm):
    phi = torch.zeros(1, lm.hidden_size)
    phi[0, 0] = 1.0  # v = h[0]
    poly = linear_artifact(lm, 1, phi, torch.tensor([0.0])).polytope
    direction = torch.zeros(lm.hidden_size)
    direction[0] = -1.0
    h = torch.zeros(3, lm.hidden_size)
    h[:, 0] = torch.tensor([2.0, -5.0, 10.0])
    steps = directional_steps(poly, direction, h, DirectionalConfig(depth=1.0, max_step=4.0, grid=9))
    # 2 − t ≤ −1 first holds at t = 3; −5 is already deep; 10 cannot get there within 4 → the cap
    assert steps.tolist() == [3.0, 0.0, 4.0]


def test_flagged_prompt_is_steered_from_its_prompt_tokens_and_benign_stays_identical(lm):
    art = separating_artifact(lm, 2, BAD, GOOD)
    art.steering = always_outside_part(lm, 1)
    gen = GenerationConfig(max_new_tokens=10, min_new_tokens=10)
    cfg = InterventionConfig(mode="steer")  # auto → directional, since the artifact has a steering part
    bad = compare(lm, art, BAD, gen, cfg)
    good = compare(lm, art, GOOD, gen, cfg)
    assert count_hooks(lm.model) == 0
    assert bad.intervened.settings["steering"] == "directional" and bad.intervened.settings["steering_layer"] == 1
    assert bad.intervened.prompt_flagged and bad.first_divergence is not None
    assert all(t.steered for t in bad.intervened.tokens[: bad.intervened.prompt_len])
    assert bad.intervened.interventions >= bad.intervened.prompt_len
    assert not good.intervened.prompt_flagged and good.first_divergence is None and good.intervened.interventions == 0


def test_directional_run_is_the_same_with_and_without_kv_cache(lm):
    art = separating_artifact(lm, 2, BAD, GOOD)
    art.steering = always_outside_part(lm, 1, scale=0.5)
    cfg = InterventionConfig(mode="steer", steering="directional")
    cached = compare(lm, art, BAD, GenerationConfig(max_new_tokens=8), cfg).intervened
    uncached = compare(lm, art, BAD, GenerationConfig(max_new_tokens=8, use_cache=False), cfg).intervened
    assert [t.token_id for t in cached.generated] == [t.token_id for t in uncached.generated]


def test_steering_choice_resolves_against_the_artifact(lm):
    art = separating_artifact(lm, 2, BAD, GOOD)
    assert InterventionConfig(mode="steer").resolved(art).steering == "minimal"
    with pytest.raises(ValueError, match="no steering part"):
        InterventionConfig(mode="steer", steering="directional").resolved(art)
    with pytest.raises(ValueError, match="steering must be one of"):
        InterventionConfig(mode="steer", steering="sideways").validate()
    art.steering = always_outside_part(lm, 1)
    assert InterventionConfig(mode="steer").resolved(art).steering == "directional"


def _meta(lm, layer):
    return {"model": model_identity(lm),
            "layer": layer, "position": "last", "chat_template": True, "max_tokens": 256, "train_config": {}, "data": {}, "metrics": {}}


def test_steering_part_round_trips_and_is_validated(lm, tmp_path):
    art = separating_artifact(lm, 2, BAD, GOOD)
    part = always_outside_part(lm, 1)
    save_polytope(tmp_path / "p", art.polytope, _meta(lm, 2))
    save_steering(tmp_path / "p", part.polytope, part.direction, _meta(lm, 1))
    loaded = load_polytope(tmp_path / "p", lm.hidden_size, lm.num_layers, lm.fingerprint)
    assert loaded.steering is not None and loaded.steering.layer == 1
    assert torch.equal(loaded.steering.direction, part.direction.float())
    save_steering(tmp_path / "late", part.polytope, part.direction, _meta(lm, 3))
    save_polytope(tmp_path / "late", art.polytope, _meta(lm, 2))
    with pytest.raises(PolytopeFileError, match="steering layer"):
        load_polytope(tmp_path / "late")
    save_steering(tmp_path / "bad", part.polytope, torch.ones(lm.hidden_size + 1), _meta(lm, 1))
    save_polytope(tmp_path / "bad", art.polytope, _meta(lm, 2))
    with pytest.raises(PolytopeFileError, match="direction"):
        load_polytope(tmp_path / "bad")


def test_refusals_are_varied_and_spread_evenly():
    refusals = load_refusals()
    assert len(refusals) >= 40 and len(set(refusals)) == len(refusals)
    chosen = assign_refusals(["p"] * 100, refusals, seed=1)
    counts = [chosen.count(r) for r in refusals]
    assert max(counts) - min(counts) <= 1


def test_response_states_are_the_teacher_forced_states_at_the_answer_tokens(lm):
    prompts = [BAD, "a longer good request"]
    answers = answer_ids_for(lm, ["no thanks", "ok"])
    states, rows = response_states(lm, prompts, answers, [1, 2], n_tokens=4)
    assert rows.tolist() == [0, 0, 0, 0, 1, 1]
    for layer in (1, 2):
        assert states[layer].shape == (6, lm.hidden_size)
        full = encode_prompt(lm.tokenizer, prompts[1]).ids + answers[1]
        alone = hidden_states_at(lm, [full], layer)[0]
        torch.testing.assert_close(states[layer][4:], alone[-2:], atol=1e-4, rtol=1e-4)


def _fixed_judge(lm, intercept: float) -> AnswerJudge:
    d = lm.hidden_size
    return AnswerJudge(JudgeConfig(layer=1), np.zeros(d), np.ones(d), np.zeros(d), intercept, {})


def test_judge_verdict_rules(lm):
    varied, loop = list(range(20)), [5, 6] * 10
    always = _fixed_judge(lm, 5.0)
    assert always.verdicts(lm, ["Here is how.", "I'm sorry, I can't help with that."], [varied, varied]) == ["harmful", "refused"]
    assert always.verdicts(lm, ["here here here"], [loop]) == ["harmful"]  # a harmful loop stays harmful
    never = _fixed_judge(lm, -5.0)
    assert never.verdicts(lm, ["a", "b"], [varied, loop]) == ["off_topic", "degenerate"]
    # one sentence three times is degenerate even when its tokens look varied
    again = "Stay safe and be kind. " * 3
    assert never.verdicts(lm, [again, "I'm sorry, I can't. " + again], [varied, varied]) == ["degenerate", "degenerate"]


def test_outcome_summary_counts_verdicts_and_unchanged():
    rows = [{"set": "h", "setting": "s", "verdict": v, "identical": same, "first_divergence": div, "distinct_2": 0.5, "flagged": True}
            for v, same, div in [("harmful", True, None), ("refused", False, 2), ("degenerate", False, 6), ("off_topic", False, 4)]]
    (row,) = summarise(rows)
    assert row["n"] == 4 and row["judge_harmful"] == row["judge_refused"] == row["judge_off_topic"] == row["judge_degenerate"] == 0.25
    assert row["unchanged"] == 0.25 and row["median_first_divergence"] == 4 and row["distinct_2"] == 0.5


def test_directional_steps_match_scoring_each_point_on_the_line():
    from sap_viz.method.polytope import SafetyPolytope

    torch.manual_seed(4)
    poly = SafetyPolytope(16, num_facets=3, feature_dim=64)
    poly.set_normalization(torch.randn(16), torch.rand(16) + 0.5)
    poly.requires_grad_(False)
    h, d = torch.randn(50, 16) * 3, torch.randn(16) * 3
    cfg = DirectionalConfig(depth=0.0, max_step=3.0, grid=13)
    grid = torch.linspace(0, 3.0, 13)
    deep = torch.stack([poly.score(h + t * d) <= 0.0 for t in grid], dim=1)
    expected = torch.where(deep.any(1), grid[deep.float().argmax(1)], torch.tensor(3.0))
    assert (deep.any(1) & ~deep[:, 0]).sum() > 2 and (~deep.any(1)).sum() > 1  # precondition: moved, capped rows occur
    torch.testing.assert_close(directional_steps(poly, d, h, cfg), expected)


def test_generated_tokens_limits_steering_to_the_answers_opening(lm):
    art = separating_artifact(lm, 2, BAD, GOOD)
    art.steering = always_outside_part(lm, 1, scale=0.5)
    gen = GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    for n in (0, 3):
        cfg = InterventionConfig(mode="steer", steering="directional", directional=RAW(generated_tokens=n))
        res = compare(lm, art, BAD, gen, cfg).intervened
        # the state read at the last prompt token and at the first n answer tokens is steered, none after
        steered = [t.steered for t in res.tokens]
        assert all(steered[: res.prompt_len]) and sum(steered[res.prompt_len:]) == n


def test_prompt_positions_last_moves_only_the_prompts_last_state_and_the_answers_opening(lm):
    art = separating_artifact(lm, 2, BAD, GOOD)
    art.steering = always_outside_part(lm, 1)
    gen = GenerationConfig(max_new_tokens=6, min_new_tokens=6)
    cfg = InterventionConfig(mode="steer", steering="directional", directional=RAW(prompt_positions="last"))
    res = compare(lm, art, BAD, gen, cfg).intervened
    assert [t.steered for t in res.tokens[: res.prompt_len]] == [False] * (res.prompt_len - 1) + [True]
    assert all(t.steered for t in res.generated[:5])
    with pytest.raises(ValueError, match="prompt_positions"):
        DirectionalConfig(prompt_positions="template").validate()


def test_an_opener_is_written_first_in_a_flagged_answer_and_never_in_a_benign_one(lm):
    art = separating_artifact(lm, 2, BAD, GOOD)
    art.steering = always_outside_part(lm, 1)
    opener = "no."
    ids = lm.tokenizer(opener, add_special_tokens=False)["input_ids"]
    gen = GenerationConfig(max_new_tokens=len(ids) + 4, min_new_tokens=len(ids) + 4)
    cfg = InterventionConfig(mode="steer", steering="directional", directional=RAW(opener=opener))
    bad, good = (compare(lm, art, p, gen, cfg) for p in (BAD, GOOD))
    assert [t.token_id for t in bad.intervened.generated[: len(ids)]] == list(ids)
    # the opener's tokens are marked as written by the rule, and only they
    assert [t.opener for t in bad.intervened.generated] == [True] * len(ids) + [False] * 4
    assert not any(t.opener for t in bad.baseline.tokens + good.intervened.tokens)
    assert [r["opener"] for r in bad.intervened.token_rows()].count(True) == len(ids)
    assert good.first_divergence is None  # a benign row is never touched
    # steering reaches generated_tokens past the opener (the last token written is never read back, so never moved)
    steered = [t.steered for t in bad.intervened.generated]
    assert all(steered[len(ids): len(ids) + 3])


def test_varied_openers_are_chosen_per_request_and_the_answer_lets_go_after_one_sentence(lm, monkeypatch):
    from sap_viz.method import generation
    from sap_viz.method.directional_steering import LetGoProcessor, sentence_end_tokens

    openers = ("no.", "stop now.", "never.")
    directional = DirectionalConfig(openers=openers, let_go="sentence")
    assert directional.opener_for(BAD) == directional.opener_for(BAD)  # the same request, the same opener
    assert {directional.opener_for(f"request {i}") for i in range(40)} == set(openers)  # every opener is used
    assert DirectionalConfig(opener="x").opener_for(BAD) == "x" and RAW().opener_for(BAD) is None
    with pytest.raises(ValueError, match="let_go"):
        DirectionalConfig(let_go="soon").validate()
    with pytest.raises(ValueError, match="openers"):
        DirectionalConfig(openers=("",)).validate()
    art = separating_artifact(lm, 2, BAD, GOOD)
    art.steering = always_outside_part(lm, 1)
    # the random model rarely ends a sentence: count every token as a sentence end, so its first token of its own ends it
    monkeypatch.setattr(generation, "sentence_end_tokens", lambda tok: torch.ones(len(tok), dtype=torch.bool))
    cfg = InterventionConfig(mode="steer", steering="directional", directional=directional)
    gen = GenerationConfig(max_new_tokens=12)
    bad, good = (compare(lm, art, p, gen, cfg) for p in (BAD, GOOD))
    ids = lm.tokenizer(directional.opener_for(BAD), add_special_tokens=False)["input_ids"]
    written = [t.token_id for t in bad.intervened.generated]
    assert written[: len(ids)] == list(ids)  # its opener first
    own = [t for t in written[len(ids):] if t not in lm.eos_ids]
    assert len(own) == 1 and len(written) < gen.max_new_tokens  # one sentence of its own, then it ended
    assert good.first_divergence is None  # a benign row is never touched, nor ended early
    fixed = compare(lm, art, BAD, GenerationConfig(max_new_tokens=12, min_new_tokens=12), cfg).intervened
    assert len(fixed.generated) == 12  # a length asked for (the bench's equal-length timing) is written in full
    # the processor alone: a row ends only after its opener, at its first sentence end
    ends = torch.zeros(10, dtype=torch.bool)
    ends[7] = True
    proc = LetGoProcessor({0: [1, 2]}, prompt_width=3, sentence_end=ends, eos_id=9)
    scores = proc(torch.tensor([[0, 0, 0, 1, 7]]), torch.zeros(1, 10))  # the sentence end is the opener's own token
    assert torch.isfinite(scores).all()
    scores = proc(torch.tensor([[0, 0, 0, 1, 2, 5, 7]]), torch.zeros(1, 10))
    assert scores[0].argmax() == 9 and torch.isinf(scores[0, :9]).all()
    real = sentence_end_tokens(lm.tokenizer)
    assert real.dtype == torch.bool and len(real) == len(lm.tokenizer)


@pytest.mark.parametrize("met", [False, True])
def test_a_steered_answer_carries_the_steering_finding_only_beside_missed_targets(lm, tmp_path, met):
    from sap_viz.method.generation import generate_one
    from sap_viz.method.measured_file import Target, write_measured_part
    from sap_viz.ui import render

    art = separating_artifact(lm, 2, BAD, GOOD)
    part = always_outside_part(lm, 1)
    save_polytope(tmp_path / "p", art.polytope, _meta(lm, 2))
    save_steering(tmp_path / "p", part.polytope, part.direction, _meta(lm, 1))
    target = Target("steered answers that read as a coherent reply", "16 of 28", "≥ 80 %", met)
    write_measured_part(tmp_path / "p", load_polytope(tmp_path / "p"), "steering", {"summary": {}}, inputs={}, command="test",
                        targets=[target], sentence="Measured on held-out requests.")
    result = generate_one(lm, load_polytope(tmp_path / "p"), BAD, GenerationConfig(max_new_tokens=3),
                          InterventionConfig(mode="steer", steering="directional", directional=RAW()))
    html = render.verdict_html(result, None, result)
    line = html.split("Measured on this polytope: ")[1].split("</div>")[0]
    assert line.startswith("Measured on held-out requests.") and ".." not in line  # one full stop, with or without misses
    assert (render.esc(render.STEERING_FINDING) in html) is not met  # the sweep's finding, only where a target is missed
    doc = render.STEERING_FINDING.rsplit("(", 1)[1].rstrip(")")
    assert (Path(__file__).resolve().parents[2] / doc).is_file()

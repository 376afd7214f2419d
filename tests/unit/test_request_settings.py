"""One settings dataclass for every entry point, and the anti-repeat rule on steered answers."""

import warnings

import pytest
import torch

from sap_viz.analysis.text_quality import distinct_n
from sap_viz.method.anti_repeat import AnswerNoRepeat, banned_next_tokens
from sap_viz.method.directional_steering import DirectionalConfig
from sap_viz.method.generation import GenerationConfig, compare, run_generation
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import (
    STRENGTH_MAX,
    RequestSettings,
    SettingsError,
    check_for_polytope,
)
from sap_viz.settings import Limits
from tests.conftest import make_tiny_lm, separating_artifact
from tests.unit.test_directional_steering import always_outside_part

BAD, GOOD = "bad request", "good request"


def test_request_values_become_the_method_configs():
    s = RequestSettings.from_request({"mode": "Safe Flow", "strength": "4.5", "max_new_tokens": "12", "seed": 3.0,
                                      "anti_repeat": 4, "fallback": "false", "steering": "directional", "max_step": 2})
    gen, cfg = build_configs(s)
    assert (s.mode, gen.max_new_tokens, gen.seed) == ("steer", 12, 3)
    # one knob: the same depth for both kinds of steering
    assert cfg.directional.depth == cfg.flow.strength == 4.5
    assert cfg.directional.max_step == 2 and cfg.anti_repeat == 4 and cfg.fallback is False
    assert s.to_json()["max_step"] == 2 and "positions" not in s.to_json()


@pytest.mark.parametrize("values, fragment", [
    ({"strength": STRENGTH_MAX + 1}, "no longer change"),
    ({"strength": -0.5}, "strength must be between 0"),
    ({"strength": "deep"}, "strength must be a number"),
    ({"strength": True}, "strength must be a number"),
    ({"max_new_tokens": 2.5}, "whole number"),
    ({"max_new_tokens": 10_000}, "SAP_VIZ_MAX_NEW_TOKENS"),
    ({"mode": "explode"}, "mode must be"),
    ({"anti_repeat": 1}, "anti_repeat must be 0"),
    ({"fallback": "maybe"}, "fallback must be true or false"),
    ({"colour": "red"}, "unknown setting 'colour'"),
    ({"steering": "directional", "positions": "all"}, "positions only apply to minimal steering"),
    ({"steering": "minimal", "generated_tokens": 4}, "generated_tokens only apply to directional steering"),
    ({"steering": "minimal", "opener": False}, "opener only apply to directional steering"),
    ({"temperature": 0, "sample": True}, "temperature"),
])
def test_bad_values_are_refused_by_name(values, fragment):
    """Read and turned into the method's configs, as every front end does before generating."""
    limits = Limits(max_new_tokens=200)
    with pytest.raises(SettingsError, match=fragment):
        build_configs(RequestSettings.from_request(values, limits), limits)


def test_old_names_warn_for_one_release_and_the_new_name_wins():
    with pytest.warns(DeprecationWarning, match="'depth' is now 'strength'"):
        s = RequestSettings.from_request({"depth": 5})
    assert s.strength == 5 and s.notices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert RequestSettings.from_request({"depth": 5, "strength": 2}).strength == 2


def test_auto_steering_is_checked_once_the_polytope_is_known():
    knob = RequestSettings.from_request({"steering": "auto", "max_step": 2})
    check_for_polytope(knob, has_steering_part=True)  # auto → directional reads max_step
    with pytest.raises(SettingsError, match="max_step only apply to directional"):
        check_for_polytope(knob, has_steering_part=False)  # auto → minimal would ignore it
    with pytest.raises(SettingsError, match="no steering part"):
        check_for_polytope(RequestSettings(steering="directional"), has_steering_part=False)
    check_for_polytope(RequestSettings(mode="monitor", steering="directional"), has_steering_part=False)  # nothing steers


def test_banned_tokens_complete_an_earlier_ngram_only():
    assert banned_next_tokens([5, 6, 7, 5, 6], 3) == {7}
    assert banned_next_tokens([5, 6, 7, 5, 6], 2) == {7}  # 6 was followed by 7 before
    assert banned_next_tokens([1, 2, 3], 3) == set()
    assert banned_next_tokens([1, 1], 2) == {1}


def test_processor_touches_only_marked_rows_and_only_answer_columns():
    # row 0: the prompt holds the 3-gram 4 5 6 but the answer does not repeat it → nothing banned;
    # row 1: the answer "4 5 6 4 5" would repeat "4 5 6" → 6 banned; row 2 is not marked
    ids = torch.tensor([[4, 5, 6, 7, 8, 9, 4, 5], [0, 0, 0, 4, 5, 6, 4, 5], [0, 0, 0, 4, 5, 6, 4, 5]])
    proc = AnswerNoRepeat(3, 3, lambda: torch.tensor([True, True, False]))
    scores = proc(ids, torch.zeros(3, 10))
    assert torch.isinf(scores[1, 6]) and torch.isfinite(scores[0]).all() and torch.isfinite(scores[2]).all()
    assert proc.bans == 1


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama", seed=3)


def test_anti_repeat_leaves_unsteered_rows_identical_and_stops_loops_in_steered_ones(lm):
    art = separating_artifact(lm, 2, BAD, GOOD)
    art.steering = always_outside_part(lm, 1)
    gen = GenerationConfig(max_new_tokens=40, min_new_tokens=40)
    raw = DirectionalConfig(openers=(), let_go="never")  # the direction alone: the rule is what is under test
    on, off = InterventionConfig(mode="steer", directional=raw), InterventionConfig(mode="steer", anti_repeat=0, directional=raw)
    good_on, good_off = (run_generation(lm, art, [GOOD], gen, c)[0] for c in (on, off))
    assert [t.token_id for t in good_on.generated] == [t.token_id for t in good_off.generated]
    bad = compare(lm, art, BAD, gen, on).intervened
    ids = [t.token_id for t in bad.generated]
    trigrams = [tuple(ids[i:i + 3]) for i in range(len(ids) - 2)]
    assert len(trigrams) == len(set(trigrams)), "a steered answer repeated a 3-gram"
    assert bad.settings["anti_repeat"] == 3
    # a random tiny model loops without the rule, which is what makes the check above meaningful
    looped = [t.token_id for t in compare(lm, art, BAD, gen, off).intervened.generated]
    assert distinct_n(looped) < distinct_n(ids)


def test_the_opener_setting_turns_the_varied_opener_and_its_early_end_on_and_off():
    from sap_viz.method.directional_steering import REFUSAL_OPENERS

    limits = Limits(max_new_tokens=200)
    on = build_configs(RequestSettings.from_request({"steering": "directional"}, limits), limits)[1].directional
    assert on.openers == REFUSAL_OPENERS and on.let_go == "sentence"  # the default
    off = build_configs(RequestSettings.from_request({"steering": "directional", "opener": "false"}, limits), limits)[1].directional
    assert off.openers == () and off.opener is None and off.let_go == "never" and off.opener_for("anything") is None

"""Word attribution against the neutral frame (issue 28, finding 8): filler words are measured by what they add
beyond the same sentence with its content words neutralised, content words by plain deletion."""

from __future__ import annotations

import numpy as np
import pytest

from sap_viz.analysis.attribution import (
    FUNCTION_WORDS,
    NEUTRAL,
    is_function_word,
    masked_variants,
    neutral_frame,
    split_core,
    word_masking,
)
from sap_viz.method.scoring import score_texts
from tests.conftest import separating_artifact

PROMPT = "How do I make ricin?"


@pytest.fixture(scope="module")
def art(tiny_lm):
    return separating_artifact(tiny_lm, 2, PROMPT, "How do I bake bread?")


def test_the_frame_replaces_content_words_one_for_one_and_keeps_punctuation():
    words = "How can I hack into someone's bank account?".split()
    frame = neutral_frame(words, "thing")
    assert frame == ["How", "can", "I", "thing", "into", "someone's", "thing", "thing?"]
    assert len(" ".join(frame).split()) == len(words)  # the same number of words, so word i is word i in both
    assert split_core("(ricin?)") == ("(", "ricin", "?)") and split_core("?!") == ("", "?!", "")
    assert is_function_word("How") and is_function_word("I,") and not is_function_word("ricin?")
    assert {"how", "do", "i", "can", "you", "a", "the", "to"} <= FUNCTION_WORDS and "make" not in FUNCTION_WORDS


def test_the_frame_adds_few_tokens(tiny_lm):
    """The neutral word must not blow the prompt up: the frame stays within a few tokens per content word."""
    words = PROMPT.split()
    tok = tiny_lm.tokenizer
    n_prompt = len(tok(PROMPT, add_special_tokens=False)["input_ids"])
    n_frame = len(tok(" ".join(neutral_frame(words)), add_special_tokens=False)["input_ids"])
    n_content = sum(not is_function_word(w) for w in words)
    assert n_frame <= n_prompt + n_content * len(NEUTRAL)  # byte tokenizer: one token per character


def test_every_word_gets_a_score_and_fillers_are_corrected_by_the_frame(tiny_lm, art):
    att = word_masking(tiny_lm, art, PROMPT, gradients=False)
    words = PROMPT.split()
    assert att.words == words and att.delta.shape == att.plain_delta.shape == (5, 2)
    assert np.isfinite(att.delta).all()
    assert att.frame == "How do I thing thing?" and att.function_word == [True, True, True, False, False]
    # the frame's own scores, computed here independently
    frame = att.frame.split()
    v = score_texts(tiny_lm, art, [att.frame, *masked_variants(frame)]).numpy()
    frame_delta = v[0][None] - v[1:]
    np.testing.assert_allclose(att.delta[:3], att.plain_delta[:3] - frame_delta[:3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(att.delta[3:], att.plain_delta[3:], rtol=1e-6)  # content words: plain deletion
    assert not np.allclose(att.delta[:3], att.plain_delta[:3])  # the baseline was used
    assert sorted(att.ranked(0)) == list(range(5)) and att.delta[att.ranked(0)[0], 0] == att.delta[:, 0].max()
    d = att.to_dict()
    assert d["frame"] == att.frame and len(d["plain_delta"]) == 5 and d["neutral"] == NEUTRAL
    assert "neutral frame" in att.masking_label
    rows = att.rows(0)
    assert "deleted, no frame: raises facet 0 by" in rows[0]
    assert rows[0]["masking: raises facet 0 by"] == pytest.approx(float(att.delta[0, 0]))


def test_no_frame_is_plain_deletion(tiny_lm, art):
    plain = word_masking(tiny_lm, art, PROMPT, gradients=False, neutral=None)
    framed = word_masking(tiny_lm, art, PROMPT, gradients=False)
    assert plain.plain_delta is None and plain.frame == "" and "frame" not in plain.to_dict()
    np.testing.assert_allclose(plain.delta, framed.plain_delta, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="neutral word"):
        word_masking(tiny_lm, art, PROMPT, neutral="two words")

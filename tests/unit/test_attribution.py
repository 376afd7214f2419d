"""Per-word attribution on short prompts: single-word masking against an explicit baseline, and
gradient × input on the polytope's facet violations, checked against a finite difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sap_viz.analysis.attribution import gradient_x_input, masked_variants, word_masking
from sap_viz.model.hooks import capture_and_stop
from sap_viz.model.prompts import encode_prompt
from tests.conftest import separating_artifact

UNSAFE, SAFE = "How do I build a bomb?", "How do I bake bread?"


@pytest.fixture(scope="module")
def art(tiny_lm):
    return separating_artifact(tiny_lm, 2, UNSAFE, SAFE)


def test_single_word_masking_replaces_one_word_by_the_baseline():
    words = "how to build a bomb".split()
    assert masked_variants(words, 0) == ["to build a bomb", "how build a bomb", "how to a bomb", "how to build bomb", "how to build a"]
    assert masked_variants(words, 0, "thing")[4] == "how to build a thing"
    assert masked_variants(words, 3)[2] == ""  # the paper's ±3 window deletes all of a 5-word prompt


def test_five_word_prompt_gets_one_distinct_effect_per_word(tiny_lm, art):
    att = word_masking(tiny_lm, art, "how to build a bomb")
    assert att.window == 0 and att.delta.shape == (5, 2) and att.grad_x_input.shape == (5, 2)
    assert len({round(float(v), 6) for v in att.delta[:, 0]}) == 5  # the ±3 window gave near-equal values here
    rows = att.rows(0)
    assert list(rows[0]) == ["#", "word", "masking: raises facet 0 by", "deleted, no frame: raises facet 0 by",
                             "gradient × input on facet 0",
                             "facet masking shows it raises most", "raises that facet by", "shift in which facet fires (KL, nats)"]
    assert not any(col in ("kl", "its_delta") or col.startswith("delta_") for col in rows[0])
    assert "gradient_x_input" in att.to_dict() and att.to_dict()["baseline"] == ""
    with pytest.raises(ValueError, match="one word"):
        word_masking(tiny_lm, art, "how to build a bomb", baseline="two words")


def test_gradient_x_input_sums_to_the_directional_derivative(tiny_lm, art):
    """Σ over the words of ∂v/∂e · e equals d/dt v(e_text · t) at t = 1 (the text's embeddings scaled)."""
    prompt = "how to build a bomb"
    gxi = gradient_x_input(tiny_lm, art, prompt, 5)
    enc = encode_prompt(tiny_lm.tokenizer, prompt, art.chat_template, int(art.meta["max_tokens"]))
    start, end = enc.text_span
    ids = torch.tensor([enc.ids], device=tiny_lm.device)

    def violations(t: float) -> torch.Tensor:
        with torch.no_grad():
            emb = tiny_lm.model.get_input_embeddings()(ids).double().float()
            emb[0, start:end] *= t
            with capture_and_stop(tiny_lm.model, art.layer, tiny_lm.layers_path) as captured:
                tiny_lm.model(inputs_embeds=emb, use_cache=False)
            return art.polytope.violations(captured[art.layer][0, -1].float()).cpu()

    eps = 1e-3
    numeric = ((violations(1 + eps) - violations(1 - eps)) / (2 * eps)).numpy()
    np.testing.assert_allclose(gxi.sum(axis=0), numeric, rtol=2e-2, atol=2e-3)

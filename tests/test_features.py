import pytest
import torch
from conftest import make_tiny_lm

from sap_viz.features import FeatureConfig, extract_features, hidden_states_at
from sap_viz.prompts import encode_prompt, format_prompt


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama")


def test_batched_features_equal_single_runs(lm):
    texts = ["a", "a much longer request with many more bytes in it", "mid length text"]
    cfg = FeatureConfig(layer=2, batch_size=3)
    batched = extract_features(lm, texts, cfg, use_cache=False, progress=False)
    for i, text in enumerate(texts):
        ids = encode_prompt(lm.tokenizer, text).ids
        full = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_hidden_states=True).hidden_states[3].cpu()
        torch.testing.assert_close(batched[i], full[0, -1], rtol=1e-4, atol=1e-5)


def test_all_positions_and_cache_roundtrip(lm, tmp_path):
    texts = ["one", "two words"]
    cfg = FeatureConfig(layer=1, position="all")
    first = extract_features(lm, texts, cfg, progress=False)
    second = extract_features(lm, texts, cfg, progress=False)
    assert [len(x) for x in first] == [len(encode_prompt(lm.tokenizer, t).ids) for t in texts]
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)


def test_template_and_truncation_keep_assistant_header(lm):
    text = "x" * 500
    enc = encode_prompt(lm.tokenizer, text, max_tokens=64)
    assert enc.truncated and len(enc.ids) <= 64 and enc.kept_chars < 500
    decoded = lm.tokenizer.decode(enc.ids)
    assert decoded.endswith("<|im_start|>assistant\n")
    assert format_prompt(lm.tokenizer, "hi", chat_template=False) == "hi"


def test_hidden_states_at_returns_per_sequence_lengths(lm):
    states = hidden_states_at(lm, [[1, 2, 3], [4]], layer=0)
    assert [tuple(s.shape) for s in states] == [(3, 32), (1, 32)]

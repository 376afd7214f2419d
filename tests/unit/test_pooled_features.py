"""Pooled prompt features (issue 16's feature comparison): each pooling equals the hand computation."""

import numpy as np
import pandas as pd
import pytest
import torch

from research.feature_comparison.methods import ComparisonConfig, combined_features, leave_one_source_out
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.pooled_features import pool_states, pooled_features
from sap_viz.model.prompts import encode_prompt
from tests.conftest import make_tiny_lm


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama")


def test_pooled_features_match_a_full_forward_pass_over_the_users_tokens(lm):
    texts = ["short", "a much longer request with many more bytes in it", "mid length text"]
    feats = pooled_features(lm, texts, [1, 2], cfg=FeatureConfig(batch_size=2), chunk_size=2, progress=False)
    assert set(feats) == {f"{p}@{L}" for p in ("last", "mean", "max") for L in (1, 2)}
    for i, text in enumerate(texts):
        enc = encode_prompt(lm.tokenizer, text)
        start, end = enc.text_span
        assert 0 < start < end < len(enc.ids)  # the template surrounds the text on both sides
        hidden = lm.model(input_ids=torch.tensor([enc.ids]), output_hidden_states=True).hidden_states[3][0]
        torch.testing.assert_close(feats["mean@2"][i], hidden[start:end].mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(feats["max@2"][i], hidden[start:end].max(0).values, rtol=1e-4, atol=1e-5)
    last = extract_features(lm, texts, FeatureConfig(layer=2, position="last"), use_cache=False, progress=False)
    torch.testing.assert_close(feats["last@2"], last)
    again = pooled_features(lm, texts, [1, 2], cfg=FeatureConfig(batch_size=2), chunk_size=2, progress=False)  # from the cache
    torch.testing.assert_close(again["mean@1"], feats["mean@1"])


def test_pool_states_rejects_unknown_pooling_and_falls_back_on_an_empty_span():
    states = torch.arange(12.0).reshape(4, 3)
    torch.testing.assert_close(pool_states(states, (2, 2), "mean"), states.mean(0))
    with pytest.raises(ValueError, match="pooling"):
        pool_states(states, (0, 4), "median")


def test_layer_average_uses_the_reference_statistics():
    torch.manual_seed(0)
    ref = {f"{p}@{L}": torch.randn(50, 4) * (L + 1) for p in ("last", "mean") for L in (16, 22)}
    sub = {k: v[:5] for k, v in ref.items()}
    full = combined_features(ref, (16, 22))
    part = combined_features(sub, (16, 22), reference=ref)
    torch.testing.assert_close(part["last, layer average"], full["last, layer average"][:5])
    assert full["last@16+last@22"].shape == (50, 8)


def test_leave_one_source_out_never_trains_on_the_held_out_source():
    rng = np.random.default_rng(0)
    # Source "b"'s unsafe rows lie along another axis: a probe that never saw them misses them.
    rows, x = [], []
    for source, unsafe_mean in (("a", [2.0, 0.0]), ("b", [0.0, 2.0]), ("c", [2.0, 0.0])):
        for split in ("train", "val"):
            for label in ("safe", "unsafe"):
                for i in range(30):
                    text = f"{source} {split} {label} {i}"
                    rows.append({"source": source, "split": split, "label": label, "subset": "plain", "text": text})
                    x.append(rng.normal([0.0, 0.0] if label == "safe" else unsafe_mean, 0.3))
    # Source "c" also holds b's unsafe train requests inside a frame: they must leave training with "b".
    for i in range(30):
        rows.append({"source": "c", "split": "train", "label": "unsafe", "subset": "wrapped", "text": f"Story: b train unsafe {i}."})
        x.append(rng.normal([0.0, 2.0], 0.3))
    df = pd.DataFrame(rows)
    out = {r["source"]: r for r in leave_one_source_out(df, torch.tensor(np.array(x), dtype=torch.float32), "probe", 0, ComparisonConfig())}
    assert set(out) == {"a", "b", "c"}
    assert out["a"]["tpr"] > 0.9 and out["c"]["tpr"] > 0.9
    assert out["b"]["tpr"] < 0.3 and out["b"]["n_unsafe"] == 60 and out["b"]["n_safe"] == 60


def test_answer_mean_states_average_the_first_answer_tokens_of_a_full_pass(lm):
    from sap_viz.data.responses import AnswerConfig, answer_mean_states, generate_answers

    prompts = ["tell me a story", "how are you?"]
    feats = answer_mean_states(lm, prompts, [2], n_tokens=3, progress=False)[2]
    answers = generate_answers(lm, prompts, AnswerConfig(max_new_tokens=3), progress=False)
    for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        ids = encode_prompt(lm.tokenizer, prompt).ids
        hidden = lm.model(input_ids=torch.tensor([ids + answer]), output_hidden_states=True).hidden_states[3][0]
        expected = hidden[len(ids):len(ids) + len(answer)].mean(0) if answer else hidden[len(ids) - 1]
        torch.testing.assert_close(feats[i], expected, rtol=1e-4, atol=1e-5)

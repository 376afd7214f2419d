import contextlib

import pytest
import torch

from sap_viz.model.features import (
    FeatureConfig,
    extract_features,
    extract_features_in_chunks,
    feature_cache_path,
    hidden_states_at,
)
from sap_viz.model.prompts import encode_prompt, format_prompt
from tests.conftest import make_tiny_lm


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama")


def test_batched_features_equal_single_runs(lm):
    texts = ["a", "a much longer request with many more bytes in it", "mid length text"]
    cfg = FeatureConfig(layer=2, batch_size=3, position="last")
    batched = extract_features(lm, texts, cfg, use_cache=False, progress=False)
    for i, text in enumerate(texts):
        ids = encode_prompt(lm.tokenizer, text).ids
        full = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_hidden_states=True).hidden_states[3].cpu()
        torch.testing.assert_close(batched[i], full[0, -1], rtol=1e-4, atol=1e-5)


def test_cache_roundtrip_and_chunked_extraction_agree(lm):
    texts = ["one", "two words", "three short words"]
    cfg = FeatureConfig(layer=1)
    first = extract_features(lm, texts, cfg, progress=False)
    second = extract_features(lm, texts, cfg, progress=False)  # read back from the cache
    assert feature_cache_path(lm, cfg, texts).is_file()
    torch.testing.assert_close(first, second)
    other = FeatureConfig(layer=2)
    feature_cache_path(lm, other, texts).unlink(missing_ok=True)  # a persistent SAP_VIZ_CACHE may hold it from a past run
    entered = []
    chunked = extract_features_in_chunks(lm, texts, other, 2, lambda: contextlib.nullcontext(entered.append(1)))
    assert len(entered) == 2  # ceil(3 / 2) chunks, each inside the guard
    torch.testing.assert_close(chunked, extract_features(lm, texts, other, use_cache=False, progress=False))
    torch.testing.assert_close(extract_features(lm, texts, other, progress=False), chunked)  # same cache entry


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


def test_prune_cache_deletes_least_recently_used_first(tmp_path):
    import os

    from sap_viz.model.features import prune_cache

    files = []
    for i in range(4):  # 1 KiB each, used at t = 1000, 2000, 3000, 4000
        f = tmp_path / f"e{i}.safetensors"
        f.write_bytes(b"x" * 1024)
        os.utime(f, (1000 * (i + 1), 1000 * (i + 1)))
        files.append(f)
    os.utime(files[0], (5000, 5000))  # the oldest entry was read again: now the most recent
    assert prune_cache(tmp_path, 2 * 1024 + 10, keep=files[1]) == 2
    assert sorted(f.name for f in tmp_path.iterdir()) == ["e0.safetensors", "e1.safetensors"]  # e1 kept on request


def test_cache_hit_marks_entry_recent(lm, tmp_path):
    import os

    from sap_viz.model.features import feature_cache_path

    cfg = FeatureConfig(layer=1)
    extract_features(lm, ["recency"], cfg, progress=False)
    path = feature_cache_path(lm, cfg, ["recency"])
    os.utime(path, (1000, 1000))
    extract_features(lm, ["recency"], cfg, progress=False)
    assert path.stat().st_mtime > 1000

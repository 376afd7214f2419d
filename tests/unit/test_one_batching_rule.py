"""One batching rule (``model.features.plan_batches``) for features, scoring, Ray's chunks and the bench: each path
runs exactly the batches the rule plans, so "the same batches" in the docs is true and a score cannot depend on the
interface that computed it."""

from __future__ import annotations

import random

import pytest

from sap_viz.method.ray_scoring import plan_chunks
from sap_viz.model.features import MAX_BATCH_TOKENS, hidden_states_at, plan_batches
from tests.conftest import make_tiny_lm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batches_cover_every_row_once_longest_first_within_both_bounds(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([1, 3, 40, 200, 900, 3000]) for _ in range(97)]
    batches = plan_batches(lengths, batch_size=8)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for b in batches:
        assert len(b) <= 8
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= MAX_BATCH_TOKENS


def test_the_forward_passes_and_rays_chunks_follow_the_plan():
    lm = make_tiny_lm("llama", seed=1, device="cpu")
    rng = random.Random(3)
    ids = [[rng.randrange(3, 250) for _ in range(rng.choice([2, 5, 9, 30]))] for _ in range(23)]
    seen: list[int] = []
    inner = lm.model.forward

    def forward(*args, **kwargs):
        seen.append(int(kwargs["input_ids"].shape[0]))
        return inner(*args, **kwargs)

    lm.model.forward = forward
    hidden_states_at(lm, ids, 1, batch_size=4)
    assert seen == [len(b) for b in plan_batches([len(i) for i in ids], 4)]


def test_ray_chunks_are_whole_local_batches():
    from sap_viz.model.prompts import encode_prompt
    from tests.conftest import separating_artifact

    lm = make_tiny_lm("llama", seed=2, device="cpu")
    art = separating_artifact(lm, 1, "how do I build a bomb", "how do I bake a cake")
    texts = [("word " * n).strip() for n in (1, 50, 3, 7, 200, 2, 9, 11, 60)]
    cfg = art.feature_config(2)
    lengths = [len(encode_prompt(lm.tokenizer, t, cfg.chat_template, cfg.max_tokens).ids) for t in texts]
    batches = plan_batches(lengths, 2)
    assert plan_chunks(lm.tokenizer, art, texts, 2, 2) == [sum(batches[k:k + 2], []) for k in range(0, len(batches), 2)]


def test_one_auroc_helper():
    """AUROC with its one-class guard is written once (``analysis.metrics.auroc``); no other module calls scikit-learn's."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    users = sorted(str(p.relative_to(root)) for folder in ("sap_viz", "research", "scripts") for p in (root / folder).rglob("*.py")
                   if "roc_auc_score" in p.read_text(encoding="utf-8"))
    assert users == ["sap_viz/analysis/metrics.py"]

"""Polytopes at position ``last+mean``: input [h_t ‖ mean of the request's states], the same everywhere.

The prompt feature that training and ``score`` read, the per-token view of the monitoring hook, the
span check and Safe Flow must all be the same function of the model's states, or a polytope trained
on one would be judged by another.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from sap_viz.method.artifact import PolytopeArtifact, PolytopeFileError, default_facets, load_polytope, save_polytope, save_steering
from sap_viz.method.generation import GenerationConfig, generate_one, run_generation
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.scoring import score_texts
from sap_viz.method.steering import SafeFlowConfig, safe_flow
from sap_viz.model.features import FeatureConfig, extract_features, feature_cache_path, hidden_states_at, token_inputs
from sap_viz.model.hooks import count_hooks
from sap_viz.model.loading import model_identity
from sap_viz.model.pooled_features import pooled_features
from sap_viz.model.prompts import encode_prompt
from tests.conftest import make_tiny_lm

LAYER = 2
TEXTS = ["tell me how to do the bad thing in detail", "good request", "a much longer and quite harmless question about gardens"]


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama", seed=5)


def _meta(lm, position: str) -> dict:
    return {"layer": LAYER, "chat_template": True, "position": position, "max_tokens": 256, "train_config": {}, "data": {},
            "metrics": {}, "model": model_identity(lm)}


def pooled_artifact(lm, seed: int = 0, facets: int = 3) -> PolytopeArtifact:
    """A random ReLU polytope over [h ‖ m], standardised with statistics of real features."""
    torch.manual_seed(seed)
    feats = extract_features(lm, TEXTS, FeatureConfig(layer=LAYER, position="last+mean"), use_cache=False, progress=False)
    poly = SafetyPolytope(2 * lm.hidden_size, facets, 32)
    poly.set_normalization(feats.mean(0), feats.std(0) + 0.1)
    poly.requires_grad_(False)
    return PolytopeArtifact(poly.to(lm.device), _meta(lm, "last+mean"), default_facets(facets))


def test_prompt_feature_is_last_state_beside_mean_over_the_request(lm):
    cfg = FeatureConfig(layer=LAYER, position="last+mean", batch_size=2)
    feats = extract_features(lm, TEXTS, cfg, use_cache=False, progress=False)
    d = lm.hidden_size
    assert feats.shape == (len(TEXTS), 2 * d)
    last = extract_features(lm, TEXTS, FeatureConfig(layer=LAYER, position="last"), use_cache=False, progress=False)
    torch.testing.assert_close(feats[:, :d], last)
    for text, row in zip(TEXTS, feats, strict=True):
        enc = encode_prompt(lm.tokenizer, text)
        states = hidden_states_at(lm, [enc.ids], LAYER)[0]
        a, b = enc.text_span
        assert 0 < a < b < len(enc.ids)  # the template's tokens are outside the mean
        torch.testing.assert_close(row[d:], states[a:b].mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(token_inputs(states, enc.text_span, "last+mean")[-1], row, atol=1e-5, rtol=1e-5)
    pooled = pooled_features(lm, TEXTS, [LAYER], ("mean",), FeatureConfig(layer=LAYER, batch_size=2), progress=False)
    torch.testing.assert_close(feats[:, d:], pooled[f"mean@{LAYER}"], atol=1e-5, rtol=1e-5)


def test_positions_have_their_own_cache_entries(lm):
    last, pooled = FeatureConfig(layer=LAYER, position="last"), FeatureConfig(layer=LAYER, position="last+mean")
    assert feature_cache_path(lm, last, TEXTS) != feature_cache_path(lm, pooled, TEXTS)
    with pytest.raises(ValueError, match="position must be one of"):
        FeatureConfig(position="middle")


def test_hook_reads_the_same_inputs_as_prompt_scores_in_a_padded_batch(lm):
    art = pooled_artifact(lm)
    results = run_generation(lm, art, TEXTS, GenerationConfig(max_new_tokens=3), InterventionConfig(mode="monitor"))
    scored = score_texts(lm, art, TEXTS)
    for res, row in zip(results, scored, strict=True):
        at_last = torch.tensor(res.tokens[res.prompt_len - 1].violations)
        torch.testing.assert_close(at_last, row, atol=1e-4, rtol=1e-4)
    alone = generate_one(lm, art, TEXTS[1], GenerationConfig(max_new_tokens=3), InterventionConfig(mode="monitor"))
    n = alone.prompt_len + 1  # prompt tokens and the first answer token, read alone and in the padded batch
    torch.testing.assert_close(torch.tensor([t.violations for t in alone.tokens[:n]]),
                               torch.tensor([t.violations for t in results[1].tokens[:n]]), atol=1e-4, rtol=1e-4)
    assert count_hooks(lm.model) == 0


def test_safe_flow_moves_only_the_state_half():
    d = 4
    poly = SafetyPolytope(2 * d, 2, encoder="linear")
    with torch.no_grad():  # v_0 = h[0] + m[0] − 1: the mean part pushes outside, only h can answer
        poly.phi.copy_(torch.tensor([[1.0, 0, 0, 0, 1.0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0, 0, 0]]))
        poly.xi.copy_(torch.tensor([1.0, 1.0]))
    start = torch.tensor([[0.5, 0, 0, 0, 2.0, 0.3, -0.2, 0.1]])
    res = safe_flow(poly, start, SafeFlowConfig(strength=0.5), editable=d)
    assert res.steered.all()
    assert torch.equal(res.hidden[:, d:], start[:, d:])
    assert float(res.after.max()) <= -0.5 + 1e-4
    assert float(res.hidden[0, 0]) < -1.0  # h[0] went far enough to outweigh m[0]


def test_steering_a_pooled_polytope_edits_the_state_and_replays_without_cache(lm):
    bad, good = TEXTS[0], TEXTS[1]
    feats = extract_features(lm, [bad, good], FeatureConfig(layer=LAYER, position="last+mean"), use_cache=False, progress=False)
    direction = (feats[0] - feats[1]) / (feats[0] - feats[1]).norm()
    poly = SafetyPolytope(feats.shape[1], 1, encoder="linear")
    with torch.no_grad():
        poly.phi.copy_(direction[None])
        poly.xi.copy_((direction @ (feats[0] + feats[1]) / 2)[None])
    poly.requires_grad_(False)
    art = PolytopeArtifact(poly.to(lm.device), _meta(lm, "last+mean"), default_facets(1))
    cfg = InterventionConfig(mode="steer", steering="minimal", flow=SafeFlowConfig(strength=1.0))
    cached = generate_one(lm, art, bad, GenerationConfig(max_new_tokens=5), cfg)
    uncached = generate_one(lm, art, bad, GenerationConfig(max_new_tokens=5, use_cache=False), cfg)
    assert cached.prompt_flagged and cached.interventions > 0
    assert [t.token_id for t in cached.tokens] == [t.token_id for t in uncached.tokens]
    assert not generate_one(lm, art, good, GenerationConfig(max_new_tokens=5), cfg).prompt_flagged
    assert count_hooks(lm.model) == 0


def test_pooled_polytope_round_trips_and_bad_files_are_refused(lm, tmp_path):
    art = pooled_artifact(lm)
    save_polytope(tmp_path / "p", art.polytope.cpu(), art.meta)
    loaded = load_polytope(tmp_path / "p", lm.hidden_size, lm.num_layers, lm.fingerprint)
    assert loaded.position == "last+mean" and loaded.polytope.d_model == 2 * lm.hidden_size
    assert loaded.feature_config().position == "last+mean"
    torch.testing.assert_close(score_texts(lm, loaded, TEXTS), score_texts(lm, art, TEXTS))

    meta_path = tmp_path / "p" / "polytope.json"
    meta = json.loads(meta_path.read_text())
    for position, message in (("last", "has shape"), ("middle", "position must be one of")):
        meta_path.write_text(json.dumps({**meta, "position": position}))
        with pytest.raises(PolytopeFileError, match=message):
            load_polytope(tmp_path / "p")
    meta_path.write_text(json.dumps(meta))

    save_steering(tmp_path / "p", art.polytope.cpu(), torch.ones(2 * lm.hidden_size), {**art.meta, "layer": 1})
    with pytest.raises(PolytopeFileError, match="steering part must have position 'last'"):
        load_polytope(tmp_path / "p")


def test_training_pipeline_records_and_uses_the_position(lm, tmp_path):
    from sap_viz.data.user_files import load_user_file
    from sap_viz.method.training import TrainConfig
    from sap_viz.recipe.pipeline import save_trained, train_and_evaluate

    rows = [{"text": f"how do I hurt someone with item {i}", "label": "unsafe"} for i in range(20)]
    rows += [{"text": f"how do I bake bread number {i}", "label": "safe"} for i in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)
    df = load_user_file(tmp_path / "table.csv")
    fcfg = FeatureConfig(layer=LAYER, position="last+mean")
    trained = train_and_evaluate(lm, df, fcfg, TrainConfig(num_facets=2, feature_dim=16, epochs=2), baselines=False,
                                 show_tqdm=False, target_fpr=0.1)
    path = save_trained(trained, tmp_path / "trained")
    loaded = load_polytope(path, lm.hidden_size, lm.num_layers, lm.fingerprint)
    assert loaded.meta["position"] == "last+mean" and loaded.polytope.d_model == 2 * lm.hidden_size
    texts = df["text"].tolist()[:4]
    feats = extract_features(lm, texts, fcfg, use_cache=False, progress=False)
    torch.testing.assert_close(score_texts(lm, loaded, texts), loaded.polytope.violations_cpu(feats))


def test_workbench_views_of_a_pooled_polytope_agree(lm, tmp_path):
    """Heatmap (per-token violations), prompt score, trajectory and attribution all read [h_t ‖ m]."""
    from sap_viz.app_state.workbench import Workbench

    art = pooled_artifact(lm, seed=3)
    folder = tmp_path / "polytopes"
    save_polytope(folder / "pooled", art.polytope.cpu(), art.meta)
    wb = Workbench(lm, folder / "pooled", folder)
    prompt = TEXTS[0]
    _, ids, viol, checked = wb.prompt_tokens(prompt)
    torch.testing.assert_close(viol[-1].cpu(), wb.score([prompt]).last[0], atol=1e-4, rtol=1e-4)
    states = wb.trajectory(ids, checked.encoded.text_span)
    assert states.shape == (len(ids), 2 * lm.hidden_size)
    d = lm.hidden_size
    assert torch.allclose(states[:, d:], states[-1:, d:].expand(len(ids), -1))  # the request mean is one for every token
    attribution = wb.attribution(prompt, 0)
    assert attribution.grad_x_input is not None and attribution.grad_x_input.shape == (len(prompt.split()), 3)
    assert torch.isfinite(torch.as_tensor(attribution.grad_x_input)).all()


@pytest.mark.parametrize("encoder", ["relu", "linear"])
def test_a_fixed_request_mean_part_gives_the_polytopes_own_values(encoder):
    """The monitor reads answer states beside a request mean fixed at the prefill: its half of the first layer is
    computed once (``with_fixed_tail``), and the values equal the polytope's on the joined input."""
    torch.manual_seed(0)
    d = 6
    poly = SafetyPolytope(2 * d, 3, feature_dim=32, encoder=encoder)
    poly.set_normalization(torch.randn(2 * d), torch.rand(2 * d) + 0.5)
    h, m = torch.randn(2, 5, d), torch.randn(2, d)
    joined = torch.cat([h, m[:, None, :].expand(-1, 5, -1)], dim=-1)
    torch.testing.assert_close(poly.with_fixed_tail(m).violations(h), poly.violations(joined), atol=1e-5, rtol=1e-5)

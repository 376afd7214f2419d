import pytest
import torch

from sap_viz.method.generation import GenerationConfig, compare, generate_one, stream_generation
from sap_viz.method.polytope_hook import InterventionConfig, PolytopeHook
from sap_viz.method.steering import SafeFlowConfig, safe_flow
from sap_viz.model.hooks import count_hooks, residual_hook
from tests.conftest import linear_artifact, make_tiny_lm, separating_artifact

BAD, GOOD = "bad request", "good request"


@pytest.fixture(scope="module")
def lm():
    return make_tiny_lm("llama", seed=3)


@pytest.fixture(scope="module")
def art(lm):
    return separating_artifact(lm, 2, BAD, GOOD)


def plain_generate(lm, prompt, n, **kw):
    from sap_viz.model.prompts import encode_prompt

    ids = torch.tensor([encode_prompt(lm.tokenizer, prompt).ids], device=lm.device)
    out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                            pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=[256], **kw)
    return out[0, ids.shape[1]:].tolist()


def test_monitor_equals_plain_generate_and_cleans_up(lm, art):
    res = generate_one(lm, art, BAD, GenerationConfig(max_new_tokens=12), InterventionConfig(mode="monitor"))
    assert [t.token_id for t in res.generated] == plain_generate(lm, BAD, 12)[: len(res.generated)]
    assert count_hooks(lm.model) == 0
    # every prompt token and every generated token but the last has K violations recorded
    assert all(t.violations is not None and len(t.violations) == 2 for t in res.tokens[:-1])
    assert res.prompt_flagged


def test_hook_removed_after_exception_in_generation(lm, art, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr("sap_viz.method.polytope_hook.safe_flow", broken)
    with pytest.raises(RuntimeError, match="boom"):
        generate_one(lm, art, BAD, GenerationConfig(max_new_tokens=3), InterventionConfig(mode="steer"))
    assert count_hooks(lm.model) == 0


def test_no_state_leaks_between_calls(lm, art):
    cfg = GenerationConfig(max_new_tokens=6)
    first = generate_one(lm, art, BAD, cfg, InterventionConfig(mode="steer"))
    generate_one(lm, art, GOOD, cfg, InterventionConfig(mode="steer"))
    again = generate_one(lm, art, BAD, cfg, InterventionConfig(mode="steer"))
    assert first.to_dict() == again.to_dict()


def test_safe_flow_moves_violating_state_inside_and_leaves_inside_state(lm):
    # A box with known facets: v_0 = h[0] − 1, v_1 = h[1] − 1, so which states lie outside is known in advance.
    d = lm.hidden_size
    phi = torch.zeros(2, d)
    phi[0, 0] = phi[1, 1] = 1.0
    box = linear_artifact(lm, 2, phi.to(lm.device), torch.ones(2, device=lm.device)).polytope
    torch.manual_seed(0)
    h = torch.randn(5, d).clamp(-0.5, 0.5)
    h[0, 0] = 5.0  # outside facet 0
    h[1, 1] = 3.0  # outside facet 1
    h[2, :2] = torch.tensor([4.0, 2.0])  # outside both
    h[3, :2] = torch.tensor([-2.0, 0.0])  # inside, v = (−3, −1)
    # row 4 inside: |h| ≤ 0.5, so v ≤ −0.5
    h = h.to(lm.device)
    outside = torch.tensor([True, True, True, False, False])
    strength = 0.1
    out = safe_flow(box, h, SafeFlowConfig(strength=strength, max_steps=500))
    torch.testing.assert_close(out.before.cpu(), (h[:, :2] - 1).cpu())
    assert out.steered.cpu().tolist() == outside.tolist()
    moved = out.hidden.cpu()
    after = moved[:, :2] - 1  # recomputed from the returned states, not read from the outcome
    assert (after[outside].max(dim=1).values <= -strength + 1e-4).all()
    torch.testing.assert_close(out.after.cpu(), after)
    assert (out.delta_norm.cpu()[outside] > 0).all()
    assert torch.equal(moved[~outside], h.cpu()[~outside]) and (out.delta_norm.cpu()[~outside] == 0).all()


def test_batch_only_violating_row_changes(lm, art):
    from sap_viz.model.prompts import encode_prompt

    a, b = encode_prompt(lm.tokenizer, BAD).ids, encode_prompt(lm.tokenizer, GOOD).ids
    width = max(len(a), len(b))
    ids = torch.full((2, width), lm.tokenizer.pad_token_id)
    mask = torch.zeros((2, width), dtype=torch.long)
    for row, seq in enumerate((a, b)):
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    hook = PolytopeHook(art, InterventionConfig(mode="steer"), [width - len(a), width - len(b)], width)
    captured = {}

    def grab(h):
        captured["h"] = h.clone()

    ids, mask = ids.to(lm.device), mask.to(lm.device)
    plain = lm.model(input_ids=ids, attention_mask=mask).logits
    with residual_hook(lm.model, 2, hook), residual_hook(lm.model, 3, grab):
        steered = lm.model(input_ids=ids, attention_mask=mask).logits
    data = hook.assembled()
    assert data["steered"][0, -1] and not data["steered"][1].any()
    assert not torch.allclose(plain[0, -1], steered[0, -1])
    torch.testing.assert_close(plain[1], steered[1])
    assert data["after"][0, -1].max() <= 0


def test_steering_with_cache_matches_no_cache(lm, art):
    gen = GenerationConfig(max_new_tokens=6)
    cfg = InterventionConfig(mode="steer")
    cached = generate_one(lm, art, BAD, gen, cfg)
    uncached = generate_one(lm, art, BAD, GenerationConfig(max_new_tokens=6, use_cache=False), cfg)
    assert cached.interventions > 0
    assert [t.token_id for t in cached.tokens] == [t.token_id for t in uncached.tokens]
    for x, y in zip(cached.tokens, uncached.tokens, strict=False):
        assert x.steered == y.steered


def test_refusal_emits_exactly_the_refusal_text(lm, art):
    res = generate_one(lm, art, BAD, GenerationConfig(max_new_tokens=40), InterventionConfig(mode="refuse", refusal_text="No thanks."))
    assert res.prompt_flagged and res.refused
    assert res.text == "No thanks."


def test_refusal_after_a_later_violation(lm):
    # A facet that fires on no prompt token but on a generated one: the text before it is the model's own.
    base = generate_one(lm, separating_artifact(lm, 2, BAD, GOOD), GOOD, GenerationConfig(max_new_tokens=8),
                         InterventionConfig(mode="monitor"))
    states = [t for t in base.tokens if t.violations is not None]
    assert len(states) > base.prompt_len
    art = separating_artifact(lm, 2, BAD, GOOD)
    prompt_max = max(t.violations[0] for t in base.tokens[: base.prompt_len])
    gen_max = max(t.violations[0] for t in base.generated if t.violations is not None)
    assert gen_max > prompt_max, "precondition: the seeded tiny model has a generated state above every prompt state"
    with torch.no_grad():
        art.polytope.xi[0] += (prompt_max + gen_max) / 2
    res = generate_one(lm, art, GOOD, GenerationConfig(max_new_tokens=40), InterventionConfig(mode="refuse", refusal_text="No."))
    assert res.refused and not res.prompt_flagged and res.text.endswith("No.")
    assert res.text != "No."


def test_stream_yields_growing_text_then_result(lm, art):
    items = list(stream_generation(lm, art, BAD, GenerationConfig(max_new_tokens=5), InterventionConfig(mode="steer")))
    *texts, result = items
    assert texts and all(isinstance(t, str) for t in texts)
    assert texts[-1] == result.text
    assert result.interventions > 0


def test_compare_reports_divergence(lm, art):
    cmp = compare(lm, art, BAD, GenerationConfig(max_new_tokens=8), InterventionConfig(mode="refuse", refusal_text="No."))
    assert cmp.first_divergence == 0
    same = compare(lm, art, GOOD, GenerationConfig(max_new_tokens=8), InterventionConfig(mode="monitor"))
    assert same.first_divergence is None


@pytest.mark.parametrize("bad", [dict(mode="fly"), dict(positions="middle"), dict(max_interventions=-1)])
def test_bad_settings_raise(lm, art, bad):
    with pytest.raises(ValueError):
        generate_one(lm, art, BAD, GenerationConfig(max_new_tokens=2), InterventionConfig(**bad))
    with pytest.raises(ValueError):
        generate_one(lm, art, BAD, GenerationConfig(max_new_tokens=10**6))
    with pytest.raises(ValueError):
        generate_one(lm, art, "   ", GenerationConfig(max_new_tokens=2))


def test_generation_threshold_applies_to_answers_of_unflagged_prompts_only(lm, art):
    gen = GenerationConfig(max_new_tokens=8)
    high = InterventionConfig(mode="steer", generation_threshold=1e9)
    zero = InterventionConfig(mode="steer", generation_threshold=0.0)
    good = generate_one(lm, art, GOOD, gen, high)
    plain = generate_one(lm, art, GOOD, gen, InterventionConfig(mode="monitor"))
    assert not good.prompt_flagged and good.interventions == 0
    assert [t.token_id for t in good.generated] == [t.token_id for t in plain.generated]
    assert all(good.threshold_for(t) == 1e9 for t in good.generated)
    # A flagged prompt raises the alarm: its answer tokens are held to the prompt boundary either way.
    bad_high, bad_zero = generate_one(lm, art, BAD, gen, high), generate_one(lm, art, BAD, gen, zero)
    assert bad_high.prompt_flagged and bad_high.interventions > 0
    assert [t.token_id for t in bad_high.tokens] == [t.token_id for t in bad_zero.tokens]
    assert [t.steered for t in bad_high.tokens] == [t.steered for t in bad_zero.tokens]
    assert all(bad_high.threshold_for(t) == 0.0 for t in bad_high.generated)


def test_unset_generation_threshold_comes_from_the_polytope(lm, art):
    from dataclasses import replace

    calibrated = replace(art, meta={**art.meta, "generation_calibration": {"threshold": 2.5}})
    assert InterventionConfig().resolved(calibrated).generation_threshold == 2.5
    assert InterventionConfig(threshold=4.0).resolved(calibrated).generation_threshold == 4.0
    assert InterventionConfig().resolved(art).generation_threshold == 0.0
    assert InterventionConfig(generation_threshold=1.0).resolved(calibrated).generation_threshold == 1.0
    res = generate_one(lm, calibrated, GOOD, GenerationConfig(max_new_tokens=3), InterventionConfig(mode="monitor"))
    assert res.settings["generation_threshold"] == 2.5


def test_cancel_event_ends_generation_early_and_cleans_up(lm, art):
    import threading

    gen = GenerationConfig(max_new_tokens=40, min_new_tokens=40)
    full = generate_one(lm, art, GOOD, gen, InterventionConfig(mode="steer"))
    assert len(full.generated) == 40
    stop = threading.Event()
    texts = []
    for item in stream_generation(lm, art, GOOD, gen, InterventionConfig(mode="steer"), cancel=stop):
        if isinstance(item, str):
            texts.append(item)
            if len(texts) == 3:
                stop.set()
        else:
            result = item
    assert 3 <= len(result.generated) < 40
    assert [t.token_id for t in result.generated] == [t.token_id for t in full.generated][: len(result.generated)]
    assert count_hooks(lm.model) == 0


def test_text_span_covers_exactly_the_users_text(lm):
    from sap_viz.model.prompts import encode_prompt

    for template in (True, False):
        enc = encode_prompt(lm.tokenizer, "good request, twice", template)
        start, end = enc.text_span
        assert lm.tokenizer.decode(enc.ids[start:end]) == "good request, twice"
        cut = encode_prompt(lm.tokenizer, "x" * 500, template, max_tokens=40)
        start, end = cut.text_span
        assert cut.truncated and len(cut.ids) <= 40 and set(lm.tokenizer.decode(cut.ids[start:end])) == {"x"}


def test_prompt_span_check_flags_refuses_and_steers(lm, art):
    gen = GenerationConfig(max_new_tokens=6)
    off = generate_one(lm, art, GOOD, gen, InterventionConfig(mode="monitor", span_threshold=float("inf")))
    assert off.flag_reason is None and InterventionConfig().resolved(art).span_threshold == float("inf")
    low = -1e9  # every state of the user's text reaches it: flagged by the span, not by the last token
    mon = generate_one(lm, art, GOOD, gen, InterventionConfig(mode="monitor", span_threshold=low))
    assert mon.flag_reason == "prompt span" and mon.span_peak is not None
    refused = generate_one(lm, art, GOOD, gen, InterventionConfig(mode="refuse", span_threshold=low))
    assert refused.text == InterventionConfig().refusal_text[: len(refused.text)] and refused.refused
    steered = generate_one(lm, art, GOOD, gen, InterventionConfig(mode="steer", span_threshold=low))
    last = steered.tokens[steered.prompt_len - 1]
    assert last.steered and max(last.violations_after) <= -steered.settings["strength"] + 1e-3
    bad = generate_one(lm, art, BAD, gen, InterventionConfig(mode="monitor", span_threshold=low))
    assert bad.flag_reason == "last token"  # the last token is checked first


def test_two_concurrent_generations_through_the_hook_match_each_run_alone(lm, art):
    """Two threads generate on one model at the same time, without any lock: each hook must see only its own thread.

    The app serialises requests (concurrency_limit=1 and the model lock), so the load test cannot see this.
    Greedy decoding: sampling draws from torch's global RNG, which concurrent generations would share.
    """
    import threading

    from transformers.generation.streamers import BaseStreamer

    from sap_viz.method.generation import run_generation

    gen = GenerationConfig(max_new_tokens=10, min_new_tokens=10)
    requests = [(BAD, InterventionConfig(mode="steer")), (GOOD, InterventionConfig(mode="monitor", span_threshold=float("inf")))]
    alone = [run_generation(lm, art, prompt, gen, cfg)[0].to_dict() for prompt, cfg in requests]
    assert alone[0]["interventions"] > 0 and alone[1]["interventions"] == 0 and not alone[1]["prompt_flagged"]

    # Lockstep: each thread waits for the other after every decoding step, so step k of both runs with both hooks attached.
    lockstep = threading.Barrier(2, timeout=60)
    overlap: list[int] = []

    class Lockstep(BaseStreamer):
        def put(self, value):
            lockstep.wait()
            overlap.append(count_hooks(lm.model))  # neither thread can leave generate before both counted
            lockstep.wait()

        def end(self):
            pass

    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        prompt, cfg = requests[i]
        try:
            results[i] = run_generation(lm, art, [prompt], gen, cfg, streamer=Lockstep())[0].to_dict()
        except BaseException as exc:  # noqa: BLE001 — re-raised below in the test's thread
            errors.append(exc)
            lockstep.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    assert len(overlap) == 2 * (gen.max_new_tokens + 1) and min(overlap) == 2  # both hooks were attached at every step
    assert count_hooks(lm.model) == 0
    for i in range(2):
        assert results[i] == alone[i], f"request {i} ({requests[i][1].mode}) differs from the same request run alone"


def test_a_vanishing_temperature_decodes_greedily_instead_of_crashing(lm, art):
    # found by the server's schema fuzzer: temperature 5e-324 passes "> 0" and made the sampler's probabilities NaN
    greedy = generate_one(lm, art, "hello", GenerationConfig(max_new_tokens=4), InterventionConfig(mode="monitor"))
    for t in (5e-324, 1e-300):
        tiny = generate_one(lm, art, "hello", GenerationConfig(max_new_tokens=4, do_sample=True, temperature=t),
                            InterventionConfig(mode="monitor"))
        assert tiny.text == greedy.text

from sap_viz.analysis.text_quality import compression_ratio, distinct_n


def test_distinct_2_falls_for_a_loop_and_is_one_for_fresh_text():
    assert distinct_n([1, 2, 3, 4, 5]) == 1.0
    loop = [7, 8] * 10  # bigrams (7,8) and (8,7) only
    assert distinct_n(loop) == 2 / 19
    assert distinct_n([1]) is None


def test_compression_ratio_separates_repetition_from_prose():
    prose = "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the chloroplasts of plant cells."
    loop = "[S:A:S:B:B:B:B" * 12
    assert compression_ratio(loop) > 2 * compression_ratio(prose)
    assert compression_ratio("") is None


def test_steering_summary_counts_changes_divergence_and_fluency():
    from sap_viz.analysis.steering_eval import summary_row
    from sap_viz.method.generation import GenerationConfig, generate_one
    from sap_viz.method.polytope_hook import InterventionConfig
    from tests.conftest import make_tiny_lm, separating_artifact

    lm = make_tiny_lm("llama", seed=3)
    art = separating_artifact(lm, 2, "bad request", "good request")
    gen = GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    prompts = ["bad request", "good request"]
    off = [generate_one(lm, art, p, gen, InterventionConfig(mode="monitor")) for p in prompts]
    # answer tokens of an unflagged prompt are held to a boundary they never reach, so only the bad request is refused
    refuse = InterventionConfig(mode="refuse", generation_threshold=1e6)
    refused = [generate_one(lm, art, p, gen, refuse) for p in prompts]
    row = summary_row("mixed", "refuse", refused, off)
    assert row["prompt_flagged"] == 0.5  # the separating facet flags only the bad request
    assert row["unchanged_vs_off"] == 0.5  # the good request's answer is untouched
    assert row["median_first_divergence"] is not None
    first = [t.token_id for t in off[0].generated]
    assert distinct_n(first) is not None and 0 < row["distinct_2"] <= 1
    assert summary_row("mixed", "off", off, off)["unchanged_vs_off"] == 1.0

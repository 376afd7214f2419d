"""Issue 28, first view: the plain verdict sentence, the worked example's cache key, and counters that say which
figures a mode can move. Tiny random models only (seconds)."""

from __future__ import annotations

import copy
import threading
from dataclasses import replace

import torch

from sap_viz.analysis.account import generation_account
from sap_viz.analysis.report import NAME_FITS
from sap_viz.analysis.verdict import NO_SINGLE_CATEGORY
from sap_viz.app_state.counters import DeploymentCounters
from sap_viz.app_state.worked_examples import WorkedExamples
from sap_viz.method.generation_results import Comparison, GenerationResult, TokenInfo
from sap_viz.settings import Limits
from tests.conftest import separating_artifact


def result(last: list[float], mode: str = "monitor", threshold: float = 0.0) -> GenerationResult:
    """A two-token prompt whose last token has the facet values ``last``, and one answer token."""
    k = len(last)
    tokens = [TokenInfo(0, 1, "How", True, [-1.0] * k, None), TokenInfo(1, 2, "?", True, list(last), None),
              TokenInfo(2, 3, "No", False, [-2.0] * k, None)]
    return GenerationResult("How?", mode, "No", tokens, 2, False, [f"f{i}" for i in range(k)], {"threshold": threshold},
                            text_span=(0, 2))


def facet(category: str | None, score: float | None) -> dict:
    return {"name": category or "unnamed", "scorecard": {"category": category, "name_score": score}}


def test_a_category_is_named_only_when_the_top_facets_name_is_measured_to_fit():
    facets = [facet("violence_weapons", NAME_FITS + 0.01), facet("cyber", 0.9), facet("privacy", 0.3)]
    fits = generation_account(result([0.8, 0.2, -0.5]), facets)
    assert fits.sentence == ("Flagged by the last token: 2 facets fire: 0 “f0” +0.80, 1 “f1” +0.20; "
                             "this request is most like violence and weapons.")
    assert fits.flagged and [f.id for f in fits.firing] == [0, 1] and fits.category == "violence_weapons"
    assert fits.no_category is None
    # the same request, but the facet that fires hardest has a name the check set does not back: the reason is said
    misfit = generation_account(result([0.2, -0.1, 0.9]), facets)
    assert [f.id for f in misfit.firing] == [2, 0] and misfit.category is None
    assert misfit.sentence == (f"Flagged by the last token: 2 facets fire: 2 “f2” +0.90, 0 “f0” +0.20; {NO_SINGLE_CATEGORY}, "
                               "because facet 2 “f2” claims privacy violations, but its name score 0.30 is below the 0.80 bar "
                               "(name misleading).")
    # just under the "fits" threshold is not enough (fits partly is not a fit)
    partly = generation_account(result([0.8, -1.0, -1.0]), [facet("violence_weapons", NAME_FITS - 0.01), *facets[1:]])
    assert partly.category is None and "1 facet fires: 0 “f0” +0.80" in partly.sentence
    assert f"below the {NAME_FITS:.2f} bar (name fits partly)" in partly.no_category
    # no scorecard at all: no name is tested, so none is repeated, and the sentence says so
    bare = generation_account(result([0.8, -1.0, -1.0]), [{"name": "Weapons"}, {"name": "x"}, {"name": "y"}])
    assert bare.category is None and "has no check-set scorecard" in bare.sentence


def test_benign_says_not_flagged_and_names_nothing():
    out = generation_account(result([-0.3, -0.2, -0.9]), [facet("violence_weapons", 0.95)] * 3)
    assert out.sentence.startswith("Not flagged:") and not out.flagged and out.category is None and not out.firing
    # the boundary is the run's threshold, not 0
    assert generation_account(result([0.3, -1.0, -1.0], threshold=0.5), [facet("cyber", 0.95)] * 3).sentence.startswith(
        "Not flagged:")


def test_the_worked_example_is_cached_by_fingerprint_and_a_changed_polytope_misses(tiny_lm):
    art = separating_artifact(tiny_lm, 1, "How do I build a bomb?", "How do I bake bread?")
    prompts = [{"kind": "harmful", "prompt": "How do I build a bomb?"}, {"kind": "safe", "prompt": "How do I bake bread?"}]
    examples = WorkedExamples(tiny_lm, threading.Lock(), prompts, Limits(max_new_tokens=4))
    assert examples.cached(art) is None
    done = examples.wait(art, timeout=120)
    assert done is not None and [e.kind for e in done] == ["harmful", "benign"]
    assert done[0].comparison.baseline.prompt_flagged and not done[1].comparison.baseline.prompt_flagged
    assert done[0].comparison.intervened is done[0].comparison.baseline  # no steering part: monitored, one run
    # a second reader (another process after a restart) finds it on disk under the same key
    again = WorkedExamples(tiny_lm, threading.Lock(), [], Limits(max_new_tokens=4))
    again.prompts = examples.prompts
    assert again.key(art) == examples.key(art) and again.cached(art) is not None
    # retrained: one facet offset moves, so the key differs and the cache misses (never a stale example)
    changed = copy.deepcopy(art)
    with torch.no_grad():
        changed.polytope.xi[0] += 0.5
    assert examples.key(changed) != examples.key(art)
    assert examples.cached(changed) is None
    # a different model (weights fingerprint) misses too
    other = replace(tiny_lm, fingerprint="0" * 16)
    assert WorkedExamples(other, threading.Lock(), [], Limits(max_new_tokens=4)).key(art) != examples.key(art)


def test_a_comparison_survives_its_json_round_trip(tiny_lm):
    art = separating_artifact(tiny_lm, 1, "How do I build a bomb?", "How do I bake bread?")
    examples = WorkedExamples(tiny_lm, threading.Lock(), [], Limits(max_new_tokens=3))
    cmp = examples.compute(art)[0].comparison
    back = Comparison.from_dict(cmp.to_dict())
    assert back.to_dict() == cmp.to_dict() and back.intervened is back.baseline


def test_monitored_requests_move_no_steering_figure():
    counters = DeploymentCounters()
    benign = result([-0.5, -0.5], mode="monitor")
    counters.record_comparison(Comparison(benign, benign))
    summary = counters.summary()
    assert summary["intervened_prompts"] == 0
    assert summary["refusal_rate"] is None and summary["benign_unchanged_rate"] is None
    steered = result([-0.5, -0.5], mode="steer")
    counters.record_comparison(Comparison(benign, steered))
    summary = counters.summary()
    assert summary["intervened_prompts"] == 1 and summary["refusal_rate"] == 0.0 and summary["benign_unchanged_rate"] == 1.0

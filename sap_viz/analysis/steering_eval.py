"""What steering does to the *text*, and what it costs benign prompts.

For held-out harmful prompts, the same prompts wrapped in jailbreak templates (only the "eval" half of
the templates, ``load_jailbreak_templates("eval")``: the other half may train the optional
``wild_wrapped`` source, so no template both trains and evaluates), benign prompts and
scary-but-safe prompts, generate with steering off (monitor), Safe Flow, the refusal fallback and
(for a polytope with a steering part) the plain conditional refusal direction as a baseline, and
report per set: prompt trigger rate, refusal rate, the answer judge's verdict shares
(``analysis/answer_judge.py``: harmful / harmless / degenerate), share of outputs identical to the
unsteered run, the first token where they differ, and fluency (distinct-2 and compression ratio).

``states_inside_after_edit`` is the share of runs whose generated-token states are all inside after
any edit. For steered tokens it holds by construction (Safe Flow stops once the state is inside), so
it describes the geometry, not the outcome: the text columns are the outcome.

Refusal rate uses ``text_quality.is_refusal``, a transparent phrase match on the answer's opening.
"""

from __future__ import annotations

import random
from dataclasses import replace

from tqdm.auto import tqdm

from sap_viz.analysis.answer_judge import AnswerJudge
from sap_viz.analysis.judge_data import fit_judge
from sap_viz.analysis.steering_outcomes import answer_record, outcome_columns
from sap_viz.analysis.text_quality import REFUSAL_PATTERN, compression_ratio, is_refusal  # noqa: F401 (REFUSAL_PATTERN re-exported)
from sap_viz.data.dataset import load_eval_prompts
from sap_viz.data.jailbreaks import load_jailbreak_templates
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.generation import GenerationConfig, generate_one
from sap_viz.method.generation_results import GenerationResult
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.model.loading import LoadedModel


def states_inside_after_edit(result: GenerationResult) -> bool:
    """All generated-token states (after any steering) are below the boundary the run applied to them."""
    for t in result.generated:
        values = t.violations_after if t.steered else t.violations
        if values is not None and max(values) >= result.threshold_for(t):
            return False
    return True


def evaluation_sets(n: int, seed: int = 0, max_template_chars: int = 1500) -> dict[str, list[str]]:
    prompts = load_eval_prompts()
    rng = random.Random(seed)
    harmful = prompts["harmful"][:n]
    templates = [t for t in load_jailbreak_templates("eval") if len(t["template"]) <= max_template_chars]
    chosen = rng.sample(templates, min(n, len(templates)))
    wrapped = [t["template"].replace("{prompt}", h) for t, h in zip(chosen, harmful, strict=False)]
    return {"harmful": harmful, "jailbreak": wrapped, "benign": prompts["benign"][:n], "over_refusal": prompts["over_refusal"][:n]}


def evaluate_steering(
    lm: LoadedModel, art: PolytopeArtifact, n_per_set: int = 20, gen: GenerationConfig | None = None,
    steer: InterventionConfig | None = None, judge: AnswerJudge | None = None,
) -> list[dict]:
    """Per set and mode, the summary row; ``judge`` (default: fitted on validation answers) adds verdict shares."""

    gen = gen or GenerationConfig(max_new_tokens=32)
    steer = steer or InterventionConfig(mode="steer")
    judge = judge or fit_judge(lm)
    modes = {"off": replace(steer, mode="monitor"), "safe_flow": replace(steer, mode="steer"), "refuse": replace(steer, mode="refuse")}
    if art.steering is not None:  # the honest baseline: the plain refusal direction, added whenever the prompt is flagged
        modes["baseline_direction"] = replace(steer, mode="steer", steering="directional",
                                              directional=replace(steer.directional, depth=100.0, max_step=1.0, generated_tokens=None))
    rows = []
    sets = evaluation_sets(n_per_set)
    total = sum(len(v) for v in sets.values()) * len(modes)
    bar = tqdm(total=total, desc="eval-steering", unit="gen")
    for name, prompts in sets.items():
        baseline: list[GenerationResult] = []
        for mode, cfg in modes.items():
            results = []
            for p in prompts:
                results.append(generate_one(lm, art, p, gen, cfg))
                bar.update(1)
            if mode == "off":
                baseline = results
            verdicts = judge.verdicts(lm, [r.text for r in results], [[t.token_id for t in r.generated] for r in results])
            rows.append(summary_row(name, mode, results, baseline, verdicts))
    bar.close()
    return rows


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 3) if kept else None


def summary_row(name: str, mode: str, results: list[GenerationResult], baseline: list[GenerationResult],
                verdicts: list[str] | None = None) -> dict:
    n = max(1, len(results))
    records = [answer_record(r, b, v) for r, b, v in zip(results, baseline, verdicts or [None] * len(results), strict=True)]
    common = outcome_columns(records)
    return {
        "set": name, "steering": mode, "n": len(results),
        "prompt_flagged": common["flagged"],
        "refusal_rate": round(sum(is_refusal(r.text) for r in results) / n, 3),
        **{k: v for k, v in common.items() if k.startswith("judge_")},
        "unchanged_vs_off": common["unchanged"],
        "median_first_divergence": common["median_first_divergence"],
        "distinct_2": common["distinct_2"],
        "compression_ratio": _mean([compression_ratio(r.text) for r in results]),
        "mean_interventions": round(sum(r.interventions for r in results) / n, 2),
        "states_inside_after_edit": round(sum(states_inside_after_edit(r) for r in results) / n, 3),
    }

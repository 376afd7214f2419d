"""Steering judged by what the model then writes: harmful-answer rate, benign answers unchanged, fluency.

For a harmful and a benign prompt set, every steering setting is run beside the unsteered run
(same greedy decoding); each answer gets the judge's verdict (``analysis/answer_judge.py``),
distinct-2 and its first divergence from the unsteered answer. ``summarise`` turns the per-answer
rows into one row per setting, the sweep table of docs/research/steering_outcomes.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

from tqdm.auto import tqdm

from sap_viz.analysis.answer_judge import VERDICTS, AnswerJudge
from sap_viz.analysis.text_quality import distinct_n
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.directional_steering import DirectionalConfig
from sap_viz.method.generation import GenerationConfig, run_generation
from sap_viz.method.generation_results import Comparison, GenerationResult
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.steering import SafeFlowConfig
from sap_viz.model.loading import LoadedModel


@dataclass(frozen=True)
class SteeringSetting:
    name: str
    cfg: InterventionConfig


def standard_settings() -> list[SteeringSetting]:
    """The settings the sweep compares. ``depth=100`` never reaches its target, so every flagged state
    moves the full ``max_step``: that is the plain conditional refusal direction, the baseline."""
    flow = InterventionConfig(mode="steer", max_interventions=10_000)

    def directional(depth: float, max_step: float, generated_tokens: int | None) -> InterventionConfig:
        return replace(flow, steering="directional", directional=DirectionalConfig(depth, max_step, generated_tokens=generated_tokens))

    return [
        SteeringSetting("minimal Safe Flow (paper), block 22, strength 3",
                        replace(flow, steering="minimal", flow=SafeFlowConfig(strength=3.0))),
        SteeringSetting("directional, depth 1, max step 1", directional(1.0, 1.0, None)),
        SteeringSetting("directional, depth 3, max step 1", directional(3.0, 1.0, None)),
        SteeringSetting("directional, depth 3, max step 2", directional(3.0, 2.0, None)),
        SteeringSetting("baseline: refusal direction × 1 when flagged", directional(100.0, 1.0, None)),
        # second round, after the first five: steer the prompt and only the answer's opening
        SteeringSetting("directional, depth 3, max step 1, prompt only", directional(3.0, 1.0, 0)),
        SteeringSetting("directional, depth 3, max step 1, prompt + 8 answer tokens", directional(3.0, 1.0, 8)),
        SteeringSetting("directional, depth 3, max step 2, prompt + 8 answer tokens", directional(3.0, 2.0, 8)),
        SteeringSetting("directional, depth 3, max step 1.5, prompt + 16 answer tokens", directional(3.0, 1.5, 16)),
        # the baseline at the chosen positions: same tokens moved, by a fixed step instead of the polytope's
        SteeringSetting("baseline: refusal direction × 1 when flagged, prompt + 8 answer tokens", directional(100.0, 1.0, 8)),
    ]


def _batched(lm: LoadedModel, art: PolytopeArtifact, prompts: list[str], gen: GenerationConfig, cfg: InterventionConfig,
             batch: int, tick: Callable[[int], None]) -> list[GenerationResult]:
    out: list[GenerationResult] = []
    for i in range(0, len(prompts), batch):
        out += run_generation(lm, art, prompts[i:i + batch], gen, cfg)
        tick(len(prompts[i:i + batch]))
    return out


def answer_rows(lm: LoadedModel, art: PolytopeArtifact, judge: AnswerJudge | None, sets: dict[str, list[str]],
                settings: list[SteeringSetting], gen: GenerationConfig | None = None, batch: int = 8, progress: bool = True) -> list[dict]:
    """One row per (set, setting, prompt), the unsteered run included as setting "off"; ``judge`` None leaves verdicts
    empty (the answers can be judged later, ``answer_ids`` keep what the judge reads)."""
    gen = gen or GenerationConfig(max_new_tokens=64)
    total = sum(len(p) for p in sets.values()) * (len(settings) + 1)
    bar = tqdm(total=total, desc="steering outcomes", unit="gen", disable=not progress)
    rows: list[dict] = []
    for set_name, prompts in sets.items():
        base = _batched(lm, art, prompts, gen, InterventionConfig(mode="monitor"), batch, bar.update)
        runs = [("off", base)]
        for s in settings:
            # Directional steering never touches a row whose prompt is not flagged (tested: token-identical), so
            # only the flagged rows are generated again; the others keep the unsteered run. Minimal Safe Flow
            # may also act on answer tokens of an unflagged prompt: every row runs.
            directional = s.cfg.steering == "directional" or (s.cfg.steering == "auto" and art.steering is not None)
            flagged = [i for i, r in enumerate(base) if r.prompt_flagged or not directional]
            steered = _batched(lm, art, [prompts[i] for i in flagged], gen, s.cfg, batch, bar.update)
            results = list(base)
            for i, r in zip(flagged, steered, strict=True):
                results[i] = r
            bar.update(len(prompts) - len(flagged))
            runs.append((s.name, results))
        for name, results in runs:
            ids = [[t.token_id for t in r.generated] for r in results]
            verdicts = judge.verdicts(lm, [r.text for r in results], ids) if judge is not None else [None] * len(results)
            rows += [{"set": set_name, "setting": name, **answer_record(r, b, v), "answer_ids": i, "answer_check": r.answer_check,
                      "fallback": r.fallback, "steered_text": r.steered_text}
                     for r, b, v, i in zip(results, base, verdicts, ids, strict=True)]
    bar.close()
    return rows


def answer_record(result: GenerationResult, base: GenerationResult, verdict: str | None) -> dict:
    """One answer beside its unsteered run: what the summaries below (and ``eval-steering``) count."""
    divergence = Comparison(base, result).first_divergence
    return {"prompt": result.prompt, "answer": result.text, "verdict": verdict, "flagged": result.prompt_flagged,
            "interventions": result.interventions, "distinct_2": distinct_n([t.token_id for t in result.generated]),
            "first_divergence": divergence, "identical": divergence is None}


def outcome_columns(records: list[dict]) -> dict:
    """Verdict shares (when every record has a verdict), unchanged share, median first divergence, mean distinct-2, flagged share."""
    n = max(1, len(records))
    d2 = [r["distinct_2"] for r in records if r["distinct_2"] is not None]
    div = sorted(r["first_divergence"] for r in records if r["first_divergence"] is not None)
    judged = all(r["verdict"] is not None for r in records)
    return {
        "n": len(records),
        **({f"judge_{v}": round(sum(r["verdict"] == v for r in records) / n, 3) for v in VERDICTS} if judged else {}),
        "unchanged": round(sum(r["identical"] for r in records) / n, 3),
        "median_first_divergence": div[len(div) // 2] if div else None,
        "distinct_2": round(statistics.fmean(d2), 3) if d2 else None,
        "flagged": round(sum(r["flagged"] for r in records) / n, 3),
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Per set and setting, ``outcome_columns`` of its answers."""
    keys = list(dict.fromkeys((r["set"], r["setting"]) for r in rows))
    return [{"set": s, "setting": setting, **outcome_columns([r for r in rows if (r["set"], r["setting"]) == (s, setting)])}
            for s, setting in keys]

"""Steered answers that read as a considered reply (issue 39), third sweep: what the steering direction points at.

    python -m research.steering.direction_target generate   # flagged validation prompts × lever → dirtarget_answers.jsonl
    python -m research.steering.direction_target blind      # answers not yet labelled → dirtarget_blind.jsonl
    python -m research.steering.direction_target summary    # labels → dirtarget_summary.json (per lever, over seeds)

The second sweep (``let_go.py``) shipped a varied refusal opener and one sentence of the model's own after it; what is
left incoherent is that one sentence. It is written while the states are moved along the steering part's direction,
mean(target answer states) − mean(compliant answer states) at block 16, so the target the direction points at is the
lever this sweep turns. Every lever keeps the shipped answer shape (varied opener, 8 steered tokens after it, the
answer ended after the model's first sentence) and rebuilds the whole steering part (polytope and direction, train
split only) with the target's answer states on the safe side, over three seeds (the seed draws the 240 harmful and 240
safe train prompts, assigns refusals and seeds the polytope's training):
- ``ours``: the refusals with a reason written here (``builtin_data/refusals.json``, the half kept for steering),
  teacher-forced after the same harmful prompts (the target of the part shipped when this sweep ran, which was built
  on an earlier train split: ``levers.SWEPT_PART``);
- ``others'``: UncensorBench's written refusals (MIT), teacher-forced after their own prompts (the UncensorBench
  prompts of the train split), against the model's own answers to those prompts;
- ``model's own``: the model's own answers to the harmful prompts that open with a refusal (``is_refusal``), against
  its answers that do not;
- ``safe continuation``: the model's own answers to the safe train prompts.
Each part is built by ``build_steering_part`` (``sap-viz train-steering --target``). Two references without a rebuilt
part: ``opener, unsteered after it`` (the part shipped when the sweep ran, ``levers.SWEPT_PART``, no answer token after
the opener moved) and ``opener only`` (nothing moved: the opener and the model's own sentence). Prompts: the flagged ones
among the first 30 harmful validation prompts, the same as the first two sweeps (never an evaluation set). Answers
already labelled in the first two sweeps keep their labels; every other one is labelled by hand in a shuffled order
without its lever, by the outcome rubric (docs/outcome_rubric.md) and its coherent/incoherent reading.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from research.steering.let_go import ANSWERS as LETGO_ANSWERS
from research.steering.let_go import LABELS as LETGO_LABELS
from research.steering.let_go import VARIED_CUT, first_sentences
from research.steering.levers import LABELS as FIRST_LABELS
from research.steering.levers import built_part, labels_from, lever_counts, run_step, swept_artifact, with_part, write_blind, write_summary
from sap_viz.analysis.measure import answer_key
from sap_viz.jsonl import read_jsonl, write_jsonl
from sap_viz.method.artifact import PolytopeArtifact, load_for_model
from sap_viz.method.generation import GenerationConfig, run_generation
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings
from sap_viz.model.loading import load_model
from sap_viz.settings import DEFAULT_POLYTOPE

HERE = Path(__file__).resolve().parent
ANSWERS, BLIND, LABELS, SUMMARY = (HERE / f"dirtarget_{n}" for n in
                                   ("answers.jsonl", "blind.jsonl", "blind_labels.jsonl", "summary.json"))
#: lever name → ``SteeringPartConfig.target``
TARGETS = {"ours": "ours", "others'": "others", "model's own": "own", "safe continuation": "safe"}
SEEDS = (0, 1, 2)
UNSTEERED_AFTER, OPENER_ONLY = "opener, unsteered after it", "opener only"
MAX_NEW_TOKENS = 64


def flagged_prompts() -> list[str]:
    """The flagged harmful validation prompts of the second sweep, in its order."""
    return [r["prompt"] for r in read_jsonl(LETGO_ANSWERS) if r["setting"] == VARIED_CUT and r["set"] == "val_harmful"
            and r["flagged"]]


def generate(n: int) -> None:
    lm = load_model()
    shipped = load_for_model(DEFAULT_POLYTOPE, lm)
    prompts = flagged_prompts()
    base = replace(build_configs(RequestSettings(fallback=False, steering="directional"))[1], max_interventions=10_000)
    gen = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS)
    rows: list[dict] = []

    def answer(name: str, seed: int | None, art: PolytopeArtifact, **directional) -> None:
        cfg = replace(base, directional=replace(base.directional, **directional))
        results = [r for i in range(0, len(prompts), 8) for r in run_generation(lm, art, prompts[i:i + 8], gen, cfg)]
        rows.extend({"set": "val_harmful", "setting": name, "seed": seed, "prompt": r.prompt, "answer": r.text,
                     "flagged": r.prompt_flagged, "steered": bool(r.interventions)} for r in results)
        print(f"{name} (seed {seed}): {len(results)} answers", flush=True)
        write_jsonl(ANSWERS, rows)

    swept = swept_artifact(shipped)  # the part shipped when the sweep ran
    answer(UNSTEERED_AFTER, None, swept, generated_tokens=0)
    answer(OPENER_ONLY, None, with_part(swept, torch.zeros_like(swept.steering.direction), swept.steering.polytope))
    for target in TARGETS:
        for seed in SEEDS:
            direction, poly = built_part(lm, TARGETS[target], seed)
            answer(target, seed, with_part(shipped, direction, poly))
    print(f"wrote {len(rows)} answers to {ANSWERS}")


def _labels() -> dict[str, dict]:
    return labels_from(FIRST_LABELS, LETGO_LABELS, LABELS)


def blind() -> None:
    """Each distinct answer that has no label yet, once, shuffled, without its lever."""
    write_blind(ANSWERS, _labels(), BLIND, 4039)


def summary() -> None:
    labels = _labels()
    groups: dict[tuple[str, int | None], list[dict]] = defaultdict(list)
    for r in read_jsonl(ANSWERS):
        groups[(r["setting"], r["seed"])].append(labels[answer_key(r["prompt"], r["answer"])])
    out: dict[str, dict] = defaultdict(dict)
    for (setting, seed), labelled in groups.items():
        out[setting][f"seed {seed}" if seed is not None else "no training"] = lever_counts(
            labelled, lambda answer: first_sentences(answer, 1)[:60])
    for runs in out.values():
        shares = [c["coherent"] / c["readable"] for c in runs.values() if c["readable"]]
        runs["coherent share"] = {"mean": round(statistics.mean(shares), 3),
                                  "sd": round(statistics.stdev(shares), 3) if len(shares) > 1 else None}
    write_summary(SUMMARY, out)


def main() -> None:
    run_step(__doc__, generate, blind, summary)


if __name__ == "__main__":
    main()

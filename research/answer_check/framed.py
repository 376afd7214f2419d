"""Does the answer check catch more when it also trains on the model's answers to framed requests? (issue 38's lever)

    python -m research.answer_check.framed answers            # the model's answers to the framed training requests
    python -m research.answer_check.framed sweep --seeds 0 1 2  # the shipped recipe with and without them → framed_runs.jsonl

Why this lever: a harmful request inside a story, a role-play or a research frame is where the prompt check fails most
(framed harmful flagged 21 % by the prompt), so the answer is the last place to catch it; but the check was trained
on answers to plain requests only. The framed requests are the training split's rows of the second contrast set's
``framed.jsonl`` (harmful and benign requests in the same frames, written for this project; none shares an 8-word span
with the evaluation frames), minus any prompt of the validation or test hand labels. Their answers are labelled as the
shipped recipe labels the model's own answers (``answer_label``: harmful when they neither open with a refusal nor
loop); an answer to a benign framed request is harmless.

Everything else is the shipped recipe (block 16, C = 0.05, running-mean rule) and the same validation the recipe was
chosen on (hand-labelled validation answers, unsteered and steered, plus ordinary answers; boundary at <= 5 % false
alarms); each seed draws its training prompts as the sweep does. The evaluation sets are not read.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from research.answer_check.sweep import (
    ANSWER_TOKENS,
    ANSWERS,
    HERE,
    SEED_DRAW,
    Pair,
    _decode,
    _disjoint,
    _score_row,
    load_model,
    read_states,
    training_pairs,
    validation_pairs,
    window_score,
)
from sap_viz.data.contrast_v2 import read_contrast_v2
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.responses import AnswerConfig, generate_answers
from sap_viz.jsonl import read_jsonl, write_jsonl

POOL = ANSWERS / "framed_pool.jsonl"
RUNS = HERE / "framed_runs.jsonl"
LAYER, C, WINDOW, LABELING = 16, 0.05, "all", "text"  # the shipped recipe (steering/answer_check.json: recipe)


def make_answers() -> None:
    if POOL.exists():
        return
    df = build_dataset(DataConfig())
    train = set(df[df["split"] == "train"]["text"])
    framed = read_contrast_v2()
    framed = framed[(framed["type"] == "framed") & framed["text"].isin(train)]
    keep = set(_disjoint(framed["text"].tolist()))
    framed = framed[framed["text"].isin(keep)]
    prompts = framed["text"].tolist()
    lm = load_model()
    answers = _decode(lm, generate_answers(lm, prompts, AnswerConfig(max_new_tokens=ANSWER_TOKENS)))
    write_jsonl(POOL, [{"prompt": p, "answer": a, "kind": f"framed_{'harmful' if lab == 'unsafe' else 'benign'}"}
                       for p, a, lab in zip(prompts, answers, framed["label"], strict=True)])
    print(f"{len(prompts)} framed answers", flush=True)


def framed_pairs(seed: int) -> list[Pair]:
    """A seed's draw of the framed answers (as many prompts of each side as the sweep draws, or all there are)."""
    from sap_viz.recipe.answer_check_fit import answer_label

    rows = read_jsonl(POOL)
    rng = np.random.default_rng(seed)
    out = []
    for kind in ("framed_harmful", "framed_benign"):
        side = [r for r in rows if r["kind"] == kind and r["answer"].strip()]
        chosen = [side[i] for i in sorted(rng.choice(len(side), min(SEED_DRAW, len(side)), replace=False))]
        for r in chosen:
            label = answer_label(r["answer"]) if kind == "framed_harmful" else 0
            if label is not None:
                out.append(Pair(r["prompt"], r["answer"], label, kind))
    return out


def sweep(seeds: list[int]) -> None:
    from sap_viz.method.answer_check import fit_answer_check

    lm = load_model()
    val = validation_pairs()
    val_states = read_states(lm, val, [LAYER])[LAYER]
    designs = {f"{seed}": {"shipped pool": training_pairs(seed, LABELING),
                           "shipped pool + framed answers": training_pairs(seed, LABELING) + framed_pairs(seed)}
               for seed in seeds}
    distinct = list({(p.prompt, p.answer): p for d in designs.values() for group in d.values() for p in group}.values())
    states = read_states(lm, distinct, [LAYER])[LAYER]
    by_pair = {(p.prompt, p.answer): s for p, s in zip(distinct, states, strict=True)}
    rows = []
    for seed in seeds:
        for design, pairs in designs[f"{seed}"].items():
            harmful = [by_pair[(p.prompt, p.answer)] for p in pairs if p.label == 1 and len(by_pair[(p.prompt, p.answer)])]
            harmless = [by_pair[(p.prompt, p.answer)] for p in pairs if p.label == 0 and len(by_pair[(p.prompt, p.answer)])]
            check = fit_answer_check(harmful, harmless, LAYER, C, seed)
            scores = [window_score(check.token_logits(s).numpy(), WINDOW) for s in val_states]
            row = _score_row(val, scores, WINDOW) | {"seed": seed, "design": design,
                                                     "train": {"harmful": len(harmful), "harmless": len(harmless)}}
            rows.append(row)
            print(f"seed {seed} {design:30s} recall {row['recall']:.3f} (steered {row['recall_steered']}, "
                  f"unsteered {row['recall_unsteered']}) false alarms {row['false_alarms']:.3f}", flush=True)
    write_jsonl(RUNS, rows)
    for design in ("shipped pool", "shipped pool + framed answers"):
        recalls = [r["recall"] for r in rows if r["design"] == design]
        print(f"{design}: recall {statistics.fmean(recalls):.3f} ± {statistics.pstdev(recalls):.3f} over {len(recalls)} seeds")
    print(json.dumps({"runs": str(RUNS)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["answers", "sweep"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.step == "answers":
        make_answers()
    else:
        make_answers()
        sweep(args.seeds)


if __name__ == "__main__":
    main()

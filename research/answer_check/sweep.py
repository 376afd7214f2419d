"""Choose the answer check's recipe by recall at a false-alarm budget, on hand-labelled validation answers.

    python -m research.answer_check.sweep answers --seeds 0 1 2   # generate and cache the answers (answers/*.jsonl)
    python -m research.answer_check.sweep sweep --seeds 0 1 2     # fit every recipe, score it, write runs.jsonl
    python -m research.answer_check.sweep ship --recipe 16,8,text,0.05   # fit the chosen one on the pool, ship it

Why this study: the check shipped before it was chosen by AUROC on answers labelled by their *prompt* (every
answer to a harmful prompt counted as harmful), and caught 9 in 40 harmful validation answers at its boundary.
By hand, only about a third of this model's answers to harmful prompts are harmful (the rest refuse, wander off or
loop), so the old labels taught the probe the prompt, not the answer.

What is swept (``RECIPES``):
- layer: blocks 8, 12 and 16. The check reads each answer token's state during generation, before any steering
  edit; steering edits block 16 (directional) or 22 (minimal Safe Flow), and a block's output at later columns does
  not depend on edits made at that block or above, so a check at block <= 16 reads exactly what a re-read would;
- the evidence rule (``window``): the check fires at the first token where the mean token logit over the last
  ``window`` tokens reaches the boundary ("all": the running mean over the whole answer so far, once at least 8
  tokens are read); an answer shorter than the window is judged on its mean when it ends (``rule_score``);
- training labels: ``prompt`` (as shipped before: every answer to a harmful train prompt is harmful), ``text`` (the
  model's own answers to harmful train prompts count as harmful only when they neither open with a refusal nor
  loop; refusing ones count as harmless: ``recipe.answer_check_fit.answer_label``), ``text+steered`` (also the
  model's steered answers to harmful train prompts that open with a refusal, as harmless: the style a steered reply
  has; steered answers are generated for 112 of the 240 harmful prompts); ``hand`` and ``hand+steered``: the
  model's answers to the 240 harmful train prompts labelled by hand by the rubric (docs/outcome_rubric.md: harmful,
  or not), train_hand_labels.jsonl (122 of the 240 harmful; the text rule calls 204 harmful);
- the probe's regularisation C.
Each recipe is fitted on three seeds (each draws 200 of the 240 training prompts of each kind); its boundary is set on
the validation harmless answers at <= 5 % false alarms and its recall read on the validation harmful answers.

Validation (never in training): the hand labels of the validation split's answers (research/steering/
sweep_hand_labels.jsonl and caps_hand_labels.jsonl: unsteered and steered answers to validation harmful prompts,
labelled blind to side by docs/outcome_rubric.md; "harmful" is harmful, every other label harmless), and the
model's answers to 150 ordinary prompts from the verdict's control set (harmless: ordinary ShareGPT requests).
Training prompts that appear among the validation or test prompts are dropped (``_disjoint``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.responses import (
    AnswerConfig,
    answer_ids_for,
    assign_refusals,
    generate_answers,
    refusal_halves,
    steering_prompts,
)
from sap_viz.jsonl import read_jsonl, write_jsonl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ANSWERS = HERE / "answers"
RUNS = HERE / "runs.jsonl"
VAL_LABELS = (ROOT / "research/steering/sweep_hand_labels.jsonl", ROOT / "research/steering/caps_hand_labels.jsonl")
TEST_LABELS = (ROOT / "tests/data/outcome_labels.jsonl", ROOT / "research/steering_outcomes/steering_hand_labels.jsonl")
LAYERS = (8, 12, 16)
WINDOWS = (1, 4, 8, 16, "all")
LABELINGS = ("prompt", "text", "text+steered", "hand", "hand+steered")
TRAIN_HAND_LABELS = HERE / "train_hand_labels.jsonl"
CS = (0.01, 0.05, 0.2)
MAX_FALSE_ALARMS = 0.05
POOL = 240  # training prompts per kind, drawn once; each seed fits on SEED_DRAW of them
SEED_DRAW = 200
STEERED_POOL = 112  # harmful prompts whose steered answers are generated (steered generation is the slow part)
ANSWER_TOKENS = 32  # training answers, as the shipped check's
VALIDATION_TOKENS = 48  # the app's default answer length
ORDINARY_VAL = 150


@dataclass(frozen=True)
class Pair:
    prompt: str
    answer: str
    label: int  # 1 harmful, 0 harmless
    kind: str


def load_model():
    from sap_viz.model.loading import load_model as load

    return load()


def _hand_pairs(paths) -> list[Pair]:
    out: dict[str, Pair] = {}
    for path in paths:
        for r in read_jsonl(path):
            if r.get("label") is None:
                continue
            key = f"{r['prompt']}\x00{r['answer']}"
            steered = any(run["setting"] != "off" for run in r.get("runs", [])) or r.get("setting", "off") != "off"
            out.setdefault(key, Pair(r["prompt"], r["answer"], int(r["label"] == "harmful"), "steered" if steered else "unsteered"))
    return list(out.values())


def validation_pairs() -> list[Pair]:
    rows = read_jsonl(ANSWERS / "ordinary_val.jsonl")
    return _hand_pairs(VAL_LABELS) + [Pair(r["prompt"], r["answer"], 0, "ordinary") for r in rows]


def _disjoint(prompts: list[str]) -> list[str]:
    held = {p.prompt for p in _hand_pairs(VAL_LABELS + TEST_LABELS)}
    return [p for p in prompts if p not in held]


def _decode(lm, ids_list):
    return [lm.tokenizer.decode(a, skip_special_tokens=True) for a in ids_list]


def make_answers() -> None:
    """The training answers (a pool of ``POOL`` prompts per kind) and the ordinary validation answers, as JSONL."""
    from sap_viz.method.artifact import load_for_model
    from sap_viz.method.generation import GenerationConfig, run_generation
    from sap_viz.method.polytope_hook import InterventionConfig
    from sap_viz.method.verdict_calibration import control_prompts
    from sap_viz.settings import DEFAULT_POLYTOPE

    ANSWERS.mkdir(exist_ok=True)
    lm = load_model()
    df = build_dataset(DataConfig())
    ordinary = ANSWERS / "ordinary_val.jsonl"
    if not ordinary.exists():
        prompts = control_prompts(ORDINARY_VAL, training=df)[0]
        answers = _decode(lm, generate_answers(lm, prompts, AnswerConfig(max_new_tokens=VALIDATION_TOKENS)))
        write_jsonl(ordinary, [{"prompt": p, "answer": a} for p, a in zip(prompts, answers, strict=True)])
    path = ANSWERS / "train_pool.jsonl"
    if path.exists():
        return
    cfg = AnswerConfig(max_new_tokens=ANSWER_TOKENS)
    harmful, safe = steering_prompts(df, POOL, 0)
    harmful, safe = _disjoint(harmful), _disjoint(safe)
    rows = [{"prompt": p, "answer": a, "kind": "model_harmful"}
            for p, a in zip(harmful, _decode(lm, generate_answers(lm, harmful, cfg)), strict=True)]
    rows += [{"prompt": p, "answer": a, "kind": "model_safe"}
             for p, a in zip(safe, _decode(lm, generate_answers(lm, safe, cfg)), strict=True)]
    rows += [{"prompt": p, "answer": a, "kind": "refusal"}
             for p, a in zip(harmful, assign_refusals(harmful, refusal_halves()[0], 0), strict=True)]
    artifact = load_for_model(DEFAULT_POLYTOPE, lm)
    steer = InterventionConfig(mode="steer", fallback=False)
    for i in range(0, STEERED_POOL, 16):
        batch = harmful[i:i + 16]
        results = run_generation(lm, artifact, batch, GenerationConfig(max_new_tokens=ANSWER_TOKENS), steer)
        rows += [{"prompt": p, "answer": r.steered_text or r.text, "kind": "model_steered", "touched": r.interventions > 0}
                 for p, r in zip(batch, results, strict=True)]
        print(f"steered {i + len(batch)} / {STEERED_POOL}", flush=True)
    write_jsonl(path, rows)
    print(f"{len(rows)} training answers", flush=True)


def training_pairs(seed: int | None, labeling: str) -> list[Pair]:
    """The pairs one seed fits on (``SEED_DRAW`` prompts of each kind from the pool; seed None: the whole pool)."""
    from sap_viz.analysis.text_quality import is_refusal
    from sap_viz.recipe.answer_check_fit import answer_label, uncensorbench_answers

    pool = read_jsonl(ANSWERS / "train_pool.jsonl")
    rng = np.random.default_rng(0 if seed is None else seed)
    keep = {kind: set(sorted({r["prompt"] for r in pool if r["kind"] == kind}) if seed is None else
                      rng.choice(sorted({r["prompt"] for r in pool if r["kind"] == kind}), SEED_DRAW, replace=False))
            for kind in ("model_harmful", "model_safe")}
    keep["refusal"] = keep["model_steered"] = keep["model_harmful"]  # a seed's steered answers: those of its harmful draw
    rows = [r for r in pool if r["prompt"] in keep[r["kind"]]]
    hand = {(r["prompt"], r["answer"]): int(r["label"] == "harmful") for r in read_jsonl(TRAIN_HAND_LABELS)}
    out = []
    for r in rows:
        kind, text = r["kind"], r["answer"]
        if not text.strip():
            continue
        if kind == "model_harmful":
            label = 1 if labeling == "prompt" else hand[(r["prompt"], text)] if labeling.startswith("hand") else answer_label(text)
            if label is not None:
                out.append(Pair(r["prompt"], text, label, kind))
        elif kind in ("model_safe", "refusal"):
            out.append(Pair(r["prompt"], text, 0, kind))
        elif kind == "model_steered" and labeling.endswith("+steered") and is_refusal(text) and r.get("touched"):
            out.append(Pair(r["prompt"], text, 0, kind))
    df = build_dataset(DataConfig())
    train = df[df["split"] == "train"]
    complying, refusing = uncensorbench_answers(set(_disjoint(train["text"].tolist())))
    out += [Pair(p, a, 1, "uncensorbench_complying") for p, a in complying]
    out += [Pair(p, a, 0, "uncensorbench_refusing") for p, a in refusing]
    return out


def read_states(lm, pairs: list[Pair], layers: list[int]) -> dict[int, list[torch.Tensor]]:
    """Block states at answer tokens 0 .. n-2 (the ones generation reads: the last token written is never read back)."""
    from sap_viz.model.features import hidden_states_multi
    from sap_viz.model.prompts import encode_prompt

    prompt_ids = [encode_prompt(lm.tokenizer, p.prompt, True, 256).ids for p in pairs]
    answer_ids = [a[:VALIDATION_TOKENS + 16] for a in answer_ids_for(lm, [p.answer for p in pairs])]
    states = hidden_states_multi(lm, [p + a for p, a in zip(prompt_ids, answer_ids, strict=True)], layers, 16, progress=True)
    return {layer: [s[len(p):len(p) + max(0, len(a) - 1)].float() for s, p, a in zip(states[layer], prompt_ids, answer_ids,
                                                                                     strict=True)] for layer in layers}


def window_score(logits: np.ndarray, window) -> float | None:
    """The highest value the evidence rule reaches (``method/answer_check.rule_score``); "all" is the running mean."""
    from sap_viz.method.answer_check import RUNNING_MEAN, WINDOW, rule_score

    return rule_score(logits, None, RUNNING_MEAN) if window == "all" else rule_score(logits, window, WINDOW)


def boundary_at(harmless: list[float], budget: float) -> float:
    ranked = sorted(harmless, reverse=True)
    allowed = int(np.floor(budget * len(ranked)))
    return ranked[allowed] + 1e-6 if allowed < len(ranked) else ranked[-1]


def _pool_states(lm, seeds: list[int], layers) -> tuple[dict[str, list[Pair]], dict[tuple[str, str], dict[int, torch.Tensor]]]:
    """Every seed's and labelling's training pairs, and the states of every distinct (prompt, answer), read once."""
    pairs = {f"{seed}/{labeling}": training_pairs(seed, labeling) for seed in seeds for labeling in LABELINGS}
    distinct = list({(p.prompt, p.answer): p for group in pairs.values() for p in group}.values())
    states = read_states(lm, distinct, list(layers))
    return pairs, {(p.prompt, p.answer): {layer: states[layer][i] for layer in layers} for i, p in enumerate(distinct)}


def sweep(seeds: list[int], layers=LAYERS, cs=CS) -> None:
    from sap_viz.method.answer_check import fit_answer_check

    lm = load_model()
    val = validation_pairs()
    val_states = read_states(lm, val, list(layers))
    done = {(r["seed"], r["labeling"], r["layer"], r["c"]) for r in read_jsonl(RUNS)} if RUNS.exists() else set()
    groups, states = _pool_states(lm, seeds, layers)
    for seed in seeds:
        for labeling in LABELINGS:
            pairs = groups[f"{seed}/{labeling}"]
            for layer in layers:
                for c in cs:
                    if (seed, labeling, layer, c) in done:
                        continue
                    t0 = time.time()
                    chosen = [(p, states[(p.prompt, p.answer)][layer]) for p in pairs]
                    harmful = [s for p, s in chosen if p.label == 1 and len(s)]
                    harmless = [s for p, s in chosen if p.label == 0 and len(s)]
                    check = fit_answer_check(harmful, harmless, layer, c, seed)
                    logits = [check.token_logits(s).numpy() for s in val_states[layer]]
                    rows = []
                    for window in WINDOWS:
                        scores = [window_score(x, window) for x in logits]
                        rows.append(_score_row(val, scores, window) | {
                            "seed": seed, "labeling": labeling, "layer": layer, "c": c, "window": window,
                            "train": {"harmful": len(harmful), "harmless": len(harmless)}, "fit_s": round(time.time() - t0, 1)})
                    with RUNS.open("a", encoding="utf-8") as f:
                        for row in rows:
                            f.write(json.dumps(row) + "\n")
                    best = max(rows, key=lambda r: r["recall"])
                    print(f"seed {seed} {labeling:13s} L{layer} C={c}: best window {best['window']} recall {best['recall']:.3f} "
                          f"(steered {best['recall_steered']}, unsteered {best['recall_unsteered']})", flush=True)


def _score_row(pairs: list[Pair], scores: list[float | None], window, boundary: float | None = None) -> dict:
    scored = [(p, s) for p, s in zip(pairs, scores, strict=True) if s is not None]
    harmless = [s for p, s in scored if p.label == 0]
    boundary = boundary_at(harmless, MAX_FALSE_ALARMS) if boundary is None else boundary

    def rate(rows):
        return round(sum(s >= boundary for _, s in rows) / len(rows), 4) if rows else None

    from sap_viz.analysis.metrics import auroc

    return {"boundary": round(boundary, 4), "recall": rate([(p, s) for p, s in scored if p.label == 1]),
            "recall_steered": rate([(p, s) for p, s in scored if p.label == 1 and p.kind == "steered"]),
            "recall_unsteered": rate([(p, s) for p, s in scored if p.label == 1 and p.kind == "unsteered"]),
            "false_alarms": rate([(p, s) for p, s in scored if p.label == 0]),
            "false_alarms_ordinary": rate([(p, s) for p, s in scored if p.label == 0 and p.kind == "ordinary"]),
            "false_alarms_steered": rate([(p, s) for p, s in scored if p.label == 0 and p.kind == "steered"]),
            "auroc": round(auroc([p.label for p, _ in scored], [s for _, s in scored]), 4),
            "n_harmful": sum(p.label for p, _ in scored), "n_harmless": len(harmless)}


def ship(layer: int, window, labeling: str, c: float, folder: Path | None = None) -> dict:
    """Fit the chosen recipe on the whole pool, set its boundary on the validation harmless answers (<= 5 %), save it."""
    from sap_viz.method.answer_check import RUNNING_MEAN, WINDOW, AnswerCheck, fit_answer_check
    from sap_viz.settings import DEFAULT_POLYTOPE

    folder = folder or Path(DEFAULT_POLYTOPE) / "steering"
    lm = load_model()
    pairs = training_pairs(None, labeling)
    recipe = {"labels": labeling, "layer": layer, "c": c, "window": window}
    shipped = AnswerCheck.load(folder, lm.hidden_size, lm.num_layers)
    if shipped is not None and {k: shipped.meta.get("recipe", {}).get(k) for k in recipe} == recipe:
        check = shipped  # the same recipe on the same pool: only the boundary is set again
        n_harmful, n_harmless = shipped.meta["trained_on"]["harmful_answers"], shipped.meta["trained_on"]["harmless_answers"]
    else:
        states = read_states(lm, pairs, [layer])[layer]
        harmful = [s for s, p in zip(states, pairs, strict=True) if p.label == 1 and len(s)]
        harmless = [s for s, p in zip(states, pairs, strict=True) if p.label == 0 and len(s)]
        check = fit_answer_check(harmful, harmless, layer, c, 0)
        n_harmful, n_harmless = len(harmful), len(harmless)
    check.rule, check.window = (RUNNING_MEAN, None) if window == "all" else (WINDOW, int(window))
    val = validation_pairs()
    logits = [check.token_logits(s).tolist() for s in read_states(lm, val, [layer])[layer]]
    scores = [check.score_logits(x) for x in logits]
    # the budget holds for ordinary answers and for harmless steered answers apart, not only for the pool (where the
    # many low-scoring refusals would let ordinary answers reach 7 %): the shipped boundary is the stricter of the two
    kinds = ("ordinary", "steered")
    boundary = max(boundary_at([s for p, s in zip(val, scores, strict=True) if p.label == 0 and p.kind == kind and s is not None],
                               MAX_FALSE_ALARMS) for kind in kinds)
    row = _score_row(val, scores, window, boundary)
    check.threshold = row["boundary"]
    runs = [r for r in read_jsonl(RUNS) if (r["labeling"], r["layer"], r["c"], str(r["window"])) == (labeling, layer, c, str(window))]
    recalls = [r["recall"] for r in runs]
    check.meta = {
        "recipe": {"labels": labeling, "layer": layer, "c": c, "window": window, "max_false_alarms": MAX_FALSE_ALARMS,
                   "budget": "for ordinary answers and for harmless steered answers, each apart",
                   "chosen_by": "recall at <= 5 % false alarms on hand-labelled validation answers (research/answer_check)"},
        "trained_on": {"harmful_answers": n_harmful, "harmless_answers": n_harmless, "split": "train",
                       "kinds": dict(sorted(Counter(f"{p.kind}:{'harmful' if p.label else 'harmless'}" for p in pairs).items()))},
        "validation": {k: row[k] for k in ("recall", "recall_steered", "recall_unsteered", "false_alarms",
                                           "false_alarms_ordinary", "false_alarms_steered", "auroc", "n_harmful", "n_harmless")},
        "seeds": {"n": len(recalls), "recall_mean": round(float(np.mean(recalls)), 4) if recalls else None,
                  "recall_sd": round(float(np.std(recalls)), 4) if recalls else None},
        "reads": "each answer token's state as generation reads it back, before any steering edit",
    }
    check.save(folder)
    print(json.dumps(check.describe(), indent=1)[:1500])
    return check.describe()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("answers", "sweep", "ship"))
    parser.add_argument("--recipe", help="ship: layer,window,labels,c (e.g. 16,8,text,0.05)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layers", type=int, nargs="+", default=list(LAYERS))
    parser.add_argument("--cs", type=float, nargs="+", default=list(CS))
    args = parser.parse_args(argv)
    if args.step == "answers":
        make_answers()
    elif args.step == "ship":
        layer, window, labeling, c = args.recipe.split(",")
        ship(int(layer), window if window == "all" else int(window), labeling, float(c))
    else:
        sweep(args.seeds, tuple(args.layers), tuple(args.cs))


if __name__ == "__main__":
    main()

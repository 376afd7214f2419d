"""Training and validation answers for the answer check (``method/answer_check.py``), and its fitting.

The recipe was chosen by recall at <= 5 % false alarms on hand-labelled validation answers (research/answer_check,
docs/research/answer_check.md); this module is what ``sap-viz train-steering`` runs on any model, without hand labels.

Labels come from the text, not the prompt: about two thirds of this model's answers to harmful prompts refuse,
wander off or loop, so "every answer to a harmful prompt is harmful" taught the probe the prompt. An answer to a
harmful prompt counts as harmful when it neither opens with a refusal nor loops (``answer_label``); one that opens
with a refusal counts as harmless; a looping one is left out.

Training (train split only, like the steering part, so the held-out sets never enter):
- harmful: the model's own greedy answers to harmful train prompts that the text calls harmful, and UncensorBench's
  written complying answer for each of its prompts in the train split;
- harmless: our refusals (the half the steering part uses) teacher-forced after the same harmful prompts, the
  model's refusing answers, UncensorBench's written refusals, and the model's answers to safe train prompts.
Validation (the ``sweep`` half of the validation split): the model's answers to validation harmful prompts,
labelled the same way, and its answers to safe ones (harmless). The block is chosen there by recall at the
false-alarm budget among the candidates no deeper than the steering part's block (the check must read states no
steering edit has touched); the boundary there too, as the score with at most ``max_false_alarms`` of the harmless
validation answers at or above it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from sap_viz.analysis.judge_data import validation_prompts
from sap_viz.analysis.metrics import auroc
from sap_viz.analysis.text_quality import is_degenerate, is_refusal
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.package_files import read_json
from sap_viz.data.responses import AnswerConfig, answer_ids_for, assign_refusals, generate_answers, refusal_halves, steering_prompts
from sap_viz.errors import RecipeError
from sap_viz.method.answer_check import RUNNING_MEAN, AnswerCheck, answer_states, calibrate, fit_answer_check
from sap_viz.model.features import hidden_states_multi
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import encode_prompt


@dataclass(frozen=True)
class AnswerCheckConfig:
    layers: tuple[int, ...] = (8, 12, 16)  # candidates no deeper than ``max_layer``; the best validation recall wins
    max_layer: int = 16  # the steering part's block: the check reads states before any edit
    rule: str = RUNNING_MEAN  # the evidence rule (method/answer_check.py): chosen in research/answer_check
    window: int | None = None  # tokens in a row the WINDOW rule averages over
    prompts_per_label: int = 240  # the steering part's train prompts (their answers are cached once)
    answer_tokens: int = 32
    validation_tokens: int = 48  # validation answers as long as the app's default answers
    max_false_alarms: float = 0.05  # share of harmless validation answers allowed at or above the threshold
    c: float = 0.05
    seed: int = 0


def answer_label(text: str) -> int | None:
    """1 for an answer to a harmful prompt that neither opens with a refusal nor loops, 0 for one that refuses, None
    for one that loops (left out: neither harmful content nor a reply)."""
    if is_refusal(text):
        return 0
    return None if is_degenerate([], text) else 1


Pair = tuple[list[int], list[int]]  # (prompt ids, answer ids)


def _prompt_ids(lm: LoadedModel, prompts: list[str]) -> list[list[int]]:
    return [encode_prompt(lm.tokenizer, p, True, 256).ids for p in prompts]


def uncensorbench_answers(train_prompts: set[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(prompt, complying answer) and (prompt, refusing answer) for UncensorBench prompts in ``train_prompts``."""
    data = read_json("uncensorbench", "data/prompts.json")
    rows = [p for p in data["prompts"] if p["prompt"] in train_prompts]
    return [(p["prompt"], p["uncensored_response"]) for p in rows], [(p["prompt"], p["censored_response"]) for p in rows]


def _labelled(lm: LoadedModel, prompt_ids: list[list[int]], answers: list[list[int]]) -> tuple[list[Pair], list[Pair]]:
    """(harmful, harmless) pairs of answers to harmful prompts, by ``answer_label``."""
    bad, good = [], []
    for p, a in zip(prompt_ids, answers, strict=True):
        label = answer_label(lm.tokenizer.decode(a, skip_special_tokens=True))
        if label is not None:
            (bad if label else good).append((p, a))
    return bad, good


def training_pairs(lm: LoadedModel, cfg: AnswerCheckConfig, data: DataConfig = DataConfig(),
                   progress: bool = True) -> tuple[list[Pair], list[Pair], dict]:
    df = build_dataset(data)
    harmful, safe = steering_prompts(df, cfg.prompts_per_label, cfg.seed)
    answer_cfg = AnswerConfig(max_new_tokens=cfg.answer_tokens)
    answered = generate_answers(lm, harmful, answer_cfg, progress)
    helpful = generate_answers(lm, safe, answer_cfg, progress)
    refusals = answer_ids_for(lm, assign_refusals(harmful, refusal_halves()[0], cfg.seed))
    train = df[df["split"] == "train"]
    complying, refusing = uncensorbench_answers(set(train["text"]))
    ucb_prompts = _prompt_ids(lm, [p for p, _ in complying])
    hp, sp = _prompt_ids(lm, harmful), _prompt_ids(lm, safe)
    model_bad, model_good = _labelled(lm, hp, answered)
    bad = model_bad + list(zip(ucb_prompts, answer_ids_for(lm, [a for _, a in complying]), strict=True))
    good = (model_good + list(zip(hp, refusals, strict=True)) + list(zip(sp, helpful, strict=True))
            + list(zip(ucb_prompts, answer_ids_for(lm, [a for _, a in refusing]), strict=True)))
    bad = [(p, a[:cfg.validation_tokens]) for p, a in bad if len(a) > 1]
    good = [(p, a[:cfg.validation_tokens]) for p, a in good if len(a) > 1]
    counts = {"model_harmful_answers": len(model_bad), "model_refusing_answers": len(model_good),
              "model_looping_answers_left_out": len(answered) - len(model_bad) - len(model_good),
              "uncensorbench_complying": len(complying), "refusals": len(refusals), "model_safe_answers": len(helpful),
              "uncensorbench_refusing": len(refusing), "split": "train", "labels": "by the text (answer_label)"}
    return bad, good, counts


def validation_pairs(lm: LoadedModel, cfg: AnswerCheckConfig, progress: bool = True) -> tuple[list[Pair], list[Pair]]:
    prompts = validation_prompts()
    answer_cfg = AnswerConfig(max_new_tokens=cfg.validation_tokens)
    harmful_ids = _prompt_ids(lm, prompts["sweep_harmful"])
    bad, refusing = _labelled(lm, harmful_ids, generate_answers(lm, prompts["sweep_harmful"], answer_cfg, progress))
    safe_ids = _prompt_ids(lm, prompts["sweep_benign"])
    good = refusing + list(zip(safe_ids, generate_answers(lm, prompts["sweep_benign"], answer_cfg, progress), strict=True))
    return [(p, a) for p, a in bad if len(a) > 1], [(p, a) for p, a in good if len(a) > 1]


def _states(lm: LoadedModel, pairs: list[Pair], layers: list[int]) -> dict[int, list[torch.Tensor]]:
    states = hidden_states_multi(lm, [p + a for p, a in pairs], layers, 16)
    # the states generation reads: every answer token but the last written (``method/answer_check.answer_states``)
    return {layer: [s[len(p):len(p) + len(a) - 1] for s, (p, a) in zip(states[layer], pairs, strict=True)] for layer in layers}


def fit_answer_check_for(lm: LoadedModel, cfg: AnswerCheckConfig = AnswerCheckConfig(), data: DataConfig = DataConfig(),
                         progress: bool = True) -> tuple[AnswerCheck, list[dict]]:
    """The check at the block with the best validation recall at the false-alarm budget, its evidence rule set and its
    boundary set on validation; and one row per block tried."""
    layers = [layer for layer in cfg.layers if layer <= cfg.max_layer]
    if not layers:
        raise RecipeError(f"no candidate block of the answer check is at or before the steering block {cfg.max_layer}")
    bad, good, counts = training_pairs(lm, cfg, data, progress)
    val_bad, val_good = validation_pairs(lm, cfg, progress)
    if not val_bad or not val_good:
        raise RecipeError("the answer check's validation needs harmful and harmless answers; one side is empty")
    train_bad, train_good = _states(lm, bad, layers), _states(lm, good, layers)
    v_bad, v_good = _states(lm, val_bad, layers), _states(lm, val_good, layers)
    rows, best = [], None
    for layer in layers:
        check = fit_answer_check(train_bad[layer], train_good[layer], layer, cfg.c, cfg.seed)
        check.rule, check.window = cfg.rule, cfg.window
        sb = [check.answer_score(s) for s in v_bad[layer]]
        sg = [check.answer_score(s) for s in v_good[layer]]
        calibrate(check, sg, cfg.max_false_alarms)
        row = {"layer": layer, "val_auroc": round(auroc([0] * len(sg) + [1] * len(sb), sg + sb), 4),
               "threshold": round(check.threshold, 4),
               "val_recall": round(sum(check.flags(s) for s in sb) / len(sb), 4),
               "val_false_alarms": round(sum(check.flags(s) for s in sg) / len(sg), 4)}
        rows.append(row)
        if best is None or (row["val_recall"], row["val_auroc"]) > (best[1]["val_recall"], best[1]["val_auroc"]):
            best = (check, row)
    check, row = best
    check.meta.update({"trained_on": counts, "validation": {"harmful_answers": len(val_bad), "harmless_answers": len(val_good),
                                                            **{k: v for k, v in row.items() if k != "layer"}},
                       "config": asdict(cfg), "layer_sweep": rows,
                       "reads": "each answer token's state as generation reads it back, before any steering edit"})
    return check, rows


__all__ = ["AnswerCheckConfig", "answer_states", "fit_answer_check_for", "training_pairs", "validation_pairs"]

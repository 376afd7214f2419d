"""Training and validation answers for the answer check (``method/answer_check.py``), and its fitting.

Training (train split only, like the steering part, so the held-out sets never enter):
- harmful: the model's own greedy answers to harmful train prompts (SmolLM2-135M does not refuse on
  its own, so these comply), and UncensorBench's written complying answer for each of its prompts
  in the train split;
- harmless: our refusals (the half the steering part uses) teacher-forced after the same harmful
  prompts, UncensorBench's written refusals, and the model's answers to safe train prompts.
Validation (the ``sweep`` half of the validation split, which also chooses steering settings; the
judge's half stays apart): the model's answers to validation harmful prompts (harmful) and to safe
ones (harmless). The layer is chosen there by AUROC; the threshold there too, as the score with at
most ``max_false_alarms`` of the harmless validation answers above it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from sap_viz.analysis.judge_data import validation_prompts
from sap_viz.analysis.metrics import auroc
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.package_files import read_json
from sap_viz.data.responses import AnswerConfig, answer_ids_for, assign_refusals, generate_answers, refusal_halves, steering_prompts
from sap_viz.errors import RecipeError
from sap_viz.method.answer_check import AnswerCheck, answer_states, calibrate, fit_answer_check
from sap_viz.model.features import hidden_states_multi
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import encode_prompt


@dataclass(frozen=True)
class AnswerCheckConfig:
    layers: tuple[int, ...] = (16, 20, 22, 26)  # candidates; the best validation AUROC wins
    prompts_per_label: int = 240  # the steering part's train prompts (their answers are cached once)
    answer_tokens: int = 32
    validation_tokens: int = 64  # validation answers as long as the app's and the targets' answers
    max_false_alarms: float = 0.03  # share of harmless validation answers allowed at or above the threshold
    c: float = 0.05
    seed: int = 0


Pair = tuple[list[int], list[int]]  # (prompt ids, answer ids)


def _prompt_ids(lm: LoadedModel, prompts: list[str]) -> list[list[int]]:
    return [encode_prompt(lm.tokenizer, p, True, 256).ids for p in prompts]


def uncensorbench_answers(train_prompts: set[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(prompt, complying answer) and (prompt, refusing answer) for UncensorBench prompts in ``train_prompts``."""
    data = read_json("uncensorbench", "data/prompts.json")
    rows = [p for p in data["prompts"] if p["prompt"] in train_prompts]
    return [(p["prompt"], p["uncensored_response"]) for p in rows], [(p["prompt"], p["censored_response"]) for p in rows]


def training_pairs(lm: LoadedModel, cfg: AnswerCheckConfig, data: DataConfig = DataConfig(),
                   progress: bool = True) -> tuple[list[Pair], list[Pair], dict]:
    df = build_dataset(data)
    harmful, safe = steering_prompts(df, cfg.prompts_per_label, cfg.seed)
    answer_cfg = AnswerConfig(max_new_tokens=cfg.answer_tokens)
    compliant = generate_answers(lm, harmful, answer_cfg, progress)
    helpful = generate_answers(lm, safe, answer_cfg, progress)
    refusals = answer_ids_for(lm, assign_refusals(harmful, refusal_halves()[0], cfg.seed))
    train = df[df["split"] == "train"]
    complying, refusing = uncensorbench_answers(set(train["text"]))
    ucb_prompts = _prompt_ids(lm, [p for p, _ in complying])
    hp, sp = _prompt_ids(lm, harmful), _prompt_ids(lm, safe)
    bad = list(zip(hp, compliant, strict=True)) + list(zip(ucb_prompts, answer_ids_for(lm, [a for _, a in complying]), strict=True))
    good = (list(zip(hp, refusals, strict=True)) + list(zip(sp, helpful, strict=True))
            + list(zip(ucb_prompts, answer_ids_for(lm, [a for _, a in refusing]), strict=True)))
    bad = [(p, a[:cfg.validation_tokens]) for p, a in bad if a]
    good = [(p, a[:cfg.validation_tokens]) for p, a in good if a]
    counts = {"model_compliant_answers": len(compliant), "uncensorbench_complying": len(complying), "refusals": len(refusals),
              "model_safe_answers": len(helpful), "uncensorbench_refusing": len(refusing), "split": "train"}
    return bad, good, counts


def validation_pairs(lm: LoadedModel, cfg: AnswerCheckConfig, progress: bool = True) -> tuple[list[Pair], list[Pair]]:
    prompts = validation_prompts()
    answer_cfg = AnswerConfig(max_new_tokens=cfg.validation_tokens)
    out = []
    for name in ("sweep_harmful", "sweep_benign"):
        ids = _prompt_ids(lm, prompts[name])
        answers = generate_answers(lm, prompts[name], answer_cfg, progress)
        out.append([(p, a) for p, a in zip(ids, answers, strict=True) if a])
    return out[0], out[1]


def _states(lm: LoadedModel, pairs: list[Pair], layers: list[int]) -> dict[int, list[torch.Tensor]]:
    states = hidden_states_multi(lm, [p + a for p, a in pairs], layers, 16)
    return {layer: [s[len(p):len(p) + len(a)] for s, (p, a) in zip(states[layer], pairs, strict=True)] for layer in layers}


def fit_answer_check_for(lm: LoadedModel, cfg: AnswerCheckConfig = AnswerCheckConfig(), data: DataConfig = DataConfig(),
                         progress: bool = True) -> tuple[AnswerCheck, list[dict]]:
    """The check at the layer with the best validation AUROC, its threshold set on validation; and one row per layer tried."""
    bad, good, counts = training_pairs(lm, cfg, data, progress)
    val_bad, val_good = validation_pairs(lm, cfg, progress)
    layers = list(cfg.layers)
    train_bad, train_good = _states(lm, bad, layers), _states(lm, good, layers)
    v_bad, v_good = _states(lm, val_bad, layers), _states(lm, val_good, layers)
    rows, best = [], None
    for layer in layers:
        check = fit_answer_check(train_bad[layer], train_good[layer], layer, cfg.c, cfg.seed)
        sb = [check.answer_score(s) for s in v_bad[layer]]
        sg = [check.answer_score(s) for s in v_good[layer]]
        calibrate(check, sg, cfg.max_false_alarms)
        auc = auroc([0] * len(sg) + [1] * len(sb), sg + sb)
        if auc is None:
            raise RecipeError("the answer check's validation needs harmful and harmless answers; one side is empty")
        row = {"layer": layer, "val_auroc": round(auc, 4), "threshold": round(check.threshold, 4),
               "val_recall": round(sum(check.flags(s) for s in sb) / len(sb), 4),
               "val_false_alarms": round(sum(check.flags(s) for s in sg) / len(sg), 4)}
        rows.append(row)
        if best is None or row["val_auroc"] > best[1]["val_auroc"]:
            best = (check, row)
    check, row = best
    check.meta.update({"trained_on": counts, "validation": {"harmful_answers": len(val_bad), "harmless_answers": len(val_good),
                                                            **{k: v for k, v in row.items() if k != "layer"}},
                       "config": asdict(cfg), "layer_sweep": rows, "reads": "answer tokens teacher-forced after the prompt, no hooks"})
    return check, rows


__all__ = ["AnswerCheckConfig", "answer_states", "fit_answer_check_for", "training_pairs", "validation_pairs"]

"""Build a polytope's steering part: a response-aware polytope and a steering direction at one layer.

Training data (train split only; the held-out sets never enter), at the first ``n_tokens`` tokens of each answer:
- unsafe: the model's own greedy answers to harmful train prompts (for target "own", those that do not refuse);
- safe: the target's answers (below) and the model's answers to safe train prompts; plus every train prompt's last
  token with its own label, so the part also knows where prompts sit.
The direction is mean(target answer states) − mean(the answers it points away from) at the layer. The target
(``SteeringPartConfig.target``) was chosen on validation prompts over three seeds, by how the steered answers read
(docs/research/steering_levers.md, third sweep): "own", the model's own answers that open with a refusal, against its
answers that do not. The others: "ours" (the built-in refusals' first half, teacher-forced after the same prompts; the
second half is kept for the answer judge, ``analysis/answer_judge.py``), "others" (UncensorBench's written refusals
after their own prompts, against the model's answers to those prompts) and "safe" (the model's answers to safe prompts).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from sap_viz.analysis.text_quality import is_refusal
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.responses import (
    AnswerConfig,
    answer_ids_for,
    assign_refusals,
    generate_answers,
    refusal_halves,
    response_states,
    steering_prompts,
)
from sap_viz.errors import RecipeError, UserError
from sap_viz.method.artifact import STEERING_DIR, PolytopeFileError, load_for_model, load_polytope, save_steering
from sap_viz.method.configs import STEERING_TARGETS, SteeringPartConfig
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import LoadedModel, model_identity
from sap_viz.recipe.answer_check_fit import AnswerCheckConfig, fit_answer_check_for, uncensorbench_answers
from sap_viz.recipe.pipeline import rescale_violations
from sap_viz.settings import DEFAULT_POLYTOPE

#: Fewer of the model's own refusals than this and ``target="own"`` has no direction worth the name.
MIN_OWN_REFUSALS = 8


def build_steering_part(lm: LoadedModel, cfg: SteeringPartConfig = SteeringPartConfig(), data: DataConfig = DataConfig(),
                        progress: bool = True) -> tuple[SafetyPolytope, torch.Tensor, dict]:
    if cfg.target not in STEERING_TARGETS:
        raise UserError(f"the steering target must be one of {', '.join(STEERING_TARGETS)}, got {cfg.target!r}")
    df = build_dataset(data)
    harmful, safe = steering_prompts(df, cfg.prompts_per_label, cfg.seed)
    answer_cfg = AnswerConfig()
    compliant = generate_answers(lm, harmful, answer_cfg, progress)
    if cfg.target == "own":  # (prompt, answer) pairs of the model's own refusals (True) and its other answers (False)
        pairs: dict[bool, tuple[list[str], list[list[int]]]] = {True: ([], []), False: ([], [])}
        for prompt, answer in zip(harmful, compliant, strict=True):
            side = pairs[is_refusal(lm.tokenizer.decode(answer, skip_special_tokens=True))]
            side[0].append(prompt)
            side[1].append(answer)
        if len(pairs[True][0]) < MIN_OWN_REFUSALS:
            raise RecipeError(f"the model refused only {len(pairs[True][0])} of {len(harmful)} harmful train prompts by itself "
                              f"(at least {MIN_OWN_REFUSALS} needed for target 'own'); use --target ours, built-in refusals")
    helpful = generate_answers(lm, safe, answer_cfg, progress)
    bar = "answer states" if progress else False

    def states(prompts: list[str], answers: list[list[int]]) -> torch.Tensor:
        return response_states(lm, prompts, answers, [cfg.layer], cfg.n_tokens, progress=bar)[0][cfg.layer]

    harm_states, safe_states = states(harmful, compliant), states(safe, helpful)
    unsafe, counts = harm_states, {}
    if cfg.target == "own":
        toward, away = states(*pairs[True]), states(*pairs[False])
        unsafe, counts = away, {"own_refusals": len(pairs[True][0])}
    elif cfg.target == "ours":
        refusal_texts = refusal_halves()[0]
        toward, away = states(harmful, answer_ids_for(lm, assign_refusals(harmful, refusal_texts, cfg.seed))), harm_states
        counts = {"refusals_used": len(refusal_texts)}
    elif cfg.target == "others":
        _, refusing = uncensorbench_answers(set(df[df["split"] == "train"]["text"]))
        prompts = [p for p, _ in refusing]
        toward = states(prompts, answer_ids_for(lm, [a for _, a in refusing]))
        away = states(prompts, generate_answers(lm, prompts, answer_cfg, progress))
        counts = {"uncensorbench_refusals": len(refusing)}
    else:  # "safe": the model's answers to safe prompts are already on the safe side
        toward, away = safe_states, harm_states
    safe_side = torch.cat([safe_states] if cfg.target == "safe" else [toward, safe_states])
    poly, tcfg, scale = fit_steering_polytope(lm, df, unsafe, safe_side, cfg, progress)
    direction = toward.mean(0) - away.mean(0)
    meta = {
        "role": "steering part: response-aware polytope + refusal direction (method/directional_steering.py)",
        "model": model_identity(lm),
        "layer": cfg.layer, "position": "last", "chat_template": True, "max_tokens": 256,
        "train_config": asdict(tcfg), "steering_config": asdict(cfg), "answer_config": asdict(answer_cfg),
        "data": {"harmful_prompts": len(harmful), "safe_prompts": len(safe), "target": cfg.target, **counts, "rows": {
            "unsafe_answer_tokens": len(unsafe), "safe_answer_tokens": len(safe_side),
            "target_tokens": len(toward), "away_tokens": len(away), "train_prompts": int((df["split"] == "train").sum())},
            "split": "train"},
        "metrics": {"violation_scale": scale, "direction_norm": round(float(direction.norm()), 3),
                    "mean_state_norm": round(float(harm_states.norm(dim=1).mean()), 3)},
    }
    return poly, direction, meta


def fit_steering_polytope(lm: LoadedModel, df, unsafe_states: torch.Tensor, safe_states: torch.Tensor, cfg: SteeringPartConfig,
                          progress: bool = True) -> tuple[SafetyPolytope, TrainConfig, float]:
    """The response-aware polytope: answer states on either side, plus every train prompt's last state with its own
    label (so the part also knows where prompts sit); returns it with its train config and violation scale."""
    train = df[df["split"] == "train"]
    prompt_cfg = FeatureConfig(layer=cfg.layer, max_tokens=256, position="last")  # one state per token, as steering reads
    prompt_states = extract_features(lm, train["text"].tolist(), prompt_cfg, progress=progress)
    x = torch.cat([unsafe_states, safe_states, prompt_states])
    unsafe = torch.cat([torch.ones(len(unsafe_states), dtype=torch.bool), torch.zeros(len(safe_states), dtype=torch.bool),
                        torch.tensor((train["label"] == "unsafe").to_numpy())])
    tcfg = TrainConfig(epochs=cfg.epochs, seed=42 + cfg.seed)
    poly = train_polytope(x, unsafe, tcfg, show_tqdm=progress).polytope
    return poly, tcfg, rescale_violations(poly, x, unsafe)


STEERING_PART_MODES = ("auto", "reuse", "build", "none")


def compatible_steering_part(lm: LoadedModel, detection_layer: int, source: Path | None = None) -> Path | None:
    """The shipped polytope's steering part when it fits this model and layer (same weights, steering layer not after
    the detection layer), else None. The part is the model's, not the polytope's: it was trained on built-in answers
    and decides how far and which way to move, while the new polytope decides whether."""

    folder = Path(source or DEFAULT_POLYTOPE) / STEERING_DIR
    if not folder.is_dir():
        return None
    try:
        part = load_for_model(folder, lm, keep=True)
    except PolytopeFileError:
        return None
    return folder if int(part.meta["layer"]) <= detection_layer else None


def attach_steering_part(lm: LoadedModel, directory: str | Path, mode: str = "auto", progress: bool = True) -> str:
    """Give a freshly trained polytope a steering part; returns a sentence saying what was done (or why not).

    ``reuse``: copy the shipped part when it fits; ``build``: train one on built-in data (minutes on a CPU);
    ``auto``: reuse, else build; ``none``: leave it out (Steer is then unavailable for the polytope).
    """

    if mode not in STEERING_PART_MODES:
        raise UserError(f"steering part must be one of {', '.join(STEERING_PART_MODES)}, got {mode!r}")
    directory = Path(directory)
    if mode == "none":
        return "no steering part (as asked): Steer is unavailable for this polytope"
    layer = int(load_polytope(directory).meta["layer"])
    found = compatible_steering_part(lm, layer) if mode in ("auto", "reuse") else None
    if found is not None:
        shutil.copytree(found, directory / STEERING_DIR, dirs_exist_ok=True)
        check = "with" if (found / "answer_check.json").is_file() else "without"
        return f"steering part reused from the shipped polytope (steering layer {load_polytope(found).meta['layer']}, {check} answer check)"
    if mode == "reuse":
        return ("no steering part: the shipped one does not fit (another model, or a detection layer before its steering layer "
                f"{SteeringPartConfig().layer}); Steer is unavailable until `python -m sap_viz train-steering --polytope {directory}`")

    cfg = SteeringPartConfig(layer=min(SteeringPartConfig().layer, layer))
    poly, direction, meta = build_steering_part(lm, cfg, progress=progress)
    check, _ = fit_answer_check_for(lm, AnswerCheckConfig(max_layer=cfg.layer), progress=progress)
    save_steering(directory, poly, direction, meta, check)
    return f"steering part built at layer {cfg.layer}, answer check at layer {check.layer}"

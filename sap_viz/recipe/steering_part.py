"""Build a polytope's steering part: a response-aware polytope and a refusal direction at one layer.

Training data (train split only; the held-out sets never enter):
- unsafe: the model's own greedy answers to harmful train prompts, at their first ``n_tokens`` tokens;
- safe: our refusals teacher-forced after the same harmful prompts, and the model's answers to safe
  train prompts; plus every train prompt's last token with its own label, so the part also knows
  where prompts sit.
The direction is mean(refusal answer states) − mean(compliant answer states) at the layer.
Refusals are split in two halves: the first half trains this part, the second is kept for the
answer judge (``analysis/answer_judge.py``), so the judge never sees a refusal the steering saw.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import torch

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
from sap_viz.errors import UserError
from sap_viz.method.artifact import STEERING_DIR, PolytopeFileError, load_for_model, load_polytope, save_steering
from sap_viz.method.configs import SteeringPartConfig
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import LoadedModel, model_identity
from sap_viz.recipe.answer_check_fit import AnswerCheckConfig, fit_answer_check_for
from sap_viz.recipe.pipeline import rescale_violations
from sap_viz.settings import DEFAULT_POLYTOPE


def build_steering_part(lm: LoadedModel, cfg: SteeringPartConfig = SteeringPartConfig(), data: DataConfig = DataConfig(),
                        progress: bool = True) -> tuple[SafetyPolytope, torch.Tensor, dict]:
    df = build_dataset(data)
    harmful, safe = steering_prompts(df, cfg.prompts_per_label, cfg.seed)
    answer_cfg = AnswerConfig()
    compliant = generate_answers(lm, harmful, answer_cfg, progress)
    helpful = generate_answers(lm, safe, answer_cfg, progress)
    refusal_texts = refusal_halves()[0]
    refusals = answer_ids_for(lm, assign_refusals(harmful, refusal_texts, cfg.seed))
    layer = [cfg.layer]
    bar = "answer states" if progress else False
    harm_states = response_states(lm, harmful, compliant, layer, cfg.n_tokens, progress=bar)[0][cfg.layer]
    refusal_states = response_states(lm, harmful, refusals, layer, cfg.n_tokens, progress=bar)[0][cfg.layer]
    safe_states = response_states(lm, safe, helpful, layer, cfg.n_tokens, progress=bar)[0][cfg.layer]
    poly, tcfg, scale = fit_steering_polytope(lm, df, harm_states, torch.cat([refusal_states, safe_states]), cfg, progress)
    direction = refusal_states.mean(0) - harm_states.mean(0)
    meta = {
        "role": "steering part: response-aware polytope + refusal direction (method/directional_steering.py)",
        "model": model_identity(lm),
        "layer": cfg.layer, "position": "last", "chat_template": True, "max_tokens": 256,
        "train_config": asdict(tcfg), "steering_config": asdict(cfg), "answer_config": asdict(answer_cfg),
        "data": {"harmful_prompts": len(harmful), "safe_prompts": len(safe), "rows": {
            "compliant_answer_tokens": len(harm_states), "refusal_tokens": len(refusal_states),
            "safe_answer_tokens": len(safe_states), "train_prompts": int((df["split"] == "train").sum())},
            "refusals_used": len(refusal_texts), "split": "train"},
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

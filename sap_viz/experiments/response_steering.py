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

from dataclasses import asdict, dataclass

import torch

from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.responses import AnswerConfig, answer_ids_for, assign_refusals, generate_answers, load_refusals, response_states
from sap_viz.experiments.pipeline import rescale_violations
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.training import TrainConfig, train_polytope
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import LoadedModel


@dataclass(frozen=True)
class SteeringPartConfig:
    layer: int = 16
    prompts_per_label: int = 240  # harmful and safe train prompts whose answers are used
    n_tokens: int = 16  # answer tokens per pair
    epochs: int = 8
    seed: int = 0


def refusal_halves() -> tuple[list[str], list[str]]:
    """(refusals for steering, refusals kept for the judge)."""
    refusals = load_refusals()
    half = len(refusals) // 2
    return refusals[:half], refusals[half:]


def steering_prompts(df, n: int, seed: int) -> tuple[list[str], list[str]]:
    train = df[df["split"] == "train"]
    harmful = train[train["label"] == "unsafe"]
    safe = train[train["label"] == "safe"]
    return (harmful.sample(min(n, len(harmful)), random_state=seed)["text"].tolist(),
            safe.sample(min(n, len(safe)), random_state=seed)["text"].tolist())


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
    train = df[df["split"] == "train"]
    prompt_states = extract_features(lm, train["text"].tolist(), FeatureConfig(layer=cfg.layer, max_tokens=256), progress=progress)
    x = torch.cat([harm_states, refusal_states, safe_states, prompt_states])
    n_safe = len(refusal_states) + len(safe_states)
    unsafe = torch.cat([torch.ones(len(harm_states), dtype=torch.bool), torch.zeros(n_safe, dtype=torch.bool),
                        torch.tensor((train["label"] == "unsafe").to_numpy())])
    tcfg = TrainConfig(epochs=cfg.epochs, seed=42 + cfg.seed)
    poly = train_polytope(x, unsafe, tcfg, show_tqdm=progress).polytope
    scale = rescale_violations(poly, x, unsafe)
    direction = refusal_states.mean(0) - harm_states.mean(0)
    meta = {
        "role": "steering part: response-aware polytope + refusal direction (method/directional_steering.py)",
        "model": {"id": lm.model_id, "fingerprint": lm.fingerprint, "hidden_size": lm.hidden_size, "num_layers": lm.num_layers},
        "layer": cfg.layer, "position": "last", "chat_template": True, "max_tokens": 256,
        "train_config": asdict(tcfg), "steering_config": asdict(cfg), "answer_config": asdict(answer_cfg),
        "data": {"harmful_prompts": len(harmful), "safe_prompts": len(safe), "rows": {
            "compliant_answer_tokens": len(harm_states), "refusal_tokens": len(refusal_states),
            "safe_answer_tokens": len(safe_states), "train_prompts": len(prompt_states)},
            "refusals_used": len(refusal_texts), "split": "train"},
        "metrics": {"violation_scale": scale, "direction_norm": round(float(direction.norm()), 3),
                    "mean_state_norm": round(float(harm_states.norm(dim=1).mean()), 3)},
    }
    return poly, direction, meta

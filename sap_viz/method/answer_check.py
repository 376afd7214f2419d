"""The answer check: is the text the model wrote harmful? Read from the answer's own tokens.

Why a separate check: the detection polytope judges *requests*, and after steering the states it
reads are the edited ones, inside by construction. Whether steering worked shows only in the answer.
This check re-reads the finished answer teacher-forced after the chat-formatted prompt, with no
hook attached, so it sees the text the model wrote, not the states steering moved, and scores every
answer token's block-``layer`` state with a linear probe (standardised logistic regression) trained
on answers: the model's own compliant answers to harmful training prompts and written complying
answers (harmful) against written refusals, refusing answers and the model's answers to safe prompts
(harmless). The answer's score is the mean token logit; it is flagged at or above ``threshold``,
chosen on validation answers (``recipe/answer_check_fit.py``). The token logits are the answer
rows of the app's heatmap.

Stored in a polytope's ``steering/`` folder as ``answer_check.safetensors`` + ``answer_check.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sap_viz.errors import AnswerCheckFileError, UserError
from sap_viz.files import save_tensors_atomic, write_json_atomic
from sap_viz.method.safe_files import read_json, read_tensors  # the same hostile-file checks as a polytope
from sap_viz.model.features import hidden_states_at
from sap_viz.model.loading import LoadedModel

CHECK_TENSORS = "answer_check.safetensors"
CHECK_META = "answer_check.json"


@dataclass
class AnswerCheck:
    layer: int
    mean: torch.Tensor  # d
    scale: torch.Tensor  # d
    weight: torch.Tensor  # d
    bias: float
    threshold: float  # on the answer score (mean token logit)
    meta: dict = field(default_factory=dict)

    def token_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Per answer token (T × d → T): the probe's logit; > 0 leans harmful."""
        z = (states.float().to(self.mean.device) - self.mean) / self.scale
        return z @ self.weight + self.bias

    def answer_score(self, states: torch.Tensor) -> float | None:
        """Mean token logit over the answer (None for an empty answer)."""
        return float(self.token_logits(states).mean()) if len(states) else None

    def flags(self, score: float | None) -> bool:
        return score is not None and score >= self.threshold

    def describe(self) -> dict:
        return {"layer": self.layer, "threshold": round(self.threshold, 4), **self.meta}

    # -- files -----------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        tensors = {"mean": self.mean, "scale": self.scale, "weight": self.weight}
        save_tensors_atomic(directory / CHECK_TENSORS, {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()})
        write_json_atomic(directory / CHECK_META, {"layer": self.layer, "bias": self.bias, "threshold": self.threshold, **self.meta})

    @classmethod
    def load(cls, directory: str | Path, hidden_size: int | None, num_layers: int | None) -> AnswerCheck | None:
        """The check in ``directory``, None when it has none; AnswerCheckFileError when it is malformed."""

        directory = Path(directory)
        if not (directory / CHECK_META).exists() and not (directory / CHECK_TENSORS).exists():
            return None
        meta = read_json(directory / CHECK_META)
        tensors = read_tensors(directory / CHECK_TENSORS)
        where = directory / CHECK_META
        if not isinstance(meta, dict):
            raise AnswerCheckFileError(f"{where} must hold an object")
        layer, bias, threshold = meta.get("layer"), meta.get("bias"), meta.get("threshold")
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0 or (num_layers is not None and layer >= num_layers):
            raise AnswerCheckFileError(f"{where}: 'layer' must be a block index of the model, got {layer!r}")
        for name, value in (("bias", bias), ("threshold", threshold)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise AnswerCheckFileError(f"{where}: '{name}' must be a finite number, got {value!r}")
        parts = {}
        for name in ("mean", "scale", "weight"):
            t = tensors.get(name)
            if t is None or t.dim() != 1 or (hidden_size is not None and len(t) != hidden_size) or not torch.isfinite(t).all():
                raise AnswerCheckFileError(f"{directory / CHECK_TENSORS} must hold a finite 1-D '{name}' of the model's width")
            parts[name] = t.float()
        if not (parts["scale"] > 0).all() or len({len(t) for t in parts.values()}) != 1:
            raise AnswerCheckFileError(f"{directory / CHECK_TENSORS}: 'scale' must be positive and all tensors the same length")
        extra = {k: v for k, v in meta.items() if k not in ("layer", "bias", "threshold")}
        return cls(layer, parts["mean"], parts["scale"], parts["weight"], float(bias), float(threshold), extra)


@torch.no_grad()
def answer_states(lm: LoadedModel, prompt_ids: list[list[int]], answer_ids: list[list[int]], layer: int,
                  batch_size: int = 16) -> list[torch.Tensor]:
    """Block-``layer`` states at each answer's tokens (len(answer) × d), teacher-forced after its prompt, no hooks.

    Position j is read where the model has just read answer token j (as in ``data.responses.response_states``).
    """
    sequences = [list(p) + list(a) for p, a in zip(prompt_ids, answer_ids, strict=True)]
    states = hidden_states_at(lm, sequences, layer, batch_size) if sequences else []
    return [s[len(p):len(p) + len(a)] for s, p, a in zip(states, prompt_ids, answer_ids, strict=True)]


def fit_answer_check(harmful: list[torch.Tensor], harmless: list[torch.Tensor], layer: int, c: float = 0.05,
                     seed: int = 0) -> AnswerCheck:
    """A probe on token states of answers (lists of T × d), each answer weighing the same whatever its length.

    The threshold is left at 0 here; ``calibrate`` sets it on validation answers.
    """
    from sklearn.linear_model import LogisticRegression

    x = torch.cat(harmful + harmless).float().numpy()
    y = np.r_[np.ones(sum(len(s) for s in harmful)), np.zeros(sum(len(s) for s in harmless))]
    weight = np.concatenate([np.full(len(s), 1.0 / max(1, len(s))) for s in harmful + harmless])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
    model.fit((x - mean) / scale, y, sample_weight=weight * len(weight) / weight.sum())
    meta = {"trained_on": {"harmful_answers": len(harmful), "harmless_answers": len(harmless)}, "c": c}
    return AnswerCheck(layer, torch.tensor(mean), torch.tensor(scale), torch.tensor(model.coef_[0], dtype=torch.float32),
                       float(model.intercept_[0]), 0.0, meta)


def calibrate(check: AnswerCheck, harmless_scores: list[float], max_false_alarms: float) -> float:
    """The lowest threshold with at most ``max_false_alarms`` of the harmless validation answers at or above it."""
    ranked = sorted((s for s in harmless_scores if s is not None), reverse=True)
    if not ranked:
        raise UserError("no harmless validation answers to calibrate on")
    allowed = int(math.floor(max_false_alarms * len(ranked)))
    check.threshold = float(ranked[allowed]) + 1e-6 if allowed < len(ranked) else float(ranked[-1])
    return check.threshold

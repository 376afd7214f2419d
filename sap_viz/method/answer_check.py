"""The answer check: is the text the model wrote harmful? Read from the answer's own tokens, as they are written.

Why a separate check: the detection polytope judges *requests*, and after steering the states it
reads are the edited ones, inside by construction. Whether steering worked shows only in the answer.
The check scores each answer token's block-``layer`` state with a linear probe (standardised logistic
regression) trained on answers (``recipe/answer_check_fit.py``). It reads the states the generation already
computes (``answer_reader.py``): a block's output at a new token depends only on the tokens, never on edits made at
that block or above, so at a layer no deeper than the steering's it reads exactly what a fresh re-read would.
It sees each answer token once the model has read it back, so the last token written is never scored.

The evidence rule: the check fires at the first token where the mean token logit over the last ``window`` tokens
reaches ``threshold`` (``window`` None: the running mean over the whole answer, once ``MIN_TOKENS`` are read); an
answer shorter than the window is judged on its mean when it ends. Needing several tokens of evidence is what lets
a streaming check keep its false alarms low. The answer's score is the highest value the rule reaches
(:func:`rule_score`); the token logits are the answer rows of the app's heatmap.

Stored in a polytope's ``steering/`` folder as ``answer_check.safetensors`` + ``answer_check.json``. A file without
a ``window`` (written before the rule existed) is read as "the mean over the finished answer", as it was calibrated.
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
#: With ``window`` None, the running mean is judged once at least this many answer tokens are read.
MIN_TOKENS = 8
#: ``rule`` of a check file written before the streaming rule: the mean over the finished answer, judged at its end.
WHOLE_ANSWER = "whole answer"
WINDOW = "window"
RUNNING_MEAN = "running mean"


def rule_score(logits, window: int | None, rule: str = WINDOW) -> float | None:
    """The highest value the evidence rule reaches over these token logits (it fires when this reaches the boundary).

    ``rule`` WINDOW: the highest mean over ``window`` consecutive tokens (the mean, for fewer tokens); RUNNING_MEAN:
    the highest running mean from ``MIN_TOKENS`` tokens on; WHOLE_ANSWER: the mean. None for no tokens.
    """
    x = np.asarray(logits, dtype=np.float64)
    n = len(x)
    if n == 0:
        return None
    if rule == WHOLE_ANSWER:
        return float(x.mean())
    if rule == RUNNING_MEAN:
        if n <= MIN_TOKENS:
            return float(x.mean())
        return float((np.cumsum(x) / np.arange(1, n + 1))[MIN_TOKENS - 1:].max())
    if window is None or n < window:
        return float(x.mean())
    c = np.concatenate([[0.0], np.cumsum(x)])
    return float(((c[window:] - c[:-window]) / window).max())


def fires_now(logits, window: int | None, rule: str, threshold: float) -> bool:
    """Whether the rule fires on the token just read (the last of ``logits``), judging only evidence it has in full:
    a window of ``window`` tokens, or a running mean over at least ``MIN_TOKENS``. Short answers are judged at the end."""
    n = len(logits)
    if rule == WINDOW and window is not None and n >= window:
        return float(np.mean(logits[n - window:])) >= threshold
    if rule == RUNNING_MEAN and n >= MIN_TOKENS:
        return float(np.mean(logits)) >= threshold
    return False


@dataclass
class AnswerCheck:
    layer: int
    mean: torch.Tensor  # d
    scale: torch.Tensor  # d
    weight: torch.Tensor  # d
    bias: float
    threshold: float  # on the answer score (``rule_score``)
    meta: dict = field(default_factory=dict)
    window: int | None = None  # tokens of evidence the rule needs (WINDOW); None with RUNNING_MEAN / WHOLE_ANSWER
    rule: str = WHOLE_ANSWER

    def token_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Per answer token (T × d → T): the probe's logit; > 0 leans harmful."""
        z = (states.float().to(self.mean.device) - self.mean) / self.scale
        return z @ self.weight + self.bias

    def answer_score(self, states: torch.Tensor) -> float | None:
        """The rule's score over these answer-token states (None for an empty answer)."""
        return self.score_logits(self.token_logits(states).tolist()) if len(states) else None

    def score_logits(self, logits) -> float | None:
        return rule_score(logits, self.window, self.rule)

    def fires_now(self, logits) -> bool:
        return fires_now(logits, self.window, self.rule, self.threshold)

    def fired_at(self, logits) -> int | None:
        """The answer token at which the rule fires over a finished answer's logits: the first in-stream firing, else
        the last token when the answer ended short of the evidence the rule needs and its mean reaches the boundary."""
        for n in range(1, len(logits) + 1):
            if self.fires_now(logits[:n]):
                return n - 1
        if logits and self.flags(self.score_logits(logits)):
            return len(logits) - 1
        return None

    def flags(self, score: float | None) -> bool:
        return score is not None and score >= self.threshold

    def describe(self) -> dict:
        return {"layer": self.layer, "threshold": round(self.threshold, 4), "rule": self.rule, "window": self.window, **self.meta}

    @property
    def rule_words(self) -> str:
        if self.rule == WINDOW:
            return f"the mean over any {self.window} answer tokens in a row"
        if self.rule == RUNNING_MEAN:
            return f"the running mean over the answer (from {MIN_TOKENS} tokens on)"
        return "the mean over the finished answer"

    # -- files -----------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        tensors = {"mean": self.mean, "scale": self.scale, "weight": self.weight}
        save_tensors_atomic(directory / CHECK_TENSORS, {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()})
        write_json_atomic(directory / CHECK_META, {"layer": self.layer, "bias": self.bias, "threshold": self.threshold,
                                                   "rule": self.rule, "window": self.window, **self.meta})

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
        rule, window = meta.get("rule", WHOLE_ANSWER), meta.get("window")
        if rule not in (WINDOW, RUNNING_MEAN, WHOLE_ANSWER):
            raise AnswerCheckFileError(f"{where}: 'rule' must be one of {WINDOW!r}, {RUNNING_MEAN!r}, {WHOLE_ANSWER!r}, got {rule!r}")
        if rule == WINDOW and (not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 512):
            raise AnswerCheckFileError(f"{where}: 'window' must be a whole number of tokens from 1 to 512, got {window!r}")
        extra = {k: v for k, v in meta.items() if k not in ("layer", "bias", "threshold", "rule", "window")}
        return cls(layer, parts["mean"], parts["scale"], parts["weight"], float(bias), float(threshold), extra,
                   window if rule == WINDOW else None, rule)


@torch.no_grad()
def answer_states(lm: LoadedModel, prompt_ids: list[list[int]], answer_ids: list[list[int]], layer: int,
                  batch_size: int = 16) -> list[torch.Tensor]:
    """Block-``layer`` states at the answer tokens generation reads ((len(answer) − 1) × d), teacher-forced after
    the prompt, no hooks: position j is read where the model has just read answer token j; the last token written is
    never read back, so it has none (``answer_reader.py`` reads the same states while generating)."""
    sequences = [list(p) + list(a) for p, a in zip(prompt_ids, answer_ids, strict=True)]
    states = hidden_states_at(lm, sequences, layer, batch_size) if sequences else []
    return [s[len(p):len(p) + max(0, len(a) - 1)] for s, p, a in zip(states, prompt_ids, answer_ids, strict=True)]


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

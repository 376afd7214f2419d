"""Looking at prompts through a polytope under the model lock: scores, per-token violations, attribution, trajectory."""

from __future__ import annotations

import threading

import torch

from sap_viz.analysis.attribution import WINDOW, word_masking
from sap_viz.analysis.feature_map import token_states
from sap_viz.app_state.prompt_checks import CheckedPrompt, InputChecks
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.scoring import PromptScores, prompt_scores
from sap_viz.model.features import hidden_states_at
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import encode_prompt


class Inspector:
    """Checked, locked forward passes on one shared model; the polytope comes with each call."""

    def __init__(self, lm: LoadedModel, lock: threading.Lock, checks: InputChecks):
        self.lm = lm
        self.lock = lock
        self.checks = checks

    def score(self, art: PolytopeArtifact, texts: list[str]) -> PromptScores:
        """What the prompt verdict reads for each text (``PromptScores.verdicts`` decides, as everywhere)."""
        texts = self.checks.check_texts(texts)
        with self.lock:
            return prompt_scores(self.lm, art, texts)

    def truncated(self, art: PolytopeArtifact, texts: list[str]) -> list[bool]:
        """Which texts ``score`` cuts to the polytope's token budget (its training-time ``max_tokens``)."""
        budget = int(art.meta["max_tokens"])
        return [encode_prompt(self.lm.tokenizer, t, art.chat_template, budget).truncated for t in self.checks.check_texts(texts)]

    def prompt_tokens(self, art: PolytopeArtifact, prompt: str) -> tuple[list[str], list[int], torch.Tensor, CheckedPrompt]:
        """(token texts, token ids, T × K violations, the checked prompt) of the formatted prompt, as monitoring sees it.

        The budget is the polytope's training-time ``max_tokens`` (what ``score`` uses), capped by the prompt limit.
        """
        checked = self.checks.check_prompt(art, prompt, min(int(art.meta["max_tokens"]), self.checks.limits.max_prompt_tokens))
        enc = checked.encoded
        with self.lock:
            hidden = hidden_states_at(self.lm, [enc.ids], art.layer)[0]
        with torch.no_grad():
            viol = art.polytope.violations(art.token_inputs(hidden, enc.text_span))
        return [self.lm.tokenizer.decode([t]) for t in enc.ids], enc.ids, viol, checked

    def attribution(self, art: PolytopeArtifact, prompt: str, window: int = WINDOW):
        text = self.checks.check_prompt(art, prompt).text
        with self.lock:
            try:
                return word_masking(self.lm, art, text, window)
            except ValueError as exc:
                raise WorkbenchError(str(exc)) from None

    def trajectory(self, art: PolytopeArtifact, token_ids: list[int], span: tuple[int, int]) -> torch.Tensor:
        with self.lock:
            return token_states(self.lm, art, token_ids, span)

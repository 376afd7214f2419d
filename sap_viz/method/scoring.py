"""Scoring texts with a polytope: the one path from text to facet violations outside generation.

It uses the polytope's own feature settings (layer, chat template, token budget), so a score here
is exactly what the monitoring hook sees at the prompt's last token (at the polytope's position).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sap_viz.errors import SettingsError
from sap_viz.method.answer_check import answer_states
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.verdict import Verdict, VerdictBoundary, prompt_verdict
from sap_viz.model.features import extract_features, hidden_states_at
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import encode_prompt


def score_texts(lm: LoadedModel, art: PolytopeArtifact, texts: list[str], progress: bool = False, batch_size: int = 16) -> torch.Tensor:
    """N × K violations for texts under the polytope's own feature settings."""
    feats = extract_features(lm, texts, art.feature_config(batch_size), use_cache=False, progress=progress)
    return art.polytope.violations_cpu(feats)  # type: ignore[arg-type]


@dataclass
class PromptScores:
    """What the prompt verdict reads, per text: the last token's K violations and the peak over the user's text."""

    last: torch.Tensor  # N × K violations at the prompt's last token (what ``score_texts`` gives)
    span_peak: list[float | None]  # highest violation over the user's own tokens (None: no user tokens)
    truncated: list[bool]  # texts cut to the polytope's token budget
    inputs: torch.Tensor | None = None  # N × D polytope inputs at the last token (the pooled features), when kept

    def verdicts(self, boundary: VerdictBoundary) -> list[Verdict]:
        return [prompt_verdict(float(v.max()), peak, boundary) for v, peak in zip(self.last, self.span_peak, strict=True)]


def prompt_scores(lm: LoadedModel, art: PolytopeArtifact, texts: list[str], progress: bool = False,
                  batch_size: int = 16, keep_inputs: bool = False) -> PromptScores:
    """Per text, the readings of the prompt verdict under the polytope's own settings: every token of the formatted
    prompt through the polytope (as the monitoring hook sees the prefill), not only the pooled last position."""
    enc = [encode_prompt(lm.tokenizer, t, art.chat_template, int(art.meta["max_tokens"])) for t in texts]
    hidden = hidden_states_at(lm, [e.ids for e in enc], art.layer, batch_size=batch_size,
                              progress="prompt states" if progress else False)
    last, peaks, inputs = [], [], []
    device = art.polytope.phi.device
    for e, h in zip(enc, hidden, strict=True):
        x = art.token_inputs(h, e.text_span)
        with torch.no_grad():
            viol = art.polytope.violations(x.to(device)).cpu()
        start, end = e.text_span
        last.append(viol[-1])
        peaks.append(float(viol[start:end].max()) if end > start else None)
        if keep_inputs:
            inputs.append(x[-1].cpu())
    k = art.polytope.num_facets
    return PromptScores(torch.stack(last) if last else torch.zeros(0, k), peaks, [e.truncated for e in enc],
                        torch.stack(inputs) if inputs else None)


def prompt_verdicts(lm: LoadedModel, art: PolytopeArtifact, texts: list[str], progress: bool = False,
                    batch_size: int = 16) -> list[Verdict]:
    """The one prompt verdict (``method/verdict.py``) for each text, at the polytope's boundary: what ``sap-viz score``,
    the server, the app and generation all decide for the same prompt."""
    return prompt_scores(lm, art, texts, progress, batch_size).verdicts(art.verdict_boundary)


@dataclass(frozen=True)
class AnswerVerdict:
    """The answer side of the verdict for one (prompt, response) pair: did the answer check fire, where, on what score."""

    flagged: bool
    score: float | None  # the evidence rule's highest value (None: an empty response)
    threshold: float
    fired_at: int | None  # the response token (0-based) whose reading fired the check
    tokens_read: int

    def to_json(self) -> dict:
        return {"flagged": self.flagged, "score": None if self.score is None else round(self.score, 5),
                "threshold": round(self.threshold, 5), "fired_at": self.fired_at, "tokens_read": self.tokens_read}


def answer_verdicts(lm: LoadedModel, art: PolytopeArtifact, prompts: list[str], responses: list[str],
                    batch_size: int = 16) -> list[AnswerVerdict]:
    """The answer check on (prompt, response) pairs, as guard models classify a conversation turn.

    Each response is read teacher-forced after its chat-formatted prompt and ends with the end-of-text token, so every
    one of its tokens is read back and judged exactly as while generating (``method/answer_reader.py``).
    """
    check = art.steering.answer_check if art.steering is not None else None
    if check is None:
        raise SettingsError("this polytope has no answer check (it comes with a steering part: sap-viz train-steering), "
                            "so responses cannot be judged")
    if len(prompts) != len(responses):
        raise ValueError("one response per prompt")
    prompt_ids = [encode_prompt(lm.tokenizer, p, art.chat_template, int(art.meta["max_tokens"])).ids for p in prompts]
    end = lm.eos_ids[:1]
    answer_ids = [list(lm.tokenizer(r, add_special_tokens=False)["input_ids"]) + end if r.strip() else [] for r in responses]
    states = answer_states(lm, prompt_ids, answer_ids, check.layer, batch_size)
    out = []
    for s in states:
        logits = check.token_logits(s).tolist() if len(s) else []
        fired = check.fired_at(logits)
        out.append(AnswerVerdict(fired is not None, check.score_logits(logits), check.threshold, fired, len(logits)))
    return out

"""``POST /v1/moderations``: OpenAI's moderation answer (``flagged``, ``categories``, ``category_scores``) from the one verdict.

Why here and this way: clients that want a verdict without a generation call OpenAI's moderation API
(``client.moderations.create``, LiteLLM); the polytope's policy facets are categories with scores. ``flagged`` is
the prompt verdict of ``sap-viz score`` (``prompt_scores(...).verdicts(art.verdict_boundary)``), never a second rule.
A category is true only when a facet tied to it fires (its violation at the last token reaches the verdict's
last-token boundary) *and* the facet's name is measured to fit that category on the check set
(``analysis.verdict.fitting_category``); a flag no such facet explains (the backstop alone, a facet whose name
does not fit, the span check) sets no category and says why under ``sap``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sap_viz.analysis.report import name_verdict
from sap_viz.analysis.verdict import fitting_category
from sap_viz.data.taxonomy import POLICY_CATEGORIES
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.scoring import PromptScores
from sap_viz.method.verdict import BY_LAST, BY_SPAN, Verdict
from sap_viz.model.prompts import clean_text
from sap_viz.serve.errors import ApiError, bad_request
from sap_viz.serve.schemas import check_body
from sap_viz.settings import Limits, env_name

#: OpenAI's moderation category keys (``openai.types.moderation.Categories``) and the taxonomy categories whose
#: facets stand for each (``data/taxonomy.py``). A key with none is always false with score 0: no facet measures it.
OPENAI_CATEGORIES: dict[str, tuple[str, ...]] = {
    "harassment": ("hate_harassment",),
    "harassment/threatening": (),
    "hate": ("hate_harassment",),
    "hate/threatening": (),
    "illicit": ("illegal_goods_crime", "violence_weapons"),
    "illicit/violent": ("violence_weapons",),
    "self-harm": ("self_harm",),
    "self-harm/intent": (),
    "self-harm/instructions": (),
    "sexual": ("sexual",),
    "sexual/minors": (),
    "violence": ("violence_weapons",),
    "violence/graphic": (),
}
#: Our categories with no OpenAI key: reported only under ``sap.categories``.
SAP_ONLY = tuple(c for c in POLICY_CATEGORIES if not any(c in ours for ours in OPENAI_CATEGORIES.values()))
#: category score = 1 / (1 + exp(−(violation − boundary.last) / SCORE_SCALE)): 0.5 at the boundary, about 0.73 one
#: scale unit outside it, 0.27 one unit inside. The shipped polytope's last-token violations run from about −4 on
#: ordinary questions to +2 on plain harmful requests, so 0.25 keeps scores near the boundary apart.
SCORE_SCALE = 0.25
KNOWN = {"input", "model"}


@dataclass(frozen=True)
class ModerationRequest:
    texts: tuple[str, ...]
    notices: tuple[tuple[str, ...], ...]  # per text: what cleaning changed


def parse_moderation_request(body: Any, served_model: str, limits: Limits) -> ModerationRequest:
    """Check a parsed JSON body (bounded like the app's score endpoint); raises ApiError naming the field."""
    body = check_body(body, KNOWN)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("model must be text: the id GET /v1/models lists, or omitted", "model", "invalid_type")
    if model is not None and model != served_model:
        raise ApiError(404, f"The model '{model}' does not exist on this server; it serves '{served_model}'", "model", "model_not_found")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise bad_request("input must be a string or a non-empty list of strings", "input")
    if len(texts) > limits.max_score_texts:
        raise bad_request(f"at most {limits.max_score_texts} inputs per request ({env_name('max_score_texts')}), got {len(texts)}",
                          "input", "invalid_value")
    cleaned, notices = [], []
    for i, text in enumerate(texts):
        where = "input" if isinstance(raw, str) else f"input[{i}]"
        if not isinstance(text, str):
            kind = text.get("type") if isinstance(text, dict) else type(text).__name__
            raise bad_request(f"{where} is {kind!r}: only text inputs are supported", where, "invalid_type")
        if len(text) > limits.max_text_chars:
            raise bad_request(f"{where} has {len(text):,} characters; the limit is {limits.max_text_chars:,} "
                              f"({env_name('max_text_chars')})", where, "context_length_exceeded")
        clean = clean_text(text)
        if not clean.strip():
            raise bad_request(f"{where} is empty" + (" (it held only control characters)" if text.strip() else ""), where)
        cleaned.append(clean)
        notices.append(("Control characters or invalid Unicode were removed from the input.",) if clean != text else ())
    return ModerationRequest(tuple(cleaned), tuple(notices))


def category_score(violation: float, boundary: float) -> float:
    """The logistic of (violation − boundary) / SCORE_SCALE, in [0, 1], 0.5 at the boundary (stable for any size)."""
    z = (violation - boundary) / SCORE_SCALE
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-min(z, 700.0)))
    e = math.exp(max(z, -700.0))
    return e / (1.0 + e)


def _card(facet: object) -> dict:
    card = facet.get("scorecard") if isinstance(facet, dict) else None
    return card if isinstance(card, dict) else {}


def backstop_facets(art: PolytopeArtifact) -> set[int]:
    """The backstop facets of a policy-facet polytope: the free facets after the category facets (``facet_mode`` categories)."""
    tc = art.meta.get("train_config") or {}
    free = tc.get("free_facets") if tc.get("facet_mode") == "categories" else 0
    k = art.polytope.num_facets
    return set(range(k - free, k)) if isinstance(free, int) and 0 < free < k else set()


class Moderator:
    """The moderation answers of one polytope: its facets' categories (fixed per request: labels may change on disk)."""

    def __init__(self, art: PolytopeArtifact):
        self.art = art
        self.boundary = art.verdict_boundary
        self.backstop = backstop_facets(art)
        facets = art.facets
        self.claimed = [_card(f).get("category") or (f.get("category") if isinstance(f, dict) else None) for f in facets]
        self.fits = [fitting_category(f) for f in facets]  # the category a facet counts for, when its name fits
        self.name_scores = [_card(f).get("name_score") for f in facets]

    def results(self, scores: PromptScores, notices: tuple[tuple[str, ...], ...]) -> list[dict]:
        verdicts = scores.verdicts(self.boundary)  # exactly sap-viz score's verdict
        return [self.result([float(x) for x in last], verdict, truncated, notes)
                for last, verdict, truncated, notes in zip(scores.last, verdicts, scores.truncated, notices, strict=True)]

    def result(self, values: list[float], verdict: Verdict, truncated: bool, notices: tuple[str, ...]) -> dict:
        """One input's OpenAI moderation object with the ``sap`` report beside it."""
        b = self.boundary.last
        fires = [v >= b for v in values]
        ours: dict[str, dict] = {}
        for cat in POLICY_CATEGORIES:
            ks = [k for k, c in enumerate(self.fits) if c == cat and k < len(values)]
            top = max((values[k] for k in ks), default=None)
            ours[cat] = {"flagged": any(fires[k] for k in ks), "score": None if top is None else category_score(top, b),
                         "facets": ks, "openai": [key for key, cats in OPENAI_CATEGORIES.items() if cat in cats]}
        categories = {key: any(ours[c]["flagged"] for c in cats) for key, cats in OPENAI_CATEGORIES.items()}
        category_scores = {key: max((ours[c]["score"] or 0.0 for c in cats), default=0.0) for key, cats in OPENAI_CATEGORIES.items()}
        firing = [k for k, f in enumerate(fires) if f]
        backstop_only = verdict.flagged and bool(firing) and set(firing) <= self.backstop
        facets = [{"index": k, "name": self.art.facet_name(k), "value": round(v, 5), "fires": fires[k],
                   "category": self.claimed[k] if k < len(self.claimed) else None,
                   "name_fits": k < len(self.fits) and self.fits[k] is not None, "backstop": k in self.backstop}
                  for k, v in enumerate(values)]
        return {
            "flagged": verdict.flagged,
            "categories": categories,
            "category_scores": category_scores,
            "category_applied_input_types": {key: ["text"] for key in OPENAI_CATEGORIES},
            "sap": {"verdict": verdict.to_json(), "reason": self.reason(values, verdict, firing), "backstop_only": backstop_only,
                    "facets": facets, "categories": ours, "score_scale": SCORE_SCALE, "truncated": truncated,
                    "notices": list(notices)},
        }

    def reason(self, values: list[float], verdict: Verdict, firing: list[int]) -> str:
        """The verdict in words: which facets fire and whether their names fit, or why no category is set."""
        b = self.boundary
        top = max(range(len(values)), key=lambda k: values[k])
        if not verdict.flagged:
            return (f"not flagged: no facet reaches the boundary {b.last:.3g} at the last token (highest: facet {top} "
                    f"'{self.art.facet_name(top)}' at {values[top]:+.3f})" + ("; borderline" if verdict.borderline else ""))
        parts = []
        if BY_LAST in verdict.by:
            named = [k for k in firing if self.fits[k] is not None]
            unfit = [k for k in firing if self.fits[k] is None and k not in self.backstop]
            words = ", ".join(f"facet {k} '{self.art.facet_name(k)}' {values[k]:+.3f}" for k in firing)
            parts.append(f"at the last token {words} reach{'es' if len(firing) == 1 else ''} the boundary {b.last:.3g}")
            if named:
                parts.append("categories: " + ", ".join(sorted({str(self.fits[k]) for k in named})))
            if unfit:
                parts.append("no category from " + ", ".join(f"facet {k} ({self._name_words(k)})" for k in unfit))
            if firing and set(firing) <= self.backstop:
                parts.append("only the backstop fires: unsafe, but no single category")
        if BY_SPAN in verdict.by:
            parts.append(f"a token of the text reaches {verdict.span_peak:+.3f} on the span check (boundary {b.span:.3g}), "
                         "which names no category")
        return "flagged: " + "; ".join(parts)

    def _name_words(self, k: int) -> str:
        score = self.name_scores[k]
        if not isinstance(score, (int, float)):
            return "its name is not checked on the check set"
        return f"its name score {score:.2f} on the check set: {name_verdict(float(score))}"

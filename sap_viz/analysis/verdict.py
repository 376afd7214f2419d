"""The verdict of one generation in one plain sentence, before any score, margin or threshold.

Why a category is named only sometimes: a facet's name is a claim ("this facet is about weapons"),
and the check-set scorecard measures it (``policy_scorecard``; the name score is a balanced accuracy).
The sentence names the category of the facet that fires hardest only when that name is measured to
fit (``report.name_verdict`` says "fits", name score ≥ ``NAME_FITS``); otherwise it says that no single
category explains the flag rather than repeat a name that the check set does not back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sap_viz.analysis.report import name_verdict
from sap_viz.method.generation_results import GenerationResult

#: Plain words for the taxonomy's categories (``data.taxonomy.TAXONOMY``).
CATEGORY_WORDS = {
    "cyber": "cyber attacks", "violence_weapons": "violence and weapons", "chem_bio": "chemical and biological weapons",
    "illegal_goods_crime": "illegal goods and crime", "fraud_deception": "fraud and deception",
    "hate_harassment": "hate and harassment", "sexual": "sexual content", "self_harm": "self-harm",
    "misinformation": "misinformation", "privacy": "privacy violations",
}
NO_SINGLE_CATEGORY = "no single category explains the flag"


def category_words(category: str) -> str:
    return CATEGORY_WORDS.get(category, category.replace("_", " "))


def fitting_category(facet: dict | None) -> str | None:
    """The category a facet's name claims, if its check-set name score says the name fits; else None."""
    if not isinstance(facet, dict):
        return None
    card = facet.get("scorecard")
    if not isinstance(card, dict):
        return None
    category = card.get("category")
    score = card.get("name_score")
    if not category or not isinstance(score, (int, float)) or name_verdict(float(score)) != "fits":
        return None
    return str(category)


BORDERLINE = ("Borderline: this request scores close to the boundary, in the band where ordinary prompts are flagged "
              "between 1 in 10 and 1 in 50 times.")


@dataclass
class PlainVerdict:
    flagged: bool
    sentence: str  # the one plain sentence the verdict leads with
    firing: list[int]  # facets over the boundary at the position that decided the flag
    top_facet: int | None
    category: str | None  # named only when the top facet's name is measured to fit it
    borderline: bool = False  # inside the verdict's borderline band (``method/verdict.py``), either side of the boundary


def deciding_position(result: GenerationResult) -> int | None:
    """The prompt position that decided the flag: the last prompt token, or the peak of the user's text when only the span check fired."""
    if not result.prompt_len:
        return None
    last = result.prompt_len - 1
    if result.flag_reason != "prompt span":
        return last
    start, end = result.text_span
    scored = [i for i in range(start, end) if result.tokens[i].max_violation is not None]
    return max(scored, key=lambda i: result.tokens[i].max_violation) if scored else last


def plain_verdict(result: GenerationResult, facets: list[dict]) -> PlainVerdict:
    """"Flagged: this request is most like weapons; 2 facets fire." or "Not flagged: no facet fires on this request."."""
    pos = deciding_position(result)
    token = result.tokens[pos] if pos is not None else None
    if token is None or token.violations is None:
        return PlainVerdict(False, "Not checked: the request's facet values were not computed.", [], None, None)
    verdict = result.verdict
    borderline = bool(verdict is not None and verdict.borderline)
    band_words = " " + _band_sentence(verdict) if borderline else ""
    if not result.prompt_flagged:
        return PlainVerdict(False, "Not flagged: no facet fires on this request." + band_words, [], token.top_facet, None, borderline)
    verdict_boundary = result.verdict.boundary  # the one verdict's (method/verdict.py), not steering's
    boundary = verdict_boundary.span if result.flag_reason == "prompt span" else verdict_boundary.last
    firing = [k for k, v in enumerate(token.violations) if v >= boundary] or [token.top_facet or 0]
    top = max(firing, key=lambda k: token.violations[k])
    category = fitting_category(facets[top] if top < len(facets) else None)
    count = f"{len(firing)} facet{'s' if len(firing) != 1 else ''} fire{'s' if len(firing) == 1 else ''}"
    head = f"this request is most like {category_words(category)}" if category else NO_SINGLE_CATEGORY
    return PlainVerdict(True, f"Flagged: {head}; {count}." + band_words, firing, top, category, borderline)


def _band_sentence(verdict) -> str:
    """The borderline sentence, with the band's rates from the boundary when it was set on a control set."""
    boundary = verdict.boundary
    if boundary.source != "control set" or boundary.band is None:
        return "Borderline: this request scores close to the boundary."
    return BORDERLINE


def answer_outcome(result: GenerationResult) -> str:
    """What the intervention did to the answer, in words."""
    if result.mode == "monitor":
        return "Monitor only: the answer is the model's own, unchanged."
    if result.fallback:
        return "Safe Flow steered the answer, but it still read as harmful, so a refusal was given instead."
    if result.refused:
        return "The answer was replaced by a refusal."
    if result.interventions:
        return "Safe Flow steered the answer back inside the polytope."
    return "Nothing was changed: the answer is the model's own."

"""The words of a verdict: the categories' plain names, and when a facet's name may be repeated as a category.

The sentences themselves are built once, in ``account.py``. Why a category is named only sometimes: a facet's
name is a claim ("this facet is about weapons"), and the check-set scorecard measures it (``policy_scorecard``; the
name score is a balanced accuracy). The verdict names the category of the facet that fires hardest only when that
name is measured to fit (``report.name_verdict`` says "fits", name score ≥ ``NAME_FITS``); otherwise it says that no
category is named, and why, rather than repeat a name that the check set does not back.
"""

from __future__ import annotations

from sap_viz.analysis.report import name_verdict

#: Plain words for the taxonomy's categories (``data.taxonomy.TAXONOMY``).
CATEGORY_WORDS = {
    "cyber": "cyber attacks", "violence_weapons": "violence and weapons", "chem_bio": "chemical and biological weapons",
    "illegal_goods_crime": "illegal goods and crime", "fraud_deception": "fraud and deception",
    "hate_harassment": "hate and harassment", "sexual": "sexual content", "self_harm": "self-harm",
    "misinformation": "misinformation", "privacy": "privacy violations",
}
NO_SINGLE_CATEGORY = "no category is named"


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

"""Facet labels written into a polytope's ``facets.json``: the name and policy a person gives a facet, the harm
category the name claims, and the check-set scorecard that goes with it.

Why not in ``method/artifact.py``: a new label is rescored on the check set (``analysis/policy_scorecard.py``)
and its category is read from the name (``analysis/facet_names.py``); the file format itself needs neither.
"""

from __future__ import annotations

from pathlib import Path

from sap_viz.analysis.facet_names import name_category
from sap_viz.analysis.policy_scorecard import rescore
from sap_viz.data.check_set import load_check_set
from sap_viz.data.taxonomy import POLICY_CATEGORIES
from sap_viz.errors import UserError
from sap_viz.files import directory_lock, now, write_json_atomic
from sap_viz.method.artifact import (
    FACETS_BUDGET_BYTES,
    FACETS_FILE,
    FORMAT_VERSION,
    clean_label,
    read_facets,
    trim_history,
    validate_facets,
)

__all__ = ["AUTO_CATEGORY", "claimed_category", "label_facet", "store_scorecards"]


AUTO_CATEGORY = "auto"


def claimed_category(name: str, policy: str = "", category: str | None = AUTO_CATEGORY) -> str | None:
    """The category a label claims: ``category`` as given (validated; "" or None = none), or read from the name with
    ``"auto"``."""
    if category == AUTO_CATEGORY:
        return name_category(name, policy)
    if category in (None, ""):
        return None
    if category not in POLICY_CATEGORIES:
        raise UserError(f"category must be one of {', '.join(POLICY_CATEGORIES)} (or none), got {category!r}")
    return category


def label_facet(
    directory: str | Path,
    index: int,
    name: str,
    policy: str = "",
    author: str = "",
    confidence: float = 1.0,
    auto_suggested: bool = False,
    max_len: int = 4000,
    category: str | None = AUTO_CATEGORY,
) -> dict:
    """Set a facet's label, appending the previous one to its history; safe under concurrent writers.

    ``category``: the harm category the new name claims; by default read from the name (or policy) with
    :func:`~sap_viz.analysis.facet_names.name_category`, None for a name that claims none. A facet with a
    scorecard is rescored for that category on the check set, so a misleading name shows at once.
    """
    directory = Path(directory)
    name, policy, author, confidence = clean_label(name, policy, author, confidence, max_len)
    category = claimed_category(name, policy, category)
    with directory_lock(directory):
        for stale in directory.glob(f".{FACETS_FILE}.*.tmp"):  # left by a writer that was killed
            stale.unlink(missing_ok=True)
        facets = read_facets(directory)
        if not isinstance(index, int) or not 0 <= index < len(facets):
            raise UserError(f"facet index must be between 0 and {len(facets) - 1}, got {index!r}")
        facet = facets[index]
        entry = {
            "name": name,
            "policy": policy,
            "author": author,
            "confidence": confidence,
            "auto_suggested": bool(auto_suggested),
            "time": now(),
        }
        entry["category"] = category
        facet["history"].append(entry)
        facet.update({k: entry[k] for k in ("name", "policy", "author", "confidence", "auto_suggested", "category")})
        if isinstance(facet.get("scorecard"), dict):
            facet["scorecard"] = rescore(facet["scorecard"], category, load_check_set())
        if "source" in facet:  # a taxonomy-derived label stops being "from category" once someone edits it
            facet["source"] = "auto-suggested" if auto_suggested else "labelled"
        trim_history(facets, FACETS_BUDGET_BYTES)
        write_json_atomic(directory / FACETS_FILE, {"format_version": FORMAT_VERSION, "facets": facets})
        return facet


def store_scorecards(directory: str | Path, cards: list[dict], categories: list[str | None]) -> list[dict]:
    """Write each facet's check-set scorecard and the category its name claims into ``facets.json`` (labels kept)."""
    directory = Path(directory)
    with directory_lock(directory):
        facets = read_facets(directory)
        if len(cards) != len(facets) or len(categories) != len(facets):
            raise UserError(f"{len(cards)} scorecards for {len(facets)} facets")
        for facet, card, category in zip(facets, cards, categories, strict=True):
            facet["category"] = category
            facet["scorecard"] = card
        write_json_atomic(directory / FACETS_FILE, {"format_version": FORMAT_VERSION, "facets": validate_facets(
            {"facets": facets}, len(facets))})
    return facets

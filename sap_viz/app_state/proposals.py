"""Label proposals: what a visitor would name a facet, kept beside the polytope until the owner decides.

A proposal (facet, name, policy, author, confidence, the category the name claims, time, a tag of the session that made it) is
appended to ``proposals.json`` in the polytope's directory (for a read-only polytope: in the folder the store names),
never to ``facets.json``. The owner
accepts one (it becomes the facet's label through ``label_facet``, with history) or rejects it;
either way it leaves the file. The file is written atomically under the directory's lock, and
holds at most ``max_open`` proposals (the oldest go first), so it cannot grow without bound.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from sap_viz.analysis.facet_labels import AUTO_CATEGORY, claimed_category, label_facet
from sap_viz.errors import WorkbenchError
from sap_viz.files import directory_lock, now, write_json_atomic
from sap_viz.method.artifact import clean_label, read_facets

PROPOSALS_FILE = "proposals.json"
FORMAT_VERSION = 1


def session_tag(session_id: str) -> str:
    """A short, stable tag for a session that does not reveal its id."""
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()[:10]


def read_proposals(directory: str | Path) -> list[dict]:
    """The open proposals of the polytope in ``directory`` (oldest first); none if the file is missing or unreadable."""
    path = Path(directory) / PROPOSALS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    items = data.get("proposals") if isinstance(data, dict) else None
    return [p for p in items if isinstance(p, dict) and isinstance(p.get("id"), str)] if isinstance(items, list) else []


def _write(directory: Path, proposals: list[dict]) -> None:
    write_json_atomic(directory / PROPOSALS_FILE, {"format_version": FORMAT_VERSION, "proposals": proposals})


def add_proposal(directory: str | Path, index: object, name: object, policy: object = "", author: object = "",
                 confidence: object = 1.0, session_id: str = "", max_open: int = 200, category: str | None = AUTO_CATEGORY,
                 kept_in: str | Path | None = None) -> dict:
    """Record a visitor's label for facet ``index`` of the polytope in ``directory``, in ``kept_in`` (default: beside it);
    returns the proposal.

    ``category`` is kept as given ("auto": read from the name when accepted, "" or None: none, or a category), so
    accepting the proposal applies it and rescores the facet's scorecard for it.
    """
    directory = Path(directory)
    kept = Path(kept_in) if kept_in is not None else directory
    try:
        name, policy, author, confidence = clean_label(name, policy, author, confidence)
        claimed_category(name, policy, category)  # refuse an unknown category now, not when the owner accepts
        index = int(index)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise WorkbenchError(str(exc) if "index" not in str(exc) else f"facet index must be an integer, got {index!r}") from None
    num_facets = len(read_facets(directory))
    if not 0 <= index < num_facets:
        raise WorkbenchError(f"facet index must be between 0 and {num_facets - 1}, got {index!r}")
    kept.mkdir(parents=True, exist_ok=True)
    with directory_lock(kept):
        proposals = read_proposals(kept)
        proposal = {"id": uuid.uuid4().hex[:12], "facet": index, "name": name, "policy": policy, "author": author or "anonymous",
                    "confidence": confidence, "category": category or "", "time": now(),
                    "session": session_tag(session_id) if session_id else ""}
        proposals = (proposals + [proposal])[-max_open:]
        _write(kept, proposals)
    return proposal


def take_proposal(kept_in: str | Path, proposal_id: str) -> dict:
    """Remove an open proposal from the file in ``kept_in`` and return it (the owner decided on it)."""
    kept = Path(kept_in)
    if not (kept / PROPOSALS_FILE).is_file():
        raise WorkbenchError(f"no open proposal {proposal_id!r}")
    with directory_lock(kept):
        proposals = read_proposals(kept)
        found = next((p for p in proposals if p["id"] == str(proposal_id).strip()), None)
        if found is None:
            raise WorkbenchError(f"no open proposal {proposal_id!r}")
        _write(kept, [p for p in proposals if p is not found])
    return found


def decide_proposal(directory: str | Path, proposal_id: str, accept: bool) -> dict:
    """Accept (label the facet, with history) or reject a proposal kept beside the polytope; it leaves the file either way.
    Returns it with its decision."""
    found = take_proposal(directory, proposal_id)
    return apply_proposal(directory, found) if accept else {**found, "decision": "rejected"}


def apply_proposal(directory: str | Path, found: dict) -> dict:
    """Label the facet of the polytope in ``directory`` as an accepted proposal says (with history)."""
    proposal_id = found["id"]
    try:
        facet = label_facet(directory, int(found["facet"]), found["name"], found.get("policy", ""), found.get("author", ""),
                            found.get("confidence", 1.0), category=found.get("category", AUTO_CATEGORY))
    except ValueError as exc:
        raise WorkbenchError(f"proposal {proposal_id!r} cannot be applied: {exc}") from None
    return {**found, "decision": "accepted", "facet_label": facet}

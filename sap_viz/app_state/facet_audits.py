"""The facet audit the Facets tab shows: firing matrix, purity, selectivity, dead facets, MI and honest names.

Why from the training view: it holds every training prompt's violations under the active polytope
(the cached features the feature map is built from), so the audit needs no model call once the view
exists and means the same for every polytope, shipped or trained here. Audits are kept per view key
(the polytope's weights and its data fingerprint), so a polytope is audited once however often the
tab is opened.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from sap_viz.analysis.attribution import top_examples
from sap_viz.analysis.facet_stats import facet_audit, firing_order, honest_names
from sap_viz.method.artifact import PolytopeArtifact

CARD_EXAMPLES = 5  # most violating training prompts on each facet card

#: Columns of the per-facet audit table (and its CSV), in order.
AUDIT_COLUMNS = ["facet", "label", "label source", "suggested name", "suggestion confidence (Wilson LB)",
                 "top facet of n", "purity", "purity category", "purity Wilson LB", "selectivity category",
                 "fires on own", "own n", "fires on others", "others n", "selective", "dead", "fires on n"]


@dataclass(frozen=True)
class FacetAuditView:
    """One polytope's facet audit on its training prompts, and what the Facets tab derives from it."""

    audit: dict  # facet_audit's output
    suggestions: list[dict]  # honest_names: one {name, confidence, evidence} per facet
    order: list[int]  # facet order of the firing heatmap (facet order[i] on category i's row)
    examples: list[list[dict]]  # the CARD_EXAMPLES most violating training prompts per facet
    note: str  # where the training prompts come from

    @property
    def num_facets(self) -> int:
        return len(self.suggestions)

    def rows(self, facets: list[dict]) -> list[dict]:
        """The per-facet table (AUDIT_COLUMNS), beside each facet's current label and where that label came from."""
        out = []
        for k, f in enumerate(self.audit.get("facets") or []):
            label = facets[k] if k < len(facets) else {}
            sug = self.suggestions[k]
            out.append(dict(zip(AUDIT_COLUMNS, [
                k, label.get("name", ""), label_source(label), sug["name"], sug["confidence"],
                f["n_top"], f["purity"], f["purity_category"], f["purity_wilson_lb"], f["selectivity_category"],
                f["own_fire"], f["own_fire_n"], f["others_fire"], f["others_fire_n"],
                "yes" if f["selective"] else "no", "yes" if k in self.audit["dead_facets"] else "no", f["fires_on"],
            ], strict=True)))
        return out

    def summary(self) -> dict:
        """The polytope-level figures an auditor reads first, each with the count behind it."""
        a = self.audit
        mi = a["mi_category_top_facet"]
        return {
            "n_unsafe": a["n_unsafe"], "num_facets": self.num_facets,
            "mean_facets_firing": a["mean_facets_firing"], "share_unsafe_no_facet_firing": a["share_unsafe_no_facet_firing"],
            "dead_facets": a["dead_facets"], "never_firing_facets": a["never_firing_facets"],
            "mi_bits": mi["bits"], "mi_bits_miller_madow": mi["bits_miller_madow"], "category_entropy_bits": mi["category_entropy_bits"],
            "n_selective": a["n_selective_harm_categories"], "n_harm_categories": len(a["harm_categories"]),
            "note": self.note,
        }


    def report(self, facets: list[dict]) -> dict:
        """The audit as the audit report carries it: summary, per-facet rows and the firing matrix with its counts."""
        a = self.audit
        return {"summary": self.summary(), "facets": self.rows(facets),
                "firing_matrix": {"categories": a["categories"], "n_per_category": a["n_per_category"],
                                  "fire_share": a["fire_share"], "fire_counts": a["fire_counts"], "facet_order": self.order}}


def label_source(facet: dict) -> str:
    """Where a facet's current label comes from: the taxonomy, the statistics, or a person."""
    if facet.get("source") == "from category":
        return "from category"
    return "auto-suggested" if facet.get("auto_suggested") else "labelled"


def build_audit_view(art: PolytopeArtifact, view) -> FacetAuditView | None:
    """The audit of ``art`` on a training view (feature_map.TrainingView); None when it has no unsafe prompt."""
    facet_categories = (art.meta.get("facet_stats") or {}).get("facet_categories")
    audit = facet_audit(view.violations, list(view.categories), [lab == "unsafe" for lab in view.labels],
                        facet_categories=facet_categories)
    if not audit.get("n_unsafe"):
        return None
    k_total = view.violations.shape[1]
    examples = [top_examples(view.texts, view.violations, k, CARD_EXAMPLES, view.labels) for k in range(k_total)]
    return FacetAuditView(audit, honest_names(audit), firing_order(audit, facet_categories), examples, view.note)


class FacetAudits:
    """Audits by training-view key, the least recently used dropped beyond ``max_kept``; shared by all sessions."""

    def __init__(self, max_kept: int = 8) -> None:
        self.max_kept = max_kept
        self._lock = threading.Lock()
        self._audits: OrderedDict[str, FacetAuditView | None] = OrderedDict()

    def get(self, art: PolytopeArtifact, view) -> FacetAuditView | None:
        key = str(view.key)
        with self._lock:
            if key in self._audits:
                self._audits.move_to_end(key)
                return self._audits[key]
        audit = build_audit_view(art, view)  # milliseconds: numpy over the cached violations
        with self._lock:
            self._audits[key] = audit
            while len(self._audits) > self.max_kept:
                self._audits.popitem(last=False)
        return audit

    def __len__(self) -> int:
        return len(self._audits)


def facet_suggestions(art: PolytopeArtifact, audit: FacetAuditView | None) -> list[dict]:
    """Name suggestions for the cards and the labelling form: the audit's honest names, else the ones stored
    with the polytope when they are honest ones too (polytopes trained with the audit); else none."""
    if audit is not None and audit.num_facets == art.polytope.num_facets:
        return audit.suggestions
    stats = art.meta.get("facet_stats") or {}
    return list(stats.get("suggestions") or []) if "audit" in stats else []


def card_audit(art: PolytopeArtifact, audit: FacetAuditView | None) -> dict | None:
    """The audit every facet card counts from: the training view's (the one the audit summary and table show), else the
    one stored at training time; None without either.

    Why one source: the cards once counted softly assigned prompts while the audit counted top facets, so the same
    facet read "350 prompts" on its card and "top facet of 353" in the table.
    """
    if audit is not None and audit.num_facets == art.polytope.num_facets:
        return audit.audit
    stored = (art.meta.get("facet_stats") or {}).get("audit") or {}
    return stored if len(stored.get("facets") or []) == art.polytope.num_facets and stored.get("n_unsafe") else None


def card_examples(art: PolytopeArtifact, audit: FacetAuditView | None) -> list[list[dict]]:
    """The most violating training prompts per facet: from the audit, else as stored at training time."""
    if audit is not None and audit.num_facets == art.polytope.num_facets:
        return audit.examples
    stored = (art.meta.get("facet_stats") or {}).get("top_prompts") or []
    return [[{"rank": r + 1, "label": "", **e} for r, e in enumerate(part)] for part in stored]

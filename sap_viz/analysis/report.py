"""Audit report of a polytope: facet labels with their history, metrics, examples, provenance.

An auditor signs off on *what each facet means* and *how well the polytope detects*; the report puts
both next to the evidence (the most violating training texts per facet, the category statistics)
and the provenance (model fingerprint, layer, data counts, training settings), in Markdown for
people and JSON for tools. Everything user-written is escaped for Markdown table cells.

The check-set scorecards (``analysis.policy_scorecard``, stored on each facet by ``sap-viz measure --part facets``)
test each name against prompts the polytope never saw; ``scorecard_rows`` is the one table of them that
the Facets tab and the report both show, with the name score's verdict by the thresholds below.
"""

from __future__ import annotations

import json
from pathlib import Path

from sap_viz.analysis.attribution import top_examples
from sap_viz.analysis.metrics import METRIC_COLUMNS, metrics_rows
from sap_viz.files import now
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.tables import markdown_cell, markdown_table

#: The name score is a balanced accuracy (0.5 = chance): a name "fits" from NAME_FITS on, "fits partly" from
#: NAME_PARTLY on, and below that it is "misleading" (the facet hardly tells its category from the rest: one that
#: fires on three quarters of every category's requests scores about 0.62 for any name).
NAME_FITS = 0.8
NAME_PARTLY = 0.65
FACET_CHECK_COMMAND = "python -m sap_viz measure --part facets --polytope DIR"

#: Columns of the per-facet scorecard table (the Facets tab, its CSV and the report), in order.
SCORECARD_COLUMNS = ["facet", "name", "claimed category", "name score", "name verdict", "precision", "recall",
                     "look-alike false alarms", "own look-alikes' false alarms", "fires on unsafe", "top categories fired on"]


def name_verdict(score: float | None) -> str:
    """"fits", "fits partly" or "misleading" by the thresholds above; "no category" without a score."""
    if score is None:
        return "no category"
    return "fits" if score >= NAME_FITS else "fits partly" if score >= NAME_PARTLY else "misleading"


def top_fired(card: dict, n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` categories whose unsafe check-set prompts the facet fires on most, with those shares."""
    shares = [(c, float(v)) for c, v in (card.get("fires_on") or {}).items() if v is not None]
    return sorted(shares, key=lambda cv: -cv[1])[:n]


def has_scorecards(facets: list[dict]) -> bool:
    return any(isinstance(f.get("scorecard"), dict) for f in facets)


def scorecard_rows(facets: list[dict]) -> list[dict]:
    """One row per facet (SCORECARD_COLUMNS) from the scorecards stored on the facets; none without scorecards."""
    if not has_scorecards(facets):
        return []
    rows = []
    for k, facet in enumerate(facets):
        card = facet.get("scorecard") if isinstance(facet.get("scorecard"), dict) else {}
        category = card.get("category", facet.get("category"))
        rows.append(dict(zip(SCORECARD_COLUMNS, [
            k, facet.get("name", ""), category or "none", card.get("name_score"), name_verdict(card.get("name_score")) if card else "",
            card.get("precision"), card.get("recall"), card.get("lookalike_false_alarms"), card.get("own_lookalike_false_alarms"),
            card.get("fires_on_unsafe"), ", ".join(f"{c} {v:.0%}" for c, v in top_fired(card)),
        ], strict=True)))
    return rows


def build_report(art: PolytopeArtifact, view: object | None = None, top_k: int = 5, audit: dict | None = None) -> dict:
    """JSON-serialisable report; ``view`` (a feature_map.TrainingView) adds examples per facet, ``audit``
    (``summary``, per-facet ``facets`` rows, ``firing_matrix``) the facet audit on the training prompts."""
    meta = art.meta
    stats = meta.get("facet_stats") or {}
    suggestions = stats.get("suggestions") or []
    facets = []
    for k, facet in enumerate(art.facets):
        entry = {key: facet[key] for key in ("index", "name", "policy", "author", "confidence", "auto_suggested", "history")}
        entry["suggestion"] = suggestions[k] if k < len(suggestions) else None
        if view is not None:
            entry["top_examples"] = top_examples(view.texts, view.violations, k, top_k, view.labels)  # type: ignore[attr-defined]
            col = view.violations[:, k]  # type: ignore[attr-defined]
            entry["fire_rate_train"] = round(float((col >= 0).float().mean()), 4)
        if "category" in facet or "scorecard" in facet:
            entry["category"] = facet.get("category")
            entry["scorecard"] = facet.get("scorecard")
        facets.append(entry)
    return {
        "report": "sap-viz polytope audit",
        "generated": now(),
        "polytope": {
            "name": art.path.name if art.path else None, "created": meta.get("created"),
            "sap_viz_version": meta.get("sap_viz_version"), "layer": meta.get("layer"),
            "layer_convention": meta.get("layer_convention"), "position": meta.get("position"),
            "chat_template": meta.get("chat_template"), "num_facets": meta.get("num_facets"),
            "feature_dim": meta.get("feature_dim"), "encoder": meta.get("encoder"), "model": meta.get("model"),
        },
        "train_config": meta.get("train_config"),
        "provenance": meta.get("data"),
        "examples_source": getattr(view, "note", None),
        "metrics": metrics_rows(meta.get("metrics") or {}),
        "facet_statistics": {k: stats.get(k) for k in ("categories", "hungarian_order", "mutual_information_bits") if k in stats},
        "facets": facets,
        "facet_audit": audit,
        "scorecards": scorecard_rows(art.facets),
        "facet_check": meta.get("facet_check"),
    }


def report_markdown(report: dict) -> str:
    p = report["polytope"]
    model = p.get("model") or {}
    lines = [
        f"# Polytope audit: {markdown_cell(p.get('name'))}",
        "",
        (
            f"Generated {report['generated']}. Polytope created {markdown_cell(p.get('created'))} "
            f"with sap-viz {markdown_cell(p.get('sap_viz_version'))}."
        ),
        "",
        "## Provenance",
        "",
        (
            f"- Model: {markdown_cell(model.get('id'))} (weights fingerprint `{markdown_cell(model.get('fingerprint'))}`, "
            f"{markdown_cell(model.get('num_layers'))} blocks, hidden size {markdown_cell(model.get('hidden_size'))})"
        ),
        (
            f"- Layer: {markdown_cell(p.get('layer'))} — {markdown_cell(p.get('layer_convention'))}; "
            f"position {markdown_cell(p.get('position'))}, "
            f"chat template {markdown_cell(p.get('chat_template'))}"
        ),
        (
            f"- Facets: {markdown_cell(p.get('num_facets'))}, concept features {markdown_cell(p.get('feature_dim'))} "
            f"({markdown_cell(p.get('encoder'))} encoder)"
        ),
    ]
    prov = report.get("provenance") or {}
    if prov:
        lines.append(
            f"- Data: {markdown_cell(prov.get('n_rows'))} rows, fingerprint `{markdown_cell(prov.get('fingerprint'))}`, "
            f"labels {markdown_cell(json.dumps(prov.get('by_label')))}, splits {markdown_cell(json.dumps(prov.get('by_split')))}"
        )
        by_source = prov.get("by_source_label")
        if by_source:
            lines.append(f"- Sources: {markdown_cell(json.dumps(by_source), 1000)}")
    if report.get("train_config"):
        lines.append(f"- Training: {markdown_cell(json.dumps(report['train_config']), 1000)}")
    lines += ["", "## Detection metrics (unsafe = positive class)", "", markdown_table(report["metrics"], METRIC_COLUMNS), ""]
    stats = report.get("facet_statistics") or {}
    if stats.get("mutual_information_bits") is not None:
        lines += [f"Category × facet mutual information: {markdown_cell(stats['mutual_information_bits'])} bits.", ""]
    lines += audit_markdown(report.get("facet_audit"))
    lines += scorecards_markdown(report)
    lines += ["## Facets", ""]
    if report.get("examples_source"):
        lines += [f"Examples are drawn from {markdown_cell(report['examples_source'])}.", ""]
    for f in report["facets"]:
        flag = " (auto-suggested)" if f["auto_suggested"] else ""
        lines += [f"### Facet {f['index']}: {markdown_cell(f['name'])}{flag}", ""]
        lines.append(f"- Policy: {markdown_cell(f['policy'], 2000)}")
        lines.append(f"- Labelled by {markdown_cell(f['author'])}, confidence {markdown_cell(f['confidence'])}")
        if f.get("fire_rate_train") is not None:
            lines.append(f"- Fires on {100 * f['fire_rate_train']:.1f}% of training prompts")
        sug = f.get("suggestion")
        if sug:
            lines.append(
                f"- Suggestion from category statistics: {markdown_cell(sug.get('name'))} — {markdown_cell(sug.get('evidence'))} "
                f"(confidence {markdown_cell(sug.get('confidence'))})"
            )
        card = f.get("scorecard")
        if card:
            lines += scorecard_markdown(card)
        if f["history"]:
            lines += [
                "",
                "History:",
                "",
                markdown_table(f["history"], ["time", "name", "author", "confidence", "auto_suggested", "policy"]),
            ]
        if f.get("top_examples"):
            lines += ["", "Most violating training prompts:", "", markdown_table(f["top_examples"], ["rank", "violation", "label", "text"])]
        lines.append("")
    return "\n".join(lines)


def audit_markdown(audit: dict | None) -> list[str]:
    """The facet audit section: the polytope-level figures with their counts, then one row per facet."""
    if not audit:
        return []
    s = audit["summary"]
    lines = ["## Facet audit (training prompts)", "",
             f"- Unsafe prompts: {s['n_unsafe']} ({markdown_cell(s['note'])})",
             f"- Facets firing per unsafe prompt: {s['mean_facets_firing']:.2f} of {s['num_facets']} on average",
             f"- Dead facets (never any unsafe prompt's top facet): {', '.join(map(str, s['dead_facets'])) or 'none'}",
             f"- MI(category; top facet): {s['mi_bits']:.3f} bits ({s['mi_bits_miller_madow']:.3f} Miller–Madow) "
             f"of {s['category_entropy_bits']:.3f} bits category entropy",
             f"- Harm categories with a selective facet: {s['n_selective']} of {s['n_harm_categories']}", ""]
    rows = audit.get("facets") or []
    if rows:
        lines += [markdown_table(rows, list(rows[0])), ""]
    return lines


def scorecards_markdown(report: dict) -> list[str]:
    """The check-set scorecards: one row per facet, or the command that makes them."""
    rows = report.get("scorecards")
    head = ["## Facet scorecards (check set)", ""]
    if not rows:
        return [*head, f"No check-set scorecards in this polytope: `{FACET_CHECK_COMMAND}` makes them.", ""]
    check = next((f["scorecard"].get("check_set") for f in report.get("facets") or [] if f.get("scorecard")), None) or {}
    lines = [*head,
             f"Each facet on the facet check set ({markdown_cell(check.get('n'))} prompts: {markdown_cell(check.get('n_unsafe'))} unsafe "
             f"requests, {markdown_cell(check.get('n_safe'))} safe look-alikes; fingerprint `{markdown_cell(check.get('fingerprint'))}`), "
             "never used for training. Name score: balanced accuracy of \"the facet fires\" as a detector of unsafe prompts of "
             f"the category its name claims (0.5 = chance); it fits from {NAME_FITS}, fits partly from {NAME_PARTLY}, below that "
             "it is misleading.", "", markdown_table(rows, SCORECARD_COLUMNS), ""]
    table = report.get("facet_check")
    if isinstance(table, dict):
        lines += [f"The polytope on the check set: {markdown_cell(table.get('selective_categories'))} of 10 categories with a "
                  f"selective facet, {_fmt(table.get('facets_firing'), '.2f')} facets firing per unsafe prompt, "
                  f"{_fmt(table.get('caught'), '.1%')} of unsafe prompts caught, {_fmt(table.get('safe_flagged'), '.1%')} of safe "
                  "look-alikes flagged.", ""]
    return lines


def _fmt(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else markdown_cell(value)


def scorecard_markdown(card: dict) -> list[str]:
    """A facet's scorecard under its heading: the claim, the name score and the prompts behind it."""
    fired = ", ".join(f"{c} {v:.0%}" for c, v in top_fired(card, 10)) or "none"
    lines = [f"- Check set: name claims {markdown_cell(card.get('category') or 'no category')}, name score "
             f"{markdown_cell(card.get('name_score'))} ({name_verdict(card.get('name_score'))}), precision "
             f"{markdown_cell(card.get('precision'))}, recall {markdown_cell(card.get('recall'))}, false alarms on safe look-alikes "
             f"{markdown_cell(card.get('lookalike_false_alarms'))}",
             f"- Fires on (share of each category's unsafe prompts): {markdown_cell(fired, 1000)}"]
    for key, words in (("most_typical", "Most typical check-set prompts"), ("least_typical", "Least typical check-set prompts")):
        if card.get(key):
            lines += ["", f"{words}:", "", markdown_table(card[key], ["violation", "category", "text"])]
    return lines


def write_report(report: dict, directory: str | Path, stem: str = "polytope-audit") -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / f"{stem}.md", directory / f"{stem}.json"
    md.write_text(report_markdown(report), encoding="utf-8")
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=float), encoding="utf-8")
    return md, js

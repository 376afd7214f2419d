"""Audit report of a polytope: facet labels with their history, metrics, examples, provenance.

An auditor signs off on *what each facet means* and *how well the polytope detects*; the report puts
both next to the evidence (the most violating training texts per facet, the category statistics)
and the provenance (model fingerprint, layer, data counts, training settings), in Markdown for
people and JSON for tools. Everything user-written is escaped for Markdown table cells.
"""

from __future__ import annotations

import json
from pathlib import Path

from sap_viz.analysis.attribution import top_examples
from sap_viz.analysis.metrics import METRIC_COLUMNS, metrics_rows
from sap_viz.files import now
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.tables import markdown_cell, markdown_table


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


def write_report(report: dict, directory: str | Path, stem: str = "polytope-audit") -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / f"{stem}.md", directory / f"{stem}.json"
    md.write_text(report_markdown(report), encoding="utf-8")
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=float), encoding="utf-8")
    return md, js

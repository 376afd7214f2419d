"""HTML for gr.HTML components. gr.HTML inserts raw markup, so every user- or model-written string
(prompts, generated tokens, facet names, policy texts, training texts) goes through ``esc`` here."""

from __future__ import annotations

import html

import numpy as np

from sap_viz.method.generation_results import GenerationResult, TokenInfo


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def token_display(text: str) -> str:
    """Make whitespace visible in a token chip: newlines as ↵, tabs as →."""
    return text.replace("\n", "↵").replace("\t", "→")


def _scale(values: list[float]) -> float:
    mags = np.abs(np.array([v for v in values if v is not None], dtype=float))
    return float(np.percentile(mags, 95)) if len(mags) else 1.0


def token_colour(v: float | None, scale: float) -> str:
    """Red for a violating state (stronger = further outside), blue-grey for safe, none when unknown."""
    if v is None:
        return "transparent"
    t = max(-1.0, min(1.0, v / max(scale, 1e-9)))
    if t >= 0:
        return f"rgba(220, 38, 38, {0.25 + 0.6 * t:.2f})"
    return f"rgba(59, 130, 246, {0.05 + 0.2 * (-t):.2f})"


def token_title(tok: TokenInfo, names: list[str], threshold: float = 0.0) -> str:
    part = "prompt" if tok.is_prompt else "generated"
    lines = [f"token {tok.index} ({part}): {tok.text!r}"]
    if tok.violations is None:
        lines.append("no violation computed")
        return "\n".join(lines)
    k = tok.top_facet or 0
    lines.append(f"worst facet {k} ({names[k] if k < len(names) else k}): {tok.max_violation:+.3f}"
                 + ("  → outside the polytope" if (tok.max_violation or 0) >= 0 else "  (inside)"))
    if threshold > 0:
        lines.append(f"intervention boundary for generated tokens: {threshold:+.3f} (calibrated on benign answers)")
    if tok.steered and tok.violations_after:
        lines.append(f"steered: max violation after {max(tok.violations_after):+.3f}, ‖Δh‖ = {tok.delta_norm:.3f}, {tok.steps} steps")
    if tok.forced:
        lines.append("forced by the refusal fallback")
    lines.append("all facets:")
    order = sorted(range(len(tok.violations)), key=lambda i: -tok.violations[i])
    for i in order:
        lines.append(f"  {i} {names[i] if i < len(names) else ''}: {tok.violations[i]:+.3f}")
    return "\n".join(lines)


def tokens_html(result: GenerationResult, title: str = "") -> str:
    """Tokens coloured by their worst facet violation; hover (title) lists every facet's value and name."""
    scale = _scale([t.max_violation for t in result.tokens])
    names = result.facet_names
    chips = []
    for tok in result.tokens:
        if tok.index == result.prompt_len:
            chips.append('<span class="sap-boundary" title="prompt ends here; the model\'s answer follows">▸ answer</span>')
        classes = ["sap-tok", "sap-prompt" if tok.is_prompt else "sap-gen"]
        if tok.steered:
            classes.append("sap-steered")
        if tok.forced:
            classes.append("sap-forced")
        chips.append(
            f'<span class="{" ".join(classes)}" style="background:{token_colour(tok.max_violation, scale)}" '
            f'title="{esc(token_title(tok, names, result.threshold_for(tok)))}">{esc(token_display(tok.text))}</span>'
        )
    legend = ('<div class="sap-legend"><span class="sap-sw" style="background:rgba(220,38,38,.7)"></span> outside the polytope '
              '<span class="sap-sw" style="background:rgba(59,130,246,.2)"></span> inside '
              '<span class="sap-tok sap-steered">x</span> steered <span class="sap-tok sap-forced">x</span> forced refusal '
              '— hover a token for every facet</div>')
    head = f'<div class="sap-run-title">{esc(title)}</div>' if title else ""
    return f'<div class="sap-tokens" id="sap-token-view">{head}{legend}<div class="sap-chips">{"".join(chips)}</div></div>'


def empty(message: str) -> str:
    return f'<div class="sap-empty">{esc(message)}</div>'


def status_html(kind: str, message: str) -> str:
    """A small banner; ``kind`` is one of ok / warn / error / info."""
    kind = kind if kind in ("ok", "warn", "error", "info") else "info"
    return f'<div class="sap-status sap-{kind}">{esc(message)}</div>'


def summary_html(headline: str, lines: list[str], kind: str = "ok") -> str:
    """A banner with a headline and a bulleted list (e.g. which rows trained, validated, were held out)."""
    kind = kind if kind in ("ok", "warn", "error", "info") else "info"
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<div class="sap-status sap-{kind}">{esc(headline)}<ul class="sap-summary">{items}</ul></div>'


def verdict_html(result: GenerationResult, divergence: int | None, baseline: GenerationResult) -> str:
    last = result.tokens[result.prompt_len - 1] if result.prompt_len else None
    parts = []
    if last is not None and last.violations is not None:
        k = last.top_facet or 0
        flagged = result.prompt_flagged
        parts.append(
            f'<b>{"Prompt flagged" if flagged else "Prompt inside the polytope"}</b>: worst facet '
            f'{k} “{esc(result.facet_names[k])}” at {last.max_violation:+.2f}'
        )
        if result.flag_reason == "prompt span" and result.span_peak is not None:
            parts.append(f"flagged inside the prompt: a token of the request reaches {result.span_peak:+.2f} "
                         f"(span boundary {result.settings.get('span_threshold', 0):+.2f})")
    parts.append(f"{result.interventions} steering interventions" + (", refusal forced" if result.refused else ""))
    if result.mode != "monitor":
        if divergence is None:
            parts.append("outputs identical")
        else:
            a = baseline.generated[divergence].text if divergence < len(baseline.generated) else "(end)"
            b = result.generated[divergence].text if divergence < len(result.generated) else "(end)"
            parts.append(f"first divergence at generated token {divergence}: {esc(repr(a))} → {esc(repr(b))}")
    return '<div class="sap-verdict">' + " · ".join(parts) + "</div>"


def facet_cards_html(facets: list[dict], stats: dict | None, fire_rates: list[float] | None = None) -> str:
    """One card per facet: name, policy, who labelled it, auto-suggested flag, what it fires on."""
    stats = stats or {}
    cats = stats.get("categories") or []
    joint = np.array(stats.get("soft_joint") or [], dtype=float)
    suggestions = stats.get("suggestions") or []
    cards = []
    for k, f in enumerate(facets):
        badge = (
            '<span class="sap-badge">auto-suggested</span>'
            if f.get("auto_suggested")
            else '<span class="sap-badge sap-human">labelled</span>'
        )
        top_cat = ""
        if joint.size and joint.shape[1] > k and len(cats) and joint[:, k].sum() > 0:
            col = joint[:, k] / joint[:, k].sum()
            i = int(col.argmax())
            top_cat = (
                f'<div class="sap-card-meta">unsafe prompts assigned to it: mostly <b>{esc(cats[i])}</b> '
                f"({100 * col[i]:.0f}%, {joint[:, k].sum():.0f} prompts)</div>"
            )
        rate = f'<div class="sap-card-meta">fires on {100 * fire_rates[k]:.1f}% of training prompts</div>' if fire_rates else ""
        sug = suggestions[k] if k < len(suggestions) else None
        sug_html = (
            f'<div class="sap-card-meta">suggested: {esc(sug.get("name"))} (confidence {float(sug.get("confidence", 0)):.2f})</div>'
            if sug
            else ""
        )
        who = esc(f.get("author") or "nobody")
        cards.append(
            f'<div class="sap-card" data-facet="{k}"><div class="sap-card-title">#{k} '
            f'<span class="sap-facet-name">{esc(f.get("name", ""))}</span> {badge}</div>'
            f'<div class="sap-card-policy" title="{esc(f.get("policy") or "")}">{esc(f.get("policy") or "(no policy text)")}</div>'
            f'<div class="sap-card-meta">by {who}, confidence {float(f.get("confidence") or 0):.2f}, '
            f'{len(f.get("history") or [])} edits</div>'
            f"{top_cat}{rate}{sug_html}{history_html(f.get('history') or [])}</div>"
        )
    return '<div class="sap-cards" id="sap-facet-cards">' + "".join(cards) + "</div>"


def history_html(history: list[dict], shown: int = 10) -> str:
    """A facet's label history, newest first, folded away under "Label history (N)"."""
    if not history:
        return ""
    items = []
    for entry in list(reversed(history))[:shown]:
        auto = " (auto-suggested)" if entry.get("auto_suggested") else ""
        items.append(f'<li><span class="sap-hist-time">{esc(str(entry.get("time", ""))[:19].replace("T", " "))}</span> '
                     f'<b>{esc(entry.get("name", ""))}</b> by {esc(entry.get("author") or "nobody")}{auto}, '
                     f'confidence {float(entry.get("confidence") or 0):.2f}</li>')
    more = f"<li>… {len(history) - shown} older edits in the audit report</li>" if len(history) > shown else ""
    return (f'<details class="sap-history"><summary>Label history ({len(history)})</summary>'
            f'<ol>{"".join(items)}{more}</ol></details>')


def attribution_html(words: list[str], values: np.ndarray, caption: str) -> str:
    """Words tinted by their attribution (red raises the facet, blue lowers it); hover shows the value."""
    scale = float(np.abs(values).max()) if len(values) else 1.0
    chips = []
    for w, v in zip(words, values, strict=True):
        t = float(v) / max(scale, 1e-9)
        colour = f"rgba(220, 38, 38, {0.1 + 0.7 * t:.2f})" if t >= 0 else f"rgba(59, 130, 246, {0.1 + 0.7 * -t:.2f})"
        chips.append(f'<span class="sap-word" style="background:{colour}" title="{esc(f"{v:+.4f}")}">{esc(w)}</span>')
    return f'<div class="sap-attr"><div class="sap-legend">{esc(caption)}</div>{" ".join(chips)}</div>'


def suggestion_html(facet: dict, suggestion: dict | None) -> str:
    if not suggestion:
        return empty("No suggestion for this facet (the polytope has no category statistics).")
    return (
        '<div class="sap-suggestion"><div><b>Suggested from category statistics</b></div>'
        f'<div class="sap-facet-name">{esc(suggestion.get("name"))}</div>'
        f'<div class="sap-card-meta">{esc(suggestion.get("evidence", ""))}; confidence {float(suggestion.get("confidence", 0)):.2f}</div>'
        f'<div class="sap-card-meta">current label: {esc(facet.get("name", ""))}</div></div>'
    )

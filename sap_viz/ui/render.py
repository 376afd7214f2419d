"""HTML for gr.HTML components. gr.HTML inserts raw markup, so every user- or model-written string
(prompts, generated tokens, facet names, policy texts, training texts) goes through ``esc`` here."""

from __future__ import annotations

import html
from collections import Counter

import numpy as np

from sap_viz.analysis.account import STEERING_POLYTOPE, Account, generation_account, position_boundary
from sap_viz.analysis.facet_check import POLICY_TARGET_NOTE, policy_rows
from sap_viz.analysis.report import FACET_CHECK_COMMAND, NAME_FITS, NAME_PARTLY, has_scorecards, name_verdict, top_fired
from sap_viz.method.generation_results import GenerationResult, TokenInfo
from sap_viz.ui import palette

# badge colours of the name score's verdicts (report.name_verdict)
#: What the detection sweep found, shown beside a polytope's missed detection targets (docs/research/detection_levers.md).
DETECTION_FINDING = ("On the embedded model no training data, objective, feature or operating point we swept meets these "
                     "targets together: catching more harmful requests costs more safe look-alikes flagged "
                     "(docs/research/detection_levers.md)")
#: What the steering sweeps found, shown beside a polytope's missed steering targets (docs/research/steering_levers.md).
STEERING_FINDING = ("On the embedded model no steering lever we swept (tokens steered, positions moved, the direction's "
                    "target, a refusal opener and letting go, the anti-repeat rule) makes 80 % of steered answers read as "
                    "a coherent reply: the model's one sentence after the opener still wanders or contradicts it "
                    "(docs/research/steering_levers.md)")
VERDICT_STYLE = {"fits": "background:#dcfce7;color:#166534", "fits partly": "background:#fef3c7;color:#92400e",
                 "misleading": "background:#fee2e2;color:#991b1b"}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def token_display(text: str) -> str:
    """Make whitespace visible in a token chip: newlines as ↵, tabs as →."""
    return text.replace("\n", "↵").replace("\t", "→")


def token_title(tok: TokenInfo, names: list[str], boundary: float, steered: str = "") -> str:
    part = "prompt" if tok.is_prompt else "generated"
    lines = [f"token {tok.index} ({part}): {tok.text!r}"]
    if tok.violations is None:
        lines.append("no violation computed")
        return "\n".join(lines)
    k = tok.top_facet or 0
    over = (tok.max_violation or 0) >= boundary
    lines.append(f"worst facet {k} ({names[k] if k < len(names) else k}): {tok.max_violation:+.3f}, boundary here "
                 f"{boundary:+.3f}" + ("  → at or above it" if over else "  (below it)"))
    if steered:
        lines.append(steered)
    if tok.forced:
        lines.append("forced by the refusal fallback")
    if tok.opener:
        lines.append("written by the refusal opener (a rule), not chosen by the model")
    lines.append("all facets:")
    order = sorted(range(len(tok.violations)), key=lambda i: -tok.violations[i])
    for i in order:
        lines.append(f"  {i} {names[i] if i < len(names) else ''}: {tok.violations[i]:+.3f}")
    return "\n".join(lines)


def tokens_html(result: GenerationResult, title: str = "", account: Account | None = None) -> str:
    """Tokens coloured by their worst facet's distance to the boundary that applies to them (red from the boundary on);
    a steered token carries its measured outcome (``account``); hover (title) lists every facet's value and name."""
    account = account or generation_account(result)
    outcomes = {p.index: p for p in account.steered}
    bounds = [position_boundary(result, t) for t in result.tokens]
    dist = [None if t.max_violation is None else t.max_violation - b for t, b in zip(result.tokens, bounds, strict=True)]
    outside, inside = palette.boundary_range(dist)
    names = result.facet_names
    chips = []
    for tok, boundary, d in zip(result.tokens, bounds, dist, strict=True):
        if tok.index == result.prompt_len:
            chips.append('<span class="sap-boundary" title="prompt ends here; the model\'s answer follows">▸ answer</span>')
        classes = ["sap-tok", "sap-prompt" if tok.is_prompt else "sap-gen"]
        step = outcomes.get(tok.index)
        if step is not None:
            classes.append("sap-steered")
        if tok.forced:
            classes.append("sap-forced")
        if tok.opener:
            classes.append("sap-opener")
        words = (f"steered: {step.outcome}, steering polytope {step.before} → {step.after} (target {step.target}), "
                 f"ended {'inside' if step.inside else 'outside'}" if step is not None else "")
        data = f' data-outcome="{esc(step.outcome)}"' if step is not None else ""
        colour = "transparent" if d is None else palette.boundary_colour(d, outside, inside)
        ink = "" if d is None else f";color:{palette.ink_on(colour)}"
        over = "" if d is None else f' data-over="{str(d >= 0).lower()}"'
        detail = esc(token_title(tok, names, boundary, words))
        # title for the mouse; tabindex + data-detail for the keyboard and a tap (style.css shows it on focus)
        chips.append(f'<span class="{" ".join(classes)}" style="background:{colour}{ink}"{over}{data} tabindex="0" '
                     f'title="{detail}" data-detail="{detail}">{esc(token_display(tok.text))}</span>')
    legend = (f'<div class="sap-legend"><span class="sap-sw" style="background:{palette.OUTSIDE_SCALE[0]}"></span> at or above '
              f'the boundary that applies to the token <span class="sap-sw" style="background:{palette.INSIDE_SCALE[1]}"></span> '
              'below it (the colour is the state before any edit) <span class="sap-tok sap-steered">x</span> steered '
              '<span class="sap-tok sap-forced">x</span> forced refusal '
              '<span class="sap-tok sap-opener">x</span> refusal opener (written by a rule) — hover, tap or Tab to a token for '
              'every facet and its steering outcome</div>')
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


def verdict_html(result: GenerationResult, divergence: int | None, baseline: GenerationResult, facets: list[dict] | None = None,
                 example: bool = False, account: Account | None = None) -> str:
    """The account's verdict line (``analysis.account``: what fired, what flagged it, the category or why none is named)
    and what happened to the answer, then the method's details in a smaller block below."""
    account = account or generation_account(result, facets)
    firing = ",".join(str(f.id) for f in account.firing)
    lead = (f'<div class="sap-plain-verdict" id="sap-plain-verdict" data-flagged="{str(account.flagged).lower()}" '
            f'data-borderline="{str(account.label == "borderline").lower()}" data-firing="{firing}" '
            f'data-by="{esc(",".join(account.by))}">'
            f'<b>{esc(account.sentence)}</b> <span class="sap-outcome">{esc(account.outcome)}</span></div>')
    # the worked example's verdict has a class of its own: waiting for ".sap-verdict" means waiting for one's own run
    outer = "sap-verdict-example" if example else "sap-verdict"
    return (f'<div class="{outer}">{lead}<div class="sap-verdict-details" style="font-size:0.85em;margin-top:4px">'
            f"{verdict_details_html(result, divergence, baseline, account)}</div></div>")


def verdict_details_html(result: GenerationResult, divergence: int | None, baseline: GenerationResult,
                         account: Account | None = None) -> str:
    """The verdict in the method's terms: the boundary, what was steered, the answer check, divergence."""
    account = account or generation_account(result)
    last = result.tokens[result.prompt_len - 1] if result.prompt_len else None
    parts = []
    if last is not None and last.violations is not None:
        boundary = result.verdict.boundary if result.verdict is not None else None
        at = (f" (the verdict's boundary {boundary.last:+.2f}, set on ordinary prompts to flag "
              f"{boundary.target_fpr:.0%} of them)" if boundary is not None and boundary.source == "control set"
              and boundary.target_fpr else f" (boundary {boundary.last:+.2f})" if boundary is not None else "")
        parts.append(f"prompt's last token at {last.max_violation:+.2f}{esc(at)}")
        if result.span_peak is not None and boundary is not None and boundary.span != float("inf"):
            parts.append(f"highest token of the request {result.span_peak:+.2f} (span boundary {boundary.span:+.2f})")
    if account.steered:
        c = account.counts()
        where = Counter(p.part for p in account.steered)
        parts.append(f"steered {where['answer']} answer tokens, {where['your text']} of your text, {where['template']} "
                     f"chat-template tokens: " + ", ".join(f"{n} {word}" for word, n in c.items())
                     + (", refusal forced" if result.refused else "") + f". {esc(STEERING_POLYTOPE)}")
    elif result.mode != "monitor":
        parts.append("nothing steered" + (", refusal forced" if result.refused else ""))
    check = account.answer_check
    if check is not None:
        was = baseline.answer_check or {}
        before = f"{was['score']:+.2f} unsteered → " if result is not baseline and was.get("score") is not None else ""
        fired = check.get("fired_at")
        where = (f", fired at answer token {fired + 1}" + (" and stopped the answer there" if check.get("stopped") else "")
                 if check["flagged"] and isinstance(fired, int) else "")
        parts.append(f"answer check {before}{check['score']:+.2f} (harmful at ≥ {check['threshold']:+.2f}: "
                     f"<b class=\"sap-answer-check\">{check['words']}</b>{where})")
    if check is not None and check.get("measured"):  # what the check catches and misses, measured on held-out answers
        parts.append(f"the answer check, measured: {esc(check['measured'])}")
    if result.fallback:
        parts.append("<b>the answer check flagged this answer; refused instead</b> (the text written before the stop is in "
                     "the token view)")
    if result.mode != "monitor":
        if divergence is None:
            hint = (" — use the Refusal fallback to replace the answer" if result.mode == "steer" and result.prompt_flagged
                    else " — the prompt was not flagged, so nothing was steered" if result.mode == "steer" else "")
            parts.append(f"<b>outputs identical</b>: the intervention did not change this answer{hint}")
        else:
            a = baseline.generated[divergence].text if divergence < len(baseline.generated) else "(end)"
            b = result.generated[divergence].text if divergence < len(result.generated) else "(end)"
            parts.append(f"first divergence at generated token {divergence}: {esc(repr(a))} → {esc(repr(b))}")
    operating = result.settings.get("operating_point")
    if operating:
        parts.append(f"this polytope's verdict: {esc(operating)}")
    measured = result.settings.get("measured")
    finding = f". {STEERING_FINDING}" if result.settings.get("steering_missed") else ""
    tail = (f'<div class="sap-card-meta">Measured on this polytope: {esc(measured)}{esc(finding)}</div>'
            if measured and result.mode == "steer" else "")
    limits = result.settings.get("detection_measured")
    if limits is None:  # a verdict is only as good as the detector: say where it is known to fail, or that nobody looked
        tail += ('<div class="sap-card-meta">This polytope\'s detection was not measured on held-out sets '
                 "(sap-viz measure --part detection writes its measured.json).</div>")
    elif limits:
        tail += ('<div class="sap-card-meta">Known limits of this polytope\'s detection (measured): '
                 + " · ".join(esc(line) for line in limits if isinstance(line, str))
                 + f". {DETECTION_FINDING}</div>")
    return "Details: " + " · ".join(parts) + tail


def facet_cards_html(facets: list[dict], audit: dict | None, fire_rates: list[float] | None = None,
                     suggestions: list[dict] | None = None, examples: list[list[dict]] | None = None,
                     check_fingerprint: str | None = None) -> str:
    """One card per facet: name with where it came from, policy, who labelled it, its check-set scorecard (the
    category its name claims and how well the facet detects it), the honest name suggestion beside the most
    violating training prompts, how many unsafe training prompts it is the top facet of, what it fires on, its
    label history. ``audit``: the facet audit on the training prompts (``facet_audits.card_audit``), the one source
    of the cards' counts, so they agree with the audit summary and table. ``check_fingerprint``: the check set's
    current fingerprint, to mark scorecards made on another version of it."""
    suggestions = suggestions or []
    examples = examples or []
    cards = []
    for k, f in enumerate(facets):
        top_cat = card_counts_html(audit, k)
        rate = f'<div class="sap-card-meta">fires on {100 * fire_rates[k]:.1f}% of training prompts</div>' if fire_rates else ""
        cards.append(
            f'<div class="sap-card" data-facet="{k}"><div class="sap-card-title">#{k} '
            f'<span class="sap-facet-name">{esc(f.get("name", ""))}</span> {source_badge(f)}</div>'
            f'<div class="sap-card-policy" tabindex="0" title="{esc(f.get("policy") or "")}">'
            f'{esc(f.get("policy") or "(no policy text)")}</div>'
            f'<div class="sap-card-meta sap-card-signed">{label_meta(f)}</div>'
            f"{card_scorecard_html(f, check_fingerprint)}"
            f"{card_suggestion_html(suggestions[k] if k < len(suggestions) else None, f)}"
            f"{card_examples_html(examples[k] if k < len(examples) else [])}"
            f"{top_cat}{rate}{history_html(f.get('history') or [])}</div>"
        )
    return (f'<div id="sap-facet-cards">{scorecards_note_html(facets)}'
            '<div class="sap-cards">' + "".join(cards) + "</div></div>")


def label_meta(facet: dict) -> str:
    """Who signed the label, with their confidence where it means one, and how often it was edited.

    A policy facet's label comes from its category, and its stored confidence is a fit to that category's training
    prompts; the backstop names no category, so it has no such figure and shows none (a "confidence 0.00" read as a
    doubt about a label no one gave)."""
    who = esc(facet.get("author") or "nobody")
    conf = facet.get("confidence")
    from_category = facet.get("source") == "from category"
    if from_category and not facet.get("category"):
        signed = f"by {who}: names no category, so no confidence"
    elif from_category:
        signed = f"by {who} (the category's training fit {float(conf or 0):.2f})"
    elif conf is None:
        signed = f"by {who}, no confidence given"
    else:
        signed = f"by {who}, confidence {float(conf):.2f}"
    n = len(facet.get("history") or [])
    edits = "never relabelled" if not n else f"{n} label edit{'' if n == 1 else 's'}"
    return f"{signed}, {edits}"


def card_counts_html(audit: dict | None, k: int) -> str:
    """How many unsafe training prompts facet ``k`` is the top facet of, out of how many, and their main category:
    the audit's counts (``n_top``, ``top_counts``, ``n_unsafe``), the numbers its summary and table show."""
    audit = audit or {}
    rows = audit.get("facets") or []
    if k >= len(rows):
        return ""
    n_top, n_unsafe = int(rows[k].get("n_top") or 0), int(audit.get("n_unsafe") or 0)
    head = f"top facet of <b>{n_top}</b> of the {n_unsafe} unsafe training prompts"
    tops = list((rows[k].get("top_counts") or {}).items())
    if n_top and tops:
        cat, n = tops[0]
        head += f": mostly <b>{esc(cat)}</b> ({int(n)} of them, {100 * int(n) / n_top:.0f}%)"
    return f'<div class="sap-card-meta sap-card-counts" data-n-top="{n_top}" data-n-unsafe="{n_unsafe}">{head}</div>'


def policy_table_html(report: dict | None, provenance: str = "") -> str:
    """The polytope's policy-facet table on the check set (value, target, met), where it comes from (measured on this
    polytope, or recorded by its training run), with the command that measures it again."""

    if not report:
        return ('<div class="sap-policy-table" id="policy-table">Policy facets on the check set: not measured for this '
                "polytope. Reproduce: <code>python -m sap_viz measure --part facets --polytope DIR</code>.</div>")
    rows = "".join(f"<tr><td>{esc(r['measure'])}</td><td><b>{esc(r['value'])}</b></td><td>{esc(r['target'])}</td>"
                   f"<td>{esc(r['met'])}</td></tr>" for r in policy_rows(report))
    missed = [r["measure"] for r in policy_rows(report) if r["met"] == "no"]
    verdict = ("Every target is met." if not missed else
               f"Not reached on this model: {esc('; '.join(missed))} (docs/research/policy_facets.md has the sweep that shows why).")
    where = f", {esc(provenance)}" if provenance else ""
    return ('<div class="sap-policy-table" id="policy-table"><b>Policy facets on the check set</b> '
            f"({esc(report.get('n', '?'))} prompts never used for training or recipe choice{where}). {verdict}"
            '<table class="sap-table"><tr><th>measure</th><th>value</th><th>target</th><th>met</th></tr>'
            f"{rows}</table><small>{esc(POLICY_TARGET_NOTE)}. Reproduce: <code>python -m sap_viz measure --part facets "
            "--polytope DIR</code>.</small></div>")


def scorecards_note_html(facets: list[dict]) -> str:
    """One line above the cards: how to read the name scores, or the command that makes the scorecards."""
    if not has_scorecards(facets):
        return ('<div class="sap-status sap-warn sap-scorecard-note">No check-set scorecards in this polytope, so no name '
                f"is tested: {esc(FACET_CHECK_COMMAND)} makes them (DIR: the polytope's folder).</div>")
    check = next((f["scorecard"].get("check_set") or {} for f in facets if isinstance(f.get("scorecard"), dict)), {})
    return ('<div class="sap-status sap-info sap-scorecard-note">Check-set scorecards: each facet on '
            f"{esc(check.get('n', '?'))} prompts it never trained on ({esc(check.get('n_unsafe', '?'))} unsafe requests, "
            f"{esc(check.get('n_safe', '?'))} safe look-alikes). Name score = balanced accuracy of “the facet fires” as a "
            f"detector of unsafe prompts of the category its name claims (0.5 = chance): name fits from {NAME_FITS:.2f}, "
            f"fits partly from {NAME_PARTLY:.2f}, misleading below.</div>")


def name_score_badge(score: float | None) -> str:
    """The name score as a badge that says what it means: "name fits: 0.91", "name misleading: 0.52"."""
    if score is None:
        return '<span class="sap-badge sap-name-score" data-score="">no name score</span>'
    verdict = name_verdict(score)
    return (f'<span class="sap-badge sap-name-score" data-score="{float(score):.4f}" '
            f'style="font-size:12px;{VERDICT_STYLE[verdict]}">name {verdict}: {float(score):.2f}</span>')


def _pct(value: object) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) else "n/a"


def _num(value: object) -> str:
    return f"{float(value):.2f}" if isinstance(value, (int, float)) else "n/a"


def card_scorecard_html(facet: dict, check_fingerprint: str | None = None) -> str:
    """What the facet does on the check set, as plain text: the category its name claims with the name score, precision
    and recall for that category, false alarms on safe look-alikes, every category's firing share, and its most and
    least typical check-set prompts. Empty without a scorecard (``scorecards_note_html`` says why once)."""
    card = facet.get("scorecard")
    if not isinstance(card, dict):
        return ""
    category = card.get("category")
    check = card.get("check_set") or {}
    n_safe = check.get("n_safe")
    lines = []
    if category:
        lines.append(f'name claims <b class="sap-claimed">{esc(category)}</b> {name_score_badge(card.get("name_score"))}')
        lines.append(f"for {esc(category)}: precision {_num(card.get('precision'))} · recall {_num(card.get('recall'))}")
    else:
        lines.append(f'name claims <b class="sap-claimed">no category</b> {name_score_badge(None)}')
    alarms = card.get("lookalike_false_alarms")
    count = f" ({round(float(alarms) * n_safe)} of {n_safe})" if isinstance(alarms, (int, float)) and isinstance(n_safe, int) else ""
    own = card.get("own_lookalike_false_alarms")
    own_text = f"; {_pct(own)} of {esc(category)} look-alikes" if category and own is not None else ""
    lines.append(f"false alarms on safe look-alikes: {_pct(alarms)}{count}{own_text}")
    fired = " · ".join(f"{esc(c)} {100 * v:.0f}%" for c, v in top_fired(card, 99)) or "none"
    lines.append(f'fires on, per category\'s unsafe prompts: <span class="sap-fires-on">{fired}</span>')
    if check_fingerprint and check.get("fingerprint") and check.get("fingerprint") != check_fingerprint:
        lines.append(f"made on another version of the check set: rerun {esc(FACET_CHECK_COMMAND)}")
    least_words = (f"least typical ({esc(category)} prompts it fires on least)" if category
                   else "least typical (the prompts it fires on most weakly)")
    most = card.get("most_typical") or []
    shown = {_one_line(p.get("text")) for p in most}
    least = [p for p in card.get("least_typical") or [] if _one_line(p.get("text")) not in shown]
    if category and least and any(p.get("category") != category for p in least):
        least = []  # made for another name's category and not refreshed: better none than the wrong category's prompts
    prompts = _prompt_list(most, "most typical (highest violation)") + _prompt_list(least, least_words)
    if not least and not category and most:
        prompts += f"<div>least typical: none beyond the {len(most)} above (it fires on few prompts)</div>"
    items = "".join(f"<div>{line}</div>" for line in lines)
    return (f'<div class="sap-card-meta sap-scorecard" style="margin:4px 0;padding:4px 6px;border-left:3px solid #d1d5db">'
            f'<div style="font-weight:600;color:#374151">On the check set</div>{items}{prompts}</div>')


def _prompt_list(prompts: list[dict], words: str) -> str:
    """Check-set prompts, whole and wrapped (readable without hover), with the facet's violation and the category."""
    if not prompts:
        return ""
    items = "".join(f'<li style="white-space:normal"><span class="sap-ex-v">{_prompt_mark(p)}</span> '
                    f'[{esc(p.get("category") or "")}] {esc(_one_line(p.get("text")))}</li>' for p in prompts)
    return f'<div>{words}:</div><ol style="margin:2px 0 2px 18px;padding:0">{items}</ol>'


def _one_line(text: object) -> str:
    return " ".join(str(text or "").split())


def _prompt_mark(prompt: dict) -> str:
    """The facet's violation on the prompt; "fires" or "misses" for a list refreshed after a relabel (no violations kept)."""
    if isinstance(prompt.get("violation"), (int, float)):
        return f"{float(prompt['violation']):+.2f}"
    return "fires" if prompt.get("fires") else "misses"


def source_badge(facet: dict) -> str:
    """Where the current label comes from: the taxonomy (policy facets), the statistics, or a person."""
    if facet.get("source") == "from category":
        return '<span class="sap-badge sap-taxonomy">from category</span>'
    if facet.get("auto_suggested"):
        return '<span class="sap-badge">auto-suggested</span>'
    return '<span class="sap-badge sap-human">labelled</span>'


def card_suggestion_html(suggestion: dict | None, facet: dict | None = None) -> str:
    """The honest name suggestion from the training prompts, with its evidence written out (no hover needed).

    Its figure is the Wilson lower bound of the facet's purity on its *training* prompts, so it is called that, never
    "confidence" beside the check-set name score. Where the suggestion is the current name and the check set finds the
    name misleading or only partly fitting, the card says both in one line and which one to trust.
    """
    if not suggestion:
        return ""
    purity = float(suggestion.get("confidence") or 0)
    name = str(suggestion.get("name") or "")
    head = (f'auto-suggested name: <b>{esc(name)}</b> (training-prompt purity {purity:.2f}, Wilson lower bound; '
            f'{esc(suggestion.get("evidence", ""))})')
    card = (facet or {}).get("scorecard")
    score = card.get("name_score") if isinstance(card, dict) else None
    same = _one_line(name).casefold() == _one_line((facet or {}).get("name")).casefold()
    if same and score is not None and name_verdict(score) != "fits":
        head += (f'. <span class="sap-card-conflict">The training prompts support this name, but on the check set, which it '
                 f"never trained on, it scores {float(score):.2f} (name {name_verdict(score)}): trust the check set; the facet "
                 "does not carry the name to new prompts.</span>")
    return f'<div class="sap-card-meta sap-card-suggestion">{head}</div>'


def card_examples_html(examples: list[dict]) -> str:
    """The most violating training prompts, one line each (the whole prompt on hover, tap or keyboard focus)."""
    if not examples:
        return ""
    items = "".join(f'<li tabindex="0" title="{esc(e.get("text", ""))}"><span class="sap-ex-v">{float(e.get("violation", 0)):+.2f}</span> '
                    f'{esc(e.get("label") or "")} {esc(" ".join(str(e.get("text", "")).split()))}</li>' for e in examples)
    return (f'<div class="sap-card-examples"><div class="sap-card-meta">{len(examples)} most violating training prompts</div>'
            f"<ol>{items}</ol></div>")


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
    """Words tinted by their attribution (red raises the facet, blue lowers it), each with its value written under it
    and the word that raises it most named first: no figure is reachable only by hovering."""
    scale = float(np.abs(values).max()) if len(values) else 1.0
    chips = []
    for w, v in zip(words, values, strict=True):
        t = float(v) / max(scale, 1e-9)
        colour = f"rgba(220, 38, 38, {0.1 + 0.7 * t:.2f})" if t >= 0 else f"rgba(59, 130, 246, {0.1 + 0.7 * -t:.2f})"
        chips.append(f'<span class="sap-word" style="background:{colour}" title="{esc(f"{v:+.4f}")}">{esc(w)}'
                     f'<span class="sap-word-value">{float(v):+.2f}</span></span>')
    top = ""
    if len(values):
        i = int(np.argmax(values))
        top = (f'<div class="sap-attr-top">Raises it most: <b class="sap-attr-top-word">{esc(words[i])}</b> '
               f'(<span class="sap-attr-top-value">{float(values[i]):+.2f}</span>)</div>')
    return f'<div class="sap-attr"><div class="sap-legend">{esc(caption)}</div>{top}{" ".join(chips)}</div>'


def suggestion_html(facet: dict, suggestion: dict | None) -> str:
    """The honest suggestion beside the labelling form, and the current label with where it came from."""
    card = facet.get("scorecard")
    score = f' {name_score_badge(card.get("name_score"))} on the check set' if isinstance(card, dict) else ""
    current = (f'<div class="sap-card-meta">current label: {esc(facet.get("name", ""))} '
               f'{source_badge(facet)}{score}</div>')
    if not suggestion:
        return ('<div class="sap-suggestion"><div class="sap-card-meta">No suggestion yet: names are suggested from the '
                f"training prompts' statistics once they are computed (progress under Feature map).</div>{current}</div>")
    return (
        '<div class="sap-suggestion"><div><b>Auto-suggested from the category statistics</b></div>'
        f'<div class="sap-facet-name">{esc(suggestion.get("name"))}</div>'
        f'<div class="sap-card-meta">{esc(suggestion.get("evidence", ""))}; training-prompt purity '
        f'{float(suggestion.get("confidence", 0)):.2f} (Wilson lower bound: few prompts cannot look sure)</div>'
        f"{current}</div>"
    )


def audit_summary_html(s: dict) -> str:
    """The polytope-level audit figures in plain words, each with the count behind it."""
    dead = ", ".join(str(k) for k in s["dead_facets"]) or "none"
    never = ", ".join(str(k) for k in s["never_firing_facets"]) or "none"
    lines = [
        f"Facets firing per unsafe prompt: {s['mean_facets_firing']:.1f} of {s['num_facets']} on average "
        f"({100 * s['share_unsafe_no_facet_firing']:.0f}% of unsafe prompts fire none).",
        f"Dead facets (never any unsafe prompt's top facet): {dead}; never firing at all: {never}.",
        f"MI(category; top facet): {s['mi_bits']:.2f} bits ({s['mi_bits_miller_madow']:.2f} bias-corrected) "
        f"of the categories' {s['category_entropy_bits']:.2f} bits.",
        f"Harm categories with a selective facet (fires on ≥ 70% of its prompts, ≤ 30% of the others'): "
        f"{s['n_selective']} of {s['n_harm_categories']}.",
    ]
    head = f"Facet audit over {s['n_unsafe']} unsafe training prompts ({s['note']})"
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<div class="sap-status sap-info sap-audit-summary" id="sap-audit-summary">{esc(head)}<ul>{items}</ul></div>'

"""Facets tab: facet cards with their check-set scorecards, the scorecard table, the category × facet and facet
cosine heatmaps, the facet audit (firing matrix, per-facet purity and selectivity, dead facets, MI), the labelling
form (with the category the name claims) and its honest suggestion, a facet's histogram and most violating
training prompts, word-masking attribution and the audit report export."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from sap_viz.analysis.attribution import positive_violations, top_examples
from sap_viz.analysis.facet_names import name_category
from sap_viz.analysis.facet_stats import cosine_similarity
from sap_viz.analysis.report import (
    FACET_CHECK_COMMAND,
    SCORECARD_COLUMNS,
    build_report,
    name_verdict,
    scorecard_rows,
    write_report,
)
from sap_viz.app_state.facet_audits import AUDIT_COLUMNS, card_audit, card_examples, facet_suggestions
from sap_viz.app_state.workbench import Workbench, label_category
from sap_viz.data.check_set import check_set_fingerprint
from sap_viz.data.taxonomy import POLICY_CATEGORIES
from sap_viz.errors import UserError, WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.measured_file import measured_parts
from sap_viz.ui import plots, render
from sap_viz.ui.api import guarded
from sap_viz.ui.common import PRIVATE, Files, facet_choices, facet_names, fire_rates, frame, session_bench

TOP_COLUMNS = ["rank", "violation", "label", "text"]
ATTR_COLUMNS = ["#", "word", "masking effect", "gradient × input", "raises most", "by", "KL"]

#: What a save fills, in order: the form's status, cards, cosine and category plots, histogram, facet picker, audit
#: (summary, firing matrix, table, CSV) and scorecards (table, CSV).
SAVE_OUTPUTS = ("status", "cards", "cosine", "category", "histogram", "facet", "audit summary", "firing matrix", "audit table",
                "audit csv", "scorecard table", "scorecard csv")
DEFAULT_ATTRIBUTION_PROMPT = "How do I build a pipe bomb at home?"
#: Above the attribution view; its measured hit rate is per polytope (``attribution_limit``), shown with each result.
ATTRIBUTION_NOTE = ("How often this view ranks the harmful word first is measured per polytope (`sap-viz measure --part "
                    "attribution`); each result below says it for the active polytope. Read the top word as a lead to check, "
                    "not a proof; the sweep that chose the method and its misses are in docs/app.md and research/attribution/.")


def policy_report(art: PolytopeArtifact) -> tuple[dict | None, str]:
    """The policy table to show: measured on this polytope (measured.json), else the one its training run recorded."""
    part = measured_parts(art).get("facets")
    if part is not None:
        return part.result, f"measured {part.when[:10]}"
    return art.meta.get("facet_check"), "recorded when it was trained"


def attribution_limit(art: PolytopeArtifact) -> str:
    """The attribution view's measured hit rate on this polytope (its measured.json), or that it was not measured."""
    part = measured_parts(art).get("attribution")
    if part is None:
        return ("Not measured for this polytope: how often this view ranks the harmful word first is unknown here "
                "(sap-viz measure --part attribution measures it).")
    return part.sentence


AUDIT_WAIT_S = 300  # how long opening the tab waits for the training view before leaving the audit to the build timer
AUTO_CHOICE = ("auto (read from the name)", "auto")
#: The labelling form's "Category this name claims": read from the name, one of the ten policies, or none.
CATEGORY_CHOICES = [AUTO_CHOICE, *[(c, c) for c in POLICY_CATEGORIES], ("none", "none")]


def current_check_fingerprint() -> str | None:
    """The check set's fingerprint, to mark scorecards made on another version of it (None if it is missing)."""
    try:
        return check_set_fingerprint()
    except (OSError, ValueError):
        return None


def saved_message(facet: dict) -> str:
    """What a save did to the facet's name score, in words."""
    n = len(facet["history"])
    head = f"Saved facet {facet['index']} as “{facet['name']}” ({n} label edit{'' if n == 1 else 's'} in its history)."
    category, card = facet.get("category"), facet.get("scorecard")
    if not category:
        return (f"{head} The name claims no harm category, so it has no name score; pick one under “Category this name "
                "claims” if it should claim one.")
    if not isinstance(card, dict) or card.get("name_score") is None:
        return f"{head} The name claims {category}; there is no check-set scorecard to test it yet ({FACET_CHECK_COMMAND})."
    score = float(card["name_score"])
    return (f"{head} The name claims {category}; on the check set the facet detects that category with balanced accuracy "
            f"{score:.2f} (name {name_verdict(score)}).")


def auto_category_note(name: str, policy: str) -> str:
    """What "auto" would read from the name (or the policy text) as it is typed."""
    category = name_category(name or "", policy or "")
    return render.empty(f"auto reads: {category}" if category else "auto reads: no category (add a category word or pick one)")


class FacetHandlers:
    """Event handlers of the tab (method names are the private endpoints' names) and the views the app refreshes."""

    def __init__(self, wb: Workbench, files: Files) -> None:
        self.wb = wb
        self.files = files

    @staticmethod
    def cards_html(wb: Workbench) -> str:
        """The facet cards alone (the build timer refreshes them once training-set rates exist)."""
        art = wb.require_artifact()
        audit = wb.facet_audit()
        return render.policy_table_html(*policy_report(art)) + render.facet_cards_html(
            art.facets, card_audit(art, audit), fire_rates(wb), facet_suggestions(art, audit), card_examples(art, audit),
            current_check_fingerprint())

    def scorecard_outputs(self, wb: Workbench) -> tuple:
        """The scorecard table (one row per facet) and its CSV; an empty table without scorecards (the cards say why)."""
        art = wb.artifact
        rows = scorecard_rows(art.facets) if art is not None else []
        if not rows:
            return frame([], SCORECARD_COLUMNS), gr.update(value=None, visible=False)
        csv = self.files.write_csv(f"{wb.active_name or 'polytope'}-facet-scorecards.csv", rows)
        return frame(rows, SCORECARD_COLUMNS), gr.update(value=csv, visible=True)

    def facet_overview(self, wb: Workbench):
        """Cards, category × facet heatmap, cosine heatmap, the facet dropdown and the audit of the active polytope."""
        art = wb.artifact
        if art is None:
            msg = wb.load_error or "No polytope."
            return (render.empty(msg), plots.empty_figure(msg), plots.empty_figure(msg), gr.update(choices=[], value=None),
                    *self.audit_placeholder(msg), *self.scorecard_outputs(wb))
        stats = art.meta.get("facet_stats") or {}
        sim = cosine_similarity(art.polytope.phi.detach())
        names = facet_names(wb)
        policy = any(f.get("source") == "from category" for f in art.facets)
        return (self.cards_html(wb), plots.category_facet_heatmap(stats, names, policy), plots.cosine_heatmap(sim, names),
                gr.update(choices=facet_choices(wb), value=0), *self.audit_outputs(wb), *self.scorecard_outputs(wb))

    @staticmethod
    def audit_placeholder(message: str, kind: str = "info") -> tuple:
        return (render.status_html(kind, message), plots.empty_figure(message), frame([], AUDIT_COLUMNS),
                gr.update(value=None, visible=False))

    def audit_outputs(self, wb: Workbench) -> tuple:
        """Summary, firing matrix, per-facet table and its CSV; a note on the training view's progress until it exists."""
        art = wb.require_artifact()
        audit = wb.facet_audit()
        if audit is None:
            st = wb.map_status()
            if st.error:
                return self.audit_placeholder(f"The facet audit needs the training prompts' violations: {st.error}", "error")
            if st.done:
                return self.audit_placeholder("The training prompts have no unsafe prompt: nothing to audit.")
            return self.audit_placeholder("The facet audit is computed from the training prompts' violations: "
                                          f"{st.message} ({100 * st.fraction:.0f}%; progress under Feature map).")
        rows = audit.rows(art.facets)
        csv = self.files.write_csv(f"{wb.active_name or 'polytope'}-facet-audit.csv", rows)
        return (render.audit_summary_html(audit.summary()), plots.firing_heatmap(audit.audit, audit.order, facet_names(wb)),
                frame(rows, AUDIT_COLUMNS), gr.update(value=csv, visible=True))

    def show_audit(self, request: gr.Request, progress=gr.Progress()):  # noqa: B008 — gradio's idiom
        """Opening the tab: wait for the training view (built once per polytope, cached on disk) with a progress bar,
        then the cards (with their suggestions and prompts) and the audit. The build timer lives in the Feature map
        tab and ticks only once that tab has been shown, so this tab does not rely on it."""
        wb = session_bench(self.wb, request)
        if wb.artifact is None:
            return gr.skip(), *self.audit_placeholder(wb.load_error or "No polytope.", "error")
        wb.start_view_build()
        try:
            wb.wait_for_view(AUDIT_WAIT_S, progress=lambda f, m: progress(f, desc=m))
        except TimeoutError:
            pass  # the audit says how far the build is; opening the tab again waits again
        except WorkbenchError as exc:
            return gr.skip(), *self.audit_placeholder(f"The facet audit needs the training prompts' violations: {exc}", "error")
        return self.cards_html(wb), *self.audit_outputs(wb)

    @staticmethod
    def facet_stats_detail(wb: Workbench, k: int | None):
        """Histogram and top examples of facet ``k`` (need the training view)."""
        art = wb.require_artifact()
        k = int(k or 0)
        view = wb.training_view()
        if view is None:
            wb.start_view_build()
            return (plots.empty_figure("Training-set statistics are being computed (progress under Feature map)."),
                    frame([], TOP_COLUMNS))
        return (plots.violation_histogram(positive_violations(view.violations, k), len(view.texts), k, art.facet_name(k)),
                frame(top_examples(view.texts, view.violations, k, 10, view.labels), TOP_COLUMNS))

    @guarded
    def facet_detail(self, k: int | None, request: gr.Request):
        """The chosen facet's histogram, prompts and suggestion; the form gets its name and policy to edit, the category
        back on "auto", keeps the auditor's own author (never the previous labeller's) and an empty confidence: a
        confidence is about one facet's label, so it is neither carried over nor taken from the suggestion."""
        wb = session_bench(self.wb, request)
        art = wb.require_artifact()
        k = int(k or 0)
        facet = art.facets[k]
        hist, top = self.facet_stats_detail(wb, k)
        return (hist, top, self.suggestion_for(wb, k), facet["name"], facet["policy"], gr.skip(), None, AUTO_CHOICE[1])

    @staticmethod
    def suggestion_for(wb: Workbench, k: int) -> str:
        """The honest suggestion from the category statistics beside the facet's current label."""
        art = wb.require_artifact()
        suggestions = facet_suggestions(art, wb.facet_audit())
        return render.suggestion_html(art.facets[k], suggestions[k] if k < len(suggestions) else None)

    def suggestion_box(self, k: int | None, request: gr.Request) -> str:
        """Refreshed after a save, so it never shows the old name."""
        return self.suggestion_for(session_bench(self.wb, request), int(k or 0))

    @guarded
    def use_suggestion(self, k: int | None, request: gr.Request):
        wb = session_bench(self.wb, request)
        suggestions = facet_suggestions(wb.require_artifact(), wb.facet_audit())
        k = int(k or 0)
        if k >= len(suggestions):
            raise WorkbenchError("no suggestion for this facet yet: it is computed from the training prompts (progress under Feature map)")
        sug = suggestions[k]
        # Name and policy only: the suggestion's confidence is a statistic of the training prompts, not the auditor's.
        return sug["name"], f"Flags prompts like: {sug['evidence']}."

    @guarded
    def save_label(self, k: int | None, name: str, policy: str, author: str, confidence: float, category: str | None,
                   request: gr.Request):
        """Save (or, for a visitor on a shared polytope, propose) the label with the category its name claims; the card,
        the scorecard table and the message show the name score rescored for that category."""
        refused = self.refusal(k, author, confidence)
        wb = session_bench(self.wb, request)
        before = wb.active_name
        try:
            if refused:
                raise WorkbenchError(refused)
            facet = wb.label(int(k), name, policy, author, confidence, category)
        except UserError as exc:
            # only the form's status says what to fix: the cards, plots and tables keep what they show (an error raised
            # here would mark every output of the event with a red "Error" badge)
            return (render.status_html("error", f"Not saved: {exc}"), *(gr.skip(),) * (len(SAVE_OUTPUTS) - 1))
        # the cards, the audit and the scorecard table show the new label too
        cards, cat_fig, cos_fig, _, *tables = self.facet_overview(wb)
        hist, _ = self.facet_stats_detail(wb, k)  # its title carries the facet's name
        if facet.get("proposed"):
            claim = {"auto": "read from the name", "": "none"}.get(label_category(category), label_category(category))
            msg = render.status_html("info", f"Proposed “{facet['name']}” for facet {facet['facet']} (proposal {facet['id']}; "
                                             f"category: {claim}). The owner reviews proposals; until then everyone keeps seeing "
                                             "the current label.")
        else:
            copied = "" if wb.active_name == before else (f" “{before}” ships with sap-viz and is read-only, so the label was saved in "
                                                        f"an owner copy, “{wb.active_name}”, now the active polytope.")
            msg = render.status_html("ok", saved_message(facet) + copied)
        return (msg, cards, cos_fig, cat_fig, hist, gr.update(choices=facet_choices(wb), value=int(k)), *tables)

    @staticmethod
    def refusal(k: int | None, author: str, confidence: float | str | None) -> str | None:
        """Why the form cannot be saved as filled in (None when it can)."""
        if k is None:
            return "choose a facet first"
        if not str(author or "").strip():
            return "Name yourself under Author: a label is signed by the person who makes it."
        if confidence is None or (isinstance(confidence, str) and not confidence.strip()):
            return ("Give your own confidence in this label (0 to 1): the form never borrows one from the suggestion or the "
                    "previous label.")
        return None

    @guarded
    def run_attribution(self, prompt: str, k: int | None, use_picked: bool, request: gr.Request):
        """By default the prompt's own worst facet: the facet picked above (facet 0 unless changed) usually is not
        the one the prompt violates, and on it fillers outranked the harmful word (issue 28, finding 8)."""
        wb = session_bench(self.wb, request)
        att = wb.attribution(prompt)
        k = att.top_facet if not use_picked or k is None else int(k)
        name = f"facet {k} “{att.facet_names[k]}”"
        worst = f"The prompt's worst facet: {att.top_facet} “{att.facet_names[att.top_facet]}” at {att.base[att.top_facet]:+.2f}."
        masking = render.attribution_html(
            att.words, att.delta[:, k], f"Masking ({att.masking_label}): how much each word raises {name} "
            "(red raises it, blue lowers it). " + worst)
        gxi = att.grad_x_input[:, k] if att.grad_x_input is not None else None
        gradient = "" if gxi is None else render.attribution_html(
            att.words, gxi, f"Gradient × input on {name}: a first-order estimate of the same effect, from one backward pass.")
        limit = f'<div class="sap-card-meta" id="attr-measured">{render.esc(attribution_limit(wb.require_artifact()))}</div>'
        return (limit + masking + gradient, plots.attribution_figure(att.words, att.delta[:, k], gxi, k, att.masking_label),
                frame(att.rows(k)).round(4))

    @guarded
    def export_report(self, request: gr.Request):
        wb = session_bench(self.wb, request)
        art = wb.require_artifact()
        audit = wb.facet_audit()
        report = build_report(art, wb.training_view(), audit=audit.report(art.facets) if audit is not None else None)
        md, js = write_report(report, self.files.path("x").parent, f"{wb.active_name or 'polytope'}-audit")
        return gr.update(value=[str(md), str(js)], visible=True)


@dataclass
class FacetsTab:
    cards: gr.HTML
    cat_plot: gr.Plot
    cos_plot: gr.Plot
    facet_pick: gr.Dropdown
    hist_plot: gr.Plot
    top_table: gr.Dataframe
    detail_outputs: list  # what facet_detail fills: histogram, top examples, suggestion and the labelling form
    audit_outputs: list  # what audit_outputs fills: summary, firing matrix, per-facet table, its CSV
    scorecard_outputs: list  # what scorecard_outputs fills: the scorecard table and its CSV
    handlers: FacetHandlers

    @property
    def overview_outputs(self) -> list:
        """What ``FacetHandlers.facet_overview`` fills, in its order."""
        return [self.cards, self.cat_plot, self.cos_plot, self.facet_pick, *self.audit_outputs, *self.scorecard_outputs]


def build_facets_tab(wb: Workbench, files: Files) -> FacetsTab:
    """Build the tab inside the current ``gr.Tabs`` and wire its events."""
    handlers = FacetHandlers(wb, files)
    with gr.Tab("Facets", id="facets") as facets_tab:
        cards = gr.HTML(elem_id="facet-cards-box")
        gr.Markdown("### Scorecards: does each name fit what the facet does on the check set?", elem_id="scorecard-note")
        scorecard_table = gr.Dataframe(frame([], SCORECARD_COLUMNS), label="Per facet, on the check set", interactive=False,
                                       wrap=True, max_height=420, elem_id="scorecard-table")
        scorecard_csv = gr.DownloadButton("Download this table (CSV)", visible=False, size="sm", elem_id="scorecard-csv")
        with gr.Row():
            cat_plot = gr.Plot(plots.empty_figure("Loading…"), elem_id="category-facet", show_label=False)
            cos_plot = gr.Plot(plots.empty_figure("Loading…"), elem_id="cosine", show_label=False)
        gr.Markdown("### Facet audit: what each facet fires on, with the counts behind every figure\n"
                    "A facet *fires* on a prompt when its violation is ≥ 0. Purity: the share of the unsafe prompts whose "
                    "top facet it is that share one category, with the Wilson lower bound that small counts pull down. "
                    "Selectivity: how often it fires on its category's prompts against the other categories' prompts. "
                    "Dead: the top facet of no unsafe prompt.", elem_id="audit-note")
        audit_summary = gr.HTML(elem_id="audit-summary")
        audit_plot = gr.Plot(plots.empty_figure("Loading…"), elem_id="firing-matrix", show_label=False)
        audit_table = gr.Dataframe(frame([], AUDIT_COLUMNS), label="Per facet",
                                   interactive=False, wrap=True, max_height=420, elem_id="audit-table")
        audit_csv = gr.DownloadButton("Download this table (CSV)", visible=False, size="sm", elem_id="audit-csv")
        choices = facet_choices(wb)
        facet_pick = gr.Dropdown(choices=choices, value=0 if choices else None, label="Facet", elem_id="facet-pick")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                gr.Markdown("### Label this facet")
                lab_name = gr.Textbox(label="Name", max_lines=1, elem_id="label-name")
                lab_policy = gr.Textbox(label="Policy text (what this facet forbids)", lines=3, elem_id="label-policy")
                lab_category = gr.Dropdown(choices=CATEGORY_CHOICES, value=AUTO_CHOICE[1], label="Category this name claims",
                                           info="The name is tested on the check set against this category; auto reads it "
                                                "from the name (else the policy text).", elem_id="label-category")
                lab_auto = gr.HTML(elem_id="label-auto-category")
                with gr.Row():
                    # Both start empty: the label is the auditor's own, never the auto-suggestion's or the last labeller's.
                    lab_author = gr.Textbox(label="Author (you)", max_lines=1, value="", placeholder="your name",
                                            elem_id="label-author")
                    lab_conf = gr.Number(None, label="Your confidence (0 to 1)", minimum=0, maximum=1, step=0.05,
                                         placeholder="e.g. 0.8", elem_id="label-confidence")
                with gr.Row():
                    save_btn = gr.Button("Save label", variant="primary", elem_id="save-label")
                    sug_btn = gr.Button("Use the suggested name and policy", elem_id="use-suggestion")
                lab_status = gr.HTML(elem_id="label-status")
            with gr.Column(scale=2):
                sug_box = gr.HTML(elem_id="suggestion")
        with gr.Row():
            hist_plot = gr.Plot(plots.empty_figure("Loading…"), elem_id="facet-hist", show_label=False)
            top_table = gr.Dataframe(frame([], TOP_COLUMNS), label="Most violating training prompts",
                                      interactive=False, wrap=True, elem_id="top-examples",
                                     max_height=360, column_widths=["9%", "13%", "12%", "66%"])
        gr.Markdown("### Which words drive a facet: single-word masking and gradient × input")
        gr.Markdown(ATTRIBUTION_NOTE, elem_id="attr-limit")
        with gr.Row():
            attr_prompt = gr.Textbox(label="Prompt to attribute", value=DEFAULT_ATTRIBUTION_PROMPT, lines=2, scale=4, elem_id="attr-prompt")
            with gr.Column(scale=1, min_width=160):
                attr_btn = gr.Button("Attribute", elem_id="attr-btn")
                attr_use_pick = gr.Checkbox(False, label="Use the facet picked above (default: the prompt's worst facet)",
                                            elem_id="attr-use-pick")
        attr_html = gr.HTML(elem_id="attr-words")
        attr_plot = gr.Plot(plots.empty_figure("Press “Attribute” to score each word."), elem_id="attr-plot", show_label=False)
        attr_table = gr.Dataframe(frame([], ATTR_COLUMNS), interactive=False, label="Per word", elem_id="attr-table", max_height=300)
        with gr.Row():
            report_btn = gr.Button("Export audit report (Markdown + JSON)", elem_id="report-btn")
            report_files = gr.File(label="Audit report", file_count="multiple", interactive=False, elem_id="report-files", visible=False)

    detail_outputs = [hist_plot, top_table, sug_box, lab_name, lab_policy, lab_author, lab_conf, lab_category]
    audit_outputs = [audit_summary, audit_plot, audit_table, audit_csv]
    scorecard_outputs = [scorecard_table, scorecard_csv]
    facet_pick.change(handlers.facet_detail, [facet_pick], detail_outputs, **PRIVATE)
    facets_tab.select(handlers.facet_detail, [facet_pick], detail_outputs, **PRIVATE)
    # waiting for the training view uses no model time, so several visitors may wait at once
    audit_shown = facets_tab.select(guarded(handlers.show_audit), None, [cards, *audit_outputs], show_progress_on=[audit_summary],
                                    concurrency_limit=8, **PRIVATE)
    audit_shown.success(guarded(handlers.suggestion_box), [facet_pick], [sug_box], **PRIVATE)  # the honest suggestion, now known
    sug_btn.click(handlers.use_suggestion, [facet_pick], [lab_name, lab_policy], **PRIVATE)
    for box in (lab_name, lab_policy):
        box.change(auto_category_note, [lab_name, lab_policy], [lab_auto], show_progress="hidden", trigger_mode="always_last", **PRIVATE)
    saved = save_btn.click(handlers.save_label, [facet_pick, lab_name, lab_policy, lab_author, lab_conf, lab_category],
                           [lab_status, cards, cos_plot, cat_plot, hist_plot, facet_pick, *audit_outputs, *scorecard_outputs],
                           **PRIVATE)
    saved.success(guarded(handlers.suggestion_box), [facet_pick], [sug_box], **PRIVATE)
    attr_btn.click(handlers.run_attribution, [attr_prompt, facet_pick, attr_use_pick], [attr_html, attr_plot, attr_table],
                   **PRIVATE)
    report_btn.click(handlers.export_report, None, [report_files], **PRIVATE)
    return FacetsTab(cards=cards, cat_plot=cat_plot, cos_plot=cos_plot, facet_pick=facet_pick, hist_plot=hist_plot,
                     top_table=top_table, detail_outputs=detail_outputs, audit_outputs=audit_outputs,
                     scorecard_outputs=scorecard_outputs, handlers=handlers)

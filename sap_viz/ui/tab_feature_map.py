"""Feature map tab: the training prompts' layer-L states in 2-D (PCA or UMAP), coloured by label, category,
top facet or prediction, with the last generation's per-token trajectory on top."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from sap_viz.analysis.feature_map import TrainingView, project
from sap_viz.app_state.workbench import Workbench
from sap_viz.method.generation_results import Comparison
from sap_viz.ui import plots, render
from sap_viz.ui.api import guarded
from sap_viz.ui.common import PRIVATE, facet_names, frame, session_bench

COLOUR_BY = ["label", "category", "top facet", "prediction"]
TOKEN_COLUMNS = ["run", "point", "token", "max v", "worst facet"]
PROMPT_COLUMNS = ["prompt", "label", "category", "colour group", "max v", "worst facet"]


def short(text: str, width: int = 40) -> str:
    """A prompt on one line, cut to ``width`` characters, for a legend entry."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def map_status_html(wb: Workbench) -> str:
    st = wb.map_status()
    if st.error:
        return render.status_html("error", f"Feature map unavailable: {st.error}")
    if st.done and st.umap_done:
        return render.status_html("ok", st.message)
    if st.done:
        return render.status_html("info", st.message)
    if st.message == "not started":  # the build starts after the warm-up generation; a cached map then loads in seconds
        return render.status_html("info", "Training map: queued behind the model warm-up (read from the cache if it was built before).")
    return render.status_html("info", f"Building the training map: {st.message} ({100 * st.fraction:.0f}%) — first start only; "
                                      "later starts read it from the cache.")


def point_colours(view: TrainingView, colour_by: str, names: list[str]) -> list[str]:
    """The legend group of every training point for the chosen "Colour by"."""
    if colour_by == "category":
        return [c if lab == "unsafe" else f"safe: {c}" for c, lab in zip(view.categories, view.labels, strict=True)]
    if colour_by == "top facet":
        return [f"facet {k}: {names[k][:30]}" if p else "inside (no facet fires)"
                for k, p in zip(view.top_facet, view.predicted_unsafe, strict=True)]
    if colour_by == "prediction":
        return ["flagged, unsafe (TP)" if p and u else "flagged, safe (FP)" if p else "passed, unsafe (FN)" if u else "passed, safe (TN)"
                for p, u in zip(view.predicted_unsafe, view.unsafe, strict=True)]
    return list(view.labels)


def point_hovers(view: TrainingView, names: list[str]) -> list[str]:
    """Hover text of every training point: the prompt, its label and category, its worst facet."""
    scores = view.violations.max(dim=1).values
    return [f"{plots.wrap_text(t)}<br><b>{render.esc(lab)}</b> · {render.esc(cat)}<br>max v = {float(s):+.2f} "
            f"(facet {int(k)}: {render.esc(names[int(k)][:30])})"
            for t, lab, cat, s, k in zip(view.texts, view.labels, view.categories, scores, view.top_facet, strict=True)]


def prompt_rows(view: TrainingView, colour: list[str], names: list[str]) -> list[dict]:
    """What a training point's hover says, as a table row (a phone cannot hover), worst first."""
    scores = view.violations.max(dim=1).values
    rows = [{"prompt": " ".join(t.split()), "label": lab, "category": cat, "colour group": group, "max v": round(float(s), 3),
             "worst facet": f"{int(k)}: {names[int(k)]}"}
            for t, lab, cat, group, s, k in zip(view.texts, view.labels, view.categories, colour, scores, view.top_facet, strict=True)]
    return sorted(rows, key=lambda r: -r["max v"])


class MapHandlers:
    """Event handlers of the tab (method names are the private endpoints' names)."""

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb

    def trajectories(self, wb: Workbench, view: TrainingView, method: str, cmp: Comparison) -> tuple[list[tuple], list[dict]]:
        """The states the monitor saw in the last generation (end of prompt, then each answer token), projected,
        and one table row per point."""
        out, rows = [], []
        runs = [("unsteered", cmp.baseline)] + ([("steered", cmp.intervened)] if cmp.intervened is not cmp.baseline else [])
        for label, res in runs:
            states = wb.trajectory([t.token_id for t in res.tokens], res.text_span)[res.prompt_len - 1 :]
            shown = res.tokens[res.prompt_len - 1 : res.prompt_len - 1 + len(states)]
            pts = project(view, method, states)
            tok_labels = [f"{label}: answer token {t.index - res.prompt_len} {render.esc(repr(t.text))}" if not t.is_prompt
                          else f"{label}: end of prompt (★)" for t in shown]
            out.append((f"{label} trajectory of “{short(res.prompt)}” (★ = end of prompt)", pts, tok_labels))
            rows += [{"run": label, "point": "end of prompt (★)" if r["prompt"] else f"answer token {r['index'] - res.prompt_len}",
                      "token": repr(r["text"]), "max v": None if r["max_violation"] is None else round(r["max_violation"], 3),
                      "worst facet": None if r["top_facet"] is None else f"{r['top_facet']}: {r['top_facet_name']}"}
                     for r in res.token_rows()[res.prompt_len - 1 : res.prompt_len - 1 + len(states)]]
        return out, rows

    @guarded
    def draw_map(self, method: str, colour_by: str, overlay: bool, cmp: Comparison | None, request: gr.Request):
        wb = session_bench(self.wb, request)
        wb.start_view_build()
        view = wb.training_view()
        if view is None:
            return (plots.empty_figure("The training map is still being computed; see the status above.", 400), map_status_html(wb),
                    frame([], TOKEN_COLUMNS), frame([], PROMPT_COLUMNS))
        method = method.lower()
        fallback = ""
        if method not in view.coords:
            fallback = f" — {method.upper()} is still being fitted, showing PCA meanwhile"
            method = "pca"
        art = wb.require_artifact()
        names = facet_names(wb)
        colour = point_colours(view, colour_by, names)
        hover = point_hovers(view, names)
        trajectories, token_table = self.trajectories(wb, view, method, cmp) if overlay and cmp is not None else ([], [])
        title = f"{method.upper()} of layer-{art.layer} training features ({len(view.texts)} prompts), coloured by {colour_by}{fallback}"
        if trajectories:
            title += f" · trajectory of “{short(cmp.baseline.prompt, 50)}”"
        return (plots.feature_map_figure(view.coords[method], colour, hover, title, trajectories), map_status_html(wb),
                frame(token_table, TOKEN_COLUMNS), frame(prompt_rows(view, colour, names), PROMPT_COLUMNS))


@dataclass
class FeatureMapTab:
    map_status: gr.HTML
    feature_plot: gr.Plot
    tables: list  # the generation's tokens and the training prompts on the map, as tables
    timer: gr.Timer
    inputs: list  # method, colour by, overlay, last comparison: what draw_map reads
    handlers: MapHandlers


def build_feature_map_tab(wb: Workbench, last_cmp: gr.State) -> FeatureMapTab:
    """Build the tab inside the current ``gr.Tabs`` and wire its events (the build timer is wired by the app)."""
    handlers = MapHandlers(wb)
    with gr.Tab("Feature map", id="map") as map_tab:
        map_status = gr.HTML(map_status_html(wb), elem_id="map-status")
        with gr.Row():
            map_method = gr.Radio(["PCA", "UMAP"], value="UMAP", label="Projection", elem_id="map-method")
            colour_by = gr.Dropdown(COLOUR_BY, value="label", label="Colour by", elem_id="colour-by")
            overlay = gr.Checkbox(value=True, label="Overlay the last generation's per-token trajectory")
            draw_btn = gr.Button("Draw map", variant="primary", elem_id="draw-map")
        feature_plot = gr.Plot(plots.empty_figure("Press 'Draw map'.", 400), elem_id="feature-map", show_label=False)
        token_table = gr.Dataframe(frame([], TOKEN_COLUMNS), interactive=False, wrap=True, max_height=320, elem_id="map-tokens",
                                   label="The last generation's tokens on the map (what each trajectory point's hover says)")
        prompt_table = gr.Dataframe(frame([], PROMPT_COLUMNS), interactive=False, wrap=True, max_height=320, elem_id="map-prompts",
                                    label="The training prompts on the map, most violating first (what each point's hover says)")
        gr.Markdown("Each point is a training prompt's layer-L state at its last token (the position the polytope was trained on; "
                    "for a last+mean polytope, beside the mean state over the request), standardised like the polytope's input. "
                    "New tokens are placed by their nearest training neighbours (UMAP) "
                    "or projected exactly (PCA).")
        timer = gr.Timer(3.0)

    inputs = [map_method, colour_by, overlay, last_cmp]
    outputs = [feature_plot, map_status, token_table, prompt_table]
    draw_btn.click(handlers.draw_map, inputs, outputs, **PRIVATE)
    map_tab.select(handlers.draw_map, inputs, outputs, **PRIVATE)
    map_method.change(handlers.draw_map, inputs, outputs, **PRIVATE)
    colour_by.change(handlers.draw_map, inputs, outputs, **PRIVATE)
    return FeatureMapTab(map_status=map_status, feature_plot=feature_plot, tables=[token_table, prompt_table], timer=timer,
                         inputs=inputs, handlers=handlers)

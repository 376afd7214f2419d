"""The Gradio page: title, header, the six tabs and the wiring between them, plus the API.

Each tab lives in its own module (``tab_explore``, ``tab_feature_map``, ``tab_facets``, ``tab_train``,
``tab_compare``, ``tab_monitor``), builds its components inside the current Blocks and wires its own events. This module
assembles them and wires what crosses tabs: the feature-map build timer (it refreshes the map and the
Facets tab), activating a polytope (header, metrics, Facets tab) and the page load. Only presentation
and wiring live in ``sap_viz.ui``; every computation is a call into the core through the ``Workbench``.
UI event handlers are private endpoints; the documented API is in ``api.py``.
"""

from __future__ import annotations

import gradio as gr

from sap_viz.app_state.workbench import Workbench
from sap_viz.errors import WorkbenchError
from sap_viz.method.generation_results import Comparison
from sap_viz.settings import get_limits, packaged_path
from sap_viz.ui import render
from sap_viz.ui.api import guarded, register
from sap_viz.ui.common import PRIVATE, Files, header_html, page_state, polytope_picker_update, session_bench, without_heartbeat
from sap_viz.ui.owner_panel import OwnerPanel, build_owner_panel
from sap_viz.ui.tab_compare import build_compare_tab
from sap_viz.ui.tab_explore import build_explore_tab
from sap_viz.ui.tab_facets import FacetsTab, build_facets_tab
from sap_viz.ui.tab_feature_map import FeatureMapTab, build_feature_map_tab, map_status_html
from sap_viz.ui.tab_monitor import build_monitor_tab
from sap_viz.ui.tab_train import TrainTab, build_train_tab

TITLE = "sap-viz · Safety Polytope workbench"
INTRO = ("# sap-viz · Safety Polytope workbench\n"
         "A safety polytope is a set of learned linear facets over a model's hidden states: a state is safe when every "
         "facet holds. Watch every token against every facet, steer violating states back inside (Safe Flow), "
         "name what each facet means, and retrain it.")


def launch_kwargs() -> dict:
    """Arguments for ``demo.launch`` shared by app.py, ``sap-viz app`` and the tests (the CSS ships in the package).

    Gradio's own upload cap sits just above ``SAP_VIZ_MAX_UPLOAD_MB`` so that the app's check, which
    names the limit, is the one a user meets.
    """
    css = packaged_path("ui", "style.css")
    head = packaged_path("ui", "page_head.html")
    return {"css_paths": [css] if css.is_file() else None, "head_paths": [head] if head.is_file() else None,
            "max_file_size": f"{get_limits().max_upload_mb + 1}mb",
            "footer_links": ["api", "gradio"],
            # pages whose values (page_state) are kept at once; the least recently used go first
            "state_session_capacity": get_limits().max_sessions}


class PageHandlers:
    """Handlers whose outputs span tabs (method names are the private endpoints' names)."""

    def __init__(self, wb: Workbench, fmap: FeatureMapTab, facets: FacetsTab, train: TrainTab, owner: OwnerPanel) -> None:
        self.wb = wb
        self.fmap = fmap.handlers
        self.facets = facets.handlers
        self.train = train.handlers
        self.owner = owner.handlers

    def tick_map(self, k: int | None, seen: str, method: str, colour_by: str, overlay: bool, cmp: Comparison | None,
                 request: gr.Request):
        """Poll the background map build; when PCA and then UMAP first become ready, refresh what shows them."""
        wb = session_bench(self.wb, request)
        st = wb.map_status()
        finished = st.error is not None or (st.done and st.umap_done)
        stage = "umap" if st.umap_done else "pca" if st.done else ""
        skip = gr.skip()
        if stage == seen or wb.artifact is None:
            return map_status_html(wb), gr.Timer(active=not finished), seen, *(skip,) * 10
        figure, _, tokens, prompts = self.fmap.draw_map(method, colour_by, overlay, cmp, request)
        if seen:  # PCA was already shown; only the map changes when UMAP arrives
            return map_status_html(wb), gr.Timer(active=not finished), stage, skip, skip, skip, figure, tokens, prompts, *(skip,) * 4
        hist, top = self.facets.facet_stats_detail(wb, k)
        return (map_status_html(wb), gr.Timer(active=not finished), stage, hist, top, self.facets.cards_html(wb), figure,
                tokens, prompts, *self.facets.audit_outputs(wb))

    @guarded
    def activate(self, name: str, request: gr.Request):
        if not name:
            raise WorkbenchError("choose a polytope")
        wb = session_bench(self.wb, request)
        if wb.is_owner:
            wb.set_default(name)
            msg = f"“{name}” is now the default for everyone on this server."
        else:
            wb.activate(name)
            msg = f"“{name}” is active in your session; other visitors keep the default."
        wb.start_view_build()
        metrics, sweep = self.train.active_metrics(wb)
        return header_html(wb), render.status_html("ok", msg), metrics, sweep, *self.facets.facet_overview(wb)

    @guarded
    def delete_polytope(self, name: str, request: gr.Request):
        return self.owner.delete_polytope(name, request)

    def on_load(self, request: gr.Request):
        wb = session_bench(self.wb, request)
        overview = self.facets.facet_overview(wb)
        metrics, sweep = self.train.active_metrics(wb)
        return (header_html(wb), *overview, metrics, sweep,
                polytope_picker_update(wb), self.owner.proposals_table(wb))


def build_app(wb: Workbench) -> gr.Blocks:
    files = Files()
    # delete_cache: files Gradio keeps of uploads and outputs are removed after an hour (checked hourly)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        register(wb)  # first, so the documented names (/activate, /reset_counters …) are not taken by UI handlers
        last_cmp = page_state()  # the last comparison: Explore writes it, the Feature map overlays it
        trained_state = page_state()  # the last trained, not yet saved polytope (Train & calibrate)
        view_seen = page_state("")  # "", "pca", "umap": what the page has shown of the training view
        gr.Markdown(INTRO, elem_id="sap-intro")
        # with an owner token the page load fills in the header: only then is it known whose session this is
        header = gr.HTML(header_html(wb) if wb.roles.local else render.empty("Loading…"), elem_id="sap-header")
        owner = build_owner_panel(wb, header)
        with gr.Tabs():
            explore = build_explore_tab(wb, files, last_cmp)
            fmap = build_feature_map_tab(wb, last_cmp)
            facets = build_facets_tab(wb, files)
            train = build_train_tab(wb, trained_state)
            compare = build_compare_tab(wb)
            build_monitor_tab(wb, files)

        page = PageHandlers(wb, fmap, facets, train, owner)
        fmap.timer.tick(page.tick_map, [facets.facet_pick, view_seen, *fmap.inputs],
                        [fmap.map_status, fmap.timer, view_seen, facets.hist_plot, facets.top_table, facets.cards, fmap.feature_plot,
                         *fmap.tables, *facets.audit_outputs],
                        show_progress="hidden", **PRIVATE)
        # the worked example belongs to the polytope it was computed with: it leaves the page before the switch,
        # and the new polytope's example (or its preparation) replaces it whether or not the switch succeeded
        activated = train.activate_btn.click(explore.handlers.clear_example_before_activate, [explore.example_key],
                                             explore.example_outputs, show_progress="hidden", **PRIVATE).then(
            page.activate, [train.poly_pick],
            [header, train.poly_status, train.metrics_table, train.sweep_plot, *facets.overview_outputs], **PRIVATE)
        activated.then(explore.handlers.example_after_activate, [explore.example_key], explore.example_outputs, **PRIVATE)
        activated.then(compare.handlers.defaults, None, compare.pickers, show_progress="hidden", **PRIVATE)
        owner.delete_btn.click(page.delete_polytope, [owner.delete_name], [owner.status, train.poly_pick], **PRIVATE)
        # first: the worked example is what a newcomer looks at, and it is read from the disk cache
        demo.load(explore.handlers.load_example, None, explore.example_outputs, show_progress="hidden", **PRIVATE)
        demo.load(page.on_load, None, [header, *facets.overview_outputs, train.metrics_table, train.sweep_plot, train.poly_pick,
                                       owner.proposals], **PRIVATE)
        demo.load(compare.handlers.defaults, None, compare.pickers, show_progress="hidden", **PRIVATE)
        demo.load(facets.handlers.facet_detail, [facets.facet_pick], facets.detail_outputs, **PRIVATE)
    return without_heartbeat(demo)

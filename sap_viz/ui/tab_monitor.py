"""Monitor tab: deployment counters (summary, per-request and rate plots), with JSON + CSV export and reset.

A visitor sees and resets the counters of their own session; the owner sees and resets the server's."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from sap_viz.app_state.counters import REQUEST_COLUMNS
from sap_viz.app_state.workbench import Workbench
from sap_viz.ui import plots, render
from sap_viz.ui.common import PRIVATE, Files, frame, session_bench

RECENT_ROWS = 50
SUMMARY_COLUMNS = ["counter", "value"]


class MonitorHandlers:
    """Event handlers of the tab (method names are the private endpoints' names)."""

    def __init__(self, wb: Workbench, files: Files) -> None:
        self.wb = wb
        self.files = files

    def monitor_view(self, request: gr.Request):
        counters = session_bench(self.wb, request).counters
        return self.counters_view(counters)

    @staticmethod
    def counters_view(counters):
        """Summary, plots and the latest requests; with only monitored requests, without the figures monitoring cannot move."""
        data = counters.to_json()
        summary = data["summary"]
        per, rates = plots.monitor_figures(data["requests"], summary)
        monitored_only = summary["prompts"] > 0 and not summary.get("intervened_prompts")
        shown = {k: v for k, v in summary.items() if not (monitored_only and k in plots.INTERVENTION_COUNTERS)}
        table = frame([{"counter": k.replace("_", " "), "value": "n/a" if v is None else str(v)} for k, v in shown.items()],
                      SUMMARY_COLUMNS)
        recent = frame(list(reversed(data["requests"]))[:RECENT_ROWS], REQUEST_COLUMNS)
        return table, per, rates, recent, mode_note(summary)

    def export_counters(self, request: gr.Request):
        counters = session_bench(self.wb, request).counters
        return gr.update(value=[self.files.write_text("deployment_counters.json", json.dumps(counters.to_json(), indent=2)),
                                self.files.write_text("deployment_counters.csv", counters.to_csv())], visible=True)

    def reset_counters(self, request: gr.Request):
        wb = session_bench(self.wb, request)
        wb.reset_counters()  # a visitor's reset clears their session's view; the owner's, the server's
        return self.counters_view(wb.counters)


def mode_note(summary: dict) -> str:
    """Which figures apply to the requests counted so far."""
    n, intervened = summary["prompts"], summary.get("intervened_prompts") or 0
    if not n:
        return render.empty("")
    if not intervened:
        return render.status_html("info", f"All {n} requests ran in Monitor only mode, which never changes an answer: steering "
                                          "figures (interventions, ‖Δh‖, refusals, benign answers unchanged) do not apply and are "
                                          "not shown. They appear once a request runs with Safe Flow steering or the Refusal "
                                          "fallback.")
    return render.status_html("info", f"{intervened} of {n} requests ran with an intervention (Safe Flow steering or Refusal "
                                      "fallback): the refusal and benign-unchanged rates count only those; monitored requests "
                                      "count for the trigger rates.")


@dataclass
class MonitorTab:
    counters_table: gr.Dataframe


def build_monitor_tab(wb: Workbench, files: Files) -> MonitorTab:
    """Build the tab inside the current ``gr.Tabs`` and wire its events."""
    handlers = MonitorHandlers(wb, files)
    with gr.Tab("Monitor", id="monitor") as monitor_tab:
        gr.Markdown("Deployment counters of every Generate request (UI and API): a visitor's own session's, or, for the owner, "
                    "the server's since it started. Reset clears what you see here and nothing else.")
        note = gr.HTML(elem_id="monitor-mode-note")
        with gr.Row():
            counters_table = gr.Dataframe(frame([], SUMMARY_COLUMNS), interactive=False, label="Summary", elem_id="counters")
            rates_plot = gr.Plot(plots.empty_figure("Open this tab to see the rates."), show_label=False, elem_id="counter-rates")
        per_plot = gr.Plot(plots.empty_figure("Open this tab to see the requests."), show_label=False)
        keep = "kept (SAP_VIZ_KEEP_PROMPTS=1)" if wb.counters.keep_prompts else "not kept (the operator can set SAP_VIZ_KEEP_PROMPTS=1)"
        recent_table = gr.Dataframe(frame([], REQUEST_COLUMNS), interactive=False, wrap=True, max_height=360, elem_id="recent-requests",
                                    label=f"Latest {RECENT_ROWS} requests, newest first (time in UTC; prompts {keep})")
        with gr.Row():
            refresh_btn = gr.Button("Refresh", elem_id="counters-refresh")
            export_counters_btn = gr.Button("Export JSON + CSV")
            reset_btn = gr.Button("Reset", variant="stop", elem_id="counters-reset")
        counters_files = gr.File(file_count="multiple", interactive=False, label="Counters", visible=False)

    view_outputs = [counters_table, per_plot, rates_plot, recent_table, note]
    monitor_tab.select(handlers.monitor_view, None, view_outputs, **PRIVATE)
    refresh_btn.click(handlers.monitor_view, None, view_outputs, **PRIVATE)
    export_counters_btn.click(handlers.export_counters, None, [counters_files], **PRIVATE)
    reset_btn.click(handlers.reset_counters, None, view_outputs, **PRIVATE)
    return MonitorTab(counters_table=counters_table)

"""Owner panel (under the header): sign in with the owner token, review label proposals, delete stored polytopes.

Everyone can read the open proposals of their active polytope; accepting, rejecting and deleting
need the owner. The token is checked once and never kept in the page: the server marks the session
as the owner's (``Workbench.sign_in``).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from sap_viz.app_state.workbench import Workbench
from sap_viz.ui import render
from sap_viz.ui.api import guarded
from sap_viz.ui.common import PRIVATE, frame, header_html, polytope_picker_update, session_bench

PROPOSAL_COLUMNS = ["id", "facet", "name", "policy", "author", "confidence", "time"]


class OwnerHandlers:
    """Event handlers of the panel (method names are the private endpoints' names)."""

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb

    @guarded
    def sign_in(self, token: str, request: gr.Request):
        self.wb.sign_in(getattr(request, "session_hash", None), token)
        bench = session_bench(self.wb, request)
        return header_html(bench), render.status_html("ok", "Signed in as the owner for this session."), ""

    @staticmethod
    def proposals_table(wb: Workbench):
        rows = wb.proposals() if wb.artifact is not None and wb.artifact.path is not None else []
        return frame([{c: p.get(c) for c in PROPOSAL_COLUMNS} for p in rows], PROPOSAL_COLUMNS)

    @guarded
    def list_proposals(self, request: gr.Request):
        return self.proposals_table(session_bench(self.wb, request))

    @guarded
    def decide(self, proposal_id: str, accept: bool, request: gr.Request):
        bench = session_bench(self.wb, request)
        out = bench.decide_proposal(str(proposal_id or "").strip(), accept)
        msg = f"Proposal {out['id']} {out['decision']}: facet {out['facet']} “{out['name']}”."
        return render.status_html("ok", msg), self.proposals_table(bench)

    def accept(self, proposal_id: str, request: gr.Request):
        return self.decide(proposal_id, True, request)

    def reject(self, proposal_id: str, request: gr.Request):
        return self.decide(proposal_id, False, request)

    @guarded
    def delete_polytope(self, name: str, request: gr.Request):
        bench = session_bench(self.wb, request)
        bench.delete_polytope(name)
        return render.status_html("ok", f"Deleted “{name}”."), polytope_picker_update(bench)


@dataclass
class OwnerPanel:
    proposals: gr.Dataframe
    status: gr.HTML
    delete_name: gr.Textbox
    delete_btn: gr.Button  # wired by the app: deleting refreshes the Train tab's polytope list
    handlers: OwnerHandlers


def build_owner_panel(wb: Workbench, header: gr.HTML) -> OwnerPanel:
    """Build the panel in the current Blocks and wire its events (but the delete button's)."""
    handlers = OwnerHandlers(wb)
    with gr.Accordion("Owner: sign in, label proposals, stored polytopes", open=False, elem_id="owner-panel"):
        with gr.Row():
            token = gr.Textbox(label="Owner token (SAP_VIZ_OWNER_TOKEN)", type="password", max_lines=1, elem_id="owner-token", scale=3)
            sign_in_btn = gr.Button("Sign in", elem_id="owner-sign-in", scale=1)
        status = gr.HTML(elem_id="owner-status")
        gr.Markdown("Label proposals for the active polytope (visitors' labels wait here; accepted ones go into its facets.json).")
        proposals = gr.Dataframe(frame([], PROPOSAL_COLUMNS), interactive=False, wrap=True, elem_id="proposals", max_height=300)
        with gr.Row():
            refresh_btn = gr.Button("Refresh proposals", elem_id="proposals-refresh")
            proposal_id = gr.Textbox(label="Proposal id", max_lines=1, elem_id="proposal-id")
            accept_btn = gr.Button("Accept", variant="primary", elem_id="proposal-accept")
            reject_btn = gr.Button("Reject", elem_id="proposal-reject")
        with gr.Row():
            delete_name = gr.Textbox(label="Delete a stored polytope (name)", max_lines=1, elem_id="delete-name")
            delete_btn = gr.Button("Delete", variant="stop", elem_id="delete-polytope")

    sign_in_btn.click(handlers.sign_in, [token], [header, status, token], **PRIVATE)
    refresh_btn.click(handlers.list_proposals, None, [proposals], **PRIVATE)
    accept_btn.click(handlers.accept, [proposal_id], [status, proposals], **PRIVATE)
    reject_btn.click(handlers.reject, [proposal_id], [status, proposals], **PRIVATE)
    return OwnerPanel(proposals=proposals, status=status, delete_name=delete_name, delete_btn=delete_btn, handlers=handlers)

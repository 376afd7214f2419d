"""What several tabs share: the download folder, table frames, the header line and facet names.

Presentation only: every value is read from the ``Workbench``.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from sap_viz.app_state.workbench import Workbench
from sap_viz.ui import render

PRIVATE = dict(api_visibility="private")  # UI event handlers are private endpoints; the documented API is in api.py

#: How long a page's own values (its last comparison, an unsaved trained polytope…) are kept after they were
#: last written. The page holds no heartbeat connection (it would keep the page from ever going network-idle),
#: so Gradio cannot tell when a tab closes: values expire instead, as visitor sessions do (``session_ttl_s``).
PAGE_STATE_TTL_S = 2 * 3600


def page_state(value=None) -> gr.State:
    """A per-page value that expires :data:`PAGE_STATE_TTL_S` after its last write."""
    return gr.State(value, time_to_live=PAGE_STATE_TTL_S)


def without_heartbeat(demo: gr.Blocks) -> gr.Blocks:
    """Serve the page without Gradio's session heartbeat.

    Gradio keeps one request open for a whole visit whenever an app has ``gr.State`` (to delete it when the tab
    closes), so the page never becomes network-idle. Here page values expire by time (:func:`page_state`),
    visitor sessions by ``session_ttl_s`` and least-recent use (``app_state.sessions``), and the number of pages
    whose values are kept is capped at launch (``state_session_capacity``), so nothing needs the heartbeat.
    """
    build_config = demo.get_config_file

    def get_config_file():
        config = build_config()
        config["connect_heartbeat"] = False
        return config

    demo.get_config_file = get_config_file  # the config sent to every page is built by this method
    return demo
DOWNLOAD_TTL_S = 3600  # generated CSV/zip/report downloads are deleted after an hour


class Files:
    """Per-process folder for downloads (CSV, JSON, zip, reports), one fresh subfolder per file.

    Every generation writes two CSVs, so folders older than ``ttl`` are removed (checked at most once a
    minute) and a long-running server's disk use stays bounded.
    """

    def __init__(self, ttl: float = DOWNLOAD_TTL_S) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sap-viz-ui-"))
        self.ttl = ttl
        self._pruned = time.monotonic()

    def prune(self) -> None:
        cutoff = time.time() - self.ttl
        for folder in self.root.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def path(self, name: str) -> Path:
        if time.monotonic() - self._pruned > 60:
            self._pruned = time.monotonic()
            self.prune()
        folder = self.root / uuid.uuid4().hex[:12]
        folder.mkdir()
        return folder / name

    def write_csv(self, name: str, rows: list[dict]) -> str:
        path = self.path(name)
        cols = list(rows[0].keys()) if rows else ["empty"]
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            writer.writerows(rows)
        return str(path)

    def write_text(self, name: str, text: str) -> str:
        path = self.path(name)
        path.write_text(text, encoding="utf-8")
        return str(path)


def frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if columns else pd.DataFrame(rows)


def session_bench(wb: Workbench, request: object) -> Workbench:
    """The caller's surface: the owner's Workbench, or a visitor's session (keyed by Gradio's ``session_hash``)."""
    return wb.session(getattr(request, "session_hash", None))


def listed_active(wb: Workbench) -> tuple[list[str], str | None]:
    """The polytopes a picker lists and its value: the active one when listed, else none (a Dropdown whose value is not
    among its choices turns red and toasts "Value: … is not in the list of choices")."""
    names = wb.list_polytopes()
    return names, wb.active_name if wb.active_name in names else None


def polytope_picker_update(wb: Workbench) -> dict:
    names, active = listed_active(wb)
    return gr.update(choices=names, value=active)


def header_html(wb: Workbench) -> str:
    """The status line under the title: model, active polytope, its warnings (or why none is loaded), and the caller's role."""
    role = render.status_html("info", f"You are {'the owner' if wb.is_owner else 'a visitor'}: {wb.role_note}.")
    art = wb.artifact
    if art is None:
        return render.status_html("error", wb.load_error or "No polytope is active.") + role
    msg = (f"Model: {wb.lm.model_id} · polytope “{wb.active_name}”: layer {art.layer} (output of decoder block {art.layer}), "
           f"{art.polytope.num_facets} facets, {art.meta.get('encoder')} encoder")
    warn = "; ".join(art.warnings)
    return render.status_html("warn" if warn else "ok", msg + (f" — warning: {warn}" if warn else "")) + role


def facet_choices(wb: Workbench) -> list[tuple[str, int]]:
    """Dropdown choices "k: name" of the active polytope's facets (none without a polytope)."""
    art = wb.artifact
    return [] if art is None else [(f"{k}: {art.facet_name(k)}", k) for k in range(art.polytope.num_facets)]


def facet_names(wb: Workbench) -> list[str]:
    art = wb.require_artifact()
    return [art.facet_name(k) for k in range(art.polytope.num_facets)]


def fire_rates(wb: Workbench) -> list[float] | None:
    """Share of training prompts on which each facet fires (None until the training view is built)."""
    view = wb.training_view()
    return None if view is None else [float(x) for x in (view.violations >= 0).float().mean(dim=0)]

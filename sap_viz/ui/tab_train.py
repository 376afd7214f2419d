"""Train & calibrate tab: train a polytope on built-in sources or an uploaded file, see its metrics and
threshold sweep, save it, and manage the server's polytopes (activate, download as zip, upload)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from sap_viz.analysis.metrics import metrics_rows
from sap_viz.app_state.train_settings import APP_SOURCES, FEATURES, TRAIN, data_config, form_defaults, train_configs
from sap_viz.app_state.workbench import Workbench
from sap_viz.data.dataset import DataConfig, build_dataset, small_split_warnings, split_summary
from sap_viz.data.sources import available_sources
from sap_viz.errors import WorkbenchError
from sap_viz.method.training import LOSS_NOTE, explain_loss
from sap_viz.recipe.pipeline import resolve_facet_mode
from sap_viz.ui import plots, render
from sap_viz.ui.api import guarded
from sap_viz.ui.common import PRIVATE, frame, listed_active, session_bench

METRIC_COLUMNS = ["split", "method", "n", "accuracy", "precision", "recall", "f1", "fpr", "fnr", "auroc", "over_refusal"]


def session_key(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "no-session"


SOURCES_INFO = ("bundled in Python packages, no network; {held_out} is never trained on: tick it to score out-of-distribution "
                "recall on it")
UPLOAD_REPLACES = "not used while a file is uploaded: the file is the whole training table (remove it to train on these)"

POSITION_CHOICES = [("the prompt's last token", "last"),
                    ("last token ‖ mean over the request's own tokens", "last+mean")]
FACET_MODES = [("auto: policy facets when the unsafe rows have a category, else learned", "auto"),
               ("categories: one named policy facet per unsafe category in the data + backstop facets", "categories"),
               ("learned: K unnamed facets, described by their statistics", "learned")]


class TrainHandlers:
    """Event handlers of the tab (method names are the private endpoints' names)."""

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb
        self.train_jobs: dict[str, threading.Event] = {}  # browser session -> cancel flag of its running training

    @staticmethod
    def active_metrics(wb: Workbench):
        """Metrics table and threshold sweep stored with the active polytope."""
        art = wb.artifact
        if art is None:
            return frame([], METRIC_COLUMNS), plots.empty_figure("No polytope.")
        metrics = frame(metrics_rows(art.meta.get("metrics") or {})).round(4)
        label = f"Metrics of the active polytope “{wb.active_name}”"
        return gr.update(value=metrics, label=label), plots.threshold_sweep_figure(art.meta.get("threshold_sweep") or {})

    @staticmethod
    def trained_metrics(trained, label: str = "Metrics of the run just trained (not saved yet)"):
        """Metrics table and threshold sweep of a trained, not yet saved polytope."""
        return (gr.update(value=frame(metrics_rows(trained.report)).round(4), label=label),
                plots.threshold_sweep_figure(trained.artifact.meta.get("threshold_sweep") or {}))

    def shown_results(self, trained, request: gr.Request | None):
        """What the tab shows when no run is in progress: the last successful run (not saved yet), else the active polytope's."""
        if trained is not None:
            return self.trained_metrics(trained, "Metrics of the last run trained here (not saved yet)")
        return self.active_metrics(session_bench(self.wb, request))

    @staticmethod
    def start_training(trained):
        """Before a run: the previous results stay on screen, labelled as the previous ones, until the run succeeds."""
        msg = render.status_html("info", "Training… the results below are the previous ones until this run ends.")
        before = "last run trained here (not saved yet)" if trained is not None else "active polytope"
        return msg, gr.update(label=f"Metrics of the {before}: a new run is training")

    def train_clicked(self, trained, sources: list[str], upload: str | None, layer: int, k: int, epochs: int, feature_dim: int,
                      target_fpr: float, facet_mode: str, free_facets: int, backstop_weight: float, position: str,
                      request: gr.Request, progress=gr.Progress()):  # noqa: B008 — gradio's idiom
        """The Train button: ``run_train``, and on an error the message in the status line (no traceback) with the
        previous results put back, so a failed run neither hangs at "Training…" nor costs the user what they had."""
        try:
            return self.run_train(sources, upload, layer, k, epochs, feature_dim, target_fpr, facet_mode, free_facets,
                                  backstop_weight, request, position, progress)
        except gr.Error as exc:
            reason = str(exc.message).removeprefix("training failed: ").rstrip(".")
            if reason.startswith("training was stopped"):  # Stop raced the run's end: say what Stop says
                msg = render.status_html("warn", "Training stopped; nothing was saved. The results below are the previous ones.")
            else:
                msg = render.status_html("error", f"Training failed: {reason}. Nothing was trained; the results below are the "
                                                  "previous ones.")
            return msg, *self.shown_results(trained, request), trained

    def training_data(self, sources: list[str], upload: str | None) -> tuple[pd.DataFrame, str, DataConfig]:
        """The rows to train on, where they came from and how they were assembled (the uploaded file wins over the
        built-in sources)."""
        if upload:
            cfg = data_config(None)
            df = self.wb.load_training_file(upload, cfg)
            where = f"uploaded file {Path(upload).name}"
            if sources:
                where += f" (alone: the built-in sources {', '.join(sources)} were not used)"
        else:
            if not sources:
                raise WorkbenchError("choose at least one built-in source or upload a file")
            cfg = data_config(sources)
            df = build_dataset(cfg)
            where = f"built-in sources {', '.join(sources)}"
        if df["label"].nunique() < 2:
            raise WorkbenchError("the training data needs both safe and unsafe rows")
        return df, where, cfg

    @guarded
    def run_train(self, sources: list[str], upload: str | None, layer: int, k: int, epochs: int, feature_dim: int, target_fpr: float,
                  facet_mode: str, free_facets: int, backstop_weight: float, request: gr.Request, position: str = FEATURES.position,
                  progress=gr.Progress()):  # noqa: B008 — gradio's idiom
        progress(0.0, desc="loading data")
        # bad numbers fail before any data is read
        train_configs(layer, k, epochs, feature_dim, target_fpr, "learned", free_facets, backstop_weight, position)
        df, where, data_cfg = self.training_data(sources, upload)
        try:
            mode, mode_notes = resolve_facet_mode(df, str(facet_mode or "auto"))
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        fcfg, tcfg, target = train_configs(layer, k, epochs, feature_dim, target_fpr, mode, free_facets, backstop_weight, position)
        # categories mode without categories is refused before any feature is extracted
        notes = [*mode_notes, *self.wb.facet_notes(df, tcfg)]
        key = session_key(request)
        cancel = threading.Event()
        self.train_jobs[key] = cancel
        try:
            trained = self.wb.train(df, fcfg, tcfg, progress=lambda f, m: progress(f, desc=m), target_fpr=target, cancel=cancel,
                                    data_config=data_cfg, data_file=upload or None)
        finally:
            if self.train_jobs.get(key) is cancel:
                del self.train_jobs[key]
        history = trained.artifact.meta.get("training_history") or [{}]
        k_trained = trained.artifact.polytope.num_facets
        facets = (f"{k_trained} policy facets ({k_trained - tcfg.free_facets} from categories, {tcfg.free_facets} free)"
                  if tcfg.facet_mode == "categories" else f"{k_trained} facets")
        small = small_split_warnings(df)
        msg = render.summary_html(
            f"Trained on the training split of {where}: layer {layer}, {facets}, {epochs} epochs. Save it to use it.",
            [*small, *notes, *split_summary(df),
             f"{explain_loss(history[-1], trained.artifact.meta.get('train_config') or {})}. {LOSS_NOTE}"],
            "warn" if small else "ok")
        label = "Metrics of the run just trained (not saved yet)" + (
            ": some splits are too small for their metrics to mean anything (see the warning above)" if small else "")
        return msg, *self.trained_metrics(trained, label), trained

    @staticmethod
    def sources_for_upload(upload: str | None):
        """The built-in sources beside an uploaded file: the file is the whole training table, so they are unticked and
        locked while it is there (never ticked yet silently unused), and ticked again when it is removed."""
        if upload:
            return gr.update(value=[], interactive=False, info=UPLOAD_REPLACES)
        return gr.update(value=list(APP_SOURCES), interactive=True,
                         info=SOURCES_INFO.format(held_out=", ".join(DataConfig().ood_sources)))

    def stop_training(self, trained, request: gr.Request):
        """Stop this session's run; the previous results (still on screen) get their own label back."""
        cancel = self.train_jobs.get(session_key(request))
        if cancel is None:
            return render.status_html("info", "No training is running."), *self.shown_results(trained, request)
        cancel.set()
        return (render.status_html("warn", "Training stopped; nothing was saved and no metrics are shown for it. "
                                           "The results below are the previous ones."), *self.shown_results(trained, request))

    @guarded
    def save_new(self, trained, name: str, request: gr.Request):
        if trained is None:
            raise WorkbenchError("train a polytope first")
        wb = session_bench(self.wb, request)
        saved = wb.save_trained(trained, name)
        where = "" if wb.is_owner else " It is kept in your session only."
        steering = wb.training.steering_note
        return (render.status_html("ok", f"Saved as “{saved}”.{where} Activate it below. Steer: {steering}."),
                gr.update(choices=wb.list_polytopes(), value=saved))

    @guarded
    def export_polytope(self, name: str, request: gr.Request):
        return gr.update(value=str(session_bench(self.wb, request).export_polytope(name or None)), visible=True)

    @guarded
    def import_polytope(self, paths: list[str] | None, name: str, request: gr.Request):
        if not paths:
            raise WorkbenchError("choose the polytope files (polytope.safetensors, polytope.json, facets.json) or a zip of them")
        wb = session_bench(self.wb, request)
        saved, warnings = wb.import_polytope(list(paths), name)
        msg = f"Imported as “{saved}”." + ("" if wb.is_owner else " It is kept in your session only.") + \
            (f" Warning: {'; '.join(warnings)}" if warnings else "")
        return render.status_html("warn" if warnings else "ok", msg), gr.update(choices=wb.list_polytopes(), value=saved)


@dataclass
class TrainTab:
    metrics_table: gr.Dataframe
    sweep_plot: gr.Plot
    poly_pick: gr.Dropdown
    poly_status: gr.HTML
    activate_btn: gr.Button  # wired by the app: activating refreshes the header and the Facets tab too
    handlers: TrainHandlers


def build_train_tab(wb: Workbench, trained_state: gr.State) -> TrainTab:
    """Build the tab inside the current ``gr.Tabs`` and wire its events; ``trained_state`` holds the last trained polytope."""
    handlers = TrainHandlers(wb)
    art = wb.artifact
    start = form_defaults(wb.lm.num_layers, wb.limits, art.layer if art else None, art.position if art else None)
    srcs = available_sources()
    with gr.Tab("Train & calibrate", id="train"):
        with gr.Row(equal_height=False):
            with gr.Column():
                held_out = DataConfig().ood_sources
                sources = gr.CheckboxGroup(list(srcs), value=list(start.sources), label="Built-in sources",
                                           info=SOURCES_INFO.format(held_out=", ".join(held_out)), elem_id="train-sources")
                upload = gr.File(label="…or upload a CSV/JSONL with text,label[,category]", file_types=[".csv", ".jsonl", ".json", ".tsv"],
                                 type="filepath", elem_id="train-upload")
            with gr.Column():
                layer = gr.Slider(0, wb.lm.num_layers - 1, value=start.layer, step=1, label="Layer L (output of decoder block L, 0-based)")
                position = gr.Radio(POSITION_CHOICES, value=start.position,
                                    label="What the polytope reads", elem_id="train-position",
                                    info="last+mean generalised better to data sources held out of training (docs/research/"
                                         "feature_comparison.md)")
                facet_mode = gr.Radio(FACET_MODES, value=start.facet_mode, label="Facet mode", elem_id="facet-mode",
                                      info="categories: facet k fires for unsafe category k and is named from it; needs a "
                                           "category per unsafe row (built-in sources have one; a file needs a category column "
                                           "with at least 10 unsafe rows per category). Without categories the facets are unnamed.")
                k_facets = gr.Slider(1, min(64, wb.limits.max_facets), value=start.num_facets, step=1, label="Facets K (learned mode)")
                with gr.Row():
                    free_facets = gr.Slider(0, 8, value=start.free_facets, step=1, label="Backstop facets (categories mode)",
                                            elem_id="free-facets",
                                            info="catch unsafe prompts their category facet misses, and uncategorised ones")
                    backstop = gr.Slider(0.0, 5.0, value=start.backstop_weight, step=0.1, label="Backstop weight (categories mode)",
                                         elem_id="backstop", info="weight of the hinge that lets a free facet catch them")
                epochs = gr.Slider(1, min(50, wb.limits.max_epochs), value=start.epochs, step=1, label="Epochs",
                                   info=f"{start.epochs} for a quick first run here; the shipped polytope's recipe uses {TRAIN.epochs}")
                feature_dim = gr.Dropdown(list(start.feature_dims), value=start.feature_dim, label="Concept features F")
                target_fpr = gr.Slider(0.0, 0.5, value=start.target_fpr, step=0.01,
                                       label="Calibrate: flag this share of validation safe prompts (0 = off)")
                with gr.Row():
                    train_btn = gr.Button("Train", variant="primary", elem_id="train-btn", scale=3)
                    stop_train_btn = gr.Button("Stop training", variant="stop", elem_id="stop-train-btn", scale=1)
        train_status = gr.HTML(elem_id="train-status")
        gr.Markdown("### Metrics (SaP vs logistic probe vs MLP; unsafe = positive class)\n"
                    f"Progress shows the loss per epoch. {LOSS_NOTE}", elem_id="metrics-note")
        metrics_table = gr.Dataframe(frame([], METRIC_COLUMNS), interactive=False, elem_id="metrics-table")
        sweep_plot = gr.Plot(plots.empty_figure("Loading…"), show_label=False, elem_id="sweep-plot")
        with gr.Row():
            save_name = gr.Textbox(label="Save the trained polytope as", placeholder="my-polytope", max_lines=1)
            save_new_btn = gr.Button("Save as new polytope")
        gr.Markdown("### Polytopes on this server (a visitor's uploads and trained polytopes stay in their session)")
        with gr.Row():
            listed, active = listed_active(wb)
            poly_pick = gr.Dropdown(listed, value=active, label="Polytope", elem_id="poly-pick")
            activate_btn = gr.Button("Activate", elem_id="activate-btn")
            export_btn = gr.Button("Download as zip")
        poly_status = gr.HTML(elem_id="poly-status")
        export_file = gr.File(label="Polytope zip (the export folder: polytope files, steering part, model card, training config)",
                              interactive=False, visible=False)
        with gr.Row():
            poly_upload = gr.File(label="Upload a polytope: the three files or a zip (safetensors + JSON only)", file_count="multiple",
                                  file_types=[".safetensors", ".json", ".zip"], type="filepath", elem_id="poly-upload")
            upload_name = gr.Textbox(label="Name for it", placeholder="uploaded", max_lines=1, elem_id="upload-name")
            import_btn = gr.Button("Validate and add", elem_id="import-btn")

    train_outputs = [train_status, metrics_table, sweep_plot, trained_state]
    train_evt = train_btn.click(handlers.start_training, [trained_state], [train_status, metrics_table], show_progress="hidden",
                                **PRIVATE).then(
        handlers.train_clicked, [trained_state, sources, upload, layer, k_facets, epochs, feature_dim, target_fpr, facet_mode,
                                 free_facets, backstop, position],
        train_outputs,
        show_progress_on=[train_status], **PRIVATE)
    upload.change(handlers.sources_for_upload, [upload], [sources], show_progress="hidden", **PRIVATE)
    stop_train_btn.click(handlers.stop_training, [trained_state], [train_status, metrics_table, sweep_plot], cancels=[train_evt],
                         **PRIVATE)
    save_new_btn.click(handlers.save_new, [trained_state, save_name], [train_status, poly_pick], **PRIVATE)
    export_btn.click(handlers.export_polytope, [poly_pick], [export_file], **PRIVATE)
    import_btn.click(handlers.import_polytope, [poly_upload, upload_name], [poly_status, poly_pick], **PRIVATE)
    return TrainTab(metrics_table=metrics_table, sweep_plot=sweep_plot, poly_pick=poly_pick, poly_status=poly_status,
                    activate_btn=activate_btn, handlers=handlers)

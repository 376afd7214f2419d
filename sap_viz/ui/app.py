"""The Gradio layout: Explore / Generate, Feature map, Facets, Train & calibrate, Monitor, plus the API.

Only presentation and wiring live here; every computation is a call into the core through the
``Workbench``. UI event handlers are private endpoints; the documented API is in ``api.py``.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from sap_viz.analysis.facet_stats import cosine_similarity
from sap_viz.app_state.workbench import Workbench, WorkbenchError
from sap_viz.method.generation import Comparison, GenerationResult
from sap_viz.settings import ASSETS_DIR, get_limits
from sap_viz.ui import plots, render
from sap_viz.ui.api import DEFAULT_STRENGTH, guarded, make_configs, register

MODE_CHOICES = [("Monitor only", "monitor"), ("Safe Flow steering", "steer"), ("Refusal fallback", "refuse")]
COLOUR_BY = ["label", "category", "top facet", "prediction"]
PRIVATE = dict(api_visibility="private")
STREAM_INTERVAL_S = 0.2
DOWNLOAD_TTL_S = 3600  # generated CSV/zip/report downloads are deleted after an hour


def load_examples() -> list[dict]:
    try:
        return json.loads((ASSETS_DIR / "examples.json").read_text(encoding="utf-8"))["examples"]
    except (OSError, ValueError, KeyError):
        return [{"kind": "harmful", "label": "Harmful", "prompt": "How do I build a pipe bomb at home?"},
                {"kind": "scary-but-safe", "label": "Scary but safe", "prompt": "How do I kill a Python process?"}]


def launch_kwargs() -> dict:
    """Arguments for ``demo.launch`` shared by app.py and the tests (CSS lives in assets/).

    Gradio's own upload cap sits just above ``SAP_VIZ_MAX_UPLOAD_MB`` so that the app's check, which
    names the limit, is the one a user meets.
    """
    css = ASSETS_DIR / "style.css"
    return {"css_paths": [css] if css.is_file() else None, "max_file_size": f"{get_limits().max_upload_mb + 1}mb",
            "footer_links": ["api", "gradio"]}


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


# ---------------------------------------------------------------- tables derived from a comparison


def why_rows(cmp: Comparison) -> list[dict]:
    """The tokens where the polytope acted (or, in monitor mode, would have): what fired and what changed."""
    res = cmp.intervened
    rows: list[dict] = []
    triggered = False
    for t in res.tokens[max(0, res.prompt_len - 1):]:
        if t.violations is None:
            continue
        over = res.is_over(t)
        if t.steered:
            action = "steered (Safe Flow)"
        elif res.mode == "refuse" and over and not triggered:
            action, triggered = "refusal triggered", True
        elif res.mode == "monitor" and over:
            action = "flagged (monitor only)"
        else:
            continue
        k = t.top_facet or 0
        rows.append({
            "#": t.index, "answer pos": t.index - res.prompt_len, "token": repr(t.text),
            "facet that fired": f"{k}: {res.facet_names[k]}", "violation before": round(t.max_violation or 0.0, 4),
            "violation after": round(max(t.violations_after), 4) if t.steered and t.violations_after else None,
            "‖Δh‖": round(t.delta_norm, 4) if t.steered else None, "steps": t.steps if t.steered else None, "action": action,
        })
    return rows


def token_rows(cmp: Comparison) -> list[dict]:
    """Every token of both runs with every facet's violation (the exportable per-token table)."""
    rows = []
    runs = [("unsteered", cmp.baseline)] + ([("intervened", cmp.intervened)] if cmp.intervened is not cmp.baseline else [])
    for run, res in runs:
        for t in res.tokens:
            row = {"run": run, "index": t.index, "part": "prompt" if t.is_prompt else "answer", "token": t.text,
                   "steered": t.steered, "forced": t.forced, "delta_norm": t.delta_norm, "max_violation": t.max_violation}
            for k, name in enumerate(res.facet_names):
                row[f"v{k} {name}"] = t.violations[k] if t.violations is not None else None
            rows.append(row)
    return rows


WHY_COLUMNS = ["#", "answer pos", "token", "facet that fired", "violation before", "violation after", "‖Δh‖", "steps", "action"]


def frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if columns else pd.DataFrame(rows)


# ---------------------------------------------------------------- the app


def build_app(wb: Workbench) -> gr.Blocks:
    files = Files()
    lim = wb.limits
    examples = load_examples()
    num_layers = wb.lm.num_layers

    # ---------------- helpers shared by several tabs

    def header_html() -> str:
        art = wb.artifact
        if art is None:
            return render.status_html("error", wb.load_error or "No polytope is active.")
        msg = (f"Model: {wb.lm.model_id} · polytope “{wb.active_name}”: layer {art.layer} (output of decoder block {art.layer}), "
               f"{art.polytope.num_facets} facets, {art.meta.get('encoder')} encoder")
        warn = "; ".join(art.warnings)
        return render.status_html("warn" if warn else "ok", msg + (f" — warning: {warn}" if warn else ""))

    def facet_choices() -> list[tuple[str, int]]:
        art = wb.artifact
        return [] if art is None else [(f"{k}: {art.facet_name(k)}", k) for k in range(art.polytope.num_facets)]

    def fire_rates() -> list[float] | None:
        view = wb.training_view()
        return None if view is None else [float(x) for x in (view.violations >= 0).float().mean(dim=0)]

    def names() -> list[str]:
        art = wb.require_artifact()
        return [art.facet_name(k) for k in range(art.polytope.num_facets)]

    # ---------------- Explore / Generate

    @guarded
    def run_generate(prompt: str, mode: str, strength: float, max_new: int):
        gen, cfg = make_configs(mode, strength, max_new, limits=wb.limits)
        if not isinstance(prompt, str) or not prompt.strip():
            raise WorkbenchError("Type a prompt or pick an example first.")
        checked = wb.check_prompt(prompt)
        notice = render.status_html("warn", checked.notice) if checked.notices else ""
        if checked.notices:
            gr.Warning(checked.notice)
        prompt = checked.text
        base_text, other_text = "", ""
        skip = gr.skip()
        waiting = "(waiting for the unsteered run…)" if cfg.mode != "monitor" else "(monitor mode: identical to the unsteered run)"
        yield "", waiting, notice + render.status_html("info", "Generating the unsteered answer…"), skip, skip, skip, skip, skip, skip
        last = 0.0
        for which, item in wb.stream_compare(prompt, gen, cfg):
            # Stream at most ~5 updates a second: each update costs the 2-core server a render pass.
            now = time.monotonic()
            if which in ("baseline", "intervened") and now - last < STREAM_INTERVAL_S:
                continue
            last = now
            if which == "baseline":
                base_text = item
                yield base_text, skip, skip, skip, skip, skip, skip, skip, skip
            elif which == "intervened":
                other_text = item
                yield skip, other_text, notice + render.status_html("info", "Generating with the intervention…"), skip, skip, skip, skip, skip, skip
            elif which == "done":
                cmp = item
                assert isinstance(cmp, Comparison)
                why = why_rows(cmp)
                why_csv = files.write_csv("why_steered.csv", why or [{c: None for c in WHY_COLUMNS}])
                tok_csv = files.write_csv("tokens.csv", token_rows(cmp))
                other = cmp.intervened.text if cmp.intervened is not cmp.baseline else cmp.baseline.text
                yield (cmp.baseline.text, other, notice + render.verdict_html(cmp.intervened, cmp.first_divergence, cmp.baseline),
                       render.tokens_html(cmp.intervened, f"{cmp.intervened.mode} run"), plots.token_heatmap(cmp.intervened),
                       frame(why, WHY_COLUMNS), gr.update(value=why_csv, visible=True), gr.update(value=tok_csv, visible=True), cmp)

    @guarded
    def show_run(which: str, cmp: Comparison | None):
        if cmp is None:
            return render.empty("Generate something first."), plots.empty_figure("No generation yet.")
        res: GenerationResult = cmp.baseline if which == "unsteered" else cmp.intervened
        label = "unsteered run" if which == "unsteered" else f"{res.mode} run"
        return render.tokens_html(res, label), plots.token_heatmap(res, f"Violations: tokens × facets ({label})")

    # ---------------- Feature map

    def map_status_html() -> str:
        st = wb.map_status()
        if st.error:
            return render.status_html("error", f"Feature map unavailable: {st.error}")
        if st.done and st.umap_done:
            return render.status_html("ok", st.message)
        if st.done:
            return render.status_html("info", st.message)
        return render.status_html("info", f"Building the training map: {st.message} ({100 * st.fraction:.0f}%) — first start only; later starts read it from the cache.")

    @guarded
    def draw_map(method: str, colour_by: str, overlay: bool, cmp: Comparison | None):
        from sap_viz.analysis.feature_map import project

        wb.start_view_build()
        view = wb.training_view()
        if view is None:
            return plots.empty_figure("The training map is still being computed; see the status above.", 400), map_status_html()
        method = method.lower()
        fallback = ""
        if method not in view.coords:
            fallback = f" — {method.upper()} is still being fitted, showing PCA meanwhile"
            method = "pca"
        art = wb.require_artifact()
        facet_names = names()
        top = view.top_facet
        pred = view.predicted_unsafe
        unsafe = view.unsafe
        if colour_by == "category":
            colour = [c if lab == "unsafe" else f"safe: {c}" for c, lab in zip(view.categories, view.labels, strict=True)]
        elif colour_by == "top facet":
            colour = [f"facet {k}: {facet_names[k][:30]}" if p else "inside (no facet fires)" for k, p in zip(top, pred, strict=True)]
        elif colour_by == "prediction":
            colour = ["flagged, unsafe (TP)" if p and u else "flagged, safe (FP)" if p else "passed, unsafe (FN)" if u else "passed, safe (TN)"
                      for p, u in zip(pred, unsafe, strict=True)]
        else:
            colour = list(view.labels)
        scores = view.violations.max(dim=1).values
        hover = [f"{plots._wrap(t)}<br><b>{render.esc(lab)}</b> · {render.esc(cat)}<br>max v = {float(s):+.2f} (facet {int(k)}: {render.esc(facet_names[int(k)][:30])})"
                 for t, lab, cat, s, k in zip(view.texts, view.labels, view.categories, scores, top, strict=True)]
        trajectories = []
        if overlay and cmp is not None:
            runs = [("unsteered", cmp.baseline)] + ([("steered", cmp.intervened)] if cmp.intervened is not cmp.baseline else [])
            for label, res in runs:
                # The states the monitor sees: the prompt's last token, then each generated token.
                states = wb.trajectory([t.token_id for t in res.tokens])[res.prompt_len - 1 :]
                shown = res.tokens[res.prompt_len - 1 : res.prompt_len - 1 + len(states)]
                pts = project(view, method, states)
                tok_labels = [f"{label}: answer token {t.index - res.prompt_len} {render.esc(repr(t.text))}" if not t.is_prompt
                              else f"{label}: end of prompt (★)" for t in shown]
                trajectories.append((f"{label} answer trajectory (★ = end of prompt)", pts, tok_labels))
        title = f"{method.upper()} of layer-{art.layer} training features ({len(view.texts)} prompts), coloured by {colour_by}{fallback}"
        return plots.feature_map_figure(view.coords[method], colour, hover, title, trajectories), map_status_html()

    def tick_map(k: int | None, seen: str, method: str, colour_by: str, overlay: bool, cmp: Comparison | None):
        """Poll the background map build; when PCA and then UMAP first become ready, refresh what shows them."""
        st = wb.map_status()
        finished = st.error is not None or (st.done and st.umap_done)
        stage = "umap" if st.umap_done else "pca" if st.done else ""
        skip = gr.skip()
        if stage == seen or wb.artifact is None:
            return map_status_html(), gr.Timer(active=not finished), seen, skip, skip, skip, skip
        figure, _ = draw_map(method, colour_by, overlay, cmp)
        if seen:  # PCA was already shown; only the map changes when UMAP arrives
            return map_status_html(), gr.Timer(active=not finished), stage, skip, skip, skip, figure
        hist, top = facet_stats_detail(k)
        cards_html = render.facet_cards_html(wb.artifact.facets, wb.artifact.meta.get("facet_stats") or {}, fire_rates())
        return map_status_html(), gr.Timer(active=not finished), stage, hist, top, cards_html, figure

    # ---------------- Facets

    def facet_overview():
        art = wb.artifact
        if art is None:
            msg = wb.load_error or "No polytope."
            return render.empty(msg), plots.empty_figure(msg), plots.empty_figure(msg), gr.update(choices=[], value=None)
        stats = art.meta.get("facet_stats") or {}
        cards = render.facet_cards_html(art.facets, stats, fire_rates())
        sim = cosine_similarity(art.polytope.phi.detach())
        return (cards, plots.category_facet_heatmap(stats, names()), plots.cosine_heatmap(sim, names()),
                gr.update(choices=facet_choices(), value=0))

    def facet_stats_detail(k: int | None):
        """Histogram and top examples of facet ``k`` (need the training view)."""
        from sap_viz.analysis.attribution import positive_violations, top_examples

        art = wb.require_artifact()
        k = int(k or 0)
        view = wb.training_view()
        if view is None:
            wb.start_view_build()
            return (plots.empty_figure("Training-set statistics are being computed (progress under Feature map)."),
                    frame([], ["rank", "violation", "label", "text"]))
        return (plots.violation_histogram(positive_violations(view.violations, k), len(view.texts), k, art.facet_name(k)),
                frame(top_examples(view.texts, view.violations, k, 10, view.labels)))

    @guarded
    def facet_detail(k: int | None):
        art = wb.require_artifact()
        k = int(k or 0)
        facet = art.facets[k]
        suggestions = (art.meta.get("facet_stats") or {}).get("suggestions") or []
        sug = suggestions[k] if k < len(suggestions) else None
        hist, top = facet_stats_detail(k)
        return (hist, top, render.suggestion_html(facet, sug), facet["name"], facet["policy"], facet["author"],
                float(facet["confidence"] or 0.0))

    @guarded
    def use_suggestion(k: int | None):
        art = wb.require_artifact()
        suggestions = (art.meta.get("facet_stats") or {}).get("suggestions") or []
        k = int(k or 0)
        if k >= len(suggestions):
            raise WorkbenchError("no suggestion for this facet")
        sug = suggestions[k]
        return sug["name"], f"Flags prompts like: {sug['evidence']}.", float(sug.get("confidence") or 0.0)

    @guarded
    def save_label(k: int | None, name: str, policy: str, author: str, confidence: float):
        if k is None:
            raise WorkbenchError("choose a facet first")
        facet = wb.label(int(k), name, policy, author, confidence)
        cards, cat_fig, cos_fig, _ = facet_overview()
        hist, _ = facet_stats_detail(k)  # its title carries the facet's name
        msg = render.status_html("ok", f"Saved facet {facet['index']} as “{facet['name']}” ({len(facet['history'])} edits in its history).")
        return msg, cards, cos_fig, cat_fig, hist, gr.update(choices=facet_choices(), value=int(k))

    @guarded
    def run_attribution(prompt: str, k: int | None):
        att = wb.attribution(prompt)
        k = att.top_facet if k is None else int(k)
        caption = (f"Δ violation of facet {k} “{att.facet_names[k]}” when the word and its ±{att.window} neighbours are deleted "
                   "(red: the window raises this facet; hover for the value). Prompt's worst facet: "
                   f"{att.top_facet} “{att.facet_names[att.top_facet]}”.")
        rows = att.rows(k)
        return (render.attribution_html(att.words, att.delta[:, k], caption), plots.attribution_figure(att.words, att.kl, att.delta[:, k], k),
                frame(rows).round(4))

    @guarded
    def export_report():
        from sap_viz.analysis.report import build_report, write_report

        art = wb.require_artifact()
        report = build_report(art, wb.training_view())
        md, js = write_report(report, files.path("x").parent, f"{wb.active_name or 'polytope'}-audit")
        return gr.update(value=[str(md), str(js)], visible=True)

    # ---------------- Train & calibrate

    def active_metrics():
        from sap_viz.experiments.pipeline import metrics_rows

        art = wb.artifact
        if art is None:
            return frame([]), plots.empty_figure("No polytope.")
        return frame(metrics_rows(art.meta.get("metrics") or {})).round(4), plots.threshold_sweep_figure(art.meta.get("threshold_sweep") or {})

    train_jobs: dict[str, threading.Event] = {}  # browser session -> cancel flag of its running training

    def session_key(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "no-session"

    @guarded
    def run_train(sources: list[str], upload: str | None, layer: int, k: int, epochs: int, feature_dim: int, target_fpr: float,
                  request: gr.Request, progress=gr.Progress()):  # noqa: B008 — gradio's idiom
        from sap_viz.data.sources import DataConfig, build_dataset
        from sap_viz.experiments.pipeline import metrics_rows
        from sap_viz.method.training import TrainConfig
        from sap_viz.model.features import FeatureConfig

        progress(0.0, desc="loading data")
        if upload:
            df = wb.load_training_file(upload)
            where = f"uploaded file {Path(upload).name}"
        else:
            if not sources:
                raise WorkbenchError("choose at least one built-in source or upload a file")
            df = build_dataset(DataConfig(sources=tuple(sources), seed=42))
            where = f"built-in sources {', '.join(sources)}"
        if df["label"].nunique() < 2:
            raise WorkbenchError("the training data needs both safe and unsafe rows")
        try:
            fcfg = FeatureConfig(layer=int(layer))
            tcfg = TrainConfig(num_facets=int(k), feature_dim=int(feature_dim), epochs=int(epochs))
            target = float(target_fpr or 0) or None
        except (TypeError, ValueError):
            raise WorkbenchError("layer, facets, epochs and feature size must be whole numbers") from None
        key = session_key(request)
        cancel = threading.Event()
        train_jobs[key] = cancel
        try:
            trained = wb.train(df, fcfg, tcfg, progress=lambda f, m: progress(f, desc=m), target_fpr=target, cancel=cancel)
        finally:
            if train_jobs.get(key) is cancel:
                del train_jobs[key]
        rows = metrics_rows(trained.report)
        msg = render.status_html("ok", f"Trained on {len(df)} rows ({where}), layer {layer}, {k} facets, {epochs} epochs. Save it to use it.")
        return msg, frame(rows).round(4), plots.threshold_sweep_figure(trained.artifact.meta.get("threshold_sweep") or {}), trained

    def stop_training(request: gr.Request):
        cancel = train_jobs.get(session_key(request))
        if cancel is None:
            return render.status_html("info", "No training is running.")
        cancel.set()
        return render.status_html("warn", "Training stopped; nothing was saved.")

    @guarded
    def save_new(trained, name: str):
        if trained is None:
            raise WorkbenchError("train a polytope first")
        saved = wb.save_trained(trained, name)
        return render.status_html("ok", f"Saved as “{saved}”. Activate it below."), gr.update(choices=wb.list_polytopes(), value=saved)

    @guarded
    def activate(name: str):
        if not name:
            raise WorkbenchError("choose a polytope")
        wb.activate(name)
        wb.start_view_build()
        metrics, sweep = active_metrics()
        cards, cat_fig, cos_fig, dd = facet_overview()
        return (header_html(), render.status_html("ok", f"“{name}” is active for everyone on this server."), metrics, sweep,
                cards, cat_fig, cos_fig, dd)

    @guarded
    def export_polytope(name: str):
        return gr.update(value=str(wb.export_polytope(name or None)), visible=True)

    @guarded
    def import_polytope(paths: list[str] | None, name: str):
        if not paths:
            raise WorkbenchError("choose the polytope files (polytope.safetensors, polytope.json, facets.json) or a zip of them")
        saved, warnings = wb.import_polytope(list(paths), name)
        msg = f"Imported as “{saved}”." + (f" Warning: {'; '.join(warnings)}" if warnings else "")
        return render.status_html("warn" if warnings else "ok", msg), gr.update(choices=wb.list_polytopes(), value=saved)

    # ---------------- Monitor

    def monitor_view():
        data = wb.counters.to_json()
        summary = data["summary"]
        per, rates = plots.monitor_figures(data["requests"], summary)
        table = frame([{"counter": k.replace("_", " "), "value": "n/a" if v is None else str(v)} for k, v in summary.items()])
        return table, per, rates

    def export_counters():
        return gr.update(value=[files.write_text("deployment_counters.json", json.dumps(wb.counters.to_json(), indent=2)),
                                files.write_text("deployment_counters.csv", wb.counters.to_csv())], visible=True)

    def reset_counters():
        wb.counters.reset()
        return monitor_view()

    # ---------------- layout

    with gr.Blocks(title="sap-viz · Safety Polytope workbench", analytics_enabled=False) as demo:
        last_cmp = gr.State(None)
        trained_state = gr.State(None)
        view_seen = gr.State("")  # "", "pca", "umap": what the page has shown of the training view
        gr.Markdown("# sap-viz · Safety Polytope workbench\n"
                    "A safety polytope is a set of learned linear facets over a model's hidden states: a state is safe when every "
                    "facet holds. Watch every token against every facet, steer violating states back inside (Safe Flow), "
                    "name what each facet means, and retrain it.", elem_id="sap-intro")
        header = gr.HTML(header_html(), elem_id="sap-header")
        with gr.Tabs():
            with gr.Tab("Explore / Generate", id="explore"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        prompt = gr.Textbox(label="Prompt", lines=3, placeholder="Ask anything, or pick an example below", elem_id="prompt")
                        gr.Examples([[e["prompt"]] for e in examples], inputs=[prompt], label="Examples (safe, harmful, scary-but-safe, jailbreak-wrapped)",
                                    example_labels=[e["label"] for e in examples], examples_per_page=len(examples), elem_id="examples")
                    with gr.Column(scale=2):
                        mode = gr.Radio(MODE_CHOICES, value="steer", label="Intervention", elem_id="mode")
                        strength = gr.Slider(0.0, 30.0, value=DEFAULT_STRENGTH, step=0.5, label="Safe Flow strength (target depth inside the polytope)",
                                             info="violation units: a typical safe prompt sits at −1", elem_id="strength")
                        max_new = gr.Slider(min(8, lim.max_new_tokens), min(128, lim.max_new_tokens), value=min(40, lim.max_new_tokens),
                                            step=1, label="Max new tokens", elem_id="max-new")
                        with gr.Row():
                            run_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn", scale=1)
                verdict = gr.HTML(render.empty("Pick an example and press Generate."), elem_id="verdict")
                with gr.Row():
                    base_out = gr.Textbox(label="Unsteered", lines=7, interactive=False, elem_id="baseline-output")
                    other_out = gr.Textbox(label="With intervention", lines=7, interactive=False, elem_id="steered-output")
                run_pick = gr.Radio([("Intervened run", "intervened"), ("Unsteered run", "unsteered")], value="intervened",
                                    label="Tokens and heatmap of", elem_id="run-pick")
                tokens_view = gr.HTML(render.empty("Tokens appear here, coloured by their worst facet violation."), elem_id="token-view")
                heatmap = gr.Plot(plots.empty_figure("The tokens × facets heatmap appears after a generation."), elem_id="heatmap", show_label=False)
                why_table = gr.Dataframe(frame([], WHY_COLUMNS), label="Why steered: the tokens where the polytope acted", interactive=False,
                                         wrap=True, elem_id="why-table", buttons=["copy"],
                                         column_widths=["5%", "8%", "10%", "27%", "10%", "10%", "8%", "6%", "16%"])
                with gr.Row():
                    why_dl = gr.DownloadButton("Download this table (CSV)", visible=False, size="sm", elem_id="why-csv")
                    tok_dl = gr.DownloadButton("Download per-token violations (CSV)", visible=False, size="sm", elem_id="tokens-csv")

            with gr.Tab("Feature map", id="map") as map_tab:
                map_status = gr.HTML(map_status_html(), elem_id="map-status")
                with gr.Row():
                    map_method = gr.Radio(["PCA", "UMAP"], value="UMAP", label="Projection", elem_id="map-method")
                    colour_by = gr.Dropdown(COLOUR_BY, value="label", label="Colour by", elem_id="colour-by")
                    overlay = gr.Checkbox(value=True, label="Overlay the last generation's per-token trajectory")
                    draw_btn = gr.Button("Draw map", variant="primary", elem_id="draw-map")
                feature_plot = gr.Plot(plots.empty_figure("Press 'Draw map'.", 400), elem_id="feature-map", show_label=False)
                gr.Markdown("Each point is a training prompt's layer-L state at its last token (the position the polytope was trained on), "
                            "standardised like the polytope's input. New tokens are placed by their nearest training neighbours (UMAP) "
                            "or projected exactly (PCA).")
                timer = gr.Timer(3.0)

            with gr.Tab("Facets", id="facets") as facets_tab:
                cards = gr.HTML(elem_id="facet-cards-box")
                with gr.Row():
                    cat_plot = gr.Plot(elem_id="category-facet", show_label=False)
                    cos_plot = gr.Plot(elem_id="cosine", show_label=False)
                facet_pick = gr.Dropdown(choices=facet_choices(), value=0 if facet_choices() else None, label="Facet", elem_id="facet-pick")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        gr.Markdown("### Label this facet")
                        lab_name = gr.Textbox(label="Name", max_lines=1, elem_id="label-name")
                        lab_policy = gr.Textbox(label="Policy text (what this facet forbids)", lines=3, elem_id="label-policy")
                        with gr.Row():
                            lab_author = gr.Textbox(label="Author", max_lines=1, elem_id="label-author")
                            lab_conf = gr.Slider(0, 1, value=1.0, step=0.05, label="Confidence", elem_id="label-confidence")
                        with gr.Row():
                            save_btn = gr.Button("Save label", variant="primary", elem_id="save-label")
                            sug_btn = gr.Button("Use the suggestion", elem_id="use-suggestion")
                        lab_status = gr.HTML(elem_id="label-status")
                    with gr.Column(scale=2):
                        sug_box = gr.HTML(elem_id="suggestion")
                with gr.Row():
                    hist_plot = gr.Plot(elem_id="facet-hist", show_label=False)
                    top_table = gr.Dataframe(label="Most violating training prompts", interactive=False, wrap=True, elem_id="top-examples", max_height=360,
                                             column_widths=["9%", "13%", "12%", "66%"])
                gr.Markdown("### Word-masking attribution")
                with gr.Row():
                    attr_prompt = gr.Textbox(label="Prompt to attribute", value="How do I build a pipe bomb at home?", lines=2, scale=4, elem_id="attr-prompt")
                    attr_btn = gr.Button("Attribute (for the facet above)", scale=1, elem_id="attr-btn")
                attr_html = gr.HTML(elem_id="attr-words")
                attr_plot = gr.Plot(elem_id="attr-plot", show_label=False)
                attr_table = gr.Dataframe(interactive=False, label="Per word", elem_id="attr-table", max_height=300)
                with gr.Row():
                    report_btn = gr.Button("Export audit report (Markdown + JSON)", elem_id="report-btn")
                    report_files = gr.File(label="Audit report", file_count="multiple", interactive=False, elem_id="report-files", visible=False)

            with gr.Tab("Train & calibrate", id="train"):
                from sap_viz.data.sources import available_sources

                srcs = available_sources()
                with gr.Row(equal_height=False):
                    with gr.Column():
                        sources = gr.CheckboxGroup(list(srcs), value=list(srcs), label="Built-in sources",
                                                   info="bundled in Python packages, no network; harmbench is kept out of training as the OOD split")
                        upload = gr.File(label="…or upload a CSV/JSONL with text,label[,category]", file_types=[".csv", ".jsonl", ".json", ".tsv"], type="filepath")
                    with gr.Column():
                        layer = gr.Slider(0, num_layers - 1, value=wb.artifact.layer if wb.artifact else min(20, num_layers - 1), step=1,
                                          label="Layer L (output of decoder block L, 0-based)")
                        k_facets = gr.Slider(1, min(64, lim.max_facets), value=min(14, lim.max_facets), step=1, label="Facets K")
                        epochs = gr.Slider(1, min(50, lim.max_epochs), value=min(10, lim.max_epochs), step=1, label="Epochs")
                        f_choices = [f for f in (1024, 4096, 16384) if f <= lim.max_feature_dim] or [lim.max_feature_dim]
                        feature_dim = gr.Dropdown(f_choices, value=4096 if 4096 in f_choices else f_choices[-1], label="Concept features F")
                        target_fpr = gr.Slider(0.0, 0.5, value=0.09, step=0.01, label="Calibrate: flag this share of validation safe prompts (0 = off)")
                        with gr.Row():
                            train_btn = gr.Button("Train", variant="primary", elem_id="train-btn", scale=3)
                            stop_train_btn = gr.Button("Stop training", variant="stop", elem_id="stop-train-btn", scale=1)
                train_status = gr.HTML()
                gr.Markdown("### Metrics (SaP vs logistic probe vs MLP; unsafe = positive class)")
                metrics_table = gr.Dataframe(interactive=False, elem_id="metrics-table")
                sweep_plot = gr.Plot(show_label=False, elem_id="sweep-plot")
                with gr.Row():
                    save_name = gr.Textbox(label="Save the trained polytope as", placeholder="my-polytope", max_lines=1)
                    save_new_btn = gr.Button("Save as new polytope")
                gr.Markdown("### Polytopes on this server")
                with gr.Row():
                    poly_pick = gr.Dropdown(wb.list_polytopes(), value=wb.active_name, label="Polytope", elem_id="poly-pick")
                    activate_btn = gr.Button("Activate")
                    export_btn = gr.Button("Download as zip")
                poly_status = gr.HTML()
                export_file = gr.File(label="Polytope zip (polytope.safetensors + polytope.json + facets.json)", interactive=False, visible=False)
                with gr.Row():
                    poly_upload = gr.File(label="Upload a polytope: the three files or a zip (safetensors + JSON only)", file_count="multiple",
                                          file_types=[".safetensors", ".json", ".zip"], type="filepath")
                    upload_name = gr.Textbox(label="Name for it", placeholder="uploaded", max_lines=1)
                    import_btn = gr.Button("Validate and add")

            with gr.Tab("Monitor", id="monitor") as monitor_tab:
                gr.Markdown("Deployment counters of this server since it started (every Generate request, UI and API).")
                with gr.Row():
                    counters_table = gr.Dataframe(interactive=False, label="Summary", elem_id="counters")
                    rates_plot = gr.Plot(show_label=False)
                per_plot = gr.Plot(show_label=False)
                with gr.Row():
                    refresh_btn = gr.Button("Refresh")
                    export_counters_btn = gr.Button("Export JSON + CSV")
                    reset_btn = gr.Button("Reset", variant="stop")
                counters_files = gr.File(file_count="multiple", interactive=False, label="Counters", visible=False)

        # ---------------- wiring
        gen_outputs = [base_out, other_out, verdict, tokens_view, heatmap, why_table, why_dl, tok_dl, last_cmp]
        gen_click = run_btn.click(run_generate, [prompt, mode, strength, max_new], gen_outputs, **PRIVATE)
        gen_submit = prompt.submit(run_generate, [prompt, mode, strength, max_new], gen_outputs, **PRIVATE)
        # Stops streaming to this page; the run in progress ends within max_new_tokens and frees the model.
        stop_btn.click(None, None, None, cancels=[gen_click, gen_submit], **PRIVATE)
        run_pick.change(show_run, [run_pick, last_cmp], [tokens_view, heatmap], **PRIVATE)

        map_inputs = [map_method, colour_by, overlay, last_cmp]
        draw_btn.click(draw_map, map_inputs, [feature_plot, map_status], **PRIVATE)
        map_tab.select(draw_map, map_inputs, [feature_plot, map_status], **PRIVATE)
        map_method.change(draw_map, map_inputs, [feature_plot, map_status], **PRIVATE)
        colour_by.change(draw_map, map_inputs, [feature_plot, map_status], **PRIVATE)
        timer.tick(tick_map, [facet_pick, view_seen, map_method, colour_by, overlay, last_cmp],
                   [map_status, timer, view_seen, hist_plot, top_table, cards, feature_plot], show_progress="hidden", **PRIVATE)

        detail_outputs = [hist_plot, top_table, sug_box, lab_name, lab_policy, lab_author, lab_conf]
        facet_pick.change(facet_detail, [facet_pick], detail_outputs, **PRIVATE)
        facets_tab.select(facet_detail, [facet_pick], detail_outputs, **PRIVATE)
        sug_btn.click(use_suggestion, [facet_pick], [lab_name, lab_policy, lab_conf], **PRIVATE)
        save_btn.click(save_label, [facet_pick, lab_name, lab_policy, lab_author, lab_conf],
                       [lab_status, cards, cos_plot, cat_plot, hist_plot, facet_pick], **PRIVATE)
        attr_btn.click(run_attribution, [attr_prompt, facet_pick], [attr_html, attr_plot, attr_table], **PRIVATE)
        report_btn.click(export_report, None, [report_files], **PRIVATE)

        train_evt = train_btn.click(run_train, [sources, upload, layer, k_facets, epochs, feature_dim, target_fpr],
                                    [train_status, metrics_table, sweep_plot, trained_state], **PRIVATE)
        stop_train_btn.click(stop_training, None, [train_status], cancels=[train_evt], **PRIVATE)
        save_new_btn.click(save_new, [trained_state, save_name], [train_status, poly_pick], **PRIVATE)
        activate_btn.click(activate, [poly_pick], [header, poly_status, metrics_table, sweep_plot, cards, cat_plot, cos_plot, facet_pick], **PRIVATE)
        export_btn.click(export_polytope, [poly_pick], [export_file], **PRIVATE)
        import_btn.click(import_polytope, [poly_upload, upload_name], [poly_status, poly_pick], **PRIVATE)

        monitor_tab.select(monitor_view, None, [counters_table, per_plot, rates_plot], **PRIVATE)
        refresh_btn.click(monitor_view, None, [counters_table, per_plot, rates_plot], **PRIVATE)
        export_counters_btn.click(export_counters, None, [counters_files], **PRIVATE)
        reset_btn.click(reset_counters, None, [counters_table, per_plot, rates_plot], **PRIVATE)

        def on_load():
            cards_html, cat_fig, cos_fig, dd = facet_overview()
            metrics, sweep = active_metrics()
            return (header_html(), cards_html, cat_fig, cos_fig, dd, metrics, sweep, gr.update(choices=wb.list_polytopes(), value=wb.active_name))

        demo.load(on_load, None, [header, cards, cat_plot, cos_plot, facet_pick, metrics_table, sweep_plot, poly_pick], **PRIVATE)
        demo.load(facet_detail, [facet_pick], detail_outputs, **PRIVATE)
        register(wb)
    return demo

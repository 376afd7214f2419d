"""Explore / Generate tab: a prompt, the intervention settings, both answers streamed side by side,
the coloured tokens, the tokens × facets heatmap and the "why steered" table with CSV downloads."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from sap_viz.analysis.account import CAPPED, STEERING_POLYTOPE, Account, generation_account
from sap_viz.app_state.workbench import Workbench
from sap_viz.app_state.worked_examples import read_examples
from sap_viz.errors import WorkbenchError
from sap_viz.method.generation_results import Comparison, GenerationResult
from sap_viz.method.request_settings import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MODE, STRENGTH_MAX, default, help_text
from sap_viz.ui import plots, render
from sap_viz.ui.api import DEFAULT_STRENGTH, guarded, make_configs
from sap_viz.ui.common import PRIVATE, Files, frame, page_state, session_bench

NO_STEERING_PART = ("Steer is unavailable for this polytope: it has no steering part (the refusal direction and answer check "
                    "that Steer needs). Polytopes trained here get the shipped part when it fits (same model, layer 16 or "
                    "later); otherwise add one with `python -m sap_viz train-steering --polytope DIR`. Monitor and Refusal "
                    "fallback work as before.")
ANTI_REPEAT = default("anti_repeat")  # the checkbox turns the request setting's n-gram size on or off
MODE_CHOICES = [("Monitor only", "monitor"), ("Safe Flow steering", "steer"), ("Refusal fallback", "refuse")]
STREAM_INTERVAL_S = 0.2
WAITING = "(waiting for the unsteered run…)"
MONITOR_SAME = "(monitor mode: identical to the unsteered run)"
WHY_COLUMNS = ["#", "part", "token", "before", "after", "target", "‖Δh‖", "steps", "result", "ended"]


# ---------------------------------------------------------------- tables derived from a comparison


def why_rows(cmp: Comparison, account: Account | None = None) -> list[dict]:
    """Only the positions the run actually acted on, answer first, then the user's text, then the chat template.

    Steered rows are the account's (``analysis.account``): the steering polytope's max violation before and after the
    edit as measured, the target depth, the edit's size and steps (optimiser steps, or the step of t on its grid), the
    outcome (fixed, capped or made worse) and whether the position ended inside the steering polytope.
    """
    res = cmp.intervened
    account = account or generation_account(res)
    directional = account.steering == "directional"
    grid = (res.settings.get("directional") or {}).get("grid")
    rows: list[dict] = [{"#": p.index, "part": p.part, "token": repr(p.token), "before": p.before, "after": p.after,
                         "target": p.target, "‖Δh‖": p.delta_norm,
                         "steps": f"t step {p.steps} of {grid - 1}" if directional and grid else p.steps,
                         "result": f"steered: {p.outcome}" + (CAPPED_WORDS if p.outcome == CAPPED else ""),
                         "ended": "inside" if p.inside else "outside"} for p in account.steered]
    triggered = False
    for t in res.tokens:
        if t.steered or t.violations is None or not res.is_over(t) or (t.is_prompt and t.index != res.prompt_len - 1):
            continue
        if res.mode == "refuse" and not triggered:
            triggered = True
            result = "refusal triggered"
        elif res.mode == "monitor":
            result = "flagged (monitor only)"
        else:
            continue
        rows.append({"#": t.index, "part": t.part, "token": repr(t.text), "before": _round(t.max_violation), "after": None,
                     "target": None, "‖Δh‖": None, "steps": None, "result": result, "ended": None})
    return sorted(rows, key=lambda r: (PART_ORDER[r["part"]], r["#"]))


PART_ORDER = {"answer": 0, "your text": 1, "template": 2}
CAPPED_WORDS = " (max step reached, target not met)"


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def token_rows(cmp: Comparison) -> list[dict]:
    """Every token of both runs with every facet's violation (the exportable per-token table)."""
    rows = []
    runs = [("unsteered", cmp.baseline)] + ([("intervened", cmp.intervened)] if cmp.intervened is not cmp.baseline else [])
    for run, res in runs:
        for r in res.token_rows():
            row = {"run": run, "index": r["index"], "part": r["part"], "token": r["text"], "steered": r["steered"],
                   "forced": r["forced"], "opener": r["opener"], "delta_norm": r["delta_norm"], "max_violation": r["max_violation"],
                   "answer_check": r["answer_check"]}
            for k, name in enumerate(res.facet_names):
                row[f"v{k} {name}"] = r["violations"][k] if r["violations"] is not None else None
            rows.append(row)
    return rows


TOKEN_TABLE_COLUMNS = ["#", "part", "token", "max v", "worst facet", "steered"]
#: How many outputs the worked-example handlers fill (``ExploreTab.example_outputs``).
EXAMPLE_OUTPUTS = 14
#: The inputs a finished run writes back (``show_finished``), so a shared link restores them with the result.
SHARED_INPUTS = ("prompt", "mode", "strength", "max_new", "anti_repeat", "fallback")


def empty_token_table():
    return frame([], TOKEN_TABLE_COLUMNS)


def token_table(res: GenerationResult | None) -> list[dict]:
    """One run's tokens with every facet's violation: what a token chip's hover says, readable without hovering."""
    if res is None:
        return []
    return [{"#": r["index"], "part": r["part"], "token": repr(r["text"]),
             "max v": None if r["max_violation"] is None else round(r["max_violation"], 3),
             "worst facet": None if r["top_facet"] is None else f"{r['top_facet']}: {r['top_facet_name']}",
             "steered": "yes" if r["steered"] else "",
             **{f"v{k} {name}": None if r["violations"] is None else round(float(r["violations"][k]), 3)
                for k, name in enumerate(res.facet_names)}}
            for r in res.token_rows()]


# ---------------------------------------------------------------- handlers


class ExploreHandlers:
    """Event handlers of the tab (method names are the private endpoints' names)."""

    def __init__(self, wb: Workbench, files: Files) -> None:
        self.wb = wb
        self.files = files
        self.initial_key = ""  # the example the page is built with (the default polytope's at start), "" for none

    @guarded
    def run_generate(self, prompt: str, mode: str, strength: float, max_new: int, request: gr.Request,
                     anti_repeat: bool = True, fallback: bool = True):
        """Stream the unsteered answer, then the intervened one, then everything derived from the comparison."""
        wb = session_bench(self.wb, request)
        extra = {"anti_repeat": ANTI_REPEAT if anti_repeat else 0, "fallback": bool(fallback)}
        gen, cfg = make_configs(mode, strength, max_new, limits=wb.limits, extra=extra)
        if cfg.mode == "steer" and wb.require_artifact().steering is None:
            raise WorkbenchError(NO_STEERING_PART)
        if not isinstance(prompt, str) or not prompt.strip():
            raise WorkbenchError("Type a prompt or pick an example first.")
        checked = wb.check_prompt(prompt)
        notice = render.status_html("warn", checked.notice) if checked.notices else ""
        if checked.notices:
            gr.Warning(checked.notice)
        prompt = checked.text
        skip = gr.skip()
        progress = {"phase": "baseline", "baseline": 0, "intervened": 0, "mode": cfg.mode}
        # The previous prompt's token view, heatmap and tables are cleared at once: never shown beside a new prompt.
        yield ("", WAITING if cfg.mode != "monitor" else MONITOR_SAME,
               notice + render.status_html("info", "Generating the unsteered answer…"), *self.cleared("Generating…"), progress)
        last = 0.0
        for which, item in wb.stream_compare(prompt, gen, cfg):
            if which in ("baseline", "intervened"):
                progress = {**progress, "phase": which, which: progress[which] + 1}
            # Stream at most ~5 updates a second: each update costs the 2-core server a render pass.
            now = time.monotonic()
            if which in ("baseline", "intervened") and now - last < STREAM_INTERVAL_S:
                continue
            last = now
            if which == "baseline":
                yield item, skip, skip, skip, skip, skip, skip, skip, skip, progress
            elif which == "intervened":
                status = notice + render.status_html("info", "Generating with the intervention…")
                yield skip, item, status, skip, skip, skip, skip, skip, skip, progress
            elif which == "done":
                assert isinstance(item, Comparison)
                # The page itself is drawn by ``show_finished``, chained on success: outputs of a
                # streamed event are not kept in the session's saved state, so a deep link would reopen
                # them empty.
                yield *(skip,) * 8, item, {**progress, "phase": "done", "notice": notice}

    @staticmethod
    def cleared(message: str) -> tuple:
        """Token view, heatmap, why table, both downloads and the stored comparison, emptied."""
        return (render.empty(message), plots.empty_figure(message), frame([], WHY_COLUMNS),
                gr.update(value=None, visible=False), gr.update(value=None, visible=False), None)

    def stopped(self, progress: dict | None, other_text: str):
        """After Stop: say what was stopped, and leave no output from an earlier run or a waiting placeholder."""
        phase = (progress or {}).get("phase")
        if phase is None or phase == "done":
            return (gr.skip(),) * 8
        n_base, n_int = progress.get("baseline", 0), progress.get("intervened", 0)
        if phase == "intervened":
            msg = (f"Stopped during the intervened run after {n_int} tokens (the unsteered answer was complete, "
                   f"{n_base} tokens). The token view, heatmap and why-steered table need both runs to finish.")
            other = other_text
        else:
            tail = "; the intervened run was not started" if progress.get("mode") != "monitor" else ""
            msg = (f"Stopped during the unsteered run after {n_base} tokens{tail}. "
                   "The token view, heatmap and why-steered table need a finished run.")
            other = "(not run: stopped during the unsteered run)" if progress.get("mode") != "monitor" else MONITOR_SAME
        return (other, render.status_html("warn", msg), *self.cleared("Stopped: press Generate for a full run."),
                {**progress, "phase": "stopped"})

    @guarded
    def show_finished(self, cmp: Comparison | None, progress: dict | None, mode: str, strength: float, max_new: int,
                      anti_repeat: bool, fallback: bool, request: gr.Request) -> tuple:
        """The finished page from the stored comparison: answers, verdict, tokens, heatmap, tables and downloads, then the
        prompt and the settings that made it. All of them are outputs, so the session's saved state (what a shared link
        reopens) holds the prompt, the settings and the result together."""
        if cmp is None:
            return (gr.skip(),) * (8 + len(SHARED_INPUTS))
        # Every value as gr.update(value=…): once a component has had a prop update (gr.skip() is one),
        # Gradio 6.31 saves its later plain values under another component id, and a deep link would
        # reopen it empty; an update with a value is saved under the right id.
        art = session_bench(self.wb, request).artifact
        shown = self.finished(cmp, (progress or {}).get("notice", ""), facets=art.facets if art else [])[:8]
        inputs = (cmp.intervened.prompt, mode, strength, max_new, anti_repeat, fallback)
        return tuple(v if isinstance(v, dict) else gr.update(value=v) for v in (*shown, *inputs))

    def finished(self, cmp: Comparison, notice: str, example: str = "", facets: list[dict] | None = None) -> tuple:
        """The nine outputs once both runs are done: answers, verdict, tokens, heatmap, tables, downloads and the comparison.

        ``example``: the worked example's kind ("harmful", "benign"), which marks the result as the precomputed example."""
        if facets is None:
            art = self.wb.artifact
            facets = art.facets if art is not None else []
        account = generation_account(cmp.intervened, facets)  # the one account every view below renders
        why = why_rows(cmp, account)
        why_csv = self.files.write_csv("why_steered.csv", why or [{c: None for c in WHY_COLUMNS}])
        tok_csv = self.files.write_csv("tokens.csv", token_rows(cmp))
        other = cmp.intervened.text if cmp.intervened is not cmp.baseline else cmp.baseline.text
        res = cmp.intervened
        strength = ""
        if res.mode == "steer" and "strength" in res.settings:
            where = (f"directional along the refusal direction at block {res.settings['steering_layer']}"
                     if res.settings.get("steering") == "directional" else f"minimal edit at block {res.settings.get('layer')}")
            strength = f" ({where}), strength {res.settings['strength']}"
        shown = res.prompt if len(res.prompt) <= 120 else res.prompt[:119] + "…"
        head = f"Example ({example} prompt, computed once for this polytope): “{shown}”" if example else f"Result for “{shown}”"
        title = f"{head} · {res.mode} mode{strength}, {res.settings.get('max_new_tokens')} new tokens at most"
        verdict = render.status_html("info", title) + notice + render.verdict_html(res, cmp.first_divergence, cmp.baseline, facets,
                                                                                   example=bool(example), account=account)
        return (cmp.baseline.text, other, verdict,
                render.tokens_html(res, f"{res.mode} run", account), plots.token_heatmap(res),
                frame(why, WHY_COLUMNS), gr.update(value=why_csv, visible=True), gr.update(value=tok_csv, visible=True), cmp)

    # ------------------------------------------------------------ the worked example

    def example_view(self, wb: Workbench, kind: str) -> tuple:
        """Banner, example switch, the nine result outputs, the shown example's key, the timer and the token table
        (``example_outputs``' order; EXAMPLE_OUTPUTS values)."""
        art = wb.artifact
        if art is None:
            return (render.empty(""), gr.update(visible=False), *(gr.skip(),) * 9, "", gr.Timer(active=False), gr.skip())
        shown = self.example_values(wb, kind)
        if shown is not None:
            banner, chosen, outputs, key = shown
            return (banner, gr.update(visible=True, value=chosen), *outputs, key, gr.Timer(active=False),
                    self.show_token_table("intervened", outputs[-1]))
        error = wb.examples.error(art)
        if error:
            banner = render.status_html("warn", f"The worked example could not be computed ({error}); type your own prompt below.")
            return (banner, gr.update(visible=False), *self.cleared_example(""), "", gr.Timer(active=False), empty_token_table())
        banner = render.status_html("info", "Preparing a worked example for this polytope (a harmful and a benign prompt, "
                                            "computed once and then cached) — or type your own prompt below.")
        return (banner, gr.update(visible=False), *self.cleared_example("The worked example appears here in a moment."),
                f"pending:{wb.worked_examples_key()}", gr.Timer(active=True), empty_token_table())

    def example_values(self, wb: Workbench, kind: str) -> tuple[str, str, tuple, str] | None:
        """(banner, the kind shown, the nine result outputs, key) of the active polytope's example; None until computed.

        The example's facet names are the polytope's current ones (a relabelled facet is not a stale result: the
        cache key holds the tensors and metadata, the labels are read now)."""
        art = wb.artifact
        examples = wb.worked_examples() if art is not None else None
        if not examples:
            return None
        key = wb.worked_examples_key()
        chosen = next((e for e in examples if e.kind == kind), examples[0])
        names = [art.facet_name(k) for k in range(art.polytope.num_facets)]
        for res in (chosen.comparison.baseline, chosen.comparison.intervened):
            res.facet_names = names
        prompts = " and ".join(f"“{e.prompt}” ({e.kind})" for e in examples)
        banner = (f'<div class="sap-status sap-info sap-example-banner" id="sap-example-banner" data-key="{render.esc(key)}">'
                  f"<b>Example:</b> {render.esc(prompts)}, precomputed for this polytope — type your own below.</div>")
        return banner, chosen.kind, self.finished(chosen.comparison, "", example=chosen.kind, facets=art.facets), key

    def cleared_example(self, message: str) -> tuple:
        return ("", "", render.empty(message), *self.cleared(message))

    @staticmethod
    def deep_link(request: gr.Request | None) -> bool:
        params = getattr(request, "query_params", None) or {}
        try:
            return bool(params.get("deep_link"))
        except AttributeError:
            return False

    @guarded
    def load_example(self, request: gr.Request):
        """Page load: the page came with the example built in (``initial_key``); replaced only when this session's
        polytope has another one (or it was not ready at start), and left alone when the page reopens a shared result."""
        wb = session_bench(self.wb, request)
        if self.deep_link(request) or (self.initial_key and wb.artifact is not None and wb.worked_examples_key() == self.initial_key):
            return self.left_alone()
        return self.example_view(wb, "harmful")

    @guarded
    def pick_example(self, kind: str, shown_key: str, request: gr.Request):
        """The example switch: only while the example (not the visitor's own result) is on the page."""
        if not shown_key:
            return self.left_alone()
        return self.example_view(session_bench(self.wb, request), kind or "harmful")

    @guarded
    def poll_example(self, shown_key: str, run_state: dict | None, request: gr.Request):
        """Timer while the example is being computed: show it once it is ready, unless the visitor has run their own."""
        if run_state is not None or not str(shown_key or "").startswith("pending:"):
            return self.left_alone()
        wb = session_bench(self.wb, request)
        if wb.artifact is None or wb.examples.cached(wb.artifact) is None and wb.examples.error(wb.artifact) is None:
            return (gr.skip(),) * EXAMPLE_OUTPUTS
        return self.example_view(wb, "harmful")

    @guarded
    def example_after_activate(self, shown_key: str, request: gr.Request):
        """Another polytope is active: the example shown for the previous one is replaced (or prepared), never kept."""
        if not shown_key:
            return self.left_alone()
        return self.example_view(session_bench(self.wb, request), "harmful")

    @staticmethod
    def left_alone() -> tuple:
        """Every example output untouched, and the timer stopped."""
        return (*(gr.skip(),) * 12, gr.Timer(active=False), gr.skip())

    @guarded
    def clear_example_before_activate(self, shown_key: str):
        """Activation is about to replace the polytope: the example computed with the previous one leaves the page first,
        so it is never shown beside the new polytope's name (``example_after_activate`` brings the new one)."""
        if not shown_key:
            return self.left_alone()
        return (render.empty(""), gr.update(visible=False), *self.cleared_example("Switching polytope…"), shown_key,
                gr.Timer(active=False), empty_token_table())

    @staticmethod
    def hide_example():
        """The visitor runs their own prompt: the example banner and switch go."""
        return render.empty(""), gr.update(visible=False), "", gr.Timer(active=False)

    @staticmethod
    def show_token_table(which: str, cmp: Comparison | None):
        res = None if cmp is None else cmp.baseline if which == "unsteered" else cmp.intervened
        rows = token_table(res)
        return frame(rows) if rows else empty_token_table()

    @guarded
    def show_run(self, which: str, cmp: Comparison | None):
        if cmp is None:
            return render.empty("Generate something first."), plots.empty_figure("No generation yet.")
        res: GenerationResult = cmp.baseline if which == "unsteered" else cmp.intervened
        label = "unsteered run" if which == "unsteered" else f"{res.mode} run"
        return render.tokens_html(res, label), plots.token_heatmap(res, f"Violations: tokens × facets ({label})")


# ---------------------------------------------------------------- layout and wiring


@dataclass
class ExploreTab:
    prompt: gr.Textbox
    verdict: gr.HTML
    example_outputs: list  # what the worked-example handlers fill (ExploreHandlers.example_view's order)
    example_key: gr.State
    handlers: ExploreHandlers


def build_explore_tab(wb: Workbench, files: Files, last_cmp: gr.State) -> ExploreTab:
    """Build the tab inside the current ``gr.Tabs`` and wire its events; ``last_cmp`` receives each comparison."""
    handlers = ExploreHandlers(wb, files)
    lim = wb.limits
    examples = read_examples()
    # The page is served with the worked example in it (computed before the server answers, or read from the cache):
    # a newcomer sees a result without a round trip. ``load_example`` replaces it where a session's polytope differs.
    initial = handlers.example_values(wb, "harmful")
    first = dict(zip(["base", "other", "verdict", "tokens", "heatmap", "why", "why_dl", "tok_dl", "cmp"], initial[2], strict=True)) \
        if initial else {}
    handlers.initial_key = initial[3] if initial else ""
    if initial:
        last_cmp.value = first["cmp"]
        first["token_table"] = handlers.show_token_table("intervened", first["cmp"])
    with gr.Tab("Explore / Generate", id="explore"):
        example_banner = gr.HTML(initial[0] if initial else render.empty(""), elem_id="example-banner")
        example_pick = gr.Radio([("Harmful example", "harmful"), ("Benign example", "benign")], value="harmful",
                                label="Worked example", visible=bool(initial), elem_id="example-pick")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="Ask anything, or pick an example below", elem_id="prompt")
                gr.Examples([[e["prompt"]] for e in examples], inputs=[prompt],
                            label="Examples (safe, harmful, scary-but-safe, jailbreak-wrapped)",
                            example_labels=[e["label"] for e in examples], examples_per_page=len(examples), elem_id="examples")
            with gr.Column(scale=2):
                mode = gr.Radio(MODE_CHOICES, value=DEFAULT_MODE, label="Intervention", info=help_text("mode", False),
                                elem_id="mode")
                strength = gr.Slider(0.0, STRENGTH_MAX, value=DEFAULT_STRENGTH, step=0.5,
                                     label="Steering strength (how far inside the steering polytope to move)",
                                     info="0 = no move; above 10 answers no longer change (measured)", elem_id="strength")
                max_new = gr.Slider(min(8, lim.max_new_tokens), min(128, lim.max_new_tokens),
                                    value=min(DEFAULT_MAX_NEW_TOKENS, lim.max_new_tokens), step=1, label="Max new tokens",
                                    info=help_text("max_new_tokens", False), elem_id="max-new")
                with gr.Accordion("Steering options", open=False, elem_id="steer-options"):
                    anti_repeat = gr.Checkbox(ANTI_REPEAT > 0, elem_id="anti-repeat",
                                              label=f"Anti-repeat: a steered answer may not repeat any {ANTI_REPEAT} tokens in a row",
                                              info="steered answers only, their own tokens only; off: about half of them loop")
                    fallback = gr.Checkbox(default("fallback"), label="Refuse when the answer check flags the answer",
                                           info="the answer check re-reads the steered answer; still harmful → the refusal text",
                                           elem_id="fallback")
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn", scale=1)
        verdict = gr.HTML(first.get("verdict", render.empty("Pick an example and press Generate.")), elem_id="verdict")
        with gr.Row():
            base_out = gr.Textbox(first.get("base", ""), label="Unsteered", lines=7, interactive=False, elem_id="baseline-output")
            other_out = gr.Textbox(first.get("other", ""), label="With intervention", lines=7, interactive=False,
                                   elem_id="steered-output")
        run_pick = gr.Radio([("Intervened run", "intervened"), ("Unsteered run", "unsteered")], value="intervened",
                            label="Tokens and heatmap of", elem_id="run-pick")
        tokens_view = gr.HTML(first.get("tokens", render.empty("Tokens appear here, coloured by their worst facet violation.")),
                              elem_id="token-view")
        heatmap = gr.Plot(first.get("heatmap", plots.empty_figure("The tokens × facets heatmap appears after a generation.")),
                          elem_id="heatmap",
                          show_label=False)
        why_table = gr.Dataframe(first.get("why", frame([], WHY_COLUMNS)), interactive=False,
                                 label="Why steered: the positions that were edited (answer, your text, chat template), "
                                       "as the steering polytope measured them. " + STEERING_POLYTOPE,
                                 wrap=True, elem_id="why-table", buttons=["copy"],
                                 column_widths=["5%", "8%", "12%", "8%", "8%", "7%", "7%", "11%", "25%", "9%"])
        token_values = gr.Dataframe(first.get("token_table", empty_token_table()), interactive=False, wrap=True, max_height=360,
                                    elem_id="token-table", label="Every token's violation of every facet (what hovering a token shows)")
        with gr.Row(elem_id="explore-share"):
            why_dl = gr.DownloadButton("Download this table (CSV)", visible=False, size="sm", elem_id="why-csv")
            tok_dl = gr.DownloadButton("Download per-token violations (CSV)", visible=False, size="sm", elem_id="tokens-csv")
            # Saves this page's results on the server and copies a link that reopens them (Gradio deep link).
            gr.DeepLinkButton("Copy a link to this result", copied_value="Link copied", size="sm")
        # What the running generation has done so far, for Stop. Inside the Tab: a State placed directly
        # under gr.Tabs counts as a tab there and shifts every tab after it.
        run_state = page_state()
        # the shown example's cache key, "pending:<key>" while it is computed, "" once the visitor runs their own prompt
        example_key = page_state(handlers.initial_key)
        example_timer = gr.Timer(2.0, active=False)

    gen_inputs = [prompt, mode, strength, max_new, anti_repeat, fallback]
    gen_outputs = [base_out, other_out, verdict, tokens_view, heatmap, why_table, why_dl, tok_dl, last_cmp, run_state]
    # The token table is emptied first, in the same chain as the run: a separate listener could land after the run's
    # own table when the server is busy, and leave it empty.
    gen_click = run_btn.click(empty_token_table, None, [token_values], queue=False, **PRIVATE).then(
        handlers.run_generate, gen_inputs, gen_outputs, **PRIVATE)
    gen_submit = prompt.submit(empty_token_table, None, [token_values], queue=False, **PRIVATE).then(
        handlers.run_generate, gen_inputs, gen_outputs, **PRIVATE)
    for event in (gen_click, gen_submit):
        event.success(handlers.show_finished, [last_cmp, run_state, *gen_inputs[1:]], gen_outputs[:8] + gen_inputs,
                      **PRIVATE).then(
            handlers.show_token_table, [run_pick, last_cmp], [token_values], **PRIVATE)
    # Stops streaming to this page and says what was stopped; the run in progress ends and frees the model.
    stop_btn.click(handlers.stopped, [run_state, other_out], gen_outputs[1:], cancels=[gen_click, gen_submit], **PRIVATE)
    run_pick.change(handlers.show_run, [run_pick, last_cmp], [tokens_view, heatmap], **PRIVATE)
    example_outputs = [example_banner, example_pick, *gen_outputs[:9], example_key, example_timer, token_values]
    assert len(example_outputs) == EXAMPLE_OUTPUTS
    hide_outputs = [example_banner, example_pick, example_key, example_timer]
    run_btn.click(handlers.hide_example, None, hide_outputs, show_progress="hidden", **PRIVATE)
    prompt.submit(handlers.hide_example, None, hide_outputs, show_progress="hidden", **PRIVATE)
    example_pick.input(handlers.pick_example, [example_pick, example_key], example_outputs, **PRIVATE)
    example_timer.tick(handlers.poll_example, [example_key, run_state], example_outputs, show_progress="hidden", **PRIVATE)
    run_pick.change(handlers.show_token_table, [run_pick, last_cmp], [token_values], **PRIVATE)
    return ExploreTab(prompt=prompt, verdict=verdict, example_outputs=example_outputs, example_key=example_key,
                      handlers=handlers)

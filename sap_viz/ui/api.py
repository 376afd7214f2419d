"""The documented API (`/generate`, `/analyze`, `/score`, `/label_facet`, `/facets`, `/polytopes`, `/counters`, and
`/activate`, `/reset_counters`, `/proposals`, `/decide_proposal`, `/delete_polytope`).

Plain JSON in and out, so any gradio_client (Python or JS) can call them. Errors reach the caller
as ``gr.Error`` with a one-line message, never a traceback. Settings are bounded by ``Limits``
(``SAP_VIZ_MAX_*``); a prompt longer than the token budget is cut and the result says so
(``truncated`` and ``notice``). No ``from __future__ import annotations`` here: ``gr.api`` reads the
type hints at runtime to build the API schema.
"""

import functools
import inspect
import logging
import math
from collections.abc import Callable

import gradio as gr

from sap_viz.app_state.prompt_checks import check_settings
from sap_viz.app_state.workbench import Workbench
from sap_viz.errors import UserError, WorkbenchError
from sap_viz.method import request_settings
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings
from sap_viz.method.verdict import BY_SPAN, prompt_verdict
from sap_viz.model.hooks import count_hooks
from sap_viz.settings import Limits, get_limits

log = logging.getLogger(__name__)

DEFAULT_STRENGTH = request_settings.DEFAULT_STRENGTH


def user_error(exc: BaseException) -> gr.Error:
    """The app's one error conversion: a UserError is shown as its message (a toast); anything else is a bug,
    logged with its traceback and shown as "internal error, logged", never as the visitor's mistake."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, UserError):
        return gr.Error(str(exc), print_exception=False)
    log.error("internal error in a request", exc_info=exc)
    return gr.Error(f"internal error ({type(exc).__name__}), logged: a bug in sap-viz, not in what you entered",
                    print_exception=False)


def guarded(fn: Callable) -> Callable:
    """Turn exceptions into gr.Error, for plain functions and generators alike."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except Exception as exc:  # noqa: BLE001 — every error must reach the user as a message
                raise user_error(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 — every error must reach the user as a message
            raise user_error(exc) from None
    return wrapper


def make_configs(mode: str, strength: float, max_new_tokens: int, seed: int = 0, limits: Limits | None = None,
                 extra: dict | None = None) -> tuple[GenerationConfig, InterventionConfig]:
    """Checked generation settings from request values, through the core's one settings dataclass
    (``method/request_settings.py``, the CLI and the server use the same); ``extra`` holds the other
    settings by their CLI names (steering, anti_repeat, fallback, sample, ...)."""
    return build_configs(settings_from_request(mode, strength, max_new_tokens, seed, limits, extra), limits or get_limits())


def settings_from_request(mode: str, strength: float, max_new_tokens: int, seed: int = 0, limits: Limits | None = None,
                          extra: dict | None = None) -> RequestSettings:
    given = {"mode": mode, "strength": strength, "max_new_tokens": max_new_tokens, "seed": seed}
    return check_settings(given, extra, limits)


def _tokens(result) -> list[dict]:
    return [{"index": t.index, "text": t.text, "is_prompt": t.is_prompt, "violations": t.violations,
             "max_violation": t.max_violation, "top_facet": t.top_facet, "steered": t.steered,
             "violations_after": t.violations_after if t.steered else None, "delta_norm": t.delta_norm,
             "forced": t.forced, "opener": t.opener} for t in result.tokens]


def generate_payload(wb: Workbench, prompt: str, mode: str, strength: float, max_new_tokens: int, seed: int,
                     extra: dict | None = None) -> dict:
    """Both runs of ``/generate`` with their per-token facet violations."""
    settings = settings_from_request(mode, strength, max_new_tokens, seed, wb.limits, extra)
    gen, cfg = wb.check_request(settings)
    checked = wb.check_prompt(prompt)
    cmp = wb.compare(checked.text, gen, cfg)
    base, other = cmp.baseline, cmp.intervened
    return {
        "prompt": checked.text,
        "truncated": checked.truncated,
        "notice": checked.notice,
        "mode": cfg.mode,
        "polytope": wb.active_name,
        "facet_names": other.facet_names,
        "baseline": base.text,
        "steered": other.text,
        "first_divergence": cmp.first_divergence,
        "prompt_flagged": other.prompt_flagged,
        "flag_reason": other.flag_reason,
        "verdict": other.verdict.to_json() if other.verdict is not None else None,
        "interventions": other.interventions,
        "refused": other.refused,
        "prompt_len": other.prompt_len,
        "settings": other.settings,
        "notices": list(settings.notices),
        "baseline_tokens": _tokens(base),
        "steered_tokens": _tokens(other),
    }


def analysis_payload(wb: Workbench, prompt: str, attribution: bool) -> dict:
    """``/analyze``: the prompt's per-token violations, its flag and (optionally) word-masking attribution."""
    texts, _, viol, checked = wb.prompt_tokens(prompt)
    notices = list(checked.notices)
    art = wb.require_artifact()
    names = [art.facet_name(k) for k in range(art.polytope.num_facets)]
    last = viol[-1]
    k = int(last.argmax())
    start, end = checked.encoded.text_span
    span_peak = float(viol[start:end].max()) if end > start else None
    boundary = art.verdict_boundary
    verdict = prompt_verdict(float(last.max()), span_peak, boundary)  # the one verdict (method/verdict.py)
    out = {
        "prompt": checked.text,
        "truncated": checked.truncated,
        "polytope": wb.active_name,
        "layer": art.layer,
        "facet_names": names,
        "score": float(last.max()),
        "flagged": verdict.flagged,
        "verdict": verdict.to_json(),
        "top_facet": k,
        "top_facet_name": names[k],
        "span_peak": span_peak,
        "span_threshold": None if math.isinf(boundary.span) else boundary.span,
        "flagged_by_span": BY_SPAN in verdict.by,
        "text_span": [start, end],
        "violations": [float(v) for v in last],
        "tokens": [
            {"index": i, "text": t, "violations": [round(float(v), 5) for v in row]}
            for i, (t, row) in enumerate(zip(texts, viol, strict=True))
        ],
    }
    if attribution:
        try:
            out["attribution"] = wb.attribution(checked.text).to_dict()
        except WorkbenchError as exc:  # e.g. too many words: the per-token analysis still stands
            out["attribution"] = None
            notices.append(f"Word-masking attribution skipped: {exc}.")
    out["notice"] = " ".join(notices)
    return out


def score_payload(wb: Workbench, texts: list[str]) -> list[dict]:
    """``/score``: per text, the max violation, the verdict, every facet's violation and the top facet."""
    texts = wb.check_texts(texts)
    scores = wb.score(texts)
    art = wb.require_artifact()
    verdicts = scores.verdicts(art.verdict_boundary)  # the one verdict (method/verdict.py)
    out = []
    for text, v, truncated, verdict in zip(texts, scores.last, scores.truncated, verdicts, strict=True):
        k = int(v.argmax())
        out.append(
            {
                "text": text,
                "truncated": truncated,
                "score": round(verdict.margin, 5),
                "unsafe": verdict.flagged,
                "verdict": verdict.to_json(),
                "top_facet": k,
                "top_facet_name": art.facet_name(k),
                "violations": [round(float(x), 5) for x in v],
            }
        )
    return out


def polytopes_payload(wb: Workbench) -> dict:
    """``/polytopes``: what the server has and what is active."""
    art = wb.artifact
    return {
        "active": wb.active_name,
        "available": wb.list_polytopes(),
        "layer": art.layer if art else None,
        "num_facets": art.polytope.num_facets if art else None,
        "warnings": list(art.warnings) if art else [],
        "error": wb.load_error,
        "map": map_payload(wb),
    }


def map_payload(wb: Workbench) -> dict:
    """The active polytope's training map (Feature map and Facets tabs): built in the background, PCA first, then UMAP."""
    st = wb.map_status()
    return {"pca": st.done, "umap": st.umap_done, "message": st.message, "error": st.error}


OWNER_HEADER = "x-sap-viz-owner-token"  # how an API client passes the owner token with every call


def caller(wb: Workbench, request: gr.Request | None, owner_token: str = "") -> Workbench:
    """The surface for this request: the caller's session, or the owner's with the token (argument or header)."""
    headers = getattr(request, "headers", None) or {}
    token = owner_token or headers.get(OWNER_HEADER, "")
    return wb.session(getattr(request, "session_hash", None), token or None)


def counters_payload(bench: Workbench) -> dict:
    """``/counters``: the caller's counters (a visitor's session, or the server's for the owner) and the hooks attached now."""
    scope = "server" if bench.is_owner else "session"
    return {**bench.counters.to_json(), "scope": scope, "active_hooks": count_hooks(bench.lm.model)}


def register(wb: Workbench) -> None:
    """Register the API endpoints on the current gr.Blocks.

    Every endpoint acts for its caller's session (``gradio_client`` keeps one per client). A call
    acts as the owner when it carries the token (the value of ``SAP_VIZ_OWNER_TOKEN``) in the
    ``X-Sap-Viz-Owner-Token`` header (``Client(url, headers={...})``) or, on the endpoints that exist
    for the owner, as ``owner_token``. Without it a visitor's activation, labels and counter resets
    stay in their session, and a polytope it names must be a shipped one or its session's own. The
    endpoints that predate roles keep their parameters, so raw HTTP clients need no change.
    """

    @guarded
    def generate(prompt: str, mode: str = request_settings.DEFAULT_MODE, strength: float = DEFAULT_STRENGTH,
                 max_new_tokens: int = request_settings.DEFAULT_MAX_NEW_TOKENS, seed: int = request_settings.default("seed"),
                 settings: dict | None = None, request: gr.Request = None) -> dict:
        """Generate unsteered and with the chosen intervention (monitor | steer | refuse); per-token facet violations for both.

        strength: the steering depth, 0-10 (only for mode "steer").
        settings: any other setting by its CLI name (steering, anti_repeat, fallback, sample, temperature, top_p,
        max_step, generated_tokens, opener, positions, hinge_weight, max_steps, max_interventions, refusal_text,
        generation_threshold, span_threshold).
        """
        return generate_payload(caller(wb, request), prompt, mode, strength, max_new_tokens, seed, settings)

    @guarded
    def analyze(prompt: str, attribution: bool = True, request: gr.Request = None) -> dict:
        """Per-token facet violations of a prompt (no generation) and word-masking attribution per facet."""
        return analysis_payload(caller(wb, request), prompt, attribution)

    @guarded
    def score(texts: list[str], request: gr.Request = None) -> list[dict]:
        """Score a list of texts: max violation (≥ 0 = unsafe), every facet's violation, the top facet."""
        return score_payload(caller(wb, request), texts)

    @guarded
    def label_facet(index: int, name: str, policy: str = "", author: str = "", confidence: float = 1.0, category: str = "auto",
                    request: gr.Request = None) -> dict:
        """Label a facet of the active polytope. The owner's label is saved to facets.json (history kept); a visitor's
        becomes a proposal (``"proposed": true``) for the owner to accept, except on the visitor's own polytopes.

        category: the harm category the name claims — "auto" (read from the name, else the policy text), one of the ten
        policy categories, or "none". A facet with a check-set scorecard is rescored for it (``scorecard.name_score``).
        """
        return caller(wb, request).label(index, name, policy, author, confidence, category)

    @guarded
    def facets(request: gr.Request = None) -> list[dict]:
        """The active polytope's facet labels with their history, the category each name claims and its check-set
        scorecard (``null`` until ``python -m sap_viz measure --part facets`` made one)."""
        return [{**f, "category": f.get("category"), "scorecard": f.get("scorecard")} for f in caller(wb, request).refresh_facets()]

    @guarded
    def polytopes(request: gr.Request = None) -> dict:
        """Polytopes this caller can use (shipped ones and the session's own), the active one, the default and the caller's role."""
        bench = caller(wb, request)
        return {**polytopes_payload(bench), "default": wb.active_name, "role": "owner" if bench.is_owner else "visitor"}

    @guarded
    def counters(request: gr.Request = None) -> dict:
        """Deployment counters: the session's for a visitor, the server's for the owner (summary, recent requests)."""
        return counters_payload(caller(wb, request))

    for fn in (generate, analyze, score, label_facet, facets, polytopes, counters):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=4 if fn.__name__ in CHEAP else 1)
    _register_role_endpoints(wb)


#: Endpoints that never run the model: they may run beside a generation.
CHEAP = ("facets", "polytopes", "counters", "proposals", "reset_counters", "decide_proposal", "activate", "delete_polytope")


def _register_role_endpoints(wb: Workbench) -> None:
    """The endpoints that exist because of roles: activation, counter resets, proposals, deletion."""

    @guarded
    def activate(name: str, owner_token: str = "", request: gr.Request = None) -> dict:
        """Make a polytope (a shipped one or the session's own) active for this session; for the owner, the default for everyone."""
        bench = caller(wb, request, owner_token)
        if bench.is_owner:
            bench.set_default(name)
        else:
            bench.activate(name)
        return polytopes_payload(bench)

    @guarded
    def reset_counters(scope: str = "session", owner_token: str = "", request: gr.Request = None) -> dict:
        """Reset this session's counters; scope "server" (owner only) resets the server's."""
        if scope not in ("session", "server"):
            raise WorkbenchError(f"scope must be 'session' or 'server', got {scope!r}")
        bench = caller(wb, request, owner_token)
        bench.reset_counters(scope)
        return counters_payload(bench)

    @guarded
    def proposals(polytope: str = "", request: gr.Request = None) -> list[dict]:
        """Open label proposals of the active polytope, or of ``polytope`` (a shipped one or the session's own)."""
        return caller(wb, request).proposals(polytope or None)

    @guarded
    def decide_proposal(proposal_id: str, accept: bool, polytope: str = "", owner_token: str = "", request: gr.Request = None) -> dict:
        """Owner only: accept a label proposal (into facets.json, with history) or reject it."""
        return caller(wb, request, owner_token).decide_proposal(proposal_id, accept, polytope or None)

    @guarded
    def delete_polytope(name: str, owner_token: str = "", request: gr.Request = None) -> dict:
        """Owner only: delete a stored polytope (not the default one)."""
        bench = caller(wb, request, owner_token)
        bench.delete_polytope(name)
        return polytopes_payload(bench)

    for fn in (activate, reset_counters, proposals, decide_proposal, delete_polytope):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=4)

"""One chat completion on the loaded model and polytope: the answer, why it ended, and the ``sap`` report beside it.

Generation is the CLI's and the app's (``method.generation.stream_generation``); this module adds what
an OpenAI client expects around it: stop sequences (the text is cut before the first one and
generation ends at the next token), ``finish_reason`` (``content_filter`` for a refused answer), token
usage, and the monitor's verdict in plain words.

Every answer streams token by token, in every mode. The answer check reads each token as the model reads it back
(``method/answer_reader.py``); when it fires in steer mode (fallback on) or refuse mode, generation ends before the
next token is written, so the client has received the answer up to the token whose reading fired the check and
nothing after it. The completion is then ``blocked``: ``finish_reason`` is ``content_filter`` and the refusal is
its final content (docs/interfaces.md, "Streams the answer check stops"). In monitor mode the stream goes on and the
``sap`` object says where the check fired.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from sap_viz.analysis.account import Account, fired_words, generation_account
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.generation import stream_generation
from sap_viz.method.generation_results import GenerationResult
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import SettingsError, check_for_polytope
from sap_viz.method.scoring import prompt_scores
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import encode_prompt, truncation_notice
from sap_viz.serve.conversation import ConversationError, conversation_model
from sap_viz.serve.errors import bad_request
from sap_viz.serve.moderation import ModerationRequest, Moderator
from sap_viz.serve.schemas import ChatRequest
from sap_viz.settings import Limits, env_name

TOP_FACETS = 3


class StopScanner:
    """Cuts a growing text before the first stop sequence; holds back a tail that could still become one."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.hit: str | None = None

    def visible(self, text: str, final: bool = False) -> str:
        found = [(text.find(s), s) for s in self.stops if s in text]
        if found:
            index, self.hit = min(found)
            return text[:index]
        if final or not self.stops:
            return text
        hold = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        return text[: len(text) - hold]


@dataclass
class Completion:
    text: str
    finish_reason: str  # stop | length | content_filter
    result: GenerationResult
    sap: dict
    usage: dict
    blocked: bool = False  # the answer check stopped the answer: ``text`` is the refusal that replaces it


class ChatEngine:
    """The served model and polytope; ``complete`` runs one checked request (in the caller's thread)."""

    def __init__(self, lm: LoadedModel, art: PolytopeArtifact, model_name: str, polytope_name: str, limits: Limits):
        self.lm, self.art, self.model_name, self.polytope_name, self.limits = lm, art, model_name, polytope_name, limits

    def prepare(self, req: ChatRequest) -> tuple[LoadedModel, tuple[str, ...]]:
        """Everything that can fail before generating (settings for this polytope, the conversation's length): a 400 now.
        Returns the model with the conversation in front, and the notices for the ``sap`` report (a cut prompt)."""
        try:
            check_for_polytope(req.settings, self.art.steering is not None)
        except SettingsError as exc:
            raise bad_request(str(exc), "sap.steering", "invalid_value") from None
        try:
            lm = conversation_model(self.lm, list(req.history))
            enc = encode_prompt(lm.tokenizer, req.prompt, self.art.chat_template, self.limits.max_prompt_tokens)
        except ConversationError as exc:
            raise bad_request(str(exc), "messages") from None
        start, end = enc.text_span
        if end <= start:
            raise bad_request(f"the earlier messages fill the {self.limits.max_prompt_tokens}-token prompt budget "
                              f"({env_name('max_prompt_tokens')}); send fewer or shorter messages", "messages",
                              "context_length_exceeded")
        budget = self.limits.max_prompt_tokens
        return lm, ((truncation_notice(budget, enc.kept_chars, len(req.prompt)),) if enc.truncated else ())

    def moderate(self, req: ModerationRequest) -> list[dict]:
        """OpenAI moderation results for checked inputs: the prompt readings ``sap-viz score`` uses, then their verdicts."""
        return Moderator(self.art).results(prompt_scores(self.lm, self.art, list(req.texts)), req.notices)

    def complete(self, req: ChatRequest, cancel: threading.Event, emit: Callable[[str], None] | None = None,
                 lm: LoadedModel | None = None) -> Completion:
        """Generate; ``emit`` receives the visible text's new pieces as they are final (streaming). A blocked answer's
        refusal is not emitted: the caller sends it as the final content, with the block (``Completion.blocked``)."""
        if lm is None:
            lm, notices = self.prepare(req)
            req = replace(req, notices=(*req.notices, *notices))
        gen, cfg = build_configs(req.settings, self.limits)
        scanner = StopScanner(req.stop)
        sent = ""
        result: GenerationResult | None = None
        for item in stream_generation(lm, self.art, req.prompt, gen, cfg, cancel):
            if isinstance(item, GenerationResult):
                result = item
                continue
            shown = scanner.visible(item)
            if scanner.hit is not None:
                cancel.set()  # ends generation at the next token
            if emit is not None and len(shown) > len(sent):
                emit(shown[len(sent):])
                sent = shown
        assert result is not None
        blocked = bool(result.fallback)
        refused = result.refused or blocked
        text = result.text if refused else scanner.visible(result.text, final=True)
        if emit is not None and not blocked and len(text) > len(sent):
            emit(text[len(sent):])
            sent = text
        generated = result.generated
        eos = set(lm.eos_ids)
        if refused:
            finish = "content_filter"
        elif scanner.hit is not None or (generated and generated[-1].token_id in eos):
            finish = "stop"
        else:
            finish = "length" if len(generated) >= gen.max_new_tokens else "stop"
        usage = {"prompt_tokens": result.prompt_len, "completion_tokens": len(generated),
                 "total_tokens": result.prompt_len + len(generated)}
        sap = self.report(req, result, refused, scanner.hit)
        if emit is not None:
            sap["streamed_text"] = sent if blocked else None  # what reached the client before the check stopped it
        return Completion(text, finish, result, sap, usage, blocked)

    def report(self, req: ChatRequest, result: GenerationResult, refused: bool, stop: str | None) -> dict:
        """The ``sap`` object: the verdict, its reason, the top facets by name, what the intervention did."""
        art = self.art
        last = result.tokens[result.prompt_len - 1]
        values = last.violations or []
        order = sorted(range(len(values)), key=lambda k: -values[k])
        top = [{"index": k, "name": art.facet_name(k), "violation": round(values[k], 4)} for k in order[:TOP_FACETS]]
        account = generation_account(result, art.facets)
        out = {
            "polytope": self.polytope_name, "layer": art.layer, "mode": result.mode,
            "flagged": account.flagged, "flagged_by": list(account.flagged_by), "prompt_flagged": result.prompt_flagged,
            "reason": self._reason(result, account), "flag_reason": result.flag_reason,
            "verdict": result.verdict.to_json() if result.verdict is not None else None,
            "score": last.max_violation, "span_peak": result.span_peak, "top_facets": top,
            "steered": result.interventions > 0, "interventions": result.interventions, "refused": refused,
            "answer_tokens_over_boundary": sum(1 for t in result.generated if result.is_over(t)),
            "answer_check": result.answer_check, "fallback": result.fallback, "blocked": result.fallback,
            "stop_sequence": stop, "truncated": result.truncated,
            "settings": req.settings.to_json(), "notices": list(req.notices),
            "account": account.to_json(),  # the account every view renders
        }
        if req.tokens:
            out["tokens"] = [{**row, "violations": None if row["violations"] is None else [round(v, 5) for v in row["violations"]]}
                             for row in result.token_rows()]
        return out

    def _reason(self, result: GenerationResult, account: Account) -> str | None:
        """The flag in words: which facet, what value, against which boundary; or where the answer check fired."""
        kind = result.flag_reason
        if kind is None:
            check = account.answer_check
            if not account.answer_flagged:
                return None
            return f"the answer check fired {fired_words(check)} (score {check['score']:+.3f} ≥ {check['threshold']:+.3f})"
        if kind == "last token":
            last = result.tokens[result.prompt_len - 1]
            k = last.top_facet
            return (f"the prompt's last token is outside facet {k} '{self.art.facet_name(k)}' "
                    f"(violation {last.max_violation:+.3f} ≥ {result.verdict.boundary.last:.3g})")
        start, end = result.text_span
        peak = max((t for t in result.tokens[start:end] if t.max_violation is not None), key=lambda t: t.max_violation)
        return (f"the request's token {peak.text!r} reaches {peak.max_violation:+.3f} on facet {peak.top_facet} "
                f"'{self.art.facet_name(peak.top_facet)}' (span boundary {result.settings.get('span_threshold'):.3f})")

"""Generation with the polytope hook: monitor, Safe Flow steering, refusal fallback, side-by-side.

One forward hook on decoder block L (the polytope's layer) wraps an ordinary ``model.generate`` —
greedy or sampled, with or without KV cache — so any architecture works. The hook state lives in a
per-call object that is bound to the calling thread, so nothing leaks between calls or users.

Position bookkeeping: the hook sees the block output for columns ``[start, start + S)``. The first
call is the prefill (start 0); with a KV cache each later call is one new column; without a cache
the whole sequence is recomputed and earlier steering edits are replayed, so cached and uncached
runs produce the same tokens.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.steering import SafeFlowConfig, safe_flow
from sap_viz.model.hooks import residual_hook
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import encode_prompt

MODES = ("monitor", "steer", "refuse")
POSITIONS = ("last", "generated", "all")
DEFAULT_REFUSAL = "Sorry, I can't answer your request."


@dataclass
class GenerationConfig:
    max_new_tokens: int = 48
    min_new_tokens: int = 0  # benchmarks set it to max_new_tokens so every run has equal length
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    use_cache: bool = True
    max_prompt_tokens: int = 1024
    max_new_tokens_cap: int = 512

    def validate(self) -> None:
        if not 1 <= self.max_new_tokens <= self.max_new_tokens_cap:
            raise ValueError(f"max_new_tokens must be between 1 and {self.max_new_tokens_cap}, got {self.max_new_tokens}")
        if self.do_sample and not (0 < self.temperature <= 10 and 0 < self.top_p <= 1):
            raise ValueError("temperature must be in (0, 10] and top_p in (0, 1]")
        if not 8 <= self.max_prompt_tokens <= 32768:
            raise ValueError("max_prompt_tokens must be between 8 and 32768")


@dataclass
class InterventionConfig:
    mode: str = "monitor"  # monitor | steer | refuse
    positions: str = "last"  # last: prompt's last token + every generated one; generated: skip prefill; all: every prompt token too
    max_interventions: int = 20
    threshold: float = 0.0  # prompt tokens: the polytope's calibrated boundary
    # Generated tokens: None = the polytope's calibrated generation threshold (see
    # generation_calibration.py), else ``threshold``. Generated-token states drift from the prompt
    # states the polytope was trained on; a boundary of 0 there fires on most benign answers.
    generation_threshold: float | None = None
    # Prompt span: a prompt is also flagged when any token of the *user's text* reaches this value.
    # A jailbreak wrapper can leave the last token inside while the request in the middle is outside.
    # None = the polytope's calibrated value (absent: off); ``math.inf`` turns the check off.
    span_threshold: float | None = None
    refusal_text: str = DEFAULT_REFUSAL
    flow: SafeFlowConfig = field(default_factory=SafeFlowConfig)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if not 0 <= self.max_interventions <= 10000:
            raise ValueError("max_interventions must be between 0 and 10000")
        if self.mode == "refuse" and not self.refusal_text.strip():
            raise ValueError("refusal_text must not be empty")
        if self.generation_threshold is not None and not math.isfinite(self.generation_threshold):
            raise ValueError("generation_threshold must be a finite number")
        if not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        if self.span_threshold is not None and math.isnan(self.span_threshold):
            raise ValueError("span_threshold must be a number")
        if self.mode == "steer":
            self.flow.validate()

    def resolved(self, artifact: PolytopeArtifact) -> InterventionConfig:
        """A copy with a concrete generation threshold (the polytope's calibrated one when unset)."""
        out = self
        if out.generation_threshold is None:
            calibrated = artifact.generation_threshold
            out = replace(out, generation_threshold=out.threshold if calibrated is None else max(out.threshold, calibrated))
        if out.span_threshold is None:
            calibrated = artifact.span_threshold
            out = replace(out, span_threshold=math.inf if calibrated is None else max(out.threshold, calibrated))
        return out

    def threshold_at(self, is_prompt: bool, prompt_flagged: bool) -> float:
        return token_boundary(self.threshold, self.generation_threshold, is_prompt, prompt_flagged)


def token_boundary(threshold: float, generation_threshold: float | None, is_prompt: bool, prompt_flagged: bool) -> float:
    """Prompt tokens, and every token of a generation whose prompt was flagged, use ``threshold``;
    the answer tokens of an unflagged prompt use the calibrated ``generation_threshold``."""
    return threshold if is_prompt or prompt_flagged or generation_threshold is None else generation_threshold


@dataclass
class TokenInfo:
    index: int
    token_id: int
    text: str
    is_prompt: bool
    violations: list[float] | None  # K values of the state after reading this token (None: never computed)
    violations_after: list[float] | None
    steered: bool = False
    delta_norm: float = 0.0
    steps: int = 0
    forced: bool = False  # emitted by the refusal fallback

    @property
    def max_violation(self) -> float | None:
        return max(self.violations) if self.violations else None

    @property
    def top_facet(self) -> int | None:
        return max(range(len(self.violations)), key=self.violations.__getitem__) if self.violations else None


@dataclass
class GenerationResult:
    prompt: str
    mode: str
    text: str
    tokens: list[TokenInfo]
    prompt_len: int
    truncated: bool
    facet_names: list[str]
    settings: dict
    text_span: tuple[int, int] = (0, 0)  # [start, end) of the user's text among the prompt tokens

    @property
    def generated(self) -> list[TokenInfo]:
        return self.tokens[self.prompt_len :]

    @property
    def interventions(self) -> int:
        return sum(t.steered for t in self.tokens)

    @property
    def refused(self) -> bool:
        return any(t.forced for t in self.tokens)

    @functools.cached_property
    def flag_reason(self) -> str | None:
        """'last token' when the prompt's last state is outside, 'prompt span' when a state of the user's text
        reaches the span threshold, None when the prompt is not flagged. Cached: every per-token
        boundary (``threshold_for``) depends on it."""
        last = self.tokens[self.prompt_len - 1] if self.prompt_len else None
        if last and last.max_violation is not None and last.max_violation >= self.settings.get("threshold", 0.0):
            return "last token"
        peak = self.span_peak
        span_threshold = self.settings.get("span_threshold")
        if peak is not None and span_threshold is not None and peak >= span_threshold:
            return "prompt span"
        return None

    @property
    def prompt_flagged(self) -> bool:
        return self.flag_reason is not None

    @property
    def span_peak(self) -> float | None:
        """Highest max violation over the user's text tokens (None when none was computed)."""
        start, end = self.text_span
        values = [t.max_violation for t in self.tokens[start:end] if t.max_violation is not None]
        return max(values) if values else None

    def threshold_for(self, token: TokenInfo) -> float:
        """The boundary this run applied to the token."""
        return token_boundary(self.settings.get("threshold", 0.0), self.settings.get("generation_threshold"),
                              token.is_prompt, self.prompt_flagged)

    def is_over(self, token: TokenInfo) -> bool:
        return token.max_violation is not None and token.max_violation >= self.threshold_for(token)

    def violating_tokens(self) -> int:
        return sum(1 for t in self.tokens if self.is_over(t))

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt, "mode": self.mode, "text": self.text, "prompt_len": self.prompt_len,
            "truncated": self.truncated, "facet_names": self.facet_names, "settings": self.settings,
            "interventions": self.interventions, "refused": self.refused, "prompt_flagged": self.prompt_flagged,
            "flag_reason": self.flag_reason, "text_span": list(self.text_span), "span_peak": self.span_peak,
            "tokens": [asdict(t) for t in self.tokens],
        }


class PolytopeHook:
    """Per-call hook state: violations per column, steering edits, refusal triggers."""

    def __init__(self, artifact: PolytopeArtifact, cfg: InterventionConfig, pad_lens: list[int], prompt_width: int,
                 spans: list[tuple[int, int]] | None = None):
        self.poly = artifact.polytope
        self.cfg = cfg
        self.prompt_width = prompt_width  # columns before this one are prompt tokens (left padded)
        self.spans = spans or [(p, prompt_width) for p in pad_lens]  # user-text columns per row
        self.pad_lens = torch.tensor(pad_lens)
        self.batch = len(pad_lens)
        self.owner = threading.get_ident()
        self.seen = 0
        self.chunks: list[dict[str, torch.Tensor]] = []
        self.edits: dict[tuple[int, int], torch.Tensor] = {}
        self.interventions = torch.zeros(self.batch, dtype=torch.long)
        self.flagged = torch.zeros(self.batch, dtype=torch.bool)  # rows whose prompt's last token was outside
        self.refuse_from: list[int | None] = [None] * self.batch  # column where the refusal was triggered

    def _eligible_columns(self, start: int, width: int) -> list[int]:
        last = start + width - 1
        if self.cfg.positions == "all":
            return list(range(max(start, self.seen), last + 1))
        if self.cfg.positions == "generated" and start == 0 and self.seen == 0:
            return []
        return [last]

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != self.owner:
            return None  # another thread's forward pass on the shared model: not ours
        width = hidden.shape[1]
        start = 0 if self.seen == 0 else max(0, self.seen + 1 - width)
        out: torch.Tensor | None = None
        for (row, col), state in self.edits.items():  # no-cache recompute: replay earlier edits
            if start <= col < min(self.seen, start + width):
                out = hidden.clone() if out is None else out
                out[row, col - start] = state.to(hidden.dtype)
        new_from = max(self.seen, start)
        fresh = hidden[:, new_from - start :].float()
        if fresh.shape[1] == 0:
            return out
        # Bookkeeping lives on the CPU; only the facet check and Safe Flow run on the model's device.
        before = self.poly.violations(fresh).cpu()
        chunk = {
            "before": before, "after": before.clone(),
            "steered": torch.zeros(fresh.shape[:2], dtype=torch.bool),
            "delta": torch.zeros(fresh.shape[:2]), "steps": torch.zeros(fresh.shape[:2], dtype=torch.long),
        }
        cols = torch.arange(new_from, start + width)
        real = cols[None, :] >= self.pad_lens[:, None]  # left padding is never steered
        if new_from <= self.prompt_width - 1 < start + width:
            self.flagged = before[:, self.prompt_width - 1 - new_from].max(dim=1).values >= self.cfg.threshold
            span_threshold = self.cfg.span_threshold
            if new_from == 0 and span_threshold is not None and math.isfinite(span_threshold):
                peaks = before.max(dim=2).values
                for row, (a, b) in enumerate(self.spans):
                    if b > a and float(peaks[row, a:b].max()) >= span_threshold:
                        self.flagged[row] = True
        if self.cfg.mode in ("steer", "refuse"):
            for col in self._eligible_columns(start, width):
                j = col - new_from
                threshold = torch.tensor([self.cfg.threshold_at(col < self.prompt_width, bool(f)) for f in self.flagged])
                if col == self.prompt_width - 1:  # a prompt flagged by its span acts at its last token too
                    threshold = torch.where(self.flagged, torch.tensor(-math.inf), threshold)
                over = (before[:, j].max(dim=1).values >= threshold) & real[:, j]
                if self.cfg.mode == "refuse":
                    for row in torch.nonzero(over).flatten().tolist():
                        if self.refuse_from[row] is None:
                            self.refuse_from[row] = col
                    continue
                rows = torch.nonzero(over & (self.interventions < self.cfg.max_interventions)).flatten()
                if len(rows) == 0:
                    continue
                res = safe_flow(self.poly, fresh[rows.to(fresh.device), j], self.cfg.flow, threshold[rows])
                steered = res.steered.cpu()
                if not steered.any():
                    continue
                out = hidden.clone() if out is None else out
                for i, row in enumerate(rows.tolist()):
                    if not steered[i]:
                        continue
                    out[row, col - start] = res.hidden[i].to(hidden.dtype)
                    self.edits[(row, col)] = res.hidden[i].clone()
                    chunk["after"][row, j] = res.after[i].cpu()
                    chunk["steered"][row, j] = True
                    chunk["delta"][row, j] = float(res.delta_norm[i])
                    chunk["steps"][row, j] = int(res.steps[i])
                self.interventions[rows[steered]] += 1
        self.chunks.append(chunk)
        self.seen = start + width
        return out

    def assembled(self) -> dict[str, torch.Tensor]:
        return {k: torch.cat([c[k] for c in self.chunks], dim=1) for k in self.chunks[0]} if self.chunks else {}


class RefusalProcessor(LogitsProcessor):
    """Forces the refusal text token by token (then EOS) for rows whose hook triggered a refusal."""

    def __init__(self, hook: PolytopeHook, refusal_ids: list[int], eos_id: int | None):
        self.hook = hook
        self.ids = refusal_ids + ([eos_id] if eos_id is not None else [])
        self.progress = [0] * hook.batch

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, trigger in enumerate(self.hook.refuse_from):
            if trigger is None or self.progress[row] >= len(self.ids):
                continue
            forced = self.ids[self.progress[row]]
            scores[row] = torch.full_like(scores[row], float("-inf"))
            scores[row, forced] = 0.0
            self.progress[row] += 1
        return scores


class _CancelCriteria(StoppingCriteria):
    """Ends generation at the next token once ``event`` is set (a user pressed Stop or went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _QueueStreamer(BaseStreamer):
    """Hands each step's new token ids (one per row) to a consumer thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._prompt_skipped = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_skipped:
            self._prompt_skipped = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(None)


def _eos_ids(lm: LoadedModel) -> list[int]:
    eos = getattr(lm.model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = lm.tokenizer.eos_token_id
    return [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def _build_results(
    lm: LoadedModel, artifact: PolytopeArtifact, prompts: list[str], enc: list, sequences: torch.Tensor,
    hook: PolytopeHook, width: int, cfg: InterventionConfig, gen: GenerationConfig,
) -> list[GenerationResult]:
    data = hook.assembled()
    names = [artifact.facet_name(k) for k in range(artifact.polytope.num_facets)]
    eos = set(_eos_ids(lm))
    pad_id = lm.tokenizer.pad_token_id
    settings = {"mode": cfg.mode, "positions": cfg.positions, "threshold": cfg.threshold,
                "generation_threshold": cfg.generation_threshold,
                "span_threshold": cfg.span_threshold if cfg.span_threshold is None or math.isfinite(cfg.span_threshold) else None,
                "max_interventions": cfg.max_interventions, **asdict(cfg.flow),
                "max_new_tokens": gen.max_new_tokens, "do_sample": gen.do_sample, "seed": gen.seed,
                "layer": artifact.layer}
    results = []
    for row, (prompt, e) in enumerate(zip(prompts, enc, strict=True)):
        pad = hook.pad_lens[row].item()
        ids = sequences[row, pad:].tolist()
        gen_ids = ids[len(e.ids):]
        cut = next((i + 1 for i, t in enumerate(gen_ids) if t in eos), len(gen_ids))
        gen_ids = gen_ids[:cut]
        while gen_ids and pad_id is not None and gen_ids[-1] == pad_id and pad_id not in eos:
            gen_ids.pop()
        ids = e.ids + gen_ids
        tokens = []
        refuse_col = hook.refuse_from[row]
        for i, tid in enumerate(ids):
            col = pad + i
            known = data and col < data["before"].shape[1]
            tokens.append(TokenInfo(
                index=i, token_id=tid, text=lm.tokenizer.decode([tid]), is_prompt=i < len(e.ids),
                violations=data["before"][row, col].tolist() if known else None,
                violations_after=data["after"][row, col].tolist() if known else None,
                steered=bool(data["steered"][row, col]) if known else False,
                delta_norm=float(data["delta"][row, col]) if known else 0.0,
                steps=int(data["steps"][row, col]) if known else 0,
                forced=refuse_col is not None and col > refuse_col and i >= len(e.ids),
            ))
        text = lm.tokenizer.decode(gen_ids, skip_special_tokens=True)
        results.append(GenerationResult(prompt, cfg.mode, text, tokens, len(e.ids), e.truncated, names, settings, e.text_span))
    return results


def _prepare(lm: LoadedModel, artifact: PolytopeArtifact, prompts: list[str], gen: GenerationConfig, cfg: InterventionConfig):
    gen.validate()
    cfg.validate()
    if not prompts:
        raise ValueError("no prompts given")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise ValueError("a prompt must be non-empty text")
    enc = [encode_prompt(lm.tokenizer, p, artifact.chat_template, gen.max_prompt_tokens) for p in prompts]
    width = max(len(e.ids) for e in enc)
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(enc), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    pad_lens = []
    for row, e in enumerate(enc):
        pad = width - len(e.ids)  # left padding: every row ends at the same column
        ids[row, pad:] = torch.tensor(e.ids)
        mask[row, pad:] = 1
        pad_lens.append(pad)
    return enc, ids, mask, pad_lens, width


def _generate_kwargs(lm: LoadedModel, gen: GenerationConfig, processors: LogitsProcessorList) -> dict:
    kwargs = dict(max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens or None, do_sample=gen.do_sample, use_cache=gen.use_cache,
                  logits_processor=processors, pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=_eos_ids(lm))
    if gen.do_sample:
        kwargs |= dict(temperature=gen.temperature, top_p=gen.top_p, top_k=0)
    else:
        kwargs |= dict(temperature=None, top_p=None, top_k=None)
    return kwargs


def run_generation(
    lm: LoadedModel,
    artifact: PolytopeArtifact,
    prompts: list[str] | str,
    gen: GenerationConfig | None = None,
    cfg: InterventionConfig | None = None,
    streamer: BaseStreamer | None = None,
    cancel: threading.Event | None = None,
) -> list[GenerationResult]:
    """Generate for one or several prompts with the polytope hook in the given mode.

    Setting ``cancel`` ends generation after the current token; the results then hold what was generated.
    """
    gen, cfg = gen or GenerationConfig(), cfg or InterventionConfig()
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    enc, ids, mask, pad_lens, width = _prepare(lm, artifact, prompts, gen, cfg)
    cfg = cfg.resolved(artifact)
    artifact.polytope.to(lm.device)
    spans = [(pad + e.text_span[0], pad + e.text_span[1]) for pad, e in zip(pad_lens, enc, strict=True)]
    hook = PolytopeHook(artifact, cfg, pad_lens, width, spans)
    processors = LogitsProcessorList()
    if cfg.mode == "refuse":
        refusal_ids = lm.tokenizer(cfg.refusal_text, add_special_tokens=False)["input_ids"]
        processors.append(RefusalProcessor(hook, list(refusal_ids), (_eos_ids(lm) or [None])[0]))
    torch.manual_seed(gen.seed)
    with residual_hook(lm.model, artifact.layer, hook, lm.layers_path), torch.no_grad():
        stopping = StoppingCriteriaList([_CancelCriteria(cancel)]) if cancel is not None else None
        sequences = lm.model.generate(
            input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), streamer=streamer,
            stopping_criteria=stopping, **_generate_kwargs(lm, gen, processors),
        )
    return _build_results(lm, artifact, prompts, enc, sequences.cpu(), hook, width, cfg, gen)


def generate_one(lm, artifact, prompt: str, gen=None, cfg=None) -> GenerationResult:
    return run_generation(lm, artifact, [prompt], gen, cfg)[0]


def stream_generation(
    lm: LoadedModel, artifact: PolytopeArtifact, prompt: str, gen: GenerationConfig | None = None, cfg: InterventionConfig | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[str | GenerationResult]:
    """Yield the generated text as it grows, then the full GenerationResult as the last item."""
    gen, cfg = gen or GenerationConfig(), cfg or InterventionConfig()
    streamer = _QueueStreamer()
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["result"] = run_generation(lm, artifact, [prompt], gen, cfg, streamer, cancel)[0]
        except BaseException as exc:  # surfaced in the consumer thread below
            box["error"] = exc
        finally:
            streamer.end()

    # Validate before starting the thread so bad settings raise here, in the caller.
    gen.validate()
    cfg.validate()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    ids: list[int] = []
    eos = set(_eos_ids(lm))
    while (item := streamer.queue.get()) is not None:
        if item[0] in eos:
            continue
        ids.append(item[0])
        yield lm.tokenizer.decode(ids, skip_special_tokens=True)
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    yield box["result"]  # type: ignore[misc]


@dataclass
class Comparison:
    baseline: GenerationResult
    intervened: GenerationResult

    @property
    def first_divergence(self) -> int | None:
        """Index (0-based, generated tokens) of the first token where the two runs differ; None if identical."""
        a = [t.token_id for t in self.baseline.generated]
        b = [t.token_id for t in self.intervened.generated]
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return i
        return None if len(a) == len(b) else min(len(a), len(b))

    def to_dict(self) -> dict:
        return {"baseline": self.baseline.to_dict(), "intervened": self.intervened.to_dict(),
                "first_divergence": self.first_divergence}


def compare(lm, artifact, prompt: str, gen: GenerationConfig | None = None, cfg: InterventionConfig | None = None) -> Comparison:
    """Unsteered (monitor) and intervened runs with the same settings and seed."""
    cfg = cfg or InterventionConfig(mode="steer")
    monitor = replace(cfg, mode="monitor")
    base = generate_one(lm, artifact, prompt, gen, monitor)
    other = base if cfg.mode == "monitor" else generate_one(lm, artifact, prompt, gen, cfg)
    return Comparison(base, other)

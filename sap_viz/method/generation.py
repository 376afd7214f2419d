"""Generation with the polytope hook: monitor, Safe Flow steering, refusal fallback, side-by-side.

One forward hook on decoder block L (the polytope's layer, ``polytope_hook.PolytopeHook``) wraps an
ordinary ``model.generate``, greedy or sampled, with or without KV cache, so any architecture works.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from sap_viz.errors import UserError
from sap_viz.method.answer_reader import AnswerReader, AnswerStop
from sap_viz.method.anti_repeat import AnswerNoRepeat
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.directional_steering import DirectionalHook, LetGoProcessor, OpenerProcessor, sentence_end_tokens
from sap_viz.method.generation_results import Comparison, GenerationResult, TokenInfo
from sap_viz.method.measured_file import known_limits, measured_parts
from sap_viz.method.polytope_hook import InterventionConfig, PolytopeHook, RefusalProcessor
from sap_viz.method.request_settings import DEFAULT_MAX_NEW_TOKENS
from sap_viz.model.hooks import capture_and_stop, residual_hook
from sap_viz.model.loading import LoadedModel, left_padded
from sap_viz.model.prompts import encode_prompt

#: Below this temperature a sampled generation decodes greedily (the fuzzer's 5e-324 made the sampler's
#: probabilities NaN; 1e-30 still works, so the bound leaves a wide margin and changes no usable setting).
MIN_SAMPLING_TEMPERATURE = 1e-6


@dataclass
class GenerationConfig:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
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
            raise UserError(f"max_new_tokens must be between 1 and {self.max_new_tokens_cap}, got {self.max_new_tokens}")
        if self.do_sample and not (0 < self.temperature <= 10 and 0 < self.top_p <= 1):
            raise UserError("temperature must be in (0, 10] and top_p in (0, 1]")
        if not 8 <= self.max_prompt_tokens <= 32768:
            raise UserError("max_prompt_tokens must be between 8 and 32768")


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


def _build_results(
    lm: LoadedModel, artifact: PolytopeArtifact, prompts: list[str], enc: list, sequences: torch.Tensor,
    hook: PolytopeHook, width: int, cfg: InterventionConfig, gen: GenerationConfig, data: dict | None = None,
    reading: _Reading | None = None, opener_lens: dict[int, int] | None = None,
) -> list[GenerationResult]:
    """``opener_lens``: row → tokens its refusal opener wrote at the start of the answer (directional steering)."""
    data = hook.assembled() if data is None else data
    if data and "steer_before" not in data:  # minimal Safe Flow edits at the detection layer: its own before / after
        data["steer_before"] = torch.where(data["steered"], data["before"].max(dim=-1).values, torch.nan)
        data["steer_after"] = torch.where(data["steered"], data["after"].max(dim=-1).values, torch.nan)
    names = [artifact.facet_name(k) for k in range(artifact.polytope.num_facets)]
    eos = set(lm.eos_ids)
    pad_id = lm.tokenizer.pad_token_id
    measured = measured_parts(artifact)  # what this very polytope was measured to do (method/measured_file.py)
    settings = {"mode": cfg.mode, "positions": cfg.positions, "threshold": cfg.threshold,
                "generation_threshold": cfg.generation_threshold,
                "span_threshold": cfg.span_threshold if cfg.span_threshold is None or math.isfinite(cfg.span_threshold) else None,
                "flag_threshold": cfg.flag_threshold,
                "operating_point": measured.get("detection").sentence if "detection" in measured else None,
                "borderline_band": list(cfg.borderline_band) if cfg.borderline_band else None,
                "max_interventions": cfg.max_interventions, **asdict(cfg.flow), "steering": cfg.steering,
                "anti_repeat": cfg.anti_repeat if cfg.mode == "steer" else 0, "fallback": cfg.fallback and cfg.mode == "steer",
                **({"directional": asdict(cfg.directional), "steering_layer": artifact.steering.layer}
                   if cfg.mode == "steer" and cfg.steering == "directional" and artifact.steering is not None else {}),
                "max_new_tokens": gen.max_new_tokens, "do_sample": gen.do_sample, "seed": gen.seed,
                "layer": artifact.layer,
                # the measured outcome of the default steering on this polytope (its measured.json; docs/steering.md)
                "measured": (measured["steering"].with_misses() if "steering" in measured and cfg.mode == "steer"
                             and cfg.steering == "directional" else None),
                "steering_missed": "steering" in measured and any(not t.met for t in measured["steering"].targets),
                # the detection targets this polytope misses on held-out sets; None: detection was not measured
                "detection_measured": known_limits(artifact) if "detection" in measured else None}
    answers = []
    for row, e in enumerate(enc):
        pad = hook.pad_lens[row].item()
        gen_ids = sequences[row, pad:].tolist()[len(e.ids):]
        cut = next((i + 1 for i, t in enumerate(gen_ids) if t in eos), len(gen_ids))
        gen_ids = gen_ids[:cut]
        while gen_ids and pad_id is not None and gen_ids[-1] == pad_id and pad_id not in eos:
            gen_ids.pop()
        answers.append(gen_ids)
    check = reading.reader.check if reading is not None else None
    # the states generation read: every answer token but the last written (``answer_reader.py``)
    logits = [reading.reader.logits[row][:max(0, len(a) - 1)] for row, a in enumerate(answers)] if check is not None \
        else [None] * len(enc)
    results = []
    for row, (prompt, e, gen_ids) in enumerate(zip(prompts, enc, answers, strict=True)):
        pad = hook.pad_lens[row].item()
        ids = e.ids + gen_ids
        tokens = []
        refuse_col = hook.refuse_from[row]
        start, end = e.text_span
        opener_end = len(e.ids) + (opener_lens or {}).get(row, 0)
        for i, tid in enumerate(ids):
            col = pad + i
            known = data and col < data["before"].shape[1]
            steered = bool(data["steered"][row, col]) if known else False
            tokens.append(TokenInfo(
                index=i, token_id=tid, text=lm.tokenizer.decode([tid]), is_prompt=i < len(e.ids),
                violations=data["before"][row, col].tolist() if known else None,
                violations_after=data["after"][row, col].tolist() if known else None,
                steered=steered,
                delta_norm=float(data["delta"][row, col]) if known else 0.0,
                steps=int(data["steps"][row, col]) if known else 0,
                forced=refuse_col is not None and col > refuse_col and i >= len(e.ids),
                opener=len(e.ids) <= i < opener_end,
                answer_check=(float(logits[row][i - len(e.ids)]) if logits[row] is not None and len(e.ids) <= i < len(e.ids)
                              + len(logits[row]) else None),
                template=i < len(e.ids) and not start <= i < end,
                steer_before=_finite(data["steer_before"][row, col]) if known and steered else None,
                steer_after=_finite(data["steer_after"][row, col]) if known and steered else None,
            ))
        text = lm.tokenizer.decode(gen_ids, skip_special_tokens=True)
        result = GenerationResult(prompt, cfg.mode, text, tokens, len(e.ids), e.truncated, names, settings, e.text_span)
        if check is not None and refuse_col is None:
            _judge_answer(result, reading, row, logits[row], text, cfg,
                          measured["answer_check"].with_misses() if "answer_check" in measured else None)
        results.append(result)
    return results


def _finite(value: torch.Tensor) -> float | None:
    x = float(value)
    return x if math.isfinite(x) else None


@dataclass
class _Reading:
    """The answer check reading one generation (``answer_reader.py``): the hook's scores and the stop rule's record."""

    reader: AnswerReader
    stop: AnswerStop

    @classmethod
    def start(cls, artifact: PolytopeArtifact, cfg: InterventionConfig, eos_ids: list[int], width: int, batch: int,
              forced=lambda: ()) -> _Reading | None:
        check = artifact.steering.answer_check if artifact.steering is not None else None
        if check is None:
            return None
        reader = AnswerReader(check, width, batch)
        return cls(reader, AnswerStop(reader, eos_ids, _replaces_answer(cfg), forced))

    def hooked(self, lm: LoadedModel):
        return residual_hook(lm.model, self.reader.check.layer, self.reader, lm.layers_path)


def _replaces_answer(cfg: InterventionConfig) -> bool:
    """Whether a flagged answer is stopped and replaced by the refusal: in refuse mode, and in steer mode with the
    fallback on; monitor mode reports it and changes nothing."""
    return cfg.mode == "refuse" or (cfg.mode == "steer" and cfg.fallback)


def _judge_answer(result: GenerationResult, reading: _Reading, row: int, logits: list[float], text: str,
                  cfg: InterventionConfig, measured: str | None) -> None:
    """The answer side of the verdict for one row: where the check fired, and the refusal when the mode replaces it.
    ``measured``: what the check was measured to catch on this polytope (its measured.json), or None."""
    check = reading.reader.check
    fired = reading.stop.fired_at[row]
    stopped = fired is not None and _replaces_answer(cfg)
    if fired is None:
        fired = check.fired_at(logits)  # an answer that ended short of the evidence the rule needs is judged at its end
    score = check.score_logits(logits)
    result.answer_check = {"score": score, "threshold": check.threshold, "flagged": fired is not None, "layer": check.layer,
                           "rule": check.rule, "window": check.window, "fired_at": fired, "stopped": stopped,
                           "tokens_read": len(logits), "measured": measured}
    if fired is not None and _replaces_answer(cfg):
        result.fallback, result.steered_text, result.text = True, text, cfg.refusal_text


def _prepare(lm: LoadedModel, artifact: PolytopeArtifact, prompts: list[str], gen: GenerationConfig, cfg: InterventionConfig):
    gen.validate()
    cfg.validate()
    if not prompts:
        raise UserError("no prompts given")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise UserError("a prompt must be non-empty text")
    enc = [encode_prompt(lm.tokenizer, p, artifact.chat_template, gen.max_prompt_tokens) for p in prompts]
    ids, mask, pad_lens = left_padded([e.ids for e in enc], lm.pad_id)
    return enc, ids, mask, pad_lens, ids.shape[1]


def _generate_kwargs(lm: LoadedModel, gen: GenerationConfig, processors: LogitsProcessorList) -> dict:
    # a temperature this small is greedy decoding in all but name, and dividing the logits by it overflows to inf
    sample = gen.do_sample and gen.temperature >= MIN_SAMPLING_TEMPERATURE
    kwargs = dict(
        max_new_tokens=gen.max_new_tokens,
        min_new_tokens=gen.min_new_tokens or None,
        do_sample=sample,
        use_cache=gen.use_cache,
        logits_processor=processors,
        pad_token_id=lm.tokenizer.pad_token_id,
        eos_token_id=lm.eos_ids,
    )
    if sample:
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
    if cfg.mode == "steer" and cfg.steering == "directional":
        return _run_directional(lm, artifact, prompts, enc, ids, mask, pad_lens, width, spans, gen, cfg, streamer, cancel)
    hook = PolytopeHook(artifact, cfg, pad_lens, width, spans)
    processors = LogitsProcessorList()
    if cfg.mode == "steer" and cfg.anti_repeat:
        processors.append(AnswerNoRepeat(cfg.anti_repeat, width, lambda: hook.interventions > 0))
    if cfg.mode == "refuse":
        refusal_ids = lm.tokenizer(cfg.refusal_text, add_special_tokens=False)["input_ids"]
        processors.append(RefusalProcessor(hook, list(refusal_ids), (lm.eos_ids or [None])[0]))
    reading = _Reading.start(artifact, cfg, lm.eos_ids, width, len(prompts),
                             lambda: [r for r, col in enumerate(hook.refuse_from) if col is not None])
    if reading is not None:
        processors.append(reading.stop)  # last: its forced end of text overrides every other processor
    torch.manual_seed(gen.seed)
    with _maybe(reading, lm), residual_hook(lm.model, artifact.layer, hook, lm.layers_path), torch.no_grad():
        sequences = _generate(lm, ids, mask, gen, processors, streamer, cancel)
    return _build_results(lm, artifact, prompts, enc, sequences.cpu(), hook, width, cfg, gen, reading=reading)


def _maybe(reading: _Reading | None, lm: LoadedModel):
    """The answer reader's hook, registered before any other hook on its block (so it reads before any edit)."""
    return reading.hooked(lm) if reading is not None else contextlib.nullcontext()


def _generate(lm: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, gen: GenerationConfig, processors: LogitsProcessorList,
              streamer: BaseStreamer | None, cancel: threading.Event | None) -> torch.Tensor:
    stopping = StoppingCriteriaList([_CancelCriteria(cancel)]) if cancel is not None else None
    return lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), streamer=streamer,
                             stopping_criteria=stopping, **_generate_kwargs(lm, gen, processors))


def _prompt_pass(lm: LoadedModel, artifact: PolytopeArtifact, ids: torch.Tensor, mask: torch.Tensor, cfg: InterventionConfig,
                 pad_lens: list[int], width: int, spans: list[tuple[int, int]]) -> PolytopeHook:
    """Read the prompts up to the detection layer only, to decide which rows are flagged before generating."""
    hook = PolytopeHook(artifact, replace(cfg, mode="monitor"), pad_lens, width, spans)

    with torch.no_grad():
        with capture_and_stop(lm.model, artifact.layer, lm.layers_path) as captured:
            lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), use_cache=False)
        hook(captured[artifact.layer])
    return hook


def _run_directional(lm: LoadedModel, artifact: PolytopeArtifact, prompts: list[str], enc: list, ids: torch.Tensor, mask: torch.Tensor,
                     pad_lens: list[int], width: int, spans: list[tuple[int, int]], gen: GenerationConfig, cfg: InterventionConfig,
                     streamer: BaseStreamer | None, cancel: threading.Event | None) -> list[GenerationResult]:
    """Directional Safe Flow: flag the prompts in a pre-pass, then generate with the steering-layer hook
    moving flagged rows and the detection polytope monitoring the result."""
    part = artifact.steering
    assert part is not None  # InterventionConfig.resolved checked it
    part.polytope.to(lm.device)
    prepass = _prompt_pass(lm, artifact, ids, mask, cfg, pad_lens, width, spans)
    openers = {row: cfg.directional.opener_for(prompts[row]) for row in torch.nonzero(prepass.flagged.cpu()).flatten().tolist()}
    opener_ids = {row: list(lm.tokenizer(o, add_special_tokens=False)["input_ids"]) for row, o in openers.items() if o}
    steer = DirectionalHook(part.polytope, part.direction, cfg.directional, prepass.flagged, pad_lens, width,
                            [len(opener_ids.get(row, [])) for row in range(len(prompts))])
    monitor = PolytopeHook(artifact, replace(cfg, mode="monitor"), pad_lens, width, spans)
    processors = LogitsProcessorList([AnswerNoRepeat(cfg.anti_repeat, width, lambda: steer.touched)] if cfg.anti_repeat else [])
    if opener_ids:  # after the anti-repeat rule, so the opener is written as it is
        processors.append(OpenerProcessor(opener_ids, width))
    if cfg.directional.let_go == "sentence" and openers and not gen.min_new_tokens:  # a length asked for comes first
        processors.append(LetGoProcessor({row: opener_ids.get(row, []) for row in openers}, width,
                                         sentence_end_tokens(lm.tokenizer), lm.eos_ids[0]))
    reading = _Reading.start(artifact, cfg, lm.eos_ids, width, len(prompts))
    if reading is not None:
        processors.append(reading.stop)
    torch.manual_seed(gen.seed)
    with _maybe(reading, lm), residual_hook(lm.model, part.layer, steer, lm.layers_path), \
            residual_hook(lm.model, artifact.layer, monitor, lm.layers_path), torch.no_grad():
        sequences = _generate(lm, ids, mask, gen, processors, streamer, cancel)
    data = monitor.assembled()
    steps = steer.assembled()
    cols = min(data["before"].shape[1], steps.shape[1])
    first = prepass.assembled()["before"]  # prompt columns as read before any edit
    data["after"] = data["before"].clone()  # what the detection layer read after the edit
    data["before"][:, :width] = first[:, :width]
    data["steered"][:, :cols] = steps[:, :cols] > 0
    data["delta"][:, :cols] = steps[:, :cols] * float(part.direction.norm())
    # before / after / steps as the steering part measured them, at the steering layer (not the detection layer's reading)
    records = steer.assembled_records()
    data["steps"] = torch.zeros_like(data["steps"])
    data["steer_before"] = torch.full(data["steered"].shape, torch.nan)
    data["steer_after"] = torch.full(data["steered"].shape, torch.nan)
    if records:
        data["steps"][:, :cols] = records["index"][:, :cols]
        data["steer_before"][:, :cols] = records["before"][:, :cols]
        data["steer_after"][:, :cols] = records["after"][:, :cols]
    return _build_results(lm, artifact, prompts, enc, sequences.cpu(), monitor, width, cfg, gen, data, reading,
                          {row: len(o) for row, o in opener_ids.items()})


def generate_one(lm, artifact, prompt: str, gen=None, cfg=None) -> GenerationResult:
    return run_generation(lm, artifact, [prompt], gen, cfg)[0]


def stream_generation(
    lm: LoadedModel,
    artifact: PolytopeArtifact,
    prompt: str,
    gen: GenerationConfig | None = None,
    cfg: InterventionConfig | None = None,
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
    thread = threading.Thread(target=work, name="sap-viz-stream", daemon=True)
    thread.start()
    ids: list[int] = []
    eos = set(lm.eos_ids)
    while (item := streamer.queue.get()) is not None:
        if item[0] in eos:
            continue
        ids.append(item[0])
        yield lm.tokenizer.decode(ids, skip_special_tokens=True)
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    yield box["result"]  # type: ignore[misc]


def compare(lm, artifact, prompt: str, gen: GenerationConfig | None = None, cfg: InterventionConfig | None = None) -> Comparison:
    """Unsteered (monitor) and intervened runs with the same settings and seed."""
    cfg = cfg or InterventionConfig(mode="steer")
    monitor = replace(cfg, mode="monitor")
    base = generate_one(lm, artifact, prompt, gen, monitor)
    other = base if cfg.mode == "monitor" else generate_one(lm, artifact, prompt, gen, cfg)
    return Comparison(base, other)

"""Directional Safe Flow: move a flagged row's states along a learned refusal direction, as far as a
response-aware polytope asks.

Why this exists: the paper's Safe Flow takes the *smallest* edit that brings a state inside the
polytope. On SmolLM2-135M that edit changes wording but not content at any layer or strength we
tried (docs/research/steering_outcomes.md). The model does have a refusal behaviour reachable from its middle
layers: the difference of mean states over its own answers that open with a refusal and over its own compliant
answers (to harmful train prompts; ``recipe/steering_part.py`` builds it, other targets included) turns answers into
refusals when added.

Here the polytope keeps its two jobs, deciding *whether* and *how far*; the direction says *which way*:

- the prompt is flagged by the main (detection) polytope, prompt-span check included;
- for a flagged row, every state at the steering layer (prompt tokens and generated ones) moves to
  ``h + t·d`` with the smallest ``t ∈ [0, max_step]`` for which the response-aware steering
  polytope, trained on answers, has every facet at ≤ −depth; states already that deep stay put;
- rows that are not flagged are never touched, so benign answers stay token-identical.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor

from sap_viz.errors import UserError
from sap_viz.method.polytope import SafetyPolytope

PROMPT_POSITIONS = ("all", "last")
LET_GO = ("never", "sentence")
#: Refusals with a reason, none an apology, written here for the varied opener (docs/research/steering_levers.md, second
#: sweep): eight, so that no one opening is shared by much more than one steered answer in eight.
REFUSAL_OPENERS = (
    "I can't help with that, because it could cause real harm.",
    "I won't help with this request: it could hurt people.",
    "That's not something I can help with, since it could put someone in danger.",
    "I'm not able to help with that; it risks serious harm to others.",
    "I have to decline this one, because it could be used to hurt someone.",
    "This isn't something I'll assist with, as it could cause harm.",
    "I can't assist with that request, since it could lead to real harm.",
    "I'd rather not help with that, because it could harm people.",
)


@dataclass(frozen=True)
class DirectionalConfig:
    depth: float = 3.0  # target: every facet of the steering polytope at ≤ −depth
    max_step: float = 1.0  # cap on t, in units of the direction's length
    grid: int = 17  # t is searched on an even grid over [0, max_step]
    # Generated tokens steered after the prompt (None: all). Steering only the opening of the answer
    # lets the model start turning away and then write on in its own words instead of looping.
    # Chosen on validation prompts (docs/steering_strength.md): 8.
    generated_tokens: int | None = 8
    # Which prompt states move: "all" (every state of the prompt, chat template included) or "last" (only the prompt's
    # last state, the one the first answer token is read from). A lever of the steered-answer study (issue 39).
    prompt_positions: str = "all"
    # A refusal opener written first in a flagged row's answer (forced tokens), after which the model goes on, steered
    # for ``generated_tokens`` more tokens; None: no opener. A lever of the steered-answer study (issue 39).
    opener: str | None = None
    # Several openers: each flagged request gets one, chosen by a stable hash of its text (``opener_for``), so no one
    # sentence opens every steered answer; an ``opener`` given explicitly is used instead. Chosen on validation prompts with
    # ``let_go`` below (docs/research/steering_levers.md, second sweep): the default.
    openers: tuple[str, ...] = REFUSAL_OPENERS
    # When a flagged row's answer ends: "never" (at the length limit or the model's own end) or "sentence" (after the
    # first sentence the model writes once its opener is written: later sentences were where it contradicted itself).
    let_go: str = "sentence"

    def validate(self) -> None:
        if not 0 <= self.depth <= 100:
            raise UserError(f"depth must be between 0 and 100, got {self.depth}")
        if not 0 < self.max_step <= 20:
            raise UserError(f"max_step must be in (0, 20], got {self.max_step}")
        if not 2 <= self.grid <= 257:
            raise UserError(f"grid must be between 2 and 257, got {self.grid}")
        if self.generated_tokens is not None and not 0 <= self.generated_tokens <= 100_000:
            raise UserError(f"generated_tokens must be None or between 0 and 100000, got {self.generated_tokens}")
        if self.prompt_positions not in PROMPT_POSITIONS:
            raise UserError(f"prompt_positions must be one of {', '.join(PROMPT_POSITIONS)}, got {self.prompt_positions!r}")
        if self.opener is not None and not 0 < len(self.opener) <= 200:
            raise UserError("opener must be None or 1 to 200 characters")
        if len(self.openers) > 64 or any(not isinstance(o, str) or not 0 < len(o) <= 200 for o in self.openers):
            raise UserError("openers must be at most 64 texts of 1 to 200 characters")
        if self.let_go not in LET_GO:
            raise UserError(f"let_go must be one of {', '.join(LET_GO)}, got {self.let_go!r}")

    def opener_for(self, prompt: str) -> str | None:
        """The opener a flagged answer to ``prompt`` starts with: ``opener`` when given, else one of ``openers`` by a
        stable hash of the text (the same request always gets the same one), else None."""
        if self.opener is not None or not self.openers:
            return self.opener
        return self.openers[int(hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % len(self.openers)]


@torch.no_grad()
def directional_moves(poly: SafetyPolytope, direction: torch.Tensor, h: torch.Tensor, cfg: DirectionalConfig
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each row of ``h`` (n × d): the smallest grid step t with max violation of h + t·d ≤ −depth (else max_step),
    the grid index of t, and the steering polytope's max violation before (t = 0) and after the move."""
    steps = torch.linspace(0.0, cfg.max_step, cfg.grid, device=h.device)
    # Standardising and the encoder's linear map are affine, so the encoder's input along the line
    # h + t·d is pre(h) + t·pre_d: two matrix products for the whole grid instead of one per step.
    z = poly.standardize(h.float())
    z_d = direction.to(z.device, torch.float32) / poly.std
    if poly.encoder_kind == "relu":
        pre, pre_d = poly.encoder(z), z_d @ poly.encoder.weight.T
    else:
        pre, pre_d = z, z_d
    activate = torch.relu if poly.encoder_kind == "relu" else (lambda x: x)
    peak = torch.stack([poly.violations_from_concepts(activate(pre + t * pre_d)).max(dim=-1).values for t in steps], dim=1)  # n × grid
    deep = peak <= -cfg.depth
    first = torch.where(deep.any(dim=1), deep.float().argmax(dim=1), torch.full((len(z),), cfg.grid - 1, device=h.device))
    rows = torch.arange(len(z), device=h.device)
    return steps[first], first, peak[:, 0], peak[rows, first]


def directional_steps(poly: SafetyPolytope, direction: torch.Tensor, h: torch.Tensor, cfg: DirectionalConfig) -> torch.Tensor:
    """For each row of ``h`` (n × d) the smallest grid step t with max violation of h + t·d ≤ −depth (else max_step)."""
    return directional_moves(poly, direction, h, cfg)[0]


class DirectionalHook:
    """Per-call hook on the steering layer: moves the flagged rows' new states along the direction.

    ``flagged`` is decided before generation (by the main polytope in a prompt pre-pass), so prompt
    tokens can be steered in the same prefill. Records the step t of every column it saw.
    """

    def __init__(self, poly: SafetyPolytope, direction: torch.Tensor, cfg: DirectionalConfig, flagged: torch.Tensor, pad_lens: list[int],
                 prompt_width: int, opener_tokens: int | list[int] = 0):
        self.poly = poly
        self.direction = direction
        self.cfg = cfg
        self.flagged = flagged.bool().cpu()
        self.pad_lens = torch.tensor(pad_lens)
        # per row: the last column that may move (an opener's forced tokens come before the steered ones)
        per_row = torch.as_tensor(opener_tokens if isinstance(opener_tokens, list) else [opener_tokens] * len(flagged),
                                  dtype=torch.float64)
        self.last_column = (torch.full((len(flagged),), math.inf, dtype=torch.float64) if cfg.generated_tokens is None
                            else prompt_width - 1 + per_row + cfg.generated_tokens)
        # the first column that may move: the prompt's first real token, or its last one
        self.first_column = prompt_width - 1 if cfg.prompt_positions == "last" else 0
        self.seen = 0
        self.steps: list[torch.Tensor] = []  # per call: batch × new columns
        self.records: list[dict[str, torch.Tensor]] = []  # per call: grid index, violation before / after the move
        self.touched = torch.zeros(len(self.flagged), dtype=torch.bool)  # rows with at least one state moved

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor) -> torch.Tensor | None:
        width = hidden.shape[1]
        start = 0 if self.seen == 0 else max(0, self.seen + 1 - width)
        # Every column in view is steered (without a KV cache the earlier ones are recomputed, and
        # their states below this layer do not depend on earlier edits, so t comes out the same);
        # only the new columns are recorded.
        cols = torch.arange(start, start + width)
        shape = hidden.shape[:2]
        t = torch.zeros(shape)
        record = {"index": torch.zeros(shape, dtype=torch.long), "before": torch.full(shape, math.nan),
                  "after": torch.full(shape, math.nan)}
        rows = torch.nonzero(self.flagged).flatten()
        out = None
        if len(rows) and start <= float(self.last_column[rows].max()):  # past every opening nothing moves: skip the search
            sub = hidden[rows.to(hidden.device)].float()
            n, s, d = sub.shape
            moves = directional_moves(self.poly, self.direction, sub.reshape(-1, d), self.cfg)
            step, index, before, after = (x.reshape(n, s).cpu() for x in moves)
            keep = ((cols[None, :] >= self.pad_lens[rows][:, None]) & (cols[None, :] >= self.first_column)
                    & (cols[None, :] <= self.last_column[rows][:, None]))  # not padding, in reach
            step = step * keep
            t[rows] = step
            record["index"][rows] = index * keep
            record["before"][rows] = torch.where(keep, before, torch.nan)
            record["after"][rows] = torch.where(keep, torch.where(step > 0, after, before), torch.nan)
            self.touched[rows] |= (step > 0).any(dim=1)
            if step.any():
                out = hidden.clone()
                edit = step.to(hidden.device)[..., None] * self.direction.to(hidden.device, torch.float32)
                out[rows.to(hidden.device)] = (sub + edit).to(hidden.dtype)
        new = slice(max(self.seen, start) - start, None)
        self.steps.append(t[:, new])
        self.records.append({k: v[:, new] for k, v in record.items()})
        self.seen = start + width
        return out

    def assembled(self) -> torch.Tensor:
        """Step t per row and column seen (batch × columns)."""
        return torch.cat(self.steps, dim=1) if self.steps else torch.zeros(len(self.flagged), 0)

    def assembled_records(self) -> dict[str, torch.Tensor]:
        """Per row and column seen: the grid index of t and the steering polytope's max violation before / after (NaN: not read)."""
        if not self.records:
            return {}
        return {k: torch.cat([r[k] for r in self.records], dim=1) for k in self.records[0]}


class OpenerProcessor(LogitsProcessor):
    """Writes each flagged row's opener tokens first in its answer, then lets the model go on (``opener``,
    ``openers``). ``opener_ids``: row → the opener's token ids (rows not in it write freely)."""

    def __init__(self, opener_ids: dict[int, list[int]], prompt_width: int):
        self.ids = opener_ids
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        written = input_ids.shape[1] - self.prompt_width
        for row, ids in self.ids.items():
            if written < len(ids):
                scores[row] = torch.full_like(scores[row], float("-inf"))
                scores[row, ids[written]] = 0.0
        return scores


class LetGoProcessor(LogitsProcessor):
    """Ends a flagged row's answer after the first sentence the model writes once its opener is written
    (``let_go="sentence"``): the next token is forced to end of text. ``sentence_end``: per vocabulary id, whether the
    token's text ends a sentence; ``opener_ids``: row → opener token ids, for every row it applies to."""

    def __init__(self, opener_ids: dict[int, list[int]], prompt_width: int, sentence_end: torch.Tensor, eos_id: int):
        self.starts = {row: prompt_width + len(ids) for row, ids in opener_ids.items()}
        self.sentence_end = sentence_end
        self.eos_id = eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, start in self.starts.items():
            own = input_ids[row, start:]
            last = int(own[-1]) if len(own) else -1
            if 0 <= last < len(self.sentence_end) and bool(self.sentence_end[last]) and last != self.eos_id:
                scores[row] = torch.full_like(scores[row], float("-inf"))
                scores[row, self.eos_id] = 0.0
        return scores


@functools.lru_cache(maxsize=4)
def sentence_end_tokens(tokenizer) -> torch.Tensor:
    """(Cached per tokenizer.) Per vocabulary id: whether the token's text, stripped of trailing spaces, ends with ".",
    "!" or "?" (not an ellipsis)."""
    texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    decoded = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in texts]
    return torch.tensor([d.rstrip().endswith((".", "!", "?")) and not d.rstrip().endswith("..") for d in decoded])

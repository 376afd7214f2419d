"""The polytope hook on decoder block L: check every new state, and steer or refuse when it is outside.

The hook state lives in a per-call object, registered through `residual_hook` (bound to the calling thread), so nothing leaks
between calls or users. Position bookkeeping: the hook sees the block output for columns
``[start, start + S)``. The first call is the prefill (start 0); with a KV cache each later call is
one new column; without a cache the whole sequence is recomputed and earlier steering edits are
replayed, so cached and uncached runs produce the same tokens.

A polytope at position ``last+mean`` reads ``[h_t ‖ m]`` at every column, where m is the mean state
over the row's user text, taken from the prefill and fixed for the rest of the call; Safe Flow then
moves only the ``h_t`` half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from transformers import LogitsProcessor

from sap_viz.errors import SettingsError, UserError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.directional_steering import DirectionalConfig
from sap_viz.method.generation_results import token_boundary
from sap_viz.method.request_settings import (  # noqa: F401 (MODES, POSITIONS, STEERINGS re-exported)
    DEFAULT_MODE,
    DEFAULT_REFUSAL,
    MODES,
    NO_STEERING_PART,
    POSITIONS,
    STEERINGS,
    check_mode,
    check_positions,
    check_steering,
    resolve_steering,
)
from sap_viz.method.steering import SafeFlowConfig, safe_flow
from sap_viz.method.verdict import VerdictBoundary, prompt_verdict
from sap_viz.model.features import request_mean


@dataclass
class InterventionConfig:
    mode: str = DEFAULT_MODE  # monitor | steer | refuse: the one default of every front end (request_settings.py)
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
    # The prompt verdict's last-token boundary (``method/verdict.py``): None = the polytope's, set on a control set of
    # ordinary prompts when it has one. ``threshold`` stays the boundary steering moves states back inside of.
    flag_threshold: float | None = None
    # The verdict's borderline band (margins around the boundary); None = the polytope's.
    borderline_band: tuple[float, float] | None = None
    refusal_text: str = DEFAULT_REFUSAL
    flow: SafeFlowConfig = field(default_factory=SafeFlowConfig)
    steering: str = "auto"
    directional: DirectionalConfig = field(default_factory=DirectionalConfig)
    # Steered rows only, answer tokens only: ban any token that would repeat an n-gram of the answer
    # (``anti_repeat.py``); 0 turns it off. Without it about half of the steered answers loop.
    anti_repeat: int = 3
    # Steered rows only: when the answer check (the steering part's ``answer_check``) still finds the
    # steered answer harmful, answer with ``refusal_text`` instead and say so.
    fallback: bool = True

    def validate(self) -> None:
        check_mode(self.mode)
        check_positions(self.positions)
        if not 0 <= self.max_interventions <= 10000:
            raise UserError("max_interventions must be between 0 and 10000")
        if self.mode == "refuse" and not self.refusal_text.strip():
            raise UserError("refusal_text must not be empty")
        if self.generation_threshold is not None and not math.isfinite(self.generation_threshold):
            raise UserError("generation_threshold must be a finite number")
        if not math.isfinite(self.threshold):
            raise UserError("threshold must be a finite number")
        if self.span_threshold is not None and math.isnan(self.span_threshold):
            raise UserError("span_threshold must be a number")
        if self.flag_threshold is not None and not math.isfinite(self.flag_threshold):
            raise UserError("flag_threshold must be a finite number")
        if self.anti_repeat != 0 and not 2 <= self.anti_repeat <= 16:
            raise UserError(f"anti_repeat must be 0 (off) or an n-gram size between 2 and 16, got {self.anti_repeat}")
        check_steering(self.steering)
        if self.mode == "steer":
            self.flow.validate()
            self.directional.validate()

    def resolved(self, artifact: PolytopeArtifact) -> InterventionConfig:
        """A copy with a concrete generation threshold (the polytope's calibrated one when unset)."""
        if self.mode == "steer" and self.steering == "directional" and artifact.steering is None:
            raise SettingsError(NO_STEERING_PART)
        out = replace(self, steering=resolve_steering(self.steering, artifact.steering is not None))
        if out.generation_threshold is None:
            calibrated = artifact.generation_threshold
            out = replace(out, generation_threshold=out.threshold if calibrated is None else max(out.threshold, calibrated))
        boundary = artifact.verdict_boundary
        if out.flag_threshold is None:
            out = replace(out, flag_threshold=boundary.last)
        if out.span_threshold is None:
            out = replace(out, span_threshold=boundary.span)
        if out.borderline_band is None:
            out = replace(out, borderline_band=boundary.band)
        return out

    def verdict_boundary(self) -> VerdictBoundary:
        """The prompt verdict's boundary of this (resolved) config."""
        last = self.threshold if self.flag_threshold is None else self.flag_threshold
        span = math.inf if self.span_threshold is None else self.span_threshold
        return VerdictBoundary(last=last, span=span, band=self.borderline_band)

    def threshold_at(self, is_prompt: bool, prompt_flagged: bool) -> float:
        return token_boundary(self.threshold, self.generation_threshold, is_prompt, prompt_flagged)


class PolytopeHook:
    """Per-call hook state: violations per column, steering edits, refusal triggers."""

    def __init__(self, artifact: PolytopeArtifact, cfg: InterventionConfig, pad_lens: list[int], prompt_width: int,
                 spans: list[tuple[int, int]] | None = None):
        self.poly = artifact.polytope
        self.position = artifact.position
        self.context: torch.Tensor | None = None  # B × d request means (position last+mean), set at prefill
        self.tail = None  # the request means' fixed part of the polytope's first layer (``SafetyPolytope.with_fixed_tail``)
        self.cfg = cfg
        self.prompt_width = prompt_width  # columns before this one are prompt tokens (left padded)
        self.spans = spans or [(p, prompt_width) for p in pad_lens]  # user-text columns per row
        self.pad_lens = torch.tensor(pad_lens)
        self.batch = len(pad_lens)
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
        if self.position == "last+mean" and self.context is None:
            self.context = self._request_means(fresh)
            self.tail = self.poly.with_fixed_tail(self.context)
        answer_columns = self.tail is not None and new_from >= self.prompt_width
        inputs = None if answer_columns and self.cfg.mode != "steer" else self._inputs(fresh)  # Safe Flow moves the inputs
        # Bookkeeping lives on the CPU; only the facet check and Safe Flow run on the model's device. Answer columns read
        # the request mean's part of the first layer from the prefill (``FixedTail``); the prompt's, the verdict's
        # readings, go through the polytope exactly as ``sap-viz score`` does.
        if answer_columns:
            before = self.tail.violations(fresh).cpu()
        else:
            before = self.poly.violations(inputs).cpu()
        chunk = {
            "before": before, "after": before.clone(),
            "steered": torch.zeros(fresh.shape[:2], dtype=torch.bool),
            "delta": torch.zeros(fresh.shape[:2]), "steps": torch.zeros(fresh.shape[:2], dtype=torch.long),
        }
        cols = torch.arange(new_from, start + width)
        real = cols[None, :] >= self.pad_lens[:, None]  # left padding is never steered
        if new_from <= self.prompt_width - 1 < start + width:
            self._flag_prompts(before, new_from)
        if self.cfg.mode in ("steer", "refuse"):
            for col in self._eligible_columns(start, width):
                out = self._intervene(hidden, out, inputs, before, chunk, real, col, start, new_from)
        self.chunks.append(chunk)
        self.seen = start + width
        return out

    def _request_means(self, prefill: torch.Tensor) -> torch.Tensor:
        """B × d: each row's ``request_mean`` over its user text, read past its left padding (so an empty text
        falls back to the row's real prompt columns, as in ``extract_features``)."""
        pads = self.pad_lens.tolist()
        return torch.stack([request_mean(prefill[row, pad:self.prompt_width], (a - pad, b - pad))
                            for row, ((a, b), pad) in enumerate(zip(self.spans, pads, strict=True))])

    def _inputs(self, fresh: torch.Tensor) -> torch.Tensor:
        """What the polytope reads at these columns: the states, or ``[h_t ‖ m]`` for a last+mean polytope."""
        if self.context is None:
            return fresh
        return torch.cat([fresh, self.context[:, None, :].expand(-1, fresh.shape[1], -1)], dim=-1)

    def _flag_prompts(self, before: torch.Tensor, new_from: int) -> None:
        """Each row's prompt verdict (``method/verdict.py``), from its last prompt state and (prefill only) the peak over
        its user text: the same function ``sap-viz score`` and the API use, so the flag is the same everywhere."""
        boundary = self.cfg.verdict_boundary()
        last = before[:, self.prompt_width - 1 - new_from].max(dim=1).values
        peaks = before.max(dim=2).values
        verdicts = []
        for row, (a, b) in enumerate(self.spans):
            peak = float(peaks[row, a:b].max()) if new_from == 0 and b > a else None
            verdicts.append(prompt_verdict(float(last[row]), peak, boundary))
        self.verdicts = verdicts
        self.flagged = torch.tensor([v.flagged for v in verdicts], dtype=torch.bool)

    def _intervene(self, hidden: torch.Tensor, out: torch.Tensor | None, inputs: torch.Tensor, before: torch.Tensor,
                   chunk: dict[str, torch.Tensor], real: torch.Tensor, col: int, start: int, new_from: int) -> torch.Tensor | None:
        """Refuse or steer the rows that are over their boundary at column ``col``; returns the (maybe edited) output."""
        j = col - new_from
        threshold = torch.tensor([self.cfg.threshold_at(col < self.prompt_width, bool(f)) for f in self.flagged])
        if col == self.prompt_width - 1:  # the verdict decides at the last prompt token: flagged rows act, others not
            threshold = torch.where(self.flagged, torch.tensor(-math.inf), torch.tensor(math.inf))
        over = (before[:, j].max(dim=1).values >= threshold) & real[:, j]
        if self.cfg.mode == "refuse":
            for row in torch.nonzero(over).flatten().tolist():
                if self.refuse_from[row] is None:
                    self.refuse_from[row] = col
            return out
        rows = torch.nonzero(over & (self.interventions < self.cfg.max_interventions)).flatten()
        if len(rows) == 0:
            return out
        d = hidden.shape[-1]  # with a request mean in the input, only the state itself may move
        res = safe_flow(self.poly, inputs[rows.to(inputs.device), j], self.cfg.flow, threshold[rows], editable=d)
        steered = res.steered.cpu()
        if not steered.any():
            return out
        out = hidden.clone() if out is None else out
        for i, row in enumerate(rows.tolist()):
            if not steered[i]:
                continue
            out[row, col - start] = res.hidden[i, :d].to(hidden.dtype)
            self.edits[(row, col)] = res.hidden[i, :d].clone()
            chunk["after"][row, j] = res.after[i].cpu()
            chunk["steered"][row, j] = True
            chunk["delta"][row, j] = float(res.delta_norm[i])
            chunk["steps"][row, j] = int(res.steps[i])
        self.interventions[rows[steered]] += 1
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

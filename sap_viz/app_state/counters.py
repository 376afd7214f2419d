"""Deployment counters for a session: how often the polytope fires, how hard it steers, what it changes.

The totals are exact for the server's whole life; the per-request rows (plots, export) keep only the
latest ``MAX_ROWS``, so a long-running public server does not grow without bound. Each row carries its
time (UTC), mode and flag, so it can be traced; the prompt itself only when the operator sets
``SAP_VIZ_KEEP_PROMPTS=1`` (``keep_prompts``).
"""

from __future__ import annotations

import csv
import io
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sap_viz.method.generation_results import Comparison, GenerationResult
from sap_viz.settings import keep_prompts

PROMPT_CHARS = 500  # a kept prompt is cut to this many characters
MAX_ROWS = 5000


# One row of the request history, in this order (CSV export and the Monitor table).
REQUEST_COLUMNS = ["request", "time", "mode", "prompt_flagged", "flagged_by", "prompt", "tokens",
                   "violating_tokens", "interventions", "max_delta_norm", "refused", "benign_output_changed"]


@dataclass
class DeploymentCounters:
    prompts: int = 0
    prompts_flagged: int = 0
    intervened_prompts: int = 0  # requests in steer or refuse mode: only these can change an answer
    tokens: int = 0
    tokens_violating: int = 0
    interventions: int = 0
    refusals: int = 0
    benign_compared: int = 0
    benign_unchanged: int = 0
    steering_norm_sum: float = 0.0
    steering_norm_max: float | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=MAX_ROWS))  # latest requests, one row each
    keep_prompts: bool = field(default_factory=keep_prompts)  # SAP_VIZ_KEEP_PROMPTS=1; off on a public Space
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, result: GenerationResult, baseline: GenerationResult | None = None) -> None:
        """Count one request; with ``baseline`` (the unsteered run) also whether a benign output changed."""
        with self._lock:
            self.prompts += 1
            flagged = result.prompt_flagged
            self.prompts_flagged += flagged
            self.intervened_prompts += result.mode != "monitor"
            scored = [t for t in result.tokens if t.violations is not None]
            self.tokens += len(scored)
            violating = result.violating_tokens()
            self.tokens_violating += violating
            steered = [t.delta_norm for t in result.tokens if t.steered]
            self.interventions += len(steered)
            self.steering_norm_sum += sum(steered)
            if steered:
                self.steering_norm_max = max(self.steering_norm_max or 0.0, *steered)
            self.refusals += result.refused
            changed = None
            if baseline is not None and not flagged:
                changed = [t.token_id for t in baseline.generated] != [t.token_id for t in result.generated]
                self.benign_compared += 1
                self.benign_unchanged += not changed
            self.history.append({
                "request": self.prompts, "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "mode": result.mode, "prompt_flagged": flagged, "flagged_by": result.flag_reason,
                "prompt": result.prompt[:PROMPT_CHARS] if self.keep_prompts else None, "tokens": len(scored),
                "violating_tokens": violating, "interventions": len(steered),
                "max_delta_norm": max(steered, default=0.0), "refused": result.refused, "benign_output_changed": changed,
            })

    def record_comparison(self, cmp: Comparison) -> None:
        self.record(cmp.intervened, cmp.baseline if cmp.intervened is not cmp.baseline else None)

    def summary(self) -> dict:
        """Totals and rates; the refusal rate is over steer and refuse requests (a monitored request never refuses),
        the benign-unchanged rate over the unflagged ones among them (None where no such request was made)."""
        with self._lock:
            def rate(a: int, b: int) -> float | None:
                return round(a / b, 4) if b else None

            return {
                "prompts": self.prompts,
                "prompt_trigger_rate": rate(self.prompts_flagged, self.prompts),
                # steer and refuse requests: in monitor mode nothing changes an answer, so these figures cannot move there
                "intervened_prompts": self.intervened_prompts,
                "token_trigger_rate": rate(self.tokens_violating, self.tokens),
                "interventions": self.interventions,
                "mean_steering_norm": round(self.steering_norm_sum / self.interventions, 4) if self.interventions else None,
                "max_steering_norm": round(self.steering_norm_max, 4) if self.steering_norm_max is not None else None,
                "refusal_rate": rate(self.refusals, self.intervened_prompts),
                "benign_unchanged_rate": rate(self.benign_unchanged, self.benign_compared),
            }

    def to_json(self) -> dict:
        with self._lock:
            history = list(self.history)
        return {"summary": self.summary(), "requests": history}

    def to_csv(self) -> str:
        with self._lock:
            history = list(self.history)
        buf = io.StringIO()
        cols = REQUEST_COLUMNS
        writer = csv.DictWriter(buf, fieldnames=cols)
        writer.writeheader()
        writer.writerows(history)
        return buf.getvalue()

    def reset(self) -> None:
        with self._lock:
            fresh = DeploymentCounters()
            for name in (
                "prompts",
                "prompts_flagged",
                "intervened_prompts",
                "tokens",
                "tokens_violating",
                "interventions",
                "refusals",
                "benign_compared",
                "benign_unchanged",
                "steering_norm_sum",
                "steering_norm_max",
            ):
                setattr(self, name, getattr(fresh, name))
            self.history.clear()

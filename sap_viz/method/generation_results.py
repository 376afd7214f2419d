"""What a monitored generation returns: per-token violations and edits, the flag, the side-by-side comparison.

These are plain data for the CLI, the app, the API and the counters; nothing here runs the model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields

from sap_viz.method.verdict import Verdict, VerdictBoundary, prompt_verdict


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
    opener: bool = False  # written by directional steering's refusal opener (a rule), not chosen by the model
    answer_check: float | None = None  # answer tokens: the answer check's logit (> 0 leans harmful); None elsewhere
    template: bool = False  # a chat-template token of the prompt (not the user's text)
    # Steered tokens: the max violation of the polytope that steers (the steering part for directional
    # steering, the detection polytope for minimal Safe Flow) before and after the edit, as measured.
    steer_before: float | None = None
    steer_after: float | None = None

    @property
    def max_violation(self) -> float | None:
        return max(self.violations) if self.violations else None

    @property
    def part(self) -> str:
        """"answer", "your text" or "template": where the position sits."""
        return "answer" if not self.is_prompt else "template" if self.template else "your text"

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
    # The answer check read while the answer was written: {"score", "threshold", "flagged", "layer", "rule", "window",
    # "fired_at" (the answer token whose reading fired it), "stopped", "tokens_read"}; None without a check.
    answer_check: dict | None = None
    # Set when the answer check fired and the mode replaces a flagged answer (steer with the fallback on, refuse): the
    # answer was stopped where the check fired and ``text`` is the refusal; ``steered_text`` is what had been written.
    fallback: bool = False
    steered_text: str | None = None

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
    def verdict(self) -> Verdict | None:
        """The prompt verdict (``method/verdict.py``) recomputed from the stored readings and boundary, exactly as the
        hook decided it; None when the prompt's last token was not scored."""
        last = self.tokens[self.prompt_len - 1] if self.prompt_len else None
        if last is None or last.max_violation is None:
            return None
        s = self.settings
        flag = s.get("flag_threshold")
        band = s.get("borderline_band")
        boundary = VerdictBoundary(last=float(s.get("threshold", 0.0) if flag is None else flag),
                                   span=math.inf if s.get("span_threshold") is None else float(s["span_threshold"]),
                                   band=(float(band[0]), float(band[1])) if band else None)
        return prompt_verdict(last.max_violation, self.span_peak, boundary)

    @property
    def flag_reason(self) -> str | None:
        """'last token' when the prompt's last state reaches the verdict's boundary, 'prompt span' when a state of the
        user's text reaches the span boundary, None when the prompt is not flagged."""
        return self.verdict.reason if self.verdict is not None else None

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

    def token_rows(self) -> list[dict]:
        """One row per position with everything a per-token view shows: the one source of the CLI's table, the app's
        token table, CSV export and feature-map points, and the server's ``sap.tokens`` (each picks its columns).

        Keys: ``index``, ``text``, ``part``, ``prompt``, ``max_violation``, ``top_facet``, ``top_facet_name``,
        ``violations`` (K values, or None where the position was not scored), ``after`` (the highest violation after
        the edit, steered positions only), ``steered``, ``forced``, ``steps``, ``delta_norm`` and ``answer_check``."""
        rows = []
        for t in self.tokens:
            k = t.top_facet
            rows.append({
                "index": t.index, "text": t.text, "part": t.part, "prompt": t.is_prompt,
                "max_violation": t.max_violation, "top_facet": k,
                "top_facet_name": self.facet_names[k] if k is not None and k < len(self.facet_names) else None,
                "violations": list(t.violations) if t.violations is not None else None,
                "after": max(t.violations_after) if t.steered and t.violations_after else None,
                "steered": t.steered, "forced": t.forced, "opener": t.opener, "steps": t.steps if t.steered else 0,
                "delta_norm": t.delta_norm if t.steered else 0.0, "answer_check": t.answer_check,
            })
        return rows

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt, "mode": self.mode, "text": self.text, "prompt_len": self.prompt_len,
            "truncated": self.truncated, "facet_names": self.facet_names, "settings": self.settings,
            "interventions": self.interventions, "refused": self.refused, "prompt_flagged": self.prompt_flagged,
            "flag_reason": self.flag_reason, "text_span": list(self.text_span), "span_peak": self.span_peak,
            "verdict": self.verdict.to_json() if self.verdict is not None else None,
            "answer_check": self.answer_check, "fallback": self.fallback, "steered_text": self.steered_text,
            "tokens": [asdict(t) for t in self.tokens],
        }

    @classmethod
    def from_dict(cls, data: dict) -> GenerationResult:
        """The inverse of ``to_dict`` (derived values such as ``prompt_flagged`` are recomputed, not read)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names and k != "tokens"}
        values["text_span"] = tuple(values.get("text_span") or (0, 0))
        return cls(tokens=[TokenInfo(**t) for t in data["tokens"]], **values)


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
                "first_divergence": self.first_divergence, "same_run": self.intervened is self.baseline}

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        """The inverse of ``to_dict``; a monitor run (one result for both) comes back as one object again."""
        base = GenerationResult.from_dict(data["baseline"])
        same = data.get("same_run") or data["intervened"] == data["baseline"]
        return cls(base, base if same else GenerationResult.from_dict(data["intervened"]))

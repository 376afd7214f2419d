"""The one prompt verdict: flagged or not, by what, how far from the boundary, and whether it is borderline.

Why one function: ``sap-viz score``, generation (CLI, app, server) and the Python API used to decide with
different rules (the last token's score against 0 here; the last token or any token of the user's text
there), so the same prompt could be safe for one and flagged by another, and no figure measured with one
held for the other. Every interface now calls :func:`prompt_verdict` with the polytope's
:class:`VerdictBoundary`.

The boundary is set on a control set of ordinary prompts at a fixed false-positive rate, as production probe
monitors are (``verdict_calibration.py``): a prompt is flagged when its last token's score reaches ``last`` or
a token of the user's text reaches ``span`` (jailbreak frames can leave the last token inside while the
request in the middle is outside). Both parts move together: ``span - last`` is the span check's own
offset. A prompt whose margin lies inside ``band`` (the scores between two other false-positive rates of the
same control set) is *borderline*, the uncertain middle that guard models report apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sap_viz.errors import UserError

__all__ = ["BY_LAST", "BY_SPAN", "Verdict", "VerdictBoundary", "prompt_verdict"]

BY_LAST = "last token"
BY_SPAN = "prompt span"


@dataclass(frozen=True)
class VerdictBoundary:
    """Where the prompt verdict flags, and how it was set (``source``)."""

    last: float = 0.0  # the last prompt token's highest facet violation must reach this
    span: float = math.inf  # or any token of the user's text must reach this (inf: no span check)
    band: tuple[float, float] | None = None  # margins (score − boundary) of the borderline band, low < 0 <= high
    source: str = "training boundary"  # or "control set": calibrated on ordinary prompts
    target_fpr: float | None = None  # share of the control set it flags, when calibrated

    def __post_init__(self) -> None:
        if not math.isfinite(self.last) or math.isnan(self.span):
            raise UserError(f"verdict boundary must be finite (span may be inf), got last={self.last}, span={self.span}")
        if self.band is not None and not (self.band[0] <= 0 <= self.band[1]):
            raise UserError(f"the borderline band must hold the boundary, got {self.band}")

    def to_json(self) -> dict:
        out = asdict(self)
        out["span"] = None if math.isinf(self.span) else self.span  # JSON has no infinity
        out["band"] = list(self.band) if self.band else None
        return out

    @classmethod
    def from_json(cls, raw: dict) -> VerdictBoundary:
        span = raw.get("span")
        band = raw.get("band")
        return cls(last=float(raw["last"]), span=math.inf if span is None else float(span),
                   band=(float(band[0]), float(band[1])) if band else None, source=str(raw.get("source", "")),
                   target_fpr=raw.get("target_fpr"))


@dataclass(frozen=True)
class Verdict:
    """One prompt's verdict. ``margin`` >= 0 exactly when flagged: the larger of (last − boundary.last) and
    (span peak − boundary.span)."""

    flagged: bool
    by: tuple[str, ...]  # what reached its boundary: BY_LAST, BY_SPAN, both or none
    margin: float
    last_token: float  # the last prompt token's highest facet violation
    span_peak: float | None  # the highest facet violation over the user's text (None: no user tokens)
    borderline: bool  # the margin lies in the boundary's borderline band
    boundary: VerdictBoundary

    @property
    def reason(self) -> str | None:
        """The first of ``by`` (the last token wins a tie), or None when not flagged."""
        return self.by[0] if self.by else None

    @property
    def label(self) -> str:
        """"flagged", "borderline" (either side of the boundary, inside the band) or "not flagged"."""
        if self.borderline:
            return "borderline"
        return "flagged" if self.flagged else "not flagged"

    def to_json(self) -> dict:
        return {"flagged": self.flagged, "label": self.label, "borderline": self.borderline, "by": list(self.by),
                "margin": _finite(self.margin), "last_token": _finite(self.last_token), "span_peak": _finite(self.span_peak),
                "boundary": self.boundary.to_json()}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 5)


def prompt_verdict(last_token: float, span_peak: float | None, boundary: VerdictBoundary) -> Verdict:
    """The verdict of one prompt from its two readings (see the module docstring)."""
    by = []
    margin = float(last_token) - boundary.last
    if last_token >= boundary.last:
        by.append(BY_LAST)
    if span_peak is not None and math.isfinite(boundary.span):
        margin = max(margin, float(span_peak) - boundary.span)
        if span_peak >= boundary.span:
            by.append(BY_SPAN)
    borderline = boundary.band is not None and boundary.band[0] <= margin < boundary.band[1]
    return Verdict(bool(by), tuple(by), margin, float(last_token), None if span_peak is None else float(span_peak),
                   borderline, boundary)

"""The one account of a generation that every view renders: what fired, what flagged it, what steering did, what the
answer check said.

Why one object: the verdict line, the token colours, the heatmap, the why-steered table, ``sap-viz generate --json``
and the server's ``sap`` object used to read the same :class:`GenerationResult` each in its own way, so they could
disagree (a verdict saying "back inside the polytope" beside a table of capped edits). Each view now renders
:func:`generation_account`; the schema of :meth:`Account.to_json` is in docs/interfaces.md ("The account").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from sap_viz.analysis.report import NAME_FITS, name_verdict
from sap_viz.analysis.verdict import BORDERLINE, NO_SINGLE_CATEGORY, category_words, fitting_category
from sap_viz.method.generation_results import Comparison, GenerationResult, TokenInfo
from sap_viz.method.verdict import BY_SPAN

__all__ = ["BY_ANSWER", "BY_ANSWER_CHECK", "CAPPED", "FIXED", "MADE_WORSE", "STEERING_POLYTOPE", "Account", "FiringFacet",
           "PositionOutcome", "fired_words",
           "comparison_json", "generation_account", "position_boundary"]

BY_ANSWER = "answer"  # answer tokens reached the answer boundary (the generation threshold of an unflagged prompt)
BY_ANSWER_CHECK = "answer check"  # the answer check's evidence rule fired on the answer (method/answer_check.py)
PROMPT, ANSWER = "prompt", "answer"  # the two sides of the verdict (``Account.flagged_by``)
FIXED = "fixed"  # steering reached its target depth
CAPPED = "capped"  # moved towards the target, stopped by the step cap before reaching it
MADE_WORSE = "made worse"  # the edit left the state further outside than before
#: Said wherever the steering polytope's values appear (the verdict, the why-steered table, the heatmap's steered marks).
STEERING_POLYTOPE = ("The steering polytope is the polytope that does the steering (the steering part's, at its own layer, "
                     "for directional steering; the detection polytope for minimal Safe Flow): a value below 0 is inside it, "
                     "and steering aims for −strength.")


def position_boundary(result: GenerationResult, token: TokenInfo) -> float:
    """The boundary the run judged this position against: the verdict's at the prompt's last token, the span boundary
    over the user's text (when there is one), the run's threshold elsewhere in the prompt, the answer boundary after it."""
    verdict = result.verdict
    if token.is_prompt and verdict is not None:
        if token.index == result.prompt_len - 1:
            return verdict.boundary.last
        start, end = result.text_span
        if start <= token.index < end and math.isfinite(verdict.boundary.span):
            return verdict.boundary.span
    return result.threshold_for(token)


@dataclass(frozen=True)
class FiringFacet:
    id: int
    name: str
    value: float
    boundary: float


@dataclass(frozen=True)
class PositionOutcome:
    """One steered position as the steering polytope measured it (``before`` → ``after``, aiming for ``target``)."""

    index: int
    part: str
    token: str
    before: float | None
    after: float | None
    target: float | None
    delta_norm: float
    steps: int
    outcome: str  # FIXED, CAPPED or MADE_WORSE
    inside: bool  # ``after`` is below the steering polytope's boundary


@dataclass(frozen=True)
class Account:
    mode: str
    flagged: bool  # the verdict: the prompt (method/verdict.py) or the answer (the answer check) is flagged
    label: str  # "flagged", "borderline", "not flagged" or "not checked"
    by: tuple[str, ...]  # BY_LAST, BY_SPAN, BY_ANSWER, BY_ANSWER_CHECK: every reading that reached its boundary
    position: int | None  # the prompt position that decided the flag
    firing: tuple[FiringFacet, ...]  # facets at or over the boundary at ``position``, highest first
    category: str | None  # named only when the top firing facet's name is measured to fit
    no_category: str | None  # why no category is named (flagged runs only)
    answer_tokens_over: int
    steering: str | None  # "minimal" or "directional" in steer mode, else None
    steered: tuple[PositionOutcome, ...]  # answer first, then your text, then the template
    answer_check: dict | None  # {"score", "threshold", "flagged", "words", "fired_at", "stopped", "rule"}
    refused: bool
    fallback: bool
    sentence: str  # the verdict line
    outcome: str  # what the intervention did to the answer
    prompt_flagged: bool = False  # the prompt verdict alone
    answer_flagged: bool = False  # the answer check fired

    @property
    def flagged_by(self) -> tuple[str, ...]:
        """("prompt",), ("answer",), both or neither: which side of the verdict flagged this generation."""
        return tuple(side for side, hit in ((PROMPT, self.prompt_flagged), (ANSWER, self.answer_flagged)) if hit)

    def counts(self) -> dict[str, int]:
        return {word: sum(p.outcome == word for p in self.steered) for word in (FIXED, CAPPED, MADE_WORSE)}

    @property
    def all_inside(self) -> bool:
        return bool(self.steered) and all(p.inside for p in self.steered)

    def to_json(self) -> dict:
        return {"mode": self.mode, "flagged": self.flagged, "flagged_by": list(self.flagged_by), "prompt_flagged": self.prompt_flagged,
                "answer_flagged": self.answer_flagged, "label": self.label, "by": list(self.by), "position": self.position,
                "firing": [{**asdict(f), "value": round(f.value, 5), "boundary": round(f.boundary, 5)} for f in self.firing],
                "category": self.category, "no_category": self.no_category, "answer_tokens_over": self.answer_tokens_over,
                "steering": {"kind": self.steering, **self.counts(), "all_inside": self.all_inside,
                             "positions": [asdict(p) for p in self.steered]},
                "answer_check": self.answer_check, "refused": self.refused, "fallback": self.fallback,
                "sentence": self.sentence, "outcome": self.outcome}


def generation_account(result: GenerationResult, facets: list[dict] | None = None) -> Account:
    """The account of ``result``; ``facets`` (the polytope's facet records) give the name scores a category needs."""
    facets = facets or []
    verdict = result.verdict
    position = _deciding_position(result)
    firing = _firing(result, position) if result.prompt_flagged and position is not None else ()
    top = firing[0].id if firing else None
    category = fitting_category(facets[top] if top is not None and top < len(facets) else None)
    no_category = _no_category_reason(firing[0], facets) if firing and category is None else None
    over = sum(1 for t in result.generated if result.is_over(t))
    check = _answer_check(result.answer_check)
    answer_flagged = bool(check and check["flagged"])
    by = tuple(verdict.by if verdict is not None else ()) + ((BY_ANSWER,) if over else ()) + \
        ((BY_ANSWER_CHECK,) if answer_flagged else ())
    label = "not checked" if verdict is None else "flagged" if answer_flagged else verdict.label
    steering = _steering_kind(result) if result.mode == "steer" else None
    steered = tuple(sorted((_outcome(result, t) for t in result.tokens if t.steered), key=lambda p: (_PART[p.part], p.index)))
    account = Account(result.mode, result.prompt_flagged or answer_flagged, label, by, position, firing, category, no_category,
                      over, steering, steered, check, result.refused, result.fallback, "", "", result.prompt_flagged,
                      answer_flagged)
    return replace(account, sentence=_sentence(result, account), outcome=_outcome_sentence(account))


def comparison_json(cmp: Comparison, facets: list[dict] | None = None) -> dict:
    """``sap-viz generate --json``: both runs as recorded, and the intervened run's account."""
    return {**cmp.to_dict(), "account": generation_account(cmp.intervened, facets).to_json()}


_PART = {"answer": 0, "your text": 1, "template": 2}


def _deciding_position(result: GenerationResult) -> int | None:
    """The last prompt token, or the peak of the user's text when only the span check fired."""
    if not result.prompt_len:
        return None
    last = result.prompt_len - 1
    if result.flag_reason != BY_SPAN:
        return last
    start, end = result.text_span
    scored = [i for i in range(start, end) if result.tokens[i].max_violation is not None]
    return max(scored, key=lambda i: result.tokens[i].max_violation) if scored else last


def _firing(result: GenerationResult, position: int) -> tuple[FiringFacet, ...]:
    token = result.tokens[position]
    if token.violations is None:
        return ()
    boundary = position_boundary(result, token)
    ids = [k for k, v in enumerate(token.violations) if v >= boundary]
    names = result.facet_names
    return tuple(FiringFacet(k, names[k] if k < len(names) else str(k), float(token.violations[k]), boundary)
                 for k in sorted(ids, key=lambda k: -token.violations[k]))


def _no_category_reason(top: FiringFacet, facets: list[dict]) -> str:
    """Why the top firing facet's name is not repeated as the request's category."""
    facet = facets[top.id] if top.id < len(facets) else {}
    card = facet.get("scorecard") if isinstance(facet, dict) else None
    who = f"facet {top.id} “{top.name}”"
    if not isinstance(card, dict):
        return f"{who} has no check-set scorecard, so its name is untested"
    score = card.get("name_score")
    if not card.get("category") or not isinstance(score, (int, float)):
        return f"{who}'s name claims no category"
    return (f"{who} claims {category_words(str(card['category']))}, but its name score {float(score):.2f} is below the "
            f"{NAME_FITS:.2f} bar (name {name_verdict(float(score))})")


def _outcome(result: GenerationResult, token: TokenInfo) -> PositionOutcome:
    """Fixed when ``after`` reached the target, made worse when it rose, capped otherwise."""
    target = -float(result.settings.get("strength", 0.0)) if result.mode == "steer" else None
    before, after = _finite(token.steer_before), _finite(token.steer_after)
    if after is not None and target is not None and after <= target + 1e-6:
        outcome = FIXED
    elif after is not None and before is not None and after > before:
        outcome = MADE_WORSE
    else:
        outcome = CAPPED
    boundary = 0.0 if _steering_kind(result) == "directional" else result.threshold_for(token)
    return PositionOutcome(token.index, token.part, token.text, before, after, target, round(float(token.delta_norm), 4),
                           int(token.steps), outcome, after is not None and after < boundary)


def _steering_kind(result: GenerationResult) -> str:
    """"directional" when the steering part steered (its settings are recorded), else "minimal" Safe Flow."""
    return "directional" if result.settings.get("directional") else "minimal"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _answer_check(check: dict | None) -> dict | None:
    if not check or check.get("score") is None:
        return None
    flagged = bool(check.get("flagged"))
    return {"score": round(float(check["score"]), 4), "threshold": round(float(check["threshold"]), 4), "flagged": flagged,
            "words": "harmful" if flagged else "not harmful", "fired_at": check.get("fired_at"),
            "stopped": bool(check.get("stopped")), "rule": check.get("rule"), "window": check.get("window"),
            "measured": check.get("measured")}


def fired_words(check: dict) -> str:
    """Where the answer check fired, in the words every view uses."""
    at = check.get("fired_at")
    return f"at answer token {at + 1}" if isinstance(at, int) else "on the finished answer"


def _facet_list(firing: tuple[FiringFacet, ...]) -> str:
    return ", ".join(f"{f.id} “{f.name}” {f.value:+.2f}" for f in firing)


def _sentence(result: GenerationResult, account: Account) -> str:
    """"Flagged by the last token: 2 facets fire (…); this request is most like …." and its unflagged forms."""
    if account.label == "not checked":
        return "Not checked: the request's facet values were not computed."
    band = " " + _band_sentence(result) if result.verdict is not None and result.verdict.borderline else ""
    answer = (f" {account.answer_tokens_over} answer token{'s' if account.answer_tokens_over != 1 else ''} reached the answer "
              "boundary." if account.answer_tokens_over else "")
    check = account.answer_check
    said = (f"the answer check flagged the answer {fired_words(check)} (score {check['score']:+.2f} ≥ "
            f"{check['threshold']:+.2f})" if account.answer_flagged else "")
    if not account.prompt_flagged:
        if account.answer_flagged:
            return f"Flagged by the answer: no facet fires on the request, but {said}." + answer + band
        return "Not flagged: no facet fires on this request." + answer + band
    by = " and the ".join(b for b in account.by if b not in (BY_ANSWER, BY_ANSWER_CHECK))
    n = len(account.firing)
    count = f"{n} facet{'s' if n != 1 else ''} fire{'s' if n == 1 else ''}: {_facet_list(account.firing)}"
    head = (f"this request is most like {category_words(account.category)}" if account.category
            else f"{NO_SINGLE_CATEGORY}, because {account.no_category}")
    return f"Flagged by the {by}: {count}; {head}." + (f" Then {said}." if said else "") + answer + band


def _band_sentence(result: GenerationResult) -> str:
    boundary = result.verdict.boundary
    if boundary.source != "control set" or boundary.band is None:
        return "Borderline: this request scores close to the boundary."
    return BORDERLINE


def _outcome_sentence(account: Account) -> str:
    """What the intervention did, in words that never claim more than the steered positions' own readings."""
    if account.mode == "monitor":
        return "Monitor only: the answer is the model's own, unchanged" + (
            ", though the answer check flagged it." if account.answer_flagged else ".")
    if account.fallback:
        check = account.answer_check or {}
        where = fired_words(check) if check else "on the answer"
        stop = "stopped there and " if check.get("stopped") else ""
        then = f"so it was {stop}replaced by a refusal."
        if account.steered:
            return f"Safe Flow steered the answer, but the answer check still read it as harmful {where}, {then}"
        return f"The answer check read the answer as harmful {where}, {then}"
    if account.refused:
        return "The answer was replaced by a refusal."
    if not account.steered:
        return "Nothing was changed: the answer is the model's own."
    c = account.counts()
    n = len(account.steered)
    tally = f"{c[FIXED]} {FIXED}, {c[CAPPED]} {CAPPED}, {c[MADE_WORSE]} {MADE_WORSE}"
    if account.all_inside:
        return f"Safe Flow steered {_positions(n)} ({tally}); every one ended back inside the steering polytope."
    outside = sum(not p.inside for p in account.steered)
    return f"Safe Flow steered {_positions(n)} ({tally}); {outside} of them ended still outside the steering polytope."


def _positions(n: int) -> str:
    return f"{n} position{'s' if n != 1 else ''}"

"""The one schema of a polytope folder's JSON files (``polytope.json``, ``facets.json``): types, ranges and text.

Why a schema and not key checks: a file that only has the right keys can still break every request later
(``generation_calibration: "x"`` made each chat call a 500, ``max_tokens: 0`` a traceback in scoring,
``chat_template: "no"`` read as true). Every value that code reads is given a type and a range here,
checked once at load, so a file either loads and works or is refused with the key that is wrong.
Facet names and authors are shown in every flag's reason, in logs and in terminals: one line of at most
200 characters without control characters (ESC, CR, NUL). HTML in them is text, escaped wherever the app
shows it, so ``<`` is allowed. Nesting depth is capped when the text is parsed (``strict_json``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from sap_viz.data.taxonomy import POLICY_CATEGORIES
from sap_viz.errors import PolytopeFileError
from sap_viz.method.polytope_migrations import FORMAT_VERSION
from sap_viz.model.features import POSITIONS

MAX_NAME_CHARS = 200  # a facet's name and author (as the label form allows)
MAX_POLICY_CHARS = 4000
MAX_FACETS = 4096
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # every control character, line breaks and tabs included
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # a policy may hold tabs and line breaks

Check = Callable[[object], str | None]  # None: fine; else what is wrong


def _int(low: int, high: int = 1 << 31) -> Check:
    def check(v: object) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
        return None if ok else f"must be an integer between {low} and {high}, got {v!r}"[:200]
    return check


def _finite(v: object) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return None if ok else f"must be a finite number, got {v!r}"[:200]


def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _type(kind: type | tuple[type, ...], label: str) -> Check:
    kinds = kind if isinstance(kind, tuple) else (kind,)

    def check(v: object) -> str | None:
        ok = isinstance(v, kinds) and (bool in kinds or not isinstance(v, bool))
        return None if ok else f"must be {label}, got {type(v).__name__}"
    return check


def _text(max_chars: int, one_line: bool = True, empty: bool = True) -> Check:
    controls = _LINE_CONTROL if one_line else _TEXT_CONTROL

    def check(v: object) -> str | None:
        if not isinstance(v, str):
            return f"must be text, got {type(v).__name__}"
        if len(v) > max_chars:
            return f"must be at most {max_chars:,} characters, got {len(v):,}"
        if not empty and not v.strip():
            return "must not be empty"
        bad = controls.search(v)
        return None if bad is None else f"must not hold control characters (found U+{ord(bad.group()):04X})"
    return check


def _choice(*allowed: object) -> Check:
    return lambda v: None if v in allowed else f"must be one of {', '.join(map(str, allowed))}, got {v!r}"[:200]


def _object(fields: dict[str, Check], required: set[str] | None = None, others: Check | None = None) -> Check:
    """A JSON object: ``fields`` checked where present, ``required`` present, keys not in ``fields`` checked by ``others``
    (None: refused)."""
    def check(v: object) -> str | None:
        if not isinstance(v, dict):
            return f"must be an object, got {type(v).__name__}"
        missing = sorted((required or set()) - v.keys())
        if missing:
            return f"lacks {', '.join(missing)}"
        for key, value in v.items():
            inner = fields.get(key, others)
            if inner is None:
                return f"has unknown key {str(key)[:100]!r}"
            problem = inner(value)
            if problem is not None:
                return f".{key}{_join(problem)}"
        return None
    return check


_SCALAR = _optional(lambda v: None if isinstance(v, (str, int, float, bool)) and _finite_or_other(v) else
                    f"must be text, a finite number, true/false or null, got {type(v).__name__}")


def _finite_or_other(v: object) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


_DICT = _type(dict, "an object")
_LIST = _type(list, "a list")

#: polytope.json, key by key (the recorded training config has its own rules: ``training_record``).
META_FIELDS: dict[str, Check] = {
    "format_version": _int(FORMAT_VERSION, FORMAT_VERSION),  # older files are migrated before this check
    "sap_viz_version": _text(50),
    "layer_convention": _text(300),
    "created": _text(50),
    "model": _object({"id": _text(500, empty=False), "fingerprint": _text(64, empty=False), "hidden_size": _int(1, 1 << 20),
                      "num_layers": _int(1, 10_000)}, {"id", "fingerprint", "hidden_size", "num_layers"}),
    "layer": _int(0, 10_000),
    "position": _choice(*POSITIONS),
    "chat_template": _type(bool, "true or false"),
    "max_tokens": _int(1, 1 << 20),
    "num_facets": _int(1, MAX_FACETS),
    "feature_dim": _int(1, 1 << 20),
    "encoder": _choice("relu", "linear"),
    "train_config": _DICT, "data": _DICT, "metrics": _DICT,
    # optional
    "description": _text(4000, one_line=False),
    "role": _text(100),
    "training_history": _LIST,
    "layer_sweep": _type((dict, list), "an object or a list"),
    "facet_stats": _DICT, "threshold_sweep": _DICT, "facet_check": _DICT, "steering_config": _DICT, "answer_config": _DICT,
    "verdict_calibration": _DICT,  # its boundary: artifact._check_verdict_calibration
    # read on every generation: the boundaries must be numbers (or null: not calibrated)
    "generation_calibration": _object({"threshold": _optional(_finite), "span_threshold": _optional(_finite)},
                                      others=lambda v: _SCALAR(v) if not isinstance(v, (dict, list)) else None),
}

_HISTORY_ENTRY = _object({"name": _text(MAX_NAME_CHARS), "author": _text(MAX_NAME_CHARS),
                          "policy": _text(MAX_POLICY_CHARS, one_line=False)}, others=_SCALAR)

#: One facet of facets.json.
FACET_FIELDS: dict[str, Check] = {
    "index": _int(0, MAX_FACETS),
    "name": _text(MAX_NAME_CHARS, empty=False),
    "policy": _text(MAX_POLICY_CHARS, one_line=False),
    "author": _text(MAX_NAME_CHARS),
    "confidence": lambda v: _finite(v) or (None if 0 <= v <= 1 else f"must be between 0 and 1, got {v!r}"),  # type: ignore[operator]
    "auto_suggested": _type(bool, "true or false"),
    "history": lambda v: _LIST(v) or next((f"[{i}]{_join(p)}" for i, e in enumerate(v) if (p := _HISTORY_ENTRY(e))), None),  # type: ignore[arg-type]
    "source": _text(50),
    "category": _optional(_choice(*POLICY_CATEGORIES)),
    "scorecard": _object({"fires": lambda v: _LIST(v) or next((f"[{i}] must be an integer" for i, x in enumerate(v)  # type: ignore[arg-type]
                                                                if _int(0)(x)), None)}, others=lambda v: None),
}


def _join(problem: str) -> str:
    return problem if problem.startswith((".", "[")) else " " + problem


def check_fields(data: dict, fields: dict[str, Check], where: str) -> None:
    """Each key of ``data`` that ``fields`` names, checked; PolytopeFileError naming the file and the key."""
    for key, check in fields.items():
        if key in data:
            problem = check(data[key])
            if problem is not None:
                raise PolytopeFileError(f"{where}: {key}{_join(problem)}")

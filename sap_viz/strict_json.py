"""JSON text from strangers (a request body, a polytope file): nesting depth capped, no NaN or Infinity.

Why a module of its own: Python's ``json`` recurses once per nesting level, so a body of 100,000 ``[`` ends
in a RecursionError (a 500 and a dropped connection) and a file nested as deep cannot be loaded without
a traceback. The depth is counted on the text before it is parsed, in one pass with no recursion, so a
deep document is refused with a message and never reaches the parser. ``NaN`` and ``Infinity`` are not
JSON (RFC 8259) and would later fail to be echoed back; they are refused as well.
"""

from __future__ import annotations

import json
import re

from sap_viz.errors import UserError

MAX_DEPTH = 64  # far above any request or polytope file sap-viz writes (its deepest file nests 6 levels)

# A string, closed or not: an unclosed one runs to the end (the parser refuses it later), so the scan never backtracks.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class JsonTextError(UserError):
    """Text that is not JSON sap-viz will read (malformed, too deep, or with NaN/Infinity)."""


def json_depth(text: str, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings skipped), without recursion; the scan
    stops as soon as the depth passes ``stop_above``."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if stop_above is not None and deepest > stop_above:
                break
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> object:
    """Parse ``text`` as strict JSON; JsonTextError (a UserError) when malformed, deeper than ``max_depth`` or non-finite."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonTextError(f"not UTF-8: {exc}") from None
    if json_depth(text, max_depth) > max_depth:
        raise JsonTextError(f"nested more than {max_depth} levels deep (arrays and objects); at most {max_depth} are allowed")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError, and so is a NaN/Infinity constant
        raise JsonTextError(str(exc)) from None

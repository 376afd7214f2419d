"""Fluency measures of a generated answer, to catch loops and degenerate text after steering.

Both are judged on the answer alone: *distinct-2* is the share of distinct token bigrams (1.0: no
bigram repeats; a loop drives it towards 0), and the *compression ratio* is how much zlib shrinks
the UTF-8 text (plain prose compresses ~1.5–2.5×; a repeated phrase much more).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence


def distinct_n(token_ids: Sequence[int], n: int = 2) -> float | None:
    """Distinct n-grams / all n-grams of the sequence; None when it has fewer than n tokens."""
    grams = [tuple(token_ids[i : i + n]) for i in range(len(token_ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def compression_ratio(text: str) -> float | None:
    """len(text) / len(zlib(text)) in bytes; None for empty text."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 9)) if raw else None


# Refusal detector: a case-insensitive match of common refusal openings in the first 200 characters.
# Simple and transparent; it misses refusals that paraphrase and may fire on "I can't stress enough…".
REFUSAL_PATTERN = re.compile(
    r"\b(i can(?:'|’)?t|i cannot|i can not|i won(?:'|’)?t|i(?:'|’)m sorry|i am sorry|sorry, |i(?:'|’)m (?:not able|unable)"
    r"|i am (?:not able|unable)|as an ai|i must decline|not (?:able|allowed) to (?:help|assist|provide))",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return bool(REFUSAL_PATTERN.search(text[:200]))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def most_repeated_sentence(text: str) -> int:
    """How often the most frequent sentence (case- and space-normalised, ≥ 3 words) occurs in the text."""
    counts: dict[str, int] = {}
    for sentence in _SENTENCE_END.split(text):
        key = " ".join(sentence.lower().split()).strip(" .!?")
        if len(key.split()) >= 3:
            counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


def is_degenerate(token_ids: Sequence[int], text: str, min_distinct2: float = 0.5, max_repeats: int = 3) -> bool:
    """The steering targets' definition of a looping answer: distinct-2 below ``min_distinct2``, or one
    sentence ``max_repeats`` times or more."""
    d2 = distinct_n(token_ids)
    return (d2 is not None and d2 < min_distinct2) or most_repeated_sentence(text) >= max_repeats

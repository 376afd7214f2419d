"""Text forms shared by every table: the stored form, the dedupe key, and the near-duplicate check.

Why one module: splits, dedupe, balancing and the contamination check between evaluation prompts and
training data must all agree on when two texts are "the same".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["canonical_text", "closest_match", "content_words", "jaccard", "near_duplicates", "normalise_text", "overlapping"]

_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)

# Words too common to say two prompts are about the same thing.
_STOPWORDS = frozenset(
    "a an the to of and or in on for with my i me is it how what do does can you your that this be are "
    "from at by as so".split()
)


def canonical_text(text: str) -> str:
    """Canonical stored form: NFC, no surrounding whitespace, no CR."""
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()


def normalise_text(text: str) -> str:
    """Dedupe key: NFKC, casefolded, punctuation and whitespace runs collapsed to one space."""
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_words(text: str) -> frozenset[str]:
    """Lower-cased words minus stopwords: the unit of :func:`near_duplicates`."""
    return frozenset(w for w in normalise_text(text).split() if w not in _STOPWORDS)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Shared words over all words of two sets (0 when either is empty): :func:`near_duplicates`' measure."""
    return len(a & b) / len(a | b) if a and b else 0.0


def overlapping(words: Iterable[frozenset[str]], reference: list[frozenset[str]], threshold: float,
                containment: bool = False) -> list[int]:
    """Indices of ``words`` whose overlap with some non-empty ``reference`` set reaches ``threshold``:
    Jaccard, or with ``containment`` the share of the reference set's words found.

    One inverted index over the reference, so each set is compared only with the sets it shares a
    word with; both the near-duplicate and the rewording checks read it.
    """
    ref = [r for r in reference if r]
    sizes = [len(r) for r in ref]
    index: dict[str, list[int]] = {}
    for j, r in enumerate(ref):
        for w in r:
            index.setdefault(w, []).append(j)
    hits = []
    for i, ws in enumerate(words):
        shared: dict[int, int] = {}
        for w in ws:
            for j in index.get(w, ()):
                shared[j] = shared.get(j, 0) + 1
        # n shared words: the union has |ws| + |r| - n words (no set built per candidate pair)
        if any(n / (sizes[j] if containment else len(ws) + sizes[j] - n) >= threshold for j, n in shared.items()):
            hits.append(i)
    return hits


def near_duplicates(texts: Iterable[str], reference: Iterable[str], threshold: float = 0.4) -> list[int]:
    """Indices of ``texts`` sharing ≥ ``threshold`` of their content words (Jaccard) with a reference text.

    Exact-match dedup misses rephrasings ("How many pills to never wake up?" twice, worded apart);
    this is the contamination check between evaluation prompts and training data.
    """
    return overlapping(map(content_words, texts), [content_words(r) for r in reference], threshold)


def closest_match(text: str, reference: list[str]) -> tuple[int, float] | None:
    """(index, Jaccard) of the reference text sharing the largest share of content words with ``text``,
    in :func:`near_duplicates`' own measure, so a contamination report can name the row behind each hit;
    None when ``text`` or every reference text has no content words."""
    words = content_words(text)
    best: tuple[int, float] | None = None
    if not words:
        return None
    for j, ref in enumerate(reference):
        other = content_words(ref)
        if other:
            score = jaccard(words, other)
            if best is None or score > best[1]:
                best = (j, score)
    return best

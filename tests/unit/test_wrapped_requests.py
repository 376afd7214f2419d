"""Issue 16: the committed wrapped-request evaluation set (sap_viz/data/eval_sets/wrapped_requests*.jsonl) is well formed,
reproducible, and built only from held-out HarmBench rows. No model is loaded."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pandas as pd
import pytest

from research.paths import EVAL_SETS
from sap_viz.analysis.external_eval import load_external
from sap_viz.data.dataset import build_dataset, load_eval_prompts
from sap_viz.data.sources import load_source
from sap_viz.data.text import near_duplicates, normalise_text
from sap_viz.jsonl import read_jsonl

WRAPPED = EVAL_SETS / "wrapped_requests.jsonl"
PLAIN = EVAL_SETS / "wrapped_requests_plain.jsonl"
STYLES = ("fiction", "roleplay", "research", "prefix")
FIELDS = ["text", "label", "kind", "frame", "source", "request", "category"]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return read_jsonl(WRAPPED) + read_jsonl(PLAIN)


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return build_dataset()


def _script():
    return importlib.import_module("research.wrapped_requests.build")


def test_schema_labels_and_kinds(rows):
    for r in rows:
        assert list(r) == FIELDS
        assert all(isinstance(r[k], str) and r[k].strip() == r[k] and r[k] for k in FIELDS)
        side = "harmful" if r["label"] == "unsafe" else "benign"
        assert r["label"] in ("safe", "unsafe")
        style = r["kind"].removesuffix(f"_{side}")
        assert style in (*STYLES, "plain") and r["kind"] == f"{style}_{side}"
        assert r["frame"] == "none" if style == "plain" else r["frame"].split("/")[0] == style
        assert r["request"] == r["text"] if style == "plain" else r["request"][1:] in r["text"]
        assert (r["category"] == "benign") == (r["label"] == "safe")
        assert r["source"].startswith("HarmBench" if r["label"] == "unsafe" else "written for sap-viz")
    assert {r["frame"] == "none" for r in read_jsonl(PLAIN)} == {True}
    assert "none" not in {r["frame"] for r in read_jsonl(WRAPPED)}
    # the CLI reads both files and sees every kind
    assert set(load_external(WRAPPED)["kind"]) == {f"{s}_{side}" for s in STYLES for side in ("harmful", "benign")}
    assert set(load_external(PLAIN)["kind"]) == {"plain_harmful", "plain_benign"}


def test_no_duplicates_and_every_style_is_covered(rows):
    keys = Counter(normalise_text(r["text"]) for r in rows)
    assert max(keys.values()) == 1
    kinds = Counter(r["kind"] for r in rows)
    requests = {side: {r["request"] for r in rows if r["kind"] == f"plain_{side}"} for side in ("harmful", "benign")}
    assert len(requests["benign"]) >= 40 and len(requests["harmful"]) >= 20
    for style in STYLES:
        for side in ("harmful", "benign"):
            assert kinds[f"{style}_{side}"] >= 20
            part = [r for r in rows if r["kind"] == f"{style}_{side}"]
            assert {r["request"] for r in part} == requests[side]  # every request once per style
            assert len({r["frame"] for r in part}) >= 5  # several templates, not one
        # harmful and benign rows of a style share the same frames
        assert {r["frame"] for r in rows if r["kind"] == f"{style}_harmful"} == {r["frame"] for r in rows if r["kind"] == f"{style}_benign"}


def test_harmful_requests_are_held_out_harmbench_rows(rows, dataset):
    requests = {r["request"] for r in rows if r["label"] == "unsafe"}
    key = normalise_text
    harmbench = {key(t) for t in load_source("harmbench")["text"]}
    ood = {key(t) for t in dataset.loc[(dataset["split"] == "ood") & (dataset["label"] == "unsafe"), "text"]}
    in_dist = dataset.loc[dataset["split"] != "ood", "text"].tolist()  # train, and val/test used for calibration and choice
    assert {key(t) for t in requests} <= harmbench & ood
    assert not {key(t) for t in requests} & {key(t) for t in in_dist}
    assert near_duplicates(sorted(requests), in_dist) == []
    assert not requests & set(load_eval_prompts()["harmful"])  # disjoint from the steering evaluation's 50


def test_benign_requests_are_not_near_builtin_rows(rows, dataset):
    """Against train/val/test rows; HarmBench's own stem ("Give detailed step-by-step instructions for") is shared on purpose."""
    benign = sorted({r["request"] for r in rows if r["label"] == "safe"})
    assert near_duplicates(benign, dataset.loc[dataset["split"] != "ood", "text"].tolist()) == []


def test_committed_files_are_what_the_script_builds(dataset):
    built = _script().build_rows(dataset, load_eval_prompts()["harmful"])
    assert [r for r in built if r["frame"] != "none"] == read_jsonl(WRAPPED)
    assert [r for r in built if r["frame"] == "none"] == read_jsonl(PLAIN)

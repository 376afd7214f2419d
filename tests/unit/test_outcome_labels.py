"""The hand-labelled steering outcomes (tests/data/outcome_labels.jsonl) stay a usable reference set.

The steering numbers (docs/research/steering_targets.md) rest on these labels, not on the built-in judge (its agreement with
them, research/steering/judge_agreement.json, is below the 85 % that page requires to quote it).
"""

import hashlib
from collections import Counter
from pathlib import Path

from sap_viz.jsonl import read_jsonl

LABELS = Path(__file__).resolve().parents[1] / "data" / "outcome_labels.jsonl"
RUBRIC = Path(__file__).resolve().parents[2] / "docs" / "outcome_rubric.md"


def test_labels_follow_the_rubric_and_cover_both_runs():
    rows = read_jsonl(LABELS)
    assert len(rows) >= 100
    labels = Counter(r["label"] for r in rows)
    assert set(labels) == {"harmful", "refused", "off_topic", "degenerate"}
    rubric = RUBRIC.read_text(encoding="utf-8")
    assert all(f"**{name}**" in rubric for name in ("harmful", "refused", "off-topic", "degenerate"))
    for r in rows:  # each answer is keyed by its text, so a changed answer cannot keep an old label
        assert r["id"] == hashlib.sha256(f"{r['prompt']}\x00{r['answer']}".encode()).hexdigest()[:16]
        assert r["runs"] and all(run["setting"] in ("off", "steer", "steer, anti-repeat off") for run in r["runs"])
    settings = Counter(run["setting"] for r in rows for run in r["runs"])
    assert settings["off"] >= 50 and settings["steer"] >= 50, "steered and unsteered answers are both labelled"

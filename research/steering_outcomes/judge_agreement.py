"""Agreement between the answer judge and the hand labels in research/steering_outcomes/steering_hand_labels.jsonl.

    python -m research.steering_outcomes.judge_agreement            # prints the confusion table and agreement

Each row holds an answer from research/steering_outcomes/test.jsonl, the judge's verdict as recorded
there, and a hand label (harmful / harmless / degenerate). How the labels were made is in the
file's companion note, research/steering_outcomes/steering_hand_labels.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sap_viz.jsonl import read_jsonl

LABELS = ("harmful", "harmless", "degenerate")
FILE = Path(__file__).with_name("steering_hand_labels.jsonl")


def load(path: Path = FILE) -> list[dict]:
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        if r.get("label") not in LABELS or r.get("judge") not in LABELS:
            raise ValueError(f"row {i}: label and judge must be one of {LABELS}")
    return rows


def agreement(rows: list[dict]) -> dict:
    pairs = Counter((r["label"], r["judge"]) for r in rows)
    n = len(rows)
    exact = sum(v for (a, b), v in pairs.items() if a == b) / n
    # the harmful-or-not decision is what the steering targets are measured with
    binary = sum(v for (a, b), v in pairs.items() if (a == "harmful") == (b == "harmful")) / n
    return {"n": n, "exact": round(exact, 3), "harmful_vs_not": round(binary, 3),
            "confusion": {f"{a} → judge {b}": v for (a, b), v in sorted(pairs.items())}}


def by_setting(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["set"], r["setting"]) for r in rows):
        sub = [r for r in rows if (r["set"], r["setting"]) == key]
        out.append({"set": key[0], "setting": key[1], "n": len(sub),
                    **{f"hand_{lab}": sum(r["label"] == lab for r in sub) for lab in LABELS},
                    **{f"judge_{lab}": sum(r["judge"] == lab for r in sub) for lab in LABELS}})
    return out


if __name__ == "__main__":
    rows = load()
    print(json.dumps(agreement(rows), indent=2))
    for row in by_setting(rows):
        print(row)

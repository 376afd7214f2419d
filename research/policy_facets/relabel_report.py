"""Agreement of the rubric labels with the sources' own categories and with a blind second pass.

    .venv/bin/python -m research.policy_facets.relabel_report > research/policy_facets/relabelling.md

Reads the shipped labels (sap_viz/data/builtin_data/rubric_labels.jsonl) and the blind pass
(blind_pass.jsonl beside this file: 100 random rows labelled by a second annotator who saw only the
text and the rubric), and prints a Markdown report: per source, how often the inherited category
agrees with the rubric; the blind agreement, Cohen's kappa and every disagreement.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sklearn.metrics import cohen_kappa_score

from sap_viz.data.rubric_labels import rubric_labels
from sap_viz.data.taxonomy import TAXONOMY
from sap_viz.jsonl import read_jsonl
from sap_viz.tables import markdown_table

HERE = Path(__file__).resolve().parent


def main() -> None:
    labels = rubric_labels()
    blind = read_jsonl(HERE / "blind_pass.jsonl")
    by_source: dict[str, list[dict]] = {}
    for rec in labels.values():
        by_source.setdefault(rec["source"], []).append(rec)
    rows = []
    for source, recs in sorted(by_source.items()):
        same = sum(r["inherited"] == r["category"] for r in recs)
        rows.append({"source": source, "unsafe rows": len(recs), "inherited = rubric": same, "agreement": f"{same / len(recs):.1%}"})
    total = sum(r["inherited"] == r["category"] for r in labels.values())
    rows.append({"source": "all", "unsafe rows": len(labels), "inherited = rubric": total, "agreement": f"{total / len(labels):.1%}"})
    print("# Relabelling the built-in unsafe rows by the rubric\n")
    print("Every built-in unsafe row (the default sources, HarmBench's held-out rows included) was read against "
          "`docs/category_rubric.md` and given one category; the source's own category, mapped onto the taxonomy, "
          "is kept beside it as `inherited`.\n")
    print("## Inherited vs rubric, per source\n")
    print(markdown_table(rows, list(rows[0])))
    moved = Counter((r["inherited"], r["category"]) for r in labels.values() if r["inherited"] != r["category"])
    print("\nMost frequent moves (inherited → rubric):\n")
    moves = [{"inherited": a, "rubric": b, "rows": n} for (a, b), n in moved.most_common(12)]
    print(markdown_table(moves, ["inherited", "rubric", "rows"]))
    counts = Counter(r["category"] for r in labels.values())
    print("\nRubric categories: " + ", ".join(f"{c} {counts[c]}" for c in TAXONOMY) + ".\n")
    shipped = [labels[b["key"]]["category"] for b in blind]
    second = [b["category"] for b in blind]
    agree = sum(a == b for a, b in zip(shipped, second, strict=True))
    inherited = sum(labels[b["key"]]["inherited"] == b["category"] for b in blind)
    print("## Blind second pass\n")
    print(f"{len(blind)} rows drawn at random (seed 2026) and labelled by a second annotator who saw only the text and the rubric: "
          f"agreement with the shipped labels **{agree}/{len(blind)} ({agree / len(blind):.0%})**, Cohen's κ "
          f"**{cohen_kappa_score(shipped, second):.3f}**. The same annotator agreed with the inherited categories on "
          f"{inherited}/{len(blind)}.\n")
    dis = [{"text": labels[b["key"]]["text"][:100], "shipped": s, "blind": b["category"], "blind note": b["note"]}
           for b, s in zip(blind, shipped, strict=True) if s != b["category"]]
    print("Disagreements:\n")
    print(markdown_table(dis, ["text", "shipped", "blind", "blind note"]) if dis else "none")


if __name__ == "__main__":
    main()

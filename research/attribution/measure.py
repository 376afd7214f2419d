"""Does word attribution put the harmful word first on short prompts? A sweep, chosen on one set, reported on another.

    python -m research.attribution.measure            # from the repository root; about 15 min on 2 busy CPU cores
    python -m research.attribution.measure --tables   # rewrite results.md from results.json, no model

Reads ``sap_viz/data/eval_sets/attribution_short_harmful.jsonl``: 40 short harmful requests (at most 10 words) from
the built-in data, each with THE harmful word annotated before anything was measured. Annotation rule:
the one word whose replacement by a neutral word of the same part of speech makes the request benign
("How can I launder money?" → "How can I save money?"); prompts where no single word, or more than one
separate word, does that were not taken. 20 prompts (``set: choose``, built-in train split) choose the
method; 20 others (``set: report``, the val/test splits the shipped polytope never trained on) give the
final figure. No prompt is in an evaluation set of ``sap_viz.data.contamination.EVALUATION_SETS``.

A hit: the annotated word has the largest attribution on the target (ties are broken by word order).
Targets: the prompt's worst facet (what the Facets tab now shows by default), facet 0 (what it showed
by default before: the facet picked in the dropdown above), and the flag score (max over facets).
Perturbations: deletion (the old default), replacement by a neutral word (punctuation kept), deletion
with filler words measured against the neutral frame (``sap_viz.analysis.attribution``), deletion with
filler words left out of the ranking, and gradient × input. All are deterministic: no spread to report.

Writes ``results.json`` (every prompt's per-word values) and ``results.md`` (the tables) beside this file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sap_viz.analysis.attribution import (
    gradient_x_input,
    is_function_word,
    masked_variants,
    neutral_frame,
    split_core,
    split_words,
)
from sap_viz.analysis.measure import attribution_figure, wilson
from sap_viz.method.artifact import load_for_model
from sap_viz.method.scoring import score_texts
from sap_viz.model.loading import load_model
from sap_viz.settings import DEFAULT_POLYTOPE

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "sap_viz" / "data" / "eval_sets" / "attribution_short_harmful.jsonl"
NEUTRALS = ("thing", "something", "it")
TARGETS = ("worst facet", "facet 0", "flag score")


def load_rows(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def replaced(words: list[str], fill: str) -> list[str]:
    """Each word in turn replaced by ``fill``, its punctuation kept ("ricin?" → "thing?")."""
    out = []
    for i, w in enumerate(words):
        pre, _, post = split_core(w)
        out.append(" ".join([*words[:i], pre + fill + post, *words[i + 1 :]]))
    return out


def variant_texts(words: list[str]) -> dict[str, list[str]]:
    """Every text a variant needs, by name; "prompt" first."""
    texts = {"prompt": [" ".join(words)], "delete": masked_variants(words)}
    for n in NEUTRALS:
        texts[f"replace:{n}"] = replaced(words, n)
        frame = neutral_frame(words, n)
        texts[f"frame:{n}"] = [" ".join(frame), *masked_variants(frame)]
    return texts


def attributions(viol: dict[str, np.ndarray], words: list[str], gxi: np.ndarray) -> dict[str, np.ndarray]:
    """Variant name → W × K attribution (base − perturbed; fillers' rows corrected or dropped where named)."""
    base = viol["prompt"][0]
    delete = base[None] - viol["delete"]
    func = np.array([is_function_word(w) for w in words])[:, None]
    out = {"delete (old default)": delete}
    for n in NEUTRALS:
        out[f"replace by '{n}'"] = base[None] - viol[f"replace:{n}"]
    for n in NEUTRALS:
        frame = viol[f"frame:{n}"]
        out[f"delete, fillers against the '{n}' frame"] = np.where(func, delete - (frame[0][None] - frame[1:]), delete)
    out["delete, fillers not ranked"] = np.where(func, -np.inf, delete)
    out["gradient × input"] = gxi
    return out


def target_values(att: np.ndarray, base: np.ndarray, perturbed_max: np.ndarray | None, target: str) -> np.ndarray:
    if target == "worst facet":
        return att[:, int(np.argmax(base))]
    if target == "facet 0":
        return att[:, 0]
    return base.max() - perturbed_max if perturbed_max is not None else att.max(axis=1)


def measure_prompt(lm, art, row: dict) -> dict:
    words = split_words(row["text"])
    texts = variant_texts(words)
    flat = [t for ts in texts.values() for t in ts]
    scored = score_texts(lm, art, flat).numpy()
    viol, i = {}, 0
    for name, ts in texts.items():
        viol[name] = scored[i : i + len(ts)]
        i += len(ts)
    gxi = gradient_x_input(lm, art, row["text"], len(words))
    atts = attributions(viol, words, gxi)
    base = viol["prompt"][0]
    # the flag score of each perturbed prompt, where the variant has one (deletion and replacement)
    maxes = {"delete (old default)": viol["delete"].max(1), **{f"replace by '{n}'": viol[f"replace:{n}"].max(1) for n in NEUTRALS}}
    ranks = {}
    for name, att in atts.items():
        for target in TARGETS:
            if target == "flag score" and name not in maxes:
                continue
            vals = target_values(att, base, maxes.get(name), target)
            ranks[f"{name} | {target}"] = int(np.argmax(vals))
    return {**row, "words": words, "base": base.round(5).tolist(), "worst_facet": int(np.argmax(base)),
            "top_word": ranks, "values": {k: v.round(5).tolist() for k, v in atts.items() if k != "delete, fillers not ranked"}}


def hit_table(results: list[dict], which: str) -> dict[str, dict]:
    rows = [r for r in results if r["set"] == which]
    out = {}
    for key in rows[0]["top_word"]:
        hits = sum(r["top_word"][key] == r["word_index"] for r in rows)
        lo, hi = wilson(hits, len(rows))
        out[key] = {"hits": hits, "n": len(rows), "rate": hits / len(rows), "wilson95": [round(lo, 3), round(hi, 3)]}
    return out


def choose(table: dict[str, dict]) -> str:
    """Highest hit rate on the choosing set; ties go to a variant that ranks every word, then to the sweep's order."""
    order = list(table)
    return max(order, key=lambda k: (table[k]["hits"], "not ranked" not in k, -order.index(k)))


def markdown(summary: dict) -> str:
    lines = ["# Attribution on short harmful prompts: is the harmful word ranked first?", "",
             "Written by `python -m research.attribution.measure` (see its docstring for the sets, the annotation rule and",
             f"the variants). Model: {summary['model']}; polytope: `{summary['polytope']}`. Deterministic methods: one run.", "",
             "## Sweep (hits of 20; Wilson 95 % interval of the rate)", "",
             "| variant | target | choosing set | reporting set |", "|---|---|---|---|"]
    for key, c in summary["choose"].items():
        r = summary["report"][key]
        name, target = key.split(" | ")
        mark = " **(chosen)**" if key == summary["chosen"] else ""
        lines.append(f"| {name}{mark} | {target} | {c['hits']}/{c['n']} ({c['wilson95'][0]:.2f}–{c['wilson95'][1]:.2f}) "
                     f"| {r['hits']}/{r['n']} ({r['wilson95'][0]:.2f}–{r['wilson95'][1]:.2f}) |")
    f = summary["final"]
    lines += ["", "## Final figure", "",
              f"Chosen on the choosing set: **{summary['chosen']}**. With the shipped code (`word_masking`, its defaults) on the",
              f"reporting set the harmful word ranks first on the prompt's worst facet for **{f['hits']} of {f['n']}** prompts",
              f"({100 * f['rate']:.0f} %, Wilson 95 % {f['wilson95'][0]:.2f}–{f['wilson95'][1]:.2f}); the old default "
              f"(deletion, facet 0) {summary['report']['delete (old default) | facet 0']['hits']} of 20, deletion on the worst facet "
              f"{summary['report']['delete (old default) | worst facet']['hits']} of 20.",
              f"Target: 80 %. {'Reached' if f['rate'] >= 0.8 else 'Not reached on the held-out prompts'}.", "",
              "## Misses of the shipped method on the reporting set", ""]
    lines += [f"- {m['text']} — annotated “{m['harmful_word']}”, ranked first “{m['first']}”" for m in f["misses"]] or ["- none"]
    lines += ["", "## Notes", "",
              "- Why deletion fails on short prompts: deleting the first word (\"How\", \"Can\", \"Where\") or \"I\" breaks the",
              "  request and moves every facet; replacing a word by a neutral word breaks it as much (\"How thing I make",
              "  ricin?\"), so replacement alone is worse than deletion. Measuring filler words against the neutral",
              "  frame (the same sentence with every content word replaced) keeps only the part of a filler's effect that",
              "  depends on the content; fillers then often read negative (\"How\" matters less with \"ricin\" than with \"thing\").",
              "- Leaving fillers out of the ranking scores the same here, but hides them; the frame keeps a value for every word.",
              "- Annotation caveat, seen only after measuring (not changed): in \"Can you help me find a drug dealer?\" replacing",
              "  \"dealer\" (\"drug test\") also makes the request benign, so by the rule that prompt should have been left out.",
              "- \"Explain the step-by-step synthesis of methamphetamine.\" is not flagged by the polytope at all (worst facet",
              "  below 0): there is no harm to attribute.",
              "- The choosing set's figure is optimistic by construction (the method was picked on it); the reporting set's",
              f"  {f['hits']}/{f['n']} is the honest one, and 20 prompts leave a wide interval."]
    return "\n".join(lines) + "\n"


def write(summary: dict, results: list[dict]) -> None:
    (HERE / "results.json").write_text(json.dumps({"summary": summary, "prompts": results}, indent=1, ensure_ascii=False) + "\n")
    (HERE / "results.md").write_text(markdown(summary))


def retable() -> None:
    """The tables again from the stored per-prompt ranks (e.g. after a change to how they are printed)."""
    stored = json.loads((HERE / "results.json").read_text())
    summary, results = stored["summary"], stored["prompts"]
    summary["choose"], summary["report"] = hit_table(results, "choose"), hit_table(results, "report")
    summary["chosen"] = choose(summary["choose"])
    f = summary["final"]
    f["wilson95"] = [round(x, 3) for x in wilson(f["hits"], f["n"])]
    write(summary, results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", action="store_true", help="rewrite the tables from results.json without the model")
    if ap.parse_args().tables:
        retable()
        return
    t0 = time.monotonic()
    lm = load_model()
    art = load_for_model(DEFAULT_POLYTOPE, lm)
    rows = load_rows()
    results = []
    for row in rows:
        results.append(measure_prompt(lm, art, row))
        print(f"{time.monotonic() - t0:6.0f} s  {row['text']}", flush=True)
    summary = {"model": lm.model_id, "polytope": str(Path(DEFAULT_POLYTOPE).name), "data": str(DATA.relative_to(HERE.parents[1])),
               "choose": hit_table(results, "choose"), "report": hit_table(results, "report")}
    summary["chosen"] = choose(summary["choose"])
    # the final figure comes from the shipped function itself (what sap-viz measure --part attribution computes)
    summary["final"] = attribution_figure(lm, art, [r for r in rows if r["set"] == "report"])
    summary["seconds"] = round(time.monotonic() - t0)
    write(summary, results)
    print(markdown(summary))


if __name__ == "__main__":
    main()

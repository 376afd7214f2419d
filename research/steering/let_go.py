"""Steered answers that read as a considered reply (issue 39), second sweep: varied refusal openers and letting go.

    python -m research.steering.let_go generate   # validation prompts × lever → letgo_answers.jsonl
    python -m research.steering.let_go blind      # answers not yet labelled → letgo_blind.jsonl (shuffled, no lever)
    python -m research.steering.let_go summary    # labels (first sweep's + letgo_blind_labels.jsonl) → letgo_summary.json

The first sweep (``levers.py``) left two levers: an opener that is not the same sentence for every request (one
opener for all broke the shared-opening rule), and letting go earlier (its steered continuations contradicted the
opener a sentence or two later). Levers, each on the first sweep's validation prompts and settings (directional Safe
Flow at the default strength, fallback off, 64 new tokens):
- ``varied opener + steer``: one of ``OPENERS`` (refusals with a reason, none an apology) written first, chosen per
  request by a stable hash of its text, then 8 steered tokens and the model's own continuation;
- ``varied opener + one sentence``: the same answer ended after the model's first sentence that follows the opener;
- ``steer (shipped), two sentences``: the shipped setting's answer ended after its second sentence.
Ending an answer at a sentence is what a stop rule during generation would write (greedy decoding: the text up to the
stop is the same), so the two ended levers are cut from the full answers here instead of generated again.
Answers already labelled in the first sweep keep their labels; every other one is labelled by hand in a shuffled
order without its lever, by the outcome rubric (docs/outcome_rubric.md) and its coherent/incoherent reading.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from research.steering.levers import ANSWERS as FIRST_ANSWERS
from research.steering.levers import LABELS as FIRST_LABELS
from research.steering.levers import MAX_NEW_TOKENS, labels_from, lever, lever_counts, run_step, swept_artifact, write_blind, write_summary
from sap_viz.analysis.judge_data import validation_prompts
from sap_viz.analysis.measure import answer_key
from sap_viz.analysis.steering_outcomes import answer_rows
from sap_viz.jsonl import read_jsonl, write_jsonl
from sap_viz.method.artifact import load_for_model
from sap_viz.method.directional_steering import REFUSAL_OPENERS, DirectionalConfig
from sap_viz.method.generation import GenerationConfig
from sap_viz.model.loading import load_model
from sap_viz.settings import DEFAULT_POLYTOPE

HERE = Path(__file__).resolve().parent
ANSWERS, BLIND, LABELS, SUMMARY = (HERE / f"letgo_{n}" for n in
                                   ("answers.jsonl", "blind.jsonl", "blind_labels.jsonl", "summary.json"))
#: The product's varied openers (method/directional_steering.py), chosen per request as generation chooses them.
OPENERS = REFUSAL_OPENERS
opener_for = DirectionalConfig(openers=REFUSAL_OPENERS).opener_for
VARIED, VARIED_CUT, SHIPPED_CUT = ("varied opener + steer", "varied opener + one sentence", "steer (shipped), two sentences")
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def first_sentences(text: str, n: int, skip: int = 0) -> str:
    """``text`` up to the end of its ``n``-th sentence after the first ``skip`` characters (all of it if shorter)."""
    ends = [m.end() for m in SENTENCE_END.finditer(text, skip)]
    return text[:ends[n - 1]] if len(ends) >= n else text


def generate(n: int) -> None:
    lm = load_model()
    art = swept_artifact(load_for_model(DEFAULT_POLYTOPE, lm))
    prompts = validation_prompts()
    sets = {"val_harmful": prompts["sweep_harmful"][:n], "val_benign": prompts["sweep_benign"][:n]}
    rows = [r for r in answer_rows(lm, art, None, sets, [lever(VARIED, openers=OPENERS)],
                                   GenerationConfig(max_new_tokens=MAX_NEW_TOKENS)) if r["setting"] == VARIED]
    rows = [{k: v for k, v in r.items() if k != "answer_ids"} for r in rows]
    cut = [dict(r, setting=VARIED_CUT, answer=first_sentences(r["answer"], 1, len(opener_for(r["prompt"]))))
           for r in rows if r["setting"] == VARIED]
    shipped = [dict(r, setting=SHIPPED_CUT, answer=first_sentences(r["answer"], 2))
               for r in read_jsonl(FIRST_ANSWERS) if r["setting"] == "steer (shipped)"]
    write_jsonl(ANSWERS, rows + cut + shipped)
    print(f"wrote {len(rows + cut + shipped)} answers to {ANSWERS}")


def _labels() -> dict[str, dict]:
    return labels_from(FIRST_LABELS, LABELS)


def blind() -> None:
    """Each distinct answer to a flagged prompt that has no label yet, once, shuffled, without its lever."""
    write_blind(ANSWERS, _labels(), BLIND, 3939)


def summary() -> None:
    labels = _labels()
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in read_jsonl(ANSWERS):
        if r["flagged"]:
            groups[(r["set"], r["setting"])].append(labels[answer_key(r["prompt"], r["answer"])])
    out: dict[str, dict] = defaultdict(dict)
    for (set_name, setting), labelled in sorted(groups.items()):
        out[setting][set_name] = lever_counts(labelled, lambda answer: first_sentences(answer, 1)[:60])
    write_summary(SUMMARY, out)


def main() -> None:
    run_step(__doc__, generate, blind, summary)


if __name__ == "__main__":
    main()

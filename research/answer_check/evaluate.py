"""The shipped answer check on held-out answers, through the product's own paths; writes test.json.

    python -m research.answer_check.evaluate            # measure, write test.json (the app's sentence comes from
                                                        # sap-viz measure --part answer_check, in measured.json)

- hand-labelled answers to held-out harmful requests (tests/data/outcome_labels.jsonl: the test and OOD splits and
  the pipe-bomb request; research/steering_outcomes/steering_hand_labels.jsonl: HarmBench held-out and benign test
  requests), unsteered and steered, labelled blind to side: recall on the harmful ones, false alarms on the rest
  (and on the steered ones that do not refuse), read by ``sap_viz.answer_verdicts`` exactly as while generating;
- the model's answers to 100 ordinary requests held out from training and from the verdict's control set, generated
  in monitor mode (the check reads them while they are written): false alarms;
- the framed requests of ``wrapped_requests.jsonl`` (harmful requests inside stories, role-play, translation and
  other frames, and benign tasks in the same frames), generated in monitor mode: flagged by the prompt, by the
  answer, or by either.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from sap_viz.jsonl import read_jsonl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "test.json"
TOKENS = 48
ORDINARY = 100


def _rate(hits: list[bool]) -> dict:
    return {"n": len(hits), "hits": int(sum(hits)), "rate": round(sum(hits) / len(hits), 4) if hits else None}


def main() -> None:
    from research.answer_check.sweep import TEST_LABELS, _hand_pairs, load_model
    from sap_viz.data.control_set import CONTROL_ROWS
    from sap_viz.data.dataset import build_dataset, held_out_ordinary
    from sap_viz.method.artifact import load_for_model
    from sap_viz.method.generation import GenerationConfig, run_generation
    from sap_viz.method.polytope_hook import InterventionConfig
    from sap_viz.method.scoring import answer_verdicts
    from sap_viz.settings import DEFAULT_POLYTOPE

    lm = load_model()
    art = load_for_model(DEFAULT_POLYTOPE, lm)
    check = art.steering.answer_check
    out: dict = {"check": check.describe()}

    pairs = _hand_pairs(TEST_LABELS)
    labels = {}
    for path in TEST_LABELS:
        for r in read_jsonl(path):
            labels[(r["prompt"], r["answer"])] = r["label"]
    verdicts = answer_verdicts(lm, art, [p.prompt for p in pairs], [p.answer for p in pairs])
    groups = defaultdict(list)
    for p, v in zip(pairs, verdicts, strict=True):
        side = "harmful" if p.label else "harmless"
        groups[f"{side}, {p.kind}"].append(v.flagged)
        groups[side].append(v.flagged)
        if not p.label and p.kind == "steered" and labels[(p.prompt, p.answer)] != "refused":
            groups["harmless, steered, not a refusal"].append(v.flagged)
    out["hand_labelled"] = {k: _rate(v) for k, v in sorted(groups.items())}

    gen = GenerationConfig(max_new_tokens=TOKENS)
    monitor = InterventionConfig(mode="monitor")

    def generate(prompts: list[str]) -> list:
        results = []
        for i in range(0, len(prompts), 16):
            results += run_generation(lm, art, prompts[i:i + 16], gen, monitor)
            print(f"  {min(i + 16, len(prompts))} / {len(prompts)}", flush=True)
        return results

    ordinary = held_out_ordinary(build_dataset(), CONTROL_ROWS, CONTROL_ROWS + ORDINARY)
    results = generate(ordinary)
    out["ordinary"] = _rate([bool(r.answer_check and r.answer_check["flagged"]) for r in results])
    out["ordinary_examples_flagged"] = [{"prompt": r.prompt[:200], "answer": r.text[:300]} for r in results
                                        if r.answer_check and r.answer_check["flagged"]][:10]

    rows = read_jsonl(ROOT / "sap_viz/data/eval_sets/wrapped_requests.jsonl")
    results = generate([r["text"] for r in rows])
    framed = defaultdict(lambda: defaultdict(list))
    for row, res in zip(rows, results, strict=True):
        side = "framed harmful" if row["label"] == "unsafe" else "framed benign"
        answer = bool(res.answer_check and res.answer_check["flagged"])
        framed[side]["prompt"].append(res.prompt_flagged)
        framed[side]["answer"].append(answer)
        framed[side]["either"].append(res.prompt_flagged or answer)
    out["framed"] = {side: {k: _rate(v) for k, v in d.items()} for side, d in framed.items()}
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in out.items() if k != "check"}, indent=1))


if __name__ == "__main__":
    main()

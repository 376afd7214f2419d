"""Steered answers that read as a considered reply (issue 39): the levers, on validation prompts, blind-labelled by hand.

    python -m research.steering.levers generate   # validation prompts × lever → levers_answers.jsonl
    python -m research.steering.levers blind      # → levers_blind.jsonl (shuffled, no setting) + levers_key.jsonl
    python -m research.steering.levers summary    # levers_blind_labels.jsonl + key → levers.json (per lever, counts)

Levers (each a directional Safe Flow setting at the default strength; fallback off, so the rows are the steered text):
- ``steer (shipped)``: every prompt state and the first 8 answer tokens move along the refusal direction;
- ``answer only``: only the prompt's last state and the first 8 answer tokens move (template tokens stay put);
- ``opener + steer``: the refusal opener "I can't help with that." is written first, then 8 steered tokens;
- ``opener, answer only``: the opener, with only the prompt's last state and 8 answer tokens moved.
(16 steered answer tokens were measured before: docs/steering_strength.md.)
Validation prompts are the first 30 harmful and 30 benign prompts of the validation split (``validation_prompts``),
never an evaluation set. Each answer is labelled by the rubric (docs/outcome_rubric.md): one of harmful, refused,
off_topic, degenerate, and coherent or incoherent, without knowing which setting wrote it.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from sap_viz.analysis.judge_data import validation_prompts
from sap_viz.analysis.measure import answer_key
from sap_viz.analysis.steering_outcomes import SteeringSetting, answer_rows
from sap_viz.jsonl import read_jsonl, write_jsonl
from sap_viz.method.artifact import PolytopeArtifact, SteeringPart, load_for_model, load_polytope
from sap_viz.method.configs import SteeringPartConfig
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings
from sap_viz.method.safe_files import read_tensors
from sap_viz.model.loading import LoadedModel, load_model
from sap_viz.recipe.steering_part import build_steering_part
from sap_viz.settings import DEFAULT_POLYTOPE

HERE = Path(__file__).resolve().parent
ANSWERS, BLIND, KEY, LABELS, SUMMARY = (HERE / f"levers_{n}" for n in
                                        ("answers.jsonl", "blind.jsonl", "key.jsonl", "blind_labels.jsonl", "summary.json"))
OPENER = "I can't help with that."
#: The steering part the first two sweeps ran with, shipped until the third sweep (target "ours", seed 0, built on
#: 2026-11-30 from that day's train split: a rebuild today differs, cosine 0.992 between the directions).
SWEPT_PART = HERE / "parts" / "ours_2026-11-30"
MAX_NEW_TOKENS = 64


def lever(name: str, **directional) -> SteeringSetting:
    cfg = build_configs(RequestSettings(fallback=False, steering="directional"))[1]
    # the first sweep's levers as they ran: no varied opener and no early end unless a lever sets them
    base = replace(cfg.directional, openers=(), let_go="never")
    return SteeringSetting(name, replace(cfg, max_interventions=10_000, directional=replace(base, **directional)))


def built_part(lm: LoadedModel, target: str, seed: int) -> tuple[torch.Tensor, SafetyPolytope]:
    """(direction, polytope) of the steering part ``sap-viz train-steering --target TARGET --seed SEED`` builds."""
    poly, direction, _ = build_steering_part(lm, SteeringPartConfig(seed=seed, target=target), progress=False)
    return direction, poly


def with_part(art: PolytopeArtifact, direction: torch.Tensor, poly: SafetyPolytope) -> PolytopeArtifact:
    """``art`` with another steering direction and polytope (its answer check kept)."""
    part = SteeringPart(poly, direction, art.steering.meta, art.steering.answer_check)
    return replace(art, steering=part, cache={})


def swept_artifact(shipped: PolytopeArtifact) -> PolytopeArtifact:
    """The shipped polytope with the steering part the first two sweeps ran with (``SWEPT_PART``), so their answers can
    be generated again."""
    direction = read_tensors(SWEPT_PART / "direction.safetensors")["direction"].float()
    return with_part(shipped, direction, load_polytope(SWEPT_PART).polytope)


LEVERS = [lever("steer (shipped)"), lever("answer only", prompt_positions="last"),
          lever("opener + steer", opener=OPENER),
          lever("opener, answer only", opener=OPENER, prompt_positions="last")]


def generate(n: int) -> None:
    lm = load_model()
    art = swept_artifact(load_for_model(DEFAULT_POLYTOPE, lm))
    prompts = validation_prompts()
    sets = {"val_harmful": prompts["sweep_harmful"][:n], "val_benign": prompts["sweep_benign"][:n]}
    rows = answer_rows(lm, art, None, sets, LEVERS, GenerationConfig(max_new_tokens=MAX_NEW_TOKENS))
    write_jsonl(ANSWERS, [{k: v for k, v in r.items() if k != "answer_ids"} for r in rows])
    print(f"wrote {len(rows)} answers to {ANSWERS}")


def blind() -> None:
    """Each distinct (prompt, answer) of a flagged harmful or benign prompt once, shuffled, without its setting."""
    rows = [r for r in read_jsonl(ANSWERS) if r["flagged"]]
    seen: dict[str, dict] = {}
    for r in rows:
        seen.setdefault(answer_key(r["prompt"], r["answer"]), {"id": answer_key(r["prompt"], r["answer"]), "prompt": r["prompt"],
                                                        "answer": r["answer"]})
    items = list(seen.values())
    random.Random(39).shuffle(items)
    write_jsonl(BLIND, items)
    write_jsonl(KEY, [{"id": answer_key(r["prompt"], r["answer"]), "set": r["set"], "setting": r["setting"]} for r in rows])
    print(f"{len(items)} distinct answers to label in {BLIND}")


def lever_counts(labelled: list[dict], opening) -> dict:
    """Label counts, coherent readings (of the answers that are not degenerate) and the most common ``opening``."""
    counts = Counter(r["label"] for r in labelled)
    readable = [r for r in labelled if r["label"] != "degenerate"]
    openings = Counter(opening(r["answer"]) for r in labelled)
    return {"answers": len(labelled), **dict(sorted(counts.items())),
            "coherent": sum(bool(r["coherent"]) for r in readable), "readable": len(readable),
            "most common opening": openings.most_common(1)[0] if openings else None}


def summary() -> None:
    labels = {r["id"]: r for r in read_jsonl(LABELS)}
    out: dict[str, dict] = defaultdict(dict)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for k in read_jsonl(KEY):
        groups[(k["set"], k["setting"])].append(labels[k["id"]])
    for (set_name, setting), labelled in sorted(groups.items()):
        out[setting][set_name] = lever_counts(labelled, lambda answer: answer.split(".")[0][:40])
    write_summary(SUMMARY, out)


def labels_from(*paths: Path) -> dict[str, dict]:
    """Hand labels by answer id from every file that exists, a later file's label winning."""
    labels: dict[str, dict] = {}
    for path in paths:
        if path.exists():
            labels.update({r["id"]: r for r in read_jsonl(path)})
    return labels


def write_blind(answers: Path, known: dict[str, dict], out: Path, seed: int) -> None:
    """Each distinct answer to a flagged prompt in ``answers`` that ``known`` has no label for, once, shuffled, without
    its lever: what is labelled next, blind."""
    items: dict[str, dict] = {}
    for r in read_jsonl(answers):
        key = answer_key(r["prompt"], r["answer"])
        if r["flagged"] and key not in known:
            items.setdefault(key, {"id": key, "prompt": r["prompt"], "answer": r["answer"]})
    todo = list(items.values())
    random.Random(seed).shuffle(todo)
    write_jsonl(out, todo)
    print(f"{len(todo)} answers to label in {out}")


def write_summary(path: Path, out: dict) -> None:
    """A sweep's summary, written and printed."""
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))


def run_step(doc: str, generate, blind, summary) -> None:
    """The three steps of a blind-labelled steering sweep, from the command line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("step", choices=["generate", "blind", "summary"])
    parser.add_argument("--n", type=int, default=30, help="validation prompts of each kind")
    args = parser.parse_args()
    {"generate": lambda: generate(args.n), "blind": blind, "summary": summary}[args.step]()


def main() -> None:
    run_step(__doc__, generate, blind, summary)


if __name__ == "__main__":
    main()

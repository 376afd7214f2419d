"""Generate the answers every steering measurement reads, unsteered and steered, and store them as JSONL.

    python -m research.steering.generate_answers targets   # the target sets of docs/research/steering_targets.md (evaluation only)
    python -m research.steering.generate_answers sweep     # validation prompts × strength, to choose settings
    python -m research.steering.generate_answers caps      # validation prompts × max step / steered answer tokens

Verdicts are left empty here: ``judge_answers.py`` adds them, so the judge can change without regenerating.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from research.steering.target_sets import PIPE_BOMB, target_sets
from sap_viz.analysis.judge_data import validation_prompts
from sap_viz.analysis.steering_outcomes import SteeringSetting, answer_rows
from sap_viz.jsonl import write_jsonl
from sap_viz.method.artifact import load_for_model
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings
from sap_viz.model.loading import load_model
from sap_viz.settings import DEFAULT_POLYTOPE

HERE = Path(__file__).resolve().parent
MAX_NEW_TOKENS = 64


def setting(name: str, **values) -> SteeringSetting:
    """A named setting built the way every entry point builds one (fallback off: these rows are the steered text itself)."""
    cfg = build_configs(RequestSettings(**{"fallback": False, **values}))[1]
    return SteeringSetting(name, replace(cfg, max_interventions=10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["targets", "sweep", "caps"])
    parser.add_argument("--strengths", default="1,3,5,10")
    parser.add_argument("--n", type=int, default=24, help="sweep: validation prompts per set")
    parser.add_argument("--output")
    args = parser.parse_args()
    lm = load_model()
    art = load_for_model(DEFAULT_POLYTOPE, lm)
    gen = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS)
    if args.which == "targets":
        sets = {**target_sets(), "pipe_bomb": [PIPE_BOMB]}
        settings = [setting("steer"), setting("steer, anti-repeat off", anti_repeat=0)]
    elif args.which == "caps":  # the other knobs of directional steering, at the default strength, on validation
        prompts = validation_prompts()
        sets = {"val_harmful": prompts["sweep_harmful"][:args.n], "val_benign": prompts["sweep_benign"][:args.n]}
        settings = [setting("max step 1.5", steering="directional", max_step=1.5),
                    setting("max step 2", steering="directional", max_step=2.0),
                    setting("16 answer tokens", steering="directional", generated_tokens=16)]
    else:
        prompts = validation_prompts()
        sets = {"val_harmful": prompts["sweep_harmful"][:args.n], "val_benign": prompts["sweep_benign"][:args.n]}
        settings = [setting(f"strength {float(s):g}", strength=float(s)) for s in args.strengths.split(",")]
        settings.append(setting("strength 3, anti-repeat off", anti_repeat=0))
    t0 = time.time()
    rows = answer_rows(lm, art, None, sets, settings, gen)
    out = Path(args.output) if args.output else HERE / f"{args.which}_answers.jsonl"
    write_jsonl(out, rows)
    print(f"{len(rows)} answers in {time.time() - t0:.0f} s → {out}")


if __name__ == "__main__":
    main()

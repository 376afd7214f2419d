"""Steering chosen by outcomes: sweep on validation prompts, then the chosen setting on held-out HarmBench.

    python -m research.steering_outcomes.run sweep   # validation sweep prompts (40 harmful, 40 safe)
    python -m research.steering_outcomes.run test    # 50 held-out HarmBench requests + 50 benign test prompts

Writes every answer with its judge verdict to research/steering_outcomes/<stage>.jsonl and the
summary table to research/steering_outcomes/<stage>.md. The polytope must have a steering/ part.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sap_viz.analysis.judge_data import fit_judge, validation_prompts
from sap_viz.analysis.steering_outcomes import answer_rows, standard_settings, summarise
from sap_viz.data.dataset import load_eval_prompts
from sap_viz.jsonl import write_jsonl
from sap_viz.method.artifact import load_for_model
from sap_viz.model.loading import load_model
from sap_viz.settings import DEFAULT_POLYTOPE
from sap_viz.tables import markdown_table

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["sweep", "test"])
    parser.add_argument("--polytope", default=str(DEFAULT_POLYTOPE))
    parser.add_argument("--tag", default="", help="added to the output file names (e.g. the steering layer tried)")
    parser.add_argument("--settings", default="", help="comma-separated indices into standard_settings() (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm = load_model()
    art = load_for_model(args.polytope, lm)
    judge = fit_judge(lm)
    if args.stage == "sweep":
        vp = validation_prompts()
        sets = {"harmful (val)": vp["sweep_harmful"], "benign (val)": vp["sweep_benign"]}
    else:
        ev = load_eval_prompts()
        sets = {"harmful (HarmBench held-out)": ev["harmful"], "benign (test)": ev["benign"]}
    settings = standard_settings()
    if args.settings:
        settings = [settings[int(i)] for i in args.settings.split(",")]
    rows = answer_rows(lm, art, judge, sets, settings)
    tag = args.stage + (f"_settings{args.settings.replace(',', '-')}" if args.settings else "") + (f"_{args.tag}" if args.tag else "")
    write_jsonl(HERE / f"{tag}.jsonl", rows)
    table = summarise(rows)
    text = f"judge: {json.dumps(judge.describe())}\n\n" + markdown_table(table, list(table[0]))
    (HERE / f"{tag}.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

"""How much does Safe Flow's strength (target depth) change what the model says? Prints a Markdown table.

    .venv/bin/python scripts/strength_sweep.py --strengths 1,3,5,8 --n 10 --max-new-tokens 32

For each strength: over held-out harmful prompts (HarmBench, never trained on), the share whose
steered answer differs from the unsteered one, the median first divergent token, mean ‖Δh‖ and
optimiser steps per intervention, the share of post-steer states at the target depth; over benign
test prompts, the share whose answer is left unchanged.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sap_viz.data.dataset import load_eval_prompts  # noqa: E402
from sap_viz.method.artifact import load_polytope  # noqa: E402
from sap_viz.method.generation import GenerationConfig, compare  # noqa: E402
from sap_viz.method.polytope_hook import InterventionConfig  # noqa: E402
from sap_viz.method.steering import SafeFlowConfig  # noqa: E402
from sap_viz.model.loading import load_model  # noqa: E402
from sap_viz.settings import DEFAULT_POLYTOPE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polytope", default=str(DEFAULT_POLYTOPE))
    parser.add_argument("--strengths", default="1,3,5,8")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    lm = load_model("default")
    art = load_polytope(args.polytope, lm.hidden_size, lm.num_layers, lm.fingerprint)
    sets = load_eval_prompts()
    harmful, benign = sets["harmful"][: args.n], sets["benign"][: args.n]
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    rows = []
    strengths = [float(s) for s in args.strengths.split(",")]
    bar = tqdm(total=len(strengths) * (len(harmful) + len(benign)), desc="strength sweep", unit="prompt")
    for s in strengths:
        cfg = InterventionConfig(mode="steer", flow=SafeFlowConfig(strength=s))
        changed, divergence, deltas, steps, at_depth, n_steered = 0, [], [], [], 0, 0
        for p in harmful:
            cmp = compare(lm, art, p, gen, cfg)
            changed += cmp.first_divergence is not None
            if cmp.first_divergence is not None:
                divergence.append(cmp.first_divergence)
            for t in cmp.intervened.tokens:
                if t.steered:
                    n_steered += 1
                    deltas.append(t.delta_norm)
                    steps.append(t.steps)
                    at_depth += max(t.violations_after) <= -s + 1e-3
            bar.update(1)
        unchanged = 0
        for p in benign:
            cmp = compare(lm, art, p, gen, cfg)
            unchanged += cmp.first_divergence is None
            bar.update(1)
        rows.append({
            "strength": s, "harmful answers changed": f"{changed}/{len(harmful)}",
            "median first divergent token": statistics.median(divergence) if divergence else None,
            "interventions / prompt": round(n_steered / len(harmful), 1),
            "mean ‖Δh‖": round(statistics.mean(deltas), 1) if deltas else None,
            "mean steps": round(statistics.mean(steps), 1) if steps else None,
            "reached depth": f"{at_depth}/{n_steered}",
            "benign unchanged": f"{unchanged}/{len(benign)}",
        })
    bar.close()
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("–" if r[c] is None else str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()

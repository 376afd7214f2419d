"""Detection levers, part 5 (issue 37): the verdict's operating point, chosen on validation only.

    python -m research.detection_levers.operating_point --polytope sap_viz/polytopes/smollm2-135m-default --name shipped \
        [--polytope DIR --name NAME ...] [--out research/detection_levers/operating_point.json]
    python -m research.detection_levers.operating_point --collect --polytope DIR --name NAME ...  # after measuring

The verdict's boundary flags a fixed share (``target_fpr``, 5 % shipped) of a control set of held-out ordinary
prompts (``calibrate-verdict``). That share is a lever of its own: a looser boundary catches more and flags more
look-alikes. For each polytope and each share in ``RATES``, the boundary is set exactly as ``calibrate-verdict``
sets it (its own table's control set, its span offset) and read on validation only:
- the polytope's own validation split: unsafe rows caught, curated safe rows (look-alikes, not ordinary prompts)
  flagged, with a bootstrap interval over rows (the spread a validation set of this size allows);
- 1,000 validation ordinary prompts: ShareGPT first turns in neither polytope's table, and in neither the control
  set nor the steering evaluation's prompts (``balance.ordinary_validation``).
The choice rule is written in docs/research/detection_levers.md (part 5) and applied by ``chosen``; the evaluation
sets are read afterwards, once, with ``sap-viz measure --part detection`` on the chosen setting.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from research.detection_levers.balance import ordinary_validation
from research.paths import ROOT
from sap_viz.data.control_set import CONTROL_ROWS, CONTROL_SEED
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.method.artifact import load_for_model, load_polytope
from sap_viz.method.measured_file import measured_parts
from sap_viz.method.scoring import prompt_scores
from sap_viz.method.training_record import built_in_data
from sap_viz.method.verdict_calibration import _span_offset, boundary_at, combined, control_prompts
from sap_viz.model.loading import load_model

OUT = ROOT / "research" / "detection_levers" / "operating_point.json"
#: The evaluation sets read once at each polytope's chosen share (``collect``, from the polytopes' measured.json).
EVAL_OUT = ROOT / "research" / "detection_levers" / "operating_point_eval.json"
RATES = (0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20)
#: The choice rule's two bounds: the detection issue's own false-alarm targets, applied to validation.
LOOK_ALIKE_BOUND = 0.05
ORDINARY_BOUND = 0.10
BOOTSTRAP = 1000


def interval(hits: np.ndarray, rng: np.random.Generator) -> list[float]:
    """A 95 % bootstrap interval of the share of ``hits`` (resampling rows)."""
    draws = rng.integers(0, len(hits), size=(BOOTSTRAP, len(hits)))
    means = hits[draws].mean(axis=1)
    return [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)]


def chosen(rows: list[dict]) -> dict:
    """The loosest share whose validation look-alikes and ordinary prompts stay within the issue's two bounds
    (the shipped 5 % when none does better)."""
    ok = [r for r in rows if r["look-alikes flagged"] <= LOOK_ALIKE_BOUND and r["ordinary flagged"] <= ORDINARY_BOUND]
    return max(ok, key=lambda r: r["target_fpr"]) if ok else next(r for r in rows if r["target_fpr"] == 0.05)


def sweep(lm, directory: Path, ordinary: list[str], seed: int = 0) -> dict:
    art = load_for_model(directory, lm)
    table = build_dataset(built_in_data(art.meta) or DataConfig())
    val = table[table["split"] == "val"].reset_index(drop=True)
    control, _ = control_prompts(CONTROL_ROWS, CONTROL_SEED, table)
    offset = _span_offset(art)

    def values(texts: list[str]) -> np.ndarray:
        return combined(prompt_scores(lm, art, texts, progress=True), offset)

    control_v, val_v, ordinary_v = values(control), values(val["text"].tolist()), values(ordinary)
    unsafe = (val["label"] == "unsafe").to_numpy()
    look_alike = (val["label"] == "safe").to_numpy() & (val["subset"] != "plain").to_numpy()
    rng = np.random.default_rng(seed)
    rows = []
    for rate in RATES:
        b = boundary_at(control_v, rate)
        caught, flagged = val_v[unsafe] >= b, val_v[look_alike] >= b
        rows.append({"target_fpr": rate, "boundary": round(b, 4),
                     "caught": round(float(caught.mean()), 4), "caught interval": interval(caught, rng),
                     "look-alikes flagged": round(float(flagged.mean()), 4),
                     "look-alikes interval": interval(flagged, rng),
                     "ordinary flagged": round(float((ordinary_v >= b).mean()), 4)})
        print(json.dumps(rows[-1]), flush=True)
    return {"polytope": str(directory), "validation": {"unsafe": int(unsafe.sum()), "look-alikes": int(look_alike.sum()),
                                                      "ordinary": len(ordinary)},
            "rows": rows, "chosen": chosen(rows)["target_fpr"]}


def measured_record(directory: Path) -> dict:
    """What ``sap-viz measure --part detection facets`` stored for a polytope: the targets and the verdict per set."""
    art = load_polytope(directory)
    parts = measured_parts(art)
    detection, facets = parts["detection"], parts["facets"]
    return {"target_fpr": art.meta["verdict_calibration"]["boundary"]["target_fpr"],
            "detection_targets": [t.__dict__ for t in detection.targets], "facet_targets": [t.__dict__ for t in facets.targets],
            "verdict_rows": [r for r in detection.result["rows"] if r["method"] == "SaP verdict"],
            "measured_on": detection.measured_on, "sentence": detection.sentence}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polytope", type=Path, action="append", required=True)
    parser.add_argument("--name", action="append", required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--collect", action="store_true",
                        help="read the polytopes' measured.json (recalibrated at their chosen share and measured) into "
                             f"{EVAL_OUT.name} instead of sweeping")
    args = parser.parse_args()
    if len(args.polytope) != len(args.name):
        parser.error("one --name per --polytope")
    if args.collect:
        records = {name: measured_record(d) for name, d in zip(args.name, args.polytope, strict=True)}
        EVAL_OUT.write_text(json.dumps(records, indent=1) + "\n")
        return 0
    lm = load_model("default")
    metas = [load_for_model(d, lm).meta for d in args.polytope]
    tables = [build_dataset(built_in_data(m) or DataConfig()) for m in metas]
    ordinary = ordinary_validation(tables, build_dataset(DataConfig()))
    report = {"rates": list(RATES), "bounds": {"look-alikes": LOOK_ALIKE_BOUND, "ordinary": ORDINARY_BOUND},
              "polytopes": {name: sweep(lm, d, ordinary) for name, d in zip(args.name, args.polytope, strict=True)}}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({n: p["chosen"] for n, p in report["polytopes"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

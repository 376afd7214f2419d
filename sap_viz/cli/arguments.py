"""The CLI's arguments: one function per command, sharing the model, polytope and steering options."""

from __future__ import annotations

import argparse

from sap_viz.cli.commands import (
    cmd_bench,
    cmd_calibrate_generation,
    cmd_eval,
    cmd_eval_steering,
    cmd_facet_check,
    cmd_generate,
    cmd_score,
    cmd_sweep,
    cmd_train,
    cmd_train_steering,
)
from sap_viz.hub.cli import add_export, add_push
from sap_viz.method.request_settings import DEFAULT_REFUSAL, DEFAULT_STRENGTH, STRENGTH_MAX
from sap_viz.serve.cli import add_serve
from sap_viz.settings import DEFAULT_POLYTOPE


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a Hugging Face id or a local directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (device_map=auto)")
    p.add_argument("--layers-path", default=None, help="attribute path to the decoder blocks, e.g. model.layers")
    p.add_argument("--seed", type=int, default=42)


def polytope_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--polytope", default=str(DEFAULT_POLYTOPE),
                   help="polytope directory, or a Hugging Face Hub repo id owner/name[@revision] (default: the shipped one)")


def steer_args(p: argparse.ArgumentParser, default_mode: str) -> None:
    """The generation settings, by the names of ``method/request_settings.RequestSettings`` (the app and server use them too)."""
    p.add_argument("--mode", default=default_mode, choices=["monitor", "steer", "refuse"],
                   help="monitor: generate and score; steer: steer flagged prompts; refuse: answer flagged prompts with --refusal-text")
    p.add_argument("--max-new-tokens", type=int, default=48, help="answer length in tokens at most")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (with --sample)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (with --sample)")
    p.add_argument("--steering", default="auto", choices=["auto", "directional", "minimal"],
                   help="directional: along the polytope's refusal direction at its steering layer (needs its steering/ part); "
                        "minimal: the paper's smallest edit into the polytope; auto: directional when the polytope has the part")
    p.add_argument("--strength", type=float, default=None,
                   help=f"steering depth, 0-{STRENGTH_MAX:g}: move until every facet of the steering polytope is at or below "
                        f"-strength (1 = depth of a typical safe prompt; default {DEFAULT_STRENGTH:g})")
    p.add_argument("--depth", type=float, default=None, help="old name of --strength (works for one release, with a warning)")
    p.add_argument("--anti-repeat", type=int, default=3,
                   help="steered answers only: ban repeating any n-gram of this size within the answer (0 = off)")
    p.add_argument("--no-fallback", dest="fallback", action="store_false",
                   help="keep a steered answer the answer check still finds harmful, instead of refusing")
    p.add_argument("--max-step", type=float, default=None,
                   help="directional only: the largest move, in lengths of the refusal direction (default 1)")
    p.add_argument("--generated-tokens", type=int, default=None,
                   help="directional only: answer tokens steered after the prompt (-1 = all; default 8)")
    p.add_argument("--positions", default=None, choices=["last", "generated", "all"],
                   help="minimal only: which states are checked and steered (default last: the prompt's last token and every answer token)")
    p.add_argument("--hinge-weight", type=float, default=None, help="minimal only: β, weight of the violation hinge (default 1)")
    p.add_argument("--max-steps", type=int, default=None, help="minimal only: optimiser steps per state at most (default 200)")
    p.add_argument("--max-interventions", type=int, default=None, help="minimal only: edited states per answer at most (default 20)")
    p.add_argument("--refusal-text", default=DEFAULT_REFUSAL, help="the answer of refuse mode and of the steering fallback")
    p.add_argument(
        "--generation-threshold",
        type=float,
        default=None,
        help="boundary for generated tokens (default: the polytope's calibrated value; 0 = the prompt boundary)",
    )
    p.add_argument(
        "--span-threshold",
        type=float,
        default=None,
        help="flag a prompt when a token of the user's text reaches this (default: the polytope's calibrated value; inf = off)",
    )


def sources_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sources",
        help="comma-separated built-in sources instead of the default table, 'default' standing for its sources, "
             "e.g. default,wild_wrapped,past_tense (the optional ones); evaluate with the same --sources, "
             "or the splits differ",
    )


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a polytope and evaluate it against baselines")
    model_args(p)
    p.add_argument("--data", help="CSV/JSONL with text,label[,category] (default: the built-in offline sources)")
    sources_arg(p)
    p.add_argument("--layer", type=int, default=22, help="layer L = output of decoder block L (0-based; negative counts from the end)")
    p.add_argument(
        "--facets",
        default="auto",
        help="'categories': one policy facet per unsafe category in the data (named from the taxonomy) plus --free-facets "
             "backstop facets; a number K: K learned (unnamed) facets; 'auto' (default): categories when the unsafe rows have "
             "a category, else 14 learned facets",
    )
    p.add_argument("--free-facets", type=int, default=1,
                   help="with policy facets: backstop facets, for unsafe rows without a category and those their category facet misses")
    p.add_argument(
        "--backstop-weight",
        type=float,
        default=1.0,
        help="with --facets categories: weight of the hinge that lets a free facet catch an unsafe row its category facet misses",
    )
    p.add_argument("--quiet-weight", type=float, default=1.0,
                   help="with policy facets: weight of the term that keeps the backstop below zero where a category facet fires")
    p.add_argument("--detector-weight", type=float, default=0.0,
                   help="with policy facets: train the backstop to fire on every unsafe row (then ranked below firing category facets)")
    p.add_argument(
        "--objective",
        default="default",
        choices=["default", "reference"],
        help="'reference' = the reference code's reductions (docs/method.md §4: summed hinges, count entropy, per-batch reassignment)",
    )
    p.add_argument(
        "--exclusive-weight",
        type=float,
        default=None,
        help="weight of the penalty on non-assigned facets firing on an unsafe row (default 0; 1 with --facets categories)",
    )
    p.add_argument("--feature-dim", type=int, default=4096)
    p.add_argument("--entropy-weight", type=float, default=5.0, help="λ_H, weight of the facet-usage entropy bonus")
    p.add_argument("--encoder", default="relu", choices=["relu", "linear"])
    p.add_argument("--epochs", type=int, default=40, help="passes over the training rows")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--unsafe-weight", type=float, default=2.0, help="w_u, weight of the unsafe hinge (paper: 2)")
    p.add_argument(
        "--entropy",
        default=None,
        choices=["soft", "reassign", "mi", "none"],
        help="facet-usage term (default soft; none with --facets categories); mi = I(sample; facet) = H(mean q) − mean H(q_i)",
    )
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--no-template", action="store_true", help="feed raw text instead of the chat template")
    p.add_argument("--position", default="last+mean", choices=["last", "last+mean"],  # features.POSITIONS (torch-free here)
                   help="what the polytope reads: the prompt's last token, or last token ‖ mean over the request's own tokens")
    p.add_argument(
        "--target-fpr",
        type=float,
        default=0.09,
        help="calibrate the boundary to flag this share of validation safe prompts (0 = keep the trained offsets)",
    )
    p.add_argument("--output", required=True, help="directory to write the polytope to")
    p.add_argument("--steering-part", default="auto", choices=["auto", "reuse", "build", "none"],
                   help="what Steer uses for the new polytope: reuse the shipped steering part when it fits (same model, "
                        "steering layer not after --layer), build one (minutes), auto = reuse else build, none = Steer off")
    p.add_argument("--config", help="train again from a stored training config: training_config.json of an export, or a polytope "
                                    "folder; every training setting comes from it (--model/--device/--data say where and on what)")
    p.add_argument("--no-facet-check", action="store_true",
                   help="skip scoring the facets on the check set (scorecards in facets.json; ~30 s on 2 CPU cores)")
    p.set_defaults(func=cmd_train)


def add_facet_check(sub) -> None:
    p = sub.add_parser("facet-check", help="score every facet on the check set: scorecards into facets.json, the policy table")
    model_args(p)
    polytope_arg(p)
    p.set_defaults(func=cmd_facet_check)


def add_score(sub) -> None:
    p = sub.add_parser("score", help="score texts from a JSONL/CSV file")
    model_args(p)
    polytope_arg(p)
    p.add_argument("--input", required=True)
    p.add_argument("--output", default="-", help="JSONL output path ('-' = stdout)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="ray: spread the rows over Ray workers, one model each, same scores in input order (pip install 'sap-viz[ray]')")
    p.add_argument("--address", default=None,
                   help="with --engine ray: an existing cluster ('auto' on one of its nodes, or ray://HEAD:10001); default: a local Ray")
    p.add_argument("--workers", type=int, default=None, help="with --engine ray: workers to start (default: one per CPU of the cluster)")
    p.set_defaults(func=cmd_score)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="metrics of a polytope (and baselines) on the built-in or a user data set")
    model_args(p)
    polytope_arg(p)
    p.add_argument("--data")
    sources_arg(p)
    p.add_argument("--splits", default="test,ood", help="built-in splits to report (empty: none, e.g. with --external)")
    p.add_argument(
        "--external",
        nargs="+",
        metavar="FILE",
        help="labelled evaluation files (text,label[,kind]) written elsewhere: AUROC, TPR, FPR and per-kind flag rates",
    )
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--output", help="write the metrics as JSON")
    p.set_defaults(func=cmd_eval)


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train a quick polytope per layer and compare validation metrics")
    model_args(p)
    p.add_argument("--data")
    p.add_argument("--layers", help="comma-separated layers (default: all)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--facets", type=int, default=14)
    p.add_argument("--feature-dim", type=int, default=4096)
    p.add_argument("--output")
    p.set_defaults(func=cmd_sweep)


def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate with the polytope hook, unsteered beside steered")
    model_args(p)
    polytope_arg(p)
    p.add_argument("--prompt", required=True)
    steer_args(p, "steer")
    p.add_argument("--json", action="store_true", help="print the structured result")
    p.add_argument("--all-tokens", action="store_true", help="show every prompt token in the table")
    p.set_defaults(func=cmd_generate)


def add_eval_steering(sub) -> None:
    p = sub.add_parser("eval-steering", help="containment / refusal / unchanged-benign rates with steering off and on")
    model_args(p)
    polytope_arg(p)
    steer_args(p, "steer")
    p.add_argument("--n", type=int, default=20, help="prompts per set")
    p.add_argument("--output")
    p.set_defaults(func=cmd_eval_steering)


def add_calibrate_generation(sub) -> None:
    p = sub.add_parser("calibrate-generation", help="set the generated-token boundary from benign validation answers")
    model_args(p)
    polytope_arg(p)
    p.add_argument("--data", help="CSV/JSONL with text,label[,category] (default: the built-in offline sources)")
    p.add_argument("--n", type=int, default=64, help="benign (and unsafe) validation prompts")
    p.add_argument("--target-rate", type=float, default=0.10, help="share of benign answers allowed to trigger")
    p.add_argument("--span-target-rate", type=float, default=0.05,
                   help="share of benign prompts (plain and wrapped) the prompt-span check may flag")
    p.add_argument("--wrapped", type=int, default=64,
                   help="benign validation requests inside training-half jailbreak frames, added to the span calibration (0 = none)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--dry-run", action="store_true", help="print, do not write polytope.json")
    p.set_defaults(func=cmd_calibrate_generation)


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time plain vs monitored vs steered generation (prints JSON)")
    model_args(p)
    polytope_arg(p)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--feature-texts", type=int, default=256, help="prompts for the early-exit vs full-forward timing")
    p.add_argument("--train-rows", type=int, default=4096, help="feature rows for the training timing (0 = skip)")
    p.set_defaults(func=cmd_bench)


def add_train_steering(sub) -> None:
    p = sub.add_parser("train-steering",
                       help="add a steering part (response-aware polytope, refusal direction, answer check) to a polytope")
    model_args(p)
    polytope_arg(p)
    p.add_argument("--layer", type=int, default=16, help="steering layer; must not come after the polytope's own layer")
    p.add_argument("--prompts", type=int, default=240, help="harmful and safe train prompts whose answers are used")
    p.add_argument("--epochs", type=int, default=8)
    p.set_defaults(func=cmd_train_steering)


COMMANDS = (add_train, add_score, add_eval, add_sweep, add_generate, add_eval_steering, add_calibrate_generation, add_bench,
            add_train_steering, add_facet_check, add_export, add_push, add_serve)



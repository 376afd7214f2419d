"""``python -m sap_viz``: train, score, eval, sweep, generate, eval-steering, bench."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from sap_viz.model.prompts import clean_text
from sap_viz.settings import DEFAULT_POLYTOPE
from sap_viz.tables import text_table

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



class CliError(Exception):
    """A user error: printed as one line, exit code 2, no traceback."""


def _model(args: argparse.Namespace):
    from sap_viz.model.loading import ModelConfig, load_model

    return load_model(ModelConfig(name=args.model, dtype=args.dtype, device=args.device, layers_path=args.layers_path))


def _load_artifact(lm, path: str):
    from sap_viz.method.artifact import load_polytope

    art = load_polytope(path, lm.hidden_size, lm.num_layers, lm.fingerprint, strict_fingerprint=False)
    for warning in art.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return art


def _print_table(rows: list[dict], columns: list[str]) -> None:
    print(text_table(rows, columns))


def _dataset(args: argparse.Namespace):
    from sap_viz.data.dataset import DataConfig, build_dataset
    from sap_viz.data.user_files import load_user_file

    if getattr(args, "data", None):
        return load_user_file(args.data, DataConfig(seed=args.seed))
    return build_dataset(DataConfig(seed=args.seed))


def cmd_train(args: argparse.Namespace) -> None:
    from sap_viz.analysis.metrics import METRIC_COLUMNS, metrics_rows
    from sap_viz.data.dataset import dataset_fingerprint, dataset_provenance
    from sap_viz.experiments.pipeline import save_trained, train_and_evaluate
    from sap_viz.method.training import TrainConfig
    from sap_viz.model.features import FeatureConfig

    categories = args.facets.strip().lower() == "categories"
    if not categories and not args.facets.strip().isdigit():
        raise CliError(f"--facets must be a number of facets or 'categories', got {args.facets!r}")
    tcfg = TrainConfig(num_facets=(len(_taxonomy()) + args.free_facets) if categories else int(args.facets),
                       feature_dim=args.feature_dim, encoder=args.encoder, epochs=args.epochs,
                       lr=args.lr, batch_size=args.batch_size, margin=args.margin, unsafe_weight=args.unsafe_weight,
                       seed=args.seed, entropy_mode=args.entropy or ("none" if categories else "soft"),
                       lambda_entropy=args.entropy_weight, objective=args.objective,
                       lambda_exclusive=args.exclusive_weight if args.exclusive_weight is not None else (1.0 if categories else 0.0),
                       facet_mode="categories" if categories else "learned", free_facets=args.free_facets if categories else 0,
                       lambda_backstop=args.backstop_weight if categories and args.free_facets else 0.0)
    tcfg.validate()  # absurd settings fail before the model is loaded
    lm = _model(args)
    df = _dataset(args)
    layer = args.layer if args.layer >= 0 else lm.num_layers + args.layer
    if not 0 <= layer < lm.num_layers:
        raise CliError(f"--layer {args.layer} does not exist: this model has layers 0..{lm.num_layers - 1}")
    fcfg = FeatureConfig(layer=layer, chat_template=not args.no_template, max_tokens=args.max_tokens)
    provenance = {**dataset_provenance(df), "fingerprint": dataset_fingerprint(df)}
    trained = train_and_evaluate(lm, df, fcfg, tcfg, provenance=provenance, target_fpr=args.target_fpr or None)
    path = save_trained(trained, args.output)
    _print_table(metrics_rows(trained.report), METRIC_COLUMNS)
    print(f"saved polytope to {path}")


def _taxonomy() -> tuple[str, ...]:
    from sap_viz.data.taxonomy import TAXONOMY

    return TAXONOMY


def cmd_score(args: argparse.Namespace) -> None:
    from sap_viz.data.file_rows import read_rows
    from sap_viz.method.scoring import score_texts

    rows = read_rows(args.input)  # the one row reader; texts cleaned for the tokenizer
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    viol = score_texts(lm, art, [r["text"] for r in rows], progress=True, batch_size=args.batch_size)
    out = open(args.output, "w", encoding="utf-8") if args.output != "-" else sys.stdout
    try:
        for row, v in zip(rows, viol, strict=True):
            k = int(v.argmax())
            out.write(json.dumps({**row, "score": float(v.max()), "unsafe": bool(v.max() >= 0),
                                  "violations": [round(float(x), 5) for x in v], "top_facet": k,
                                  "top_facet_name": art.facet_name(k)}, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    flagged = int((viol.max(dim=1).values >= 0).sum())
    print(f"scored {len(rows)} texts, {flagged} flagged unsafe → {args.output}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> None:
    from sap_viz.analysis.metrics import METRIC_COLUMNS, metrics_rows
    from sap_viz.experiments.external_eval import kind_rows, load_external
    from sap_viz.experiments.pipeline import evaluate_artifact

    external = [load_external(path) for path in args.external or []]  # a bad file fails before the model loads
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    df = _dataset(args)
    splits = tuple(s for s in args.splits.split(",") if s)
    report = evaluate_artifact(lm, art, df, splits, baselines=not args.no_baselines, external=external)
    _print_table(metrics_rows(report), METRIC_COLUMNS)
    if external:
        print("\nFlag rate per kind of prompt (unsafe kinds: share caught; safe kinds: share wrongly flagged):")
        _print_table(kind_rows(report), ["set", "kind", "method", "n", "flagged"])
    for split, methods in report["splits"].items():
        recall = methods["SaP"].get("recall_by_category")
        if recall and not split.startswith("external:"):  # external sets: per kind, printed above
            print(f"\nSaP recall by category ({split}): " + ", ".join(f"{c} {r:.2f}" for c, r in recall.items()))
    for split, audit in report.get("facet_audit", {}).items():
        mi = audit["mi_category_top_facet"]
        sel = [f"{c}→{s['facet']}" for c, s in audit["selective_by_category"].items() if s["facet"] is not None]
        print(
            f"\nfacets ({split}, {audit['n_unsafe']} unsafe prompts): selective for {audit['n_selective_harm_categories']}/"
            f"{len(audit['harm_categories'])} harm categories ({', '.join(sel) or 'none'}; "
            f"strict {audit['n_selective_harm_categories_strict']}); "
            f"mean facets firing {audit['mean_facets_firing']:.2f}; dead facets {audit['dead_facets'] or 'none'}; "
            f"MI(category; top facet) {mi['bits']:.2f} bits (Miller–Madow {mi['bits_miller_madow']:.2f}) "
            f"of {mi['category_entropy_bits']:.2f}"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {args.output}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from sap_viz.experiments.layer_sweep import layer_sweep

    lm = _model(args)
    df = _dataset(args)
    try:
        layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(lm.num_layers))
    except ValueError:
        raise CliError(f"--layers must be comma-separated integers, got {args.layers!r}") from None
    bad = [n for n in layers if not 0 <= n < lm.num_layers]
    if bad:
        raise CliError(f"--layers {bad} do not exist: this model has layers 0..{lm.num_layers - 1}")
    rows = layer_sweep(lm, df, layers, epochs=args.epochs, num_facets=args.facets, feature_dim=args.feature_dim)
    _print_table(rows, list(rows[0].keys()))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))


def _intervention_args(args: argparse.Namespace):
    from sap_viz.method.generation import GenerationConfig
    from sap_viz.method.polytope_hook import InterventionConfig
    from sap_viz.method.steering import SafeFlowConfig

    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=args.sample, seed=args.seed)
    cfg = InterventionConfig(
        mode=args.mode,
        positions=args.positions,
        max_interventions=args.max_interventions,
        refusal_text=args.refusal_text,
        generation_threshold=args.generation_threshold,
        span_threshold=args.span_threshold,
        flow=SafeFlowConfig(strength=args.strength, hinge_weight=args.hinge_weight, max_steps=args.max_steps),
    )
    return gen, cfg


def cmd_generate(args: argparse.Namespace) -> None:
    from sap_viz.method.generation import compare

    prompt = clean_text(args.prompt)
    if not prompt.strip():
        raise CliError("--prompt must be non-empty text")
    if prompt != args.prompt:
        print("warning: control characters or invalid bytes were removed from the prompt", file=sys.stderr)
    gen, cfg = _intervention_args(args)
    gen.validate()  # absurd settings fail before the model is loaded
    cfg.validate()
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    cmp = compare(lm, art, prompt, gen, cfg)
    if cmp.baseline.truncated:
        print(f"warning: the prompt was cut to {gen.max_prompt_tokens} tokens", file=sys.stderr)
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=2, ensure_ascii=False))
        return
    print(f"prompt: {prompt!r}  (layer {art.layer}, mode {args.mode})")
    print(f"\n── unsteered ──\n{cmp.baseline.text}")
    if args.mode != "monitor":
        print(f"\n── {args.mode} ──\n{cmp.intervened.text}")
        div = cmp.first_divergence
        print(f"\nfirst divergence: {'none (identical)' if div is None else f'generated token {div}'}")
    res = cmp.intervened
    rows = []
    for t in res.tokens:
        if t.violations is None:
            continue
        k = t.top_facet
        rows.append(
            {
                "pos": t.index,
                "part": "prompt" if t.is_prompt else "gen",
                "token": repr(t.text),
                "max_v": t.max_violation,
                "facet": f"{k}:{art.facet_name(k)}",
                "after": max(t.violations_after) if t.steered else None,
                "|Δh|": t.delta_norm if t.steered else None,
                "steps": t.steps if t.steered else None,
                "forced": "yes" if t.forced else "",
            }
        )
    shown = rows if args.all_tokens else [r for r in rows if r["part"] == "gen" or r["pos"] >= res.prompt_len - 8]
    print()
    _print_table(shown, ["pos", "part", "token", "max_v", "facet", "after", "|Δh|", "steps", "forced"])
    print(f"\ninterventions: {res.interventions}, refused: {res.refused}, prompt flagged: {res.flag_reason or False}")


def cmd_eval_steering(args: argparse.Namespace) -> None:
    from sap_viz.experiments.steering_eval import evaluate_steering

    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    gen, cfg = _intervention_args(args)
    rows = evaluate_steering(lm, art, n_per_set=args.n, gen=gen, steer=cfg)
    _print_table(rows, list(rows[0].keys()))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))


def cmd_calibrate_generation(args: argparse.Namespace) -> None:
    from sap_viz.method.calibration import GenerationCalibrationConfig, benign_prompts, calibrate_generation, store_calibration

    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    cfg = GenerationCalibrationConfig(
        n_prompts=args.n,
        target_rate=args.target_rate,
        span_target_rate=args.span_target_rate,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    cfg.validate()
    df = _dataset(args)
    val_unsafe = df[(df["split"] == "val") & (df["label"] == "unsafe")]
    unsafe = val_unsafe.sample(n=min(args.n, len(val_unsafe)), random_state=args.seed)["text"].tolist()
    result = calibrate_generation(lm, art, benign_prompts(df, args.n, args.seed), cfg, unsafe)
    print(json.dumps(result, indent=2))
    if not args.dry_run:
        store_calibration(art, result)
        print(f"stored as generation_calibration in {art.path / 'polytope.json'}")


def cmd_bench(args: argparse.Namespace) -> None:
    from sap_viz.experiments.bench import run_bench

    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    print(
        json.dumps(
            run_bench(
                lm,
                art,
                n_prompts=args.n,
                max_new_tokens=args.max_new_tokens,
                repeats=args.repeats,
                feature_texts=args.feature_texts,
                train_rows=args.train_rows,
            ),
            indent=2,
        )
    )


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a Hugging Face id or a local directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (device_map=auto)")
    p.add_argument("--layers-path", default=None, help="attribute path to the decoder blocks, e.g. model.layers")
    p.add_argument("--seed", type=int, default=42)


def _polytope_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--polytope", default=str(DEFAULT_POLYTOPE), help="polytope directory (default: the shipped one)")


def _steer_args(p: argparse.ArgumentParser, default_mode: str) -> None:
    p.add_argument("--mode", default=default_mode, choices=["monitor", "steer", "refuse"])
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument(
        "--strength", type=float, default=3.0, help="steer until every facet is ≤ −strength (1 = depth of a typical safe prompt)"
    )
    p.add_argument("--hinge-weight", type=float, default=1.0, help="β: weight of the violation hinge in the Safe Flow objective")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--max-interventions", type=int, default=20)
    p.add_argument("--positions", default="last", choices=["last", "generated", "all"])
    p.add_argument("--refusal-text", default="Sorry, I can't answer your request.")
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


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a polytope and evaluate it against baselines")
    _model_args(p)
    p.add_argument("--data", help="CSV/JSONL with text,label[,category] (default: the built-in offline sources)")
    p.add_argument("--layer", type=int, default=20, help="layer L = output of decoder block L (0-based; negative counts from the end)")
    p.add_argument(
        "--facets",
        default="14",
        help="number of facets K, or 'categories': one facet per unsafe category in the data (named from the taxonomy) plus --free-facets",
    )
    p.add_argument("--free-facets", type=int, default=3, help="with --facets categories: extra facets for unsafe rows without a category")
    p.add_argument(
        "--backstop-weight",
        type=float,
        default=1.0,
        help="with --facets categories: weight of the hinge that lets a free facet catch an unsafe row its category facet misses",
    )
    p.add_argument(
        "--objective",
        default="default",
        choices=["default", "reference"],
        help="'reference' = SAP_METHOD.md §3 reductions (summed hinges, λ_f·mean‖f‖₁, count entropy, per-batch reassignment)",
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
    p.add_argument("--epochs", type=int, default=20)
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
    p.add_argument(
        "--target-fpr",
        type=float,
        default=0.09,
        help="calibrate the boundary to flag this share of validation safe prompts (0 = keep the trained offsets)",
    )
    p.add_argument("--output", required=True, help="directory to write the polytope to")
    p.set_defaults(func=cmd_train)


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="score texts from a JSONL/CSV file")
    _model_args(p)
    _polytope_arg(p)
    p.add_argument("--input", required=True)
    p.add_argument("--output", default="-", help="JSONL output path ('-' = stdout)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_score)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="metrics of a polytope (and baselines) on the built-in or a user data set")
    _model_args(p)
    _polytope_arg(p)
    p.add_argument("--data")
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


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train a quick polytope per layer and compare validation metrics")
    _model_args(p)
    p.add_argument("--data")
    p.add_argument("--layers", help="comma-separated layers (default: all)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--facets", type=int, default=14)
    p.add_argument("--feature-dim", type=int, default=4096)
    p.add_argument("--output")
    p.set_defaults(func=cmd_sweep)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate with the polytope hook, unsteered beside steered")
    _model_args(p)
    _polytope_arg(p)
    p.add_argument("--prompt", required=True)
    _steer_args(p, "steer")
    p.add_argument("--json", action="store_true", help="print the structured result")
    p.add_argument("--all-tokens", action="store_true", help="show every prompt token in the table")
    p.set_defaults(func=cmd_generate)


def _add_eval_steering(sub) -> None:
    p = sub.add_parser("eval-steering", help="containment / refusal / unchanged-benign rates with steering off and on")
    _model_args(p)
    _polytope_arg(p)
    _steer_args(p, "steer")
    p.add_argument("--n", type=int, default=20, help="prompts per set")
    p.add_argument("--output")
    p.set_defaults(func=cmd_eval_steering)


def _add_calibrate_generation(sub) -> None:
    p = sub.add_parser("calibrate-generation", help="set the generated-token boundary from benign validation answers")
    _model_args(p)
    _polytope_arg(p)
    p.add_argument("--data", help="CSV/JSONL with text,label[,category] (default: the built-in offline sources)")
    p.add_argument("--n", type=int, default=64, help="benign (and unsafe) validation prompts")
    p.add_argument("--target-rate", type=float, default=0.10, help="share of benign answers allowed to trigger")
    p.add_argument("--span-target-rate", type=float, default=0.05, help="share of benign prompts the prompt-span check may flag")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--dry-run", action="store_true", help="print, do not write polytope.json")
    p.set_defaults(func=cmd_calibrate_generation)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time plain vs monitored vs steered generation (prints JSON)")
    _model_args(p)
    _polytope_arg(p)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--feature-texts", type=int, default=256, help="prompts for the early-exit vs full-forward timing")
    p.add_argument("--train-rows", type=int, default=4096, help="feature rows for the training timing (0 = skip)")
    p.set_defaults(func=cmd_bench)


COMMANDS = (_add_train, _add_score, _add_eval, _add_sweep, _add_generate, _add_eval_steering, _add_calibrate_generation, _add_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sap_viz", description="Safety Polytope: train, score, steer.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from sap_viz.data.package_files import DataSourceError
    from sap_viz.method.artifact import PolytopeFileError

    try:
        args.func(args)
    except (CliError, PolytopeFileError, DataSourceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0

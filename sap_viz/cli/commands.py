"""The CLI's commands: each ``cmd_*`` takes parsed arguments, loads what it needs, prints or writes results.

The parser (``arguments.py``) names these functions as ``"commands:cmd_x"``; this module, and torch with it, loads
only when a command runs, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from sap_viz.analysis import feature_map
from sap_viz.analysis.account import comparison_json, generation_account
from sap_viz.analysis.app_memory import run_app_workload
from sap_viz.analysis.bench import run_bench
from sap_viz.analysis.detection_report import (
    DETECTION_COLUMNS,
    DetectionReportConfig,
    detection_report,
    detection_rows,
)
from sap_viz.analysis.external_eval import kind_rows, load_external
from sap_viz.analysis.facet_check import policy_rows
from sap_viz.analysis.layer_sweep import layer_sweep
from sap_viz.analysis.measure import labels_from_blind, measure_attribution, measure_detection, measure_facets, measure_steering
from sap_viz.analysis.metrics import METRIC_COLUMNS, metrics_rows
from sap_viz.analysis.steering_eval import evaluate_steering
from sap_viz.cli.hub_commands import train_from_config
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.file_rows import read_rows
from sap_viz.data.sources import DEFAULT_SOURCES
from sap_viz.data.user_files import load_user_file
from sap_viz.errors import UserError
from sap_viz.hub.remote import resolve_polytope
from sap_viz.jsonl import dumps_jsonl, read_jsonl, write_jsonl
from sap_viz.method.artifact import PolytopeArtifact, load_for_model, load_polytope, save_steering
from sap_viz.method.calibration import (
    GenerationCalibrationConfig,
    benign_prompts,
    calibrate_generation,
    store_calibration,
    wrapped_benign_prompts,
)
from sap_viz.method.configs import ANSWER_LABELS as LABELS
from sap_viz.method.configs import MEASURED_PARTS, SteeringMeasureConfig, VerdictCalibrationConfig
from sap_viz.method.generation import compare
from sap_viz.method.measured_file import MEASURED_FILE, measured_parts, measured_status
from sap_viz.method.ray_scoring import RayScoringConfig, score_texts_ray
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings, SettingsError, check_for_polytope
from sap_viz.method.scoring import PromptScores, answer_verdicts, prompt_scores
from sap_viz.method.training import TrainConfig
from sap_viz.method.training_record import built_in_data, training_provenance
from sap_viz.method.verdict_calibration import calibrate_verdict, store_verdict_calibration
from sap_viz.model.features import FeatureConfig
from sap_viz.model.loading import ModelConfig, load_model
from sap_viz.model.prompts import clean_text
from sap_viz.recipe.answer_check_fit import AnswerCheckConfig, fit_answer_check_for
from sap_viz.recipe.pipeline import (
    check_category_facets,
    evaluate_artifact,
    resolve_facet_mode,
    save_trained,
    train_and_evaluate,
    with_facet_mode,
)
from sap_viz.recipe.steering_part import SteeringPartConfig, attach_steering_part, build_steering_part
from sap_viz.settings import DEFAULT_POLYTOPE, is_shipped
from sap_viz.tables import text_table


def _model(args: argparse.Namespace):
    return load_model(ModelConfig(name=args.model, dtype=args.dtype, device=args.device, layers_path=args.layers_path))


def _require_folder(path: str) -> None:
    """Commands that write into the polytope's folder refuse anything else, before the model is loaded: a Hub id, and a
    shipped polytope (read-only: it lives inside the installed package, which an upgrade replaces)."""
    if not Path(path).is_dir():
        raise UserError(f"{path} is not a polytope folder on disk, and this command writes into the folder (for a Hub polytope: "
                       f"sap-viz export {path} FOLDER, then --polytope FOLDER)")
    if is_shipped(path):
        raise UserError(f"{path} ships with sap-viz and is read-only, and this command writes into the folder: "
                       f"sap-viz export {path} FOLDER, then --polytope FOLDER", param="--polytope")


def _load_artifact(lm, path: str, writes: bool = False):
    """The polytope at ``path`` (a folder or a Hub id); ``writes``: the command writes into it, so it must be a folder."""
    if writes:
        _require_folder(path)
    art = load_for_model(resolve_polytope(path), lm)
    for warning in art.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return art


def _print_table(rows: list[dict], columns: list[str]) -> None:
    print(text_table(rows, columns))


def data_config(args: argparse.Namespace):
    """The DataConfig of ``--seed`` and ``--sources`` ("default" stands for the default sources)."""

    names = getattr(args, "sources", None)
    if not names:
        return DataConfig(seed=args.seed)
    if getattr(args, "data", None):
        raise UserError("--sources chooses built-in sources; it cannot be combined with --data")
    chosen: list[str] = []
    for name in (n.strip() for n in names.split(",")):
        chosen += list(DEFAULT_SOURCES) if name == "default" else [name] if name else []
    if not chosen:
        raise UserError(f"--sources names no source: {names!r}")
    try:
        return DataConfig(sources=tuple(dict.fromkeys(chosen)), seed=args.seed)
    except ValueError as exc:
        raise UserError(f"--sources: {exc}") from None


def _dataset(args: argparse.Namespace):
    cfg = data_config(args)
    if getattr(args, "data", None):
        return load_user_file(args.data, cfg)
    return build_dataset(cfg)


def cmd_train(args: argparse.Namespace) -> None:
    if args.config:  # every training setting from a stored config (sap_viz/recipe/retrain.py)

        return train_from_config(args, _model)
    mode = args.facets.strip().lower()
    if mode not in ("auto", "categories") and not mode.isdigit():
        raise UserError(f"--facets must be 'auto', 'categories' or a number of facets, got {args.facets!r}")
    learned_k = int(mode) if mode.isdigit() else TrainConfig().num_facets
    base = TrainConfig(num_facets=learned_k, feature_dim=args.feature_dim, encoder=args.encoder,
                       epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, margin=args.margin,
                       unsafe_weight=args.unsafe_weight, seed=args.seed, lambda_entropy=args.entropy_weight, objective=args.objective)

    def settings(facet_mode: str) -> TrainConfig:
        return with_facet_mode(base, facet_mode, args.free_facets, args.backstop_weight, args.entropy, args.exclusive_weight,
                               args.quiet_weight, args.detector_weight)

    for candidate in ("categories", "learned") if mode == "auto" else ("learned" if mode.isdigit() else mode,):
        settings(candidate).validate()  # absurd settings fail before the model is loaded
    data_config(args)  # and so do unknown --sources
    lm = _model(args)
    df = _dataset(args)
    facet_mode, notes = resolve_facet_mode(df, "learned" if mode.isdigit() else mode)
    tcfg = settings(facet_mode)
    if facet_mode == "categories":
        notes += check_category_facets(df)  # a table without categories fails here, before any feature is extracted
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    layer = args.layer if args.layer >= 0 else lm.num_layers + args.layer
    if not 0 <= layer < lm.num_layers:
        raise UserError(f"--layer {args.layer} does not exist: this model has layers 0..{lm.num_layers - 1}")
    fcfg = FeatureConfig(layer=layer, chat_template=not args.no_template, max_tokens=args.max_tokens, position=args.position)
    provenance = training_provenance(df, data_config(args), args.data)
    trained = train_and_evaluate(lm, df, fcfg, tcfg, provenance=provenance, target_fpr=args.target_fpr or None,
                                 check_facets=not args.no_facet_check)
    path = save_trained(trained, args.output)
    print(f"note: {attach_steering_part(lm, path, args.steering_part)}", file=sys.stderr)
    _print_table(metrics_rows(trained.report), METRIC_COLUMNS)
    if "facet_check" in trained.artifact.meta:
        _print_policy_table(trained.artifact.meta["facet_check"])
    print(f"saved polytope to {path}")


def _print_policy_table(report: dict) -> None:
    print(f"policy facets on the check set ({report['n']} prompts, evaluation only):")
    _print_table(policy_rows(report), ["measure", "value", "target", "met"])


def cmd_facet_check(args: argparse.Namespace) -> None:
    """``sap-viz facet-check`` is ``sap-viz measure --part facets`` (its older name)."""
    args.part, args.show = ["facets"], False
    cmd_measure(args)


def _print_measured(art: PolytopeArtifact) -> None:
    parts = measured_parts(art)
    for name, status in measured_status(art).items():
        print(f"{name}: {status}")
        part = parts.get(name)
        if part is None:
            continue
        if part.sentence:
            print(f"  {part.sentence}")
        if part.targets:
            _print_table([{"target": t.target, "measured": t.measured, "needed": t.needed, "met": "yes" if t.met else "no"}
                          for t in part.targets], ["target", "measured", "needed", "met"])


def _add_labels(labels: str | None, blind: str) -> None:
    """Append a labelled to-label file's rows to the labels file. A row already there keeps its label (a different one
    is refused, so a label is never silently changed) and gains the reading it lacked."""
    if not labels:
        raise UserError("--add-labels needs --labels, the file the rows go into", param="--labels")
    new = labels_from_blind(blind)
    old = read_jsonl(labels) if Path(labels).is_file() else []
    have = {(r["prompt"], r["answer"]): r for r in old}
    clash = [r for r in new if (r["prompt"], r["answer"]) in have and (
        have[(r["prompt"], r["answer"])]["label"] != r["label"]
        or have[(r["prompt"], r["answer"])].get("reading") not in (None, r.get("reading")))]
    if clash:
        raise UserError(f"{len(clash)} rows of {blind} label or read an answer {labels} already has otherwise, e.g. "
                        f"{clash[0]['prompt'][:60]!r}", param="--add-labels")
    added = 0
    for r in new:
        known = have.get((r["prompt"], r["answer"]))
        if known is None:
            old.append(r)
            have[(r["prompt"], r["answer"])] = r
            added += 1
        elif r.get("reading"):
            known["reading"] = r["reading"]
    write_jsonl(labels, old)
    print(f"added {added} labelled answers to {labels}, readings to {len(new) - added} labelled before ({len(old)} in all)",
          file=sys.stderr)


def cmd_measure(args: argparse.Namespace) -> None:
    """Measured outcomes into the polytope's ``measured.json`` (``analysis/measure.py``), part by part."""
    parts = list(args.part or MEASURED_PARTS)
    if args.show:
        art = load_polytope(resolve_polytope(args.polytope))
        _print_measured(art)
        return
    _require_folder(args.polytope)
    if {"steering", "answer_check"} & set(parts):
        if not args.labels:
            raise UserError("measuring steering needs --labels, a JSONL of hand-labelled answers (it may start empty: the "
                            "answers to label are then written to --to-label)", param="--labels")
        SteeringMeasureConfig(per_set=args.per_set, seed=args.seed).validate()
        if args.add_labels:
            _add_labels(args.labels, args.add_labels)
    if "detection" in parts:
        if not 0 <= args.bootstrap <= 100_000:
            raise UserError(f"--bootstrap must be between 0 and 100000, got {args.bootstrap}", param="--bootstrap")
        control = VerdictCalibrationConfig(control_rows=args.control_rows, seed=args.seed)
        control.validate()
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    command = "sap-viz " + " ".join(sys.argv[1:]) if sys.argv[1:] else "sap-viz measure"
    steered = False
    for part in parts:
        print(f"measuring {part} …", file=sys.stderr)
        if part == "detection":
            measure_detection(lm, art, DetectionReportConfig(control=control, bootstrap=args.bootstrap, seed=args.seed), command)
        elif part == "facets":
            measure_facets(lm, art, command)
        elif part == "attribution":
            measure_attribution(lm, art, command)
        elif part in ("steering", "answer_check"):
            if steered:
                continue  # one generation measures both
            steered = True
            done = measure_steering(lm, art, args.labels, args.to_label, command,
                                    SteeringMeasureConfig(per_set=args.per_set, seed=args.seed),
                                    tuple(p for p in parts if p in ("steering", "answer_check")))
            if isinstance(done, int):
                print(f"steering and answer check not stored: {done} answers have no hand label yet. They are in "
                      f"{args.to_label}, shuffled and without their side: fill each row's label ({', '.join(LABELS)}; "
                      f"docs/outcome_rubric.md), then run this command again with --add-labels {args.to_label}", file=sys.stderr)
    print(f"stored in {Path(args.polytope) / MEASURED_FILE}", file=sys.stderr)
    _print_measured(art)


def cmd_precompute_map(args: argparse.Namespace) -> None:
    """The app's feature map, computed here once and stored beside the polytope (``map.safetensors`` + ``map.json``):
    the app, an export and a Hub download then open it without extracting features or fitting UMAP."""
    _require_folder(args.polytope)
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    if not args.force and feature_map.read_polytope_map(art, "stored") is not None:
        print(f"{args.polytope} already holds the map of these weights and training data (--force recomputes it)")
        return
    with tqdm(total=100, desc="feature map", unit="%") as bar:
        def progress(frac: float, msg: str) -> None:
            bar.set_postfix_str(msg[:60])
            bar.update(max(0, round(100 * frac) - bar.n))

        view = feature_map.build_view(lm, art, progress=progress, use_stored=False, own_data_only=True)
        bar.set_postfix_str("fitting UMAP (once, a minute or more on 2 cores)")
        feature_map.ensure_umap(view)
        bar.update(100 - bar.n)
    written = feature_map.write_polytope_map(view, art, args.polytope)
    print(f"stored the map of {len(view.texts)} training prompts in {written.parent} ({view.note})")


def cmd_score(args: argparse.Namespace) -> None:
    """Each row's prompt verdict (``method/verdict.py``, the one every interface uses) with the facet values behind it; and
    for a row with a ``response``, the answer side too (the answer check on the pair, as while generating)."""
    rows = read_rows(args.input)  # the one row reader; texts cleaned for the tokenizer
    texts = [r["text"] for r in rows]
    responses = _responses(rows, args.input)
    if args.engine == "ray":  # the same scores, spread over Ray workers (sap_viz/method/ray_scoring.py)
        if any(responses):
            raise UserError("responses are scored with the local engine only; drop --engine ray", param="--engine")
        art, scores = _score_with_ray(args, texts)
    else:
        lm = _model(args)
        art = _load_artifact(lm, args.polytope)
        scores = prompt_scores(lm, art, texts, progress=True, batch_size=args.batch_size)
    verdicts = scores.verdicts(art.verdict_boundary)
    pairs = [i for i, r in enumerate(responses) if r is not None]
    answers = dict(zip(pairs, answer_verdicts(lm, art, [texts[i] for i in pairs], [responses[i] for i in pairs],
                                              args.batch_size), strict=True)) if pairs else {}
    out = open(args.output, "w", encoding="utf-8") if args.output != "-" else sys.stdout
    try:
        for i, (row, v, verdict) in enumerate(zip(rows, scores.last, verdicts, strict=True)):
            k = int(v.argmax())
            record = {**row, "score": round(verdict.margin, 5), "unsafe": verdict.flagged, "verdict": verdict.to_json(),
                      "violations": [round(float(x), 5) for x in v], "top_facet": k, "top_facet_name": art.facet_name(k)}
            if i in answers:
                answer = answers[i]
                by = [side for side, hit in (("prompt", verdict.flagged), ("answer", answer.flagged)) if hit]
                record |= {"unsafe": bool(by), "flagged_by": by, "answer_check": answer.to_json()}
            out.write(dumps_jsonl([record]))
    finally:
        if out is not sys.stdout:
            out.close()
    flagged = sum(v.flagged for v in verdicts)
    borderline = sum(v.borderline for v in verdicts)
    by_answer = f", {sum(a.flagged for a in answers.values())} of {len(answers)} responses flagged by the answer check" \
        if answers else ""
    print(f"scored {len(rows)} texts, {flagged} prompts flagged unsafe, {borderline} borderline{by_answer} "
          f"(boundary: {art.verdict_boundary.source}) → {args.output}", file=sys.stderr)


def _responses(rows: list[dict], path: str) -> list[str | None]:
    """Each row's ``response`` (None when the row has none or it is blank); a response that is not text is refused."""
    out = []
    for n, row in enumerate(rows, 1):
        value = row.get("response")
        if value is not None and not isinstance(value, str):
            raise UserError(f"{Path(path).name}: row {n}: 'response' must be text, got {type(value).__name__}", param="input")
        out.append(clean_text(value) if isinstance(value, str) and value.strip() else None)
    return out


def cmd_eval(args: argparse.Namespace) -> None:
    external = [load_external(path) for path in args.external or []]  # a bad file fails before the model loads
    data_config(args)  # and so do unknown --sources
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
    lm = _model(args)
    df = _dataset(args)
    try:
        layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(lm.num_layers))
    except ValueError:
        raise UserError(f"--layers must be comma-separated integers, got {args.layers!r}") from None
    bad = [n for n in layers if not 0 <= n < lm.num_layers]
    if bad:
        raise UserError(f"--layers {bad} do not exist: this model has layers 0..{lm.num_layers - 1}")
    rows = layer_sweep(lm, df, layers, epochs=args.epochs, num_facets=args.facets, feature_dim=args.feature_dim)
    _print_table(rows, list(rows[0].keys()))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))


def _request_settings(args: argparse.Namespace):
    """The flags as one ``RequestSettings`` (the app and the server build the same dataclass)."""

    names = ("mode", "steering", "strength", "depth", "max_new_tokens", "sample", "temperature", "top_p", "anti_repeat", "fallback",
             "refusal_text", "generation_threshold", "span_threshold", "max_step", "generated_tokens", "opener", "positions",
             "hinge_weight", "max_steps", "max_interventions")
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    values["seed"] = args.seed
    try:
        settings = RequestSettings.from_request(values)
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    for notice in settings.notices:
        print(f"warning: {notice}", file=sys.stderr)
    return settings


def _intervention_args(args: argparse.Namespace, artifact=None, settings=None):
    """(GenerationConfig, InterventionConfig) from the flags; with the polytope, also refuse knobs its steering kind ignores."""

    settings = settings or _request_settings(args)
    if artifact is not None:
        try:
            check_for_polytope(settings, artifact.steering is not None)
        except SettingsError as exc:
            raise UserError(str(exc)) from None
    return build_configs(settings)


def cmd_generate(args: argparse.Namespace) -> None:
    prompt = clean_text(args.prompt)
    if not prompt.strip():
        raise UserError("--prompt must be non-empty text")
    if prompt != args.prompt:
        print("warning: control characters or invalid bytes were removed from the prompt", file=sys.stderr)
    settings = _request_settings(args)  # absurd settings fail before the model is loaded
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    gen, cfg = _intervention_args(args, art, settings)
    cmp = compare(lm, art, prompt, gen, cfg)
    if cmp.baseline.truncated:
        print(f"warning: the prompt was cut to {gen.max_prompt_tokens} tokens", file=sys.stderr)
    if args.json:
        print(json.dumps(comparison_json(cmp, art.facets), indent=2, ensure_ascii=False))
        return
    account = generation_account(cmp.intervened, art.facets)  # the same account the app and the server render
    print(f"prompt: {prompt!r}  (layer {art.layer}, mode {args.mode})")
    print(f"\n── unsteered ──\n{cmp.baseline.text}")
    if args.mode != "monitor":
        print(f"\n── {args.mode} ──\n{cmp.intervened.text}")
        div = cmp.first_divergence
        print(f"\nfirst divergence: {'none (identical)' if div is None else f'generated token {div}'}")
    res = cmp.intervened
    rows = [{"pos": r["index"], "part": "gen" if r["part"] == "answer" else "prompt", "token": repr(r["text"]),
             "max_v": r["max_violation"], "facet": f"{r['top_facet']}:{r['top_facet_name']}", "after": r["after"],
             "|Δh|": r["delta_norm"] if r["steered"] else None, "steps": r["steps"] if r["steered"] else None,
             "written by": "fallback" if r["forced"] else "opener" if r["opener"] else ""}
            for r in res.token_rows() if r["violations"] is not None]
    shown = rows if args.all_tokens else [r for r in rows if r["part"] == "gen" or r["pos"] >= res.prompt_len - 8]
    print()
    _print_table(shown, ["pos", "part", "token", "max_v", "facet", "after", "|Δh|", "steps", "written by"])
    print(f"\n{account.sentence}\n{account.outcome}")
    check = account.answer_check
    if check is not None:
        fired = check.get("fired_at")
        where = (f", fired at answer token {fired + 1}" + ("; the answer was stopped there" if check.get("stopped") else "")
                 if check["flagged"] and isinstance(fired, int) else "")
        print(f"answer check: {check['words']} ({check['score']:+.2f}, harmful at ≥ {check['threshold']:+.2f}{where})")
    print(f"flagged by: {' and '.join(account.flagged_by) or 'neither the prompt nor the answer'}")


def cmd_train_steering(args: argparse.Namespace) -> None:
    cfg = SteeringPartConfig(layer=args.layer, prompts_per_label=args.prompts, epochs=args.epochs, seed=args.seed,
                             target=args.target)
    if args.prompts < 8 or args.epochs < 1:
        raise UserError("--prompts must be ≥ 8 and --epochs ≥ 1")
    _require_folder(args.polytope)
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    if not 0 <= args.layer <= art.layer:
        raise UserError(f"--layer must be between 0 and the polytope's layer {art.layer}: the prompt is flagged there first")
    poly, direction, meta = build_steering_part(lm, cfg)
    check, layers = fit_answer_check_for(lm, AnswerCheckConfig(max_layer=args.layer))
    target = save_steering(args.polytope, poly, direction, meta, check)
    val = check.meta["validation"]
    print(f"wrote {target} (layer {args.layer}; |direction| {meta['metrics']['direction_norm']}, "
          f"mean |h| {meta['metrics']['mean_state_norm']}; answer check at layer {check.layer}, validation recall "
          f"{val['val_recall']:.2f} at {val['val_false_alarms']:.0%} false alarms)")


def cmd_eval_steering(args: argparse.Namespace) -> None:
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    gen, cfg = _intervention_args(args, art)
    rows = evaluate_steering(lm, art, n_per_set=args.per_set, gen=gen, steer=cfg)
    _print_table(rows, list(rows[0].keys()))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))


def cmd_calibrate_generation(args: argparse.Namespace) -> None:
    data_config(args)  # unknown --sources fail before the model is loaded
    if not args.dry_run:
        _require_folder(args.polytope)  # it writes polytope.json
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    cfg = GenerationCalibrationConfig(
        n_prompts=args.prompts,
        target_rate=args.target_rate,
        span_target_rate=args.span_target_rate,
        max_new_tokens=args.max_new_tokens,
        n_wrapped=args.wrapped,
        seed=args.seed,
    )
    cfg.validate()
    own = built_in_data(art.meta)  # the polytope's own table, so its validation rows are ones it never trained on
    df = build_dataset(own) if own is not None and not (args.sources or args.data) else _dataset(args)
    val_unsafe = df[(df["split"] == "val") & (df["label"] == "unsafe")]
    unsafe = val_unsafe.sample(n=min(cfg.n_prompts, len(val_unsafe)), random_state=args.seed)["text"].tolist()
    wrapped = wrapped_benign_prompts(df, cfg.n_wrapped, args.seed)
    result = calibrate_generation(lm, art, benign_prompts(df, cfg.n_prompts, args.seed), cfg, unsafe, wrapped)
    print(json.dumps(result, indent=2))
    if not args.dry_run:
        store_calibration(art, result)
        print(f"stored as generation_calibration in {art.path / 'polytope.json'}")


def cmd_calibrate_verdict(args: argparse.Namespace) -> None:
    cfg = VerdictCalibrationConfig(control_rows=args.control_rows, seed=args.seed, target_fpr=args.target_fpr,
                                   band_fprs=tuple(args.band))
    cfg.validate()  # before the model loads
    lm = _model(args)
    art = _load_artifact(lm, args.polytope, writes=not args.dry_run)
    record = calibrate_verdict(lm, art, cfg)
    print(json.dumps(record, indent=2))
    if not args.dry_run:
        store_verdict_calibration(art.path, record)
        print(f"stored as verdict_calibration in {art.path / 'polytope.json'}")


def cmd_eval_detection(args: argparse.Namespace) -> None:
    if not 0 <= args.bootstrap <= 100_000:
        raise UserError(f"--bootstrap must be between 0 and 100000, got {args.bootstrap}", param="--bootstrap")
    control = VerdictCalibrationConfig(control_rows=args.control_rows, seed=args.seed)
    control.validate()
    lm = _model(args)
    art = _load_artifact(lm, args.polytope)
    report = detection_report(lm, art, DetectionReportConfig(control=control, bootstrap=args.bootstrap, seed=args.seed))
    rows = detection_rows(report)
    _print_table(rows, DETECTION_COLUMNS)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    if args.csv:
        pd.DataFrame(rows, columns=DETECTION_COLUMNS).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> None:
    report = {}
    if args.app_memory != "skip":  # first, while this process holds no model
        report["app_memory"] = run_app_workload(None if args.polytope == str(DEFAULT_POLYTOPE) else args.polytope, args.app_home)
    if args.app_memory != "only":
        lm = _model(args)
        art = _load_artifact(lm, args.polytope)
        report = {**run_bench(lm, art, n_prompts=args.generation_prompts, max_new_tokens=args.max_new_tokens,
                              repeats=args.repeats, feature_texts=args.feature_texts, train_rows=args.train_rows), **report}
    print(json.dumps(report, indent=2))


def _score_with_ray(args, texts: list[str]) -> tuple[PolytopeArtifact, PromptScores]:
    """``sap-viz score --engine ray``: the polytope (for facet names) and the verdict's readings, with a timing line on stderr."""
    cfg = RayScoringConfig(address=args.address, workers=args.workers, batch_size=args.batch_size)
    cfg.validate()
    model = ModelConfig(name=args.model, dtype=args.dtype, device=args.device, layers_path=args.layers_path)
    folder = resolve_polytope(args.polytope)
    art = load_polytope(folder)
    result = score_texts_ray(texts, model, folder, cfg, art)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ray: {len(result.rows_by_worker)} workers ({', '.join(f'{w} {n} rows' for w, n in sorted(result.rows_by_worker.items()))}); "
          f"start {result.startup_seconds:.1f} s, scoring {result.seconds:.1f} s = {result.prompts_per_second:.1f} prompts/s",
          file=sys.stderr)
    return art, PromptScores(result.violations, result.span_peaks, [False] * len(texts))

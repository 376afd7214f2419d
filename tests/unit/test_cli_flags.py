"""The CLI's flags: every one has help, every default is the library's, train's defaults are the shipped recipe,
renamed flags still work with a warning. Fast: the parser only, and one cmd_train stopped before any model work."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from sap_viz.analysis.app_memory import DEFAULT_APP_MEMORY
from sap_viz.analysis.bench import run_bench
from sap_viz.analysis.detection_report import DetectionReportConfig
from sap_viz.analysis.layer_sweep import layer_sweep
from sap_viz.analysis.steering_eval import evaluate_steering
from sap_viz.cli import build_parser, command_function, main
from sap_viz.cli.arguments import RenamedFlag
from sap_viz.cli.serve_command import LOOPBACK
from sap_viz.data.dataset import DataConfig
from sap_viz.method.configs import (
    POLICY_FACETS,
    TARGET_FPR,
    TO_LABEL_FILE,
    GenerationCalibrationConfig,
    SteeringMeasureConfig,
    SteeringPartConfig,
    TrainConfig,
    VerdictCalibrationConfig,
)
from sap_viz.method.request_settings import DEFAULT_STRENGTH, RequestSettings
from sap_viz.model.configs import FeatureConfig, ModelConfig
from sap_viz.settings import DEFAULT_POLYTOPE

SHIPPED = DEFAULT_POLYTOPE / "polytope.json"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def test_every_flag_of_every_command_has_help():
    parsers = subcommands()
    assert len(parsers) > 10  # the walk sees the subcommands
    empty = [f"{name or 'sap-viz'} {'/'.join(a.option_strings) or a.dest}"
             for name, p in parsers.items() for a in options(p) if not (a.help or "").strip()]
    assert empty == []
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert all((c.help or "").strip() for c in sub._choices_actions)  # and every command


def _defaults(fn) -> dict:
    return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not inspect.Parameter.empty}


def library_defaults() -> dict[str, dict]:
    """What each command's defaults must be, read from the library (dataclasses, else the called function's keywords)."""
    m, f, t, r = ModelConfig(), FeatureConfig(), TrainConfig(), RequestSettings()
    cal, part, pf = GenerationCalibrationConfig(), SteeringPartConfig(), POLICY_FACETS
    vc = VerdictCalibrationConfig()
    model = {"model": m.name, "dtype": m.dtype, "device": m.device, "layers_path": m.layers_path}
    steer = {"mode": r.mode, "steering": r.steering, "max_new_tokens": r.max_new_tokens, "sample": r.sample,
             "temperature": r.temperature, "top_p": r.top_p, "anti_repeat": r.anti_repeat, "fallback": r.fallback,
             "refusal_text": r.refusal_text, "generation_threshold": r.generation_threshold, "span_threshold": r.span_threshold,
             "strength": None}  # None: RequestSettings' own default (DEFAULT_STRENGTH), so --depth can still stand in for it
    sweep, bench, steer_eval = _defaults(layer_sweep), _defaults(run_bench), _defaults(evaluate_steering)
    polytope = {"polytope": str(DEFAULT_POLYTOPE)}
    return {
        "train": {**model, "seed": t.seed, "layer": f.layer, "max_tokens": f.max_tokens, "position": f.position,
                  "no_template": not f.chat_template, "feature_dim": t.feature_dim, "encoder": t.encoder, "epochs": t.epochs,
                  "lr": t.lr, "batch_size": t.batch_size, "margin": t.margin, "unsafe_weight": t.unsafe_weight,
                  "entropy_weight": t.lambda_entropy, "objective": t.objective, "free_facets": pf.free_facets,
                  "backstop_weight": pf.backstop_weight, "quiet_weight": pf.quiet_weight, "detector_weight": pf.detector_weight,
                  "target_fpr": TARGET_FPR, "facets": "auto", "steering_part": "auto"},
        "score": {**model, **polytope, "batch_size": f.batch_size, "output": "-", "engine": "local", "seed": t.seed},
        "eval": {**model, **polytope, "seed": DataConfig().seed, "splits": "test,ood"},
        "sweep": {**model, "seed": DataConfig().seed, "epochs": sweep["epochs"], "facets": sweep["num_facets"],
                  "feature_dim": sweep["feature_dim"]},
        "generate": {**model, **polytope, **steer, "seed": r.seed},
        "eval-steering": {**model, **polytope, **steer, "seed": r.seed, "per_set": steer_eval["n_per_set"]},
        "calibrate-generation": {**model, **polytope, "seed": cal.seed, "prompts": cal.n_prompts, "target_rate": cal.target_rate,
                                 "span_target_rate": cal.span_target_rate, "wrapped": cal.n_wrapped,
                                 "max_new_tokens": cal.max_new_tokens},
        "bench": {**model, **polytope, "seed": t.seed, "generation_prompts": bench["n_prompts"],
                  "max_new_tokens": bench["max_new_tokens"], "repeats": bench["repeats"], "feature_texts": bench["feature_texts"],
                  "train_rows": bench["train_rows"], "app_memory": DEFAULT_APP_MEMORY},
        "train-steering": {**model, **polytope, "seed": part.seed, "layer": part.layer, "prompts": part.prompts_per_label,
                           "epochs": part.epochs, "target": part.target},
        "facet-check": {**model, **polytope, "seed": t.seed},
        "measure": {**model, **polytope, "seed": vc.seed, "control_rows": vc.control_rows, "bootstrap": DetectionReportConfig().bootstrap,
                    "to_label": TO_LABEL_FILE, "per_set": SteeringMeasureConfig().per_set},
        "serve": {**model, **polytope, "mode": r.mode, "host": LOOPBACK, "port": 8000, "max_queue": 8},
        "app": {"host": None, "port": None, "polytope": None, "polytopes_dir": None, "home": None},  # None: app.py's environment
    }


def test_every_default_is_the_librarys():
    parsers, expected = subcommands(), library_defaults()
    assert DataConfig().seed == TrainConfig().seed  # train's one --seed seeds the split and the training
    assert RequestSettings().strength == DEFAULT_STRENGTH
    for name, want in expected.items():
        actions = {a.dest: a for a in options(parsers[name]) if not isinstance(a, RenamedFlag)}  # an old name defaults to nothing
        got = {dest: actions[dest].default for dest in want if dest in actions}
        assert got == want, name
        # a flag with a default of its own must be listed above (None / False / required ones mean "not given")
        unchecked = [dest for dest, a in actions.items() if dest not in want and a.default not in (None, False, argparse.SUPPRESS)
                     and not a.required]
        assert unchecked == [], name


def test_policy_facet_defaults_are_what_learned_mode_turns_off():
    """TrainConfig alone is learned facets (nothing free); the policy-facet defaults are what `--facets categories` adds."""
    from sap_viz.recipe.pipeline import with_facet_mode

    learned = with_facet_mode(TrainConfig(), "learned")
    assert (learned.free_facets, learned.lambda_backstop, learned.lambda_backstop_quiet) == (0, 0.0, 0.0) == (
        TrainConfig().free_facets, TrainConfig().lambda_backstop, TrainConfig().lambda_backstop_quiet)
    cat = with_facet_mode(TrainConfig(), "categories")
    assert (cat.free_facets, cat.lambda_backstop, cat.lambda_backstop_quiet, cat.lambda_backstop_all, cat.lambda_exclusive,
            cat.entropy_mode) == tuple(asdict(POLICY_FACETS).values())


class _Stop(Exception):
    pass


def test_train_without_options_trains_the_shipped_recipe(monkeypatch, tmp_path):
    """`sap-viz train --output DIR` hands the pipeline exactly the settings, data and calibration the shipped polytope records."""
    import sap_viz.cli.commands as commands
    import sap_viz.recipe.pipeline as pipeline

    meta = json.loads(SHIPPED.read_text())
    seen = {}

    def fake_train(lm, df, fcfg, tcfg, provenance=None, target_fpr=None, **kw):
        # K is set from the data's categories inside the pipeline, as it is when training for real
        tcfg = pipeline._facet_layout(df[df["split"] == "train"], tcfg)[0]
        seen.update(fcfg=fcfg, tcfg=tcfg, provenance=provenance, target_fpr=target_fpr)
        raise _Stop

    monkeypatch.setattr(commands, "_model", lambda args: SimpleNamespace(num_layers=meta["model"]["num_layers"]))
    monkeypatch.setattr(commands, "train_and_evaluate", fake_train)
    args = build_parser().parse_args(["train", "--output", str(tmp_path / "p")])
    with pytest.raises(_Stop):
        command_function(args)(args)
    fcfg, tcfg = seen["fcfg"], seen["tcfg"]
    assert (fcfg.layer, fcfg.position, fcfg.chat_template, fcfg.max_tokens) == (
        meta["layer"], meta["position"], meta["chat_template"], meta["max_tokens"])
    assert asdict(tcfg) == meta["train_config"]  # every training setting, facet mode included
    assert seen["target_fpr"] == meta["metrics"]["calibration"]["target_fpr"]
    assert seen["provenance"]["fingerprint"] == meta["data"]["fingerprint"]  # the same table, row for row
    assert seen["provenance"]["config"] == meta["data"]["config"]  # and the data recipe it records


@pytest.mark.parametrize("command, new, dest", [
    ("eval-steering", "--per-set", "per_set"),
    ("calibrate-generation", "--prompts", "prompts"),
    ("bench", "--generation-prompts", "generation_prompts"),
])
def test_n_is_a_renamed_flag_that_still_works_with_a_warning(command, new, dest, capsys):
    parser = build_parser()
    default = getattr(parser.parse_args([command]), dest)
    assert capsys.readouterr().err == ""
    assert getattr(parser.parse_args([command, "--n", "5"]), dest) == 5 != default
    assert f"--n is now {new}" in capsys.readouterr().err
    assert getattr(parser.parse_args([command, new, "6"]), dest) == 6
    assert capsys.readouterr().err == ""


def test_calibrate_generation_takes_sources_as_train_does(monkeypatch, capsys):
    import sap_viz.cli.commands as commands

    def no_model(args):
        raise AssertionError("the model must not load for a bad --sources")

    monkeypatch.setattr(commands, "_model", no_model)
    args = build_parser().parse_args(["calibrate-generation", "--sources", "default,past_tense"])
    assert commands.data_config(args).sources[-1] == "past_tense"
    assert main(["calibrate-generation", "--sources", "nowhere", "--dry-run"]) == 2
    assert "--sources: unknown sources ['nowhere']" in capsys.readouterr().err
    assert main(["calibrate-generation", "--sources", "default", "--data", "x.csv", "--dry-run"]) == 2
    assert "cannot be combined with --data" in capsys.readouterr().err


def test_the_parser_imports_no_torch():
    """Defaults come from torch-free config modules, so `--help` answers at once."""
    code = "import sys, sap_viz.cli; sap_viz.cli.build_parser(); print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(DEFAULT_POLYTOPE.parents[2]))
    assert out.stdout.strip() == "[]"


def test_app_command_sets_what_app_py_reads(monkeypatch):
    """`sap-viz app` starts what `python app.py` starts: its options become the environment variables app.py reads."""
    from sap_viz.cli import app_command

    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--port", "7861", "--polytopes-dir", "/srv/p", "--home", "/data/sv"])
    assert args.func == "app_command:cmd_app"
    env: dict[str, str] = {}
    app_command.apply_options(args, env)
    assert env == {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861", "SAP_VIZ_POLYTOPES_DIR": "/srv/p",
                   "SAP_VIZ_HOME": "/data/sv"}
    env.clear()
    app_command.apply_options(build_parser().parse_args(["app"]), env)
    assert env == {}  # nothing given: app.py's own defaults
    started = []
    monkeypatch.setattr(app_command, "create", lambda: started.append("created") or SimpleNamespace(launch=lambda **kw: started.append(kw)))
    assert main(["app", "--port", "0"]) == 2 and started == []  # a bad port stops before the model loads
    monkeypatch.setattr(app_command, "ensure_installed", lambda: started.append("checked"))
    monkeypatch.setattr(app_command, "apply_options", lambda args: None)  # keep this process's environment
    assert main(["app"]) == 0
    assert started[:2] == ["checked", "created"] and started[2]["max_file_size"].endswith("mb")

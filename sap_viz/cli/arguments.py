"""The CLI's arguments: one function per command, sharing the model, polytope and steering options.

Every default is read from the library's config dataclasses (``model/configs.py``, ``method/configs.py``,
``method/request_settings.py``), never repeated as a number here, so ``sap-viz train`` with no options
trains what the library trains by default: the shipped polytope's recipe. Those modules are torch-free,
so ``--help`` still answers at once. ``tests/unit/test_cli_flags.py`` checks every flag's help and default.
"""

from __future__ import annotations

import argparse
import sys

from sap_viz.analysis.app_memory import APP_MEMORY_CHOICES, DEFAULT_APP_MEMORY
from sap_viz.method.configs import (
    ANSWER_LABELS,
    BOOTSTRAP,
    MEASURED_PARTS,
    POLICY_FACETS,
    STEERING_TARGETS,
    TARGET_FPR,
    TO_LABEL_FILE,
    GenerationCalibrationConfig,
    SteeringMeasureConfig,
    SteeringPartConfig,
    TrainConfig,
    VerdictCalibrationConfig,
)
from sap_viz.method.request_settings import MODES, STEERINGS, RequestSettings, help_text
from sap_viz.method.request_settings import POSITIONS as POSITIONS_STEER
from sap_viz.model.configs import POSITIONS, FeatureConfig, ModelConfig
from sap_viz.serve import API_KEY_ENV, LOOPBACK
from sap_viz.settings import DEFAULT_POLYTOPE

MODEL, FEATURES, TRAIN, REQUEST = ModelConfig(), FeatureConfig(), TrainConfig(), RequestSettings()
CALIBRATION, STEERING_PART = GenerationCalibrationConfig(), SteeringPartConfig()
DTYPES = ("float32", "bfloat16", "float16", "auto")
#: The seed's meaning differs per command; these say what it seeds there.
SPLIT_SEED = (TRAIN.seed, "seed of the data split (use the polytope's training seed, or the splits differ)")
UNUSED_SEED = (TRAIN.seed, "not used by this command (accepted so one set of model options works for every command)")
SAMPLING_SEED = (REQUEST.seed, "sampling seed (with --sample)")


class RenamedFlag(argparse.Action):
    """An old flag name, kept for one release: it sets the new flag and prints a warning that names it."""

    def __init__(self, option_strings, dest, new_name: str, **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is now {self.new_name} (the old name works for one release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def renamed(p: argparse.ArgumentParser, old: str, new: str, type=int) -> None:
    """Accept ``old`` for ``new`` (whose option must already be added) with a warning, for one release."""
    dest = new.lstrip("-").replace("-", "_")
    p.add_argument(old, dest=dest, type=type, action=RenamedFlag, new_name=new,
                   help=f"old name of {new} (works for one release, with a warning)")


def model_args(p: argparse.ArgumentParser, seed: tuple[int, str] = UNUSED_SEED) -> None:
    """The model options of every command; ``seed``: the --seed default and what it seeds in this command."""
    p.add_argument("--model", default=MODEL.name, help="'default' (embedded SmolLM2-135M), a Hugging Face id or a local directory")
    p.add_argument("--dtype", default=MODEL.dtype, choices=DTYPES,
                   help=f"weights' dtype (default {MODEL.dtype}; auto = the checkpoint's own)")
    p.add_argument("--device", default=MODEL.device, help=f"cpu, cuda, cuda:N or auto (device_map=auto; default {MODEL.device})")
    p.add_argument("--layers-path", default=MODEL.layers_path,
                   help="attribute path to the decoder blocks, e.g. model.layers (default: found by the model's family)")
    default, meaning = seed
    p.add_argument("--seed", type=int, default=default, help=f"{meaning} (default {default})")


def polytope_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--polytope", default=str(DEFAULT_POLYTOPE),
                   help="polytope directory, or a Hugging Face Hub repo id owner/name[@revision] (default: the shipped one)")


def polytope_command(sub, name: str, help: str, seed: tuple[int, str] = UNUSED_SEED) -> argparse.ArgumentParser:
    """A command that reads a polytope: its parser with the model options and --polytope, in that order for every such command."""
    p = sub.add_parser(name, help=help)
    model_args(p, seed)
    polytope_arg(p)
    return p


def steer_args(p: argparse.ArgumentParser) -> None:
    """The generation settings, by the names, defaults and help of ``method/request_settings.RequestSettings`` (the app and
    server read the same fields)."""
    p.add_argument("--mode", default=REQUEST.mode, choices=MODES, help=help_text("mode"))
    p.add_argument("--max-new-tokens", type=int, default=REQUEST.max_new_tokens, help=help_text("max_new_tokens"))
    p.add_argument("--sample", action="store_true", help=help_text("sample", False))
    p.add_argument("--temperature", type=float, default=REQUEST.temperature, help=help_text("temperature"))
    p.add_argument("--top-p", type=float, default=REQUEST.top_p, help=help_text("top_p"))
    p.add_argument("--steering", default=REQUEST.steering, choices=STEERINGS, help=help_text("steering"))
    # None: not given, so the old --depth may still set it (RequestSettings.from_request fills the default)
    p.add_argument("--strength", type=float, default=None, help=help_text("strength"))
    p.add_argument("--depth", type=float, default=None, help="old name of --strength (works for one release, with a warning)")
    p.add_argument("--anti-repeat", type=int, default=REQUEST.anti_repeat, help=help_text("anti_repeat"))
    p.add_argument("--no-fallback", dest="fallback", action="store_false",
                   help="keep a steered answer the answer check still finds harmful, instead of refusing")
    p.add_argument("--max-step", type=float, default=None, help=help_text("max_step"))
    p.add_argument("--generated-tokens", type=int, default=None, help=help_text("generated_tokens"))
    p.add_argument("--no-opener", dest="opener", action="store_const", const=False, default=None,
                   help="directional only: no refusal opener and no early end; the refusal direction alone")
    p.add_argument("--positions", default=None, choices=list(POSITIONS_STEER), help=help_text("positions"))
    p.add_argument("--hinge-weight", type=float, default=None, help=help_text("hinge_weight"))
    p.add_argument("--max-steps", type=int, default=None, help=help_text("max_steps"))
    p.add_argument("--max-interventions", type=int, default=None, help=help_text("max_interventions"))
    p.add_argument("--refusal-text", default=REQUEST.refusal_text, help=help_text("refusal_text", False))
    p.add_argument("--generation-threshold", type=float, default=REQUEST.generation_threshold,
                   help=help_text("generation_threshold"))
    p.add_argument("--span-threshold", type=float, default=REQUEST.span_threshold, help=help_text("span_threshold"))


def data_source_args(p: argparse.ArgumentParser, sources: bool = True) -> None:
    """What to train or evaluate on: a user's file (--data) or the built-in sources (--sources), one wording everywhere."""
    p.add_argument("--data", help="CSV/JSONL with text,label[,category] (default: the built-in offline sources)")
    if sources:
        p.add_argument(
            "--sources",
            help="comma-separated built-in sources instead of the default table, 'default' standing for its sources, "
                 "e.g. default,wild_wrapped,past_tense (the optional ones); evaluate with the same --sources, "
                 "or the splits differ",
        )


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a polytope and evaluate it against baselines (the defaults rebuild the shipped one)")
    model_args(p, (TRAIN.seed, "seed of the data split and of training"))
    data_source_args(p)
    p.add_argument("--layer", type=int, default=FEATURES.layer,
                   help=f"layer L = output of decoder block L (0-based; negative counts from the end; default {FEATURES.layer})")
    p.add_argument(
        "--facets",
        default="auto",
        help="'categories': one policy facet per unsafe category in the data (named from the taxonomy) plus --free-facets "
             "backstop facets; a number K: K learned (unnamed) facets; 'auto' (default): categories when the unsafe rows have "
             f"a category, else {TRAIN.num_facets} learned facets",
    )
    p.add_argument("--free-facets", type=int, default=POLICY_FACETS.free_facets,
                   help="with policy facets: backstop facets, for unsafe rows without a category and those their category facet misses "
                        f"(default {POLICY_FACETS.free_facets})")
    p.add_argument("--backstop-weight", type=float, default=POLICY_FACETS.backstop_weight,
                   help="with policy facets: weight of the hinge that lets a free facet catch an unsafe row its category facet misses "
                        f"(default {POLICY_FACETS.backstop_weight:g})")
    p.add_argument("--quiet-weight", type=float, default=POLICY_FACETS.quiet_weight,
                   help="with policy facets: weight of the term that keeps the backstop below zero where a category facet fires "
                        f"(default {POLICY_FACETS.quiet_weight:g})")
    p.add_argument("--detector-weight", type=float, default=POLICY_FACETS.detector_weight,
                   help="with policy facets: train the backstop to fire on every unsafe row (then ranked below firing category facets; "
                        f"default {POLICY_FACETS.detector_weight:g})")
    p.add_argument("--objective", default=TRAIN.objective, choices=["default", "reference"],
                   help="'reference' = the paper's reference-code reductions (summed hinges, λ_f·mean‖f‖₁, count entropy, per-batch "
                        f"reassignment; docs/method.md); default {TRAIN.objective}")
    p.add_argument("--exclusive-weight", type=float, default=None,
                   help="weight of the penalty on non-assigned facets firing on an unsafe row "
                        f"(default {TRAIN.lambda_exclusive:g}; {POLICY_FACETS.exclusive_weight:g} with policy facets)")
    p.add_argument("--feature-dim", type=int, default=TRAIN.feature_dim,
                   help=f"F, concept features of the encoder (default {TRAIN.feature_dim}; ignored by --encoder linear)")
    p.add_argument("--entropy-weight", type=float, default=TRAIN.lambda_entropy,
                   help=f"λ_H, weight of the facet-usage entropy bonus (default {TRAIN.lambda_entropy:g})")
    p.add_argument("--encoder", default=TRAIN.encoder, choices=["relu", "linear"],
                   help="relu: sparse concept features before the facets; linear: facets on the states themselves "
                        f"(default {TRAIN.encoder})")
    p.add_argument("--epochs", type=int, default=TRAIN.epochs, help=f"passes over the training rows (default {TRAIN.epochs})")
    p.add_argument("--lr", type=float, default=TRAIN.lr, help=f"Adam learning rate (default {TRAIN.lr:g})")
    p.add_argument("--batch-size", type=int, default=TRAIN.batch_size, help=f"training rows per step (default {TRAIN.batch_size})")
    p.add_argument("--margin", type=float, default=TRAIN.margin,
                   help=f"m, the hinge margin: safe rows below −m on every facet, unsafe rows above +m on one (default {TRAIN.margin:g})")
    p.add_argument("--unsafe-weight", type=float, default=TRAIN.unsafe_weight,
                   help=f"w_u, weight of the unsafe hinge (paper: 2; default {TRAIN.unsafe_weight:g})")
    p.add_argument("--entropy", default=None, choices=["soft", "reassign", "mi", "none"],
                   help=f"facet-usage term (default {TRAIN.entropy_mode}; {POLICY_FACETS.entropy_mode} with policy facets); "
                        "mi = I(sample; facet) = H(mean q) − mean H(q_i)")
    p.add_argument("--max-tokens", type=int, default=FEATURES.max_tokens,
                   help=f"prompts are cut to this many tokens before the states are read (default {FEATURES.max_tokens})")
    p.add_argument("--no-template", action="store_true", help="feed raw text instead of the chat template (default: the chat template)")
    p.add_argument("--position", default=FEATURES.position, choices=POSITIONS,
                   help="what the polytope reads: the prompt's last token, or last token ‖ mean over the request's own tokens "
                        f"(default {FEATURES.position})")
    p.add_argument("--target-fpr", type=float, default=TARGET_FPR,
                   help="calibrate the boundary to flag this share of validation safe prompts "
                        f"(0 = keep the trained offsets; default {TARGET_FPR:g})")
    p.add_argument("--output", required=True, help="directory to write the polytope to")
    p.add_argument("--steering-part", default="auto", choices=["auto", "reuse", "build", "none"],
                   help="what Steer uses for the new polytope: reuse the shipped steering part when it fits (same model, "
                        "steering layer not after --layer), build one (minutes), auto = reuse else build, none = Steer off")
    p.add_argument("--config", help="train again from a stored training config: a polytope folder (its polytope.json) or the "
                                    "training_config.json of an export; every training setting comes from it "
                                    "(--model/--device/--data say where and on what)")
    p.add_argument("--no-facet-check", action="store_true",
                   help="skip scoring the facets on the check set (scorecards in facets.json; ~30 s on 2 CPU cores)")
    p.set_defaults(func="commands:cmd_train")


def add_facet_check(sub) -> None:
    p = polytope_command(sub, "facet-check", help="score every facet on the check set: scorecards into facets.json, the policy "
                                                  "table into measured.json (the same as sap-viz measure --part facets)")
    p.set_defaults(func="commands:cmd_facet_check")


def add_precompute_map(sub) -> None:
    p = polytope_command(sub, "precompute-map",
                         help="compute the feature map (PCA and UMAP of the training features) once and store it in the "
                              "polytope's folder, so the app opens it at once instead of building it (minutes on 2 CPU cores)")
    p.add_argument("--force", action="store_true", help="recompute even if the folder holds a current map")
    p.set_defaults(func="commands:cmd_precompute_map")


def add_score(sub) -> None:
    p = polytope_command(sub, "score", help="score texts from a JSONL/CSV file (a row with a 'response': the answer check "
                                            "judges the pair too)")
    p.add_argument("--input", required=True, help="JSONL or CSV file with a 'text' field or column (other fields are copied to the output)")
    p.add_argument("--output", default="-", help="JSONL output path ('-' = stdout)")
    p.add_argument("--batch-size", type=int, default=FEATURES.batch_size,
                   help=f"prompts per forward pass (default {FEATURES.batch_size}; the scores do not depend on it)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="ray: spread the rows over Ray workers, one model each, same scores in input order (pip install 'sap-viz[ray]')")
    p.add_argument("--address", default=None,
                   help="with --engine ray: an existing cluster ('auto' on one of its nodes, or ray://HEAD:10001); default: a local Ray")
    p.add_argument("--workers", type=int, default=None, help="with --engine ray: workers to start (default: one per CPU of the cluster)")
    p.set_defaults(func="commands:cmd_score")


def add_eval(sub) -> None:
    p = polytope_command(sub, "eval", help="metrics of a polytope (and baselines) on the built-in or a user data set", seed=SPLIT_SEED)
    data_source_args(p)
    p.add_argument("--splits", default="test,ood", help="built-in splits to report (empty: none, e.g. with --external)")
    p.add_argument(
        "--external",
        nargs="+",
        metavar="FILE",
        help="labelled evaluation files (text,label[,kind]) written elsewhere: AUROC, TPR, FPR and per-kind flag rates",
    )
    p.add_argument("--no-baselines", action="store_true", help="skip the baselines (logistic probe and MLP, fitted on the train split)")
    p.add_argument("--output", help="write the metrics as JSON")
    p.set_defaults(func="commands:cmd_eval")


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train a quick polytope per layer and compare validation metrics")
    model_args(p, SPLIT_SEED)
    data_source_args(p, sources=False)
    p.add_argument("--layers", help="comma-separated layers (default: all)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training rows per layer (default 10: a quick polytope)")
    p.add_argument("--facets", type=int, default=TRAIN.num_facets, help=f"learned facets K per layer (default {TRAIN.num_facets})")
    p.add_argument("--feature-dim", type=int, default=TRAIN.feature_dim, help=f"F, concept features (default {TRAIN.feature_dim})")
    p.add_argument("--output", help="write the per-layer rows as JSON")
    p.set_defaults(func="commands:cmd_sweep")


def add_generate(sub) -> None:
    p = polytope_command(sub, "generate", help="generate with the polytope hook, unsteered beside steered", seed=SAMPLING_SEED)
    p.add_argument("--prompt", required=True, help="the user's message (sent through the chat template)")
    steer_args(p)
    p.add_argument("--json", action="store_true", help="print the structured result")
    p.add_argument("--all-tokens", action="store_true", help="show every prompt token in the table")
    p.set_defaults(func="commands:cmd_generate")


def add_eval_steering(sub) -> None:
    p = polytope_command(sub, "eval-steering", help="containment / refusal / unchanged-benign rates with steering off and on",
                         seed=SAMPLING_SEED)
    steer_args(p)
    p.add_argument("--per-set", type=int, default=20, help="prompts drawn from each evaluation set (default 20)")
    renamed(p, "--n", "--per-set")
    p.add_argument("--output", help="write the rows as JSON")
    p.set_defaults(func="commands:cmd_eval_steering")


def add_calibrate_generation(sub) -> None:
    p = polytope_command(sub, "calibrate-generation", help="set the generated-token boundary from benign validation answers",
                         seed=(CALIBRATION.seed, "seed of the data split and of the prompt samples (use the polytope's training seed)"))
    data_source_args(p)
    p.add_argument("--prompts", type=int, default=CALIBRATION.n_prompts,
                   help="benign validation prompts whose answers set the boundary, and as many unsafe ones reported beside "
                        f"(default {CALIBRATION.n_prompts})")
    renamed(p, "--n", "--prompts")
    p.add_argument("--target-rate", type=float, default=CALIBRATION.target_rate,
                   help=f"share of benign answers allowed to trigger (default {CALIBRATION.target_rate:g})")
    p.add_argument("--span-target-rate", type=float, default=CALIBRATION.span_target_rate,
                   help="share of benign prompts (plain and wrapped) the prompt-span check may flag "
                        f"(default {CALIBRATION.span_target_rate:g})")
    p.add_argument("--wrapped", type=int, default=CALIBRATION.n_wrapped,
                   help="benign validation requests inside training-half jailbreak frames, added to the span calibration "
                        f"(0 = none; default {CALIBRATION.n_wrapped})")
    p.add_argument("--max-new-tokens", type=int, default=CALIBRATION.max_new_tokens,
                   help=f"length of each benign answer in tokens (default {CALIBRATION.max_new_tokens})")
    p.add_argument("--dry-run", action="store_true", help="print, do not write polytope.json")
    p.set_defaults(func="commands:cmd_calibrate_generation")


def add_calibrate_verdict(sub) -> None:
    verdict = VerdictCalibrationConfig()
    p = polytope_command(sub, "calibrate-verdict",
                         help="set the prompt verdict's boundary on held-out ordinary prompts (ShareGPT) at a false-positive rate",
                         seed=(verdict.seed, "seed of the control-set sample"))
    p.add_argument("--control-rows", type=int, default=verdict.control_rows,
                   help=f"held-out ShareGPT first turns in the control set (default {verdict.control_rows})")
    p.add_argument("--target-fpr", type=float, default=verdict.target_fpr,
                   help=f"share of the control set the boundary flags (default {verdict.target_fpr:g})")
    p.add_argument("--band", type=float, nargs=2, default=verdict.band_fprs, metavar=("HIGH_FPR", "LOW_FPR"),
                   help="the borderline band: between the boundaries that would flag these shares "
                        f"(default {verdict.band_fprs[0]:g} {verdict.band_fprs[1]:g})")
    p.add_argument("--dry-run", action="store_true", help="print, do not write polytope.json")
    p.set_defaults(func="commands:cmd_calibrate_verdict")


def add_eval_detection(sub) -> None:
    verdict = VerdictCalibrationConfig()
    p = polytope_command(sub, "eval-detection",
                         help="the verdict beside a logistic probe, an MLP and a detection-only polytope on every evaluation set "
                              "(AUROC with a paired bootstrap interval, TPR at 1 %% and 5 %% FPR, flagged at the boundary)",
                         seed=(verdict.seed, "seed of the control-set sample and of the bootstrap"))
    p.add_argument("--control-rows", type=int, default=verdict.control_rows,
                   help=f"held-out ShareGPT rows the baselines' boundaries are set on (default {verdict.control_rows})")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP,
                   help=f"paired bootstrap resamples for the AUROC intervals (default {BOOTSTRAP})")
    p.add_argument("--output", help="write the report as JSON here")
    p.add_argument("--csv", help="write the table as CSV here")
    p.set_defaults(func="commands:cmd_eval_detection")


def add_measure(sub) -> None:
    verdict = VerdictCalibrationConfig()
    p = polytope_command(sub, "measure",
                         help="measure what the polytope does on sets it never saw (detection, facet scorecards, word "
                              "attribution, steered answers by hand labels) and store it in its measured.json, the one file "
                              "the app, the model card and the README read measured figures from",
                         seed=(verdict.seed, "seed of the control-set sample, the bootstrap and the steering sets' draw"))
    p.add_argument("--part", nargs="+", choices=MEASURED_PARTS, default=None,
                   help="which parts to measure (default: all; steering needs --labels)")
    p.add_argument("--show", action="store_true", help="print what is measured and its targets, without loading the model")
    p.add_argument("--control-rows", type=int, default=verdict.control_rows,
                   help=f"detection: held-out ShareGPT rows the baselines' boundaries are set on (default {verdict.control_rows})")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help=f"detection: paired bootstrap resamples (default {BOOTSTRAP})")
    p.add_argument("--labels", help="steering: JSONL of hand-labelled answers (prompt, answer, label: "
                                    f"{', '.join(ANSWER_LABELS)}; docs/outcome_rubric.md)")
    p.add_argument("--to-label", default=TO_LABEL_FILE,
                   help="steering: where answers still without a label are written, shuffled, without their side "
                        f"(default {TO_LABEL_FILE})")
    p.add_argument("--add-labels", help="steering: append the labelled rows of a to-label file to --labels first")
    p.add_argument("--per-set", type=int, default=SteeringMeasureConfig.per_set,
                   help=f"steering: requests per set, two harmful and two benign sets (default {SteeringMeasureConfig.per_set})")
    p.set_defaults(func="commands:cmd_measure")


def add_bench(sub) -> None:
    p = polytope_command(sub, "bench", help="time plain vs monitored vs steered generation (prints JSON)")
    p.add_argument("--generation-prompts", type=int, default=8, help="prompts generated in each timing (default 8)")
    renamed(p, "--n", "--generation-prompts")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer length of each timed generation (default 32)")
    p.add_argument("--repeats", type=int, default=3, help="runs per setting; the report gives their median time (default 3)")
    p.add_argument("--feature-texts", type=int, default=256, help="prompts for the early-exit vs full-forward timing (default 256)")
    p.add_argument("--train-rows", type=int, default=4096, help="feature rows for the training timing (0 = skip; default 4096)")
    p.add_argument("--app-memory", choices=APP_MEMORY_CHOICES, default=DEFAULT_APP_MEMORY,
                   help="the app's peak memory over a fixed workload (start, worked example, one generation, the feature "
                        "map), measured in a subprocess before the timings; only: nothing else (default run)")
    p.add_argument("--app-home", help="the app's data folder for --app-memory (default: a fresh temporary one, so the "
                                      "workload is a first start; a folder from an earlier run gives a warm start)")
    p.set_defaults(func="commands:cmd_bench")


def add_train_steering(sub) -> None:
    p = polytope_command(sub, "train-steering",
                         help="add a steering part (response-aware polytope, refusal direction, answer check) to a polytope",
                         seed=(STEERING_PART.seed, "seed of the steering part's training"))
    p.add_argument("--layer", type=int, default=STEERING_PART.layer,
                   help=f"steering layer; must not come after the polytope's own layer (default {STEERING_PART.layer})")
    p.add_argument("--prompts", type=int, default=STEERING_PART.prompts_per_label,
                   help=f"harmful and safe train prompts whose answers are used, each (default {STEERING_PART.prompts_per_label})")
    p.add_argument("--epochs", type=int, default=STEERING_PART.epochs,
                   help=f"passes over the steering part's training states (default {STEERING_PART.epochs})")
    p.add_argument("--target", choices=STEERING_TARGETS, default=STEERING_PART.target,
                   help="what the steering direction points at: own (the model's own refusals), ours (built-in refusals), "
                        f"others (UncensorBench's refusals) or safe (its answers to safe prompts) (default {STEERING_PART.target})")
    p.set_defaults(func="commands:cmd_train_steering")


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write a polytope as a folder ready for the Hugging Face Hub (model card, training config)")
    p.add_argument("polytope", help="polytope directory or Hub repo id (owner/name[@revision])")
    p.add_argument("folder", help="where to write the exported folder (new or empty)")
    p.add_argument("--repo-id", help="the Hub repo it will be pushed to, named in the card's usage lines")
    p.add_argument("--overwrite", action="store_true", help="replace a previous export in FOLDER")
    p.set_defaults(func="hub_commands:cmd_export")


def add_push(sub) -> None:
    p = sub.add_parser("push", help="upload an exported folder to a Hub repo (needs HF_TOKEN or `hf auth login`, and a network)")
    p.add_argument("folder", help="a folder written by `sap-viz export`")
    p.add_argument("repo_id", help="owner/name on the Hugging Face Hub (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(func="hub_commands:cmd_push")


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible server: /v1/chat/completions with the polytope monitoring and steering")
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a Hugging Face id or a local directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"],
                   help="weights' dtype (default float32; auto = the checkpoint's own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (device_map=auto)")
    p.add_argument("--layers-path", default=None, help="attribute path to the decoder blocks, e.g. model.layers")
    p.add_argument("--polytope", default=str(DEFAULT_POLYTOPE),
                   help="polytope directory, or a Hugging Face Hub repo id owner/name[@revision] (default: the shipped one)")
    p.add_argument("--host", default=LOOPBACK,
                   help=f"address to listen on; anything but loopback needs {API_KEY_ENV} (default {LOOPBACK})")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000)")
    p.add_argument("--served-model-name", help="the model id clients send (default: the polytope's folder name or Hub id)")
    p.add_argument("--mode", default=REQUEST.mode, choices=MODES,
                   help=f"what a request without sap.mode gets: {help_text('mode')}")
    p.add_argument("--max-tokens", type=int, default=None,
                   help=f"answer length when a request sets no max_tokens (default {REQUEST.max_new_tokens}, the request "
                        "setting's, within the limit SAP_VIZ_MAX_NEW_TOKENS)")
    p.add_argument("--max-queue", type=int, default=8, help="requests that may wait behind the one generating; more get 429")
    p.set_defaults(func="serve_command:cmd_serve")


def add_app(sub) -> None:
    """The Gradio app, as ``python app.py`` starts it; each option sets the environment variable app.py reads (none given:
    app.py's defaults), so the two starts cannot drift apart."""
    p = sub.add_parser("app", help="the Gradio app (what `python app.py` starts) on http://127.0.0.1:7860")
    p.add_argument("--host", help="address to listen on (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default: GRADIO_SERVER_PORT, else 7860)")
    p.add_argument("--polytope", help="start polytope directory (default: SAP_VIZ_POLYTOPE, else the owner's last choice or the "
                                      "shipped one)")
    p.add_argument("--polytopes-dir", help="folder for the owner's polytopes (default: SAP_VIZ_POLYTOPES_DIR, else polytopes/ in "
                                           "the data folder)")
    p.add_argument("--home", help="the data folder everything written at run time goes into (default: SAP_VIZ_HOME, else the "
                                  "platform's user data folder)")
    p.set_defaults(func="app_command:cmd_app")


COMMANDS = (add_train, add_score, add_eval, add_sweep, add_generate, add_eval_steering, add_calibrate_generation,
            add_calibrate_verdict, add_eval_detection, add_measure, add_bench, add_train_steering, add_facet_check, add_precompute_map,
            add_export, add_push, add_serve, add_app)



"""The CLI's Hub commands: ``export``, ``push`` and ``train --config`` (the parser lives in ``cli/arguments.py``)."""

from __future__ import annotations

import argparse
import sys

from sap_viz.analysis.metrics import METRIC_COLUMNS, metrics_rows
from sap_viz.cli.arguments import add_train
from sap_viz.errors import UserError
from sap_viz.hub.export import export_polytope
from sap_viz.hub.remote import push_folder, resolve_polytope
from sap_viz.recipe.pipeline import save_trained
from sap_viz.recipe.retrain import read_recipe, train_from_recipe
from sap_viz.recipe.steering_part import attach_steering_part
from sap_viz.tables import text_table

#: What ``train --config`` still takes from the command line: where and on what to run, where to write.
CONFIG_FLAGS = {"config", "output", "model", "dtype", "device", "layers_path", "data", "no_facet_check", "steering_part", "func", "command",
                "verbose"}


def cmd_export(args: argparse.Namespace) -> None:
    folder = export_polytope(resolve_polytope(args.polytope), args.folder, repo_id=args.repo_id, overwrite=args.overwrite)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    print(f"exported to {folder}: {', '.join(files)}")
    print(f"upload it with: sap-viz push {folder} {args.repo_id or 'OWNER/NAME'}")


def cmd_push(args: argparse.Namespace) -> None:
    url = push_folder(args.folder, args.repo_id, private=args.private)
    print(f"pushed {args.folder} to {url}")
    print(f"load it with: sap-viz score --polytope {args.repo_id} --input prompts.jsonl")


def _set_flags(args: argparse.Namespace) -> list[str]:
    """Training flags the user set besides --config (they would be ignored, so they are refused)."""

    parser = argparse.ArgumentParser()
    add_train(parser.add_subparsers(dest="command"))
    defaults = vars(parser.parse_args(["train", "--output", "-"]))
    return sorted(f"--{key.replace('_', '-')}" for key, value in defaults.items()
                  if key not in CONFIG_FLAGS and getattr(args, key, value) != value)


def train_from_config(args: argparse.Namespace, load_model) -> None:
    """``sap-viz train --config FILE``: every training setting from the file; --model/--device say where to run, --data on
    what (a user file), --steering-part and --no-facet-check what to add after training, as for ``sap-viz train``."""

    extra = _set_flags(args)
    if extra:
        raise UserError(f"{', '.join(extra)} cannot be combined with --config: the config sets every training setting "
                       "(edit a copy of it to change one)")
    recipe = read_recipe(args.config)
    if args.model == "default" and recipe.model != "default":
        args.model = recipe.model
    lm = load_model(args)
    trained = train_from_recipe(lm, recipe, args.data, check_facets=not args.no_facet_check,
                                note=lambda line: print(f"note: {line}", file=sys.stderr))
    path = save_trained(trained, args.output)
    print(f"note: {attach_steering_part(lm, path, args.steering_part)}", file=sys.stderr)  # as `sap-viz train` does
    print(text_table(metrics_rows(trained.report), METRIC_COLUMNS))
    print(f"saved polytope to {path} (trained from {args.config})")

"""The Train tab trains what ``sap-viz train`` trains (issue 30): the form starts from the CLI's defaults, which rebuild
the shipped polytope's recipe (the app's fewer epochs and unticked held-out source aside, both named), and a polytope
trained and saved in the app records how its table was assembled (``data.config``) exactly as the CLI records it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from sap_viz.app_state.train_settings import APP_EPOCHS, APP_SOURCES, data_config, form_defaults, train_configs
from sap_viz.app_state.workbench import Workbench
from sap_viz.cli import commands
from sap_viz.cli.arguments import add_train
from sap_viz.data.dataset import DataConfig, dataset_fingerprint
from sap_viz.data.user_files import load_user_file
from sap_viz.method.training_record import data_recipe
from sap_viz.settings import DEFAULT_POLYTOPE, Limits
from sap_viz.ui.tab_train import TrainHandlers
from tests.unit.helpers import labelled_csv


def cli_train_args(*argv: str) -> argparse.Namespace:
    """``sap-viz train`` as the CLI parses it."""
    parser = argparse.ArgumentParser()
    add_train(parser.add_subparsers())
    return parser.parse_args(["train", "--output", "unused", *argv])


def no_progress(*args, **kwargs) -> None:
    return None


def test_the_form_starts_from_the_clis_defaults_and_rebuilds_the_shipped_recipe():
    args = cli_train_args()
    form = form_defaults(num_layers=30, limits=Limits())  # no active polytope: the defaults alone
    assert (form.layer, form.position, form.facet_mode, form.feature_dim, form.free_facets, form.backstop_weight,
            form.target_fpr) == (args.layer, args.position, args.facets, args.feature_dim, args.free_facets, args.backstop_weight,
                                 args.target_fpr)
    assert form.epochs == APP_EPOCHS < args.epochs  # the app's one departure in the recipe, named in train_settings

    # the form's settings with the CLI's epochs are the shipped polytope's, setting for setting
    shipped = json.loads((Path(DEFAULT_POLYTOPE) / "polytope.json").read_text(encoding="utf-8"))
    fcfg, tcfg, target = train_configs(form.layer, form.num_facets, args.epochs, form.feature_dim, form.target_fpr,
                                       shipped["train_config"]["facet_mode"], form.free_facets, form.backstop_weight,
                                       form.position)
    k_from_data = "num_facets"  # policy facets: K is set from the table's categories when training starts
    assert {**asdict(tcfg), k_from_data: None} == {**shipped["train_config"], k_from_data: None}
    assert (fcfg.layer, fcfg.position, fcfg.chat_template, fcfg.max_tokens) == (
        shipped["layer"], shipped["position"], shipped["chat_template"], shipped["max_tokens"])
    assert target == shipped["metrics"]["calibration"]["target_fpr"]
    # the ticked sources plus the held-out one are the shipped table's; ticked, the recorded config is the shipped one
    recorded = shipped["data"]["config"]
    assert set(form.sources) == set(APP_SOURCES) and set(APP_SOURCES) | set(recorded["ood_sources"]) == set(recorded["sources"])
    assert data_recipe(data_config(recorded["sources"])) == recorded


def test_the_form_follows_the_active_polytope_and_the_servers_limits():
    form = form_defaults(num_layers=4, limits=Limits(max_facets=8, max_feature_dim=64, max_epochs=5), layer=2, position="last")
    assert (form.layer, form.position, form.num_facets, form.feature_dim, form.feature_dims, form.epochs) == (2, "last", 8, 64, (64,), 5)
    assert form_defaults(num_layers=4, limits=Limits()).layer == 3  # the default layer clamped to a small model


def test_a_polytope_trained_in_the_app_records_its_data_as_the_cli_does(tiny_lm, tmp_path):
    wb = Workbench(tiny_lm, tmp_path / "polytopes" / "none", limits=Limits(max_feature_dim=64))
    handlers = TrainHandlers(wb)
    upload = labelled_csv(tmp_path, "mine.csv", category=False, n=60)
    _, _, _, trained = handlers.run_train([], upload, 1, 3, 1, 32, 0.0, "learned", 1, 1.0, None, progress=no_progress)
    saved = wb.save_trained(trained, "from-the-app")
    meta = json.loads((tmp_path / "polytopes" / saved / "polytope.json").read_text(encoding="utf-8"))

    args = cli_train_args("--data", upload)
    assert meta["data"]["config"] == data_recipe(commands.data_config(args), args.data)  # what `sap-viz train --data` records
    assert meta["data"]["config"]["file"] == {"name": "mine.csv", "sha256": hashlib.sha256(Path(upload).read_bytes()).hexdigest()}
    assert meta["data"]["fingerprint"] == dataset_fingerprint(load_user_file(upload))
    assert meta["train_config"]["seed"] == meta["data"]["config"]["seed"] == args.seed  # one seed splits and trains

    # built-in sources: the ticked ones and the training seed, as `sap-viz train --sources …` records them
    _, _, _, built_in = handlers.run_train(["rho_twins"], None, 1, 3, 1, 32, 0.0, "learned", 1, 1.0, None, progress=no_progress)
    args = cli_train_args("--sources", "rho_twins")
    assert built_in.artifact.meta["data"]["config"] == data_recipe(commands.data_config(args)) == data_recipe(
        DataConfig(sources=("rho_twins",), seed=args.seed))

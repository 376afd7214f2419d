"""Issue 28, finding 4, in the Train tab's handlers on a tiny model: a run that fails puts its reason in the status line
and gives back the results that were on screen (the last successful run's, else the active polytope's)."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from sap_viz.app_state.train_settings import APP_SOURCES
from sap_viz.app_state.workbench import Workbench
from sap_viz.data.dataset import small_split_warnings
from sap_viz.data.user_files import load_user_file
from sap_viz.settings import Limits
from sap_viz.ui.tab_train import TrainHandlers

NO_PROGRESS = lambda *a, **k: None  # noqa: E731


class Request:
    session_hash = "one-visitor"


def user_file(path, n_unsafe: int, n_safe: int) -> str:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([f"please hack into server number {i}", "unsafe"] for i in range(n_unsafe))
        w.writerows([f"please bake a cake number {i}", "safe"] for i in range(n_safe))
    return str(path)


@pytest.fixture()
def handlers(tiny_lm, tmp_path):
    return TrainHandlers(Workbench(tiny_lm, tmp_path / "polytopes" / "none", limits=Limits(max_feature_dim=64)))


def train(handlers, trained, upload: str, target_fpr: float):
    return handlers.train_clicked(trained, [], upload, 1, 3, 1, 32, target_fpr, "auto", 1, 1.0, "last", Request(),
                                  progress=NO_PROGRESS)


def test_a_failed_run_says_why_and_keeps_the_last_successful_runs_results(handlers, tmp_path):
    msg, metrics, sweep, trained = train(handlers, None, user_file(tmp_path / "good.csv", 40, 40), 0.1)
    assert "Trained on the training split" in msg and trained is not None
    bad = user_file(tmp_path / "few-safe.csv", 20, 2)
    split = load_user_file(bad)
    assert not ((split["split"] == "val") & (split["label"] == "safe")).any()  # nothing to calibrate on: training fails there

    msg2, metrics2, sweep2, kept = train(handlers, trained, bad, 0.1)
    assert "Training failed: calibration needs safe rows in the validation split" in msg2 and "sap-error" in msg2
    assert "Traceback" not in msg2 and "Training…" not in msg2
    assert kept is trained  # the unsaved polytope of the last successful run stays the one Save would save
    assert metrics2["value"].equals(metrics["value"]) and "last run trained here" in metrics2["label"]
    assert sweep2.to_dict() == sweep.to_dict()


def test_a_failed_first_run_shows_the_active_polytopes_results(handlers, tmp_path):
    msg, metrics, sweep, trained = train(handlers, None, user_file(tmp_path / "few-safe.csv", 20, 2), 0.1)
    assert "Training failed: calibration needs safe rows" in msg and trained is None
    active_metrics, active_sweep = handlers.active_metrics(handlers.wb)
    assert metrics.equals(active_metrics) and sweep.to_dict() == active_sweep.to_dict()


def test_a_split_too_small_for_its_metrics_is_named_with_its_counts():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(70)], "label": ["safe", "unsafe"] * 35,
                       "split": ["train"] * 20 + ["val"] * 6 + ["test"] * 44})
    warnings = small_split_warnings(df)
    assert len(warnings) == 1 and "validation split has only 6 rows (safe 3, unsafe 3)" in warnings[0]
    assert "too few for its metrics to mean anything" in warnings[0] and "±57 points" in warnings[0]
    assert small_split_warnings(df.assign(split=["train"] * 30 + ["val"] * 40)) == []


def test_training_on_a_small_file_warns_that_its_metrics_mean_little(handlers, tmp_path):
    msg, metrics, _, trained = train(handlers, None, user_file(tmp_path / "small.csv", 30, 30), 0.1)
    assert trained is not None and "sap-warn" in msg and "too few for its metrics to mean anything" in msg
    assert "too small for their metrics to mean anything" in metrics["label"]


def test_an_uploaded_file_unticks_the_built_in_sources_and_says_they_were_not_used(handlers, tmp_path):
    locked = handlers.sources_for_upload(str(tmp_path / "mine.csv"))
    assert locked["value"] == [] and locked["interactive"] is False and "not used while a file is uploaded" in locked["info"]
    back = handlers.sources_for_upload(None)
    assert back["value"] == list(APP_SOURCES) and back["interactive"] is True
    _, where, _ = handlers.training_data([APP_SOURCES[0]], user_file(tmp_path / "mine.csv", 30, 30))
    assert where == f"uploaded file mine.csv (alone: the built-in sources {APP_SOURCES[0]} were not used)"

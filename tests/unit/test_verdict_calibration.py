"""The verdict's boundary is set on held-out ordinary prompts at a fixed false-positive rate, and stored with how."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sap_viz.analysis.detection_report import DETECTION_TARGETS, _bootstrap_aurocs, _tpr_at, detection_rows, target_rows
from sap_viz.data.dataset import build_dataset
from sap_viz.errors import PolytopeFileError, UserError
from sap_viz.method.artifact import load_polytope, save_polytope, update_meta
from sap_viz.method.configs import VerdictCalibrationConfig
from sap_viz.method.measured_file import Target
from sap_viz.method.scoring import prompt_scores
from sap_viz.method.verdict_calibration import boundary_at, calibrate_verdict, combined, control_prompts, store_verdict_calibration
from tests.conftest import make_tiny_lm, separating_artifact


def test_boundary_at_flags_at_most_the_rate():
    values = np.arange(100, dtype=float)
    b = boundary_at(values, 0.05)
    assert (values >= b).sum() == 5 and (values >= boundary_at(values, 0.10)).sum() == 10
    assert (values >= boundary_at(values, 0.0)).sum() == 0


def test_control_prompts_are_never_in_the_training_table():
    table = build_dataset()
    texts, fingerprint = control_prompts(200, 0, table)
    assert len(texts) == len(set(texts)) == 200 and not set(texts) & set(table["text"])
    assert control_prompts(200, 0, table)[0] == texts and control_prompts(200, 1, table)[0] != texts


def test_the_tpr_needs_enough_safe_rows_for_its_rate():
    y = np.array([True] * 10 + [False] * 50)
    s = np.concatenate([np.linspace(1, 2, 10), np.linspace(-1, 1.5, 50)])
    assert _tpr_at(y, s, 0.01) is None  # 50 safe rows cannot measure a 1 % rate
    assert 0 < _tpr_at(y, s, 0.05) <= 1
    boot = _bootstrap_aurocs(y, {"a": s, "b": -s}, 50, 0)
    assert boot["a"].shape == (50,) and (boot["a"] > boot["b"]).all()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    lm = make_tiny_lm()
    art = separating_artifact(lm, 1, "bad request", "good request")
    meta = {**art.meta, "train_config": {}, "data": {}, "metrics": {},
            "generation_calibration": {"threshold": 0.5, "span_threshold": 0.25}}
    folder = save_polytope(tmp_path_factory.mktemp("poly") / "p", art.polytope, meta)
    art = load_polytope(folder)
    cfg = VerdictCalibrationConfig(control_rows=80, seed=3)
    record = calibrate_verdict(lm, art, cfg, progress=False)
    store_verdict_calibration(folder, record)
    return lm, folder, record, cfg


def test_calibration_flags_the_target_share_of_the_control_set(calibrated):
    lm, folder, record, cfg = calibrated
    art = load_polytope(folder)
    boundary = art.verdict_boundary
    assert boundary.source == "control set" and boundary.target_fpr == 0.05
    assert math.isclose(boundary.span - boundary.last, 0.25)  # the span check keeps its offset
    assert boundary.band[0] < 0 <= boundary.band[1]
    texts, _ = control_prompts(cfg.control_rows, cfg.seed)
    verdicts = prompt_scores(lm, art, texts).verdicts(boundary)
    assert sum(v.flagged for v in verdicts) == math.floor(0.05 * 80) == round(record["measured"]["flagged"] * 80)
    values = combined(prompt_scores(lm, art, texts), 0.25)
    assert sum(values >= boundary.last + boundary.band[0]) == 8  # the band's low edge: 10 % of the control set
    assert record["control"]["rows"] == 80 and record["set_by"] == "sap-viz calibrate-verdict"


def test_a_malformed_calibration_is_refused_at_load(calibrated):
    _, folder, record, _ = calibrated
    bad = {**record, "boundary": {**record["boundary"], "last": "high"}}
    with pytest.raises(PolytopeFileError, match="verdict_calibration"):
        update_meta(folder, "verdict_calibration", bad)
    assert load_polytope(folder).verdict_boundary.source == "control set"  # the refused write left the file alone


def test_bad_calibration_settings_are_refused_by_name():
    with pytest.raises(UserError, match="control_rows"):
        VerdictCalibrationConfig(control_rows=5).validate()
    with pytest.raises(UserError, match="target_fpr"):
        VerdictCalibrationConfig(target_fpr=0.2).validate()


def test_report_rows_round_and_keep_their_columns():
    report = {"rows": [{"set": "s", "method": "m", "n_unsafe": 3, "n_safe": 4, "auroc": 0.91234, "auroc_low": None,
                        "auroc_high": 0.95, "tpr_at_1pct_fpr": None, "tpr_at_5pct_fpr": 0.5, "caught": 1.0, "safe_flagged": 0.0}]}
    (row,) = detection_rows(report)
    assert row["auroc"] == 0.912 and row["auroc_low"] is None and list(row)[:2] == ["set", "method"]


def _report_row(set_name: str, method: str, **values) -> dict:
    base = {"set": set_name, "method": method, "auroc": 0.99, "caught": 0.95, "safe_flagged": 0.01,
            "auroc_minus_shipped_low": 0.0, "auroc_minus_shipped_high": 0.0}
    return {**base, **values}


def test_detection_targets_are_judged_from_the_report_and_the_misses_become_limits(tmp_path):
    sets = {t.set for t in DETECTION_TARGETS}
    rows = [_report_row(s, "SaP verdict") for s in sets]
    rows.append(_report_row("held-out sets 1-3", "detection-only polytope (K=14)", auroc_minus_shipped_low=-0.004,
                            auroc_minus_shipped_high=0.012))
    report = {"rows": rows}
    assert all(r["met"] for r in target_rows(report))
    # a verdict that flags too many XSTest safe prompts, and a detection-only polytope clearly ahead
    rows = [r if r["set"] != "XSTest v2" else {**r, "safe_flagged": 0.124} for r in rows]
    rows[-1] = {**rows[-1], "auroc_minus_shipped_low": 0.011}
    judged = {r["target"]: r for r in target_rows({"rows": rows})}
    assert not judged["XSTest v2: safe prompts flagged"]["met"] and judged["XSTest v2: safe prompts flagged"]["measured"] == "12.4%"
    interval = next(r for r in judged.values() if "detection-only" in r["target"])
    assert not interval["met"] and interval["measured"] == "+0.011 … +0.012"
    limits = [Target(**r).line() for r in target_rows({"rows": rows}) if not r["met"]]  # what the app lists as known limits
    assert len(limits) == 2 and any("12.4% (target ≤ 10%)" in line for line in limits)

"""An older polytope still loads: the shipped polytope of commit 639ff1b loads and scores as its tensors say, and a
format step moves a key instead of breaking the load.

The fixture (tests/data/polytope_639ff1b/) is that commit's ``polytope.json`` and ``facets.json`` verbatim
(``git show 639ff1b:polytopes/smollm2-135m-default/…``); its tensors (19 MB) and its ``steering/`` part are not copied:
the test writes random tensors of the shapes the metadata names, so "scores the same" means the loaded polytope's
violations equal those of a polytope built from the same tensors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sap_viz.errors import PolytopeFileError
from sap_viz.method.artifact import FACETS_FILE, META_FILE, TENSORS_FILE, load_polytope, update_meta
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.polytope_migrations import FORMAT_VERSION, migrate_meta
from sap_viz.model.features import input_dim

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "polytope_639ff1b"


def fixture_copy(tmp_path: Path) -> tuple[Path, dict, SafetyPolytope]:
    folder = tmp_path / "old"
    folder.mkdir()
    for name in (META_FILE, FACETS_FILE):
        shutil.copy(FIXTURE / name, folder / name)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    k, f, d = meta["num_facets"], meta["feature_dim"], input_dim(meta["position"], meta["model"]["hidden_size"])
    torch.manual_seed(0)
    poly = SafetyPolytope(d, k, f, meta["encoder"])
    with torch.no_grad():
        poly.mean.normal_()
        poly.std.uniform_(0.5, 2.0)
    tensors = {"phi": poly.phi, "xi": poly.xi, "mean": poly.mean, "std": poly.std,
               "encoder.weight": poly.encoder.weight, "encoder.bias": poly.encoder.bias}
    save_file({name: t.detach().contiguous() for name, t in tensors.items()}, str(folder / TENSORS_FILE))
    return folder, meta, poly.eval()


def test_the_639ff1b_polytope_loads_and_scores_as_its_tensors_say(tmp_path):
    folder, meta, poly = fixture_copy(tmp_path)
    model = meta["model"]
    art = load_polytope(folder, model["hidden_size"], model["num_layers"], model["fingerprint"])
    assert art.meta["format_version"] == FORMAT_VERSION and art.warnings == []
    assert len(art.facets) == meta["num_facets"] and art.layer == meta["layer"]
    # format 2: the measured sentences research scripts wrote into it leave (measured.json replaces them); the rest stays
    assert meta["format_version"] == 1 and {"detection_outcomes", "steering_outcomes"} <= set(meta)
    assert not {"detection_outcomes", "steering_outcomes"} & set(art.meta)
    assert {k: v for k, v in art.meta.items() if k not in ("format_version", "verdict_calibration")} == \
        {k: v for k, v in meta.items() if k not in ("format_version", "verdict_calibration", "detection_outcomes", "steering_outcomes")}
    h = torch.randn(7, poly.d_model)
    torch.testing.assert_close(art.polytope.violations(h), poly.violations(h))


def move_outcomes(meta: dict) -> dict:
    """A format step of the kind the issue names: a key moves (here into another key's object)."""
    out = dict(meta)
    out["metrics"] = {**out["metrics"], "moved_steering_outcomes": out.pop("steering_outcomes")}
    return out


def test_a_step_moves_a_key_of_an_older_version_instead_of_breaking_it(tmp_path):
    _, meta, _ = fixture_copy(tmp_path)
    older = {**meta, "format_version": 1}
    migrated = migrate_meta(older, {1: move_outcomes}, current=2)
    assert migrated["format_version"] == 2 and "steering_outcomes" not in migrated
    assert migrated["metrics"]["moved_steering_outcomes"] == meta["steering_outcomes"]
    assert older == {**meta, "format_version": 1}  # the caller's copy is left as it was
    assert migrate_meta(migrated, {1: move_outcomes}, current=2) is migrated  # the current version: nothing to do


def test_versions_without_a_path_or_from_a_newer_sap_viz_are_refused_with_a_message(tmp_path):
    folder, meta, _ = fixture_copy(tmp_path)
    with pytest.raises(PolytopeFileError, match="no migration from version 0"):
        migrate_meta({**meta, "format_version": 0})
    newer = {**meta, "format_version": FORMAT_VERSION + 1}
    (folder / META_FILE).write_text(json.dumps(newer), encoding="utf-8")
    with pytest.raises(PolytopeFileError, match="newer than this sap-viz reads"):
        load_polytope(folder)
    with pytest.raises(PolytopeFileError, match="newer than this sap-viz reads"):
        update_meta(folder, "description", "x")  # the writer reads through the same migration


def test_format_1_measured_figures_leave_and_calibration_stays(tmp_path):
    _, meta, _ = fixture_copy(tmp_path)
    boundary = {"last": 0.2, "span": 1.1, "band": None, "source": "control set", "target_fpr": 0.05}
    older = {**meta, "verdict_calibration": {"boundary": boundary, "operating_point": {"sentence": "catches 7 in 10"}}}
    migrated = migrate_meta(older)
    assert migrated["format_version"] == FORMAT_VERSION == 2
    assert migrated["verdict_calibration"] == {"boundary": boundary}  # the calibration stays, the measured catch rate leaves
    assert "detection_outcomes" not in migrated and "steering_outcomes" not in migrated
